"""AdamW, gradient clipping and the learning-rate schedule of ``rlhf_toy.optim``.

AdamW is checked against a float64 transcription of the Adam formulas (Kingma & Ba,
Loshchilov & Hutter) on random arrays of random shapes; clipping against
``np.linalg.norm`` of the concatenated gradients; the schedule against its endpoints and
its monotonicity.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlhf_toy.optim import AdamW, clip_grad_norm, lr_schedule

# ----------------------------------------------------------------------------- helpers

shapes = st.lists(
    st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple), min_size=1, max_size=4
)


def random_tensors(rng: np.random.Generator, shape_list, dtype, scale=1.0):
    return {
        f"p{i}": (scale * rng.standard_normal(s)).astype(dtype) for i, s in enumerate(shape_list)
    }


def reference_adamw(params, grads_seq, lrs, betas, eps, weight_decay):
    """The AdamW formulas written out literally, in float64, one parameter at a time."""
    b1, b2 = betas
    theta = {k: p.astype(np.float64) for k, p in params.items()}
    m = {k: np.zeros_like(p) for k, p in theta.items()}
    v = {k: np.zeros_like(p) for k, p in theta.items()}
    for t, (grads, lr) in enumerate(zip(grads_seq, lrs, strict=True), start=1):
        for k in theta:
            g = grads[k].astype(np.float64)
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g**2
            m_hat = m[k] / (1 - b1**t)
            v_hat = v[k] / (1 - b2**t)
            lam = weight_decay if theta[k].ndim >= 2 else 0.0
            theta[k] = theta[k] - lr * lam * theta[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta, m, v


# ----------------------------------------------------------------------------- AdamW


@given(
    shape_list=shapes,
    seed=st.integers(0, 2**31 - 1),
    n_steps=st.integers(1, 6),
    lr=st.floats(1e-4, 0.5),
    b1=st.floats(0.0, 0.99),
    b2=st.floats(0.5, 0.999),
    weight_decay=st.floats(0.0, 0.5),
    per_step_lr=st.booleans(),
)
def test_adamw_matches_reference_formulas(
    shape_list, seed, n_steps, lr, b1, b2, weight_decay, per_step_lr
):
    rng = np.random.default_rng(seed)
    for dtype, rtol, atol in ((np.float64, 1e-12, 1e-12), (np.float32, 1e-4, 1e-5)):
        params = random_tensors(rng, shape_list, dtype)
        start = {k: p.copy() for k, p in params.items()}
        grads_seq = [random_tensors(rng, shape_list, dtype) for _ in range(n_steps)]
        lrs = [lr * (0.5 + rng.random()) if per_step_lr else lr for _ in range(n_steps)]
        opt = AdamW(params, lr=lr, betas=(b1, b2), eps=1e-8, weight_decay=weight_decay)
        for grads, step_lr in zip(grads_seq, lrs, strict=True):
            opt.step(grads, lr=step_lr if per_step_lr else None)
        theta, m, v = reference_adamw(start, grads_seq, lrs, (b1, b2), 1e-8, weight_decay)
        assert opt.t == n_steps
        for k in params:
            assert params[k].dtype == dtype
            assert opt.m[k].dtype == dtype and opt.v[k].dtype == dtype
            np.testing.assert_allclose(params[k], theta[k], rtol=rtol, atol=atol * lr)
            np.testing.assert_allclose(opt.m[k], m[k], rtol=rtol, atol=atol)
            np.testing.assert_allclose(opt.v[k], v[k], rtol=rtol, atol=atol)


def per_parameter_adamw(params, grads_seq, lr, betas, eps, weight_decay):
    """AdamW's in-place operation sequence run one parameter at a time, in each
    parameter's own dtype: what the flat update must reproduce bit for bit."""
    b1, b2 = betas
    theta = {k: p.copy() for k, p in params.items()}
    m = {k: np.zeros_like(p) for k, p in theta.items()}
    v = {k: np.zeros_like(p) for k, p in theta.items()}
    for t, grads in enumerate(grads_seq, start=1):
        step_size = lr / (1.0 - b1**t)
        inv_sqrt_bc2 = 1.0 / math.sqrt(1.0 - b2**t)
        for k, p in theta.items():
            g, tmp = grads[k], np.empty_like(p)
            np.multiply(g, 1.0 - b1, out=tmp)
            m[k] *= b1
            m[k] += tmp
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - b2
            v[k] *= b2
            v[k] += tmp
            np.sqrt(v[k], out=tmp)
            tmp *= inv_sqrt_bc2
            tmp += eps
            np.divide(m[k], tmp, out=tmp)
            tmp *= step_size
            if p.ndim >= 2:
                p *= 1.0 - lr * weight_decay
            p -= tmp
    return theta, m, v


