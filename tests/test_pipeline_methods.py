"""The RL and preference stages of the pipeline on the quick config.

Learning tests, measured exactly by enumeration (:mod:`rlhf_toy.pipeline.evaluate`): each
RL method raises the proxy and moves towards ``pi* = pi_sft exp(r_RM / beta) / Z``
(``kl_to_optimum`` down) over seeds; every offline preference loss falls on the
comparisons; best-of-n's exact distribution sums to one and obeys the
``log n - (n - 1) / n`` bound; rejection-sampling fine-tuning moves towards best-of-n.
The preference-loss chain rule through the GPT is checked against float64 central
differences, and bad options and non-finite rewards fail with the stage and step named.
"""

from __future__ import annotations

import numpy as np
import pytest

from rlhf_toy.best_of_n import best_of_n_kl_bound
from rlhf_toy.gpt import GPT, GPTConfig
from rlhf_toy.kl import kl_divergence
from rlhf_toy.pipeline.common import task_policy
from rlhf_toy.pipeline.config import PipelineConfig
from rlhf_toy.pipeline.dpo import (
    DEFAULTS as DPO_DEFAULTS,
)
from rlhf_toy.pipeline.dpo import (
    LOSSES,
    pair_losses,
    preference_loss_and_grads,
    sequence_logp,
)
from rlhf_toy.pipeline.evaluate import (
    build_exact_eval,
    evaluate_logp,
    evaluate_policy,
    policy_logp,
)
from rlhf_toy.pipeline.methods import METHODS, MethodResult, check_method_options
from rlhf_toy.pipeline.policy import GPTRewardModel
from rlhf_toy.pipeline.reward_model import train_reward_model
from rlhf_toy.pipeline.rl_common import RewardTracker, copy_model
from rlhf_toy.pipeline.run import stage_rng
from rlhf_toy.pipeline.sft import train_sft
from rlhf_toy.tasks import get_task

RL_METHODS = ("ppo", "grpo", "rloo", "online_dpo")


@pytest.fixture(scope="module")
def base():
    """SFT, reward model and exact tables of the quick config, built once."""
    config = PipelineConfig.quick()
    task = get_task(config.task)
    sft = train_sft(task, config, stage_rng(config.seed, "sft"))
    rm = train_reward_model(task, config, sft.model, stage_rng(config.seed, "reward_model"))
    ev = build_exact_eval(task, sft.policy, rm.reward_model, config.beta, [config.beta])
    return {
        "config": config,
        "task": task,
        "sft": sft.model,
        "rm": rm.reward_model,
        "comparisons": rm.train,
        "exact": ev,
        "sft_metrics": evaluate_policy(ev, sft.policy),
    }


def run(base, name, seed, **options):
    config = base["config"]
    if options:
        config = config.replace(method_options={name: options})
    sft_before = {k: p.copy() for k, p in base["sft"].params.items()}
    result = METHODS[name](
        base["task"], config, base["sft"], base["rm"], base["comparisons"], seed,
        exact=base["exact"],
    )  # fmt: skip
    for k, p in base["sft"].params.items():
        assert np.array_equal(p, sft_before[k]), f"{name} modified the SFT model ({k})"
    assert isinstance(result, MethodResult)
    return result


def metrics(base, result):
    if result.logp is not None:
        return evaluate_logp(base["exact"], result.logp)
    return evaluate_policy(base["exact"], result.policy)


def test_methods_are_the_pipeline_names():
    assert set(METHODS) == {"ppo", "dpo", "online_dpo", "grpo", "rloo", "best_of_n", "rft"}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", RL_METHODS)
def test_rl_method_raises_proxy_and_approaches_the_optimum(base, name, seed):
    result = run(base, name, seed)
    m, m0 = metrics(base, result), base["sft_metrics"]
    assert m["proxy"] > m0["proxy"] + 0.03, (m["proxy"], m0["proxy"])
    assert m["kl_to_optimum"] < m0["kl_to_optimum"] - 0.2, (
        m["kl_to_optimum"],
        m0["kl_to_optimum"],
    )
    h = result.history
    assert len({len(v) for v in h.values()}) == 1
    assert len(h["step"]) == base["config"].rl_steps
    for key in ("gold", "proxy", "length", "entropy"):
        assert np.all(np.isfinite(h[key])), key
    # the sampled proxy of the last steps exceeds that of the first ones
    assert h["proxy"][-5:].mean() > h["proxy"][:5].mean()


