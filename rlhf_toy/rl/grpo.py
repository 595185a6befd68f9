"""GRPO and Dr. GRPO: one training step (chapter, "Modern RL for LLMs").

Group Relative Policy Optimisation (Shao et al. 2024, DeepSeekMath) drops PPO's critic:
for each prompt it samples a group of ``G`` responses and uses the group's own reward
statistics as the baseline,

    A_i = (r_i - mean_j r_j) / (std_j r_j + eps),

then maximises the per-token clipped surrogate with the KL penalty *in the loss*,
``beta * k3`` with ``k3 = pi_ref/pi - log(pi_ref/pi) - 1``, for ``mu`` epochs over the same
samples. Dr. GRPO (Liu et al. 2025) removes the std division and the per-sequence length
normalisation (``scale="none"``, ``agg="constant"``).

Two biases this step keeps on purpose, because they are GRPO's (and the bandit studies
measure them exactly): the expected gradient of ``k3`` in the loss is that of the
*forward* ``KL(pi_ref || pi)``, not the reverse KL of the RLHF objective; and the group
mean includes the sample itself, so the expected reward gradient is ``(G - 1) / G`` of the
true one (with ``scale="none"``; the std division rescales each prompt by a random factor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhf_toy._validate import MAX_SAMPLES, MAX_STEPS, check_int, check_nonnegative, check_positive
from rlhf_toy.policy_gradient import grpo_advantages, kl_loss, ppo_clip_loss
from rlhf_toy.rl.rollout import apply_gradients, collect_rollout

__all__ = ["GRPOConfig", "dr_grpo_config", "grpo_step"]

SCALES = ("group", "batch", "none")
AGGS = ("seq_mean", "token_mean", "constant")


@dataclass(frozen=True)
class GRPOConfig:
    """Settings of :func:`grpo_step` (defaults: DeepSeekMath's GRPO).

    Attributes
    ----------
    group_size : int, default 8
        ``G``, responses sampled per prompt (>= 2: the group is the baseline).
    beta : float, default 0.04
        Coefficient of ``k3`` in the loss (DeepSeekMath's 0.04; TRL's default is 0).
    clip_eps : float, default 0.2
        Lower clip ``1 - eps`` of the ratio (and upper, unless ``clip_eps_high``).
    clip_eps_high : float or None, default None
        Upper clip ``1 + eps_high`` (DAPO's asymmetric clip); ``None`` uses ``clip_eps``.
    mu : int, default 1
        Epochs of updates over the same samples (``mu = 1`` is exactly on-policy: the
        ratio is 1 and the clip never acts).
    scale : {"group", "batch", "none"}, default "group"
        Advantage scaling of :func:`rlhf_toy.policy_gradient.grpo_advantages`; ``"none"``
        is Dr. GRPO.
    agg : {"seq_mean", "token_mean", "constant"}, default "seq_mean"
        Loss aggregation (GRPO's per-sequence mean; ``"constant"`` is Dr. GRPO's).
    eps : float, default 1e-4
        Added to the group std.
    max_len : int or None, default None
        Normaliser of ``agg="constant"`` (Dr. GRPO divides by batch size x the maximum
        completion length); ``None`` uses the rollout's ``T``.
    max_grad_norm : float or None, default None
        Global gradient-norm clip before each optimiser step.
    """

    group_size: int = 8
    beta: float = 0.04
    clip_eps: float = 0.2
    clip_eps_high: float | None = None
    mu: int = 1
    scale: str = "group"
    agg: str = "seq_mean"
    eps: float = 1e-4
    max_len: int | None = None
    max_grad_norm: float | None = None

    def __post_init__(self):
        check_int(self.group_size, "group_size", minimum=2, maximum=MAX_SAMPLES)
        check_nonnegative(self.beta, "beta")
        check_positive(self.clip_eps, "clip_eps")
        if self.clip_eps_high is not None:
            check_positive(self.clip_eps_high, "clip_eps_high")
        check_int(self.mu, "mu", maximum=MAX_STEPS)
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if self.agg not in AGGS:
            raise ValueError(f"agg must be one of {AGGS}, got {self.agg!r}")
        check_nonnegative(self.eps, "eps")
        if self.max_len is not None:
            check_int(self.max_len, "max_len", maximum=MAX_SAMPLES)
        if self.max_grad_norm is not None:
            check_positive(self.max_grad_norm, "max_grad_norm")


def dr_grpo_config(**overrides) -> GRPOConfig:
    """Dr. GRPO's settings (Liu et al. 2025): no std division, constant normaliser.

    ``GRPOConfig(scale="none", agg="constant", **overrides)``.

    Parameters
    ----------
    **overrides
        Any other :class:`GRPOConfig` field.

    Returns
    -------
    GRPOConfig
    """
    return GRPOConfig(**{"scale": "none", "agg": "constant", **overrides})


def grpo_step(policy, ref, optimiser, prompts, reward_fn, config: GRPOConfig, rng) -> dict:
    """One GRPO (or Dr. GRPO) step: sample groups, group advantages, ``mu`` clipped epochs.

    Parameters
    ----------
    policy : Policy
        Updated in place (:class:`rlhf_toy.rl.protocol.Policy`).
    ref : ReferencePolicy
        Frozen reference; only ``logprobs`` is called.
    optimiser : Optimiser
        ``step(grads)`` over ``policy.params`` (e.g. :class:`rlhf_toy.optim.AdamW`).
    prompts : object
        ``n_prompts`` prompts; each gets a group of ``config.group_size`` responses.
    reward_fn : callable
        ``reward_fn(prompts_rep, responses, mask) -> [B]``.
    config : GRPOConfig
    rng : numpy Generator or int

    Returns
    -------
    dict of str to float
        ``loss`` (of the last epoch), ``pg_loss``, ``kl_loss`` (``mean k3``, an estimate
        of ``KL(pi || pi_ref)``), ``approx_kl`` and ``clipfrac`` (means over the epochs,
        see :func:`rlhf_toy.policy_gradient.ppo_clip_loss`), ``zero_spread`` (fraction of
        groups whose rewards are all equal: no reward signal), ``reward`` (mean score),
        ``reward_std`` (mean over the groups of the sample std GRPO divides by),
        ``entropy`` (of the sampling policy, mean over the sampled tokens), ``grad_norm``
        (of the last epoch).

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`GRPOConfig`.
    FloatingPointError
        If a reward, log-probability or gradient is not finite.

    Notes
    -----
    Per epoch, with ``rho = exp(logp - logp_old)`` per token,

        L = -agg(min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)) + beta agg(k3),

    by :func:`rlhf_toy.policy_gradient.ppo_clip_loss` and
    :func:`rlhf_toy.policy_gradient.kl_loss`, whose per-token gradients are pushed through
    ``policy.logprobs_backward``. DeepSeekMath (Shao et al. 2024), eq. 3 and 21; Dr. GRPO
    (Liu et al. 2025). Zero-spread groups get zero advantages but still feel the KL
    gradient when ``beta > 0``.
    """
    if not isinstance(config, GRPOConfig):
        raise TypeError(f"config must be a GRPOConfig, got {type(config).__name__}")
    ro = collect_rollout(policy, ref, prompts, reward_fn, config.group_size, rng,
                         where="grpo_step")
    G = config.group_size
    scores = ro.scores.reshape(ro.n_prompts, G)  # (n_prompts, G)
    adv = grpo_advantages(scores, scale=config.scale, eps=config.eps).reshape(-1)  # (B,)
    adv_tok = adv[:, None] * ro.mask  # (B, T): the sequence's advantage on each token
    zero_spread = float(np.mean(np.ptp(scores, axis=1) == 0.0))
    reward_std = float(np.mean(scores.std(axis=1, ddof=1)))
    n_tok = float(ro.mask.sum())
    entropy = float(np.sum(policy.entropy(ro.prompts, ro.responses, ro.mask)) / n_tok)
    clipfracs, approx_kls = [], []
    for _ in range(config.mu):
        logp = policy.logprobs(ro.prompts, ro.responses, ro.mask)  # (B, T)
        pg_loss, dlogp, stats = ppo_clip_loss(
            logp, ro.logp, adv_tok, ro.mask, clip_eps=config.clip_eps,
            clip_eps_high=config.clip_eps_high, agg=config.agg, max_len=config.max_len)
        k3, dk3 = kl_loss(logp, ro.logp_ref, ro.mask, estimator="k3", agg=config.agg,
                          max_len=config.max_len)
        loss = float(pg_loss) + config.beta * float(k3)
        if config.beta > 0:
            dlogp = dlogp + config.beta * dk3
        if not np.isfinite(loss):
            raise FloatingPointError(f"grpo_step: loss is {loss}")
        grads = policy.logprobs_backward(dlogp)
        grad_norm = apply_gradients(optimiser, grads, config.max_grad_norm, "grpo_step")
        clipfracs.append(float(stats["clipfrac"]))
        approx_kls.append(float(stats["approx_kl"]))
    return {"loss": loss, "pg_loss": float(pg_loss), "kl_loss": float(k3),
            "approx_kl": float(np.mean(approx_kls)), "clipfrac": float(np.mean(clipfracs)),
            "zero_spread": zero_spread, "reward": float(ro.scores.mean()),
            "reward_std": reward_std,
            "entropy": entropy, "grad_norm": grad_norm}
