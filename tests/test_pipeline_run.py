"""The run folder of ``rlhf-toy pipeline``: its files, exact reruns, Ctrl-C and NaN stops.

A tiny config (seconds) runs SFT and the reward model; a method stage registered for the
test returns the exact optimum ``pi*`` itself, whose distance to the optimum must then be
0 in ``metrics.json``.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from rlhf_toy.gpt import GPT
from rlhf_toy.pipeline import run as run_module
from rlhf_toy.pipeline import sft as sft_module
from rlhf_toy.pipeline.cli import main_pipeline, summary_table
from rlhf_toy.pipeline.config import METHODS, PipelineConfig
from rlhf_toy.pipeline.run import STAGES, StageOutput, register_stage, run_pipeline


def tiny_config(**changes) -> PipelineConfig:
    settings = dict(
        methods=(),
        n_embd=16,
        n_layer=1,
        n_head=2,
        n_demonstrations=128,
        sft_steps=8,
        sft_batch_size=16,
        sft_warmup_steps=2,
        n_comparisons=64,
        rm_steps=6,
        rm_batch_size=16,
        rm_warmup_steps=2,
        n_frontier=5,
    )
    settings.update(changes)
    return PipelineConfig.quick(**settings)


def optimum_stage(run):
    """A stand-in method: the exact optimum pi* of the run (evaluated from its table)."""
    rng = run.rng("best_of_n")
    policy = run.policy(run.copy_sft_model(heads=("value",)))
    assert policy.max_new_tokens == run.task.max_response_len
    assert "value_head.weight" in policy.params and np.all(policy.params["value_head.weight"] == 0)
    return StageOutput(
        logp=run.exact.log_pi_star,
        history={"step": np.arange(3), "loss": rng.random(3)},
        checkpoint=run.copy_sft_model(),
        extra={"note_value": 1.0},
    )


def strip_seconds(d):
    if isinstance(d, dict):
        return {k: strip_seconds(v) for k, v in d.items() if k != "seconds"}
    return d


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = tiny_config(methods=("best_of_n",))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(STAGES, "best_of_n", optimum_stage)
        metrics = run_pipeline(config, out)
    return out, config, metrics


@pytest.mark.slow
def test_run_folder_layout(finished):
    out, config, metrics = finished
    for name in ("config.json", "metrics.json", "eval_prompts.json", "README.md",
                 "frontier.png", "training.png"):  # fmt: skip
        assert (out / name).is_file(), name
    for name in ("sft", "reward_model", "best_of_n"):
        GPT.load(out / "checkpoints" / f"{name}.safetensors")
    rm = GPT.load(out / "checkpoints" / "reward_model.safetensors")
    assert "reward" in rm.heads and "reward_head.weight" in rm.params
    with (out / "history" / "sft.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == config.sft_steps and {"step", "loss", "grad_norm", "lr"} <= set(rows[0])
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert PipelineConfig.from_json(out / "config.json") == config
    prompts = json.loads((out / "eval_prompts.json").read_text())
    assert len(prompts) == 15 and all(len(p) == 5 for p in prompts)
    readme = (out / "README.md").read_text()
    assert "Status: **complete**" in readme and "checkpoints/sft.safetensors" in readme


def test_metrics_contract(finished):
    _, config, metrics = finished
    assert metrics["task"] == "length" and metrics["beta"] == config.beta
    assert metrics["status"] == "complete" and metrics["unfinished"] == []
    assert set(metrics["methods"]) == {"sft", "best_of_n"}
    for m in metrics["methods"].values():
        assert {"gold", "proxy", "kl", "kl_to_optimum", "length", "seconds"} <= set(m)
    assert set(metrics["optimum"]) == {"gold", "proxy", "kl"}
    assert metrics["methods"]["sft"]["kl"] == pytest.approx(0.0, abs=1e-12)
    star = metrics["methods"]["best_of_n"]
    assert star["kl_to_optimum"] == pytest.approx(0.0, abs=1e-10)  # pi* is at the optimum
    assert star["kl"] == pytest.approx(metrics["optimum"]["kl"])
    assert star["gold"] == pytest.approx(metrics["optimum"]["gold"])
    assert star["note_value"] == 1.0
    assert len(metrics["frontier"]["beta"]) == config.n_frontier
    table = summary_table(metrics)
    assert "best_of_n" in table and "pi* (exact)" in table


@pytest.mark.slow
def test_rerun_from_config_reproduces_metrics(finished, tmp_path):
    out, _, metrics = finished
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(STAGES, "best_of_n", optimum_stage)
        again = run_pipeline(PipelineConfig.from_json(out / "config.json"), tmp_path / "again")
    assert strip_seconds(again) == strip_seconds(metrics)  # bit for bit but the wall clock


def test_unregistered_method_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.delitem(STAGES, "ppo")
    with pytest.raises(ValueError, match="no stage registered for \\['ppo'\\]"):
        run_pipeline(tiny_config(methods=("ppo",)), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written, nothing trained


def test_register_stage_checks_the_name():
    with pytest.raises(ValueError, match="stage name must be one of"):
        register_stage("sft")
    with pytest.raises(ValueError, match="stage name must be one of"):
        register_stage("magic")


def test_ctrl_c_leaves_a_readable_folder(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "train_reward_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tiny_config(), tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["unfinished"] == ["reward_model"]
    assert (tmp_path / "checkpoints" / "sft.safetensors").is_file()
    readme = (tmp_path / "README.md").read_text()
    assert "interrupted" in readme and "Did not finish: reward_model" in readme


def test_non_finite_loss_names_stage_and_step(tmp_path, monkeypatch):
    real = sft_module.sft_loss_and_grads
    calls = {"n": 0}

    def poisoned(*args):
        loss, grads = real(*args)
        calls["n"] += 1
        return (np.nan if calls["n"] == 4 else loss), grads

    monkeypatch.setattr(sft_module, "sft_loss_and_grads", poisoned)
    with pytest.raises(FloatingPointError, match="sft: non-finite loss at step 3"):
        run_pipeline(tiny_config(), tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "step 3" in metrics["error"]
    assert metrics["unfinished"] == ["sft", "reward_model"]


@pytest.mark.slow
def test_every_method_has_a_stage():
    assert set(STAGES) == set(METHODS) - {"sft"}


def test_cli_exit_codes(tmp_path, capsys, monkeypatch):
    assert main_pipeline(["--beta", "-1", "--out", str(tmp_path / "a")]) == 2
    assert "beta must be > 0" in capsys.readouterr().err
    assert main_pipeline(["--methods", "magic", "--out", str(tmp_path / "b")]) == 2
    with monkeypatch.context() as mp:
        mp.delitem(STAGES, "ppo")
        assert main_pipeline(["--methods", "ppo", "--quick", "--out", str(tmp_path / "c")]) == 2
    assert "no stage registered" in capsys.readouterr().err
    config = tiny_config()
    config.to_json(tmp_path / "config.json")
    out = tmp_path / "d"
    code = main_pipeline(["--config", str(tmp_path / "config.json"), "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "sft" in printed and "pi* (exact)" in printed
    assert PipelineConfig.from_json(out / "config.json") == config
