"""Wrong: the probabilities returned in sorted order, never put back."""

import numpy as np

FAILS = "n = 1 gives pi_ref"


def best_of_n_policy(pi_ref, reward, n):
    order = np.argsort(reward, axis=-1)
    p = np.take_along_axis(pi_ref, order, axis=-1)
    f_le = np.cumsum(p, axis=-1)
    return f_le**n - np.clip(f_le - p, 0, None) ** n


def best_of_n_kl(pi_ref, reward, n):
    p = best_of_n_policy(pi_ref, reward, n)
    live = p > 0
    return np.where(live, p * np.log(np.where(live, p / np.where(live, pi_ref, 1), 1)), 0).sum(-1)


def kl_bound(n):
    return float(np.log(n) - (n - 1) / n)
