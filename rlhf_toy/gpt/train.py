"""Next-token training of the numpy GPT.

This is the optimisation loop under the chapter's first stage, supervised fine-tuning
(SFT): minimise the masked cross-entropy of demonstration tokens,

    L(theta) = - sum_{b,t} mask[b,t] log pi_theta(y[b,t+1] | y[b,:t+1]) / sum mask,

with AdamW, global-norm clipping and a warmup-then-cosine learning rate
(:mod:`rlhf_toy.optim`). The mask selects the *response* tokens: the model is trained to
answer prompts, not to predict them.

The smallest interesting data for it is the digit language of
:mod:`rlhf_toy.tasks.digits` (copy, reverse or sort digits), which a tiny GPT learns to
exact accuracy in a few seconds (the learning test and ``notebooks/06_tiny_gpt.ipynb``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from rlhf_toy.optim import AdamW, clip_grad_norm, lr_schedule

from .._validate import check_int, check_positive
from .layers import cross_entropy
from .model import check_finite_grads, check_finite_params

__all__ = [
    "TrainLog",
    "train_lm",
]

# ----------------------------------------------------------------------------- training


@dataclass
class TrainLog:
    """Per-step record of :func:`train_lm` (``steps`` entries each)."""

    loss: np.ndarray  # masked mean cross-entropy of the step's batch, before the update
    grad_norm: np.ndarray  # global gradient norm before clipping
    lr: np.ndarray  # learning rate used by the update
    optimizer: AdamW  # the optimiser, to continue training with its moments


def train_lm(
    model,
    batches: Iterable | Callable[[int], tuple],
    steps: int,
    *,
    lr: float = 1e-3,
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    max_grad_norm: float | None = 1.0,
    optimizer: AdamW | None = None,
    verbose: bool = True,
    desc: str = "train",
) -> TrainLog:
    """Train ``model`` by masked next-token cross-entropy with AdamW.

    Each step: ``logits = model.forward(tokens)``; ``loss, dlogits = cross_entropy(logits,
    targets, mask)``; ``grads = model.backward(dlogits)``; NaN/inf check; clip to
    ``max_grad_norm``; ``AdamW.step(grads, lr=lr_schedule(step, ...))``.

    Parameters
    ----------
    model : GPT
        Updated in place.
    batches : iterable of (tokens, targets, mask), or callable ``step -> batch``
        E.g. :func:`digit_batches`. ``tokens`` and ``targets`` are int ``(B, T)``,
        ``mask`` is ``(B, T)`` (or ``None`` for every position).
    steps : int
        Number of optimisation steps (>= 1).
    lr, warmup_steps, min_lr : see :func:`~rlhf_toy.optim.lr_schedule`
        Peak learning rate, linear warmup, cosine floor.
    weight_decay, betas : see :class:`~rlhf_toy.optim.AdamW`
        Used only when ``optimizer`` is None.
    max_grad_norm : float or None, default 1.0
        Global-norm clipping threshold; ``None`` disables clipping.
    optimizer : AdamW, optional
        Continue with an existing optimiser (over ``model.params``) and its moments.
    verbose : bool, default True
        Show a tqdm progress bar with the running loss (only on a terminal or notebook).
    desc : str, default "train"
        Label of the progress bar.

    Returns
    -------
    TrainLog

    Raises
    ------
    FloatingPointError
        Naming the step, as soon as a loss or gradient is NaN or infinite (the parameters
        are then left as they were before that step), or if the last update made a
        parameter NaN or infinite.
    ValueError
        On bad hyper-parameters, or if ``batches`` runs out before ``steps``.
    """
    steps = check_int(steps, "steps")
    lr = check_positive(lr, "lr")
    lr_schedule(0, lr=lr, total_steps=steps, warmup_steps=warmup_steps, min_lr=min_lr)
    if max_grad_norm is not None:
        max_grad_norm = check_positive(max_grad_norm, "max_grad_norm")
    if optimizer is None:
        optimizer = AdamW(model.params, lr=lr, betas=betas, weight_decay=weight_decay)
    elif optimizer.params is not model.params:
        raise ValueError("optimizer must have been built on this model's params")
    if callable(batches):
        get_batch = batches
    else:
        it = iter(batches)

        def get_batch(step):
            try:
                return next(it)
            except StopIteration:
                raise ValueError(f"batches ran out at step {step} of {steps}") from None

    losses = np.empty(steps)
    norms = np.full(steps, np.nan)
    lrs = np.empty(steps)
    show = verbose and (sys.stderr.isatty() or _in_notebook())
    bar = tqdm(range(steps), desc=desc, disable=not show, leave=True)
    for step in bar:
        tokens, targets, mask = get_batch(step)
        logits = model.forward(tokens)  # (B, T, V)
        if not np.all(np.isfinite(logits)):  # diverged weights (cross_entropy refuses them)
            raise FloatingPointError(f"non-finite loss at step {step}: the logits hold NaN/inf")
        loss, dlogits = cross_entropy(logits, targets, mask)
        if not np.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}: {loss}")
        grads = model.backward(dlogits)
        check_finite_grads(grads, step)
        if max_grad_norm is not None:
            norms[step] = clip_grad_norm(grads, max_grad_norm)
        lrs[step] = lr_schedule(
            step, lr=lr, total_steps=steps, warmup_steps=warmup_steps, min_lr=min_lr
        )
        optimizer.step(grads, lr=lrs[step])
        losses[step] = loss
        if show and (step % 10 == 0 or step == steps - 1):
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
    bar.close()
    check_finite_params(model.params, steps - 1)
    return TrainLog(loss=losses, grad_norm=norms, lr=lrs, optimizer=optimizer)


def _in_notebook() -> bool:
    """True inside a Jupyter kernel, whose stderr is not a terminal but shows the bar."""
    return "ipykernel" in sys.modules
