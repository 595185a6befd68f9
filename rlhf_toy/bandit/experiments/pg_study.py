"""Policy-gradient studies on the exact bandit (chapter, Stage 3 and "Modern RL for LLMs").

Three measurements that need the exact world, each a function returning arrays:

- :func:`convergence_study`: where each sampled method goes, over seeds: the distance
  ``KL(pi || pi*_beta)`` to the optimum of the optimised reward (and to any other target,
  such as the forward-KL fixpoint of GRPO's ``k3`` in the loss);
- :func:`estimator_mse`: bias and variance of the sampled policy gradient of each advantage
  estimator (REINFORCE without and with a mean baseline, RLOO, GRPO, Dr. GRPO, an exact
  critic) against the exact gradient, as a function of the group size ``G``;
- GRPO's failure modes with a 0/1 reward: the fraction of groups with zero spread (no
  signal; :func:`zero_spread_study`, exactly ``p^G + (1 - p)^G``), and the effective weight
  the std division gives prompts of different difficulty (:func:`difficulty_weights`,
  against the closed form :func:`grpo_effective_weight`).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binom

from rlhf_toy._validate import (
    MAX_MAGNITUDE,
    MAX_SAMPLES,
    as_rng,
    check_bounded,
    check_counts,
    check_distribution,
    check_finite,
    check_float,
    check_int,
    check_nonempty,
)
from rlhf_toy.bandit.env import BanditEnv
from rlhf_toy.bandit.policy import TabularPolicy, TrainableTabularPolicy
from rlhf_toy.bandit.rl import table_reward, train_rl
from rlhf_toy.optimal import objective_gradient
from rlhf_toy.policy_gradient import (
    grpo_advantages,
    kl_penalty_rewards,
    policy_gradient_loss,
    reinforce_advantages,
    rloo_advantages,
)
from rlhf_toy.rl import GRPOConfig, grpo_step

__all__ = [
    "ESTIMATORS",
    "convergence_study",
    "difficulty_weights",
    "estimator_mse",
    "exact_gradient",
    "grpo_effective_weight",
    "zero_spread_probability",
    "zero_spread_study",
]

#: Advantage estimators of :func:`estimator_mse`.
ESTIMATORS = ("reinforce", "reinforce_mean", "rloo", "grpo", "dr_grpo", "critic")


# --------------------------------------------------------------------------------------
# convergence over seeds
# --------------------------------------------------------------------------------------


def convergence_study(env: BanditEnv, configs: dict, *, seeds, steps: int, lr: float = 0.05,
                      targets=None, verbose: bool = False) -> dict:
    """Run :func:`rlhf_toy.bandit.rl.train_rl` for each config and seed; stack the curves.

    Parameters
    ----------
    env : BanditEnv
    configs : dict of str to step config
        Label -> config (e.g. ``{"rloo": RLOOConfig(beta=0.5), ...}``).
    seeds : sequence of int
        One run per seed and config.
    steps : int
    lr : float
    targets : dict of str to ndarray of shape (X, Y), optional
        Passed to ``train_rl``: ``KL(pi || target)`` is recorded as ``"kl_to_<name>"``.
    verbose : bool

    Returns
    -------
    dict
        ``"steps"`` (S + 1,) and, per label, a dict of arrays of shape
        ``(n_seeds, S + 1)``: ``"kl_to_optimum"``, ``"kl"``, ``"proxy"``, ``"gold"``,
        ``"entropy"`` and ``"kl_to_<name>"`` for each target.

    Raises
    ------
    ValueError
        If ``seeds`` is empty (and as ``train_rl``).
    """
    seeds = [check_int(s, "seed", minimum=0) for s in seeds]
    if not seeds:
        raise ValueError("seeds must contain at least one seed, got none")
    out = {"steps": np.arange(check_int(steps, "steps", minimum=0) + 1)}
    for label, config in configs.items():
        runs = [train_rl(env, config, steps=steps, lr=lr, rng=s, targets=targets,
                         verbose=verbose) for s in seeds]
        curves = {key: np.array([getattr(r, key) for r in runs])
                  for key in ("kl_to_optimum", "kl", "proxy", "gold", "entropy")}
        for name in targets or {}:
            curves[f"kl_to_{name}"] = np.array([r.kl_to[name] for r in runs])
        out[label] = curves
    return out


# --------------------------------------------------------------------------------------
# bias and variance of the gradient estimators
# --------------------------------------------------------------------------------------


def exact_gradient(pi, pi_ref, reward, beta) -> np.ndarray:
    """``d/dz mean_x [E_pi r - beta KL(pi || pi_ref)]`` for ``pi = softmax(z)``, exactly.

    :func:`rlhf_toy.optimal.objective_gradient` (prompts uniform) pushed through the
    softmax; shape (X, Y).

    Parameters
    ----------
    pi, pi_ref : array_like of shape (X, Y)
        Policy and reference policy; rows sum to one.
    reward : array_like of shape (X, Y)
    beta : float
        KL coefficient, ``> 0``.

    Returns
    -------
    ndarray of shape (X, Y)
        The gradient with respect to the logits ``z``.
    """
    pol = TabularPolicy.from_probs(pi)
    return pol.logits_grad_from_probs(objective_gradient(pol.probs, pi_ref, reward, beta))


def _advantages(name: str, returns: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Advantages of one estimator for rows of ``G`` penalised returns, shape of returns."""
    if name == "reinforce":
        return reinforce_advantages(returns)
    if name == "reinforce_mean":
        return reinforce_advantages(returns, baseline="mean")
    if name == "rloo":
        return rloo_advantages(returns)
    if name == "grpo":
        return grpo_advantages(returns, scale="group")
    if name == "dr_grpo":
        return grpo_advantages(returns, scale="none")
    return reinforce_advantages(returns, baseline=values[:, None])  # "critic"