def test_ppo_logs_the_diagnostics(base):
    result = run(base, "ppo", 0, eval_every=5, steps=10)
    h = result.history
    for key in ("approx_kl", "clipfrac", "explained_variance", "entropy", "kl", "gold",
                "proxy", "length", "value_loss", "beta"):  # fmt: skip
        assert key in h and np.all(np.isfinite(h[key])), key
    assert np.all(h["approx_kl"] >= 0) and np.all((0 <= h["clipfrac"]) & (h["clipfrac"] <= 1))
    assert np.all(h["entropy"] > 0)
    # exact columns on steps 4 and 9 only; the last one is the final policy's metrics
    assert np.flatnonzero(np.isfinite(h["exact_gold"])).tolist() == [4, 9]
    m = metrics(base, result)
    for key in ("gold", "proxy", "kl", "kl_to_optimum", "length"):
        assert h[f"exact_{key}"][-1] == pytest.approx(m[key], abs=1e-12), key
    assert np.all(h["beta"] == base["config"].beta)


def test_ppo_options_adaptive_kl_and_k3(base):
    target, horizon = 0.05, 100
    result = run(base, "ppo", 0, steps=4, adaptive_kl=True, kl_target=target,
                 kl_horizon=horizon, kl_estimator="k3")  # fmt: skip
    h, config = result.history, base["config"]
    B = config.rl_batch_size * config.group_size
    # Ziegler et al.'s rule, step by step, from the logged KL of each step
    expected = [config.beta]
    for kl in h["kl"]:
        expected.append(expected[-1] * (1 + np.clip(kl / target - 1, -0.2, 0.2) * B / horizon))
    np.testing.assert_allclose(h["beta"], expected[:-1], rtol=1e-12)
    assert result.extra["beta_final"] == pytest.approx(expected[-1], rel=1e-12)
    assert len(set(np.round(h["beta"], 12))) == 4  # it moved at every step


def test_dr_grpo_option_moves_towards_the_optimum(base):
    m = metrics(base, run(base, "grpo", 0, dr_grpo=True))
    assert m["kl_to_optimum"] < base["sft_metrics"]["kl_to_optimum"] - 0.2


def test_missing_eos_penalty_is_subtracted(base):
    task, rm = base["task"], base["rm"]
    y = np.array([[0, 1, 2, 3], [2, task.eos_id, task.pad_id, task.pad_id]])
    m = np.array([[1.0, 1, 1, 1], [1, 1, 0, 0]])
    x = task.eval_prompts()[:2]
    plain = RewardTracker(task, rm)(x, y, m)
    tracked = RewardTracker(task, rm, missing_eos_penalty=0.7)
    penalised = tracked(x, y, m)
    np.testing.assert_allclose(penalised, plain - np.array([0.7, 0.0]))
    assert tracked.last["no_eos"] == 0.5
    assert tracked.last["proxy"] == pytest.approx(plain.mean())
    assert tracked.last["gold"] == pytest.approx(task.gold_rewards(x, y, m).mean())


@pytest.mark.parametrize("loss", LOSSES)
def test_every_offline_preference_loss_falls(base, loss):
    """The mean loss over a fixed set of 512 comparisons falls after 20 steps."""
    task, comparisons = base["task"], base["comparisons"].subset(slice(0, 512))
    result = run(base, "dpo", 0, loss=loss)
    ref = task_policy(base["sft"], task)
    x, yw, mw, yl, ml = comparisons.as_tuple()
    rw, rl = sequence_logp(ref, x, yw, mw), sequence_logp(ref, x, yl, ml)
    opts = {**DPO_DEFAULTS, "loss": loss}
    beta = base["config"].beta

    def full_loss(policy):
        pw, pl = sequence_logp(policy, x, yw, mw), sequence_logp(policy, x, yl, ml)
        return pair_losses(loss, pw, pl, rw, rl, mw.sum(1), ml.sum(1), beta, opts)[0].mean()

    before, after = full_loss(ref), full_loss(result.policy)
    assert after < before, (before, after)
    h = result.history
    assert np.all(np.isfinite(h["loss"])) and len(h["step"]) == base["config"].rl_steps


def test_dpo_moves_towards_the_optimum(base):
    m = metrics(base, run(base, "dpo", 0, steps=40, lr=3e-3))
    assert m["kl_to_optimum"] < base["sft_metrics"]["kl_to_optimum"] - 0.2
    assert m["proxy"] > base["sft_metrics"]["proxy"]


