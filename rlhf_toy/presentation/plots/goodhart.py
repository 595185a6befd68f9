"""Figures of Goodhart overoptimisation and reward-model ensembles (notebook 03)."""

from __future__ import annotations

import numpy as np

from rlhf_toy.gao import gao_curve
from rlhf_toy.presentation.plots._style import COLORS, check_same_length, new_figure

__all__ = [
    "plot_goodhart_gaussian", "plot_goodhart_heavy_tail", "plot_goodhart_learned",
    "plot_gao_fits", "plot_distribution_shift", "plot_overestimation_curves", "plot_ensembles",
]

#: Line styles of the aggregation rules of reward-model ensembles.
_ENSEMBLE_STYLE = {
    "single": dict(color=COLORS["proxy"], ls="-", label="single reward model"),
    "mean": dict(color=COLORS["policy"], ls="--", label="ensemble mean"),
    "min": dict(color=COLORS["gold"], ls="-", label="ensemble worst case (min)"),
    "uwo": dict(color=COLORS["optimal"], ls="-.", label=r"ensemble mean $-\lambda$ var (UWO)"),
}


def _sorted_by_d(curve):
    """Arrays ``d``, ``gold``, ``proxy`` of a curve mapping, sorted by ``d``."""
    check_same_length(d=curve["d"], gold=curve["gold"])
    d = np.asarray(curve["d"], float)
    order = np.argsort(d, kind="stable")
    out = {"d": d[order], "gold": np.asarray(curve["gold"], float)[order]}
    if curve.get("proxy") is not None:
        out["proxy"] = np.asarray(curve["proxy"], float)[order]
    return out


def _d_label(ax):
    ax.set_xlabel(r"$d = \sqrt{E_x\, KL(\pi \,\|\, \pi_{ref})}$")


def plot_goodhart_gaussian(opt, bon, inv_beta, overest, sigma2, *, regime=None):
    """Regressional Goodhart: gold keeps rising; overestimation ~ ``sigma^2 / beta``.

    Parameters
    ----------
    opt, bon : dict of str to ndarray
        Curves of ``pi*_beta`` and of best-of-n: ``d``, and the gains over ``pi_ref`` of
        ``proxy`` and ``gold`` (as from ``GoodhartCurve.centred()``).
    inv_beta : ndarray of shape (k,)
        ``1 / beta`` of the overestimation panel.
    overest : ndarray of shape (k,)
        ``E_{pi*}[r_hat - r_star] - E_{pi_ref}[r_hat - r_star]`` on a large table.
    sigma2 : float
        Noise variance: the line ``sigma^2 / beta``.
    regime : float, optional
        ``1/beta`` where the small-tilt regime ends (``1/sqrt(1 + sigma^2)``): a vertical
        line.

    Returns
    -------
    matplotlib.figure.Figure
    """
    check_same_length(inv_beta=inv_beta, overest=overest)
    fig, (ax0, ax1) = new_figure(1, 2, width=5.6, height=4.2)
    for curve, ls, name in ((opt, "--", r"$\pi^*_\beta$"), (bon, "-", "best-of-n")):
        c = _sorted_by_d(curve)
        ax0.plot(c["d"], c["proxy"], color=COLORS["proxy"], ls=ls, lw=2, label=f"{name}: proxy")
        ax0.plot(c["d"], c["gold"], color=COLORS["gold"], ls=ls, lw=2, label=f"{name}: gold")
    _d_label(ax0)
    ax0.set(ylabel=r"gain over $\pi_{ref}$",
            title="Gaussian noise: the gap grows, gold still rises")
    ax0.legend(fontsize="small", loc="upper left")
    inv_beta = np.asarray(inv_beta, float)
    ax1.loglog(inv_beta, np.maximum(np.asarray(overest, float), 1e-12), "o-",
               color=COLORS["proxy"], ms=4,
               label=r"exact $E_{\pi^*}[\hat r - r^*]$ (minus $\pi_{ref}$'s)")
    ax1.loglog(inv_beta, sigma2 * inv_beta, color=COLORS["fit"], ls=":", lw=2,
               label=rf"$\sigma^2/\beta$, $\sigma^2$={sigma2:g}")
    if regime is not None:
        ax1.axvline(regime, color=COLORS["ref"], ls="--", lw=1,
                    label=r"$\beta = \sqrt{1+\sigma^2}$")
    ax1.set(xlabel=r"$1/\beta$", ylabel="overestimation of the gold reward",
            title=r"Overestimation $\approx \sigma^2/\beta$ until responses run out")
    ax1.legend(fontsize="small", loc="upper left")
    return fig


