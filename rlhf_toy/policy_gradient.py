"""Policy-gradient objectives: chapter, *The RLHF Pipeline*, Stage 3 (RL Fine-Tuning with KL
Penalty), and *Modern RL for LLMs* (GRPO).

Stage 3 optimises the KL-regularised objective with PPO, tokens being the actions; GRPO drops
the critic for group-standardised advantages. This module holds the pieces of both and of
their REINFORCE-style relatives: the advantage estimators (REINFORCE with a baseline, RLOO,
GRPO and Dr. GRPO, GAE, whitening), the losses that turn advantages into gradients (the
plain policy gradient, PPO's clipped surrogate, the clipped value loss) and the KL terms of
the objective (per-token KL *in the reward*, InstructGPT; k3 *in the loss*, GRPO), with the
adaptive KL coefficient of Ziegler et al. (2019).

Like :mod:`rlhf_toy.preference_losses`, every loss is model-agnostic: it takes per-token
arrays and returns its value together with its gradient with respect to the arrays a model
produces (the policy's log-probs ``logp``, the critic's ``values``); old log-probs,
reference log-probs, advantages and returns are constants. The tabular world pushes that
gradient through an exact softmax, the GPT through its backward pass.

Shapes: per-token arrays are ``[B, T]`` (``B`` sequences, ``T`` response positions) with a
``mask`` of the same shape, 1 on response tokens and 0 on padding (right padding; a bandit
response is ``T = 1``). Values off the mask never change a result, and every per-token
output is 0 there. Group rewards are ``[n_prompts, G]`` (``G`` responses per prompt); their
advantages flatten prompt-major (``adv.reshape(-1)``) into the ``(B,)`` per-sequence
advantages the losses take, ``B = n_prompts * G``. All arithmetic is float64.

Aggregation ``agg`` of a per-token loss ``l[b, t]`` (TRL's ``loss_type``):

- ``"token_mean"``: ``sum(mask * l) / sum(mask)``, every token of the batch weighs the same
  (the default; TRL's ``dapo``, DAPO, Yu et al. 2025);
- ``"seq_mean"``: mean over each row's masked tokens, then over the ``B`` rows (GRPO's
  original, Shao et al. 2024); a row without tokens contributes 0 (its length is clamped to
  1, as TRL does);
- ``"constant"``: ``sum(mask * l) / (B * max_len)`` with ``max_len`` defaulting to ``T``
  (Dr. GRPO, Liu et al. 2025: no length normalisation).

KL conventions: for samples from the policy ``pi`` the estimators of ``KL(pi || pi_ref)``
are those of :func:`rlhf_toy.kl.kl_estimates` with ``log r = logp_ref - logp``:
``k1 = -log r``, ``k2 = (log r)^2 / 2``, ``k3 = (r - 1) - log r``.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy._validate import (
    NonFiniteInputError,
    check_finite,
    check_float,
    check_int,
    check_mask,
    check_ndim,
    check_nonempty,
    check_nonnegative,
    check_positive,
)
from rlhf_toy.kl import kl_estimates

__all__ = [
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "reinforce_advantages",
    "rloo_advantages",
    "grpo_advantages",
    "whiten",
    "gae",
    "score_at_last_token",
    "policy_gradient_loss",
    "ppo_clip_loss",
    "value_loss",
    "explained_variance",
    "kl_penalty_rewards",
    "kl_loss",
    "AdaptiveKLController",
    "FixedKLController",
]

#: The ways a per-token loss is averaged over a batch (see the module docstring).
AGGREGATIONS = ("token_mean", "seq_mean", "constant")
#: Per-sample estimators of ``KL(pi || pi_ref)``.
KL_ESTIMATORS = ("k1", "k2", "k3")
#: GRPO's advantage scalings (TRL's ``scale_rewards``).
GRPO_SCALES = ("group", "batch", "none")
#: Added to the std by :func:`whiten` (lm-human-preferences, TRL).
WHITEN_EPS = 1e-8


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------


def _check_tokens(a, name: str) -> np.ndarray:
    """A finite float64 ``[B, T]`` array."""
    return check_ndim(check_finite(a, name), name, 2, "[B, T]")


def _check_mask(mask, shape: tuple, like_name: str, name: str = "mask") -> np.ndarray:
    """A 0/1 mask of ``shape`` (that of ``like_name``) with at least one 1, as float64."""
    m = check_mask(mask, name, shape, binary=True, like_name=like_name)
    if not np.any(m):
        raise ValueError(f"{name} has no nonzero entry: there is no token to average over")
    return m


def _check_same(a: np.ndarray, like: np.ndarray, name: str, like_name: str) -> np.ndarray:
    if a.shape != like.shape:
        raise ValueError(f"{name} must have shape {like.shape} (that of {like_name}), "
                         f"got shape {a.shape}")
    return a


def _check_option(value, name: str, options: tuple) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def _check_rewards(rewards, name: str = "rewards") -> np.ndarray:
    """Finite group rewards ``[n_prompts, G]``; a 1-D array is one group."""
    r = check_finite(rewards, name)
    if r.ndim not in (1, 2) or r.shape[-1] == 0:
        raise ValueError(
            f"{name} must have shape [n_prompts, G] or [G] with G >= 1, got shape {r.shape}"
        )
    return r


def _check_group_size(r: np.ndarray, name: str = "rewards") -> None:
    if r.shape[-1] < 2:
        raise ValueError(
            f"{name} must have G >= 2 responses per prompt (last axis), got G = {r.shape[-1]}"
        )


def _token_advantages(advantages, shape: tuple) -> np.ndarray:
    """Advantages ``[B, T]``, or ``[B]`` (one per sequence) broadcast over its tokens."""
    a = check_finite(advantages, "advantages")
    if a.shape == (shape[0],):
        return np.broadcast_to(a[:, None], shape)
    if a.shape != tuple(shape):
        raise ValueError(
            f"advantages must have shape {tuple(shape)} or ({shape[0]},), got shape {a.shape}"
        )
    return a


def _agg_weights(mask: np.ndarray, agg: str, max_len) -> np.ndarray:
    """Weights ``w[b, t]`` with ``agg(l) = sum(w * l)`` (so ``d agg / d l = w``)."""
    _check_option(agg, "agg", AGGREGATIONS)
    B, T = mask.shape
    if max_len is not None:
        max_len = check_int(max_len, "max_len", minimum=1)
    if agg == "token_mean":
        return mask / mask.sum()
    if agg == "seq_mean":
        lengths = np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
        return mask / (lengths * B)
    return mask / (B * (T if max_len is None else max_len))


def _finite(name: str, inputs: str, *arrays):
    """Guard: never return NaN or inf silently; the error names the caller's ``inputs``."""
    for a in arrays:
        if not np.all(np.isfinite(a)):
            raise NonFiniteInputError(
                f"{name} overflows float64: {inputs} out of the range it can represent"
            )
    return arrays


