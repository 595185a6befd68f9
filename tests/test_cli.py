"""The ``rlhf-toy`` command: help, version, and the figures it writes."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from rlhf_toy import __version__
from rlhf_toy.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "figures" in out and "bench" in out


@pytest.mark.parametrize("sub", ["figures", "bench"])
def test_subcommand_help(sub, capsys):
    with pytest.raises(SystemExit) as stop:
        main([sub, "--help"])
    assert stop.value.code == 0
    assert sub in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "rlhf_toy.cli", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert __version__ in out


def test_figures_list_and_unknown_name(capsys, tmp_path):
    assert main(["figures", "--list"]) == 0
    listed = capsys.readouterr().out.split("\n")
    assert len([line for line in listed if line.strip()]) >= 1
    assert main(["figures", "--out", str(tmp_path), "--only", "no_such_figure"]) == 2
    assert "unknown figure" in capsys.readouterr().err


def test_bench_sweeps_quick_writes_its_table(tmp_path, capsys):
    out = tmp_path / "sweeps.json"
    assert main(["bench", "sweeps", "--quick", "--repeats", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    names = [row["name"] for row in report["results"]]
    assert any(name.startswith("frontier") for name in names)
    assert any(name.startswith("best-of-n") for name in names)
    assert report["machine"]["numpy"] == np.__version__
    assert "frontier" in capsys.readouterr().out


def test_bench_gpt_quick_writes_its_table(tmp_path, capsys):
    out = tmp_path / "gpt.json"
    args = ["bench", "gpt", "--quick", "--repeats", "3", "--no-torch", "--json", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    rows = {(r["config"], r["measurement"]): r for r in report["results"]}
    for config in ("tiny", "medium"):
        for what in ("train_step", "forward", "train_matmuls"):
            assert rows[(config, what)]["numpy"] > 0
            assert rows[(config, what)]["torch"] is None  # --no-torch
    assert rows[("tiny", "sample")]["unit"] == "tokens/s"
    # the products alone are a floor under the whole step (best of 3: robust to a hiccup)
    floor, step = rows[("tiny", "train_matmuls")], rows[("tiny", "train_step")]
    assert floor["numpy_best"] < step["numpy_best"]
    assert report["machine"]["rlhf_toy_threads"] >= 1
    assert "train_matmuls" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_pipeline_quick_writes_steps_and_stages(tmp_path, capsys):
    out, trl = tmp_path / "pipeline.json", tmp_path / "trl.json"
    trl.write_text(json.dumps({"dpo_step_ms": 40.0, "grpo_step_ms": 50.0, "versions": {},
                               "machine": {"date": "2026-12-02"}}))  # as bench_trl.py writes
    args = ["bench", "pipeline", "--quick", "--repeats", "1", "--json", str(out), "--trl", str(trl)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["dpo_step_ms"] > 0 and report["grpo_step_ms"] > 0
    assert report["trl"]["dpo_ratio"] == report["dpo_step_ms"] / 40.0
    assert report["trl"]["grpo_ratio"] == report["grpo_step_ms"] / 50.0
    stages = report["stage_seconds"]
    assert {"sft", "reward_model", "ppo", "dpo", "grpo", "rloo", "best_of_n"} <= set(stages)
    assert stages["total"] >= sum(s for name, s in stages.items() if name != "total")
    assert "pipeline (--quick)" in capsys.readouterr().out


@pytest.mark.parametrize("out", ["FILE", "/proc", "/dev/null", "/proc/rlhf_toy_figures"])
def test_figures_refuses_an_unwritable_out_in_one_line(out, tmp_path, capsys):
    if out == "FILE":
        out = tmp_path / "a_file"
        out.write_text("")
    t0 = time.perf_counter()
    assert main(["figures", "--out", str(out), "--only", "bon_kl_bound", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlhf-toy figures: out ") and str(out) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert time.perf_counter() - t0 < 2.0  # refused before any experiment runs


@pytest.mark.parametrize("dpi", ["100000", "0", "-5"])
def test_figures_refuses_a_dpi_out_of_range_before_running(dpi, tmp_path, capsys):
    t0 = time.perf_counter()
    assert main(["figures", "--out", str(tmp_path), "--dpi", dpi, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "dpi must be" in err and len(err.strip().splitlines()) == 1
    assert time.perf_counter() - t0 < 2.0
    assert not list(tmp_path.iterdir())
