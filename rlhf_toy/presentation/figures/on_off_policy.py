"""Builder of the on- vs off-policy figure: one labelling budget, five ways to spend it."""

from __future__ import annotations

from rlhf_toy.bandit.env import make_bandit
from rlhf_toy.bandit.experiments.on_off_policy import sweep_budgets
from rlhf_toy.presentation.figures.registry import register
from rlhf_toy.presentation.plots.on_off_policy import plot_on_off_policy

#: The study the notebook reruns; the builders are reached through ``FIGURES``.
__all__ = ["BETA", "BUDGETS", "SEEDS", "on_off_study"]

#: The study of the figure (and of notebook 08).
BETA = 0.5
BUDGETS = (400, 1600)
SEEDS = (0, 1, 2)


def on_off_study():
    """The seeded sweep the figure draws: a world whose optimum is far from ``pi_ref``.

    Returns
    -------
    tuple
        ``(env, sweep)``: the bandit and the
        :func:`~rlhf_toy.bandit.experiments.on_off_policy.sweep_budgets` result.
    """
    env = make_bandit(6, 12, proxy="exact", rng=1)
    sweep = sweep_budgets(env.pi_ref, env.r_star, BETA, budgets=BUDGETS, seeds=SEEDS,
                          steps=200, iterative_rounds=4)
    return env, sweep


@register("on_off_policy",
          "The same labelled comparisons spent as offline DPO (pairs from pi_ref), iterative "
          "and online DPO (pairs from the current policy) and a reward model then PPO: gold "
          "reward and distance to pi* over seeds.",
          "On- vs off-policy preference data (notebook 08)")
def on_off_policy():
    _, sweep = on_off_study()
    return plot_on_off_policy(sweep.budgets, sweep.gold, sweep.kl_to_optimum,
                              optimum_gold=sweep.optimum["gold"],
                              ref_gold=sweep.optimum["gold_ref"])
