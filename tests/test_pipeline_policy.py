"""The GPT behind the policy protocol: masking, zeros off the mask, gradients against float64
central differences, the critic's values and the reward model's score position."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_toy.gpt import GPT, GPTConfig
from rlhf_toy.pipeline.policy import GPTCritic, GPTPolicy, GPTRewardModel, last_token_positions

CFG = GPTConfig(vocab_size=8, n_ctx=9, n_embd=4, n_layer=1, n_head=2)
ALLOWED = np.array([2, 3, 5, 6])
EOS, PAD = 6, 0
P, T = 3, 4


def random_model(seed=0, heads=(), scale=0.4):
    model = GPT(CFG, seed=seed, dtype=np.float64, heads=heads)
    rng = np.random.default_rng(seed + 7)
    for p in model.params.values():
        p += rng.normal(scale=scale, size=p.shape)
    return model


def batch(seed, B=5):
    rng = np.random.default_rng(seed)
    prompts = rng.integers(0, CFG.vocab_size, size=(B, P))
    lengths = rng.integers(1, T + 1, size=B)
    responses = rng.choice(ALLOWED[:-1], size=(B, T))
    mask = (np.arange(T) < lengths[:, None]).astype(float)
    ends = rng.random(B) < 0.5
    responses[ends, lengths[ends] - 1] = EOS
    responses[mask == 0] = PAD
    return prompts, responses, mask


def finite_difference(f, params, names, rng, eps=1e-6, k=5):
    out = {}
    for name in names:
        p = params[name]
        for i in rng.choice(p.size, size=min(k, p.size), replace=False):
            j = np.unravel_index(i, p.shape)
            old = p[j]
            p[j] = old + eps
            up = f()
            p[j] = old - eps
            down = f()
            p[j] = old
            out[name, j] = (up - down) / (2 * eps)
    return out


NAMES = ("wte", "wpe", "h.0.attn.c_attn.weight", "h.0.mlp.c_proj.bias", "ln_f.weight")


@settings(max_examples=10)
@given(seed=st.integers(0, 1000), tau=st.sampled_from([1.0, 0.7]))
def test_policy_logprobs_masked_and_gradient_matches_finite_differences(seed, tau):
    model = random_model(seed)
    pol = GPTPolicy(model, T, ALLOWED, EOS, PAD, temperature=tau)
    prompts, responses, mask = batch(seed)
    logp = pol.logprobs(prompts, responses, mask)
    assert logp.shape == (5, T) and np.all(logp[mask == 0] == 0) and np.all(logp[mask > 0] < 0)
    full = model.logprobs(np.concatenate([prompts, responses], 1), ALLOWED, tau)[:, P - 1 :]
    np.testing.assert_allclose(logp[mask > 0], full[mask > 0], rtol=1e-12)
    rng = np.random.default_rng(seed)
    dlogp = rng.normal(size=(5, T)) * mask
    grads = pol.logprobs_backward(dlogp)
    assert set(grads) == set(pol.params)
    fd = finite_difference(
        lambda: float((pol.logprobs(prompts, responses, mask) * dlogp).sum()),
        pol.params,
        NAMES,
        rng,
    )
    for (name, j), v in fd.items():
        np.testing.assert_allclose(grads[name][j], v, rtol=1e-5, atol=1e-8)


def test_gradient_off_the_mask_is_ignored():
    model = random_model(1)
    pol = GPTPolicy(model, T, ALLOWED, EOS, PAD)
    prompts, responses, mask = batch(1)
    mask[0, 1:] = 0
    responses[0, 1:] = PAD
    pol.logprobs(prompts, responses, mask)
    d = np.ones((5, T))
    g1 = pol.logprobs_backward(d)
    g2 = pol.logprobs_backward(d * mask)
    for name in g1:
        np.testing.assert_array_equal(g1[name], g2[name])


def test_policy_samples_prompt_major_with_eos_and_pad():
    model = random_model(2)
    pol = GPTPolicy(model, T, ALLOWED, EOS, PAD, prompt_len=P)
    prompts = np.array([[1, 2, 3], [4, 4, 4]])
    responses, mask = pol.sample(prompts, 3, rng=0)
    assert responses.shape == mask.shape == (6, T)
    for r, m in zip(responses, mask, strict=True):
        n = int(m.sum())
        assert np.all(np.isin(r[:n], ALLOWED)) and np.all(r[n:] == PAD)
        assert r[n - 1] == EOS or n == T
    logp = pol.logprobs(np.repeat(prompts, 3, 0), responses, mask)
    assert np.all(np.isfinite(logp)) and np.all(logp[mask == 0] == 0)
    H = pol.entropy(np.repeat(prompts, 3, 0), responses, mask)
    assert np.all(H[mask == 0] == 0) and np.all(H[mask > 0] > 0)
    assert np.all(H <= np.log(ALLOWED.size) + 1e-12)
    with pytest.raises(ValueError, match="prompts must have length"):
        pol.sample(prompts[:, :2], 1, rng=0)
    c = pol.enumerate(prompts)
    np.testing.assert_allclose(np.exp(c.logp).sum(1), 1.0, rtol=1e-12)


def test_policy_validates():
    model = random_model(3)
    pol = GPTPolicy(model, T, ALLOWED, EOS, PAD)
    prompts, responses, mask = batch(3)
    with pytest.raises(RuntimeError, match="logprobs"):
        pol.logprobs_backward(np.zeros((5, T)))
    with pytest.raises(ValueError, match="mask"):
        pol.logprobs(prompts, responses, mask[:, :-1])
    with pytest.raises(ValueError, match="mask"):
        pol.logprobs(prompts, responses, mask * 0.5)
    bad = responses.copy()
    bad[0, 0] = 1  # not in the alphabet, under the mask
    with pytest.raises(ValueError, match="allowed_tokens"):
        pol.logprobs(prompts, bad, mask)
    with pytest.raises(ValueError, match="eos_token"):
        GPTPolicy(model, T, ALLOWED, eos_token=1)
    with pytest.raises(TypeError, match="model"):
        GPTPolicy("gpt", T)
    pol.logprobs(prompts, responses, mask)
    with pytest.raises(ValueError, match="dlogp"):
        pol.logprobs_backward(np.full((5, T), np.nan))


@settings(max_examples=10)
@given(seed=st.integers(0, 1000))
def test_critic_values_and_gradient(seed):
    model = random_model(seed, heads=("value",))
    critic = GPTCritic(model)
    prompts, responses, mask = batch(seed)
    v = critic.values(prompts, responses, mask)
    assert v.shape == (5, T) and np.all(v[mask == 0] == 0)
    model.forward(np.concatenate([prompts, responses], 1))
    ref = model.values()[:, P - 1 : -1]  # the state before each response token
    np.testing.assert_allclose(v[mask > 0], ref[mask > 0], rtol=1e-12)
    rng = np.random.default_rng(seed)
    dv = rng.normal(size=(5, T)) * mask
    critic.values(prompts, responses, mask)
    grads = critic.values_backward(dv)
    fd = finite_difference(
        lambda: float((critic.values(prompts, responses, mask) * dv).sum()),
        critic.params,
        (*NAMES, "value_head.weight", "value_head.bias"),
        rng,
    )
    for (name, j), val in fd.items():
        np.testing.assert_allclose(grads[name][j], val, rtol=1e-5, atol=1e-8)


def test_score_reads_the_last_real_token_even_with_trailing_pads():
    model = random_model(5, heads=("reward",))
    rm = GPTRewardModel(model)
    prompts = np.array([[1, 2, 3], [1, 2, 3], [1, 2, 3]])
    responses = np.array([[2, 6, PAD, PAD], [2, 6, 3, 3], [5, 3, 2, 6]])
    mask = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=float)
    s = rm.score(prompts, responses, mask)
    # rows 0 and 1 share everything up to the EOS: same score whatever follows
    np.testing.assert_allclose(s[0], s[1], rtol=1e-12)
    for b, pos in enumerate([4, 4, 6]):
        model.forward(np.concatenate([prompts, responses], 1)[b : b + 1, : pos + 1])
        np.testing.assert_allclose(s[b], model.rewards(np.array([pos]))[0], rtol=1e-12)
    np.testing.assert_array_equal(last_token_positions(mask, 3), [4, 4, 6])
    np.testing.assert_array_equal(last_token_positions(np.zeros((1, 4)), 3), [2])
    rng = np.random.default_rng(0)
    ds = rng.normal(size=3)
    rm.score(prompts, responses, mask)
    grads = rm.score_backward(ds)
    fd = finite_difference(
        lambda: float((rm.score(prompts, responses, mask) * ds).sum()),
        rm.params,
        ("wte", "reward_head.weight", "reward_head.bias"),
        rng,
    )
    for (name, j), val in fd.items():
        np.testing.assert_allclose(grads[name][j], val, rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="reward head"):
        GPTRewardModel(random_model(0))


@settings(max_examples=10)
@given(seed=st.integers(0, 1000), tau=st.sampled_from([1.0, 0.8]))
def test_frozen_policy_gives_the_same_logprobs_from_shared_prompts(seed, tau):
    model = random_model(seed)
    pol = GPTPolicy(model, T, ALLOWED, EOS, PAD, temperature=tau)
    ref = GPTPolicy(model, T, ALLOWED, EOS, PAD, temperature=tau, frozen=True)
    prompts, responses, mask = batch(seed, B=6)
    prompts[3:] = prompts[:3]  # repeated prompts, as in a group of completions
    np.testing.assert_allclose(
        ref.logprobs(prompts, responses, mask),
        pol.logprobs(prompts, responses, mask),
        rtol=1e-10,
        atol=1e-12,
    )
    with pytest.raises(RuntimeError, match="frozen"):
        ref.logprobs_backward(np.zeros((6, T)))
    bad = responses.copy()
    bad[0, 0] = 1
    with pytest.raises(ValueError, match="allowed_tokens"):
        ref.logprobs(prompts, bad, mask)
