"""Figures of the KL estimators and of mode-seeking (notebook 05)."""

from __future__ import annotations

import numpy as np

from rlhf_toy.presentation.plots._style import COLORS, check_same_length, new_figure

__all__ = [
    "plot_kl_estimators", "plot_kl_gradients", "plot_mode_seeking", "plot_mode_collapse",
]

#: Line styles of notebook 05: one colour per estimator and per KL direction.
_ESTIMATOR_COLORS = {"k1": COLORS["policy"], "k2": COLORS["proxy"], "k3": COLORS["optimal"]}
_DIRECTION_COLORS = {"reverse": COLORS["policy"], "forward": COLORS["proxy"]}


def plot_kl_estimators(table, batch_negative=None):
    """Bias and spread of Schulman's k1, k2, k3 against the true KL, and negative k1 estimates.

    Parameters
    ----------
    table : dict of str to ndarray of shape (k,)
        :func:`rlhf_toy.bandit.experiments.kl_study.estimator_table`: ``"kl"``, ``"p_negative_k1"``,
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
        check_same_length(kl=kl, bias=table[f"{name}_rel_bias"], std=table[f"{name}_rel_std"])
        ls = "--" if name == "k3" else "-"  # k1 and k3 both sit on 0 in the bias panel
        ax0.plot(kl, table[f"{name}_rel_bias"], color=color, lw=2, ls=ls, label=name)
        ax1.plot(kl, table[f"{name}_rel_std"], color=color, lw=2, label=name)
    ax0.axhline(0, color=COLORS["ref"], lw=0.8, ls=":")
    ax0.set(xscale="log", xlabel=r"true $KL(\pi \,\|\, \pi_{ref})$ (nats)", ylabel="bias / KL",
            title="Bias: only k2 is biased")
    ax0.legend()
    ax1.set(xscale="log", yscale="log", xlabel=r"true $KL(\pi \,\|\, \pi_{ref})$ (nats)",
            ylabel="std of one sample / KL", title="Spread: k3 wins near, explodes far")
    ax1.legend()
    ax2.plot(kl, table["p_negative_k1"], color=COLORS["policy"], lw=2,
             label="one sample (exact)")
    shades = np.linspace(0.5, 1.0, len(batch_negative or {}))
    for (size, (mc, normal)), shade in zip((batch_negative or {}).items(), shades, strict=True):
        ax2.plot(kl, mc, "o", ms=4, color=COLORS["fit"], alpha=float(shade),
                 label=f"mean of {size} (Monte Carlo)")
        ax2.plot(kl, normal, ls="--", color=COLORS["fit"], alpha=float(shade),
                 label=f"mean of {size} (normal approx.)")
    ax2.set(xscale="log", xlabel=r"true $KL(\pi \,\|\, \pi_{ref})$ (nats)",
            ylabel="P(k1 estimate < 0)", title="A 'negative KL' is k1 being unbiased")
    ax2.legend(fontsize="small")
    return fig


def plot_kl_gradients(grads, steps, distances):
    """What each way of putting the KL in training differentiates, and where it converges.

    Parameters
    ----------
    grads : dict of str to ndarray of shape (Y,)
        One prompt's gradients wrt the logits, keyed as
        :func:`rlhf_toy.bandit.experiments.kl_study.kl_gradients` (any subset; ``"reverse_kl"`` and
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
    ax0.set(xlabel="response y", ylabel=r"expected gradient wrt logit $\theta_y$",
            title="Which KL does each estimator differentiate?")
    ax0.legend(fontsize="small")
    palette = [COLORS["policy"], COLORS["proxy"], COLORS["fit"], COLORS["optimal"],
               COLORS["gold"], COLORS["ref"]]
    for (name, d), color in zip(distances.items(), palette * 4, strict=False):
        check_same_length(steps=steps, distance=d)
        ls = "--" if "forward" in name else "-"
        ax1.plot(steps, np.maximum(np.asarray(d, float), 1e-16), color=color, lw=2, ls=ls,
                 label=name)
    ax1.set(yscale="log", xlabel="gradient step", ylabel="KL to the target policy (nats)",
            title="Exact ascent on E[r] - beta * (KL penalty)")
    ax1.legend(fontsize="small")
    return fig


def plot_mode_seeking(grid, far, far_fits, close, close_fits, profile=None):
    """Fitting one Gaussian to two modes: reverse KL locks on, forward KL covers.

    Parameters
    ----------
    grid : ndarray of shape (G,)
    far, close : ndarray of shape (G,)
        Targets with well-separated and with close modes.
    far_fits, close_fits : dict of str to (float, float, ndarray of shape (G,))
        Label to ``(mean, std, q)`` of a fitted Gaussian, ``q`` its probabilities on the
        grid; labels containing "reverse" or "forward" get that direction's colour, labels
        containing "local" are dashed.
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
        for label, (mean, std, q) in fits.items():
            color = next((c for k, c in _DIRECTION_COLORS.items() if k in label), COLORS["fit"])
            ls = "--" if "local" in label else "-"
            ax.plot(grid, q, color=color, lw=2, ls=ls,
                    label=f"{label}: {mean:.2f} ± {std:.2f}")
        ax.set(xlabel="response y", ylabel="probability", title=title)
        ax.legend(fontsize="small", loc="upper left")
    if profile is not None:
        means, values = profile
        check_same_length(means=means, values=values)
        ax = axes[2]
        ax.plot(means, values, color=_DIRECTION_COLORS["reverse"], lw=2,
                label="best std at each mean")
        ax.set(xlabel="Gaussian mean", ylabel=r"$\min_\sigma KL(q \,\|\, target)$",
               title="Reverse-KL landscape (separated)")
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
        :func:`rlhf_toy.bandit.experiments.modes.rlhf_mode_sweep`: ``"betas"``, ``"entropy_star"``,
        ``"n_modes_star"``, ``"reward_star"`` and the ``_forward`` counterparts.
    fits : dict, optional
        :func:`rlhf_toy.bandit.experiments.modes.rlhf_gaussian_fits` plus ``"beta"``:
        drawn in a fourth panel.

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
    ax0.set(xlabel="response y", ylabel="probability",
            title=r"$\pi^* \propto \pi_{ref} e^{r/\beta}$ keeps fewer modes")
    ax0.legend(fontsize="small")
    betas = np.asarray(sweep["betas"], float)
    ax1.plot(sweep["reward_star"], sweep["entropy_star"], color=COLORS["optimal"], lw=2,
             label=r"$\pi^*$: $-\beta\,KL(\pi\|\pi_{ref})$")
    ax1.plot(sweep["reward_forward"], sweep["entropy_forward"], color=COLORS["proxy"], lw=2,
             ls="--", label=r"optimum of $-\beta\,KL(\pi_{ref}\|\pi)$")
    ax1.set(xlabel=r"expected reward $E_\pi r$", ylabel="entropy (nats)",
            title="Entropy at equal reward")
    ax1.legend(fontsize="small")
    ax2.step(betas, sweep["n_modes_star"], where="mid", color=COLORS["optimal"], lw=2,
             label=r"$\pi^*$ (reverse KL)")
    ax2.step(betas, sweep["n_modes_forward"], where="mid", color=COLORS["proxy"], lw=2,
             ls="--", label="forward-KL optimum")
    ax2.set(xscale="log", xlabel=r"$\beta$", ylabel="modes (≥ 5% of the peak)")
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
        ax3.plot(grid, fits["q_" + key], color=color, lw=2,
                 label=f"{label}: J = {fits['objective_' + key]:.3f}")
    ax3.set(xlabel="response y", ylabel="probability", title="Best single-Gaussian policy")
    ax3.legend(fontsize="small")
    return fig
