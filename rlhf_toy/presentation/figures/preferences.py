"""Figures of Bradley-Terry and the optimal policy (notebook 01).

Each builder runs a small seeded experiment and returns its Figure; registered in
:data:`rlhf_toy.presentation.figures.registry.FIGURES` by ``@register``.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy.bandit import make_bandit
from rlhf_toy.bandit.experiments.preferences import ascent_convergence, bt_recovery
from rlhf_toy.bandit.train import gradient_ascent
from rlhf_toy.optimal import optimal_policy, reward_kl_frontier
from rlhf_toy.presentation import plots
from rlhf_toy.presentation.figures.registry import register

#: The builders are reached through ``FIGURES``, by name; not called directly.
__all__ = []


@register("bt_mle_recovery",
          "Bradley-Terry MLE on simulated comparisons recovers the reward up to a per-prompt "
          "shift, with an error falling like 1/sqrt(n).",
          "Bradley-Terry and the optimal policy (notebook 01)")
def bt_mle_recovery():
    r_star = np.random.default_rng(0).standard_normal((4, 8))
    sizes = np.array([300, 1000, 3000, 10_000, 30_000, 100_000])
    errors, fits = bt_recovery(r_star, sizes)
    return plots.plot_bt_recovery(r_star - r_star.mean(1, keepdims=True), fits[3000, 0], sizes,
                                  errors.mean(1), errors.std(1))


@register("optimal_policy_betas",
          "The KL-regularised optimum pi* = pi_ref exp(r/beta)/Z reweights the reference "
          "policy towards high reward, more sharply as beta shrinks.",
          "Bradley-Terry and the optimal policy (notebook 01)")
def optimal_policy_betas():
    env = make_bandit(1, 16, proxy="exact", rng=3)
    betas = np.array([0.1, 0.3, 1.0, 3.0])
    pi_stars = np.stack([optimal_policy(env.pi_ref, env.r_star, b)[0] for b in betas])
    return plots.plot_optimal_policy_betas(env.r_star[0], env.pi_ref[0], betas, pi_stars)


@register("reward_kl_frontier",
          "The exact reward-KL frontier of pi*_beta; gradient ascent on the regularised "
          "objective lands on it.",
          "Bradley-Terry and the optimal policy (notebook 01)")
def reward_kl_frontier_figure():
    env = make_bandit(8, 32, proxy="exact", rng=0)
    betas = np.geomspace(0.03, 30.0, 200)
    front = reward_kl_frontier(env.pi_ref, env.r_star, betas)
    points = {}
    for beta in (0.3, 1.0):
        res = gradient_ascent(env.pi_ref, env.r_star, beta, steps=1500, lr=8.0 / beta)
        points[f"gradient ascent, beta = {beta:g}"] = (res.history["kl"][-1],
                                                       res.history["reward"][-1])
    return plots.plot_reward_kl_frontier(front.kl, front.reward, betas, points=points,
                                         annotate=[0.1, 0.3, 1.0, 3.0])


@register("ascent_convergence",
          "Exact gradient ascent on J(pi) = E[r] - beta KL climbs monotonically towards "
          "the closed-form optimum: the gap J(pi*) - J(pi_t) keeps falling.",
          "Bradley-Terry and the optimal policy (notebook 01)")
def ascent_convergence_figure():
    runs = ascent_convergence(make_bandit(8, 32, proxy="exact", rng=0), (0.3, 1.0, 3.0))
    curves = {f"beta = {beta:g}": gap for beta, (_, gap) in runs.items()}
    steps = runs[3.0][0].history["steps"]
    return plots.plot_convergence(steps, curves, ylabel=r"$J(\pi^*) - J(\pi_t)$",
                                  title="Gradient ascent converges to the optimum")
