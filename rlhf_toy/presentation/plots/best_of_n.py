"""Figures of best-of-n and rejection-sampling fine-tuning (notebook 04)."""

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
    "plot_bon_kl_bound", "plot_bon_win_rate", "plot_bon_vs_kl_optimal", "plot_bon_estimator",
    "plot_rft",
]

#: Line colours for several worlds / settings on one best-of-n figure.
_BON_PALETTE = ("#2166ac", "#e08214", "#c51b7d", "#1b7837", "#4d4d4d", "#8c510a")


def plot_bon_kl_bound(ns, kls, bound):
    """Exact ``KL(best-of-n || pi_ref)`` against ``n``, beside ``log n - (n-1)/n``.

    Parameters
    ----------
    ns : ndarray of shape (K,)
        Numbers of candidates.
    kls : dict of str to ndarray of shape (K,)
        Exact KL (averaged over prompts) of several worlds, by label.
    bound : ndarray of shape (K,)
        ``log n - (n - 1)/n``.

    Returns
    -------
    matplotlib.figure.Figure
        Log-``n`` axis; the bound dashed. Worlds with many small-mass responses of distinct
        reward follow the bound; worlds where a few responses hold the mass (or rewards
        tie) flatten out at the KL of always picking the top.
    """
    ns = check_counts_arg(ns, "ns")
    check_same_length(ns=ns, bound=bound, **check_table_dict(kls, "kls"))
    fig, ax = new_figure(width=6.8, height=4.4)
    ax.plot(ns, bound, color=COLORS["fit"], ls="--", lw=2.5,
            label=r"bound $\log n - (n-1)/n$")
    for (label, kl), color in zip(kls.items(), _BON_PALETTE * 4, strict=False):
        check_same_length(ns=ns, kl=kl)
        ax.plot(ns, kl, color=color, lw=2, marker="o", ms=3, label=label)
    ax.set(xscale="log", xlabel="n (candidates per prompt)",
           ylabel=r"$E_x\, KL(\pi_{bon} \,\|\, \pi_{ref})$ (nats)",
           title="KL of best-of-n: the bound and when it is tight")
    ax.legend(fontsize="small", loc="upper left")
    return fig


def plot_bon_win_rate(ns, win_rates):
    """Win rate of best-of-n over a reference sample against ``n / (n + 1)``.

    Parameters
    ----------
    ns : ndarray of shape (K,)
        Numbers of candidates.
    win_rates : dict of str to ndarray of shape (K,)
        Exact win rate (averaged over prompts) of several worlds, by label.

    Returns
    -------
    matplotlib.figure.Figure
        Left: the win rates and ``n/(n+1)``. Right: the shortfall ``n/(n+1) - win`` on
        log-log axes (points where it is below ``1e-13``, e.g. ``n = 1``, are left out).
    """
    ns = check_counts_arg(ns, "ns").astype(float)
    check_same_length(ns=ns, **check_table_dict(win_rates, "win_rates"))
    ideal = ns / (ns + 1.0)
    fig, (ax0, ax1) = new_figure(1, 2, width=5.6, height=4.2)
    ax0.plot(ns, ideal, color=COLORS["fit"], ls="--", lw=2.5, label=r"$n/(n+1)$")
    for (label, win), color in zip(win_rates.items(), _BON_PALETTE * 4, strict=False):
        check_same_length(ns=ns, win=win)
        win = np.asarray(win, float)
        ax0.plot(ns, win, color=color, lw=2, marker="o", ms=3, label=label)
        gap = np.where(ideal - win > 1e-13, ideal - win, np.nan)
        ax1.plot(ns, gap, color=color, lw=2, marker="o", ms=3,
                 label=label)
    ax0.set(xscale="log", xlabel="n", ylabel=r"$P(r(y_{bon}) > r(y'))$ + ties/2",
            title="Win rate against one reference sample")
    ax0.legend(fontsize="small", loc="lower right")
    ax1.set(xscale="log", yscale="log", xlabel="n", ylabel=r"$n/(n+1)$ - win rate",
            title="Shortfall from n/(n+1): discreteness and ties")
    ax1.legend(fontsize="small", loc="lower right")
    return fig


