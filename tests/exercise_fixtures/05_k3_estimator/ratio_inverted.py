"""Wrong: r = pi / pi_ref instead of pi_ref / pi (non-negative, but biased)."""

import numpy as np

FAILS = "k3 is unbiased"


def k1(logp, logp_ref):
    return logp - logp_ref


def k3(logp, logp_ref):
    log_r = logp - logp_ref
    return np.expm1(log_r) - log_r
