"""Figures of Bradley-Terry and the KL-regularised optimal policy (notebook 01)."""

from __future__ import annotations

import numpy as np

from rlhf_toy.presentation.plots._style import (
    COLORS,
    check_counts_arg,
    check_same_length,
    check_table_dict,
    new_figure,
)

__all__ = [
    "plot_preference_probability", "plot_bt_recovery", "plot_optimal_policy_betas",
    "plot_reward_kl_frontier", "plot_first_order_condition", "plot_convergence",
]


def plot_preference_probability(delta, prob):
    """The Bradley-Terry preference curve ``P(y_w > y_l | x) = sigma(r_w - r_l)``.

    Parameters
    ----------
    delta : ndarray of shape (n,)
        Reward gaps ``r(x, y_w) - r(x, y_l)``.
    prob : ndarray of shape (n,)
        Preference probabilities at those gaps.

    Returns
    -------
    matplotlib.figure.Figure
    """
    check_same_length(delta=delta, prob=prob)
    fig, ax = new_figure(width=5.5)
    ax.plot(delta, prob, color=COLORS["policy"], lw=2, label=r"$\sigma(r_w - r_l)$")
    ax.axhline(0.5, color=COLORS["ref"], ls=":", label="indifference")
    ax.set(xlabel=r"reward gap $r(x, y_w) - r(x, y_l)$", ylabel=r"$P(y_w \succ y_l \mid x)$",
           title="Bradley-Terry: preferences from reward gaps")
    ax.legend(loc="upper left")
    return fig


def plot_bt_recovery(r_true, r_fit, n_comparisons, rmse, rmse_std=None):
    """Bradley-Terry maximum likelihood recovers the reward up to a per-prompt shift.

    Parameters
    ----------
    r_true, r_fit : ndarray of shape (X, Y)
        Row-centred true reward and the fitted table (one data set size).
    n_comparisons : ndarray of shape (k,)
        Data set sizes.
    rmse : ndarray of shape (k,)
        Root-mean-square error of the fitted (centred) table at each size.
    rmse_std : ndarray of shape (k,), optional
        Its standard deviation over seeds (error bars).

    Returns
    -------
    matplotlib.figure.Figure
        Left: fitted against true entries; right: error against ``n`` (log-log) with a
        ``1/sqrt(n)`` guide.
    """
    check_same_length(n_comparisons=n_comparisons, rmse=rmse)
    r_true, r_fit = np.asarray(r_true).ravel(), np.asarray(r_fit).ravel()
    n_comparisons, rmse = np.asarray(n_comparisons, float), np.asarray(rmse, float)
    fig, (ax0, ax1) = new_figure(1, 2, width=5.0)
    lim = [min(r_true.min(), r_fit.min()) - 0.2, max(r_true.max(), r_fit.max()) + 0.2]
    ax0.plot(lim, lim, color=COLORS["ref"], ls=":", label="perfect recovery")
    ax0.scatter(r_true, r_fit, s=18, color=COLORS["proxy"], label="fitted entries")
    ax0.set(xlabel="true reward (row-centred)", ylabel="Bradley-Terry MLE",
            title="Fitted vs true reward")
    ax0.legend(loc="upper left")
    ax1.errorbar(n_comparisons, rmse, yerr=rmse_std, marker="o", color=COLORS["proxy"],
                 capsize=3, label="RMSE of the fit")
    guide = rmse[-1] * np.sqrt(n_comparisons[-1] / n_comparisons)
    ax1.plot(n_comparisons, guide, color=COLORS["fit"], ls="--", label=r"$\propto 1/\sqrt{n}$")
    ax1.set(xscale="log", yscale="log", xlabel="number of comparisons n",
            ylabel="RMSE (row-centred)", title="Error shrinks like 1/sqrt(n)")
    ax1.legend()
    return fig


