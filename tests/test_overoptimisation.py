"""Overoptimisation for real (chapter, "Reward Hacking and Goodhart"; Gao et al. 2023).

On the length task the labelers like long answers, and the reward model learned from their
comparisons inherits the bias. Optimised against it with a weak KL penalty, PPO raises the
proxy steadily while the gold reward, measured exactly by enumeration after every update,
first rises above the SFT policy's, peaks within a few updates and then collapses; a
stronger KL penalty reduces the fall. Best-of-n against the same reward model (exact)
shows the same curve in ``n``. Asserted on each of three seeds (SFT, reward model and PPO
seeded by the run's seed).

The setting is the quick config with a demonstrator right on 90% of its first digits
(default 70%) and a reward model trained for 600 steps (quick: 300). The labelers'
utilities are 1.4 for the correct answer, 0.4 for a wrong digit, 0.8 for two digits and 1.6
for four, and the reward model learns that order
(``test_reward_model_ranks_the_answer_above_short_ones_below_long_ones``); on seed 0 its
mean score is 1.35 for the correct answer, 0.30 for a wrong digit, -0.15 for two digits and
1.78 for four. So the first updates pay for stopping right after the (mostly correct) first
digit rather than going on to a second one: ``P(EOS after a correct first digit)`` goes
0.63 -> 0.69 and the gold reward 0.539 -> 0.614 in three updates. Four-digit answers grow
meanwhile (8% -> 24%); as the policy learns to reach them, going on after the first digit
pays more than stopping, the correct answer is abandoned and the gold reward ends at 0.001
(99% four-digit answers). Seeds 1 and 2: 0.514 -> 0.645 -> 0.006 and 0.542 -> 0.636 ->
0.007. With PPO's KL coefficient at 0.5 the gold reward stays between 0.53 and 0.73. (Two
threads; other thread counts round the GPT's sums differently and move these numbers by a
few hundredths.) With the task's default demonstrator and the quick reward model, the
reward model barely tells a correct digit from a wrong one (seed 2: 0.77 and 0.77), the
exact optimum ``pi*_beta`` gains less than 0.02 of gold on seeds 0 and 2, and there PPO's
gold reward falls from the first update, at learning rates from 1e-3 down to 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest

from rlhf_toy.pipeline.config import PipelineConfig
from rlhf_toy.pipeline.evaluate import build_exact_eval, evaluate_logp, evaluate_policy
from rlhf_toy.pipeline.methods import METHODS
from rlhf_toy.pipeline.reward_model import train_reward_model
from rlhf_toy.pipeline.run import stage_rng
from rlhf_toy.pipeline.sft import train_sft
from rlhf_toy.tasks import get_task

pytestmark = pytest.mark.slow

WEAK, STRONG = 0.02, 0.5  # KL coefficients of PPO's penalty
STEPS = 20
#: The quick config, with a demonstrator right on 90% of its first digits (default 70%)
#: and a reward model trained twice as long (600 steps), so that it learns correctness.
OVERRIDES = {"task_options": {"p_correct": 0.9}, "rm_steps": 600}
BEST_OF = (1, 2, 4, 8, 16, 32, 64)


def ppo_curves(seed: int, beta: float, base: dict) -> dict:
    """Exact gold, proxy and KL of the SFT policy, then after each PPO update."""
    config = base["config"].replace(
        method_options={"ppo": {"beta": beta, "steps": STEPS, "eval_every": 1}}
    )
    result = METHODS["ppo"](
        base["task"], config, base["sft"].model, base["rm"].reward_model, base["rm"].train,
        stage_rng(seed, "ppo"), exact=base["exact"],
    )  # fmt: skip
    h = result.history
    return {
        key: np.r_[base["sft_metrics"][key], h[f"exact_{key}"]] for key in ("gold", "proxy", "kl")
    }


def reward_model_by_kind(exact) -> dict:
    """Mean ``r_RM`` over the evaluation's (prompt, response) pairs of each kind."""
    n_tokens = np.broadcast_to(exact.length, exact.gold.shape)  # (X, N) tokens before EOS
    kinds = {
        "correct": exact.gold == 1,
        "wrong digit": (n_tokens == 1) & (exact.gold == 0),
        "empty": n_tokens == 0,
        "two digits": n_tokens == 2,
        "four digits": n_tokens == 4,
    }
    return {k: float(exact.proxy[m].mean()) for k, m in kinds.items()}


