"""Every figure of the project, as functions that take results and return a Figure.

The functions never call ``show()`` and never touch pyplot's global state: they build a
:class:`matplotlib.figure.Figure` directly, which notebooks display and
:mod:`rlhf_toy.figures` saves. Each takes the arrays an experiment computed, so a
figure can be redrawn without redoing the experiment. Sections follow the chapter.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

#: One colour per role, used by every figure so that gold, proxy and reference read alike.
COLORS = {
    "gold": "#1b7837",
    "proxy": "#c51b7d",
    "ref": "#4d4d4d",
    "policy": "#2166ac",
    "optimal": "#e08214",
    "fit": "#000000",
}


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 6.4, height: float = 4.0,
               **subplot_kw):
    """A figure of ``nrows x ncols`` axes sized for a notebook cell (inches per panel).

    Returns ``(fig, axes)`` with ``axes`` squeezed as in ``plt.subplots``.
    """
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=True, **subplot_kw)
    return fig, axes


def _check_same_length(**arrays) -> None:
    lengths = {name: len(np.atleast_1d(a)) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays must have the same length, got {lengths}")


# --- Bradley-Terry and the optimal policy (notebook 01) ------------------------------------


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
    _check_same_length(delta=delta, prob=prob)
    fig, ax = new_figure(width=5.5)
    ax.plot(delta, prob, color=COLORS["policy"], lw=2, label=r"$\sigma(r_w - r_l)$")
    ax.axhline(0.5, color=COLORS["ref"], ls=":", label="indifference")
    ax.set_xlabel(r"reward gap $r(x, y_w) - r(x, y_l)$")
    ax.set_ylabel(r"$P(y_w \succ y_l \mid x)$")
    ax.set_title("Bradley-Terry: preferences from reward gaps")
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
    _check_same_length(n_comparisons=n_comparisons, rmse=rmse)
    r_true, r_fit = np.asarray(r_true).ravel(), np.asarray(r_fit).ravel()
    n_comparisons, rmse = np.asarray(n_comparisons, float), np.asarray(rmse, float)
    fig, (ax0, ax1) = new_figure(1, 2, width=5.0)
    lim = [min(r_true.min(), r_fit.min()) - 0.2, max(r_true.max(), r_fit.max()) + 0.2]
    ax0.plot(lim, lim, color=COLORS["ref"], ls=":", label="perfect recovery")
    ax0.scatter(r_true, r_fit, s=18, color=COLORS["proxy"], label="fitted entries")
    ax0.set_xlabel("true reward (row-centred)")
    ax0.set_ylabel("Bradley-Terry MLE")
    ax0.set_title("Fitted vs true reward")
    ax0.legend(loc="upper left")
    ax1.errorbar(n_comparisons, rmse, yerr=rmse_std, marker="o", color=COLORS["proxy"],
                 capsize=3, label="RMSE of the fit")
    guide = rmse[-1] * np.sqrt(n_comparisons[-1] / n_comparisons)
    ax1.plot(n_comparisons, guide, color=COLORS["fit"], ls="--", label=r"$\propto 1/\sqrt{n}$")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("number of comparisons n")
    ax1.set_ylabel("RMSE (row-centred)")
    ax1.set_title("Error shrinks like 1/sqrt(n)")
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
    _check_same_length(betas=betas, pi_stars=pi_stars)
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
    ax.set_xlabel("response, sorted by reward (low to high)")
    ax.set_ylabel(r"probability $\pi(y \mid x)$")
    ax.set_title(r"$\pi^* \propto \pi_{ref}\, e^{r/\beta}$: smaller $\beta$, sharper tilt")
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
    _check_same_length(kl=kl, reward=reward, betas=betas)
    kl, reward, betas = (np.asarray(a, float) for a in (kl, reward, betas))
    fig, ax = new_figure(width=6.4)
    ax.plot(kl, reward, color=COLORS["optimal"], lw=2, label=r"$\pi^*_\beta$: optimised reward")
    if gold is not None:
        _check_same_length(kl=kl, gold=gold)
        ax.plot(kl, gold, color=COLORS["gold"], lw=2, label=r"$\pi^*_\beta$: gold reward")
    for b in annotate or ():
        i = int(np.argmin(np.abs(np.log(betas) - np.log(b))))
        ax.plot(kl[i], reward[i], "o", color=COLORS["optimal"])
        ax.annotate(rf"$\beta$={betas[i]:.2g}", (kl[i], reward[i]), textcoords="offset points",
                    xytext=(6, -12), fontsize="small")
    for (name, (k, r)), marker in zip((points or {}).items(), "s^vDP*", strict=False):
        ax.plot(k, r, marker, ms=9, mfc="none", mew=2, color=COLORS["policy"], label=name)
    ax.set_xlabel(r"$E_x\, KL(\pi \,\|\, \pi_{ref})$ (nats)")
    ax.set_ylabel(r"expected reward $E_x E_\pi r$")
    ax.set_title("The exact reward-KL frontier")
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
    order = np.argsort(reward)
    ranks = np.arange(len(order))
    fig, ax = new_figure(width=6.4)
    colors = [COLORS["optimal"], COLORS["ref"], COLORS["policy"], COLORS["proxy"]]
    for (name, g), color in zip(grads.items(), colors * 4, strict=False):
        ax.plot(ranks, np.asarray(g)[order], marker="o", ms=4, color=color, label=name)
    ax.set_xlabel("response, sorted by reward (low to high)")
    ax.set_ylabel(r"$\partial J / \partial \pi(y \mid x)$")
    ax.set_title(title or r"First-order condition: flat at $\pi^*$ (exercise 1)")
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
    fig, ax = new_figure(width=6.4)
    palette = [COLORS["policy"], COLORS["optimal"], COLORS["proxy"], COLORS["gold"],
               COLORS["ref"], COLORS["fit"]]
    for (name, gap), color in zip(curves.items(), palette * 4, strict=False):
        _check_same_length(steps=steps, **{name.replace(" ", "_"): gap})
        gap = np.asarray(gap, float)
        if logy:
            gap = np.maximum(gap, 1e-16)
        ax.plot(steps, gap, color=color, lw=2, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return fig


# --- DPO (notebook 02) ---------------------------------------------------------------------


def plot_dpo_loss_and_weight(margin, loss, weight):
    """Exercise 2: the DPO loss and the weight ``sigma(h_l - h_w)`` of its gradient.

    Parameters
    ----------
    margin : ndarray of shape (n,)
        Implicit-reward margins ``h_w - h_l`` (``h = beta log(pi / pi_ref)``).
    loss : ndarray of shape (n,)
        ``-log sigma(h_w - h_l)``.
    weight : ndarray of shape (n,)
        ``sigma(h_l - h_w)``: the gradient is ``-beta weight`` on ``log pi(y_w)`` and
        ``+beta weight`` on ``log pi(y_l)``.

    Returns
    -------
    matplotlib.figure.Figure
        Left the loss, right the weight; the region where the implicit reward ranks the
        pair wrongly (``h_w < h_l``) is shaded.
    """
    _check_same_length(margin=margin, loss=loss, weight=weight)
    margin = np.asarray(margin, float)
    fig, (ax0, ax1) = new_figure(1, 2, width=5.0)
    for ax, y, label, color in [(ax0, loss, r"$-\log\sigma(h_w - h_l)$", COLORS["policy"]),
                                (ax1, weight, r"$\sigma(h_l - h_w)$", COLORS["proxy"])]:
        ax.axvspan(margin.min(), 0.0, color=COLORS["ref"], alpha=0.12,
                   label="implicit reward ranks the pair wrongly")
        ax.plot(margin, y, color=color, lw=2, label=label)
        ax.set_xlabel(r"implicit-reward margin $h_w - h_l$")
        ax.legend(loc="upper right", fontsize="small")
    ax0.set_ylabel("loss")
    ax0.set_title("DPO loss")
    ax1.set_ylabel(r"gradient weight ($|\partial L / \partial \log\pi| / \beta$)")
    ax1.set_title("Weight of the DPO gradient")
    return fig


def plot_dpo_convergence(steps, kl_curves, pi_final, pi_star):
    """DPO on preferences covering every pair converges to ``pi*`` of the labelling reward.

    Parameters
    ----------
    steps : ndarray of shape (n,)
        Recorded steps.
    kl_curves : dict of str to ndarray of shape (n,)
        ``E_x KL(pi_t || pi*)`` along each run.
    pi_final, pi_star : ndarray of shape (X, Y)
        The final DPO policy (of the first run) and the optimum.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, (ax0, ax1) = new_figure(1, 2, width=5.0)
    palette = [COLORS["policy"], COLORS["proxy"], COLORS["gold"], COLORS["ref"]]
    for (name, kl), color in zip(kl_curves.items(), palette * 3, strict=False):
        _check_same_length(steps=steps, kl=kl)
        ax0.plot(steps, np.maximum(np.asarray(kl, float), 1e-18), lw=2, color=color, label=name)
    ax0.set_yscale("log")
    ax0.set_xlabel("step")
    ax0.set_ylabel(r"$E_x\, KL(\pi_t \,\|\, \pi^*)$")
    ax0.set_title(r"DPO converges to $\pi^*$")
    ax0.legend()
    p, q = np.asarray(pi_star).ravel(), np.asarray(pi_final).ravel()
    lo = max(min(p.min(), q.min()), 1e-12)
    ax1.plot([lo, 1], [lo, 1], color=COLORS["ref"], ls=":", label="equality")
    ax1.scatter(p, q, s=14, color=COLORS["optimal"], label="(prompt, response)")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel(r"$\pi^*(y \mid x)$ (closed form)")
    ax1.set_ylabel(r"$\pi_{DPO}(y \mid x)$ after training")
    ax1.set_title("Final DPO policy against the optimum")
    ax1.legend(loc="upper left")
    return fig


