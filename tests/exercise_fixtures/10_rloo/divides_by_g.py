"""Wrong: the other rewards summed but divided by G instead of G - 1."""

import numpy as np

FAILS = "leave-one-out identity"


def rloo_advantages(rewards):
    """``r_i - (S - r_i) / (G - 1)`` per row, ``S`` the row sum."""
    r = np.asarray(rewards, dtype=np.float64)
    g = r.shape[-1]
    total = r.sum(axis=-1, keepdims=True)
    return r - (total - r) / g
