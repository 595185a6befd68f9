"""Correct on paper, naive in floating point: exp(r / beta) overflows for small beta."""

import numpy as np

FAILS = "large rewards and small beta"
HINT = "overflows float64"


def optimal_policy(pi_ref, reward, beta):
    w = pi_ref * np.exp(reward / beta)
    return w / w.sum(-1, keepdims=True)
