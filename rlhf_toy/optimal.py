"""The KL-regularised objective of RLHF and its closed-form optimum (chapter, Stage 3).

For each prompt ``x`` the chapter's objective

    J(pi) = E_x [ E_{y ~ pi(.|x)} r(x, y) - beta KL(pi(.|x) || pi_ref(.|x)) ]

is maximised by the Boltzmann policy

    pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x),
    Z(x) = sum_y pi_ref(y|x) exp(r(x, y) / beta),

with ``J(pi*) = beta E_x log Z(x)``, ``KL(pi* || pi_ref) = E_{pi*}[r] / beta - log Z`` and
``d log Z / d(1/beta) = E_{pi*}[r]``. Everything here is computed in log space with the
reward shifted by its maximum over the support of ``pi_ref``, so that ``beta`` from 1e-8
(the argmax of ``r`` on the support) to 1e8 (``pi_ref`` itself) and rewards of 1e4 stay
finite and exact. Zeros of ``pi_ref`` stay exactly zero in ``pi*``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rlhf_toy._validate import (
    as_real_array,
    check_distribution,
    check_finite,
    check_named_tables,
    check_positive,
    check_prompt_probs,
    check_same_shape,
)
from rlhf_toy.kl import kl_divergence

__all__ = [
    "Frontier",
    "log_optimal_policy",
    "log_partition",
    "objective",
    "objective_gradient",
    "optimal_policy",
    "optimal_value",
    "reward_kl_frontier",
]

#: Largest number of float64 elements one block of the frontier computation holds.
_FRONTIER_BLOCK = 1 << 20


def _check_table(pi_ref, reward, ndim=None):
    """``pi_ref`` a non-empty probability table, ``reward`` finite of the same shape.

    ``ndim``: ``None`` (any), ``2`` (``(X, Y)`` only) or ``"1or2"`` (``(Y,)`` or ``(X, Y)``).
    """
    pi_ref = check_distribution(pi_ref, "pi_ref")
    reward = check_finite(reward, "reward")
    if ndim == 2 and pi_ref.ndim != 2:
        raise ValueError(f"pi_ref must have shape (X, Y), got {pi_ref.shape}")
    if ndim == "1or2" and pi_ref.ndim not in (1, 2):
        raise ValueError(f"pi_ref must have shape (Y,) or (X, Y), got {pi_ref.shape}")
    check_same_shape(pi_ref, reward, "pi_ref", "reward")
    return pi_ref, reward


def _prompt_weights(prompt_probs, table: np.ndarray):
    """``p(x)`` for an ``(X, Y)`` table; ``1.0`` for a single ``(Y,)`` row."""
    if table.ndim == 1:
        return float(check_prompt_probs(prompt_probs, 1)[0])
    return check_prompt_probs(prompt_probs, table.shape[0])


def _shifted(pi_ref: np.ndarray, reward: np.ndarray, beta):
    """``log pi_ref``, ``s = (r - r_max) / beta`` and ``log Z - r_max / beta``.

    ``r_max`` is the largest reward on the support of ``pi_ref`` (per prompt), so that
    ``s <= 0`` on the support and the shifted log-partition never under- or overflows.
    ``beta`` may be a scalar or an array broadcasting against ``reward[..., None]``'s
    leading axes (the frontier passes shape ``(n_betas, 1, 1)``).
    """
    support = pi_ref > 0
    with np.errstate(divide="ignore"):
        log_ref = np.log(pi_ref)
    r_max = np.max(np.where(support, reward, -np.inf), axis=-1, keepdims=True)
    # s <= 0 on the support; -inf where the true value is below the float64 range (tiny
    # beta), which exp maps to the exact 0. Off the support s = 0: log_ref = -inf rules.
    with np.errstate(over="ignore"):
        s = np.where(support, (reward - r_max) / beta, 0.0)
    e_sum = (pi_ref * np.exp(s)) @ np.ones(s.shape[-1])
    log_z_shifted = _log_z_shifted(pi_ref, s, e_sum)[..., None]
    return log_ref, s, r_max, log_z_shifted


def _log_z_shifted(pi_ref: np.ndarray, s: np.ndarray, e_sum: np.ndarray) -> np.ndarray:
    """``log Z_s = log sum_y pi_ref e^s`` (last axis reduced), accurate for every ``beta``.

    ``e_sum`` is ``sum_y pi_ref e^s``, at least ``pi_ref(argmax r) > 0``. Where ``Z_s`` is
    near one (large ``beta``, ``s`` near 0) ``log`` of it would lose everything below
    ``1e-16``, which ``beta log Z_s`` multiplies back up; there ``log1p(sum_y pi_ref
    expm1(s))`` is used instead.
    """
    zm1 = (pi_ref * np.expm1(s)) @ np.ones(s.shape[-1])
    with np.errstate(divide="ignore"):
        return np.where(zm1 > -0.5, np.log1p(np.maximum(zm1, -0.5)), np.log(e_sum))


def log_optimal_policy(pi_ref, reward, beta) -> np.ndarray:
    """``log pi*(y|x) = log pi_ref(y|x) + r(x, y) / beta - log Z(x)``; ``-inf`` off the support.

    Parameters and exceptions are those of :func:`optimal_policy`.

    Parameters
    ----------
    pi_ref : array_like of shape (..., Y)
        Reference policy; rows sum to one, zeros allowed.
    reward : array_like of the same shape
        Reward ``r(x, y)``; finite.
    beta : float
        KL coefficient, ``> 0``.

    Returns
    -------
    ndarray of the input shape
        ``log pi*``; ``-inf`` where ``pi_ref`` is zero.
    """
    pi_ref, reward = _check_table(pi_ref, reward)
    beta = check_positive(beta, "beta")
    log_ref, s, _, log_z_shifted = _shifted(pi_ref, reward, beta)
    return log_ref + s - log_z_shifted


def optimal_policy(pi_ref, reward, beta) -> np.ndarray:
    """The KL-regularised optimum ``pi* = pi_ref exp(r / beta) / Z`` along the last axis.

    Parameters
    ----------
    pi_ref : array_like of shape (..., Y)
        Reference policy; rows sum to one, zeros allowed.
    reward : array_like of the same shape
        Reward ``r(x, y)``; finite.
    beta : float
        KL coefficient, ``> 0``.

    Returns
    -------
    ndarray of the input shape
        ``pi*``; exactly zero where ``pi_ref`` is zero. As ``beta -> 0`` it tends to the
        uniform distribution over the maximisers of ``r`` on the support of ``pi_ref``
        (weighted by ``pi_ref``); as ``beta -> inf`` to ``pi_ref``.

    Raises
    ------
    ValueError
        If ``beta <= 0`` or is not finite, ``pi_ref`` is not a probability table,
        ``reward`` is not finite, or the shapes differ.

    Notes
    -----
    Chapter, Stage 3, "KL-Regularized RLHF Objective". First-order condition (exercise
    1): on the support, ``r - beta (log(pi*/pi_ref) + 1)`` is the same for every ``y``;
    see :func:`objective_gradient`.

    Examples
    --------
    >>> optimal_policy([0.5, 0.5], [0.0, 1.0], beta=1.0).round(4)
    array([0.2689, 0.7311])
    """
    return np.exp(log_optimal_policy(pi_ref, reward, beta))


def log_partition(pi_ref, reward, beta) -> np.ndarray:
    """``log Z(x) = log sum_y pi_ref(y|x) exp(r(x, y) / beta)`` (last axis reduced).

    Parameters
    ----------
    pi_ref, reward, beta
        As in :func:`optimal_policy`.

    Returns
    -------
    ndarray of shape ``pi_ref.shape[:-1]``
        ``log Z``. For very small ``beta`` this is ``max r / beta``-sized (1e12 for
        ``r = 1e4, beta = 1e-8``) and is returned as such, ``+-inf`` once ``max r / beta``
        leaves the float64 range; ``beta * log Z`` is the bounded quantity (see
        :func:`optimal_value`).

    Notes
    -----
    ``beta log Z(x)`` is the optimal value of prompt ``x``; ``KL(pi* || pi_ref) =
    E_{pi*}[r] / beta - log Z`` and ``d log Z / d(1/beta) = E_{pi*}[r]``.
    """
    pi_ref, reward = _check_table(pi_ref, reward)
    beta = check_positive(beta, "beta")
    _, _, r_max, log_z_shifted = _shifted(pi_ref, reward, beta)
    with np.errstate(over="ignore"):
        return (log_z_shifted + r_max / beta)[..., 0]


def objective(pi, pi_ref, reward, beta, prompt_probs=None) -> float:
    """The regularised objective ``J(pi) = E_x [E_pi r - beta KL(pi || pi_ref)]``, exactly.

    Parameters
    ----------
    pi, pi_ref : array_like of shape (X, Y)
        Policy and reference policy; rows sum to one.
    reward : array_like of shape (X, Y)
        Reward table.
    beta : float
        KL coefficient, ``> 0``.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution; uniform if omitted.

    Returns
    -------
    float
        ``J(pi)``; ``-inf`` if ``pi`` puts mass where ``pi_ref`` has none.
    """
    pi_ref, reward = _check_table(pi_ref, reward, ndim="1or2")
    pi = check_distribution(pi, "pi")
    check_same_shape(pi, pi_ref, "pi", "pi_ref")
    beta = check_positive(beta, "beta")
    w = _prompt_weights(prompt_probs, pi)
    per_prompt = (pi * reward).sum(-1) - beta * kl_divergence(pi, pi_ref)
    return float(np.sum(w * per_prompt))


def optimal_value(pi_ref, reward, beta, prompt_probs=None) -> float:
    """``J(pi*) = beta E_x log Z(x)``, computed as ``E_x [r_max + beta log Z_shifted]``.

    Parameters are those of :func:`objective` (without ``pi``). This is the largest
    value :func:`objective` takes over all policies.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy; rows sum to one.
    reward : array_like of shape (X, Y)
        Reward table.
    beta : float
        KL coefficient, ``> 0``.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution; uniform if omitted.

    Returns
    -------
    float
        ``max_pi J(pi)``.
    """
    pi_ref, reward = _check_table(pi_ref, reward, ndim="1or2")
    beta = check_positive(beta, "beta")
    w = _prompt_weights(prompt_probs, pi_ref)
    _, _, r_max, log_z_shifted = _shifted(pi_ref, reward, beta)
    per_prompt = (r_max + beta * log_z_shifted)[..., 0]
    return float(np.sum(w * per_prompt))


def objective_gradient(pi, pi_ref, reward, beta, prompt_probs=None) -> np.ndarray:
    """Gradient of ``J`` with respect to the table ``pi(y|x)`` (ignoring the simplex).

    ``dJ / dpi(y|x) = p(x) [ r(x, y) - beta (log(pi(y|x) / pi_ref(y|x)) + 1) ]``.

    At an interior optimum of ``J`` on the simplex this is constant across ``y`` on the
    support of each row (the Lagrange multiplier of ``sum_y pi = 1``): the first-order
    optimality condition of the chapter's exercise 1. Off the interior the derivative is
    infinite: ``+inf`` where ``pi = 0 < pi_ref`` (which is why ``pi*`` keeps the whole
    support of ``pi_ref``) and ``-inf`` where ``pi_ref = 0`` (mass there costs infinite KL).

    Parameters
    ----------
    pi, pi_ref : array_like of shape (X, Y)
        Policy and reference policy; rows sum to one.
    reward : array_like of shape (X, Y)
        Reward table.
    beta : float
        KL coefficient, ``> 0``.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution; uniform if omitted.

    Returns
    -------
    ndarray of shape (X, Y), or (Y,) for a single row
        Zero on prompts of probability zero (even where the derivative is infinite).
    """
    pi_ref, reward = _check_table(pi_ref, reward, ndim="1or2")
    pi = check_distribution(pi, "pi")
    check_same_shape(pi, pi_ref, "pi", "pi_ref")
    beta = check_positive(beta, "beta")
    w = _prompt_weights(prompt_probs, pi)
    w = w[:, None] if pi.ndim == 2 else np.float64(w)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(pi) - np.log(pi_ref)
    log_ratio = np.where((pi == 0) & (pi_ref > 0), -np.inf, log_ratio)
    log_ratio = np.where(pi_ref == 0, np.inf, log_ratio)
    with np.errstate(over="ignore", invalid="ignore"):
        grad = reward - beta * (log_ratio + 1.0)
        return np.where(w > 0, w * grad, 0.0)


@dataclass(frozen=True)
class Frontier:
    """The exact reward-KL frontier traced by ``pi*_beta`` over a grid of ``beta``.

    Attributes
    ----------
    betas : ndarray of shape (n_betas,)
    kl : ndarray of shape (n_betas,)
        ``E_x KL(pi*_beta(.|x) || pi_ref(.|x))``.
    reward : ndarray of shape (n_betas,)
        ``E_x E_{pi*_beta} r``, the reward being optimised.
    objective : ndarray of shape (n_betas,)
        ``J(pi*_beta) = beta E_x log Z``.
    extra : dict of str to ndarray of shape (n_betas,)
        Expected value under ``pi*_beta`` of each reward passed as ``eval_rewards``
        (for example the gold reward while a proxy is optimised).
    """

    betas: np.ndarray
    kl: np.ndarray
    reward: np.ndarray
    objective: np.ndarray
    extra: dict = field(default_factory=dict)


def reward_kl_frontier(pi_ref, reward, betas, prompt_probs=None, eval_rewards=None) -> Frontier:
    """Expected reward and KL of ``pi*_beta`` for every ``beta`` of a grid, exactly.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy.
    reward : array_like of shape (X, Y)
        The reward optimised (for example a proxy ``r_hat``).
    betas : array_like of shape (n_betas,)
        KL coefficients, each ``> 0``.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution; uniform if omitted.
    eval_rewards : dict of str to array_like of shape (X, Y), optional
        Other rewards to evaluate under each ``pi*_beta`` (for example ``{"gold": r_star}``).

    Returns
    -------
    Frontier

    Notes
    -----
    Vectorised over betas and prompts: the work is arrays of shape
    ``(n_betas, X, Y)``, processed in blocks of betas of at most ``2**20`` elements so
    that memory stays bounded and in cache (200 x 1000 x 1000 would otherwise need
    gigabytes). Per block, with ``s = (r - r_max) / beta``: ``pi* = pi_ref e^s / Z_s``,
    ``KL = E_{pi*}[s] - log Z_s`` (no cancellation of ``1e12``-sized terms at tiny
    ``beta``) and ``J = E_x [r_max + beta log Z_s]``.
    """
    pi_ref, reward = _check_table(pi_ref, reward, ndim=2)
    betas = np.atleast_1d(as_real_array(betas, "betas"))
    if betas.ndim != 1 or betas.size == 0:
        raise ValueError(f"betas must be a non-empty 1-D array, got shape {betas.shape}")
    if not np.all(np.isfinite(betas)) or np.any(betas <= 0):
        bad = betas[~(np.isfinite(betas) & (betas > 0))][0]
        raise ValueError(f"betas must be finite and > 0, got {bad}")
    w = check_prompt_probs(prompt_probs, pi_ref.shape[0])
    evals = check_named_tables(eval_rewards, "eval_rewards", reward, "reward")

    # Per prompt, shift the reward by its max on the support: gap = r - r_max <= 0 there, and
    # 0 off the support (where pi_ref = 0 zeroes every term anyway, with no inf * 0).
    support = pi_ref > 0
    r_max = np.max(np.where(support, reward, -np.inf), axis=-1)  # (X,)
    with np.errstate(over="ignore"):
        gap = np.where(support, reward - r_max[:, None], 0.0)  # (X, Y)
    # Z_s = sum_y pi_ref e^{gap / beta} >= pi_ref(argmax) > 0: no max-shift is needed, and
    # one exp per element serves Z, pi* and every expectation.
    others = [reward, *evals.values()]
    n_betas, size = len(betas), pi_ref.size
    block = max(1, _FRONTIER_BLOCK // size)
    ones = np.ones(pi_ref.shape[1])
    kl, value = np.empty(n_betas), np.empty(n_betas)
    expected = np.empty((len(others), n_betas))
    for start in range(0, n_betas, block):
        sl = slice(start, start + block)
        # gap / beta, not gap * (1 / beta): 1 / beta overflows for subnormal beta, and
        # 0 * inf would be NaN. s = -inf where the true value is below -1.8e308.
        with np.errstate(over="ignore"):
            s = gap / betas[sl, None, None]  # (nb, X, Y)
        e = np.exp(s)  # (nb, X, Y)
        e *= pi_ref  # unnormalised pi*: pi_ref e^s
        z = e @ ones  # (nb, X), >= pi_ref(argmax) > 0
        log_z = _log_z_shifted(pi_ref, s, z)  # (nb, X)
        s[e == 0] = 0.0  # s e = 0 there (exactly, and no -inf * 0)
        s *= e
        kl[sl] = (s @ ones / z - log_z) @ w  # E_{pi*}[s] - log Z_s
        value[sl] = (r_max + betas[sl, None] * log_z) @ w  # beta log Z
        for i, r in enumerate(others):
            expected[i, sl] = (np.einsum("bxy,xy->bx", e, r) / z) @ w
    return Frontier(betas=betas, kl=np.maximum(kl, 0.0), reward=expected[0],
                    objective=value, extra=dict(zip(evals, expected[1:], strict=True)))
