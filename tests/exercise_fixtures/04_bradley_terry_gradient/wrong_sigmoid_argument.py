"""Wrong: sigma(d) instead of sigma(-d), the weight of a correctly ranked pair."""

import numpy as np
from scipy.special import expit

FAILS = "one comparison"


def nll_gradient(reward, x, y_w, y_l):
    d = reward[x, y_w] - reward[x, y_l]
    g = expit(d) / len(d)
    grad = np.zeros_like(reward)
    np.add.at(grad, (x, y_w), -g)
    np.add.at(grad, (x, y_l), g)
    return grad
