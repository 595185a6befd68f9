"""Wrong: normalised over the prompt axis instead of the responses."""

import numpy as np

FAILS = "rows sum to one"


def optimal_policy(pi_ref, reward, beta):
    w = pi_ref * np.exp(reward / beta)
    return w / w.sum(0, keepdims=True)