def plot_dpo_uncovered(probs, covered, reward, steps, uncovered_mass, *, levels=None):
    """DPO on data that leaves responses uncovered moves probability onto them.

    Parameters
    ----------
    probs : dict of str to ndarray of shape (Y,)
        Policies of one prompt to compare (e.g. ``pi_ref``, ``pi*``, DPO).
    covered : ndarray of bool, shape (Y,)
        Responses that appear in the preference data.
    reward : ndarray of shape (Y,)
        Their gold reward (shown in the tick labels).
    steps : ndarray of shape (n,)
        Recorded DPO steps.
    uncovered_mass : ndarray of shape (n,)
        Probability of the uncovered responses along training.
    levels : dict of str to float, optional
        Horizontal reference levels for the right panel (e.g. under ``pi_ref`` and ``pi*``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_same_length(steps=steps, uncovered_mass=uncovered_mass)
    covered = np.asarray(covered, bool)
    n = len(covered)
    fig, (ax0, ax1) = new_figure(1, 2, width=5.2)
    palette = [COLORS["ref"], COLORS["optimal"], COLORS["policy"], COLORS["proxy"]]
    width = 0.8 / len(probs)
    for k, ((name, p), color) in enumerate(zip(probs.items(), palette * 2, strict=False)):
        ax0.bar(np.arange(n) + (k - (len(probs) - 1) / 2) * width, p, width=width,
                color=color, label=name)
    ax0.set_xticks(np.arange(n))
    ax0.set_xticklabels([f"y{i}\nr={r:+.1f}\n{'data' if c else 'UNSEEN'}"
                         for i, (r, c) in enumerate(zip(reward, covered, strict=True))],
                        fontsize="small")
    ax0.set_xlabel("response (gold reward, in the data or not)")
    ax0.set_ylabel(r"probability $\pi(y \mid x)$")
    ax0.set_title("Where the probability goes")
    ax0.legend(fontsize="small")
    ax1.plot(steps, uncovered_mass, color=COLORS["policy"], lw=2, label="DPO")
    for (name, level), color in zip((levels or {}).items(), palette, strict=False):
        ax1.axhline(level, color=color, ls="--", label=name)
    ax1.set_xlabel("step")
    ax1.set_ylabel("probability of unseen responses")
    ax1.set_title("Unseen responses gain mass during DPO")
    ax1.legend(fontsize="small")
    return fig


def plot_logprobs_fall(steps, logp_chosen, logp_rejected, margin, gold=None, gold_ref=None):
    """DPO can lower the log-probabilities of both chosen and rejected responses.

    Parameters
    ----------
    steps : ndarray of shape (n,)
        Recorded steps.
    logp_chosen, logp_rejected : ndarray of shape (n,)
        Mean ``log pi(y_w|x)`` and ``log pi(y_l|x)`` over the data.
    margin : ndarray of shape (n,)
        Mean implicit-reward margin ``h_w - h_l``.
    gold : ndarray of shape (n,), optional
        Expected gold reward of the policy along training (third panel).
    gold_ref : float, optional
        Gold reward of the optimum ``pi*`` (a reference line in the third panel).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_same_length(steps=steps, logp_chosen=logp_chosen, logp_rejected=logp_rejected,
                       margin=margin)
    n_panels = 2 if gold is None else 3
    fig, axes = new_figure(1, n_panels, width=4.3)
    ax0, ax1 = axes[0], axes[1]
    ax0.plot(steps, logp_chosen, color=COLORS["gold"], lw=2, label=r"chosen $\log\pi(y_w|x)$")
    ax0.plot(steps, logp_rejected, color=COLORS["proxy"], lw=2,
             label=r"rejected $\log\pi(y_l|x)$")
    ax0.set_xlabel("step")
    ax0.set_ylabel("mean log-probability over the data")
    ax0.set_title("Both log-probabilities fall")
    ax0.legend(fontsize="small")
    ax1.plot(steps, margin, color=COLORS["policy"], lw=2, label=r"$h_w - h_l$")
    ax1.set_xlabel("step")
    ax1.set_ylabel("mean implicit-reward margin")
    ax1.set_title("... while the margin grows")
    ax1.legend()
    if gold is not None:
        _check_same_length(steps=steps, gold=gold)
        ax2 = axes[2]
        ax2.plot(steps, gold, color=COLORS["gold"], lw=2, label="DPO policy")
        if gold_ref is not None:
            ax2.axhline(gold_ref, color=COLORS["optimal"], ls="--", label=r"$\pi^*$")
        ax2.set_xlabel("step")
        ax2.set_ylabel(r"expected gold reward $E_x E_\pi r^\star$")
        ax2.set_title("Gold reward")
        ax2.legend()
    return fig


