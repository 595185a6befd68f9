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
from .parallel import single_threaded_blas

__all__ = ["SampleResult", "sample"]


@dataclass
class SampleResult:
    """Output of :func:`sample` (``B`` prompts of length ``P``, ``N = max_new_tokens``)."""

    tokens: np.ndarray  # (B, P + N) int: prompt then response; after EOS, eos_token
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


@single_threaded_blas
def sample(
    model,
    prompts,
    max_new_tokens,
    rng,
    temperature=1.0,
    top_k=None,
    eos_token=None,
    use_cache=True,
) -> SampleResult:
    """Sample ``max_new_tokens`` continuations of each prompt.

    At each step, with ``z`` the model's next-token logits,
    ``q(v) ∝ exp(z_v / temperature)`` restricted to the ``top_k`` largest ``z`` (ties at the
    k-th value kept), and the token is drawn by inverse CDF from one uniform per row.

    Parameters
    ----------
    model : GPT
    prompts : ndarray of int, shape (B, P), ``P >= 1``
    max_new_tokens : int >= 1
        ``N``; ``P + N`` must not exceed ``model.config.n_ctx``.
    rng : numpy.random.Generator or int
    temperature : float > 0, default 1.0
    top_k : int >= 1, optional
        Values above the vocabulary size mean no truncation.
    eos_token : int, optional
        A row stops after emitting it; later positions hold ``eos_token`` with mask 0.
        Sampling stops early once every row has stopped (the rest is padding).
    use_cache : bool, default True
        Incremental decoding with a KV cache; ``False`` recomputes the full forward.

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
    prompts = model._check_tokens(prompts, name="prompts")
    N = check_int(max_new_tokens, "max_new_tokens")
    temperature = check_positive(temperature, "temperature")
    B, P = prompts.shape
    if P + N > cfg.n_ctx:
        raise ValueError(
            f"prompt length {P} + max_new_tokens {N} = {P + N} exceeds n_ctx={cfg.n_ctx}"
        )
    if top_k is not None:
        top_k = min(check_int(top_k, "top_k"), cfg.vocab_size)
    if eos_token is not None:
        eos_token = check_int(eos_token, "eos_token", minimum=0)
        if eos_token >= cfg.vocab_size:
            raise ValueError(f"eos_token must be in [0, {cfg.vocab_size}), got {eos_token}")

    tokens = np.empty((B, P + N), dtype=np.intp)  # (B, P + N)
    tokens[:, :P] = prompts
    logprobs = np.zeros((B, N), dtype=model.dtype)  # (B, N)
    sample_logprobs = np.zeros((B, N), dtype=model.dtype)  # (B, N)
    mask = np.zeros((B, N), dtype=model.dtype)  # (B, N)
    done = np.zeros(B, dtype=bool)  # (B,)

    kv = model.init_kv_cache(B) if use_cache else None
    for t in range(N):
        if use_cache:
            new = tokens[:, :P] if t == 0 else tokens[:, P + t - 1 : P + t]  # (B, Tn)
            logits = model._forward_step(new, kv)[:, -1]  # (B, V), tokens already checked
        else:
            logits = model._forward(tokens[:, : P + t])[0][:, -1]  # (B, V)
        logits = logits.astype(np.float64)  # (B, V); sampling arithmetic in float64
        logq = log_softmax(logits)  # (B, V), the model at temperature 1
        if temperature == 1.0 and top_k is None:
            logs = logq  # the sampler is the model
        else:
            logs = log_softmax(_truncate(logits / temperature, top_k))  # (B, V)
        u = rng.random(B)  # (B,), one uniform per row, drawn even for finished rows
        cdf = np.cumsum(np.exp(logs), axis=-1)  # (B, V)
        nxt = (cdf < u[:, None] * cdf[:, -1:]).sum(axis=-1)  # (B,), inverse CDF
        nxt = np.minimum(nxt, cfg.vocab_size - 1)
        if logs is not logq:  # the model itself (finite logits) gives no token probability 0
            nxt = _first_allowed(nxt, logs)  # never a top-k-excluded token at a CDF plateau
        live = ~done  # (B,)
        tokens[:, P + t] = np.where(live, nxt, eos_token if eos_token is not None else 0)
        rows = np.arange(B)
        logprobs[:, t] = np.where(live, logq[rows, nxt], 0.0)
        sample_logprobs[:, t] = np.where(live, logs[rows, nxt], 0.0)
        mask[:, t] = live
        if eos_token is not None:
            done |= nxt == eos_token
            if done.all():
                tokens[:, P + t + 1 :] = eos_token  # stop early, pad the rest
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
