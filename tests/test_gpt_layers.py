"""Each GPT-2 layer alone: backward against float64 central differences, forward against the
reference formula (llm.c's layer-by-layer checks, on random shapes drawn by hypothesis).

The fake loss of a layer is ``(out * dout).sum()`` for a random ``dout``, so its gradient with
respect to the output is ``dout`` and the backward pass is checked in one go.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlhf_toy.gpt.layers import (
    LN_EPS,
    SHIFT_LIMIT,
    attention_backward,
    attention_forward,
    block_backward,
    block_forward,
    causal_bias,
    causal_softmax,
    cross_entropy,
    encoder_backward,
    encoder_forward,
    gelu_backward,
    gelu_forward,
    layernorm_backward,
    layernorm_forward,
    log_softmax,
    matmul_backward,
    matmul_forward,
    softmax,
)

H = 1e-6  # central-difference step (float64)
seeds = st.integers(0, 2**32 - 1)


def numerical_grad(f, x, dout, h=H):
    """d/dx of (f(x) * dout).sum() by central differences, one coordinate at a time."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = (f(x) * dout).sum()
        flat[i] = old - h
        minus = (f(x) * dout).sum()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return g


def assert_grad(analytic, numeric, tol=1e-6):
    scale = max(1.0, float(np.abs(numeric).max()))
    np.testing.assert_allclose(analytic, numeric, atol=tol * scale, rtol=0)


# ----------------------------------------------------------------------------- layers


@given(seed=seeds, B=st.integers(1, 3), T=st.integers(1, 4), C=st.integers(2, 8))
def test_layernorm_backward_matches_central_differences(seed, B, T, C):
    rng = np.random.default_rng(seed)
    x, dout = rng.normal(size=(B, T, C)), rng.normal(size=(B, T, C))
    w, b = rng.normal(size=C), rng.normal(size=C)
    _, cache = layernorm_forward(x, w, b)
    dx, dw, db = layernorm_backward(dout, cache)
    assert_grad(dx, numerical_grad(lambda z: layernorm_forward(z, w, b)[0], x, dout))
    assert_grad(dw, numerical_grad(lambda z: layernorm_forward(x, z, b)[0], w, dout))
    assert_grad(db, numerical_grad(lambda z: layernorm_forward(x, w, z)[0], b, dout))


@given(seed=seeds, C=st.integers(2, 10))
def test_layernorm_is_the_formula_with_biased_variance_and_eps_1e5(seed, C):
    rng = np.random.default_rng(seed)
    # nearly constant rows: var ~ 1e-6 is comparable to eps, so the exact eps matters
    x = 3.0 + 1e-3 * rng.normal(size=(2, C))
    w, b = rng.normal(size=C), rng.normal(size=C)
    out, _ = layernorm_forward(x, w, b)
    direct = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(out, direct, rtol=1e-10, atol=1e-12)
    assert LN_EPS == 1e-5
    for wrong_eps in (1e-6, 1e-12):
        wrong = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + wrong_eps)
        assert not np.allclose(out, wrong * w + b, rtol=1e-3)


@given(seed=seeds, N=st.integers(1, 6), IC=st.integers(1, 6), OC=st.integers(1, 6))
def test_matmul_backward_matches_central_differences(seed, N, IC, OC):
    rng = np.random.default_rng(seed)
    x, w, b = rng.normal(size=(2, N, IC)), rng.normal(size=(IC, OC)), rng.normal(size=OC)
    dout = rng.normal(size=(2, N, OC))
    out, cache = matmul_forward(x, w, b)
    np.testing.assert_allclose(out, np.einsum("bni,io->bno", x, w) + b, rtol=1e-12)
    dx, dw, db = matmul_backward(dout, cache)
    assert_grad(dx, numerical_grad(lambda z: matmul_forward(z, w, b)[0], x, dout))
    assert_grad(dw, numerical_grad(lambda z: matmul_forward(x, z, b)[0], w, dout))
    assert_grad(db, numerical_grad(lambda z: matmul_forward(x, w, z)[0], b, dout))


@given(seed=seeds, n=st.integers(1, 30), scale=st.sampled_from([0.1, 1.0, 5.0, 30.0]))
def test_gelu_is_the_tanh_approximation_and_backward_matches(seed, n, scale):
    rng = np.random.default_rng(seed)
    x = scale * rng.normal(size=n)
    out, cache = gelu_forward(x.copy())
    tanh_form = 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(out, tanh_form, rtol=1e-12, atol=1e-15)
    assert np.all(np.isfinite(out))
    dout = rng.normal(size=n)
    dx = gelu_backward(dout, cache)
    assert_grad(dx, numerical_grad(lambda z: gelu_forward(z)[0], x, dout))


