"""A GPT-2 in numpy with a hand-written backward pass: every network of the chapter's
sequence world ("The RLHF Pipeline"): the policy (SFT, Stage 3), PPO's critic (value head)
and Stage 2's reward model ``r_phi(x, y)`` (reward head).

Semantics (each layer in :mod:`rlhf_toy.gpt.layers`; GPT-2's names and layouts)::

    x = wte[tokens] + wpe[:T]                       # (B, T, C)
    for i in range(L):                              # pre-LN blocks
        x = x + attn_i(ln_1_i(x))                   # causal, scores / sqrt(hs)
        x = x + mlp_i(ln_2_i(x))                    # c_fc -> GELU (tanh) -> c_proj
    xf = ln_f(x)                                    # LayerNorm eps 1e-5
    logits = xf @ wte.T                             # (B, T, V), LM head tied to wte
    values = xf @ value_head.weight + value_head.bias        # (B, T), optional head
    rewards = xf[b, pos_b] @ reward_head.weight + bias      # (B,),  optional head

No dropout. Initialisation (GPT-2, Radford et al. 2019, sec. 2.3): normal std 0.02, the
residual projections ``c_proj`` std ``0.02 / sqrt(2 L)``, biases 0, LayerNorm weights 1;
the heads start at exactly 0 and never change the transformer's weights for a seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from .._validate import ArgumentTypeError, as_rng, check_int, check_positive
from .checkpoint import read_checkpoint, save
from .config import HEADS, GPTConfig, check_dtype, check_heads, param_spec
from .layers import (
    BLOCK_PARAMS,
    LayerKV,
    block_backward,
    block_forward,
    cross_entropy,
    encoder_backward,
    encoder_forward,
    layernorm_backward,
    layernorm_forward,
    log_softmax,
)
from .parallel import map_shards, row_shards, single_blas_thread

__all__ = [
    "GPT",
    "load",
    "HEADS",
    "GPTConfig",
    "KVCache",
    "check_allowed_tokens",
    "check_finite_grads",
    "check_finite_params",
    "check_token_id",
    "cross_entropy",
    "param_spec",
    "restricted_log_softmax",
]


def _init_std(name: str, n_layer: int) -> float | None:
    """GPT-2 initial std of a weight, or None for the constant-initialised ones."""
    if name in ("wte", "wpe") or name.endswith(("c_attn.weight", "c_fc.weight")):
        return 0.02
    if name.endswith("c_proj.weight"):
        return 0.02 / math.sqrt(2 * n_layer)  # residual projections (GPT-2 paper, sec. 2.3)
    return None


def check_finite_grads(grads, step) -> None:
    """Raise unless every gradient is finite; training loops call this once per step.

    Parameters
    ----------
    grads : dict of str to ndarray
    step : int
        The step, for the error message.

    Raises
    ------
    FloatingPointError
        Naming the step and the first parameter whose gradient has a NaN or inf.
    """
    for name, g in grads.items():
        if not np.all(np.isfinite(g)):
            n_bad = int(np.size(g) - np.count_nonzero(np.isfinite(g)))
            raise FloatingPointError(
                f"non-finite gradient at step {step}: parameter {name!r} has {n_bad} "
                f"NaN/inf entries"
            )


def check_finite_params(params, step) -> None:
    """Raise unless every parameter is finite (a training loop's check after its last update).

    Parameters
    ----------
    params : dict of str to ndarray
    step : int
        The step, for the error message.

    Raises
    ------
    FloatingPointError
        Naming the step and the first parameter with a NaN or inf entry.
    """
    for name, p in params.items():
        if not np.all(np.isfinite(p)):
            raise FloatingPointError(
                f"non-finite parameter after the update of step {step}: {name!r} has NaN/inf"
            )


def check_allowed_tokens(allowed_tokens, vocab_size: int) -> np.ndarray | None:
    """Validate a restricted output alphabet: sorted unique token ids in ``[0, V)``.

    ``None`` (every token) stays ``None``.

    Parameters
    ----------
    allowed_tokens : array_like of int of shape (K,), or None
    vocab_size : int
        ``V``.

    Returns
    -------
    ndarray of intp of shape (K,), or None

    Raises
    ------
    TypeError
        If ``allowed_tokens`` is not integers, or ``vocab_size`` not an int.
    ValueError
        If ``allowed_tokens`` is not a non-empty 1-D array of ids in ``[0, V)`` without
        duplicates, or ``vocab_size < 1``.
    """
    vocab_size = check_int(vocab_size, "vocab_size", maximum=np.iinfo(np.intp).max)
    if allowed_tokens is None:
        return None
    if isinstance(allowed_tokens, str):
        raise ArgumentTypeError(f"allowed_tokens must be token ids, got {allowed_tokens!r}")
    a = np.asarray(allowed_tokens)
    if a.dtype.kind not in "iu":
        raise ArgumentTypeError(f"allowed_tokens must be integers, got dtype {a.dtype}")
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"allowed_tokens must be a non-empty 1-D array, got shape {a.shape}")
    if a.min() < 0 or a.max() >= vocab_size:
        bad = a.min() if a.min() < 0 else a.max()
        raise ValueError(f"allowed_tokens must be in [0, {vocab_size}), got {bad}")
    u = np.unique(a).astype(np.intp)
    if u.size != a.size:
        raise ValueError("allowed_tokens must not repeat a token")
    return u


def check_token_id(token, name: str, vocab_size: int) -> int | None:
    """``None``, or a token id in ``[0, V)`` (an EOS or PAD option).

    Parameters
    ----------
    token : int or None
    name : str
        The argument's name, for the error message.
    vocab_size : int
        ``V``.

    Returns
    -------
    int or None

    Raises
    ------
    TypeError
        Naming ``name`` if ``token`` is not an int (or ``vocab_size`` not an int).
    ValueError
        Naming ``name`` if ``token`` is not in ``[0, V)``, or ``vocab_size`` if it is < 1.
    """
    vocab_size = check_int(vocab_size, "vocab_size", maximum=np.iinfo(np.intp).max)
    if token is None:
        return None
    token = check_int(token, name, minimum=0)
    if token >= vocab_size:
        raise ValueError(f"{name} must be in [0, {vocab_size}), got {token}")
    return token


def restricted_log_softmax(logits, allowed, tau=1.0, targets=None):
    """``log_softmax(z / tau)`` over the allowed columns of ``logits (..., V)``.

    The next-token log-distribution with a restricted output alphabet.

    Parameters
    ----------
    logits : ndarray of shape (..., V)
    allowed : ndarray of int (K,) from :func:`check_allowed_tokens`, or None (all V)
    tau : float > 0, the temperature
    targets : ndarray of int of shape (...), optional

    Returns
    -------
    logq : ndarray of shape (..., K)
    idx : ndarray of int (...) or None
        The column of each target in ``logq`` (0 where the target is outside the set).
    ok : ndarray of bool (...) or None
        Whether each target is inside the set (None when unrestricted or no targets).
    """
    z = logits if allowed is None else logits[..., allowed]  # (..., K)
    if tau != 1.0:
        z = z * (1.0 / tau)
    logq = log_softmax(z)  # (..., K)
    if targets is None:
        return logq, None, None
    if allowed is None:
        return logq, targets, None
    column = np.full(logits.shape[-1], -1, dtype=np.intp)  # (V,), token -> column or -1
    column[allowed] = np.arange(allowed.size)
    idx = column[targets]  # (...)
    ok = idx >= 0
    return logq, np.where(ok, idx, 0), ok


def _row_ids(rows, V):
    """Id of each distinct row of an int array ``(B, P)`` with entries in ``[0, V)``: ``(B,)``
    in ``[0, U)``, equal ids for equal rows, in the rows' sorted order.

    Rows are read as ``P``-digit numbers in base ``V`` when those fit in an int64 (one sort
    of ``B`` numbers), else compared whole (``np.unique(axis=0)``, several times slower).
    """
    B, P = rows.shape
    if P * math.log2(V) >= 63:
        return np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1)
    key = rows[:, 0].astype(np.int64)  # (B,), Horner's rule: exact below 2**63
    for j in range(1, P):
        key = key * V + rows[:, j]
    return np.unique(key, return_inverse=True)[1].reshape(-1)


def _row_sum(rows, n, dtype):
    """``f(d)``: the sum of the rows ``b`` of ``d (B, ...)`` with ``rows[b] = u``, for each
    ``u < n``: one product with the ``(n, B)`` indicator matrix."""
    indicator = (np.arange(n)[:, None] == rows[None, :]).astype(dtype)  # (n, B)

    def f(d):
        return (indicator @ d.reshape(d.shape[0], -1)).reshape(n, *d.shape[1:])

    return f


class TrunkCache(NamedTuple):
    """What the trunk's backward needs from one shard's forward.

    With a shared prefix, ``prompt`` is the trunk cache of the shard's distinct prompts
    and the other fields are those of the continuations (row ``b`` continues prompt
    ``rows[b]``).
    """

    enc: tuple  # encoder cache
    blocks: list  # L BlockCache
    lnf: tuple  # ln_f cache
    prompt: TrunkCache | None = None  # the distinct prompts' trunk (shared prefix only)
    rows: np.ndarray | None = None  # (B,) prompt of each row (shared prefix only)


class Restriction(NamedTuple):
    """The output alphabet and temperature of the last :meth:`GPT.logprobs`."""

    allowed: np.ndarray | None  # (K,) token ids, or None for the whole vocabulary
    tau: float  # temperature
    idx: np.ndarray  # (B, T-1) column of each target among the K
    ok: np.ndarray | None  # (B, T-1) target inside the alphabet, or None if unrestricted


@dataclass
class ForwardCache:
    """What the last forward-type call keeps for the backward (one per model)."""

    tokens: np.ndarray  # (B, T) validated tokens
    shards: list  # row slices (of the rows in ``order``), one per thread
    trunks: list  # one TrunkCache per shard
    xf: np.ndarray  # (B, T, C) final hidden states, after ln_f
    reward_positions: np.ndarray | None = None  # (B,), set by GPT.rewards
    probs: np.ndarray | None = None  # softmax kept by logprobs / log_distributions
    probs_of: str | None = None  # which of the two made ``probs``
    restriction: Restriction | None = None  # set by logprobs
    order: np.ndarray | None = None  # (B,) rows grouped by shared prefix, or None (as given)


@dataclass
class KVCache:
    """Keys and values of the tokens seen so far, for incremental decoding.

    Per layer ``i``: ``kT[i]`` of shape ``(B, NH, hs, capacity)`` (keys, transposed, so that
    a query's scores are one batched product over contiguous rows) and ``v[i]`` of shape
    ``(B, NH, capacity, hs)``; positions ``[0, length)`` are filled. Made by
    :meth:`GPT.init_kv_cache`, advanced by :meth:`GPT.forward_step`.
    """

    config: GPTConfig  # of the model that made it; another model's cache is refused
    kT: list  # L arrays (B, NH, hs, capacity)
    v: list  # L arrays (B, NH, capacity, hs)
    length: int = 0  # number of positions filled

    @property
    def batch_size(self) -> int:
        """``B``, the number of sequences."""
        return self.v[0].shape[0]

    @property
    def capacity(self) -> int:
        """Most positions the cache can hold."""
        return self.v[0].shape[2]

    def take(self, rows) -> KVCache:
        """A new cache holding rows ``rows`` of this one (repeats allowed), same length.

        Used to branch sequences: ``kv.take(np.repeat(np.arange(B), n))`` continues each
        of ``B`` prefixes ``n`` ways; a tree walk takes each node's parent row.
        """
        rows = np.asarray(rows)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer) or rows.size == 0:
            raise ValueError(f"rows must be a non-empty 1-D int array, got shape {rows.shape}")
        B = self.batch_size
        if rows.min() < 0 or rows.max() >= B:
            raise ValueError(f"rows must be in [0, {B}), got {rows.min()}..{rows.max()}")
        # whole rows, the unfilled positions too: one contiguous gather per array is ~5x
        # faster than copying the filled part of each row
        kT = [ki[rows] for ki in self.kT]  # L x (B', NH, hs, capacity)
        v = [vi[rows] for vi in self.v]  # L x (B', NH, capacity, hs)
        return KVCache(self.config, kT, v, self.length)


class GPT:
    """GPT-2 language model with optional value and reward heads.

    Parameters
    ----------
    config : GPTConfig
    seed : int or numpy.random.Generator, default 0
        Randomness of the initialisation (same seed, same weights, bit for bit).
    dtype : float32 (default) or float64
        Of every parameter and every computation (float64 for gradient checks).
    heads : iterable of {"value", "reward"}, default ()
        Scalar heads read from the final hidden state after ``ln_f``.

    Attributes
    ----------
    config : GPTConfig
    dtype : numpy.dtype
    heads : tuple of str
    param_spec : list of (name, shape)
        Ordered; ``params`` and every gradient dict use these names and shapes.
    params : dict of str to ndarray
        GPT-2 names and layouts (``wte [V, C]``, ``h.0.attn.c_attn.weight [C, 3C]``, ...).

    Notes
    -----
    Training step::

        logits = model.forward(tokens)                       # (B, T, V)
        loss, dlogits = cross_entropy(logits, targets, mask)  # or model.loss(...)
        grads = model.backward(dlogits)

    Sequence log-probs for DPO / PPO / GRPO::

        logp = model.logprobs(tokens)                        # (B, T-1)
        grads = model.logprobs_backward(dloss_dlogp)         # zeros where masked

    Every forward-type call (``forward``, ``loss``, ``logprobs``, ``log_distributions``)
    replaces the cache that the next backward uses.

    A batch of at least ``2 * MIN_TOKENS_PER_SHARD`` tokens is cut into row shards that run
    on threads, one per core (:mod:`rlhf_toy.gpt.parallel`; ``set_num_threads(1)`` turns
    it off). Results depend on the number of threads only through floating-point rounding.
    """

    def __init__(self, config: GPTConfig, seed=0, dtype=np.float32, heads=()):
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.dtype = check_dtype(dtype)
        self.heads = check_heads(heads)
        self.param_spec = param_spec(config, self.heads)
        rng = as_rng(seed)
        self.params = {}
        for name, shape in self.param_spec:
            std = _init_std(name, config.n_layer)
            if std is not None:
                p = rng.normal(0.0, std, size=shape)  # float64 draw: same weights in any dtype
            elif name.startswith("ln") or ".ln_" in name:
                p = np.ones(shape) if name.endswith("weight") else np.zeros(shape)
            else:
                p = np.zeros(shape)  # biases and the scalar heads
            self.params[name] = p.astype(self.dtype)
        self._cache = None

    def __repr__(self):
        n = sum(p.size for p in self.params.values())
        return f"GPT({self.config}, dtype={self.dtype}, heads={self.heads}, params={n})"

    @property
    def num_params(self) -> int:
        """Total number of scalar parameters."""
        return sum(int(p.size) for p in self.params.values())

    # ------------------------------------------------------------------ validation

    def check_tokens(self, tokens, name="tokens", min_len=1) -> np.ndarray:
        """Validate a token batch for this model: int ``(B, T)``, ``min_len <= T <= n_ctx``,
        entries in ``[0, V)``; returned as ``intp``.

        Raises
        ------
        ValueError
            Naming ``name`` and the bad shape, dtype or token.
        """
        tokens = np.asarray(tokens)
        if tokens.ndim != 2:
            raise ValueError(f"{name} must be a 2-D int array (B, T), got shape {tokens.shape}")
        if tokens.dtype == bool or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"{name} must be integers, got dtype {tokens.dtype}")
        B, T = tokens.shape
        if B < 1 or T < min_len:
            raise ValueError(f"{name} must have B >= 1 and T >= {min_len}, got shape {(B, T)}")
        if T > self.config.n_ctx:
            raise ValueError(
                f"{name} has T={T} positions but the model's n_ctx is {self.config.n_ctx}"
            )
        lo, hi = tokens.min(), tokens.max()
        if lo < 0 or hi >= self.config.vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} must be in [0, {self.config.vocab_size}), got {bad}")
        return tokens.astype(np.intp, copy=False)

    def _check_grad(self, d, name, shape) -> np.ndarray:
        d = np.asarray(d)
        if d.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {d.shape}")
        if not np.issubdtype(d.dtype, np.number) or np.iscomplexobj(d):
            raise ValueError(f"{name} must be real numbers, got dtype {d.dtype}")
        d = d.astype(self.dtype, copy=False)
        if not np.all(np.isfinite(d)):
            raise ValueError(f"{name} must be finite, got NaN or inf")
        return d

    def _require_cache(self, what="backward"):
        if self._cache is None:
            raise RuntimeError(f"{what} needs a forward pass first (model.forward(tokens))")
        return self._cache

    @property
    def _block_params(self) -> list[dict]:
        """Per block, its parameters under their :data:`BLOCK_PARAMS` names (views of
        ``params``, rebuilt on each access so a replaced array is always seen)."""
        p = self.params
        return [
            {name: p[f"h.{i}.{name}"] for name in BLOCK_PARAMS} for i in range(self.config.n_layer)
        ]

    # --------------------------------------------------------------------- forward

    def _forward(self, tokens, shared_prefix=0):
        """Forward pass on validated tokens; returns ``(logits, cache)``.

        The trunk (embedding, blocks, ``ln_f``) runs on row shards in parallel
        (:mod:`rlhf_toy.gpt.parallel`); the heads read the concatenated hidden states. With
        ``shared_prefix = P``, rows are first grouped by their first ``P`` tokens (so that a
        shard holds whole groups) and each shard computes each distinct prefix once.
        """
        B, T = tokens.shape
        given, order, ids = tokens, None, None
        if shared_prefix:
            ids = _row_ids(tokens[:, :shared_prefix], self.config.vocab_size)  # (B,)
            if ids.max() + 1 == B:  # no prefix repeats: nothing to share
                shared_prefix, ids = 0, None
            elif np.any(ids[1:] < ids[:-1]):  # group the rows of each prefix
                order = np.argsort(ids, kind="stable")  # (B,)
                tokens, ids = tokens[order], ids[order]
        shards = row_shards(B, T)
        args = [(tokens[s], shared_prefix, None if ids is None else ids[s]) for s in shards]
        trunks = map_shards(self._trunk_forward, args)
        xf = trunks[0][0] if len(shards) == 1 else np.concatenate([x for x, _ in trunks])
        if order is not None:  # back to the rows as given
            xf[order] = xf.copy()
        logits = (xf.reshape(B * T, -1) @ self.params["wte"].T).reshape(B, T, -1)  # (BT,C)@(C,V)
        cache = ForwardCache(given, shards, [c for _, c in trunks], xf, order=order)
        return logits, cache

    def _trunk_forward(self, tokens, shared_prefix=0, ids=None):
        """Embedding, blocks and ``ln_f`` on one shard: ``(xf (B, T, C), TrunkCache)``.

        With ``shared_prefix = P`` and ``ids`` (B,) sorted prefix ids, the distinct prefixes
        run first; every row then continues its own from position ``P``, attending to the
        prefix's keys and values (``past`` in :func:`~rlhf_toy.gpt.layers.block_forward`).
        """
        p = self.params
        P, prompt, rows = shared_prefix, None, None
        if P:
            first = np.r_[True, ids[1:] != ids[:-1]]  # (B,) the first row of each prefix
            rows = np.cumsum(first) - 1  # (B,) the prefix of each row, in [0, U)
            xf_p, prompt = self._trunk_forward(tokens[first, :P])  # (U, P, C)
        x, enc = encoder_forward(tokens[:, P:], p["wte"], p["wpe"], t0=P)  # (B, T - P, C)
        blocks = []
        for i, bp in enumerate(self._block_params):
            past = None
            if prompt is not None:  # the prefix's keys and values, one copy per row
                att = prompt.blocks[i].att
                past = (att.k[rows], att.v[rows])  # (B, NH, P, hs) each
            x, cache = block_forward(x, bp, self.config.n_head, past=past)  # (B, T - P, C)
            blocks.append(cache)
        xf, lnf = layernorm_forward(x, p["ln_f.weight"], p["ln_f.bias"])  # (B, T - P, C)
        if prompt is not None:
            xf = np.concatenate([xf_p[rows], xf], axis=1)  # (B, T, C)
        return xf, TrunkCache(enc, blocks, lnf, prompt, rows)

    def _trunk_backward(self, dxf, cache: TrunkCache) -> dict:
        """Gradients of the trunk's parameters given ``dxf`` on one shard.

        With a shared prefix, the prefixes' layers run backward beside the continuations':
        layer ``i`` of a prefix receives its rows' gradients and, through its keys and
        values, those of every continuation that attended to it.
        """
        prompt = cache.prompt
        if prompt is not None:
            U, P = prompt.enc[0].shape
            to_prompts = _row_sum(cache.rows, U, dxf.dtype)  # (B, ...) -> (U, ...)
            dx_p, dxf = to_prompts(dxf[:, :P]), dxf[:, P:]  # (U, P, C), (B, T - P, C)
        g = {}
        dx, g["ln_f.weight"], g["ln_f.bias"] = layernorm_backward(dxf, cache.lnf)  # (B, T, C)
        if prompt is not None:
            dx_p, dw, db = layernorm_backward(dx_p, prompt.lnf)  # (U, P, C)
            g["ln_f.weight"] += dw
            g["ln_f.bias"] += db
        for i in reversed(range(self.config.n_layer)):
            dx, gb, dpast = block_backward(dx, cache.blocks[i])  # (B, T, C)
            if prompt is not None:
                dkv = tuple(to_prompts(d) for d in dpast)  # (U, NH, P, hs) each
                dx_p, gp, _ = block_backward(dx_p, prompt.blocks[i], dkv)  # (U, P, C)
                gb = {name: gi + gp[name] for name, gi in gb.items()}
            for name, gi in gb.items():
                g[f"h.{i}.{name}"] = gi
        g["wte"], g["wpe"] = encoder_backward(dx, cache.enc)  # (V, C), (n_ctx, C)
        if prompt is not None:
            dwte, dwpe = encoder_backward(dx_p, prompt.enc)
            g["wte"] += dwte
            g["wpe"] += dwpe
        return g

    def _check_shared_prefix(self, shared_prefix, T) -> int:
        shared_prefix = check_int(shared_prefix, "shared_prefix", minimum=0)
        if shared_prefix >= T:
            raise ValueError(
                f"shared_prefix must be < T={T} (at least one position after it), "
                f"got {shared_prefix}"
            )
        return shared_prefix

    @single_blas_thread()
    def forward(self, tokens, shared_prefix=0) -> np.ndarray:
        """Next-token logits, keeping what :meth:`backward` needs.

        Parameters
        ----------
        tokens : ndarray of int, shape (B, T), ``1 <= T <= n_ctx``, entries in ``[0, V)``
        shared_prefix : int, default 0
            ``P < T``: rows whose first ``P`` tokens are equal (a prompt and several
            responses to it) compute those positions once; the results are the same up to
            float rounding, at the cost of the distinct prefixes plus ``T - P`` positions
            per row. 0 computes every row whole.

        Returns
        -------
        logits : ndarray of shape (B, T, V)
            ``logits[b, t]`` scores token ``t + 1`` given ``tokens[b, :t + 1]``.

        Raises
        ------
        ValueError
            For a non-2-D or non-integer array, ``T > n_ctx``, or a token outside ``[0, V)``.
        """
        tokens = self.check_tokens(tokens)
        shared_prefix = self._check_shared_prefix(shared_prefix, tokens.shape[1])
        logits, self._cache = self._forward(tokens, shared_prefix)
        return logits

    def values(self) -> np.ndarray:
        """Value-head outputs ``xf @ w + b`` of the last forward, shape (B, T)."""
        self._require_head("value")
        xf = self._require_cache("values").xf  # (B, T, C)
        return xf @ self.params["value_head.weight"] + self.params["value_head.bias"]  # (B, T)

    def rewards(self, positions) -> np.ndarray:
        """Reward-head outputs read at one position per row of the last forward.

        Parameters
        ----------
        positions : ndarray of int, shape (B,)
            Normally the index of each row's last real token (before right padding).

        Returns
        -------
        rewards : ndarray of shape (B,)
        """
        self._require_head("reward")
        c = self._require_cache("rewards")
        B, T, _ = c.xf.shape
        pos = np.asarray(positions)
        if pos.shape != (B,) or not np.issubdtype(pos.dtype, np.integer):
            raise ValueError(f"positions must be integers of shape {(B,)}, got {pos.shape}")
        if pos.min() < 0 or pos.max() >= T:
            raise ValueError(f"positions must be in [0, {T}), got {pos.min()}..{pos.max()}")
        c.reward_positions = pos.astype(np.intp)
        h = c.xf[np.arange(B), pos]  # (B, C)
        return h @ self.params["reward_head.weight"] + self.params["reward_head.bias"]  # (B,)

    def _require_head(self, head):
        if head not in self.heads:
            raise ValueError(f"the model has no {head!r} head; build it with heads=({head!r},)")

    def loss(self, tokens, targets, mask=None):
        """Forward plus masked mean cross-entropy: ``(loss, dlogits)``.

        Equivalent to ``cross_entropy(self.forward(tokens), targets, mask)``; follow with
        ``self.backward(dlogits)``.
        """
        return cross_entropy(self.forward(tokens), targets, mask)

    # -------------------------------------------------------------------- backward

    @single_blas_thread()
    def backward(self, dlogits=None, dvalues=None, drewards=None) -> dict:
        """Gradients of a scalar loss given its gradients at the model's outputs.

        Parameters
        ----------
        dlogits : ndarray of shape (B, T, V), optional
        dvalues : ndarray of shape (B, T), optional
            Requires the value head.
        drewards : ndarray of shape (B,), optional
            Requires the reward head and a call to :meth:`rewards` after the forward.

        Returns
        -------
        grads : dict of str to ndarray
            Same keys, shapes, order and dtype as ``params``; zeros where no signal.

        Raises
        ------
        ValueError
            If an upstream gradient has the wrong shape or a NaN / inf entry.
        """
        c = self._require_cache()
        if dlogits is None and dvalues is None and drewards is None:
            raise ValueError("backward needs at least one of dlogits, dvalues, drewards")
        p = self.params
        xf = c.xf  # (B, T, C)
        B, T, C = xf.shape
        V = self.config.vocab_size
        g = {name: None for name, _ in self.param_spec}
        dxf = np.zeros_like(xf)  # (B, T, C)
        dwte_head = None
        if dlogits is not None:
            dlogits = self._check_grad(dlogits, "dlogits", (B, T, V))
            dxf += (dlogits.reshape(-1, V) @ p["wte"]).reshape(B, T, C)  # (BT, V) @ (V, C)
            dwte_head = dlogits.reshape(-1, V).T @ xf.reshape(-1, C)  # (V, BT) @ (BT, C)
        if dvalues is not None:
            self._require_head("value")
            dvalues = self._check_grad(dvalues, "dvalues", (B, T))
            dxf += dvalues[..., None] * p["value_head.weight"]  # (B, T, 1) * (C,) -> (B, T, C)
            g["value_head.weight"] = dvalues.reshape(-1) @ xf.reshape(-1, C)  # (BT,) @ (BT, C)
            g["value_head.bias"] = dvalues.sum()  # ()
        if drewards is not None:
            self._require_head("reward")
            if c.reward_positions is None:
                raise RuntimeError("backward(drewards=...) needs model.rewards(positions) first")
            drewards = self._check_grad(drewards, "drewards", (B,))
            rows, pos = np.arange(B), c.reward_positions
            dxf[rows, pos] += drewards[:, None] * p["reward_head.weight"]  # (B, C)
            g["reward_head.weight"] = drewards @ xf[rows, pos]  # (B,) @ (B, C) -> (C,)
            g["reward_head.bias"] = drewards.sum()  # ()
        if c.order is not None:  # the rows as the shards hold them
            dxf = dxf[c.order]
        shard_args = [(dxf[s], trunk) for s, trunk in zip(c.shards, c.trunks, strict=True)]
        trunk_grads = map_shards(self._trunk_backward, shard_args)  # one dict per shard
        for shard_grads in trunk_grads[1:]:  # fixed order: the same sums on every run
            for name, gi in shard_grads.items():
                trunk_grads[0][name] += gi
        g.update(trunk_grads[0])
        if dwte_head is not None:
            g["wte"] += dwte_head  # tied LM head
        for name, shape in self.param_spec:
            if g[name] is None:
                g[name] = np.zeros(shape, dtype=self.dtype)
            else:
                g[name] = np.asarray(g[name], dtype=self.dtype).reshape(shape)
        return g

    # ---------------------------------------------------------- sequence log-probs

    @single_blas_thread()
    def logprobs(
        self, tokens, allowed_tokens=None, temperature=1.0, shared_prefix=0, keep_cache=True
    ) -> np.ndarray:
        """Per-token log-probabilities of the sequences, ``log pi(y_t | y_<t)``.

        Parameters
        ----------
        tokens : ndarray of int, shape (B, T), ``T >= 2``
            Right padding with any valid token is harmless: by causality it never changes
            an earlier log-prob; the caller masks the padded positions.
        allowed_tokens : ndarray of int, shape (K,), optional
            Restricted output alphabet: the softmax runs over these tokens only (the
            others' logits are ``-inf``). A target outside the set gets ``-inf``.
        temperature : float > 0, default 1.0
            ``pi(v) ∝ exp(z_v / temperature)``.
        shared_prefix : int, default 0
            Compute each distinct prefix of this length once (see :meth:`forward`).
        keep_cache : bool, default True
            False: keep no backward state (a frozen reference model); the cache of the last
            forward stays as it was.

        Returns
        -------
        logp : ndarray of shape (B, T - 1)
            ``logp[:, t] = log pi(tokens[:, t + 1] | tokens[:, :t + 1])``.

        See Also
        --------
        logprobs_backward : its gradient.
        """
        tokens = self.check_tokens(tokens, min_len=2)
        allowed = check_allowed_tokens(allowed_tokens, self.config.vocab_size)
        tau = check_positive(temperature, "temperature")
        shared_prefix = self._check_shared_prefix(shared_prefix, tokens.shape[1])
        if not isinstance(keep_cache, bool):
            raise TypeError(f"keep_cache must be a bool, got {keep_cache!r}")
        logits, cache = self._forward(tokens, shared_prefix)  # (B, T, V)
        logq, idx, ok = restricted_log_softmax(logits[:, :-1], allowed, tau, tokens[:, 1:])
        logp = np.take_along_axis(logq, idx[..., None], axis=-1)[..., 0]  # (B, T-1)
        if ok is not None:
            logp[~ok] = -np.inf  # target outside the allowed set
        if keep_cache:
            cache.probs = np.exp(logq)  # (B, T-1, K), for the backward
            cache.probs_of = "logprobs"
            cache.restriction = Restriction(allowed, tau, idx, ok)
            self._cache = cache
        return logp

    @single_blas_thread()
    def logprobs_backward(self, dlogp, dvalues=None, drewards=None) -> dict:
        """Gradients given ``dlogp = d loss / d logp`` from :meth:`logprobs`.

        ``d logp[b, t] / d z[b, t] = (onehot(tokens[b, t + 1]) - pi(. | y_<=t)) / temperature``
        on the allowed logits ``z``; the other logits and the last position get no gradient.
        ``dvalues`` / ``drewards`` are added as in :meth:`backward` (e.g. PPO's value loss).

        Raises
        ------
        ValueError
            If ``dlogp`` has the wrong shape, is not finite, or is nonzero where the target
            is outside ``allowed_tokens`` (its log-prob is ``-inf``).
        """
        c = self._require_cache("logprobs_backward")
        if c.probs_of != "logprobs":
            raise RuntimeError("logprobs_backward needs model.logprobs(tokens) first")
        probs = c.probs  # (B, T-1, K)
        allowed, tau, idx, ok = c.restriction
        B, T1, K = probs.shape
        dlogp = self._check_grad(dlogp, "dlogp", (B, T1))
        if ok is not None and np.any(dlogp[~ok] != 0):
            raise ValueError(
                "dlogp must be 0 where the target is outside allowed_tokens (log-prob -inf)"
            )
        V = self.config.vocab_size
        dlogits = np.zeros((B, T1 + 1, V), dtype=self.dtype)  # (B, T, V)
        dz = np.multiply(probs, -dlogp[..., None])  # (B, T-1, K), -softmax * dlogp
        np.put_along_axis(
            dz, idx[..., None], np.take_along_axis(dz, idx[..., None], -1) + dlogp[..., None], -1
        )  # + onehot * dlogp
        if tau != 1.0:
            dz *= 1.0 / tau
        if allowed is None:
            dlogits[:, :-1] = dz
        else:
            dlogits[:, :-1, allowed] = dz
        return self.backward(dlogits, dvalues, drewards)

    @single_blas_thread()
    def entropy(self, tokens, allowed_tokens=None, temperature=1.0, shared_prefix=0) -> np.ndarray:
        """Entropy of the next-token distribution at every position, shape (B, T).

        ``H[b, t] = - sum_v pi(v | tokens[b, :t + 1]) log pi(v | tokens[b, :t + 1])``, with
        the softmax over ``allowed_tokens`` at ``temperature`` as in :meth:`logprobs`.
        A diagnostic: keeps no backward cache (the last forward's cache is left as it was).
        ``shared_prefix`` as in :meth:`forward`.
        """
        tokens = self.check_tokens(tokens)
        allowed = check_allowed_tokens(allowed_tokens, self.config.vocab_size)
        tau = check_positive(temperature, "temperature")
        shared_prefix = self._check_shared_prefix(shared_prefix, tokens.shape[1])
        logits, _ = self._forward(tokens, shared_prefix)  # (B, T, V)
        logq, _, _ = restricted_log_softmax(logits, allowed, tau)  # (B, T, K)
        return -np.einsum("btk,btk->bt", np.exp(logq), logq)  # (B, T)

    @single_blas_thread()
    def log_distributions(self, tokens) -> np.ndarray:
        """Full next-token log-distributions ``log_softmax(logits)``, shape (B, T, V).

        For exact per-token KL to a reference model:
        ``KL_t = sum_v exp(logq[b, t, v]) (logq[b, t, v] - logq_ref[b, t, v])``.
        """
        tokens = self.check_tokens(tokens)
        logits, self._cache = self._forward(tokens)  # (B, T, V)
        logq = log_softmax(logits)  # (B, T, V)
        self._cache.probs = np.exp(logq)  # (B, T, V)
        self._cache.probs_of = "log_distributions"
        return logq

    @single_blas_thread()
    def log_distributions_backward(self, dlogq, dvalues=None, drewards=None) -> dict:
        """Gradients given ``d loss / d logq`` for :meth:`log_distributions`' output.

        Log-softmax backward: ``dlogits = dlogq - softmax * sum_v dlogq``.
        """
        c = self._require_cache("log_distributions_backward")
        if c.probs_of != "log_distributions":
            raise RuntimeError("log_distributions_backward needs model.log_distributions first")
        probs = c.probs  # (B, T, V)
        dlogq = self._check_grad(dlogq, "dlogq", probs.shape)
        dlogits = dlogq - probs * dlogq.sum(axis=-1, keepdims=True)  # (B, T, V)
        return self.backward(dlogits, dvalues, drewards)

    # --------------------------------------------------------- incremental decoding

    def init_kv_cache(self, batch_size: int, capacity: int | None = None) -> KVCache:
        """An empty :class:`KVCache` for ``batch_size`` sequences of up to ``capacity``
        positions (default ``n_ctx``)."""
        B = check_int(batch_size, "batch_size")
        cfg = self.config
        cap = cfg.n_ctx if capacity is None else check_int(capacity, "capacity")
        if cap > cfg.n_ctx:
            raise ValueError(f"capacity must be <= n_ctx={cfg.n_ctx}, got {cap}")
        NH, hs = cfg.n_head, cfg.head_size
        return KVCache(
            config=cfg,
            kT=[np.zeros((B, NH, hs, cap), dtype=self.dtype) for _ in range(cfg.n_layer)],
            v=[np.zeros((B, NH, cap, hs), dtype=self.dtype) for _ in range(cfg.n_layer)],
        )

    def check_kv_cache(self, kv, batch_size: int, n_new: int) -> None:
        """Raise unless ``kv`` is a cache of this model's config and dtype, with
        ``batch_size`` rows and room for ``n_new`` more positions.

        Raises
        ------
        TypeError
            If ``kv`` is not a :class:`KVCache`.
        ValueError
            Naming what differs: config, number of layers, shape, dtype, rows or room.
        """
        if not isinstance(kv, KVCache):
            raise TypeError(f"kv must be a KVCache, got {type(kv).__name__}")
        cfg = self.config
        if kv.config != cfg:
            raise ValueError(f"kv was made for {kv.config}, not this model's {cfg}")
        if len(kv.kT) != cfg.n_layer or len(kv.v) != cfg.n_layer:
            raise ValueError(
                f"kv must hold {cfg.n_layer} layers, got {len(kv.kT)} keys, {len(kv.v)} values"
            )
        if not all(isinstance(a, np.ndarray) for a in (*kv.kT, *kv.v)):
            raise ValueError("kv.kT and kv.v must hold numpy arrays")
        if kv.v[0].shape[0] != batch_size:
            raise ValueError(
                f"tokens have B={batch_size} rows but the cache has {kv.v[0].shape[0]}"
            )
        cap = kv.v[0].shape[2] if kv.v[0].ndim == 4 else -1
        NH, hs = cfg.n_head, cfg.head_size
        want_k, want_v = (batch_size, NH, hs, cap), (batch_size, NH, cap, hs)
        for name, arrays, want in (("kT", kv.kT, want_k), ("v", kv.v, want_v)):
            for arr in arrays:
                if arr.shape != want or not 1 <= cap <= cfg.n_ctx:
                    raise ValueError(f"kv.{name} arrays must have shape {want}, got {arr.shape}")
                if arr.dtype != self.dtype:
                    raise ValueError(f"kv arrays must have dtype {self.dtype}, got {arr.dtype}")
        length = kv.length
        if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 0:
            raise ValueError(f"kv.length must be an int >= 0, got {length!r}")
        if length + n_new > cap:
            where = "n_ctx" if cap == cfg.n_ctx else "its capacity"
            raise ValueError(f"cache holds {length} positions; {n_new} more exceed {where}={cap}")

    @single_blas_thread()
    def forward_step(self, tokens, kv: KVCache) -> np.ndarray:
        """Logits of new tokens given the cached past; appends their keys and values.

        Same numbers as :meth:`forward` on the whole sequence (up to float rounding), at
        the cost of the new positions only. Keeps no backward cache.

        Parameters
        ----------
        tokens : ndarray of int, shape (B, T_new)
            The next ``T_new`` tokens (the prompt on the first call, then one at a time).
        kv : KVCache
            From :meth:`init_kv_cache` of a model with the same config and dtype, advanced
            in place.

        Returns
        -------
        logits : ndarray of shape (B, T_new, V)

        Raises
        ------
        ValueError
            For bad tokens, or a cache of another shape, dtype or config, or without room.
        """
        tokens = self.check_tokens(tokens)
        B, Tn = tokens.shape
        self.check_kv_cache(kv, B, Tn)
        return self._forward_step(tokens, kv)

    def _forward_step(self, tokens, kv: KVCache) -> np.ndarray:
        """:meth:`forward_step` on validated tokens: the blocks of :meth:`forward`, each
        reading and extending its layer of the cache, on row shards like :meth:`forward`
        (each shard writes its own rows of the cache)."""
        B, Tn = tokens.shape
        t0 = kv.length
        shards = row_shards(B, Tn)
        if len(shards) == 1:
            logits = self._step_rows(tokens, kv.kT, kv.v, t0)
        else:
            args = [(tokens[s], [k[s] for k in kv.kT], [v[s] for v in kv.v], t0) for s in shards]
            logits = np.concatenate(map_shards(self._step_rows, args))  # (B, Tn, V)
        kv.length = t0 + Tn
        return logits

    def _step_rows(self, tokens, kT, v, t0) -> np.ndarray:
        """Logits (B, Tn, V) of new tokens for some rows of a cache (views ``kT``, ``v``)."""
        B, Tn = tokens.shape
        p = self.params
        x = p["wte"][tokens] + p["wpe"][t0 : t0 + Tn]  # (B, Tn, C)
        for i, bp in enumerate(self._block_params):
            x, _ = block_forward(x, bp, self.config.n_head, LayerKV(kT[i], v[i], t0))
        C = self.config.n_embd
        xf, _ = layernorm_forward(x.reshape(B * Tn, C), p["ln_f.weight"], p["ln_f.bias"])
        return (xf @ p["wte"].T).reshape(B, Tn, -1)  # (B Tn, C) @ (C, V) -> (B, Tn, V)

    # ------------------------------------------------------------------ checkpoints

    def save(self, path) -> None:
        """Write a verified safetensors checkpoint (:func:`rlhf_toy.gpt.checkpoint.save`)."""
        save(self, path)

    @classmethod
    def load(cls, path) -> GPT:
        """Read a checkpoint written by :meth:`save`, verifying its digests and weights
        (:func:`rlhf_toy.gpt.checkpoint.read_checkpoint`, which lists the checks)."""
        ck = read_checkpoint(path)
        model = cls(ck.config, dtype=ck.dtype, heads=ck.heads)
        model.params.update(ck.params)
        return model

    def config_dict(self) -> dict:
        """The config as a plain dict (JSON-ready)."""
        return asdict(self.config)


def load(path) -> GPT:
    """Read a checkpoint: ``GPT.load(path)``.

    Parameters
    ----------
    path : str or pathlib.Path

    Returns
    -------
    GPT
    """
    return GPT.load(path)
