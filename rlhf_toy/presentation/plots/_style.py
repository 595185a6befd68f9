"""Shared styling of the chapter's figures: one colour per role, one figure factory.

Figures never call ``show()`` and never touch pyplot's global state: they build a
:class:`matplotlib.figure.Figure` directly.
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



def check_same_length(**arrays) -> None:
    """Raise ``ValueError`` naming the arrays if their lengths differ."""
    lengths = {name: len(np.atleast_1d(a)) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays must have the same length, got {lengths}")

