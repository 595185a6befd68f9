"""PPO for RLHF: one training step (chapter, Stage 3: "In practice, PPO is used").

InstructGPT's PPO (Ouyang et al. 2022; Ziegler et al. 2019), read top to bottom as in
cleanrl's ``ppo.py``:

1. rollout: ``G`` responses per prompt from the current policy, scored by the reward
   function; old and reference log-probs and the critic's values kept as constants;
2. rewards: the KL penalty *in the reward*, ``-beta k(t)`` per token (``k1`` by default,
   whose REINFORCE gradient is exactly that of ``KL(pi || pi_ref)``), plus the score on
   the response's last token;
3. advantages: GAE over the response (``gamma = 1``, ``lam = 0.95``), returns ``A + V``,
   advantages whitened over the batch;
4. update: ``epochs`` passes of ``n_minibatches`` minibatches, each one step of the
   clipped surrogate on the policy and one of the clipped value loss on the critic;
5. adaptive KL (optional): ``beta`` follows Ziegler et al.'s proportional controller.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhf_toy._validate import (
    MAX_SAMPLES,
    MAX_STEPS,
    as_rng,
    check_int,
    check_nonnegative,
    check_positive,
)
from rlhf_toy.policy_gradient import (
    explained_variance,
    gae,
    kl_penalty_rewards,
    ppo_clip_loss,
    value_loss,
    whiten,
)
from rlhf_toy.rl.rollout import apply_gradients, collect_rollout, sequence_sum

__all__ = ["PPOConfig", "ppo_step"]

KL_IN_REWARD = ("k1", "k2", "k3")


@dataclass(frozen=True)
class PPOConfig:
    """Settings of :func:`ppo_step` (defaults: InstructGPT / Ziegler et al. where they apply).

    Attributes
    ----------
    group_size : int, default 8
        Responses sampled per prompt per step.
    beta : float, default 0.05
        KL coefficient of the penalty in the reward (the initial value when a
        controller adapts it).
    kl_estimator : {"k1", "k2", "k3"}, default "k1"
        Per-token estimator in the reward.
    gamma, lam : float, default 1.0, 0.95
        GAE discount and trace parameters (each in [0, 1]).
    clip_eps : float, default 0.2
        Policy ratio clip.
    vf_clip : float or None, default 0.2
        Value clip around the old values; ``None`` for the unclipped squared error.
    epochs : int, default 4
        Passes over the batch.
    n_minibatches : int, default 1
        Minibatches per pass (the batch is shuffled each pass; ``<=`` batch size).
    whiten_advantages : bool, default True
        Zero-mean, unit-variance advantages over the batch.
    whiten_rewards : bool, default False
        Scale per-token rewards to unit variance, keeping their mean (found harmful in
        some replications; off by default).
    max_grad_norm : float or None, default None
        Global gradient-norm clip (policy and critic separately).
    """

    group_size: int = 8
    beta: float = 0.05
    kl_estimator: str = "k1"
    gamma: float = 1.0
    lam: float = 0.95
    clip_eps: float = 0.2
    vf_clip: float | None = 0.2
    epochs: int = 4
    n_minibatches: int = 1
    whiten_advantages: bool = True
    whiten_rewards: bool = False
    max_grad_norm: float | None = None

    def __post_init__(self):
        check_int(self.group_size, "group_size", maximum=MAX_SAMPLES)
        check_nonnegative(self.beta, "beta")
        if self.kl_estimator not in KL_IN_REWARD:
            raise ValueError(f"kl_estimator must be one of {KL_IN_REWARD}, "
                             f"got {self.kl_estimator!r}")
        for name in ("gamma", "lam"):
            v = check_nonnegative(getattr(self, name), name)
            if v > 1:
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        check_positive(self.clip_eps, "clip_eps")
        if self.vf_clip is not None:
            check_positive(self.vf_clip, "vf_clip")
        check_int(self.epochs, "epochs", maximum=MAX_STEPS)
        check_int(self.n_minibatches, "n_minibatches", maximum=MAX_SAMPLES)
        if self.max_grad_norm is not None:
            check_positive(self.max_grad_norm, "max_grad_norm")


def ppo_step(policy, ref, optimiser, prompts, reward_fn, config: PPOConfig, rng, *,
             critic, critic_optimiser, kl_controller=None) -> dict:
    """One PPO-RLHF step: rollout, KL-penalised rewards, GAE, epochs of clipped minibatches.

    Parameters
    ----------
    policy, ref, optimiser, prompts, reward_fn, rng
        As in :func:`rlhf_toy.rl.grpo.grpo_step`.
    config : PPOConfig
    critic : Critic
        The value function (:class:`rlhf_toy.rl.protocol.Critic`), updated in place.
    critic_optimiser : Optimiser
        ``step(grads)`` over ``critic.params``. A separate optimiser, so the value-loss
        coefficient of a shared loss is not needed (Adam is invariant to it).
    kl_controller : AdaptiveKLController or FixedKLController, optional
        Supplies ``beta`` (``.value``) and is updated with the batch's KL after the step
        (``.update(kl, n_steps=B)``); ``config.beta`` if omitted.

    Returns
    -------
    dict of str to float
        ``loss`` (policy loss of the last minibatch), ``approx_kl``, ``clipfrac``
        (means over the minibatches), ``value_loss``, ``vf_clipfrac``,
        ``explained_variance`` (of the old values against the returns), ``kl`` (batch
        mean of the per-sequence sum of ``k1``), ``beta`` (used this step), ``reward``
        (mean score), ``entropy`` (of the sampling policy), ``grad_norm``.

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`PPOConfig`.
    ValueError
        If ``config.n_minibatches`` exceeds the batch size.
    FloatingPointError
        If a reward, log-probability, value or gradient is not finite.

    Notes
    -----
    Per token ``r_t = -beta k(t) + [t = last] score``; GAE
    (:func:`rlhf_toy.policy_gradient.gae`); policy loss
    ``-mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A))``
    (:func:`rlhf_toy.policy_gradient.ppo_clip_loss`); value loss
    ``0.5 mean(max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2))``
    (:func:`rlhf_toy.policy_gradient.value_loss`). Schulman et al. (2017, 2016); Ziegler
    et al. (2019); Ouyang et al. (2022). A penalty for responses without EOS belongs in
    ``reward_fn`` (the score), which sees the responses and their mask.
    """
    if not isinstance(config, PPOConfig):
        raise TypeError(f"config must be a PPOConfig, got {type(config).__name__}")
    rng = as_rng(rng)
    ro = collect_rollout(policy, ref, prompts, reward_fn, config.group_size, rng,
                         where="ppo_step")
    B = ro.responses.shape[0]
    if config.n_minibatches > B:
        raise ValueError(f"n_minibatches must be <= the batch size {B}, "
                         f"got {config.n_minibatches}")
    beta = config.beta if kl_controller is None else float(kl_controller.value)
    values_old = critic.values(ro.prompts, ro.responses, ro.mask)  # (B, T)
    if not np.all(np.isfinite(values_old)):
        raise FloatingPointError("ppo_step: non-finite critic values")

    # rewards: KL in the reward on every token, the score on the last one
    if beta > 0:
        rewards = kl_penalty_rewards(ro.logp, ro.logp_ref, ro.mask, beta,
                                     estimator=config.kl_estimator)  # (B, T)
    else:
        rewards = np.zeros(ro.mask.shape)
    last = ro.mask.sum(axis=1).astype(np.int64) - 1  # (B,) index of each row's last token
    rewards[np.arange(B), last] += ro.scores
    if config.whiten_rewards:
        rewards = whiten(rewards, ro.mask, shift_mean=False)

    # advantages and returns
    adv, returns = gae(rewards, values_old, ro.mask, gamma=config.gamma, lam=config.lam)
    ev = float(explained_variance(values_old, returns, ro.mask))
    if config.whiten_advantages:
        adv = whiten(adv, ro.mask)
    n_tok = float(ro.mask.sum())
    entropy = float(np.sum(policy.entropy(ro.prompts, ro.responses, ro.mask)) / n_tok)

    # epochs of minibatches
    rec = {"approx_kl": [], "clipfrac": [], "value_loss": [], "vf_clipfrac": []}
    for _ in range(config.epochs):
        for mb in np.array_split(rng.permutation(B), config.n_minibatches):
            p_mb, y_mb, m_mb = ro.prompts[mb], ro.responses[mb], ro.mask[mb]
            logp = policy.logprobs(p_mb, y_mb, m_mb)
            loss, dlogp, st = ppo_clip_loss(logp, ro.logp[mb], adv[mb], m_mb,
                                            clip_eps=config.clip_eps)
            if not np.isfinite(loss):
                raise FloatingPointError(f"ppo_step: policy loss is {loss}")
            grad_norm = apply_gradients(optimiser, policy.logprobs_backward(dlogp),
                                        config.max_grad_norm, "ppo_step (policy)")
            values = critic.values(p_mb, y_mb, m_mb)
            vl, dvalues, vst = value_loss(values, values_old[mb], returns[mb], m_mb,
                                          clip_range=config.vf_clip)
            apply_gradients(critic_optimiser, critic.values_backward(dvalues),
                            config.max_grad_norm, "ppo_step (critic)")
            rec["approx_kl"].append(float(st["approx_kl"]))
            rec["clipfrac"].append(float(st["clipfrac"]))
            rec["value_loss"].append(float(vl))
            rec["vf_clipfrac"].append(float(vst["vf_clipfrac"]))

    kl = float(sequence_sum(ro.logp - ro.logp_ref, ro.mask).mean())
    if kl_controller is not None:
        kl_controller.update(kl, n_steps=B)
    out = {key: float(np.mean(v)) for key, v in rec.items()}
    out.update(loss=float(loss), explained_variance=ev, kl=kl, beta=beta,
               reward=float(ro.scores.mean()), entropy=entropy, grad_norm=grad_norm)
    return out
