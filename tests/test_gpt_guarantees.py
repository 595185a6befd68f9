"""Guarantees at the GPT's boundaries: masks and upstream gradients must be finite,
training refuses a model made non-finite by its last update, row shards and KV caches are
validated, and the BLAS thread limit nests."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from rlhf_toy.gpt import GPT, GPTConfig, cross_entropy
from rlhf_toy.gpt.parallel import row_shards, single_blas_thread
from rlhf_toy.gpt.train import train_lm

CFG = GPTConfig(vocab_size=6, n_ctx=8, n_embd=8, n_layer=1, n_head=2)


@pytest.mark.parametrize(
    ("bad", "match"),
    [(np.nan, "finite"), (np.inf, "finite"), (-1.0, ">= 0"), (1j, "real")],
)
def test_cross_entropy_and_loss_reject_bad_mask_weights(bad, match):
    model = GPT(CFG)
    tokens = np.zeros((2, 3), dtype=int)
    mask = np.ones((2, 3), dtype=complex if isinstance(bad, complex) else float)
    mask[1, 2] = bad
    logits = model.forward(tokens)
    with pytest.raises(ValueError, match=f"mask.*{match}"):
        cross_entropy(logits, tokens, mask)
    with pytest.raises(ValueError, match=f"mask.*{match}"):
        model.loss(tokens, tokens, mask)


def test_fractional_mask_weights_are_a_weighted_mean():
    model = GPT(CFG, dtype=np.float64)
    tokens = np.array([[1, 2, 3]])
    w = np.array([[0.5, 0.0, 2.0]])
    loss, _ = model.loss(tokens, tokens, w)
    per = cross_entropy(model.forward(tokens), tokens, np.array([[1.0, 0.0, 0.0]]))[0]
    last = cross_entropy(model.forward(tokens), tokens, np.array([[0.0, 0.0, 1.0]]))[0]
    assert loss == pytest.approx((0.5 * per + 2.0 * last) / 2.5, rel=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_backward_rejects_non_finite_upstream_gradients(bad):
    model = GPT(CFG, heads=("value", "reward"))
    tokens = np.zeros((2, 3), dtype=int)
    logits = model.forward(tokens)
    d = np.zeros_like(logits)
    d[0, 1, 2] = bad
    with pytest.raises(ValueError, match="dlogits must be finite"):
        model.backward(d)
    dv = np.zeros((2, 3))
    dv[1, 0] = bad
    with pytest.raises(ValueError, match="dvalues must be finite"):
        model.backward(dvalues=dv)
    model.rewards(np.array([2, 2]))
    with pytest.raises(ValueError, match="drewards must be finite"):
        model.backward(drewards=np.array([0.0, bad]))
    model.logprobs(tokens)
    with pytest.raises(ValueError, match="dlogp must be finite"):
        model.logprobs_backward(np.array([[bad, 0.0], [0.0, 0.0]]))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_train_lm_refuses_a_model_made_non_finite_by_its_last_update():
    model = GPT(CFG)
    tokens = np.array([[1, 2, 3, 4]])
    batch = (tokens, tokens, None)
    with pytest.raises(FloatingPointError, match="step 0"):
        train_lm(model, lambda step: batch, steps=1, lr=1e39, max_grad_norm=None, verbose=False)
    fine = GPT(CFG)
    log = train_lm(fine, lambda step: batch, steps=2, lr=1e-3, verbose=False)
    assert np.all(np.isfinite(log.loss))


@pytest.mark.parametrize(
    ("args", "match"), [((0, 4), "n_rows"), ((4, 0), "n_positions"), ((2.5, 4), "n_rows")]
)
def test_row_shards_validates(args, match):
    with pytest.raises(ValueError, match=match):
        row_shards(*args)


def test_kv_cache_from_another_model_is_refused():
    model = GPT(CFG)
    tokens = np.zeros((2, 3), dtype=int)
    other = GPT(GPTConfig(vocab_size=6, n_ctx=8, n_embd=8, n_layer=1, n_head=4))
    with pytest.raises(ValueError, match="kv was made for"):
        model.forward_step(tokens, other.init_kv_cache(2))
    deeper = GPT(GPTConfig(vocab_size=6, n_ctx=8, n_embd=8, n_layer=2, n_head=2))
    with pytest.raises(ValueError, match="kv was made for"):
        model.forward_step(tokens, deeper.init_kv_cache(2))
    with pytest.raises(ValueError, match="dtype"):
        model.forward_step(tokens, GPT(CFG, dtype=np.float64).init_kv_cache(2))
    kv = model.init_kv_cache(2)
    kv.kT[0] = kv.kT[0][:, :, :2]
    with pytest.raises(ValueError, match="shape"):
        model.forward_step(tokens, kv)
    kv = model.init_kv_cache(2)
    kv.v.pop()
    with pytest.raises(ValueError, match="layers"):
        model.forward_step(tokens, kv)
    with pytest.raises(ValueError, match="rows"):
        model.forward_step(tokens, model.init_kv_cache(3))
    with pytest.raises(TypeError, match="KVCache"):
        model.forward_step(tokens, {"k": [], "v": []})
    kv = model.init_kv_cache(2, capacity=4)
    model.forward_step(tokens, kv)
    with pytest.raises(ValueError, match="capacity=4"):
        model.forward_step(tokens, kv)
    kv.length = -1
    with pytest.raises(ValueError, match="kv.length"):
        model.forward_step(tokens[:, :1], kv)


def test_kv_take_branches_rows():
    model = GPT(CFG, dtype=np.float64)
    tokens = np.array([[1, 2, 3], [4, 5, 0]])
    kv = model.init_kv_cache(2, capacity=5)
    model.forward_step(tokens, kv)
    branched = kv.take(np.array([1, 1, 0]))
    nxt = np.array([[3], [2], [1]])
    got = model.forward_step(nxt, branched)[:, 0]
    full = model.forward(np.concatenate([tokens[[1, 1, 0]], nxt], axis=1))[:, -1]
    np.testing.assert_allclose(got, full, rtol=1e-12)
    assert kv.length == 3 and branched.length == 4
    with pytest.raises(ValueError, match="rows"):
        kv.take(np.array([2]))


def test_single_blas_thread_limits_nests_and_restores():
    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()

    @single_blas_thread()
    def inner():
        return blas_threads()

    with single_blas_thread():
        assert all(n == 1 for n in blas_threads())
        assert all(n == 1 for n in inner())  # nested: still one thread
        assert all(n == 1 for n in blas_threads())
    assert blas_threads() == before
    assert all(n == 1 for n in inner())
    assert blas_threads() == before
