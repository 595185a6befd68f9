"""``rlhf-toy check``: grade the chapter's exercises (``exercises/NN_slug.py``).

``rlhf-toy check N [--file PATH]`` grades exercise ``N``; ``--all`` grades every exercise,
``--list`` lists them. Exit status: 0 when every check passes, 1 when one fails, 2 on a
usage error (unknown exercise, missing file). The student's file is, by default,
``exercises/NN_slug.py`` under the current directory if it exists, else the one of the
source checkout (the ``exercises/`` folder beside the package).

Wire it into a parser with :func:`add_check_parser`, or run :func:`main`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlhf_toy.grading.core import CALL_LIMIT, MAX_EXAMPLES

__all__ = ["CHECKOUT_EXERCISES", "add_check_parser", "default_file", "main", "run"]

#: The source checkout's exercises folder (beside the package), used when the current
#: directory has none.
CHECKOUT_EXERCISES = Path(__file__).resolve().parent.parent.parent / "exercises"


def default_file(exercise) -> Path:
    """``./exercises/NN_slug.py`` if it exists, else the source checkout's.

    Parameters
    ----------
    exercise : Exercise

    Returns
    -------
    pathlib.Path
    """
    here = Path.cwd() / "exercises" / f"{exercise.stem}.py"
    return here if here.is_file() else CHECKOUT_EXERCISES / f"{exercise.stem}.py"


def _usage_error(message: str) -> int:
    print(f"rlhf-toy check: {message}", file=sys.stderr)
    return 2


def run(args) -> int:
    """Carry out a parsed ``check`` command.

    Parameters
    ----------
    args : argparse.Namespace
        From the ``check`` parser.

    Returns
    -------
    int
        0 when every check passes, 1 when one fails, 2 on a usage error.
    """
    try:
        from rlhf_toy.grading import exercises, get_exercise
        from rlhf_toy.grading.core import grade

        table = exercises()
    except ModuleNotFoundError as err:
        if err.name != "hypothesis":
            raise
        return _usage_error("grading needs hypothesis: pip install -e '.[exercises]'")
    if args.list:
        for ex in table.values():
            print(f"{ex.number:2d}  {ex.stem:28s} {ex.title}")
        return 0
    if args.all == (args.exercise is not None):
        return _usage_error("give an exercise number N, or --all, or --list")
    if args.all and args.file:
        return _usage_error("--file goes with one exercise N, not with --all")
    if args.all:
        chosen = [(ex, default_file(ex)) for ex in table.values()]
    else:
        try:
            ex = get_exercise(args.exercise)
        except KeyError:
            known = ", ".join(str(n) for n in table)
            return _usage_error(f"no exercise {args.exercise!r} (known: {known}; see --list)")
        chosen = [(ex, Path(args.file) if args.file else default_file(ex))]
    for _, path in chosen:
        if not path.is_file():
            return _usage_error(f"{path} not found (pass --file PATH)")
    limits = {"call_limit": args.time_limit, "max_examples": args.examples}
    status = 0
    for ex, path in chosen:
        report = grade(ex, path, **limits)
        print(report.text(), flush=True)
        if not report.passed:
            status = 1
    if args.all:
        print(f"{sum(1 for _ in chosen)} exercises graded: "
              f"{'all pass' if status == 0 else 'some checks fail'}")
    return status


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("exercise", nargs="?", metavar="N",
                        help="exercise number (1, 01) or name (01_optimal_policy)")
    parser.add_argument("--file", metavar="PATH",
                        help="the file to grade (default: exercises/NN_slug.py here, else in "
                             "the source checkout)")
    parser.add_argument("--all", action="store_true", help="grade every exercise")
    parser.add_argument("--list", action="store_true", help="list the exercises and exit")
    parser.add_argument("--examples", type=int, default=MAX_EXAMPLES, metavar="K",
                        help=f"random inputs tried per check (default: {MAX_EXAMPLES})")
    parser.add_argument("--time-limit", type=float, default=CALL_LIMIT, metavar="S",
                        help="seconds one call of your function may take "
                             f"(default: {CALL_LIMIT:g})")
    parser.set_defaults(run=run)
    return parser


def add_check_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``check`` subcommand to ``subparsers`` (from ``add_subparsers``).

    The subcommand's ``args.run(args)`` returns the exit status.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction

    Returns
    -------
    argparse.ArgumentParser
        The ``check`` parser.
    """
    parser = subparsers.add_parser(
        "check", help="grade an exercise (exercises/NN_slug.py)",
        description="Grade your solution of exercise N: each property of the derivation is "
                    "tested on random inputs; a failure shows the smallest failing input "
                    "and a hint. Exit status 0 all pass, 1 a check fails, 2 usage error.")
    return _configure(parser)


def main(argv=None) -> int:
    """``python -m rlhf_toy.grading.cli N ...``: the same as ``rlhf-toy check``.

    Parameters
    ----------
    argv : list of str, optional

    Returns
    -------
    int
        The exit status (0, 1 or 2).
    """
    parser = _configure(argparse.ArgumentParser(prog="rlhf-toy check"))
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
