"""Wrong: pi_ref exp(r / beta) without dividing by Z."""

import numpy as np

FAILS = "rows sum to one"


def optimal_policy(pi_ref, reward, beta):
    return pi_ref * np.exp(reward / beta)
