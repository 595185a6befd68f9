"""One-line mutation testing: do the tests notice a wrong line?

Applies one small change at a time to a module (an operator swapped, a constant moved, a
numerically careful function replaced by its naive twin, an axis changed), runs the tests
that cover the module against a private copy of the repository, and reports how many
mutants the tests kill. Survivors are listed with their line, to read: some are
equivalent (the change cannot alter a result), the others are missing tests.

Not part of pytest (a run takes minutes). Usage::

    python benchmarks/mutate.py rlhf_toy/best_of_n.py --max 60
    python benchmarks/mutate.py --all --max 40 --json benchmarks/results/mutate.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The tests that cover each module (the fuzz suite covers every objective).
TESTS = {
    "rlhf_toy/best_of_n.py": ["tests/test_best_of_n.py", "tests/test_fuzz.py"],
    "rlhf_toy/optimal.py": ["tests/test_optimal.py", "tests/test_fuzz.py"],
    "rlhf_toy/kl.py": ["tests/test_kl.py", "tests/test_fuzz.py"],
    "rlhf_toy/preference_losses.py": ["tests/test_preference_losses.py", "tests/test_fuzz.py"],
    "rlhf_toy/_validate.py": ["tests/test_validate.py", "tests/test_fuzz.py"],
    "rlhf_toy/bradley_terry.py": ["tests/test_bradley_terry.py", "tests/test_fuzz.py"],
    "rlhf_toy/bandit/train.py": ["tests/test_bandit_train.py"],
    "rlhf_toy/policy_gradient.py": ["tests/test_policy_gradient.py", "tests/test_fuzz.py"],
    "rlhf_toy/gao.py": ["tests/test_gao.py", "tests/test_goodhart.py", "tests/test_fuzz.py"],
    "rlhf_toy/optim.py": ["tests/test_optim.py", "tests/test_fuzz.py"],
    "rlhf_toy/bandit/env.py": ["tests/test_env.py", "tests/test_fuzz.py"],
    "rlhf_toy/bandit/policy.py": ["tests/test_bandit_policy.py", "tests/test_rl_steps.py"],
    "rlhf_toy/bandit/rl.py": ["tests/test_bandit_rl.py", "tests/test_rl_steps.py"],
}

#: (pattern, replacement) pairs; each match on a code line is one mutant.
OPERATORS = [
    (r"(?<=[\w)\]]) \+ (?=[\w(])", " - "),
    (r"(?<=[\w)\]]) - (?=[\w(])", " + "),
    (r"(?<=[\w)\]]) \* (?=[\w(])", " / "),
    (r"(?<=[\w)\]]) / (?=[\w(])", " * "),
    (r" <= ", " < "),
    (r" >= ", " > "),
    (r" < ", " <= "),
    (r" > ", " >= "),
    (r" == ", " != "),
    (r" != ", " == "),
    (r"\bnp\.log1p\(", "np.log(1 + "),
    (r"\bnp\.expm1\(", "np.exp("),
    (r"\bnp\.maximum\(", "np.minimum("),
    (r"\bnp\.minimum\(", "np.maximum("),
    (r"axis=-1", "axis=0"),
    (r"\(-1\)", "(0)"),
    (r"\b0\.5\b", "0.25"),
    (r"\b1\.0\b", "2.0"),
    (r"\b2\.0\b", "1.0"),
    (r"\bTrue\b", "False"),
    (r"\bFalse\b", "True"),
    (r"\band\b", "or"),
    (r"\bor\b", "and"),
    (r"\bnot ", ""),
    (r"\[0\]", "[-1]"),
    (r" @ w\b", ".mean(-1)"),
]


def _code_lines(text: str) -> set[int]:
    """1-based numbers of lines that hold code (not docstrings, strings or comments)."""
    strings = set()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.STRING:
            strings.update(range(tok.start[0], tok.end[0] + 1))
    out = set()
    for i, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if (stripped and not stripped.startswith(("#", "import ", "from ", "raise ", "def "))
                and i not in strings):
            out.add(i)
    return out


def mutants(path: Path):
    """Yield ``(line_number, original, mutated)`` for every one-line mutation."""
    text = path.read_text()
    lines = text.splitlines()
    for i in sorted(_code_lines(text)):
        line = lines[i - 1]
        code = line.split("  #")[0]
        for pattern, repl in OPERATORS:
            for m in re.finditer(pattern, code):
                new = code[: m.start()] + repl + code[m.end():] + line[len(code):]
                if new != line:
                    yield i, line, new


def _pytest_args(tests: list[str]) -> list[str]:
    return ["-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *tests]


def run_tests(copy: Path, tests: list[str], timeout: float) -> bool:
    """True if the tests fail (the mutant is killed): a fresh interpreter per run."""
    cmd = [sys.executable, "-m", "pytest", *_pytest_args(tests)]
    env = {"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin", "HOME": str(copy),
           "OMP_NUM_THREADS": "1"}
    try:
        res = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return True
    return res.returncode != 0


def _preload() -> None:
    """Import the heavy third-party modules once, before forking (never ``rlhf_toy``)."""
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"
    import hypothesis  # noqa: F401
    import numpy  # noqa: F401
    import pytest  # noqa: F401
    import scipy.optimize  # noqa: F401
    import scipy.special  # noqa: F401
    import scipy.stats  # noqa: F401


def run_tests_forked(copy: Path, tests: list[str], timeout: float) -> bool:
    """As :func:`run_tests`, in a child forked from this (pre-loaded) process."""
    assert not any(m == "rlhf_toy" or m.startswith("rlhf_toy.") for m in sys.modules)
    pid = os.fork()
    if pid == 0:  # the child: run pytest on the copy, exit with its status
        code = 3
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.chdir(copy)
            sys.path.insert(0, str(copy))
            os.environ.update(PYTHONPATH=str(copy), HOME=str(copy))
            import pytest

            code = int(pytest.main(_pytest_args(tests)))
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) != 0
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return True
        time.sleep(0.02)


def mutate_module(module: str, max_mutants: int, seed: int, timeout: float,
                  fork: bool = True) -> dict:
    src = ROOT / module
    all_mutants = list(mutants(src))
    rng = random.Random(seed)
    chosen = all_mutants if len(all_mutants) <= max_mutants else sorted(
        rng.sample(all_mutants, max_mutants))
    tests = TESTS[module]
    run = run_tests_forked if fork else run_tests
    survivors, killed = [], 0
    with tempfile.TemporaryDirectory(prefix="mutate_") as tmp:
        copy = Path(tmp)
        shutil.copytree(ROOT / "rlhf_toy", copy / "rlhf_toy")
        shutil.copytree(ROOT / "tests", copy / "tests")
        shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
        target = copy / module
        original = src.read_text().splitlines(keepends=True)
        if run(copy, tests, timeout):
            raise RuntimeError(f"the tests of {module} fail on the unmutated code")
        for line_no, old, new in chosen:
            mutated = list(original)
            mutated[line_no - 1] = new + "\n"
            target.write_text("".join(mutated))
            if run(copy, tests, timeout):
                killed += 1
            else:
                survivors.append({"line": line_no, "from": old.strip(), "to": new.strip()})
        target.write_text("".join(original))
    n = len(chosen)
    return {"module": module, "mutants": n, "available": len(all_mutants), "killed": killed,
            "kill_rate": killed / n if n else float("nan"), "survivors": survivors}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module paths, e.g. rlhf_toy/kl.py")
    parser.add_argument("--all", action="store_true", help="every module of TESTS")
    parser.add_argument("--max", type=int, default=40, help="mutants per module (sampled)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per test run")
    parser.add_argument("--json", type=Path, help="where to write the report")
    parser.add_argument("--no-fork", action="store_true",
                        help="a fresh interpreter per test run (slower; default: fork a child "
                             "of this process, numpy, scipy and pytest already imported)")
    args = parser.parse_args(argv)
    modules = list(TESTS) if args.all else args.modules
    if not modules:
        parser.error("name modules or pass --all")
    if not args.no_fork:
        _preload()
    reports = []
    for module in modules:
        t0 = time.perf_counter()
        rep = mutate_module(module, args.max, args.seed, args.timeout, fork=not args.no_fork)
        rep["seconds"] = round(time.perf_counter() - t0, 1)
        reports.append(rep)
        print(f"{module}: {rep['killed']}/{rep['mutants']} killed "
              f"({100 * rep['kill_rate']:.1f}%, {rep['available']} available, "
              f"{rep['seconds']} s)", flush=True)
        for s in rep["survivors"]:
            print(f"    survived line {s['line']}: {s['from']}  ->  {s['to']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
