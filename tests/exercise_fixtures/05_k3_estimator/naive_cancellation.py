"""Correct on paper, naive in floating point: exp(l) - 1 - l cancels near r = 1."""

import numpy as np

FAILS = "accurate near r = 1"
HINT = "np.expm1"


def k1(logp, logp_ref):
    return logp - logp_ref


def k3(logp, logp_ref):
    log_r = logp_ref - logp
    return np.exp(log_r) - 1 - log_r
