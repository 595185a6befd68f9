"""Wrong: the reward multiplied by beta instead of divided by it."""

import numpy as np

FAILS = "first-order condition"


def optimal_policy(pi_ref, reward, beta):
    s = np.where(pi_ref > 0, reward * beta, -np.inf)
    w = pi_ref * np.exp(s - s.max(-1, keepdims=True))
    return w / w.sum(-1, keepdims=True)
