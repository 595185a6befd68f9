"""Schulman's KL estimators k1, k2, k3, and what their gradients really optimise.

Implements the estimator discussion of the chapter's section "RLHF uses reverse KL,
which is mode-seeking" (it cites Schulman, *Approximating KL Divergence*, 2020) and the
KL penalties of PPO-RLHF (Stage 3) and GRPO (Modern RL for LLMs). For samples ``y ~ q`` and
``r = p(y) / q(y)`` the per-sample estimators of ``KL(q || p)`` are
``k1 = -log r``, ``k2 = (log r)^2 / 2`` and ``k3 = (r - 1) - log r``
(:func:`rlhf_toy.kl.kl_estimates`). On a table everything about them is a finite sum:

- :func:`estimator_stats`: exact mean, bias and standard deviation of each estimator and
  the exact probability that one ``k1`` sample is negative; :func:`sampled_estimator_stats`
  and :func:`batch_negative_probability` are the Monte Carlo counterparts;
  :func:`estimator_table` does it for policies ``pi*_beta`` from near to far from
  ``pi_ref``.
- :func:`kl_gradients`: the exact expected gradient (wrt the logits of a tabular softmax
  policy) of each way a KL estimate enters training: as a *reward* (REINFORCE,
  ``E_pi[k(y) grad log pi(y)]``, PPO-RLHF's per-token penalty) or in the *loss*
  (``E_pi[grad k(y)]`` with the sampling weights not differentiated, GRPO's ``beta * k3``).
  The results (derived in :func:`kl_gradients`): k1-as-reward and k2-in-the-loss give the
  true gradient of ``KL(pi || pi_ref)``; k1-in-the-loss gives zero; **k3-in-the-loss gives
  the gradient of the forward KL** ``KL(pi_ref || pi)``.
- :func:`kl_penalised_ascent`: exact gradient ascent on ``E_pi r - beta * KL`` with any of
  these KL gradients, to see where each one actually converges.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
from scipy.special import log_softmax, logsumexp, ndtr

from rlhf_toy._sampling import sample_rows
from rlhf_toy._validate import (
    MAX_SAMPLES,
    MAX_STEPS,
    as_rng,
    check_betas,
    check_distribution,
    check_finite,
    check_int,
    check_positive,
    check_same_shape,
)
from rlhf_toy.bandit.train import gradient_ascent
from rlhf_toy.kl import kl_divergence, kl_estimates
from rlhf_toy.optimal import optimal_policy

__all__ = [
    "ESTIMATORS",
    "KL_GRADIENTS",
    "MIN_TABLE_KL",
    "batch_negative_probability",
    "batch_negative_probability_normal",
    "estimator_stats",
    "estimator_table",
    "kl_gradients",
    "kl_penalised_ascent",
    "sample_categorical",
    "sampled_estimator_stats",
    "sampled_kl_gradients",
    "tilted_policies",
]

#: Schulman's per-sample estimators, in order.
ESTIMATORS = ("k1", "k2", "k3")

#: The gradients :func:`kl_gradients` returns: the two true ones, then each estimator used
#: as a reward (REINFORCE) or in the loss (sampling weights not differentiated).
KL_GRADIENTS = (
    "reverse_kl",
    "forward_kl",
    "k1_in_reward",
    "k2_in_reward",
    "k3_in_reward",
    "k1_in_loss",
    "k2_in_loss",
    "k3_in_loss",
)


# --- the estimators' exact statistics ---------------------------------------------------------


def _check_pair(q, p):
    """Validate ``q`` and ``p``, broadcast them, and require ``p > 0`` on ``q``'s support."""
    q = check_distribution(q, "q")
    p = check_distribution(p, "p")
    try:
        q, p = np.broadcast_arrays(q, p)
    except ValueError:
        raise ValueError(
            f"q and p must broadcast together, got shapes {q.shape} and {p.shape}"
        ) from None
    if np.any((q > 0) & (p == 0)):
        bad = tuple(int(i) for i in np.argwhere((q > 0) & (p == 0))[0])
        raise ValueError(
            f"p must be > 0 wherever q > 0 (else KL(q || p) is infinite), got p = 0 < q at {bad}"
        )
    return q, p


def _per_response_estimates(q, p):
    """``k1, k2, k3`` at every response (0 where ``q = 0``: those responses are never drawn)."""
    support = q > 0
    with np.errstate(divide="ignore"):
        log_q = np.where(support, np.log(np.where(support, q, 1.0)), 0.0)
        log_p = np.where(support, np.log(np.where(support, p, 1.0)), 0.0)
    return support, kl_estimates(log_q, log_p)


