"""Wrong: -A instead of -rho A (d rho / d logp = rho forgotten)."""

import numpy as np

FAILS = "derivative of the loss"


def ppo_clip_gradient(logp, logp_old, advantages, clip_eps):
    """``-rho A``, or exactly 0 where the clipped branch is the minimum."""
    a = np.asarray(advantages, dtype=np.float64)
    rho = np.exp(np.asarray(logp, dtype=np.float64) - np.asarray(logp_old, dtype=np.float64))
    clipped = ((a > 0) & (rho > 1 + clip_eps)) | ((a < 0) & (rho < 1 - clip_eps))
    return np.where(clipped, 0.0, -a)
