"""Speed of one RL training step on the numpy GPT: a DPO step and a GRPO step.

Run ``python benchmarks/bench_pipeline.py`` (``--quick`` for a smoke run). Prints a table and
writes JSON (default ``benchmarks/results/bench_pipeline.json``) with the machine, numpy's
BLAS (threadpoolctl's kernel name), the load average and every timing.

Both steps use the tiny GPT of ``bench_gpt.py`` (V=32, n_ctx=32, C=64, L=2, NH=4, float32)
through the policy adapters of :mod:`rlhf_toy.pipeline.policy` (which compute each distinct
prompt of a batch once: ``GPT.logprobs(..., shared_prefix=P)``), a separate reference model
(``GPTPolicy(..., frozen=True)``: no backward state), and AdamW:

- DPO step: 16 preference pairs, 8-token prompts, 13-token responses (right-padded, EOS,
  mask): policy log-probs of chosen and rejected (one batch of 32 rows), reference log-probs,
  :func:`rlhf_toy.preference_losses.dpo_loss` (beta 0.1), backward, AdamW;
- GRPO step: 8 prompts x 8 completions of 8 new tokens: sampling with the KV cache (each
  prompt encoded once), a reward (here a fixed function of the tokens: the pipeline's
  reward model is not part of the step), :func:`rlhf_toy.policy_gradient.grpo_advantages`,
  reference and policy log-probs, :func:`~rlhf_toy.policy_gradient.ppo_clip_loss`
  (``agg="seq_mean"``, one iteration: ``logp_old = logp``) plus ``beta * k3``
  (:func:`~rlhf_toy.policy_gradient.kl_loss`), backward, AdamW.

Each step is timed whole and by part (sampling, ref forward, policy forward, loss,
backward, optimiser); the JSON keeps the medians (``dpo_step_ms``, ``grpo_step_ms``), the
fastest run, the breakdown, and ``matmul_floor_ms``: the matrix products alone of the
policy's forward and backward plus the reference forward, on the positions the step computes
(:func:`matmul_floor_ms`).
Targets on a 2-core machine: DPO <= 13 ms, GRPO <= 17 ms (a third of a PyTorch-based
trainer's ~40 / ~50 ms for the same steps). That trainer's time depends on the machine as
much as ours: ``bench_trl.py`` times TRL's own DPO and GRPO steps on the same workloads, and
when its JSON is there (``--trl PATH``, default ``benchmarks/results/bench_trl.json``) the
table adds each step's ratio to TRL's, whose target is 1/3 (JSON: ``trl``).

``enumerate`` times :func:`rlhf_toy.gpt.enumerate_continuations` for 32 prompts x all 2801
continuations of <= 4 tokens over the 8 symbols (target: about a second).

``stage_seconds`` times one whole ``rlhf-toy pipeline`` run (``--quick`` with ``--quick``,
the default config otherwise): the wall time of each stage and of the run (targets: 60 s for
the default run, 15 s for ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _machine import loadavg, machine_info

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_pipeline.json"
TINY = {"vocab_size": 32, "n_ctx": 32, "n_embd": 64, "n_layer": 2, "n_head": 4}
#: Response alphabet of the benchmark's toy language: 7 symbols and EOS; PAD outside it.
ALLOWED, EOS, PAD = np.arange(8), 7, 31
DPO_PAIRS, DPO_PROMPT, DPO_RESPONSE, DPO_BETA = 16, 8, 13, 0.1
GRPO_PROMPTS, GRPO_GROUP, GRPO_PROMPT, GRPO_NEW, GRPO_BETA = 8, 8, 8, 8, 0.04
TARGETS_MS = {"dpo_step_ms": 13.0, "grpo_step_ms": 17.0}
#: Wall-time targets of one pipeline run, seconds.
PIPELINE_TARGET_S = {"default": 60.0, "quick": 15.0}


class Timer:
    """Accumulates wall time per named part of one step."""

    def __init__(self):
        self.parts = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.parts[name] = self.parts.get(name, 0.0) + now - self._t
        self._t = now


def _models(seed=0):
    from rlhf_toy.gpt import GPT, GPTConfig

    cfg = GPTConfig(**TINY)
    policy = GPT(cfg, seed=seed)
    reference = GPT(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    for p in policy.params.values():  # a policy that has moved away from its reference
        p += rng.normal(scale=0.01, size=p.shape).astype(p.dtype)
    return policy, reference


def _responses(rng, B, T):
    """Right-padded responses over ALLOWED, half of them ending with EOS before T."""
    lengths = rng.integers(T // 2, T + 1, size=B)
    responses = rng.choice(ALLOWED[:-1], size=(B, T))
    mask = (np.arange(T) < lengths[:, None]).astype(np.float32)
    ends = lengths < T
    responses[ends, lengths[ends] - 1] = EOS
    responses[mask == 0] = PAD
    return responses, mask


def dpo_step_fn():
    """A callable running one DPO step and returning its parts' times."""
    from rlhf_toy.optim import AdamW
    from rlhf_toy.pipeline.policy import GPTPolicy
    from rlhf_toy.preference_losses import dpo_loss

    policy_model, ref_model = _models()
    policy = GPTPolicy(policy_model, DPO_RESPONSE, ALLOWED, EOS, PAD)
    ref = GPTPolicy(ref_model, DPO_RESPONSE, ALLOWED, EOS, PAD, frozen=True)
    opt = AdamW(policy.params, lr=1e-4)
    rng = np.random.default_rng(1)
    prompts = rng.integers(0, TINY["vocab_size"], size=(DPO_PAIRS, DPO_PROMPT))
    chosen, mask_c = _responses(rng, DPO_PAIRS, DPO_RESPONSE)
    rejected, mask_r = _responses(rng, DPO_PAIRS, DPO_RESPONSE)
    prompts2 = np.concatenate([prompts, prompts])  # (2 pairs, P): chosen rows, then rejected
    responses = np.concatenate([chosen, rejected])
    mask = np.concatenate([mask_c, mask_r])
    n = DPO_PAIRS

    def step():
        t = Timer()
        ref_logp = ref.logprobs(prompts2, responses, mask).sum(axis=1)  # (2n,)
        t.lap("ref_forward")
        logp = policy.logprobs(prompts2, responses, mask)  # (2n, T)
        seq = logp.sum(axis=1)  # (2n,)
        t.lap("policy_forward")
        losses, g_c, g_r = dpo_loss(seq[:n], seq[n:], ref_logp[:n], ref_logp[n:], DPO_BETA)
        dlogp = np.concatenate([g_c, g_r])[:, None] / n * mask  # d mean(loss) / d logp
        t.lap("loss")
        grads = policy.logprobs_backward(dlogp)
        t.lap("backward")
        opt.step(grads)
        t.lap("optimizer")
        return float(np.mean(losses)), t.parts

    return step


