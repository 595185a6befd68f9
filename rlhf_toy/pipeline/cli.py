"""``rlhf-toy pipeline``: the end-to-end RLHF run from the command line.

Wiring into the ``rlhf-toy`` command (two lines in its parser set-up)::

    from rlhf_toy.pipeline.cli import add_parser as add_pipeline_parser
    add_pipeline_parser(sub)   # in build_parser(); sets run=run_from_args

or run it alone: ``python -m rlhf_toy.pipeline.cli [options]`` (:func:`main_pipeline`).
"""

from __future__ import annotations

import argparse
import sys

from rlhf_toy._validate import ArgumentTypeError

from .config import METHODS, PipelineConfig
from .run import run_pipeline

__all__ = ["add_parser", "build_config", "main_pipeline", "run_from_args", "summary_table"]

DESCRIPTION = (
    "Run SFT -> reward model -> the RL methods on a tiny numpy GPT and a toy language, "
    "evaluate every policy exactly (gold, proxy, KL to the SFT policy and to the optimum "
    "pi*), and write the run folder (config, metrics, checkpoints, histories, figures)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``rlhf-toy pipeline``."""
    p.add_argument("--task", help="toy language: length (default), sycophancy, digits")
    p.add_argument(
        "--methods",
        nargs="*",
        metavar="M",
        help=f"methods after SFT and the reward model, among {', '.join(METHODS[1:])}; "
        "no value runs SFT and the reward model only",
    )
    p.add_argument("--seed", type=int, help="seed of the whole run (default 0)")
    p.add_argument("--beta", type=float, help="KL coefficient (default 0.1)")
    p.add_argument("--steps", type=int, help="optimisation steps of each RL method")
    p.add_argument("--out", default="runs/pipeline", help="run folder (default runs/pipeline)")
    p.add_argument("--quick", action="store_true", help="a seconds-long run (the tests')")
    p.add_argument("--config", metavar="RUN/config.json", help="rerun a saved config")
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage lines")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``pipeline`` sub-command to an ``argparse`` subparsers object.

    Parameters
    ----------
    subparsers : argparse subparsers action
        From ``ArgumentParser.add_subparsers()``.

    Returns
    -------
    argparse.ArgumentParser
        The sub-command's parser.
    """
    p = subparsers.add_parser("pipeline", help="the end-to-end RLHF run", description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(run=run_from_args)
    return p


def build_config(args) -> PipelineConfig:
    """The config of parsed ``args``.

    ``--config`` (or the default / ``--quick`` preset) with the explicit flags applied on
    top. ``ValueError`` names a bad option.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    PipelineConfig
    """
    changes = {}
    if args.task is not None:
        changes["task"] = args.task
    if args.methods is not None:
        changes["methods"] = tuple(args.methods)
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.beta is not None:
        changes["beta"] = args.beta
    if args.steps is not None:
        changes["rl_steps"] = args.steps
    if args.config is not None:
        base = PipelineConfig.from_json(args.config)
        return base.replace(**changes) if changes else base
    return PipelineConfig.quick(**changes) if args.quick else PipelineConfig(**changes)


def summary_table(metrics: dict) -> str:
    """One row per method: gold, proxy, KL, distance to the optimum, length, seconds.

    Parameters
    ----------
    metrics : dict
        The run's ``metrics.json`` content.

    Returns
    -------
    str
    """
    if not isinstance(metrics, dict) or not isinstance(metrics.get("methods"), dict):
        raise ArgumentTypeError(f"metrics must be a dict with a 'methods' dict (the run's "
                                f"metrics.json), got {type(metrics).__name__}")
    head = f"{'method':<12}{'gold':>8}{'proxy':>8}{'KL':>8}{'KL to pi*':>11}{'length':>8}{'s':>7}"
    rows = [head, "-" * len(head)]
    for name, m in metrics["methods"].items():
        rows.append(
            f"{name:<12}{m['gold']:>8.3f}{m['proxy']:>8.3f}{m['kl']:>8.3f}"
            f"{m['kl_to_optimum']:>11.3f}{m['length']:>8.2f}{m['seconds']:>7.1f}"
        )
    opt = metrics.get("optimum")
    if opt:
        rows.append(
            f"{'pi* (exact)':<12}{opt['gold']:>8.3f}{opt['proxy']:>8.3f}{opt['kl']:>8.3f}"
            f"{0.0:>11.3f}{'':>8}{'':>7}"
        )
    return "\n".join(rows)


def run_from_args(args) -> int:
    """Run the pipeline for parsed ``args``.

    Exit status 0, 1 on failure, 2 on a bad option, 130 on Ctrl-C.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    int
        The exit status.
    """
    try:
        config = build_config(args)
    except (ValueError, OSError) as e:
        print(f"rlhf-toy pipeline: error: {e}", file=sys.stderr)
        return 2
    try:
        metrics = run_pipeline(config, args.out, verbose=not args.quiet)
    except ValueError as e:  # a config the registry cannot run, before any training
        print(f"rlhf-toy pipeline: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; the finished stages are in {args.out}", file=sys.stderr)
        return 130
    except FloatingPointError as e:
        print(f"rlhf-toy pipeline: {e} (see {args.out}/README.md)", file=sys.stderr)
        return 1
    print(summary_table(metrics))
    print(f"run folder: {args.out}")
    return 0


def main_pipeline(argv=None) -> int:
    """``rlhf-toy pipeline`` as a stand-alone program.

    Parameters
    ----------
    argv : list of str, optional
        Defaults to ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status.
    """
    p = argparse.ArgumentParser(prog="rlhf-toy pipeline", description=DESCRIPTION)
    add_arguments(p)
    return run_from_args(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main_pipeline())
