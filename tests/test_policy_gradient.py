"""Properties of the policy-gradient objectives (chapter, Policy-gradient RLHF)."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rlhf_toy.kl import kl_estimates
from rlhf_toy.policy_gradient import (
    AGGREGATIONS,
    AdaptiveKLController,
    FixedKLController,
    explained_variance,
    gae,
    grpo_advantages,
    kl_loss,
    kl_penalty_rewards,
    policy_gradient_loss,
    ppo_clip_loss,
    reinforce_advantages,
    rloo_advantages,
    score_at_last_token,
    value_loss,
    whiten,
)

H = 1e-6  # central-difference step


def numerical_grad(f, x):
    """Central differences of a scalar function of an array, one entry at a time."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += H
        xm[idx] -= H
        g[idx] = (f(xp) - f(xm)) / (2 * H)
    return g


def right_padded_mask(lengths, T):
    return (np.arange(T)[None, :] < np.asarray(lengths)[:, None]).astype(np.float64)


@st.composite
def token_batch(draw, low=-3.0, high=0.0, allow_empty_rows=True):
    """A ``[B, T]`` batch: a right-padded mask with at least one token, and a seed."""
    B = draw(st.integers(1, 4))
    T = draw(st.integers(1, 6))
    lengths = draw(hnp.arrays(np.int64, B, elements=st.integers(0 if allow_empty_rows else 1, T)))
    assume(lengths.sum() > 0)
    seed = draw(st.integers(0, 2**32 - 1))
    return right_padded_mask(lengths, T), np.random.default_rng(seed)


group_rewards = st.integers(1, 4).flatmap(
    lambda n: st.integers(2, 6).flatmap(
        lambda g: hnp.arrays(np.float64, (n, g), elements=st.floats(-10, 10))
    )
)


def rand_mask(rng, B, T, min_len=1):
    return right_padded_mask(rng.integers(min_len, T + 1, size=B), T)


# --------------------------------------------------------------------------------------
# advantages
# --------------------------------------------------------------------------------------


@given(group_rewards)
def test_group_advantages_sum_to_zero(r):
    for adv in (
        rloo_advantages(r),
        reinforce_advantages(r, baseline="mean"),
        grpo_advantages(r),
        grpo_advantages(r, scale="batch"),
        grpo_advantages(r, scale="none"),
    ):
        assert adv.shape == r.shape
        np.testing.assert_allclose(adv.sum(axis=1), 0.0, atol=1e-9 * (1 + np.abs(adv).max()))


@given(group_rewards)
def test_rloo_identity_and_mean_baseline_relation(r):
    G = r.shape[1]
    centred = r - r.mean(axis=1, keepdims=True)
    explicit = np.array(
        [[r[i, j] - np.delete(r[i], j).mean() for j in range(G)] for i in range(len(r))]
    )
    np.testing.assert_allclose(rloo_advantages(r), explicit, atol=1e-10)
    np.testing.assert_allclose(rloo_advantages(r), G / (G - 1) * centred, atol=1e-10)
    np.testing.assert_allclose(
        reinforce_advantages(r, "mean"), (G - 1) / G * rloo_advantages(r), atol=1e-10
    )


def test_reinforce_without_baseline_and_array_baseline():
    r = np.array([[1.0, 2.0], [3.0, 5.0]])
    np.testing.assert_array_equal(reinforce_advantages(r), r)
    np.testing.assert_array_equal(reinforce_advantages(r, np.array([[1.0], [2.0]])), r - [[1], [2]])


@given(group_rewards, st.floats(-50, 50), st.floats(0.1, 10))
def test_grpo_affine_invariance(r, b, a):
    # the shift is exact for every eps; the scale needs eps = 0
    for scale in ("group", "batch", "none"):
        np.testing.assert_allclose(
            grpo_advantages(r + b, scale=scale), grpo_advantages(r, scale=scale), atol=1e-7
        )
    for scale in ("group", "batch"):
        a_r = grpo_advantages(a * r, scale=scale, eps=0.0)
        np.testing.assert_allclose(a_r, grpo_advantages(r, scale=scale, eps=0.0), atol=1e-7)
    np.testing.assert_allclose(grpo_advantages(a * r, scale="none"), a * grpo_advantages(r, "none"))


