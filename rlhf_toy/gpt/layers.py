"""The layers of GPT-2 as forward/backward pairs (the sequence world of the chapter).

Every layer comes as ``<name>_forward(...) -> (out, cache)`` and
``<name>_backward(dout, cache) -> grads``, in the style of karpathy/llm.c. The cache holds
only what the backward pass needs, and each forward says what that is. Dimension letters:
``B`` batch, ``T`` time, ``C`` channels, ``V`` vocabulary, ``NH`` heads, ``hs = C // NH``
head size; every tensor line carries its shape.

Reference semantics (exactly GPT-2's):

- token + learned position embedding: ``x[b, t] = wte[tokens[b, t]] + wpe[t]``;
- LayerNorm with biased variance and ``eps = 1e-5``:
  ``(x - mean) / sqrt(var + 1e-5) * weight + bias`` over the last axis;
- linear layers store the weight as ``[in, out]`` (GPT-2's ``Conv1D``): ``x @ w + b``;
- causal self-attention, scores scaled by ``1 / sqrt(hs)``, softmax over keys ``<= t``;
- GELU, tanh approximation: ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``;
- pre-LN blocks: ``x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))``; no dropout anywhere.

Everything runs in the dtype of the inputs (float32 by default, float64 for gradient
checks): constants are Python floats, which never upcast a float32 array.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from .._validate import ArgumentTypeError, as_real_array, check_int, check_mask

#: LayerNorm epsilon of GPT-2 (``layer_norm_epsilon`` in its config).
LN_EPS = 1e-5
#: ``sqrt(2 / pi)``, the GELU tanh-approximation constant, as a Python float (no upcast).
GELU_SCALE = math.sqrt(2.0 / math.pi)
#: Cubic coefficient of the GELU tanh approximation.
GELU_CUBIC = 0.044715

__all__ = [
    "BLOCK_PARAMS",
    "AttentionCache",
    "BlockCache",
    "LayerKV",
    "LN_EPS",
    "SHIFT_LIMIT",
    "attention_backward",
    "attention_forward",
    "block_backward",
    "block_forward",
    "block_param_spec",
    "causal_bias",
    "causal_softmax",
    "cross_entropy",
    "encoder_backward",
    "encoder_forward",
    "gelu_backward",
    "gelu_forward",
    "layernorm_backward",
    "layernorm_forward",
    "log_softmax",
    "matmul_backward",
    "matmul_forward",
    "softmax",
]


# ---------------------------------------------------------------- reductions


@functools.lru_cache(maxsize=64)
def _constant_vector(n, value, dtype):
    """A cached read-only vector of ``n`` entries equal to ``value`` (made once, not per call)."""
    vec = np.full(n, value, dtype=dtype)  # (n,)
    vec.flags.writeable = False
    return vec


def _blas_flags():
    """Ignore the "invalid" floating-point flag around a BLAS matrix-vector product.

    OpenBLAS's small ``gemv`` kernels can leave ``FE_INVALID`` set on finite input (seen as
    a rare "invalid value encountered in matmul" RuntimeWarning; numpy/numpy#24067 is one such
    case). The products here are sums and means: a NaN or inf input still gives a NaN or inf
    result, which the model's checks catch; only the spurious warning is dropped.
    """
    return np.errstate(invalid="ignore")


def _mean_last(x):
    """Mean over the last axis, keepdims, as one matrix-vector product.

    Same value as ``x.mean(axis=-1, keepdims=True)``; BLAS makes it several times faster
    for the short rows of this model (numpy's reduction has a per-row overhead). The
    array is seen as one 2-D matrix first: a stacked ``(B, T, C) @ (C,)`` would cost one
    BLAS call per batch row.
    """
    C = x.shape[-1]
    vec = _constant_vector(C, 1.0 / C, x.dtype)  # (C,)
    with _blas_flags():
        if x.ndim == 2:  # the block's rows: no reshape needed
            return (x @ vec)[:, None]  # (N, C) @ (C,) -> (N, 1)
        return (x.reshape(-1, C) @ vec).reshape(*x.shape[:-1], 1)  # (N, C) @ (C,) -> (..., 1)


def _sum_last(x):
    """Sum over the last axis, keepdims, as one matrix-vector product (see ``_mean_last``)."""
    C = x.shape[-1]
    ones = _constant_vector(C, 1.0, x.dtype)  # (C,)
    with _blas_flags():
        if x.ndim == 2:
            return (x @ ones)[:, None]  # (N, C) @ (C,) -> (N, 1)
        return (x.reshape(-1, C) @ ones).reshape(*x.shape[:-1], 1)  # (N, C) @ (C,) -> (..., 1)


def _sum_rows(x):
    """Sum of the rows of a matrix, ``x.sum(axis=0)``, as a vector-matrix product.

    The bias and LayerNorm gradients: BLAS is 2-4x faster than numpy's reduction here.
    """
    ones = np.ones(x.shape[0], dtype=x.dtype)  # (N,), not cached: N = B * T varies
    with _blas_flags():
        return ones @ x  # (N,) @ (N, C) -> (C,)


# ----------------------------------------------------------------------------- encoder


def encoder_forward(tokens, wte, wpe, t0=0):
    """Token plus position embedding, ``x[b, t] = wte[tokens[b, t]] + wpe[t0 + t]``.

    Parameters
    ----------
    tokens : ndarray of int, shape (B, T)
    wte : ndarray of shape (V, C)
    wpe : ndarray of shape (n_ctx, C), with ``n_ctx >= t0 + T``
    t0 : int, default 0
        Position of the first token (the length of a shared prefix computed apart).

    Returns
    -------
    out : ndarray of shape (B, T, C)
    cache : tuple ``(tokens, V, n_ctx, t0)``; the gradient only needs the indices.
    """
    T = tokens.shape[1]
    out = wte[tokens] + wpe[t0 : t0 + T]  # (B, T, C) + (T, C) -> (B, T, C)
    return out, (tokens, wte.shape[0], wpe.shape[0], t0)


def encoder_backward(dout, cache):
    """Gradients of :func:`encoder_forward`: scatter-add into the used rows.

    Parameters
    ----------
    dout : ndarray of shape (B, T, C)
        Gradient of the loss with respect to the embeddings.
    cache : tuple
        ``(tokens, V, n_ctx, t0)`` from :func:`encoder_forward`.

    Returns
    -------
    dwte : ndarray of shape (V, C)
    dwpe : ndarray of shape (n_ctx, C); rows outside ``[t0, t0 + T)`` are zero.
    """
    tokens, V, n_ctx, t0 = cache
    B, T, C = dout.shape
    # scatter-add of rows, dwte[tokens[b, t]] += dout[b, t] (np.add.at, but ~5x faster):
    # sort the positions by token, then sum each token's run of rows
    flat = tokens.reshape(-1)  # (BT,)
    order = np.argsort(flat, kind="stable")  # (BT,)
    sorted_tokens = flat[order]  # (BT,)
    starts = np.flatnonzero(np.r_[True, sorted_tokens[1:] != sorted_tokens[:-1]])  # (U,)
    dwte = np.zeros((V, C), dtype=dout.dtype)  # (V, C)
    dwte[sorted_tokens[starts]] = np.add.reduceat(dout.reshape(B * T, C)[order], starts, axis=0)
    dwpe = np.zeros((n_ctx, C), dtype=dout.dtype)  # (n_ctx, C)
    dwpe[t0 : t0 + T] = dout.sum(axis=0)  # (B, T, C) -> (T, C)
    return dwte, dwpe


# --------------------------------------------------------------------------- layernorm


def layernorm_forward(x, w, b):
    """LayerNorm over the last axis, biased variance, ``eps = 1e-5``.

    ``out = (x - mean) / sqrt(var + 1e-5) * w + b``, with ``var = mean((x - mean)^2)``.

    Parameters
    ----------
    x : ndarray of shape (..., C)
    w, b : ndarray of shape (C,)

    Returns
    -------
    out : ndarray of shape (..., C)
    cache : tuple ``(xhat, rstd, w)``: the normalised input, ``1 / sqrt(var + eps)``
        of shape (..., 1), and the weight. (llm.c keeps ``x, mean, rstd``; ``xhat`` saves
        recomputing it.)
    """
    xhat = x - _mean_last(x)  # (..., C), centred
    var = _mean_last(xhat * xhat)  # (..., 1), biased variance
    rstd = 1.0 / np.sqrt(var + LN_EPS)  # (..., 1)
    xhat *= rstd  # (..., C), normalised
    out = xhat * w  # (..., C)
    out += b
    return out, (xhat, rstd, w)


def layernorm_backward(dout, cache):
    """Gradients of :func:`layernorm_forward`.

    With ``g = dout * w``: ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))``.

    Parameters
    ----------
    dout : ndarray of shape (..., C)
    cache : tuple
        ``(xhat, rstd, w)`` from :func:`layernorm_forward`.

    Returns
    -------
    dx : ndarray of shape (..., C)
    dw, db : ndarray of shape (C,)
    """
    xhat, rstd, w = cache
    C = dout.shape[-1]
    gx = dout * xhat  # (..., C)
    dw = _sum_rows(gx.reshape(-1, C))  # (..., C) -> (C,)
    db = _sum_rows(dout.reshape(-1, C))  # (..., C) -> (C,)
    gx *= w  # (..., C), g * xhat
    dx = dout * w  # (..., C), g
    dx -= _mean_last(dx)  # (..., C), g - mean(g)
    dx -= np.multiply(xhat, _mean_last(gx), out=gx)  # (..., C), - xhat * mean(g * xhat)
    dx *= rstd  # (..., C)
    return dx, dw, db


# ------------------------------------------------------------------------------ matmul


def matmul_forward(x, w, b):
    """Affine map with GPT-2's ``Conv1D`` layout, ``out = x @ w + b``.

    Parameters
    ----------
    x : ndarray of shape (..., IC)
    w : ndarray of shape (IC, OC)
    b : ndarray of shape (OC,)

    Returns
    -------
    out : ndarray of shape (..., OC)
    cache : tuple ``(x, w)``.
    """
    IC, OC = w.shape
    if x.ndim == 2:  # the block's rows
        out = x @ w  # (N, IC) @ (IC, OC) -> (N, OC)
        out += b
        return out, (x, w)
    out = x.reshape(-1, IC) @ w  # (N, IC) @ (IC, OC) -> (N, OC), one GEMM
    out += b  # (N, OC)
    return out.reshape(*x.shape[:-1], OC), (x, w)


def matmul_backward(dout, cache):
    """Gradients of :func:`matmul_forward`.

    Parameters
    ----------
    dout : ndarray of shape (..., OC)
    cache : tuple
        ``(x, w)`` from :func:`matmul_forward`.

    Returns
    -------
    dx : ndarray of shape (..., IC)
    dw : ndarray of shape (IC, OC)
    db : ndarray of shape (OC,)
    """
    x, w = cache
    IC, OC = w.shape
    dout2 = dout.reshape(-1, OC)  # (N, OC)
    dx = (dout2 @ w.T).reshape(x.shape)  # (N, OC) @ (OC, IC) -> (N, IC)
    dw = x.reshape(-1, IC).T @ dout2  # (IC, N) @ (N, OC) -> (IC, OC)
    db = _sum_rows(dout2)  # (N, OC) -> (OC,)
    return dx, dw, db


# -------------------------------------------------------------------------------- gelu


def gelu_forward(x):
    """GELU, tanh approximation (GPT-2's ``gelu_new``).

    ``out = 0.5 x (1 + tanh(u))`` with ``u = sqrt(2 / pi) (x + 0.044715 x^3)``, computed as
    ``x * sigmoid(2 u)`` (the same function: ``0.5 (1 + tanh(u)) = sigmoid(2 u)``), which
    costs one ``exp`` instead of a slower ``tanh``.

    Parameters
    ----------
    x : ndarray of any shape

    Returns
    -------
    out : ndarray, shape of ``x``
    cache : tuple ``(x, s)`` with ``s = sigmoid(2 u)``; backward needs no transcendental.
    """
    s = x * x  # (..., D)
    s *= -2.0 * GELU_SCALE * GELU_CUBIC
    s += -2.0 * GELU_SCALE
    s *= x  # -2u = -2 sqrt(2 / pi) (x + 0.044715 x^3)
    with np.errstate(over="ignore"):  # exp(-2u) = inf for very negative x: s -> 0, exact
        np.exp(s, out=s)
    s += 1.0
    np.reciprocal(s, out=s)  # sigmoid(2u) = 0.5 (1 + tanh(u))
    out = x * s  # (..., D)
    return out, (x, s)


def gelu_backward(dout, cache):
    """Gradient of :func:`gelu_forward`.

    With ``s = sigmoid(2u)``: ``d out / dx = s + x s (1 - s) 2 du/dx``, where
    ``du/dx = sqrt(2 / pi) (1 + 3 * 0.044715 x^2)`` (equal to the tanh form
    ``0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx``).

    Parameters
    ----------
    dout : ndarray, shape of ``x``
    cache : tuple
        ``(x, s)`` from :func:`gelu_forward`.

    Returns
    -------
    dx : ndarray, shape of ``x``
    """
    x, s = cache
    local = x * x  # (..., D)
    local *= 2.0 * GELU_SCALE * 3.0 * GELU_CUBIC
    local += 2.0 * GELU_SCALE  # 2 du/dx
    local *= x
    local *= s
    local *= 1.0 - s  # x s (1 - s) 2 du/dx
    local += s  # d out / dx
    local *= dout
    return local


# ----------------------------------------------------------------------------- softmax


def softmax(x, out=None):
    """Numerically stable softmax along the last axis (in the dtype of ``x``).

    ``out`` (optional) receives the result; ``softmax(x, out=x)`` works in place, which saves
    a temporary when ``x`` is itself a temporary (the attention scores).

    Parameters
    ----------
    x : ndarray of shape (..., K)
    out : ndarray of shape (..., K), optional

    Returns
    -------
    ndarray of shape (..., K)
        Rows summing to 1 (``out`` when given).
    """
    e = np.subtract(x, x.max(axis=-1, keepdims=True), out=out)  # shape of x
    np.exp(e, out=e)
    e *= 1.0 / _sum_last(e)
    return e


#: Largest score above a query's own score that the fast shift in
#: :func:`causal_softmax` accepts (``exp(80)`` is finite in float32, ``exp(89)`` is not).
SHIFT_LIMIT = 80.0


def causal_softmax(scores, t_past=0):
    """Causal softmax over the keys, in place: ``softmax(scores + causal mask)``.

    Parameters
    ----------
    scores : ndarray of shape (..., Tq, t_past + Tq)
        Query ``i`` sits at absolute position ``t_past + i`` and may see keys ``<= t_past + i``.
        Overwritten with the probabilities.
    t_past : int, default 0
        Number of cached positions before the first query (0 for a full forward).

    Returns
    -------
    ndarray
        ``scores`` itself, now the attention probabilities; masked entries are exactly 0.

    Notes
    -----
    Softmax is unchanged by a shift of each row. The textbook shift is the row maximum, but
    numpy's maximum over many short rows costs as much as the ``exp`` itself. Every query
    sees its own key, so this shifts each row by the query's *own* score: that entry
    becomes ``exp(0) = 1``, so the row sum is at least 1 and never 0/0. Only a score more
    than :data:`SHIFT_LIMIT` above the own score could overflow; one cheap global maximum
    detects that, and then (rarely) every row takes its maximum instead.
    """
    Tq = scores.shape[-2]
    if Tq == 1:  # one query (a decoding step) sees every key; its own is the last
        own = scores[..., -1:].copy()  # (..., 1, 1)
    else:
        own = np.diagonal(scores, offset=t_past, axis1=-2, axis2=-1)[..., None].copy()
        scores += causal_bias(Tq, t_past, scores.dtype.type)  # future keys -> -inf
    scores -= own  # own score -> 0
    if scores.max() > SHIFT_LIMIT:  # rare: shift by the row maximum instead
        scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores *= 1.0 / _sum_last(scores)  # (..., Tq, 1) sums, each >= 1
    return scores


def log_softmax(x, axis=-1):
    """Numerically stable log-softmax along ``axis``: ``x - logsumexp(x)``.

    Parameters
    ----------
    x : array_like of float (or int) values
        ``-inf`` entries are allowed (probability 0) if every slice along ``axis`` keeps a
        finite one.
    axis : int, default -1

    Returns
    -------
    ndarray, shape of ``x``
        In the float dtype of ``x`` (float64 for integers).

    Raises
    ------
    TypeError
        If ``x`` is not real numbers (bool, complex, strings, objects).
    ValueError
        If ``x`` is 0-d or ragged, ``axis`` is out of range, or a slice along ``axis`` is
        empty or holds a NaN, a ``+inf``, or nothing but ``-inf``.
    """
    x = as_real_array(x, "x", keep_float=True)
    if x.ndim == 0:
        raise ValueError("x must have at least one axis, got a 0-d array")
    axis = check_int(axis, "axis", minimum=-x.ndim, maximum=x.ndim - 1)
    if x.shape[axis] == 0:
        raise ValueError(f"x must have a non-empty axis {axis}, got shape {x.shape}")
    m = x.max(axis=axis, keepdims=True)  # NaN propagates into the maxima
    if not np.all(np.isfinite(m)):
        raise ValueError(
            "x must be finite or -inf with a finite entry in every slice along axis "
            f"{axis}; got NaN, +inf or a slice of -inf"
        )
    s = x - m
    s -= np.log(np.exp(s).sum(axis=axis, keepdims=True))
    return s


@functools.lru_cache(maxsize=256)
def causal_bias(T, T_past=0, dtype=np.float32):
    """Additive causal mask ``(T, T_past + T)``: 0 where query ``T_past + i`` may see key
    ``j`` (``j <= T_past + i``), ``-inf`` elsewhere.

    The full forward is the case ``T_past = 0``; incremental decoding has ``T_past`` cached
    positions. Adding it to the scores is cheaper than a boolean assignment. The array is
    cached and read-only.
    """
    allowed = np.tri(T, T_past + T, k=T_past, dtype=bool)  # (T, T_past + T)
    bias = np.where(allowed, 0.0, -np.inf).astype(dtype)  # (T, T_past + T)
    bias.flags.writeable = False
    return bias


# --------------------------------------------------------------------------- attention


class AttentionCache(NamedTuple):
    """What :func:`attention_backward` needs. ``Tk = t_past + T`` keys: a shared past first."""

    q: np.ndarray  # (B, NH, T, hs) queries, already scaled by 1 / sqrt(hs)
    k: np.ndarray  # (B, NH, Tk, hs) keys, the past's first
    v: np.ndarray  # (B, NH, Tk, hs) values, the past's first
    att: np.ndarray  # (B, NH, T, Tk) attention probabilities
    t_past: int  # number of past positions (0 without ``past``)


class LayerKV(NamedTuple):
    """One block's KV cache for incremental decoding (see :class:`rlhf_toy.gpt.KVCache`)."""

    kT: np.ndarray  # (B, NH, hs, capacity) keys, transposed: the score product reads rows
    v: np.ndarray  # (B, NH, capacity, hs) values
    t_past: int  # positions [0, t_past) are filled; new ones go at [t_past, t_past + T)


def attention_forward(qkv, n_head, kv: LayerKV | None = None, past=None):
    """Causal multi-head self-attention on the fused ``q, k, v`` projection.

    ``att = softmax(q k^T / sqrt(hs) + causal mask)``; ``out = att v``, heads concatenated.
    One function for the full forward, for a forward after a shared past (a prompt computed
    once for several continuations) and for decoding with a KV cache.

    Parameters
    ----------
    qkv : ndarray of shape (B, T, 3C)
        ``[q | k | v]`` as produced by ``c_attn``; inside each, head ``h`` owns channels
        ``h * hs:(h + 1) * hs`` (GPT-2's ``split_heads``).
    n_head : int
        ``NH``.
    kv : LayerKV, optional
        Keys and values of ``t_past`` earlier positions. The new keys and values are
        written into it at ``[t_past, t_past + T)`` and the queries attend to every
        position ``<=`` their own, cached ones included. No backward cache is kept.
    past : tuple of two ndarrays of shape (B, NH, t_past, hs), optional
        Keys and values of ``t_past`` earlier positions that every query sees, kept for
        the backward (which returns their gradients). Not together with ``kv``.

    Returns
    -------
    out : ndarray of shape (B, T, C)
    cache : AttentionCache, or None with ``kv`` (decoding keeps no backward cache).
    """
    B, T, C3 = qkv.shape
    C = C3 // 3
    NH = n_head
    hs = C // NH
    heads = qkv.reshape(B, T, 3, NH, hs)  # (B, T, 3, NH, hs), a view
    q = heads[:, :, 0].transpose(0, 2, 1, 3) * (1.0 / math.sqrt(hs))  # (B, NH, T, hs), scaled
    if kv is None:
        k = heads[:, :, 1].transpose(0, 2, 1, 3)  # (B, NH, T, hs)
        v = heads[:, :, 2].transpose(0, 2, 1, 3)  # (B, NH, T, hs)
        t_past = 0
        if past is not None:
            t_past = past[0].shape[2]
            k = np.concatenate([past[0], k], axis=2)  # (B, NH, t_past + T, hs)
            v = np.concatenate([past[1], v], axis=2)  # (B, NH, t_past + T, hs)
        kT = k.swapaxes(-1, -2)  # (B, NH, hs, t_past + T)
    else:
        t_past, t_end = kv.t_past, kv.t_past + T
        kv.kT[..., t_past:t_end] = heads[:, :, 1].transpose(0, 2, 3, 1)  # (B, NH, hs, T)
        kv.v[:, :, t_past:t_end] = heads[:, :, 2].transpose(0, 2, 1, 3)  # (B, NH, T, hs)
        kT, v = kv.kT[..., :t_end], kv.v[:, :, :t_end]  # (B, NH, hs, t_end), (B, NH, t_end, hs)
    att = q @ kT  # (B, NH, T, hs) @ (B, NH, hs, t_past + T) -> (B, NH, T, t_past + T)
    att = causal_softmax(att, t_past)  # in place; future keys get 0
    y = att @ v  # (B, NH, T, t_past + T) @ (B, NH, t_past + T, hs) -> (B, NH, T, hs)
    out = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, NH, hs) -> (B, T, C)
    return out, (None if kv is not None else AttentionCache(q, k, v, att, t_past))


