"""Figures of DPO (notebook 02).

Each builder runs a small seeded experiment and returns its Figure; registered in
:data:`rlhf_toy.presentation.figures.registry.FIGURES` by ``@register``.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from rlhf_toy.bandit import all_pairs_preferences, make_bandit, train_dpo
from rlhf_toy.bradley_terry import sample_comparisons
from rlhf_toy.kl import kl_divergence
from rlhf_toy.optimal import optimal_policy, reward_kl_frontier
from rlhf_toy.preference_losses import cdpo_loss, dpo_loss
from rlhf_toy.presentation import plots
from rlhf_toy.presentation.figures.registry import register


@register("dpo_loss_weight",
          "Exercise 2: the DPO gradient raises log pi(y_w) and lowers log pi(y_l) with weight "
          "sigma(h_l - h_w), large exactly when the implicit reward ranks the pair wrongly.",
          "DPO (notebook 02)")
def dpo_loss_weight():
    beta = 0.5
    margin = np.linspace(-6.0, 6.0, 241)  # h_w - h_l
    loss, grad_chosen, _ = dpo_loss(margin / beta, np.zeros_like(margin), 0.0, 0.0, beta)
    return plots.plot_dpo_loss_and_weight(margin, loss, -grad_chosen / beta)


@register("dpo_convergence",
          "DPO on Bradley-Terry preferences that cover every pair of responses converges to "
          "the optimal policy pi* = pi_ref exp(r/beta)/Z of the reward that labelled them.",
          "DPO (notebook 02)")
def dpo_convergence():
    env = make_bandit(8, 16, proxy="exact", rng=0)
    beta = 0.5
    pi_star = optimal_policy(env.pi_ref, env.r_star, beta)
    x, y_w, y_l, w = all_pairs_preferences(env.r_star, pi=env.pi_ref)
    curves, final, steps = {}, None, None
    for name, opt, lr in [("gradient descent", "gd", 100.0 / beta**2), ("Adam", "adam", 0.1)]:
        res = train_dpo(env.pi_ref, x, y_w, y_l, beta, weights=w, steps=600, lr=lr,
                        optimizer=opt, record_every=5)
        steps = res.history["step"]
        probs = res.history["probs"]  # (n_records, X, Y)
        curves[name] = kl_divergence(probs, np.broadcast_to(pi_star, probs.shape)).mean(-1)
        final = res.policy.probs if final is None else final
    return plots.plot_dpo_convergence(steps, curves, final, pi_star)


def _uncovered_example():
    """The four-response prompt of the coverage failure (notebook 02 and its test)."""
    pi_ref = np.array([[0.05, 0.60, 0.30, 0.05]])
    r_star = np.array([[1.0, -1.0, -3.0, 0.0]])
    covered = np.array([[True, True, False, True]])
    return pi_ref, r_star, covered


@register("dpo_uncovered",
          "DPO on preference data that never shows a response moves probability onto it: "
          "pushing down a common rejected response frees mass that the softmax hands to the "
          "unseen, worst response, which pi* would nearly remove.",
          "DPO (notebook 02)")
def dpo_uncovered():
    pi_ref, r_star, covered = _uncovered_example()
    beta = 1.0
    x, y_w, y_l, w = all_pairs_preferences(r_star, covered=covered)
    res = train_dpo(pi_ref, x, y_w, y_l, beta, weights=w, steps=100, lr=2.0, record_every=1)
    pi_star = optimal_policy(pi_ref, r_star, beta)
    unseen = ~covered[0]
    mass = res.history["probs"][:, 0, unseen].sum(-1)
    probs = {r"$\pi_{ref}$": pi_ref[0], r"$\pi^*$ ($\beta$ = 1)": pi_star[0],
             "DPO": res.policy.probs[0]}
    levels = {r"$\pi_{ref}$": pi_ref[0, unseen].sum(), r"$\pi^*$": pi_star[0, unseen].sum()}
    return plots.plot_dpo_uncovered(probs, covered[0], r_star[0], res.history["step"], mass,
                                    levels=levels)


@register("dpo_logprobs_fall",
          "On finite preference data sampled from pi_ref, DPO lowers the mean log-probability "
          "of the chosen responses as well as the rejected ones while the margin between "
          "them grows.",
          "DPO (notebook 02)")
def dpo_logprobs_fall():
    env = make_bandit(8, 16, proxy="exact", rng=0)
    x, y_w, y_l = sample_comparisons(env.pi_ref, env.r_star, 200, rng=0)
    beta = 0.5
    res = train_dpo(env.pi_ref, x, y_w, y_l, beta, steps=1000, lr=4.0 / beta**2,
                    record_every=10, eval_rewards={"gold": env.r_star})
    h = res.history
    gold_star = env.expected(optimal_policy(env.pi_ref, env.r_star, beta), "gold")
    return plots.plot_logprobs_fall(h["step"], h["logp_chosen"], h["logp_rejected"],
                                    h["margin"], gold=h["gold"], gold_optimal=gold_star)


@register("dpo_loss_comparison",
          "DPO, IPO, cDPO and hinge on the same 200 preference pairs: DPO keeps drifting "
          "from pi_ref and its gold reward peaks then falls; the losses with a finite target "
          "margin level off; all stay below the exact gold-reward frontier of pi*.",
          "DPO (notebook 02)")
def dpo_loss_comparison():

    env = make_bandit(8, 16, proxy="exact", rng=0)
    x, y_w, y_l = sample_comparisons(env.pi_ref, env.r_star, 200, rng=0)
    beta = 0.5
    losses = {"DPO": ("dpo", 4.0 / beta**2), "IPO": ("ipo", 1.0),
              "cDPO (eps = 0.2)": (partial(cdpo_loss, label_smoothing=0.2), 4.0 / beta**2),
              "hinge": ("hinge", 2.0 / beta**2)}
    runs, steps = {}, None
    for name, (loss, lr) in losses.items():
        res = train_dpo(env.pi_ref, x, y_w, y_l, beta, steps=1000, lr=lr, loss=loss,
                        record_every=10, eval_rewards={"gold": env.r_star})
        runs[name] = (res.history["kl"], res.history["gold"])
        steps = res.history["step"]
    front = reward_kl_frontier(env.pi_ref, env.r_star, np.geomspace(0.1, 30.0, 100))
    return plots.plot_preference_loss_comparison(runs, front.kl, front.reward, steps=steps)
