"""Wrong: (r - 1) + log r."""

import numpy as np

FAILS = "k3 is non-negative"


def k1(logp, logp_ref):
    return logp - logp_ref


def k3(logp, logp_ref):
    log_r = logp_ref - logp
    return np.expm1(log_r) + log_r
