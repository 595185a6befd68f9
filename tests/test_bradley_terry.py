"""Properties of the Bradley-Terry model (chapter, Stage 2: Reward Model Training)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import expit

from rlhf_toy.bradley_terry import (
    bradley_terry_grad,
    bradley_terry_nll,
    comparison_counts,
    fit_bradley_terry,
    fit_bradley_terry_with_prior,
    preference_probability,
    sample_comparisons,
)

finite_rewards = st.floats(-50, 50, allow_nan=False, allow_infinity=False)


def centred(r):
    return r - r.mean(axis=1, keepdims=True)


# --------------------------------------------------------------------------------------
# preference_probability
# --------------------------------------------------------------------------------------


@given(
    hnp.arrays(np.float64, st.integers(1, 20), elements=finite_rewards),
    hnp.arrays(np.float64, st.integers(1, 20), elements=finite_rewards),
)
def test_preference_probability_is_symmetric(a, b):
    n = min(a.size, b.size)
    a, b = a[:n], b[:n]
    p_ab = preference_probability(a, b)
    p_ba = preference_probability(b, a)
    np.testing.assert_allclose(p_ab + p_ba, 1.0, rtol=0, atol=4.5e-16)  # to 2 ulp
    np.testing.assert_array_equal(preference_probability(a, a), 0.5)


def test_preference_probability_values_and_broadcasting():
    np.testing.assert_allclose(preference_probability(np.log(3.0), 0.0), 0.75, rtol=1e-15)
    p = preference_probability(np.zeros((2, 1)), np.array([0.0, 1e4, -1e4]))
    assert p.shape == (2, 3)
    np.testing.assert_array_equal(p[0], [0.5, 0.0, 1.0])


def test_preference_probability_rejects_bad_input():
    with pytest.raises(ValueError, match="r_chosen"):
        preference_probability(np.nan, 0.0)
    with pytest.raises(ValueError, match="r_rejected"):
        preference_probability(0.0, np.inf)
    with pytest.raises(ValueError, match="broadcast"):
        preference_probability(np.zeros(3), np.zeros(4))


# --------------------------------------------------------------------------------------
# sample_comparisons
# --------------------------------------------------------------------------------------


def test_sample_comparisons_win_frequency_matches_sigmoid():
    reward = np.array([[1.0, 0.0]])
    x, y_w, y_l = sample_comparisons([[0.5, 0.5]], reward, 200_000, rng=0)
    assert x.shape == y_w.shape == y_l.shape == (200_000,)
    assert x.dtype == y_w.dtype == y_l.dtype == np.int64
    assert np.all(x == 0)
    distinct = y_w != y_l
    # half the pairs compare two different responses
    assert abs(distinct.mean() - 0.5) < 0.01
    win_rate = np.mean(y_w[distinct] == 0)
    # ~1e5 distinct pairs: standard error 0.0014
    assert abs(win_rate - expit(1.0)) < 0.006


def test_sample_comparisons_follows_pi_and_prompt_probs():
    pi = np.array([[0.7, 0.3, 0.0], [0.0, 0.0, 1.0], [0.2, 0.2, 0.6]])
    reward = np.zeros_like(pi)
    prompt_probs = np.array([0.5, 0.0, 0.5])
    x, y_w, y_l = sample_comparisons(pi, reward, 100_000, rng=1, prompt_probs=prompt_probs)
    assert not np.any(x == 1)  # zero-probability prompt never drawn
    assert abs(np.mean(x == 0) - 0.5) < 0.01
    responses = np.concatenate([y_w[x == 0], y_l[x == 0]])
    assert not np.any(responses == 2)  # zero-probability response never drawn
    assert abs(np.mean(responses == 0) - 0.7) < 0.01
    # with a constant reward the winner is a fair coin, so y_w alone is also ~ pi
    assert abs(np.mean(y_w[x == 0] == 0) - 0.7) < 0.01


def test_sample_comparisons_uniform_prompts_by_default():
    x, _, _ = sample_comparisons(np.full((4, 2), 0.5), np.zeros((4, 2)), 40_000, rng=2)
    np.testing.assert_allclose(np.bincount(x, minlength=4) / x.size, 0.25, atol=0.01)


def test_sample_comparisons_is_reproducible():
    pi = np.full((3, 4), 0.25)
    reward = np.arange(12.0).reshape(3, 4)
    a = sample_comparisons(pi, reward, 500, rng=7)
    b = sample_comparisons(pi, reward, 500, rng=np.random.default_rng(7))
    c = sample_comparisons(pi, reward, 500, rng=8)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not all(np.array_equal(u, v) for u, v in zip(a, c, strict=True))


@pytest.mark.parametrize("n_pairs", [0, -3, 2.5, True, "10"])
def test_sample_comparisons_rejects_bad_n_pairs(n_pairs):
    with pytest.raises(ValueError, match="n_pairs"):
        sample_comparisons([[0.5, 0.5]], [[0.0, 1.0]], n_pairs, rng=0)


def test_sample_comparisons_rejects_bad_tables():
    good_pi, good_r = np.full((2, 3), 1 / 3), np.zeros((2, 3))
    with pytest.raises(ValueError, match="reward"):
        sample_comparisons(good_pi, np.where(np.eye(2, 3) > 0, np.nan, 0.0), 5, rng=0)
    with pytest.raises(ValueError, match="pi row 1 sums to 0.7"):
        sample_comparisons([[0.2, 0.3, 0.5], [0.2, 0.2, 0.3]], good_r, 5, rng=0)
    with pytest.raises(ValueError, match="pi must be non-negative"):
        sample_comparisons([[1.5, -0.5, 0.0], [0.2, 0.3, 0.5]], good_r, 5, rng=0)
    with pytest.raises(ValueError, match="pi and reward"):
        sample_comparisons(good_pi, np.zeros((2, 4)), 5, rng=0)
    with pytest.raises(ValueError, match=r"pi must have shape \(X, Y\)"):
        sample_comparisons([0.5, 0.5], [0.0, 1.0], 5, rng=0)
    with pytest.raises(ValueError, match="prompt_probs"):
        sample_comparisons(good_pi, good_r, 5, rng=0, prompt_probs=[1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="prompt_probs"):
        sample_comparisons(good_pi, good_r, 5, rng=0, prompt_probs=[0.6, 0.6])
    with pytest.raises(TypeError, match="rng"):
        sample_comparisons(good_pi, good_r, 5, rng=None)


# --------------------------------------------------------------------------------------
# NLL and gradient
# --------------------------------------------------------------------------------------


@st.composite
def comparison_problems(draw):
    """A reward table, comparisons on it, and an l2 coefficient."""
    n_prompts = draw(st.integers(1, 4))
    n_responses = draw(st.integers(2, 5))
    n = draw(st.integers(1, 25))
    reward = draw(hnp.arrays(np.float64, (n_prompts, n_responses), elements=st.floats(-6, 6)))
    x = draw(hnp.arrays(np.int64, n, elements=st.integers(0, n_prompts - 1)))
    y_w = draw(hnp.arrays(np.int64, n, elements=st.integers(0, n_responses - 1)))
    y_l = draw(hnp.arrays(np.int64, n, elements=st.integers(0, n_responses - 1)))
    l2 = draw(st.sampled_from([0.0, 1e-3, 0.5, 3.0]))
    return reward, x, y_w, y_l, l2


@given(comparison_problems())
def test_nll_gradient_matches_central_differences(problem):
    reward, x, y_w, y_l, l2 = problem
    grad = bradley_terry_grad(reward, x, y_w, y_l, l2=l2)
    assert grad.shape == reward.shape
    h = 1e-6
    fd = np.zeros_like(reward)
    for idx in np.ndindex(reward.shape):
        step = np.zeros_like(reward)
        step[idx] = h
        fd[idx] = (
            bradley_terry_nll(reward + step, x, y_w, y_l, l2=l2)
            - bradley_terry_nll(reward - step, x, y_w, y_l, l2=l2)
        ) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    if l2 == 0.0:
        # the per-prompt shift is a flat direction: every row of the gradient sums to 0
        np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-14)


def test_nll_value_and_regulariser_scaling():
    reward = np.array([[1.0, -1.0, 0.5]])
    x, y_w, y_l = np.array([0, 0]), np.array([0, 2]), np.array([1, 0])
    data = -(np.log(expit(2.0)) + np.log(expit(-0.5))) / 2
    assert bradley_terry_nll(reward, x, y_w, y_l) == pytest.approx(data, rel=1e-14)
    # l2 / 2 * ||r||^2 is added to the summed NLL, then divided by N = 2
    penalised = bradley_terry_nll(reward, x, y_w, y_l, l2=0.4)
    assert penalised == pytest.approx(data + 0.4 / 2 * 2.25 / 2, rel=1e-14)
    assert bradley_terry_nll(np.zeros((2, 2)), [1], [0], [1]) == pytest.approx(np.log(2))


def test_nll_is_finite_for_huge_margins():
    reward = np.array([[1e6, -1e6]])
    assert bradley_terry_nll(reward, [0], [1], [0]) == pytest.approx(2e6)
    assert bradley_terry_nll(reward, [0], [0], [1]) == 0.0
    np.testing.assert_allclose(bradley_terry_grad(reward, [0], [1], [0]), [[1.0, -1.0]])


@pytest.mark.parametrize("func", [bradley_terry_nll, bradley_terry_grad])
def test_nll_and_grad_reject_bad_input(func):
    reward = np.zeros((2, 3))
    with pytest.raises(ValueError, match="y_w must hold indices in \\[0, 3\\)"):
        func(reward, [0, 1], [0, 3], [1, 2])
    with pytest.raises(ValueError, match="x must hold indices in \\[0, 2\\)"):
        func(reward, [-1], [0], [1])
    with pytest.raises(ValueError, match="y_l"):
        func(reward, [0], [0], [7])
    with pytest.raises(ValueError, match="integer"):
        func(reward, [0.0], [0], [1])
    with pytest.raises(ValueError, match="y_w must have length 2 as x"):
        func(reward, [0, 1], [0], [1])
    with pytest.raises(ValueError, match="x must not be empty"):
        func(reward, [], [], [])
    with pytest.raises(ValueError, match="reward must be finite"):
        func(np.array([[0.0, np.nan, 0.0], [0.0, 0.0, 0.0]]), [0], [0], [1])
    with pytest.raises(ValueError, match="reward must have shape"):
        func(np.zeros(3), [0], [0], [1])
    for l2 in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="l2"):
            func(reward, [0], [0], [1], l2=l2)


# --------------------------------------------------------------------------------------
# fit_bradley_terry
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_recovers_rewards_and_error_shrinks_with_data(seed):
    rng = np.random.default_rng(seed)
    n_prompts, n_responses = 3, 6
    r_star = rng.normal(size=(n_prompts, n_responses)) + rng.normal(size=(n_prompts, 1)) * 5
    pi = np.full((n_prompts, n_responses), 1 / n_responses)
    errors = []
    for n_pairs in (2_000, 50_000):
        x, y_w, y_l = sample_comparisons(pi, r_star, n_pairs, rng)
        r_hat = fit_bradley_terry(x, y_w, y_l, n_prompts, n_responses)
        np.testing.assert_allclose(r_hat.mean(axis=1), 0.0, atol=1e-12)
        # identified only up to a per-prompt shift: compare after centring r_star too
        errors.append(np.sqrt(np.mean((r_hat - centred(r_star)) ** 2)))
    small_n, large_n = errors
    assert large_n < 0.5 * small_n  # ~ sqrt(2k / 50k) = 0.2 expected
    assert large_n < 0.07


@pytest.mark.parametrize("l2", [1e-3, 0.0, 1.0])
def test_fit_is_a_stationary_point_at_scale(l2):
    """20 x 50 table, 1e5 comparisons: the fit zeroes the gradient (and is fast)."""
    rng = np.random.default_rng(3)
    n_prompts, n_responses = 20, 50
    r_star = rng.normal(size=(n_prompts, n_responses))
    pi = np.full((n_prompts, n_responses), 1 / n_responses)
    x, y_w, y_l = sample_comparisons(pi, r_star, 100_000, rng)
    r_hat = fit_bradley_terry(x, y_w, y_l, n_prompts, n_responses, l2=l2)
    assert r_hat.shape == (n_prompts, n_responses)
    np.testing.assert_allclose(r_hat.mean(axis=1), 0.0, atol=1e-12)
    grad = bradley_terry_grad(r_hat, x, y_w, y_l, l2=l2)
    assert np.max(np.abs(grad)) < 1e-7
    # penalising more shrinks towards 0 and increases the data's NLL
    if l2 == 1.0:
        r_weak = fit_bradley_terry(x, y_w, y_l, n_prompts, n_responses, l2=1e-3)
        assert np.linalg.norm(r_hat) < np.linalg.norm(r_weak)
        assert bradley_terry_nll(r_hat, x, y_w, y_l) > bradley_terry_nll(r_weak, x, y_w, y_l)


def test_fit_two_responses_matches_closed_form():
    # 0 beats 1 three times, 1 beats 0 once: MLE margin log(3/1)
    x = np.zeros(4, dtype=np.int64)
    y_w, y_l = np.array([0, 0, 0, 1]), np.array([1, 1, 1, 0])
    r_hat = fit_bradley_terry(x, y_w, y_l, 1, 2, l2=0.0)
    np.testing.assert_allclose(r_hat, [[np.log(3) / 2, -np.log(3) / 2]], atol=1e-8)
    # a weak penalty barely moves it; a strong one shrinks the margin
    weak = fit_bradley_terry(x, y_w, y_l, 1, 2, l2=1e-6)
    strong = fit_bradley_terry(x, y_w, y_l, 1, 2, l2=10.0)
    np.testing.assert_allclose(weak, r_hat, atol=1e-6)
    assert 0 < strong[0, 0] - strong[0, 1] < np.log(3)


def test_fit_never_compared_responses_get_the_row_mean():
    # prompt 0: only responses 0-2 ever compared; prompt 1: nothing compared at all
    x = np.zeros(6, dtype=np.int64)
    y_w = np.array([0, 0, 1, 2, 1, 0])
    y_l = np.array([1, 2, 2, 0, 0, 1])
    for l2 in (1e-3, 0.0):
        r_hat = fit_bradley_terry(x, y_w, y_l, n_prompts=2, n_responses=5, l2=l2)
        np.testing.assert_allclose(r_hat.mean(axis=1), 0.0, atol=1e-15)
        np.testing.assert_array_equal(r_hat[0, 3:], 0.0)
        np.testing.assert_array_equal(r_hat[1], 0.0)
        assert r_hat[0, 0] > r_hat[0, 1] > r_hat[0, 2]


def test_fit_with_l2_zero_rejects_separable_data():
    # response 0 always beats response 1: the MLE margin is +infinity
    with pytest.raises(ValueError, match=r"prompt 0, responses \[0\] never lose.*l2 > 0"):
        fit_bradley_terry([0, 0], [0, 0], [1, 1], 1, 2, l2=0.0)
    # prompt 0 is fine; in prompt 1, {1, 2} beat each other but both always beat 0
    x = [0, 0, 1, 1, 1, 1]
    y_w, y_l = [0, 1, 1, 2, 1, 2], [1, 0, 2, 1, 0, 0]
    with pytest.raises(ValueError, match=r"prompt 1, responses \[1, 2\] never lose"):
        fit_bradley_terry(x, y_w, y_l, 2, 3, l2=0.0)
    # with a penalty the same data has a finite fit
    r_hat = fit_bradley_terry(x, y_w, y_l, 2, 3, l2=1e-3)
    assert np.all(np.isfinite(r_hat))
    assert r_hat[1, 1] > r_hat[1, 0] and r_hat[1, 2] > r_hat[1, 0]


def test_fit_ignores_the_order_of_comparisons():
    rng = np.random.default_rng(5)
    x, y_w, y_l = sample_comparisons(np.full((2, 4), 0.25), rng.normal(size=(2, 4)), 300, rng)
    perm = rng.permutation(x.size)
    a = fit_bradley_terry(x, y_w, y_l, 2, 4)
    b = fit_bradley_terry(x[perm], y_w[perm], y_l[perm], 2, 4)
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="y_w must hold indices in \\[0, 2\\)"):
        fit_bradley_terry([0], [2], [0], 1, 2)
    with pytest.raises(ValueError, match="x must hold indices in \\[0, 1\\)"):
        fit_bradley_terry([1], [0], [1], 1, 2)
    with pytest.raises(ValueError, match="n_prompts"):
        fit_bradley_terry([0], [0], [1], 0, 2)
    with pytest.raises(ValueError, match="n_responses"):
        fit_bradley_terry([0], [0], [1], 1, 2.0)
    with pytest.raises(ValueError, match="l2"):
        fit_bradley_terry([0], [0], [1], 1, 2, l2=-1e-3)
    with pytest.raises(ValueError, match="y_l must have length 2 as x"):
        fit_bradley_terry([0, 0], [0, 1], [1], 1, 2)


def test_fit_with_prior_is_a_stationary_point_of_the_recentred_objective():
    rng = np.random.default_rng(3)
    r_star = rng.standard_normal((2, 6))
    x, y_w, y_l = sample_comparisons(np.full((2, 6), 1 / 6), r_star, 300, rng=4)
    mu, l2 = rng.standard_normal((2, 6)), 0.5
    r = fit_bradley_terry_with_prior(x, y_w, y_l, 2, 6, mu, l2)
    grad = bradley_terry_grad(r, x, y_w, y_l) + l2 * (r - mu) / x.size
    np.testing.assert_allclose(grad, 0.0, atol=1e-8)
    with pytest.raises(ValueError, match="prior_mean"):
        fit_bradley_terry_with_prior(x, y_w, y_l, 2, 6, np.zeros((2, 5)), l2)
    with pytest.raises(ValueError, match="l2"):
        fit_bradley_terry_with_prior(x, y_w, y_l, 2, 6, mu, 0.0)


def test_comparison_counts_validates_its_indices():
    with pytest.raises(ValueError, match="y_l"):
        comparison_counts([0], [1], [3], 1, 3)


def test_separable_data_names_the_first_undefeated_group():
    """A chain 2 > 0 > 1 > 3: only response 2 never loses; with two undefeated groups (one
    per prompt) the message names the first prompt's, whatever the order of the data."""
    chain = ([0, 0, 0], [2, 0, 1], [0, 1, 3])
    with pytest.raises(ValueError, match=r"in prompt 0, responses \[2\] never lose"):
        fit_bradley_terry(*chain, 1, 4, l2=0.0)
    for x, y_w in (([0, 1], [1, 2]), ([1, 0], [2, 1])):
        with pytest.raises(ValueError, match=r"in prompt 0, responses \[1\] never lose"):
            fit_bradley_terry(x, y_w, [0, 0], 2, 3, l2=0.0)


