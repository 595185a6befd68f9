"""Wrong: no guard for a zero-spread group, so 0 / 0 = nan at eps = 0."""

import numpy as np

FAILS = "zero-spread group"


def grpo_advantages(rewards, eps=1e-4):
    """``(r - mean) / (std + eps)`` per row, sample std; exactly 0 for a zero-spread row."""
    r = np.asarray(rewards, dtype=np.float64)
    centred = r - r.mean(axis=-1, keepdims=True)
    std = r.std(axis=-1, ddof=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        adv = centred / (std + eps)
    return adv