def plot_goodhart_heavy_tail(heavy, worlds_gold, mean_heavy, mean_gauss):
    """Catastrophic Goodhart: heavy-tailed noise, the gold falls back under hard optimisation.

    Parameters
    ----------
    heavy : dict of str to ndarray
        One heavy-tailed world: ``d`` and the gains ``proxy``, ``gold``.
    worlds_gold : list of dict
        Heavy-tailed worlds, ``d`` and ``gold`` gains each (thin lines).
    mean_heavy, mean_gauss : dict of str to ndarray
        Curves averaged over worlds (heavy-tailed, and Gaussian noise of the same scale):
        ``d`` and ``gold``.

    Returns
    -------
    matplotlib.figure.Figure
        Left: one world, gold (left axis) and proxy (right axis). Right: gold over worlds.
    """
    fig, (ax0, ax1) = new_figure(1, 2, width=5.6, height=4.2)
    c = _sorted_by_d(heavy)
    ax0.plot(c["d"], c["gold"], color=COLORS["gold"], lw=2.5, label="gold (left axis)")
    i = int(np.argmax(c["gold"]))
    ax0.plot(c["d"][i], c["gold"][i], "o", color=COLORS["fit"], ms=6, label="gold peak")
    twin = ax0.twinx()
    twin.plot(c["d"], c["proxy"], color=COLORS["proxy"], lw=2, ls="--",
              label="proxy (right axis)")
    twin.set_ylabel(r"proxy gain over $\pi_{ref}$", color=COLORS["proxy"])
    _d_label(twin)  # (the twin's x axis is hidden; labelled for completeness)
    _d_label(ax0)
    ax0.set_ylabel(r"gold gain over $\pi_{ref}$", color=COLORS["gold"])
    ax0.set_title("One Student-t world: proxy soars, gold falls back")
    twin.set_title(ax0.get_title())  # the same text at the same place
    lines = ax0.get_lines() + twin.get_lines()
    ax0.legend(lines, [ln.get_label() for ln in lines], fontsize="small", loc="lower center")
    for k, w in enumerate(worlds_gold):
        cw = _sorted_by_d(w)
        ax1.plot(cw["d"], cw["gold"], color=COLORS["gold"], lw=0.7, alpha=0.35,
                 label="Student-t: single worlds" if k == 0 else None)
    cm = _sorted_by_d(mean_heavy)
    ax1.plot(cm["d"], cm["gold"], color=COLORS["gold"], lw=2.5,
             label="Student-t: average (left axis)")
    j = int(np.argmax(cm["gold"]))
    ax1.plot(cm["d"][j], cm["gold"][j], "o", color=COLORS["fit"], ms=6)
    # The Gaussian average gains several times more: on a shared axis it would flatten the
    # Student-t curves, so it gets its own colour and its own (right) axis, with the same zero.
    g = _sorted_by_d(mean_gauss)
    twin1 = ax1.twinx()
    twin1.plot(g["d"], g["gold"], color=COLORS["policy"], ls="--", lw=2.5,
               label="Gaussian: average (right axis)")
    j = int(np.argmax(g["gold"]))
    twin1.plot(g["d"][j], g["gold"][j], "o", color=COLORS["fit"], ms=6)
    _d_label(ax1)
    ax1.set(ylabel=r"gold gain, Student-t noise",
            title="Heavy tails gain little, then lose it (dots: peaks)")
    twin1.set_title(ax1.get_title())  # the same text at the same place
    _d_label(twin1)  # (the twin's x axis is hidden; labelled for completeness)
    ax1.yaxis.label.set_color(COLORS["gold"])
    ax1.tick_params(axis="y", colors=COLORS["gold"])
    twin1.set_ylabel("gold gain, Gaussian noise", color=COLORS["policy"])
    twin1.tick_params(axis="y", colors=COLORS["policy"])
    low, high = ax1.get_ylim()
    scale = 1.05 * max(float(np.max(g["gold"])), 1e-12) / high  # same zero, peak inside
    twin1.set_ylim(low * scale, high * scale)
    ax0.tick_params(axis="y", colors=COLORS["gold"])
    twin.tick_params(axis="y", colors=COLORS["proxy"])
    lines = [ln for ln in ax1.get_lines() + twin1.get_lines() if not ln.get_label().startswith("_")]
    ax1.legend(lines, [ln.get_label() for ln in lines], fontsize="small", loc="upper left")
    return fig