def _power_of_two_scale(x: np.ndarray, axis=None) -> np.ndarray:
    """``s = 2**k`` with ``s <= max |x| < 2 s`` along ``axis`` (1 where all zero).

    A power of two: ``x / s`` and ``u * s`` are exact (no rounding), so statistics computed
    on ``x / s`` (entries in ``(-2, 2)``: no square can overflow) are bit for bit those of
    ``x`` wherever the latter are representable.
    """
    top = np.max(np.abs(x), axis=axis, keepdims=True) if x.size else np.zeros(())
    _, e = np.frexp(top)
    return np.where(top > 0, np.ldexp(1.0, e - 1), 1.0)


def _scaled(x: np.ndarray, axis=None) -> tuple[np.ndarray, np.ndarray]:
    """``(x / s, s)`` with :func:`_power_of_two_scale`'s ``s``."""
    s = _power_of_two_scale(x, axis)
    return x / s, s


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> float:
    return float((x * mask).sum() / mask.sum())


# --------------------------------------------------------------------------------------
# advantages from sequence-level rewards
# --------------------------------------------------------------------------------------


def reinforce_advantages(rewards, baseline=None):
    """REINFORCE advantages: the reward, optionally minus a baseline.

    Parameters
    ----------
    rewards : array_like of shape (n_prompts, G) or (G,)
        Sequence-level rewards of ``G`` responses per prompt; finite.
    baseline : None, "mean" or array_like, optional
        ``None``: no baseline, ``A = r``. ``"mean"``: the row mean, ``A = r - mean_row(r)``.
        An array (e.g. a critic's value per prompt, shape ``(n_prompts, 1)``): ``A = r - b``,
        broadcast to ``rewards``.

    Returns
    -------
    ndarray of the shape of ``rewards``

    Raises
    ------
    ValueError
        If ``rewards`` or ``baseline`` is not finite or of a bad shape, or ``baseline`` is an
        unknown string.

    Notes
    -----
    Williams (1992): ``grad J = E[(r - b) grad log pi(y)]`` for any ``b`` not depending on
    ``y``. The ``"mean"`` baseline includes the sample itself, so it *does* depend on ``y``:
    ``r_i - mean(r) = (G - 1) / G * (r_i - mean_{j != i} r_j)``, i.e. ``(G-1)/G`` times
    RLOO's advantage (:func:`rloo_advantages`). Its expected gradient is the true one scaled
    by ``(G - 1) / G``: right direction, biased scale; the advantages of a row sum to zero.

    Examples
    --------
    >>> reinforce_advantages([[1.0, 0.0, 0.0, 3.0]], baseline="mean")
    array([[ 0., -1., -1.,  2.]])
    """
    r = _check_rewards(rewards)
    if baseline is None:
        return r.copy()
    if isinstance(baseline, str):
        _check_option(baseline, "baseline", ("mean",))
        return r - r.mean(axis=-1, keepdims=True)
    b = check_finite(baseline, "baseline")
    try:
        return r - np.broadcast_to(b, r.shape)
    except ValueError:
        raise ValueError(
            f"baseline of shape {b.shape} does not broadcast to rewards' shape {r.shape}"
        ) from None