def test_grpo_uses_sample_std():
    # [1, 0]: centred +-0.5; sample std sqrt(1/2) gives +-1/sqrt(2), population std 1/2 gives +-1
    adv = grpo_advantages([[1.0, 0.0]], eps=0.0)
    np.testing.assert_allclose(adv, [[2**-0.5, -(2**-0.5)]], rtol=1e-12)
    r = np.random.default_rng(0).normal(size=(3, 5))
    centred = r - r.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(
        grpo_advantages(r), centred / (r.std(axis=1, ddof=1, keepdims=True) + 1e-4), rtol=1e-12
    )
    np.testing.assert_allclose(
        grpo_advantages(r, scale="batch", eps=1e-6), centred / (r.std(ddof=1) + 1e-6), rtol=1e-12
    )
    np.testing.assert_allclose(grpo_advantages(r, scale="none"), centred, rtol=1e-12)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_grpo_zero_spread_rows_are_exactly_zero(scale):
    # 0.1 * 3 / 3 != 0.1 in floating point: the zeros must be set, not computed
    r = np.array([[0.1, 0.1, 0.1], [0.7, 0.7, 0.7], [1.0, 0.0, 0.0]])
    adv = grpo_advantages(r, scale=scale, eps=0.0)
    assert np.all(np.isfinite(adv))
    assert np.all(adv[:2] == 0.0)
    assert np.all(adv[2] != 0.0)
    assert np.all(grpo_advantages(np.full((2, 4), 3.3), scale=scale, eps=0.0) == 0.0)


# --------------------------------------------------------------------------------------
# whiten and GAE
# --------------------------------------------------------------------------------------


@given(token_batch())
def test_whiten_mean_zero_std_one_on_mask(batch):
    mask, rng = batch
    x = rng.normal(3.0, 2.0, size=mask.shape)
    on = mask > 0
    assume(on.sum() >= 2)
    w = whiten(x, mask)
    np.testing.assert_allclose(w[on].mean(), 0.0, atol=1e-10)
    np.testing.assert_allclose(w[on].std(), 1.0, rtol=1e-6)
    assert np.all(w[~on] == 0.0)
    kept = whiten(x, mask, shift_mean=False)
    np.testing.assert_allclose(kept[on].mean(), x[on].mean(), atol=1e-10)
    np.testing.assert_allclose(kept[on].std(), 1.0, rtol=1e-6)
    # values off the mask change nothing
    x2 = np.where(on, x, rng.normal(size=x.shape) * 100)
    np.testing.assert_array_equal(whiten(x2, mask), w)


def test_whiten_population_std_and_no_mask():
    x = np.array([1.0, 2.0, 3.0, 6.0])
    np.testing.assert_allclose(whiten(x), (x - x.mean()) / (x.std() + 1e-8), rtol=1e-14)
    np.testing.assert_array_equal(whiten(np.array([[5.0, 5.0]])), [[0.0, 0.0]])


def gae_double_sum(rewards, values, mask, gamma, lam):
    """``A_t = sum_l (gamma lam)^l delta_{t+l}`` written out, one row and one t at a time."""
    B, T = rewards.shape
    adv = np.zeros((B, T))
    for b in range(B):
        pos = np.flatnonzero(mask[b])
        for i, t in enumerate(pos):
            total = 0.0
            for l_, u in enumerate(pos[i:]):
                v_next = values[b, u + 1] if u + 1 in pos else 0.0
                delta = rewards[b, u] + gamma * v_next - values[b, u]
                total += (gamma * lam) ** l_ * delta
            adv[b, t] = total
    return adv


