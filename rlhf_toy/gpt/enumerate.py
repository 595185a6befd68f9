"""Every continuation of a prompt with its exact probability: a batched tree walk.

With a small output alphabet and short responses, the distribution over whole responses
``pi(y | x) = prod_t pi(y_t | x, y_<t)`` can be listed exactly instead of estimated from
samples: expectations, KL divergences and the tilted optimum ``pi_ref exp(r / beta) / Z`` of
the chapter's "Optimal policy" section are then sums over the list.

The walk goes one level (one token) at a time, for all prompts and all live prefixes at
once: one :meth:`GPT.forward_step` per level, the KV cache branched with
:meth:`KVCache.take` (each child row continues its parent's keys and values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_int, check_positive
from .layers import log_softmax
from .model import check_allowed_tokens, check_token_id
from .parallel import single_blas_thread

__all__ = ["MAX_ENUMERATED", "Continuations", "count_continuations", "enumerate_continuations"]

#: Most (prompt, continuation) pairs one call may list; more is refused up front.
MAX_ENUMERATED = 5_000_000


@dataclass
class Continuations:
    """Output of :func:`enumerate_continuations` (``N`` continuations, ``M`` new tokens).

    The continuations are the same for every prompt (they depend only on the alphabet,
    EOS and ``M``); only their probabilities differ.
    """

    responses: np.ndarray  # (N, M) int: the tokens, pad_token after EOS
    mask: np.ndarray  # (N, M) float: 1 up to and including EOS, 0 on padding
    logp: np.ndarray  # (n_prompts, N): log pi(y | x), the sum of token_logprobs
    token_logprobs: np.ndarray  # (n_prompts, N, M): log pi(y_t | x, y_<t), 0 on padding

    @property
    def lengths(self) -> np.ndarray:
        """Number of tokens of each continuation (EOS included), shape (N,)."""
        return self.mask.sum(axis=1).astype(np.intp)


def count_continuations(n_symbols: int, max_new_tokens: int, has_eos: bool) -> int:
    """Number of continuations of at most ``M`` tokens over ``K`` symbols.

    ``sum_{l=1}^{M} (K-1)^(l-1) + (K-1)^M`` with an EOS among the ``K`` symbols, ``K^M``
    without.

    Parameters
    ----------
    n_symbols : int
        ``K``.
    max_new_tokens : int
        ``M``.
    has_eos : bool
        Whether one of the symbols is an EOS that ends a continuation.

    Returns
    -------
    int

    Examples
    --------
    >>> count_continuations(8, 4, True)
    2801
    >>> count_continuations(3, 2, False)
    9
    """
    K = check_int(n_symbols, "n_symbols", maximum=MAX_ENUMERATED)
    M = check_int(max_new_tokens, "max_new_tokens", maximum=MAX_ENUMERATED)
    if not has_eos:
        return K**M
    return sum((K - 1) ** (length - 1) for length in range(1, M + 1)) + (K - 1) ** M


@single_blas_thread()
def enumerate_continuations(
    model,
    prompts,
    max_new_tokens,
    allowed_tokens=None,
    eos_token=None,
    pad_token=None,
    temperature=1.0,
) -> Continuations:
    """Every continuation of each prompt and its exact log-probability under ``model``.

    A continuation ends at its first ``eos_token`` (included), or after ``max_new_tokens``
    tokens without one. Its log-prob is ``sum_t log pi(y_t | x, y_<t)``, each factor the
    log-softmax over ``allowed_tokens`` at ``temperature`` (as :func:`sample` and
    :meth:`GPT.logprobs` with the same arguments), so ``exp(logp)`` sums to one per prompt.

    Parameters
    ----------
    model : GPT
    prompts : ndarray of int, shape (n_prompts, P)
    max_new_tokens : int >= 1
        ``M``; ``P + M`` must not exceed ``n_ctx``.
    allowed_tokens : ndarray of int, shape (K,), optional
        The output alphabet (default: the whole vocabulary); must contain ``eos_token``.
    eos_token : int, optional
    pad_token : int, optional
        Fills positions after EOS (default ``eos_token``, or 0 without one).
    temperature : float > 0, default 1.0

    Returns
    -------
    Continuations
        Ordered by length, then by the position of each token in ``allowed_tokens``
        (lexicographically).

    Raises
    ------
    ValueError
        For bad prompts or options, or more than :data:`MAX_ENUMERATED` pairs.

    Notes
    -----
    Level ``t`` runs one decoding step for all ``n_prompts x (K-1)^t`` live prefixes;
    the KV cache rows are gathered from the parents (:meth:`KVCache.take`).
    """
    cfg = model.config
    prompts = model.check_tokens(prompts, name="prompts")
    M = check_int(max_new_tokens, "max_new_tokens")
    tau = check_positive(temperature, "temperature")
    n_prompts, P = prompts.shape
    if P + M > cfg.n_ctx:
        raise ValueError(
            f"prompt length {P} + max_new_tokens {M} = {P + M} exceeds n_ctx={cfg.n_ctx}"
        )
    allowed = check_allowed_tokens(allowed_tokens, cfg.vocab_size)
    if allowed is None:
        allowed = np.arange(cfg.vocab_size)
    K = allowed.size
    eos = check_token_id(eos_token, "eos_token", cfg.vocab_size)
    pad = check_token_id(pad_token, "pad_token", cfg.vocab_size)
    if eos is not None and eos not in allowed:
        raise ValueError(f"eos_token {eos} must be one of allowed_tokens")
    if pad is None:
        pad = 0 if eos is None else eos
    N = count_continuations(K, M, eos is not None)
    if N * n_prompts > MAX_ENUMERATED:
        raise ValueError(
            f"{n_prompts} prompts x {N} continuations exceed MAX_ENUMERATED={MAX_ENUMERATED}"
        )
    e = None if eos is None else int(np.flatnonzero(allowed == eos)[0])  # EOS column
    cont = np.arange(K) if e is None else np.delete(np.arange(K), e)  # non-EOS columns
    Kc = cont.size

    resp_parts, lp_parts = [], []  # finished continuations, level by level
    prefix = np.zeros((1, 0), dtype=np.intp)  # (n_nodes, t) tokens of the live prefixes
    prefix_lp = np.zeros((n_prompts, 1, 0), dtype=np.float64)  # (n_prompts, n_nodes, t)
    kv = model.init_kv_cache(n_prompts, capacity=P + M)
    logits = model.forward_step(prompts, kv)[:, -1]  # (n_prompts, V)
    for t in range(M):
        n_nodes = prefix.shape[0]
        z = logits[:, allowed].astype(np.float64)  # (n_prompts * n_nodes, K)
        if tau != 1.0:
            z *= 1.0 / tau
        logq = log_softmax(z).reshape(n_prompts, n_nodes, K)  # (n_prompts, n_nodes, K)
        if e is not None:  # prefix + EOS ends here
            resp_parts.append(_padded(prefix, eos, M, pad))
            lp_parts.append(np.concatenate([prefix_lp, logq[:, :, e, None]], axis=2))
        children = np.concatenate(  # (n_nodes * Kc, t + 1), node-major
            [np.repeat(prefix, Kc, axis=0), np.tile(allowed[cont], n_nodes)[:, None]], axis=1
        )
        children_lp = np.concatenate(  # (n_prompts, n_nodes * Kc, t + 1)
            [
                np.repeat(prefix_lp, Kc, axis=1),
                logq[:, :, cont].reshape(n_prompts, n_nodes * Kc, 1),
            ],
            axis=2,
        )
        if t == M - 1:  # no EOS within M tokens: these end here too
            resp_parts.append(children)
            lp_parts.append(children_lp)
            break
        parents = np.repeat(np.arange(n_prompts * n_nodes), Kc)  # row of each child's parent
        kv = kv.take(parents)
        logits = model.forward_step(np.tile(children[:, -1:], (n_prompts, 1)), kv)[:, -1]
        prefix, prefix_lp = children, children_lp

    responses = np.concatenate(resp_parts)  # (N, M)
    mask = np.zeros(responses.shape, dtype=model.dtype)  # (N, M)
    token_lp = np.zeros((n_prompts, N, M), dtype=np.float64)  # (n_prompts, N, M)
    row = 0
    for r, lp in zip(resp_parts, lp_parts, strict=True):
        n, length = r.shape[0], lp.shape[2]
        mask[row : row + n, :length] = 1.0
        token_lp[:, row : row + n, :length] = lp
        row += n
    return Continuations(responses, mask, token_lp.sum(axis=2), token_lp)


def _padded(prefix, eos, M, pad):
    """``prefix + [eos]`` right-padded with ``pad`` to ``M`` tokens, shape (n, M)."""
    n, t = prefix.shape
    out = np.full((n, M), pad, dtype=np.intp)
    out[:, :t] = prefix
    out[:, t] = eos
    return out
