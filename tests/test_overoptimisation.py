"""Overoptimisation for real (chapter, "Reward Hacking and Goodhart"; Gao et al. 2023).

On the length task the labelers like long answers, and the reward model learned from their
comparisons inherits the bias. Optimised against it with a weak KL penalty, PPO raises the
proxy steadily while the gold reward, measured exactly by enumeration after every update,
collapses; a stronger KL penalty reduces the fall. Best-of-n against the same reward model
(exact) shows the whole curve: the gold reward first rises with ``n``, then falls, while the
proxy rises. Asserted on each of three seeds (SFT, reward model and PPO seeded by the run's
seed).

Not shown on every seed: a *peak* of the gold reward along PPO's own trajectory. The reward
model of the quick config separates a correct one-digit answer from a wrong one less than
it rewards length, and the GPT's updates lengthen every prompt's answers at once, so PPO's
gold reward falls from the first update on seeds 0 and 2 (0.273 -> 0.004 and
0.355 -> 0.001); seed 1 peaks (0.371 -> 0.407 after two updates -> 0.007).
``test_ppo_gold_peaks_before_it_falls`` records this as a non-strict expected failure. The
exact optimum ``pi*_beta`` does peak (seed 0: gold 0.288 at ``beta`` 1.85 against
``pi_sft``'s 0.273), and so does best-of-n (seed 0: 0.273, 0.319, 0.295, ... 0.005 for
``n`` = 1, 2, 4, ... 64).
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
    config = PipelineConfig.quick(seed=seed)
    task = get_task(config.task)
    sft = train_sft(task, config, stage_rng(seed, "sft"))
    rm = train_reward_model(task, config, sft.model, stage_rng(seed, "reward_model"))
    exact = build_exact_eval(task, sft.policy, rm.reward_model, config.beta, [config.beta])
    base = {"config": config, "task": task, "sft": sft, "rm": rm, "exact": exact}
    base["sft_metrics"] = evaluate_policy(exact, sft.policy)
    return {
        "weak": ppo_curves(seed, WEAK, base),
        "strong": ppo_curves(seed, STRONG, base),
        "best_of_n": best_of_n_curves(base),
    }


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


@pytest.mark.xfail(
    reason="on the quick config PPO's gold reward falls from the first update on seeds 0 "
    "and 2 (see the module docstring)",
    strict=False,
)
def test_ppo_gold_peaks_before_it_falls(seed_runs):
    gold = seed_runs["weak"]["gold"]
    peak = int(np.argmax(gold))
    assert 0 < peak < len(gold) - 1 and gold[peak] > gold[0] + 0.005, np.round(gold, 3)
