"""Reward-model ensembles (Coste et al., 2023): aggregation, disagreement, conservatism.

The claims tested: the aggregates are what they say; members disagree where comparisons are
scarce (an out-of-distribution signal), except that bootstrap alone cannot flag responses
never compared; and optimising a conservative aggregate (worst case, or mean minus
variance) ends with more gold reward at the smallest beta than optimising a single reward
model fitted on the same comparisons, on average over worlds.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.stats import spearmanr

from rlhf_toy.bandit.env import make_bandit
from rlhf_toy.bandit.experiments.ensembles import (
    aggregate,
    disagreement,
    final_gold_over_worlds,
    fit_ensemble,
)
from rlhf_toy.bradley_terry import (
    comparison_counts,
    fit_bradley_terry,
    fit_bradley_terry_with_prior,
    sample_comparisons,
)

BETAS = np.geomspace(30.0, 0.003, 30)

ensembles = st.integers(1, 6).flatmap(
    lambda k: hnp.arrays(np.float64, (k, 2, 5), elements=st.floats(-5, 5)))


@given(ensembles, st.floats(0.0, 10.0))
def test_aggregates_are_mean_min_and_mean_minus_variance(ens, lam):
    mean, low, uwo = (aggregate(ens, m, lam) for m in ("mean", "min", "uwo"))
    np.testing.assert_allclose(mean, ens.mean(0))
    np.testing.assert_array_equal(low, ens.min(0))
    np.testing.assert_allclose(uwo, ens.mean(0) - lam * ens.var(0))
    assert np.all(low <= mean + 1e-12) and np.all(uwo <= mean + 1e-12)
    np.testing.assert_allclose(aggregate(ens, "uwo", 0.0), mean)
    np.testing.assert_allclose(disagreement(ens) ** 2, ens.var(0), atol=1e-12)


def test_identical_members_agree_everywhere():
    r = np.random.default_rng(0).standard_normal((3, 4))
    ens = np.stack([r] * 4)
    assert np.all(disagreement(ens) == 0)
    for method in ("mean", "min", "uwo"):
        np.testing.assert_allclose(aggregate(ens, method, 2.0), r)


def test_aggregate_and_fit_validate():
    with pytest.raises(ValueError, match="method"):
        aggregate(np.zeros((2, 2, 2)), "median")
    with pytest.raises(ValueError, match="lam"):
        aggregate(np.zeros((2, 2, 2)), "uwo", -1.0)
    with pytest.raises(ValueError, match="shape"):
        disagreement(np.zeros((2, 2)))
    pi = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="k must be"):
        fit_ensemble(pi, np.zeros((2, 3)), 0, 10, rng=0)
    with pytest.raises(ValueError, match="bootstrap=True"):
        fit_ensemble(pi, np.zeros((2, 3)), 2, 10, rng=0, bootstrap=False,
                     comparisons=([0], [1], [2]))
    with pytest.raises(ValueError, match="prior_scale"):
        fit_ensemble(pi, np.zeros((2, 3)), 2, 10, rng=0, prior_scale=-1.0)


def test_comparison_counts():
    counts = comparison_counts([0, 0, 1], [1, 2, 0], [2, 2, 1], 2, 3)
    np.testing.assert_array_equal(counts, [[0, 1, 3], [1, 1, 0]])
    assert counts.sum() == 6


def test_fit_ensemble_is_seeded_and_its_members_are_bradley_terry_fits():
    env = make_bandit(3, 8, proxy="exact", rng=1)
    a = fit_ensemble(env.pi_ref, env.r_star, 3, 400, rng=5)
    b = fit_ensemble(env.pi_ref, env.r_star, 3, 400, rng=5)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 3, 8)
    np.testing.assert_allclose((a * env.pi_ref).sum(-1), 0.0, atol=1e-10)  # E_ref r = 0
    assert not np.allclose(a[0], a[1])  # resamples differ
    fresh = fit_ensemble(env.pi_ref, env.r_star, 2, 400, rng=5, bootstrap=False)
    assert fresh.shape == (2, 3, 8) and not np.allclose(fresh[0], fresh[1])
    # prior mean 0 reproduces fit_bradley_terry (same objective)
    x, y_w, y_l = sample_comparisons(env.pi_ref, env.r_star, 400, rng=2)
    np.testing.assert_allclose(
        fit_bradley_terry_with_prior(x, y_w, y_l, 3, 8, np.zeros((3, 8)), 0.1),
        fit_bradley_terry(x, y_w, y_l, 3, 8, l2=0.1), atol=1e-5)
    # a prior mean constant along each row only shifts the rows (a flat direction)
    shifted = fit_bradley_terry_with_prior(x, y_w, y_l, 3, 8, np.full((3, 8), 5.0), 0.1)
    np.testing.assert_allclose(shifted - shifted.mean(-1, keepdims=True),
                               fit_bradley_terry(x, y_w, y_l, 3, 8, l2=0.1), atol=1e-5)


def _disagreement_vs_counts(prior_scale, seed):
    env = make_bandit(8, 64, proxy="exact", ref_temperature=0.5, rng=seed)
    comparisons = sample_comparisons(env.pi_ref, env.r_star, 3000, rng=seed)
    ens = fit_ensemble(env.pi_ref, env.r_star, 5, 3000, rng=seed, l2=0.1,
                       prior_scale=prior_scale, comparisons=comparisons)
    return disagreement(ens), comparison_counts(*comparisons, 8, 64)


def test_disagreement_is_high_where_comparisons_are_few():
    """Out-of-distribution signal: members disagree most on rarely compared responses.

    Randomised priors (prior_scale = 1/sqrt(l2): each member a posterior sample): the rank
    correlation of disagreement with comparison counts is clearly negative in every world,
    and never-compared responses get the most disagreement. Plain bootstrap: negative
    among compared responses, but responses never compared get almost none (every resample
    leaves them at the row level; only the members' row levels differ), less than
    responses compared 1-5 times: over all responses the correlation has the wrong sign.
    Bootstrap alone cannot flag what no one ever labelled.
    """
    for seed in range(4):
        dis, counts = _disagreement_vs_counts(np.sqrt(10.0), seed)
        assert spearmanr(dis.ravel(), counts.ravel())[0] < -0.5
        assert np.median(dis[counts == 0]) > 3 * np.median(dis[counts >= 50])
        dis, counts = _disagreement_vs_counts(0.0, seed)
        seen = counts > 0
        few = (counts >= 1) & (counts <= 5)
        assert (~seen).sum() > 50
        assert dis[~seen].max() < np.median(dis[few])
        assert np.median(dis[~seen]) < 0.5 * np.median(dis[few])
        assert spearmanr(dis[seen], counts[seen])[0] < -0.2
        assert spearmanr(dis.ravel(), counts.ravel())[0] > 0


def _final_gold_gains(prior_scale, seeds):
    gold = final_gold_over_worlds(seeds, BETAS, k=10, n_comparisons=30000, l2=0.03, lam=1.0,
                                  prior_scale=prior_scale)
    return {m: gold[m] - gold["single"] for m in ("mean", "min", "uwo")}


def test_conservative_ensembles_keep_more_gold_under_hard_optimisation():
    """Bootstrap ensemble of 10 (30000 comparisons, l2 = 0.03): at the smallest beta, the
    worst-case and the uncertainty-weighted aggregates end with more gold than the single
    reward model on the same data, on average over 10 worlds (by > 2 standard errors)."""
    gains = _final_gold_gains(0.0, range(10))
    for method in ("min", "uwo"):
        g = gains[method]
        assert g.mean() > 2 * g.std(ddof=1) / np.sqrt(g.size)
        assert np.mean(g >= 0) >= 0.7


@pytest.mark.slow
def test_randomised_prior_ensembles_min_and_uwo_win_but_the_mean_does_not():
    """With randomised priors the members also disagree on never-compared responses: the
    conservative aggregates beat the single model in most worlds, while the plain mean of
    such members does worse on average (their random opinions on unseen responses average
    to a noisy value the policy can exploit)."""
    gains = _final_gold_gains(np.sqrt(1 / 0.03), range(10))
    for method in ("min", "uwo"):
        g = gains[method]
        assert g.mean() > 2 * g.std(ddof=1) / np.sqrt(g.size)
        assert np.mean(g > 0) >= 0.8
    assert gains["mean"].mean() < min(gains["min"].mean(), gains["uwo"].mean())


@pytest.mark.parametrize("prior_scale", [0.0, 1.0])
def test_fit_ensemble_checks_the_comparisons_it_is_given(prior_scale):
    env = make_bandit(2, 3, proxy="exact", rng=0)
    kw = dict(k=2, n_comparisons=10, rng=0, l2=1.0, prior_scale=prior_scale)
    with pytest.raises(ValueError, match=r"y_w must hold indices in \[0, 3\)"):
        fit_ensemble(env.pi_ref, env.r_star, comparisons=([0, 1], [0, 3], [1, 2]), **kw)
    with pytest.raises(ValueError, match=r"x must hold indices in \[0, 2\)"):
        fit_ensemble(env.pi_ref, env.r_star, comparisons=([2, 1], [0, 1], [1, 2]), **kw)
    with pytest.raises(ValueError, match="y_l must have length 2 as x"):
        fit_ensemble(env.pi_ref, env.r_star, comparisons=([0, 1], [0, 1], [1]), **kw)
    with pytest.raises(TypeError, match="y_l must hold integer indices"):
        fit_ensemble(env.pi_ref, env.r_star, comparisons=([0, 1], [0, 1], [1.0, 2.0]), **kw)


def test_ensembles_refuse_empty_and_huge_inputs():
    with pytest.raises(ValueError, match="ensemble must not be empty"):
        aggregate(np.zeros((0, 2, 3)))
    with pytest.raises(ValueError, match="ensemble must not be empty"):
        disagreement(np.zeros((2, 0, 3)))
    env = make_bandit(2, 3, proxy="exact", rng=0)
    with pytest.raises(ValueError, match="n_comparisons must be <= 10000000"):
        fit_ensemble(env.pi_ref, env.r_star, 2, 10**9, rng=0)
    with pytest.raises(ValueError, match="k must be <= 1000"):
        fit_ensemble(env.pi_ref, env.r_star, 10**6, 10, rng=0)
    with pytest.raises(TypeError, match="l2 must be a real number"):
        fit_ensemble(env.pi_ref, env.r_star, 2, 10, rng=0, l2="0.1", prior_scale=1.0)
