"""Sampled RL on the exact bandit: where each method converges, measured exactly.

KL in the reward (REINFORCE, RLOO, PPO with k1) drives ``KL(pi || pi*_beta)`` towards
zero, closer with more samples per prompt; GRPO's k3 in the loss converges to the
forward-KL-regularised fixpoint instead, bounded away from ``pi*``.
"""

import numpy as np
import pytest

from rlhf_toy.bandit.env import make_bandit
from rlhf_toy.bandit.experiments.modes import forward_kl_regularised_policy
from rlhf_toy.bandit.rl import RLResult, TabularCritic, method_name, table_reward, train_rl
from rlhf_toy.kl import kl_divergence
from rlhf_toy.optimal import optimal_policy
from rlhf_toy.policy_gradient import AdaptiveKLController
from rlhf_toy.rl import (
    GRPOConfig,
    OnlineDPOConfig,
    PPOConfig,
    ReinforceConfig,
    RLOOConfig,
    dr_grpo_config,
)

BETA = 0.5
SEEDS = (0, 1, 2)
STEPS = 300


@pytest.fixture(scope="module")
def env():
    return make_bandit(4, 6, proxy="gaussian", rng=1)


def final_distance(env, config, seeds=SEEDS, steps=STEPS, targets=None, key=None):
    """Mean over seeds of the distance over the last 50 steps, and the curves."""
    runs = [train_rl(env, config, steps=steps, lr=0.05, rng=s, targets=targets) for s in seeds]
    curves = np.array([r.kl_to_optimum if key is None else r.kl_to[key] for r in runs])
    return curves[:, -50:].mean(), curves


@pytest.mark.parametrize("make", [
    lambda G: RLOOConfig(group_size=G, beta=BETA),
    lambda G: ReinforceConfig(group_size=G, beta=BETA, baseline="mean"),
    pytest.param(lambda G: PPOConfig(group_size=G, beta=BETA, epochs=2),
                 marks=pytest.mark.slow),
], ids=["rloo", "reinforce_mean", "ppo"])
def test_kl_in_the_reward_converges_to_pi_star_closer_with_more_samples(env, make):
    few, curves_few = final_distance(env, make(4))
    many, curves_many = final_distance(env, make(32))
    start = curves_few[:, 0].mean()
    assert start > 0.5
    assert few < 0.02 * start and many < 0.01 * start
    # decreasing with steps: the last 50 steps beat steps 50..100
    assert many < curves_many[:, 50:100].mean()
    # more samples, closer to pi*
    assert many < 0.7 * few


def test_reinforce_without_baseline_converges_too(env):
    dist, curves = final_distance(env, ReinforceConfig(group_size=16, beta=BETA))
    assert dist < 0.02 * curves[:, 0].mean()


@pytest.mark.slow
def test_grpo_k3_in_the_loss_converges_to_the_forward_kl_fixpoint_not_pi_star(env):
    G = 8
    # Dr. GRPO's group-mean baseline includes the sample: the reward gradient is (G-1)/G
    fix = forward_kl_regularised_policy(env.pi_ref, (G - 1) / G * env.r_hat, BETA)
    gap = float(env.prompt_probs @ kl_divergence(fix, optimal_policy(env.pi_ref, env.r_hat,
                                                                     BETA)))
    assert gap > 0.05  # the two targets differ on this world
    to_fix, curves_fix = final_distance(env, dr_grpo_config(group_size=G, beta=BETA),
                                        targets={"fix": fix}, key="fix")
    to_star, _ = final_distance(env, dr_grpo_config(group_size=G, beta=BETA))
    assert to_fix < 0.02 * curves_fix[:, 0].mean()
    assert to_star > 0.5 * gap  # bounded away from pi*
    assert to_star > 10 * to_fix


def test_grpo_with_std_scaling_also_misses_pi_star(env):
    to_star, _ = final_distance(env, GRPOConfig(group_size=8, beta=BETA))
    assert to_star > 0.05


def test_online_dpo_moves_towards_pi_star(env):
    dist, curves = final_distance(env, OnlineDPOConfig(beta=BETA))
    assert dist < 0.3 * curves[:, 0].mean()


