"""Figures of best-of-n and rejection sampling (notebook 04).

Each builder runs a small seeded experiment and returns its Figure; registered in
:data:`rlhf_toy.presentation.figures.registry.FIGURES` by ``@register``.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy.bandit import make_bandit
from rlhf_toy.bandit.experiments.rft import (
    best_of_n_vs_optimal,
    curve_arrays,
    estimator_experiment,
    kl_bound_worlds,
    rejection_sampling_finetune,
    rft_convergence,
    round_arrays,
)
from rlhf_toy.best_of_n import best_of_n_kl, best_of_n_kl_bound, best_of_n_win_rate
from rlhf_toy.presentation import plots
from rlhf_toy.presentation.figures.registry import register

#: The builders are reached through ``FIGURES``, by name; not called directly.
__all__ = []

_BON_SECTION = "Best-of-n and rejection sampling (notebook 04)"


def _bon_ns(top: float = 4.0, num: int = 40) -> np.ndarray:
    """Integer ``n`` from 1 to ``10**top``, log-spaced."""
    return np.unique(np.round(np.logspace(0, top, num))).astype(int)


@register("bon_kl_bound",
          "Exact KL of best-of-n against log n - (n-1)/n: tight for many small-mass responses "
          "with distinct rewards, far below it when a few responses hold the mass or rewards "
          "tie.", _BON_SECTION)
def bon_kl_bound():
    ns = _bon_ns()
    kls = {label: best_of_n_kl(pi_ref, reward, ns).mean(-1)
           for label, (pi_ref, reward) in kl_bound_worlds().items()}
    return plots.plot_bon_kl_bound(ns, kls, best_of_n_kl_bound(ns))


@register("bon_win_rate",
          "Exact win rate of best-of-n over a reference sample: n/(n+1) for a continuum of "
          "distinct rewards, less once n outgrows the number of distinct responses.",
          _BON_SECTION)
def bon_win_rate():
    ns = _bon_ns()
    wins = {label: best_of_n_win_rate(pi_ref, reward, ns).mean(-1)
            for label, (pi_ref, reward) in kl_bound_worlds().items()}
    return plots.plot_bon_win_rate(ns, wins)


@register("bon_vs_kl_optimal",
          "Gold and proxy reward against sqrt(KL) for best-of-n and for the KL-regularised "
          "optimum pi*: with Gaussian proxy noise pi* earns slightly more gold per nat; with "
          "heavy-tailed noise it spends its KL on proxy outliers and best-of-n wins clearly.",
          _BON_SECTION)
def bon_vs_kl_optimal():
    ns, betas = _bon_ns(4.0, 30), np.logspace(-2.5, 3.0, 80)
    panels = {}
    for title, kwargs in [("Gaussian proxy noise (sigma = 1)",
                           {"proxy": "gaussian", "noise_scale": 1.0}),
                          ("Student-t proxy noise (df = 2, scale 0.5)",
                           {"proxy": "student_t", "noise_scale": 0.5, "df": 2.0})]:
        env = make_bandit(100, 256, rng=0, **kwargs)
        panels[title] = curve_arrays(*best_of_n_vs_optimal(env, ns, betas))
    return plots.plot_bon_vs_kl_optimal(panels)


@register("bon_estimator",
          "The unbiased best-of-n estimator (all n-subsets of N samples) reproduces the exact "
          "gold curve, overoptimisation peak included, with less spread than disjoint "
          "groups.", _BON_SECTION)
def bon_estimator():
    env = make_bandit(20, 64, proxy="student_t", noise_scale=0.5, df=2.0, rng=0)
    ns, n_samples = 2 ** np.arange(9), 256
    exact, unbiased, disjoint = estimator_experiment(env, ns, n_samples, 100, rng=0)
    return plots.plot_bon_estimator(ns, exact, unbiased, disjoint, n_samples=n_samples)


@register("rft",
          "Rejection-sampling fine-tuning: the fitted table converges to the exact best-of-n "
          "policy like 1/sqrt(samples), and k rounds of best-of-4 land on best-of-4^k.",
          _BON_SECTION)
def rft_figure():
    env = make_bandit(8, 64, proxy="gaussian", noise_scale=1.0, rng=0)
    sizes = np.array([100, 300, 1000, 3000, 10_000, 30_000])
    distances = {f"n = {n}": rft_convergence(env, n, sizes, rng=n, repeats=3)
                 for n in (2, 4, 16)}
    res = rejection_sampling_finetune(env, 4, 20_000, rng=0, n_rounds=3)
    curve = curve_arrays(*best_of_n_vs_optimal(env, _bon_ns(2.5, 30),
                                               np.logspace(-1.5, 1.5, 60)))
    return plots.plot_rft(sizes, distances, rounds=round_arrays(res), curve=curve)
