"""Wrong: (log r)^2 / 2, the biased k2."""

FAILS = "k3 is unbiased"


def k1(logp, logp_ref):
    return logp - logp_ref


def k3(logp, logp_ref):
    return 0.5 * (logp_ref - logp) ** 2