@given(token_batch(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_gae_equals_double_sum(batch, gamma, lam):
    mask, rng = batch
    rewards = rng.normal(size=mask.shape)
    values = rng.normal(size=mask.shape)
    adv, ret = gae(rewards, values, mask, gamma=gamma, lam=lam)
    expected = gae_double_sum(rewards, values, mask, gamma, lam)
    np.testing.assert_allclose(adv, expected, atol=1e-12)
    np.testing.assert_allclose(ret, (expected + values) * mask, atol=1e-12)
    assert np.all(adv[mask == 0] == 0.0) and np.all(ret[mask == 0] == 0.0)
    # values and rewards off the mask change nothing
    junk = rng.normal(size=mask.shape) * 1e3
    adv2, ret2 = gae(
        np.where(mask > 0, rewards, junk), np.where(mask > 0, values, -junk), mask, gamma, lam
    )
    np.testing.assert_array_equal(adv2, adv)
    np.testing.assert_array_equal(ret2, ret)


@given(token_batch())
def test_gae_lambda_one_gives_future_reward_sums(batch):
    mask, rng = batch
    rewards = rng.normal(size=mask.shape) * mask
    values = rng.normal(size=mask.shape)
    _, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    future = np.cumsum(rewards[:, ::-1], axis=1)[:, ::-1] * mask
    np.testing.assert_allclose(ret, future, atol=1e-12)
    adv0, _ = gae(rewards, values, mask, gamma=0.9, lam=0.0)  # one-step TD error
    v_next = np.concatenate([values[:, 1:] * mask[:, 1:], np.zeros((len(mask), 1))], axis=1)
    np.testing.assert_allclose(adv0, (rewards + 0.9 * v_next - values) * mask, atol=1e-12)


def test_gae_prompt_positions_before_the_response():
    rng = np.random.default_rng(1)
    r, v = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    mask = right_padded_mask([3, 2], 4)
    adv, ret = gae(r, v, mask)
    shifted = np.concatenate([np.zeros((2, 2)), mask], axis=1)  # two prompt tokens first
    pad = rng.normal(size=(2, 2))
    adv_s, ret_s = gae(np.hstack([pad, r]), np.hstack([pad, v]), shifted)
    np.testing.assert_allclose(adv_s[:, 2:], adv, atol=1e-14)
    np.testing.assert_allclose(ret_s[:, 2:], ret, atol=1e-14)
    assert np.all(adv_s[:, :2] == 0.0)


def test_score_at_last_token():
    mask = right_padded_mask([3, 1, 5], 5)
    scores = np.array([2.0, -1.0, 0.5])
    out = score_at_last_token(scores, mask)
    np.testing.assert_array_equal(out.sum(axis=1), scores)
    assert out[0, 2] == 2.0 and out[1, 0] == -1.0 and out[2, 4] == 0.5
    assert np.count_nonzero(out) == 3
    # with per-token KL rewards, gamma = lam = 1: the return at t = 0 is score + summed KL reward
    rng = np.random.default_rng(7)
    kl_r = kl_penalty_rewards(rng.normal(size=mask.shape), rng.normal(size=mask.shape), mask, 0.1)
    _, ret = gae(out + kl_r, rng.normal(size=mask.shape), mask, gamma=1.0, lam=1.0)
    np.testing.assert_allclose(ret[:, 0], scores + kl_r.sum(axis=1), atol=1e-12)
    with pytest.raises(ValueError, match="mask row 1 has no response token"):
        score_at_last_token(scores, right_padded_mask([3, 0, 5], 5))
    with pytest.raises(ValueError, match="scores must have shape"):
        score_at_last_token(scores[:2], mask)


def expected_sampled_gradient(pi, reward, G, advantages_fn):
    """Exact E over all G-tuples y ~ pi of the logit gradient of policy_gradient_loss."""
    Y = len(pi)
    jac = np.eye(Y) - pi[None, :]  # d log pi(y) / d logits, row y
    total = np.zeros(Y)
    for ys in np.ndindex(*(Y,) * G):
        ys = np.array(ys)
        adv = advantages_fn(reward[ys][None, :])[0]
        _, dlogp = policy_gradient_loss(np.log(pi[ys])[:, None], adv, np.ones((G, 1)))
        total += np.prod(pi[ys]) * (dlogp[:, 0] @ jac[ys])
    return total  # token_mean: the mean over the G samples, an estimate of -E[A grad log pi]


def test_rloo_unbiased_mean_baseline_scaled_grpo_biased():
    """Exact enumeration on a one-token bandit: E[sampled gradient] vs -grad E_pi[r]."""
    pi = np.array([0.5, 0.3, 0.2])
    reward = np.array([1.0, 0.0, 3.0])
    true = -pi * (reward - pi @ reward)  # gradient of the loss -E_pi[r] wrt the logits
    G = 3
    np.testing.assert_allclose(
        expected_sampled_gradient(pi, reward, G, rloo_advantages), true, atol=1e-14
    )
    mean_b = expected_sampled_gradient(pi, reward, G, lambda r: reinforce_advantages(r, "mean"))
    np.testing.assert_allclose(mean_b, (G - 1) / G * true, atol=1e-14)
    grpo = expected_sampled_gradient(pi, reward, G, grpo_advantages)
    assert np.abs(grpo / true - (grpo / true)[0]).max() > 1e-3  # not a multiple of the truth


# --------------------------------------------------------------------------------------
# losses: gradients against central differences
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("agg", AGGREGATIONS)
@pytest.mark.parametrize("per_sequence", [False, True])
def test_policy_gradient_loss_gradient(agg, per_sequence):
    rng = np.random.default_rng(2)
    B, T = 3, 5
    mask = right_padded_mask([5, 2, 0], T)
    logp = rng.normal(-1.0, 0.5, size=(B, T))
    adv = rng.normal(size=B if per_sequence else (B, T))
    loss, dlogp = policy_gradient_loss(logp, adv, mask, agg=agg, max_len=7)
    fd = numerical_grad(lambda x: policy_gradient_loss(x, adv, mask, agg=agg, max_len=7)[0], logp)
    np.testing.assert_allclose(dlogp, fd, atol=1e-8)
    a = np.broadcast_to(adv[:, None], (B, T)) if per_sequence else adv
    per_token = -a * logp * mask
    expected = {
        "token_mean": per_token.sum() / mask.sum(),
        "seq_mean": np.mean(per_token.sum(1) / np.maximum(mask.sum(1), 1)),
        "constant": per_token.sum() / (B * 7),
    }[agg]
    np.testing.assert_allclose(loss, expected, rtol=1e-12)


@pytest.mark.parametrize("agg", AGGREGATIONS)
@given(batch=token_batch(), eps_high=st.sampled_from([None, 0.28]))
def test_ppo_clip_loss_gradient(agg, batch, eps_high):
    mask, rng = batch
    logp = rng.normal(-1.0, 0.5, size=mask.shape)
    logp_old = logp + rng.normal(0.0, 0.3, size=mask.shape)
    adv = rng.normal(size=mask.shape)
    rho = np.exp(logp - logp_old)
    high = 0.2 if eps_high is None else eps_high
    assume(np.all(np.abs(rho - 0.8) > 1e-4) and np.all(np.abs(rho - (1 + high)) > 1e-4))

    def f(x):
        return ppo_clip_loss(x, logp_old, adv, mask, clip_eps_high=eps_high, agg=agg)[0]

    loss, dlogp, _ = ppo_clip_loss(logp, logp_old, adv, mask, clip_eps_high=eps_high, agg=agg)
    np.testing.assert_allclose(dlogp, numerical_grad(f, logp), atol=1e-7)
    assert loss == f(logp)


@given(token_batch(), st.sampled_from([None, 0.28]))
def test_ppo_gradient_zero_exactly_where_clip_active(batch, eps_high):
    mask, rng = batch
    logp = rng.normal(-1.0, 0.5, size=mask.shape)
    logp_old = logp + rng.normal(0.0, 0.5, size=mask.shape)
    adv = rng.normal(size=mask.shape)
    _, dlogp, stats = ppo_clip_loss(logp, logp_old, adv, mask, clip_eps_high=eps_high)
    rho = np.exp(logp - logp_old)
    high = 0.2 if eps_high is None else eps_high
    active = ((adv > 0) & (rho > 1 + high)) | ((adv < 0) & (rho < 0.8))
    on = mask > 0
    assert np.all(dlogp[active & on] == 0.0)
    assert np.all(dlogp[~active & on & (adv != 0)] != 0.0)
    assert np.all(dlogp[~on] == 0.0)
    np.testing.assert_allclose(stats["clipfrac"], active[on].mean(), rtol=1e-12)
    np.testing.assert_allclose(
        stats["approx_kl"], 0.5 * ((logp - logp_old)[on] ** 2).mean(), rtol=1e-12
    )
    np.testing.assert_allclose(stats["ratio_mean"], rho[on].mean(), rtol=1e-12)


@pytest.mark.parametrize("agg", AGGREGATIONS)
@given(batch=token_batch(), per_sequence=st.booleans())
def test_ppo_gradient_at_ratio_one_equals_policy_gradient(agg, batch, per_sequence):
    mask, rng = batch
    B, T = mask.shape
    logp = rng.normal(-1.0, 0.5, size=(B, T))
    adv = rng.normal(size=B if per_sequence else (B, T))
    loss, dlogp, stats = ppo_clip_loss(logp, logp, adv, mask, agg=agg)
    _, dpg = policy_gradient_loss(logp, adv, mask, agg=agg)
    np.testing.assert_array_equal(dlogp, dpg)
    assert stats["clipfrac"] == 0.0 and stats["approx_kl"] == 0.0
    a = np.broadcast_to(np.asarray(adv).reshape(B, -1), (B, T))
    np.testing.assert_allclose(loss, policy_gradient_loss(np.ones((B, T)), a, mask, agg)[0])


def test_ppo_asymmetric_clip():
    logp_old = np.zeros((1, 4))
    logp = np.log([[1.25, 1.25, 0.75, 0.75]])
    adv = np.array([[1.0, -1.0, 1.0, -1.0]])
    mask = np.ones((1, 4))
    _, d_sym, s_sym = ppo_clip_loss(logp, logp_old, adv, mask, clip_eps=0.2)
    _, d_high, s_high = ppo_clip_loss(logp, logp_old, adv, mask, clip_eps=0.2, clip_eps_high=0.28)
    assert list(d_sym[0] == 0) == [True, False, False, True]
    assert list(d_high[0] == 0) == [False, False, False, True]
    assert s_sym["clipfrac"] == 0.5 and s_high["clipfrac"] == 0.25


@pytest.mark.parametrize("agg", AGGREGATIONS)
@given(batch=token_batch(), clip_range=st.sampled_from([None, 0.2]))
def test_value_loss_gradient(agg, batch, clip_range):
    mask, rng = batch
    values = rng.normal(size=mask.shape)
    values_old = values + rng.normal(0.0, 0.3, size=mask.shape)
    returns = rng.normal(size=mask.shape)
    if clip_range is not None:
        d = np.abs(values - values_old)
        v_clip = values_old + np.clip(values - values_old, -0.2, 0.2)
        gap = np.abs((values - returns) ** 2 - (v_clip - returns) ** 2)
        assume(np.all(np.abs(d - 0.2) > 1e-4) and np.all((gap > 1e-4) | (d < 0.2)))

    def f(x):
        return value_loss(x, values_old, returns, mask, clip_range=clip_range, agg=agg)[0]

    loss, dvalues, stats = value_loss(values, values_old, returns, mask, clip_range, agg)
    np.testing.assert_allclose(dvalues, numerical_grad(f, values), atol=1e-7)
    on = mask > 0
    if clip_range is None:
        assert stats["vf_clipfrac"] == 0.0
        if agg == "token_mean":
            np.testing.assert_allclose(loss, 0.5 * ((values - returns)[on] ** 2).mean())
    else:
        v_clip = values_old + np.clip(values - values_old, -0.2, 0.2)
        wins = (v_clip - returns) ** 2 > (values - returns) ** 2
        np.testing.assert_allclose(stats["vf_clipfrac"], wins[on].mean(), rtol=1e-12)
        assert np.all(dvalues[wins] == 0.0)


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_kl_loss_gradient_and_value(estimator, agg):
    rng = np.random.default_rng(3)
    mask = right_padded_mask([4, 1, 3], 4)
    logp = rng.normal(-1.5, 0.7, size=mask.shape)
    logp_ref = rng.normal(-1.5, 0.7, size=mask.shape)
    loss, dlogp = kl_loss(logp, logp_ref, mask, estimator, agg)
    fd = numerical_grad(lambda x: kl_loss(x, logp_ref, mask, estimator, agg)[0], logp)
    np.testing.assert_allclose(dlogp, fd, atol=1e-8)
    k = kl_estimates(logp, logp_ref)[estimator] * mask
    if agg == "token_mean":
        np.testing.assert_allclose(loss, k.sum() / mask.sum(), rtol=1e-12)


def test_kl_loss_expected_gradients_follow_the_stated_kls():
    """On a one-token softmax policy, E_{y~pi}[dk/dlogp(y) grad_z log pi(y)] in closed form."""
    rng = np.random.default_rng(4)
    Y = 6
    z, z_ref = rng.normal(size=Y), rng.normal(size=Y)
    pi, pi_ref = np.exp(z) / np.exp(z).sum(), np.exp(z_ref) / np.exp(z_ref).sum()
    logp = np.log(pi)[:, None]  # every response once, as a [Y, 1] batch
    logp_ref = np.log(pi_ref)[:, None]
    mask = np.ones((Y, 1))
    jac = np.eye(Y) - pi[None, :]  # d log pi(y) / dz, row y
    reverse = pi * (np.log(pi / pi_ref) - np.sum(pi * np.log(pi / pi_ref)))
    expected = {"k1": np.zeros(Y), "k2": reverse, "k3": pi - pi_ref}
    for est, target in expected.items():
        _, dlogp = kl_loss(logp, logp_ref, mask, est)
        dk = dlogp[:, 0] * Y  # token_mean weights are 1/Y
        np.testing.assert_allclose((pi * dk) @ jac, target, atol=1e-12)


@given(token_batch(), st.floats(0.0, 2.0))
def test_kl_penalty_rewards(batch, beta):
    mask, rng = batch
    logp = rng.normal(-1.0, 0.5, size=mask.shape)
    logp_ref = rng.normal(-1.0, 0.5, size=mask.shape)
    r1 = kl_penalty_rewards(logp, logp_ref, mask, beta)
    np.testing.assert_allclose(r1, -beta * (logp - logp_ref) * mask, atol=1e-14)
    for est in ("k2", "k3"):
        rk = kl_penalty_rewards(logp, logp_ref, mask, beta, estimator=est)
        np.testing.assert_allclose(rk, -beta * kl_estimates(logp, logp_ref)[est] * mask)
        assert np.all(rk <= 0.0)


# --------------------------------------------------------------------------------------
# masks and aggregation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_values_off_the_mask_change_nothing(agg):
    rng = np.random.default_rng(5)
    B, T = 4, 6
    mask = right_padded_mask([6, 3, 1, 4], T)
    off = mask == 0
    arrays = [rng.normal(-1.0, 0.5, size=(B, T)) for _ in range(3)]
    junk = [np.where(off, rng.normal(size=(B, T)) * 50, a) for a in arrays]
    calls = {
        "pg": lambda a, b, c: policy_gradient_loss(a, b, mask, agg),
        "ppo": lambda a, b, c: ppo_clip_loss(a, b, c, mask, agg=agg),
        "value": lambda a, b, c: value_loss(a, b, c, mask, agg=agg),
        "kl": lambda a, b, c: kl_loss(a, b, mask, agg=agg),
    }
    for name, call in calls.items():
        clean, dirty = call(*arrays), call(*junk)
        assert clean[0] == dirty[0], name
        np.testing.assert_array_equal(clean[1], dirty[1])
        assert np.all(clean[1][off] == 0.0), name
        if len(clean) == 3:
            assert clean[2] == dirty[2], name
    assert explained_variance(arrays[0], arrays[1], mask) == explained_variance(
        junk[0], junk[1], mask
    )
    np.testing.assert_array_equal(
        kl_penalty_rewards(arrays[0], arrays[1], mask, 0.1),
        kl_penalty_rewards(junk[0], junk[1], mask, 0.1),
    )


def test_seq_mean_and_constant_aggregation():
    # two rows: one long, one short; seq_mean weights the rows equally, token_mean the tokens
    mask = right_padded_mask([4, 1], 4)
    logp = np.zeros((2, 4))
    adv = np.array([1.0, 1.0])
    _, d_tok = policy_gradient_loss(logp, adv, mask, "token_mean")
    _, d_seq = policy_gradient_loss(logp, adv, mask, "seq_mean")
    _, d_con = policy_gradient_loss(logp, adv, mask, "constant", max_len=8)
    np.testing.assert_allclose(d_tok[mask > 0], -1 / 5)
    np.testing.assert_allclose(d_seq[0, :4], -1 / 8)
    np.testing.assert_allclose(d_seq[1, 0], -1 / 2)
    np.testing.assert_allclose(d_con[mask > 0], -1 / 16)


# --------------------------------------------------------------------------------------
# explained variance and KL controllers
# --------------------------------------------------------------------------------------


def test_explained_variance():
    rng = np.random.default_rng(6)
    ret = rng.normal(size=(3, 5))
    assert explained_variance(ret, ret) == 1.0
    np.testing.assert_allclose(explained_variance(np.full_like(ret, ret.mean()), ret), 0.0)
    v = ret + rng.normal(size=ret.shape)
    np.testing.assert_allclose(explained_variance(v, ret), 1 - np.var(ret - v) / np.var(ret))
    assert explained_variance(v, np.ones_like(v)) == 0.0  # Var(R) = 0: defined, not NaN


@given(st.floats(0.01, 1.0), st.floats(0.1, 10.0), st.floats(0.0, 50.0), st.integers(0, 10_000))
def test_adaptive_kl_update_formula(beta0, target, kl, n_steps):
    ctl = AdaptiveKLController(beta0, target, horizon=10_000)
    new = ctl.update(kl, n_steps)
    e = np.clip(kl / target - 1, -0.2, 0.2)
    np.testing.assert_allclose(new, beta0 * (1 + e * n_steps / 10_000), rtol=1e-14)
    assert ctl.value == new


def test_adaptive_kl_error_is_clipped():
    for kl, e in [(6.0, 0.0), (6.6, 0.1), (7.2, 0.2), (100.0, 0.2), (4.8, -0.2), (0.0, -0.2)]:
        ctl = AdaptiveKLController(0.1, target=6.0, horizon=1000)
        np.testing.assert_allclose(ctl.update(kl, 100), 0.1 * (1 + e * 0.1), rtol=1e-14)
    ctl = AdaptiveKLController(0.1, 6.0, 1000)
    for _ in range(3):
        ctl.update(20.0, 100)
    np.testing.assert_allclose(ctl.value, 0.1 * 1.02**3, rtol=1e-14)
    with pytest.raises(ValueError, match="n_steps"):
        AdaptiveKLController(0.1, 6.0, 10).update(0.0, 100)


def test_fixed_kl_controller():
    ctl = FixedKLController(0.05)
    assert ctl.update(1e3, 10) == 0.05 and ctl.value == 0.05
    with pytest.raises(ValueError, match="current_kl"):
        ctl.update(np.nan, 1)


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------

M = np.ones((2, 3))
LP = np.full((2, 3), -1.0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ppo_clip_loss(LP, LP, LP, np.ones((2, 4))), "mask must have shape"),
        (lambda: ppo_clip_loss(LP, LP, LP, M * 0.5), "mask must contain only 0 and 1"),
        (lambda: ppo_clip_loss(LP, LP, LP, -M), "mask must contain only 0 and 1"),
        (lambda: ppo_clip_loss(LP, LP, LP, M * np.nan), "mask must contain only 0 and 1"),
        (lambda: ppo_clip_loss(LP, LP, LP, M * 0), "mask has no nonzero entry"),
        (lambda: ppo_clip_loss(LP * np.nan, LP, LP, M), "logp must be finite"),
        (lambda: ppo_clip_loss(LP, LP * np.inf, LP, M), "logp_old must be finite"),
        (lambda: ppo_clip_loss(LP, LP, LP * np.inf, M), "advantages must be finite"),
        (lambda: ppo_clip_loss(LP, LP, np.ones(3), M), "advantages must have shape"),
        (lambda: ppo_clip_loss(LP, LP, LP, M, clip_eps=-0.1), "clip_eps must be > 0"),
        (lambda: ppo_clip_loss(LP, LP, LP, M, agg="sum"), "agg must be one of 'token_mean'"),
        (lambda: ppo_clip_loss(LP, LP, LP, M, agg="constant", max_len=0), "max_len"),
        (lambda: ppo_clip_loss(LP[0], LP[0], LP[0], M[0]), r"logp must have shape \[B, T\]"),
        (lambda: policy_gradient_loss(LP, LP, M.T), "mask must have shape"),
        (lambda: value_loss(LP, LP, LP[:, :2], M), "returns must have shape"),
        (lambda: value_loss(LP, LP, LP, M, clip_range=0.0), "clip_range"),
        (lambda: kl_loss(LP, LP, M, estimator="k4"), "estimator must be one of 'k1', 'k2'"),
        (lambda: kl_penalty_rewards(LP, LP, M, beta=-1.0), "beta must be >= 0"),
        (lambda: gae(LP, LP, M, gamma=1.5), "gamma must be in"),
        (lambda: gae(LP, LP, [[1, 0, 1], [1, 1, 1]]), "mask row 0 has a gap"),
        (lambda: gae(LP, LP, M * 0), "mask has no nonzero entry"),
        (lambda: rloo_advantages([[1.0], [2.0]]), "G >= 2"),
        (lambda: rloo_advantages([[1.0, np.nan]]), "rewards must be finite"),
        (lambda: grpo_advantages([[1.0, np.inf]]), "rewards must be finite"),
        (lambda: grpo_advantages([[1.0, 2.0]], scale="std"), "scale must be one of 'group'"),
        (lambda: grpo_advantages([[1.0, 2.0]], eps=-1.0), "eps must be >= 0"),
        (lambda: reinforce_advantages([1.0, 2.0], baseline="median"), "baseline must be one"),
        (lambda: whiten([1.0, 2.0], mask=[1, 1, 1]), "mask must have shape"),
        (lambda: explained_variance([1.0, 2.0], [1.0]), "same shape"),
        (lambda: AdaptiveKLController(0.0, 6.0, 10_000), "init_kl_coef"),
        (lambda: AdaptiveKLController(0.1, 6.0, 10_000).update(1.0, -1), "n_steps"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_ppo_clip_loss_value_at_a_clipped_token_is_the_clipped_ratio_times_the_advantage():
    """One token per case: rho = e^{0.5} > 1 + eps_high with A > 0 contributes
    -(1 + eps_high) A; rho = e^{-0.5} < 1 - eps_low with A < 0 contributes -(1 - eps_low) A."""
    lp_old = np.zeros((1, 1))
    mask = np.ones((1, 1))
    loss, grad, stats = ppo_clip_loss(np.full((1, 1), 0.5), lp_old, np.array([2.0]), mask,
                                      clip_eps=0.2, clip_eps_high=0.28)
    assert loss == pytest.approx(-(1.28) * 2.0, rel=1e-15)
    assert grad[0, 0] == 0.0 and stats["clipfrac"] == 1.0
    loss, grad, _ = ppo_clip_loss(np.full((1, 1), -0.5), lp_old, np.array([-3.0]), mask,
                                  clip_eps=0.2, clip_eps_high=0.28)
    assert loss == pytest.approx(-(0.8) * -3.0, rel=1e-15)
    assert grad[0, 0] == 0.0


def test_whiten_and_grpo_advantages_are_scale_free_up_to_float64_max():
    """Statistics on x / 2**k are those of x: no overflow at 1e300 scale (where whiten's
    eps of 1e-8 is negligible against the std)."""
    x = np.array([[0.5, -1.0, 2.0, 0.3], [1.5, 0.2, -0.7, 0.1]])
    big = x * 2.0**1000
    np.testing.assert_allclose(whiten(big), (x - x.mean()) / x.std(), rtol=1e-12)
    np.testing.assert_allclose(grpo_advantages(big, eps=0.0), grpo_advantages(x, eps=0.0),
                               rtol=1e-12)
    assert np.all(np.isfinite(whiten(np.array([1e308, -1e308, 0.0]))))
