"""Sampling responses from the GPT: the rollouts of PPO, GRPO and best-of-n.

``sample`` extends a batch of prompts token by token, with temperature and top-k, stopping
each row at its end-of-sequence token. It returns, for every generated token, two
log-probabilities:

- ``logprobs``: under the model itself (temperature 1, no top-k), ``log pi(y_t | x, y_<t)``.
  This is what RLHF needs: the "old" policy of PPO's ratio, the KL to the reference, and
  the quantities the losses differentiate are all log-probs of ``pi``;
- ``sample_logprobs``: under the distribution actually sampled from (tempered, top-k
  truncated); equal to ``logprobs`` when ``temperature=1`` and ``top_k=None``. Use it for
  importance weights that correct for the sampler.

With ``use_cache=True`` the prompt is encoded once and each new token costs one position
(:meth:`GPT.forward_step`, a KV cache); ``use_cache=False`` reruns the full forward on the
growing sequence. Both draw the same random numbers in the same order, so they return the
same samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import as_rng, check_int, check_positive
from .layers import log_softmax
from .model import check_allowed_tokens, check_token_id
from .parallel import single_blas_thread

__all__ = ["SampleResult", "sample"]


@dataclass
class SampleResult:
    """Output of :func:`sample` (``B`` prompts of length ``P``, ``N = max_new_tokens``)."""

    tokens: np.ndarray  # (B, P + N) int: prompt then response; after EOS, pad_token
    logprobs: np.ndarray  # (B, N): log pi(token) under the model at temperature 1; 0 where masked
    sample_logprobs: np.ndarray  # (B, N): log-prob under the tempered / top-k sampler; 0 masked
    mask: np.ndarray  # (B, N) float: 1 for generated tokens up to and including EOS, 0 after

    @property
    def prompt_len(self) -> int:
        """``P``."""
        return self.tokens.shape[1] - self.mask.shape[1]

    @property
    def response(self) -> np.ndarray:
        """The generated part of ``tokens``, shape (B, N)."""
        return self.tokens[:, self.prompt_len :]

    @property
    def lengths(self) -> np.ndarray:
        """Number of generated tokens per row (EOS included), shape (B,)."""
        return self.mask.sum(axis=1).astype(np.intp)


@single_blas_thread()
def sample(
    model,
    prompts,
    max_new_tokens,
    rng,
    temperature=1.0,
    top_k=None,
    eos_token=None,
    use_cache=True,
    allowed_tokens=None,
    pad_token=None,
    n_responses=1,
) -> SampleResult:
    """Sample ``max_new_tokens`` continuations of each prompt.

    At each step, with ``z`` the model's next-token logits (restricted to
    ``allowed_tokens`` if given), ``q(v) ∝ exp(z_v / temperature)`` restricted to the
    ``top_k`` largest ``z`` (ties at the k-th value kept), and the token is drawn by inverse
    CDF from one uniform per row.

    Parameters
    ----------
    model : GPT
    prompts : ndarray of int, shape (B, P), ``P >= 1``
    max_new_tokens : int >= 1
        ``N``; ``P + N`` must not exceed ``model.config.n_ctx``.
    rng : numpy.random.Generator or int
    temperature : float > 0, default 1.0
    top_k : int >= 1, optional
        Values above the number of candidate tokens mean no truncation.
    eos_token : int, optional
        A row stops after emitting it. Sampling stops early once every row has stopped.
    use_cache : bool, default True
        Incremental decoding with a KV cache; ``False`` recomputes the full forward.
    allowed_tokens : ndarray of int, shape (K,), optional
        Restricted output alphabet: other tokens have probability 0, and ``logprobs`` is
        the log-softmax over this set (as :meth:`GPT.logprobs` with the same argument).
        Must contain ``eos_token``.
    pad_token : int, optional
        Fills a row after its EOS (mask 0). Defaults to ``eos_token`` (or 0 without one).
    n_responses : int >= 1, default 1
        Responses per prompt; rows are prompt-major (row ``i * n + j`` is response ``j``
        of prompt ``i``), the same as sampling ``np.repeat(prompts, n, axis=0)``, but each
        prompt is encoded once and its KV cache branched.

    Returns
    -------
    SampleResult

    Raises
    ------
    ValueError
        For bad prompts, ``P + N > n_ctx``, or out-of-range options.
    """
    rng = as_rng(rng)
    cfg = model.config
    prompts = model.check_tokens(prompts, name="prompts")
    N = check_int(max_new_tokens, "max_new_tokens")
    n = check_int(n_responses, "n_responses")
    temperature = check_positive(temperature, "temperature")
    B, P = prompts.shape[0] * n, prompts.shape[1]
    if P + N > cfg.n_ctx:
        raise ValueError(
            f"prompt length {P} + max_new_tokens {N} = {P + N} exceeds n_ctx={cfg.n_ctx}"
        )
    allowed = check_allowed_tokens(allowed_tokens, cfg.vocab_size)
    K = cfg.vocab_size if allowed is None else allowed.size
    if top_k is not None:
        top_k = min(check_int(top_k, "top_k"), K)
    eos_token = check_token_id(eos_token, "eos_token", cfg.vocab_size)
    pad_token = check_token_id(pad_token, "pad_token", cfg.vocab_size)
    if eos_token is not None and allowed is not None and eos_token not in allowed:
        raise ValueError(f"eos_token {eos_token} must be one of allowed_tokens")
    if pad_token is None:
        pad_token = 0 if eos_token is None else eos_token

    tokens = np.empty((B, P + N), dtype=np.intp)  # (B, P + N)
    tokens[:, :P] = np.repeat(prompts, n, axis=0)
    logprobs = np.zeros((B, N), dtype=model.dtype)  # (B, N)
    sample_logprobs = np.zeros((B, N), dtype=model.dtype)  # (B, N)
    mask = np.zeros((B, N), dtype=model.dtype)  # (B, N)
    done = np.zeros(B, dtype=bool)  # (B,)
    rows = np.arange(B)

    if use_cache:
        kv = model.init_kv_cache(prompts.shape[0], capacity=P + N)
        first = model.forward_step(prompts, kv)[:, -1]  # (B / n, V): each prompt once
        if n > 1:
            kv = kv.take(np.repeat(np.arange(prompts.shape[0]), n))  # (B, ...) branched
            first = np.repeat(first, n, axis=0)  # (B, V)
    for t in range(N):
        if use_cache:
            new = tokens[:, P + t - 1 : P + t]  # (B, 1)
            logits = first if t == 0 else model.forward_step(new, kv)[:, -1]  # (B, V)
        else:
            logits = model.forward(tokens[:, : P + t])[:, -1]  # (B, V)
        if allowed is not None:
            logits = logits[:, allowed]  # (B, K)
        logits = logits.astype(np.float64)  # (B, K); sampling arithmetic in float64
        logq = log_softmax(logits)  # (B, K), the model at temperature 1
        if temperature == 1.0 and top_k is None:
            logs = logq  # the sampler is the model
        else:
            logs = log_softmax(_truncate(logits / temperature, top_k))  # (B, K)
        u = rng.random(B)  # (B,), one uniform per row, drawn even for finished rows
        cdf = np.cumsum(np.exp(logs), axis=-1)  # (B, K)
        nxt = (cdf < u[:, None] * cdf[:, -1:]).sum(axis=-1)  # (B,), inverse CDF
        nxt = np.minimum(nxt, K - 1)
        if logs is not logq:  # the model itself (finite logits) gives no token probability 0
            nxt = _first_allowed(nxt, logs)  # never a top-k-excluded token at a CDF plateau
        live = ~done  # (B,)
        token = nxt if allowed is None else allowed[nxt]  # (B,) token ids
        tokens[:, P + t] = np.where(live, token, pad_token)
        logprobs[:, t] = np.where(live, logq[rows, nxt], 0.0)
        sample_logprobs[:, t] = np.where(live, logs[rows, nxt], 0.0)
        mask[:, t] = live
        if eos_token is not None:
            done |= token == eos_token
            if done.all():
                tokens[:, P + t + 1 :] = pad_token  # stop early, pad the rest
                break
    return SampleResult(tokens, logprobs, sample_logprobs, mask)


def _truncate(z, top_k):
    """Logits with everything below the k-th largest per row set to ``-inf``."""
    if top_k is None or top_k >= z.shape[-1]:
        return z
    kth = np.partition(z, -top_k, axis=-1)[:, -top_k, None]  # (B, 1)
    return np.where(z >= kth, z, -np.inf)  # (B, V)


def _first_allowed(idx, logs):
    """Move an index that landed on a zero-probability token to the next allowed one.

    With float rounding, ``u * total`` can equal a plateau of the CDF made by ``-inf``
    entries; the inverse CDF then points at an excluded token. Rare; fixed row by row.
    """
    bad = ~np.isfinite(logs[np.arange(len(idx)), idx])
    for b in np.flatnonzero(bad):
        allowed = np.flatnonzero(np.isfinite(logs[b]))
        later = allowed[allowed >= idx[b]]
        idx[b] = later[0] if later.size else allowed[-1]
    return idx
