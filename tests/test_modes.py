"""Reverse KL is mode-seeking (zero-forcing), forward KL is mass-covering: the chapter's claim,
checked on Gaussian fits to mixtures and on the RLHF optimum over a 1-D response grid."""

import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlhf_toy import strategies as st_rl
from rlhf_toy.bandit.experiments import modes
from rlhf_toy.bandit.experiments.modes import (
    discretized_gaussian,
    fit_gaussian,
    fit_gaussian_local,
    forward_kl_regularised_policy,
    gaussian_divergence,
    mode_summary,
    reverse_kl_landscape,
    rlhf_gaussian_fits,
    rlhf_mode_sweep,
    rlhf_mode_world,
    two_mode_target,
)
from rlhf_toy.kl import entropy, kl_divergence
from rlhf_toy.optimal import log_partition, objective, optimal_policy

GRID = np.linspace(-12.0, 12.0, 601)  # wide enough that a std-3 Gaussian is not truncated
FAR = two_mode_target(GRID, (-3.0, 3.0), (0.7, 0.7), (0.5, 0.5))
CLOSE = two_mode_target(GRID, (-0.8, 0.8), (0.7, 0.7), (0.5, 0.5))


def moments(p, grid=GRID):
    mean = p @ grid
    return mean, np.sqrt(p @ (grid - mean) ** 2)


# --- the family and the targets ---------------------------------------------------------------


def test_discretized_gaussian_is_a_distribution_with_the_right_moments():
    q = discretized_gaussian(GRID, [[-1.0], [2.0]], [0.5, 1.0, 2.0])
    assert q.shape == (2, 3, GRID.size)
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=0, atol=1e-12)
    mean, std = moments(q[1, 1])  # 10 stds from the grid's end: truncation ~ exp(-50)
    assert mean == pytest.approx(2.0, abs=1e-9)
    assert std == pytest.approx(1.0, abs=1e-9)
    mean, std = moments(q[1, 2])  # 5 stds from the end: the truncation shows (~3e-6)
    assert 1e-7 < 2.0 - mean < 1e-5


def test_mixture_moments_and_validation():
    mean, std = moments(FAR)
    assert mean == pytest.approx(0.0, abs=1e-12)
    assert std == pytest.approx(np.sqrt(0.7**2 + 9.0), abs=1e-9)
    with pytest.raises(ValueError, match="std must be > 0"):
        discretized_gaussian(GRID, 0.0, 0.0)
    with pytest.raises(ValueError, match="grid must be strictly increasing"):
        discretized_gaussian(GRID[::-1], 0.0, 1.0)
    with pytest.raises(ValueError, match="weights"):
        two_mode_target(GRID, (-1, 1), (1, 1), (0.5, 0.6))
    with pytest.raises(ValueError, match="same length"):
        two_mode_target(GRID, (-1, 1, 2), (1, 1, 1), (0.5, 0.5))


def test_gaussian_divergence_is_the_exact_kl_in_each_direction():
    q = discretized_gaussian(GRID, 1.3, 0.9)
    assert gaussian_divergence(FAR, GRID, 1.3, 0.9, "reverse") == pytest.approx(
        kl_divergence(q, FAR), rel=1e-12)
    assert gaussian_divergence(FAR, GRID, 1.3, 0.9, "forward") == pytest.approx(
        kl_divergence(FAR, q), rel=1e-12)
    with pytest.raises(ValueError, match="divergence must be one of"):
        gaussian_divergence(FAR, GRID, 0.0, 1.0, "symmetric")
    zero = np.zeros_like(FAR)
    zero[:300] = FAR[:300] / FAR[:300].sum()
    with pytest.raises(ValueError, match="target must be > 0 on the whole grid"):
        fit_gaussian(zero, GRID, "reverse")


@pytest.mark.parametrize("divergence", modes.DIVERGENCES)
def test_objective_gradient_matches_central_differences(divergence):
    neg_entropy = -entropy(FAR)
    for x in [np.array([1.0, 0.2]), np.array([-3.5, 1.7]), np.array([0.3, -2.0])]:
        value, grad = modes._objective_and_grad(x, GRID, FAR, np.log(FAR), neg_entropy,
                                                divergence)
        assert value == pytest.approx(float(gaussian_divergence(
            FAR, GRID, x[0], np.exp(x[1]), divergence)), rel=1e-12)
        h = 1e-6
        fd = [(modes._objective_and_grad(x + h * e, GRID, FAR, np.log(FAR), neg_entropy,
                                         divergence)[0]
               - modes._objective_and_grad(x - h * e, GRID, FAR, np.log(FAR), neg_entropy,
                                           divergence)[0]) / (2 * h) for e in np.eye(2)]
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


