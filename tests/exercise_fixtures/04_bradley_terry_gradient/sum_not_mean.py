"""Wrong: the gradient of the summed NLL, the 1/N of the mean forgotten."""

import numpy as np
from scipy.special import expit

FAILS = "derivative of the NLL"


def nll_gradient(reward, x, y_w, y_l):
    d = reward[x, y_w] - reward[x, y_l]
    g = expit(-d)
    grad = np.zeros_like(reward)
    np.add.at(grad, (x, y_w), -g)
    np.add.at(grad, (x, y_l), g)
    return grad
