"""The bandit world: its factory, its proxies, and its validation."""

import numpy as np
import pytest

from rlhf_toy.bandit import PROXIES, BanditEnv, make_bandit


@pytest.mark.parametrize("proxy", PROXIES)
def test_factory_shapes_and_determinism(proxy):
    env = make_bandit(3, 7, proxy=proxy, n_comparisons=500, rng=1)
    again = make_bandit(3, 7, proxy=proxy, n_comparisons=500, rng=1)
    assert env.pi_ref.shape == env.r_star.shape == env.r_hat.shape == (3, 7)
    np.testing.assert_allclose(env.pi_ref.sum(-1), 1.0)
    assert env.proxy == proxy
    for name in ("pi_ref", "r_star", "r_hat", "prompt_probs"):
        assert np.array_equal(getattr(env, name), getattr(again, name))


def test_proxies_share_the_world_and_differ_as_described():
    envs = {p: make_bandit(4, 50, proxy=p, noise_scale=0.5, n_comparisons=4000, rng=3)
            for p in PROXIES}
    for env in envs.values():  # same pi_ref and gold reward whatever the proxy
        assert np.array_equal(env.pi_ref, envs["exact"].pi_ref)
        assert np.array_equal(env.r_star, envs["exact"].r_star)
    assert np.array_equal(envs["exact"].r_hat, envs["exact"].r_star)
    noise = envs["gaussian"].r_hat - envs["gaussian"].r_star
    assert 0.4 < noise.std() < 0.6
    t_noise = envs["student_t"].r_hat - envs["student_t"].r_star
    assert np.abs(t_noise).max() > np.abs(noise).max()  # heavy tails: larger extremes
    learned = envs["learned"].r_hat
    np.testing.assert_allclose(learned.mean(-1), 0.0, atol=1e-8)  # rows centred
    centred_gold = envs["learned"].r_star - envs["learned"].r_star.mean(-1, keepdims=True)
    assert np.corrcoef(learned.ravel(), centred_gold.ravel())[0, 1] > 0.5


def test_expected_reward_is_the_exact_sum():
    env = make_bandit(3, 5, rng=0)
    pi = np.full((3, 5), 0.2)
    want = float(np.mean((pi * env.r_star).sum(-1)))
    assert env.expected(pi, "gold") == pytest.approx(want, abs=1e-15)
    assert env.expected(pi, "proxy") == pytest.approx(np.mean((pi * env.r_hat).sum(-1)))
    with pytest.raises(ValueError, match="reward must be one of"):
        env.expected(pi, "golden")


def test_env_tables_are_read_only():
    env = make_bandit(2, 3, rng=0)
    with pytest.raises(ValueError):
        env.r_star[0, 0] = 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"proxy": "oracle"}, "proxy must be one of"),
        ({"n_prompts": 0}, "n_prompts"),
        ({"n_responses": 1}, "n_responses"),
        ({"noise_scale": -1.0}, "noise_scale"),
        ({"ref_temperature": float("nan")}, "ref_temperature"),
        ({"proxy": "learned", "n_comparisons": 0}, "n_comparisons"),
    ],
)
def test_factory_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_bandit(**kwargs)


def test_env_validates_tables():
    pi = np.full((2, 3), 1 / 3)
    r = np.zeros((2, 3))
    with pytest.raises(ValueError, match="pi_ref row 1 sums to"):
        BanditEnv(np.array([[0.5, 0.5, 0.0], [0.5, 0.1, 0.1]]), r, r, np.full(2, 0.5))
    with pytest.raises(ValueError, match="r_hat must be finite"):
        BanditEnv(pi, r, np.where(r == 0, np.nan, r), np.full(2, 0.5))
    with pytest.raises(ValueError, match="same shape"):
        BanditEnv(pi, r[:, :2], r, np.full(2, 0.5))
    with pytest.raises(ValueError, match="prompt_probs"):
        BanditEnv(pi, r, r, np.full(3, 1 / 3))


