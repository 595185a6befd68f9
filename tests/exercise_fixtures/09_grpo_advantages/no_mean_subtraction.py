"""Wrong: r / std, the group mean not subtracted."""

import numpy as np

FAILS = "mean zero in each group"


def grpo_advantages(rewards, eps=1e-4):
    """``(r - mean) / (std + eps)`` per row, sample std; exactly 0 for a zero-spread row."""
    r = np.asarray(rewards, dtype=np.float64)
    centred = r
    std = r.std(axis=-1, ddof=1, keepdims=True)
    flat = r.max(axis=-1, keepdims=True) == r.min(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        adv = centred / (std + eps)
    return np.where(flat, 0.0, adv)