def test_result_records_exact_quantities_from_the_start(env):
    res = train_rl(env, GRPOConfig(group_size=4, beta=BETA), steps=20, lr=0.05, rng=3)
    assert isinstance(res, RLResult) and res.method == "grpo" and res.beta == BETA
    np.testing.assert_array_equal(res.steps, np.arange(21))
    for curve in (res.proxy, res.gold, res.kl, res.kl_to_optimum, res.entropy):
        assert curve.shape == (21,) and np.all(np.isfinite(curve))
    w = env.prompt_probs
    assert abs(res.kl[0]) < 1e-12
    np.testing.assert_allclose(res.proxy[0], w @ (env.pi_ref * env.r_hat).sum(-1))
    np.testing.assert_allclose(res.gold[0], w @ (env.pi_ref * env.r_star).sum(-1))
    pi = res.policy.probs  # the last record is the final policy, exactly
    np.testing.assert_allclose(res.gold[-1], w @ (pi * env.r_star).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(res.kl[-1], w @ kl_divergence(pi, env.pi_ref), rtol=1e-12)
    for key in ("approx_kl", "clipfrac", "zero_spread", "entropy", "loss"):
        assert np.isnan(res.diagnostics[key][0]) and np.all(np.isfinite(res.diagnostics[key][1:]))
    assert np.all((res.diagnostics["zero_spread"][1:] >= 0)
                  & (res.diagnostics["zero_spread"][1:] <= 1))


def test_runs_are_reproducible_and_seeds_differ(env):
    cfg = PPOConfig(group_size=4, beta=BETA, n_minibatches=2)
    a = train_rl(env, cfg, steps=15, rng=5)
    b = train_rl(env, cfg, steps=15, rng=np.random.default_rng(5))
    c = train_rl(env, cfg, steps=15, rng=6)
    np.testing.assert_array_equal(a.policy.logits, b.policy.logits)
    np.testing.assert_array_equal(a.diagnostics["clipfrac"], b.diagnostics["clipfrac"])
    assert not np.array_equal(a.policy.logits, c.policy.logits)


def test_ppo_diagnostics_and_adaptive_kl(env):
    ctl = AdaptiveKLController(init_kl_coef=BETA, target=0.01, horizon=1000)
    res = train_rl(env, PPOConfig(group_size=8, beta=BETA), steps=60, rng=0, kl_controller=ctl)
    beta, kl = res.diagnostics["beta"][1:], res.diagnostics["kl"][1:]
    assert beta[0] == BETA and beta[-1] > BETA  # the KL ends far above the target
    # each step's sampled KL moves the next beta up if above the target, down if below
    np.testing.assert_array_equal(np.sign(np.diff(beta)), np.sign(kl[:-1] - 0.01))
    ev = res.diagnostics["explained_variance"]
    assert ev[-10:].mean() > ev[1:11].mean()  # the critic learns the per-prompt value
    assert np.nanmax(res.diagnostics["clipfrac"]) > 0  # 4 epochs: the clip acts


def test_critic_and_reward_fn():
    critic = TabularCritic(3, init=0.5)
    v = critic.values(np.array([0, 2, 2]), np.zeros((3, 1), int), np.array([[1.0], [1.0], [0.0]]))
    np.testing.assert_array_equal(v, [[0.5], [0.5], [0.0]])
    g = critic.values_backward(np.array([[1.0], [2.0], [5.0]]))["values"]
    np.testing.assert_array_equal(g, [1.0, 0.0, 2.0])  # off-mask entry ignored
    fn = table_reward([[0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_array_equal(fn(np.array([1, 0]), np.array([[1], [0]]), None), [3.0, 0.0])
    with pytest.raises(RuntimeError, match="values call first"):
        TabularCritic(2).values_backward(np.ones((1, 1)))


def test_non_finite_training_raises_naming_the_step(env):
    with pytest.raises(FloatingPointError, match=r"train_rl \(rloo\).*at step 1"):
        train_rl(env, RLOOConfig(group_size=4, beta=BETA), steps=5, lr=1e308, rng=0)


def test_bad_arguments_raise(env):
    with pytest.raises(TypeError, match="config must be one of"):
        train_rl(env, {"beta": 0.1}, steps=5)
    with pytest.raises(ValueError, match="steps"):
        train_rl(env, RLOOConfig(), steps=-1)
    with pytest.raises(ValueError, match="lr"):
        train_rl(env, RLOOConfig(), steps=1, lr=0.0)
    with pytest.raises(ValueError, match="kl_controller applies to PPO only"):
        train_rl(env, RLOOConfig(), steps=1, kl_controller=AdaptiveKLController(0.1, 1.0, 10))
    with pytest.raises(ValueError, match=r"targets\['x'\] must have shape"):
        train_rl(env, RLOOConfig(), steps=1, targets={"x": np.ones((2, 2))})
    with pytest.raises(ValueError, match="n_minibatches must be <="):
        train_rl(env, PPOConfig(group_size=2, n_minibatches=9), steps=1)
    assert method_name(dr_grpo_config()) == "dr_grpo"


# --------------------------------------------------------------------------------------
# the exact loops of the same family (rlhf_toy.bandit.train)
# --------------------------------------------------------------------------------------


def test_gradient_ascent_with_a_kl_gradient_reaches_each_penalty_fixpoint(env):
    """``kl_gradient``: the reverse KL's own gradient reproduces the default run exactly
    (to rounding); GRPO's k3-in-the-loss gradient ``pi - pi_ref`` lands on the forward-KL
    fixpoint."""
    from rlhf_toy.bandit.train import gradient_ascent

    def reverse(log_pi, log_ref):
        pi = np.exp(log_pi)
        f = log_pi - log_ref
        return pi * (f - (pi * f).sum(-1, keepdims=True))

    def forward(log_pi, log_ref):
        return np.exp(log_pi) - np.exp(log_ref)

    kw = dict(steps=3000, lr=8.0, record_every=0)
    base = gradient_ascent(env.pi_ref, env.r_hat, BETA, **kw)
    rev = gradient_ascent(env.pi_ref, env.r_hat, BETA, kl_gradient=reverse, **kw)
    np.testing.assert_allclose(rev.policy.probs, base.policy.probs, atol=1e-10)
    fwd = gradient_ascent(env.pi_ref, env.r_hat, BETA, kl_gradient=forward, **kw)
    fix = forward_kl_regularised_policy(env.pi_ref, env.r_hat, BETA)
    np.testing.assert_allclose(fwd.policy.probs, fix, atol=1e-6)
    star = optimal_policy(env.pi_ref, env.r_hat, BETA)
    np.testing.assert_allclose(base.policy.probs, star, atol=1e-6)
    with pytest.raises(ValueError, match="kl_gradient must be callable"):
        gradient_ascent(env.pi_ref, env.r_hat, BETA, steps=1, lr=1.0, kl_gradient="k3")


def test_train_dpo_adam_is_adam_with_both_bias_corrections():
    """train_dpo's optimizer="adam" is rlhf_toy.optim.AdamW: one step moves each logit by
    -lr * sign(g) (bias-corrected m_hat / sqrt(v_hat) = g / |g| at t = 1)."""
    from rlhf_toy.bandit.train import train_dpo

    pi_ref = np.full((1, 3), 1 / 3)
    res = train_dpo(pi_ref, [0], [0], [2], 1.0, steps=1, lr=0.1, optimizer="adam")
    z = res.policy.logits - res.policy.logits.mean()
    np.testing.assert_allclose(z, [[0.1, 0.0, -0.1]], atol=1e-7)


def test_result_is_frozen_and_beta_zero_has_no_regularised_optimum(env, capsys):
    """With beta = 0 there is no pi*_beta: kl_to_optimum is NaN at every step, the rest of
    the record is exact. The result is immutable, and the default run prints nothing."""
    import dataclasses

    res = train_rl(env, ReinforceConfig(group_size=4, beta=0.0), steps=3, rng=0)
    assert capsys.readouterr().err == ""
    assert np.all(np.isnan(res.kl_to_optimum)) and res.kl_to_optimum.shape == (4,)
    assert res.kl[0] == pytest.approx(0.0, abs=1e-14) and np.all(np.isfinite(res.kl))
    assert res.gold[0] == pytest.approx(env.expected(env.pi_ref, "gold"), abs=1e-14)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.beta = 1.0
    train_rl(env, ReinforceConfig(group_size=4, beta=0.0), steps=3, rng=0, verbose=True)
    assert "reinforce" in capsys.readouterr().err.lower()