def test_comparison_counts_count_winners_and_losers_alike():
    counts = comparison_counts([0, 0, 1, 1], [1, 1, 2, 0], [0, 2, 0, 0], 2, 3)
    np.testing.assert_array_equal(counts, [[1, 2, 1], [3, 0, 1]])
    assert counts.dtype == np.int64
    x, y_w, y_l = sample_comparisons(np.full((2, 3), 1 / 3), np.zeros((2, 3)), 50, rng=1)
    assert comparison_counts(x, y_w, y_l, 2, 3).sum() == 100  # two per comparison


# --------------------------------------------------------------------------------------
# convergence: the MAP fit with a prior, unbalanced data, the non-convergence warning
# --------------------------------------------------------------------------------------


def _prior_gradient(r, mu, x, y_w, y_l, l2):
    """Gradient of the MAP objective, from the public NLL gradient."""
    return bradley_terry_grad(r, x, y_w, y_l) + l2 * (r - mu) / np.size(x)


@pytest.mark.parametrize(
    ("gap", "n_w", "n_l", "l2"),
    [(0.5, 3, 1, 0.5), (-2.0, 1, 4, 1e-3), (1e3, 2, 0, 1e-3), (1e6, 1, 0, 1e-8),
     (-1e6, 0, 3, 1e-8), (40.0, 5, 5, 1e-6)],
)
def test_fit_with_prior_two_responses_solves_the_scalar_stationarity_condition(gap, n_w, n_l,
                                                                                l2):
    """Prior means ``(0, gap)``; response 0 beats 1 ``n_w`` times and loses ``n_l`` times.

    The two gradient entries are opposite, so ``r - mu = (t, -t)`` with
    ``n_l sigma(d) - n_w sigma(-d) + l2 t = 0`` at the margin ``d = 2 t - gap``: one
    increasing scalar equation, solved by bisection. Huge gaps saturate the sigmoids.
    """
    from scipy.optimize import brentq

    def h(t):
        d = 2 * t - gap
        return n_l * expit(d) - n_w * expit(-d) + l2 * t

    lo, hi = -(n_l + 1) / l2, (n_w + 1) / l2
    t = brentq(h, lo, hi, xtol=1e-12, rtol=4 * np.finfo(float).eps, maxiter=2000)
    x = np.zeros(n_w + n_l, dtype=np.int64)
    y_w = np.r_[np.zeros(n_w, np.int64), np.ones(n_l, np.int64)]
    y_l = 1 - y_w
    mu = np.array([[0.0, gap]])
    r = fit_bradley_terry_with_prior(x, y_w, y_l, 1, 2, mu, l2)
    np.testing.assert_allclose(r - mu, [[t, -t]], rtol=1e-8, atol=1e-8)


