"""SFT, the reward model and the exact evaluation of the pipeline.

Gradients of both stage losses are checked against float64 central differences; the
evaluation is checked to be exact (probabilities sum to one, KL(pi_sft || pi_sft) = 0,
KL(pi* || pi*) = 0, enumeration equal to per-token log-probs); and the stages must learn:
SFT reaches the demonstrator's level (exact cross-entropy) and the reward model beats
chance on held-out gold comparisons.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_toy.gpt import GPT, GPTConfig
from rlhf_toy.kl import kl_divergence
from rlhf_toy.optimal import log_optimal_policy, log_partition, optimal_policy
from rlhf_toy.pipeline.common import task_policy
from rlhf_toy.pipeline.config import PipelineConfig
from rlhf_toy.pipeline.evaluate import (
    ExactEval,
    build_exact_eval,
    demonstrator_cross_entropy,
    evaluate_logp,
    evaluate_policy,
    optimum_metrics,
    policy_logp,
)
from rlhf_toy.pipeline.policy import GPTRewardModel
from rlhf_toy.pipeline.reward_model import (
    Comparisons,
    bradley_terry_loss_and_grads,
    pairwise_accuracy,
    sample_comparisons,
    train_reward_model,
)
from rlhf_toy.pipeline.sft import demonstrator_loss, sft_loss_and_grads, train_sft
from rlhf_toy.tasks import get_task


def tiny(task, seed=0, heads=(), dtype=np.float32, random_heads=False):
    cfg = GPTConfig(task.vocab_size, n_ctx=12, n_embd=16, n_layer=1, n_head=2)
    model = GPT(cfg, seed=seed, dtype=dtype, heads=heads)
    if random_heads:
        rng = np.random.default_rng(seed + 100)
        for name in model.params:
            if name.startswith("reward_head"):
                model.params[name][...] = rng.normal(0, 0.5, model.params[name].shape)
    return model


def central_difference(f, params, name, idx, h=1e-6):
    p = params[name]
    old = p[idx]
    p[idx] = old + h
    up = f()
    p[idx] = old - h
    down = f()
    p[idx] = old
    return (up - down) / (2 * h)


# ------------------------------------------------------------------------ gradients


def test_sft_gradient_matches_finite_differences():
    task = get_task("length")
    model = tiny(task, dtype=np.float64)
    policy = task_policy(model, task)
    x = task.sample_prompts(6, rng=0)
    y, m = task.demonstrations(x, rng=1)
    loss, grads = sft_loss_and_grads(policy, x, y, m)
    logp = policy.logprobs(x, y, m)
    assert loss == pytest.approx(-(logp * m).sum() / m.sum())
    rng = np.random.default_rng(2)
    for name in ("wte", "h.0.attn.c_attn.weight", "h.0.mlp.c_proj.weight", "ln_f.bias"):
        idx = tuple(rng.integers(0, s) for s in model.params[name].shape)
        fd = central_difference(lambda: sft_loss_and_grads(policy, x, y, m)[0], model.params,
                                name, idx)  # fmt: skip
        assert grads[name][idx] == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_bradley_terry_gradient_matches_finite_differences():
    task = get_task("length")
    model = tiny(task, heads=("reward",), dtype=np.float64, random_heads=True)
    rm = GPTRewardModel(model)
    x = task.sample_prompts(5, rng=0)
    ya, ma = task.demonstrations(x, rng=1)
    yb, mb = task.demonstrations(x, rng=2)
    pairs = Comparisons(x, ya, ma, yb, mb)
    loss, grads, r_w, r_l = bradley_terry_loss_and_grads(rm, pairs)
    assert loss == pytest.approx(np.mean(np.log1p(np.exp(-(r_w - r_l)))))  # -log sigma
    rng = np.random.default_rng(3)
    for name in ("reward_head.weight", "reward_head.bias", "wpe", "h.0.ln_1.weight"):
        shape = model.params[name].shape
        idx = tuple(rng.integers(0, s) for s in shape)
        fd = central_difference(lambda: bradley_terry_loss_and_grads(rm, pairs)[0],
                                model.params, name, idx)  # fmt: skip
        assert grads[name][idx] == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_pairwise_accuracy():
    assert pairwise_accuracy([2, 0, 1], [1, 1, 1], [1, 1, 0], [0, 0, 0]) == pytest.approx(1.5 / 3)
    assert np.isnan(pairwise_accuracy([1.0], [0.0], [1.0], [1.0]))  # truth ties every pair


def test_comparisons_are_labelled_sft_samples():
    task = get_task("length")
    model = tiny(task)
    pairs = sample_comparisons(task, task_policy(model, task), 200, rng=0)
    assert len(pairs) == 200
    task.check_responses(pairs.chosen, pairs.chosen_mask)
    task.check_responses(pairs.rejected, pairs.rejected_mask)
    again = sample_comparisons(task, task_policy(model, task), 200, rng=0)
    np.testing.assert_array_equal(pairs.chosen, again.chosen)  # seeded


# ------------------------------------------------------------------------ exact evaluation


@pytest.mark.parametrize("name", [pytest.param("length", marks=pytest.mark.slow), "sycophancy"])
def test_evaluation_is_exact(name):
    task = get_task(name)
    sft = task_policy(tiny(task, seed=0), task)
    rm = GPTRewardModel(tiny(task, seed=1, heads=("reward",), random_heads=True))
    beta = 0.3
    ev = build_exact_eval(task, sft, rm, beta, np.geomspace(10, 0.1, 7))
    X, N = ev.gold.shape
    assert N == task.n_responses and X == len(task.eval_prompts())
    np.testing.assert_allclose(np.exp(ev.logp_sft).sum(axis=1), 1.0, atol=1e-9)
    # enumeration agrees with per-token log-probs of every (prompt, response) pair
    xp, yp, mp = ev.pairs()
    per_token = sft.logprobs(xp, yp, mp).astype(np.float64).sum(axis=1).reshape(X, N)
    np.testing.assert_allclose(ev.logp_sft, per_token, atol=2e-5)
    # the proxy is the reward model's score of each pair
    np.testing.assert_allclose(ev.proxy.ravel(), rm.score(xp, yp, mp), atol=1e-6)
    m_sft = evaluate_policy(ev, sft)
    assert m_sft["kl"] == 0.0  # exactly
    pi_sft = np.exp(ev.logp_sft)
    assert m_sft["gold"] == pytest.approx((pi_sft * ev.gold).sum(1).mean())
    pi_star = optimal_policy(pi_sft, ev.proxy, beta)
    m_star = evaluate_logp(ev, np.log(pi_star))
    assert m_star["kl_to_optimum"] == pytest.approx(0.0, abs=1e-10)
    assert m_sft["kl_to_optimum"] == pytest.approx(kl_divergence(pi_sft, pi_star).mean())
    assert m_star["proxy"] > m_sft["proxy"]  # pi* tilts towards the proxy
    opt = optimum_metrics(ev)
    assert opt["kl"] == pytest.approx(m_star["kl"]) and opt["gold"] == pytest.approx(m_star["gold"])
    # the frontier: proxy rises and KL grows as beta falls
    f = ev.frontier
    assert np.all(np.diff(f["proxy"]) >= -1e-9) and np.all(np.diff(f["kl"]) >= -1e-9)
    assert m_sft["length"] == pytest.approx(
        (pi_sft @ task.response_lengths(*task.all_responses())).mean()
    )
    with pytest.raises(ValueError, match="sums to"):
        evaluate_logp(ev, ev.logp_sft + 0.1)
    with pytest.raises(ValueError, match="logp must have shape"):
        evaluate_logp(ev, ev.logp_sft[:, :-1])


def random_eval(task, seed, beta):
    """An ExactEval of random tables (no model): pi_sft, proxy from ``seed``."""
    rng = np.random.default_rng(seed)
    x = task.eval_prompts()
    y, m = task.all_responses()
    X, N = len(x), len(y)
    logits = rng.normal(0, 2, (X, N))
    logp_sft = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    proxy = rng.normal(0, 1, (X, N))
    xp, yp, mp = np.repeat(x, N, 0), np.tile(y, (X, 1)), np.tile(m, (X, 1))
    return ExactEval(
        task=task, prompts=x, responses=y, mask=m,
        gold=task.gold_rewards(xp, yp, mp).reshape(X, N), proxy=proxy,
        length=task.response_lengths(y, m), logp_sft=logp_sft, beta=beta,
        log_pi_star=log_optimal_policy(np.exp(logp_sft), proxy, beta), frontier={},
    )  # fmt: skip


@settings(max_examples=10)  # each example evaluates a 30 x 156 table with the task's rates
@given(st.integers(0, 2**31 - 1), st.floats(0.05, 5.0))
def test_objective_gap_is_beta_times_kl_to_optimum(seed, beta):
    """For any policy: E_pi r - beta KL(pi || pi_sft) = beta log Z - beta KL(pi || pi*)
    (chapter, KL-regularised objective), so kl_to_optimum measures the gap exactly."""
    task = get_task("sycophancy")
    ev = random_eval(task, seed, beta)
    logits = np.random.default_rng(seed + 1).normal(0, 2, ev.gold.shape)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    m = evaluate_logp(ev, logp)
    assert m["kl"] >= 0 and m["kl_to_optimum"] >= 0
    j = m["proxy"] - beta * m["kl"]
    j_star = beta * log_partition(np.exp(ev.logp_sft), ev.proxy, beta).mean()
    assert j == pytest.approx(j_star - beta * m["kl_to_optimum"], rel=1e-9, abs=1e-9)
    rates = task.rates(*ev.pairs(), weights=np.exp(logp).ravel())
    assert m["accuracy"] == pytest.approx(m["gold"]) == pytest.approx(rates["accuracy"])


def test_policy_logp_follows_the_task_order():
    task = get_task("digits")
    sft = task_policy(tiny(task), task)
    x = task.eval_prompts()[:2]
    lp = policy_logp(sft, task, x)
    y, m = task.all_responses()
    direct = sft.logprobs(np.repeat(x, len(y), 0), np.tile(y, (2, 1)), np.tile(m, (2, 1)))
    np.testing.assert_allclose(lp.ravel(), direct.astype(np.float64).sum(1), atol=2e-5)


# ------------------------------------------------------------------------ learning


@pytest.fixture(scope="module")
def trained():
    task = get_task("length")
    config = PipelineConfig.quick(methods=())
    sft = train_sft(task, config, rng=1)
    rm = train_reward_model(task, config, sft.model, rng=2)
    return task, config, sft, rm


@pytest.mark.slow
def test_sft_reaches_the_demonstrators_level(trained):
    task, config, sft, _ = trained
    level = demonstrator_loss(task, task.eval_prompts())
    assert sft.demonstrator_loss == pytest.approx(level, rel=0.02)  # the set's prompts
    assert sft.history["loss"][:10].mean() > level + 0.3  # starts far above
    ce = demonstrator_cross_entropy(task, sft.policy, task.eval_prompts())
    assert level <= ce < level + 0.03  # exact: KL(demo || pi_sft) per token < 0.03
    assert np.all(np.isfinite(sft.history["loss"])) and sft.history["loss"].shape == (
        config.sft_steps,
    )


@pytest.mark.slow
def test_reward_model_beats_chance_on_gold(trained):
    """On held-out pairs, on each of three seeds: better than chance on the gold order, and
    better still on the labelers' utility (gold + their length bias), which is what it
    learns. Measured (seeds 1/2, 3/4, 5/6): gold 0.58, 0.66, 0.62; utility 0.77, 0.82,
    0.78; labels 0.63, 0.65, 0.63. Which pairs a quick RM gets right moves with float
    rounding (the thread count changes gold by up to 0.13 on a seed), so the margins are
    asserted per seed at chance and on the mean above it."""
    task, config, sft, rm = trained
    assert len(rm.heldout) == round(config.n_comparisons * config.rm_holdout)
    assert rm.history["loss"][-20:].mean() < np.log(2) - 0.02
    assert np.any(rm.model.params["reward_head.weight"] != 0)  # the head has learned
    accuracies = [rm.accuracy]
    for sft_seed, rm_seed in ((3, 4), (5, 6)):
        other = train_sft(task, config, rng=sft_seed)
        accuracies.append(train_reward_model(task, config, other.model, rng=rm_seed).accuracy)
    for acc in accuracies:
        assert acc["gold"] > 0.5 and acc["utility"] > 0.7 and acc["labels"] > 0.58, acc
        assert acc["utility"] > acc["gold"]
    assert np.mean([acc["gold"] for acc in accuracies]) > 0.55


@pytest.mark.slow
def test_learned_reward_model_is_overoptimised_exactly(trained):
    """pi* of the learned RM: the proxy rises as beta falls, the gold reward ends far below
    the SFT policy's and the responses get longer, as the labelers' length bias predicts."""
    task, config, sft, rm = trained
    betas = np.geomspace(100, 0.01, 21)
    ev = build_exact_eval(task, sft.policy, rm.reward_model, 0.1, betas)
    f = ev.frontier
    assert np.all(np.diff(f["proxy"]) >= -1e-9)
    assert f["gold"][-1] < f["gold"][0] - 0.2
    np.testing.assert_allclose(f["accuracy"], f["gold"])  # gold is exact-answer accuracy
    assert f["length"][-1] > f["length"][0] + 1.0
    pi_sft = np.exp(ev.logp_sft)
    pi_last = optimal_policy(pi_sft, ev.proxy, betas[-1])
    assert (pi_last @ ev.length).mean() > (pi_sft @ ev.length).mean() + 1.0


@pytest.mark.slow
def test_learned_reward_model_rewards_sycophancy_exactly():
    """Sycophancy task: pi* of the learned RM agrees with wrong beliefs more than pi_sft
    does on each of three seeds, and on average by a lot while its gold reward peaks and
    falls. How much a quick RM learns the agreement bias varies with the seed and with
    float rounding (the CPU's BLAS kernel): agreement 0.17 -> 0.21, 0.17 -> 0.28 and
    0.15 -> 0.66 from beta = 100 to 0.01 for the three below, the gold reward falling by
    0.00, 0.17 and 0.35 from its peak, on an AVX-512 Xeon (the first RM barely learned the
    bias: its pi* only stops gaining gold); 0.17 -> 0.45, 0.17 -> 0.53 and 0.15 -> 1.00,
    gold falling by 0.27, 0.23 and 0.21, on an AVX2 EPYC. Agreement need not rise at every
    beta (only the proxy must): there it peaks at 0.56 and ends at 0.53 on the second seed."""
    task = get_task("sycophancy")
    config = PipelineConfig.quick(task="sycophancy", methods=())
    rises, falls = [], []
    for sft_seed, rm_seed in ((1, 2), (3, 4), (5, 6)):
        sft = train_sft(task, config, rng=sft_seed)
        rm = train_reward_model(task, config, sft.model, rng=rm_seed)
        assert rm.accuracy["utility"] > 0.65 and rm.accuracy["gold"] > 0.6
        betas = np.geomspace(100, 0.01, 11)
        f = build_exact_eval(task, sft.policy, rm.reward_model, 0.1, betas).frontier
        agree = np.array(f["agreement_with_wrong"])
        assert agree[0] < 0.25  # pi_sft: about the demonstrator's 0.2
        assert agree[-1] > agree[0] + 0.02, agree
        gold = np.array(f["gold"])
        rises.append(agree[-1] - agree[0])
        falls.append(gold.max() - gold[-1])
    assert np.mean(rises) > 0.15 and np.mean(falls) > 0.1, (rises, falls)