def estimator_stats(q, p) -> dict:
    """Exact statistics of the per-sample estimators of ``KL(q || p)`` for ``y ~ q``.

    Computed by summing over the support of ``q``, not by sampling.

    Parameters
    ----------
    q : array_like of shape (..., Y)
        The sampling distribution (in RLHF: the policy ``pi``).
    p : array_like broadcasting against ``q``
        The other distribution (``pi_ref``); ``> 0`` wherever ``q > 0``.

    Returns
    -------
    dict
        ``"kl"``: ``KL(q || p)``; for each of ``"k1"``, ``"k2"``, ``"k3"`` a dict with
        ``"mean"`` (``E_q[k]``), ``"bias"`` (``E_q[k] - KL``) and ``"std"`` (the standard
        deviation of one sample, ``sqrt(E_q[(k - E_q k)^2])``); ``"p_negative_k1"``:
        ``P_q(k1 < 0) = q({y : p(y) > q(y)})``. Arrays of shape ``q.shape[:-1]``.

    Raises
    ------
    ValueError
        If an input is not a distribution, they do not broadcast, or ``p = 0 < q``
        somewhere.

    Notes
    -----
    ``E_q[k1] = KL`` and ``E_q[k3] = E_q[r] - 1 + KL = KL`` (since ``E_q[r] = sum_{q>0} p
    = 1`` when ``p`` lives on ``q``'s support), so k1 and k3 are unbiased. If ``p`` has
    mass where ``q = 0``, k3's bias is minus that mass (samples never reveal it); in
    RLHF this cannot happen, since ``pi`` (a softmax, or ``pi*``) covers the support of
    ``pi_ref``. k2 is biased,
    ``E_q[k2] = E_q[(log r)^2] / 2 >= KL^2 / 2``, with bias of third order in ``log r``
    near ``q = p``. A single k1 sample is negative whenever the sample is *more* likely
    under ``p`` than under ``q``, which happens with probability ``q(p > q)``; k2 and k3
    are never negative. Chapter, "RLHF uses reverse KL, which is mode-seeking"
    (Schulman, 2020).
    """
    q, p = _check_pair(q, p)
    support, ks = _per_response_estimates(q, p)
    kl = kl_divergence(q, p)
    out = {"kl": kl}
    for name in ESTIMATORS:
        k = ks[name]
        mean = (q * k).sum(-1)
        var = (q * (k - mean[..., None]) ** 2).sum(-1)
        out[name] = {"mean": mean, "bias": mean - kl, "std": np.sqrt(var)}
    out["p_negative_k1"] = np.where(support & (ks["k1"] < 0), q, 0.0).sum(-1)
    return out


def sample_categorical(q, n: int, rng) -> np.ndarray:
    """Draw ``n`` indices from each categorical row of ``q`` (vectorised inverse CDF).

    Parameters
    ----------
    q : array_like of shape (..., Y)
        Distributions along the last axis.
    n : int
        Samples per row.
    rng : numpy Generator or int

    Returns
    -------
    ndarray of int of shape ``q.shape[:-1] + (n,)``
        Indices in ``[0, Y)``; an index with ``q = 0`` is never drawn.
    """
    q = check_distribution(q, "q")
    n = check_int(n, "n", maximum=MAX_SAMPLES)
    rng = as_rng(rng)
    lead = q.shape[:-1]
    n_rows = int(np.prod(lead))
    u = rng.random((n_rows, n))  # (R, n)
    rows = np.repeat(np.arange(n_rows), n)  # (R * n,)
    idx = sample_rows(q.reshape(n_rows, q.shape[-1]), rows, u.ravel())
    return idx.reshape(lead + (n,))


def _sampled_ks(q, p, n, rng):
    q, p = _check_pair(q, p)
    y = sample_categorical(q, n, rng)
    log_q = np.log(np.take_along_axis(q, y, axis=-1))
    log_p = np.log(np.take_along_axis(p, y, axis=-1))
    return q, p, kl_estimates(log_q, log_p)


