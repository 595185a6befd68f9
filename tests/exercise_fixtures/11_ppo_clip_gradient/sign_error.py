"""Wrong: the gradient of the surrogate (to ascend), not of the loss."""

import numpy as np

FAILS = "policy gradient at ratio one"


def ppo_clip_gradient(logp, logp_old, advantages, clip_eps):
    """``-rho A``, or exactly 0 where the clipped branch is the minimum."""
    a = np.asarray(advantages, dtype=np.float64)
    rho = np.exp(np.asarray(logp, dtype=np.float64) - np.asarray(logp_old, dtype=np.float64))
    clipped = ((a > 0) & (rho > 1 + clip_eps)) | ((a < 0) & (rho < 1 - clip_eps))
    return np.where(clipped, 0.0, rho * a)