def plot_bon_vs_kl_optimal(panels):
    """Gold and proxy reward against ``sqrt(KL)``: best-of-n versus ``pi*_beta``.

    Parameters
    ----------
    panels : dict of str to dict of ndarray
        One panel per world, by title. Each value holds ``bon_kl``, ``bon_gold``,
        ``bon_proxy`` (shape (K,), over ``n``) and ``opt_kl``, ``opt_gold``,
        ``opt_proxy`` (shape (B,), over ``beta``), all averaged over prompts.

    Returns
    -------
    matplotlib.figure.Figure
        ``d = sqrt(KL)`` on the x axis as in Gao et al. (2023); gold green, proxy magenta;
        best-of-n solid with markers, ``pi*`` dashed.
    """
    fig, axes = new_figure(1, len(panels), width=5.6, height=4.4)
    axes = np.atleast_1d(axes)
    for ax, (title, c) in zip(axes, panels.items(), strict=True):
        check_same_length(bon_kl=c["bon_kl"], bon_gold=c["bon_gold"],
                           bon_proxy=c["bon_proxy"])
        check_same_length(opt_kl=c["opt_kl"], opt_gold=c["opt_gold"],
                           opt_proxy=c["opt_proxy"])
        d_bon = np.sqrt(np.maximum(np.asarray(c["bon_kl"], float), 0.0))
        d_opt = np.sqrt(np.maximum(np.asarray(c["opt_kl"], float), 0.0))
        order = np.argsort(d_opt)
        ax.plot(d_bon, c["bon_proxy"], color=COLORS["proxy"], marker="o", ms=3, lw=2,
                label="best-of-n: proxy")
        ax.plot(d_bon, c["bon_gold"], color=COLORS["gold"], marker="o", ms=3, lw=2,
                label="best-of-n: gold")
        ax.plot(d_opt[order], np.asarray(c["opt_proxy"])[order], color=COLORS["proxy"],
                ls="--", lw=2, label=r"$\pi^*_\beta$: proxy")
        ax.plot(d_opt[order], np.asarray(c["opt_gold"])[order], color=COLORS["gold"],
                ls="--", lw=2, label=r"$\pi^*_\beta$: gold")
        ax.set_xlim(0, 1.02 * d_bon.max())
        ax.set(xlabel=r"$d = \sqrt{E_x KL(\pi \| \pi_{ref})}$", ylabel="expected reward",
               title=title)
        ax.legend(fontsize="small", loc="upper left")
    return fig


def plot_bon_estimator(ns, exact, estimates, disjoint=None, *, n_samples):
    """The unbiased best-of-n estimator from ``N`` samples against the exact curve.

    Parameters
    ----------
    ns : ndarray of shape (K,)
        Numbers of candidates.
    exact : ndarray of shape (K,)
        Exact expected (gold) reward of best-of-n.
    estimates : ndarray of shape (R, K)
        The unbiased estimator on ``R`` independent sets of ``N`` samples.
    disjoint : ndarray of shape (R, K), optional
        The "disjoint groups" estimator (``N // n`` groups of ``n``) on the same samples.
    n_samples : int
        ``N``, for the title.

    Returns
    -------
    matplotlib.figure.Figure
        Left: exact curve, estimator mean and a +-1 sd band. Right: the estimators'
        standard deviations against ``n`` (log-log).
    """
    ns = np.asarray(ns, float)
    estimates = np.atleast_2d(np.asarray(estimates, float))
    check_same_length(ns=ns, exact=exact, estimates_row=estimates[0])
    fig, (ax0, ax1) = new_figure(1, 2, width=5.6, height=4.2)
    mean, sd = estimates.mean(0), estimates.std(0)
    ax0.plot(ns, exact, color=COLORS["fit"], lw=2.5, ls="--", label="exact")
    ax0.plot(ns, mean, color=COLORS["gold"], lw=2, marker="o", ms=3,
             label=f"unbiased estimator, mean of {len(estimates)} runs")
    ax0.fill_between(ns, mean - sd, mean + sd, color=COLORS["gold"], alpha=0.2,
                     label=r"$\pm$1 sd of one run")
    ax1.plot(ns, sd, color=COLORS["gold"], lw=2, marker="o", ms=3, label="unbiased estimator")
    if disjoint is not None:
        disjoint = np.atleast_2d(np.asarray(disjoint, float))
        ax0.plot(ns, disjoint.mean(0), color=COLORS["policy"], lw=1.5, ls=":",
                 label="disjoint groups, mean")
        ax1.plot(ns, disjoint.std(0), color=COLORS["policy"], lw=2, marker="s", ms=3,
                 label=r"disjoint groups ($N/n$ of them)")
    ax0.set(xscale="log", xlabel="n", ylabel="expected gold reward of best-of-n",
            title=f"Estimating best-of-n from N = {n_samples} samples")
    ax0.legend(fontsize="small", loc="lower center")
    ax1.set(xscale="log", yscale="log", xlabel="n", ylabel="standard deviation of the estimate",
            title="All subsets beat disjoint groups")
    ax1.legend(fontsize="small")
    return fig


