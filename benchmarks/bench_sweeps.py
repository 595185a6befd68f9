"""Speed of the exact sweeps of the tabular world: the reward-KL frontier and best-of-n.

Run ``python benchmarks/bench_sweeps.py`` (or ``rlhf-toy bench sweeps``; ``--quick`` for a
smoke run on small tables). Prints a table and writes JSON (default
``benchmarks/results/bench_sweeps.json``) with the machine, numpy's BLAS and every timing.

Measured (median wall time of ``--repeats`` runs after one warm-up, plus the process CPU time
of the median run, since other processes on a shared machine inflate wall time):

- ``frontier``: :func:`rlhf_toy.optimal.reward_kl_frontier` for 200 betas on a
  1000 prompts x 1000 responses table (the foundation issue's target), with and without a
  gold reward to evaluate;
- ``best-of-n sweep``: :func:`rlhf_toy.best_of_n.best_of_n_sweep` for 50 values of ``n``
  (1 to 10, then log-spaced to 10^4) on the same table, with KL, win rate, proxy and gold;
- ``best-of-n policy``: :func:`rlhf_toy.best_of_n.best_of_n_policy` for one ``n``;
- ``sampled RL run``: :func:`rlhf_toy.bandit.rl.train_rl` on a 16 prompts x 64 responses
  bandit, ``G = 8`` responses per prompt, 500 steps, exact curves recorded at every step
  (the policy-gradient issue's target: under 2 s), one row per method family: GRPO
  (one epoch, k3 in the loss), PPO (4 epochs, critic, GAE, whitening), RLOO and online DPO.

``--quick`` uses 20 betas / 10 values of n on 200 x 200 (and 50 RL steps) and writes
``bench_sweeps_quick.json`` instead, so a smoke run never overwrites the real numbers.
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

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_sweeps.json"

#: Workload sizes: (n_prompts, n_responses, n_betas, n_ns).
SIZES = {"full": (1000, 1000, 200, 50), "quick": (200, 200, 20, 10)}


def measure(fn, repeats: int) -> dict:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up run."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    i = sorted(range(repeats), key=walls.__getitem__)[(repeats - 1) // 2]
    return {"median_s": statistics.median(walls), "cpu_s_of_median": cpus[i], "all_s": walls}


def sampled_rl_work(steps: int) -> list:
    """One sampled RL run per method family on a 16 x 64 bandit, G = 8."""
    from rlhf_toy.bandit import make_bandit
    from rlhf_toy.bandit.rl import train_rl
    from rlhf_toy.rl import GRPOConfig, OnlineDPOConfig, PPOConfig, RLOOConfig

    env = make_bandit(16, 64, proxy="gaussian", rng=0)
    grid = f"16x64, G=8, {steps} st"
    configs = [("GRPO", GRPOConfig(group_size=8, beta=0.1)),
               ("PPO (4 epochs)", PPOConfig(group_size=8, beta=0.1)),
               ("RLOO", RLOOConfig(group_size=8, beta=0.1)),
               ("online DPO", OnlineDPOConfig(beta=0.1))]
    return [(f"sampled RL run: {name}", grid,
             lambda cfg=cfg: train_rl(env, cfg, steps=steps, lr=0.05, rng=0))
            for name, cfg in configs]


def run(quick: bool, repeats: int) -> dict:
    """Time every workload; returns the report (machine, sizes, results)."""
    from scipy.special import softmax

    import rlhf_toy.optimal as optimal
    from rlhf_toy.best_of_n import best_of_n_policy, best_of_n_sweep

    n_prompts, n_responses, n_betas, n_ns = SIZES["quick" if quick else "full"]
    rng = np.random.default_rng(0)
    shape = (n_prompts, n_responses)
    pi_ref = softmax(rng.standard_normal(shape), axis=-1)
    r_star = rng.standard_normal(shape)
    r_hat = r_star + rng.standard_normal(shape)
    betas = np.logspace(-2, 2, n_betas)
    # 1..10, then log-spaced up to 10^4: n_ns distinct integers
    ns = np.unique(np.r_[np.arange(1, 11), np.round(np.geomspace(11, 1e4, n_ns - 10))])
    ns = ns.astype(int)
    gold = {"gold": r_star}

    work = [
        ("frontier", f"{n_betas} betas", lambda: optimal.reward_kl_frontier(pi_ref, r_hat, betas)),
        ("frontier + gold", f"{n_betas} betas",
         lambda: optimal.reward_kl_frontier(pi_ref, r_hat, betas, eval_rewards=gold)),
        ("best-of-n sweep + gold", f"{len(ns)} values of n",
         lambda: best_of_n_sweep(pi_ref, r_hat, ns, eval_rewards=gold)),
        ("best-of-n policy", "one n", lambda: best_of_n_policy(pi_ref, r_hat, 16)),
    ]
    work += sampled_rl_work(50 if quick else 500)
    report = {"machine": machine_info(), "quick": quick, "repeats": repeats,
              "table": {"n_prompts": n_prompts, "n_responses": n_responses},
              "results": []}
    for name, grid, fn in work:
        timing = measure(fn, repeats)
        report["results"].append({"name": name, "grid": grid, **timing})
    report["machine"]["loadavg_at_end"] = loadavg()
    return report


def print_table(report: dict, file=sys.stdout) -> None:
    """The human-readable summary of a report."""
    m, t = report["machine"], report["table"]
    blas = m["numpy_blas"]
    print(f"numpy {m['numpy']} ({blas.get('name', '?')} {blas.get('version', '')}), "
          f"scipy {m.get('scipy')}, python {m['python']}, {m['cpu_count']} CPUs, "
          f"{m['platform']}", file=file)
    print(f"load average {m['loadavg_at_start']} -> {m['loadavg_at_end']}; "
          f"table {t['n_prompts']} x {t['n_responses']}; median of {report['repeats']}",
          file=file)
    print(f"{'workload':36s} {'grid':>16s} {'wall (s)':>10s} {'cpu (s)':>9s}", file=file)
    for r in report["results"]:
        print(f"{r['name']:36s} {r['grid']:>16s} {r['median_s']:10.3f} "
              f"{r['cpu_s_of_median']:9.3f}", file=file)


def main(argv=None) -> int:
    """Command-line entry point: run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small tables (200 x 200, 20 betas, 10 values of n)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per workload (default 3, or 1 with --quick)")
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write the results (default benchmarks/results/"
                             "bench_sweeps.json, or bench_sweeps_quick.json with --quick)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    if repeats < 1:
        parser.error(f"--repeats must be >= 1, got {repeats}")
    report = run(args.quick, repeats)
    print_table(report)
    path = args.json or (DEFAULT_JSON.with_name("bench_sweeps_quick.json") if args.quick
                         else DEFAULT_JSON)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
