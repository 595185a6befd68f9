"""Wrong: only the winner's entry updated (the loser's term forgotten)."""

import numpy as np
from scipy.special import expit

FAILS = "rows sum to zero"


def nll_gradient(reward, x, y_w, y_l):
    d = reward[x, y_w] - reward[x, y_l]
    g = expit(-d) / len(d)
    grad = np.zeros_like(reward)
    np.add.at(grad, (x, y_w), -g)
    return grad
