"""Input validation shared by every public function.

Each check raises :class:`ValueError` naming the argument and the bad value, as the
conventions of ``DESIGN.md`` ask (``beta must be > 0, got -1.0``;
``pi_ref row 3 sums to 0.7``). Checks return the validated array so that callers can
write ``p = check_distribution(p, "pi_ref")``.
"""

from __future__ import annotations

import numbers

import numpy as np

#: Tolerance on row sums of probability tables.
ROW_SUM_ATOL = 1e-6


def as_rng(rng) -> np.random.Generator:
    """Return a ``np.random.Generator`` from a Generator or an int seed.

    Raises
    ------
    TypeError
        If ``rng`` is neither (``None`` included: randomness is always explicit).
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator or an int seed, got {rng!r}")


def check_positive(value, name: str) -> float:
    """A finite scalar > 0 (``beta``, a temperature, a learning rate)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be > 0 and finite, got {value!r}")
    return v


def check_nonnegative(value, name: str) -> float:
    """A finite scalar >= 0 (a penalty weight, a smoothing count, a weight decay)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}") from None
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be >= 0 and finite, got {value!r}")
    return v


def check_int(value, name: str, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (``n``, ``n_pairs``, a number of steps)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_finite(a, name: str) -> np.ndarray:
    """A float64 array with no NaN or inf (rewards, log-probs, logits)."""
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(
            f"{name} must be finite, got {a[tuple(bad)]} at index {tuple(int(i) for i in bad)}"
        )
    return a


def check_distribution(p, name: str, axis: int = -1) -> np.ndarray:
    """A float64 array of probabilities: finite, >= 0, summing to one along ``axis``."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 0:
        raise ValueError(f"{name} must have at least one axis, got a scalar")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be finite, got a NaN or inf entry")
    if np.any(p < 0):
        bad = np.argwhere(p < 0)[0]
        raise ValueError(
            f"{name} must be non-negative, got {p[tuple(bad)]} at index "
            f"{tuple(int(i) for i in bad)}"
        )
    s = p.sum(axis=axis)
    off = np.abs(s - 1.0) > ROW_SUM_ATOL
    if np.any(off):
        bad = np.argwhere(np.atleast_1d(off))[0]
        row = tuple(int(i) for i in bad)
        row_txt = row[0] if len(row) == 1 else row
        raise ValueError(f"{name} row {row_txt} sums to {np.atleast_1d(s)[tuple(bad)]:.6g}, not 1")
    return p


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise unless ``a`` and ``b`` have the same shape."""
    if np.shape(a) != np.shape(b):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {np.shape(a)} and {np.shape(b)}"
        )
