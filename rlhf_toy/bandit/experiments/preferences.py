"""Bradley-Terry recovery and exact ascent to the optimal policy: the runs of notebook 01.

Implements the chapter's Stage 2 (*Bradley-Terry Maximum Likelihood*) and Stage 3 (*the
KL-regularised objective and its optimum*) as experiments whose results notebook 01 prints
and its figures plot.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy._validate import (
    MAX_SAMPLES,
    check_betas,
    check_bounded,
    check_counts,
    check_int,
    check_ndim,
    check_nonempty,
)
from rlhf_toy.bandit.env import check_env
from rlhf_toy.bandit.train import TrainResult, gradient_ascent
from rlhf_toy.bradley_terry import fit_bradley_terry, sample_comparisons
from rlhf_toy.optimal import optimal_value

__all__ = ["ascent_convergence", "bt_recovery"]


def bt_recovery(r_star, sizes, n_seeds: int = 3) -> tuple[np.ndarray, dict]:
    """RMSE of the Bradley-Terry MLE against the centred truth, per data size and seed.

    Comparisons of uniformly drawn response pairs, labelled by ``r_star``; seed ``s`` draws
    the ``s``-th data set of every size.

    Parameters
    ----------
    r_star : array_like of shape (X, Y)
        The reward the labelers follow, entries within ``+-1e100`` (the squared errors
        stay finite).
    sizes : sequence of int
        Numbers of comparisons.
    n_seeds : int, default 3

    Returns
    -------
    errors : ndarray of shape (len(sizes), n_seeds)
        ``sqrt(mean (r_fit - (r_star - row mean))^2)``.
    fits : dict of (int, int) to ndarray of shape (X, Y)
        ``(size, seed)`` to the fitted table.

    Notes
    -----
    Chapter, Stage 2: the reward is identified up to a per-prompt shift; the error of the
    fit falls like ``1 / sqrt(n)``.
    """
    r_star = check_ndim(check_nonempty(check_bounded(r_star, "r_star"), "r_star"), "r_star", 2)
    n_prompts, n_responses = r_star.shape
    sizes = check_counts(sizes, "sizes", maximum=MAX_SAMPLES)
    n_seeds = check_int(n_seeds, "n_seeds", maximum=MAX_SAMPLES)
    r_centred = r_star - r_star.mean(1, keepdims=True)
    uniform = np.full(r_star.shape, 1.0 / n_responses)
    errors = np.empty((len(sizes), n_seeds))
    fits = {}
    for i, n in enumerate(sizes):
        for seed in range(n_seeds):
            x, y_w, y_l = sample_comparisons(uniform, r_star, int(n), rng=seed)
            fits[int(n), seed] = fit_bradley_terry(x, y_w, y_l, n_prompts, n_responses)
            errors[i, seed] = np.sqrt(np.mean((fits[int(n), seed] - r_centred) ** 2))
    return errors, fits


def ascent_convergence(env, betas, *, steps: int = 1500,
                       record_every: int = 10) -> dict[float, tuple[TrainResult, np.ndarray]]:
    """Exact gradient ascent on ``J(pi) = E[r_star] - beta KL`` and its gap to ``J(pi*)``.

    Parameters
    ----------
    env : BanditEnv
    betas : sequence of float
        One run each, with step size ``16 / beta`` (so ``beta >= 16 / 1.8e308``).
    steps, record_every : int

    Returns
    -------
    dict of float to (TrainResult, ndarray of shape (n_records,))
        ``beta`` to the run and ``J(pi*) - J(pi_t)`` at its recorded steps.
    """
    env = check_env(env)
    betas = check_betas(betas)
    if np.any(betas < 16.0 / np.finfo(np.float64).max):
        raise ValueError(f"betas must be >= {16.0 / np.finfo(np.float64).max:.3g} (the step "
                         f"size 16 / beta must be finite), got {betas.min()!r}")
    out = {}
    for beta in betas:
        beta = float(beta)
        res = gradient_ascent(env.pi_ref, env.r_star, beta, steps=steps, lr=16.0 / beta,
                              record_every=record_every)
        out[beta] = res, optimal_value(env.pi_ref, env.r_star, beta) - res.history["objective"]
    return out
