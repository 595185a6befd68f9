"""Exact inverse-CDF sampling from the rows of a probability table.

The one sampler of the tabular world: Bradley-Terry comparisons, the tabular policy and
the KL-estimator study all draw ``y ~ p[row]`` through :func:`sample_rows`, from uniforms
the caller draws (so each caller fixes its own random stream).
"""

from __future__ import annotations

import numpy as np

from rlhf_toy._validate import as_real_array, check_index, check_ndim, check_nonempty


def sample_rows(p: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: ``out[i] ~ p[rows[i]]`` using the uniform ``u[i]`` in [0, 1).

    Vectorised over samples; the only Python loop is over the distinct rows. Exact:
    a zero-probability entry is never returned.

    Parameters
    ----------
    p : array_like of shape (R, C)
        Non-negative finite weights with a positive sum per row (normalised here).
    rows : array_like of int of shape (N,)
        Row of each draw, ``0 <= rows < R``; empty allowed (returns an empty array).
    u : array_like of shape (N,)
        Uniforms in ``[0, 1)``.

    Returns
    -------
    ndarray of int64 of shape (N,)
    """
    p = check_nonempty(check_ndim(as_real_array(p, "p"), "p", 2, "(R, C)"), "p")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p.sum(axis=1) <= 0):
        raise ValueError("p must be finite and >= 0 with a positive sum in every row")
    rows = check_index(rows, "rows", p.shape[0], allow_empty=True)
    u = as_real_array(u, "u")
    if u.shape != rows.shape:
        raise ValueError(f"u must have the shape of rows {rows.shape}, got {u.shape}")
    if not np.all((u >= 0) & (u < 1)):
        raise ValueError("u must hold uniforms in [0, 1)")
    if rows.size == 0:
        return np.empty(rows.shape, dtype=np.int64)
    n_rows, n_cols = p.shape
    cdf = np.cumsum(p, axis=1)  # (R, C)
    cdf /= cdf[:, -1:]
    # Entries from the last positive one onwards get CDF exactly 1 > u, so a draw can never
    # land on a trailing zero-probability entry nor run past the end through rounding.
    last_positive = n_cols - 1 - np.argmax(p[:, ::-1] > 0, axis=1)  # (R,)
    cdf[np.arange(n_cols)[None, :] >= last_positive[:, None]] = 1.0
    out = np.empty(rows.shape, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
    stops = np.r_[starts[1:], sorted_rows.size]
    for a, b in zip(starts, stops, strict=True):
        idx = order[a:b]
        # number of CDF entries <= u: the first index whose CDF exceeds u
        out[idx] = np.searchsorted(cdf[sorted_rows[a]], u[idx], side="right")
    return out
