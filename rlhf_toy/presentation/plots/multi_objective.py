"""Figures of multi-objective RLHF: the Pareto front of helpfulness and harm.

Chapter: the reward as one summary of several goals; the experiment is
:mod:`rlhf_toy.bandit.experiments.multi_objective`. Functions return a
:class:`matplotlib.figure.Figure` and never call ``show()``.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy.presentation.plots._style import COLORS, new_figure

__all__ = ["plot_pareto_front"]


def plot_pareto_front(scalarised, random_points, constrained, c, optimum, landings,
                      gold=None):
    """The exact fronts of helpfulness against harm, and where each method lands.

    Parameters
    ----------
    scalarised : (ndarray, ndarray)
        ``(j_harm, j_help)`` of the linear-scalarisation sweep (shape (n,) each), with
        ``j_help = E[help] - beta KL`` and ``j_harm = E[harm] + beta KL``.
    random_points : (ndarray, ndarray)
        ``(j_harm, j_help)`` of random policies, and (second panel) their
        ``(E[harm], j_help)`` when given as a 3-tuple ``(j_harm, j_help, harm)``.
    constrained : (ndarray, ndarray)
        ``(harm, j_help)`` of the Lagrangian front (the constrained optimum for every
        budget).
    c : float
        The harm budget.
    optimum : (float, float)
        ``(harm, j_help)`` of the exact constrained optimum at ``c``.
    landings : dict of str to (ndarray, ndarray)
        Per method, the ``(harm, j_help)`` where its runs end (one entry per seed).
    gold : dict, optional
        A third panel in the gold rewards: ``{"front": (harm, j_help), "optimum": (harm,
        j_help), "landings": {name: (harm, j_help)}}``.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If paired arrays differ in length.
    """
    panels = 2 if gold is None else 3
    fig, axes = new_figure(1, panels, width=4.6)
    ax0, ax1 = axes[0], axes[1]
    rand_harm_j, rand_help = np.asarray(random_points[0]), np.asarray(random_points[1])
    if rand_harm_j.shape != rand_help.shape:
        raise ValueError("random_points must pair arrays of the same length")
    ax0.scatter(rand_harm_j, rand_help, s=6, color="#bbbbbb", label="random policies")
    x, y = (np.asarray(a) for a in scalarised)
    if x.shape != y.shape:
        raise ValueError("scalarised must pair arrays of the same length")
    ax0.plot(x, y, "-o", ms=3, color=COLORS["optimal"], lw=2,
             label=r"$\pi^*_\beta(w\, r_{help} - (1-w)\, r_{harm})$")
    ax0.set_xlabel(r"$E[harm] + \beta\, KL$ (lower is better)")
    ax0.set_ylabel(r"$E[help] - \beta\, KL$")
    ax0.set_title("Linear scalarisation: the exact front")
    ax0.legend(fontsize="small")

    if len(random_points) == 3:
        ax1.scatter(np.asarray(random_points[2]), rand_help, s=6, color="#bbbbbb")
    _constrained_panel(ax1, constrained, c, optimum, landings, "trained (proxy) rewards")
    if gold is not None:
        _constrained_panel(axes[2], gold["front"], c, gold["optimum"], gold["landings"],
                           "gold rewards")
    return fig


def _constrained_panel(ax, front, c, optimum, landings, title):
    x, y = (np.asarray(a) for a in front)
    if x.shape != y.shape:
        raise ValueError("front must pair arrays of the same length")
    ax.plot(x, y, color=COLORS["optimal"], lw=2,
            label=r"$\pi^*_\beta(r_{help} - \lambda r_{harm})$")
    ax.axvline(c, color=COLORS["proxy"], ls="--", lw=1, label=f"budget c = {c:.2f}")
    ax.plot(*optimum, "*", ms=14, color=COLORS["optimal"], mec="k", label="exact optimum at c")
    markers = ["o", "s", "^", "v", "D"]
    palette = [COLORS["policy"], COLORS["gold"], COLORS["fit"], COLORS["ref"], COLORS["proxy"]]
    for (name, (hx, hy)), marker, color in zip(landings.items(), markers * 3, palette * 3,
                                               strict=False):
        hx, hy = np.atleast_1d(hx), np.atleast_1d(hy)
        if hx.shape != hy.shape:
            raise ValueError(f"landings[{name!r}] must pair arrays of the same length")
        ax.scatter(hx, hy, marker=marker, s=30, color=color, alpha=0.8, label=name, zorder=3)
    # Zoom on the budget: one unit of harm either side of it.
    near = (x >= c - 1.0) & (x <= c + 1.0)
    if np.any(near):
        span = y[near].max() - y[near].min()
        ax.set_xlim(c - 1.0, min(c + 1.0, x.max() + 0.1))
        ax.set_ylim(y[near].min() - 0.1 * span, y[near].max() + 0.1 * span)
    ax.set_xlabel(r"$E[harm]$")
    ax.set_ylabel(r"$E[help] - \beta\, KL$")
    ax.set_title(f"Constrained front, {title}")
    ax.legend(fontsize="small")
