"""Property tests of rlhf_toy.kl: exact KL and entropy, and the per-sample estimators k1, k2, k3."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rlhf_toy import strategies as st_rl
from rlhf_toy.kl import entropy, kl_divergence, kl_estimates


@st.composite
def pairs_of_tables(draw, allow_zeros_p=True, allow_zeros_q=False):
    shape = draw(st_rl.shapes())
    p = draw(st_rl.policy_tables(shape=shape, allow_zeros=allow_zeros_p))
    q = draw(st_rl.policy_tables(shape=shape, allow_zeros=allow_zeros_q))
    return p, q


def kl_by_definition(p, q):
    out = np.zeros(p.shape[0])
    for i in range(p.shape[0]):
        for a, b in zip(p[i], q[i], strict=True):
            if a > 0:
                out[i] += np.inf if b == 0 else a * np.log(a / b)
    return out


@given(pairs_of_tables(allow_zeros_q=True))
def test_kl_matches_the_definition(pq):
    p, q = pq
    kl = kl_divergence(p, q)
    expected = kl_by_definition(p, q)
    assert kl.shape == (p.shape[0],)
    np.testing.assert_array_equal(np.isinf(kl), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(kl[finite], expected[finite], rtol=1e-10, atol=1e-13)


@given(pairs_of_tables())
def test_kl_is_non_negative_and_obeys_pinsker(pq):
    """KL(p || q) >= ||p - q||_1^2 / 2 >= 0 (Pinsker): zero iff p == q."""
    p, q = pq
    kl = kl_divergence(p, q)
    tv1 = np.abs(p - q).sum(1)
    assert np.all(kl >= 0.0)
    assert np.all(kl >= 0.5 * tv1**2 - 1e-12)


@given(st_rl.policy_tables(allow_zeros=True))
def test_kl_of_a_table_with_itself_is_exactly_zero(p):
    np.testing.assert_array_equal(kl_divergence(p, p), 0.0)


def test_kl_is_infinite_where_p_has_mass_and_q_has_none():
    kl = kl_divergence([[0.5, 0.5], [1.0, 0.0]], [[1.0, 0.0], [0.5, 0.5]])
    assert kl[0] == np.inf
    assert kl[1] == pytest.approx(np.log(2.0), rel=1e-15)


def test_kl_along_another_axis():
    p = np.array([[0.2, 0.5], [0.8, 0.5]])
    q = np.array([[0.5, 0.1], [0.5, 0.9]])
    np.testing.assert_allclose(kl_divergence(p, q, axis=0), kl_divergence(p.T, q.T), rtol=1e-15)


@given(st_rl.policy_tables(allow_zeros=True))
def test_entropy_bounds(p):
    """0 <= H(p) <= log |support(p)| <= log Y."""
    h = entropy(p)
    support = (p > 0).sum(1)
    assert np.all(h >= 0.0)
    assert np.all(h <= np.log(support) + 1e-12)


@given(st.integers(1, 50))
def test_entropy_extremes(n):
    np.testing.assert_allclose(entropy(np.full(n, 1.0 / n)), np.log(n), rtol=1e-14)
    assert entropy(np.eye(n)[0]) == 0.0


@given(pairs_of_tables())
def test_entropy_and_cross_entropy_identity(pq):
    """KL(p || q) = H(p, q) - H(p) with the cross-entropy summed on p's support."""
    p, q = pq
    cross = -np.sum(np.where(p > 0, p * np.log(q), 0.0), axis=1)
    np.testing.assert_allclose(kl_divergence(p, q), cross - entropy(p), rtol=1e-9, atol=1e-11)


# --- the per-sample estimators -------------------------------------------------------------


def _exact_expectation(q, p, key):
    """sum_y q(y) k(y) over the support of q: the estimator's exact expectation under q."""
    support = q > 0
    logq = np.log(np.where(support, q, 1.0))
    with np.errstate(divide="ignore"):
        logp = np.log(p)
    k = kl_estimates(logq[support], logp[support])[key]
    total = np.zeros(q.shape[0])
    np.add.at(total, np.nonzero(support)[0], q[support] * k)
    return total


@given(pairs_of_tables(allow_zeros_p=True, allow_zeros_q=False))
def test_k1_is_unbiased(qp):
    """E_q[k1] = KL(q || p) exactly, for any q (zeros allowed) and p > 0."""
    q, p = qp
    np.testing.assert_allclose(_exact_expectation(q, p, "k1"), kl_divergence(q, p),
                               rtol=1e-12, atol=1e-12)


@given(pairs_of_tables(allow_zeros_p=False, allow_zeros_q=False))
def test_k3_is_unbiased_when_supports_agree(qp):
    """E_q[k3] = E_q[r - 1] + E_q[k1] = KL(q || p) when p and q have the same support."""
    q, p = qp
    np.testing.assert_allclose(_exact_expectation(q, p, "k3"), kl_divergence(q, p),
                               rtol=1e-12, atol=1e-12)


