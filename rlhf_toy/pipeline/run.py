"""The end-to-end run: SFT -> reward model -> each method, evaluated exactly, written to a
run folder (chapter, "The RLHF Pipeline").

Order of a run (one seed; each stage draws from its own stream derived from it):

1. validate the config (before any training) and write ``config.json`` and
   ``eval_prompts.json``;
2. ``sft``: supervised fine-tuning on demonstrations (:mod:`.sft`);
3. ``reward_model``: Bradley-Terry on labelled comparisons of SFT samples
   (:mod:`.reward_model`), then the exact tables of the evaluation (:mod:`.evaluate`);
4. each method of ``config.methods``, a function registered in :data:`STAGES` (see
   :func:`register_stage`), evaluated exactly against ``pi_sft`` and ``pi*``;
5. ``metrics.json``, figures and ``README.md``.

The run folder::

    RUN/config.json             every setting; --config reruns it
    RUN/metrics.json            {"task", "beta", "methods": {NAME: {...}}, "optimum": {...}, ...}
    RUN/eval_prompts.json       the evaluation prompts (token ids)
    RUN/checkpoints/NAME.safetensors   sft, reward_model and every trained policy (GPT.load)
    RUN/history/NAME.csv        per-step curves of each stage
    RUN/frontier.png, RUN/training.png
    RUN/README.md               what is where, and what did not finish

Ctrl-C or a non-finite loss leaves a readable folder: ``metrics.json`` and ``README.md``
with what finished, ``"status"`` set to ``"interrupted"`` or ``"failed"`` and the stages
that did not run listed; the exception is then re-raised.
"""

from __future__ import annotations

import csv
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlhf_toy.gpt import GPT
from rlhf_toy.tasks import get_task

from . import methods
from .common import task_policy
from .config import METHODS, PipelineConfig
from .evaluate import ExactEval, build_exact_eval, evaluate_logp, evaluate_policy, optimum_metrics
from .figures import plot_frontier, plot_training
from .policy import GPTPolicy
from .reward_model import RewardModelResult, train_reward_model
from .sft import SFTResult, train_sft

__all__ = ["STAGES", "Run", "StageOutput", "register_stage", "run_pipeline", "stage_rng"]

#: Betas of the exact frontier of pi*: from nearly pi_sft to nearly the argmax of r_RM.
FRONTIER_BETAS = (1e-2, 1e2)


@dataclass
class StageOutput:
    """What a method stage returns; one of ``policy`` or ``logp`` is required."""

    policy: GPTPolicy | None = None  # a trained GPT policy, enumerated for the evaluation
    logp: np.ndarray | None = None  # or (X, N) log pi(y|x) over ev.responses (e.g. best-of-n)
    history: dict | None = None  # per-step arrays of equal length -> history/NAME.csv
    checkpoint: GPT | None = None  # saved as checkpoints/NAME.safetensors
    extra: dict = field(default_factory=dict)  # JSON-ready numbers for metrics.json


#: Registered method stages: name -> function(run) -> StageOutput.
STAGES: dict[str, Callable] = {}


def register_stage(name: str):
    """Decorator registering ``fn(run: Run) -> StageOutput`` as the stage of method ``name``.

    ``name`` must be one of :data:`rlhf_toy.pipeline.config.METHODS` (not ``"sft"``). The
    function reads ``run.config``, ``run.task``, ``run.sft`` (its ``model`` and
    ``policy`` are the frozen reference: copy before training), ``run.rm`` and
    ``run.exact``, and draws randomness from ``run.rng(name)`` only.

    Parameters
    ----------
    name : str

    Returns
    -------
    callable
        The decorator; it returns ``fn`` unchanged.
    """
    if name not in METHODS or name == "sft":
        raise ValueError(f"stage name must be one of {METHODS[1:]}, got {name!r}")

    def deco(fn):
        STAGES[name] = fn
        return fn

    return deco


def method_stage(name: str) -> Callable:
    """The stage of method ``name``: its :data:`~rlhf_toy.pipeline.methods.METHODS` entry
    called with the run's task, config, SFT model, reward model and comparisons."""
    train = methods.METHODS[name]

    def stage(run: Run) -> StageOutput:
        r = train(run.task, run.config, run.sft.model, run.rm.reward_model, run.rm.train,
                  run.rng(name), run.verbose, exact=run.exact)
        return StageOutput(policy=r.policy, logp=r.logp, history=r.history,
                           checkpoint=r.model, extra=r.extra)

    stage.__name__ = stage.__qualname__ = f"{name}_stage"
    return stage


def stage_rng(seed: int, stage: str) -> np.random.Generator:
    """The stream of ``stage``: ``default_rng([seed, crc32(stage)])``.

    Independent of the order and the set of stages that run.

    Parameters
    ----------
    seed : int
        The run's seed.
    stage : str

    Returns
    -------
    numpy.random.Generator
    """
    return np.random.default_rng([int(seed), zlib.crc32(stage.encode())])


