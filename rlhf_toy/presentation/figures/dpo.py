"""Figures of DPO (notebook 02).

Each builder runs a small seeded experiment of :mod:`rlhf_toy.bandit.experiments.dpo` and
returns its Figure; registered in :data:`rlhf_toy.presentation.figures.registry.FIGURES` by
``@register``.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy.bandit import make_bandit
from rlhf_toy.bandit.experiments.dpo import (
    dpo_convergence,
    dpo_on_sampled_pairs,
    dpo_uncovered,
    preference_loss_comparison,
)
from rlhf_toy.bradley_terry import sample_comparisons
from rlhf_toy.optimal import reward_kl_frontier
from rlhf_toy.preference_losses import dpo_loss
from rlhf_toy.presentation import plots
from rlhf_toy.presentation.figures.registry import register

#: The builders are reached through ``FIGURES``, by name; not called directly.
__all__ = []

_DPO = "DPO (notebook 02)"


@register("dpo_loss_weight",
          "Exercise 2: the DPO gradient raises log pi(y_w) and lowers log pi(y_l) with weight "
          "sigma(h_l - h_w), large exactly when the implicit reward ranks the pair wrongly.",
          _DPO)
def dpo_loss_weight():
    beta = 0.5
    margin = np.linspace(-6.0, 6.0, 241)  # h_w - h_l
    loss, grad_chosen, _ = dpo_loss(margin / beta, np.zeros_like(margin), 0.0, 0.0, beta)
    return plots.plot_dpo_loss_and_weight(margin, loss, -grad_chosen / beta)


@register("dpo_convergence",
          "DPO on Bradley-Terry preferences that cover every pair of responses converges to "
          "the optimal policy pi* = pi_ref exp(r/beta)/Z of the reward that labelled them.",
          _DPO)
def dpo_convergence_figure():
    run = dpo_convergence(make_bandit(8, 16, proxy="exact", rng=0), 0.5)
    return plots.plot_dpo_convergence(run["steps"], run["kl"], run["final"]["gradient descent"],
                                      run["pi_star"])


@register("dpo_uncovered",
          "DPO on preference data that never shows a response moves probability onto it: "
          "pushing down a common rejected response frees mass that the softmax hands to the "
          "unseen, worst response, which pi* would nearly remove.",
          _DPO)
def dpo_uncovered_figure():
    run = dpo_uncovered(1.0)
    pi_ref, pi_star, unseen = run["pi_ref"][0], run["pi_star"][0], ~run["covered"][0]
    probs = {r"$\pi_{ref}$": pi_ref, r"$\pi^*$ ($\beta$ = 1)": pi_star,
             "DPO": run["result"].policy.probs[0]}
    levels = {r"$\pi_{ref}$": pi_ref[unseen].sum(), r"$\pi^*$": pi_star[unseen].sum()}
    return plots.plot_dpo_uncovered(probs, run["covered"][0], run["r_star"][0],
                                    run["result"].history["steps"], run["unseen_mass"],
                                    levels=levels)


@register("dpo_logprobs_fall",
          "On finite preference data sampled from pi_ref, DPO lowers the mean log-probability "
          "of the chosen responses as well as the rejected ones while the margin between "
          "them grows.",
          _DPO)
def dpo_logprobs_fall():
    _, res, gold_optimal = dpo_on_sampled_pairs(make_bandit(8, 16, proxy="exact", rng=0), 200,
                                                0.5)
    h = res.history
    return plots.plot_logprobs_fall(h["steps"], h["logp_chosen"], h["logp_rejected"],
                                    h["margin"], gold=h["gold"], gold_optimal=gold_optimal)


@register("dpo_loss_comparison",
          "DPO, IPO, cDPO and hinge on the same 200 preference pairs: DPO keeps drifting "
          "from pi_ref and its gold reward peaks then falls; the losses with a finite target "
          "margin level off; all stay below the exact gold-reward frontier of pi*.",
          _DPO)
def dpo_loss_comparison():
    env = make_bandit(8, 16, proxy="exact", rng=0)
    pairs = sample_comparisons(env.pi_ref, env.r_star, 200, rng=0)
    results = preference_loss_comparison(env, pairs, 0.5)
    runs = {name: (res.history["kl"], res.history["gold"]) for name, res in results.items()}
    front = reward_kl_frontier(env.pi_ref, env.r_star, np.geomspace(0.1, 30.0, 100))
    return plots.plot_preference_loss_comparison(runs, front.kl, front.reward,
                                                 steps=results["DPO"].history["steps"])