def test_k3_is_biased_low_when_p_has_mass_off_the_samples_support():
    """E_q[r] = p(supp q) < 1 then, so E_q[k3] = KL(q || p) - p(outside supp q)."""
    q = np.array([[0.5, 0.5, 0.0]])
    p = np.array([[0.25, 0.25, 0.5]])
    np.testing.assert_allclose(_exact_expectation(q, p, "k3"), kl_divergence(q, p) - 0.5,
                               rtol=1e-14)


@given(pairs_of_tables(allow_zeros_p=False, allow_zeros_q=False))
def test_k2_expectation_is_half_the_second_moment_of_log_ratio(qp):
    q, p = qp
    log_r = np.log(p) - np.log(q)
    np.testing.assert_allclose(_exact_expectation(q, p, "k2"), 0.5 * np.sum(q * log_r**2, 1),
                               rtol=1e-12, atol=1e-14)


@given(st.data())
def test_k2_and_k3_are_non_negative_per_sample(data):
    shape = data.draw(st.tuples(st.integers(1, 5), st.integers(1, 9)))
    logq = data.draw(st_rl.log_probs(shape, low=-30.0))
    logp = data.draw(st_rl.log_probs(shape, low=-30.0))
    est = kl_estimates(logq, logp)
    assert set(est) == {"k1", "k2", "k3"}
    for key in est:
        assert est[key].shape == shape
    assert np.all(est["k2"] >= 0.0)
    assert np.all(est["k3"] >= 0.0)
    np.testing.assert_allclose(est["k1"], logq - logp, rtol=1e-15)
    np.testing.assert_allclose(est["k2"], 0.5 * (logp - logq) ** 2, rtol=1e-15)


@given(hnp.arrays(np.float64, 7, elements=st.floats(1e-7, 1e-5)),
       hnp.arrays(np.bool_, 7))
def test_k3_is_accurate_near_r_equal_one(magnitude, negative):
    """k3 = e^u - 1 - u ~ u^2/2 + u^3/6 for small u = log r, to 1e-6 relative.

    The naive ``(exp(u) - 1) - u`` loses this (relative error ~1e-4 at |u| = 1e-6).
    Below |u| ~ 1e-9 float64 cannot resolve u^2/2 next to u at all, so the range stops at 1e-7.
    """
    log_r = np.where(negative, -magnitude, magnitude)
    est = kl_estimates(np.zeros(7), log_r)
    np.testing.assert_allclose(est["k3"], log_r**2 / 2 + log_r**3 / 6, rtol=1e-6, atol=1e-300)


def test_k_estimators_with_minus_inf_other_logp():
    est = kl_estimates([-1.0], [-np.inf])
    assert est["k1"][0] == np.inf and est["k3"][0] == np.inf


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: kl_divergence([0.5, 0.5], [0.2, 0.3, 0.5]), "same shape"),
        (lambda: kl_divergence([1.2, -0.2], [0.5, 0.5]), "p must be non-negative"),
        (lambda: kl_divergence([0.5, 0.5], [[0.5, 0.6]]), "q row 0 sums to 1.1"),
        (lambda: kl_divergence([np.nan, 1.0], [0.5, 0.5]), "p must be finite"),
        (lambda: entropy([0.3, 0.3]), "p row"),
        (lambda: kl_estimates([0.0, -1.0], [0.0]), "same shape"),
        (lambda: kl_estimates([-np.inf], [0.0]), "logp_sampled must be finite"),
        (lambda: kl_estimates([-1.0], [np.nan]), "logp_other"),
        (lambda: kl_estimates([-1.0], [np.inf]), "logp_other"),
    ],
)
def test_invalid_inputs_raise_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("axis", [0, 1, -2])
def test_entropy_and_kl_along_a_non_default_axis(axis):
    rng = np.random.default_rng(axis + 5)
    raw = rng.random((3, 4, 5))
    p = raw / raw.sum(axis=axis, keepdims=True)
    raw_q = rng.random((3, 4, 5))
    q = raw_q / raw_q.sum(axis=axis, keepdims=True)
    pm, qm = np.moveaxis(p, axis, -1), np.moveaxis(q, axis, -1)
    h = entropy(p, axis=axis)
    assert h.shape == pm.shape[:-1]
    np.testing.assert_allclose(h, -(pm * np.log(pm)).sum(-1), rtol=1e-14)
    np.testing.assert_allclose(kl_divergence(p, q, axis=axis),
                               (pm * np.log(pm / qm)).sum(-1), rtol=1e-13)
    other = 0 if axis != 0 else 1
    with pytest.raises(ValueError, match=f"along axis {other}"):
        entropy(p, axis=other)  # those slices do not sum to one
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        entropy(p, axis=3)
    with pytest.raises(TypeError, match="axis must be an integer"):
        entropy(p, axis=1.0)


def test_wrong_kinds_and_empty_tables_are_refused():
    with pytest.raises(TypeError, match="p must be real"):
        entropy(np.array([0.5, 0.5]) + 0j)
    with pytest.raises(TypeError, match="p must hold numbers, got booleans"):
        entropy(np.array([True, False]))
    with pytest.raises(ValueError, match="p must not be empty"):
        entropy(np.zeros((0, 3)))
    with pytest.raises(TypeError, match="logp_other must be real"):
        kl_estimates([-1.0], [-1.0 + 1j])