@dataclass
class Run:
    """State shared by the stages of one run."""

    config: PipelineConfig
    out: Path
    verbose: bool = False
    task: object = None
    sft: SFTResult | None = None
    rm: RewardModelResult | None = None
    exact: ExactEval | None = None
    metrics: dict = field(default_factory=dict)
    done: list = field(default_factory=list)  # stages finished, in order

    def rng(self, stage: str) -> np.random.Generator:
        """A fresh stream for ``stage`` (same seed and stage, same numbers)."""
        return stage_rng(self.config.seed, stage)

    def policy(self, model: GPT) -> GPTPolicy:
        """``model`` as a policy over the task's responses (:func:`.common.task_policy`)."""
        return task_policy(model, self.task)

    def copy_sft_model(self, heads=()) -> GPT:
        """A trainable copy of the SFT network (with extra heads, zero-initialised)."""
        src = self.sft.model
        model = GPT(src.config, seed=0, dtype=src.dtype, heads=heads)
        for name, p in src.params.items():
            model.params[name][...] = p
        return model


def check_stages(methods) -> None:
    """``ValueError`` naming each method of ``methods`` without a registered stage."""
    missing = [m for m in methods if m != "sft" and m not in STAGES]
    if missing:
        have = ", ".join(sorted(STAGES)) or "none yet"
        raise ValueError(f"methods: no stage registered for {missing}; registered: {have}")


def run_pipeline(config: PipelineConfig, out, verbose: bool = False) -> dict:
    """Run the pipeline of ``config`` and write the run folder ``out``.

    Parameters
    ----------
    config : PipelineConfig
    out : str or Path
        The run folder (created; files of an earlier run there are overwritten).
    verbose : bool, default False
        Progress bars and one line per finished stage.

    Returns
    -------
    dict
        The content of ``metrics.json``.

    Raises
    ------
    ValueError
        For a bad config or a method without a stage, before any training.
    FloatingPointError
        A non-finite loss, naming the stage and step (the folder notes it).
    KeyboardInterrupt
        Re-raised after the folder is written.
    """
    if not isinstance(config, PipelineConfig):
        raise TypeError(f"config must be a PipelineConfig, got {type(config).__name__}")
    config.validate()
    methods.check_method_options(config)
    check_stages(config.methods)
    out = Path(out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "history").mkdir(exist_ok=True)
    run = Run(
        config=config, out=out, verbose=verbose, task=get_task(config.task, **config.task_options)
    )
    config.to_json(out / "config.json")
    prompts = run.task.eval_prompts()
    (out / "eval_prompts.json").write_text(json.dumps(prompts.tolist()) + "\n")
    run.metrics = {
        "task": config.task,
        "beta": config.beta,
        "methods": {},
        "optimum": {},
        "status": "running",
    }
    planned = ["sft", "reward_model", *config.methods]
    try:
        _run_stages(run)
        run.metrics["status"] = "complete"
    except KeyboardInterrupt:
        _finish(run, planned, "interrupted", "interrupted by the user (Ctrl-C)")
        raise
    except Exception as e:
        _finish(run, planned, "failed", f"{type(e).__name__}: {e}")
        raise
    _finish(run, planned, "complete", None)
    return run.metrics


