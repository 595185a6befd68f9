"""The ``rlhf-toy`` command.

Subcommands (``rlhf-toy SUB --help`` for each):

- ``pipeline``: the end-to-end RLHF run on the numpy GPT (the main job);
- ``figures``: regenerate the chapter's figures as PNG files plus an index;
- ``bench``: run a speed benchmark from ``benchmarks/`` and print its table;
- ``check``: grade an exercise of ``exercises/`` (``rlhf-toy check N``, ``--all``, ``--list``).
"""

from __future__ import annotations

import argparse
import runpy
import sys
import time
from pathlib import Path

from rlhf_toy import __version__
from rlhf_toy.grading.cli import add_check_parser
from rlhf_toy.pipeline.cli import add_parser as add_pipeline_parser

__all__ = ["build_parser", "main"]

#: The benchmark scripts ``rlhf-toy bench`` knows, by short name.
BENCHMARKS = {
    "gpt": "bench_gpt.py",
    "pipeline": "bench_pipeline.py",
    "sweeps": "bench_sweeps.py",
}


def _figures(args) -> int:
    from rlhf_toy.presentation.figures import FIGURES, write_figures

    if args.list:
        for spec in FIGURES:
            print(f"{spec.name:24s} {spec.caption}")
        return 0
    t0 = time.perf_counter()
    try:
        written = write_figures(args.out, args.only or None, dpi=args.dpi,
                                verbose=not args.quiet)
    except (ValueError, OSError) as err:  # bad names, --dpi, --out: one line, no traceback
        print(f"rlhf-toy figures: {err}", file=sys.stderr)
        return 2
    for _, path, seconds, _ in written:
        print(f"{seconds:6.2f} s  {path}")
    print(f"wrote {len(written)} figures and {Path(args.out) / 'index.md'} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def _bench(args) -> int:
    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    script = folder / BENCHMARKS[args.which]
    if not script.is_file():
        print(f"rlhf-toy bench: {script} not found; benchmarks run from a source checkout",
              file=sys.stderr)
        return 2
    argv, path = sys.argv, list(sys.path)
    try:  # run it as `python benchmarks/bench_WHICH.py ...` would
        sys.argv = [str(script), *args.rest]
        sys.path.insert(0, str(folder))
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as stop:
        return int(stop.code or 0)
    finally:
        sys.argv, sys.path[:] = argv, path
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rlhf-toy`` (exposed for tests and documentation).

    Returns
    -------
    argparse.ArgumentParser
        With the subcommands ``pipeline``, ``figures``, ``bench`` and ``check``.
    """
    parser = argparse.ArgumentParser(
        prog="rlhf-toy",
        description="Runnable companion to the chapter 'RLHF and Alignment'.",
    )
    parser.add_argument("--version", action="version", version=f"rlhf-toy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_pipeline_parser(sub)  # the main job, first in --help

    fig = sub.add_parser("figures", help="regenerate the chapter's figures (PNG + index.md)",
                         description="Run each figure's small seeded experiment and save it "
                                     "as DIR/NAME.png, with DIR/index.md saying what each shows.")
    fig.add_argument("--out", default="figures", metavar="DIR",
                     help="output folder (default: ./figures)")
    fig.add_argument("--only", nargs="+", metavar="NAME", help="only these figures")
    fig.add_argument("--list", action="store_true", help="list the figures and exit")
    fig.add_argument("--dpi", type=int, default=110,
                     help="PNG resolution, 10 to 1000 (default: 110)")
    fig.add_argument("--quiet", action="store_true", help="no progress bar")
    fig.set_defaults(run=_figures)

    bench = sub.add_parser("bench", help="run a speed benchmark and print its table",
                           description="Run benchmarks/bench_WHICH.py; further arguments "
                                       "(e.g. --quick) are passed to the script.")
    bench.add_argument("which", choices=sorted(BENCHMARKS), help="which benchmark")
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the script")
    bench.set_defaults(run=_bench)

    add_check_parser(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``rlhf-toy`` console script.

    Parameters
    ----------
    argv : list of str, optional
        The arguments; ``sys.argv[1:]`` if omitted.

    Returns
    -------
    int
        The exit status: 0 on success, 1 when a check fails, 2 on a usage error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
