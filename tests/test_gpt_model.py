"""The whole GPT: GPT-2 names and init, a naive reference forward, gradients against central
differences (logits, value and reward heads, log-probs), causality, positions, errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_toy.gpt import GPT, GPTConfig, check_finite_grads, cross_entropy, param_spec
from rlhf_toy.gpt.reference import reference_logits

TINY = GPTConfig(vocab_size=7, n_ctx=6, n_embd=8, n_layer=2, n_head=2)


def perturbed(config=TINY, seed=0, heads=("value", "reward"), scale=0.3):
    """A float64 model whose every parameter (heads, biases, LN) is random and non-trivial."""
    model = GPT(config, seed=seed, dtype=np.float64, heads=heads)
    rng = np.random.default_rng(seed + 1)
    for p in model.params.values():
        p += rng.normal(scale=scale, size=p.shape)
    return model


@given(seed=st.integers(0, 1000), T=st.integers(1, 6))
def test_forward_matches_the_naive_reference(seed, T):
    model = perturbed(seed=seed, heads=())
    tokens = np.random.default_rng(seed).integers(0, TINY.vocab_size, size=(2, T))
    np.testing.assert_allclose(
        model.forward(tokens), reference_logits(model.params, TINY, tokens), rtol=1e-10, atol=1e-10
    )


# ----------------------------------------------------------------------- config, params


def test_config_validation():
    with pytest.raises(ValueError, match=r"n_embd=10.*n_head=3"):
        GPTConfig(vocab_size=5, n_ctx=4, n_embd=10, n_layer=1, n_head=3)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="n_layer"):
            GPTConfig(vocab_size=5, n_ctx=4, n_embd=8, n_layer=bad, n_head=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.n_embd = 16
    assert TINY.head_size == 4


def test_param_names_and_layouts_are_gpt2s():
    V, T, C = 7, 6, 8
    expected = [("wte", (V, C)), ("wpe", (T, C))]
    for i in range(2):
        expected += [
            (f"h.{i}.ln_1.weight", (C,)),
            (f"h.{i}.ln_1.bias", (C,)),
            (f"h.{i}.attn.c_attn.weight", (C, 3 * C)),
            (f"h.{i}.attn.c_attn.bias", (3 * C,)),
            (f"h.{i}.attn.c_proj.weight", (C, C)),
            (f"h.{i}.attn.c_proj.bias", (C,)),
            (f"h.{i}.ln_2.weight", (C,)),
            (f"h.{i}.ln_2.bias", (C,)),
            (f"h.{i}.mlp.c_fc.weight", (C, 4 * C)),
            (f"h.{i}.mlp.c_fc.bias", (4 * C,)),
            (f"h.{i}.mlp.c_proj.weight", (4 * C, C)),
            (f"h.{i}.mlp.c_proj.bias", (C,)),
        ]
    expected += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
    model = GPT(TINY)
    assert model.param_spec == expected == param_spec(TINY)
    assert list(model.params) == [n for n, _ in expected]
    assert all(model.params[n].shape == s for n, s in expected)
    heads = [("value_head.weight", (C,)), ("value_head.bias", ()), ("reward_head.weight", (C,))]
    heads += [("reward_head.bias", ())]
    assert GPT(TINY, heads=("reward", "value")).param_spec == expected + heads
    with pytest.raises(ValueError, match="heads"):
        GPT(TINY, heads=("critic",))


def test_init_is_gpt2s_and_deterministic():
    cfg = GPTConfig(vocab_size=64, n_ctx=32, n_embd=64, n_layer=4, n_head=4)
    model = GPT(cfg, seed=3, heads=("value",))
    p = model.params
    assert all(a.dtype == np.float32 for a in p.values())
    assert np.std(p["wte"]) == pytest.approx(0.02, rel=0.05)
    assert np.std(p["h.0.attn.c_attn.weight"]) == pytest.approx(0.02, rel=0.05)
    assert np.std(p["h.1.mlp.c_fc.weight"]) == pytest.approx(0.02, rel=0.05)
    resid = 0.02 / math.sqrt(2 * cfg.n_layer)
    assert np.std(p["h.2.mlp.c_proj.weight"]) == pytest.approx(resid, rel=0.05)
    assert np.std(p["h.3.attn.c_proj.weight"]) == pytest.approx(resid, rel=0.1)
    assert np.all(p["h.0.ln_1.weight"] == 1) and np.all(p["ln_f.bias"] == 0)
    assert np.all(p["h.0.attn.c_attn.bias"] == 0) and np.all(p["value_head.weight"] == 0)
    again = GPT(cfg, seed=3)  # same seed: same transformer, heads or not
    assert all(np.array_equal(again.params[k], p[k]) for k in again.params)
    f64 = GPT(cfg, seed=3, dtype=np.float64)
    assert all(np.array_equal(f64.params[k].astype(np.float32), p[k]) for k in f64.params)
    assert not np.array_equal(GPT(cfg, seed=4).params["wte"], p["wte"])
    with pytest.raises(ValueError, match="dtype"):
        GPT(cfg, dtype=np.float16)


# -------------------------------------------------------------------------- gradients


def check_model_grads(model, loss_fn, grads, n_coords=8, seed=0):
    """Central differences of loss_fn on up to n_coords random entries of every tensor."""
    rng = np.random.default_rng(seed)
    assert list(grads) == list(model.params)
    for name, p in model.params.items():
        assert grads[name].shape == p.shape and grads[name].dtype == p.dtype, name
        flat, g = p.reshape(-1), grads[name].reshape(-1)
        for i in rng.choice(flat.size, size=min(n_coords, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + 1e-6
            plus = loss_fn()
            flat[i] = old - 1e-6
            minus = loss_fn()
            flat[i] = old
            num = (plus - minus) / 2e-6
            assert g[i] == pytest.approx(num, abs=1e-6 * max(1.0, abs(num))), (name, i)


@settings(max_examples=6)
@given(seed=st.integers(0, 1000))
def test_backward_through_logits_and_heads_matches_central_differences(seed):
    model = perturbed(seed=seed)
    rng = np.random.default_rng(seed)
    B, T, V = 3, 5, TINY.vocab_size
    tokens = rng.integers(0, V, size=(B, T))
    positions = rng.integers(0, T, size=B)
    dlogits, dvalues, drewards = (
        rng.normal(size=(B, T, V)),
        rng.normal(size=(B, T)),
        rng.normal(size=B),
    )

    def loss():
        logits = model.forward(tokens)
        return (
            (logits * dlogits).sum()
            + (model.values() * dvalues).sum()
            + (model.rewards(positions) * drewards).sum()
        )

    loss()
    grads = model.backward(dlogits, dvalues, drewards)
    check_model_grads(model, loss, grads, seed=seed)


@settings(max_examples=6)
@given(seed=st.integers(0, 1000))
def test_logprobs_backward_matches_central_differences(seed):
    model = perturbed(seed=seed, heads=("value",))
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, TINY.vocab_size, size=(2, 6))
    dlogp = rng.normal(size=(2, 5)) * (rng.random((2, 5)) < 0.7)  # zeros where "masked"
    dvalues = rng.normal(size=(2, 6))

    def loss():
        return (model.logprobs(tokens) * dlogp).sum() + (model.values() * dvalues).sum()

    loss()
    grads = model.logprobs_backward(dlogp, dvalues=dvalues)
    check_model_grads(model, loss, grads, n_coords=5, seed=seed)


def test_log_distributions_backward_matches_central_differences():
    model = perturbed(seed=5, heads=())
    rng = np.random.default_rng(5)
    tokens = rng.integers(0, TINY.vocab_size, size=(2, 4))
    dlogq = rng.normal(size=(2, 4, TINY.vocab_size))

    def loss():
        return (model.log_distributions(tokens) * dlogq).sum()

    loss()
    check_model_grads(model, loss, model.log_distributions_backward(dlogq), n_coords=5)


def test_cross_entropy_training_step_gradient():
    model = perturbed(seed=2, heads=())
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, TINY.vocab_size, size=(3, 6))
    mask = np.ones((3, 5))
    mask[1, 3:] = 0
    loss, dlogits = model.loss(tokens[:, :-1], tokens[:, 1:], mask)
    assert loss == pytest.approx(
        cross_entropy(model.forward(tokens[:, :-1]), tokens[:, 1:], mask)[0]
    )
    grads = model.backward(dlogits)
    check_model_grads(model, lambda: model.loss(tokens[:, :-1], tokens[:, 1:], mask)[0], grads, 4)


def test_backward_is_linear_in_its_three_inputs():
    model = perturbed(seed=9)
    rng = np.random.default_rng(9)
    tokens = rng.integers(0, TINY.vocab_size, size=(2, 4))
    dl, dv, dr = rng.normal(size=(2, 4, 7)), rng.normal(size=(2, 4)), rng.normal(size=2)
    model.forward(tokens)
    model.rewards(np.array([3, 1]))
    parts = [model.backward(dl), model.backward(dvalues=dv), model.backward(drewards=dr)]
    both = model.backward(dl, dv, dr)
    for name in model.params:
        np.testing.assert_allclose(sum(g[name] for g in parts), both[name], atol=1e-12)
    assert np.all(parts[0]["value_head.weight"] == 0) and np.all(parts[1]["reward_head.bias"] == 0)


def test_heads_get_zero_gradient_without_signal_and_float32_stays_float32():
    model = GPT(TINY, seed=0, heads=("value", "reward"))
    tokens = np.zeros((2, 3), dtype=np.int64)
    logits = model.forward(tokens)
    assert logits.dtype == np.float32
    grads = model.backward(np.ones_like(logits, dtype=np.float64))  # cast, no upcast
    assert all(g.dtype == np.float32 for g in grads.values())
    assert np.all(grads["value_head.weight"] == 0) and grads["reward_head.bias"].shape == ()
    assert model.values().dtype == np.float32 and model.values().shape == (2, 3)
    assert model.rewards(np.array([2, 0])).dtype == np.float32
    assert model.logprobs(tokens).dtype == np.float32
    assert model.log_distributions(tokens).dtype == np.float32


# ------------------------------------------------------------------------- invariants


@given(seed=st.integers(0, 1000), t=st.integers(0, 5))
def test_causality_later_tokens_never_change_earlier_outputs(seed, t):
    model = perturbed(seed=seed)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, TINY.vocab_size, size=(2, 6))
    logits, values = model.forward(tokens), model.values()
    logp = model.logprobs(tokens)
    changed = tokens.copy()
    changed[:, t:] = (changed[:, t:] + 1 + rng.integers(0, 5, size=changed[:, t:].shape)) % 7
    np.testing.assert_allclose(model.forward(changed)[:, :t], logits[:, :t], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(model.values()[:, :t], values[:, :t], rtol=1e-12, atol=1e-13)
    assert not np.allclose(model.forward(changed)[:, t:], logits[:, t:])
    # right padding: log-probs of tokens before t are unchanged
    np.testing.assert_allclose(
        model.logprobs(changed)[:, : max(t - 1, 0)], logp[:, : max(t - 1, 0)]
    )


def test_positions_matter():
    one_layer = GPTConfig(vocab_size=7, n_ctx=6, n_embd=8, n_layer=1, n_head=2)
    model = perturbed(one_layer, seed=1, heads=())
    tokens = np.array([[1, 2, 3, 4, 5]])
    permuted = np.array([[4, 2, 3, 1, 5]])  # same multiset before the last token
    assert not np.allclose(model.forward(tokens)[:, -1], model.forward(permuted)[:, -1])
    # control: without positions, one layer's last step attends to a set, blind to order
    model.params["wpe"][:] = 0.0
    np.testing.assert_allclose(model.forward(tokens)[:, -1], model.forward(permuted)[:, -1])


def test_logprobs_are_the_log_softmax_at_the_next_token():
    model = perturbed(seed=4, heads=())
    tokens = np.random.default_rng(4).integers(0, 7, size=(3, 6))
    logq = model.log_distributions(tokens)
    np.testing.assert_allclose(np.exp(logq).sum(-1), 1.0, rtol=1e-12)
    logp = model.logprobs(tokens)
    for b in range(3):
        for t in range(5):
            assert logp[b, t] == pytest.approx(logq[b, t, tokens[b, t + 1]], rel=1e-12)


def test_rewards_read_the_final_hidden_state_at_positions():
    model = perturbed(seed=6, heads=("value", "reward"))
    tokens = np.random.default_rng(6).integers(0, 7, size=(3, 5))
    model.forward(tokens)
    values = model.values()
    model.params["reward_head.weight"][:] = model.params["value_head.weight"]
    model.params["reward_head.bias"][...] = model.params["value_head.bias"]
    positions = np.array([4, 0, 2])
    np.testing.assert_allclose(model.rewards(positions), values[np.arange(3), positions])


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_raise_clear_errors():
    model = GPT(TINY, heads=())
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(np.zeros((1, 1, 7)))
    with pytest.raises(ValueError, match=r"in \[0, 7\), got 7"):
        model.forward(np.array([[1, 7]]))
    with pytest.raises(ValueError, match="got -1"):
        model.forward(np.array([[-1, 2]]))
    with pytest.raises(ValueError, match="n_ctx is 6"):
        model.forward(np.zeros((1, 7), dtype=int))
    with pytest.raises(ValueError, match="2-D"):
        model.forward(np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="integers"):
        model.forward(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="integers"):
        model.forward(np.zeros((1, 4), dtype=bool))
    with pytest.raises(ValueError, match="T >= 2"):
        model.logprobs(np.zeros((1, 1), dtype=int))
    logits = model.forward(np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match="dlogits must have shape"):
        model.backward(logits[:, :2])
    with pytest.raises(ValueError, match="at least one"):
        model.backward()
    with pytest.raises(ValueError, match="no 'value' head"):
        model.values()
    with pytest.raises(ValueError, match="no 'reward' head"):
        model.backward(dlogits=None, drewards=np.zeros(2))
    with pytest.raises(RuntimeError, match="logprobs"):
        model.logprobs_backward(np.zeros((2, 2)))
    rm = GPT(TINY, heads=("reward",))
    rm.forward(np.zeros((2, 3), dtype=int))
    with pytest.raises(RuntimeError, match="rewards"):
        rm.backward(drewards=np.zeros(2))
    with pytest.raises(ValueError, match="positions"):
        rm.rewards(np.array([0, 3]))
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT({"vocab_size": 7})


def test_check_finite_grads_names_the_step_and_the_parameter():
    model = GPT(TINY)
    grads = model.backward(model.forward(np.zeros((1, 2), dtype=int)))
    check_finite_grads(grads, step=0)
    grads["h.1.mlp.c_fc.bias"][3] = np.nan
    with pytest.raises(FloatingPointError, match=r"step 17.*'h\.1\.mlp\.c_fc\.bias'"):
        check_finite_grads(grads, step=17)