def test_gelu_is_not_the_erf_gelu():
    x = np.linspace(-3, 3, 13)
    erf_gelu = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    assert np.abs(gelu_forward(x)[0] - erf_gelu).max() > 1e-5


@given(
    seed=seeds,
    B=st.integers(1, 2),
    T=st.integers(1, 5),
    NH=st.integers(1, 3),
    hs=st.integers(1, 4),
)
def test_attention_backward_matches_central_differences(seed, B, T, NH, hs):
    rng = np.random.default_rng(seed)
    C = NH * hs
    qkv, dout = rng.normal(size=(B, T, 3 * C)), rng.normal(size=(B, T, C))
    out, cache = attention_forward(qkv, NH)
    assert out.shape == (B, T, C)
    dqkv, dpast = attention_backward(dout, cache)
    assert dpast is None
    assert_grad(dqkv, numerical_grad(lambda z: attention_forward(z, NH)[0], qkv, dout))


@given(seed=seeds, T=st.integers(1, 5), NH=st.integers(1, 3), hs=st.integers(1, 4))
def test_attention_matches_a_per_head_loop(seed, T, NH, hs):
    """Plain loops: head h owns channels h*hs:(h+1)*hs of q, k and v; scale 1/sqrt(hs)."""
    rng = np.random.default_rng(seed)
    C = NH * hs
    qkv = rng.normal(size=(1, T, 3 * C))
    q, k, v = qkv[0, :, :C], qkv[0, :, C : 2 * C], qkv[0, :, 2 * C :]
    ref = np.zeros((T, C))
    for h in range(NH):
        sl = slice(h * hs, (h + 1) * hs)
        for t in range(T):
            scores = np.array([q[t, sl] @ k[s, sl] / math.sqrt(hs) for s in range(t + 1)])
            p = np.exp(scores - scores.max())
            p /= p.sum()
            ref[t, sl] = sum(p[s] * v[s, sl] for s in range(t + 1))
    np.testing.assert_allclose(attention_forward(qkv, NH)[0][0], ref, rtol=1e-10, atol=1e-12)


@given(seed=seeds, B=st.integers(1, 3), T=st.integers(1, 5), V=st.integers(1, 4))
def test_encoder_backward_accumulates_repeated_tokens(seed, B, T, V):
    rng = np.random.default_rng(seed)
    C, n_ctx = 3, 6
    tokens = rng.integers(0, V, size=(B, T))  # small V: many repeats
    wte, wpe = rng.normal(size=(V, C)), rng.normal(size=(n_ctx, C))
    dout = rng.normal(size=(B, T, C))
    out, cache = encoder_forward(tokens, wte, wpe)
    np.testing.assert_array_equal(out[0, 0], wte[tokens[0, 0]] + wpe[0])
    dwte, dwpe = encoder_backward(dout, cache)
    assert_grad(dwte, numerical_grad(lambda z: encoder_forward(tokens, z, wpe)[0], wte, dout))
    assert_grad(dwpe, numerical_grad(lambda z: encoder_forward(tokens, wte, z)[0], wpe, dout))
    assert np.all(dwpe[T:] == 0)


def _block_params(rng, C):
    shapes = {
        "ln_1.weight": (C,),
        "ln_1.bias": (C,),
        "attn.c_attn.weight": (C, 3 * C),
        "attn.c_attn.bias": (3 * C,),
        "attn.c_proj.weight": (C, C),
        "attn.c_proj.bias": (C,),
        "ln_2.weight": (C,),
        "ln_2.bias": (C,),
        "mlp.c_fc.weight": (C, 4 * C),
        "mlp.c_fc.bias": (4 * C,),
        "mlp.c_proj.weight": (4 * C, C),
        "mlp.c_proj.bias": (C,),
    }
    return {k: rng.normal(scale=0.5, size=s) for k, s in shapes.items()}


@given(seed=seeds, T=st.integers(1, 4), NH=st.integers(1, 2))
def test_block_backward_matches_central_differences(seed, T, NH):
    rng = np.random.default_rng(seed)
    B, C = 2, 2 * NH
    p = _block_params(rng, C)
    x, dout = rng.normal(size=(B, T, C)), rng.normal(size=(B, T, C))
    _, cache = block_forward(x, p, NH)
    dx, grads, dpast = block_backward(dout, cache)
    assert dpast is None
    assert_grad(dx, numerical_grad(lambda z: block_forward(z, p, NH)[0], x, dout))
    for name in ("attn.c_attn.weight", "mlp.c_proj.bias", "ln_1.weight", "ln_2.bias"):

        def f(z, name=name):
            return block_forward(x, {**p, name: z}, NH)[0]

        assert_grad(grads[name], numerical_grad(f, p[name].copy(), dout))


