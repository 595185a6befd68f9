"""Pieces every stage of the pipeline shares: the task's policy, one AdamW step, progress.

A stage's training loop is the same few lines whatever the loss (chapter, "The RLHF
Pipeline"): check the loss, back-propagate, check the gradients, clip, step AdamW on a
warmup-then-cosine learning rate. A non-finite loss or gradient stops the stage with a
``FloatingPointError`` naming the stage and the step, before the parameters change.
"""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from rlhf_toy._validate import MAX_STEPS, check_float, check_int
from rlhf_toy.gpt import GPT, GPTConfig, check_finite_grads
from rlhf_toy.gpt.model import check_finite_params
from rlhf_toy.optim import AdamW, clip_grad_norm, lr_schedule

from .policy import GPTPolicy

__all__ = ["Optimizer", "check_loss", "new_model", "progress", "task_policy"]


def new_model(task, config, rng, heads=()) -> GPT:
    """A fresh GPT shaped by ``config`` for ``task``'s vocabulary (float32).

    Parameters
    ----------
    task : Task
    config : PipelineConfig
        Its ``n_ctx``, ``n_embd``, ``n_layer`` and ``n_head``.
    rng : numpy.random.Generator or int
        The initialisation seed.
    heads : tuple of str, default ()

    Returns
    -------
    GPT
    """
    shape = GPTConfig(
        vocab_size=task.vocab_size,
        n_ctx=config.n_ctx,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
    )
    return GPT(shape, seed=rng, heads=heads)


def task_policy(model: GPT, task, frozen: bool = False) -> GPTPolicy:
    """``model`` as a policy over ``task``'s responses.

    The response alphabet only, EOS ends a response, PAD after it, ``max_response_len``
    tokens at most.

    Parameters
    ----------
    model : GPT
    task : Task
    frozen : bool, default False
        A reference policy: log-probs only, each distinct prompt encoded once.

    Returns
    -------
    GPTPolicy
    """
    return GPTPolicy(
        model,
        task.max_response_len,
        allowed_tokens=np.asarray(task.response_token_ids),
        eos_token=task.eos_id,
        pad_token=task.pad_id,
        prompt_len=task.prompt_len,
        frozen=frozen,
    )


def check_loss(stage: str, step: int, loss) -> float:
    """``float(loss)``, or ``FloatingPointError`` naming ``stage`` and ``step``.

    Parameters
    ----------
    stage : str
    step : int
    loss : float or 0-d ndarray

    Returns
    -------
    float
    """
    step = check_int(step, "step", minimum=0, maximum=MAX_STEPS)
    if isinstance(loss, np.ndarray) and loss.ndim == 0:
        loss = loss[()]
    value = check_float(loss, "loss", allow_nan=True, allow_inf=True)
    if not np.isfinite(value):
        raise FloatingPointError(f"{stage}: non-finite loss at step {step}: {value}")
    return value


class Optimizer:
    """AdamW with global-norm clipping and a warmup-then-cosine schedule for one stage.

    Parameters
    ----------
    params : dict of str to ndarray
        Updated in place.
    stage : str
        Named in errors.
    lr : float
        Peak learning rate; the cosine ends at ``lr / 10``.
    steps, warmup_steps : int
        Schedule length and linear warmup.
    weight_decay, max_grad_norm : float
    """

    def __init__(self, params, stage, lr, steps, warmup_steps, weight_decay, max_grad_norm):
        self.stage = stage
        self.adamw = AdamW(params, lr=lr, weight_decay=weight_decay)
        self.lr, self.steps, self.warmup_steps = lr, steps, warmup_steps
        self.max_grad_norm = max_grad_norm

    def step(self, step: int, grads: dict) -> tuple[float, float]:
        """Check, clip and apply ``grads``; returns ``(grad_norm, lr)``."""
        try:
            check_finite_grads(grads, step)
        except FloatingPointError as e:
            raise FloatingPointError(f"{self.stage}: {e}") from None
        norm = clip_grad_norm(grads, self.max_grad_norm)
        lr = lr_schedule(
            step,
            lr=self.lr,
            total_steps=self.steps,
            warmup_steps=self.warmup_steps,
            min_lr=self.lr / 10,
        )
        self.adamw.step(grads, lr=lr)
        return norm, lr

    def check_params(self, step: int) -> None:
        """``FloatingPointError`` naming the stage if the update of ``step`` made a
        parameter NaN or infinite (a loop's check after its last step)."""
        try:
            check_finite_params(self.adamw.params, step)
        except FloatingPointError as e:
            raise FloatingPointError(f"{self.stage}: {e}") from None


def progress(steps: int, desc: str, verbose: bool):
    """``tqdm(range(steps))``, shown only when ``verbose`` and on a terminal or notebook.

    Parameters
    ----------
    steps : int
    desc : str
    verbose : bool

    Returns
    -------
    tqdm.tqdm
        An iterable over ``range(steps)``.
    """
    show = verbose and (sys.stderr.isatty() or "ipykernel" in sys.modules)
    return tqdm(range(steps), desc=desc, disable=not show, leave=False)
