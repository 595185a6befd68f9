"""Stage 2 of the pipeline: the reward model (chapter, "The RLHF Pipeline", Stage 2: Reward
Model Training, and "Bradley-Terry Model").

Pairs of responses are sampled from the SFT policy for prompts of the task, and the
task's simulated labelers choose one of each pair (Bradley-Terry on their utility, gold
plus their bias). The reward model ``r_phi(x, y)`` is a GPT whose trunk starts from the
SFT weights, with a scalar head (``reward_head.weight``, ``reward_head.bias``, starting at
zero) read on the final hidden state at the response's last real token (its EOS when it
has one, never a PAD). It minimises the Bradley-Terry loss

    L(phi) = - mean log sigma(r_phi(x, y_w) - r_phi(x, y_l)),

which is DPO's per-pair loss with both reference log-probs at 0 and ``beta = 1``: the
loss and its gradient with respect to ``r_phi(x, y_w)`` and ``r_phi(x, y_l)`` come from
:func:`rlhf_toy.preference_losses.dpo_loss`, not from a second copy of the sigmoid.

Held-out accuracy is reported three ways: against the labelers' (noisy) choices, against
their noise-free utility, and against the gold reward (pairs whose gold rewards differ).
On the biased tasks the RM agrees with the labelers more than with the gold reward: it has
learned their bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhf_toy._validate import (
    as_rng,
    check_finite,
    check_ndim,
    check_nonempty,
    check_same_shape,
)
from rlhf_toy.gpt import GPT
from rlhf_toy.preference_losses import dpo_loss

from .common import Optimizer, check_loss, new_model, progress, task_policy
from .policy import GPTPolicy, GPTRewardModel

__all__ = [
    "Comparisons",
    "RewardModelResult",
    "bradley_terry_loss_and_grads",
    "heldout_accuracy",
    "pairwise_accuracy",
    "sample_comparisons",
    "score",
    "train_reward_model",
]

#: Rows per forward pass when scoring many responses.
SCORE_CHUNK = 4096


@dataclass
class Comparisons:
    """Labelled pairs: ``chosen`` preferred to ``rejected`` for each prompt row."""

    prompts: np.ndarray  # (n, P)
    chosen: np.ndarray  # (n, T)
    chosen_mask: np.ndarray  # (n, T)
    rejected: np.ndarray  # (n, T)
    rejected_mask: np.ndarray  # (n, T)

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, idx) -> Comparisons:
        """The pairs at ``idx``."""
        return Comparisons(*(a[idx] for a in self.as_tuple()))

    def as_tuple(self) -> tuple:
        """``(prompts, chosen, chosen_mask, rejected, rejected_mask)``."""
        return (self.prompts, self.chosen, self.chosen_mask, self.rejected, self.rejected_mask)


@dataclass
class RewardModelResult:
    """Output of :func:`train_reward_model`."""

    model: GPT  # the reward model's network (heads=("reward",))
    reward_model: GPTRewardModel  # the same behind the scoring protocol
    history: dict  # per-step arrays: step, loss, accuracy (of the batch), grad_norm, lr
    accuracy: dict  # held-out: {"labels", "utility", "gold"}
    train: Comparisons
    heldout: Comparisons


def sample_comparisons(task, policy: GPTPolicy, n: int, rng) -> Comparisons:
    """``n`` prompts of ``task``, two responses of ``policy`` each, labelled.

    The labels are those of the task's labelers (:meth:`Task.label`).

    Parameters
    ----------
    task : Task
    policy : GPTPolicy
    n : int
        Number of comparisons.
    rng : numpy.random.Generator or int

    Returns
    -------
    Comparisons
    """
    rng = as_rng(rng)
    prompts = task.sample_prompts(n, rng)  # (n, P)
    y, m = policy.sample(prompts, 2, rng)  # (2n, T), prompt-major: a, b, a, b, ...
    y, m = task.responses_from_tokens(np.where(m > 0, y, task.pad_id))
    ya, yb, ma, mb = y[0::2], y[1::2], m[0::2], m[1::2]
    a_won = task.label(prompts, ya, ma, yb, mb, rng)[:, None]  # (n, 1)
    return Comparisons(
        prompts,
        np.where(a_won, ya, yb),
        np.where(a_won, ma, mb),
        np.where(a_won, yb, ya),
        np.where(a_won, mb, ma),
    )


def score(reward_model: GPTRewardModel, prompts, responses, mask) -> np.ndarray:
    """``r_phi(x, y)`` of many rows, in chunks of :data:`SCORE_CHUNK`, float64 (B,).

    Parameters
    ----------
    reward_model : GPTRewardModel
    prompts : ndarray of int of shape (B, P)
    responses : ndarray of int of shape (B, L)
    mask : ndarray of shape (B, L)

    Returns
    -------
    ndarray of float64 of shape (B,)
    """
    out = np.empty(len(prompts))
    for s in range(0, len(prompts), SCORE_CHUNK):
        sl = slice(s, s + SCORE_CHUNK)
        out[sl] = reward_model.score(prompts[sl], responses[sl], mask[sl])
    return out


def pairwise_accuracy(r_a, r_b, truth_a, truth_b) -> float:
    """Share of pairs ordered as by ``truth`` among those ``truth`` does not tie.

    A tie of ``r`` counts one half; NaN if ``truth`` ties every pair.

    Parameters
    ----------
    r_a, r_b : array_like of shape (B,)
        Scores of the two responses of each pair.
    truth_a, truth_b : array_like of shape (B,)
        The true values they are compared against.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If an input is not finite, not 1-D, empty, or the four differ in shape.
    """
    arrays = {}
    for name, a in (("r_a", r_a), ("r_b", r_b), ("truth_a", truth_a), ("truth_b", truth_b)):
        arrays[name] = check_nonempty(check_ndim(check_finite(a, name), name, 1, "(B,)"), name)
        check_same_shape(arrays[name], arrays["r_a"], name, "r_a")
    r_a, r_b, truth_a, truth_b = arrays.values()
    t = np.sign(truth_a - truth_b)
    keep = t != 0
    if not keep.any():
        return float("nan")
    s = np.sign(r_a - r_b)[keep]
    return float(np.mean(np.where(s == 0, 0.5, s == t[keep])))


def heldout_accuracy(task, reward_model: GPTRewardModel, pairs: Comparisons) -> dict:
    """Accuracy of ``reward_model`` on ``pairs`` against three orderings.

    The labels, the labelers' utility and the gold reward.

    Parameters
    ----------
    task : Task
    reward_model : GPTRewardModel
    pairs : Comparisons

    Returns
    -------
    dict
        ``"labels"``, ``"utility"``, ``"gold"``: floats, as :func:`pairwise_accuracy`.
    """
    x, yw, mw, yl, ml = pairs.as_tuple()
    r_w, r_l = score(reward_model, x, yw, mw), score(reward_model, x, yl, ml)
    ones = np.ones(len(x))
    return {
        "labels": pairwise_accuracy(r_w, r_l, ones, 0 * ones),
        "utility": pairwise_accuracy(
            r_w, r_l, task.labeler_utility(x, yw, mw), task.labeler_utility(x, yl, ml)
        ),
        "gold": pairwise_accuracy(
            r_w, r_l, task.gold_rewards(x, yw, mw), task.gold_rewards(x, yl, ml)
        ),
    }


def bradley_terry_loss_and_grads(rm: GPTRewardModel, pairs: Comparisons):
    """Bradley-Terry loss of the reward model on ``pairs`` and its parameter gradients.

    Both responses of the ``B`` pairs are scored in one forward of ``2B`` rows;
    ``losses, g_w, g_l = dpo_loss(r_w, r_l, 0, 0, beta=1)`` gives ``-log sigma(r_w - r_l)``
    and its derivatives ``g_w = -sigma(r_l - r_w) = -g_l``; the loss is their mean and the
    parameters' gradients are ``score_backward([g_w, g_l] / B)``.

    Parameters
    ----------
    rm : GPTRewardModel
    pairs : Comparisons
        ``B`` pairs.

    Returns
    -------
    loss : float
    grads : dict of str to ndarray
    r_w, r_l : ndarray of shape (B,)
        Scores of the chosen and rejected responses.
    """
    x, yw, mw, yl, ml = pairs.as_tuple()
    B = len(x)
    r = rm.score(np.concatenate([x, x]), np.concatenate([yw, yl]), np.concatenate([mw, ml]))
    r_w, r_l = r[:B].astype(np.float64), r[B:].astype(np.float64)  # (B,), (B,)
    losses, g_w, g_l = dpo_loss(r_w, r_l, 0.0, 0.0, beta=1.0)
    grads = rm.score_backward(np.concatenate([g_w, g_l]) / B)
    return float(losses.mean()), grads, r_w, r_l


def train_reward_model(task, config, sft_model: GPT, rng, verbose: bool = False):
    """Fit the reward model on labelled comparisons of SFT samples.

    Parameters
    ----------
    task : Task
    config : PipelineConfig
        Uses ``n_comparisons``, ``rm_holdout``, ``rm_steps``, ``rm_batch_size``, ``rm_lr``,
        ``rm_warmup_steps``, ``weight_decay``, ``max_grad_norm``.
    sft_model : GPT
        The SFT policy: samples the pairs and initialises the trunk (copied, not shared).
    rng : numpy.random.Generator or int
        Comparisons, then minibatches.
    verbose : bool, default False

    Returns
    -------
    RewardModelResult

    Raises
    ------
    FloatingPointError
        ``"reward_model: non-finite loss at step S"`` (or gradient).

    Notes
    -----
    Each step is :func:`bradley_terry_loss_and_grads` on ``rm_batch_size`` training pairs
    drawn with replacement, then one clipped AdamW step.
    """
    rng = as_rng(rng)
    pairs = sample_comparisons(task, task_policy(sft_model, task), config.n_comparisons, rng)
    n_held = round(config.n_comparisons * config.rm_holdout)
    train, heldout = pairs.subset(slice(n_held, None)), pairs.subset(slice(0, n_held))

    model = new_model(task, config, 0, heads=("reward",))
    for name, p in sft_model.params.items():
        model.params[name][...] = p  # trunk from SFT; the reward head stays at zero
    rm = GPTRewardModel(model)
    opt = Optimizer(
        model.params,
        "reward_model",
        config.rm_lr,
        config.rm_steps,
        config.rm_warmup_steps,
        config.weight_decay,
        config.max_grad_norm,
    )
    steps, B = config.rm_steps, config.rm_batch_size
    history = {k: np.zeros(steps) for k in ("loss", "accuracy", "grad_norm", "lr")}
    history["step"] = np.arange(steps)
    for step in progress(steps, "reward model", verbose):
        batch = train.subset(rng.integers(0, len(train), size=B))
        loss, grads, r_w, r_l = bradley_terry_loss_and_grads(rm, batch)
        loss = check_loss("reward_model", step, loss)
        history["grad_norm"][step], history["lr"][step] = opt.step(step, grads)
        history["loss"][step] = loss
        history["accuracy"][step] = np.mean(r_w > r_l)
    opt.check_params(steps - 1)
    return RewardModelResult(
        model=model,
        reward_model=rm,
        history=history,
        accuracy=heldout_accuracy(task, rm, heldout),
        train=train,
        heldout=heldout,
    )