def test_fit_with_prior_accepts_prior_means_at_the_documented_bound():
    """Entries of +-1e100 are accepted; the sigmoids saturate, so the MAP is exact.

    Response 2 (prior 3) beats response 0 (prior 1e100) once: ``sigma = 1``, so the
    stationarity condition ``-1 + l2 (r_2 - 3) = 0`` gives ``r_2 = 3 + 1/l2 = 4``; the moves
    of ``r_0``, ``r_1`` (size ``1/l2``) are below the resolution of 1e100 and vanish.
    """
    mu = np.array([[1e100, -1e100, 3.0]])
    r = fit_bradley_terry_with_prior([0, 0], [1, 2], [0, 0], 1, 3, mu, 1.0)
    np.testing.assert_array_equal(r[0, :2], [1e100, -1e100])
    np.testing.assert_allclose(r[0, 2], 4.0, rtol=1e-11)
    with pytest.raises(ValueError, match="prior_mean entries must be in"):
        fit_bradley_terry_with_prior([0], [1], [0], 1, 3, mu * (1 + 1e-15), 1.0)


@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([1e-3, 0.1, 1.0, 1e3]),
    st.sampled_from([0.0, 1.0, "posterior"]),
    st.integers(1, 300),
)
def test_fit_with_prior_converges_without_warning_on_ordinary_fits(seed, l2, prior, n):
    """Random data, prior means 0, N(0, 1) or N(0, 1/l2) (an ensemble's randomised prior):
    the fit reaches a stationary point, and never warns (a warning is an error here)."""
    rng = np.random.default_rng(seed)
    sd = 1 / np.sqrt(l2) if prior == "posterior" else prior
    r_star = 2 * rng.standard_normal((2, 5))
    x, y_w, y_l = sample_comparisons(np.full((2, 5), 0.2), r_star, n, rng)
    mu = sd * rng.standard_normal((2, 5))
    r = fit_bradley_terry_with_prior(x, y_w, y_l, 2, 5, mu, l2)
    assert np.max(np.abs(_prior_gradient(r, mu, x, y_w, y_l, l2))) < 1e-7