def rloo_advantages(rewards):
    """REINFORCE Leave-One-Out advantages ``r_i - mean_{j != i} r_j`` per prompt.

    Parameters
    ----------
    rewards : array_like of shape (n_prompts, G) or (G,)
        Sequence-level rewards, ``G >= 2`` responses per prompt; finite.

    Returns
    -------
    ndarray of the shape of ``rewards``

    Raises
    ------
    ValueError
        If ``G < 2`` (no other sample to form a baseline) or ``rewards`` is not finite.

    Notes
    -----
    Ahmadian et al. (2024), *Back to Basics: Revisiting REINFORCE Style Optimization for
    Learning from Human Feedback in LLMs* (after Kool et al. 2019). The baseline of sample
    ``i`` uses only the other ``G - 1`` samples, so it is independent of ``y_i`` and the
    gradient estimate is unbiased. Identity: ``A_i = G / (G - 1) * (r_i - mean(r))``; the
    advantages of a row sum to zero.

    Examples
    --------
    >>> rloo_advantages([[1.0, 0.0, 0.0, 3.0]])
    array([[ 0.        , -1.33333333, -1.33333333,  2.66666667]])
    """
    r = _check_rewards(rewards)
    _check_group_size(r)
    G = r.shape[-1]
    total = r.sum(axis=-1, keepdims=True)
    return r - (total - r) / (G - 1)


def grpo_advantages(rewards, scale="group", eps=1e-4):
    """GRPO's group-normalised advantages ``(r - mean) / (std + eps)``, per prompt.

    Parameters
    ----------
    rewards : array_like of shape (n_prompts, G) or (G,)
        Sequence-level rewards, ``G >= 2`` responses per prompt; finite.
    scale : {"group", "batch", "none"}, optional
        ``"group"``: divide by the row's std (GRPO). ``"batch"``: divide by the std of all
        rewards of the batch (TRL's ``scale_rewards="batch"``, as in REINFORCE++).
        ``"none"``: no division (Dr. GRPO). The mean subtracted is always the row's.
    eps : float, optional
        Added to the std, >= 0. Default 1e-4.

    Returns
    -------
    ndarray of the shape of ``rewards``
        A row whose rewards are all equal (zero spread) gives exactly 0, never NaN.

    Raises
    ------
    ValueError
        If ``G < 2``, ``rewards`` is not finite, ``eps < 0`` or ``scale`` is unknown.

    Notes
    -----
    DeepSeekMath (Shao et al. 2024), outcome supervision: ``A_i = (r_i - mean(r)) / std(r)``.
    Dr. GRPO (Liu et al. 2025, *Understanding R1-Zero-Like Training*) drops the std, which
    up-weights prompts that are almost always right or almost always wrong.

    Choices where the references differ: the std is the **sample** std (``ddof=1``, Bessel),
    as in TRL's ``GRPOTrainer`` and the DeepSeekMath-style reference code (``torch.std``'s
    default); ``eps = 1e-4`` as in TRL (verl uses 1e-6). Zero-spread rows are detected
    (``max == min``) and set to 0 explicitly, since ``r - mean(r)`` is not exactly 0 in
    floating point.

    Examples
    --------
    >>> grpo_advantages([[1.0, 0.0], [2.0, 2.0]], eps=0.0)
    array([[ 0.70710678, -0.70710678],
           [ 0.        ,  0.        ]])
    """
    r = _check_rewards(rewards)
    _check_group_size(r)
    _check_option(scale, "scale", GRPO_SCALES)
    eps = check_nonnegative(eps, "eps")
    flat = r.max(axis=-1, keepdims=True) == r.min(axis=-1, keepdims=True)
    # (r - mean) / (std + eps) computed on r / s, s = max |r|: exact for every finite r
    # (the ratio is scale-free once eps is scaled too), with no square that can overflow.
    u, s = _scaled(r, axis=-1 if scale == "group" else None)
    centred = u - u.mean(axis=-1, keepdims=True)
    if scale == "none":
        with np.errstate(over="ignore"):
            adv = centred * s
        _finite("grpo_advantages", "rewards", adv)
        return np.where(flat, 0.0, adv)
    if scale == "group":
        std = u.std(axis=-1, ddof=1, keepdims=True)
    else:
        std = np.full(flat.shape, u.std(ddof=1))
    with np.errstate(divide="ignore", invalid="ignore", under="ignore", over="ignore"):
        adv = centred / (std + eps / s)  # a huge eps / s is inf: then adv is 0, its limit
    return np.where(flat, 0.0, adv)


# --------------------------------------------------------------------------------------
# per-token advantages: whitening and GAE
# --------------------------------------------------------------------------------------


