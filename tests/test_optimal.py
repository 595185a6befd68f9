"""Property tests of rlhf_toy.optimal: the KL-regularised optimum and its identities (Stage 3)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlhf_toy import strategies as st_rl
from rlhf_toy.kl import kl_divergence
from rlhf_toy.optimal import (
    log_optimal_policy,
    log_partition,
    objective,
    objective_gradient,
    optimal_policy,
    optimal_value,
    reward_kl_frontier,
)


@st.composite
def bandit_and_policy(draw, allow_zeros=True):
    pi_ref, reward = draw(st_rl.bandit_tables(allow_zeros=allow_zeros))
    pi = draw(st_rl.policy_tables(shape=pi_ref.shape, allow_zeros=True))
    return pi_ref, reward, pi


# --- exercise 1: the closed form and its first-order condition -----------------------------


@given(st_rl.bandit_tables(allow_zeros=True), st_rl.betas())
def test_optimal_policy_is_the_boltzmann_reweighting(tables, beta):
    pi_ref, reward = tables
    unnormalised = pi_ref * np.exp(reward / beta)
    expected = unnormalised / unnormalised.sum(1, keepdims=True)
    np.testing.assert_allclose(optimal_policy(pi_ref, reward, beta), expected, rtol=1e-10,
                               atol=1e-300)
    np.testing.assert_allclose(log_partition(pi_ref, reward, beta),
                               np.log(unnormalised.sum(1)), rtol=1e-12, atol=1e-12)


@given(st_rl.bandit_tables(allow_zeros=True), st_rl.betas())
def test_first_order_condition_holds_at_the_optimum(tables, beta):
    """Exercise 1: dJ/dpi = r - beta (log(pi*/pi_ref) + 1) = beta (log Z - 1) on the support."""
    pi_ref, reward = tables
    pi_star = optimal_policy(pi_ref, reward, beta)
    grad = objective_gradient(pi_star, pi_ref, reward, beta, prompt_probs=None)
    n_prompts = pi_ref.shape[0]
    multiplier = beta * (log_partition(pi_ref, reward, beta) - 1.0) / n_prompts  # (X,)
    support = pi_ref > 0
    rows = np.nonzero(support)[0]
    np.testing.assert_allclose(grad[support], multiplier[rows], rtol=1e-9, atol=1e-9)
    assert np.all(grad[~support] == -np.inf)


@given(st_rl.bandit_tables(), st_rl.betas(), st.floats(0.05, 0.95))
def test_first_order_condition_fails_away_from_the_optimum(tables, beta, t):
    """A mixture of pi* and pi_ref is not stationary unless r is constant on each row."""
    pi_ref, reward = tables
    pi_star = optimal_policy(pi_ref, reward, beta)
    pi = t * pi_star + (1 - t) * pi_ref
    grad = objective_gradient(pi, pi_ref, reward, beta)
    spread = grad.max(1) - grad.min(1)
    r_spread = reward.max(1) - reward.min(1)
    moved = np.abs(pi_star - pi_ref).max(1) > 1e-6
    assert np.all(spread[moved & (r_spread > 1e-6)] > 1e-9)


# --- the value of the optimum --------------------------------------------------------------


@given(bandit_and_policy(), st_rl.betas())
def test_optimal_value_is_beta_log_z_and_an_upper_bound(tables, beta):
    """J(pi*) = beta E_x log Z >= J(pi) for every policy pi (-inf where pi leaves pi_ref)."""
    pi_ref, reward, pi = tables
    value = optimal_value(pi_ref, reward, beta)
    log_z = log_partition(pi_ref, reward, beta)
    assert value == pytest.approx(beta * log_z.mean(), rel=1e-12, abs=1e-12)
    j_star = objective(optimal_policy(pi_ref, reward, beta), pi_ref, reward, beta)
    assert j_star == pytest.approx(value, rel=1e-9, abs=1e-9)
    assert objective(pi, pi_ref, reward, beta) <= value + 1e-12
    assert objective(pi_ref, pi_ref, reward, beta) <= value + 1e-12


@given(bandit_and_policy(allow_zeros=False), st_rl.betas(), st.data())
def test_gap_to_the_optimum_is_beta_times_kl_to_pi_star(tables, beta, data):
    """J(pi*) - J(pi) = beta E_x KL(pi || pi*): the objective is a KL in disguise."""
    pi_ref, reward, pi = tables
    w = data.draw(st_rl.distributions(pi_ref.shape[0]))
    pi_star = optimal_policy(pi_ref, reward, beta)
    gap = optimal_value(pi_ref, reward, beta, w) - objective(pi, pi_ref, reward, beta, w)
    assert gap == pytest.approx(beta * w @ kl_divergence(pi, pi_star), rel=1e-8, abs=1e-10)


@given(st_rl.bandit_tables(allow_zeros=True), st_rl.betas())
def test_kl_of_the_optimum_from_log_partition(tables, beta):
    """KL(pi* || pi_ref) = E_{pi*}[r] / beta - log Z."""
    pi_ref, reward = tables
    pi_star = optimal_policy(pi_ref, reward, beta)
    expected_r = (pi_star * reward).sum(1)
    np.testing.assert_allclose(kl_divergence(pi_star, pi_ref),
                               expected_r / beta - log_partition(pi_ref, reward, beta),
                               rtol=1e-8, atol=1e-9)


@given(st_rl.bandit_tables(allow_zeros=True), st_rl.betas())
def test_log_partition_derivative_in_inverse_beta_is_expected_reward(tables, beta):
    """d log Z / d(1/beta) = E_{pi*}[r], by central differences in lambda = 1/beta."""
    pi_ref, reward = tables
    lam = 1.0 / beta
    h = 1e-5 * lam
    d_log_z = (log_partition(pi_ref, reward, 1.0 / (lam + h))
               - log_partition(pi_ref, reward, 1.0 / (lam - h))) / (2 * h)
    expected_r = (optimal_policy(pi_ref, reward, beta) * reward).sum(1)
    np.testing.assert_allclose(d_log_z, expected_r, rtol=1e-6, atol=1e-6)


def test_log_optimal_policy_is_minus_inf_off_the_support():
    log_pi = log_optimal_policy([[0.5, 0.0, 0.5]], [[1.0, 5.0, 0.0]], beta=0.5)
    assert log_pi[0, 1] == -np.inf
    np.testing.assert_allclose(np.exp(log_pi).sum(), 1.0, rtol=1e-15)


# --- the reward-KL frontier ----------------------------------------------------------------


BETA_GRID = np.geomspace(0.02, 50.0, 25)


@given(st_rl.bandit_tables(allow_zeros=True), st.data())
def test_frontier_matches_a_loop_over_optimal_policy(tables, data):
    pi_ref, reward = tables
    w = data.draw(st_rl.distributions(pi_ref.shape[0]))
    gold = data.draw(st_rl.reward_tables(pi_ref.shape))
    front = reward_kl_frontier(pi_ref, reward, BETA_GRID, prompt_probs=w,
                               eval_rewards={"gold": gold})
    pis = [optimal_policy(pi_ref, reward, b) for b in BETA_GRID]
    np.testing.assert_array_equal(front.betas, BETA_GRID)
    np.testing.assert_allclose(front.kl, [w @ kl_divergence(p, pi_ref) for p in pis],
                               rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(front.reward, [w @ (p * reward).sum(1) for p in pis],
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(front.objective,
                               [optimal_value(pi_ref, reward, b, w) for b in BETA_GRID],
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(front.extra["gold"], [w @ (p * gold).sum(1) for p in pis],
                               rtol=1e-10, atol=1e-12)


@given(st_rl.bandit_tables(allow_zeros=True))
def test_frontier_is_monotone_in_beta(tables):
    """Smaller beta: more KL and more reward (d E[r] / d(1/beta) = Var_{pi*}(r) >= 0)."""
    pi_ref, reward = tables
    front = reward_kl_frontier(pi_ref, reward, BETA_GRID)  # betas increasing
    assert np.all(np.diff(front.kl) <= 1e-12)
    assert np.all(np.diff(front.reward) <= 1e-12)
    assert np.all(front.kl >= 0.0)


def test_frontier_is_strictly_monotone_for_a_non_constant_reward():
    rng = np.random.default_rng(0)
    pi_ref = rng.dirichlet(np.ones(6), size=3)
    reward = rng.standard_normal((3, 6))
    front = reward_kl_frontier(pi_ref, reward, BETA_GRID)
    assert np.all(np.diff(front.kl) < 0)
    assert np.all(np.diff(front.reward) < 0)
    # the ends approach the argmax (small beta) and pi_ref (large beta)
    assert front.reward[0] > 0.95 * reward.max(1).mean()
    assert front.kl[-1] < 1e-3


# --- extremes -------------------------------------------------------------------------------


def test_tiny_beta_gives_the_argmax_with_ties_weighted_by_pi_ref():
    pi_ref = np.array([[0.1, 0.2, 0.3, 0.1, 0.3, 0.0]])
    reward = np.array([[1.0, 3.0, 3.0, 2.0, 3.0, 9.0]])  # the 9.0 is off the support
    pi_ref[0, 4], pi_ref[0, 0] = 0.0, 0.4  # one tied maximiser has pi_ref = 0
    pi_star = optimal_policy(pi_ref, reward, 1e-8)
    np.testing.assert_allclose(pi_star, [[0.0, 0.4, 0.6, 0.0, 0.0, 0.0]], rtol=1e-12, atol=0)
    assert optimal_value(pi_ref, reward, 1e-8) == pytest.approx(3.0 + 1e-8 * np.log(0.5),
                                                                rel=1e-14)


def test_huge_beta_gives_pi_ref():
    rng = np.random.default_rng(1)
    pi_ref = rng.dirichlet(np.ones(7), size=4)
    reward = 3 * rng.standard_normal((4, 7))
    np.testing.assert_allclose(optimal_policy(pi_ref, reward, 1e8), pi_ref, rtol=1e-7, atol=0)
    front = reward_kl_frontier(pi_ref, reward, [1e8])
    assert 0.0 <= front.kl[0] < 1e-14


@pytest.mark.parametrize("beta", [1e-8, 1e-3, 1.0, 1e3, 1e8])
def test_large_rewards_stay_finite(beta):
    rng = np.random.default_rng(2)
    pi_ref = rng.dirichlet(np.ones(5), size=3)
    pi_ref[:, 1] = 0.0
    pi_ref /= pi_ref.sum(1, keepdims=True)
    reward = 1e4 * rng.standard_normal((3, 5))
    pi_star = optimal_policy(pi_ref, reward, beta)
    assert np.all(np.isfinite(pi_star))
    np.testing.assert_allclose(pi_star.sum(1), 1.0, rtol=1e-14)
    assert np.all(pi_star[:, 1] == 0.0)
    assert np.all(np.isfinite(log_partition(pi_ref, reward, beta)))
    value = optimal_value(pi_ref, reward, beta)
    r_max = np.where(pi_ref > 0, reward, -np.inf).max(1).mean()
    assert np.isfinite(value) and value <= r_max + 1e-9
    front = reward_kl_frontier(pi_ref, reward, [beta], eval_rewards={"r": reward})
    for arr in (front.kl, front.reward, front.objective, front.extra["r"]):
        assert np.all(np.isfinite(arr))
    assert front.reward[0] >= (pi_ref * reward).sum(1).mean() - 1e-9 * abs(r_max)


@given(st_rl.bandit_tables(allow_zeros=True, scale=1e4),
       st.sampled_from([1e-8, 1e-4, 1.0, 1e4, 1e8]))
def test_zeros_of_pi_ref_stay_exactly_zero(tables, beta):
    pi_ref, reward = tables
    pi_star = optimal_policy(pi_ref, reward, beta)
    assert np.all(pi_star[pi_ref == 0] == 0.0)
    assert np.all(np.isfinite(pi_star))
    np.testing.assert_allclose(pi_star.sum(1), 1.0, rtol=1e-13)


# --- validation -----------------------------------------------------------------------------


GOOD_REF = np.array([[0.5, 0.5], [0.2, 0.8]])
GOOD_R = np.array([[0.0, 1.0], [1.0, 0.0]])


@pytest.mark.parametrize("beta", [0.0, -1.0, np.nan, np.inf, "one"])
@pytest.mark.parametrize("fn", [optimal_policy, log_optimal_policy, log_partition, optimal_value])
def test_bad_beta_raises_naming_beta(fn, beta):
    with pytest.raises(ValueError, match="beta"):
        fn(GOOD_REF, GOOD_R, beta)


@pytest.mark.parametrize(
    "pi_ref, reward, match",
    [
        ([[0.5, 0.5], [0.2, 0.7]], GOOD_R, "pi_ref row 1 sums to 0.9"),
        ([[1.5, -0.5], [0.2, 0.8]], GOOD_R, "pi_ref must be non-negative"),
        (GOOD_REF, [[0.0, 1.0, 2.0], [1.0, 0.0, 2.0]], "same shape"),
        (GOOD_REF, [[0.0, np.nan], [1.0, 0.0]], "reward must be finite"),
        (GOOD_REF, [[0.0, np.inf], [1.0, 0.0]], "reward must be finite"),
    ],
)
@pytest.mark.parametrize("fn", [optimal_policy, log_partition, optimal_value])
def test_bad_tables_raise_naming_the_argument(fn, pi_ref, reward, match):
    with pytest.raises(ValueError, match=match):
        fn(pi_ref, reward, 1.0)


def test_objective_and_gradient_validate_their_inputs():
    with pytest.raises(ValueError, match="pi row 0"):
        objective([[0.5, 0.6], [0.5, 0.5]], GOOD_REF, GOOD_R, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        objective([[1.0, 0.0, 0.0]], GOOD_REF, GOOD_R, 1.0)
    with pytest.raises(ValueError, match="beta"):
        objective_gradient(GOOD_REF, GOOD_REF, GOOD_R, -2.0)
    with pytest.raises(ValueError, match="prompt_probs"):
        optimal_value(GOOD_REF, GOOD_R, 1.0, prompt_probs=[0.2, 0.2, 0.6])
    with pytest.raises(ValueError, match="betas"):
        reward_kl_frontier(GOOD_REF, GOOD_R, [1.0, 0.0])
    with pytest.raises(ValueError, match="betas"):
        reward_kl_frontier(GOOD_REF, GOOD_R, [1.0, np.nan])
    with pytest.raises(ValueError, match="eval_rewards"):
        reward_kl_frontier(GOOD_REF, GOOD_R, [1.0], eval_rewards={"g": [[np.nan, 0], [0, 0]]})


# --- exact for every beta validation accepts, and the infinite derivatives ---------------

PI_REF = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
REWARD = np.array([[0.0, 1.0, 9.0], [3.0, -2.0, 3.0]])


@pytest.mark.parametrize("beta", [5e-324, 1e-310, 1e-300, 1e-8])
def test_frontier_at_tiny_beta_is_the_argmax_limit(beta):
    """``beta -> 0``: pi* is pi_ref on the reward maximisers of its support, KL = -log mass."""
    f = reward_kl_frontier(PI_REF, REWARD, [beta], eval_rewards={"r": REWARD})
    want_kl = np.mean([-np.log(0.5), -np.log(0.7)])  # row 2: a tie of 0.2 + 0.5 on top
    assert f.kl[0] == pytest.approx(want_kl, rel=1e-12)
    assert f.reward[0] == pytest.approx(2.0, rel=1e-12)  # mean of 1 and 3; 9 is off support
    assert f.extra["r"][0] == f.reward[0]
    assert f.objective[0] == pytest.approx(2.0 - beta * want_kl, rel=1e-12)
    assert optimal_value(PI_REF, REWARD, beta) == pytest.approx(f.objective[0], rel=1e-12)
    pi_star = optimal_policy(PI_REF, REWARD, beta)
    np.testing.assert_allclose(pi_star, [[0.0, 1.0, 0.0], [2 / 7, 0.0, 5 / 7]], atol=1e-15)


@pytest.mark.parametrize("beta", [1e4, 1e8, 1e300])
def test_frontier_at_huge_beta_has_the_small_kl_expansion(beta):
    """``KL(pi*_beta || pi_ref) = Var_ref(r) / (2 beta^2) + O(beta^-3)`` and
    ``J = E_ref r + Var_ref(r) / (2 beta) + O(beta^-2)``, to full relative precision."""
    mean = (PI_REF * REWARD).sum(-1)
    var = (PI_REF * REWARD**2).sum(-1) - mean**2
    f = reward_kl_frontier(PI_REF, REWARD, [beta])
    rel = max(1e-13, 100 / beta / beta)  # the next terms of the expansions
    if beta < 1e150:
        assert f.kl[0] == pytest.approx(np.mean(var) / (2 * beta**2), rel=1e-3)
    assert f.objective[0] == pytest.approx(np.mean(mean + var / (2 * beta)), rel=rel)
    assert optimal_value(PI_REF, REWARD, beta) == pytest.approx(f.objective[0], rel=1e-13)
    assert f.reward[0] == pytest.approx(np.mean(mean + var / beta), rel=rel)


def test_gradient_is_plus_inf_where_pi_is_zero_and_pi_ref_is_not():
    pi = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    g = objective_gradient(pi, PI_REF, REWARD, beta=0.5)
    # pi = 0 < pi_ref: +inf (mass there pays off without bound); pi_ref = 0: -inf (where
    # pi = 0 too: any mass there would cost infinite KL)
    assert g[0, 0] == np.inf and g[1, 1] == np.inf
    assert g[0, 2] == -np.inf
    w = 0.5
    assert g[0, 1] == pytest.approx(w * (1.0 - 0.5 * (np.log(1.0 / 0.5) + 1.0)), rel=1e-15)
    assert g[1, 0] == pytest.approx(w * (3.0 - 0.5 * (np.log(0.5 / 0.2) + 1.0)), rel=1e-15)
    # a prompt of probability zero has zero gradient everywhere, infinite entries included
    g0 = objective_gradient(pi, PI_REF, REWARD, beta=0.5, prompt_probs=[1.0, 0.0])
    np.testing.assert_array_equal(g0[1], 0.0)
    assert g0[0, 0] == np.inf


def test_empty_tables_and_wrong_kinds_are_refused():
    empty = np.zeros((0, 3))
    for call in (lambda: optimal_policy(empty, empty, 1.0),
                 lambda: optimal_value(empty, empty, 1.0),
                 lambda: reward_kl_frontier(empty, empty, [1.0])):
        with pytest.raises(ValueError, match="pi_ref must not be empty"):
            call()
    with pytest.raises(ValueError, match="betas must be a non-empty"):
        reward_kl_frontier(PI_REF, REWARD, [])
    with pytest.raises(TypeError, match="beta must be a real number"):
        optimal_policy(PI_REF, REWARD, "0.5")
    with pytest.raises(TypeError, match="reward must be real"):
        optimal_policy(PI_REF, REWARD + 1j, 0.5)
    with pytest.raises(TypeError, match="eval_rewards must be a dict"):
        reward_kl_frontier(PI_REF, REWARD, [1.0], eval_rewards=[REWARD])