def test_fit_with_prior_warns_when_the_optimiser_stops_short():
    """A hard fit: prior means 1e12 apart, a prior precision of 1e-12 and 100 comparisons
    that pull the two entries level. The sigmoid's kink is 1e-12 of the distance to travel,
    and L-BFGS-B stops short: the warning names the iterations and the gradient, and the
    table it returns is indeed not stationary."""
    mu = np.array([[0.0, 1e12]])
    x, y_w, y_l = np.zeros(100, np.int64), np.zeros(100, np.int64), np.ones(100, np.int64)
    message = r"after \d+ iterations with max \|grad\| = \S+ > 1e-07"
    with pytest.warns(RuntimeWarning, match=message):
        r = fit_bradley_terry_with_prior(x, y_w, y_l, 1, 2, mu, 1e-12)
    # the float64 resolution at 5e11 (4 eps R H_ii = 1.1e-4) is far below what is left
    assert np.max(np.abs(_prior_gradient(r, mu, x, y_w, y_l, 1e-12))) > 1e-3


def test_fit_warns_when_the_optimiser_stops_short(monkeypatch):
    """The plain fit's check: an optimiser cut to one iteration leaves a gradient above
    1e-7 and the fit says so; the same fit run to the end is silent and stationary."""
    import rlhf_toy.bradley_terry as bt

    rng = np.random.default_rng(0)
    x, y_w, y_l = sample_comparisons(np.full((2, 6), 1 / 6), rng.normal(size=(2, 6)), 400, rng)
    r = fit_bradley_terry(x, y_w, y_l, 2, 6, l2=1e-3)
    assert np.max(np.abs(bradley_terry_grad(r, x, y_w, y_l, l2=1e-3))) < 1e-7

    minimize = bt.minimize

    def one_iteration(*args, options, **kwargs):
        return minimize(*args, options={**options, "maxiter": 1}, **kwargs)

    monkeypatch.setattr(bt, "minimize", one_iteration, raising=True)
    with pytest.warns(RuntimeWarning, match=r"fit_bradley_terry: .* after 1 iterations with"):
        fit_bradley_terry(x, y_w, y_l, 2, 6, l2=1e-3)


