"""Wrong: softmax(r / beta), forgetting the reference policy."""

import numpy as np

FAILS = "zeros of pi_ref stay zero"


def optimal_policy(pi_ref, reward, beta):
    w = np.exp(reward / beta)
    return w / w.sum(-1, keepdims=True)
