"""A shared prefix (a prompt and several responses to it) computed once: the same log-probs
and the same gradients as computing every row whole, for any grouping of the rows, any
prefix length, sharded or not; and the layers' ``past`` against central differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_toy.gpt import GPT, GPTConfig, parallel
from rlhf_toy.gpt.layers import (
    attention_backward,
    attention_forward,
    block_backward,
    block_forward,
    encoder_backward,
    encoder_forward,
)

CONFIG = GPTConfig(vocab_size=9, n_ctx=10, n_embd=8, n_layer=2, n_head=2)


def perturbed(seed=0, heads=("value",)):
    model = GPT(CONFIG, seed=seed, dtype=np.float64, heads=heads)
    rng = np.random.default_rng(seed + 1)
    for p in model.params.values():
        p += rng.normal(scale=0.3, size=p.shape)
    return model


def numerical_grad(f, x, dout, eps=1e-6):
    """Central differences of ``sum(f(x) * dout)`` with respect to ``x``."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = (f(x) * dout).sum()
        x[i] = old - eps
        down = (f(x) * dout).sum()
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


@st.composite
def batches(draw):
    """Rows ``[prompt_rows[b], continuation_b]``: a few prompts, repeated in any order."""
    seed = draw(st.integers(0, 10**6))
    rng = np.random.default_rng(seed)
    n_prompts = draw(st.integers(1, 3))
    P = draw(st.integers(1, 5))
    T = draw(st.integers(P + 1, CONFIG.n_ctx))
    rows = np.array(draw(st.lists(st.integers(0, n_prompts - 1), min_size=1, max_size=7)))
    prompts = rng.integers(0, CONFIG.vocab_size, size=(n_prompts, P))
    rest = rng.integers(0, CONFIG.vocab_size, size=(rows.size, T - P))
    return seed, np.concatenate([prompts[rows], rest], axis=1), P


@settings(max_examples=25)
@given(batch=batches(), n_threads=st.sampled_from([1, 2, 3]))
def test_shared_prefix_gives_the_same_logprobs_and_gradients(batch, n_threads):
    seed, tokens, P = batch
    model = perturbed(seed % 100)
    rng = np.random.default_rng(seed)
    dlogp = rng.normal(size=(tokens.shape[0], tokens.shape[1] - 1))
    dvalues = rng.normal(size=tokens.shape)
    allowed = np.arange(CONFIG.vocab_size)
    before = (parallel.get_num_threads(), parallel.MIN_TOKENS_PER_SHARD)
    try:
        parallel.set_num_threads(n_threads)
        parallel.MIN_TOKENS_PER_SHARD = 1  # every batch cut into shards
        whole = model.logprobs(tokens, allowed, 0.7)
        values = model.values()
        g_whole = model.logprobs_backward(dlogp, dvalues=dvalues)
        shared = model.logprobs(tokens, allowed, 0.7, shared_prefix=P)
        np.testing.assert_allclose(model.values(), values, rtol=1e-12, atol=1e-12)
        g_shared = model.logprobs_backward(dlogp, dvalues=dvalues)
    finally:
        parallel.set_num_threads(before[0])
        parallel.MIN_TOKENS_PER_SHARD = before[1]
    np.testing.assert_allclose(shared, whole, rtol=1e-12, atol=1e-12)
    for name, g in g_whole.items():
        np.testing.assert_allclose(g_shared[name], g, rtol=1e-10, atol=1e-11, err_msg=name)


def test_shared_prefix_forward_equals_the_whole_forward_for_grouped_and_mixed_rows():
    model = perturbed(3)
    rng = np.random.default_rng(0)
    prompts = rng.integers(0, 9, size=(4, 3))
    for rows in ([0, 0, 1, 1, 2, 2], [2, 0, 1, 0, 2, 1], [0, 1, 2, 3], [1, 1, 1]):
        rows = np.array(rows)
        tokens = np.concatenate([prompts[rows], rng.integers(0, 9, (rows.size, 4))], axis=1)
        np.testing.assert_allclose(model.forward(tokens, shared_prefix=3),
                                   model.forward(tokens), rtol=1e-12, atol=1e-12)


def test_a_frozen_call_keeps_no_cache_and_leaves_the_last_one():
    model = perturbed(1)
    rng = np.random.default_rng(1)
    a = rng.integers(0, 9, size=(3, 6))
    b = rng.integers(0, 9, size=(2, 5))
    dlogp = rng.normal(size=(3, 5))
    model.logprobs(a)
    expected = model.logprobs_backward(dlogp)
    model.logprobs(a)
    frozen = model.logprobs(b, shared_prefix=2, keep_cache=False)
    np.testing.assert_allclose(frozen, model.logprobs(b, keep_cache=False), atol=1e-12)
    got = model.logprobs_backward(dlogp)  # still the gradient of the call on ``a``
    for name, g in expected.items():
        np.testing.assert_array_equal(got[name], g)
    with pytest.raises(TypeError, match="keep_cache must be a bool"):
        model.logprobs(a, keep_cache=1)


