"""Stage 1 of the pipeline: supervised fine-tuning on demonstrations (chapter, "The RLHF
Pipeline", Stage 1: Supervised Fine-Tuning).

The policy is trained by maximum likelihood on the task's imperfect demonstrations,
cross-entropy on the response tokens only:

    L(theta) = - sum_{b,t} mask[b,t] log pi_theta(y[b,t] | x_b, y[b,:t]) / sum mask,

with ``pi_theta`` the softmax over the response alphabet (the same restriction as in
sampling, log-probs and enumeration). The best a model can do in expectation is the
demonstrator's own per-token entropy, ``E_x H(demo(.|x)) / E_x E_demo[tokens]``; the stage
reports that level beside its loss. The SFT policy is the reference ``pi_sft`` of every
later stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhf_toy._validate import as_rng
from rlhf_toy.gpt import GPT

from .common import Optimizer, check_loss, new_model, progress, task_policy
from .policy import GPTPolicy

__all__ = ["SFTResult", "demonstrator_loss", "sft_loss_and_grads", "train_sft"]


@dataclass
class SFTResult:
    """Output of :func:`train_sft`."""

    model: GPT  # the SFT policy's network
    policy: GPTPolicy  # the same, behind the policy protocol
    history: dict  # per-step arrays: step, loss, grad_norm, lr
    demonstrator_loss: float  # the demonstrator's per-token entropy: the loss to reach
    prompts: np.ndarray  # (n_demonstrations, P) the demonstration set
    responses: np.ndarray  # (n_demonstrations, T)
    mask: np.ndarray  # (n_demonstrations, T)


def demonstrator_loss(task, prompts) -> float:
    """Expected SFT loss of the demonstrator itself on ``prompts``: its entropy per token.

    ``sum_x H(demo(.|x)) / sum_x E_demo[number of response tokens]`` over the rows of
    ``prompts``, exactly, by enumerating :meth:`Task.all_responses` for each distinct
    prompt.

    Parameters
    ----------
    task : Task
    prompts : ndarray of int of shape (X, P)

    Returns
    -------
    float
        Nats per token.
    """
    x, counts = np.unique(task.check_prompts(prompts), axis=0, return_counts=True)
    y, m = task.all_responses()
    X, N = len(x), len(y)
    p = task.demonstrator_probs(np.repeat(x, N, 0), np.tile(y, (X, 1)), np.tile(m, (X, 1)))
    p = p.reshape(X, N)
    with np.errstate(divide="ignore"):
        logp = np.where(p > 0, np.log(p), 0.0)
    entropy = -(p * logp).sum(axis=1)  # (X,)
    tokens = p @ m.sum(axis=1)  # (X,) expected tokens, EOS included
    return float((counts * entropy).sum() / (counts * tokens).sum())


def sft_loss_and_grads(policy: GPTPolicy, prompts, responses, mask):
    """Masked mean cross-entropy of the responses and its parameter gradients.

    ``loss = -sum(mask * logp) / sum(mask)`` with ``logp`` from ``policy.logprobs``
    (restricted to the response alphabet); ``d loss / d logp = -mask / sum(mask)``.

    Parameters
    ----------
    policy : GPTPolicy
    prompts : ndarray of int of shape (B, P)
    responses : ndarray of int of shape (B, L)
    mask : ndarray of shape (B, L)

    Returns
    -------
    loss : float
    grads : dict of str to ndarray
    """
    m = np.asarray(mask)
    logp = policy.logprobs(prompts, responses, m)  # (B, T), 0 off the mask
    n_tokens = m.sum()
    loss = float(-(logp.astype(np.float64) * m).sum() / n_tokens)
    return loss, policy.logprobs_backward(-m / n_tokens)


def train_sft(task, config, rng, verbose: bool = False) -> SFTResult:
    """Fit a fresh GPT to ``config.n_demonstrations`` demonstrations of ``task``.

    Parameters
    ----------
    task : Task
    config : PipelineConfig
        Uses ``n_demonstrations``, ``sft_steps``, ``sft_batch_size``, ``sft_lr``,
        ``sft_warmup_steps``, ``weight_decay``, ``max_grad_norm`` and the model shape.
    rng : numpy.random.Generator or int
        Initialisation, demonstrations and minibatches, in that order.
    verbose : bool, default False
        Progress bar.

    Returns
    -------
    SFTResult

    Raises
    ------
    FloatingPointError
        ``"sft: non-finite loss at step S"`` (or gradient), before that step's update.
    """
    rng = as_rng(rng)
    model = new_model(task, config, rng)
    policy = task_policy(model, task)
    prompts = task.sample_prompts(config.n_demonstrations, rng)  # (n, P)
    responses, mask = task.demonstrations(prompts, rng)  # (n, T)
    opt = Optimizer(
        model.params,
        "sft",
        config.sft_lr,
        config.sft_steps,
        config.sft_warmup_steps,
        config.weight_decay,
        config.max_grad_norm,
    )
    steps = config.sft_steps
    history = {k: np.zeros(steps) for k in ("loss", "grad_norm", "lr")}
    history["step"] = np.arange(steps)
    for step in progress(steps, "sft", verbose):
        idx = rng.integers(0, len(prompts), size=config.sft_batch_size)  # (B,)
        loss, grads = sft_loss_and_grads(policy, prompts[idx], responses[idx], mask[idx])
        loss = check_loss("sft", step, loss)
        history["grad_norm"][step], history["lr"][step] = opt.step(step, grads)
        history["loss"][step] = loss
    opt.check_params(steps - 1)
    return SFTResult(
        model=model,
        policy=policy,
        history=history,
        demonstrator_loss=demonstrator_loss(task, prompts),
        prompts=prompts,
        responses=responses,
        mask=mask,
    )