def plot_rft(sample_sizes, distances, *, rounds, curve):
    """Rejection-sampling fine-tuning against the exact best-of-n policy.

    Parameters
    ----------
    sample_sizes : ndarray of shape (S,)
        Survivors per prompt.
    distances : dict of str to ndarray of shape (S,)
        ``E_x TV(pi_RFT, pi_bon)`` per sample size, by label (e.g. ``"n = 4"``).
    rounds : dict of str to ndarray
        Iterated RFT: ``kl``, ``gold``, ``proxy`` (shape (k,), exact expectations of the
        fitted policies) and ``labels`` (k strings, e.g. ``"round 1"``).
    curve : dict of str to ndarray
        The exact best-of-n curve ``bon_kl``, ``bon_gold``, ``bon_proxy`` (shape (K,)),
        and optionally ``opt_kl``, ``opt_gold``, ``opt_proxy`` for ``pi*_beta``.

    Returns
    -------
    matplotlib.figure.Figure
        Left: distance of the fit from ``pi_bon`` against sample size (log-log) with a
        ``1/sqrt(S)`` guide. Right: the rounds of iterated RFT on the exact best-of-n
        reward-``sqrt(KL)`` curve.
    """
    sample_sizes = np.asarray(sample_sizes, float)
    fig, (ax0, ax1) = new_figure(1, 2, width=5.6, height=4.4)
    for (label, dist), color in zip(distances.items(), _BON_PALETTE * 4, strict=False):
        check_same_length(sample_sizes=sample_sizes, dist=dist)
        dist = np.asarray(dist, float)
        ax0.plot(sample_sizes, dist, color=color, lw=2, marker="o", label=label)
    first = np.asarray(next(iter(distances.values())), float)
    ax0.plot(sample_sizes, first[0] * np.sqrt(sample_sizes[0] / sample_sizes),
             color=COLORS["fit"], ls="--", label=r"$\propto 1/\sqrt{S}$")
    ax0.set(xscale="log", yscale="log", xlabel="S (kept samples per prompt)",
            ylabel=r"$E_x\, TV(\pi_{RFT}, \pi_{bon})$", title="One round of RFT fits best-of-n")
    ax0.legend(fontsize="small")

    d = np.sqrt(np.maximum(np.asarray(curve["bon_kl"], float), 0.0))
    ax1.plot(d, curve["bon_proxy"], color=COLORS["proxy"], lw=2, label="best-of-n: proxy")
    ax1.plot(d, curve["bon_gold"], color=COLORS["gold"], lw=2, label="best-of-n: gold")
    if "opt_kl" in curve:
        d_opt = np.sqrt(np.maximum(np.asarray(curve["opt_kl"], float), 0.0))
        order = np.argsort(d_opt)
        ax1.plot(d_opt[order], np.asarray(curve["opt_proxy"])[order], color=COLORS["proxy"],
                 ls="--", lw=1.5, label=r"$\pi^*_\beta$: proxy")
        ax1.plot(d_opt[order], np.asarray(curve["opt_gold"])[order], color=COLORS["gold"],
                 ls="--", lw=1.5, label=r"$\pi^*_\beta$: gold")
    check_same_length(kl=rounds["kl"], gold=rounds["gold"], proxy=rounds["proxy"])
    d_r = np.sqrt(np.maximum(np.asarray(rounds["kl"], float), 0.0))
    ax1.plot(d_r, rounds["proxy"], "D", ms=8, mfc="none", mew=2, color=COLORS["proxy"],
             label="iterated RFT: proxy")
    ax1.plot(d_r, rounds["gold"], "D", ms=8, mfc="none", mew=2, color=COLORS["gold"],
             label="iterated RFT: gold")
    for x, y, text in zip(d_r, rounds["proxy"], rounds["labels"], strict=True):
        ax1.annotate(text, (x, y), textcoords="offset points", xytext=(8, -14),
                     fontsize="small")
    ax1.set_xlim(0, 1.05 * max(d.max(), d_r.max()))
    ax1.set(xlabel=r"$d = \sqrt{E_x KL(\pi \| \pi_{ref})}$", ylabel="expected reward",
            title=r"k rounds of best-of-n land on best-of-$n^k$")
    ax1.legend(fontsize="small", loc="upper left")
    return fig
