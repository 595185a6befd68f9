"""The exercises' graders, proven able to fail (``exercises/``, ``rlhf-toy check``).

Every grader passes its worked solution, fails the untouched stub, and fails each wrong
implementation kept under ``tests/exercise_fixtures/NN_slug/`` on the property the fixture
names (its ``FAILS``; ``HINT``: a phrase the hint must contain; ``TIMEOUT``: the check must be
stopped by the time limit). Grading forks a process per check: the wrong implementations
are graded in one parallel batch, on the named check only, with modest example counts.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rlhf_toy.grading import exercises, get_exercise
from rlhf_toy.grading.cli import add_check_parser, main
from rlhf_toy.grading.core import grade, run_checks
from rlhf_toy.optimal import optimal_policy
from rlhf_toy.preference_losses import dpo_loss

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "exercise_fixtures"
EXERCISES = exercises()


def _constants(path: Path) -> dict:
    """The fixture's module-level constants, read without importing it."""
    tree = ast.parse(path.read_text())
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in ("FAILS", "HINT", "TIMEOUT")}


WRONG = [(ex.number, path) for ex in EXERCISES.values()
         for path in sorted((FIXTURES / ex.stem).glob("*.py"))]


def test_twelve_exercises_each_a_trio():
    assert sorted(EXERCISES) == list(range(1, 13))
    for ex in EXERCISES.values():
        stub = ROOT / "exercises" / f"{ex.stem}.py"
        solution = ROOT / "exercises" / "solutions" / f"{ex.stem}.py"
        assert stub.is_file() and solution.is_file(), ex.stem
        assert "YOUR CODE HERE" in stub.read_text() and f"rlhf-toy check {ex.number}" in (
            stub.read_text())
        text = solution.read_text()
        assert "## Derivation" in text and "$\\" in text, f"{ex.stem}: derivation in LaTeX"
        plain = [p for p in (FIXTURES / ex.stem).glob("*.py")
                 if not {"HINT", "TIMEOUT"} & set(_constants(p))]
        assert len(plain) >= 3, f"{ex.stem} has {len(plain)} plain wrong implementations"
        names = {c.name for c in ex.checks}
        for p in (FIXTURES / ex.stem).glob("*.py"):
            assert _constants(p)["FAILS"] in names, p


def test_solutions_do_not_import_what_grades_them():
    for ex in EXERCISES.values():
        text = (ROOT / "exercises" / "solutions" / f"{ex.stem}.py").read_text()
        assert "rlhf_toy" not in text, ex.stem


@pytest.mark.parametrize("number", sorted(EXERCISES))
def test_solution_passes(number):
    ex = EXERCISES[number]
    report = grade(ex, ROOT / "exercises" / "solutions" / f"{ex.stem}.py")
    assert report.passed, report.text()
    assert len(report.results) == len(ex.checks) >= 4


@pytest.mark.parametrize("number", sorted(EXERCISES))
def test_stub_fails_on_every_check(number):
    ex = EXERCISES[number]
    report = grade(ex, ROOT / "exercises" / f"{ex.stem}.py", max_examples=3)
    assert not any(r.passed for r in report.results)
    for r in report.results:
        assert "NotImplementedError" in r.message
        assert "YOUR CODE HERE" in r.hint
    assert "Traceback" not in report.text()


@pytest.fixture(scope="module")
def wrong_results():
    """Every wrong implementation graded on the check it names, in one parallel batch."""
    checks, paths = [], []
    for number, path in WRONG:
        ex = EXERCISES[number]
        name = _constants(path)["FAILS"]
        checks.append(next(c for c in ex.checks if c.name == name))
        paths.append(path)
    results = run_checks(checks, paths, max_examples=10, shrink_limit=10, call_limit=1.0,
                         jobs=os.cpu_count() or 2)
    return dict(zip([str(p) for p in paths], results, strict=True))


