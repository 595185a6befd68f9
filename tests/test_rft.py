"""Rejection-sampling fine-tuning on the bandit (chapter, *Modern variations*: RFT).

Claims: the survivors are exact best-of-n draws (a chi-square test that also rejects the
neighbouring n), the fitted table converges to the exact best-of-n policy as samples grow,
k rounds behave like best-of-n^k, and the KL-regularised optimum at the same KL earns at
least as much proxy reward.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from rlhf_toy.bandit import make_bandit
from rlhf_toy.bandit.experiments.rft import (
    estimator_experiment,
    matched_kl_comparison,
    rejection_sampling_finetune,
    rft_convergence,
    sample_responses,
)
from rlhf_toy.best_of_n import best_of_n_kl, best_of_n_policy, kl_matched_beta
from rlhf_toy.optimal import optimal_policy, reward_kl_frontier


def chi_square_pvalue(counts, probs):
    """Pearson chi-square p-value of multinomial counts (X, Y) against row probabilities."""
    total = counts.sum(-1, keepdims=True)
    expected = total * probs
    live = expected > 0
    assert np.all(counts[~live] == 0), "a count where the model has no mass"
    stat = np.sum((counts[live] - expected[live]) ** 2 / expected[live])
    dof = int(live.sum() - counts.shape[0])
    return chi2.sf(stat, dof)


def tv(p, q):
    return 0.5 * np.abs(p - q).sum(-1).mean()


@pytest.fixture(scope="module")
def small_env():
    # few, not-too-unequal responses: every expected count is large enough for chi-square
    return make_bandit(4, 6, proxy="gaussian", ref_temperature=3.0, rng=2)


def test_sample_responses_is_exact_and_respects_zeros():
    pi = np.array([[0.5, 0.0, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]])
    draws = sample_responses(pi, 40_000, rng=0)
    assert draws.shape == (2, 40_000)
    counts = np.stack([np.bincount(row, minlength=4) for row in draws])
    assert counts[0, 1] == 0
    assert chi_square_pvalue(counts, pi) > 1e-3
    # i.i.d. in order too: consecutive pairs are independent (pair counts ~ pi x pi)
    pairs = draws[1, 0::2] * 4 + draws[1, 1::2]
    pair_counts = np.bincount(pairs, minlength=16)[None]
    assert chi_square_pvalue(pair_counts, np.outer(pi[1], pi[1]).ravel()[None]) > 1e-3
    np.testing.assert_array_equal(draws, sample_responses(pi, 40_000, rng=0))


@pytest.mark.parametrize("n", [1, 3])
def test_survivors_are_exact_best_of_n_draws(small_env, n):
    res = rejection_sampling_finetune(small_env, n, 20_000, rng=1)
    counts = res.counts[0]
    assert np.all(counts.sum(-1) == 20_000)
    exact = best_of_n_policy(small_env.pi_ref, small_env.r_hat, n)
    assert chi_square_pvalue(counts, exact) > 1e-3
    # the test has power: the neighbouring n are rejected outright
    assert chi_square_pvalue(counts, best_of_n_policy(small_env.pi_ref, small_env.r_hat,
                                                      n + 1)) < 1e-6


def test_ties_are_broken_uniformly_among_drawn_candidates():
    pi_ref = np.array([[0.1, 0.2, 0.3, 0.4]])
    r_hat = np.array([[1.0, 1.0, 0.0, 0.5]])  # responses 0 and 1 tie for the top
    res = rejection_sampling_finetune((pi_ref, r_hat), 3, 40_000, rng=4)
    assert res.gold is None
    exact = best_of_n_policy(pi_ref, r_hat, 3)
    assert chi_square_pvalue(res.counts[0], exact) > 1e-3
    # pi_ref-proportional split of the tie group (1:2), not an even one: the latter is rejected
    even = exact.copy()
    even[0, :2] = exact[0, :2].sum() / 2
    assert chi_square_pvalue(res.counts[0], even) < 1e-6


def test_fitted_policy_converges_to_best_of_n_as_samples_grow():
    env = make_bandit(8, 64, proxy="gaussian", rng=0)
    exact = best_of_n_policy(env.pi_ref, env.r_hat, 4)
    dist = [tv(rejection_sampling_finetune(env, 4, s, rng=3).policy, exact)
            for s in (200, 2_000, 20_000, 200_000)]
    assert all(b < a for a, b in zip(dist, dist[1:], strict=False)), dist
    # multinomial noise: each 10x more samples shrinks the distance by about sqrt(10)
    assert dist[-1] < 0.01
    assert dist[0] / dist[-1] > 15


def test_iterated_rounds_behave_like_best_of_n_to_the_k():
    env = make_bandit(6, 32, proxy="gaussian", rng=1)
    res = rejection_sampling_finetune(env, 2, 200_000, rng=5, n_rounds=3)
    for k in range(3):
        target = best_of_n_policy(env.pi_ref, env.r_hat, 2 ** (k + 1))
        d = tv(res.policies[k], target)
        assert d < 0.02, (k, d)
        for other in (2**k, 2 ** (k + 2)):
            if other > 1:
                assert d < 0.5 * tv(res.policies[k], best_of_n_policy(env.pi_ref, env.r_hat,
                                                                        other))
    # optimising the proxy harder: exact proxy reward and KL rise with the rounds
    assert np.all(np.diff(res.proxy) > 0) and np.all(np.diff(res.kl) > 0)


def test_kl_optimal_policy_earns_at_least_as_much_proxy_at_the_same_kl():
    env = make_bandit(8, 64, proxy="gaussian", rng=0)
    for n, rounds in [(2, 1), (4, 2)]:
        res = rejection_sampling_finetune(env, n, 5_000, rng=6, n_rounds=rounds)
        for k in range(rounds):
            beta = kl_matched_beta(env.pi_ref, env.r_hat, res.kl[k])
            pi_star = optimal_policy(env.pi_ref, env.r_hat, beta)
            assert env.expected(pi_star, "proxy") >= res.proxy[k] - 1e-12


def test_smoothing_keeps_the_support_and_zeros_are_sticky_without_it():
    env = make_bandit(3, 50, proxy="gaussian", rng=0)
    plain = rejection_sampling_finetune(env, 16, 100, rng=0, n_rounds=2)
    assert np.any(plain.policies[0] == 0)
    # a response lost in round 0 never comes back
    assert np.all(plain.policies[1][plain.policies[0] == 0] == 0)
    smooth = rejection_sampling_finetune(env, 16, 100, rng=0, smoothing=0.5)
    assert np.all(smooth.policy > 0)
    np.testing.assert_allclose(smooth.policy.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(smooth.counts, plain.counts[:1])  # same seed, same draws


def test_reported_statistics_and_determinism():
    env = make_bandit(4, 16, proxy="gaussian", rng=3)
    a = rejection_sampling_finetune(env, 4, 3_000, rng=11, n_rounds=2)
    b = rejection_sampling_finetune(env, 4, 3_000, rng=np.random.default_rng(11), n_rounds=2)
    np.testing.assert_array_equal(a.policies, b.policies)
    np.testing.assert_array_equal(a.policy, a.policies[-1])
    for k in range(2):
        assert a.proxy[k] == pytest.approx(env.expected(a.policies[k], "proxy"), abs=1e-12)
        assert a.gold[k] == pytest.approx(env.expected(a.policies[k], "gold"), abs=1e-12)
    # the survivors' average proxy is the fitted policy's expected proxy, exactly
    np.testing.assert_allclose(a.survivor_proxy, a.proxy, atol=1e-12)


def test_matched_kl_comparison():
    env = make_bandit(10, 32, proxy="student_t", noise_scale=0.5, df=2.0, rng=0)
    ns = np.array([1, 2, 8, 32])
    table = matched_kl_comparison(env, ns)
    np.testing.assert_allclose(table.kl, best_of_n_kl(env.pi_ref, env.r_hat, ns).mean(-1),
                               atol=1e-13)
    assert table.betas[0] == np.inf
    assert table.opt_gold[0] == pytest.approx(table.bon_gold[0], abs=1e-14)  # both pi_ref
    front = reward_kl_frontier(env.pi_ref, env.r_hat, table.betas[1:],
                               eval_rewards={"gold": env.r_star})
    np.testing.assert_allclose(front.kl, table.kl[1:], rtol=1e-9)
    np.testing.assert_allclose(front.extra["gold"], table.opt_gold[1:], atol=1e-12)
    assert np.all(table.opt_proxy >= table.bon_proxy - 1e-12)


def test_rft_convergence_and_estimator_experiment_shapes():
    env = make_bandit(4, 16, proxy="gaussian", rng=0)
    dist = rft_convergence(env, 4, [50, 5000], rng=0, repeats=2)
    assert dist.shape == (2,) and dist[1] < dist[0] / 4
    exact, unbiased, disjoint = estimator_experiment(env, [1, 4, 16], 64, 20, rng=0)
    assert exact.shape == (3,) and unbiased.shape == disjoint.shape == (20, 3)
    np.testing.assert_allclose(unbiased[:, 0], disjoint[:, 0], atol=1e-13)  # n = 1: the mean
    assert np.all(np.abs(unbiased.mean(0) - exact) < 4 * unbiased.std(0) / np.sqrt(20) + 1e-9)


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must be"),
    ({"samples_per_prompt": 0}, "samples_per_prompt must be"),
    ({"n_rounds": 1.5}, "n_rounds must be"),
    ({"smoothing": -1.0}, "smoothing must be"),
])
def test_bad_arguments_raise(kwargs, match):
    env = make_bandit(2, 4, rng=0)
    args = {"n": 2, "samples_per_prompt": 10, "rng": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        rejection_sampling_finetune(env, **args)


def test_bad_env_raises():
    with pytest.raises(TypeError, match="env must be"):
        rejection_sampling_finetune("bandit", 2, 10, rng=0)
    with pytest.raises(ValueError, match="same shape"):
        rejection_sampling_finetune((np.full((2, 3), 1 / 3), np.zeros((2, 4))), 2, 10, rng=0)
    with pytest.raises(TypeError, match="rng"):
        rejection_sampling_finetune(make_bandit(2, 4, rng=0), 2, 10, rng=None)
