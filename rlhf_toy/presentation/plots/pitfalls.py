"""Figures of the pitfalls gallery (notebook 12): two confusions practitioners report.

Chapter, *Common Confusions*, the KL estimators of *RLHF uses reverse KL, which is
mode-seeking* and the length normalisation of *Modern RL for LLMs* (GRPO, Dr. GRPO).
"""

from __future__ import annotations

import numpy as np

from rlhf_toy._validate import check_float
from rlhf_toy.presentation.plots._style import (
    COLORS,
    check_counts_arg,
    check_same_length,
    check_table_dict,
    new_figure,
)

__all__ = ["plot_negative_kl", "plot_length_bias"]


def plot_negative_kl(k1, k3, exact_kl, batch_means):
    """Per-sample k1 and k3 around the exact KL, and the batch means of k1.

    Parameters
    ----------
    k1, k3 : ndarray of shape (n,)
        Per-sample estimates of ``KL(pi || pi_ref)`` on samples of ``pi``
        (:func:`rlhf_toy.kl.kl_estimates`).
    exact_kl : float
        The exact ``KL(pi || pi_ref)``.
    batch_means : dict of int to ndarray
        Batch size to the means of k1 over independent batches of that size.

    Returns
    -------
    matplotlib.figure.Figure
        Left: histograms of single-sample k1 and k3 with the exact KL; right: histograms of
        batch means of k1, with the share below zero in the legend.

    Raises
    ------
    ValueError
        If ``k1`` and ``k3`` differ in length.

    Notes
    -----
    ``k1 = -log r`` is negative wherever ``pi_ref > pi``; ``k3 = (r - 1) - log r >= 0``, with
    ``r = pi_ref(y) / pi(y)`` (Schulman 2020).
    """
    check_same_length(k1=k1, k3=k3)
    exact_kl = check_float(exact_kl, "exact_kl")
    for label, means in check_table_dict(batch_means, "batch_means").items():
        check_same_length(**{label: means})
    k1, k3 = np.asarray(k1, float), np.asarray(k3, float)
    fig, (ax0, ax1) = new_figure(1, 2, width=5.0, height=3.8)
    bins = np.linspace(min(k1.min(), 0.0), max(k1.max(), k3.max()), 40)
    ax0.hist(k1, bins=bins, color=COLORS["policy"], alpha=0.6,
             label=f"k1 ({np.mean(k1 < 0):.0%} below 0)")
    ax0.hist(k3, bins=bins, color=COLORS["optimal"], alpha=0.6,
             label=f"k3 ({np.mean(k3 < 0):.0%} below 0)")
    ax0.axvline(exact_kl, color=COLORS["fit"], ls="--", label=f"exact KL = {exact_kl:.3f}")
    ax0.axvline(0.0, color=COLORS["ref"], lw=0.8, ls=":")
    ax0.set(xlabel="estimate of KL from one sample (nats)", ylabel="number of samples",
            title="One sample: k1 is often negative, k3 never")
    ax0.legend(fontsize="small")
    shades = np.linspace(0.45, 0.8, max(len(batch_means), 1))
    for (size, means), shade in zip(sorted(batch_means.items()), shades, strict=False):
        means = np.asarray(means, float)
        ax1.hist(means, bins=40, alpha=float(shade), histtype="stepfilled",
                 label=f"batches of {size}: {np.mean(means < 0):.1%} below 0")
    ax1.axvline(exact_kl, color=COLORS["fit"], ls="--", label="exact KL")
    ax1.axvline(0.0, color=COLORS["ref"], lw=0.8, ls=":")
    ax1.set(xlabel="batch mean of k1 (nats)", ylabel="number of batches",
            title="Batch means of k1 can be negative too")
    ax1.legend(fontsize="small")
    return fig


def plot_length_bias(lengths, rewards, push):
    """Per-token and whole-response push of each response under several aggregations.

    Parameters
    ----------
    lengths : ndarray of int, shape (G,)
        Number of tokens of each response of one group.
    rewards : ndarray of shape (G,)
        Their rewards (for the tick labels).
    push : dict of str to ndarray of shape (G, T)
        Aggregation name (e.g. ``"seq_mean"``, ``"constant"``) to ``-d loss / d logp``, the
        per-token gradient the loss puts on each response's log-probs (0 off the response).

    Returns
    -------
    matplotlib.figure.Figure
        Left: push per token; right: push summed over each response's tokens.

    Raises
    ------
    ValueError
        If ``lengths``, ``rewards`` and the rows of each ``push`` differ in length.

    Notes
    -----
    ``seq_mean`` weighs a token of a response of length ``L`` by ``1 / (B L)`` (GRPO, Shao
    et al. 2024); ``constant`` by ``1 / (B max_len)`` (Dr. GRPO, Liu et al. 2025).
    """
    lengths = check_counts_arg(lengths, "lengths")
    check_same_length(lengths=lengths, rewards=rewards, **check_table_dict(push, "push"))
    lengths, rewards = np.asarray(lengths, int), np.asarray(rewards, float)
    fig, (ax0, ax1) = new_figure(1, 2, width=4.8, height=3.6)
    ticks = [f"r = {r:g}\nL = {n}" for r, n in zip(rewards, lengths, strict=True)]
    x = np.arange(len(lengths))
    width = 0.8 / max(len(push), 1)
    colors = [COLORS["proxy"], COLORS["policy"], COLORS["optimal"], COLORS["gold"]]
    for k, (name, p) in enumerate(push.items()):
        p = np.asarray(p, float)
        per_token = p[np.arange(len(lengths)), 0]  # every token of a response gets the same
        ax0.bar(x + (k - (len(push) - 1) / 2) * width, per_token, width, label=name,
                color=colors[k % len(colors)])
        ax1.bar(x + (k - (len(push) - 1) / 2) * width, p.sum(axis=1), width, label=name,
                color=colors[k % len(colors)])
    for ax, title in [(ax0, "Push on each token"), (ax1, "Push on the whole response")]:
        ax.axhline(0.0, color=COLORS["ref"], lw=0.8)
        ax.set_xticks(x, ticks)
        ax.set(xlabel="response of the group", ylabel=r"$-\partial\,$loss$/\partial \log\pi$",
               title=title)
        ax.legend(fontsize="small")
    return fig
