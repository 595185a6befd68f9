"""Correct on paper, naive in floating point: exp(r_hat / beta) overflows."""

import numpy as np

FAILS = "small beta"
HINT = "overflows float64"


def _pi(pi_ref, r, beta):
    support = pi_ref > 0
    r_max = np.max(np.where(support, r, -np.inf), axis=-1, keepdims=True)
    w = pi_ref * np.exp(np.where(support, (r - r_max) / beta, 0.0))
    return w / w.sum(-1, keepdims=True)


def overestimation(pi_ref, r_star, r_hat, beta):
    w = pi_ref * np.exp(r_hat / beta)
    pi = w / w.sum(-1, keepdims=True)
    return float(np.mean((pi * (r_hat - r_star)).sum(-1)))


def overestimation_slope(pi_ref, r_star, r_hat, beta):
    pi = _pi(pi_ref, r_hat, beta)
    eps = r_hat - r_star
    e_eps = (pi * eps).sum(-1, keepdims=True)
    e_r = (pi * r_hat).sum(-1, keepdims=True)
    return float(np.mean((pi * (eps - e_eps) * (r_hat - e_r)).sum(-1)))