@pytest.mark.parametrize("l2", [0.0, 1e-3])
def test_fit_converges_on_very_unbalanced_counts(l2):
    """One pair compared 10^5 times (0 beats 1 in 60%), a chain 1-2-...-5 once each way.

    Without a penalty the MLE is known: ``r_0 - r_1 = log(60000/40000)`` and the chain, tied
    both ways, is level with ``r_1``. The preconditioner spans 1e5 in curvature here; the fit
    must still reach a stationary point (a weak penalty moves the margin by ~1e-8).
    """
    chain_w, chain_l = np.arange(1, 5), np.arange(2, 6)
    y_w = np.r_[np.zeros(60_000, np.int64), np.ones(40_000, np.int64), chain_w, chain_l]
    y_l = np.r_[np.ones(60_000, np.int64), np.zeros(40_000, np.int64), chain_l, chain_w]
    x = np.zeros(y_w.size, np.int64)
    r = fit_bradley_terry(x, y_w, y_l, 1, 6, l2=l2)
    assert np.max(np.abs(bradley_terry_grad(r, x, y_w, y_l, l2=l2))) < 1e-7
    np.testing.assert_allclose(r[0, 0] - r[0, 1], np.log(1.5), atol=1e-7)
    if l2 == 0.0:
        np.testing.assert_allclose(r[0, 2:], r[0, 1], atol=1e-6)
    mu = np.linspace(-1.0, 1.0, 6)[None, :]
    r_map = fit_bradley_terry_with_prior(x, y_w, y_l, 1, 6, mu, 1.0)
    assert np.max(np.abs(_prior_gradient(r_map, mu, x, y_w, y_l, 1.0))) < 1e-7