def whiten(x, mask=None, shift_mean=True):
    """Whiten ``x`` over the masked entries: ``(x - mean) / (std + 1e-8)``.

    Parameters
    ----------
    x : array_like of float
        Any shape (per-token advantages ``[B, T]``, rewards ``[B]``); finite.
    mask : array_like of 0/1, optional
        Same shape as ``x``; the statistics use only its entries, and the output is 0 off
        it. ``None``: every entry.
    shift_mean : bool, optional
        ``True`` (advantages): zero mean. ``False`` (rewards): the mean is added back, only
        the scale changes.

    Returns
    -------
    ndarray of the shape of ``x``

    Raises
    ------
    ValueError
        If ``x`` is not finite, or ``mask`` has the wrong shape, is not 0/1, or is all zero.

    Notes
    -----
    Whitening as in Ziegler et al. (2019) (``openai/lm-human-preferences``) and TRL's PPO
    trainer. The references differ in details: lm-human-preferences uses the population
    variance and ``rsqrt(var + 1e-8)``; TRL's ``masked_whiten`` the Bessel-corrected
    variance with the same ``rsqrt``. We keep the contract's ``std + 1e-8`` with the
    population std, so the output's std on the mask is exactly ``std / (std + 1e-8)``; the
    differences are a factor ``sqrt(n / (n - 1))`` (negligible at a batch's token count) and
    a change of the eps's place that matters only for ``std`` near 1e-4 or below.
    """
    x = check_nonempty(check_finite(x, "x"), "x")
    m = np.ones(x.shape) if mask is None else _check_mask(mask, x.shape, "x")
    n = m.sum()
    u, s = _scaled(x * m)  # on x / s the statistics cannot overflow; s cancels exactly
    mean_u = (u * m).sum() / n
    std_u = np.sqrt((((u - mean_u) * m) ** 2).sum() / n)
    with np.errstate(under="ignore"):
        out = (u - mean_u) / (std_u + WHITEN_EPS / s)
    if not shift_mean:
        with np.errstate(over="ignore"):
            out = out + mean_u * s
        _finite("whiten", "x", out)
    return out * m


def _check_contiguous(m: np.ndarray, name: str = "mask") -> None:
    """Each row's ones form one block (prompt zeros before it, padding zeros after)."""
    starts = np.diff(m, axis=1, prepend=0.0) > 0
    bad = starts.sum(axis=1) > 1
    if np.any(bad):
        raise ValueError(
            f"{name} row {int(np.argmax(bad))} has a gap: each row's response tokens must be "
            "contiguous (right padding)"
        )


def gae(rewards, values, mask, gamma=1.0, lam=0.95):
    """Generalised Advantage Estimation over each row's response tokens.

    Parameters
    ----------
    rewards : array_like of shape (B, T)
        Per-token rewards (e.g. :func:`kl_penalty_rewards` plus the reward model's score at
        the last response token); finite.
    values : array_like of shape (B, T)
        The critic's ``V_t``; finite.
    mask : array_like of shape (B, T)
        1 on response tokens, one contiguous block per row (right padding).
    gamma : float, optional
        Discount in [0, 1]. Default 1.
    lam : float, optional
        GAE's lambda in [0, 1]. Default 0.95.

    Returns
    -------
    advantages : ndarray of shape (B, T)
        ``A_t = sum_{l >= 0} (gamma lam)^l delta_{t+l}``; 0 off the mask.
    returns : ndarray of shape (B, T)
        ``A_t + V_t`` (the critic's regression target); 0 off the mask.

    Raises
    ------
    ValueError
        On a bad shape, a non-finite input, a mask that is not 0/1, is all zero or has a gap,
        or ``gamma`` / ``lam`` outside [0, 1].

    Notes
    -----
    Schulman et al. (2016), *High-Dimensional Continuous Control Using Generalized
    Advantage Estimation*; as used for language models by Ziegler et al. (2019) and
    InstructGPT (Ouyang et al. 2022): ``delta_t = r_t + gamma V_{t+1} - V_t`` with
    ``V = 0`` after the row's last response token, computed right to left as
    ``A_t = delta_t + gamma lam A_{t+1}``. ``lam = 1`` gives Monte Carlo returns
    ``sum_l gamma^l r_{t+l}``; ``lam = 0`` gives the one-step TD error. Vectorised over
    ``B``; one loop over ``T``.
    """
    r = _check_tokens(rewards, "rewards")
    v = _check_same(_check_tokens(values, "values"), r, "values", "rewards")
    m = _check_mask(mask, r.shape, "rewards")
    _check_contiguous(m)
    gamma = check_float(gamma, "gamma", low=0.0, high=1.0)
    lam = check_float(lam, "lam", low=0.0, high=1.0)
    r, v = r * m, v * m
    B, T = r.shape
    adv = np.zeros((B, T))
    next_value = np.zeros(B)
    next_adv = np.zeros(B)
    for t in range(T - 1, -1, -1):
        delta = r[:, t] + gamma * next_value - v[:, t]
        adv[:, t] = (delta + gamma * lam * next_adv) * m[:, t]
        next_value = v[:, t]  # 0 off the mask: V = 0 after the last response token
        next_adv = adv[:, t]
    return adv, (adv + v) * m