def attention_backward(dout, cache, dkv=None):
    """Gradients of :func:`attention_forward` with respect to ``qkv`` and to the ``past``.

    Softmax backward: ``dpre = att * (datt - sum(datt * att, keys))``; masked entries have
    ``att = 0`` and so receive no gradient.

    Parameters
    ----------
    dout : ndarray of shape (B, T, C)
    cache : AttentionCache
        From :func:`attention_forward` (run without ``kv``).
    dkv : tuple of two ndarrays of shape (B, NH, T, hs), optional
        Gradients reaching this call's own keys and values from elsewhere (from the
        continuations that used them as their ``past``); added to theirs.

    Returns
    -------
    dqkv : ndarray of shape (B, T, 3C)
    dpast : tuple of two ndarrays of shape (B, NH, t_past, hs), or None
        Gradients of the ``past`` keys and values (None without a past).
    """
    q, k, v, att, t_past = cache
    B, NH, T, hs = q.shape
    C = NH * hs
    # the result, in qkv's layout; each matmul below writes its head-major view of one third
    dqkv = np.empty((B, T, 3, NH, hs), dtype=dout.dtype)  # (B, T, 3, NH, hs)
    dq, dk, dv = dqkv.transpose(2, 0, 3, 1, 4)  # (B, NH, T, hs) each, views into dqkv
    dy = dout.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)  # (B, T, C) -> (B, NH, T, hs)
    # keys and values of the past and the new positions: without a past, straight into dqkv
    dk_all, dv_all = (dk, dv) if t_past == 0 else np.empty((2, *k.shape), dtype=dout.dtype)
    datt = dy @ v.swapaxes(-1, -2)  # (B, NH, T, hs) @ (B, NH, hs, Tk) -> (B, NH, T, Tk)
    np.matmul(att.swapaxes(-1, -2), dy, out=dv_all)  # (B, NH, Tk, T) @ (B, NH, T, hs)
    datt -= _sum_last(datt * att)  # (B, NH, T, Tk)
    datt *= att  # (B, NH, T, Tk), gradient of the scaled scores
    np.matmul(datt, k, out=dq)  # (B, NH, T, Tk) @ (B, NH, Tk, hs) -> dq (B, NH, T, hs)
    dq *= 1.0 / math.sqrt(hs)  # through the 1 / sqrt(hs) scale
    np.matmul(datt.swapaxes(-1, -2), q, out=dk_all)  # (B, NH, Tk, T) @ (B, NH, T, hs)
    dpast = None
    if t_past:
        dk[...], dv[...] = dk_all[:, :, t_past:], dv_all[:, :, t_past:]
        dpast = (dk_all[:, :, :t_past], dv_all[:, :, :t_past])  # (B, NH, t_past, hs) each
    if dkv is not None:
        dk += dkv[0]
        dv += dkv[1]
    return dqkv.reshape(B, T, 3 * C), dpast  # (B, T, 3, NH, hs) -> (B, T, 3C), no copy