def best_of_n_curves(base: dict) -> dict:
    """Exact gold and proxy of best-of-n against the reward model for each n of BEST_OF."""
    out = {"gold": [], "proxy": []}
    for n in BEST_OF:
        config = base["config"].replace(method_options={"best_of_n": {"n": n}})
        r = METHODS["best_of_n"](
            base["task"], config, base["sft"].model, base["rm"].reward_model, base["rm"].train,
            0, exact=base["exact"],
        )  # fmt: skip
        m = evaluate_logp(base["exact"], r.logp)
        out["gold"].append(m["gold"])
        out["proxy"].append(m["proxy"])
    return {k: np.array(v) for k, v in out.items()}


@pytest.fixture(scope="module", params=[0, 1, 2], ids=lambda s: f"seed{s}")
def seed_runs(request):
    seed = request.param
    config = PipelineConfig.quick(seed=seed, **OVERRIDES)
    task = get_task(config.task, **config.task_options)
    sft = train_sft(task, config, stage_rng(seed, "sft"))
    rm = train_reward_model(task, config, sft.model, stage_rng(seed, "reward_model"))
    exact = build_exact_eval(task, sft.policy, rm.reward_model, config.beta, [config.beta])
    base = {"config": config, "task": task, "sft": sft, "rm": rm, "exact": exact}
    base["sft_metrics"] = evaluate_policy(exact, sft.policy)
    return {
        "weak": ppo_curves(seed, WEAK, base),
        "strong": ppo_curves(seed, STRONG, base),
        "best_of_n": best_of_n_curves(base),
        "reward_model": reward_model_by_kind(exact),
    }


def test_reward_model_ranks_the_answer_above_short_ones_below_long_ones(seed_runs):
    # the labelers' order: four digits 1.6 > correct 1.4 > two digits 0.8 > wrong 0.4 > empty 0
    r = seed_runs["reward_model"]
    assert r["correct"] > max(r["wrong digit"], r["two digits"], r["empty"]), r
    assert r["four digits"] > r["correct"], r


def test_weak_kl_ppo_raises_the_proxy_while_the_gold_collapses(seed_runs):
    c = seed_runs["weak"]
    gold, proxy = c["gold"], c["proxy"]
    # the proxy rises steadily: nearly every update raises it, and by a lot overall
    assert np.mean(np.diff(proxy) > 0) >= 0.8, np.round(proxy, 3)
    assert proxy[-1] > proxy[0] + 0.5, np.round(proxy, 3)
    # the gold reward ends far below the SFT policy's
    assert gold[-1] < gold[0] - 0.25, np.round(gold, 3)
    assert gold[-1] < 0.1, np.round(gold, 3)


def test_stronger_kl_reduces_the_fall(seed_runs):
    weak, strong = seed_runs["weak"], seed_runs["strong"]
    fall_weak = weak["gold"].max() - weak["gold"][-1]
    fall_strong = strong["gold"].max() - strong["gold"][-1]
    assert fall_strong < fall_weak - 0.05, (fall_strong, fall_weak)
    assert strong["gold"][-1] > weak["gold"][-1] + 0.05
    assert strong["kl"][-1] < weak["kl"][-1]
    assert strong["proxy"][-1] > strong["proxy"][0]


def test_best_of_n_gold_peaks_then_falls_while_the_proxy_rises(seed_runs):
    c = seed_runs["best_of_n"]
    gold, proxy = c["gold"], c["proxy"]
    assert np.all(np.diff(proxy) > 0), np.round(proxy, 3)
    peak = int(np.argmax(gold))
    assert 0 < peak < len(gold) - 1, np.round(gold, 3)
    assert gold[peak] > gold[0] + 0.01, np.round(gold, 3)
    assert gold[-1] < gold[0] - 0.2, np.round(gold, 3)


def test_ppo_gold_peaks_before_it_falls(seed_runs):
    gold = seed_runs["weak"]["gold"]
    peak = int(np.argmax(gold))
    # a clear rise within the first quarter of the run, then a fall far below the SFT policy
    assert 0 < peak <= STEPS // 4, np.round(gold, 3)
    assert gold[peak] > gold[0] + 0.02, np.round(gold, 3)
    assert gold[-1] < gold[0] - 0.25, np.round(gold, 3)
