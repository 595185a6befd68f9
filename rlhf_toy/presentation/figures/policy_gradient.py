"""Figures of sampled policy-gradient RLHF on the bandit (notebook 07).

Each builder runs a small seeded experiment and returns its Figure; registered in
:data:`rlhf_toy.presentation.figures.registry.FIGURES` by ``@register``.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy.bandit import make_bandit
from rlhf_toy.bandit.experiments.modes import forward_kl_regularised_policy
from rlhf_toy.bandit.experiments.pg_study import (
    convergence_study,
    difficulty_weights,
    estimator_mse,
    zero_spread_study,
)
from rlhf_toy.kl import kl_divergence
from rlhf_toy.optimal import optimal_policy
from rlhf_toy.presentation import plots
from rlhf_toy.presentation.figures.registry import register
from rlhf_toy.rl import GRPOConfig, PPOConfig, ReinforceConfig, RLOOConfig, dr_grpo_config

#: The builders are reached through ``FIGURES``, by name; not called directly.
__all__ = []

SECTION = "Policy-gradient RLHF on the bandit (notebook 07)"
BETA = 0.5
G = 8


@register("pg_convergence",
          "Sampled RL on a 4 x 6 bandit (G = 8, beta = 0.5, 3 seeds): with the KL in the "
          "reward, REINFORCE, RLOO and PPO approach pi*_beta; GRPO's k3 in the loss settles "
          "at the forward-KL fixpoint instead (dashed: Dr. GRPO's distance to it), a fixed "
          "distance from pi*.",
          SECTION)
def pg_convergence():
    env = make_bandit(4, 6, proxy="gaussian", rng=1)
    fix = forward_kl_regularised_policy(env.pi_ref, (G - 1) / G * env.r_hat, BETA)
    configs = {"reinforce": ReinforceConfig(group_size=G, beta=BETA),
               "rloo": RLOOConfig(group_size=G, beta=BETA),
               "ppo": PPOConfig(group_size=G, beta=BETA, epochs=2),
               "grpo": GRPOConfig(group_size=G, beta=BETA),
               "dr_grpo": dr_grpo_config(group_size=G, beta=BETA)}
    out = convergence_study(env, configs, seeds=[0, 1, 2], steps=250, targets={"fix": fix})
    curves = {label: out[label]["kl_to_optimum"] for label in configs}
    curves["dr_grpo to its forward-KL fixpoint"] = out["dr_grpo"]["kl_to_fix"]
    pi_star = optimal_policy(env.pi_ref, env.r_hat, BETA)
    gap = float(env.prompt_probs @ kl_divergence(fix, pi_star))
    return plots.plot_pg_convergence(out["steps"], curves,
                                     reference={"KL(fixpoint || pi*)": gap})


@register("pg_estimator_variance",
          "Bias and variance of the sampled policy gradient against the exact one (3000 "
          "draws per G): REINFORCE, RLOO and an exact critic are unbiased with MSE ~ 1/G; "
          "the mean baseline (Dr. GRPO's too) is biased in scale ((G-1)/G) and GRPO's std "
          "division in scale "
          "and direction, a bias that more samples do not remove.",
          SECTION)
def pg_estimator_variance():
    env = make_bandit(4, 6, proxy="gaussian", rng=1)
    pi = np.exp(np.log(env.pi_ref) + 0.5 * env.r_star)
    pi /= pi.sum(1, keepdims=True)
    group_sizes = [2, 4, 8, 16, 32]
    study = estimator_mse(pi, env.pi_ref, env.r_hat, BETA, group_sizes, 3000, rng=0)
    shown = ["reinforce", "reinforce_mean", "rloo", "critic", "grpo"]  # dr_grpo = mean baseline
    return plots.plot_estimator_variance(group_sizes, study, shown)


@register("grpo_zero_spread",
          "With a 0/1 reward of success probability p, the fraction of GRPO groups whose "
          "rewards are all equal (no gradient signal) is p^G + (1-p)^G: measured on 3000 "
          "groups per point, it is most of the batch for sparse rewards.",
          SECTION)
def grpo_zero_spread():
    p = np.geomspace(0.005, 0.5, 9)
    res = zero_spread_study(p, [4, 8, 16], 3000, rng=0)
    return plots.plot_zero_spread(p, res["group_sizes"], res["measured"], res["exact"],
                                  res["sem"])


@register("grpo_difficulty",
          "The expected GRPO gradient of a 0/1-reward prompt is w(p) times the true gradient: "
          "Dr. GRPO's w = (G-1)/G is flat, GRPO's std division raises w for easy and hopeless "
          "prompts (G = 8; measured on 4000 groups per point, lines exact).",
          SECTION)
def grpo_difficulty():
    p = np.linspace(0.03, 0.97, 13)
    res = difficulty_weights(p, G, 4000, rng=0)
    return plots.plot_grpo_difficulty(p, {"grpo": res["group"], "dr_grpo": res["none"]})
