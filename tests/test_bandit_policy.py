"""The tabular softmax policy: probabilities, exact gradients through the softmax, sampling."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rlhf_toy import strategies as st_rl
from rlhf_toy.bandit.policy import TabularPolicy


@st.composite
def logits_tables(draw, allow_neg_inf=True):
    """Logits [X, Y] in [-8, 8], optionally with some -inf entries (never a whole row)."""
    shape = draw(st_rl.shapes(max_prompts=4, max_responses=7))
    z = draw(hnp.arrays(np.float64, shape, elements=st.floats(-8, 8)))
    if allow_neg_inf:
        mask = draw(hnp.arrays(np.bool_, shape))
        mask[np.arange(shape[0]), np.argmax(z, -1)] = False
        z = np.where(mask, -np.inf, z)
    return z


def softmax_by_definition(z):
    """exp(z_k) / sum_j exp(z_j), row by row, written out with Python's math."""
    out = np.zeros_like(z)
    for i, row in enumerate(z):
        e = [np.exp(v) if v > -np.inf else 0.0 for v in row]
        out[i] = np.array(e) / sum(e)
    return out


@given(logits_tables())
def test_probs_and_log_probs_match_the_definition(z):
    pi = TabularPolicy(z)
    expected = softmax_by_definition(z)
    np.testing.assert_allclose(pi.probs, expected, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(pi.probs.sum(1), 1.0, rtol=0, atol=1e-14)
    finite = np.isfinite(z)
    np.testing.assert_allclose(pi.log_probs[finite], np.log(expected[finite]), rtol=1e-12,
                               atol=1e-12)


@given(logits_tables())
def test_zeros_are_exactly_zero(z):
    pi = TabularPolicy(z)
    off = z == -np.inf
    assert np.all(pi.probs[off] == 0.0)
    assert np.all(pi.log_probs[off] == -np.inf)
    assert np.all(pi.probs[~off] > 0) and np.all(np.isfinite(pi.log_probs[~off]))
    np.testing.assert_array_equal(pi.support, ~off)


def test_log_probs_stay_exact_for_huge_logit_gaps():
    pi = TabularPolicy([[0.0, 1000.0, -1000.0]])
    np.testing.assert_array_equal(pi.log_probs, [[-1000.0, 0.0, -2000.0]])
    assert pi.probs[0, 1] == 1.0


@given(logits_tables())
def test_shift_invariance(z):
    shifted = z + np.arange(z.shape[0])[:, None] * 3.7
    np.testing.assert_allclose(TabularPolicy(shifted).probs, TabularPolicy(z).probs,
                               rtol=1e-10, atol=1e-300)


@given(logits_tables())
def test_entropy_matches_definition(z):
    p = softmax_by_definition(z)
    expected = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    np.testing.assert_allclose(TabularPolicy(z).entropy(), expected, rtol=1e-10, atol=1e-12)


@given(st_rl.policy_tables(allow_zeros=True))
def test_from_probs_round_trips(p):
    pi = TabularPolicy.from_probs(p)
    np.testing.assert_allclose(pi.probs, p, rtol=1e-12, atol=0)
    assert np.all((pi.logits == -np.inf) == (p == 0))


def _fd_grad(f, z, eps=1e-6):
    """Central finite differences of a scalar f on the finite entries of z."""
    grad = np.zeros_like(z)
    for idx in zip(*np.nonzero(np.isfinite(z)), strict=True):
        zp, zm = z.copy(), z.copy()
        zp[idx] += eps
        zm[idx] -= eps
        grad[idx] = (f(zp) - f(zm)) / (2 * eps)
    return grad


@given(logits_tables(), st.data())
def test_logits_grad_from_logp_matches_finite_differences(z, data):
    """L(z) = sum_y g(y) log pi(y) with a fixed random g: dL/dz = g - pi sum g."""
    g = data.draw(hnp.arrays(np.float64, z.shape, elements=st.floats(-3, 3)))
    support = np.isfinite(z)

    def loss(zz):
        return float(np.sum(g * np.where(support, TabularPolicy(zz).log_probs, 0.0)))

    analytic = TabularPolicy(z).logits_grad_from_logp(g)
    np.testing.assert_allclose(analytic, _fd_grad(loss, z), rtol=1e-6, atol=1e-7)
    assert np.all(analytic[~support] == 0.0)


@given(logits_tables(), st.data())
def test_logits_grad_from_probs_matches_finite_differences(z, data):
    """L(z) = sum_y g(y) pi(y): dL/dz = pi (g - sum pi g)."""
    g = data.draw(hnp.arrays(np.float64, z.shape, elements=st.floats(-3, 3)))

    def loss(zz):
        return float(np.sum(g * TabularPolicy(zz).probs))

    analytic = TabularPolicy(z).logits_grad_from_probs(g)
    np.testing.assert_allclose(analytic, _fd_grad(loss, z), rtol=1e-6, atol=1e-8)
    assert np.all(analytic[~np.isfinite(z)] == 0.0)


def test_gradients_ignore_entries_off_the_support():
    pi = TabularPolicy([[0.0, -np.inf, 1.0]])
    g1 = np.array([[1.0, 0.0, -2.0]])
    g2 = np.array([[1.0, np.nan, -2.0]])  # the -inf response's gradient is meaningless
    np.testing.assert_array_equal(pi.logits_grad_from_logp(g1), pi.logits_grad_from_logp(g2))
    np.testing.assert_array_equal(pi.logits_grad_from_probs(g1), pi.logits_grad_from_probs(g2))


def test_sampling_frequencies_match_probs():
    """Pearson chi-square per prompt against the exact probabilities (seeded)."""
    z = np.array([[0.0, 1.0, 2.0, -np.inf, -1.0],
                  [3.0, -np.inf, -np.inf, 0.0, 0.5],
                  [0.0, 0.0, 0.0, 0.0, 0.0]])
    pi = TabularPolicy(z)
    n_per_prompt = 40_000
    x = np.repeat(np.arange(3), n_per_prompt)
    y = pi.sample(x, rng=0)
    assert y.shape == x.shape and y.dtype == np.int64
    for row in range(3):
        counts = np.bincount(y[x == row], minlength=5)
        support = pi.probs[row] > 0
        assert np.all(counts[~support] == 0), "a zero-probability response was sampled"
        expected = n_per_prompt * pi.probs[row, support]
        chi2 = np.sum((counts[support] - expected) ** 2 / expected)
        # df <= 4: P(chi2 > 25) < 5e-5; a biased sampler (off by 1%) exceeds it
        assert chi2 < 25.0, (row, chi2)


def test_sampling_is_vectorised_over_any_shape_and_reproducible():
    pi = TabularPolicy(np.zeros((2, 3)))
    x = np.array([[0, 1], [1, 1]])
    a, b = pi.sample(x, rng=7), pi.sample(x, rng=np.random.default_rng(7))
    assert a.shape == (2, 2)
    np.testing.assert_array_equal(a, b)


def test_sampling_never_returns_a_zero_even_at_u_near_one():
    z = np.array([[0.0, -np.inf], [-np.inf, 0.0], [0.0, 0.0]])
    pi = TabularPolicy(z)
    x = np.repeat(np.arange(3), 20_000)
    y = pi.sample(x, rng=3)
    assert np.all(y[x == 0] == 0) and np.all(y[x == 1] == 1)
    assert set(np.unique(y[x == 2])) == {0, 1}


@pytest.mark.parametrize(
    "logits, match",
    [
        ([1.0, 2.0], "shape"),
        ([[0.0, np.nan]], "logits must be finite or -inf"),
        ([[0.0, np.inf]], "logits must be finite or -inf"),
        ([[0.0, 1.0], [-np.inf, -np.inf]], "row 1 is entirely -inf"),
    ],
)
def test_invalid_logits_raise(logits, match):
    with pytest.raises(ValueError, match=match):
        TabularPolicy(logits)


def test_invalid_arguments_raise():
    pi = TabularPolicy(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="x must be in"):
        pi.sample([0, 2], rng=0)
    with pytest.raises(ValueError, match="x must be integer"):
        pi.sample([0.0, 1.0], rng=0)
    with pytest.raises(TypeError, match="rng"):
        pi.sample([0], rng=None)
    with pytest.raises(ValueError, match="same shape"):
        pi.logits_grad_from_logp(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="g must be finite"):
        pi.logits_grad_from_probs(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="sums to"):
        TabularPolicy.from_probs([[0.5, 0.6]])


def test_policy_is_immutable():
    z = np.zeros((1, 2))
    pi = TabularPolicy(z)
    z[0, 0] = 5.0  # the policy copied its logits
    assert pi.probs[0, 0] == 0.5
    with pytest.raises(ValueError):
        pi.logits[0, 0] = 1.0


@given(logits_tables(), st.data())
def test_trainable_policy_gradients_are_the_tabular_ones_at_the_current_logits(z, data):
    """``TrainableTabularPolicy.logits_grad_from_*`` equal :class:`TabularPolicy`'s (checked
    against finite differences above) at its live logits, also after they were updated."""
    from rlhf_toy.bandit.policy import TrainableTabularPolicy

    g = data.draw(hnp.arrays(np.float64, z.shape, elements=st.floats(-3, 3)))
    step = data.draw(hnp.arrays(np.float64, z.shape, elements=st.floats(-2, 2)))
    live = TrainableTabularPolicy(np.zeros_like(z))
    live.logits_grad_from_logp(g)  # cache the softmax of the old logits
    live.params["logits"][...] = z
    for method in ("logits_grad_from_logp", "logits_grad_from_probs"):
        np.testing.assert_allclose(getattr(live, method)(g), getattr(TabularPolicy(z), method)(g),
                                   rtol=1e-12, atol=1e-14)
    live.params["logits"] += step
    frozen = TabularPolicy(z + step)
    for method in ("logits_grad_from_logp", "logits_grad_from_probs"):
        np.testing.assert_allclose(getattr(live, method)(g), getattr(frozen, method)(g),
                                   rtol=1e-12, atol=1e-14)


def test_policy_tables_are_read_only():
    from rlhf_toy.bandit.policy import TrainableTabularPolicy

    for pi in (TabularPolicy([[0.0, 1.0, 2.0]]), TrainableTabularPolicy([[0.0, 1.0, 2.0]])):
        for table in (pi.probs, pi.log_probs):
            assert not table.flags.writeable
            with pytest.raises(ValueError):
                table[0, 0] = 0.5


def test_sample_names_the_out_of_range_prompt():
    pi = TabularPolicy(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"x must be in \[0, 3\), got 5"):
        pi.sample(np.array([0, 2, 5, -1]), rng=0)
    with pytest.raises(ValueError, match=r"got -1"):
        pi.sample(np.array([0, 1, -1]), rng=0)


def test_trainable_entropy_is_the_row_entropy_on_the_mask_and_zero_off_it():
    from rlhf_toy.bandit.policy import TrainableTabularPolicy

    pi = TrainableTabularPolicy(np.log([[0.5, 0.25, 0.25], [1.0, 1e-300, 1e-300]]))
    h0 = -(0.5 * np.log(0.5) + 0.5 * np.log(0.25))
    out = pi.entropy(np.array([0, 0, 1]), np.zeros((3, 1), np.int64), np.array([[1.0], [0.0],
                                                                                 [1.0]]))
    np.testing.assert_allclose(out, [[h0], [0.0], [0.0]], atol=1e-12)


def test_trainable_sample_refuses_a_sample_count_beyond_the_maximum_at_once():
    """``np.repeat`` of 2**62 rows used to crash the interpreter; now a named ValueError."""
    from rlhf_toy._validate import MAX_SAMPLES
    from rlhf_toy.bandit.policy import TrainableTabularPolicy

    pi = TrainableTabularPolicy(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=f"n must be <= {MAX_SAMPLES // 2}"):
        pi.sample(np.array([0, 1]), 2**62, 0)
    y, mask = pi.sample(np.array([0, 1]), 3, 0)
    assert y.shape == (6, 1) and mask.shape == (6, 1)
