"""Goodhart curves: the chapter's overoptimisation claims, tested on many seeded worlds.

Each proxy behaves as the theory says (see ``rlhf_toy.bandit.experiments``):

- Gaussian noise (regressional Goodhart): overestimation ~ sigma^2 / beta in the small-tilt
  regime of a large response set, gold keeps rising (in expectation over worlds);
- heavy-tailed noise (catastrophic Goodhart): gold rises, then falls back;
- a learned Bradley-Terry proxy: gold peaks then falls, later with more comparisons, and the
  proxy's error is larger where the optimised policy goes (distributional shift);
- exercise 3, stated as what is actually true (per draw, in expectation over the noise, and
  in expectation over a random gold reward), with the counterexamples to the rest.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rlhf_toy import strategies as st_rl
from rlhf_toy.bandit.env import BanditEnv, make_bandit
from rlhf_toy.bandit.experiments.goodhart import (
    LEARNED_WORLD,
    GoodhartCurve,
    best_of_n_curve,
    beta_sweep,
    mean_curve,
    seed_sweeps,
    trajectory_sweep,
)
from rlhf_toy.bandit.experiments.overestimation import (
    expected_overestimation,
    overestimation_monte_carlo,
)
from rlhf_toy.bandit.experiments.proxy_error import (
    aligned_proxy,
    distribution_shift,
    overestimation,
    proxy_error_under,
)
from rlhf_toy.best_of_n import best_of_n_policy
from rlhf_toy.bradley_terry import comparison_counts, sample_comparisons
from rlhf_toy.gao import fit_gao, gao_curve
from rlhf_toy.optimal import optimal_policy

BETAS = np.geomspace(30.0, 0.003, 40)


def _env(pi_ref, r_star, r_hat):
    pi_ref = np.asarray(pi_ref, float)
    return BanditEnv(pi_ref=pi_ref, r_star=np.asarray(r_star, float),
                     r_hat=np.asarray(r_hat, float),
                     prompt_probs=np.full(pi_ref.shape[0], 1.0 / pi_ref.shape[0]))


# --------------------------------------------------------------------------------------
# the sweeps compute what they say
# --------------------------------------------------------------------------------------


def test_beta_sweep_matches_the_optimal_policies_one_by_one():
    env = make_bandit(4, 12, proxy="gaussian", rng=3)
    betas = np.array([5.0, 1.0, 0.2, 0.05])
    curve = beta_sweep(env, betas)
    assert isinstance(curve, GoodhartCurve) and curve.kind == "kl_optimal"
    for i, beta in enumerate(betas):
        pi = optimal_policy(env.pi_ref, env.r_hat, beta)
        assert curve.gold[i] == pytest.approx(env.expected(pi, "gold"), abs=1e-12)
        assert curve.proxy[i] == pytest.approx(env.expected(pi, "proxy"), abs=1e-12)
    np.testing.assert_allclose(curve.d, np.sqrt(curve.kl))
    assert curve.most_optimised == 3
    assert curve.gold_ref == pytest.approx(env.expected(env.pi_ref, "gold"))


def test_best_of_n_curve_matches_the_best_of_n_policy():
    env = make_bandit(3, 10, proxy="gaussian", rng=4)
    ns = np.array([1, 2, 8, 64])
    curve = best_of_n_curve(env, ns)
    assert curve.d[0] == pytest.approx(0.0, abs=1e-7)
    assert curve.gold[0] == pytest.approx(curve.gold_ref)
    for i, n in enumerate(ns):
        pi = best_of_n_policy(env.pi_ref, env.r_hat, int(n))
        assert curve.gold[i] == pytest.approx(env.expected(pi, "gold"), abs=1e-10)
        assert curve.proxy[i] == pytest.approx(env.expected(pi, "proxy"), abs=1e-10)
    assert np.all(np.diff(curve.proxy) >= -1e-12)  # selection by r_hat raises E[r_hat]


def test_trajectory_sweep_runs_from_pi_ref_to_the_optimum():
    env = make_bandit(4, 16, proxy="gaussian", rng=5)
    beta = 0.5
    curve = trajectory_sweep(env, beta, steps=3000, lr=40.0, record_every=700)
    np.testing.assert_array_equal(curve.parameter, [0, 700, 1400, 2100, 2800, 3000])
    assert curve.d[0] == 0.0 and curve.gold[0] == pytest.approx(curve.gold_ref)
    end = beta_sweep(env, [beta])
    # converged to the optimum (to the accuracy 3000 steps of gradient ascent reach)
    assert curve.gold[-1] == pytest.approx(end.gold[0], abs=1e-5)
    assert curve.kl[-1] == pytest.approx(end.kl[0], abs=1e-5)


def test_sweeps_validate_their_input():
    env = make_bandit(2, 4, rng=0)
    with pytest.raises(ValueError, match="betas"):
        beta_sweep(env, [1.0, -1.0])
    with pytest.raises(TypeError, match="BanditEnv"):
        beta_sweep({"pi_ref": env.pi_ref}, [1.0])
    with pytest.raises(ValueError, match="steps"):
        trajectory_sweep(env, 1.0, steps=0, lr=1.0)


# --------------------------------------------------------------------------------------
# exercise 3: what is true, and what is not
# --------------------------------------------------------------------------------------


@given(st_rl.bandit_tables(max_prompts=3, max_responses=6), st_rl.reward_tables((3, 6)))
def test_proxy_never_falls_as_beta_shrinks_for_every_draw(tables, noise):
    """(a) d E_{pi*}[r_hat] / d(1/beta) = Var_{pi*}(r_hat) >= 0, whatever the draw."""
    pi_ref, r_star = tables
    eps = noise[: r_star.shape[0], : r_star.shape[1]]
    curve = beta_sweep(_env(pi_ref, r_star, r_star + eps), BETAS)  # betas decreasing
    assert np.all(np.diff(curve.proxy) >= -1e-9 * (1 + np.abs(curve.proxy[1:])))


@given(st_rl.bandit_tables(max_prompts=2, max_responses=6),
       st.sampled_from([([-1.0, 1.0], None), ([-2.0, 0.0, 2.0], [0.25, 0.5, 0.25]),
                        ([-3.0, 1.0], [0.25, 0.75])]))
def test_expected_overestimation_is_never_negative(tables, noise):
    """(b) With eps independent across responses and mean zero, E_eps O(beta) >= 0 exactly.

    ``pi*(y)`` increases with ``eps_y`` (others fixed), so ``E[pi*(y) eps_y] >= 0``: exact
    enumeration over all noise patterns, any gold, any pi_ref, any beta.
    """
    pi_ref, r_star = tables
    values, probs = noise
    o = expected_overestimation(pi_ref, r_star, BETAS, values, probs)
    assert np.all(o >= -1e-12)
    # ... and it starts at zero with slope E Var_{pi_ref}(eps) > 0 in t = 1/beta
    var = np.sum(np.asarray(probs if probs else [0.5, 0.5]) * np.asarray(values) ** 2)
    mean_var_ref = var * np.mean(1.0 - np.sum(pi_ref**2, axis=-1))
    big = np.array([1e4])
    slope = expected_overestimation(pi_ref, r_star, big, values, probs)[0] * big[0]
    assert slope == pytest.approx(mean_var_ref, rel=1e-2, abs=1e-9)


def test_expected_overestimation_need_not_grow_for_a_fixed_gold():
    """(c) Counterexample: r_star = (0, 4), eps = +-1. Hard optimisation always picks response
    2 (4 - 1 > 0 + 1), whose noise averages to zero: the expected overestimation rises from 0
    and falls back to 0. Monotonicity in beta is false in expectation over eps alone."""
    pi_ref, r_star = [[0.5, 0.5]], [[0.0, 4.0]]
    o = expected_overestimation(pi_ref, r_star, BETAS, [-1.0, 1.0])
    assert np.max(o) > 0.05
    assert o[-1] < 1e-6
    assert np.any(np.diff(o) < -0.01)


def test_a_single_draw_can_underestimate_and_fall():
    """For one draw, overestimation can be negative and decreasing: eps = (+1, -1)."""
    env = _env([[0.5, 0.5]], [[0.0, 4.0]], [[1.0, 3.0]])
    o = overestimation(env, BETAS)
    assert o[0] == pytest.approx(0.0, abs=0.05)
    assert o[-1] == pytest.approx(-1.0, abs=1e-6)
    assert np.all(np.diff(o) <= 1e-12)


def test_expected_overestimation_grows_over_random_gaussian_worlds():
    """(d) With gold and noise Gaussian and independent across responses, E[eps | r_hat] is
    increasing in r_hat, so the expected overestimation is non-decreasing in 1/beta.

    Seeded Monte Carlo: 4000 worlds in 20 batches; every increment between consecutive
    betas must be above -3 standard errors, and the sum of increments clearly positive.
    """
    pi_ref = np.array([[0.4, 0.3, 0.2, 0.1]])
    betas = np.geomspace(20.0, 0.02, 15)
    mc = overestimation_monte_carlo(pi_ref, betas, noise_scale=1.0, n_draws=4000, rng=7)
    assert np.all(mc["diff"] > -3 * mc["diff_se"])
    assert mc["mean"][-1] - mc["mean"][0] > 10 * mc["se"][-1]
    assert np.all(mc["mean"] > -3 * mc["se"])


def test_regressional_goodhart_overestimation_is_sigma2_over_beta_in_the_small_tilt_regime():
    """Gaussian gold N(0, 1) and noise N(0, sigma^2), 2000 responses per prompt: tilting by
    exp(r_hat / beta) shifts the mean of eps by sigma^2 / beta exactly for the Gaussian
    population, so on the table O(beta) - O(inf) = sigma^2 / beta while beta >= s =
    sqrt(1 + sigma^2). The tolerance, 5%, is about four standard errors of the table's
    sample variance of eps (20 prompts x ~700 effective responses). For beta << s the
    table runs out of responses and the overestimation saturates far below sigma^2 / beta.
    """
    for sigma, seed in [(0.5, 0), (1.0, 1), (1.0, 2)]:
        env = make_bandit(20, 2000, proxy="gaussian", noise_scale=sigma, rng=seed)
        s = np.sqrt(1 + sigma**2)
        betas = s * np.array([1.0, 2.0, 5.0, 10.0, 20.0])
        o_ref = proxy_error_under(env, env.pi_ref, align=False)["bias"]
        rel = (overestimation(env, betas) - o_ref) / (sigma**2 / betas)
        np.testing.assert_allclose(rel, 1.0, atol=0.05)
        small = s / 10
        assert overestimation(env, [small])[0] < 0.5 * sigma**2 / small


def test_regressional_goodhart_gold_keeps_rising_on_average():
    """Gaussian noise: E[r_star | r_hat] is increasing, so the expected gold is non-decreasing
    in 1/beta (same argument as (d)). Over 30 worlds, no increment is below -3 SE, and the
    average loss from the peak at the smallest beta is tiny."""
    golds, drops = [], []
    for seed in range(30):
        curve = beta_sweep(make_bandit(8, 64, proxy="gaussian", noise_scale=0.5, rng=seed),
                           BETAS)
        golds.append(curve.gold)
        drops.append(curve.final_drop)
    diffs = np.diff(np.array(golds), axis=1)
    se = diffs.std(0, ddof=1) / np.sqrt(len(golds))
    assert np.all(diffs.mean(0) > -3 * se - 1e-12)
    assert np.mean(drops) < 0.03
    gains = np.array(golds)[:, -1] - np.array(golds)[:, 0]
    assert np.all(gains > 1.0)


def test_catastrophic_goodhart_heavy_tails_gold_rises_then_collapses():
    """Student-t noise (df = 1.5, scale 0.2), 16 prompts x 1000 responses: the proxy's argmax
    is a noise outlier, so at the smallest beta the gold has lost a clear part of its gain
    (>= 10% of the gain and >= 0.05) in most worlds; with Gaussian noise of the same scale
    it never does."""
    lost_t, lost_gauss, drops = [], [], []
    for seed in range(20):
        heavy = beta_sweep(make_bandit(16, 1000, proxy="student_t", noise_scale=0.2, df=1.5,
                                       rng=seed), BETAS)
        gain = heavy.peak_gold - heavy.gold_ref
        assert gain > 0  # it does rise first
        lost_t.append(heavy.final_drop > max(0.05, 0.1 * gain))
        drops.append(heavy.final_drop)
        gauss = beta_sweep(make_bandit(16, 1000, proxy="gaussian", noise_scale=0.2, rng=seed),
                           BETAS)
        lost_gauss.append(gauss.final_drop > max(0.05, 0.1 * (gauss.peak_gold - gauss.gold_ref)))
    assert np.mean(lost_t) > 0.5
    assert not any(lost_gauss)
    assert np.mean(drops) > 4 * np.std(drops, ddof=1) / np.sqrt(len(drops))


def _learned_world(n_comparisons, seed):
    env = make_bandit(8, 64, n_comparisons=n_comparisons, rng=seed, **LEARNED_WORLD)
    return env, env.counts


def test_learned_proxy_peaks_then_falls_and_the_peak_moves_out_with_more_data():
    """A Bradley-Terry proxy fitted on comparisons from a peaked pi_ref: the hard-optimised
    policy lands on responses compared a few times that happened to win, and the gold falls.
    With 100x more comparisons the peak comes at a larger KL, in most worlds and on
    average."""
    peak = {300: [], 30000: []}
    drops, counts_peak, counts_end = [], [], []
    for seed in range(12):
        for n in peak:
            env, counts = _learned_world(n, seed)
            curve = beta_sweep(env, BETAS)
            peak[n].append(curve.peak_d)
            if n == 30000:
                drops.append(curve.final_drop)
                pi_peak = optimal_policy(env.pi_ref, env.r_hat, BETAS[curve.peak_index])
                pi_end = optimal_policy(env.pi_ref, env.r_hat, BETAS[-1])
                counts_peak.append(np.mean((pi_peak * counts).sum(-1)))
                counts_end.append(np.mean((pi_end * counts).sum(-1)))
    small, large = np.array(peak[300]), np.array(peak[30000])
    assert large.mean() > small.mean() + 0.2
    assert np.mean(large > small) >= 0.75
    drops = np.array(drops)
    assert drops.mean() > 3 * drops.std(ddof=1) / np.sqrt(drops.size)
    # past the peak the policy moves to responses compared less often
    assert np.mean(np.array(counts_end) < np.array(counts_peak)) >= 0.75


def test_distribution_shift_proxy_error_is_larger_where_the_optimised_policy_goes():
    """The learned proxy is calibrated on pi_ref (aligned: mean signed error 0 there); under
    pi*_beta with small beta its absolute error is larger and its signed error positive."""
    for seed in range(6):
        env, _ = _learned_world(3000, seed)
        ref = proxy_error_under(env, env.pi_ref)
        assert ref["bias"] == pytest.approx(0.0, abs=1e-12)
        shift = distribution_shift(env, [1.0, 0.1, 0.03])
        assert shift["mae_ref"] == pytest.approx(ref["mae"])
        assert np.all(shift["mae"][1:] > 1.5 * ref["mae"])
        assert np.all(shift["bias"][1:] > 0)
        pi = optimal_policy(env.pi_ref, env.r_hat, 0.03)
        assert shift["mae"][2] == pytest.approx(proxy_error_under(env, pi)["mae"])


def test_learned_bandit_counts_its_comparisons():
    env = make_bandit(3, 10, n_comparisons=500, rng=4, **LEARNED_WORLD)
    counts = env.counts
    assert counts.sum() == 1000 and counts.shape == (3, 10)
    assert env.proxy == "learned"
    np.testing.assert_allclose(env.r_hat.mean(-1), 0.0, atol=1e-10)
    same = make_bandit(3, 10, n_comparisons=500, rng=4, **LEARNED_WORLD)
    np.testing.assert_array_equal(env.r_hat, same.r_hat)
    # never-compared responses sit at the row mean
    assert np.all(env.r_hat[counts == 0] == pytest.approx(0.0, abs=1e-8))


def test_mean_curve_averages_worlds():
    curves = seed_sweeps(lambda s: make_bandit(2, 5, rng=s), range(3), [2.0, 0.5])
    avg = mean_curve(curves)
    np.testing.assert_allclose(avg.gold, np.mean([c.gold for c in curves], axis=0))
    np.testing.assert_allclose(avg.d, np.sqrt(np.mean([c.kl for c in curves], axis=0)))
    with pytest.raises(ValueError, match="grid"):
        mean_curve([curves[0], beta_sweep(make_bandit(2, 5, rng=0), [1.0, 0.1])])
    x, y_w, y_l = sample_comparisons(np.full((2, 5), 0.2), np.zeros((2, 5)), 50, rng=0)
    assert comparison_counts(x, y_w, y_l, 2, 5).sum() == 100


def test_aligned_proxy_only_shifts_rows():
    env = make_bandit(3, 7, proxy="gaussian", rng=2)
    r = aligned_proxy(env)
    diff = r - env.r_hat
    np.testing.assert_allclose(diff, diff[:, :1] * np.ones((1, 7)), atol=1e-12)
    np.testing.assert_allclose((env.pi_ref * (r - env.r_star)).sum(-1), 0.0, atol=1e-12)


# --------------------------------------------------------------------------------------
# Gao et al.'s functional forms
# --------------------------------------------------------------------------------------


@given(st.floats(0.2, 3.0), st.floats(0.05, 2.0), st.sampled_from(["bon", "rl"]),
       st.floats(-1.0, 1.0), st.booleans())
def test_fit_gao_recovers_exact_data(a, b, form, ref, ref_known):
    assume(a / b < 8)  # keep the rl peak exp(a/b - 1) representable on a grid
    d = np.linspace(0.0, 4.0, 25)
    gold = ref + gao_curve(d, a, b, form)
    fit = fit_gao(d, gold, form, gold_ref=ref if ref_known else None)
    assert fit.a == pytest.approx(a, rel=1e-6, abs=1e-8)
    assert fit.b == pytest.approx(b, rel=1e-6, abs=1e-8)
    assert fit.gold_ref == pytest.approx(ref, abs=1e-8)
    assert fit.r2 == pytest.approx(1.0, abs=1e-10)
    # the predicted peak is the maximiser of the fitted curve
    grid = np.linspace(0.0, 3 * fit.peak_d + 1.0, 20_001)
    assert fit.peak_gold == pytest.approx(float(fit.predict(fit.peak_d)), rel=1e-12)
    assert fit.peak_gold >= fit.predict(grid).max() - 1e-9 * (1 + abs(fit.peak_gold))
    step = 1e-4 * (1 + fit.peak_d)
    assert fit.peak_gold >= float(fit.predict(fit.peak_d + step))
    assert fit.peak_gold >= float(fit.predict(max(fit.peak_d - step, 0.0)))


def test_gao_peak_formulas():
    bon = fit_gao(np.linspace(0, 3, 10), gao_curve(np.linspace(0, 3, 10), 1.0, 0.25), "bon", 0.0)
    assert bon.peak_d == pytest.approx(2.0) and bon.peak_gold == pytest.approx(1.0)
    d = np.linspace(0, 3, 10)
    rl = fit_gao(d, 0.5 + gao_curve(d, 1.0, 0.5, "rl"), "rl", 0.5)
    assert rl.peak_d == pytest.approx(np.e) and rl.peak_gold == pytest.approx(0.5 + 0.5 * np.e)
    rising = fit_gao(d, 2 * d, "bon", 0.0)
    assert rising.b == pytest.approx(0.0, abs=1e-10) or rising.peak_d == np.inf


def test_gao_fits_describe_the_sweeps():
    """Best-of-n curves follow d (a - b d) and gradient-ascent trajectories d (a - b log d)
    closely (R^2 > 0.9) on these worlds; the exact numbers are in notebook 03."""
    for seed in range(3):
        env = make_bandit(8, 64, proxy="gaussian", noise_scale=1.0, rng=seed)
        bon = best_of_n_curve(env, np.unique(np.geomspace(1, 2000, 40).astype(int)))
        assert fit_gao(bon.d, bon.gold, "bon", bon.gold_ref).r2 > 0.9
        traj = trajectory_sweep(env, 0.01, steps=1000, lr=200.0, record_every=20)
        assert fit_gao(traj.d, traj.gold, "rl", traj.gold_ref).r2 > 0.9


def test_fit_gao_validates():
    with pytest.raises(ValueError, match="form"):
        fit_gao([0, 1, 2, 3], [0, 1, 2, 3], form="linear")
    with pytest.raises(ValueError, match="d must be >= 0"):
        fit_gao([-1, 1, 2, 3], [0, 1, 2, 3])
    with pytest.raises(ValueError, match="at least"):
        fit_gao([0, 1], [0, 1])
    with pytest.raises(ValueError, match="too many"):
        expected_overestimation(np.full((4, 16), 1 / 16), np.zeros((4, 16)), [1.0], [-1, 0, 1])
