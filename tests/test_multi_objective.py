"""Multi-objective RLHF on the exact bandit: the Pareto front, the constrained optimum."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import softmax

from rlhf_toy import strategies as st_rl
from rlhf_toy.bandit.experiments.multi_objective import (
    constrained_optimum,
    lagrangian_front,
    lagrangian_policy,
    make_two_reward_bandit,
    non_dominated,
    policy_values,
    scalarisation_front,
    scalarised_reward,
    train_constrained,
)
from rlhf_toy.rl import OnlineDPOConfig

BETA = 0.5
WEIGHTS = np.linspace(0.0, 1.0, 21)


def random_policies(pi_ref, rng, n=400, near=None):
    """Random policies: softmaxes of Gaussian logits, and perturbations of ``near``."""
    rng = np.random.default_rng(rng)
    scales = rng.uniform(0.1, 3.0, size=(n, 1, 1))
    pis = [softmax(np.log(pi_ref) + scales * rng.standard_normal((n, *pi_ref.shape)), -1)]
    for pi in near if near is not None else []:
        noise = 0.05 * rng.standard_normal((20, *pi_ref.shape))
        pis.append(softmax(np.log(pi) + noise, -1))
    return np.concatenate(pis)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scalarisation_front_is_pareto_optimal(seed):
    env = make_two_reward_bandit(6, 12, rng=seed)
    r_help, r_harm = env.rewards("proxy")
    front = scalarisation_front(env.pi_ref, r_help, r_harm, BETA, WEIGHTS)
    # No swept point dominates another one.
    assert non_dominated(np.c_[front.j_help, -front.j_harm]).all()
    # Each is optimal for its own scalarisation, against the other swept points and
    # random policies (including small perturbations of the front's own policies).
    others = random_policies(env.pi_ref, seed, near=front.policies)
    v = policy_values(others, env.pi_ref, r_help, r_harm, BETA)
    for i, w in enumerate(WEIGHTS):
        own = w * front.j_help[i] - (1 - w) * front.j_harm[i]
        assert own >= np.max(w * front.j_help - (1 - w) * front.j_harm) - 1e-12
        assert own > np.max(w * v["j_help"] - (1 - w) * v["j_harm"])
    # Hence no random policy dominates a point of the front.
    dominated = ((v["j_help"][:, None] >= front.j_help) & (v["j_harm"][:, None] <= front.j_harm))
    assert not dominated.any()
    # Along the sweep helpfulness rises and harm rises: the trade-off the front prices.
    assert np.all(np.diff(front.j_help) > 0) and np.all(np.diff(front.j_harm) > 0)


@given(st_rl.bandit_tables(max_prompts=3, max_responses=6), st_rl.betas(0.1, 5.0),
       st.floats(0.0, 1.0), st.integers(0, 2**31))
def test_front_policy_maximises_its_scalarisation(tables, beta, w, seed):
    pi_ref, r_help = tables
    r_harm = np.random.default_rng(seed).standard_normal(pi_ref.shape)
    front = scalarisation_front(pi_ref, r_help, r_harm, beta, [w])
    v = policy_values(random_policies(pi_ref, seed, n=100, near=front.policies),
                      pi_ref, r_help, r_harm, beta)
    own = w * front.j_help[0] - (1 - w) * front.j_harm[0]
    assert own >= np.max(w * v["j_help"] - (1 - w) * v["j_harm"]) - 1e-10
    # The scalarised objective is Stage 3's objective for r_w.
    r_w = scalarised_reward(r_help, r_harm, w)
    direct = np.mean((front.policies[0] * r_w).sum(-1)) - beta * front.kl[0]
    np.testing.assert_allclose(own, direct, rtol=1e-12, atol=1e-12)


@given(st_rl.bandit_tables(max_prompts=3, max_responses=6), st_rl.betas(0.1, 5.0),
       st.integers(0, 2**31))
def test_harm_falls_monotonically_in_the_multiplier(tables, beta, seed):
    pi_ref, r_help = tables
    r_harm = np.random.default_rng(seed).standard_normal(pi_ref.shape)
    lams = np.r_[0.0, np.geomspace(1e-3, 1e3, 40)]
    front = lagrangian_front(pi_ref, r_help, r_harm, beta, lams)
    assert np.all(np.diff(front.harm) <= 1e-12)
    # d E[harm] / d lam = -E_x Var_{pi_lam}(r_harm) / beta, against central differences.
    lam, h = 0.7, 1e-5
    up, down = (lagrangian_front(pi_ref, r_help, r_harm, beta, [lam + h, lam - h]).harm)
    pi = lagrangian_policy(pi_ref, r_help, r_harm, lam, beta)
    var = (pi * r_harm**2).sum(-1) - (pi * r_harm).sum(-1) ** 2
    np.testing.assert_allclose((up - down) / (2 * h), -var.mean() / beta, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_constrained_optimum_is_exact(seed):
    env = make_two_reward_bandit(6, 12, rng=seed)
    r_help, r_harm = env.rewards("proxy")
    unconstrained = policy_values(lagrangian_policy(env.pi_ref, r_help, r_harm, 0.0, BETA),
                                  env.pi_ref, r_help, r_harm, BETA)
    c = float(unconstrained["harm"]) - 0.5  # a binding budget
    opt = constrained_optimum(env.pi_ref, r_help, r_harm, BETA, c)
    assert opt.active and opt.lam > 0
    assert abs(opt.harm - c) <= 1e-9
    # No feasible random policy and no feasible point of the Lagrangian front does better.
    others = random_policies(env.pi_ref, seed, near=[opt.policy])
    v = policy_values(others, env.pi_ref, r_help, r_harm, BETA)
    feasible = v["harm"] <= c
    assert feasible.sum() > 10
    assert np.max(v["j_help"][feasible]) < opt.j_help
    front = lagrangian_front(env.pi_ref, r_help, r_harm, BETA, np.linspace(0, 5, 201))
    assert np.max(front.j_help[front.harm <= c]) <= opt.j_help + 1e-12
    assert non_dominated(np.c_[front.j_help, -front.harm]).all()
    # A budget the unconstrained optimum meets leaves the multiplier at zero.
    loose = float(unconstrained["harm"]) + 0.1
    slack = constrained_optimum(env.pi_ref, r_help, r_harm, BETA, loose)
    assert slack.lam == 0.0 and not slack.active
    np.testing.assert_allclose(slack.j_help, unconstrained["j_help"], rtol=1e-12)


def test_non_dominated_by_hand():
    f = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.4, 0.4], [1.0, 0.0]])
    # Equal points do not dominate each other; (0.4, 0.4) is dominated by (0.5, 0.5).
    np.testing.assert_array_equal(non_dominated(f), [True, True, True, False, True])


def test_two_reward_bandit_is_seeded_and_correlated():
    a = make_two_reward_bandit(50, 200, correlation=0.6, rng=3)
    b = make_two_reward_bandit(50, 200, correlation=0.6, rng=3)
    np.testing.assert_array_equal(a.r_harm_hat, b.r_harm_hat)
    rho = np.corrcoef(a.r_help_star.ravel(), a.r_harm_star.ravel())[0, 1]
    assert abs(rho - 0.6) < 0.03  # 10,000 entries: standard error about 0.006
    noise = a.r_help_hat - a.r_help_star
    assert abs(noise.std() - 0.3) < 0.01
    exact = make_two_reward_bandit(4, 8, noise_scale=0.0, rng=0)
    np.testing.assert_array_equal(exact.r_harm_hat, exact.r_harm_star)


def test_bad_input():
    env = make_two_reward_bandit(3, 5, rng=0)
    h, m = env.rewards("gold")
    with pytest.raises(ValueError, match="w must be in"):
        scalarised_reward(h, m, 1.5)
    with pytest.raises(ValueError, match="weights must be in"):
        scalarisation_front(env.pi_ref, h, m, BETA, [0.5, -0.1])
    with pytest.raises(ValueError, match="beta must be > 0"):
        scalarisation_front(env.pi_ref, h, m, -1.0, [0.5])
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1e\+100\], got -0.1"):
        lagrangian_policy(env.pi_ref, h, m, -0.1, BETA)
    with pytest.raises(ValueError, match=r"lams must be in \[0, 1e\+100\]"):
        lagrangian_front(env.pi_ref, h, m, BETA, [1.0, -2.0])
    with pytest.raises(ValueError, match="c must exceed the smallest reachable harm"):
        constrained_optimum(env.pi_ref, h, m, BETA, float(m.min(-1).mean()) - 1e-3)
    with pytest.raises(ValueError, match="r_harm and pi_ref must have the same shape"):
        constrained_optimum(env.pi_ref, h, m[:, :3], BETA, 0.0)
    with pytest.raises(ValueError, match="correlation must be in"):
        make_two_reward_bandit(correlation=1.2)
    with pytest.raises(ValueError, match="kind must be"):
        env.rewards("both")
    with pytest.raises(ValueError, match="maximise must have shape"):
        non_dominated([1.0, 2.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dual_ascent_lands_on_the_front_at_the_constraint(seed):
    env = make_two_reward_bandit(6, 16, rng=seed)
    r_help, r_harm = env.rewards("proxy")
    unconstrained = constrained_optimum(env.pi_ref, r_help, r_harm, BETA, 1e9)
    c = unconstrained.harm - 0.4
    run = train_constrained(env.pi_ref, r_help, r_harm, BETA, c, steps=600, lr=0.1, eta=0.02,
                            eval_rewards={"help_gold": env.r_help_star}, rng=seed)
    opt = run.optimum
    assert opt.active and run.steps[-1] == 600
    # Sampled training with the multiplier updated on its own samples reaches the exact
    # constrained optimum: harm at the budget, helpfulness at the optimum, and the policy
    # itself close in KL, while the unconstrained run would overshoot the budget by 0.4.
    assert abs(run.tail_mean("harm") - c) < 0.03
    assert abs(run.tail_mean("help") - opt.help) < 0.02
    assert run.tail_mean("kl_to_optimum") < 0.005
    assert abs(run.tail_mean("lam") - opt.lam) < 0.1
    assert run.kl_to_optimum[-1] < 0.2 * run.kl_to_optimum[0]
    np.testing.assert_allclose(run.eval["help_gold"][0], policy_values(
        env.pi_ref, env.pi_ref, env.r_help_star, r_harm, BETA)["help"], rtol=1e-12)


def test_dual_ascent_is_seeded_and_validated():
    env = make_two_reward_bandit(3, 6, rng=0)
    r_help, r_harm = env.rewards("proxy")
    a = train_constrained(env.pi_ref, r_help, r_harm, BETA, 0.0, steps=5, rng=7)
    b = train_constrained(env.pi_ref, r_help, r_harm, BETA, 0.0, steps=5, rng=7)
    np.testing.assert_array_equal(a.lam, b.lam)
    np.testing.assert_array_equal(a.policy.logits, b.policy.logits)
    # The multiplier follows the projected dual update on the sampled harm.
    expect = np.maximum(0.0, a.lam[:-1] + 0.02 * (a.harm_sampled[1:] - 0.0))
    np.testing.assert_allclose(a.lam[1:], expect, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="eta must be > 0"):
        train_constrained(env.pi_ref, r_help, r_harm, BETA, 0.0, steps=5, eta=0.0)
    with pytest.raises(ValueError, match="OnlineDPOConfig"):
        train_constrained(env.pi_ref, r_help, r_harm, BETA, 0.0, steps=5,
                          config=OnlineDPOConfig())
    with pytest.raises(ValueError, match="c must exceed"):
        train_constrained(env.pi_ref, r_help, r_harm, BETA, -50.0, steps=5)
    with pytest.raises(TypeError, match="config must be one of"):
        train_constrained(env.pi_ref, r_help, r_harm, BETA, 0.0, steps=5, config=object())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_dual_ascent_stops_on_non_finite_values():
    env = make_two_reward_bandit(3, 6, rng=0)
    r_help, r_harm = env.rewards("proxy")
    with pytest.raises(FloatingPointError, match=r"train_constrained \(rloo\).* at step \d"):
        train_constrained(env.pi_ref, r_help, r_harm, BETA, 0.0, steps=5, lr=1e308)


def test_pareto_plot_draws_every_panel():
    from rlhf_toy.presentation.plots.multi_objective import plot_pareto_front

    env = make_two_reward_bandit(3, 6, rng=0)
    h, m = env.rewards("proxy")
    front = scalarisation_front(env.pi_ref, h, m, BETA, WEIGHTS)
    lag = lagrangian_front(env.pi_ref, h, m, BETA, np.linspace(0, 3, 30))
    opt = constrained_optimum(env.pi_ref, h, m, BETA, float(lag.harm[5]))
    points = (front.j_harm, front.j_help, front.harm)
    landings = {"run": (np.array([opt.harm]), np.array([opt.j_help]))}
    fig = plot_pareto_front((front.j_harm, front.j_help), points, (lag.harm, lag.j_help),
                            opt.c, (opt.harm, opt.j_help), landings,
                            gold={"front": (lag.harm, lag.j_help),
                                  "optimum": (opt.harm, opt.j_help), "landings": landings})
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel() and ax.has_data()
    with pytest.raises(ValueError, match="landings\\['run'\\] must pair"):
        plot_pareto_front((front.j_harm, front.j_help), points, (lag.harm, lag.j_help), opt.c,
                          (opt.harm, opt.j_help), {"run": (np.zeros(2), np.zeros(3))})


@given(st_rl.bandit_tables(max_prompts=3, max_responses=6), st_rl.betas(0.1, 5.0),
       st.floats(0.05, 0.95), st.integers(0, 2**31))
def test_bisection_meets_any_feasible_budget(tables, beta, t, seed):
    pi_ref, r_help = tables
    r_harm = np.random.default_rng(seed).standard_normal(pi_ref.shape)
    top = float(np.mean((lagrangian_policy(pi_ref, r_help, r_harm, 0.0, beta) * r_harm).sum(-1)))
    low = float(np.mean(r_harm.min(-1)))
    if top - low < 1e-6:
        return  # harm cannot be traded off (a constant harm row per prompt)
    c = low + t * (top - low)  # strictly between the smallest harm and the unconstrained one
    opt = constrained_optimum(pi_ref, r_help, r_harm, beta, c)
    assert opt.active and opt.lam > 0
    assert abs(opt.harm - c) <= 1e-9 * max(1.0, abs(c))
    # KKT: a smaller multiplier breaks the budget, a larger one wastes helpfulness.
    for lam, sign in ((0.5 * opt.lam, 1), (2.0 * opt.lam, -1)):
        v = policy_values(lagrangian_policy(pi_ref, r_help, r_harm, lam, beta), pi_ref, r_help,
                          r_harm, beta)
        assert sign * (v["harm"] - c) > 0
        if sign < 0:
            assert v["j_help"] < opt.j_help