def score_at_last_token(scores, mask):
    """Per-token rewards holding each sequence's score at its last response token.

    Parameters
    ----------
    scores : array_like of shape (B,)
        Sequence-level rewards (the reward model's score); finite.
    mask : array_like of shape (B, T)
        1 on response tokens; every row needs at least one.

    Returns
    -------
    ndarray of shape (B, T)
        ``scores[b]`` at ``t = last response position of row b``, 0 elsewhere. Add
        :func:`kl_penalty_rewards` to get PPO-RLHF's per-token reward for :func:`gae`.

    Raises
    ------
    ValueError
        If ``scores`` is not finite or of shape ``(B,)``, or ``mask`` is bad or has an empty
        row (a sequence without a token cannot carry a score).

    Notes
    -----
    InstructGPT (Ouyang et al. 2022), Ziegler et al. (2019): the score is read at the last
    token of the response, never at a padding position after it. How a response that never
    emitted EOS is scored is the caller's choice, not this function's.

    Examples
    --------
    >>> score_at_last_token([2.0, -1.0], [[1, 1, 0], [1, 1, 1]])
    array([[ 0.,  2.,  0.],
           [ 0.,  0., -1.]])
    """
    s = check_finite(scores, "scores")
    m = _check_mask(mask, np.shape(mask), "mask")
    if m.ndim != 2 or s.shape != (m.shape[0],):
        raise ValueError(
            f"scores must have shape (B,) and mask (B, T), got {s.shape} and {m.shape}"
        )
    empty = m.sum(axis=1) == 0
    if np.any(empty):
        raise ValueError(f"mask row {int(np.argmax(empty))} has no response token to score")
    last = m.shape[1] - 1 - np.argmax(m[:, ::-1], axis=1)  # (B,)
    out = np.zeros(m.shape)
    out[np.arange(m.shape[0]), last] = s
    return out


# --------------------------------------------------------------------------------------
# policy losses
# --------------------------------------------------------------------------------------


def policy_gradient_loss(logp, advantages, mask, agg="token_mean", max_len=None):
    """The REINFORCE / RLOO surrogate ``-agg(A * logp)`` and its gradient.

    Parameters
    ----------
    logp : array_like of shape (B, T)
        Per-token log-probs of the sampled tokens under the policy; finite.
    advantages : array_like of shape (B, T) or (B,)
        Constants; a ``(B,)`` array is a sequence-level advantage given to all its tokens.
    mask : array_like of shape (B, T)
        1 on response tokens.
    agg : {"token_mean", "seq_mean", "constant"}, optional
        How tokens are averaged (module docstring).
    max_len : int, optional
        ``agg="constant"``'s normaliser; default ``T``.

    Returns
    -------
    loss : float
    dlogp : ndarray of shape (B, T)
        ``d loss / d logp = -w * A`` with ``w`` the aggregation weights; 0 off the mask.

    Raises
    ------
    ValueError
        On bad shapes, non-finite inputs, a bad mask or an unknown ``agg``.

    Notes
    -----
    Williams (1992); RLOO (Ahmadian et al. 2024) uses it with :func:`rloo_advantages` and no
    importance ratio. Its gradient is the sampled policy gradient ``-E[A grad log pi]``;
    :func:`ppo_clip_loss` has the same gradient at ``logp == logp_old``.
    """
    lp = _check_tokens(logp, "logp")
    m = _check_mask(mask, lp.shape, "logp")
    a = _token_advantages(advantages, lp.shape)
    w = _agg_weights(m, agg, max_len)
    a = a * m
    loss = -float((w * a * lp * m).sum())
    dlogp = -w * a
    _finite("policy_gradient_loss", "logp or advantages", loss, dlogp)
    return loss, dlogp


