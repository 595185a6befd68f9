"""Policy-gradient studies: estimator bias and variance against the exact gradient, and
GRPO's failure modes (zero-spread groups, the std division's weighting of difficulty)."""

import itertools

import numpy as np
import pytest

from rlhf_toy.bandit.env import make_bandit
from rlhf_toy.bandit.experiments.pg_study import (
    convergence_study,
    difficulty_weights,
    estimator_mse,
    exact_gradient,
    grpo_effective_weight,
    zero_spread_probability,
    zero_spread_study,
)
from rlhf_toy.policy_gradient import grpo_advantages
from rlhf_toy.rl import RLOOConfig, dr_grpo_config

BETA = 0.5
GS = [2, 8, 32]


@pytest.fixture(scope="module")
def env():
    return make_bandit(4, 6, proxy="gaussian", rng=1)


@pytest.fixture(scope="module")
def study(env):
    # at a policy away from pi_ref, so that the KL part of the gradient is not zero
    pi = np.exp(np.log(env.pi_ref) + 0.5 * env.r_star)
    pi /= pi.sum(1, keepdims=True)
    return estimator_mse(pi, env.pi_ref, env.r_hat, BETA, GS, 3000, rng=0)


def z_scores(st, target):
    return (st["mean"] - target) / st["sem"]


@pytest.mark.parametrize("name", ["reinforce", "rloo", "critic"])
def test_unbiased_estimators_average_to_the_exact_gradient(study, name):
    # 3 values of G x 24 entries: |z| of a mean of 3000 draws stays under 4.5
    assert np.abs(z_scores(study[name], study["exact"][None])).max() < 4.5


def test_mean_baseline_is_rloo_scaled_by_g_minus_one_over_g(study):
    st = study["reinforce_mean"]
    shrunk = ((np.array(GS) - 1) / np.array(GS))[:, None, None] * study["exact"][None]
    assert np.abs(z_scores(st, shrunk)).max() < 4.5
    assert np.abs(z_scores(st, study["exact"][None]))[0].max() > 10  # G = 2: halved
    np.testing.assert_allclose(study["dr_grpo"]["mean"], st["mean"])  # the same estimator


def test_grpo_std_scaling_is_biased_in_scale_and_direction(study):
    st = study["grpo"]
    exact = study["exact"]
    assert np.abs(z_scores(st, exact[None])).max() > 10
    # not a rescaled exact gradient either: the best multiple of it still misses
    for i in range(len(GS)):
        c = float((st["mean"][i] * exact).sum() / (exact**2).sum())
        assert np.abs((st["mean"][i] - c * exact) / st["sem"][i]).max() > 6


def test_variance_falls_like_one_over_g_and_baselines_reduce_it(study):
    for name in ("reinforce", "rloo", "critic"):
        mse = study[name]["mse"]
        assert np.all(np.diff(mse) < 0)
        np.testing.assert_allclose(mse[1] / mse[2], 4.0, rtol=0.2)  # G 8 -> 32
    for i in range(len(GS)):
        assert study["critic"]["variance"][i] < study["reinforce"]["variance"][i]
    assert study["rloo"]["mse"][2] < study["reinforce"]["mse"][2]
    # the decomposition holds to the sample-variance factor
    for name in ("reinforce", "grpo"):
        st = study[name]
        np.testing.assert_allclose(st["mse"], st["bias_sq"] + st["variance"], rtol=1e-9)


def test_exact_gradient_matches_central_differences(env):
    from rlhf_toy.optimal import objective

    z = np.log(env.pi_ref) + 0.3
    z[0, 1] += 0.7

    def J(zz):
        p = np.exp(zz - zz.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return objective(p, env.pi_ref, env.r_hat, BETA)

    pi = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    g = exact_gradient(pi, env.pi_ref, env.r_hat, BETA)
    num = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += 1e-6
        zm[idx] -= 1e-6
        num[idx] = (J(zp) - J(zm)) / 2e-6
    np.testing.assert_allclose(g, num, atol=1e-8)


def test_zero_spread_fraction_matches_p_to_the_g_plus_one_minus_p_to_the_g():
    p = np.array([0.0, 0.01, 0.05, 0.2, 0.5, 1.0])
    res = zero_spread_study(p, [4, 16], 3000, rng=0)
    np.testing.assert_allclose(res["exact"][0], p**4 + (1 - p) ** 4)
    err = np.abs(res["measured"] - res["exact"])
    assert np.all(err <= 4.5 * res["sem"] + 1e-12)
    assert np.all(res["measured"][:, [0, -1]] == 1.0)  # p = 0 or 1: never any signal
    assert np.all(np.diff(res["measured"][:, :5], axis=1) < 0)  # sparser, more wasted groups
    assert res["measured"][1, 1] < res["measured"][0, 1]  # bigger groups help


def test_effective_weight_closed_form_against_enumeration():
    G = 4
    for p in (0.1, 0.5, 0.8):
        for scale in ("group", "none"):
            mass = 0.0
            for outcome in itertools.product([0.0, 1.0], repeat=G):
                r = np.array(outcome)
                prob = np.prod(np.where(r == 1, p, 1 - p))
                adv = grpo_advantages(r[None], scale=scale, eps=0.0)[0]
                mass += prob * adv[r == 1].sum() / G
            np.testing.assert_allclose(grpo_effective_weight(p, G, scale), mass / (p * (1 - p)),
                                       rtol=1e-12)


def test_std_division_up_weights_easy_and_hopeless_prompts():
    p = np.array([0.05, 0.2, 0.5, 0.8, 0.95])
    res = difficulty_weights(p, 8, 4000, rng=0)
    for scale in ("group", "none"):
        st = res[scale]
        assert np.all(np.abs(st["measured"] - st["exact"]) < 4.5 * st["sem"])
    grpo = res["group"]["measured"]
    assert grpo[0] > 1.2 * grpo[2] and grpo[-1] > 1.2 * grpo[2]
    np.testing.assert_allclose(res["none"]["exact"], 7 / 8)  # Dr. GRPO: flat


def test_convergence_study_stacks_seeds(env):
    out = convergence_study(env, {"rloo": RLOOConfig(beta=BETA, group_size=4),
                                  "dr_grpo": dr_grpo_config(beta=BETA, group_size=4)},
                            seeds=[0, 1], steps=10, targets={"ref": env.pi_ref})
    assert out["steps"].shape == (11,)
    assert out["rloo"]["kl_to_optimum"].shape == (2, 11)
    np.testing.assert_allclose(out["dr_grpo"]["kl_to_ref"], out["dr_grpo"]["kl"], atol=1e-12)
    assert not np.array_equal(out["rloo"]["gold"][0], out["rloo"]["gold"][1])


def test_bad_arguments_raise(env):
    with pytest.raises(ValueError, match="estimators must be among"):
        estimator_mse(env.pi_ref, env.pi_ref, env.r_hat, BETA, [2], 10, 0, estimators=["x"])
    with pytest.raises(ValueError, match="group_sizes"):
        estimator_mse(env.pi_ref, env.pi_ref, env.r_hat, BETA, [1], 10, 0)
    with pytest.raises(ValueError, match="share a shape"):
        estimator_mse(env.pi_ref, env.pi_ref, env.r_hat[:2], BETA, [2], 10, 0)
    with pytest.raises(ValueError, match="p must be in"):
        zero_spread_probability([1.5], 4)
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\)"):
        grpo_effective_weight([0.0], 4)
    with pytest.raises(ValueError, match="seeds"):
        convergence_study(env, {}, seeds=[], steps=1)