@given(shape_list=shapes, seed=st.integers(0, 2**31 - 1), n_steps=st.integers(1, 4))
def test_flat_adamw_is_bitwise_the_per_parameter_update(shape_list, seed, n_steps):
    """One flat buffer per dtype changes no bit: mixed float32 / float64 / 0-d parameters."""
    rng = np.random.default_rng(seed)
    dtypes = [(np.float32, np.float64)[i % 2] for i in range(len(shape_list))]
    params = {
        f"p{i}": rng.standard_normal(s).astype(d)
        for i, (s, d) in enumerate(zip(shape_list, dtypes, strict=True))
    }
    params["scalar"] = np.array(0.5, dtype=np.float32)  # a 0-d parameter (a head's bias)
    grads_seq = [
        {k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in params.items()}
        for _ in range(n_steps)
    ]
    want, want_m, want_v = per_parameter_adamw(params, grads_seq, 0.01, (0.9, 0.95), 1e-8, 0.1)
    opt = AdamW(params, lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    for grads in grads_seq:
        opt.step(grads)
    for k in params:
        assert params[k].dtype == want[k].dtype and params[k].shape == want[k].shape
        np.testing.assert_array_equal(params[k], want[k])
        np.testing.assert_array_equal(opt.m[k], want_m[k])
        np.testing.assert_array_equal(opt.v[k], want_v[k])


def test_adamw_updates_the_callers_arrays_in_place():
    rng = np.random.default_rng(0)
    params = random_tensors(rng, [(3, 4), (4,)], np.float32)
    originals = dict(params)
    grads = random_tensors(rng, [(3, 4), (4,)], np.float32)
    grads_before = {k: g.copy() for k, g in grads.items()}
    before = {k: p.copy() for k, p in params.items()}
    AdamW(params, lr=1e-2).step(grads)
    for k in params:
        assert params[k] is originals[k]
        assert not np.array_equal(params[k], before[k])
        np.testing.assert_array_equal(grads[k], grads_before[k])  # gradients untouched


def test_weight_decay_only_on_matrices():
    """With zero gradients Adam's step is zero, so only the decoupled decay acts."""
    rng = np.random.default_rng(1)
    shape_list = [(5,), (3, 4), (2, 3, 2), (1,)]
    params = random_tensors(rng, shape_list, np.float64)
    before = {k: p.copy() for k, p in params.items()}
    zeros = {k: np.zeros_like(p) for k, p in params.items()}
    lr, wd, n = 0.1, 0.2, 3
    opt = AdamW(params, lr=lr, weight_decay=wd)
    for _ in range(n):
        opt.step(zeros)
    for k, p in params.items():
        expected = before[k] * (1 - lr * wd) ** n if p.ndim >= 2 else before[k]
        np.testing.assert_allclose(p, expected, rtol=1e-14)


def test_adamw_minimises_a_quadratic():
    rng = np.random.default_rng(2)
    target = rng.standard_normal((4, 3))
    params = {"w": np.zeros((4, 3))}
    opt = AdamW(params, lr=0.05, weight_decay=0.0)
    for step in range(500):
        lr = lr_schedule(step, lr=0.05, total_steps=500, warmup_steps=10)
        opt.step({"w": 2 * (params["w"] - target)}, lr=lr)
    np.testing.assert_allclose(params["w"], target, atol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0}, "lr must be >= 0"),
        ({"lr": float("nan")}, "lr must be >= 0"),
        ({"betas": (1.0, 0.9)}, r"betas\[0\] must be in \[0, 1\)"),
        ({"betas": (0.9, -0.1)}, r"betas\[1\] must be in \[0, 1\)"),
        ({"betas": 0.9}, "betas must be a pair"),
        ({"eps": 0.0}, "eps must be > 0"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
    ],
)
def test_adamw_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdamW({"w": np.zeros((2, 2))}, **kwargs)


