"""Builder of the multi-objective figure: the Pareto front of helpfulness and harm."""

from __future__ import annotations

from rlhf_toy.bandit.experiments.multi_objective import (
    constrained_optimum,
    make_two_reward_bandit,
    multi_objective_study,
)
from rlhf_toy.presentation.figures.registry import register
from rlhf_toy.presentation.plots.multi_objective import plot_pareto_front
from rlhf_toy.rl import PPOConfig, RLOOConfig

#: The study the notebook reruns; the builders are reached through ``FIGURES``.
__all__ = ["BETA", "pareto_study"]

#: The study of the figure (and of notebook 08).
BETA = 0.5


def pareto_study():
    """The seeded study the figure draws: world, budget 0.4 below the unconstrained harm.

    Returns
    -------
    tuple
        ``(world, c, study)``: the two-reward bandit, the harm budget and
        :func:`~rlhf_toy.bandit.experiments.multi_objective.multi_objective_study`'s result.
    """
    world = make_two_reward_bandit(8, 32, rng=0)
    h_hat, m_hat = world.rewards("proxy")
    c = constrained_optimum(world.pi_ref, h_hat, m_hat, BETA, 1e9).harm - 0.4
    study = multi_objective_study(world, BETA, c, seeds=[0, 1, 2],
                                  configs={"RLOO + dual ascent": RLOOConfig(group_size=8),
                                           "PPO + dual ascent": PPOConfig(group_size=8)})
    return world, c, study


@register("pareto_front",
          "Helpfulness against harm on the exact bandit: linear scalarisation traces the exact "
          "Pareto front; sampled RL with a dual-ascent multiplier lands on the constrained "
          "optimum of the proxies, and on the gold rewards misses it.",
          "Multi-objective RLHF (notebook 08)")
def pareto_front():
    _, c, s = pareto_study()
    opt, gold_opt = s["optimum"], s["gold_optimum"]
    gold_landings = dict(s["gold_landings"])
    gold_landings["proxy optimum"] = (s["optimum_on_gold"]["harm"],
                                      s["optimum_on_gold"]["j_help"])
    return plot_pareto_front(
        (s["scalarised"].j_harm, s["scalarised"].j_help),
        (s["random"]["j_harm"], s["random"]["j_help"], s["random"]["harm"]),
        (s["front"].harm, s["front"].j_help), c, (opt.harm, opt.j_help), s["landings"],
        gold={"front": (s["gold_front"].harm, s["gold_front"].j_help),
              "optimum": (gold_opt.harm, gold_opt.j_help), "landings": gold_landings})
