"""REINFORCE and RLOO: one training step each (chapter, Stage 3; Ahmadian et al. 2024).

The plainest policy gradient: sample ``G`` responses per prompt, score each with the
reward *minus the KL penalty in the reward* (InstructGPT's per-token ``-beta k1``, summed
over the response), and step along ``mean_i A_i grad log pi(y_i | x)``. The advantage is

- REINFORCE: ``A_i = R_i`` (no baseline) or ``R_i - mean_j R_j`` (the group mean, which
  includes ``R_i`` itself: a biased scale ``(G - 1) / G``);
- RLOO: ``A_i = R_i - mean_{j != i} R_j`` (leave-one-out; unbiased, ``G >= 2``).

With ``k1`` in the reward the expected gradient is exactly that of the chapter's
objective ``E_x [E_pi r - beta KL(pi || pi_ref)]``: these steps converge to
``pi* = pi_ref exp(r / beta) / Z`` (what :mod:`rlhf_toy.bandit.rl` measures).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhf_toy._validate import MAX_SAMPLES, check_int, check_nonnegative, check_positive
from rlhf_toy.policy_gradient import (
    kl_penalty_rewards,
    policy_gradient_loss,
    reinforce_advantages,
    rloo_advantages,
)
from rlhf_toy.rl.rollout import apply_gradients, collect_rollout, sequence_sum

__all__ = ["RLOOConfig", "ReinforceConfig", "reinforce_step", "rloo_step"]

KL_IN_REWARD = ("k1", "k2", "k3")
BASELINES = (None, "mean")


def _check_common(config) -> None:
    check_nonnegative(config.beta, "beta")
    if config.kl_estimator not in KL_IN_REWARD:
        raise ValueError(f"kl_estimator must be one of {KL_IN_REWARD}, "
                         f"got {config.kl_estimator!r}")
    if config.max_grad_norm is not None:
        check_positive(config.max_grad_norm, "max_grad_norm")


@dataclass(frozen=True)
class ReinforceConfig:
    """Settings of :func:`reinforce_step`.

    Attributes
    ----------
    group_size : int, default 8
        ``G``, responses per prompt (>= 1; >= 2 with ``baseline="mean"``).
    beta : float, default 0.1
        KL coefficient of the penalty in the reward.
    kl_estimator : {"k1", "k2", "k3"}, default "k1"
        Per-token estimator in the reward; ``"k1"`` (InstructGPT) is the unbiased one.
    baseline : {None, "mean"}, default None
        ``None``: ``A = R``; ``"mean"``: ``A = R - mean_group R``.
    max_grad_norm : float or None, default None
        Global gradient-norm clip.
    """

    group_size: int = 8
    beta: float = 0.1
    kl_estimator: str = "k1"
    baseline: str | None = None
    max_grad_norm: float | None = None

    def __post_init__(self):
        check_int(self.group_size, "group_size",
                  minimum=2 if self.baseline == "mean" else 1, maximum=MAX_SAMPLES)
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        _check_common(self)


@dataclass(frozen=True)
class RLOOConfig:
    """Settings of :func:`rloo_step` (defaults: TRL's RLOO with ``beta = 0.05``).

    Attributes
    ----------
    group_size : int, default 8
        ``G >= 2`` (the others of the group are the baseline).
    beta : float, default 0.05
        KL coefficient of the penalty in the reward.
    kl_estimator : {"k1", "k2", "k3"}, default "k1"
        Per-token estimator in the reward (summed over the response).
    max_grad_norm : float or None, default None
        Global gradient-norm clip.
    """

    group_size: int = 8
    beta: float = 0.05
    kl_estimator: str = "k1"
    max_grad_norm: float | None = None

    def __post_init__(self):
        check_int(self.group_size, "group_size", minimum=2, maximum=MAX_SAMPLES)
        _check_common(self)


def _penalised_returns(ro, beta: float, estimator: str) -> np.ndarray:
    """``R_i = score_i + sum_t (-beta k(t))``: the KL penalty in the reward, per sequence."""
    if beta == 0:
        return ro.scores.copy()
    kl_rewards = kl_penalty_rewards(ro.logp, ro.logp_ref, ro.mask, beta, estimator=estimator)
    return ro.scores + sequence_sum(kl_rewards, ro.mask)  # (B,)


def _policy_gradient_update(policy, optimiser, ro, adv, max_grad_norm, where) -> dict:
    """One on-policy step along ``mean A grad log pi`` (token mean over the batch)."""
    logp = policy.logprobs(ro.prompts, ro.responses, ro.mask)  # (B, T)
    adv_tok = adv[:, None] * ro.mask  # (B, T)
    loss, dlogp = policy_gradient_loss(logp, adv_tok, ro.mask, agg="token_mean")
    if not np.isfinite(loss):
        raise FloatingPointError(f"{where}: loss is {loss}")
    grads = policy.logprobs_backward(dlogp)
    grad_norm = apply_gradients(optimiser, grads, max_grad_norm, where)
    return {"loss": float(loss), "grad_norm": grad_norm}


def _stats(policy, ro, returns, adv) -> dict:
    n_tok = float(ro.mask.sum())
    k1 = np.where(ro.mask > 0, ro.logp - ro.logp_ref, 0.0)
    return {"reward": float(ro.scores.mean()), "return": float(returns.mean()),
            "kl": float(k1.sum() / ro.responses.shape[0]),
            "adv_std": float(adv.std()),
            "entropy": float(np.sum(policy.entropy(ro.prompts, ro.responses, ro.mask)) / n_tok)}


def reinforce_step(policy, ref, optimiser, prompts, reward_fn, config: ReinforceConfig,
                   rng) -> dict:
    """One REINFORCE step, KL in the reward, with an optional group-mean baseline.

    Parameters
    ----------
    policy, ref, optimiser, prompts, reward_fn, rng
        As in :func:`rlhf_toy.rl.grpo.grpo_step`.
    config : ReinforceConfig

    Returns
    -------
    dict of str to float
        ``loss``, ``grad_norm``, ``reward`` (mean score), ``return`` (mean penalised
        return ``R``), ``kl`` (batch mean of the per-sequence sum of ``k1``), ``adv_std``,
        ``entropy`` (of the sampling policy).

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`ReinforceConfig`.
    FloatingPointError
        If a reward, log-probability or gradient is not finite.

    Notes
    -----
    ``R_i = r(x, y_i) - beta sum_t k(y_i,t)``, ``A_i = R_i - b_i`` with
    :func:`rlhf_toy.policy_gradient.reinforce_advantages`, and the loss
    ``-mean_tokens(A logp)`` (:func:`rlhf_toy.policy_gradient.policy_gradient_loss`).
    Williams (1992); the KL in the reward as in InstructGPT (Ouyang et al. 2022).
    """
    if not isinstance(config, ReinforceConfig):
        raise TypeError(f"config must be a ReinforceConfig, got {type(config).__name__}")
    ro = collect_rollout(policy, ref, prompts, reward_fn, config.group_size, rng,
                         where="reinforce_step")
    returns = _penalised_returns(ro, config.beta, config.kl_estimator)  # (B,)
    adv = reinforce_advantages(returns.reshape(ro.n_prompts, ro.group_size),
                               baseline=config.baseline).reshape(-1)  # (B,)
    stats = _stats(policy, ro, returns, adv)
    stats.update(_policy_gradient_update(policy, optimiser, ro, adv, config.max_grad_norm,
                                         "reinforce_step"))
    return stats


def rloo_step(policy, ref, optimiser, prompts, reward_fn, config: RLOOConfig, rng) -> dict:
    """One RLOO step: REINFORCE with the leave-one-out baseline, KL in the reward.

    Parameters
    ----------
    policy, ref, optimiser, prompts, reward_fn, rng
        As in :func:`rlhf_toy.rl.grpo.grpo_step`.
    config : RLOOConfig

    Returns
    -------
    dict of str to float
        As :func:`reinforce_step`.

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`RLOOConfig`.
    FloatingPointError
        If a reward, log-probability or gradient is not finite.

    Notes
    -----
    ``A_i = R_i - (1 / (G - 1)) sum_{j != i} R_j``
    (:func:`rlhf_toy.policy_gradient.rloo_advantages`). The baseline does not depend on
    ``y_i``, so the estimate stays unbiased while its variance drops. Ahmadian et al.
    (2024), *Back to Basics: Revisiting REINFORCE Style Optimization for Learning from
    Human Feedback in LLMs*; Kool et al. (2019).
    """
    if not isinstance(config, RLOOConfig):
        raise TypeError(f"config must be a RLOOConfig, got {type(config).__name__}")
    ro = collect_rollout(policy, ref, prompts, reward_fn, config.group_size, rng,
                         where="rloo_step")
    returns = _penalised_returns(ro, config.beta, config.kl_estimator)  # (B,)
    adv = rloo_advantages(returns.reshape(ro.n_prompts, ro.group_size)).reshape(-1)  # (B,)
    stats = _stats(policy, ro, returns, adv)
    stats.update(_policy_gradient_update(policy, optimiser, ro, adv, config.max_grad_norm,
                                         "rloo_step"))
    return stats
