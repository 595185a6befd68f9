"""Figures of sampled policy-gradient RLHF on the bandit (notebook 07; chapter, Stage 3 and
"Modern RL for LLMs"): convergence to ``pi*``, estimator variance, GRPO's failure modes."""

from __future__ import annotations

import numpy as np

from rlhf_toy.presentation.plots._style import COLORS, check_same_length, new_figure

__all__ = [
    "plot_pg_convergence", "plot_estimator_variance", "plot_zero_spread",
    "plot_grpo_difficulty",
]

#: One colour per method, shared by the figures of this section.
METHOD_COLORS = {
    "reinforce": "#999999",
    "reinforce_mean": "#6a3d9a",
    "rloo": COLORS["policy"],
    "ppo": COLORS["gold"],
    "critic": COLORS["gold"],
    "grpo": COLORS["proxy"],
    "dr_grpo": COLORS["optimal"],
    "online_dpo": "#35978f",
}


def _color(label: str, i: int) -> str:
    for key in sorted(METHOD_COLORS, key=len, reverse=True):
        if label.startswith(key):
            return METHOD_COLORS[key]
    return f"C{i}"


def plot_pg_convergence(steps, curves, *, ylabel=r"$KL(\pi \,\|\, \pi^*_\beta)$ (nats)",
                        title="Distance to the optimum, mean and spread over seeds",
                        reference=None):
    """Distance to a target policy against steps for several methods, over seeds.

    Parameters
    ----------
    steps : ndarray of shape (S + 1,)
    curves : dict of str to ndarray of shape (n_seeds, S + 1)
        Per label, one curve per seed (e.g. ``kl_to_optimum`` of
        :func:`rlhf_toy.bandit.experiments.pg_study.convergence_study`). Labels containing
        ``"fixpoint"`` are dashed.
    ylabel, title : str
    reference : dict of str to float, optional
        Horizontal lines (e.g. the exact ``KL(fixpoint || pi*)``), dotted.

    Returns
    -------
    matplotlib.figure.Figure
        One panel, log-scaled y: the mean over seeds as a line, the 10%-90% band of the
        seeds shaded.
    """
    steps = np.asarray(steps)
    fig, ax = new_figure(width=7.0, height=4.4)
    for i, (label, c) in enumerate(curves.items()):
        c = np.atleast_2d(np.asarray(c, float))
        check_same_length(steps=steps, curve=c[0])
        color = _color(label, i)
        ls = "--" if "fixpoint" in label else "-"
        ax.plot(steps, c.mean(0), color=color, lw=2, ls=ls, label=label)
        if c.shape[0] > 1:
            lo, hi = np.quantile(c, [0.1, 0.9], axis=0)
            ax.fill_between(steps, lo, hi, color=color, alpha=0.15, lw=0)
    for i, (label, value) in enumerate((reference or {}).items()):
        ax.axhline(value, color=COLORS["ref"], lw=1, ls=":", alpha=1.0 - 0.3 * i, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def plot_estimator_variance(group_sizes, study, estimators=None):
    """Mean squared error and squared bias of each sampled gradient against the exact one.

    Parameters
    ----------
    group_sizes : ndarray of shape (n_G,)
    study : dict
        :func:`rlhf_toy.bandit.experiments.pg_study.estimator_mse`: per estimator a dict
        with ``"mse"`` and ``"bias_sq"`` of shape (n_G,).
    estimators : sequence of str, optional
        Which estimators to draw; every one in ``study`` by default.

    Returns
    -------
    matplotlib.figure.Figure
        Two log-log panels against ``G``: the MSE (with a ``1/G`` guide) and the squared
        bias (zero for the unbiased estimators up to Monte Carlo noise).
    """
    G = np.asarray(group_sizes, float)
    names = estimators or [k for k in study if isinstance(study[k], dict)]
    fig, (ax0, ax1) = new_figure(1, 2, width=5.2, height=4.0)
    for i, name in enumerate(names):
        st = study[name]
        check_same_length(group_sizes=G, mse=st["mse"])
        color = _color(name, i)
        ax0.plot(G, st["mse"], "o-", color=color, lw=2, label=name)
        ax1.plot(G, np.maximum(st["bias_sq"], 1e-12), "o-", color=color, lw=2, label=name)
    first = study[names[0]]["mse"][0]
    ax0.plot(G, first * G[0] / G, color=COLORS["ref"], ls=":", lw=1, label=r"$\propto 1/G$")
    for ax in (ax0, ax1):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("G (responses per prompt)")
    ax0.set_ylabel(r"$E\,\|\hat g - \nabla J\|^2$")
    ax0.set_title("MSE against the exact gradient")
    ax0.legend(fontsize="small")
    ax1.set_ylabel(r"$\|E\,\hat g - \nabla J\|^2$")
    ax1.set_title("Squared bias: baselines that see the sample")
    ax1.legend(fontsize="small")
    return fig


def plot_zero_spread(success_probs, group_sizes, measured, exact, sem=None):
    """Fraction of GRPO groups with zero reward spread against the success probability.

    Parameters
    ----------
    success_probs : ndarray of shape (n_p,)
    group_sizes : ndarray of shape (n_G,)
    measured, exact : ndarray of shape (n_G, n_p)
        :func:`rlhf_toy.bandit.experiments.pg_study.zero_spread_study`.
    sem : ndarray of shape (n_G, n_p), optional
        Error bars (standard errors) of the measurement.

    Returns
    -------
    matplotlib.figure.Figure
        Markers (measured) on lines (``p^G + (1 - p)^G``), log-scaled ``p``.
    """
    p = np.asarray(success_probs, float)
    fig, ax = new_figure(width=6.4, height=4.2)
    shades = np.linspace(0.45, 1.0, len(group_sizes))
    for i, (G, shade) in enumerate(zip(group_sizes, shades, strict=True)):
        check_same_length(p=p, measured=measured[i], exact=exact[i])
        color = COLORS["proxy"]
        ax.plot(p, exact[i], color=color, alpha=float(shade), lw=2,
                label=rf"$p^G + (1-p)^G$, G = {int(G)}")
        ax.errorbar(p, measured[i], yerr=None if sem is None else 2 * sem[i], fmt="o",
                    ms=4, color=COLORS["fit"], alpha=float(shade),
                    label=f"measured, G = {int(G)}")
    ax.set_xscale("log")
    ax.set_xlabel("success probability p of one response (0/1 reward)")
    ax.set_ylabel("fraction of groups with zero spread")
    ax.set_title("Sparse rewards: most GRPO groups carry no signal")
    ax.legend(fontsize="small")
    return fig


def plot_grpo_difficulty(success_probs, weights):
    """Effective gradient weight of a prompt against its difficulty, GRPO vs Dr. GRPO.

    Parameters
    ----------
    success_probs : ndarray of shape (n_p,)
    weights : dict of str to dict
        Per label, ``{"measured", "sem", "exact"}`` arrays of shape (n_p,)
        (:func:`rlhf_toy.bandit.experiments.pg_study.difficulty_weights`).

    Returns
    -------
    matplotlib.figure.Figure
        Exact weights as lines, measured weights with 2-sigma error bars.
    """
    p = np.asarray(success_probs, float)
    fig, ax = new_figure(width=6.4, height=4.2)
    for i, (label, w) in enumerate(weights.items()):
        check_same_length(p=p, measured=w["measured"], exact=w["exact"])
        color = _color(label, i)
        ax.plot(p, w["exact"], color=color, lw=2, label=f"{label} (exact)")
        ax.errorbar(p, w["measured"], yerr=2 * np.asarray(w["sem"]), fmt="o", ms=4,
                    color=color, label=f"{label} (measured)")
    ax.set_xlabel("success probability p of the prompt")
    ax.set_ylabel(r"weight $w(p)$: $E\,\hat g = w(p)\,\nabla_z E_\pi r$")
    ax.set_title("The std division up-weights easy and hopeless prompts")
    ax.legend(fontsize="small")
    return fig
