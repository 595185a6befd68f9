"""KL divergences and entropy of categorical tables, and Schulman's per-sample estimators.

Implements the KL term of the chapter's Stage 3 objective,
``KL(pi(.|x) || pi_ref(.|x))``, exactly (a sum over the response table), and the
single-sample estimators ``k1``, ``k2``, ``k3`` that RLHF code uses when the response
space is too large to sum over (section "RLHF uses reverse KL, which is mode-seeking";
Schulman, *Approximating KL Divergence*, 2020).
"""

from __future__ import annotations

import numpy as np
from scipy.special import entr, rel_entr

from rlhf_toy._validate import (
    as_real_array,
    check_distribution,
    check_finite,
    check_int,
    check_same_shape,
)

__all__ = ["entropy", "kl_divergence", "kl_estimates"]


def _check_axis(axis) -> int:
    return check_int(axis, "axis", minimum=-(1 << 16), maximum=1 << 16)


def kl_divergence(p, q, axis: int = -1) -> np.ndarray:
    """Exact KL divergence ``KL(p || q) = sum_y p(y) log(p(y) / q(y))``.

    Parameters
    ----------
    p, q : array_like of the same shape
        Probability tables; each slice along ``axis`` sums to one.
    axis : int, default -1
        The axis holding the categories (the responses).

    Returns
    -------
    ndarray
        ``p.shape`` with ``axis`` reduced; ``0 log 0 = 0`` and ``+inf`` wherever some
        ``p(y) > 0 = q(y)``.

    Raises
    ------
    ValueError
        If a table is empty, has negative or non-finite entries or a slice not summing to
        one, the shapes differ, or ``axis`` is out of range.
    TypeError
        If a table is complex, boolean or not numeric, or ``axis`` is not an integer.

    Notes
    -----
    Reverse KL ``KL(pi || pi_ref)`` is the penalty of the RLHF objective; forward KL
    ``KL(pi_ref || pi)`` is the mass-covering alternative. Both are this function with
    the arguments swapped.

    Examples
    --------
    >>> float(kl_divergence([0.5, 0.5], [0.9, 0.1]).round(4))
    0.5108
    """
    axis = _check_axis(axis)
    p = check_distribution(p, "p", axis=axis)
    q = check_distribution(q, "q", axis=axis)
    check_same_shape(p, q, "p", "q")
    return rel_entr(p, q).sum(axis=axis)


def entropy(p, axis: int = -1) -> np.ndarray:
    """Shannon entropy ``H(p) = -sum_y p(y) log p(y)`` in nats (``0 log 0 = 0``).

    Parameters
    ----------
    p : array_like
        Probability table; slices along ``axis`` sum to one.
    axis : int, default -1
        The axis holding the categories.

    Returns
    -------
    ndarray
        ``p.shape`` with ``axis`` reduced.

    Raises
    ------
    ValueError, TypeError
        As :func:`kl_divergence`.

    Examples
    --------
    >>> float(entropy([0.5, 0.5]).round(4))
    0.6931
    """
    axis = _check_axis(axis)
    p = check_distribution(p, "p", axis=axis)
    return entr(p).sum(axis=axis)


def kl_estimates(logp_sampled, logp_other) -> dict[str, np.ndarray]:
    """Per-sample estimators ``k1``, ``k2``, ``k3`` of ``KL(q || p)`` for samples ``y ~ q``.

    Parameters
    ----------
    logp_sampled : array_like
        ``log q(y)`` of each sample under the distribution it was drawn from; finite.
    logp_other : array_like of the same shape
        ``log p(y)`` of the same samples under the other distribution; ``-inf`` allowed.

    Returns
    -------
    dict
        ``{"k1": ..., "k2": ..., "k3": ...}``, arrays of the input shape, with
        ``log r = log p(y) - log q(y)``:

        - ``k1 = -log r``: unbiased, but negative on some samples;
        - ``k2 = (log r)^2 / 2``: biased, low variance, non-negative;
        - ``k3 = (r - 1) - log r``: unbiased (since ``E_q[r] = 1``) and non-negative.

        ``k1`` is ``+inf`` where ``logp_other = -inf``; values whose true size exceeds
        the float64 range (``k3`` for ``log r > 709.78``) come back as ``+inf``.

    Raises
    ------
    ValueError
        If ``logp_sampled`` is not finite, ``logp_other`` has NaN or ``+inf``, or the
        shapes differ.
    TypeError
        If an input is complex, boolean or not numeric.

    Notes
    -----
    In RLHF, ``q`` is the policy ``pi`` and ``p`` the reference ``pi_ref``: the samples
    are the policy's own responses and the estimates target ``KL(pi || pi_ref)``. GRPO
    adds ``beta * k3`` per token to its loss (Shao et al. 2024). ``k3`` is computed as
    ``expm1(log r) - log r`` so that it stays accurate and non-negative for ``r`` near 1.
    """
    # samples come from q, so their log-probability under it cannot be -inf
    logq = check_finite(logp_sampled, "logp_sampled")
    logp = as_real_array(logp_other, "logp_other")
    check_same_shape(logq, logp, "logp_sampled", "logp_other")
    if np.any(np.isnan(logp)) or np.any(logp == np.inf):
        raise ValueError("logp_other must be a log-probability (no NaN or +inf)")
    with np.errstate(over="ignore"):  # only where the true value exceeds float64
        log_r = logp - logq
        k3 = np.expm1(log_r) - log_r
        k2 = 0.5 * log_r**2
    return {"k1": -log_r, "k2": k2, "k3": np.maximum(k3, 0.0)}
