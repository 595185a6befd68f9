"""Figures of on- versus off-policy preference data at a fixed labelling budget.

Chapter: "DPO and PPO target the same optimal policy in theory, not in practice"; the
experiment is :mod:`rlhf_toy.bandit.experiments.on_off_policy`. Functions return a
:class:`matplotlib.figure.Figure` and never call ``show()``.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy.presentation.plots._style import COLORS, new_figure

__all__ = ["plot_on_off_policy"]

#: Colour and marker of each method of the comparison.
METHOD_STYLE = {
    "offline_dpo": dict(color=COLORS["ref"], marker="s", label="offline DPO (pairs from pi_ref)"),
    "iterative_dpo": dict(color=COLORS["policy"], marker="^", label="iterative DPO"),
    "online_dpo": dict(color=COLORS["gold"], marker="o", label="online DPO"),
    "rm_optimum": dict(color=COLORS["optimal"], marker="D",
                       label="RM, then exact optimum"),
    "online_dpo_adamw": dict(color=COLORS["gold"], marker="P", ls="--",
                             label="online DPO (RL step, AdamW)"),
    "ppo": dict(color=COLORS["proxy"], marker="v", label="RM, then PPO"),
}


def plot_on_off_policy(budgets, gold, kl_to_optimum, *, optimum_gold, ref_gold=None):
    """Gold reward and distance to ``pi*`` of each method against the labelling budget.

    Parameters
    ----------
    budgets : ndarray of shape (n,)
        Labelled comparisons per method.
    gold, kl_to_optimum : dict of str to ndarray of shape (n, n_seeds)
        Per method, the exact score of the final policy for each budget and seed; the
        plot shows the mean and its standard error.
    optimum_gold : float
        ``E_x E_{pi*} r_star`` of the optimum ``pi*_beta(r_star)``.
    ref_gold : float, optional
        ``E_x E_{pi_ref} r_star``.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If a method's arrays do not have one row per budget.
    """
    budgets = np.asarray(budgets, dtype=float)
    fig, (ax0, ax1) = new_figure(1, 2, width=5.2)
    for name in gold:
        g = np.atleast_2d(np.asarray(gold[name], float))
        d = np.atleast_2d(np.asarray(kl_to_optimum[name], float))
        if g.shape[0] != budgets.size or d.shape[0] != budgets.size:
            raise ValueError(f"gold[{name!r}] and kl_to_optimum[{name!r}] must have "
                             f"{budgets.size} rows, got {g.shape[0]} and {d.shape[0]}")
        style = METHOD_STYLE.get(name, dict(color=COLORS["fit"], marker="x", label=name))
        for ax, values in ((ax0, g), (ax1, d)):
            n = values.shape[1]
            se = values.std(1, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(budgets.size)
            ax.errorbar(budgets, values.mean(1), yerr=se, capsize=3, lw=1.8, **style)
    ax0.axhline(optimum_gold, color=COLORS["optimal"], ls="--", lw=1,
                label=r"$\pi^*_\beta(r^\star)$")
    if ref_gold is not None:
        ax0.axhline(ref_gold, color=COLORS["ref"], ls=":", lw=1, label=r"$\pi_{ref}$")
    for ax in (ax0, ax1):
        ax.set_xscale("log")
        ax.set_xlabel("labelled comparisons")
    ax0.set_ylabel(r"gold reward $E_x E_\pi r^\star$")
    ax0.set_title("Gold reward (mean $\\pm$ s.e. over seeds)")
    ax1.set_ylabel(r"$E_x\, KL(\pi \,\|\, \pi^*_\beta(r^\star))$ (nats)")
    ax1.set_title("Distance to the optimum the labels define")
    ax0.legend(fontsize="small")
    return fig
