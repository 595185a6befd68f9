"""Wrong: the population std (ddof=0) instead of the sample std."""

import numpy as np

FAILS = "unit sample std"


def grpo_advantages(rewards, eps=1e-4):
    """``(r - mean) / (std + eps)`` per row, sample std; exactly 0 for a zero-spread row."""
    r = np.asarray(rewards, dtype=np.float64)
    centred = r - r.mean(axis=-1, keepdims=True)
    std = r.std(axis=-1, keepdims=True)
    flat = r.max(axis=-1, keepdims=True) == r.min(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        adv = centred / (std + eps)
    return np.where(flat, 0.0, adv)
