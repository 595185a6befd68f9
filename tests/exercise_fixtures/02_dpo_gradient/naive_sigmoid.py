"""Correct on paper, naive in floating point: exp(x) / (1 + exp(x)) is nan for large x."""

import numpy as np

FAILS = "large margins"
HINT = "expit"


def dpo_gradient(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    h_w = beta * (policy_chosen - ref_chosen)
    h_l = beta * (policy_rejected - ref_rejected)
    e = np.exp(h_l - h_w)
    w = beta * e / (1 + e)
    return -w, w