@pytest.mark.parametrize("loss", ["dpo", "simpo", "kto"])
def test_preference_gradient_matches_central_differences(loss):
    task = get_task("length")
    cfg = GPTConfig(task.vocab_size, n_ctx=9, n_embd=8, n_layer=1, n_head=2)
    policy = task_policy(GPT(cfg, seed=3, dtype=np.float64), task)
    rng = np.random.default_rng(0)
    x = task.sample_prompts(3, rng)
    y, m = policy.sample(x, 2, rng)
    y, m = task.responses_from_tokens(np.where(m > 0, y, task.pad_id))
    pairs = (x, y[0::2], m[0::2], y[1::2], m[1::2])
    ref_c, ref_r = rng.normal(-3, 1, 3), rng.normal(-3, 1, 3)
    opts = {**DPO_DEFAULTS, "loss": loss}

    def f():
        return preference_loss_and_grads(policy, pairs, ref_c, ref_r, loss, 0.5, opts)[0]

    _, grads, _ = preference_loss_and_grads(policy, pairs, ref_c, ref_r, loss, 0.5, opts)
    params = policy.params
    for name in ("wte", "h.0.attn.c_attn.weight", "ln_f.bias"):
        for idx in [tuple(rng.integers(0, s) for s in params[name].shape) for _ in range(3)]:
            old = params[name][idx]
            params[name][idx] = old + 1e-6
            up = f()
            params[name][idx] = old - 1e-6
            down = f()
            params[name][idx] = old
            assert grads[name][idx] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("n", [1, 2, 4, 16])
def test_best_of_n_is_an_exact_distribution_within_the_kl_bound(base, n):
    result = run(base, "best_of_n", 0, n=n)
    assert result.policy is None and result.history is None
    pi = np.exp(result.logp)
    np.testing.assert_allclose(pi.sum(axis=1), 1.0, atol=1e-12)
    pi_sft = np.exp(base["exact"].logp_sft)
    kl = kl_divergence(pi, pi_sft / pi_sft.sum(1, keepdims=True))
    assert np.all(kl <= best_of_n_kl_bound(n) + 1e-12)
    assert result.extra["kl_exact"] == pytest.approx(kl.mean())
    m = metrics(base, result)
    if n == 1:
        np.testing.assert_allclose(pi, pi_sft, atol=1e-9)
    else:
        assert m["proxy"] > base["sft_metrics"]["proxy"]


def test_rft_moves_towards_best_of_n(base):
    result = run(base, "rft", 0)
    bon = np.exp(run(base, "best_of_n", 0).logp)
    task, ev = base["task"], base["exact"]
    pi = np.exp(policy_logp(result.policy, task, ev.prompts))
    pi_sft = np.exp(ev.logp_sft)
    assert kl_divergence(bon, pi).mean() < kl_divergence(bon, pi_sft).mean()
    assert metrics(base, result)["proxy"] > base["sft_metrics"]["proxy"]
    assert result.extra["winner_proxy"] > base["sft_metrics"]["proxy"]


def test_unknown_options_fail_before_training(base):
    bad = base["config"].replace(method_options={"ppo": {"kl_coef": 0.1}})
    with pytest.raises(ValueError, match=r"method_options\['ppo'\].*kl_coef"):
        check_method_options(bad)
    with pytest.raises(ValueError, match="kl_coef"):
        run(base, "ppo", 0, kl_coef=0.1)
    with pytest.raises(ValueError, match=r"\[.loss.\] must be one of"):
        check_method_options(base["config"].replace(method_options={"dpo": {"loss": "xpo"}}))
    check_method_options(base["config"].replace(method_options={"dpo": {"loss": "ipo"}}))


class NaNRewardModel:
    """Scores every response NaN after ``after`` calls."""

    def __init__(self, rm, after):
        self.rm, self.after, self.calls = rm, after, 0
        self.model = rm.model

    def score(self, prompts, responses, mask):
        self.calls += 1
        s = self.rm.score(prompts, responses, mask)
        return s * np.nan if self.calls > self.after else s


@pytest.mark.parametrize("name", RL_METHODS)
def test_non_finite_reward_names_the_stage_and_step(base, name):
    config = base["config"].replace(method_options={name: {"steps": 5}})
    with pytest.raises(FloatingPointError, match=rf"^{name}: step 2: "):
        METHODS[name](base["task"], config, base["sft"], NaNRewardModel(base["rm"], 2),
                      base["comparisons"], 0)  # fmt: skip


def test_copy_model_copies_the_trunk_and_zeroes_new_heads(base):
    rm_model = base["rm"].model
    critic = copy_model(rm_model, heads=("value",), skip=("reward_head",))
    for k, p in critic.params.items():
        if k.startswith("value_head"):
            assert np.all(p == 0)
        else:
            assert np.array_equal(p, rm_model.params[k]) and p is not rm_model.params[k]
    assert isinstance(base["rm"], GPTRewardModel)
