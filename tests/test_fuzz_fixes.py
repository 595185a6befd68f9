"""Root fixes behind the fuzz suite's findings, each checked against its exact value."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlhf_toy.bandit.experiments.modes import discretized_gaussian
from rlhf_toy.rl import sequence_sum

GRID = np.linspace(-3.0, 3.0, 7)


# --- discretized_gaussian: the exact limits at extreme means and widths ---------------------


@given(st.floats(-3.5, 3.5), st.floats(0.3, 5.0))
def test_discretized_gaussian_is_the_renormalised_density(mean, std):
    w = np.exp(-0.5 * ((GRID - mean) / std) ** 2)
    np.testing.assert_allclose(discretized_gaussian(GRID, mean, std), w / w.sum(),
                               rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("mean, nearest", [(1e308, 6), (-1e308, 0), (1e17, 6), (2.9, 6)])
def test_discretized_gaussian_far_means_put_the_mass_on_the_nearest_point(mean, nearest):
    q = discretized_gaussian(GRID, mean, 1e-3)
    expected = np.zeros(7)
    expected[nearest] = 1.0
    np.testing.assert_array_equal(q, expected)


def test_discretized_gaussian_subnormal_std_splits_a_tie_evenly():
    np.testing.assert_array_equal(discretized_gaussian(GRID, 0.5, 5e-324),
                                  [0, 0, 0, 0.5, 0.5, 0, 0])
    q = discretized_gaussian(GRID, 1e17, 1e17)  # z ~ 1 everywhere: flat, not NaN
    np.testing.assert_allclose(q, np.full(7, 1 / 7), rtol=1e-12)


# --- sequence_sum: validated once, still keeping the caller's precision ---------------------


def test_sequence_sum_ignores_padding_even_non_finite_and_keeps_dtype():
    x = np.array([[1.0, 2.0, np.nan], [0.5, np.inf, -np.inf]], dtype=np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]], dtype=np.float32)
    out = sequence_sum(x, mask)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [3.0, 0.5])
    np.testing.assert_array_equal(sequence_sum(x.astype(np.float64), mask.astype(bool)),
                                  [3.0, 0.5])


@pytest.mark.parametrize("x, mask, match", [
    (np.array([[np.nan, 1.0]]), np.array([[1.0, 1.0]]), r"x must be finite on the mask, got nan"),
    (np.ones((2, 3)), np.ones((2, 4)), r"x must have the shape of mask \(2, 4\), got \(2, 3\)"),
    (np.ones((1, 2)), np.array([[1.0, 2.0]]), r"mask must contain only 0 and 1, got 2.0"),
    (np.ones(3), np.ones(3), r"mask must have shape \(B, T\)"),
])
def test_sequence_sum_refuses_with_the_argument_named(x, mask, match):
    with pytest.raises(ValueError, match=match):
        sequence_sum(x, mask)


def test_sequence_sum_rejects_values_of_the_wrong_kind():
    with pytest.raises(TypeError, match="x must be real"):
        sequence_sum(np.ones((1, 2)) + 1j, np.ones((1, 2)))
    with pytest.raises(TypeError, match="x must hold numbers, got booleans"):
        sequence_sum(np.ones((1, 2), dtype=bool), np.ones((1, 2)))


# --- the rollout helpers: prompts, counts and gradients checked at the entry ----------------


def _tabular():
    from rlhf_toy.bandit.policy import TabularPolicy, TrainableTabularPolicy
    from rlhf_toy.bandit.rl import table_reward

    pi_ref = np.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]])
    return (TrainableTabularPolicy(np.log(pi_ref)), TabularPolicy.from_probs(pi_ref),
            table_reward(np.array([[0.0, 1.0, 2.0], [1.0, -1.0, 0.5]])))


def test_collect_rollout_refuses_no_prompts_and_unbounded_groups():
    from rlhf_toy._validate import MAX_SAMPLES
    from rlhf_toy.rl import collect_rollout

    policy, ref, reward_fn = _tabular()
    with pytest.raises(ValueError, match="prompts must hold at least one prompt"):
        collect_rollout(policy, ref, np.zeros(0, dtype=np.int64), reward_fn, 2, 0)
    with pytest.raises(TypeError, match="prompts must be an array of prompts"):
        collect_rollout(policy, ref, None, reward_fn, 2, 0)
    with pytest.raises(ValueError, match=f"group_size must be <= {MAX_SAMPLES // 2}"):
        collect_rollout(policy, ref, np.array([0, 1]), reward_fn, 10**400, 0)
    ro = collect_rollout(policy, ref, np.array([0, 1]), reward_fn, 3, 0)
    assert ro.responses.shape == (6, 1) and ro.n_prompts == 2


def test_apply_gradients_names_grads_and_max_grad_norm_and_does_not_overflow():
    from rlhf_toy.optim import AdamW
    from rlhf_toy.rl import apply_gradients

    params = {"w": np.zeros(2, dtype=np.float32)}
    opt = AdamW(params, lr=0.1, weight_decay=0.0)
    g = np.array([3e20, 4e20], dtype=np.float32)  # squares overflow float32
    assert apply_gradients(opt, {"w": g}, 1.0, "step") == pytest.approx(5e20, rel=1e-6)
    with pytest.raises(FloatingPointError, match=r"my_step: non-finite gradient.*grads"):
        apply_gradients(opt, {"w": np.array([np.nan, 0.0])}, None, "my_step")
    with pytest.raises(ValueError, match="max_grad_norm must be > 0"):
        apply_gradients(opt, {"w": np.ones(2)}, 0.0, "step")
    with pytest.raises(TypeError, match=r"grads\['w'\] must hold real numbers"):
        apply_gradients(opt, {"w": np.ones(2) + 1j}, None, "step")
    with pytest.raises(TypeError, match="grads must be a dict"):
        apply_gradients(opt, [np.ones(2)], None, "step")


@pytest.mark.parametrize("make", [
    lambda: __import__("rlhf_toy.rl", fromlist=["GRPOConfig"]).GRPOConfig(group_size=10**8),
    lambda: __import__("rlhf_toy.rl", fromlist=["RLOOConfig"]).RLOOConfig(group_size=10**8),
    lambda: __import__("rlhf_toy.rl", fromlist=["PPOConfig"]).PPOConfig(group_size=10**8),
])
def test_rl_configs_have_a_documented_maximum_group_size(make):
    from rlhf_toy._validate import MAX_SAMPLES

    with pytest.raises(ValueError, match=f"group_size must be <= {MAX_SAMPLES}"):
        make()


# --- kl_gradients: exact where an estimator overflows on a response pi gives no mass --------


@given(st.floats(-1e308, 1e308), st.integers(0, 2))
def test_kl_gradient_identities_hold_at_any_logit(big, where):
    """``k3`` in the loss is the forward-KL gradient, ``k2`` in the loss and ``k1`` as a
    reward the reverse-KL one, ``k3`` as a reward their difference: for every finite logit,
    also where ``pi(y)`` underflows to 0 and ``k2``, ``k3`` overflow."""
    from rlhf_toy.bandit.experiments.kl_study import kl_gradients

    logits = np.log(np.array([[0.1, 0.6, 0.3], [0.4, 0.4, 0.2]]))
    logits[0, where] = big
    pi_ref = np.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]])
    g = kl_gradients(logits, pi_ref)
    for value in g.values():
        assert np.all(np.isfinite(value))
    np.testing.assert_allclose(g["k3_in_loss"], g["forward_kl"], atol=1e-15)
    np.testing.assert_allclose(g["k2_in_loss"], g["reverse_kl"], atol=1e-15)
    np.testing.assert_allclose(g["k1_in_reward"], g["reverse_kl"], atol=1e-15)
    np.testing.assert_allclose(g["k3_in_reward"], g["reverse_kl"] - g["forward_kl"],
                               atol=1e-12)


def test_kl_gradients_at_a_huge_logit_are_the_one_hot_limits():
    from rlhf_toy.bandit.experiments.kl_study import kl_gradients

    pi_ref = np.array([0.2, 0.3, 0.5])
    g = kl_gradients(np.array([1e308, 0.0, 0.0]), pi_ref)  # pi = (1, 0, 0)
    np.testing.assert_array_equal(g["reverse_kl"], 0.0)  # a vertex: no score gradient
    np.testing.assert_allclose(g["forward_kl"], [0.8, -0.3, -0.5], rtol=1e-15)
    np.testing.assert_allclose(g["k3_in_reward"], [-0.8, 0.3, 0.5], rtol=1e-15)
    np.testing.assert_array_equal(g["k2_in_reward"], 0.0)


# --- the forward-KL optimum and the mode sweep: every accepted beta -------------------------


@given(st.floats(-8.0, 8.0))
def test_forward_kl_optimum_is_stationary(log10_beta):
    from rlhf_toy.bandit.experiments.modes import forward_kl_regularised_policy

    beta = 10.0**log10_beta
    pi_ref = np.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]])
    reward = np.array([[0.0, 1.0, 2.0], [1.0, -1.0, 0.5]])
    pi = forward_kl_regularised_policy(pi_ref, reward, beta)
    np.testing.assert_allclose(pi.sum(-1), 1.0, rtol=1e-12)
    lam = reward + beta * pi_ref / pi  # r(y) + beta pi_ref(y) / pi(y) is one constant per row
    np.testing.assert_allclose(lam, lam[:, :1].repeat(3, 1), rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("beta", [5e-324, 1e-300, 1e-30])
def test_forward_kl_optimum_at_tiny_beta_is_the_argmax(beta):
    from rlhf_toy.bandit.experiments.modes import forward_kl_regularised_policy

    pi_ref = np.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]])
    reward = np.array([[0.0, 1.0, 2.0], [1.0, -1.0, 0.5]])
    pi = forward_kl_regularised_policy(pi_ref, reward, beta)
    np.testing.assert_allclose(pi, [[0, 0, 1], [1, 0, 0]], atol=1e-29)


def test_rlhf_mode_sweep_at_a_subnormal_beta_puts_the_mass_on_the_argmax():
    from rlhf_toy.bandit.experiments.modes import rlhf_mode_sweep

    grid = np.linspace(-3.0, 3.0, 9)
    pi_ref = np.exp(-0.5 * grid**2) / np.exp(-0.5 * grid**2).sum()
    reward = -((grid - 1.0) ** 2)
    out = rlhf_mode_sweep(pi_ref, reward, np.array([5e-324, 1.0]))
    top = np.zeros(9)
    top[np.argmax(reward)] = 1.0
    np.testing.assert_array_equal(out["pi_star"][0], top)
    np.testing.assert_allclose(out["pi_forward"][0], top, atol=1e-300)
    assert out["reward_star"][0] == reward.max()
    np.testing.assert_allclose(out["kl_star"][0], -np.log(pi_ref[np.argmax(reward)]))
    with pytest.raises(ValueError, match="betas must be a non-empty 1-D array"):
        rlhf_mode_sweep(pi_ref, reward, np.zeros(0))


# --- the Gaussian fits: far means, named shapes, the init pair ------------------------------


def test_reverse_kl_of_a_far_gaussian_is_that_of_the_nearest_point_mass():
    from rlhf_toy.bandit.experiments.modes import gaussian_divergence, reverse_kl_landscape

    target = np.full(7, 1 / 7)
    kl = gaussian_divergence(target, GRID, np.array([1e308, -1e308]), 1.0, "reverse")
    np.testing.assert_allclose(kl, np.log(7.0), rtol=1e-15)
    np.testing.assert_allclose(reverse_kl_landscape(target, GRID, [1e308], [5e-324, 1.0]),
                               [np.log(7.0)], rtol=1e-15)
    with pytest.raises(ValueError, match=r"mean and std must broadcast together"):
        gaussian_divergence(target, GRID, np.zeros(3), np.ones(2), "reverse")
    with pytest.raises(ValueError, match="stds must be > 0, got -1.0"):
        reverse_kl_landscape(target, GRID, [0.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="stds must not be empty"):
        reverse_kl_landscape(target, GRID, [0.0], np.zeros(0))


def test_fit_gaussian_local_names_a_bad_init():
    from rlhf_toy.bandit.experiments.modes import fit_gaussian_local

    target = np.full(7, 1 / 7)
    with pytest.raises(ValueError, match=r"init must be a pair \(mean, std\)"):
        fit_gaussian_local(target, GRID, "forward", (0.5,))
    with pytest.raises(ValueError, match="init std must be > 0"):
        fit_gaussian_local(target, GRID, "forward", (0.5, -1.0))


# --- multi-objective: bounded tables and multipliers, the KL to the optimum in log space ----


def _two_rewards():
    pi_ref = np.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]])
    return (pi_ref, np.array([[0.0, 1.0, 2.0], [1.0, -1.0, 0.5]]),
            np.array([[0.5, 1.5, -1.0], [0.0, 2.0, 1.0]]))


@pytest.mark.parametrize("beta", [1e-5, 0.5])
def test_train_constrained_kl_to_optimum_is_exact_where_the_optimum_underflows(beta):
    from scipy.special import log_softmax

    from rlhf_toy.bandit.experiments.multi_objective import train_constrained

    pi_ref, r_help, r_harm = _two_rewards()
    run = train_constrained(pi_ref, r_help, r_harm, beta, 1.0, steps=1, rng=0)
    reward = r_help - run.optimum.lam * r_harm
    log_opt = log_softmax(np.log(pi_ref) + reward / beta, axis=-1)
    expected = np.mean((pi_ref * (np.log(pi_ref) - log_opt)).sum(-1))  # step 0: pi = pi_ref
    assert np.isfinite(run.kl_to_optimum).all()
    np.testing.assert_allclose(run.kl_to_optimum[0], expected, rtol=1e-12)


def test_multi_objective_refuses_magnitudes_beyond_its_documented_range():
    from rlhf_toy.bandit.experiments.multi_objective import (
        lagrangian_front,
        lagrangian_policy,
        train_constrained,
    )

    pi_ref, r_help, r_harm = _two_rewards()
    big = r_harm.copy()
    big[0, 0] = 1e308
    with pytest.raises(ValueError, match=r"r_harm entries must be in \[-1e\+100, 1e\+100\]"):
        lagrangian_policy(pi_ref, r_help, big, 0.5, 0.5)
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1e\+100\], got 1e\+308"):
        lagrangian_policy(pi_ref, r_help, r_harm, 1e308, 0.5)
    with pytest.raises(ValueError, match=r"lams must be in \[0, 1e\+100\], got 1e\+308"):
        lagrangian_front(pi_ref, r_help, r_harm, 0.5, np.array([0.0, 1e308]))
    with pytest.raises(ValueError, match=r"beta must be in \(0, 1e\+100\]"):
        train_constrained(pi_ref, r_help, r_harm, 1e308, 1.0, steps=1, rng=0)
    with pytest.raises(ValueError, match=r"lam_init must be in \[0, 1e\+100\]"):
        train_constrained(pi_ref, r_help, r_harm, 0.5, 1.0, steps=1, rng=0, lam_init=1e101)
    # the largest accepted values still give finite policies
    pi = lagrangian_policy(pi_ref, r_help * 1e100 / 2, r_harm * 1e100 / 2, 1e100, 0.5)
    assert np.all(np.isfinite(pi))


# --- ensembles: bounded members, a bounded prior scale, a prior precision that cannot vanish


def test_ensemble_aggregates_at_the_documented_magnitude_and_refuse_beyond():
    from rlhf_toy.bandit.experiments.ensembles import aggregate, disagreement, fit_ensemble

    ens = np.array([[[1e100, 0.0]], [[-1e100, 0.0]]])  # (k=2, X=1, Y=2)
    np.testing.assert_allclose(disagreement(ens), [[1e100, 0.0]], rtol=1e-15)
    np.testing.assert_allclose(aggregate(ens, "uwo", 1e100), [[-1e300, 0.0]], rtol=1e-15)
    with pytest.raises(ValueError, match=r"ensemble entries must be in \[-1e\+100, 1e\+100\]"):
        disagreement(ens * 1e200)
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1e\+100\]"):
        aggregate(ens, "uwo", 1e101)
    pi_ref = np.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]])
    r_star = np.array([[0.0, 1.0, 2.0], [1.0, -1.0, 0.5]])
    with pytest.raises(ValueError, match=r"prior_scale must be in \[0, 1e\+90\], got 1e\+308"):
        fit_ensemble(pi_ref, r_star, 2, 20, 0, prior_scale=1e308)
    with pytest.raises(ValueError, match=r"prior_scale > 0 needs l2 >= 1e-300"):
        fit_ensemble(pi_ref, r_star, 2, 20, 0, l2=5e-324, prior_scale=0.5)
    members = fit_ensemble(pi_ref, r_star, 2, 20, 0, l2=1e-300, prior_scale=1e90)
    assert np.all(np.isfinite(members))


# --- on/off-policy scores: the KL to the optimum in log space --------------------------------


@pytest.mark.parametrize("beta", [1e-4, 0.5])
def test_exact_scores_kl_to_optimum_is_finite_where_the_optimum_underflows(beta):
    from scipy.special import log_softmax

    from rlhf_toy.bandit.experiments.on_off_policy import exact_scores

    pi_ref, r_star, _ = _two_rewards()
    pi = np.array([[0.1, 0.6, 0.3], [0.4, 0.4, 0.2]])
    out = exact_scores(pi, pi_ref, r_star, beta, prompt_probs=np.array([0.3, 0.7]))
    log_opt = log_softmax(np.log(pi_ref) + r_star / beta, axis=-1)
    expected = np.array([0.3, 0.7]) @ (pi * (np.log(pi) - log_opt)).sum(-1)
    np.testing.assert_allclose(out["kl_to_optimum"], expected, rtol=1e-12)
    big = r_star.copy()
    big[0, 0] = 1e308
    with pytest.raises(ValueError, match=r"r_star entries must be in \[-1e\+100, 1e\+100\]"):
        exact_scores(pi, pi_ref, big, beta)


def test_overestimation_monte_carlo_names_the_table_behind_prompt_probs_and_bounds_sigma():
    from rlhf_toy.bandit.experiments.overestimation import overestimation_monte_carlo

    pi_ref = np.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]])
    with pytest.raises(ValueError, match=r"prompt_probs must have shape \(1,\) \(one per "
                                         r"prompt of pi_ref\), got \(2,\)"):
        overestimation_monte_carlo(pi_ref[:1], [0.5], noise_scale=0.5, n_draws=4, rng=0,
                                   n_batches=2, prompt_probs=np.array([0.3, 0.7]))
    with pytest.raises(ValueError, match=r"noise_scale must be in \(0, 1e\+100\]"):
        overestimation_monte_carlo(pi_ref, [0.5], noise_scale=1e308, n_draws=4, rng=0,
                                   n_batches=2)
    out = overestimation_monte_carlo(pi_ref, [0.5], noise_scale=1e100, n_draws=4, rng=0,
                                     n_batches=2)
    assert all(np.all(np.isfinite(v)) for v in out.values())


# --- the policy-gradient study: a subnormal success probability, bounded rewards ------------


def test_difficulty_weights_at_a_subnormal_success_probability_are_zero_not_nan():
    from rlhf_toy.bandit.experiments.pg_study import difficulty_weights

    out = difficulty_weights(np.array([5e-324, 0.5]), 4, 50, np.random.default_rng(0))
    for scale in ("group", "none"):
        assert np.all(np.isfinite(out[scale]["measured"]))
        assert out[scale]["measured"][0] == 0.0  # no success is ever drawn: no signal
        assert out[scale]["exact"][0] == 0.0
    again = difficulty_weights(np.array([0.3, 0.5]), 4, 50, np.random.default_rng(0))
    w = again["none"]["measured"]  # the scaled projection keeps the unbiased weight
    np.testing.assert_allclose(w, again["none"]["exact"], atol=5 * again["none"]["sem"].max())


def test_estimator_mse_refuses_rewards_and_beta_beyond_the_documented_magnitude():
    from rlhf_toy.bandit.experiments.pg_study import estimator_mse

    pi = np.array([[0.1, 0.6, 0.3], [0.4, 0.4, 0.2]])
    pi_ref, reward, _ = _two_rewards()
    big = reward.copy()
    big[0, 0] = -1e308
    with pytest.raises(ValueError, match=r"reward entries must be in \[-1e\+100, 1e\+100\]"):
        estimator_mse(pi, pi_ref, big, 0.5, [2], 4, 0)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1e\+100\], got 1e\+308"):
        estimator_mse(pi, pi_ref, reward, 1e308, [2], 4, 0)


def test_bt_recovery_and_rft_refuse_magnitudes_beyond_the_documented_range():
    from rlhf_toy.bandit.env import make_bandit
    from rlhf_toy.bandit.experiments.preferences import bt_recovery
    from rlhf_toy.bandit.experiments.rft import rejection_sampling_finetune

    r_star = np.array([[0.0, 1.0, 2.0], [1.0, -1.0, 1e308]])
    with pytest.raises(ValueError, match=r"r_star entries must be in \[-1e\+100, 1e\+100\]"):
        bt_recovery(r_star, np.array([20]), n_seeds=1)
    env = make_bandit(2, 3, rng=0)
    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1e\+100\], got 1e\+308"):
        rejection_sampling_finetune(env, 2, 4, np.random.default_rng(0), smoothing=1e308)
    res = rejection_sampling_finetune(env, 2, 4, np.random.default_rng(0), smoothing=1e100)
    support = env.pi_ref > 0
    np.testing.assert_allclose(res.policy, support / support.sum(-1, keepdims=True),
                               rtol=1e-12)  # all pseudo-counts: uniform on the support


# --- strategies, tasks and the pipeline's pure helpers: checked when called -----------------


def test_strategies_check_their_arguments_when_called_not_when_drawn():
    from rlhf_toy import strategies

    with pytest.raises(TypeError, match="max_prompts must be an integer, got 2.5"):
        strategies.shapes(max_prompts=2.5)
    with pytest.raises(ValueError, match="max_responses must be >= 3"):
        strategies.shapes(max_responses=2, min_responses=3)
    with pytest.raises(ValueError, match=r"shape must have 2 sizes, got \(3,\)"):
        strategies.policy_tables(shape=(3,))
    with pytest.raises(TypeError, match=r"shape\[1\] must be an integer"):
        strategies.reward_tables((2, "3"))
    with pytest.raises(ValueError, match="scale must be > 0"):
        strategies.bandit_tables(scale=float("nan"))
    with pytest.raises(ValueError, match="high must be <= 0"):
        strategies.log_probs((2,), high=1.0)
    with pytest.raises(ValueError, match="min_prob must be >= 0"):
        strategies.policy_tables(min_prob=-0.1)

    @given(strategies.bandit_tables(max_prompts=2, max_responses=3, scale=2.0),
           strategies.policy_tables(shape=(2, 3), min_prob=0.1))
    def draws(tables, pi):
        pi_ref, reward = tables
        assert pi_ref.shape == reward.shape and np.all(np.abs(reward) <= 2.0)
        np.testing.assert_allclose(pi.sum(-1), 1.0)
        assert np.all(pi >= 0.1 / 1.3 - 1e-12)

    draws()


def test_pipeline_helpers_name_their_arguments():
    from rlhf_toy.pipeline.common import check_loss
    from rlhf_toy.pipeline.dpo import DEFAULTS, pair_losses
    from rlhf_toy.pipeline.reward_model import pairwise_accuracy
    from rlhf_toy.tasks.digits import lm_batch

    assert check_loss("sft", 3, np.float32(0.5)) == 0.5
    with pytest.raises(FloatingPointError, match="sft: non-finite loss at step 3"):
        check_loss("sft", 3, np.array(np.nan))
    with pytest.raises(TypeError, match="loss must be a real number"):
        check_loss("sft", 3, "0.5")
    with pytest.raises(TypeError, match="step must be an integer"):
        check_loss("sft", 2.5, 0.5)
    one = np.ones(2)
    with pytest.raises(ValueError, match=r"pr and pc must have the same shape"):
        pair_losses("dpo", -one, -np.ones(3), -one, -one, one, one, 0.1, dict(DEFAULTS))
    with pytest.raises(ValueError, match=r"len_r must be > 0 \(token counts\), got 0.0"):
        pair_losses("simpo", -one, -one, -one, -one, one, 0 * one, 0.1, dict(DEFAULTS))
    with pytest.raises(ValueError, match="r_b must be finite"):
        pairwise_accuracy([1.0], [np.nan], [1.0], [0.0])
    with pytest.raises(ValueError, match="r_a must not be empty"):
        pairwise_accuracy([], [], [], [])
    with pytest.raises(TypeError, match="sequences must be a 2-D int array, got dtype bool"):
        lm_batch(np.ones((2, 4), dtype=bool), 2)


def test_bandit_studies_refuse_what_their_inner_calls_would_misname():
    from rlhf_toy.bandit.env import make_bandit
    from rlhf_toy.bandit.experiments.modes import fit_gaussian, rlhf_gaussian_fits
    from rlhf_toy.bandit.experiments.overestimation import exercise3_curves
    from rlhf_toy.bandit.experiments.preferences import ascent_convergence
    from rlhf_toy.bandit.experiments.rft import estimator_experiment, rft_convergence

    grid = np.linspace(-3.0, 3.0, 9)
    target = np.exp(-0.5 * grid**2) / np.exp(-0.5 * grid**2).sum()
    with pytest.raises(ValueError, match="n_starts must be <= 976"):
        fit_gaussian(target, grid, "reverse", n_starts=10**400)
    with pytest.raises(ValueError, match=r"reward / beta spans too wide a range.*beta=5e-324"):
        rlhf_gaussian_fits(target, -((grid - 1.0) ** 2), grid, 5e-324)
    with pytest.raises(ValueError, match="inv_beta must be a non-empty 1-D array"):
        exercise3_curves(np.array([0.5, np.nan]), n_draws=20, rng=0)
    with pytest.raises(ValueError, match=r"inv_beta must be >= 5.56e-309"):
        exercise3_curves(np.array([5e-324]), n_draws=20, rng=0)
    env = make_bandit(2, 3, rng=0)
    with pytest.raises(ValueError, match=r"betas must be >= 8.9e-308"):
        ascent_convergence(env, [5e-324], steps=2, record_every=1)
    with pytest.raises(TypeError, match="betas must hold numbers"):
        ascent_convergence(env, np.array([True]), steps=2, record_every=1)
    with pytest.raises(ValueError, match="repeats must be <= "):
        estimator_experiment(env, [1, 2], 8, 10**400, 0)
    with pytest.raises(ValueError, match="sample_sizes must hold integers"):
        rft_convergence(env, 2, np.array([4.5]), 0)
    with pytest.raises(TypeError, match="sample_sizes must hold integers, got dtype bool"):
        rft_convergence(env, 2, np.array([True]), 0)


# --- plots: every array checked, named, before anything is drawn ----------------------------


def test_plots_refuse_bad_arrays_by_name_before_drawing():
    import matplotlib.pyplot as plt

    from rlhf_toy.presentation.plots import (
        plot_bon_kl_bound,
        plot_dpo_loss_and_weight,
        plot_length_bias,
    )

    before = len(plt.get_fignums())
    m = np.linspace(-2.0, 2.0, 5)
    with pytest.raises(ValueError, match=r"margin must be finite, got nan"):
        plot_dpo_loss_and_weight(np.r_[np.nan, m[1:]], m, m)
    with pytest.raises(TypeError, match="loss must hold numbers, got booleans"):
        plot_dpo_loss_and_weight(m, m > 0, m)
    with pytest.raises(ValueError, match=r"weight entries must be in \[-1e\+100, 1e\+100\]"):
        plot_dpo_loss_and_weight(m, m, np.r_[1e308, m[1:]])
    with pytest.raises(ValueError, match="must not be empty"):
        plot_dpo_loss_and_weight(np.zeros(0), np.zeros(0), np.zeros(0))
    ns = np.array([1, 2, 4])
    with pytest.raises(TypeError, match="kls must be a dict of label to array"):
        plot_bon_kl_bound(ns, [np.zeros(3)], np.zeros(3))
    with pytest.raises(ValueError, match=r"kls\['a'\] must be finite"):
        plot_bon_kl_bound(ns, {"a": np.array([0.0, np.inf, 1.0])}, np.zeros(3))
    with pytest.raises(ValueError, match="ns must hold integers"):
        plot_bon_kl_bound(ns + 0.5, {"a": np.zeros(3)}, np.zeros(3))
    with pytest.raises(ValueError, match=r"push\['seq_mean'\] must be finite"):
        plot_length_bias([1, 2], [0.0, 1.0], {"seq_mean": np.array([[np.nan], [0.0]])})
    assert len(plt.get_fignums()) == before  # refused before any figure was made
    fig = plot_dpo_loss_and_weight(m, np.log1p(np.exp(-m)), 1 / (1 + np.exp(m)))
    assert len(fig.axes) == 2
    plt.close("all")


def test_pipeline_option_helpers_name_a_value_of_the_wrong_kind():
    from rlhf_toy.pipeline.cli import summary_table
    from rlhf_toy.pipeline.config import PipelineConfig
    from rlhf_toy.pipeline.rl_common import method_options

    config = PipelineConfig(method_options={"ppo": {"epochs": 2}})
    assert method_options(config, "ppo", {"epochs": 1, "clip": 0.2}) == {"epochs": 2,
                                                                         "clip": 0.2}
    with pytest.raises(TypeError, match="defaults must be a dict"):
        method_options(config, "ppo", "epochs")
    with pytest.raises(TypeError, match="config must be a PipelineConfig"):
        method_options({"ppo": {}}, "ppo", {})
    with pytest.raises(TypeError, match="metrics must be a dict with a 'methods' dict"):
        summary_table({"ppo": 1.0})
