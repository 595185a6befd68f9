"""Exercise 3: the KL-optimal policy of a noisy proxy overestimates the true reward.

Exact expectation over discrete noise (:func:`expected_overestimation`) and a Monte Carlo
estimate over random Gaussian worlds (:func:`overestimation_monte_carlo`); the
overestimation of one world is :func:`rlhf_toy.bandit.experiments.proxy_error.overestimation`.
"""

from __future__ import annotations

import itertools

import numpy as np

from rlhf_toy._validate import (
    MAX_MAGNITUDE,
    MAX_SAMPLES,
    MAX_TABLE_ENTRIES,
    as_rng,
    check_distribution,
    check_finite,
    check_float,
    check_int,
    check_nonempty,
    check_prompt_probs,
    check_same_shape,
)
from rlhf_toy._validate import (
    check_betas as check_betas_named,
)
from rlhf_toy.bandit.env import BanditEnv
from rlhf_toy.bandit.experiments.goodhart import check_betas
from rlhf_toy.bandit.experiments.proxy_error import overestimation
from rlhf_toy.optimal import reward_kl_frontier

__all__ = [
    "exercise3_curves",
    "expected_overestimation",
    "overestimation_monte_carlo",
]

#: Largest number of noise patterns times table entries :func:`expected_overestimation`
#: enumerates (the enumeration is exact, so it must stay small).
_MAX_ENUMERATION = 1 << 22


def expected_overestimation(pi_ref, r_star, betas, noise_values, noise_probs=None,
                            prompt_probs=None) -> np.ndarray:
    """Exact ``E_eps E_x E_{pi*_beta}[eps]`` for ``r_hat = r_star + eps``, ``eps`` i.i.d. discrete.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy.
    r_star : array_like of shape (X, Y)
        The gold reward, held fixed.
    betas : array_like of shape (k,)
        KL coefficients.
    noise_values : array_like of shape (m,)
        Support of the noise of one entry; every entry of ``eps`` is drawn independently
        from it (for example ``[-1, 1]``: Rademacher noise).
    noise_probs : array_like of shape (m,), optional
        Probabilities of ``noise_values``; uniform if omitted.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution; uniform if omitted.

    Returns
    -------
    ndarray of shape (k,)
        The expectation over the ``m^Y`` noise patterns of each prompt, computed exactly.

    Raises
    ------
    ValueError
        If ``m^Y * X * Y`` exceeds about four million (the enumeration would be too big).

    Notes
    -----
    Chapter, exercise 3. The noise patterns are stacked as extra "prompts" weighted by
    their probability, and the stack goes through one
    :func:`rlhf_toy.optimal.reward_kl_frontier` call: no sampling, no loop over patterns.

    Facts (notebook 03 proves and tests them): for every draw ``E_{pi*}[r_hat]`` is
    non-decreasing in ``1/beta``; with mean-zero noise independent across responses the
    expected overestimation is ``>= 0`` for every ``beta``; for a fixed ``r_star`` it need not
    increase as ``beta`` falls (:func:`exercise3_curves`); over a random Gaussian gold it does
    (Efron 1965; :func:`overestimation_monte_carlo`).
    """
    pi_ref = check_distribution(pi_ref, "pi_ref")
    r_star = check_finite(r_star, "r_star")
    check_same_shape(pi_ref, r_star, "pi_ref", "r_star")
    if pi_ref.ndim != 2:
        raise ValueError(f"pi_ref must have shape (X, Y), got {pi_ref.shape}")
    betas = check_betas(betas)
    values = check_nonempty(check_finite(noise_values, "noise_values").ravel(), "noise_values")
    probs = (np.full(values.size, 1.0 / values.size) if noise_probs is None
             else check_distribution(noise_probs, "noise_probs"))
    if probs.shape != values.shape:
        raise ValueError(f"noise_probs must have shape {values.shape} (that of noise_values), "
                         f"got {probs.shape}")
    n_prompts, n_responses = pi_ref.shape
    n_patterns = values.size**n_responses
    if n_patterns * pi_ref.size > _MAX_ENUMERATION:
        raise ValueError(
            f"expected_overestimation enumerates {values.size}^{n_responses} noise patterns "
            f"per prompt: too many for a {pi_ref.shape} table; use fewer responses or "
            "noise_values"
        )
    w_x = check_prompt_probs(prompt_probs, n_prompts)
    codes = np.array(list(itertools.product(range(values.size), repeat=n_responses)))  # (P, Y)
    eps = values[codes]  # (P, Y)
    p_eps = probs[codes].prod(-1)  # (P,)
    # Stack (pattern, prompt) as rows: (P * X, Y).
    eps_rows = np.repeat(eps, n_prompts, axis=0)
    r_hat_rows = np.tile(r_star, (n_patterns, 1)) + eps_rows
    weights = np.outer(p_eps, w_x).ravel()
    f = reward_kl_frontier(np.tile(pi_ref, (n_patterns, 1)), r_hat_rows, betas,
                           weights / weights.sum(), eval_rewards={"eps": eps_rows})
    return f.extra["eps"]


