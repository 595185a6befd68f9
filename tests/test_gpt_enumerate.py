"""Exact enumeration of continuations, and the restricted output alphabet (allowed tokens)
with EOS / PAD: in sampling, per-token log-probs and their backward, and entropies."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_toy.gpt import GPT, GPTConfig, enumerate_continuations, sample
from rlhf_toy.gpt.enumerate import count_continuations
from rlhf_toy.gpt.layers import log_softmax

CFG = GPTConfig(vocab_size=9, n_ctx=10, n_embd=8, n_layer=2, n_head=2)
ALLOWED = np.array([1, 2, 5, 7])  # EOS = 7
EOS, PAD = 7, 0


def random_model(seed=0, dtype=np.float64, scale=0.5, config=CFG, heads=()):
    model = GPT(config, seed=seed, dtype=dtype, heads=heads)
    rng = np.random.default_rng(seed + 100)
    for p in model.params.values():
        p += rng.normal(scale=scale, size=p.shape).astype(dtype)
    return model


# ---------------------------------------------------------------- enumeration


@settings(max_examples=15)
@given(seed=st.integers(0, 1000), M=st.integers(1, 4), P=st.integers(1, 3))
def test_enumeration_probabilities_sum_to_one_and_match_logprobs(seed, M, P):
    model = random_model(seed)
    prompts = np.random.default_rng(seed).integers(0, CFG.vocab_size, size=(3, P))
    c = enumerate_continuations(model, prompts, M, ALLOWED, eos_token=EOS, pad_token=PAD)
    N = count_continuations(ALLOWED.size, M, True)
    assert c.responses.shape == c.mask.shape == (N, M) and c.logp.shape == (3, N)
    np.testing.assert_allclose(np.exp(c.logp).sum(axis=1), 1.0, rtol=1e-12)
    # every continuation is distinct, in the alphabet, ends at its first EOS or at M
    assert len({tuple(r) for r in c.responses}) == N
    for r, m in zip(c.responses, c.mask, strict=True):
        n = int(m.sum())
        assert np.all(m[:n] == 1) and np.all(m[n:] == 0) and n >= 1
        assert np.all(np.isin(r[:n], ALLOWED)) and np.all(r[n:] == PAD)
        assert (r[n - 1] == EOS) or (n == M and EOS not in r)
        assert EOS not in r[: n - 1]
    # the same log-probs as the model's restricted per-token log-probs
    tokens = np.concatenate([np.repeat(prompts, N, 0), np.tile(c.responses, (3, 1))], axis=1)
    logp = model.logprobs(tokens, allowed_tokens=ALLOWED)[:, P - 1 :]  # (3N, M)
    logp = np.where(np.tile(c.mask, (3, 1)) > 0, logp, 0.0).reshape(3, N, M)
    np.testing.assert_allclose(c.token_logprobs, logp, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c.logp, logp.sum(-1), rtol=1e-10, atol=1e-12)


def test_enumeration_without_eos_lists_every_sequence_and_matches_sampling_frequencies():
    model = random_model(3, scale=1.0)
    allowed = np.array([0, 4, 8])
    prompts = np.array([[2, 3]])
    c = enumerate_continuations(model, prompts, 2, allowed, temperature=0.8)
    assert c.responses.shape == (9, 2) and np.all(c.mask == 1)
    B = 20_000
    res = sample(model, np.repeat(prompts, B, 0), 2, rng=5, temperature=0.8, allowed_tokens=allowed)
    index = {tuple(r): i for i, r in enumerate(c.responses)}
    freq = np.bincount([index[tuple(r)] for r in res.response], minlength=9) / B
    p = np.exp(c.logp[0])
    np.testing.assert_allclose(freq, p, atol=4 * np.sqrt(p * (1 - p) / B).max() + 1e-3)


def test_enumeration_validates():
    model = random_model(0)
    prompts = np.array([[1, 2]])
    with pytest.raises(ValueError, match="eos_token"):
        enumerate_continuations(model, prompts, 2, ALLOWED, eos_token=3)
    with pytest.raises(ValueError, match="allowed_tokens"):
        enumerate_continuations(model, prompts, 2, np.array([1, 1]))
    with pytest.raises(ValueError, match="allowed_tokens"):
        enumerate_continuations(model, prompts, 2, np.array([1, 9]))
    with pytest.raises(ValueError, match="exceeds n_ctx"):
        enumerate_continuations(model, prompts, 9, ALLOWED)
    with pytest.raises(ValueError, match="MAX_ENUMERATED"):
        enumerate_continuations(model, prompts, 8, None)
    with pytest.raises(ValueError, match="pad_token"):
        enumerate_continuations(model, prompts, 2, ALLOWED, EOS, pad_token=-1)


def test_count_continuations_matches_a_brute_force_count():
    for K in (1, 2, 3, 5):
        for M in (1, 2, 3):
            seqs = set()
            for code in range(K**M):
                digits = [(code // K**i) % K for i in range(M)]
                seq = []
                for d in digits:
                    seq.append(d)
                    if d == 0:  # symbol 0 plays EOS
                        break
                seqs.add(tuple(seq))
            assert count_continuations(K, M, True) == len(seqs)
            assert count_continuations(K, M, False) == K**M


# ------------------------------------------------------- restricted output alphabet


@given(seed=st.integers(0, 1000), tau=st.sampled_from([1.0, 0.7, 2.5]))
def test_restricted_logprobs_are_the_masked_log_softmax(seed, tau):
    model = random_model(seed)
    rng = np.random.default_rng(seed)
    tokens = rng.choice(ALLOWED, size=(3, 6))
    tokens[:, 0] = rng.integers(0, CFG.vocab_size, size=3)  # prompts may use any token
    logp = model.logprobs(tokens, allowed_tokens=ALLOWED, temperature=tau)
    z = model.forward(tokens)[:, :-1] / tau  # (B, T-1, V)
    z[..., np.setdiff1d(np.arange(CFG.vocab_size), ALLOWED)] = -np.inf
    ref = np.take_along_axis(log_softmax(z), tokens[:, 1:, None], -1)[..., 0]
    np.testing.assert_allclose(logp, ref, rtol=1e-12)
    H = model.entropy(tokens, allowed_tokens=ALLOWED, temperature=tau)
    q = np.exp(log_softmax(model.forward(tokens)[..., ALLOWED] / tau))  # (B, T, K)
    np.testing.assert_allclose(H, -(q * np.log(q)).sum(-1), rtol=1e-10)
    assert np.all(H <= np.log(ALLOWED.size) + 1e-12) and np.all(H > 0)


def test_target_outside_the_alphabet_has_logprob_minus_inf_and_needs_zero_gradient():
    model = random_model(1)
    tokens = np.array([[1, 2, 3, 5]])  # 3 is not allowed
    logp = model.logprobs(tokens, allowed_tokens=ALLOWED)
    assert np.isneginf(logp[0, 1]) and np.all(np.isfinite(logp[0, [0, 2]]))
    grads = model.logprobs_backward(np.array([[1.0, 0.0, 1.0]]))
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    with pytest.raises(ValueError, match="outside allowed_tokens"):
        model.logprobs_backward(np.array([[1.0, 1.0, 1.0]]))


@settings(max_examples=8)
@given(seed=st.integers(0, 1000), tau=st.sampled_from([1.0, 0.6]))
def test_restricted_logprobs_backward_matches_finite_differences(seed, tau):
    model = random_model(seed, scale=0.3, config=GPTConfig(9, 6, 4, 1, 1))
    rng = np.random.default_rng(seed)
    tokens = rng.choice(ALLOWED, size=(2, 5))
    dlogp = rng.normal(size=(2, 4))
    model.logprobs(tokens, allowed_tokens=ALLOWED, temperature=tau)
    grads = model.logprobs_backward(dlogp)

    def f():
        return float((model.logprobs(tokens, ALLOWED, tau) * dlogp).sum())

    eps = 1e-6
    for name in ("wte", "h.0.attn.c_attn.weight", "ln_f.bias"):
        p = model.params[name]
        flat_idx = rng.choice(p.size, size=min(6, p.size), replace=False)
        for i in flat_idx:
            j = np.unravel_index(i, p.shape)
            old = p[j]
            p[j] = old + eps
            up = f()
            p[j] = old - eps
            down = f()
            p[j] = old
            np.testing.assert_allclose(
                grads[name][j], (up - down) / (2 * eps), rtol=1e-5, atol=1e-8
            )


def test_unrestricted_options_give_the_old_numbers():
    model = random_model(2)
    tokens = np.random.default_rng(2).integers(0, CFG.vocab_size, size=(3, 7))
    a = model.logprobs(tokens)
    ga = model.logprobs_backward(np.ones_like(a))
    b = model.logprobs(tokens, allowed_tokens=np.arange(CFG.vocab_size), temperature=1.0)
    gb = model.logprobs_backward(np.ones_like(b))
    np.testing.assert_allclose(a, b, rtol=1e-13)
    for name in ga:
        np.testing.assert_allclose(ga[name], gb[name], rtol=1e-10, atol=1e-14)


def test_entropy_keeps_the_backward_cache():
    model = random_model(4)
    tokens = np.random.default_rng(4).integers(0, CFG.vocab_size, size=(2, 5))
    model.logprobs(tokens)
    g1 = model.logprobs_backward(np.ones((2, 4)))
    model.entropy(np.zeros((3, 2), dtype=int))
    g2 = model.logprobs_backward(np.ones((2, 4)))
    for name in g1:
        np.testing.assert_array_equal(g1[name], g2[name])


@given(seed=st.integers(0, 1000))
def test_sampling_with_alphabet_eos_and_pad(seed):
    model = random_model(seed, scale=0.3)
    prompts = np.random.default_rng(seed).integers(0, CFG.vocab_size, size=(6, 2))
    res = sample(model, prompts, 7, rng=seed, allowed_tokens=ALLOWED, eos_token=EOS, pad_token=PAD)
    for row, m in zip(res.response, res.mask, strict=True):
        hits = np.flatnonzero(row == EOS)
        n = hits[0] + 1 if hits.size else len(row)
        np.testing.assert_array_equal(m, np.arange(len(row)) < n)
        assert np.all(np.isin(row[:n], ALLOWED)) and np.all(row[n:] == PAD)
    logp = model.logprobs(res.tokens, allowed_tokens=ALLOWED)[:, 1:]
    np.testing.assert_allclose(res.logprobs, np.where(res.mask > 0, logp, 0.0), rtol=1e-10)
    cached = sample(
        model,
        prompts,
        7,
        rng=seed,
        allowed_tokens=ALLOWED,
        eos_token=EOS,
        pad_token=PAD,
        use_cache=False,
        temperature=0.8,
        top_k=3,
    )
    again = sample(
        model,
        prompts,
        7,
        rng=seed,
        allowed_tokens=ALLOWED,
        eos_token=EOS,
        pad_token=PAD,
        use_cache=True,
        temperature=0.8,
        top_k=3,
    )
    np.testing.assert_array_equal(cached.tokens, again.tokens)


def test_sampling_validates_alphabet_and_pad():
    model = random_model(0)
    prompts = np.array([[1, 2]])
    with pytest.raises(ValueError, match="eos_token"):
        sample(model, prompts, 2, rng=0, allowed_tokens=ALLOWED, eos_token=3)
    with pytest.raises(ValueError, match="pad_token"):
        sample(model, prompts, 2, rng=0, pad_token=9)
    with pytest.raises(ValueError, match="allowed_tokens"):
        sample(model, prompts, 2, rng=0, allowed_tokens=np.array([], dtype=int))


@settings(max_examples=10)
@given(seed=st.integers(0, 1000), n=st.integers(1, 4))
def test_n_responses_equals_sampling_repeated_prompts(seed, n):
    model = random_model(seed, scale=0.3)
    prompts = np.random.default_rng(seed).integers(0, CFG.vocab_size, size=(3, 2))
    kw = dict(allowed_tokens=ALLOWED, eos_token=EOS, pad_token=PAD, temperature=0.9)
    a = sample(model, prompts, 5, rng=seed, n_responses=n, **kw)
    b = sample(model, np.repeat(prompts, n, axis=0), 5, rng=seed, **kw)
    c = sample(model, prompts, 5, rng=seed, n_responses=n, use_cache=False, **kw)
    for other in (b, c):
        np.testing.assert_array_equal(a.tokens, other.tokens)
        np.testing.assert_array_equal(a.mask, other.mask)
        np.testing.assert_allclose(a.logprobs, other.logprobs, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="n_responses"):
        sample(model, prompts, 2, rng=0, n_responses=0)
