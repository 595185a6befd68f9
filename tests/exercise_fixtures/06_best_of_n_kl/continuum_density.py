"""Wrong: the continuum density n F^(n-1) pi_ref used on a finite table."""

import numpy as np

FAILS = "rows sum to one"


def best_of_n_policy(pi_ref, reward, n):
    order = np.argsort(reward, axis=-1)
    p = np.take_along_axis(pi_ref, order, axis=-1)
    f_le = np.cumsum(p, axis=-1)
    out = np.empty_like(p)
    np.put_along_axis(out, order, n * f_le ** (n - 1) * p, axis=-1)
    return out


def best_of_n_kl(pi_ref, reward, n):
    p = best_of_n_policy(pi_ref, reward, n)
    live = p > 0
    return np.where(live, p * np.log(np.where(live, p / np.where(live, pi_ref, 1), 1)), 0).sum(-1)


def kl_bound(n):
    return float(np.log(n) - (n - 1) / n)
