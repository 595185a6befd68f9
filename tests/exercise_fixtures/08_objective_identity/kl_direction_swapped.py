"""Wrong: the penalty KL(pi_ref || pi) instead of KL(pi || pi_ref)."""

import numpy as np
from scipy.special import logsumexp

FAILS = "objective matches the library"


def _log(p):
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(p, dtype=np.float64))


def _expect(pi, values):
    """``sum_y pi(y) values(y)`` with terms where ``pi = 0`` left out."""
    pi = np.asarray(pi, dtype=np.float64)
    return np.where(pi > 0, pi * np.where(pi > 0, values, 0.0), 0.0).sum(-1)


def objective(pi, pi_ref, reward, beta):
    """``E_pi[r] - beta KL(pi || pi_ref)`` per prompt."""
    return _expect(pi, reward) - beta * _expect(pi_ref, _log(pi_ref) - _log(pi))


def log_partition(pi_ref, reward, beta):
    """``logsumexp(log pi_ref + r / beta)`` per prompt."""
    return logsumexp(_log(pi_ref) + np.asarray(reward, float) / beta, axis=-1)


def kl_to_optimum(pi, pi_ref, reward, beta):
    """``sum_y pi (log pi - log pi*)`` with ``log pi* = log pi_ref + r / beta - log Z``."""
    log_z = log_partition(pi_ref, reward, beta)[..., None]
    log_pi_star = _log(pi_ref) + np.asarray(reward, float) / beta - log_z
    return _expect(pi, _log(pi) - log_pi_star)