def test_adamw_rejects_bad_params_and_grads():
    with pytest.raises(TypeError, match="params must be a dict"):
        AdamW([np.zeros(2)])
    with pytest.raises(ValueError, match="empty"):
        AdamW({})
    with pytest.raises(ValueError, match=r"params\['w'\] must be a floating"):
        AdamW({"w": np.zeros(2, dtype=np.int64)})
    ro = np.zeros(2)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        AdamW({"w": ro})
    params = {"w": np.zeros((2, 2)), "b": np.zeros(2)}
    opt = AdamW(params)
    with pytest.raises(ValueError, match=r"missing the parameter\(s\) \['b'\]"):
        opt.step({"w": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="not parameters"):
        opt.step({"w": np.zeros((2, 2)), "b": np.zeros(2), "c": np.zeros(1)})
    with pytest.raises(ValueError, match=r"grads\['b'\] must have the shape .*\(2,\).*\(3,\)"):
        opt.step({"w": np.zeros((2, 2)), "b": np.zeros(3)})
    with pytest.raises(ValueError, match="lr must be >= 0"):
        opt.step({"w": np.zeros((2, 2)), "b": np.zeros(2)}, lr=-1e-3)
    with pytest.raises(TypeError, match="grads must be a dict"):
        opt.step([np.zeros((2, 2)), np.zeros(2)])
    assert opt.t == 0  # a rejected step changes nothing
    np.testing.assert_array_equal(opt.m["w"], 0.0)


# ----------------------------------------------------------------------------- clipping


@given(
    shape_list=shapes,
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(1e-3, 1e3),
    max_norm=st.floats(1e-2, 1e2),
)
def test_clip_grad_norm_returns_global_norm_and_keeps_direction(shape_list, seed, scale, max_norm):
    rng = np.random.default_rng(seed)
    grads = random_tensors(rng, shape_list, np.float64, scale=scale)
    before = {k: g.copy() for k, g in grads.items()}
    flat_before = np.concatenate([g.ravel() for g in before.values()])
    expected = np.linalg.norm(flat_before)
    norm = clip_grad_norm(grads, max_norm)
    assert isinstance(norm, float)
    assert math.isclose(norm, expected, rel_tol=1e-12)
    flat_after = np.concatenate([g.ravel() for g in grads.values()])
    after_norm = np.linalg.norm(flat_after)
    if expected > max_norm:
        assert math.isclose(after_norm, max_norm, rel_tol=1e-12)
        # same direction: one common positive scale factor for every entry of every tensor
        np.testing.assert_allclose(flat_after, flat_before * (max_norm / expected), rtol=1e-12)
    else:
        np.testing.assert_array_equal(flat_after, flat_before)


def test_clip_grad_norm_float32_and_nonfinite():
    grads = {"a": np.full((10, 10), 3.0, np.float32), "b": np.full(4, 4.0, np.float32)}
    norm = clip_grad_norm(grads, 1.0)
    assert math.isclose(norm, math.sqrt(900 + 64), rel_tol=1e-6)
    assert grads["a"].dtype == np.float32
    total = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))
    assert math.isclose(total, 1.0, rel_tol=1e-5)

    bad = {"a": np.array([1.0, np.nan])}
    with pytest.raises(FloatingPointError, match="gradient norm is nan"):
        clip_grad_norm(bad, 1.0)
    assert math.isinf(clip_grad_norm({"a": np.array([np.inf])}, 1.0, error_if_nonfinite=False))


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("inf"), "x"])
def test_clip_grad_norm_rejects_bad_max_norm(max_norm):
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm({"a": np.ones(2)}, max_norm)


def test_clip_grad_norm_rejects_non_arrays():
    with pytest.raises(ValueError, match=r"grads\['a'\] must be a numpy array"):
        clip_grad_norm({"a": [1.0, 2.0]}, 1.0)
    with pytest.raises(TypeError, match="grads must be a dict"):
        clip_grad_norm([np.ones(2)], 1.0)


# ----------------------------------------------------------------------------- schedule


def test_lr_schedule_endpoints():
    kw = {"lr": 1e-3, "total_steps": 100, "warmup_steps": 10, "min_lr": 1e-4}
    assert math.isclose(lr_schedule(0, **kw), 1e-4)  # (0 + 1) / 10 of the peak
    assert math.isclose(lr_schedule(9, **kw), 1e-3)
    assert math.isclose(lr_schedule(10, **kw), 1e-3)
    assert math.isclose(lr_schedule(55, **kw), 0.5 * (1e-3 + 1e-4))  # cosine midpoint
    assert math.isclose(lr_schedule(100, **kw), 1e-4)
    assert math.isclose(lr_schedule(10_000, **kw), 1e-4)
    # no warmup: starts at the peak; warmup == total: pure linear ramp
    assert lr_schedule(0, lr=0.1, total_steps=5) == 0.1
    ramp = [lr_schedule(s, lr=1.0, total_steps=4, warmup_steps=4) for s in range(4)]
    assert ramp == [0.25, 0.5, 0.75, 1.0]


