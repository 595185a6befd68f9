"""Figures of DPO and its variants (notebook 02)."""

from __future__ import annotations

import numpy as np

from rlhf_toy._validate import check_float
from rlhf_toy.presentation.plots._style import (
    COLORS,
    check_counts_arg,
    check_same_length,
    new_figure,
)

__all__ = [
    "plot_dpo_loss_and_weight", "plot_dpo_convergence", "plot_dpo_uncovered",
    "plot_logprobs_fall", "plot_preference_loss_comparison",
]


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
    check_same_length(margin=margin, loss=loss, weight=weight)
    margin = np.asarray(margin, float)
    fig, (ax0, ax1) = new_figure(1, 2, width=5.0)
    for ax, y, label, color in [(ax0, loss, r"$-\log\sigma(h_w - h_l)$", COLORS["policy"]),
                                (ax1, weight, r"$\sigma(h_l - h_w)$", COLORS["proxy"])]:
        ax.axvspan(margin.min(), 0.0, color=COLORS["ref"], alpha=0.12,
                   label="implicit reward ranks the pair wrongly")
        ax.plot(margin, y, color=color, lw=2, label=label)
        ax.set_xlabel(r"implicit-reward margin $h_w - h_l$")
        ax.legend(loc="upper right", fontsize="small")
    ax0.set(ylabel="loss", title="DPO loss")
    ax1.set(ylabel=r"gradient weight ($|\partial L / \partial \log\pi| / \beta$)",
            title="Weight of the DPO gradient")
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
        check_same_length(steps=steps, kl=kl)
        ax0.plot(steps, np.maximum(np.asarray(kl, float), 1e-18), lw=2, color=color, label=name)
    ax0.set(yscale="log", xlabel="step", ylabel=r"$E_x\, KL(\pi_t \,\|\, \pi^*)$",
            title=r"DPO converges to $\pi^*$")
    ax0.legend()
    p, q = np.asarray(pi_star).ravel(), np.asarray(pi_final).ravel()
    lo = max(min(p.min(), q.min()), 1e-12)
    ax1.plot([lo, 1], [lo, 1], color=COLORS["ref"], ls=":", label="equality")
    ax1.scatter(p, q, s=14, color=COLORS["optimal"], label="(prompt, response)")
    ax1.set(xscale="log", yscale="log", xlabel=r"$\pi^*(y \mid x)$ (closed form)",
            ylabel=r"$\pi_{DPO}(y \mid x)$ after training",
            title="Final DPO policy against the optimum")
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
    check_same_length(steps=steps, uncovered_mass=uncovered_mass)
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
    ax0.set(xlabel="response (gold reward, in the data or not)",
            ylabel=r"probability $\pi(y \mid x)$", title="Where the probability goes")
    ax0.legend(fontsize="small")
    ax1.plot(steps, uncovered_mass, color=COLORS["policy"], lw=2, label="DPO")
    for (name, level), color in zip((levels or {}).items(), palette, strict=False):
        ax1.axhline(level, color=color, ls="--", label=name)
    ax1.set(xlabel="step", ylabel="probability of unseen responses",
            title="Unseen responses gain mass during DPO")
    ax1.legend(fontsize="small")
    return fig


def plot_logprobs_fall(steps, logp_chosen, logp_rejected, margin, gold=None, gold_optimal=None):
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
    gold_optimal : float, optional
        Gold reward of the optimum ``pi*`` (a reference line in the third panel).

    Returns
    -------
    matplotlib.figure.Figure
    """
    steps = check_counts_arg(steps, "steps", minimum=0)
    check_same_length(steps=steps, logp_chosen=logp_chosen, logp_rejected=logp_rejected,
                      margin=margin, **({} if gold is None else {"gold": gold}))
    if gold_optimal is not None:
        gold_optimal = check_float(gold_optimal, "gold_optimal")
    n_panels = 2 if gold is None else 3
    fig, axes = new_figure(1, n_panels, width=4.3)
    ax0, ax1 = axes[0], axes[1]
    ax0.plot(steps, logp_chosen, color=COLORS["gold"], lw=2, label=r"chosen $\log\pi(y_w|x)$")
    ax0.plot(steps, logp_rejected, color=COLORS["proxy"], lw=2,
             label=r"rejected $\log\pi(y_l|x)$")
    ax0.set(xlabel="step", ylabel="mean log-probability over the data",
            title="Both log-probabilities fall")
    ax0.legend(fontsize="small")
    ax1.plot(steps, margin, color=COLORS["policy"], lw=2, label=r"$h_w - h_l$")
    ax1.set(xlabel="step", ylabel="mean implicit-reward margin", title="... while the margin grows")
    ax1.legend()
    if gold is not None:
        check_same_length(steps=steps, gold=gold)
        ax2 = axes[2]
        ax2.plot(steps, gold, color=COLORS["gold"], lw=2, label="DPO policy")
        if gold_optimal is not None:
            ax2.axhline(gold_optimal, color=COLORS["optimal"], ls="--", label=r"$\pi^*$")
        ax2.set(xlabel="step", ylabel=r"expected gold reward $E_x E_\pi r^\star$",
                title="Gold reward")
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
    check_same_length(frontier_kl=frontier_kl, frontier_gold=frontier_gold)
    fig, axes = new_figure(1, 1 if steps is None else 2, width=5.4)
    axes = np.atleast_1d(axes)
    ax0 = axes[0]
    ax0.plot(frontier_kl, frontier_gold, color=COLORS["optimal"], lw=2.5, alpha=0.6,
             label=r"$\pi^*_\beta$ of the gold reward")
    palette = [COLORS["policy"], COLORS["proxy"], COLORS["gold"], COLORS["fit"]]
    for (name, (kl, gold)), color in zip(runs.items(), palette * 2, strict=False):
        check_same_length(kl=kl, gold=gold)
        ax0.plot(kl, gold, color=color, lw=1.8, label=name)
        ax0.plot(kl[-1], gold[-1], "o", color=color)
    ax0.set(xlabel=r"$E_x\, KL(\pi_t \,\|\, \pi_{ref})$ (nats)",
            ylabel=r"expected gold reward $E_x E_\pi r^\star$",
            title="Trajectories (dot: end of training)")
    ax0.legend(fontsize="small")
    if steps is not None:
        ax1 = axes[1]
        for (name, (kl, _)), color in zip(runs.items(), palette * 2, strict=False):
            check_same_length(steps=steps, kl=kl)
            ax1.plot(steps, kl, color=color, lw=1.8, label=name)
        ax1.set(xlabel="step", ylabel=r"$E_x\, KL(\pi_t \,\|\, \pi_{ref})$ (nats)",
                title="KL from the reference")
        ax1.legend(fontsize="small")
    return fig