def sampled_estimator_stats(q, p, n_samples: int, rng) -> dict:
    """Monte Carlo version of :func:`estimator_stats` from ``n_samples`` draws of ``q``.

    Parameters
    ----------
    q, p : array_like
        As in :func:`estimator_stats`.
    n_samples : int
        Samples per row of ``q``.
    rng : numpy Generator or int

    Returns
    -------
    dict
        The same keys as :func:`estimator_stats` (sample mean, mean minus the exact KL,
        sample standard deviation, fraction of negative k1), plus per estimator
        ``"stderr"``: the standard error of the sample mean. Used to check that sampling
        agrees with the exact sums.
    """
    n_samples = check_int(n_samples, "n_samples", minimum=2, maximum=MAX_SAMPLES)
    q, p, ks = _sampled_ks(q, p, n_samples, rng)
    kl = kl_divergence(q, p)
    out = {"kl": kl}
    for name in ESTIMATORS:
        k = ks[name]
        mean, std = k.mean(-1), k.std(-1, ddof=1)
        out[name] = {"mean": mean, "bias": mean - kl, "std": std,
                     "stderr": std / np.sqrt(n_samples)}
    out["p_negative_k1"] = (ks["k1"] < 0).mean(-1)
    return out


def batch_negative_probability(q, p, batch_size: int, n_batches: int, rng) -> np.ndarray:
    """How often the mean of k1 over a batch of ``batch_size`` samples is negative (Monte Carlo).

    Parameters
    ----------
    q, p : array_like
        As in :func:`estimator_stats`.
    batch_size : int
        Samples averaged per estimate (in RLHF: tokens or responses per batch).
    n_batches : int
        Independent batches drawn; the standard error of the result is at most
        ``0.5 / sqrt(n_batches)``.
    rng : numpy Generator or int

    Returns
    -------
    ndarray of shape ``q.shape[:-1]``
        Fraction of batches whose k1 mean is ``< 0``.

    Notes
    -----
    A negative logged KL is the k1 estimator doing its job: it is unbiased, so near
    ``q = p`` (true KL ~ 0) its batch mean is negative almost half of the time. The
    probability falls as the true KL grows relative to ``std(k1) / sqrt(batch_size)``;
    :func:`batch_negative_probability_normal` is the central-limit approximation. An
    exact value would need the distribution of a sum of ``batch_size`` draws (a
    multinomial over the support), too costly in general, hence sampling.
    """
    batch_size = check_int(batch_size, "batch_size", maximum=MAX_SAMPLES)
    n_batches = check_int(n_batches, "n_batches", maximum=MAX_SAMPLES // batch_size or 1)
    q, p, ks = _sampled_ks(q, p, batch_size * n_batches, rng)
    k1 = ks["k1"].reshape(q.shape[:-1] + (n_batches, batch_size))
    return (k1.mean(-1) < 0).mean(-1)


def batch_negative_probability_normal(q, p, batch_size: int) -> np.ndarray:
    """Normal approximation ``Phi(-sqrt(B) KL / std(k1))`` of :func:`batch_negative_probability`.

    Parameters
    ----------
    q, p : array_like
        As in :func:`estimator_stats`.
    batch_size : int
        ``B``.

    Returns
    -------
    ndarray of shape ``q.shape[:-1]``
        The approximation; 0 where ``std(k1) = 0`` (then ``q = p`` on ``q``'s support, k1
        is exactly 0 on every sample, and its mean is never negative).
    """
    batch_size = check_int(batch_size, "batch_size", maximum=MAX_SAMPLES)
    stats = estimator_stats(q, p)
    std = stats["k1"]["std"]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.sqrt(batch_size) * stats["kl"] / std
    return np.where(std > 0, ndtr(-z), 0.0)


def tilted_policies(pi_ref, reward, betas) -> np.ndarray:
    """``pi*_beta = pi_ref exp(r / beta) / Z`` for every ``beta`` at once.

    Parameters
    ----------
    pi_ref : array_like of shape (Y,)
    reward : array_like of shape (Y,)
    betas : array_like of shape (B,)
        Each ``> 0``.

    Returns
    -------
    ndarray of shape (B, Y)
        Large ``beta``: near ``pi_ref``; small ``beta``: far from it.
    """
    pi_ref = check_distribution(pi_ref, "pi_ref")
    reward = check_finite(reward, "reward")
    check_same_shape(pi_ref, reward, "pi_ref", "reward")
    if pi_ref.ndim != 1:
        raise ValueError(f"pi_ref must be 1-D (one prompt), got shape {pi_ref.shape}")
    betas = check_betas(betas)
    # one exact (log-space) optimal policy per beta: r / beta may overflow, pi* cannot
    return np.stack([optimal_policy(pi_ref[None], reward[None], float(b))[0] for b in betas])


#: Smallest ``KL(pi*_beta || pi_ref)`` for which :func:`estimator_table` reports the relative
#: columns ``bias / KL`` and ``std / KL``: below it ``pi*`` is ``pi_ref`` to within the
#: square root of the float64 range and the ratios are not computable.
MIN_TABLE_KL = 1e-280

#: ``|log r|`` below which ``e^l - 1 - l`` is summed as its Taylor series (no cancellation).
_SERIES_BELOW = 1.0

#: Taylor terms kept: the remainder is below ``1 / 25!`` of the sum for ``|l| < 1``.
_SERIES_TERMS = 22


def _exp_tail(log_r, u, first):
    """``sum_{k >= first} l^k / k!`` divided by ``s^2`` (``u = l / s``), for ``|l| < 1``."""
    h = np.ones_like(log_r)
    for k in range(first + _SERIES_TERMS, first, -1):
        h = 1.0 + h * log_r / k
    return u * u * log_r ** (first - 2) / math.factorial(first) * h


def _tilted_stats(logp, gap, beta):
    """Exact statistics of k1, k2, k3 for ``q = pi*_beta`` and ``p = pi_ref`` (one beta).

    ``logp``: ``log pi_ref`` on its support (shape (S,)); ``gap``: ``max r - r`` there.
    Everything is a function of ``l = log(p / q) = gap / beta + log sum_y p e^{-gap/beta}``,
    summed term by term without cancellation and scaled by ``s = min(1, max |l|)`` (each
    estimator's value is ``O(s)`` or ``O(s^2)``), so that it stays exact from ``q`` near
    ``p`` (``l ~ 1e-140``) to ``q`` whose suppressed entries underflow (``l ~ 1e300``);
    standard deviations are summed in log space (``q r^2 = p^2 / q`` overflows far from p).
    """
    p = np.exp(logp)
    with np.errstate(over="ignore"):  # gap / beta = inf: that entry's q is exactly 0
        a = gap / beta
    mass = np.sum(p * np.expm1(-a))  # sum p e^{-a} - 1, in [-1, 0]
    log_mass = np.log1p(mass) if mass > -0.5 else logsumexp(logp - a)
    log_r = a + log_mass  # (S,): log(p / q); +inf where q underflows to 0
    finite = np.isfinite(log_r)
    # q > 0 needs l < 745 - log p < 1500: capping l there changes no product q * f(l)
    lf = np.where(finite, np.minimum(log_r, 1e4), 0.0)
    scale = min(1.0, float(np.max(np.abs(log_r)))) or 1.0
    u = lf / scale
    log_q = logp - lf
    q = np.where(finite, np.exp(log_q), 0.0)
    small = np.abs(lf) < _SERIES_BELOW
    ls = np.where(small, lf, 0.0)
    lb = np.where(small, 1.0, np.minimum(lf, 700.0))  # l > 700: only in log space below
    # k3 / s^2 and (k2 - k3) / s^2
    k3 = np.where(small, _exp_tail(ls, np.where(small, u, 0.0), 2), np.expm1(lb) - lb)
    d = np.where(small, -_exp_tail(ls, np.where(small, u, 0.0), 3),
                 0.5 * lb * lb - (np.expm1(lb) - lb))
    # q k3 = (p - q) - q l, with p - q = p (1 - e^{-l}): tends to p (not 0 * inf) as q -> 0
    p_minus_q = np.where(lf > 0, -p * np.expm1(-np.maximum(lf, 0.0)), p - q)
    qk3 = np.where(finite, np.where(np.abs(lf) < 30, q * k3, p_minus_q - q * lf), p)
    kl = float(np.sum(qk3))  # KL / s^2 = E_q[k3] / s^2: every term >= 0, no cancellation
    qd = np.where(finite, np.where(np.abs(lf) < 30, q * d, 0.5 * q * lf * lf - qk3), -p)
    # l - E_q l = a - E_q a (log_mass cancels), measured from q's mode j: exact even where
    # q is nearly a point mass
    j = int(np.argmax(np.where(finite, log_q, -np.inf)))
    with np.errstate(over="ignore"):  # only off q's support (a = inf there)
        a_j = np.where(finite, (gap - gap[j]) / beta, 0.0)
    dev1 = np.minimum(a_j - np.sum(q * a_j), 1e4) / scale  # (k1 - E k1) / s, up to sign
    var1 = float(np.sum(q * dev1 * dev1))
    dev2 = 0.5 * dev1 * dev1 - scale * kl * dev1 - 0.5 * var1  # (k2 - E k2) / s^2

    def log_std(log_dev, where_q_is_zero=-np.inf):  # log sqrt(sum_y q_y dev_y^2)
        log_var = np.where(finite, log_q + 2 * log_dev, where_q_is_zero)
        return 0.5 * float(logsumexp(log_var))

    with np.errstate(divide="ignore"):  # log 0 = -inf: a response at the mean
        log_std1 = log_std(np.log(np.abs(dev1)))  # std(k1) / s
        log_std2 = log_std(np.log(np.abs(dev2)))  # std(k2) / s^2
        log_std3 = log_std(np.where(  # std(k3) / s^2
            lf < 700, np.log(np.abs(k3 - kl)),
            lf + np.log1p(-(1 + lf + kl) * np.exp(-np.maximum(lf, 700.0)))),
            np.inf)  # q r^2 = p e^l: infinite where l is
    log_kl = np.log(kl) if kl > 0 else -np.inf
    s1, s2 = np.log(scale), 2 * np.log(scale)
    with np.errstate(over="ignore", invalid="ignore"):  # +inf only where the truth overflows
        out = {"kl": kl * scale**2, "p_negative_k1": float(np.sum(np.where(lf > 0, q, 0.0))),
               "k1_bias": 0.0, "k1_std": np.exp(log_std1 + s1),
               "k2_bias": float(np.sum(qd)) * scale**2, "k2_std": np.exp(log_std2 + s2),
               "k3_bias": 0.0, "k3_std": np.exp(log_std3 + s2),
               "k1_rel_bias": 0.0, "k1_rel_std": np.exp(log_std1 - s1 - log_kl),
               "k2_rel_bias": float(np.sum(qd)) / kl if kl > 0 else np.nan,
               "k2_rel_std": np.exp(log_std2 - log_kl),
               "k3_rel_bias": 0.0, "k3_rel_std": np.exp(log_std3 - log_kl)}
    return out


def estimator_table(pi_ref, reward, betas) -> dict[str, np.ndarray]:
    """Bias and spread of k1, k2, k3 for policies ``pi*_beta`` near and far from ``pi_ref``.

    Parameters
    ----------
    pi_ref : array_like of shape (Y,)
        Reference policy (``p``; ``> 0`` on the support of every ``pi*``, which it is).
    reward : array_like of shape (Y,)
        Reward tilting ``pi_ref`` into ``pi*_beta`` (the sampling distribution ``q``).
    betas : array_like of shape (B,)
        Large ``beta``: ``pi*`` near ``pi_ref``; small: far.

    Returns
    -------
    dict of ndarray of shape (B,)
        ``"beta"``, ``"kl"`` (exact ``KL(pi* || pi_ref)``), ``"p_negative_k1"``, and for
        each estimator ``k``: ``"<k>_bias"``, ``"<k>_std"``, and the relative
        ``"<k>_rel_bias"`` = bias / KL and ``"<k>_rel_std"`` = std / KL (Schulman's
        table reports these two). ``"k3_std"`` and ``"k3_rel_std"`` are ``+inf`` where
        their true value exceeds the float64 range (far from ``pi_ref``, where
        ``r = pi_ref / pi*`` does).

    Raises
    ------
    ValueError
        If an input is invalid, or at some ``beta`` the KL is below :data:`MIN_TABLE_KL`
        (``beta`` too large for the reward's spread, or a reward constant on the support
        of ``pi_ref``): the relative columns are then not computable.

    Notes
    -----
    Exact sums over the support in log space, with ``l = log(pi_ref / pi*) =
    (max r - r) / beta + log E_{pi_ref} e^{-(max r - r) / beta}``; ``KL = E_q[k3]`` summed
    term by term (each ``>= 0``) and ``k2``'s bias as ``E_q[l^2/2 - k3]``. k1 and k3 are
    unbiased on this family (``E_q[r] = 1``: ``pi*`` covers the support of ``pi_ref``), so
    their bias columns are exact zeros. Chapter, "RLHF uses reverse KL, which is
    mode-seeking" (Schulman, 2020).
    """
    pi_ref = check_distribution(pi_ref, "pi_ref")
    reward = check_finite(reward, "reward")
    check_same_shape(pi_ref, reward, "pi_ref", "reward")
    if pi_ref.ndim != 1:
        raise ValueError(f"pi_ref must be 1-D (one prompt), got shape {pi_ref.shape}")
    betas = check_betas(betas)
    support = pi_ref > 0
    logp = np.log(pi_ref[support])
    with np.errstate(over="ignore"):  # a gap beyond float64: q = 0 there, as it should
        gap = reward[support].max() - reward[support]
    rows = [_tilted_stats(logp, gap, float(b)) for b in betas]
    table = {"beta": betas}
    for key in rows[0]:
        table[key] = np.array([row[key] for row in rows])
    kl = table["kl"]
    if np.any(kl < MIN_TABLE_KL):
        i = int(np.argmax(kl < MIN_TABLE_KL))
        raise ValueError(
            f"betas[{i}] = {betas[i]:g} leaves pi* = pi_ref to float precision "
            f"(KL = {kl[i]:.3g} < {MIN_TABLE_KL:g}; the reward's spread on the support of "
            f"pi_ref is {gap.max():g}): the relative columns bias / KL are not computable"
        )
    return table


# --- KL in the reward versus KL in the loss ----------------------------------------------------


def _softmax_pair(logits, pi_ref):
    logits = check_finite(logits, "logits")
    pi_ref = check_distribution(pi_ref, "pi_ref")
    check_same_shape(logits, pi_ref, "logits", "pi_ref")
    if np.any(pi_ref <= 0):
        raise ValueError(
            "pi_ref must be > 0 everywhere: a softmax policy puts mass on every response, so "
            "KL(pi || pi_ref) would be infinite"
        )
    log_pi = log_softmax(logits, axis=-1)
    return log_pi, np.log(pi_ref)


def _score_expectation(pi, c, pi_c=None):
    """``E_{y~pi}[c(y) grad log pi(y)] = pi * (c - E_pi c)`` for a softmax (``e_y - pi``).

    ``pi_c``: the products ``pi * c`` computed exactly where ``c`` overflows to ``+-inf``
    on a response whose ``pi`` underflows to 0 (``0 * inf`` would be NaN); used only there.
    """
    if pi_c is None or np.all(np.isfinite(c)):
        return pi * (c - (pi * c).sum(-1, keepdims=True))
    finite = np.isfinite(c)
    with np.errstate(invalid="ignore", over="ignore"):
        pic = np.where(finite, pi * c, pi_c)
        mean = pic.sum(-1, keepdims=True)
        return np.where(finite, pi * (c - mean), pic - pi * mean)


def _dk_dlogpi(log_pi, log_ref):
    """Derivatives of ``k1, k2, k3`` wrt ``log pi(y)`` (``log pi_ref(y)`` fixed)."""
    log_r = log_ref - log_pi
    with np.errstate(over="ignore"):  # r = inf is reported by the callers' finiteness checks
        dk3 = -np.expm1(log_r)
    return {"k1": np.ones_like(log_r), "k2": -log_r, "k3": dk3}


def kl_gradients(logits, pi_ref) -> dict[str, np.ndarray]:
    """Exact expected gradients wrt the logits of ``pi = softmax(logits)`` of each KL penalty.

    Parameters
    ----------
    logits : array_like of shape (..., Y)
        Logits of a tabular softmax policy (one row per prompt).
    pi_ref : array_like of the same shape
        Reference policy, ``> 0`` everywhere.

    Returns
    -------
    dict of str to ndarray of the input shape
        Keys :data:`KL_GRADIENTS`, each the gradient per prompt (no prompt weighting):

        - ``"reverse_kl"``: ``grad KL(pi || pi_ref) = pi * (f - KL)``, ``f = log(pi / pi_ref)``;
        - ``"forward_kl"``: ``grad KL(pi_ref || pi) = pi - pi_ref``;
        - ``"k<i>_in_reward"``: ``E_pi[k_i(y) grad log pi(y)] = pi * (k_i - E_pi k_i)``,
          the REINFORCE gradient when ``k_i`` is subtracted from the reward and treated
          as a constant (PPO-RLHF's per-token penalty is ``k1``);
        - ``"k<i>_in_loss"``: ``E_pi[grad k_i(y)]`` with ``y`` drawn from ``pi`` and the
          sampling weights not differentiated: what an implementation that adds
          ``beta * mean(k_i)`` to its loss and backpropagates gets in expectation (GRPO
          uses ``k3``).

    Raises
    ------
    ValueError
        If ``pi_ref`` has a zero, the shapes differ, or logits are not finite.

    Notes
    -----
    With ``r = pi_ref / pi`` and ``grad log pi(y) = e_y - pi`` for a softmax:

    - ``grad KL(pi || pi_ref) = E_pi[f grad log pi] + E_pi[grad f] = E_pi[f grad log pi]``
      because ``E_pi[grad log pi] = 0``; so **k1 as a reward** (``k1 = f`` on ``pi``'s
      samples) gives the true gradient.
    - **k1 in the loss**: ``grad k1(y) = grad log pi(y)``, whose expectation is ``0``:
      no gradient at all, whatever ``pi`` is.
    - **k2 in the loss**: ``grad k2(y) = f(y) grad log pi(y)``, so ``E_pi[grad k2]`` equals
      the k1-as-reward gradient: the true ``grad KL(pi || pi_ref)``.
    - **k3 in the loss**: ``d k3 / d log pi = 1 - r``, so
      ``E_pi[grad k3] = sum_y (pi - pi_ref)(y) grad log pi(y) = -sum_y pi_ref(y) grad log pi(y)
      = grad KL(pi_ref || pi)``: the gradient of the **forward** KL, for any
      parametrisation (``pi - pi_ref`` for a softmax). The value of k3 is an unbiased
      estimate of the reverse KL, but its gradient is not the reverse KL's.
    - **k3 as a reward**: since ``E_pi[k3] = KL(pi || pi_ref)`` for every ``pi``,
      ``grad KL = E_pi[k3 grad log pi] + E_pi[grad k3]``, i.e.
      ``k3_in_reward = reverse_kl - forward_kl``: biased as well.

    Chapter, "RLHF uses reverse KL, which is mode-seeking" and "Modern RL for LLMs"
    (GRPO keeps a KL penalty); Schulman (2020).
    """
    log_pi, log_ref = _softmax_pair(logits, pi_ref)
    return {name: _kl_gradient(name, log_pi, log_ref) for name in KL_GRADIENTS}


def _kl_gradient(name, log_pi, log_ref):
    """One entry of :func:`kl_gradients` from validated log-probabilities."""
    pi = np.exp(log_pi)
    if name == "reverse_kl":
        return _score_expectation(pi, log_pi - log_ref)
    if name == "forward_kl":
        return pi - np.exp(log_ref)
    estimator, where = name.split("_in_")
    log_r = log_ref - log_pi
    if where == "reward":
        # pi k2 = exp(log pi + 2 log|log r|) / 2, pi k3 = (pi_ref - pi) - pi log r
        with np.errstate(divide="ignore"):
            pi_c = {"k1": None, "k2": 0.5 * np.exp(log_pi + 2 * np.log(np.abs(log_r))),
                    "k3": (np.exp(log_ref) - pi) - pi * log_r}[estimator]
        return _score_expectation(pi, kl_estimates(log_pi, log_ref)[estimator], pi_c)
    # E_pi[dk/dlogpi(y) (e_y - pi)]: the same expectation with c = dk/dlogpi;
    # pi dk3/dlogpi = pi - pi_ref
    pi_c = pi - np.exp(log_ref) if estimator == "k3" else None
    return _score_expectation(pi, _dk_dlogpi(log_pi, log_ref)[estimator], pi_c)


def _ascent_penalty(name, log_pi, log_ref):
    """:func:`_kl_gradient` for the ascent; ``+inf`` once ``k3_in_reward`` has diverged.

    ``k3_in_reward`` ascends ``KL(pi_ref || pi)``, which is ``+inf`` as soon as a
    probability underflows to 0: the gradient is reported as non-finite there so that the
    loop stops, naming the step.
    """
    grad = _kl_gradient(name, log_pi, log_ref)
    if name == "k3_in_reward":
        grad = np.where(np.exp(log_pi) == 0, np.inf, grad)
    return grad


def sampled_kl_gradients(logits, pi_ref, n_samples: int, rng) -> dict[str, np.ndarray]:
    """Monte Carlo averages of the per-sample gradients behind :func:`kl_gradients`.

    Draws ``n_samples`` responses ``y_i ~ pi`` per row and averages, for each estimator
    ``k``, ``k(y_i) (e_{y_i} - pi)`` (in the reward) and ``dk/dlog pi(y_i) (e_{y_i} - pi)``
    (in the loss): what a training loop computes on a batch.

    Parameters
    ----------
    logits, pi_ref : array_like of shape (..., Y)
        As in :func:`kl_gradients`.
    n_samples : int
    rng : numpy Generator or int

    Returns
    -------
    dict of str to ndarray
        Keys ``"k<i>_in_reward"`` and ``"k<i>_in_loss"``; each converges to the
        :func:`kl_gradients` entry of the same name as ``n_samples`` grows.
    """
    n_samples = check_int(n_samples, "n_samples", maximum=MAX_SAMPLES)
    log_pi, log_ref = _softmax_pair(logits, pi_ref)
    pi = np.exp(log_pi)
    y = sample_categorical(pi, n_samples, rng)  # (..., n)
    lp = np.take_along_axis(log_pi, y, axis=-1)
    lr = np.take_along_axis(log_ref, y, axis=-1)
    ks = kl_estimates(lp, lr)
    dk = _dk_dlogpi(lp, lr)
    n_cat = pi.shape[-1]
    lead = pi.shape[:-1]
    n_rows = int(np.prod(lead))
    flat_y = (y.reshape(n_rows, n_samples) + n_cat * np.arange(n_rows)[:, None]).ravel()

    def average(c):  # mean_i c_i (e_{y_i} - pi), all rows at once
        counts = np.bincount(flat_y, weights=c.reshape(n_rows, n_samples).ravel(),
                             minlength=n_rows * n_cat).reshape(lead + (n_cat,))
        return (counts - c.sum(-1, keepdims=True) * pi) / n_samples

    out = {}
    for name in ESTIMATORS:
        out[f"{name}_in_reward"] = average(ks[name])
    for name in ESTIMATORS:
        out[f"{name}_in_loss"] = average(dk[name])
    return out


def kl_penalised_ascent(pi_ref, reward, beta, kl_gradient: str = "reverse_kl", *,
                        steps: int = 2000, lr: float = 1.0, record_every: int = 10,
                        verbose: bool = False) -> dict[str, np.ndarray]:
    """Exact gradient ascent on ``E_pi r - beta * (KL penalty)`` for a tabular softmax policy.

    :func:`rlhf_toy.bandit.train.gradient_ascent` with its KL gradient replaced by the entry
    ``kl_gradient`` of :func:`kl_gradients` (all exact expectations, no sampling), so the
    run shows where each way of implementing the penalty converges.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y) or (Y,)
        Reference policy, ``> 0`` everywhere; also the starting policy.
    reward : array_like of the same shape
    beta : float
        KL coefficient, ``> 0``.
    kl_gradient : str, default "reverse_kl"
        One of :data:`KL_GRADIENTS`.
    steps : int
        Gradient steps.
    lr : float
        Step size on each prompt's logits.
    record_every : int
        Keep the policy every ``record_every >= 1`` steps (and at the start and the end).
    verbose : bool
        Show a progress bar.

    Returns
    -------
    dict
        ``"pi"``: the final policy; ``"steps"`` (R,) and ``"trajectory"`` (R, ...) the
        recorded steps and policies.

    Raises
    ------
    ValueError
        On bad arguments or an unknown ``kl_gradient``.
    FloatingPointError
        Naming the step, if the logits become non-finite.

    Notes
    -----
    Stationary points: ``reverse_kl``, ``k1_in_reward`` and ``k2_in_loss`` converge to
    ``pi* = pi_ref exp(r / beta) / Z``; ``k3_in_loss`` and ``forward_kl`` to the maximiser
    of ``E_pi r - beta KL(pi_ref || pi)``,
    :func:`rlhf_toy.bandit.experiments.modes.forward_kl_regularised_policy`; ``k1_in_loss``
    applies no penalty at all (its expected gradient is 0), so the policy drifts towards the
    argmax of ``r``. ``k3_in_reward`` follows the gradient of ``KL(pi || pi_ref) -
    KL(pi_ref || pi)``, which is unbounded below: the logits of some responses run off to
    ``-inf``, and once one of their probabilities underflows to 0 (the forward KL is then
    infinite) this function stops with a ``FloatingPointError`` naming the step.
    """
    if kl_gradient not in KL_GRADIENTS:
        raise ValueError(f"kl_gradient must be one of {KL_GRADIENTS}, got {kl_gradient!r}")
    pi_ref = check_distribution(pi_ref, "pi_ref")
    if np.any(pi_ref <= 0):
        raise ValueError("pi_ref must be > 0 everywhere (the start is logits = log pi_ref)")
    one_prompt = pi_ref.ndim == 1
    pi_ref = np.atleast_2d(pi_ref)
    reward = np.atleast_2d(check_finite(reward, "reward"))
    lr = check_positive(lr, "lr")
    record_every = check_int(record_every, "record_every", maximum=MAX_STEPS)
    penalty = None if kl_gradient == "reverse_kl" else partial(_ascent_penalty, kl_gradient)
    run = gradient_ascent(pi_ref, reward, beta, steps=steps, lr=lr * pi_ref.shape[0],
                          record_every=record_every, kl_gradient=penalty, verbose=verbose)
    trajectory = run.history["probs"][:, 0] if one_prompt else run.history["probs"]
    return {"pi": trajectory[-1], "steps": run.history["steps"], "trajectory": trajectory}