def ppo_clip_loss(
    logp,
    logp_old,
    advantages,
    mask,
    clip_eps=0.2,
    clip_eps_high=None,
    agg="token_mean",
    max_len=None,
):
    """PPO's clipped surrogate per token, aggregated, with its gradient and diagnostics.

    Parameters
    ----------
    logp : array_like of shape (B, T)
        Per-token log-probs under the policy being updated; finite.
    logp_old : array_like of shape (B, T)
        The same under the policy that sampled the tokens (constants); finite.
    advantages : array_like of shape (B, T) or (B,)
        Constants; ``(B,)`` is one advantage per sequence (GRPO, RLOO) given to its tokens.
    mask : array_like of shape (B, T)
        1 on response tokens.
    clip_eps : float, optional
        Lower clip ``eps_low`` (and upper one unless ``clip_eps_high`` is given), > 0.
    clip_eps_high : float, optional
        Upper clip ``eps_high`` (DAPO's clip-higher, e.g. 0.28), > 0. Default ``clip_eps``.
    agg : {"token_mean", "seq_mean", "constant"}, optional
        How tokens are averaged (module docstring).
    max_len : int, optional
        ``agg="constant"``'s normaliser; default ``T``.

    Returns
    -------
    loss : float
        ``-agg(min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A))``,
        ``rho = exp(logp - logp_old)``.
    dlogp : ndarray of shape (B, T)
        ``-w rho A`` where the unclipped branch is the minimum, exactly 0 where the clip is
        active (``A > 0, rho > 1 + eps_high`` or ``A < 0, rho < 1 - eps_low``) and off the
        mask.
    stats : dict of float
        Means over the masked tokens: ``"clipfrac"`` (fraction where the clip is active, the
        gradient zeroed), ``"approx_kl"`` (``0.5 mean((logp - logp_old)^2)``, the k2
        estimate of ``KL(pi_old || pi)``, as in lm-human-preferences and ``openai/baselines``
        PPO2; cleanrl's ``ppo.py`` logs k3 instead),
        ``"ratio_mean"`` (mean ``rho``).

    Raises
    ------
    ValueError
        On bad shapes, non-finite inputs, a bad mask, non-positive clips or an unknown
        ``agg``.
    FloatingPointError
        If ``rho`` overflows where the clip does not bound it.

    Notes
    -----
    Schulman et al. (2017), *Proximal Policy Optimization Algorithms*, eq. (7), per token
    as in Ziegler et al. (2019) and InstructGPT (Ouyang et al. 2022); GRPO (Shao et al.
    2024) uses the same surrogate with group advantages; the asymmetric clip is DAPO's (Yu
    et al. 2025). At the clip boundary (``rho = 1 +- eps``) both branches agree and the
    unclipped gradient is returned. ``clipfrac`` counts the tokens whose gradient the clip
    removes (TRL's ``pg_clipfrac``); ``openai/baselines`` counts ``|rho - 1| > eps`` whatever
    the sign of ``A``, which is larger.
    """
    lp = _check_tokens(logp, "logp")
    lp_old = _check_same(_check_tokens(logp_old, "logp_old"), lp, "logp_old", "logp")
    m = _check_mask(mask, lp.shape, "logp")
    a = _token_advantages(advantages, lp.shape)
    eps_low = check_positive(clip_eps, "clip_eps")
    eps_high = eps_low if clip_eps_high is None else check_positive(clip_eps_high, "clip_eps_high")
    w = _agg_weights(m, agg, max_len)
    a = a * m
    with np.errstate(over="ignore", invalid="ignore"):  # refused by _finite below
        log_ratio = np.where(m > 0, lp - lp_old, 0.0)
        rho = np.exp(log_ratio)
        clipped = ((a > 0) & (rho > 1 + eps_high)) | ((a < 0) & (rho < 1 - eps_low))
        surrogate = np.where(clipped, np.clip(rho, 1 - eps_low, 1 + eps_high) * a, rho * a)
        loss = -float((w * surrogate).sum())
        dlogp = np.where(clipped, 0.0, -w * rho * a)
        stats = {
            "clipfrac": _masked_mean(clipped, m),
            "approx_kl": 0.5 * _masked_mean(log_ratio**2, m),
            "ratio_mean": _masked_mean(rho, m),
        }
    _finite("ppo_clip_loss", "logp, logp_old or advantages", loss, dlogp, *stats.values())
    return loss, dlogp, stats


def value_loss(values, values_old, returns, mask, clip_range=0.2, agg="token_mean", max_len=None):
    """The critic's clipped squared error, with its gradient wrt ``values``.

    Parameters
    ----------
    values : array_like of shape (B, T)
        The critic's current predictions ``V``; finite.
    values_old : array_like of shape (B, T)
        Its predictions when the rollout was made (constants).
    returns : array_like of shape (B, T)
        Regression targets ``R`` (from :func:`gae`; constants).
    mask : array_like of shape (B, T)
        1 on response tokens.
    clip_range : float or None, optional
        ``c`` > 0, default 0.2; ``None``: unclipped ``0.5 agg((V - R)^2)``.
    agg : {"token_mean", "seq_mean", "constant"}, optional
        How tokens are averaged (module docstring).
    max_len : int, optional
        ``agg="constant"``'s normaliser; default ``T``.

    Returns
    -------
    loss : float
        ``0.5 agg(max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2))``.
    dvalues : ndarray of shape (B, T)
        ``w (V - R)`` where the unclipped term is the maximum, 0 where the clipped term is
        strictly larger (``V`` is then outside ``V_old +- c``) and off the mask.
    stats : dict of float
        ``"vf_clipfrac"``: fraction of masked tokens where the clipped term is strictly
        larger (TRL's definition).

    Raises
    ------
    ValueError
        On bad shapes, non-finite inputs, a bad mask, ``clip_range <= 0`` or an unknown
        ``agg``.

    Notes
    -----
    Value clipping as in ``openai/baselines`` PPO2, lm-human-preferences (Ziegler et al.
    2019, ``cliprange_value = 0.2``, value coefficient 0.1 applied by the caller) and TRL.
    """
    v = _check_tokens(values, "values")
    v_old = _check_same(check_finite(values_old, "values_old"), v, "values_old", "values")
    ret = _check_same(check_finite(returns, "returns"), v, "returns", "values")
    m = _check_mask(mask, v.shape, "values")
    c = None if clip_range is None else check_positive(clip_range, "clip_range")
    w = _agg_weights(m, agg, max_len)
    with np.errstate(over="ignore", invalid="ignore"):  # refused by _finite below
        err = (v - ret) * m
        sq = err**2
        if c is None:
            clipped = np.zeros(v.shape, dtype=bool)
            per_token = sq
        else:
            v_clip = v_old + np.clip(v - v_old, -c, c)
            sq_clip = ((v_clip - ret) * m) ** 2
            clipped = sq_clip > sq
            per_token = np.maximum(sq, sq_clip)
        loss = 0.5 * float((w * per_token).sum())
        dvalues = np.where(clipped, 0.0, w * err)
    _finite("value_loss", "values, values_old or returns", loss, dvalues)
    return loss, dvalues, {"vf_clipfrac": _masked_mean(clipped, m)}


