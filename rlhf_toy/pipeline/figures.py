"""Figures of a pipeline run (chapter, "Reward Hacking and Goodhart"; Gao et al., 2023).

- :func:`plot_frontier`: gold and proxy reward against ``sqrt(KL(pi || pi_sft))`` along the
  exact frontier of ``pi*_beta = pi_sft exp(r_RM / beta) / Z``, with each method's point;
  the gold curve's peak and fall is overoptimisation.
- :func:`plot_training`: the per-step loss of every stage from ``history/*.csv``.

Each returns a matplotlib ``Figure`` and never shows it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_frontier", "plot_training"]


def plot_frontier(metrics: dict) -> Figure:
    """Gold and proxy of ``pi*`` against ``sqrt(KL)``, and every method's point.

    Parameters
    ----------
    metrics : dict
        ``metrics.json`` of a run (uses ``frontier``, ``methods``, ``optimum``, ``beta``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    f = metrics["frontier"]
    ax.plot(f["sqrt_kl"], f["proxy"], color="C0", label=r"$\pi^*$ proxy $E\,r_{RM}$")
    ax.plot(f["sqrt_kl"], f["gold"], color="C1", label=r"$\pi^*$ gold $E\,r^*$")
    for i, (name, m) in enumerate(metrics["methods"].items()):
        d = np.sqrt(max(m["kl"], 0.0))
        c = f"C{i + 2}"
        ax.scatter([d], [m["proxy"]], marker="o", facecolors="none", edgecolors=c)
        ax.scatter([d], [m["gold"]], marker="o", color=c, label=f"{name} (hollow: proxy)")
    opt = metrics.get("optimum") or {}
    if opt:
        d = np.sqrt(max(opt["kl"], 0.0))
        ax.axvline(d, color="0.6", lw=0.8, ls="--", label=rf"$\pi^*$ at $\beta$={metrics['beta']}")
    ax.set_xlabel(r"$\sqrt{KL(\pi\,\|\,\pi_{sft})}$ (nats$^{1/2}$)")
    ax.set_ylabel("expected reward")
    ax.set_title(f"task {metrics['task']}: exact frontier of the reward model's optimum")
    ax.legend(fontsize=7)
    return fig


def plot_training(history_dir) -> Figure:
    """The ``loss`` column of every ``history/*.csv`` against its step, one panel each.

    Parameters
    ----------
    history_dir : str or pathlib.Path
        A run's ``history`` folder.

    Returns
    -------
    matplotlib.figure.Figure
    """
    paths = sorted(Path(history_dir).glob("*.csv"))
    fig = Figure(figsize=(3.2 * max(1, len(paths)), 3.0), layout="constrained")
    for i, path in enumerate(paths):
        ax = fig.add_subplot(1, len(paths), i + 1)
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        if rows and "loss" in rows[0]:
            ax.plot([float(r["step"]) for r in rows], [float(r["loss"]) for r in rows], lw=0.8)
        ax.set_title(path.stem)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
    return fig