def _run_stages(run: Run) -> None:
    cfg, task, out = run.config, run.task, run.out
    # ---- Stage 1: SFT
    t0 = time.perf_counter()
    run.sft = train_sft(task, cfg, run.rng("sft"), verbose=run.verbose)
    sft_seconds = time.perf_counter() - t0
    run.sft.model.save(out / "checkpoints" / "sft.safetensors")
    _write_history(out / "history" / "sft.csv", run.sft.history)
    run.metrics["sft"] = {
        "final_loss": float(np.mean(run.sft.history["loss"][-max(1, cfg.sft_steps // 10) :])),
        "demonstrator_loss": run.sft.demonstrator_loss,
    }
    run.done.append("sft")
    _say(
        run,
        f"sft: loss {run.metrics['sft']['final_loss']:.4f} "
        f"(demonstrator {run.sft.demonstrator_loss:.4f}), {sft_seconds:.1f} s",
    )

    # ---- Stage 2: reward model, then the exact tables
    t0 = time.perf_counter()
    run.rm = train_reward_model(task, cfg, run.sft.model, run.rng("reward_model"), run.verbose)
    rm_seconds = time.perf_counter() - t0
    run.rm.model.save(out / "checkpoints" / "reward_model.safetensors")
    _write_history(out / "history" / "reward_model.csv", run.rm.history)
    run.metrics["reward_model"] = {
        "heldout_accuracy": run.rm.accuracy,
        "final_loss": float(np.mean(run.rm.history["loss"][-max(1, cfg.rm_steps // 10) :])),
        "seconds": rm_seconds,
    }
    betas = np.geomspace(FRONTIER_BETAS[1], FRONTIER_BETAS[0], cfg.n_frontier)
    run.exact = build_exact_eval(task, run.sft.policy, run.rm.reward_model, cfg.beta, betas)
    run.metrics["optimum"] = optimum_metrics(run.exact)
    run.metrics["frontier"] = run.exact.frontier
    run.metrics["methods"]["sft"] = {
        **evaluate_policy(run.exact, run.sft.policy),
        "seconds": sft_seconds,
    }
    run.done.append("reward_model")
    acc = run.rm.accuracy
    _say(
        run,
        f"reward model: held-out accuracy {acc['labels']:.3f} (labels), "
        f"{acc['gold']:.3f} (gold), {rm_seconds:.1f} s",
    )

    # ---- each method
    for name in cfg.methods:
        t0 = time.perf_counter()
        result = STAGES[name](run)
        seconds = time.perf_counter() - t0
        if result.logp is not None:
            m = evaluate_logp(run.exact, result.logp)
        elif result.policy is not None:
            m = evaluate_policy(run.exact, result.policy)
        else:
            raise ValueError(f"stage {name!r} returned neither a policy nor logp")
        run.metrics["methods"][name] = {**m, **result.extra, "seconds": seconds}
        if result.history is not None:
            _write_history(out / "history" / f"{name}.csv", result.history)
        if result.checkpoint is not None:
            result.checkpoint.save(out / "checkpoints" / f"{name}.safetensors")
        run.done.append(name)
        _say(
            run,
            f"{name}: gold {m['gold']:.3f}, proxy {m['proxy']:.3f}, kl {m['kl']:.3f}, "
            f"{seconds:.1f} s",
        )


def _say(run: Run, line: str) -> None:
    if run.verbose:
        print(line, flush=True)


def _write_history(path: Path, history: dict) -> None:
    """One column per key (``step`` first), one row per step."""
    keys = sorted(history, key=lambda k: (k != "step", k))
    cols = [np.asarray(history[k]).ravel() for k in keys]
    n = {len(c) for c in cols}
    if len(n) != 1:
        raise ValueError(f"history columns of {path.stem} differ in length: {sorted(n)}")
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for row in zip(*cols, strict=True):
            w.writerow(
                [repr(float(v)) if isinstance(v, float | np.floating) else int(v) for v in row]
            )


def _finish(run: Run, planned, status: str, error: str | None) -> None:
    """Write metrics.json, the figures (if possible) and README.md."""
    run.metrics["status"] = status
    unfinished = [s for s in planned if s not in run.done]
    run.metrics["unfinished"] = unfinished
    if error is not None:
        run.metrics["error"] = error
    (run.out / "metrics.json").write_text(json.dumps(run.metrics, indent=2, sort_keys=True) + "\n")
    figures = []
    if run.exact is not None:
        for name, fig in (
            ("frontier.png", plot_frontier(run.metrics)),
            ("training.png", plot_training(run.out / "history")),
        ):
            fig.savefig(run.out / name, dpi=120)
            figures.append(name)
    (run.out / "README.md").write_text(_readme(run, status, unfinished, error, figures))


def _readme(run: Run, status, unfinished, error, figures) -> str:
    m = run.metrics
    lines = [
        f"# Pipeline run: task `{m['task']}`, beta {m['beta']}, seed {run.config.seed}",
        "",
        f"Status: **{status}**." + (f" Error: `{error}`." if error else ""),
    ]
    if unfinished:
        lines.append(f"Did not finish: {', '.join(unfinished)}.")
    lines += [
        "",
        "| file | what |",
        "| --- | --- |",
        "| `config.json` | every setting; `rlhf-toy pipeline --config config.json` reruns it |",
        "| `metrics.json` | exact metrics per method (mean over `eval_prompts.json`): gold "
        "`E_pi r*`, proxy `E_pi r_RM`, kl `KL(pi||pi_sft)`, kl_to_optimum `KL(pi||pi*)`, "
        "length; the optimum `pi*` at beta and its frontier |",
        "| `eval_prompts.json` | the evaluation prompts (token ids before the response) |",
    ]
    for ckpt in sorted((run.out / "checkpoints").glob("*.safetensors")):
        lines.append(f"| `checkpoints/{ckpt.name}` | safetensors, `GPT.load` reads it |")
    for hist in sorted((run.out / "history").glob("*.csv")):
        lines.append(f"| `history/{hist.name}` | per-step curves of {hist.stem} |")
    for fig in figures:
        lines.append(f"| `{fig}` | figure |")
    if m.get("methods"):
        lines += [
            "",
            "| method | gold | proxy | KL | KL to pi* | length | seconds |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, r in m["methods"].items():
            lines.append(
                f"| {name} | {r['gold']:.3f} | {r['proxy']:.3f} | {r['kl']:.3f} | "
                f"{r['kl_to_optimum']:.3f} | {r['length']:.2f} | {r['seconds']:.1f} |"
            )
    return "\n".join(lines) + "\n"


for _name in methods.METHODS:  # every method of methods.py is a stage of the run
    register_stage(_name)(method_stage(_name))