def plot_goodhart_learned(curves, peaks):
    """Learned-proxy Goodhart: gold peaks and falls; the peak moves out with more comparisons.

    Parameters
    ----------
    curves : dict of int to dict of ndarray
        By number of comparisons: the world-averaged curve, ``d`` and ``gold`` gain.
    peaks : dict of int to ndarray
        By number of comparisons: ``d`` at the gold peak of each world.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, (ax0, ax1) = new_figure(1, 2, width=5.6, height=4.2)
    # one colour and one line style per data size (shades of one colour are hard to tell apart)
    styles = [("#d95f02", ":"), ("#7570b3", "--"), ("#1b9e77", "-"), ("#e7298a", "-.")]
    for k, (n, curve) in enumerate(sorted(curves.items())):
        c = _sorted_by_d(curve)
        color, ls = styles[k % len(styles)]
        ax0.plot(c["d"], c["gold"], color=color, ls=ls, lw=2.5, label=f"{n:,} comparisons")
        i = int(np.argmax(c["gold"]))
        ax0.plot(c["d"][i], c["gold"][i], "o", color=color, ms=7, mec="k")
    _d_label(ax0)
    ax0.set(ylabel=r"gold gain over $\pi_{ref}$ (average of worlds)",
            title="Bradley-Terry proxy: gold peaks, then falls")
    ax0.legend(fontsize="small", loc="upper left")
    ns = np.array(sorted(peaks))
    for n in ns:
        p = np.asarray(peaks[n], float)
        ax1.plot(np.full(p.size, n), p, "o", color=COLORS["gold"], alpha=0.35, ms=4)
    means = np.array([np.mean(peaks[n]) for n in ns])
    ses = np.array([np.std(peaks[n], ddof=1) / np.sqrt(len(peaks[n])) if len(peaks[n]) > 1
                    else 0.0 for n in ns])
    ax1.errorbar(ns, means, yerr=2 * ses, color=COLORS["fit"], marker="s", capsize=4, lw=2,
                 label=r"mean $\pm$ 2 s.e.")
    ax1.set(xscale="log", xlabel="number of comparisons the reward model saw",
            ylabel=r"$d$ at the gold peak", title="More data: the peak comes later")
    ax1.legend(fontsize="small", loc="upper left")
    return fig


def plot_gao_fits(panels):
    """Gao et al.'s functional forms fitted to exact Goodhart curves.

    Parameters
    ----------
    panels : dict of str to dict
        By title: ``d`` and ``gold`` (gain over ``pi_ref``) of the data, and the fit's
        ``a``, ``b``, ``r2``, ``peak_d`` and ``form`` (``"bon"`` or ``"rl"``).

    Returns
    -------
    matplotlib.figure.Figure
        Data as dots, fit as a line extended past the data, coefficients in the legend.
    """
    fig, axes = new_figure(1, len(panels), width=5.0, height=4.2)
    axes = np.atleast_1d(axes)
    for ax, (title, p) in zip(axes, panels.items(), strict=True):
        c = _sorted_by_d(p)
        top = c["d"].max() * 1.3
        if np.isfinite(p["peak_d"]):
            top = max(top, min(1.1 * p["peak_d"], 2.0 * c["d"].max()))
        grid = np.linspace(0.0, top, 300)
        fit = gao_curve(grid, p["a"], p["b"], p["form"])
        formula = r"$d\,(a - b\,d)$" if p["form"] == "bon" else r"$d\,(a - b \log d)$"
        ax.plot(c["d"], c["gold"], "o", color=COLORS["gold"], ms=4, label="exact gold gain")
        ax.plot(grid, fit, color=COLORS["fit"], lw=2,
                label=(f"{formula}: a={p['a']:.3g}, b={p['b']:.3g}\n"
                       f"$R^2$={p['r2']:.3f}, predicted peak $d^*$={p['peak_d']:.3g}"))
        if np.isfinite(p["peak_d"]) and p["peak_d"] <= top:
            ax.axvline(p["peak_d"], color=COLORS["fit"], ls=":", lw=1)
        _d_label(ax)
        ax.set(ylabel=r"gold gain over $\pi_{ref}$", title=title)
        ax.legend(fontsize="small", loc="lower center")
    return fig


def plot_distribution_shift(d, mae, bias, mae_ref, abs_err, counts, pi_hard):
    """Distributional shift: the proxy is worst exactly where the optimised policy goes.

    Parameters
    ----------
    d, mae, bias : ndarray of shape (k,)
        Over a grid of ``beta``: distance of ``pi*_beta`` from ``pi_ref``, and the proxy's
        mean absolute and mean signed error weighted by ``pi*_beta``.
    mae_ref : float
        Mean absolute error weighted by ``pi_ref`` (the training distribution).
    abs_err, counts, pi_hard : ndarray of shape (X, Y)
        Per response: the proxy's absolute error, the number of comparisons it appeared
        in, and its probability under a hard-optimised ``pi*``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    check_same_length(d=d, mae=mae, bias=bias)
    fig, (ax0, ax1) = new_figure(1, 2, width=5.6, height=4.2)
    order = np.argsort(np.asarray(d, float))
    d = np.asarray(d, float)[order]
    ax0.plot(d, np.asarray(mae, float)[order], color=COLORS["proxy"], lw=2,
             label=r"$E_{\pi^*_\beta}|\hat r - r^*|$")
    ax0.plot(d, np.asarray(bias, float)[order], color=COLORS["proxy"], ls="--", lw=2,
             label=r"$E_{\pi^*_\beta}[\hat r - r^*]$")
    ax0.axhline(mae_ref, color=COLORS["ref"], ls=":", lw=2,
                label=rf"$E_{{\pi_{{ref}}}}|\hat r - r^*|$ = {mae_ref:.2f}")
    ax0.axhline(0.0, color=COLORS["ref"], lw=0.8)
    _d_label(ax0)
    ax0.set(ylabel="proxy error where the policy goes",
            title="Error of the reward model, weighted by the policy")
    ax0.legend(fontsize="small", loc="upper left")
    counts = np.asarray(counts, float).ravel()
    abs_err = np.asarray(abs_err, float).ravel()
    mass = np.asarray(pi_hard, float).ravel()
    ax1.scatter(counts + 1, abs_err, s=6, color=COLORS["ref"], alpha=0.4,
                label="every response")
    hot = mass > 0.01
    ax1.scatter(counts[hot] + 1, abs_err[hot], s=20 + 200 * mass[hot], facecolor="none",
                edgecolor=COLORS["optimal"], lw=1.5,
                label=r"where hard-optimised $\pi^*$ goes (size: mass)")
    ax1.set(xscale="log", xlabel="comparisons the response appeared in + 1",
            ylabel=r"$|\hat r - r^*|$ (aligned)",
            title="Few comparisons, large errors: that is where it goes")
    ax1.legend(fontsize="small", loc="upper right")
    return fig


