"""Figures of Goodhart overoptimisation and reward-model ensembles (notebook 03).

Each builder runs a small seeded experiment and returns its Figure; registered in
:data:`rlhf_toy.presentation.figures.registry.FIGURES` by ``@register``.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy.bandit.env import make_bandit
from rlhf_toy.bandit.experiments.ensembles import disagreement, ensemble_study
from rlhf_toy.bandit.experiments.goodhart import (
    LEARNED_WORLD,
    best_of_n_curve,
    beta_sweep,
    gao_panels,
    heavy_tail_sweeps,
    mean_curve,
)
from rlhf_toy.bandit.experiments.overestimation import exercise3_curves
from rlhf_toy.bandit.experiments.proxy_error import (
    aligned_proxy,
    distribution_shift,
    excess_overestimation,
)
from rlhf_toy.optimal import optimal_policy
from rlhf_toy.presentation import plots
from rlhf_toy.presentation.figures.registry import register

#: The builders are reached through ``FIGURES``, by name; not called directly.
__all__ = []

#: The beta grid of the Goodhart figures: from almost pi_ref to almost argmax r_hat.
GOODHART_BETAS = np.geomspace(30.0, 0.003, 40)
_GOODHART = "Goodhart: overoptimisation, ensembles (notebook 03)"


@register("goodhart_gaussian",
          "Regressional Goodhart: with Gaussian proxy noise the proxy runs ahead of the gold but "
          "the gold keeps rising (pi*_beta and best-of-n), and the overestimation is sigma^2/beta "
          "until the policy runs out of responses.", _GOODHART)
def goodhart_gaussian():
    env = make_bandit(8, 64, proxy="gaussian", noise_scale=1.0, rng=0)
    opt = beta_sweep(env, GOODHART_BETAS)
    bon = best_of_n_curve(env, np.unique(np.geomspace(1, 5000, 40).astype(int)))
    big = make_bandit(20, 2000, proxy="gaussian", noise_scale=1.0, rng=1)
    inv_beta = np.geomspace(0.02, 30.0, 30)
    over = excess_overestimation(big, 1.0 / inv_beta)
    return plots.plot_goodhart_gaussian(opt.centred(), bon.centred(), inv_beta, over, 1.0,
                                        regime=1 / np.sqrt(2.0))


@register("goodhart_heavy_tail",
          "Catastrophic Goodhart: with heavy-tailed (Student-t) proxy noise the proxy soars on a "
          "few outliers and the gold, after rising, falls back; Gaussian noise of the same scale "
          "keeps its gains.", _GOODHART)
def goodhart_heavy_tail():
    heavy, gauss = heavy_tail_sweeps(np.geomspace(1e3, 0.003, 50))  # outliers pull at beta=30
    return plots.plot_goodhart_heavy_tail(heavy[1].centred(), [c.centred() for c in heavy],
                                          mean_curve(heavy).centred(),
                                          mean_curve(gauss).centred())


@register("goodhart_learned",
          "A Bradley-Terry reward model fitted on comparisons from pi_ref: the gold peaks and "
          "falls as pi* moves onto rarely compared responses, and the peak comes at a larger KL "
          "the more comparisons the model saw.", _GOODHART)
def goodhart_learned():
    curves, peaks = {}, {}
    for n in (300, 3000, 30000):
        sweeps = [beta_sweep(make_bandit(8, 64, n_comparisons=n, rng=seed, **LEARNED_WORLD),
                             GOODHART_BETAS)
                  for seed in range(10)]
        curves[n] = mean_curve(sweeps).centred()
        peaks[n] = np.array([c.peak_d for c in sweeps])
    return plots.plot_goodhart_learned(curves, peaks)


@register("gao_fits",
          "Gao et al.'s forms fitted to exact curves of a learned proxy: d (a - b d) for "
          "best-of-n, d (a - b log d) for pi*_beta and for a gradient-ascent (RL) trajectory, with "
          "coefficients, R^2 and the predicted peak.", _GOODHART)
def gao_fits():
    env = make_bandit(8, 64, n_comparisons=3000, rng=1, **LEARNED_WORLD)
    ns = np.unique(np.geomspace(1, 5000, 40).astype(int))
    return plots.plot_gao_fits(gao_panels(env, ns, GOODHART_BETAS))


@register("distribution_shift",
          "Distributional shift: the learned proxy, calibrated on pi_ref, errs more (and upwards) "
          "under pi*_beta as beta falls, because pi* moves to responses with few comparisons.",
          _GOODHART)
def distribution_shift_figure():
    env = make_bandit(8, 64, n_comparisons=3000, rng=0, **LEARNED_WORLD)
    shift = distribution_shift(env, GOODHART_BETAS)
    abs_err = np.abs(aligned_proxy(env) - env.r_star)
    pi_hard = optimal_policy(env.pi_ref, env.r_hat, 0.03)
    return plots.plot_distribution_shift(shift["d"], shift["mae"], shift["bias"],
                                         shift["mae_ref"], abs_err, env.counts, pi_hard)


@register("goodhart_exercise3",
          "Exercise 3: the expected overestimation of pi*_beta is never negative; it grows with "
          "1/beta over random Gaussian worlds, but for a fixed gold reward it can rise and fall "
          "back, and a single noise draw can even underestimate.", _GOODHART)
def goodhart_exercise3():
    inv_beta = np.geomspace(0.01, 300.0, 60)
    c = exercise3_curves(inv_beta)
    mc = c["monte_carlo"]
    return plots.plot_overestimation_curves(inv_beta, {
        "random worlds (MC, 2 s.e.)": (mc["mean"], mc["se"]),
        r"gold (0, 4), mean over $\epsilon = \pm 1$": (c["fixed_gold"], None),
        r"gold (0, 4), one draw $\epsilon = (1, -1)$": (c["one_draw"], None),
    })


@register("ensembles",
          "Reward-model ensembles (Coste et al. 2023): optimising the worst case or mean minus "
          "variance of 10 members keeps more gold than one reward model on the same data; "
          "members disagree where comparisons are few.", _GOODHART)
def ensembles_figure():
    out = ensemble_study(make_bandit(8, 64, proxy="exact", ref_temperature=0.5, rng=0),
                         GOODHART_BETAS)
    curves = {name: c.centred() for name, c in out["curves"].items()}
    return plots.plot_ensembles(curves, out["counts"], disagreement(out["bootstrap"]),
                                disagreement(out["ensemble"]))