def explained_variance(values, returns, mask=None):
    """``1 - Var(R - V) / Var(R)`` over the masked entries: how much of R the critic explains.

    Parameters
    ----------
    values, returns : array_like of the same shape
        Predictions ``V`` and targets ``R``; finite.
    mask : array_like of 0/1, optional
        Same shape; ``None``: every entry.

    Returns
    -------
    float
        1 for a perfect critic, 0 for one predicting a constant, negative for one worse than
        a constant. When ``Var(R) = 0`` (nothing to explain) it is defined as 0, never NaN.

    Raises
    ------
    ValueError
        On different shapes, non-finite inputs or a bad mask.

    Notes
    -----
    cleanrl's and TRL's PPO diagnostic (the ratio does not depend on ``ddof``). cleanrl
    returns NaN for ``Var(R) = 0``; we return 0 so that logs stay finite.
    """
    v = check_nonempty(check_finite(values, "values"), "values")
    ret = check_finite(returns, "returns")
    if v.shape != ret.shape:
        raise ValueError(
            f"values and returns must have the same shape, got {v.shape} and {ret.shape}"
        )
    m = np.ones(v.shape) if mask is None else _check_mask(mask, v.shape, "values")
    # the ratio is scale-free: compute it on (V, R) / s so that no square overflows
    s = _power_of_two_scale(np.r_[(v * m).ravel(), (ret * m).ravel()])
    v, ret = v / s, ret / s

    def var(x):
        mean = _masked_mean(x, m)
        return _masked_mean((x - mean) ** 2, m)

    var_r = var(ret)
    if var_r == 0.0:
        return 0.0
    return 1.0 - var(ret - v) / var_r


# --------------------------------------------------------------------------------------
# KL penalties
# --------------------------------------------------------------------------------------


def _check_kl_inputs(logp, logp_ref, mask, estimator):
    lp = _check_tokens(logp, "logp")
    lp_ref = _check_same(_check_tokens(logp_ref, "logp_ref"), lp, "logp_ref", "logp")
    m = _check_mask(mask, lp.shape, "logp")
    _check_option(estimator, "estimator", KL_ESTIMATORS)
    # off the mask both are set to 0 so that arbitrary padding values cannot overflow
    lp, lp_ref = np.where(m > 0, lp, 0.0), np.where(m > 0, lp_ref, 0.0)
    return lp, lp_ref, m


def kl_penalty_rewards(logp, logp_ref, mask, beta, estimator="k1"):
    """Per-token KL penalty rewards ``-beta * k`` (the KL *in the reward*, InstructGPT).

    Parameters
    ----------
    logp : array_like of shape (B, T)
        Per-token log-probs of the sampled tokens under the policy ``pi`` (the sampler).
    logp_ref : array_like of shape (B, T)
        The same tokens under the reference ``pi_ref``; finite.
    mask : array_like of shape (B, T)
        1 on response tokens.
    beta : float
        KL coefficient, >= 0.
    estimator : {"k1", "k2", "k3"}, optional
        Per-sample estimator of ``KL(pi || pi_ref)``; default ``"k1"``.

    Returns
    -------
    ndarray of shape (B, T)
        ``-beta * k(logp, logp_ref)``, 0 off the mask. Add the reward model's score at each
        row's last response token and feed :func:`gae` (PPO) or sum per row (RLOO).

    Raises
    ------
    ValueError
        On bad shapes, non-finite inputs, a bad mask, ``beta < 0`` or an unknown estimator.

    Notes
    -----
    InstructGPT (Ouyang et al. 2022) and Ziegler et al. (2019):
    ``r_t = -beta (log pi - log pi_ref)`` (k1), a *reward*, hence a constant for the policy
    gradient (treat it as data). With ``log r = logp_ref - logp``: ``k1 = -log r``,
    ``k2 = (log r)^2 / 2``, ``k3 = (r - 1) - log r`` (:func:`rlhf_toy.kl.kl_estimates`).
    Summed over a sequence, k1 is an unbiased estimate of the sequence-level
    ``KL(pi || pi_ref)`` and, as a reward, yields its exact gradient in expectation
    (:func:`rlhf_toy.bandit.experiments.kl_study.kl_gradients`).
    """
    lp, lp_ref, m = _check_kl_inputs(logp, logp_ref, mask, estimator)
    beta = check_nonnegative(beta, "beta")
    k = kl_estimates(lp, lp_ref)[estimator]
    out = -beta * k * m
    _finite("kl_penalty_rewards", "logp, logp_ref or beta", out)
    return out