def plot_overestimation_curves(inv_beta, curves):
    """Exercise 3: overestimation ``E_{pi*_beta}[r_hat - r_star]`` against ``1/beta``.

    Parameters
    ----------
    inv_beta : ndarray of shape (k,)
        ``1 / beta``.
    curves : dict of str to tuple
        By label: ``(values, se)`` with ``values`` of shape (k,) and ``se`` its standard
        error (shape (k,)) or ``None`` for exact curves.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = new_figure(width=7.0, height=4.2)
    inv_beta = np.asarray(inv_beta, float)
    palette = [COLORS["proxy"], COLORS["policy"], COLORS["optimal"], COLORS["gold"],
               COLORS["ref"]]
    for (label, (values, se)), color in zip(curves.items(), palette, strict=False):
        check_same_length(inv_beta=inv_beta, values=values)
        values = np.asarray(values, float)
        ax.plot(inv_beta, values, lw=2, color=color, label=label)
        if se is not None:
            se = np.asarray(se, float)
            ax.fill_between(inv_beta, values - 2 * se, values + 2 * se, color=color, alpha=0.2)
    ax.axhline(0.0, color=COLORS["ref"], lw=0.8)
    ax.set(xscale="log", xlabel=r"$1/\beta$ (optimisation pressure)",
           ylabel=r"overestimation $E_{\pi^*_\beta}[\hat r - r^*]$",
           title="Exercise 3: what grows as beta shrinks, and what need not")
    ax.legend(fontsize="small", loc="upper left")
    return fig


def plot_ensembles(curves, counts, dis_boot, dis_prior):
    """Reward-model ensembles: conservative aggregation against overoptimisation.

    Parameters
    ----------
    curves : dict of str to dict of ndarray
        ``"single"``, ``"mean"``, ``"min"``, ``"uwo"``: ``d`` and ``gold`` gain of the
        KL-optimal policies of each proxy.
    counts : ndarray of shape (X, Y)
        Comparisons each response appeared in.
    dis_boot, dis_prior : ndarray of shape (X, Y)
        Disagreement (std across members) of a bootstrap ensemble and of a
        randomised-prior ensemble.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, (ax0, ax1) = new_figure(1, 2, width=5.6, height=4.2)
    for name, curve in curves.items():
        c = _sorted_by_d(curve)
        style = _ENSEMBLE_STYLE.get(name, dict(color=COLORS["ref"], ls="-", label=name))
        ax0.plot(c["d"], c["gold"], lw=2, **style)
    _d_label(ax0)
    ax0.set(ylabel=r"gold gain over $\pi_{ref}$", title="Optimising each proxy: gold reward")
    ax0.legend(fontsize="small", loc="upper left")
    counts = np.asarray(counts, float).ravel() + 1
    ax1.scatter(counts, np.asarray(dis_prior, float).ravel(), s=8, color=COLORS["policy"],
                alpha=0.5, label="bootstrap + random priors")
    ax1.scatter(counts, np.asarray(dis_boot, float).ravel(), s=8, color=COLORS["proxy"],
                alpha=0.5, label="bootstrap only")
    ax1.set(xscale="log", xlabel="comparisons the response appeared in + 1",
            ylabel="disagreement (std across members)",
            title="Members disagree where data are scarce")
    ax1.legend(fontsize="small", loc="upper right")
    return fig
