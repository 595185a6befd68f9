"""The GPT-2 forward in the plainest numpy, as the yardstick of the fast implementation.

No shards, no caches, no fused products: loops over sequences, heads and positions,
following the reference semantics listed in :mod:`rlhf_toy.gpt.layers` line by line. The
tests compare :meth:`GPT.forward`, :meth:`GPT.forward_step`, :func:`sample` and
:func:`enumerate_continuations` against it. Slow by design; use tiny models.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["reference_hidden", "reference_logits", "reference_logprobs"]


def _layer_norm(x, w, b):
    """``(x - mean) / sqrt(var + 1e-5) * w + b``, biased variance."""
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b


def _gelu(x):
    """``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``."""
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def reference_hidden(params, config, tokens) -> np.ndarray:
    """Final hidden states after ``ln_f``, shape (B, T, C), for int ``tokens`` (B, T).

    Parameters
    ----------
    params : dict of str to ndarray
        The model's parameters (:func:`~rlhf_toy.gpt.config.param_spec` names).
    config : GPTConfig
    tokens : ndarray of int of shape (B, T)

    Returns
    -------
    ndarray of shape (B, T, C)
    """
    C, NH = config.n_embd, config.n_head
    hs = C // NH
    out = []
    for seq in np.asarray(tokens):
        T = len(seq)
        x = np.array([params["wte"][tok] + params["wpe"][t] for t, tok in enumerate(seq)])
        for i in range(config.n_layer):
            P = {k[len(f"h.{i}.") :]: v for k, v in params.items() if k.startswith(f"h.{i}.")}
            h = _layer_norm(x, P["ln_1.weight"], P["ln_1.bias"])
            qkv = h @ P["attn.c_attn.weight"] + P["attn.c_attn.bias"]
            q, k, v = qkv[:, :C], qkv[:, C : 2 * C], qkv[:, 2 * C :]
            a = np.zeros((T, C))
            for head in range(NH):
                sl = slice(head * hs, (head + 1) * hs)
                for t in range(T):
                    s = np.array([q[t, sl] @ k[u, sl] for u in range(t + 1)]) / math.sqrt(hs)
                    w = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
                    a[t, sl] = w @ v[: t + 1, sl]
            x = x + a @ P["attn.c_proj.weight"] + P["attn.c_proj.bias"]
            h = _layer_norm(x, P["ln_2.weight"], P["ln_2.bias"])
            h = _gelu(h @ P["mlp.c_fc.weight"] + P["mlp.c_fc.bias"])
            x = x + h @ P["mlp.c_proj.weight"] + P["mlp.c_proj.bias"]
        out.append(_layer_norm(x, params["ln_f.weight"], params["ln_f.bias"]))
    return np.array(out)


def reference_logits(params, config, tokens) -> np.ndarray:
    """Next-token logits ``ln_f(x) @ wte.T``, shape (B, T, V).

    Parameters
    ----------
    params : dict of str to ndarray
        The model's parameters (:func:`~rlhf_toy.gpt.config.param_spec` names).
    config : GPTConfig
    tokens : ndarray of int of shape (B, T)

    Returns
    -------
    ndarray of shape (B, T, V)
    """
    return reference_hidden(params, config, tokens) @ params["wte"].T


def reference_logprobs(params, config, tokens, allowed_tokens=None, temperature=1.0):
    """``log pi(tokens[:, t + 1] | tokens[:, :t + 1])``, shape (B, T - 1).

    The logits outside ``allowed_tokens`` set to ``-inf``, divided by ``temperature``,
    log-softmax.

    Parameters
    ----------
    params : dict of str to ndarray
        The model's parameters (:func:`~rlhf_toy.gpt.config.param_spec` names).
    config : GPTConfig
    tokens : ndarray of int of shape (B, T)
    allowed_tokens : array_like of int of shape (K,), optional
    temperature : float, default 1.0

    Returns
    -------
    ndarray of shape (B, T - 1)
    """
    z = reference_logits(params, config, tokens)[:, :-1] / temperature  # (B, T-1, V)
    if allowed_tokens is not None:
        outside = ~np.isin(np.arange(config.vocab_size), allowed_tokens)
        z[..., outside] = -np.inf
    m = z.max(-1, keepdims=True)
    logq = z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))
    return np.take_along_axis(logq, np.asarray(tokens)[:, 1:, None], -1)[..., 0]
