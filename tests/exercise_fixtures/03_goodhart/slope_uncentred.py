"""Wrong slope: E[eps r_hat] without subtracting E[eps] E[r_hat]."""

import numpy as np

FAILS = "slope in 1/beta"


def _pi(pi_ref, r, beta):
    support = pi_ref > 0
    r_max = np.max(np.where(support, r, -np.inf), axis=-1, keepdims=True)
    w = pi_ref * np.exp(np.where(support, (r - r_max) / beta, 0.0))
    return w / w.sum(-1, keepdims=True)


def overestimation(pi_ref, r_star, r_hat, beta):
    return float(np.mean((_pi(pi_ref, r_hat, beta) * (r_hat - r_star)).sum(-1)))


def overestimation_slope(pi_ref, r_star, r_hat, beta):
    pi = _pi(pi_ref, r_hat, beta)
    return float(np.mean((pi * (r_hat - r_star) * r_hat).sum(-1)))