# --- separated modes: reverse locks onto one, forward covers both -------------------------------


def test_reverse_fit_locks_onto_one_mode_forward_fit_covers_both():
    mean_r, std_r = fit_gaussian(FAR, GRID, "reverse")
    assert min(abs(mean_r - 3.0), abs(mean_r + 3.0)) < 0.2
    assert abs(std_r - 0.7) < 0.2
    # tighter: the other mode's pull is negligible at this separation
    assert min(abs(mean_r - 3.0), abs(mean_r + 3.0)) < 1e-3 and abs(std_r - 0.7) < 1e-3
    # KL(component || equal mixture) = log 2 when the components do not overlap
    assert gaussian_divergence(FAR, GRID, mean_r, std_r, "reverse") == pytest.approx(
        np.log(2), abs=1e-3)

    mean_f, std_f = fit_gaussian(FAR, GRID, "forward")
    assert abs(mean_f) < 0.1
    assert std_f > 2.5
    # forward KL onto a Gaussian family = moment matching (of the fit as it lives on the
    # grid: the parameter std is a little larger, the grid truncating its tails)
    np.testing.assert_allclose(moments(discretized_gaussian(GRID, mean_f, std_f)),
                               moments(FAR), atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_fit_matches_mean_and_std_of_any_target(seed):
    rng = np.random.default_rng(seed)
    target = two_mode_target(GRID, rng.uniform(-4, 4, 3), rng.uniform(0.3, 1.5, 3),
                             rng.dirichlet(np.ones(3)))
    mean, std = fit_gaussian(target, GRID, "forward")
    np.testing.assert_allclose(moments(discretized_gaussian(GRID, mean, std)),
                               moments(target), atol=1e-6)


def test_forward_kl_has_one_basin_every_start_reaches_the_global_fit():
    best = fit_gaussian(FAR, GRID, "forward")
    for init in [(-4.0, 3.0), (-11.0, 0.1), (10.0, 10.0), (0.0, 0.05), (5.0, 0.05)]:
        np.testing.assert_allclose(fit_gaussian_local(FAR, GRID, "forward", init), best,
                                   atol=1e-6)


def test_reverse_kl_has_a_poorer_local_minimum_between_separated_modes():
    # starting at the target's mean (0) with a small std, the optimiser never leaves the
    # symmetry line: it widens the Gaussian until it straddles both modes
    mean_l, std_l = fit_gaussian_local(FAR, GRID, "reverse", (0.0, 0.3))
    assert abs(mean_l) < 1e-6
    assert std_l == pytest.approx(2.5807, abs=1e-3)
    local = gaussian_divergence(FAR, GRID, mean_l, std_l, "reverse")
    global_ = gaussian_divergence(FAR, GRID, *fit_gaussian(FAR, GRID, "reverse"), "reverse")
    assert global_ < local
    assert local == pytest.approx(2.2403, abs=1e-3)
    assert global_ == pytest.approx(np.log(2), abs=1e-3)
    # a genuine (strict) local minimum, not a saddle: every nearby (mean, std) is worse
    dm, ds = np.meshgrid(np.linspace(-0.05, 0.05, 11), np.linspace(-0.05, 0.05, 11))
    around = gaussian_divergence(FAR, GRID, mean_l + dm, std_l + ds, "reverse")
    off_centre = (dm != 0) | (ds != 0)
    assert np.all(around[off_centre] > local)
    for std0 in (0.05, 1.0, 20.0):  # any width on the symmetry line ends there
        np.testing.assert_allclose(fit_gaussian_local(FAR, GRID, "reverse", (0.0, std0)),
                                   (0.0, std_l), atol=1e-6)
    # its basin is not just the symmetry line: a start at (0.5, 1.0) falls into it too,
    # while a narrow start at 1.5 reaches the mode
    np.testing.assert_allclose(fit_gaussian_local(FAR, GRID, "reverse", (0.5, 1.0)),
                               (0.0, std_l), atol=1e-5)
    assert fit_gaussian_local(FAR, GRID, "reverse", (1.5, 0.5))[0] == pytest.approx(3.0,
                                                                                  abs=1e-3)


def test_reverse_kl_landscape_has_a_basin_per_mode_and_a_ridge_between():
    means = np.linspace(-6, 6, 121)
    profile = reverse_kl_landscape(FAR, GRID, means, np.geomspace(0.1, 8, 80))
    at = {m: profile[np.argmin(np.abs(means - m))] for m in (-3.0, -1.5, 0.0, 1.5, 3.0)}
    assert at[-3.0] < at[-1.5] and at[3.0] < at[1.5]
    assert at[0.0] < at[1.5] and at[0.0] < at[-1.5]  # the broad fit's basin at 0


def test_unequal_modes_reverse_fit_can_get_stuck_on_the_lighter_mode():
    target = two_mode_target(GRID, (-3.0, 3.0), (0.7, 0.7), (0.7, 0.3))
    mean_g, std_g = fit_gaussian(target, GRID, "reverse")
    assert mean_g == pytest.approx(-3.0, abs=1e-3)
    kl_g = gaussian_divergence(target, GRID, mean_g, std_g, "reverse")
    assert kl_g == pytest.approx(-np.log(0.7), abs=1e-3)
    mean_l, std_l = fit_gaussian_local(target, GRID, "reverse", (3.0, 0.7))
    assert mean_l == pytest.approx(3.0, abs=1e-3)
    kl_l = gaussian_divergence(target, GRID, mean_l, std_l, "reverse")
    assert kl_l == pytest.approx(-np.log(0.3), abs=1e-3)
    assert kl_g < kl_l


def test_close_modes_give_a_single_broad_reverse_fit():
    mean_r, std_r = fit_gaussian(CLOSE, GRID, "reverse")
    assert abs(mean_r) < 0.05
    assert std_r > 1.0  # broader than either component (0.7): it covers both
    mean_f, std_f = fit_gaussian(CLOSE, GRID, "forward")
    assert abs(mean_f) < 1e-6 and std_f == pytest.approx(moments(CLOSE)[1], abs=1e-6)
    # (no truncation here: the fit is 10 stds from the grid's ends)
    assert std_r < std_f  # still narrower than the mass-covering fit


@pytest.mark.parametrize("half_gap, collapsed", [(1.5, True), (2.0, False)])
def test_reverse_fit_switches_from_broad_to_one_mode_as_the_modes_separate(half_gap, collapsed):
    target = two_mode_target(GRID, (-half_gap, half_gap), (0.7, 0.7), (0.5, 0.5))
    mean, std = fit_gaussian(target, GRID, "reverse")
    if collapsed:
        assert abs(mean) < 1e-3 and std > 1.4
    else:
        assert abs(abs(mean) - half_gap) < 0.05 and std < 0.8


# --- modes of a distribution on a grid ---------------------------------------------------------


def test_mode_summary_counts_modes_and_entropy():
    three = two_mode_target(GRID, (-5, 0, 5), (0.7, 0.7, 0.7), (0.3, 0.4, 0.3))
    tiny = two_mode_target(GRID, (-5, 0, 5), (0.7, 0.7, 0.7), (0.01, 0.49, 0.5))
    s = mode_summary(np.stack([three, tiny, np.full(GRID.size, 1 / GRID.size)]))
    np.testing.assert_array_equal(s["n_modes"], [3, 2, 1])
    np.testing.assert_allclose(s["entropy"][2], np.log(GRID.size), rtol=1e-12)
    np.testing.assert_allclose(s["effective_size"], np.exp(s["entropy"]), rtol=1e-12)
    assert mode_summary(tiny, threshold=0.0)["n_modes"] == 3
    with pytest.raises(ValueError, match="threshold"):
        mode_summary(three, threshold=1.5)


# --- the RLHF picture ---------------------------------------------------------------------------


@given(st_rl.policy_tables(shape=(3, 6), min_prob=0.01), st_rl.reward_tables((3, 6)),
       st_rl.betas())
def test_forward_kl_regularised_policy_is_stationary_and_optimal(pi_ref, reward, beta):
    pi = forward_kl_regularised_policy(pi_ref, reward, beta)
    np.testing.assert_allclose(pi.sum(-1), 1.0, atol=1e-12)
    # stationarity: r + beta pi_ref / pi is the same for every response of a row
    lam = reward + beta * pi_ref / pi
    np.testing.assert_allclose(lam, lam[:, :1] * np.ones_like(lam), rtol=1e-8, atol=1e-8)
    assert np.all(lam[:, 0] > reward.max(-1))

    def value(p):
        return (p * reward).sum(-1) - beta * kl_divergence(pi_ref, p)

    rng = np.random.default_rng(0)
    for _ in range(5):  # any other policy of the simplex does worse
        other = rng.dirichlet(np.ones(6), size=3)
        mixed = 0.9 * pi + 0.1 * other
        assert np.all(value(mixed) <= value(pi) + 1e-12)


def test_forward_kl_regularised_policy_limits_and_validation():
    pi_ref = np.array([0.5, 0.3, 0.2])
    reward = np.array([0.0, 1.0, 2.0])
    np.testing.assert_allclose(forward_kl_regularised_policy(pi_ref, reward, 1e6), pi_ref,
                               atol=1e-5)
    assert forward_kl_regularised_policy(pi_ref, reward, 1e-4)[2] > 0.99
    with pytest.raises(ValueError, match="pi_ref must be > 0"):
        forward_kl_regularised_policy([0.5, 0.5, 0.0], reward, 1.0)


def test_rlhf_optimum_drops_the_modes_of_pi_ref_as_beta_shrinks():
    grid, pi_ref, reward = rlhf_mode_world()
    assert mode_summary(pi_ref)["n_modes"] == 3
    betas = np.array([5.0, 1.0, 0.3, 0.15, 0.1, 0.05, 0.02])
    sweep = rlhf_mode_sweep(pi_ref, reward, betas)
    np.testing.assert_allclose(sweep["pi_star"][3], optimal_policy(pi_ref, reward, 0.15),
                               rtol=1e-10)
    np.testing.assert_array_equal(sweep["n_modes_star"], [3, 3, 3, 2, 2, 1, 1])
    assert np.all(np.diff(sweep["entropy_star"]) < 0)  # in this world: entropy falls
    assert np.all(np.diff(sweep["reward_star"]) > 0)
    # pi* never reaches zero where pi_ref > 0: the dropped modes are only suppressed
    assert np.all(sweep["pi_star"] > 0)
    left = grid < -2
    assert sweep["pi_star"][-1][left].sum() < 1e-3 < pi_ref[left].sum()


def test_swapping_the_kl_direction_in_the_objective_does_not_make_it_more_diverse():
    """Honest negative: the optimum of ``E r - beta KL(pi_ref || pi)`` is not more diverse
    than pi*. At the same beta it counts no more modes; at the same expected reward its
    entropy is within 0.02 nats of pi*'s near pi_ref and clearly lower far from it."""
    _, pi_ref, reward = rlhf_mode_world()
    sweep = rlhf_mode_sweep(pi_ref, reward, np.geomspace(0.01, 10, 40))
    assert np.all(sweep["n_modes_forward"] <= sweep["n_modes_star"])
    order = np.argsort(sweep["reward_forward"])
    r_star = sweep["reward_star"]
    inside = (r_star > sweep["reward_forward"].min()) & (r_star < sweep["reward_forward"].max())
    h_fwd = np.interp(r_star[inside], sweep["reward_forward"][order],
                      sweep["entropy_forward"][order])
    gap = h_fwd - sweep["entropy_star"][inside]
    near, far = r_star[inside] < 0.7, r_star[inside] > 0.8
    assert near.sum() >= 10 and far.sum() >= 10
    assert np.all(np.abs(gap[near]) < 0.02)
    assert np.all(gap[far] < -0.05)


def test_within_a_gaussian_family_rlhf_picks_one_mode_and_distribution_matching_covers():
    grid, pi_ref, reward = rlhf_mode_world()
    beta = 0.2
    fits = rlhf_gaussian_fits(pi_ref, reward, grid, beta)
    pi_star = fits["pi_star"]
    assert mode_summary(pi_star)["n_modes"] >= 2
    (m_rl, s_rl), (m_gdc, s_gdc) = fits["rlhf"], fits["gdc"]
    assert m_rl == pytest.approx(4.0, abs=0.05) and s_rl < 0.5  # the best cluster only
    assert s_gdc > 2.0  # spans all of pi*'s clusters
    q_gdc = discretized_gaussian(grid, m_gdc, s_gdc)
    np.testing.assert_allclose(q_gdc @ grid, pi_star @ grid, atol=1e-5)  # moment matching

    def coverage(mean, std):
        return pi_star[np.abs(grid - mean) < 2 * std].sum()

    assert coverage(m_rl, s_rl) < 0.7 < 0.95 < coverage(m_gdc, s_gdc)
    # RLHF within the family maximises J; distribution matching pays for its coverage
    assert fits["objective_rlhf"] > fits["objective_gdc"] + 0.2
    # the identity behind "RLHF is a reverse-KL projection of pi*"
    q = discretized_gaussian(grid, 1.0, 2.0)
    assert objective(q, pi_ref, reward, beta) == pytest.approx(
        beta * log_partition(pi_ref, reward, beta) - beta * kl_divergence(q, pi_star),
        rel=1e-10)


@functools.cache
def best_close_reverse_kl():
    return gaussian_divergence(CLOSE, GRID, *fit_gaussian(CLOSE, GRID, "reverse"), "reverse")


@given(st.floats(-2, 2), st.floats(0.3, 2.0))
def test_no_gaussian_beats_the_global_reverse_fit(mean, std):
    best = best_close_reverse_kl()
    assert gaussian_divergence(CLOSE, GRID, mean, std, "reverse") >= best - 1e-12
