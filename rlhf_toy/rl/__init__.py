"""Sampled RL for RLHF, written once against the policy protocol (chapter, Stage 3 and
"Modern RL for LLMs").

One training-step function per algorithm, each ``step(policy, ref, optimiser, prompts,
reward_fn, config, rng) -> dict of stats`` (PPO also takes its critic):

- :func:`reinforce_step`, :func:`rloo_step` (:mod:`rlhf_toy.rl.reinforce`);
- :func:`grpo_step` with :class:`GRPOConfig` or :func:`dr_grpo_config` (:mod:`rlhf_toy.rl.grpo`);
- :func:`ppo_step` (:mod:`rlhf_toy.rl.ppo`);
- :func:`online_dpo_step` (:mod:`rlhf_toy.rl.online_dpo`).

The tabular world runs them in :mod:`rlhf_toy.bandit.rl`; the sequence pipeline runs the
same steps on the GPT. The losses and advantages are those of
:mod:`rlhf_toy.policy_gradient` and :mod:`rlhf_toy.preference_losses`.
"""

from rlhf_toy.rl.grpo import GRPOConfig, dr_grpo_config, grpo_step
from rlhf_toy.rl.online_dpo import OnlineDPOConfig, online_dpo_step
from rlhf_toy.rl.ppo import PPOConfig, ppo_step
from rlhf_toy.rl.protocol import Critic, Optimiser, Policy, ReferencePolicy, RewardFn, Rollout
from rlhf_toy.rl.reinforce import ReinforceConfig, RLOOConfig, reinforce_step, rloo_step
from rlhf_toy.rl.rollout import apply_gradients, collect_rollout, sequence_sum

__all__ = [
    "Critic",
    "GRPOConfig",
    "OnlineDPOConfig",
    "Optimiser",
    "PPOConfig",
    "Policy",
    "RLOOConfig",
    "ReferencePolicy",
    "ReinforceConfig",
    "RewardFn",
    "Rollout",
    "apply_gradients",
    "collect_rollout",
    "dr_grpo_config",
    "grpo_step",
    "online_dpo_step",
    "ppo_step",
    "reinforce_step",
    "rloo_step",
    "sequence_sum",
]
