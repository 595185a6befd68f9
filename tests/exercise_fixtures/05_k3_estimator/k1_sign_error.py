"""Wrong k1: log r instead of -log r."""

import numpy as np

FAILS = "k1 is unbiased"


def k1(logp, logp_ref):
    return logp_ref - logp


def k3(logp, logp_ref):
    log_r = logp_ref - logp
    return np.expm1(log_r) - log_r
