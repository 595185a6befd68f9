"""Wrong: r - log r, the -1 forgotten."""

import numpy as np

FAILS = "k3 is zero where pi = pi_ref"


def k1(logp, logp_ref):
    return logp - logp_ref


def k3(logp, logp_ref):
    log_r = logp_ref - logp
    return np.exp(log_r) - log_r