def grpo_step_fn():
    """A callable running one GRPO step and returning its parts' times."""
    from rlhf_toy.optim import AdamW
    from rlhf_toy.pipeline.policy import GPTPolicy
    from rlhf_toy.policy_gradient import grpo_advantages, kl_loss, ppo_clip_loss

    policy_model, ref_model = _models()
    policy = GPTPolicy(policy_model, GRPO_NEW, ALLOWED, EOS, PAD)
    ref = GPTPolicy(ref_model, GRPO_NEW, ALLOWED, EOS, PAD, frozen=True)
    opt = AdamW(policy.params, lr=1e-4)
    rng = np.random.default_rng(2)
    prompts = rng.integers(0, TINY["vocab_size"], size=(GRPO_PROMPTS, GRPO_PROMPT))
    rows = np.repeat(prompts, GRPO_GROUP, axis=0)  # (B, P), prompt-major like the samples

    def step():
        t = Timer()
        responses, mask = policy.sample(prompts, GRPO_GROUP, rng)  # (B, T)
        t.lap("sampling")
        rewards = ((responses == 3) * mask).sum(axis=1) - 0.5 * mask.sum(axis=1)  # (B,)
        adv = grpo_advantages(rewards.reshape(GRPO_PROMPTS, GRPO_GROUP)).reshape(-1)  # (B,)
        t.lap("loss")
        ref_logp = ref.logprobs(rows, responses, mask)  # (B, T)
        t.lap("ref_forward")
        logp = policy.logprobs(rows, responses, mask)  # (B, T)
        t.lap("policy_forward")
        loss, dlogp, _ = ppo_clip_loss(logp, logp, adv, mask, agg="seq_mean")
        kl, dkl = kl_loss(logp, ref_logp, mask, estimator="k3", agg="seq_mean")
        dlogp = dlogp + GRPO_BETA * dkl
        t.lap("loss")
        grads = policy.logprobs_backward(dlogp)
        t.lap("backward")
        opt.step(grads)
        t.lap("optimizer")
        return float(loss + GRPO_BETA * kl), t.parts

    return step


ENUM_PROMPTS, ENUM_PROMPT, ENUM_NEW = 32, 8, 4


