"""Online DPO: one training step on pairs sampled from the current policy (chapter, "DPO").

Offline DPO learns from a fixed data set of comparisons drawn from ``pi_ref``; online (or
iterative) DPO (Guo et al. 2024; Xu et al. 2024) draws a fresh pair ``y_1, y_2 ~ pi(.|x)``
for every prompt at every step, has it labelled by a reward function, and takes one step
of the DPO loss on it.

The label: this step *samples* it from Bradley-Terry on the reward,
``P(y_1 > y_2) = sigma(r(x, y_1) - r(x, y_2))``, by default: a simulated labeler whose
preferences follow the chapter's model, so that the population loss is minimised at
``pi* = pi_ref exp(r / beta) / Z``. TRL's ``OnlineDPOTrainer`` instead prefers the
higher-scored response deterministically (ties: the first); ``label="argmax"`` does that,
which on the bandit pushes further than ``pi*`` (the labels are those of the reward scaled
to infinity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhf_toy._validate import as_rng, check_positive
from rlhf_toy.bradley_terry import preference_probability
from rlhf_toy.preference_losses import dpo_loss
from rlhf_toy.rl.rollout import apply_gradients, collect_rollout, sequence_sum

__all__ = ["OnlineDPOConfig", "online_dpo_step"]

LABELS = ("bradley_terry", "argmax")


@dataclass(frozen=True)
class OnlineDPOConfig:
    """Settings of :func:`online_dpo_step`.

    Attributes
    ----------
    beta : float, default 0.1
        DPO's KL coefficient (> 0).
    label : {"bradley_terry", "argmax"}, default "bradley_terry"
        Sample the label from Bradley-Terry on the reward, or prefer the higher reward
        (TRL; ties go to the first sample).
    max_grad_norm : float or None, default None
        Global gradient-norm clip.
    """

    beta: float = 0.1
    label: str = "bradley_terry"
    max_grad_norm: float | None = None

    def __post_init__(self):
        check_positive(self.beta, "beta")
        if self.label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {self.label!r}")
        if self.max_grad_norm is not None:
            check_positive(self.max_grad_norm, "max_grad_norm")


def online_dpo_step(policy, ref, optimiser, prompts, reward_fn, config: OnlineDPOConfig,
                    rng) -> dict:
    """One online-DPO step: two samples per prompt, a label each, one DPO gradient step.

    Parameters
    ----------
    policy, ref, optimiser, prompts, reward_fn, rng
        As in :func:`rlhf_toy.rl.grpo.grpo_step`.
    config : OnlineDPOConfig

    Returns
    -------
    dict of str to float
        ``loss`` (mean DPO loss over the pairs), ``margin`` (mean implicit-reward margin
        ``h_w - h_l``, ``h = beta log(pi / pi_ref)`` of the sequence), ``accuracy``
        (fraction of pairs with a positive margin), ``ties`` (fraction of pairs whose two
        responses are identical: no gradient), ``reward`` (mean score), ``reward_gap``
        (mean score of the chosen minus the rejected), ``entropy``, ``grad_norm``.

    Raises
    ------
    TypeError
        If ``config`` is not an :class:`OnlineDPOConfig`.
    FloatingPointError
        If a reward, log-probability or gradient is not finite.

    Notes
    -----
    With sequence log-probs ``logp(y) = sum_t logp_t``, the loss of a pair is
    :func:`rlhf_toy.preference_losses.dpo_loss`; its gradient wrt ``logp(y_w)`` (and
    ``logp(y_l)``) is put on every token of the response and pushed through
    ``policy.logprobs_backward``. Identical responses get exactly opposite gradients on
    the same tokens, which cancel.
    """
    if not isinstance(config, OnlineDPOConfig):
        raise TypeError(f"config must be an OnlineDPOConfig, got {type(config).__name__}")
    rng = as_rng(rng)
    ro = collect_rollout(policy, ref, prompts, reward_fn, 2, rng, where="online_dpo_step")
    n = ro.n_prompts
    n_tok = float(ro.mask.sum())
    entropy = float(np.sum(policy.entropy(ro.prompts, ro.responses, ro.mask)) / n_tok)
    scores = ro.scores.reshape(n, 2)  # (n, 2)
    if config.label == "bradley_terry":
        first_wins = rng.random(n) < preference_probability(scores[:, 0], scores[:, 1])
    else:
        first_wins = scores[:, 0] >= scores[:, 1]
    rows = 2 * np.arange(n)
    i_w = np.where(first_wins, rows, rows + 1)  # (n,) row of the chosen response
    i_l = np.where(first_wins, rows + 1, rows)

    logp = policy.logprobs(ro.prompts, ro.responses, ro.mask)  # (B, T)
    seq = sequence_sum(logp, ro.mask)  # (B,)
    seq_ref = sequence_sum(ro.logp_ref, ro.mask)  # (B,)
    loss, g_w, g_l = dpo_loss(seq[i_w], seq[i_l], seq_ref[i_w], seq_ref[i_l], config.beta)
    value = float(np.mean(loss))
    if not np.isfinite(value):
        raise FloatingPointError(f"online_dpo_step: loss is {value}")
    g_seq = np.zeros(2 * n)
    g_seq[i_w] = g_w / n
    g_seq[i_l] = g_l / n
    dlogp = g_seq[:, None] * ro.mask  # (B, T): d mean loss / d logp per token
    grads = policy.logprobs_backward(dlogp)
    grad_norm = apply_gradients(optimiser, grads, config.max_grad_norm, "online_dpo_step")

    margin = config.beta * ((seq[i_w] - seq_ref[i_w]) - (seq[i_l] - seq_ref[i_l]))
    same = np.all((ro.responses[rows] == ro.responses[rows + 1])
                  | (ro.mask[rows] == 0), axis=1) & np.all(ro.mask[rows] == ro.mask[rows + 1],
                                                           axis=1)
    return {"loss": value, "margin": float(margin.mean()),
            "accuracy": float(np.mean(margin > 0)), "ties": float(np.mean(same)),
            "reward": float(ro.scores.mean()),
            "reward_gap": float(np.mean(ro.scores[i_w] - ro.scores[i_l])),
            "entropy": entropy, "grad_norm": grad_norm}
