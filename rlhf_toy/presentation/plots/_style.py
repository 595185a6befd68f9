"""Shared styling of the chapter's figures: one colour per role, one figure factory.

Figures never call ``show()`` and never touch pyplot's global state: they build a
:class:`matplotlib.figure.Figure` directly.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from rlhf_toy._validate import ArgumentTypeError, check_bounded, check_counts

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



def check_table_dict(tables, name: str) -> dict:
    """A dict of label to array, each named ``name[label]`` in the messages."""
    if not isinstance(tables, dict):
        raise ArgumentTypeError(f"{name} must be a dict of label to array, got "
                                f"{type(tables).__name__}")
    return {f"{name}[{label!r}]": value for label, value in tables.items()}


def check_counts_arg(values, name: str, minimum: int = 1) -> np.ndarray:
    """A 1-D array of integer counts (``n``, lengths), named."""
    return check_counts(values, name, minimum=minimum)


def check_same_length(**arrays) -> None:
    """Raise unless the arrays are real, finite, non-empty and of one length, naming them.

    Entries beyond ``+-1e100`` are refused too: the axis limits would overflow.

    A value of the wrong kind (``None``, strings, booleans, complex) is a ``TypeError``;
    NaN, inf, an empty array or unequal lengths a ``ValueError``: both before any drawing.
    """
    lengths = {}
    for name, a in arrays.items():
        a = np.atleast_1d(check_bounded(a, name))
        if a.size == 0:
            raise ValueError(f"{name} must not be empty")
        lengths[name] = len(a)
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays must have the same length, got {lengths}")