def overestimation_monte_carlo(pi_ref, betas, *, noise_scale, n_draws, rng, n_batches=20,
                               prompt_probs=None) -> dict[str, np.ndarray]:
    """Monte Carlo ``E[E_x E_{pi*_beta}(r_hat - r_star)]`` over random Gaussian gold and noise.

    Each draw is a fresh gold table ``r_star ~ N(0, 1)`` and noise ``eps ~ N(0, sigma^2)``,
    i.i.d. over entries, with ``pi_ref`` fixed.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy.
    betas : array_like of shape (k,)
    noise_scale : float
        ``sigma``, in ``(0, 1e100]``.
    n_draws : int
        Number of ``(r_star, eps)`` tables; a multiple of ``n_batches``.
    rng : numpy Generator or int
    n_batches : int, default 20
        The draws are averaged in this many independent batches; the spread of the batch
        means gives the standard errors.
    prompt_probs : array_like of shape (X,), optional

    Returns
    -------
    dict
        ``"mean"`` (shape (k,)): the estimate; ``"se"``: its standard error;
        ``"diff"``, ``"diff_se"`` (shape (k-1,)): the estimated increments between
        consecutive betas and their standard errors (same draws for every beta, so the
        increments are much more precise than the levels).

    Notes
    -----
    Chapter, exercise 3, fact (iv) of :func:`expected_overestimation`: here
    ``E[eps | r_hat] = sigma^2 / (1 + sigma^2) r_hat`` is linear, so the expected
    overestimation is non-decreasing in ``1/beta``. Each batch is one vectorised
    :func:`rlhf_toy.optimal.reward_kl_frontier` call with the draws stacked as prompts.
    """
    pi_ref = check_distribution(pi_ref, "pi_ref")
    if pi_ref.ndim != 2:
        raise ValueError(f"pi_ref must have shape (X, Y), got {pi_ref.shape}")
    betas = check_betas(betas)
    sigma = check_float(noise_scale, "noise_scale", low=0.0, low_open=True, high=MAX_MAGNITUDE)
    n_draws = check_int(n_draws, "n_draws", maximum=max(MAX_TABLE_ENTRIES // pi_ref.size, 1))
    n_batches = check_int(n_batches, "n_batches", minimum=2, maximum=MAX_SAMPLES)
    if n_draws % n_batches:
        raise ValueError(f"n_draws must be a multiple of n_batches={n_batches}, got {n_draws}")
    rng = as_rng(rng)
    n_prompts = pi_ref.shape[0]
    w_x = check_prompt_probs(prompt_probs, n_prompts, table="pi_ref")
    per = n_draws // n_batches
    ref_rows = np.tile(pi_ref, (per, 1))  # (per * X, Y)
    weights = np.tile(w_x, per) / per
    batch_means = np.empty((n_batches, betas.size))
    for b in range(n_batches):  # a handful of batches, each fully vectorised
        r_star = rng.standard_normal(ref_rows.shape)
        eps = sigma * rng.standard_normal(ref_rows.shape)
        f = reward_kl_frontier(ref_rows, r_star + eps, betas, weights,
                               eval_rewards={"eps": eps})
        batch_means[b] = f.extra["eps"]
    diffs = np.diff(batch_means, axis=1)
    scale = 1.0 / np.sqrt(n_batches)
    return {"mean": batch_means.mean(0), "se": batch_means.std(0, ddof=1) * scale,
            "diff": diffs.mean(0), "diff_se": diffs.std(0, ddof=1) * scale}


def exercise3_curves(inv_beta, *, n_draws: int = 4000, rng=7) -> dict:
    """The three overestimation curves of exercise 3 against ``1/beta``.

    Parameters
    ----------
    inv_beta : array_like
        Values of ``1/beta``, ``> 0`` and at least ``1 / 1.8e308`` (``beta`` finite).
    n_draws : int, default 4000
        Random worlds of the Monte Carlo curve.
    rng : numpy.random.Generator or int, default 7

    Returns
    -------
    dict
        ``"monte_carlo"``: :func:`overestimation_monte_carlo` over random Gaussian worlds
        (``pi_ref = (0.4, 0.3, 0.2, 0.1)``, ``sigma = 1``); ``"fixed_gold"``: the exact
        expectation over ``eps = +-1`` for the gold ``(0, 4)`` under a uniform ``pi_ref``;
        ``"one_draw"``: that world's overestimation for the single draw ``eps = (1, -1)``.
        Arrays of the shape of ``inv_beta``.

    Notes
    -----
    Chapter, exercise 3: the first rises with ``1/beta``; the second rises and falls back to
    0 (the hard-optimised policy picks response 2, whose noise averages to zero); the third
    ends below zero.
    """
    inv_beta = check_betas_named(inv_beta, "inv_beta")
    if np.any(inv_beta < 1.0 / np.finfo(np.float64).max):
        raise ValueError(f"inv_beta must be >= {1.0 / np.finfo(np.float64).max:.3g} (so that "
                         f"beta = 1 / inv_beta is finite), got {inv_beta.min()!r}")
    betas = 1.0 / inv_beta
    pi_ref, r_star = np.array([[0.5, 0.5]]), np.array([[0.0, 4.0]])
    draw = BanditEnv(pi_ref=pi_ref, r_star=r_star, r_hat=r_star + [[1.0, -1.0]],
                     prompt_probs=np.ones(1))
    return {
        "monte_carlo": overestimation_monte_carlo(np.array([[0.4, 0.3, 0.2, 0.1]]), betas,
                                                  noise_scale=1.0, n_draws=n_draws, rng=rng),
        "fixed_gold": expected_overestimation(pi_ref, r_star, betas, [-1.0, 1.0]),
        "one_draw": overestimation(draw, betas),
    }
