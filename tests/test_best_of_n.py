"""Claims about best-of-n (chapter: rejection sampling; Gao et al. overoptimisation).

The exact distribution is checked against brute-force enumeration of every draw and
against a plain Monte Carlo simulation (both written independently of the package); the
KL bound, the win rate ``n/(n+1)`` and the unbiased estimator are checked as the theory
states them.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import softmax

from rlhf_toy import strategies as st_rl
from rlhf_toy.best_of_n import (
    best_of_n_disjoint_estimator,
    best_of_n_estimator,
    best_of_n_expected_reward,
    best_of_n_kl,
    best_of_n_kl_bound,
    best_of_n_policy,
    best_of_n_sweep,
    best_of_n_win_rate,
    kl_matched_beta,
)
from rlhf_toy.kl import kl_divergence
from rlhf_toy.optimal import optimal_policy, reward_kl_frontier

# A row with ties (two responses of reward 1.0, two of 0.0), a zero-probability response
# holding the largest reward, and a row whose heaviest response is the worst.
PI_REF = np.array([[0.2, 0.3, 0.1, 0.4, 0.0, 0.0],
                   [0.1, 0.1, 0.1, 0.1, 0.55, 0.05]])
REWARD = np.array([[1.0, 0.0, 1.0, 2.0, 3.0, 0.0],
                   [0.0, 0.0, 1.0, 1.0, -1.0, 0.5]])


def brute_force_best_of_n(pi_ref, reward, n):
    """Enumerate all Y^n draws; ties broken uniformly among the drawn maximal samples."""
    out = np.zeros_like(pi_ref)
    for x in range(pi_ref.shape[0]):
        for draw in itertools.product(range(pi_ref.shape[1]), repeat=n):
            prob = np.prod(pi_ref[x, list(draw)])
            if prob == 0:
                continue
            best = max(reward[x, y] for y in draw)
            maximal = [y for y in draw if reward[x, y] == best]
            for y in maximal:
                out[x, y] += prob / len(maximal)
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_exact_distribution_matches_enumeration_with_ties_and_zeros(n):
    np.testing.assert_allclose(best_of_n_policy(PI_REF, REWARD, n),
                               brute_force_best_of_n(PI_REF, REWARD, n), rtol=0, atol=1e-15)


def test_exact_distribution_matches_monte_carlo():
    rng = np.random.default_rng(1234)
    n, draws = 5, 200_000
    for x in range(PI_REF.shape[0]):
        samples = rng.choice(PI_REF.shape[1], size=(draws, n), p=PI_REF[x])
        r = REWARD[x, samples]  # (draws, n)
        is_max = r == r.max(axis=1, keepdims=True)
        # uniform choice among the drawn maximal samples: random keys, argmax over maximal ones
        keys = np.where(is_max, rng.random(r.shape), -1.0)
        chosen = samples[np.arange(draws), keys.argmax(axis=1)]
        freq = np.bincount(chosen, minlength=PI_REF.shape[1]) / draws
        exact = best_of_n_policy(PI_REF[x], REWARD[x], n)
        se = np.sqrt(exact * (1 - exact) / draws)
        assert np.all(np.abs(freq - exact) <= 5 * se + 1e-12), (x, freq, exact)
    # the tie rule matters: within the tie group {0, 2} of row 0 (reward 1.0) the split is
    # pi_ref-proportional 2:1, not uniform over distinct responses
    exact = best_of_n_policy(PI_REF, REWARD, n)
    assert exact[0, 0] / exact[0, 2] == pytest.approx(2.0, rel=1e-12)


@given(st_rl.bandit_tables(allow_zeros=True), st.integers(1, 5))
def test_rows_sum_to_one_and_zeros_stay_zero(tables, n):
    pi_ref, reward = tables
    reward = np.round(reward)  # force ties
    pi_bon = best_of_n_policy(pi_ref, reward, n)
    np.testing.assert_allclose(pi_bon.sum(-1), 1.0, atol=1e-12)
    assert np.all(pi_bon[pi_ref == 0] == 0)
    assert np.all(pi_bon >= 0)


@given(st_rl.bandit_tables(allow_zeros=True))
def test_n_equals_one_is_the_reference(tables):
    pi_ref, reward = tables
    np.testing.assert_allclose(best_of_n_policy(pi_ref, np.round(reward), 1),
                               pi_ref / pi_ref.sum(-1, keepdims=True), rtol=1e-12, atol=1e-15)


@given(st_rl.bandit_tables(allow_zeros=True))
def test_large_n_tends_to_reference_restricted_to_argmax(tables):
    pi_ref, reward = tables
    reward = np.round(reward)
    on_support = np.where(pi_ref > 0, reward, -np.inf)
    argmax = on_support == on_support.max(-1, keepdims=True)
    limit = np.where(argmax, pi_ref, 0.0)
    limit /= limit.sum(-1, keepdims=True)
    # the strategy's smallest nonzero mass is ~ e^-10 / Y, so F_<(max)^n underflows to 0
    np.testing.assert_allclose(best_of_n_policy(pi_ref, reward, 10**12), limit, atol=1e-9)


@given(st_rl.bandit_tables(allow_zeros=True), st.integers(1, 6), st.integers(1, 6))
def test_best_of_m_of_best_of_n_is_best_of_nm(tables, n, m):
    # The reason iterated rejection sampling behaves like best-of-n^k.
    pi_ref, reward = tables
    reward = np.round(reward)
    twice = best_of_n_policy(best_of_n_policy(pi_ref, reward, n), reward, m)
    np.testing.assert_allclose(twice, best_of_n_policy(pi_ref, reward, n * m), atol=1e-12)


def test_array_of_n_equals_one_n_at_a_time():
    ns = np.array([1, 2, 7, 100])
    stacked = best_of_n_policy(PI_REF, REWARD, ns)
    assert stacked.shape == (4, *PI_REF.shape)
    for k, n in enumerate(ns):
        np.testing.assert_array_equal(stacked[k], best_of_n_policy(PI_REF, REWARD, int(n)))
    np.testing.assert_array_equal(best_of_n_kl(PI_REF, REWARD, ns)[2],
                                  best_of_n_kl(PI_REF, REWARD, 7))


def test_tiny_probabilities_and_huge_n_stay_accurate():
    # P(bottom response wins) = 1e-30^n exactly; the top one has 1 - (1 - 1e-30)^n ~ n e-30
    pi_ref = np.array([1e-30, 1.0 - 2e-30, 1e-30])
    reward = np.array([0.0, 1.0, 2.0])
    pi_bon = best_of_n_policy(pi_ref, reward, 1000)
    assert pi_bon[2] == pytest.approx(1000e-30, rel=1e-9)
    assert pi_bon[0] == 0.0  # 1e-30000 underflows, exactly
    assert pi_bon[1] == pytest.approx(1.0, abs=1e-25)


# --- the KL and its bound -----------------------------------------------------------------


def test_kl_bound_values():
    assert best_of_n_kl_bound(1) == 0.0
    assert best_of_n_kl_bound(2) == pytest.approx(math.log(2) - 0.5, rel=1e-15)
    ns = np.array([1, 10, 1000])
    np.testing.assert_allclose(best_of_n_kl_bound(ns), np.log(ns) - (ns - 1) / ns)


@given(st_rl.bandit_tables(allow_zeros=True), st.integers(1, 64), st.booleans())
def test_exact_kl_never_exceeds_the_bound(tables, n, ties):
    pi_ref, reward = tables
    if ties:
        reward = np.round(reward)
    kl = best_of_n_kl(pi_ref, reward, n)
    np.testing.assert_allclose(kl, kl_divergence(best_of_n_policy(pi_ref, reward, n), pi_ref),
                               atol=1e-12)
    assert np.all(kl <= best_of_n_kl_bound(n) + 1e-12)


def test_bound_is_tight_for_many_equally_likely_distinct_responses():
    m = 10_000
    pi_ref = np.full(m, 1.0 / m)
    reward = np.random.default_rng(0).permutation(m).astype(float)
    ns = np.array([2, 4, 16, 64])
    gap = best_of_n_kl_bound(ns) - best_of_n_kl(pi_ref, reward, ns)
    assert np.all(gap >= 0)
    assert np.all(gap < 1e-4)  # the bound is the m -> inf limit
    # ... and far from tight when a few responses hold the mass
    pi_few = np.array([0.5, 0.3, 0.2])
    kl_few = best_of_n_kl(pi_few, np.array([0.0, 1.0, 2.0]), 1024)
    p_bon = np.array([0.5**1024, 0.8**1024 - 0.5**1024, 1 - 0.8**1024])  # F_<=^n - F_<^n
    assert kl_few == pytest.approx(np.sum(p_bon * np.log(p_bon / pi_few)), rel=1e-12)
    assert kl_few <= math.log(1 / 0.2)  # at most the KL of "always the top response"
    assert kl_few < 0.3 * best_of_n_kl_bound(1024)  # 1.61 nats against a bound of 5.93


# --- the win rate -------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 4, 16])
def test_win_rate_is_n_over_n_plus_one_up_to_euler_maclaurin(n):
    # m equally likely distinct rewards: win = n/(n+1) - (f'(1) - f'(0)) / (12 m^2) + ...,
    # f(u) = u^n (trapezoidal-rule error); exact formula, so the match is to ~1e-6 relative
    # of the correction term itself.
    m = 1000
    win = best_of_n_win_rate(np.full(m, 1.0 / m), np.arange(m, dtype=float), n)
    correction = (n - (1 if n == 1 else 0)) / (12 * m**2)
    assert abs(win - (n / (n + 1) - correction)) <= 1e-3 * max(correction, 1e-12)


@given(st_rl.bandit_tables(), st.integers(1, 20))
def test_win_rate_equals_its_definition(tables, n):
    pi_ref, reward = tables
    reward = np.round(reward)
    pi_bon = best_of_n_policy(pi_ref, reward, n)
    gt = (reward[..., :, None] > reward[..., None, :]).astype(float)
    eq = (reward[..., :, None] == reward[..., None, :]).astype(float)
    direct = np.einsum("xi,xj,xij->x", pi_bon, pi_ref, gt + 0.5 * eq)
    np.testing.assert_allclose(best_of_n_win_rate(pi_ref, reward, n), direct, atol=1e-12)
    assert np.all(best_of_n_win_rate(pi_ref, reward, n) <= n / (n + 1) + 1e-12)


# --- expected reward, sweeps, matched KL ---------------------------------------------------


def test_expected_reward_and_sweep_agree_with_the_policy():
    rng = np.random.default_rng(3)
    pi_ref = softmax(rng.standard_normal((5, 40)), axis=-1)
    r_star = rng.standard_normal((5, 40))
    r_hat = r_star + 0.7 * rng.standard_normal((5, 40))
    ns = np.array([1, 2, 3, 8, 50, 400])
    pi_bon = best_of_n_policy(pi_ref, r_hat, ns)
    gold = best_of_n_expected_reward(pi_ref, r_hat, r_star, ns)
    np.testing.assert_allclose(gold, (pi_bon * r_star).sum(-1), atol=1e-13)
    sweep = best_of_n_sweep(pi_ref, r_hat, ns, eval_rewards={"gold": r_star})
    np.testing.assert_allclose(sweep.extra["gold"], gold.mean(-1), atol=1e-13)
    np.testing.assert_allclose(sweep.reward, (pi_bon * r_hat).sum(-1).mean(-1), atol=1e-13)
    np.testing.assert_allclose(sweep.kl, best_of_n_kl(pi_ref, r_hat, ns).mean(-1), atol=1e-13)
    np.testing.assert_allclose(sweep.win_rate, best_of_n_win_rate(pi_ref, r_hat, ns).mean(-1),
                               atol=1e-13)
    # the proxy rises monotonically with n (Goodhart's "optimise harder" axis)
    assert np.all(np.diff(sweep.reward) > 0)
    # a non-uniform prompt distribution weights the per-prompt values
    w = np.array([0.5, 0.2, 0.1, 0.1, 0.1])
    weighted = best_of_n_sweep(pi_ref, r_hat, ns, prompt_probs=w, eval_rewards={"gold": r_star})
    np.testing.assert_allclose(weighted.extra["gold"], gold @ w, atol=1e-13)


def test_kl_optimal_policy_beats_best_of_n_on_its_own_reward_at_matched_kl():
    rng = np.random.default_rng(5)
    pi_ref = softmax(rng.standard_normal((6, 30)), axis=-1)
    r_hat = rng.standard_normal((6, 30))
    for n in [2, 8, 64]:
        target = float(best_of_n_kl(pi_ref, r_hat, n).mean())
        beta = kl_matched_beta(pi_ref, r_hat, target)
        front = reward_kl_frontier(pi_ref, r_hat, [beta])
        assert front.kl[0] == pytest.approx(target, rel=1e-9)
        pi_star = optimal_policy(pi_ref, r_hat, beta)
        bon_reward = float(best_of_n_expected_reward(pi_ref, r_hat, r_hat, n).mean())
        assert (pi_star * r_hat).sum(-1).mean() >= bon_reward - 1e-12


# --- the unbiased estimator ---------------------------------------------------------------


def brute_force_estimator(proxy, evals, n):
    """Average over all n-subsets of the eval reward of the (uniformly tie-broken) best."""
    total, count = 0.0, 0
    for subset in itertools.combinations(range(len(proxy)), n):
        sub = np.array(subset)
        best = proxy[sub].max()
        total += evals[sub][proxy[sub] == best].mean()
        count += 1
    return total / count


@pytest.mark.parametrize("ties", [False, True])
def test_estimator_equals_the_average_over_all_subsets(ties):
    rng = np.random.default_rng(7)
    for big_n in [1, 4, 7, 10]:
        proxy = rng.standard_normal(big_n)
        if ties:
            proxy = np.round(proxy)
        evals = rng.standard_normal(big_n)
        for n in range(1, big_n + 1):
            assert best_of_n_estimator(proxy, evals, n) == pytest.approx(
                brute_force_estimator(proxy, evals, n), abs=1e-12)


def test_estimator_is_unbiased_by_exact_averaging_over_all_samples():
    # Every sequence of N draws from a 3-response reference with tied proxies, weighted by
    # its probability: the estimator's expectation is the exact best-of-n expectation.
    pi_ref = np.array([0.5, 0.2, 0.3])
    proxy = np.array([1.0, 1.0, 0.0])  # responses 0 and 1 tie on the proxy
    gold = np.array([0.3, -1.0, 2.0])
    big_n = 5
    draws = np.array(list(itertools.product(range(3), repeat=big_n)))  # (243, N)
    prob = np.prod(pi_ref[draws], axis=1)
    ns = np.arange(1, big_n + 1)
    estimates = best_of_n_estimator(proxy[draws], gold[draws], ns)  # (K, 243)
    np.testing.assert_allclose(estimates @ prob,
                               best_of_n_expected_reward(pi_ref, proxy, gold, ns), atol=1e-13)


def test_disjoint_groups_estimator_is_unbiased_but_noisier():
    pi_ref = np.array([0.5, 0.2, 0.3])
    proxy = np.array([1.0, 1.0, 0.0])
    gold = np.array([0.3, -1.0, 2.0])
    big_n = 6
    draws = np.array(list(itertools.product(range(3), repeat=big_n)))  # (729, N)
    prob = np.prod(pi_ref[draws], axis=1)
    for n in (1, 2, 3, 6):
        naive = best_of_n_disjoint_estimator(proxy[draws], gold[draws], n)
        smart = best_of_n_estimator(proxy[draws], gold[draws], n)
        exact = best_of_n_expected_reward(pi_ref, proxy, gold, n)
        assert naive @ prob == pytest.approx(exact, abs=1e-13)
        var_naive = ((naive - exact) ** 2) @ prob
        var_smart = ((smart - exact) ** 2) @ prob
        if n == 1:
            np.testing.assert_allclose(naive, smart, atol=1e-13)  # both the sample mean
        else:
            # Rao-Blackwellised: strictly less variance (at n = N only through the ties,
            # which the naive one breaks by draw order and the other one averages)
            assert var_smart < var_naive
    with pytest.raises(ValueError, match="n must be <= 6, got 7"):
        best_of_n_disjoint_estimator(proxy[draws], gold[draws], 7)


def test_estimator_is_vectorised_and_stable_for_large_samples():
    rng = np.random.default_rng(11)
    proxy = rng.standard_normal((3, 200_000))
    gold = proxy + rng.standard_normal((3, 200_000))
    est = best_of_n_estimator(proxy, gold, np.array([1, 16, 1024]))
    assert est.shape == (3, 3) and np.all(np.isfinite(est))
    np.testing.assert_allclose(est[0], gold.mean(-1), atol=1e-12)  # n = 1 is the mean
    # E[max of n standard normals] ~ 1.766 at n = 16; gold = proxy + noise shares it
    assert np.all(np.abs(est[1] - 1.766) < 0.03)
    assert np.all(np.diff(est, axis=0) > 0)


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "4", np.array([1, 0]), np.array([[1, 2]])])
def test_bad_n_raises(n):
    with pytest.raises(ValueError, match="n must"):
        best_of_n_policy(PI_REF, REWARD, n)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="n must"):
        best_of_n_kl_bound(0)
    with pytest.raises(ValueError, match="pi_ref row 0 sums to"):
        best_of_n_policy([[0.5, 0.6]], [[0.0, 1.0]], 2)
    with pytest.raises(ValueError, match="reward must be finite"):
        best_of_n_kl([0.5, 0.5], [0.0, np.nan], 2)
    with pytest.raises(ValueError, match="same shape"):
        best_of_n_win_rate([0.5, 0.5], [0.0, 1.0, 2.0], 2)
    with pytest.raises(ValueError, match=r"n must be <= N = 3"):
        best_of_n_estimator([0.0, 1.0, 2.0], [0.0, 1.0, 2.0], 4)
    with pytest.raises(ValueError, match="eval_samples must be finite"):
        best_of_n_estimator([0.0, 1.0], [0.0, np.inf], 1)
    with pytest.raises(ValueError, match="not reachable"):
        kl_matched_beta(PI_REF[1:], REWARD[1:], 50.0)
    with pytest.raises(ValueError, match="prompt_probs must have shape"):
        best_of_n_sweep(PI_REF, REWARD, [1, 2], prompt_probs=[1.0])


# --- precision at the edges, each against an independent 50-digit reference -------------


def _reference_best_of_n(pi_ref, reward, n):
    """``pi_bon``, ``KL`` and win rate of one row by the definitions, in 50-digit mpmath,
    from the float inputs exactly as given (renormalised there)."""
    import mpmath

    mpmath.mp.dps = 50
    p = [mpmath.mpf(float(v)) for v in pi_ref]
    total = sum(p)
    p = [v / total for v in p]
    values = sorted(set(float(r) for r in reward))
    mass = {v: sum(pv for pv, r in zip(p, reward, strict=True) if r == v) for v in values}
    below = {v: sum(mass[u] for u in values if u < v) for v in values}
    pv = {v: (below[v] + mass[v]) ** n - below[v] ** n for v in values}
    pi_bon = [pv[r] * pi / mass[r] if pi > 0 else mpmath.mpf(0) for pi, r in zip(p, reward,
                                                                                 strict=True)]
    kl = sum(pv[v] * mpmath.log(pv[v] / mass[v]) for v in values if pv[v] > 0)
    win = sum(pv[v] * (below[v] + mass[v] / 2) for v in values)
    return [float(v) for v in pi_bon], float(kl), float(win)


@pytest.mark.parametrize("n", [1, 2, 3, 1000, 10**6, 10**12, 2**53])
@pytest.mark.parametrize("pi_ref, reward", [
    ([1.0 - 1e-20, 1e-20], [0.0, 1.0]),  # a tiny group on top
    ([1e-20, 1.0 - 1e-20], [0.0, 1.0]),  # a tiny group at the bottom
    ([0.5, 1e-25, 1e-18, 0.5], [0.0, 3.0, 2.0, 1.0]),  # two tiny groups above a big one
    ([0.25, 0.25, 0.5], [1.0, 1.0, 0.0]),  # a tie on top
])
def test_tiny_groups_and_huge_n_match_a_50_digit_reference(pi_ref, reward, n):
    want_pi, want_kl, want_win = _reference_best_of_n(pi_ref, reward, n)
    pi_ref, reward = np.array(pi_ref), np.array(reward)
    np.testing.assert_allclose(best_of_n_policy(pi_ref, reward, n), want_pi, rtol=1e-10,
                               atol=0)
    kl = best_of_n_kl(pi_ref, reward, n)
    assert kl == pytest.approx(want_kl, rel=1e-9, abs=1e-30)
    assert best_of_n_win_rate(pi_ref, reward, n) == pytest.approx(want_win, rel=1e-13)


def test_rows_are_renormalised_before_the_powers():
    # a row summing to 1 + 4e-7 passes validation; best-of-n must use pi_ref / sum
    pi_ref = np.array([[0.3, 0.3, 0.4 + 4e-7], [0.2, 0.5 + 4e-7, 0.3]])
    reward = np.array([[0.0, 1.0, 2.0], [2.0, 0.0, 1.0]])
    exact = pi_ref / pi_ref.sum(-1, keepdims=True)
    for n in (1, 7, 10**9):
        got = best_of_n_policy(pi_ref, reward, n)
        np.testing.assert_allclose(got.sum(-1), 1.0, atol=2e-16)
        np.testing.assert_allclose(got, best_of_n_policy(exact, reward, n), rtol=1e-14)
    np.testing.assert_allclose(best_of_n_policy(pi_ref, reward, 1), exact, rtol=1e-15)
    np.testing.assert_allclose(best_of_n_kl(pi_ref, reward, 1), 0.0, atol=1e-15)


def test_sweep_weights_every_statistic_by_prompt_probs():
    rng = np.random.default_rng(11)
    pi_ref = softmax(rng.standard_normal((3, 12)), axis=-1)
    r_hat = rng.standard_normal((3, 12))
    r_star = r_hat + rng.standard_normal((3, 12))
    ns = np.array([1, 4, 32])
    w = np.array([0.7, 0.25, 0.05])
    sweep = best_of_n_sweep(pi_ref, r_hat, ns, prompt_probs=w, eval_rewards={"gold": r_star})
    per_kl = best_of_n_kl(pi_ref, r_hat, ns)
    assert not np.allclose(per_kl @ w, per_kl.mean(-1))  # the weights matter here
    np.testing.assert_allclose(sweep.kl, per_kl @ w, rtol=1e-13)
    np.testing.assert_allclose(sweep.reward, best_of_n_expected_reward(pi_ref, r_hat, r_hat, ns)
                               @ w, rtol=1e-13)
    np.testing.assert_allclose(sweep.win_rate, best_of_n_win_rate(pi_ref, r_hat, ns) @ w,
                               rtol=1e-13)
    np.testing.assert_allclose(sweep.extra["gold"],
                               best_of_n_expected_reward(pi_ref, r_hat, r_star, ns) @ w,
                               rtol=1e-12)


@pytest.mark.parametrize("target", [1e-8, 1e-10])
def test_kl_matched_beta_far_above_1e3(target):
    """Small KL targets need beta of 1e4..1e5, where KL = E_x Var_ref(r) / (2 beta^2)."""
    pi_ref = np.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]])
    reward = np.array([[0.0, 1.0, 2.0], [1.0, -1.0, 0.5]])
    w = np.array([0.3, 0.7])
    beta = kl_matched_beta(pi_ref, reward, target, prompt_probs=w)
    assert beta > 1e3
    kl = reward_kl_frontier(pi_ref, reward, [beta], prompt_probs=w).kl[0]
    assert kl == pytest.approx(target, rel=1e-8)
    var = ((pi_ref * reward**2).sum(-1) - (pi_ref * reward).sum(-1) ** 2) @ w
    assert beta == pytest.approx(np.sqrt(var / (2 * target)), rel=1e-3)


def test_huge_n_is_refused_with_a_value_error_not_overflow():
    for n in (2**53 + 1, 10**400):
        with pytest.raises(ValueError, match="n must be <= "):
            best_of_n_policy([0.5, 0.5], [0.0, 1.0], n)
    for n in (2.0, "3", True):
        with pytest.raises(TypeError, match="n must be an integer"):
            best_of_n_policy([0.5, 0.5], [0.0, 1.0], n)
    with pytest.raises(ValueError, match="pi_ref must not be empty"):
        best_of_n_sweep(np.zeros((0, 3)), np.zeros((0, 3)), [1, 2])