# ------------------------------------------------------------------------------- block


def block_param_spec(n_embd: int) -> list[tuple[str, tuple[int, ...]]]:
    """The ``(name, shape)`` list of one block's parameters, in GPT-2's order.

    Prefix ``h.{i}.`` in the model: the one place the block's shapes are written.

    Parameters
    ----------
    n_embd : int
        Width ``C``.

    Returns
    -------
    list of (str, tuple of int)
    """
    C = n_embd
    return [
        ("ln_1.weight", (C,)),
        ("ln_1.bias", (C,)),
        ("attn.c_attn.weight", (C, 3 * C)),  # [q | k | v]
        ("attn.c_attn.bias", (3 * C,)),
        ("attn.c_proj.weight", (C, C)),
        ("attn.c_proj.bias", (C,)),
        ("ln_2.weight", (C,)),
        ("ln_2.bias", (C,)),
        ("mlp.c_fc.weight", (C, 4 * C)),
        ("mlp.c_fc.bias", (4 * C,)),
        ("mlp.c_proj.weight", (4 * C, C)),
        ("mlp.c_proj.bias", (C,)),
    ]


#: Parameter names inside one block, in GPT-2's order (prefix ``h.{i}.`` in the model).
BLOCK_PARAMS = tuple(name for name, _ in block_param_spec(1))


