"""Wrong: the gradient of the log-likelihood (to ascend), not of the loss."""

import numpy as np
from scipy.special import expit

FAILS = "one comparison"


def nll_gradient(reward, x, y_w, y_l):
    d = reward[x, y_w] - reward[x, y_l]
    g = expit(-d) / len(d)
    grad = np.zeros_like(reward)
    np.add.at(grad, (x, y_w), g)
    np.add.at(grad, (x, y_l), -g)
    return grad