def plot_preference_loss_comparison(runs, frontier_kl, frontier_gold, *, steps=None):
    """DPO, IPO, cDPO and hinge trained on the same preference data.

    Parameters
    ----------
    runs : dict of str to (ndarray, ndarray)
        Per loss, ``(kl, gold)`` along training: ``E_x KL(pi_t || pi_ref)`` and the expected
        gold reward.
    frontier_kl, frontier_gold : ndarray of shape (k,)
        The exact frontier of ``pi*_beta`` for the gold reward (the best any policy can
        do at each KL).
    steps : ndarray of shape (n,), optional
        Recorded steps; if given, a second panel shows the KL against the step.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_same_length(frontier_kl=frontier_kl, frontier_gold=frontier_gold)
    fig, axes = new_figure(1, 1 if steps is None else 2, width=5.4)
    axes = np.atleast_1d(axes)
    ax0 = axes[0]
    ax0.plot(frontier_kl, frontier_gold, color=COLORS["optimal"], lw=2.5, alpha=0.6,
             label=r"$\pi^*_\beta$ of the gold reward")
    palette = [COLORS["policy"], COLORS["proxy"], COLORS["gold"], COLORS["fit"]]
    for (name, (kl, gold)), color in zip(runs.items(), palette * 2, strict=False):
        _check_same_length(kl=kl, gold=gold)
        ax0.plot(kl, gold, color=color, lw=1.8, label=name)
        ax0.plot(kl[-1], gold[-1], "o", color=color)
    ax0.set_xlabel(r"$E_x\, KL(\pi_t \,\|\, \pi_{ref})$ (nats)")
    ax0.set_ylabel(r"expected gold reward $E_x E_\pi r^\star$")
    ax0.set_title("Trajectories (dot: end of training)")
    ax0.legend(fontsize="small")
    if steps is not None:
        ax1 = axes[1]
        for (name, (kl, _)), color in zip(runs.items(), palette * 2, strict=False):
            _check_same_length(steps=steps, kl=kl)
            ax1.plot(steps, kl, color=color, lw=1.8, label=name)
        ax1.set_xlabel("step")
        ax1.set_ylabel(r"$E_x\, KL(\pi_t \,\|\, \pi_{ref})$ (nats)")
        ax1.set_title("KL from the reference")
        ax1.legend(fontsize="small")
    return fig


# --- Goodhart: overoptimisation, ensembles (notebook 03) -----------------------------------

#: Line styles of the aggregation rules of reward-model ensembles.
_ENSEMBLE_STYLE = {
    "single": dict(color=COLORS["proxy"], ls="-", label="single reward model"),
    "mean": dict(color=COLORS["policy"], ls="--", label="ensemble mean"),
    "min": dict(color=COLORS["gold"], ls="-", label="ensemble worst case (min)"),
    "uwo": dict(color=COLORS["optimal"], ls="-.", label=r"ensemble mean $-\lambda$ var (UWO)"),
}


def _sorted_by_d(curve):
    """Arrays ``d``, ``gold``, ``proxy`` of a curve mapping, sorted by ``d``."""
    _check_same_length(d=curve["d"], gold=curve["gold"])
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
    _check_same_length(inv_beta=inv_beta, overest=overest)
    fig, (ax0, ax1) = new_figure(1, 2, width=5.6, height=4.2)
    for curve, ls, name in ((opt, "--", r"$\pi^*_\beta$"), (bon, "-", "best-of-n")):
        c = _sorted_by_d(curve)
        ax0.plot(c["d"], c["proxy"], color=COLORS["proxy"], ls=ls, lw=2, label=f"{name}: proxy")
        ax0.plot(c["d"], c["gold"], color=COLORS["gold"], ls=ls, lw=2, label=f"{name}: gold")
    _d_label(ax0)
    ax0.set_ylabel(r"gain over $\pi_{ref}$")
    ax0.set_title("Gaussian noise: the gap grows, gold still rises")
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
    ax1.set_xlabel(r"$1/\beta$")
    ax1.set_ylabel("overestimation of the gold reward")
    ax1.set_title(r"Overestimation $\approx \sigma^2/\beta$ until responses run out")
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
    for curve, ls, name in ((mean_heavy, "-", "Student-t: average"),
                            (mean_gauss, "--", "Gaussian: average")):
        cm = _sorted_by_d(curve)
        ax1.plot(cm["d"], cm["gold"], color=COLORS["gold"], ls=ls, lw=2.5, label=name)
        j = int(np.argmax(cm["gold"]))
        ax1.plot(cm["d"][j], cm["gold"][j], "o", color=COLORS["fit"], ms=6)
    _d_label(ax1)
    ax1.set_ylabel(r"gold gain over $\pi_{ref}$")
    ax1.set_title("Heavy tails gain little, then lose it (dots: peaks)")
    ax1.legend(fontsize="small", loc="upper left")
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
    shades = np.linspace(0.35, 1.0, len(curves))
    for (n, curve), shade in zip(sorted(curves.items()), shades, strict=True):
        c = _sorted_by_d(curve)
        color = (0.1 * shade, 0.47 * shade, 0.22 * shade)
        ax0.plot(c["d"], c["gold"], color=color, lw=2, label=f"{n:,} comparisons")
        i = int(np.argmax(c["gold"]))
        ax0.plot(c["d"][i], c["gold"][i], "o", color=color, ms=7, mec="k")
    _d_label(ax0)
    ax0.set_ylabel(r"gold gain over $\pi_{ref}$ (average of worlds)")
    ax0.set_title("Bradley-Terry proxy: gold peaks, then falls")
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
    ax1.set_xscale("log")
    ax1.set_xlabel("number of comparisons the reward model saw")
    ax1.set_ylabel(r"$d$ at the gold peak")
    ax1.set_title("More data: the peak comes later")
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
        if p["form"] == "bon":
            fit = grid * (p["a"] - p["b"] * grid)
            formula = r"$d\,(a - b\,d)$"
        else:
            fit = p["a"] * grid - p["b"] * grid * np.log(np.where(grid > 0, grid, 1.0))
            formula = r"$d\,(a - b \log d)$"
        ax.plot(c["d"], c["gold"], "o", color=COLORS["gold"], ms=4, label="exact gold gain")
        ax.plot(grid, fit, color=COLORS["fit"], lw=2,
                label=(f"{formula}: a={p['a']:.3g}, b={p['b']:.3g}\n"
                       f"$R^2$={p['r2']:.3f}, predicted peak $d^*$={p['peak_d']:.3g}"))
        if np.isfinite(p["peak_d"]) and p["peak_d"] <= top:
            ax.axvline(p["peak_d"], color=COLORS["fit"], ls=":", lw=1)
        _d_label(ax)
        ax.set_ylabel(r"gold gain over $\pi_{ref}$")
        ax.set_title(title)
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
    _check_same_length(d=d, mae=mae, bias=bias)
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
    ax0.set_ylabel("proxy error where the policy goes")
    ax0.set_title("Error of the reward model, weighted by the policy")
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
    ax1.set_xscale("log")
    ax1.set_xlabel("comparisons the response appeared in + 1")
    ax1.set_ylabel(r"$|\hat r - r^*|$ (aligned)")
    ax1.set_title("Few comparisons, large errors: that is where it goes")
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
        _check_same_length(inv_beta=inv_beta, values=values)
        values = np.asarray(values, float)
        ax.plot(inv_beta, values, lw=2, color=color, label=label)
        if se is not None:
            se = np.asarray(se, float)
            ax.fill_between(inv_beta, values - 2 * se, values + 2 * se, color=color, alpha=0.2)
    ax.axhline(0.0, color=COLORS["ref"], lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(r"$1/\beta$ (optimisation pressure)")
    ax.set_ylabel(r"overestimation $E_{\pi^*_\beta}[\hat r - r^*]$")
    ax.set_title("Exercise 3: what grows as beta shrinks, and what need not")
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
    ax0.set_ylabel(r"gold gain over $\pi_{ref}$")
    ax0.set_title("Optimising each proxy: gold reward")
    ax0.legend(fontsize="small", loc="upper left")
    counts = np.asarray(counts, float).ravel() + 1
    ax1.scatter(counts, np.asarray(dis_prior, float).ravel(), s=8, color=COLORS["policy"],
                alpha=0.5, label="bootstrap + random priors")
    ax1.scatter(counts, np.asarray(dis_boot, float).ravel(), s=8, color=COLORS["proxy"],
                alpha=0.5, label="bootstrap only")
    ax1.set_xscale("log")
    ax1.set_xlabel("comparisons the response appeared in + 1")
    ax1.set_ylabel("disagreement (std across members)")
    ax1.set_title("Members disagree where data are scarce")
    ax1.legend(fontsize="small", loc="upper right")
    return fig


# --- Best-of-n and rejection sampling (notebook 04) ----------------------------------------

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
    _check_same_length(ns=ns, bound=bound)
    fig, ax = new_figure(width=6.8, height=4.4)
    ax.plot(ns, bound, color=COLORS["fit"], ls="--", lw=2.5,
            label=r"bound $\log n - (n-1)/n$")
    for (label, kl), color in zip(kls.items(), _BON_PALETTE * 4, strict=False):
        _check_same_length(ns=ns, kl=kl)
        ax.plot(ns, kl, color=color, lw=2, marker="o", ms=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("n (candidates per prompt)")
    ax.set_ylabel(r"$E_x\, KL(\pi_{bon} \,\|\, \pi_{ref})$ (nats)")
    ax.set_title("KL of best-of-n: the bound and when it is tight")
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
    ns = np.asarray(ns, float)
    ideal = ns / (ns + 1.0)
    fig, (ax0, ax1) = new_figure(1, 2, width=5.6, height=4.2)
    ax0.plot(ns, ideal, color=COLORS["fit"], ls="--", lw=2.5, label=r"$n/(n+1)$")
    for (label, win), color in zip(win_rates.items(), _BON_PALETTE * 4, strict=False):
        _check_same_length(ns=ns, win=win)
        win = np.asarray(win, float)
        ax0.plot(ns, win, color=color, lw=2, marker="o", ms=3, label=label)
        gap = np.where(ideal - win > 1e-13, ideal - win, np.nan)
        ax1.plot(ns, gap, color=color, lw=2, marker="o", ms=3,
                 label=label)
    ax0.set_xscale("log")
    ax0.set_xlabel("n")
    ax0.set_ylabel(r"$P(r(y_{bon}) > r(y'))$ + ties/2")
    ax0.set_title("Win rate against one reference sample")
    ax0.legend(fontsize="small", loc="lower right")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("n")
    ax1.set_ylabel(r"$n/(n+1)$ - win rate")
    ax1.set_title("Shortfall from n/(n+1): discreteness and ties")
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
        _check_same_length(bon_kl=c["bon_kl"], bon_gold=c["bon_gold"],
                           bon_proxy=c["bon_proxy"])
        _check_same_length(opt_kl=c["opt_kl"], opt_gold=c["opt_gold"],
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
        ax.set_xlabel(r"$d = \sqrt{E_x KL(\pi \| \pi_{ref})}$")
        ax.set_ylabel("expected reward")
        ax.set_title(title)
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
    _check_same_length(ns=ns, exact=exact, estimates_row=estimates[0])
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
    ax0.set_xscale("log")
    ax0.set_xlabel("n")
    ax0.set_ylabel("expected gold reward of best-of-n")
    ax0.set_title(f"Estimating best-of-n from N = {n_samples} samples")
    ax0.legend(fontsize="small", loc="lower center")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("n")
    ax1.set_ylabel("standard deviation of the estimate")
    ax1.set_title("All subsets beat disjoint groups")
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
        _check_same_length(sample_sizes=sample_sizes, dist=dist)
        dist = np.asarray(dist, float)
        ax0.plot(sample_sizes, dist, color=color, lw=2, marker="o", label=label)
    first = np.asarray(next(iter(distances.values())), float)
    ax0.plot(sample_sizes, first[0] * np.sqrt(sample_sizes[0] / sample_sizes),
             color=COLORS["fit"], ls="--", label=r"$\propto 1/\sqrt{S}$")
    ax0.set_xscale("log")
    ax0.set_yscale("log")
    ax0.set_xlabel("S (kept samples per prompt)")
    ax0.set_ylabel(r"$E_x\, TV(\pi_{RFT}, \pi_{bon})$")
    ax0.set_title("One round of RFT fits best-of-n")
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
    _check_same_length(kl=rounds["kl"], gold=rounds["gold"], proxy=rounds["proxy"])
    d_r = np.sqrt(np.maximum(np.asarray(rounds["kl"], float), 0.0))
    ax1.plot(d_r, rounds["proxy"], "D", ms=8, mfc="none", mew=2, color=COLORS["proxy"],
             label="iterated RFT: proxy")
    ax1.plot(d_r, rounds["gold"], "D", ms=8, mfc="none", mew=2, color=COLORS["gold"],
             label="iterated RFT: gold")
    for x, y, text in zip(d_r, rounds["proxy"], rounds["labels"], strict=True):
        ax1.annotate(text, (x, y), textcoords="offset points", xytext=(8, -14),
                     fontsize="small")
    ax1.set_xlim(0, 1.05 * max(d.max(), d_r.max()))
    ax1.set_xlabel(r"$d = \sqrt{E_x KL(\pi \| \pi_{ref})}$")
    ax1.set_ylabel("expected reward")
    ax1.set_title(r"k rounds of best-of-n land on best-of-$n^k$")
    ax1.legend(fontsize="small", loc="upper left")
    return fig


# --- KL estimators and mode-seeking (notebook 05) ------------------------------------------

#: Line styles of notebook 05: one colour per estimator and per KL direction.
_ESTIMATOR_COLORS = {"k1": COLORS["policy"], "k2": COLORS["proxy"], "k3": COLORS["optimal"]}
_DIRECTION_COLORS = {"reverse": COLORS["policy"], "forward": COLORS["proxy"]}


def plot_kl_estimators(table, batch_negative=None):
    """Bias and spread of Schulman's k1, k2, k3 against the true KL, and negative k1 estimates.

    Parameters
    ----------
    table : dict of str to ndarray of shape (k,)
        :func:`rlhf_toy.bandit.kl_study.estimator_table`: ``"kl"``, ``"p_negative_k1"``,
        and ``"<k>_rel_bias"``, ``"<k>_rel_std"`` for ``k`` in k1, k2, k3.
    batch_negative : dict of int to (ndarray, ndarray), optional
        Batch size ``B`` to ``(Monte Carlo, normal approximation)`` of the probability
        that the batch mean of k1 is negative, each of shape (k,).

    Returns
    -------
    matplotlib.figure.Figure
        Three panels against ``KL(pi || pi_ref)`` (log scale): bias / KL, std / KL (log),
        and how often k1 is negative.
    """
    kl = np.asarray(table["kl"], float)
    fig, (ax0, ax1, ax2) = new_figure(1, 3, width=4.6, height=3.8)
    for name, color in _ESTIMATOR_COLORS.items():
        _check_same_length(kl=kl, bias=table[f"{name}_rel_bias"], std=table[f"{name}_rel_std"])
        ls = "--" if name == "k3" else "-"  # k1 and k3 both sit on 0 in the bias panel
        ax0.plot(kl, table[f"{name}_rel_bias"], color=color, lw=2, ls=ls, label=name)
        ax1.plot(kl, table[f"{name}_rel_std"], color=color, lw=2, label=name)
    ax0.axhline(0, color=COLORS["ref"], lw=0.8, ls=":")
    ax0.set_xscale("log")
    ax0.set_xlabel(r"true $KL(\pi \,\|\, \pi_{ref})$ (nats)")
    ax0.set_ylabel("bias / KL")
    ax0.set_title("Bias: only k2 is biased")
    ax0.legend()
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel(r"true $KL(\pi \,\|\, \pi_{ref})$ (nats)")
    ax1.set_ylabel("std of one sample / KL")
    ax1.set_title("Spread: k3 wins near, explodes far")
    ax1.legend()
    ax2.plot(kl, table["p_negative_k1"], color=COLORS["policy"], lw=2,
             label="one sample (exact)")
    shades = np.linspace(0.5, 1.0, len(batch_negative or {}))
    for (size, (mc, normal)), shade in zip((batch_negative or {}).items(), shades, strict=True):
        ax2.plot(kl, mc, "o", ms=4, color=COLORS["fit"], alpha=float(shade),
                 label=f"mean of {size} (Monte Carlo)")
        ax2.plot(kl, normal, ls="--", color=COLORS["fit"], alpha=float(shade),
                 label=f"mean of {size} (normal approx.)")
    ax2.set_xscale("log")
    ax2.set_xlabel(r"true $KL(\pi \,\|\, \pi_{ref})$ (nats)")
    ax2.set_ylabel("P(k1 estimate < 0)")
    ax2.set_title("A 'negative KL' is k1 being unbiased")
    ax2.legend(fontsize="small")
    return fig


def plot_kl_gradients(grads, steps, distances):
    """What each way of putting the KL in training differentiates, and where it converges.

    Parameters
    ----------
    grads : dict of str to ndarray of shape (Y,)
        One prompt's gradients wrt the logits, keyed as
        :func:`rlhf_toy.bandit.kl_study.kl_gradients` (any subset; ``"reverse_kl"`` and
        ``"forward_kl"`` are drawn as lines, the estimators as markers).
    steps : ndarray of shape (n,)
        Recorded steps of the ascent runs.
    distances : dict of str to ndarray of shape (n,)
        Per run label, a distance to a target policy at each step (e.g.
        ``KL(pi_t || pi*)``); labels containing "forward" are dashed.

    Returns
    -------
    matplotlib.figure.Figure
        Left: gradient components per response; right: distances against steps (log).
    """
    fig, (ax0, ax1) = new_figure(1, 2, width=6.0, height=4.2)
    ys = np.arange(len(next(iter(grads.values()))))
    lines = {"reverse_kl": (COLORS["policy"], r"$\nabla KL(\pi\|\pi_{ref})$ (true)"),
             "forward_kl": (COLORS["proxy"], r"$\nabla KL(\pi_{ref}\|\pi)$ (forward)")}
    markers = {"k1_in_reward": ("o", COLORS["policy"], "k1 as reward"),
               "k2_in_loss": ("x", COLORS["policy"], "k2 in loss"),
               "k3_in_loss": ("s", COLORS["proxy"], "k3 in loss (GRPO)"),
               "k3_in_reward": ("^", COLORS["optimal"], "k3 as reward"),
               "k1_in_loss": ("D", COLORS["fit"], "k1 in loss")}
    for name, g in grads.items():
        if name in lines:
            color, label = lines[name]
            ax0.plot(ys, g, color=color, lw=2, label=label)
        elif name in markers:
            marker, color, label = markers[name]
            ax0.plot(ys, g, marker, ms=7, mfc="none", mew=1.5, color=color, label=label,
                     ls="none")
    ax0.axhline(0, color=COLORS["ref"], lw=0.8, ls=":")
    ax0.set_xlabel("response y")
    ax0.set_ylabel(r"expected gradient wrt logit $\theta_y$")
    ax0.set_title("Which KL does each estimator differentiate?")
    ax0.legend(fontsize="small")
    palette = [COLORS["policy"], COLORS["proxy"], COLORS["fit"], COLORS["optimal"],
               COLORS["gold"], COLORS["ref"]]
    for (name, d), color in zip(distances.items(), palette * 4, strict=False):
        _check_same_length(steps=steps, distance=d)
        ls = "--" if "forward" in name else "-"
        ax1.plot(steps, np.maximum(np.asarray(d, float), 1e-16), color=color, lw=2, ls=ls,
                 label=name)
    ax1.set_yscale("log")
    ax1.set_xlabel("gradient step")
    ax1.set_ylabel("KL to the target policy (nats)")
    ax1.set_title("Exact ascent on E[r] - beta * (KL penalty)")
    ax1.legend(fontsize="small")
    return fig


def _gaussian_curve(grid, mean, std):
    from rlhf_toy.bandit.modes import discretized_gaussian

    return discretized_gaussian(grid, mean, std)


def plot_mode_seeking(grid, far, far_fits, close, close_fits, profile=None):
    """Fitting one Gaussian to two modes: reverse KL locks on, forward KL covers.

    Parameters
    ----------
    grid : ndarray of shape (G,)
    far, close : ndarray of shape (G,)
        Targets with well-separated and with close modes.
    far_fits, close_fits : dict of str to (float, float)
        Label to ``(mean, std)`` of a fitted Gaussian; labels containing "reverse" or
        "forward" get that direction's colour, labels containing "local" are dashed.
    profile : (ndarray, ndarray), optional
        ``(means, min over std of KL(q || far))``: the reverse-KL landscape.

    Returns
    -------
    matplotlib.figure.Figure
    """
    n = 3 if profile is not None else 2
    fig, axes = new_figure(1, n, width=4.8, height=3.8)
    for ax, target, fits, title in [(axes[0], far, far_fits, "Separated modes"),
                                    (axes[1], close, close_fits, "Close modes")]:
        ax.fill_between(grid, target, color=COLORS["ref"], alpha=0.25, label="target")
        for label, (mean, std) in fits.items():
            color = next((c for k, c in _DIRECTION_COLORS.items() if k in label), COLORS["fit"])
            ls = "--" if "local" in label else "-"
            ax.plot(grid, _gaussian_curve(grid, mean, std), color=color, lw=2, ls=ls,
                    label=f"{label}: {mean:.2f} ± {std:.2f}")
        ax.set_xlabel("response y")
        ax.set_ylabel("probability")
        ax.set_title(title)
        ax.legend(fontsize="small", loc="upper left")
    if profile is not None:
        means, values = profile
        _check_same_length(means=means, values=values)
        ax = axes[2]
        ax.plot(means, values, color=_DIRECTION_COLORS["reverse"], lw=2,
                label="best std at each mean")
        ax.set_xlabel("Gaussian mean")
        ax.set_ylabel(r"$\min_\sigma KL(q \,\|\, target)$")
        ax.set_title("Reverse-KL landscape (separated)")
        ax.legend(fontsize="small")
    return fig


def plot_mode_collapse(grid, pi_ref, shown, sweep, fits=None):
    """The RLHF optimum drops the modes of ``pi_ref`` as ``beta`` shrinks.

    Parameters
    ----------
    grid, pi_ref : ndarray of shape (G,)
        The 1-D response grid and the (multi-modal) reference policy.
    shown : dict of float to ndarray of shape (G,)
        ``beta`` to ``pi*_beta``, drawn in the first panel.
    sweep : dict
        :func:`rlhf_toy.bandit.modes.rlhf_mode_sweep`: ``"betas"``, ``"entropy_star"``,
        ``"n_modes_star"``, ``"reward_star"`` and the ``_forward`` counterparts.
    fits : dict, optional
        :func:`rlhf_toy.bandit.modes.rlhf_gaussian_fits` plus ``"beta"``: drawn in a
        fourth panel.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = new_figure(2, 2, width=6.0, height=3.9)
    ax0, ax1, ax2, ax3 = axes.ravel()
    ax0.fill_between(grid, pi_ref, color=COLORS["ref"], alpha=0.3, label=r"$\pi_{ref}$")
    shades = np.linspace(0.4, 1.0, len(shown))
    for (beta, pi), shade in zip(shown.items(), shades, strict=True):
        ax0.plot(grid, pi, color=COLORS["optimal"], alpha=float(shade), lw=2,
                 label=rf"$\pi^*$, $\beta$ = {beta:g}")
    ax0.set_xlabel("response y")
    ax0.set_ylabel("probability")
    ax0.set_title(r"$\pi^* \propto \pi_{ref} e^{r/\beta}$ keeps fewer modes")
    ax0.legend(fontsize="small")
    betas = np.asarray(sweep["betas"], float)
    ax1.plot(sweep["reward_star"], sweep["entropy_star"], color=COLORS["optimal"], lw=2,
             label=r"$\pi^*$: $-\beta\,KL(\pi\|\pi_{ref})$")
    ax1.plot(sweep["reward_forward"], sweep["entropy_forward"], color=COLORS["proxy"], lw=2,
             ls="--", label=r"optimum of $-\beta\,KL(\pi_{ref}\|\pi)$")
    ax1.set_xlabel(r"expected reward $E_\pi r$")
    ax1.set_ylabel("entropy (nats)")
    ax1.set_title("Entropy at equal reward")
    ax1.legend(fontsize="small")
    ax2.step(betas, sweep["n_modes_star"], where="mid", color=COLORS["optimal"], lw=2,
             label=r"$\pi^*$ (reverse KL)")
    ax2.step(betas, sweep["n_modes_forward"], where="mid", color=COLORS["proxy"], lw=2,
             ls="--", label="forward-KL optimum")
    ax2.set_xscale("log")
    ax2.set_xlabel(r"$\beta$")
    ax2.set_ylabel("modes (≥ 5% of the peak)")
    ax2.set_yticks(np.arange(1, max(np.max(sweep["n_modes_star"]),
                                    np.max(sweep["n_modes_forward"])) + 1))
    ax2.set_title(r"Modes kept as $\beta$ shrinks")
    ax2.legend(fontsize="small")
    if fits is None:
        ax3.set_visible(False)
        return fig
    ax3.fill_between(grid, fits["pi_star"], color=COLORS["optimal"], alpha=0.3,
                     label=rf"$\pi^*$, $\beta$ = {fits['beta']:g}")
    for key, label, color in [("rlhf", "RLHF fit (reverse)", _DIRECTION_COLORS["reverse"]),
                              ("gdc", "distribution matching (forward)",
                               _DIRECTION_COLORS["forward"])]:
        mean, std = fits[key]
        ax3.plot(grid, _gaussian_curve(grid, mean, std), color=color, lw=2,
                 label=f"{label}: J = {fits['objective_' + key]:.3f}")
    ax3.set_xlabel("response y")
    ax3.set_ylabel("probability")
    ax3.set_title("Best single-Gaussian policy")
    ax3.legend(fontsize="small")
    return fig



# --- The tiny GPT (notebook 06) ------------------------------------------------------------
