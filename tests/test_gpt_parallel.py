"""Data parallelism over threads: the shards, and that sharding changes nothing but rounding."""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from threadpoolctl import threadpool_info

from rlhf_toy.gpt import GPT, GPTConfig, cross_entropy, parallel, sample

CONFIG = GPTConfig(vocab_size=11, n_ctx=9, n_embd=12, n_layer=2, n_head=3)


@pytest.fixture
def threads(monkeypatch):
    """Set the thread count for one test (every batch sharded), restored afterwards."""
    before = parallel.get_num_threads()
    monkeypatch.setattr(parallel, "MIN_TOKENS_PER_SHARD", 1)
    yield parallel.set_num_threads
    parallel.set_num_threads(before)


def perturbed(seed=0):
    """A float64 model with value and reward heads and every parameter non-trivial."""
    model = GPT(CONFIG, seed=seed, dtype=np.float64, heads=("value", "reward"))
    rng = np.random.default_rng(seed + 1)
    for p in model.params.values():
        p += rng.normal(scale=0.3, size=p.shape)
    return model


@given(n_rows=st.integers(1, 200), n_pos=st.integers(1, 64), n_threads=st.integers(1, 8),
       min_tokens=st.integers(1, 600))
def test_row_shards_cover_the_batch_in_near_equal_contiguous_pieces(
    n_rows, n_pos, n_threads, min_tokens
):
    before = (parallel.get_num_threads(), parallel.MIN_TOKENS_PER_SHARD)
    try:
        parallel.set_num_threads(n_threads)
        parallel.MIN_TOKENS_PER_SHARD = min_tokens
        shards = parallel.row_shards(n_rows, n_pos)
    finally:
        parallel.set_num_threads(before[0])
        parallel.MIN_TOKENS_PER_SHARD = before[1]
    assert shards[0].start == 0 and shards[-1].stop == n_rows
    assert all(a.stop == b.start for a, b in zip(shards[:-1], shards[1:], strict=True))
    sizes = [s.stop - s.start for s in shards]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    assert len(shards) <= n_threads
    if len(shards) > 1:  # a batch is only cut when the pieces are worth a thread each
        assert n_rows * n_pos >= min_tokens * len(shards)


@pytest.mark.parametrize("n_threads", [2, 3])
def test_sharded_passes_equal_the_unsharded_ones(threads, n_threads):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, CONFIG.vocab_size, size=(7, 9))
    dlogits = rng.normal(size=(7, 9, CONFIG.vocab_size))
    dvalues, drewards = rng.normal(size=(7, 9)), rng.normal(size=7)
    dlogp = rng.normal(size=(7, 8))
    positions = rng.integers(0, 9, size=7)
    results = {}
    for n in (1, n_threads):
        threads(n)
        assert len(parallel.row_shards(7, 9)) == n
        model = perturbed()
        logits = model.forward(tokens)
        values, rewards = model.values(), model.rewards(positions)
        grads = model.backward(dlogits, dvalues, drewards)
        logp = model.logprobs(tokens)
        lp_grads = model.logprobs_backward(dlogp)
        results[n] = (logits, values, rewards, grads, logp, lp_grads)
    one, many = results[1], results[n_threads]
    # BLAS's edge kernels for a different number of rows may order a dot product differently,
    # and the shards' gradient sums reorder additions: equal to rounding, not bit for bit
    for a, b in zip(one[:3] + one[4:5], many[:3] + many[4:5], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    for ga, gb in ((one[3], many[3]), (one[5], many[5])):
        assert list(ga) == list(gb)
        for name in ga:
            np.testing.assert_allclose(ga[name], gb[name], rtol=1e-12, atol=1e-13, err_msg=name)


def test_sharded_sampling_and_training_are_reproducible(threads):
    threads(2)
    model = GPT(CONFIG, seed=3)
    prompts = np.random.default_rng(1).integers(0, CONFIG.vocab_size, size=(6, 3))
    a = sample(model, prompts, 5, rng=7)
    b = sample(model, prompts, 5, rng=7)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    tokens = np.random.default_rng(2).integers(0, CONFIG.vocab_size, size=(6, 9))
    grads = []
    for _ in range(2):
        _, d = cross_entropy(model.forward(tokens), tokens)
        grads.append(model.backward(d))
    for name in grads[0]:  # same shards, same order of sums: bit for bit
        np.testing.assert_array_equal(grads[0][name], grads[1][name])


def test_blas_threads_are_restored_after_every_call(threads):
    threads(2)
    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    model = GPT(CONFIG, seed=0)
    tokens = np.zeros((4, 5), dtype=int)
    model.forward(tokens)
    model.backward(np.ones((4, 5, CONFIG.vocab_size), dtype=np.float32))
    sample(model, tokens[:, :2], 3, rng=0)
    after = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert after == before


def _sharded_forward_in_child(queue):
    model = GPT(CONFIG, seed=0)
    queue.put(model.forward(np.zeros((4, 5), dtype=int)).shape)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_builds_its_own_pool(threads):
    threads(2)
    GPT(CONFIG, seed=0).forward(np.zeros((4, 5), dtype=int))  # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_sharded_forward_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():  # the parent's dead pool would hang here
        child.kill()
        pytest.fail("a sharded forward in a forked child never finished")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == (4, 5, CONFIG.vocab_size)


def test_errors_in_a_shard_reach_the_caller(threads):
    threads(2)

    def boom(i):
        raise FloatingPointError(f"shard {i}")

    with pytest.raises(FloatingPointError, match="shard 0"):
        parallel.map_shards(boom, [(0,), (1,)])


def test_bad_thread_counts_raise(monkeypatch):
    with pytest.raises(ValueError, match="n"):
        parallel.set_num_threads(0)
    with pytest.raises(ValueError, match="n"):
        parallel.set_num_threads(1.5)
    before = parallel._state["threads"]
    try:
        parallel._state["threads"] = None
        monkeypatch.setenv("RLHF_TOY_NUM_THREADS", "two")
        with pytest.raises(ValueError, match="RLHF_TOY_NUM_THREADS"):
            parallel.get_num_threads()
        monkeypatch.setenv("RLHF_TOY_NUM_THREADS", "3")
        assert parallel.get_num_threads() == 3
    finally:
        parallel._state["threads"] = before