class BlockCache(NamedTuple):
    """The sub-layers' caches of one :func:`block_forward`, for :func:`block_backward`."""

    ln1: tuple
    fc_attn: tuple
    att: AttentionCache
    proj_attn: tuple
    ln2: tuple
    fc: tuple
    gelu: tuple
    proj: tuple


def block_forward(x, p, n_head, kv: LayerKV | None = None, past=None):
    """One pre-LN transformer block: ``x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))``.

    The same function runs the full forward, a forward after a shared past and a decoding
    step (``past`` or ``kv`` given, see :func:`attention_forward`).

    Parameters
    ----------
    x : ndarray of shape (B, T, C)
    p : mapping from the names of :data:`BLOCK_PARAMS` to arrays
    n_head : int
    kv : LayerKV, optional
    past : tuple of two ndarrays of shape (B, NH, t_past, hs), optional

    Returns
    -------
    out : ndarray of shape (B, T, C)
    cache : BlockCache, or None with ``kv``.
    """
    B, T, C = x.shape
    x = x.reshape(B * T, C)  # (BT, C): every layer but attention sees 2-D rows
    h, ln1 = layernorm_forward(x, p["ln_1.weight"], p["ln_1.bias"])  # (BT, C)
    qkv, fc_attn = matmul_forward(h, p["attn.c_attn.weight"], p["attn.c_attn.bias"])  # (BT, 3C)
    a, att = attention_forward(qkv.reshape(B, T, 3 * C), n_head, kv, past)  # (B, T, C)
    a, proj_attn = matmul_forward(
        a.reshape(B * T, C), p["attn.c_proj.weight"], p["attn.c_proj.bias"]
    )
    x = x + a  # (BT, C), residual
    h, ln2 = layernorm_forward(x, p["ln_2.weight"], p["ln_2.bias"])  # (BT, C)
    h, fc = matmul_forward(h, p["mlp.c_fc.weight"], p["mlp.c_fc.bias"])  # (BT, 4C)
    h, gelu = gelu_forward(h)  # (BT, 4C)
    h, proj = matmul_forward(h, p["mlp.c_proj.weight"], p["mlp.c_proj.bias"])  # (BT, C)
    h += x  # (BT, C), residual (h is a fresh array)
    out = h.reshape(B, T, C)
    if kv is not None:
        return out, None
    return out, BlockCache(ln1, fc_attn, att, proj_attn, ln2, fc, gelu, proj)


