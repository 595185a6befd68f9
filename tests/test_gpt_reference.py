"""The fast paths against the plain-numpy reference: the full forward, KV-cache decoding
(prefill, chunks, single tokens, branched caches), restricted log-probs, sampling's
log-probs and the exact enumeration."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_toy.gpt import GPT, GPTConfig, enumerate_continuations, sample
from rlhf_toy.gpt.layers import LayerKV, attention_forward, block_forward
from rlhf_toy.gpt.reference import reference_hidden, reference_logits, reference_logprobs

CFG = GPTConfig(vocab_size=7, n_ctx=9, n_embd=8, n_layer=2, n_head=2)


def perturbed(seed, heads=(), config=CFG):
    model = GPT(config, seed=seed, dtype=np.float64, heads=heads)
    rng = np.random.default_rng(seed + 3)
    for p in model.params.values():
        p += rng.normal(scale=0.4, size=p.shape)
    return model


@settings(max_examples=15)
@given(seed=st.integers(0, 1000), P=st.integers(1, 5))
def test_decoding_one_token_at_a_time_matches_the_reference(seed, P):
    model = perturbed(seed)
    tokens = np.random.default_rng(seed).integers(0, CFG.vocab_size, size=(3, CFG.n_ctx))
    ref = reference_logits(model.params, CFG, tokens)  # (B, n_ctx, V)
    kv = model.init_kv_cache(3)
    np.testing.assert_allclose(model.forward_step(tokens[:, :P], kv), ref[:, :P], rtol=1e-10)
    for t in range(P, CFG.n_ctx):
        step = model.forward_step(tokens[:, t : t + 1], kv)[:, 0]
        np.testing.assert_allclose(step, ref[:, t], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.forward(tokens), ref, rtol=1e-10, atol=1e-12)


@settings(max_examples=10)
@given(seed=st.integers(0, 1000))
def test_branched_cache_matches_the_reference(seed):
    model = perturbed(seed)
    rng = np.random.default_rng(seed)
    prompts = rng.integers(0, CFG.vocab_size, size=(2, 3))
    kv = model.init_kv_cache(2, capacity=6)
    model.forward_step(prompts, kv)
    rows = np.array([0, 1, 1, 0, 1])
    nxt = rng.integers(0, CFG.vocab_size, size=(5, 2))
    branched = kv.take(rows)
    got = model.forward_step(nxt, branched)
    ref = reference_logits(model.params, CFG, np.concatenate([prompts[rows], nxt], 1))[:, 3:]
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_attention_and_block_give_the_same_outputs_with_and_without_a_cache():
    rng = np.random.default_rng(0)
    B, T, C, NH, t0 = 2, 5, 8, 2, 3
    qkv = rng.normal(size=(B, T, 3 * C))
    full, cache = attention_forward(qkv, NH)
    kv = LayerKV(np.zeros((B, NH, C // NH, T)), np.zeros((B, NH, T, C // NH)), 0)
    head, none = attention_forward(qkv[:, :t0], NH, kv)
    tail, _ = attention_forward(qkv[:, t0:], NH, kv._replace(t_past=t0))
    assert none is None and cache is not None
    np.testing.assert_allclose(np.concatenate([head, tail], 1), full, rtol=1e-12)
    model = perturbed(1)
    x = rng.normal(size=(B, T, C))
    bp = {k[len("h.0.") :]: v for k, v in model.params.items() if k.startswith("h.0.")}
    out, _ = block_forward(x, bp, NH)
    kv = LayerKV(np.zeros((B, NH, C // NH, T)), np.zeros((B, NH, T, C // NH)), 0)
    a, _ = block_forward(x[:, :t0], bp, NH, kv)
    b, _ = block_forward(x[:, t0:], bp, NH, kv._replace(t_past=t0))
    np.testing.assert_allclose(np.concatenate([a, b], 1), out, rtol=1e-12)


@settings(max_examples=10)
@given(seed=st.integers(0, 1000), tau=st.sampled_from([1.0, 0.5]))
def test_restricted_logprobs_sampling_and_enumeration_match_the_reference(seed, tau):
    model = perturbed(seed, heads=("value",))
    allowed = np.array([0, 2, 3, 6])
    rng = np.random.default_rng(seed)
    prompts = rng.integers(0, CFG.vocab_size, size=(2, 3))
    res = sample(
        model,
        prompts,
        4,
        rng=seed,
        allowed_tokens=allowed,
        eos_token=6,
        pad_token=1,
        temperature=tau,
    )
    ref = reference_logprobs(model.params, CFG, res.tokens, allowed)[:, 2:]  # temperature 1
    np.testing.assert_allclose(res.logprobs[res.mask > 0], ref[res.mask > 0], rtol=1e-10)
    lp = model.logprobs(res.tokens, allowed, tau)
    ref_tau = reference_logprobs(model.params, CFG, res.tokens, allowed, tau)
    np.testing.assert_allclose(lp[:, 2:][res.mask > 0], ref_tau[:, 2:][res.mask > 0], rtol=1e-10)
    c = enumerate_continuations(model, prompts, 3, allowed, 6, 1, temperature=tau)
    N = len(c.responses)
    tokens = np.concatenate([np.repeat(prompts, N, 0), np.tile(c.responses, (2, 1))], 1)
    ref = reference_logprobs(model.params, CFG, tokens, allowed, tau)[:, 2:]
    ref = np.where(np.tile(c.mask, (2, 1)) > 0, ref, 0.0).sum(1).reshape(2, N)
    np.testing.assert_allclose(c.logp, ref, rtol=1e-10, atol=1e-12)
    model.forward(prompts)
    h = reference_hidden(model.params, CFG, prompts)
    np.testing.assert_allclose(
        model.values(),
        h @ model.params["value_head.weight"] + model.params["value_head.bias"],
        rtol=1e-10,
    )


def test_sharded_decoding_matches_the_reference(monkeypatch):
    from rlhf_toy.gpt import parallel

    monkeypatch.setattr(parallel, "MIN_TOKENS_PER_SHARD", 1)
    before = parallel.get_num_threads()
    parallel.set_num_threads(3)
    try:
        model = perturbed(5)
        tokens = np.random.default_rng(5).integers(0, CFG.vocab_size, size=(7, CFG.n_ctx))
        assert len(parallel.row_shards(7, 1)) == 3
        kv = model.init_kv_cache(7)
        steps = [model.forward_step(tokens[:, :4], kv)]
        steps += [model.forward_step(tokens[:, t : t + 1], kv) for t in range(4, CFG.n_ctx)]
        ref = reference_logits(model.params, CFG, tokens)
        np.testing.assert_allclose(np.concatenate(steps, 1), ref, rtol=1e-10, atol=1e-12)
    finally:
        parallel.set_num_threads(before)
