"""Rollouts shared by every sampled RL step (chapter, Stage 3: sample, score, update).

One on-policy step starts the same way in every algorithm: draw ``G`` responses per
prompt from the current policy, score them with the reward function, and keep the
sampling and reference log-probabilities as constants for the update. This module does
that once, and holds the two checks every step ends with (finite gradients, then the
optimiser step).
"""

from __future__ import annotations

import numpy as np

from rlhf_toy._validate import (
    MAX_SAMPLES,
    ArgumentTypeError,
    NonFiniteInputError,
    as_real_array,
    as_rng,
    check_int,
    check_mask,
    check_ndim,
    check_positive,
)
from rlhf_toy.optim import clip_grad_norm
from rlhf_toy.rl.protocol import Rollout

__all__ = ["apply_gradients", "collect_rollout", "sequence_sum"]


def sequence_sum(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``sum_t mask * x`` per row: a per-token array ``[B, T]`` summed to ``[B]``.

    Parameters
    ----------
    x : ndarray of shape (B, T)
        Per-token values (float, any precision: the sum keeps ``x``'s dtype); finite
        where ``mask == 1``, ignored (even if not finite) where ``mask == 0``.
    mask : ndarray of shape (B, T)
        1 on the response tokens, 0 on padding (booleans accepted).

    Returns
    -------
    ndarray of shape (B,)

    Raises
    ------
    ValueError
        If the shapes differ or are not 2-D, ``mask`` holds other values than 0 and 1,
        or ``x`` is not finite on the mask.
    TypeError
        If ``x`` or ``mask`` is not real numeric data (``x`` boolean included).

    Notes
    -----
    The checks are ``O(B T)`` elementwise passes, cheap beside the forward pass that
    produced ``x``; the RL steps call this once per step.
    """
    mask = check_mask(mask, "mask", binary=True)
    check_ndim(mask, "mask", 2, "(B, T)")
    arr = as_real_array(x, "x", keep_float=True)  # the sum keeps x's precision
    if arr.shape != mask.shape:
        raise ValueError(f"x must have the shape of mask {mask.shape}, got {arr.shape}")
    on = mask > 0
    if not np.all(np.isfinite(arr[on])):
        bad = tuple(int(i) for i in np.argwhere(on & ~np.isfinite(arr))[0])
        raise ValueError(f"x must be finite on the mask, got {arr[bad]} at index {bad}")
    return np.sum(np.where(on, arr, 0), axis=1)


def collect_rollout(policy, ref, prompts, reward_fn, group_size: int, rng,
                    *, where: str = "rollout") -> Rollout:
    """Sample ``group_size`` responses per prompt, score them, record old and reference logps.

    Parameters
    ----------
    policy : Policy
        The current policy (:class:`rlhf_toy.rl.protocol.Policy`).
    ref : ReferencePolicy
        The frozen reference (only ``logprobs`` is called).
    prompts : object
        ``n_prompts`` prompts (int array on the bandit; token array on the GPT).
    reward_fn : callable
        ``reward_fn(prompts_rep, responses, mask) -> [B]``.
    group_size : int
        ``G >= 1``.
    rng : numpy Generator or int
    where : str
        Name of the calling step, used in error messages.

    Returns
    -------
    Rollout

    Raises
    ------
    ValueError
        If ``prompts`` is empty, ``group_size * len(prompts)`` exceeds
        :data:`rlhf_toy._validate.MAX_SAMPLES`, ``reward_fn`` returns the wrong shape, or a
        sampled response is empty.
    TypeError
        If ``prompts`` is not a sequence, or ``group_size`` not an integer.
    FloatingPointError
        If a reward or a log-probability is not finite.
    """
    if prompts is None or isinstance(prompts, (str, bytes)) or not hasattr(prompts, "__len__"):
        raise ArgumentTypeError(f"prompts must be an array of prompts, got {prompts!r:.40}")
    n_prompts = len(prompts)
    if n_prompts == 0:
        raise ValueError("prompts must hold at least one prompt, got none")
    group_size = check_int(group_size, "group_size", maximum=MAX_SAMPLES // n_prompts or 1)
    rng = as_rng(rng)
    responses, mask = policy.sample(prompts, group_size, rng)  # (B, T), B = n_prompts * G
    prompts_rep = np.repeat(prompts, group_size, axis=0)  # one row per response
    logp = policy.logprobs(prompts_rep, responses, mask)  # (B, T): log pi_old
    logp_ref = ref.logprobs(prompts_rep, responses, mask)  # (B, T)
    empty = np.flatnonzero(np.asarray(mask).sum(axis=1) == 0)
    if empty.size:
        raise ValueError(f"{where}: response {int(empty[0])} has no token on the mask "
                         "(every response has at least one token, EOS included)")
    scores = np.asarray(reward_fn(prompts_rep, responses, mask), dtype=np.float64)
    if scores.shape != (responses.shape[0],):
        raise ValueError(f"reward_fn must return shape ({responses.shape[0]},), "
                         f"got {scores.shape}")
    for name, a in (("reward", scores), ("policy log-prob", logp), ("reference log-prob",
                                                                     logp_ref)):
        if not np.all(np.isfinite(a)):
            raise FloatingPointError(f"{where}: non-finite {name} in the rollout")
    return Rollout(prompts=prompts_rep, responses=responses, mask=mask, logp=logp,
                   logp_ref=logp_ref, scores=scores, n_prompts=n_prompts,
                   group_size=group_size)


def apply_gradients(optimiser, grads: dict[str, np.ndarray], max_grad_norm: float | None,
                    where: str) -> float:
    """Check ``grads`` are finite, clip them to ``max_grad_norm`` (if set), step the optimiser.

    Parameters
    ----------
    optimiser : AdamW
        Stepped with ``grads`` (see :mod:`rlhf_toy.optim`).
    grads : dict of str to ndarray
        Modified in place when clipped.
    max_grad_norm : float or None
        Global-norm clip; ``None`` for none.
    where : str
        Names the step in the error message.

    Returns
    -------
    float
        The global gradient norm before clipping (``grad_norm``).

    Raises
    ------
    FloatingPointError
        If a gradient is NaN or infinite (the message names ``where`` and the entry of
        ``grads``); it is a :class:`rlhf_toy._validate.NonFiniteInputError`, a
        ``ValueError`` too.
    TypeError
        If ``grads`` is not a dict of real arrays.
    ValueError
        If ``max_grad_norm`` is not ``> 0`` and finite.

    Notes
    -----
    The checks are those of :func:`rlhf_toy.optim.clip_grad_norm` (a dtype test, then the
    norm it needs anyway), cheap beside the backward pass that produced the gradients.
    """
    if max_grad_norm is None:
        limit = float(np.finfo(np.float64).max)  # no clip: the norm only
    else:
        limit = check_positive(max_grad_norm, "max_grad_norm")
    try:
        norm = clip_grad_norm(grads, limit)  # validates grads; overflow-free norm
    except FloatingPointError as err:
        raise NonFiniteInputError(f"{where}: non-finite gradient ({err})") from None
    optimiser.step(grads)
    return norm
