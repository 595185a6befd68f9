"""Sampling: the KV cache reproduces the full forward, cached and uncached sampling agree,
the returned log-probs are the model's, EOS handling, and the sampler's distribution."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_toy.gpt import GPT, GPTConfig, SampleResult, sample
from rlhf_toy.gpt.layers import log_softmax

CFG = GPTConfig(vocab_size=6, n_ctx=10, n_embd=8, n_layer=2, n_head=2)


def random_model(seed=0, dtype=np.float64, scale=0.5, config=CFG):
    model = GPT(config, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 100)
    for p in model.params.values():
        p += rng.normal(scale=scale, size=p.shape).astype(dtype)
    return model


@given(seed=st.integers(0, 1000), P=st.integers(1, 4), chunk=st.integers(1, 3))
def test_kv_cache_logits_equal_full_forward_at_every_step(seed, P, chunk):
    model = random_model(seed)
    tokens = np.random.default_rng(seed).integers(0, CFG.vocab_size, size=(3, CFG.n_ctx))
    full = model.forward(tokens)  # (B, n_ctx, V)
    kv = model.init_kv_cache(3)
    step = model.forward_step(tokens[:, :P], kv)  # prefill the prompt
    np.testing.assert_allclose(step, full[:, :P], rtol=1e-10, atol=1e-12)
    t = P
    while t < CFG.n_ctx:  # then chunks of new tokens
        n = min(chunk, CFG.n_ctx - t)
        step = model.forward_step(tokens[:, t : t + n], kv)
        np.testing.assert_allclose(step, full[:, t : t + n], rtol=1e-10, atol=1e-12)
        t += n
    assert kv.length == CFG.n_ctx
    with pytest.raises(ValueError, match="exceed n_ctx"):
        model.forward_step(tokens[:, :1], kv)


@settings(max_examples=10)
@given(seed=st.integers(0, 1000), dtype=st.sampled_from([np.float32, np.float64]))
def test_cached_and_uncached_sampling_are_identical(seed, dtype):
    model = random_model(seed, dtype=dtype)
    prompts = np.random.default_rng(seed).integers(0, CFG.vocab_size, size=(4, 3))
    kw = dict(temperature=0.8, top_k=4, eos_token=0)
    a = sample(model, prompts, 7, rng=seed, use_cache=True, **kw)
    b = sample(model, prompts, 7, rng=seed, use_cache=False, **kw)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.mask, b.mask)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=tol)
    np.testing.assert_allclose(a.sample_logprobs, b.sample_logprobs, atol=tol)


def test_logprobs_are_the_models_and_the_samplers():
    model = random_model(3)
    prompts = np.array([[1, 2], [3, 4], [5, 5]])
    P, N = 2, 6
    res = sample(model, prompts, N, rng=0, temperature=1.0)
    assert isinstance(res, SampleResult)
    assert res.tokens.shape == (3, P + N) and res.mask.shape == res.logprobs.shape == (3, N)
    np.testing.assert_array_equal(res.tokens[:, :P], prompts)
    np.testing.assert_array_equal(res.response, res.tokens[:, P:])
    assert np.all(res.mask == 1) and res.prompt_len == P
    logp = model.logprobs(res.tokens)[:, P - 1 :]  # log pi(y_t | x, y_<t) of the response
    np.testing.assert_allclose(res.logprobs, logp, rtol=1e-10)
    np.testing.assert_allclose(res.sample_logprobs, res.logprobs, rtol=1e-12)
    hot = sample(model, prompts, N, rng=0, temperature=0.5, top_k=2)
    logq = model.log_distributions(hot.tokens)[:, P - 1 : -1]  # (B, N, V)
    np.testing.assert_allclose(
        hot.logprobs, np.take_along_axis(logq, hot.response[..., None], -1)[..., 0], rtol=1e-10
    )
    z = log_softmax(logq / 0.5)
    kth = np.sort(z, -1)[..., -2:-1]
    z = log_softmax(np.where(z >= kth, z, -np.inf))
    expected = np.take_along_axis(z, hot.response[..., None], -1)[..., 0]
    np.testing.assert_allclose(hot.sample_logprobs, expected, rtol=1e-10, atol=1e-12)
    assert not np.allclose(hot.sample_logprobs, hot.logprobs)


def test_top_k_1_is_greedy():
    model = random_model(4)
    prompts = np.array([[0], [1], [2]])
    res = sample(model, prompts, 5, rng=1, top_k=1)
    logits = model.forward(res.tokens)[:, :-1]
    np.testing.assert_array_equal(res.response, logits.argmax(-1)[:, 0:])
    np.testing.assert_array_equal(res.sample_logprobs, 0.0)


@given(seed=st.integers(0, 1000))
def test_eos_stops_each_row_and_pads(seed):
    small = GPTConfig(vocab_size=3, n_ctx=12, n_embd=4, n_layer=1, n_head=1)
    model = random_model(seed, config=small, scale=0.3)
    prompts = np.random.default_rng(seed).integers(1, 3, size=(5, 2))
    res = sample(model, prompts, 10, rng=seed, eos_token=0)
    assert res.tokens.shape == (5, 12)
    for row, m, lp in zip(res.response, res.mask, res.logprobs, strict=True):
        hits = np.flatnonzero(row == 0)
        n = hits[0] + 1 if hits.size else len(row)  # generated up to and including EOS
        np.testing.assert_array_equal(m, np.arange(len(row)) < n)
        assert np.all(row[n:] == 0) and np.all(lp[n:] == 0) and np.all(lp[:n] < 0)
    np.testing.assert_array_equal(res.lengths, res.mask.sum(1))


def test_sampling_stops_early_when_every_row_is_done():
    model = GPT(CFG, seed=0)
    eos = 2
    model.params["ln_f.weight"][:] = 0.0
    model.params["ln_f.bias"][:] = (
        10.0 * model.params["wte"][eos] / np.abs(model.params["wte"][eos]).max()
    )  # every logit favours EOS overwhelmingly
    model.params["wte"][eos] *= 50.0
    res = sample(model, np.array([[1], [3]]), 8, rng=0, eos_token=eos)
    assert res.tokens.shape == (2, 9)
    np.testing.assert_array_equal(res.tokens[:, 1:], eos)
    np.testing.assert_array_equal(res.mask[:, 0], 1)
    np.testing.assert_array_equal(res.mask[:, 1:], 0)


def test_one_step_frequencies_match_the_tempered_top_k_distribution():
    model = random_model(7, scale=1.0)
    B = 20_000
    prompts = np.full((B, 2), 3)
    res = sample(model, prompts, 1, rng=123, temperature=0.7, top_k=4)
    z = model.forward(prompts[:1])[0, -1] / 0.7
    z[np.argsort(z)[:-4]] = -np.inf
    p = np.exp(log_softmax(z))
    freq = np.bincount(res.response[:, 0], minlength=CFG.vocab_size) / B
    assert np.all(freq[p == 0] == 0)
    np.testing.assert_allclose(freq, p, atol=4 * np.sqrt(p * (1 - p) / B).max() + 1e-3)


def test_sampling_is_reproducible_and_validates():
    model = random_model(8, dtype=np.float32)
    prompts = np.array([[1, 2, 3]])
    a = sample(model, prompts, 4, rng=9)
    b = sample(model, prompts, 4, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert a.logprobs.dtype == np.float32
    with pytest.raises(ValueError, match="exceeds n_ctx"):
        sample(model, prompts, 8, rng=0)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, prompts, 2, rng=0, temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        sample(model, prompts, 2, rng=0, top_k=0)
    with pytest.raises(ValueError, match="eos_token"):
        sample(model, prompts, 2, rng=0, eos_token=6)
    with pytest.raises(ValueError, match="max_new_tokens"):
        sample(model, prompts, 0, rng=0)
    with pytest.raises(ValueError, match="prompts"):
        sample(model, np.array([1, 2]), 2, rng=0)
    with pytest.raises(TypeError, match="rng"):
        sample(model, prompts, 2, rng=None)