def kl_loss(logp, logp_ref, mask, estimator="k3", agg="token_mean", max_len=None):
    """A KL estimator used directly as a loss term, ``agg(k)``, with its gradient wrt ``logp``.

    Parameters
    ----------
    logp : array_like of shape (B, T)
        Per-token log-probs of tokens sampled from the policy ``pi``; finite.
    logp_ref : array_like of shape (B, T)
        The same under ``pi_ref`` (constants); finite.
    mask : array_like of shape (B, T)
        1 on response tokens.
    estimator : {"k1", "k2", "k3"}, optional
        Default ``"k3"`` (GRPO).
    agg : {"token_mean", "seq_mean", "constant"}, optional
        How tokens are averaged (module docstring).
    max_len : int, optional
        ``agg="constant"``'s normaliser; default ``T``.

    Returns
    -------
    loss : float
        ``agg(k)``; the caller multiplies by ``beta`` (GRPO: ``loss = ppo + beta * kl``).
    dlogp : ndarray of shape (B, T)
        ``w * dk/dlogp`` with ``dk1/dlogp = 1``, ``dk2/dlogp = -log r = logp - logp_ref``,
        ``dk3/dlogp = 1 - r``; 0 off the mask.

    Raises
    ------
    ValueError
        On bad shapes, non-finite inputs, a bad mask or an unknown ``estimator`` / ``agg``.

    Notes
    -----
    DeepSeekMath (Shao et al. 2024) adds ``beta * k3`` per token. Differentiating the
    estimator (the sampling distribution held fixed) is not the gradient of the KL it
    estimates. In expectation over ``y ~ pi``: **k3** follows the gradient of the
    **forward** ``KL(pi_ref || pi)``; **k2** that of the reverse ``KL(pi || pi_ref)``
    (the objective's); **k1** has zero expected gradient. Derived and shown exactly on a
    table by :func:`rlhf_toy.bandit.experiments.kl_study.kl_gradients`.
    """
    lp, lp_ref, m = _check_kl_inputs(logp, logp_ref, mask, estimator)
    w = _agg_weights(m, agg, max_len)
    k = kl_estimates(lp, lp_ref)[estimator]
    log_r = lp_ref - lp
    if estimator == "k1":
        dk = np.ones_like(lp)
    elif estimator == "k2":
        dk = -log_r
    else:
        with np.errstate(over="ignore"):
            dk = -np.expm1(log_r)
    loss = float((w * k).sum())
    dlogp = w * dk
    _finite("kl_loss", "logp or logp_ref", loss, dlogp)
    return loss, dlogp


# --------------------------------------------------------------------------------------
# KL coefficient controllers
# --------------------------------------------------------------------------------------


class AdaptiveKLController:
    """The adaptive KL coefficient of Ziegler et al. (2019).

    Parameters
    ----------
    init_kl_coef : float
        Initial ``beta``, > 0.
    target : float
        Target KL per episode (nats), > 0 (6 in the original).
    horizon : float
        Steps over which the error is corrected, > 0 (10,000 in the original).

    Attributes
    ----------
    value : float
        The current coefficient ``beta``.

    Notes
    -----
    Ziegler et al. (2019), *Fine-Tuning Language Models from Human Preferences*, eq. (2):
    ``e = clip(KL / target - 1, -0.2, 0.2)``, ``beta <- beta (1 + e n_steps / horizon)``,
    ``n_steps`` the number of episodes in the update (same rule in lm-human-preferences,
    TRL and verl). ``KL`` is the batch mean of the per-sequence ``KL(pi || pi_ref)``.

    Examples
    --------
    >>> ctl = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    >>> round(ctl.update(12.0, n_steps=512), 6)  # error clipped to +0.2
    0.101024
    """

    def __init__(self, init_kl_coef, target, horizon):
        self.value = check_positive(init_kl_coef, "init_kl_coef")
        self.target = check_positive(target, "target")
        self.horizon = check_positive(horizon, "horizon")

    def update(self, current_kl, n_steps) -> float:
        """Move ``value`` towards the target KL; return the new value.

        Raises
        ------
        ValueError
            If ``current_kl`` is not finite, ``n_steps`` is not a non-negative integer, or
            the step would make the coefficient non-positive (``n_steps > 5 horizon``).
        """
        kl = float(check_finite(current_kl, "current_kl"))
        n_steps = check_int(n_steps, "n_steps", minimum=0)
        error = float(np.clip(kl / self.target - 1.0, -0.2, 0.2))
        factor = 1.0 + error * n_steps / self.horizon
        if factor <= 0:
            raise ValueError(
                f"n_steps = {n_steps} is too large for horizon = {self.horizon:g}: the "
                "coefficient would become non-positive"
            )
        self.value *= factor
        return self.value

    def __repr__(self) -> str:
        return (
            f"AdaptiveKLController(value={self.value:g}, target={self.target:g}, "
            f"horizon={self.horizon:g})"
        )


class FixedKLController:
    """A constant KL coefficient with :class:`AdaptiveKLController`'s interface.

    Parameters
    ----------
    kl_coef : float
        ``beta``, >= 0.

    Examples
    --------
    >>> ctl = FixedKLController(0.05)
    >>> ctl.update(100.0, n_steps=64)
    0.05
    """

    def __init__(self, kl_coef):
        self.value = check_nonnegative(kl_coef, "kl_coef")

    def update(self, current_kl, n_steps) -> float:
        """Validate the arguments like the adaptive controller; the value never changes."""
        check_finite(current_kl, "current_kl")
        check_int(n_steps, "n_steps", minimum=0)
        return self.value

    def __repr__(self) -> str:
        return f"FixedKLController(value={self.value:g})"
