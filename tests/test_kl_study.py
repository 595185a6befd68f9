"""Schulman's k1, k2, k3: exact bias and spread, sampling agrees, and what each KL gradient
really optimises (k1 as a reward and k2 in the loss: the reverse KL; k3 in the loss, as
GRPO does it: the forward KL; k1 in the loss: nothing)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import log_softmax, softmax

from rlhf_toy import strategies as st_rl
from rlhf_toy.bandit import make_bandit
from rlhf_toy.bandit.experiments.kl_study import (
    ESTIMATORS,
    KL_GRADIENTS,
    batch_negative_probability,
    batch_negative_probability_normal,
    estimator_stats,
    estimator_table,
    kl_gradients,
    kl_penalised_ascent,
    sample_categorical,
    sampled_estimator_stats,
    sampled_kl_gradients,
    tilted_policies,
)
from rlhf_toy.bandit.experiments.modes import discretized_gaussian, forward_kl_regularised_policy
from rlhf_toy.kl import kl_divergence, kl_estimates
from rlhf_toy.optimal import optimal_policy

ENV = make_bandit(1, 16, proxy="exact", rng=0)
PI_REF, REWARD = ENV.pi_ref[0], ENV.r_star[0]
BETAS = np.array([10.0, 3.0, 1.0, 0.5, 0.3, 0.1])

pairs = st.tuples(st_rl.policy_tables(shape=(2, 6)), st_rl.policy_tables(shape=(2, 6),
                                                                          min_prob=1e-3))


# --- exact statistics ----------------------------------------------------------------------------


@given(pairs)
def test_k1_and_k3_are_unbiased_k2_bias_is_third_order(qp):
    q, p = qp
    stats = estimator_stats(q, p)
    kl = kl_divergence(q, p)
    np.testing.assert_allclose(stats["kl"], kl, rtol=1e-12)
    np.testing.assert_allclose(stats["k1"]["mean"], kl, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats["k3"]["mean"], kl, rtol=1e-9, atol=1e-12)
    # E[k2] - KL = -E[e^l - 1 - l - l^2/2] with l = log(p/q), so |bias| <= E[|l|^3 e^max(l,0)]/6
    with np.errstate(divide="ignore"):
        log_r = np.where(q > 0, np.log(p) - np.log(np.where(q > 0, q, 1.0)), 0.0)
    bound = (q * np.abs(log_r) ** 3 * np.exp(np.maximum(log_r, 0))).sum(-1) / 6
    assert np.all(np.abs(stats["k2"]["bias"]) <= bound * (1 + 1e-9) + 1e-15)
    for name in ESTIMATORS:
        assert np.all(stats[name]["std"] >= 0)
    # one k1 sample is negative exactly when p(y) > q(y)
    np.testing.assert_allclose(stats["p_negative_k1"], np.where(p > q, q, 0).sum(-1),
                               rtol=1e-12)


@pytest.mark.parametrize("mu", [0.1, 1.0])
def test_reproduces_schulmans_gaussian_table_in_closed_form(mu):
    """q = N(0, 1), p = N(mu, 1): log r ~ N(-mu^2/2, mu^2) under q, KL = mu^2 / 2,
    std(k1)/KL = 2/mu, bias(k2)/KL = mu^2/4, std(k2)/KL = sqrt(2 + mu^2),
    std(k3)/KL = 2 sqrt(e^{mu^2} - 1 - mu^2) / mu^2 (Schulman 2020: 20, 0.002, 1.42, 1.42
    for mu = 0.1 and 2, 0.25, 1.73, 1.7 for mu = 1, from samples)."""
    grid = np.linspace(-12, 12, 4001)
    stats = estimator_stats(discretized_gaussian(grid, 0.0, 1.0),
                            discretized_gaussian(grid, mu, 1.0))
    kl = mu**2 / 2
    assert stats["kl"] == pytest.approx(kl, rel=1e-9)
    assert stats["k1"]["std"] / kl == pytest.approx(2 / mu, rel=1e-9)
    assert stats["k2"]["bias"] / kl == pytest.approx(mu**2 / 4, rel=1e-7)
    assert stats["k2"]["std"] / kl == pytest.approx(np.sqrt(2 + mu**2), rel=1e-9)
    assert stats["k3"]["std"] / kl == pytest.approx(
        2 * np.sqrt(np.expm1(mu**2) - mu**2) / mu**2, rel=1e-7)
    assert abs(stats["k3"]["bias"]) < 1e-12


def test_estimator_table_near_and_far_from_the_reference():
    table = estimator_table(PI_REF, REWARD, BETAS)
    assert np.all(np.diff(table["kl"]) > 0)  # smaller beta, farther from pi_ref
    near, far = 0, -1
    # near pi_ref: k1 is noisy relative to the KL, k2 and k3 are ~ as precise as each other
    assert table["k1_rel_std"][near] > 20
    assert table["k3_rel_std"][near] < 1.0 and table["k2_rel_std"][near] < 1.1
    assert abs(table["k2_rel_bias"][near]) < 0.02
    # far from pi_ref: k2's bias grows, and k3's variance explodes, because r = pi_ref / pi
    # is huge on the responses pi* has suppressed (std(k3)^2 includes chi^2(pi_ref || pi*))
    assert table["k2_rel_bias"][far] > 0.2
    assert table["k3_rel_std"][far] > 1000 * table["k1_rel_std"][far]
    # a single k1 sample is negative often near pi_ref, rarely far from it
    assert table["p_negative_k1"][near] > 0.45 and table["p_negative_k1"][far] < 0.05
    np.testing.assert_allclose(table["k1_bias"], 0, atol=1e-12)
    np.testing.assert_allclose(table["k3_bias"], 0, atol=1e-9)


def test_tilted_policies_are_the_optimal_policies():
    q = tilted_policies(PI_REF, REWARD, BETAS)
    for b, row in zip(BETAS, q, strict=True):
        np.testing.assert_allclose(row, optimal_policy(PI_REF, REWARD, b), rtol=1e-12)


def test_k3_is_biased_when_p_has_mass_outside_the_support_of_q():
    stats = estimator_stats([0.5, 0.5, 0.0], [0.2, 0.3, 0.5])
    assert stats["k3"]["bias"] == pytest.approx(-0.5, abs=1e-12)  # E_q[r] = 0.5, not 1
    assert stats["k1"]["bias"] == pytest.approx(0.0, abs=1e-12)


def test_validation_names_the_problem():
    with pytest.raises(ValueError, match="p must be > 0 wherever q > 0"):
        estimator_stats([0.5, 0.5], [1.0, 0.0])
    with pytest.raises(ValueError, match="q row"):
        estimator_stats([0.5, 0.6], [0.5, 0.5])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        batch_negative_probability([0.5, 0.5], [0.4, 0.6], 0, 10, rng=0)
    with pytest.raises(TypeError, match="rng"):
        sampled_estimator_stats([0.5, 0.5], [0.4, 0.6], 10, rng=None)


# --- sampling agrees with the exact sums ---------------------------------------------------------


def test_sample_categorical_frequencies_and_zeros():
    q = np.array([[0.0, 0.2, 0.0, 0.8], [0.5, 0.0, 0.5, 0.0]])
    y = sample_categorical(q, 50_000, rng=0)
    assert y.shape == (2, 50_000)
    freq = np.stack([np.bincount(row, minlength=4) / row.size for row in y])
    assert np.all(freq[q == 0] == 0)
    np.testing.assert_allclose(freq, q, atol=4.5 * np.sqrt(0.25 / 50_000))
    np.testing.assert_array_equal(y, sample_categorical(q, 50_000, rng=0))  # seeded


def test_monte_carlo_agrees_with_exact_statistics_near_the_reference():
    q = tilted_policies(PI_REF, REWARD, BETAS[:3])  # near: every estimator has a finite spread
    n = 100_000
    mc = sampled_estimator_stats(q, PI_REF, n, rng=0)
    exact = estimator_stats(q, PI_REF)
    for name in ESTIMATORS:
        z = (mc[name]["mean"] - exact[name]["mean"]) / mc[name]["stderr"]
        assert np.all(np.abs(z) < 4.5), (name, z)
        np.testing.assert_allclose(mc[name]["std"], exact[name]["std"], rtol=0.03)
    p_neg = exact["p_negative_k1"]
    se = np.sqrt(p_neg * (1 - p_neg) / n)
    assert np.all(np.abs(mc["p_negative_k1"] - p_neg) < 4.5 * se)


def test_far_from_the_reference_sampling_misses_k3s_heavy_tail():
    """The exact std of k3 at beta = 0.1 is ~4000x the KL, carried by responses so rare
    under pi* that 100k samples almost never see them: the sample std is far smaller."""
    q = tilted_policies(PI_REF, REWARD, [0.1])
    mc = sampled_estimator_stats(q, PI_REF, 100_000, rng=0)
    exact = estimator_stats(q, PI_REF)
    assert mc["k3"]["std"][0] < 0.2 * exact["k3"]["std"][0]
    assert mc["k1"]["std"][0] == pytest.approx(exact["k1"]["std"][0], rel=0.03)


def test_batch_mean_of_k1_is_negative_often_near_the_reference():
    q = tilted_policies(PI_REF, REWARD, BETAS)
    n_batches = 4000
    se = 0.5 / np.sqrt(n_batches)
    single = batch_negative_probability(q, PI_REF, 1, n_batches, rng=1)
    np.testing.assert_allclose(single, estimator_stats(q, PI_REF)["p_negative_k1"],
                               atol=4.5 * se)
    by_size = np.stack([batch_negative_probability(q, PI_REF, b, n_batches, rng=2)
                        for b in (4, 16, 64)])
    assert by_size[-1, 0] > 0.3  # near pi_ref, a 64-sample batch mean is negative > 30%
    assert np.all(by_size[:, -1] < 0.01)  # far from it, practically never
    assert np.all(by_size[-1] <= by_size[0] + 4.5 * se)  # bigger batches: fewer negatives
    # the central-limit approximation is good for batches of 64
    np.testing.assert_allclose(by_size[-1], batch_negative_probability_normal(q, PI_REF, 64),
                               atol=0.03)
    assert batch_negative_probability_normal(PI_REF, PI_REF, 8) == 0.0


# --- KL in the reward versus KL in the loss ------------------------------------------------------


logit_tables = hnp.arrays(np.float64, (2, 5), elements=st.floats(-3, 3))
ref_tables = st_rl.policy_tables(shape=(2, 5), min_prob=0.02)


def central_difference(f, x, h=1e-6):
    """Gradient of a function returning one value per row, by central differences."""
    grad = np.zeros_like(x)
    for j in range(x.shape[-1]):
        e = np.zeros_like(x)
        e[..., j] = h
        grad[..., j] = (f(x + e) - f(x - e)) / (2 * h)
    return grad


@given(logit_tables, ref_tables)
def test_true_gradients_match_finite_differences(logits, pi_ref):
    g = kl_gradients(logits, pi_ref)
    np.testing.assert_allclose(
        g["reverse_kl"],
        central_difference(lambda t: kl_divergence(softmax(t, axis=-1), pi_ref), logits),
        atol=1e-7)
    np.testing.assert_allclose(
        g["forward_kl"],
        central_difference(lambda t: kl_divergence(pi_ref, softmax(t, axis=-1)), logits),
        atol=1e-7)


@given(logit_tables, ref_tables)
def test_estimator_gradients_are_what_an_implementation_computes(logits, pi_ref):
    """Independent of the closed forms: per response y, the REINFORCE term
    k(y) * d log pi(y) / d theta and the loss term d k(y) / d theta, both by central
    differences, weighted by pi(y) (not differentiated)."""
    g = kl_gradients(logits, pi_ref)
    pi = softmax(logits, axis=-1)
    log_ref = np.log(pi_ref)
    ks = kl_estimates(log_softmax(logits, axis=-1), log_ref)
    for name in ESTIMATORS:
        reward_term = np.zeros_like(logits)
        loss_term = np.zeros_like(logits)
        for y in range(logits.shape[-1]):
            dlogpi = central_difference(lambda t, y=y: log_softmax(t, axis=-1)[..., y], logits)
            dk = central_difference(
                lambda t, y=y, name=name: kl_estimates(log_softmax(t, axis=-1),
                                                       log_ref)[name][..., y], logits)
            reward_term += pi[..., y:y + 1] * ks[name][..., y:y + 1] * dlogpi
            loss_term += pi[..., y:y + 1] * dk
        np.testing.assert_allclose(g[f"{name}_in_reward"], reward_term, atol=1e-6)
        np.testing.assert_allclose(g[f"{name}_in_loss"], loss_term, atol=1e-6)


@given(logit_tables, ref_tables)
def test_which_estimator_gives_which_gradient(logits, pi_ref):
    g = kl_gradients(logits, pi_ref)
    assert set(g) == set(KL_GRADIENTS)
    np.testing.assert_allclose(g["k1_in_reward"], g["reverse_kl"], atol=1e-12)
    np.testing.assert_allclose(g["k2_in_loss"], g["reverse_kl"], atol=1e-12)
    np.testing.assert_allclose(g["k3_in_loss"], g["forward_kl"], atol=1e-12)
    np.testing.assert_allclose(g["k1_in_loss"], 0.0, atol=1e-15)
    # E_pi[k3] = KL(pi || pi_ref) for every pi, so reward and loss parts add up to its gradient
    np.testing.assert_allclose(g["k3_in_reward"] + g["k3_in_loss"], g["reverse_kl"],
                               atol=1e-9)


def test_k3_in_the_loss_is_not_the_reverse_kl_gradient():
    rng = np.random.default_rng(0)
    logits, pi_ref = rng.standard_normal((1, 8)) * 2, softmax(rng.standard_normal((1, 8)))
    g = kl_gradients(logits, pi_ref)
    gap = np.abs(g["k3_in_loss"] - g["reverse_kl"]).max()
    assert gap > 0.05
    assert np.abs(g["k3_in_reward"] - g["reverse_kl"]).max() > 0.05
    cos = (g["k3_in_loss"] * g["reverse_kl"]).sum() / (
        np.linalg.norm(g["k3_in_loss"]) * np.linalg.norm(g["reverse_kl"]))
    assert cos < 0.99
    with pytest.raises(ValueError, match="pi_ref must be > 0 everywhere"):
        kl_gradients(logits, np.array([[0.0] + [1 / 7] * 7]))


def test_sampled_gradients_converge_to_the_exact_ones():
    env = make_bandit(3, 6, proxy="exact", rng=1)
    logits = np.random.default_rng(2).standard_normal((3, 6))
    exact = kl_gradients(logits, env.pi_ref)
    sampled = sampled_kl_gradients(logits, env.pi_ref, 200_000, rng=3)
    for name, value in sampled.items():
        # per-sample terms are O(1) here, so the standard error is ~ 1/sqrt(2e5) ~ 2e-3
        np.testing.assert_allclose(value, exact[name], atol=6e-3, err_msg=name)
    small = sampled_kl_gradients(logits, env.pi_ref, 200, rng=3)
    err_small = np.abs(small["k3_in_loss"] - exact["k3_in_loss"]).max()
    err_big = np.abs(sampled["k3_in_loss"] - exact["k3_in_loss"]).max()
    assert err_big < err_small


# --- where each KL gradient takes the policy -----------------------------------------------------

ASCENT_ENV = make_bandit(3, 6, proxy="exact", rng=1)
BETA = 1.0  # pi* keeps every response above 0.006, so 1500 steps converge fully


def ascend(name, **kw):
    return kl_penalised_ascent(ASCENT_ENV.pi_ref, ASCENT_ENV.r_star, BETA, name,
                               n_steps=kw.pop("n_steps", 1500), lr=kw.pop("lr", 4.0), **kw)


def test_reverse_kl_gradients_converge_to_the_rlhf_optimum():
    pi_star = optimal_policy(ASCENT_ENV.pi_ref, ASCENT_ENV.r_star, BETA)
    for name in ("reverse_kl", "k1_in_reward", "k2_in_loss"):
        assert np.all(kl_divergence(ascend(name)["pi"], pi_star) < 1e-8), name


def test_k3_in_the_loss_converges_to_the_forward_kl_optimum_not_pi_star():
    pi_star = optimal_policy(ASCENT_ENV.pi_ref, ASCENT_ENV.r_star, BETA)
    pi_fwd = forward_kl_regularised_policy(ASCENT_ENV.pi_ref, ASCENT_ENV.r_star, BETA)
    result = ascend("k3_in_loss")
    assert np.all(kl_divergence(result["pi"], pi_fwd) < 1e-8)
    assert np.all(kl_divergence(result["pi"], pi_star) > 0.005)  # 0.009 to 0.029
    assert result["trajectory"].shape == (len(result["steps"]), 3, 6)
    assert result["steps"][0] == 0 and result["steps"][-1] == 1500


def test_k1_in_the_loss_applies_no_penalty():
    pi_star = optimal_policy(ASCENT_ENV.pi_ref, ASCENT_ENV.r_star, BETA)
    pi = ascend("k1_in_loss")["pi"]
    assert ASCENT_ENV.expected(pi, "gold") > ASCENT_ENV.expected(pi_star, "gold") + 0.1
    assert kl_divergence(pi, ASCENT_ENV.pi_ref).mean() > 2 * kl_divergence(
        pi_star, ASCENT_ENV.pi_ref).mean()
    unpenalised = kl_penalised_ascent(ASCENT_ENV.pi_ref, ASCENT_ENV.r_star, 1e-12,
                                      "reverse_kl", n_steps=1500, lr=4.0)["pi"]
    np.testing.assert_allclose(pi, unpenalised, atol=1e-6)


def test_k3_as_a_reward_diverges_with_a_clear_error():
    with pytest.raises(FloatingPointError, match=r"non-finite logits at step \d+"):
        ascend("k3_in_reward", n_steps=3000, lr=2.0)


def test_ascent_validation_and_determinism():
    with pytest.raises(ValueError, match="kl_gradient must be one of"):
        ascend("k4_in_loss")
    with pytest.raises(ValueError, match="pi_ref must be > 0"):
        kl_penalised_ascent([[0.5, 0.5, 0.0]], [[0.0, 1.0, 2.0]], 1.0)
    a, b = ascend("k3_in_loss", n_steps=50), ascend("k3_in_loss", n_steps=50)
    np.testing.assert_array_equal(a["trajectory"], b["trajectory"])