@pytest.mark.parametrize("bad", [6, 7, -1])
def test_shared_prefix_must_leave_a_position(bad):
    model = perturbed(0)
    tokens = np.zeros((2, 6), dtype=int)
    with pytest.raises(ValueError, match="shared_prefix must be"):
        model.logprobs(tokens, shared_prefix=bad)
    with pytest.raises(TypeError, match="shared_prefix"):
        model.forward(tokens, shared_prefix=1.5)


@given(seed=st.integers(0, 1000), T=st.integers(1, 3), Tp=st.integers(1, 3))
def test_attention_with_a_past_matches_the_whole_sequence_and_central_differences(seed, T, Tp):
    rng = np.random.default_rng(seed)
    B, NH, hs = 2, 2, 3
    C = NH * hs
    qkv_past, qkv = rng.normal(size=(B, Tp, 3 * C)), rng.normal(size=(B, T, 3 * C))
    whole, _ = attention_forward(np.concatenate([qkv_past, qkv], axis=1), NH)
    _, past_cache = attention_forward(qkv_past, NH)
    past = (past_cache.k.copy(), past_cache.v.copy())  # (B, NH, Tp, hs) each
    out, cache = attention_forward(qkv, NH, past=past)
    np.testing.assert_allclose(out, whole[:, Tp:], rtol=1e-12, atol=1e-12)
    dout = rng.normal(size=out.shape)
    dkv = (rng.normal(size=(B, NH, T, hs)), rng.normal(size=(B, NH, T, hs)))
    dqkv, (dk_past, dv_past) = attention_backward(dout, cache, dkv)

    def f(z):
        return attention_forward(z, NH, past=past)[0]

    # the extra key/value gradients enter as d/dk <dkv, k>: k and v are columns of qkv
    extra = np.zeros((B, T, 3, NH, hs))
    extra[:, :, 1], extra[:, :, 2] = dkv[0].transpose(0, 2, 1, 3), dkv[1].transpose(0, 2, 1, 3)
    expected = numerical_grad(f, qkv, dout) + extra.reshape(B, T, 3 * C)
    np.testing.assert_allclose(dqkv, expected, rtol=1e-6, atol=1e-7)
    for i, d in enumerate((dk_past, dv_past)):

        def g(z, i=i):
            p = list(past)
            p[i] = z
            return attention_forward(qkv, NH, past=tuple(p))[0]

        np.testing.assert_allclose(d, numerical_grad(g, past[i].copy(), dout), rtol=1e-6,
                                   atol=1e-7)


def test_block_with_a_past_returns_the_past_gradient():
    rng = np.random.default_rng(4)
    B, T, Tp, NH, C = 2, 3, 2, 2, 4
    p = {name: rng.normal(scale=0.5, size=shape) for name, shape in _block_shapes(C).items()}
    past = (rng.normal(size=(B, NH, Tp, C // NH)), rng.normal(size=(B, NH, Tp, C // NH)))
    x, dout = rng.normal(size=(B, T, C)), rng.normal(size=(B, T, C))
    _, cache = block_forward(x, p, NH, past=past)
    dx, _, (dk, dv) = block_backward(dout, cache)
    np.testing.assert_allclose(
        dx, numerical_grad(lambda z: block_forward(z, p, NH, past=past)[0], x, dout),
        rtol=1e-6, atol=1e-7)  # fmt: skip
    np.testing.assert_allclose(
        dk, numerical_grad(lambda z: block_forward(x, p, NH, past=(z, past[1]))[0],
                           past[0].copy(), dout), rtol=1e-6, atol=1e-7)  # fmt: skip


def _block_shapes(C):
    from rlhf_toy.gpt.layers import block_param_spec

    return dict(block_param_spec(C))


def test_encoder_at_an_offset_reads_and_fills_those_positions():
    rng = np.random.default_rng(2)
    wte, wpe = rng.normal(size=(5, 3)), rng.normal(size=(8, 3))
    tokens = rng.integers(0, 5, size=(2, 3))
    out, cache = encoder_forward(tokens, wte, wpe, t0=4)
    np.testing.assert_array_equal(out, wte[tokens] + wpe[4:7])
    dout = rng.normal(size=out.shape)
    _, dwpe = encoder_backward(dout, cache)
    np.testing.assert_allclose(dwpe[4:7], dout.sum(axis=0))
    assert np.all(dwpe[:4] == 0) and np.all(dwpe[7:] == 0)