@pytest.mark.parametrize(("gap", "n_w", "l2"), [(1e12, 1, 1e-12), (1e11, 3, 1e-11)])
def test_fit_with_prior_margin_is_exact_to_float64_at_huge_prior_gaps(gap, n_w, l2):
    """Prior means ``(0, gap)`` with ``l2 gap = 1``, response 0 winning ``n_w`` times: the
    MAP margin ``d`` solves ``n_w sigma(-d) = l2 (gap + d) / 2`` (0 for one win, about
    ``log 5`` for three) while the entries sit near ``gap / 2``. The fit must restart until
    the margin is right to a few ulps of the entries: a first L-BFGS-B run leaves it
    ~1e-3 off."""
    from scipy.optimize import brentq

    d_star = brentq(lambda d: n_w * expit(-d) - l2 * (gap + d) / 2, -50.0, 50.0, xtol=1e-15)
    x = np.zeros(n_w, np.int64)
    r = fit_bradley_terry_with_prior(x, x, x + 1, 1, 2, np.array([[0.0, gap]]), l2)
    assert abs((r[0, 0] - r[0, 1]) - d_star) <= 8 * np.spacing(gap / 2)


def test_map_fit_refuses_a_prior_precision_whose_hessian_underflows():
    """``l2 / N`` for a subnormal ``l2`` is 0: the fit would divide by it and return NaN."""
    from rlhf_toy.bradley_terry import fit_bradley_terry_with_prior

    args = (np.array([0]), np.array([0]), np.array([1]), 1, 3, np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"l2 must be in \[1e-300, 1e\+08\], got 5e-324"):
        fit_bradley_terry_with_prior(*args, 5e-324)
    assert np.all(np.isfinite(fit_bradley_terry_with_prior(*args, 1e-300)))