def enumerate_ms(repeats: int) -> dict:
    """Median time of :func:`rlhf_toy.gpt.enumerate_continuations` for 32 prompts x every
    continuation of <= 4 tokens over the 8 symbols (EOS included): 2801 per prompt."""
    from rlhf_toy.gpt import enumerate_continuations

    policy, _ = _models()
    prompts = np.random.default_rng(3).integers(0, TINY["vocab_size"], (ENUM_PROMPTS, ENUM_PROMPT))

    def run_once():
        return enumerate_continuations(policy, prompts, ENUM_NEW, ALLOWED, EOS, PAD)

    c = run_once()
    times = []
    for _ in range(max(3, repeats // 5)):
        t0 = time.perf_counter()
        run_once()
        times.append(time.perf_counter() - t0)
    total = np.exp(c.logp).sum(axis=1)  # (n_prompts,), 1 up to rounding
    return {
        "median_ms": 1e3 * statistics.median(times),
        "min_ms": 1e3 * min(times),
        "n_continuations": int(c.logp.shape[1]),
        "max_abs_prob_sum_error": float(np.abs(total - 1.0).max()),
    }


def measure(step, repeats: int, warmup: int) -> dict:
    """Medians of the whole step and of each part over ``repeats`` timed steps."""
    for _ in range(warmup):
        step()
    walls, cpus, parts = [], [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        loss, p = step()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        parts.append(p)
        if not np.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss} in the benchmark step")
    names = list(parts[0])
    return {
        "median_ms": 1e3 * statistics.median(walls),
        "min_ms": 1e3 * min(walls),
        "cpu_ms_median": 1e3 * statistics.median(cpus),
        "breakdown_ms": {k: 1e3 * statistics.median([p.get(k, 0.0) for p in parts]) for k in names},
        "all_ms": [1e3 * w for w in walls],
    }


def matmul_floor_ms(batches: list[tuple[int, int]], repeats: int) -> float:
    """Median time of the matrix products alone of the step's policy forward + backward
    (:func:`bench_gpt.matmul_floor`, same shards and threads), plus a third of it for the
    reference forward: a floor below which no numpy step can go (sampling excluded).

    ``batches`` are the ``(rows, positions)`` the step computes: its distinct prompts once,
    then every row's response positions (``shared_prefix``). The responses' attention
    products are counted at their own length, not over prompt plus response: a slight
    undercount, so the floor stays a floor.
    """
    from bench_gpt import matmul_floor

    policy, _ = _models()
    floors = [matmul_floor(policy, B, T) for B, T in batches]

    def floor():
        for f in floors:
            f()

    for _ in range(3):
        floor()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        floor()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times) * 4 / 3


def run(quick: bool, repeats: int, warmup: int) -> dict:
    """Time both steps and one pipeline run; returns the report."""
    from rlhf_toy.gpt import get_num_threads

    report = {
        "machine": machine_info(),
        "quick": quick,
        "repeats": repeats,
        "config": TINY,
        "threads": get_num_threads(),
        "targets_ms": TARGETS_MS,
    }
    dpo = measure(dpo_step_fn(), repeats, warmup)
    grpo = measure(grpo_step_fn(), repeats, warmup)
    dpo["matmul_floor_ms"] = matmul_floor_ms(
        [(DPO_PAIRS, DPO_PROMPT), (2 * DPO_PAIRS, DPO_RESPONSE)], repeats
    )
    grpo["matmul_floor_ms"] = matmul_floor_ms(
        [(GRPO_PROMPTS, GRPO_PROMPT), (GRPO_PROMPTS * GRPO_GROUP, GRPO_NEW)], repeats
    )
    report["dpo"], report["grpo"] = dpo, grpo
    report["enumerate"] = enumerate_ms(repeats)
    report["dpo_step_ms"], report["grpo_step_ms"] = dpo["median_ms"], grpo["median_ms"]
    report["stage_seconds"] = pipeline_seconds(quick)
    report["machine"]["loadavg_at_end"] = loadavg()
    return report


def pipeline_seconds(quick: bool) -> dict:
    """Wall seconds of each stage of one pipeline run, and ``"total"`` for the whole run."""
    import tempfile

    from rlhf_toy.pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig.quick() if quick else PipelineConfig()
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        metrics = run_pipeline(config, out)
        total = time.perf_counter() - t0
    seconds = {"sft": metrics["methods"]["sft"]["seconds"],
               "reward_model": metrics["reward_model"]["seconds"]}
    seconds.update({name: m["seconds"] for name, m in metrics["methods"].items() if name != "sft"})
    seconds["total"] = total
    return seconds


def blas_kernel(machine: dict) -> str:
    """``openblas 0.3.x (SkylakeX, 2 threads)`` from threadpoolctl's report."""
    pools = [p for p in machine.get("threadpools") or [] if p.get("user_api") == "blas"]
    if not pools:
        return "unknown BLAS"
    p = pools[0]
    return (
        f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')}, "
        f"{p.get('num_threads')} threads)"
    )


def print_table(report: dict, file=sys.stdout) -> None:
    """The human-readable summary of a report."""
    m = report["machine"]
    print(
        f"numpy {m['numpy']}, BLAS {blas_kernel(m)}, python {m['python']}, "
        f"{m['cpu_count']} CPUs, {report['threads']} GPT threads",
        file=file,
    )
    env = {k: v for k, v in m["env"].items() if v is not None}
    print(
        f"load average {m['loadavg_at_start']} -> {m['loadavg_at_end']}; env {env}; "
        f"median of {report['repeats']}",
        file=file,
    )
    parts = ["sampling", "ref_forward", "policy_forward", "loss", "backward", "optimizer"]
    head = "".join(f"{p:>15s}" for p in parts)
    print(
        f"{'step':6s} {'median':>8s} {'min':>8s} {'cpu':>8s} {'target':>8s} {'floor':>8s}{head}"
        "  (ms)",
        file=file,
    )
    for key, name in (("dpo", "DPO"), ("grpo", "GRPO")):
        r = report[key]
        cells = "".join(f"{r['breakdown_ms'].get(p, 0.0):15.2f}" for p in parts)
        target = TARGETS_MS[f"{key}_step_ms"]
        print(
            f"{name:6s} {r['median_ms']:8.2f} {r['min_ms']:8.2f} {r['cpu_ms_median']:8.2f} "
            f"{target:8.1f} "
            f"{r['matmul_floor_ms']:8.2f}{cells}",
            file=file,
        )
    e = report["enumerate"]
    print(
        f"enumerate: {ENUM_PROMPTS} prompts x {e['n_continuations']} continuations in "
        f"{e['median_ms']:.0f} ms (min {e['min_ms']:.0f}); "
        f"max |sum p - 1| = {e['max_abs_prob_sum_error']:.1e}",
        file=file,
    )
    trl = report.get("trl")
    if trl is not None:
        print(
            f"TRL {trl['versions'].get('trl')} on {trl['date']}: DPO {trl['dpo_step_ms']:.1f} ms, "
            f"GRPO {trl['grpo_step_ms']:.1f} ms; ours / TRL: DPO {trl['dpo_ratio']:.2f}, "
            f"GRPO {trl['grpo_ratio']:.2f} (target <= 0.33)",
            file=file,
        )
    stages = report["stage_seconds"]
    target = PIPELINE_TARGET_S["quick" if report["quick"] else "default"]
    print("pipeline (" + ("--quick" if report["quick"] else "default") + "): "
          + ", ".join(f"{name} {s:.1f} s" for name, s in stages.items() if name != "total")
          + f"; total {stages['total']:.1f} s (target {target:.0f} s)", file=file)


def trl_comparison(report: dict, path: Path) -> dict | None:
    """TRL's step medians from ``bench_trl.py``'s JSON at ``path`` and our ratios to them;
    None if there is no such file."""
    if not path.is_file():
        return None
    trl = json.loads(path.read_text())
    return {
        "path": str(path),
        "date": trl.get("machine", {}).get("date"),
        "versions": trl.get("versions", {}),
        "dpo_step_ms": trl["dpo_step_ms"],
        "grpo_step_ms": trl["grpo_step_ms"],
        "dpo_ratio": report["dpo_step_ms"] / trl["dpo_step_ms"],
        "grpo_ratio": report["grpo_step_ms"] / trl["grpo_step_ms"],
    }


def main(argv=None) -> int:
    """Command-line entry point: run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 steps after 2 of warm-up")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (default 50)")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write the results (default benchmarks/results/bench_pipeline.json, "
        "or bench_pipeline_quick.json with --quick)",
    )
    parser.add_argument(
        "--trl",
        type=Path,
        default=DEFAULT_JSON.with_name("bench_trl.json"),
        help="bench_trl.py's JSON, to compare with TRL's steps on this machine "
        "(default benchmarks/results/bench_trl.json, skipped if absent)",
    )
    args = parser.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 50)
    if repeats < 1:
        parser.error(f"--repeats must be >= 1, got {repeats}")
    report = run(args.quick, repeats, warmup=2 if args.quick else 10)
    report["trl"] = trl_comparison(report, args.trl)
    print_table(report)
    path = args.json or (
        DEFAULT_JSON.with_name("bench_pipeline_quick.json") if args.quick else DEFAULT_JSON
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
