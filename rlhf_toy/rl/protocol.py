"""The policy protocol: the one seam between the tabular world and the GPT (chapter, Stage 3).

Every sampled RL step of :mod:`rlhf_toy.rl` (REINFORCE, RLOO, GRPO, PPO, online DPO) is
written once against these few calls. A bandit response is a one-token sequence, so the
tabular softmax policy (:class:`rlhf_toy.bandit.policy.TrainableTabularPolicy`) and the
GPT (through a thin adapter) offer the same protocol; the worlds differ only in rollout
length and in how they evaluate exactly.

Conventions shared by every step:

- ``prompts`` is opaque to the steps (int array ``[B]`` on the bandit, token array
  ``[B, P]`` on the GPT): they only index it with row indices and ``np.repeat`` it.
- Rollouts are prompt-major: row ``i * G + j`` is sample ``j`` of prompt ``i``.
- Per-token arrays are ``[B, T]`` with a float ``mask`` (1 on response tokens, EOS
  included; 0 on right padding); every per-token quantity is exactly 0 off the mask.
- ``reward_fn(prompts, responses, mask) -> [B]`` scores whole responses (``prompts``
  with one row per response).
- Gradients are of a loss to *minimise*, keyed like ``params``: an optimiser with
  ``step(grads)`` (:class:`rlhf_toy.optim.AdamW`) updates ``params`` in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Critic", "Optimiser", "Policy", "ReferencePolicy", "RewardFn", "Rollout"]

#: ``reward_fn(prompts, responses, mask) -> rewards [B]``: one score per response.
RewardFn = Callable[[Any, np.ndarray, np.ndarray], np.ndarray]


@runtime_checkable
class ReferencePolicy(Protocol):
    """A frozen policy: only its per-token log-probabilities are needed (``pi_ref``)."""

    def logprobs(self, prompts, responses, mask) -> np.ndarray:
        """Per-token ``log pi(y_t | x, y_<t)``, shape ``[B, T]``, exactly 0 off the mask."""
        ...


@runtime_checkable
class Policy(Protocol):
    """The trained policy.

    Attributes
    ----------
    params : dict of str to ndarray
        Updated in place by the optimiser (``AdamW(policy.params).step(grads)``).
    """

    params: dict[str, np.ndarray]

    def sample(self, prompts, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
        """``n`` responses per prompt, prompt-major rows: ``(responses [B*n, T] int,
        mask [B*n, T] float)``, right-padded, mask 1 on response tokens (EOS included)."""
        ...

    def logprobs(self, prompts, responses, mask) -> np.ndarray:
        """Per-token ``log pi(y_t | x, y_<t)``, ``[B, T]``, exactly 0 off the mask.
        ``prompts`` has one row per response row. Keeps what :meth:`logprobs_backward`
        needs (of the last call only)."""
        ...

    def logprobs_backward(self, dlogp) -> dict[str, np.ndarray]:
        """Gradient of ``sum(dlogp * logp)`` wrt ``params`` for the last :meth:`logprobs`
        call, keyed like ``params``; ``dlogp`` ``[B, T]`` (zero off the mask)."""
        ...

    def entropy(self, prompts, responses, mask) -> np.ndarray:
        """Entropy of the full next-token distribution at each response position,
        ``[B, T]``, 0 off the mask (a diagnostic: no backward)."""
        ...


@runtime_checkable
class Critic(Protocol):
    """PPO's value function ``V(x, y_<t)``.

    A per-prompt table on the bandit, a value head on the GPT. ``params`` are updated in
    place by the critic's optimiser.
    """

    params: dict[str, np.ndarray]

    def values(self, prompts, responses, mask) -> np.ndarray:
        """``V`` of the state before each response token, ``[B, T]``, 0 off the mask;
        keeps what :meth:`values_backward` needs."""
        ...

    def values_backward(self, dvalues) -> dict[str, np.ndarray]:
        """Gradient of ``sum(dvalues * values)`` wrt ``params`` for the last
        :meth:`values` call."""
        ...


@runtime_checkable
class Optimiser(Protocol):
    """Anything with ``step(grads)`` updating its parameters in place (``AdamW``)."""

    def step(self, grads: dict[str, np.ndarray]) -> None:
        """Apply one update."""
        ...


@dataclass(frozen=True)
class Rollout:
    """One batch of samples from the current policy, scored, with the reference log-probs.

    Attributes
    ----------
    prompts : object
        The prompts, one row per response (``np.repeat(prompts, G, axis=0)``).
    responses : ndarray of int, shape (B, T)
    mask : ndarray of float, shape (B, T)
    logp : ndarray of shape (B, T)
        ``log pi_old`` per token (the sampling policy; constants for the update).
    logp_ref : ndarray of shape (B, T)
        ``log pi_ref`` per token.
    scores : ndarray of shape (B,)
        ``reward_fn`` of each response.
    n_prompts : int
        Number of distinct prompts (groups).
    group_size : int
        ``G``, responses per prompt; ``B = n_prompts * G``.
    """

    prompts: Any
    responses: np.ndarray
    mask: np.ndarray
    logp: np.ndarray
    logp_ref: np.ndarray
    scores: np.ndarray
    n_prompts: int
    group_size: int
