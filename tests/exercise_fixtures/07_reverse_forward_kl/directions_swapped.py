"""Wrong: "reverse" computes KL(target || q) and "forward" KL(q || target)."""

import numpy as np
from scipy.special import logsumexp

FAILS = "reverse KL seeks a mode"


def kl(p, q):
    """``sum_{p > 0} p log(p / q)``; ``+inf`` when some ``p > 0 = q``."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    live = p > 0
    if np.any(live & (q == 0)):
        return float(np.inf)
    return float(np.sum(p[live] * (np.log(p[live]) - np.log(q[live]))))


def _log_gaussian(grid, mean, std):
    logits = -0.5 * ((grid - np.asarray(mean)[..., None]) / np.asarray(std)[..., None]) ** 2
    return logits - logsumexp(logits, axis=-1, keepdims=True)


def _divergences(target, grid, mean, std, divergence):
    log_q = _log_gaussian(np.asarray(grid, float), mean, std)
    target = np.asarray(target, dtype=np.float64)
    live = target > 0
    log_t = np.log(np.where(live, target, 1.0))
    if divergence == "forward":
        return (np.exp(log_q) * (log_q - np.where(live, log_t, -np.inf))).sum(-1)
    if divergence == "reverse":
        return (np.where(live, target * (log_t - log_q), 0.0)).sum(-1)
    raise ValueError(f"divergence must be 'reverse' or 'forward', got {divergence!r}")


def gaussian_divergence(target, grid, mean, std, divergence):
    """``KL(q || target)`` or ``KL(target || q)`` for the grid Gaussian ``q``."""
    return float(_divergences(target, grid, mean, std, divergence))


def fit_gaussian(target, grid, divergence):
    """Grid search over means and log-spaced stds."""
    grid = np.asarray(grid, dtype=np.float64)
    means = np.linspace(grid[0], grid[-1], 161)
    stds = np.geomspace(np.min(np.diff(grid)) / 2, grid[-1] - grid[0], 60)
    values = _divergences(target, grid, means[:, None], stds[None, :], divergence)
    i, j = np.unravel_index(np.argmin(values), values.shape)
    return float(means[i]), float(stds[j])