def block_backward(dout, cache: BlockCache, dkv=None):
    """Gradients of :func:`block_forward`.

    Parameters
    ----------
    dout : ndarray of shape (B, T, C)
    cache : BlockCache
        From :func:`block_forward` (run without ``kv``).
    dkv : tuple of two ndarrays of shape (B, NH, T, hs), optional
        Gradients reaching the attention's own keys and values from continuations that used
        them as their ``past`` (see :func:`attention_backward`).

    Returns
    -------
    dx : ndarray of shape (B, T, C)
    grads : dict keyed by the names of :data:`BLOCK_PARAMS`.
    dpast : tuple of two ndarrays of shape (B, NH, t_past, hs), or None
        Gradients of the ``past`` keys and values of the forward (None without a past).
    """
    ln1, fc_attn, att, proj_attn, ln2, fc, gelu, proj = cache
    B, T, C = dout.shape
    dout = dout.reshape(B * T, C)  # (BT, C)
    g = {}
    dh, g["mlp.c_proj.weight"], g["mlp.c_proj.bias"] = matmul_backward(dout, proj)  # (BT, 4C)
    dh = gelu_backward(dh, gelu)  # (BT, 4C)
    dh, g["mlp.c_fc.weight"], g["mlp.c_fc.bias"] = matmul_backward(dh, fc)  # (BT, C)
    dh, g["ln_2.weight"], g["ln_2.bias"] = layernorm_backward(dh, ln2)  # (BT, C)
    dx = dout + dh  # (BT, C), residual
    da, g["attn.c_proj.weight"], g["attn.c_proj.bias"] = matmul_backward(dx, proj_attn)  # (BT,C)
    dqkv, dpast = attention_backward(da.reshape(B, T, C), att, dkv)  # (B, T, 3C)
    dh, g["attn.c_attn.weight"], g["attn.c_attn.bias"] = matmul_backward(
        dqkv.reshape(B * T, 3 * C), fc_attn
    )  # (BT, C)
    dh, g["ln_1.weight"], g["ln_1.bias"] = layernorm_backward(dh, ln1)  # (BT, C)
    dx += dh  # (BT, C), residual
    return dx.reshape(B, T, C), g, dpast


