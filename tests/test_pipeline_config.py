"""The pipeline's config: every setting round-trips through JSON, bad options fail up front."""

from __future__ import annotations

import json

import pytest

from rlhf_toy.pipeline.config import DEFAULT_METHODS, METHODS, PipelineConfig


def test_defaults_and_quick():
    c = PipelineConfig()
    assert c.task == "length" and c.methods == DEFAULT_METHODS and c.beta > 0
    assert set(DEFAULT_METHODS) <= set(METHODS)
    q = PipelineConfig.quick(seed=3)
    assert q.seed == 3 and q.sft_steps < c.sft_steps and q.rm_steps < c.rm_steps


def test_json_round_trip(tmp_path):
    c = PipelineConfig.quick(
        task="sycophancy",
        task_options={"agreement_bias": 2.0},
        methods=("dpo", "grpo"),
        beta=0.05,
        method_options={"dpo": {"loss": "ipo"}},
    )
    path = tmp_path / "config.json"
    c.to_json(path)
    d = json.loads(path.read_text())
    assert d["methods"] == ["dpo", "grpo"] and d["task_options"] == {"agreement_bias": 2.0}
    assert PipelineConfig.from_json(path) == c
    assert PipelineConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"task": "poetry"}, "task must be one of"),
        ({"methods": ("ppo", "magic")}, "methods: unknown method 'magic'"),
        ({"methods": ("ppo", "ppo")}, "methods must not repeat"),
        ({"beta": 0.0}, "beta must be > 0"),
        ({"beta": -1.0}, "beta must be > 0"),
        ({"beta": float("nan")}, "beta must be > 0"),
        ({"n_ctx": 8}, "n_ctx=8 is too short for task 'length'"),
        ({"task": "sycophancy", "n_ctx": 9}, "n_ctx=9 is too short for task 'sycophancy'"),
        ({"group_size": 1}, "group_size must be >= 2"),
        ({"group_size": 2.5}, "group_size must be an integer"),
        ({"sft_steps": 0}, "sft_steps must be >= 1"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"rm_holdout": 1.0}, "rm_holdout must be in"),
        ({"n_embd": 30}, "n_embd must be divisible by n_head"),
        ({"sft_lr": 0}, "sft_lr must be > 0"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
        ({"task_options": {"length_bias": -1}}, "length_bias must be >= 0"),
        ({"task_options": {"colour": 1}}, "bad option for task 'length'"),
        ({"method_options": {"magic": {}}}, "method_options: unknown method"),
        ({"sft_warmup_steps": 500, "sft_steps": 10}, "sft_warmup_steps must be <= sft_steps"),
    ],
)
def test_bad_options_name_the_option(changes, match):
    with pytest.raises(ValueError, match=match):
        PipelineConfig(**changes)


def test_unknown_key_in_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"task": "length", "bogus": 1}))
    with pytest.raises(ValueError, match="unknown config option 'bogus'"):
        PipelineConfig.from_json(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        PipelineConfig.from_json(path)
