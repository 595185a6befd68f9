"""Every figure of the chapter, as functions that take results and return a Figure.

One module per chapter section; each function takes the arrays an experiment computed
(so a figure can be redrawn without redoing the experiment), never calls ``show()`` and
builds a :class:`matplotlib.figure.Figure` without pyplot. Every ``plot_*`` is re-exported
here: ``from rlhf_toy.presentation import plots; plots.plot_bt_recovery(...)``.
"""

from rlhf_toy.presentation.plots._style import COLORS, new_figure
from rlhf_toy.presentation.plots.best_of_n import (
    plot_bon_estimator,
    plot_bon_kl_bound,
    plot_bon_vs_kl_optimal,
    plot_bon_win_rate,
    plot_rft,
)
from rlhf_toy.presentation.plots.dpo import (
    plot_dpo_convergence,
    plot_dpo_loss_and_weight,
    plot_dpo_uncovered,
    plot_logprobs_fall,
    plot_preference_loss_comparison,
)
from rlhf_toy.presentation.plots.goodhart import (
    plot_distribution_shift,
    plot_ensembles,
    plot_gao_fits,
    plot_goodhart_gaussian,
    plot_goodhart_heavy_tail,
    plot_goodhart_learned,
    plot_overestimation_curves,
)
from rlhf_toy.presentation.plots.kl import (
    plot_kl_estimators,
    plot_kl_gradients,
    plot_mode_collapse,
    plot_mode_seeking,
)
from rlhf_toy.presentation.plots.multi_objective import plot_pareto_front
from rlhf_toy.presentation.plots.on_off_policy import plot_on_off_policy
from rlhf_toy.presentation.plots.pitfalls import plot_length_bias, plot_negative_kl
from rlhf_toy.presentation.plots.policy_gradient import (
    plot_estimator_variance,
    plot_grpo_difficulty,
    plot_pg_convergence,
    plot_zero_spread,
)
from rlhf_toy.presentation.plots.preferences import (
    plot_bt_recovery,
    plot_convergence,
    plot_first_order_condition,
    plot_optimal_policy_betas,
    plot_preference_probability,
    plot_reward_kl_frontier,
)

__all__ = [
    "COLORS",
    "new_figure",
    "plot_preference_probability",
    "plot_bt_recovery",
    "plot_optimal_policy_betas",
    "plot_reward_kl_frontier",
    "plot_first_order_condition",
    "plot_convergence",
    "plot_dpo_loss_and_weight",
    "plot_dpo_convergence",
    "plot_dpo_uncovered",
    "plot_logprobs_fall",
    "plot_preference_loss_comparison",
    "plot_goodhart_gaussian",
    "plot_goodhart_heavy_tail",
    "plot_goodhart_learned",
    "plot_gao_fits",
    "plot_distribution_shift",
    "plot_overestimation_curves",
    "plot_ensembles",
    "plot_bon_kl_bound",
    "plot_bon_win_rate",
    "plot_bon_vs_kl_optimal",
    "plot_bon_estimator",
    "plot_rft",
    "plot_kl_estimators",
    "plot_kl_gradients",
    "plot_mode_seeking",
    "plot_mode_collapse",
    "plot_pg_convergence",
    "plot_estimator_variance",
    "plot_zero_spread",
    "plot_grpo_difficulty",
    "plot_on_off_policy",
    "plot_pareto_front",
    "plot_negative_kl",
    "plot_length_bias",
]