# ----------------------------------------------------------------------- cross-entropy


def cross_entropy(logits, targets, mask=None):
    """Masked mean cross-entropy and its gradient with respect to the logits.

    ``loss = sum_{b,t} mask[b,t] * (-log softmax(logits[b,t])[targets[b,t]]) / sum(mask)``.

    Parameters
    ----------
    logits : ndarray of shape (B, T, V)
    targets : ndarray of int, shape (B, T)
        Entries where ``mask == 0`` are ignored (any value in ``[0, V)``).
    mask : ndarray of shape (B, T), optional
        Finite weights >= 0 (0/1 or bool); ``None`` means every position counts.

    Returns
    -------
    loss : float
    dlogits : ndarray of shape (B, T, V), dtype of ``logits``
        ``(softmax(logits) - onehot(targets)) * mask / sum(mask)``.

    Raises
    ------
    TypeError
        If ``logits`` or ``mask`` are not real numbers or ``targets`` not integers.
    ValueError
        If shapes disagree, ``logits`` hold a NaN or inf, a target is out of ``[0, V)`` at a
        counted position, a mask weight is negative, NaN or inf, or the mask selects nothing.
    """
    logits = as_real_array(logits, "logits", keep_float=True)
    if logits.ndim != 3:
        raise ValueError(f"logits must have shape (B, T, V), got shape {logits.shape}")
    if not np.all(np.isfinite(logits)):
        raise ValueError("logits must be finite, got NaN or inf")
    B, T, V = logits.shape
    if targets is None or isinstance(targets, str):
        raise ArgumentTypeError(f"targets must be an int array, got {targets!r}")
    targets = np.asarray(targets)
    if targets.dtype.kind not in "iu":
        raise ArgumentTypeError(f"targets must be integers, got dtype {targets.dtype}")
    if targets.shape != (B, T):
        raise ValueError(f"targets must have shape {(B, T)} (that of logits), got {targets.shape}")
    if mask is None:
        mask = np.ones((B, T), dtype=logits.dtype)
    else:
        mask = check_mask(mask, "mask", (B, T), like_name="logits").astype(logits.dtype)
    n = float(mask.sum())
    if n <= 0:
        raise ValueError("mask must select at least one position, got sum(mask) = 0")
    counted = mask != 0
    if np.any((targets < 0)[counted]) or np.any((targets >= V)[counted]):
        bad = targets[counted & ((targets < 0) | (targets >= V))][0]
        raise ValueError(f"targets must be in [0, {V}), got {bad}")
    safe = np.where(counted, targets, 0)  # (B, T), ignored positions read class 0
    logp = log_softmax(logits)  # (B, T, V)
    nll = -np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]  # (B, T)
    loss = float((nll * mask).sum()) / n
    dlogits = np.exp(logp, out=logp)  # (B, T, V), softmax
    np.put_along_axis(
        dlogits, safe[..., None], np.take_along_axis(dlogits, safe[..., None], -1) - 1.0, -1
    )  # (B, T, V), softmax - onehot
    dlogits *= (mask * (1.0 / n))[..., None]  # (B, T, V)
    return loss, dlogits
