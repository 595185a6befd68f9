"""Wrong: exp(-r / beta), the policy that minimises the reward."""

import numpy as np

FAILS = "first-order condition"


def optimal_policy(pi_ref, reward, beta):
    w = pi_ref * np.exp(-reward / beta)
    return w / w.sum(-1, keepdims=True)
