"""Wrong: grad[x, y_w] -= g writes once per distinct index, so repeated comparisons count once."""

import numpy as np
from scipy.special import expit

FAILS = "repeated comparisons add up"


def nll_gradient(reward, x, y_w, y_l):
    d = reward[x, y_w] - reward[x, y_l]
    g = expit(-d) / len(d)
    grad = np.zeros_like(reward)
    grad[x, y_w] -= g
    grad[x, y_l] += g
    return grad
