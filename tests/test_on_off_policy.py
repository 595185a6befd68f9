"""On- vs off-policy preference data at a fixed labelling budget, on the exact bandit."""

import numpy as np
import pytest

from rlhf_toy.bandit.env import make_bandit
from rlhf_toy.bandit.experiments.on_off_policy import (
    compare_on_off_policy,
    dpo_schedule,
    exact_scores,
    reward_model_then_rl,
    sampled_rl_stage,
    sweep_budgets,
)
from rlhf_toy.bandit.train import train_dpo
from rlhf_toy.bradley_terry import sample_comparisons
from rlhf_toy.kl import kl_divergence
from rlhf_toy.optimal import optimal_policy
from rlhf_toy.rl import OnlineDPOConfig, RLOOConfig

BETA = 0.5


def world(seed, n_prompts=6, n_responses=12):
    env = make_bandit(n_prompts, n_responses, proxy="exact", rng=seed)
    return env.pi_ref, env.r_star


def test_offline_schedule_is_train_dpo_on_pairs_from_pi_ref():
    pi_ref, r_star = world(0)
    run = dpo_schedule(pi_ref, r_star, BETA, budget=300, rounds=1, steps=50, lr=4.0, rng=3)
    x, y_w, y_l = sample_comparisons(pi_ref, r_star, 300, np.random.default_rng(3))
    direct = train_dpo(pi_ref, x, y_w, y_l, BETA, steps=50, lr=4.0)
    np.testing.assert_allclose(run.probs, direct.policy.probs, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(run.labels, [0, 300])
    start = exact_scores(pi_ref, pi_ref, r_star, BETA)
    assert run.kl[0] == 0.0 and run.gold[0] == pytest.approx(start["gold"], rel=1e-12)
    np.testing.assert_allclose(run.kl_to_optimum[-1],
                               exact_scores(run.probs, pi_ref, r_star, BETA)["kl_to_optimum"])


def test_iterative_schedule_spends_exactly_the_budget():
    pi_ref, r_star = world(1)
    run = dpo_schedule(pi_ref, r_star, BETA, budget=103, rounds=4, steps=40, lr=4.0, rng=0)
    np.testing.assert_array_equal(run.labels, [0, 26, 52, 78, 103])
    assert run.gold.shape == run.kl.shape == (5,)
    # Every round moves the policy, and always towards higher gold than pi_ref here.
    assert np.all(run.kl[1:] > 0) and run.gold[-1] > run.gold[0]


@pytest.mark.parametrize("seed", [1, 2])
def test_on_policy_dpo_beats_offline_dpo_on_gold_when_the_optimum_is_far(seed):
    # The same 400 labels and 200 gradient steps: pairs drawn from the current policy
    # (iterative: 4 rounds; online: fresh pairs every step) reach a higher mean gold
    # reward over seeds than pairs drawn from pi_ref once (Tajwar et al. 2024), in worlds
    # whose optimum lies where pi_ref puts little mass (KL(pi* || pi_ref) near 1 nat or more).
    # Where the optimum is close to pi_ref (about 0.5 to 0.65 nats: worlds 0 and 4 of
    # make_bandit(6, 12)) the gain is within the noise, and which method ends closer to
    # pi* in KL depends on the budget and the steps: neither is asserted.
    pi_ref, r_star = world(seed)
    assert kl_divergence(optimal_policy(pi_ref, r_star, BETA), pi_ref).mean() > 0.9
    result = compare_on_off_policy(pi_ref, r_star, BETA, budget=400, seeds=range(4), steps=200,
                                   iterative_rounds=4,
                                   methods=["offline_dpo", "iterative_dpo", "online_dpo"])
    gold = {m: result.gold[m].mean() for m in result.methods}
    assert gold["iterative_dpo"] > gold["offline_dpo"] + 0.05
    assert gold["online_dpo"] > gold["offline_dpo"] + 0.05
    # Every method improves on pi_ref and none passes the optimum's gold reward by much.
    for m in result.methods:
        assert result.optimum["gold_ref"] < gold[m] < result.optimum["gold"] + 0.05
    assert result.summary()["offline_dpo"]["gold_se"] > 0


def test_reward_model_then_rl_approaches_the_optimum_as_labels_grow():
    pi_ref, r_star = world(0)
    distance = {}
    for budget in (200, 3200):
        d = [exact_scores(reward_model_then_rl(pi_ref, r_star, BETA, budget=budget, rng=s)[0],
                          pi_ref, r_star, BETA)["kl_to_optimum"] for s in range(3)]
        distance[budget] = np.mean(d)
    assert distance[3200] < 0.5 * distance[200]


def test_ppo_on_the_reward_model_lands_near_its_exact_optimum():
    pi_ref, r_star = world(2)
    result = compare_on_off_policy(pi_ref, r_star, BETA, budget=800, seeds=[0, 1], steps=200,
                                   methods=["rm_optimum", "ppo"])
    # The RL stage is where PPO's samples are spent: both methods share one reward model
    # per seed, and PPO gets within a few hundredths of its exact optimum's gold reward.
    np.testing.assert_allclose(result.gold["ppo"], result.gold["rm_optimum"], atol=0.03)
    np.testing.assert_allclose(result.kl["ppo"], result.kl["rm_optimum"], rtol=0.15)


def test_reward_model_stage_and_sweep_plumbing():
    pi_ref, r_star = world(0, 3, 6)
    probs, r_hat = reward_model_then_rl(pi_ref, r_star, BETA, budget=100, rng=0)
    np.testing.assert_allclose(probs, optimal_policy(pi_ref, r_hat, BETA))
    np.testing.assert_allclose(r_hat.mean(1), 0.0, atol=1e-9)
    stage = sampled_rl_stage(RLOOConfig(group_size=4), steps=3)
    probs, _ = reward_model_then_rl(pi_ref, r_star, BETA, budget=100, rl=stage, rng=0)
    assert probs.shape == pi_ref.shape
    sweep = sweep_budgets(pi_ref, r_star, BETA, budgets=[20, 40], seeds=[0, 1], steps=10,
                          methods=["offline_dpo", "online_dpo_adamw", "rm_optimum"])
    assert sweep.gold["offline_dpo"].shape == (2, 2)
    assert sweep.methods == ("offline_dpo", "online_dpo_adamw", "rm_optimum")
    again = sweep_budgets(pi_ref, r_star, BETA, budgets=[20, 40], seeds=[0, 1], steps=10,
                          methods=["offline_dpo", "online_dpo_adamw", "rm_optimum"])
    for m in sweep.methods:
        np.testing.assert_array_equal(sweep.gold[m], again.gold[m])


def test_bad_input():
    pi_ref, r_star = world(0, 3, 6)
    with pytest.raises(ValueError, match="steps must be a multiple of rounds"):
        dpo_schedule(pi_ref, r_star, BETA, budget=100, rounds=3, steps=10, lr=1.0)
    with pytest.raises(ValueError, match="budget must be >= rounds"):
        dpo_schedule(pi_ref, r_star, BETA, budget=2, rounds=5, steps=10, lr=1.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        dpo_schedule(pi_ref, r_star, 0.0, budget=10, rounds=1, steps=10, lr=1.0)
    with pytest.raises(ValueError, match="r_star and pi_ref must have the same shape"):
        exact_scores(pi_ref, pi_ref, r_star[:, :2], BETA)
    with pytest.raises(ValueError, match="budget must be >= steps"):
        compare_on_off_policy(pi_ref, r_star, BETA, budget=10, seeds=[0], steps=20)
    with pytest.raises(ValueError, match="methods must be among"):
        compare_on_off_policy(pi_ref, r_star, BETA, budget=40, seeds=[0], steps=20,
                              methods=["sft"])
    with pytest.raises(ValueError, match="seeds must not be empty"):
        compare_on_off_policy(pi_ref, r_star, BETA, budget=40, seeds=[], steps=20)
    with pytest.raises(ValueError, match="OnlineDPOConfig"):
        sampled_rl_stage(OnlineDPOConfig())
    with pytest.raises(ValueError, match="rl\\(...\\) row 0"):
        reward_model_then_rl(pi_ref, r_star, BETA, budget=10,
                             rl=lambda p, r, b, g: np.full_like(p, 2.0))


def test_on_off_plot_shows_every_method():
    from rlhf_toy.presentation.plots.on_off_policy import plot_on_off_policy

    rng = np.random.default_rng(0)
    gold = {m: rng.normal(size=(2, 3)) for m in ("offline_dpo", "online_dpo", "ppo")}
    dist = {m: rng.uniform(size=(2, 3)) for m in gold}
    fig = plot_on_off_policy([400, 1600], gold, dist, optimum_gold=1.0, ref_gold=0.0)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel() and ax.has_data()
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "online DPO" in labels and "RM, then PPO" in labels
    with pytest.raises(ValueError, match="must have 2 rows"):
        plot_on_off_policy([400, 1600], {"ppo": np.zeros((3, 2))}, {"ppo": np.zeros((3, 2))},
                           optimum_gold=1.0)