# ---------------------------------------------------------------- softmax, cross-entropy


def test_causal_bias_masks_the_future_only():
    np.testing.assert_array_equal(
        causal_bias(3), [[0, -np.inf, -np.inf], [0, 0, -np.inf], [0, 0, 0]]
    )
    # 2 cached positions, 2 new queries at absolute positions 2 and 3
    np.testing.assert_array_equal(causal_bias(2, 2), [[0, 0, 0, -np.inf], [0, 0, 0, 0]])
    assert causal_bias(4, 0, np.float64).dtype == np.float64
    with pytest.raises(ValueError):
        causal_bias(3)[0, 0] = 1.0  # cached and read-only


def test_softmax_and_log_softmax_are_stable():
    z = np.array([[1000.0, 1000.0, -1000.0], [0.0, 1.0, 2.0]])
    np.testing.assert_allclose(softmax(z)[0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(np.exp(log_softmax(z)), softmax(z), rtol=1e-12)
    np.testing.assert_allclose(log_softmax(z)[1], z[1] - np.log(np.exp(z[1]).sum()), rtol=1e-12)


@given(
    seed=seeds,
    Tq=st.integers(1, 6),
    t_past=st.integers(0, 5),
    scale=st.sampled_from([0.1, 3.0, 40.0]),  # 40: spreads past SHIFT_LIMIT, the fallback
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_causal_softmax_is_the_masked_softmax(seed, Tq, t_past, scale, dtype):
    rng = np.random.default_rng(seed)
    scores = rng.normal(scale=scale, size=(2, 3, Tq, t_past + Tq)).astype(dtype)
    masked = scores + causal_bias(Tq, t_past, np.float64)
    expected = np.exp(masked - masked.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    got = causal_softmax(scores.copy(), t_past)
    assert got.dtype == dtype
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-7)
    assert np.all(got[..., causal_bias(Tq, t_past) < 0] == 0.0)  # the future gets exactly 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_causal_softmax_survives_scores_far_above_the_own_score(dtype):
    # a key 500 above the query's own score: exp would overflow without the fallback shift
    scores = np.zeros((1, 1, 3, 3), dtype=dtype)
    scores[0, 0, 2, 0] = 500.0  # query 2 sees key 0 far above its own score
    scores[0, 0, 1, 1] = -300.0  # query 1's own score far below key 0
    assert 500.0 > SHIFT_LIMIT
    got = causal_softmax(scores.copy())[0, 0]
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got[2], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(got[1], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-6)


@given(seed=seeds, B=st.integers(1, 3), T=st.integers(1, 4), V=st.integers(2, 6))
def test_cross_entropy_value_and_gradient(seed, B, T, V):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(B, T, V))
    targets = rng.integers(0, V, size=(B, T))
    mask = rng.integers(0, 2, size=(B, T)).astype(float)
    mask[0, 0] = 1.0
    loss, dlogits = cross_entropy(logits, targets, mask)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    assert loss == pytest.approx((nll * mask).sum() / mask.sum(), rel=1e-12)
    num = np.zeros_like(logits)
    for idx in np.ndindex(logits.shape):
        old = logits[idx]
        logits[idx] = old + H
        plus = cross_entropy(logits, targets, mask)[0]
        logits[idx] = old - H
        minus = cross_entropy(logits, targets, mask)[0]
        logits[idx] = old
        num[idx] = (plus - minus) / (2 * H)
    assert_grad(dlogits, num)
    assert np.all(dlogits[mask == 0] == 0)


def test_cross_entropy_ignores_masked_targets_and_keeps_dtype():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4)).astype(np.float32)
    targets = np.array([[1, 2, 3], [0, 99, -5]])  # out-of-range targets only where masked
    mask = np.array([[1, 1, 1], [1, 0, 0]], dtype=bool)
    loss, dlogits = cross_entropy(logits, targets, mask)
    assert dlogits.dtype == np.float32 and np.isfinite(loss)
    with pytest.raises(ValueError, match="targets must be in"):
        cross_entropy(logits, targets, None)
    with pytest.raises(ValueError, match="at least one position"):
        cross_entropy(logits, targets, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="mask must have shape"):
        cross_entropy(logits, targets, np.ones((3, 2)))
    with pytest.raises(ValueError, match="targets must be integers"):
        cross_entropy(logits, targets.astype(float), mask)