@pytest.mark.parametrize("number, path", WRONG, ids=[f"{n:02d}-{p.stem}" for n, p in WRONG])
def test_wrong_implementation_fails_its_property(number, path, wrong_results):
    consts = _constants(path)
    result = wrong_results[str(path)]
    assert result.name == consts["FAILS"]
    assert not result.passed, f"{path.name} passes {result.name!r}"
    assert result.prop and result.message and result.hint
    if "HINT" in consts:
        assert consts["HINT"] in result.hint, result.hint
    if consts.get("TIMEOUT"):
        assert "did not return within 1 s" in result.message
        assert "pi_ref = " in result.example  # the input it hung on
    else:
        assert "Traceback" not in result.message


def test_naive_overflow_gets_the_specific_hint_and_nothing_else_fails():
    ex = EXERCISES[1]
    report = grade(ex, FIXTURES / ex.stem / "naive_overflow.py", max_examples=15)
    assert report.failed() == ["large rewards and small beta"]
    assert "overflows float64 once r / beta > 709" in report.results[-1].hint
    assert "nan" in report.results[-1].message


def test_same_file_same_report():
    ex = EXERCISES[10]
    path = FIXTURES / ex.stem / "mean_baseline.py"
    first, second = (grade(ex, path, max_examples=10).text() for _ in range(2))
    assert first == second
    assert "example:" in first and "rewards = np.array(" in first


def _example_values(text: str) -> dict:
    """The shrunk input printed in a report, read back."""
    block = text.split("example:", 1)[1].split("hint:", 1)[0]
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    source, names = [], {}
    for line in lines:
        if " = " in line and line.split(" = ", 1)[0].isidentifier():
            source.append(line)
        else:
            source[-1] += line
    exec("\n".join(source), {"np": np, "array": np.array}, names)  # noqa: S102
    return names


def _assert_hidden(text: str, values, inputs: dict):
    shown = {float(v) for a in inputs.values() for v in np.ravel(a)}
    for v in np.ravel(values):
        if float(v) in shown or abs(float(v)) < 1e-3 or float(v).is_integer():
            continue
        for form in (repr(float(v)), f"{v:.4f}", f"{v:.3g}", f"{v:.6g}"):
            assert form not in text, f"the report shows the library's value {v} as {form}"


def test_report_never_shows_the_library_answer():
    ex = EXERCISES[1]
    text = grade(ex, FIXTURES / ex.stem / "beta_for_inverse_beta.py",
                 only=["matches the library"], max_examples=10).text()
    inputs = _example_values(text)
    _assert_hidden(text, optimal_policy(inputs["pi_ref"], inputs["reward"], inputs["beta"]),
                   inputs)
    ex = EXERCISES[2]
    text = grade(ex, FIXTURES / ex.stem / "wrong_sigmoid_argument.py",
                 only=["matches the library"], max_examples=10).text()
    inputs = _example_values(text)
    _, g_w, g_l = dpo_loss(inputs["policy_chosen"], inputs["policy_rejected"],
                           inputs["ref_chosen"], inputs["ref_rejected"], inputs["beta"])
    _assert_hidden(text, np.concatenate([g_w, g_l]), inputs)


