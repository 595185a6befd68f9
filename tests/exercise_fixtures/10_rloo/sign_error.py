"""Wrong: baseline minus reward."""

import numpy as np

FAILS = "own reward, own baseline"


def rloo_advantages(rewards):
    """``r_i - (S - r_i) / (G - 1)`` per row, ``S`` the row sum."""
    r = np.asarray(rewards, dtype=np.float64)
    g = r.shape[-1]
    total = r.sum(axis=-1, keepdims=True)
    return (total - r) / (g - 1) - r