@given(
    total_steps=st.integers(1, 300),
    warmup_frac=st.floats(0.0, 1.0),
    lr=st.floats(1e-6, 10.0),
    min_frac=st.floats(0.0, 1.0),
)
def test_lr_schedule_rises_then_falls_within_bounds(total_steps, warmup_frac, lr, min_frac):
    warmup = int(warmup_frac * total_steps)
    min_lr = min_frac * lr
    lrs = np.array(
        [
            lr_schedule(s, lr=lr, total_steps=total_steps, warmup_steps=warmup, min_lr=min_lr)
            for s in range(total_steps + 2)
        ]
    )
    tol = 1e-12 * lr
    assert np.all(lrs <= lr + tol)
    assert np.all(lrs[:warmup] > 0)
    assert np.all(np.diff(lrs[: max(warmup, 1)]) >= -tol)  # warmup: non-decreasing
    assert np.all(np.diff(lrs[max(warmup - 1, 0) :]) <= tol)  # after: non-increasing
    assert np.all(lrs[warmup:total_steps] >= min_lr - tol)
    assert math.isclose(lrs[total_steps], min_lr, rel_tol=1e-12, abs_tol=tol)
    assert math.isclose(lrs.max(), lr, rel_tol=1e-12)


@pytest.mark.parametrize(
    ("step", "kwargs", "match"),
    [
        (-1, {}, "step must be >= 0"),
        (1.5, {}, "step must be an integer"),
        (0, {"lr": 0.0}, "lr must be > 0"),
        (0, {"total_steps": 0}, "total_steps must be >= 1"),
        (0, {"warmup_steps": -1}, "warmup_steps must be >= 0"),
        (0, {"warmup_steps": 11}, r"warmup_steps must be <= total_steps \(10\), got 11"),
        (0, {"min_lr": 2.0}, r"min_lr must be in \[0, lr=1.0\], got 2.0"),
        (0, {"min_lr": -0.1}, r"min_lr must be in \[0"),
        (0, {"min_lr": "a"}, "min_lr must be a real number"),
    ],
)
def test_lr_schedule_rejects_bad_input(step, kwargs, match):
    kw = {"lr": 1.0, "total_steps": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        lr_schedule(step, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_norm_does_not_overflow_on_huge_finite_gradients(dtype):
    big = np.finfo(dtype).max / 4  # its square overflows in any dtype
    g = {"a": np.array([3.0 * 1e20, 0.0], dtype=dtype), "b": np.array([[4.0 * 1e20]], dtype=dtype)}
    norm = clip_grad_norm(g, 1.0)
    assert norm == pytest.approx(5e20, rel=1e-6)
    np.testing.assert_allclose(g["a"], [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(g["b"], [[0.8]], rtol=1e-6)
    g = {"a": np.full(4, big, dtype=dtype), "b": np.full(3, -big, dtype=dtype)}
    norm = clip_grad_norm(g, 2.0)
    assert norm == pytest.approx(float(big) * np.sqrt(7.0), rel=1e-6)
    total = np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in g.values()))
    assert total == pytest.approx(2.0, rel=1e-6)
    g = {"a": np.array([1e20, np.inf], dtype=dtype)}
    with pytest.raises(FloatingPointError):
        clip_grad_norm(g, 1.0)
    g = {"a": np.array([1e20, np.nan], dtype=dtype)}
    assert np.isnan(clip_grad_norm(g, 1.0, error_if_nonfinite=False))


def test_lr_schedule_at_the_edges_of_its_ranges():
    """``min_lr == lr`` (allowed) is a constant rate after warmup; an all-warmup run
    (``warmup_steps == total_steps``) ends at ``min_lr`` on ``step == total_steps``."""
    flat = [lr_schedule(s, lr=0.3, total_steps=8, warmup_steps=2, min_lr=0.3) for s in range(12)]
    assert flat == [0.15, 0.3] + [0.3] * 10
    kw = dict(lr=1.0, total_steps=4, warmup_steps=4, min_lr=0.25)
    assert [lr_schedule(s, **kw) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 0.25, 0.25]