def estimator_mse(pi, pi_ref, reward, beta, group_sizes, n_draws: int, rng,
                  estimators=ESTIMATORS) -> dict:
    """Bias and variance of each sampled policy gradient against the exact gradient.

    Each draw samples ``G`` responses for every prompt from ``pi``, forms the penalised
    return ``R = r - beta (log pi - log pi_ref)`` (``k1`` in the reward, as
    :func:`rlhf_toy.rl.reinforce.rloo_step` does), the estimator's advantages
    (:mod:`rlhf_toy.policy_gradient`), and the gradient of
    ``mean_{x, j} A_{x,j} log pi(y_{x,j} | x)`` through the exact softmax.

    Parameters
    ----------
    pi : array_like of shape (X, Y)
        The policy at which the gradient is estimated.
    pi_ref : array_like of shape (X, Y)
    reward : array_like of shape (X, Y)
        Entries within ``+-1e100`` (the squared errors of the estimates stay finite).
    beta : float
        KL coefficient, in ``[0, 1e100]``.
    group_sizes : sequence of int
        Values of ``G`` (each >= 2).
    n_draws : int
        Independent draws per ``G`` (>= 2).
    rng : numpy Generator or int
    estimators : sequence of str, default :data:`ESTIMATORS`
        ``"reinforce"`` (``A = R``), ``"reinforce_mean"`` (``R - mean_group R``),
        ``"rloo"``, ``"grpo"`` (group std scaling), ``"dr_grpo"`` (no scaling: the mean
        baseline again), ``"critic"`` (``R - V(x)`` with the exact value
        ``V(x) = E_pi R(x, .)``: PPO's critic at its best, advantages not whitened).

    Returns
    -------
    dict
        ``"group_sizes"`` (n_G,), ``"exact"`` (X, Y) and, per estimator, a dict with
        ``"mse"``, ``"bias_sq"`` and ``"variance"`` (n_G,): ``E||g - g*||^2``,
        ``||E g - g*||^2`` and ``E||g - E g||^2`` (sums over the table, means over the
        draws; ``mse = bias_sq + variance`` up to the ``(n-1)/n`` of the sample
        variance), ``"mean"`` (n_G, X, Y) and ``"sem"`` (n_G, X, Y), the mean gradient and
        its standard error.

    Raises
    ------
    ValueError
        On bad tables, group sizes, ``n_draws`` or an unknown estimator.

    Notes
    -----
    REINFORCE, RLOO and the exact critic are unbiased (their baselines do not depend on
    the sample); the mean baseline (and Dr. GRPO) is ``(G - 1) / G`` of RLOO exactly, a
    biased scale; GRPO's division by the group std is a random, sample-dependent scale,
    biased in direction as well. Chapter, "Modern RL for LLMs"; Ahmadian et al. (2024);
    Liu et al. (2025).
    """
    pi = check_distribution(pi, "pi")
    pi_ref = check_distribution(pi_ref, "pi_ref")
    reward = check_bounded(reward, "reward")
    beta = check_float(beta, "beta", low=0.0, high=MAX_MAGNITUDE)
    if pi.ndim != 2 or pi.shape != pi_ref.shape or pi.shape != reward.shape:
        raise ValueError(f"pi, pi_ref and reward must share a shape (X, Y), got {pi.shape}, "
                         f"{pi_ref.shape} and {reward.shape}")
    n_draws = check_int(n_draws, "n_draws", minimum=2,
                        maximum=max(MAX_SAMPLES // (2 * pi.shape[0]), 2))
    # every group size draws n_draws * X * G responses at once
    group_sizes = check_counts(group_sizes, "group_sizes", minimum=2,
                               maximum=max(MAX_SAMPLES // (n_draws * pi.shape[0]), 2))
    for name in estimators:
        if name not in ESTIMATORS:
            raise ValueError(f"estimators must be among {ESTIMATORS}, got {name!r}")
    rng = as_rng(rng)
    n_prompts, n_responses = pi.shape
    exact = exact_gradient(pi, pi_ref, reward, beta)
    with np.errstate(divide="ignore"):
        log_pi, log_ref = np.log(pi), np.log(pi_ref)
    kl_x = (pi * np.where(pi > 0, log_pi - log_ref, 0.0)).sum(-1)
    values = (pi * reward).sum(-1) - beta * kl_x  # (X,) V(x) = E_pi R exactly

    # every draw is its own block of prompts of one big table: rows d * X + x
    big = TrainableTabularPolicy(np.tile(np.where(pi > 0, log_pi, -np.inf), (n_draws, 1)))
    rows = np.arange(n_draws * n_prompts)
    out = {"group_sizes": np.array(group_sizes), "exact": exact}
    stats = {name: {k: [] for k in ("mse", "bias_sq", "variance", "mean", "sem")}
             for name in estimators}
    for G in group_sizes:
        y, mask = big.sample(rows, G, rng)  # (n_draws * X * G, 1)
        x = np.repeat(np.tile(np.arange(n_prompts), n_draws), G)  # table prompt of each row
        logp = big.logprobs(np.repeat(rows, G), y, mask)  # (N, 1)
        logp_ref = log_ref[x, y[:, 0]][:, None]
        returns = reward[x, y[:, 0]] + kl_penalty_rewards(logp, logp_ref, mask, beta)[:, 0]
        returns = returns.reshape(n_draws * n_prompts, G)
        for name in estimators:
            adv = _advantages(name, returns, np.tile(values, n_draws))  # (n_draws * X, G)
            # one "sequence" per draw: mean over its X * G tokens, then over the draws
            _, dlogp = policy_gradient_loss(logp.reshape(n_draws, n_prompts * G),
                                            adv.reshape(n_draws, n_prompts * G),
                                            np.ones((n_draws, n_prompts * G)), agg="seq_mean")
            grads = -n_draws * big.logprobs_backward(dlogp.reshape(-1, 1))["logits"]
            g = grads.reshape(n_draws, n_prompts, n_responses)  # ascent direction per draw
            mean = g.mean(0)
            st = stats[name]
            st["mse"].append(float(np.mean(np.sum((g - exact) ** 2, axis=(1, 2)))))
            st["bias_sq"].append(float(np.sum((mean - exact) ** 2)))
            st["variance"].append(float(np.mean(np.sum((g - mean) ** 2, axis=(1, 2)))))
            st["mean"].append(mean)
            st["sem"].append(g.std(0, ddof=1) / np.sqrt(n_draws))
    for name in estimators:
        out[name] = {k: np.array(v) for k, v in stats[name].items()}
    return out


# --------------------------------------------------------------------------------------
# GRPO's failure modes with a 0/1 reward
# --------------------------------------------------------------------------------------


def zero_spread_probability(p, group_size: int) -> np.ndarray:
    """``p^G + (1 - p)^G``: the chance that a group of ``G`` 0/1 rewards is all equal.

    Parameters
    ----------
    p : array_like
        Success probability of one response, in [0, 1].
    group_size : int
        ``G >= 1``.

    Returns
    -------
    ndarray of the shape of ``p``

    Examples
    --------
    >>> zero_spread_probability([0.5, 0.05], 8).round(4)
    array([0.0078, 0.6634])
    """
    p = check_finite(p, "p")
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p must be in [0, 1], got {p[(p < 0) | (p > 1)].ravel()[0]}")
    G = check_int(group_size, "group_size", maximum=MAX_SAMPLES)
    return p**G + (1 - p) ** G


def _binary_world(p: np.ndarray):
    """One prompt per entry of ``p``: response 0 succeeds (reward 1) with ``pi_ref = p``."""
    pi_ref = np.stack([p, 1 - p], axis=1)  # (X, 2)
    reward = np.zeros_like(pi_ref)
    reward[:, 0] = 1.0
    with np.errstate(divide="ignore"):
        logits = np.log(pi_ref)
    return pi_ref, reward, logits


class _Recorder:
    """An optimiser that keeps the last gradient and never moves the parameters."""

    def step(self, grads):
        self.grads = grads


def zero_spread_study(success_probs, group_sizes, n_groups: int, rng) -> dict:
    """Fraction of zero-spread groups of a GRPO step against reward sparsity, measured.

    For each success probability ``p`` and group size ``G``, one :func:`grpo_step` on
    ``n_groups`` prompts whose policy succeeds (reward 1, else 0) with probability ``p``;
    the step's ``zero_spread`` statistic is the fraction of groups with no signal.

    Parameters
    ----------
    success_probs : array_like of shape (n_p,)
        Values of ``p`` in [0, 1].
    group_sizes : sequence of int
        Values of ``G`` (each >= 2).
    n_groups : int
        Groups (prompts) per measurement.
    rng : numpy Generator or int

    Returns
    -------
    dict
        ``"success_probs"`` (n_p,), ``"group_sizes"`` (n_G,), ``"measured"`` and
        ``"exact"`` (n_G, n_p): the measured fraction and ``p^G + (1 - p)^G``; ``"sem"``
        (n_G, n_p): the binomial standard error of the measurement.

    Notes
    -----
    A zero-spread group has all advantages exactly 0 (no reward gradient; the KL term
    still acts when ``beta > 0``): with sparse rewards most of GRPO's samples are wasted,
    which is what DAPO's dynamic sampling filters out (Yu et al. 2025).
    """
    p = check_nonempty(check_finite(success_probs, "success_probs"), "success_probs")
    if p.ndim != 1 or np.any((p < 0) | (p > 1)):
        raise ValueError("success_probs must be a 1-D array of probabilities in [0, 1]")
    n_groups = check_int(n_groups, "n_groups", maximum=MAX_SAMPLES)
    rng = as_rng(rng)
    group_sizes = check_counts(group_sizes, "group_sizes", minimum=2,
                               maximum=max(MAX_SAMPLES // n_groups, 2))
    measured = np.empty((len(group_sizes), p.size))
    for i, G in enumerate(group_sizes):
        for j, pj in enumerate(p):
            pi_ref, reward, logits = _binary_world(np.full(n_groups, pj))
            stats = grpo_step(TrainableTabularPolicy(logits), TabularPolicy(logits),
                              _Recorder(), np.arange(n_groups), table_reward(reward),
                              GRPOConfig(group_size=G, beta=0.0), rng)
            measured[i, j] = stats["zero_spread"]
    exact = np.array([zero_spread_probability(p, G) for G in group_sizes])
    return {"success_probs": p, "group_sizes": np.array(group_sizes), "measured": measured,
            "exact": exact, "sem": np.sqrt(exact * (1 - exact) / n_groups)}


def grpo_effective_weight(p, group_size: int, scale: str = "group") -> np.ndarray:
    """Expected GRPO reward gradient of a 0/1-reward prompt, relative to the true gradient.

    ``E[g] = w(p) grad_z E_pi r`` exactly, with ``k ~ Binomial(G, p)`` successes and the
    sample std ``s_k = sqrt(k (G - k) / (G (G - 1)))``:

    - ``scale="none"`` (Dr. GRPO): ``w = (G - 1) / G`` for every ``p``;
    - ``scale="group"`` (GRPO, ``eps = 0``):
      ``w(p) = E[k (G - k) / (G^2 s_k)] / (p (1 - p))``, which grows towards ``p = 0`` and
      ``p = 1``: the std division up-weights hopeless and easy prompts.

    Parameters
    ----------
    p : array_like
        Success probabilities in (0, 1).
    group_size : int
        ``G >= 2``.
    scale : {"group", "none"}

    Returns
    -------
    ndarray of the shape of ``p``

    Notes
    -----
    Within a group the advantages sum to zero, so the expected gradient is the expected
    advantage mass on the successes, ``E[sum_{j: r_j = 1} A_j] / G``, times
    ``grad E_pi r / (p (1 - p))``. Liu et al. (2025), *Understanding R1-Zero-Like
    Training* (Dr. GRPO), section 3.1.

    Examples
    --------
    >>> grpo_effective_weight([0.1, 0.5], 8, scale="none")
    array([0.875, 0.875])
    """
    p = check_finite(p, "p")
    if np.any((p <= 0) | (p >= 1)):
        raise ValueError("p must be in (0, 1)")
    G = check_int(group_size, "group_size", minimum=2, maximum=MAX_SAMPLES)
    if scale not in ("group", "none"):
        raise ValueError(f"scale must be 'group' or 'none', got {scale!r}")
    k = np.arange(G + 1)
    mass = k * (G - k) / G**2  # sum of the advantages of the successes, / G, unscaled
    if scale == "group":
        s = np.sqrt(k * (G - k) / (G * (G - 1)))
        mass = np.divide(mass, s, out=np.zeros_like(mass), where=s > 0)
    pk = binom.pmf(k[None, :], G, p.ravel()[:, None])  # (n_p, G + 1)
    return ((pk @ mass) / (p.ravel() * (1 - p.ravel()))).reshape(p.shape)


def difficulty_weights(success_probs, group_size: int, n_draws: int, rng,
                       scales=("group", "none")) -> dict:
    """Measured per-prompt effective gradient weight of GRPO and Dr. GRPO by difficulty.

    One :func:`grpo_step` (``beta = 0``) on ``n_draws`` copies of each prompt of success
    probability ``p``; the weight of a prompt is the projection of its mean step gradient
    (ascent direction) on the exact gradient of its expected reward,
    ``w = <E g, g*> / ||g*||^2``, for each scale.

    Parameters
    ----------
    success_probs : array_like of shape (n_p,)
        Values of ``p`` in (0, 1).
    group_size : int
        ``G >= 2``.
    n_draws : int
        Groups per prompt.
    rng : numpy Generator or int
    scales : sequence of {"group", "none"}

    Returns
    -------
    dict
        ``"success_probs"``; per scale a dict with ``"measured"``, ``"sem"`` and
        ``"exact"`` (:func:`grpo_effective_weight`), each of shape (n_p,).
    """
    p = check_nonempty(check_finite(success_probs, "success_probs"), "success_probs")
    if p.ndim != 1 or np.any((p <= 0) | (p >= 1)):
        raise ValueError("success_probs must be a 1-D array of probabilities in (0, 1)")
    G = check_int(group_size, "group_size", minimum=2, maximum=MAX_SAMPLES)
    n_draws = check_int(n_draws, "n_draws", minimum=2, maximum=max(MAX_SAMPLES // (G * p.size), 2))
    rng = as_rng(rng)
    pi_ref, reward, logits = _binary_world(np.repeat(p, n_draws))  # rows i * n_draws + d
    n_rows = pi_ref.shape[0]
    g_star = pi_ref * (reward - (pi_ref * reward).sum(1, keepdims=True))  # (rows, 2)
    out = {"success_probs": p}
    for scale in scales:
        rec = _Recorder()
        grpo_step(TrainableTabularPolicy(logits), TabularPolicy(logits), rec,
                  np.arange(n_rows), table_reward(reward),
                  GRPOConfig(group_size=G, beta=0.0, scale=scale, eps=0.0), rng)
        # the loss averages over all rows: one prompt's own gradient is n_rows times its share
        g = -n_rows * rec.grads["logits"]  # (rows, 2), ascent
        # (rows,) per-draw projection on g_star, scaled by its largest entry so that a
        # subnormal success probability does not square to 0 / 0
        m = np.abs(g_star).max(1)
        u = g_star / m[:, None]
        w = (g * u).sum(1) / (u**2).sum(1) / m
        w = w.reshape(p.size, n_draws)
        out[scale] = {"measured": w.mean(1), "sem": w.std(1, ddof=1) / np.sqrt(n_draws),
                      "exact": grpo_effective_weight(p, G, scale=scale)}
    return out