def _student(tmp_path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def test_crashes_and_bad_outputs_are_failed_checks(tmp_path):
    bodies = {
        "syntax.py": "def rloo_advantages(rewards)\n    return rewards\n",
        "raises.py": "def rloo_advantages(rewards):\n    return rewards[99]\n",
        "exits.py": "import sys\n\ndef rloo_advantages(rewards):\n    sys.exit(3)\n",
        "dies.py": "import os\n\ndef rloo_advantages(rewards):\n    os._exit(3)\n",
        "shape.py": "def rloo_advantages(rewards):\n    return rewards.sum(-1)\n",
        "nan.py": "import numpy as np\n\ndef rloo_advantages(rewards):\n"
                  "    return rewards * np.nan\n",
        "missing.py": "def rloo(rewards):\n    return rewards\n",
    }
    paths = [_student(tmp_path, name, body) for name, body in bodies.items()]
    check = EXERCISES[10].checks[0]
    results = dict(zip(bodies, run_checks([check] * len(paths), paths, max_examples=5,
                                          shrink_limit=10), strict=True))
    assert all(not r.passed for r in results.values())
    assert "SyntaxError" in results["syntax.py"].message
    assert "IndexError" in results["raises.py"].message
    assert "line 2 of raises.py" in results["raises.py"].message
    assert "SystemExit" in results["exits.py"].message
    assert "died (exit code 3)" in results["dies.py"].message
    assert "has shape" in results["shape.py"].message
    assert "nan" in results["nan.py"].message
    assert "defines no function 'rloo_advantages'" in results["missing.py"].message


def test_a_loop_that_swallows_the_alarm_hits_the_check_time_limit(tmp_path):
    path = _student(tmp_path, "swallows_alarm.py",
                    "def rloo_advantages(rewards):\n    while True:\n        try:\n"
                    "            while True:\n                pass\n"
                    "        except BaseException:\n            pass\n")
    result = run_checks(EXERCISES[10].checks[:1], path, call_limit=0.2, check_limit=2.0)[0]
    assert result.status == "timeout" and not result.passed
    assert "did not finish within 2 s" in result.message


def _run(argv) -> int:
    parser = argparse.ArgumentParser(prog="rlhf-toy")
    sub = parser.add_subparsers(dest="command")
    add_check_parser(sub)
    args = parser.parse_args(argv)
    return args.run(args)


def test_cli_exit_codes(capsys):
    solution = str(ROOT / "exercises" / "solutions" / "10_rloo.py")
    assert _run(["check", "10", "--file", solution, "--examples", "5"]) == 0
    assert "4/4 checks pass" in capsys.readouterr().out
    assert _run(["check", "10_rloo", "--file", str(ROOT / "exercises" / "10_rloo.py"),
                 "--examples", "3"]) == 1
    assert "NotImplementedError" in capsys.readouterr().out
    assert _run(["check", "99"]) == 2
    assert "no exercise '99'" in capsys.readouterr().err
    assert _run(["check", "10", "--file", "no/such/file.py"]) == 2
    assert "not found" in capsys.readouterr().err
    assert _run(["check"]) == 2
    assert _run(["check", "10", "--all"]) == 2
    capsys.readouterr()
    assert _run(["check", "--list"]) == 0
    listing = capsys.readouterr().out
    assert all(ex.stem in listing for ex in EXERCISES.values())
    assert main(["3", "--file", "no/such/file.py"]) == 2


def test_default_file_is_the_local_copy_then_the_checkout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _run(["check", "10", "--examples", "3"]) == 1  # the checkout's untouched stub
    assert str(ROOT / "exercises" / "10_rloo.py") in capsys.readouterr().out
    (tmp_path / "exercises").mkdir()
    shutil.copy(ROOT / "exercises" / "solutions" / "10_rloo.py", tmp_path / "exercises")
    assert _run(["check", "10", "--examples", "3"]) == 0
    assert str(tmp_path / "exercises" / "10_rloo.py") in capsys.readouterr().out


def test_check_all_grades_every_exercise(capsys, monkeypatch):
    import rlhf_toy.grading

    two = {n: EXERCISES[n] for n in (9, 10)}  # every exercise's stub is graded above
    monkeypatch.setattr(rlhf_toy.grading, "exercises", lambda: two)
    assert _run(["check", "--all", "--examples", "2"]) == 1  # the stubs are untouched
    out = capsys.readouterr().out
    assert "Exercise 09_grpo_advantages" in out and "Exercise 10_rloo" in out
    assert "2 exercises graded: some checks fail" in out


def test_get_exercise_names():
    assert get_exercise(1) is get_exercise("01") is get_exercise("01_optimal_policy")
    assert get_exercise("optimal_policy").number == 1
    with pytest.raises(KeyError):
        get_exercise("13")