def test_make_bandit_is_exact_at_extreme_temperatures_and_names_the_caller_argument():
    cold = make_bandit(3, 4, proxy="exact", ref_temperature=1e-310, rng=0)
    assert np.all(np.isfinite(cold.pi_ref)) and np.all(cold.pi_ref.max(-1) == 1.0)
    g_argmax = make_bandit(3, 4, proxy="exact", ref_temperature=1.0, rng=0).pi_ref.argmax(-1)
    np.testing.assert_array_equal(cold.pi_ref.argmax(-1), g_argmax)  # the one-hot limit
    hot = make_bandit(3, 4, proxy="exact", ref_temperature=1e308, rng=0)
    np.testing.assert_allclose(hot.pi_ref, 0.25, rtol=1e-15)
    with pytest.raises(ValueError, match="noise_scale=1e\\+308"):
        make_bandit(2, 3, noise_scale=1e308, rng=0)
    with pytest.raises(ValueError, match="n_prompts \\* n_responses must be <= 10000000"):
        make_bandit(10**5, 10**5)
    with pytest.raises(ValueError, match="n_comparisons must be <= 10000000"):
        make_bandit(2, 3, proxy="learned", n_comparisons=10**9)


def test_env_is_frozen_and_knows_its_sizes():
    import dataclasses

    env = make_bandit(3, 7, rng=0)
    assert (env.n_prompts, env.n_responses) == (3, 7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        env.proxy = "exact"


def test_check_env_passes_an_env_through_and_refuses_anything_else():
    from rlhf_toy.bandit.env import check_env

    env = make_bandit(2, 3, rng=0)
    assert check_env(env) is env
    with pytest.raises(TypeError, match="env must be a BanditEnv, got dict"):
        check_env({"pi_ref": env.pi_ref})


def test_factory_defaults_are_the_documented_signature():
    """Omitted arguments mean noise_scale=0.5, df=2, ref_temperature=1 (and the proxy's
    tables follow from them bit for bit)."""
    for proxy in ("gaussian", "student_t"):
        default = make_bandit(3, 9, proxy=proxy, rng=4)
        explicit = make_bandit(3, 9, proxy=proxy, noise_scale=0.5, df=2.0, ref_temperature=1.0,
                               rng=4)
        for name in ("pi_ref", "r_star", "r_hat"):
            np.testing.assert_array_equal(getattr(default, name), getattr(explicit, name))
    # and they are not the same world under other values
    assert not np.array_equal(make_bandit(3, 9, rng=4).r_hat,
                              make_bandit(3, 9, noise_scale=0.25, rng=4).r_hat)
    assert not np.array_equal(make_bandit(3, 9, rng=4).pi_ref,
                              make_bandit(3, 9, ref_temperature=2.0, rng=4).pi_ref)
    assert not np.array_equal(make_bandit(3, 9, proxy="student_t", rng=4).r_hat,
                              make_bandit(3, 9, proxy="student_t", df=1.0, rng=4).r_hat)


def test_reference_logits_scale_as_one_over_the_temperature():
    """``pi_ref = softmax(g / T)``: the log-probability gaps of one world at T and 2T are in
    the ratio 2 (same seed, same logits ``g``)."""
    cold = make_bandit(2, 6, ref_temperature=0.5, rng=1).pi_ref
    warm = make_bandit(2, 6, ref_temperature=1.0, rng=1).pi_ref
    gap = lambda p: np.log(p) - np.log(p[:, :1])  # noqa: E731
    np.testing.assert_allclose(gap(cold), 2 * gap(warm), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("proxy", "law"), [("gaussian", "norm"), ("student_t", "t")])
def test_proxy_noise_follows_the_documented_law(proxy, law):
    """``(r_hat - r_star) / sigma`` is N(0, 1) or t(df): a Kolmogorov-Smirnov test on 20,000
    draws (df = 3, where 1/t, a t with a reflected sign or a wrong scale are all rejected)."""
    from scipy import stats

    env = make_bandit(20, 1000, proxy=proxy, noise_scale=0.7, df=3.0, rng=5)
    z = ((env.r_hat - env.r_star) / 0.7).ravel()
    dist = stats.norm() if law == "norm" else stats.t(3.0)
    assert stats.kstest(z, dist.cdf).pvalue > 1e-3
    assert stats.kstest(z, stats.norm(scale=1.2).cdf).pvalue < 1e-6