def plot_optimal_policy_betas(reward, pi_ref, betas, pi_stars):
    """The optimal policy of one prompt as a Boltzmann reweighting of ``pi_ref``.

    Parameters
    ----------
    reward, pi_ref : ndarray of shape (Y,)
        One prompt's reward and reference policy.
    betas : ndarray of shape (k,)
        KL coefficients.
    pi_stars : ndarray of shape (k, Y)
        ``pi*_beta`` of that prompt for each ``beta``.

    Returns
    -------
    matplotlib.figure.Figure
        Probabilities against responses sorted by reward: ``pi_ref`` and ``pi*`` for
        each ``beta``.
    """
    check_same_length(betas=betas, pi_stars=pi_stars)
    check_same_length(reward=reward, pi_ref=pi_ref)
    for pi in pi_stars:
        check_same_length(reward=reward, pi_stars_row=pi)
    order = np.argsort(reward)
    ranks = np.arange(len(order))
    fig, ax = new_figure(width=7.0)
    ax.plot(ranks, np.asarray(pi_ref)[order], color=COLORS["ref"], lw=2.5, ls="--",
            label=r"$\pi_{ref}$")
    from matplotlib import colormaps

    # darker orange for smaller beta (stronger optimisation)
    rank_of_beta = np.argsort(np.argsort(np.asarray(betas, float)))
    shades = colormaps["Oranges"](np.linspace(0.95, 0.4, len(betas)))[rank_of_beta]
    for beta, row, shade in zip(betas, pi_stars, shades, strict=True):
        ax.plot(ranks, np.asarray(row)[order], marker="o", ms=3, color=shade,
                label=rf"$\pi^*$, $\beta$ = {beta:g}")
    ax.set_xticks(ranks[:: max(1, len(ranks) // 8)])
    ax.set(xlabel="response, sorted by reward (low to high)", ylabel=r"probability $\pi(y \mid x)$",
           title=r"$\pi^* \propto \pi_{ref}\, e^{r/\beta}$: smaller $\beta$, sharper tilt")
    ax.legend(fontsize="small")
    return fig


def plot_reward_kl_frontier(kl, reward, betas, *, gold=None, points=None, annotate=None):
    """The exact reward-KL frontier traced by ``pi*_beta``.

    Parameters
    ----------
    kl, reward, betas : ndarray of shape (k,)
        ``E_x KL(pi*_beta || pi_ref)``, ``E_x E_{pi*_beta} r`` and the betas.
    gold : ndarray of shape (k,), optional
        Expected gold reward under ``pi*_beta`` when ``reward`` is a proxy.
    points : dict of str to (float, float), optional
        Extra points ``(kl, reward)`` to mark, e.g. the end of a training run.
    annotate : sequence of float, optional
        Betas to label on the curve (the nearest grid points).

    Returns
    -------
    matplotlib.figure.Figure
    """
    check_same_length(kl=kl, reward=reward, betas=betas)
    kl, reward, betas = (np.asarray(a, float) for a in (kl, reward, betas))
    fig, ax = new_figure(width=6.4)
    ax.plot(kl, reward, color=COLORS["optimal"], lw=2, label=r"$\pi^*_\beta$: optimised reward")
    if gold is not None:
        check_same_length(kl=kl, gold=gold)
        ax.plot(kl, gold, color=COLORS["gold"], lw=2, label=r"$\pi^*_\beta$: gold reward")
    for b in annotate or ():
        i = int(np.argmin(np.abs(np.log(betas) - np.log(b))))
        ax.plot(kl[i], reward[i], "o", color=COLORS["optimal"])
        ax.annotate(rf"$\beta$={betas[i]:.2g}", (kl[i], reward[i]), textcoords="offset points",
                    xytext=(6, -12), fontsize="small")
    for (name, (k, r)), marker in zip((points or {}).items(), "s^vDP*", strict=False):
        ax.plot(k, r, marker, ms=9, mfc="none", mew=2, color=COLORS["policy"], label=name)
    ax.set(xlabel=r"$E_x\, KL(\pi \,\|\, \pi_{ref})$ (nats)",
           ylabel=r"expected reward $E_x E_\pi r$", title="The exact reward-KL frontier")
    ax.legend(loc="lower right")
    return fig


def plot_first_order_condition(reward, grads, *, title=None):
    """Exercise 1: ``dJ/dpi(y)`` is constant over ``y`` at ``pi*`` and only there.

    Parameters
    ----------
    reward : ndarray of shape (Y,)
        One prompt's reward (responses are sorted by it).
    grads : dict of str to ndarray of shape (Y,)
        ``dJ/dpi(y|x)`` of that prompt under several policies (e.g. ``pi*``, ``pi_ref``).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    check_same_length(reward=reward, **check_table_dict(grads, "grads"))
    order = np.argsort(reward)
    ranks = np.arange(len(order))
    fig, ax = new_figure(width=6.4)
    colors = [COLORS["optimal"], COLORS["ref"], COLORS["policy"], COLORS["proxy"]]
    for (name, g), color in zip(grads.items(), colors * 4, strict=False):
        ax.plot(ranks, np.asarray(g)[order], marker="o", ms=4, color=color, label=name)
    ax.set(xlabel="response, sorted by reward (low to high)",
           ylabel=r"$\partial J / \partial \pi(y \mid x)$",
           title=title or r"First-order condition: flat at $\pi^*$ (exercise 1)")
    ax.legend()
    return fig


def plot_convergence(steps, curves, *, ylabel, title, logy=True):
    """Distance to the optimum against training steps, one line per run.

    Parameters
    ----------
    steps : ndarray of shape (n,)
        Recorded steps (shared by the curves).
    curves : dict of str to ndarray of shape (n,)
        A non-negative gap per run (e.g. ``J(pi*) - J(pi_t)`` or ``KL(pi_t || pi*)``).
    ylabel, title : str
    logy : bool, default True
        Log scale for the gap (zeros are clipped to the smallest positive value shown).

    Returns
    -------
    matplotlib.figure.Figure
    """
    steps = check_counts_arg(steps, "steps", minimum=0)
    check_same_length(steps=steps, **check_table_dict(curves, "curves"))
    fig, ax = new_figure(width=6.4)
    palette = [COLORS["policy"], COLORS["optimal"], COLORS["proxy"], COLORS["gold"],
               COLORS["ref"], COLORS["fit"]]
    for (name, gap), color in zip(curves.items(), palette * 4, strict=False):
        check_same_length(steps=steps, **{name.replace(" ", "_"): gap})
        gap = np.asarray(gap, float)
        if logy:
            gap = np.maximum(gap, 1e-16)
        ax.plot(steps, gap, color=color, lw=2, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel=ylabel, title=title)
    ax.legend()
    return fig
