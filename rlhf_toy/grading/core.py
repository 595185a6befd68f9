"""The grading machinery behind ``rlhf-toy check`` (the chapter's exercises, ``exercises/``).

An exercise is a list of :class:`Check` objects. A check is a *property* the derivation
implies (rows of ``pi*`` sum to one, the DPO gradients sum to zero, the student's value
matches the library's on random instances), a *hint*, and a function that tests the
student's code on one input. :func:`grade` runs every check in its own forked process, with a
time limit per call of the student's code and one per check, so that an exception, a NaN, a
wrong shape or an infinite loop in the student's file is reported as a failed check and never
crashes the grader. Inputs come from hypothesis, derandomised, so the same file always gets
the same report: when a property fails, hypothesis shrinks the input to a minimal one, and the
report gives that input, the property and the hint. It never prints the library's answer.

Results travel from the child process as JSON text, never as pickles.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import select
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "Check",
    "CheckFailed",
    "CheckResult",
    "Exercise",
    "Report",
    "Student",
    "as_array",
    "as_scalar",
    "format_example",
    "grade",
    "require_close",
    "require_finite",
    "run_check",
    "run_checks",
]

#: Seconds one call of the student's code may take before it counts as an infinite loop.
CALL_LIMIT = 2.0
#: Seconds a whole check (search and shrinking) may take; a backstop for the per-call limit.
CHECK_LIMIT = 60.0
#: Random inputs hypothesis tries per check before the property counts as holding.
MAX_EXAMPLES = 25
#: Calls of the property hypothesis may spend shrinking a failing input (a count, not a time,
#: so that the same file always gets the same report).
SHRINK_LIMIT = 100


class CheckFailed(Exception):
    """A property does not hold on one input: ``message`` says how; ``hint`` overrides the check's.

    Raised by a check's test function (through the helpers :func:`as_array`,
    :func:`require_close`, ... or directly).

    Parameters
    ----------
    message : str
    hint : str, optional
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class _CallTimeout(BaseException):
    """Raised inside the student's code by the per-call alarm (BaseException: a bare
    ``except Exception`` in the student's code does not swallow it)."""


class _ShrinkBudget(BaseException):
    """Internal: enough shrinking; report the smallest failing input found so far."""


class _StopSearch(BaseException):
    """Internal: the student's code cannot be run any further (not implemented, or timed out).

    A BaseException, so that hypothesis stops at once instead of shrinking the input."""


@dataclass(frozen=True)
class Check:
    """One graded property of an exercise.

    Attributes
    ----------
    name : str
        Short name shown in the report (``"rows sum to one"``).
    prop : str
        The property, in words and formulas.
    hint : str
        What to look at when the property fails.
    test : callable
        ``test(student, example)``; returns ``None`` when the property holds on ``example``
        and raises :class:`CheckFailed` otherwise. ``student`` is a :class:`Student`.
    examples : hypothesis strategy or None
        Where the inputs come from; each example is a dict of named values (shown in the
        report). ``None``: the test runs once with ``example = {}``.
    max_examples : int or None
        Overrides the grade-wide number of random inputs for this check (for expensive ones).
    """

    name: str
    prop: str
    hint: str
    test: Callable
    examples: object = None
    max_examples: int | None = None


@dataclass(frozen=True)
class Exercise:
    """A graded exercise: ``exercises/NN_slug.py`` and the checks of its functions."""

    number: int
    slug: str
    title: str
    functions: tuple
    checks: tuple

    @property
    def stem(self) -> str:
        """``NN_slug``, the file name without ``.py``."""
        return f"{self.number:02d}_{self.slug}"


@dataclass
class CheckResult:
    """Outcome of one check. ``status`` is ``"pass"``, ``"fail"`` or ``"timeout"``."""

    name: str
    prop: str
    status: str
    message: str = ""
    hint: str = ""
    example: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass
class Report:
    """Outcome of grading one file against one exercise."""

    exercise: Exercise
    path: Path
    results: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def failed(self) -> list:
        """Names of the checks that did not pass."""
        return [r.name for r in self.results if not r.passed]

    def text(self) -> str:
        """The report as printed by ``rlhf-toy check``."""
        ex = self.exercise
        lines = [f"Exercise {ex.stem}: {ex.title}", f"  file: {self.path}"]
        for r in self.results:
            mark = "PASS" if r.passed else ("TIME" if r.status == "timeout" else "FAIL")
            lines.append(f"  {mark}  {r.name}")
            if r.passed:
                continue
            lines.append(_indent("property", r.prop))
            lines.append(_indent("failed", r.message))
            if r.example:
                lines.append(_indent("example", r.example))
            if r.hint:
                lines.append(_indent("hint", r.hint))
        n_pass = sum(r.passed for r in self.results)
        verdict = "all checks pass" if self.passed else "not yet"
        lines.append(f"  {n_pass}/{len(self.results)} checks pass: {verdict}")
        return "\n".join(lines)


def _indent(label: str, text: str) -> str:
    pad = " " * 8
    head = f"{pad}{label + ':':10s}"
    body = text.splitlines() or [""]
    return "\n".join([head + body[0], *[pad + " " * 10 + line for line in body[1:]]])


# --------------------------------------------------------------------------------------
# the student's code, called safely
# --------------------------------------------------------------------------------------


class Student:
    """The student's module, loaded from a file, whose functions are called under a time limit.

    ``student.call(name, *args, **kwargs)`` copies array arguments (a function that writes
    into its inputs cannot corrupt the grader's), runs the function with an alarm of
    ``call_limit`` seconds, and turns anything it raises into :class:`CheckFailed`, naming the
    exception and the line of the student's file it came from.

    Parameters
    ----------
    path : str or pathlib.Path
        The student's file.
    call_limit : float, default :data:`CALL_LIMIT`
        Seconds each call may take.
    """

    def __init__(self, path: Path, call_limit: float = CALL_LIMIT):
        self.path = Path(path).resolve()
        self.call_limit = float(call_limit)
        self.module = None
        self.stopped: CheckFailed | None = None  # set once further calls are pointless
        self.show_stopped_input = False  # whether the input of the stopping call matters

    def load(self) -> None:
        sys.dont_write_bytecode = True  # leave no __pycache__ beside the student's file
        spec = importlib.util.spec_from_file_location(f"student_{self.path.stem}", self.path)
        if spec is None or spec.loader is None:
            raise CheckFailed(f"cannot load {self.path} as a Python module")
        module = importlib.util.module_from_spec(spec)
        self._run(spec.loader.exec_module, (module,), {}, f"importing {self.path.name}")
        self.module = module

    def call(self, name: str, *args, **kwargs):
        if self.stopped is not None:
            raise _StopSearch
        fn = getattr(self.module, name, None)
        if not callable(fn):
            raise CheckFailed(f"{self.path.name} defines no function {name!r}",
                              hint=f"keep the function name {name} from the exercise file")
        args = tuple(_copy(a) for a in args)
        kwargs = {k: _copy(v) for k, v in kwargs.items()}
        return self._run(fn, args, kwargs, f"{name}(...)")

    def _run(self, fn, args, kwargs, what):
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, self.call_limit)
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                return fn(*args, **kwargs)
        except _CallTimeout:
            self.stopped = CheckFailed(
                f"{what} did not return within {self.call_limit:g} s (an infinite loop?)",
                hint="look for a loop whose condition never becomes false")
            self.show_stopped_input = True
            raise _StopSearch from None
        except NotImplementedError:
            self.stopped = CheckFailed(
                f"{what} raises NotImplementedError: not written yet",
                hint="replace the `raise NotImplementedError` under YOUR CODE HERE")
            raise _StopSearch from None
        except CheckFailed:
            raise
        except BaseException as err:  # noqa: BLE001 - anything the student's code raises
            raise CheckFailed(f"{what} raised {type(err).__name__}: {err}"
                              f"{self._where(err)}") from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def _where(self, err: BaseException) -> str:
        frames = [f for f in traceback.extract_tb(err.__traceback__)
                  if Path(f.filename).resolve() == self.path]
        if not frames:
            return ""
        f = frames[-1]
        return f"\n  at line {f.lineno} of {self.path.name}: {(f.line or '').strip()}"


def _alarm(signum, frame):
    raise _CallTimeout


def _copy(value):
    return value.copy() if isinstance(value, np.ndarray) else value


# --------------------------------------------------------------------------------------
# helpers for writing checks (they raise CheckFailed with the student's values only)
# --------------------------------------------------------------------------------------


def _not_none(value, what: str) -> None:
    if value is None:
        raise CheckFailed(f"{what} returned None", hint="did you forget the return statement?")


def as_array(value, shape, what: str) -> np.ndarray:
    """The student's output as a float64 array of ``shape``, or :class:`CheckFailed`.

    Parameters
    ----------
    value : object
        What the student's function returned.
    shape : tuple of int
        The expected shape.
    what : str
        Names the output in the message.

    Returns
    -------
    ndarray of float64 of shape ``shape``
    """
    _not_none(value, what)
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} is not an array of numbers (got {type(value).__name__})",
                          hint="return a numpy array of floats") from None
    if a.shape != tuple(shape):
        raise CheckFailed(f"{what} has shape {a.shape}, expected {tuple(shape)}",
                          hint="check which axis you reduce over and that you keep the others")
    return a


def as_scalar(value, what: str) -> float:
    """The student's output as a Python float, or :class:`CheckFailed`.

    Parameters
    ----------
    value : object
        What the student's function returned.
    what : str
        Names the output in the message.

    Returns
    -------
    float
    """
    _not_none(value, what)
    a = as_array(value, np.shape(value), what) if np.ndim(value) == 0 else None
    if a is None:
        raise CheckFailed(f"{what} has shape {np.shape(value)}, expected a single number",
                          hint="reduce to one number (a mean over prompts)")
    return float(a)


def require_finite(a, what: str, hint: str | None = None) -> None:
    """:class:`CheckFailed` if ``a`` has a NaN or an infinity.

    Parameters
    ----------
    a : array_like
    what : str
        Names the value in the message.
    hint : str, optional
    """
    a = np.asarray(a, dtype=np.float64)
    bad = ~np.isfinite(a)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0]) if a.ndim else ()
        raise CheckFailed(f"{what} is not finite: {a[idx] if a.ndim else a} at index {idx}",
                          hint=hint)


def require_close(value, reference, what: str, rtol: float = 1e-7, atol: float = 1e-10,
                  hint: str | None = None) -> None:
    """:class:`CheckFailed` unless ``|value - reference| <= atol + rtol |reference|``.

    The message gives the first offending index and the size of the error (relative, to two
    digits), never the reference value itself.

    Parameters
    ----------
    value, reference : array_like of one shape
    what : str
        Names the value in the message.
    rtol, atol : float, default 1e-7 and 1e-10
    hint : str, optional
    """
    value = np.asarray(value, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    require_finite(value, what, hint)
    with np.errstate(all="ignore"):
        err = np.abs(value - reference)
        bad = ~(err <= atol + rtol * np.abs(reference))
    if np.any(bad):
        if value.ndim:
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            e, scale = err[idx], abs(reference[idx])
            where = f" at index {idx}"
        else:
            e, scale, where = float(err), abs(float(reference)), ""
        with np.errstate(all="ignore"):
            rel = e / scale if scale > 0 else np.inf
        size = f"relative error {rel:.2g}" if np.isfinite(rel) else f"absolute error {e:.2g}"
        raise CheckFailed(f"{what} is wrong{where}: {size} (allowed: {rtol:g} relative, "
                          f"{atol:g} absolute)", hint=hint)


def format_example(example: dict) -> str:
    """The named values of an example, one per line, as copy-pasteable Python.

    Parameters
    ----------
    example : dict of str to object

    Returns
    -------
    str
    """
    lines = []
    with np.printoptions(floatmode="unique", suppress=False, threshold=200, linewidth=88):
        for k, v in example.items():
            if isinstance(v, np.ndarray):
                text = repr(v)
                if not text.startswith("array("):
                    text = f"np.array({text})"
                else:
                    text = "np." + text
            elif isinstance(v, float | np.floating):
                text = repr(float(v))
            else:
                text = repr(v)
            lines.append(f"{k} = {text}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# running one check in a child process
# --------------------------------------------------------------------------------------


def _run_check(check: Check, path: Path, call_limit: float, max_examples: int,
               shrink_limit: int) -> dict:
    """In the child: load the student's file and look for an input that breaks the property."""
    from hypothesis import HealthCheck, Verbosity, find, settings
    from hypothesis.errors import NoSuchExample

    student = Student(path, call_limit)
    try:
        student.load()
    except _StopSearch:
        return _failure(student.stopped, {})
    except CheckFailed as err:
        return _failure(err, {}, hint="fix the error that stops the file from importing")

    stopped_on: dict = {}
    shrinking = {"calls": 0, "last": None}

    def fails(example) -> bool:
        if shrinking["last"] is not None:
            if shrinking["calls"] >= shrink_limit:
                raise _ShrinkBudget
            shrinking["calls"] += 1
        was_running = student.stopped is None
        try:
            check.test(student, example)
        except CheckFailed:
            if shrinking["last"] is None or _size(example) < _size(shrinking["last"]):
                shrinking["last"] = example  # the smallest failing input seen so far
            return True
        except _CallTimeout:  # the alarm fired just as the student's function returned
            student.stopped = student.stopped or CheckFailed(
                f"a call did not return within {call_limit:g} s",
                hint="look for a loop whose condition never becomes false")
            raise _StopSearch from None
        except _StopSearch:
            if was_running and student.show_stopped_input:
                stopped_on.update(example)
            raise
        return False

    if check.examples is None:
        example = {}
    else:
        n = check.max_examples or max_examples
        config = settings(max_examples=n, derandomize=True, database=None, deadline=None,
                          suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
        try:
            example = find(check.examples, fails, settings=config)
        except NoSuchExample:
            return {"status": "pass"}
        except _ShrinkBudget:
            example = shrinking["last"]
        except _StopSearch:  # report the call that stopped the search
            return _failure(student.stopped, stopped_on)
    try:
        check.test(student, example)
    except CheckFailed as err:
        return _failure(err, example)
    except _StopSearch:
        return _failure(student.stopped, example if student.show_stopped_input else {})
    if check.examples is None:
        return {"status": "pass"}
    return _failure(CheckFailed("the property failed on this input in the search, but not on "
                                "a second run: does your code use global state or randomness?"),
                    example)


def _size(example: dict) -> tuple:
    """How big an input looks: number of entries, then their total magnitude, then its text."""
    count, magnitude = 0, 0.0
    for value in example.values():
        try:
            a = np.abs(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            count += 1
            continue
        count += a.size
        magnitude += float(np.sum(np.where(np.isfinite(a), a, np.inf)))
    return count, magnitude, len(format_example(example))


def _failure(err: CheckFailed, example: dict, hint: str | None = None) -> dict:
    return {"status": "fail", "message": err.message, "hint": err.hint or hint,
            "example": format_example(example) if example else ""}


def _in_child(check: Check, path: Path, call_limit: float, max_examples: int,
              shrink_limit: int) -> dict:
    try:
        return _run_check(check, path, call_limit, max_examples, shrink_limit)
    except BaseException as err:  # noqa: BLE001 - a grader bug must not look like a pass
        return {"status": "fail", "message": f"internal grader error: {err!r}",
                "hint": "please report this", "example": ""}


@dataclass
class _Child:
    """A forked child running one check, and what it has written so far."""

    check: Check
    pid: int
    fd: int
    t0: float
    deadline: float
    chunks: list = field(default_factory=list)
    timed_out: bool = False


#: Strategies already drawn from once in this process (see :func:`_warm_up`).
_WARM: set = set()


def _warm_up(checks) -> None:
    """Draw one input from each check's strategy here, before forking.

    Hypothesis builds its machinery and each strategy's caches lazily, on first use; doing
    that once in the parent saves every forked child from doing it again.
    """
    from hypothesis import HealthCheck, Phase, Verbosity, find, settings

    config = settings(max_examples=1, database=None, deadline=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
                      phases=[Phase.generate])
    for check in checks:
        if check.examples is not None and id(check.examples) not in _WARM:
            find(check.examples, lambda _: True, settings=config)
            _WARM.add(id(check.examples))


def _spawn(check: Check, path, call_limit, check_limit, max_examples, shrink_limit) -> _Child:
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    t0 = time.perf_counter()
    gc.freeze()  # the child's collector then leaves the inherited objects (and pages) alone
    pid = os.fork()
    if pid:
        gc.unfreeze()
    if pid == 0:  # child: run the check, write its JSON result, exit without cleanup
        os.close(read_fd)
        code = 0
        try:
            payload = json.dumps(_in_child(check, Path(path), call_limit, max_examples,
                                           shrink_limit))
            with os.fdopen(write_fd, "w") as out:
                out.write(payload)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(write_fd)
    return _Child(check, pid, read_fd, t0, time.monotonic() + check_limit)


def _collect(child: _Child, check_limit: float) -> CheckResult:
    """Reap a finished (or killed) child and turn its output into a :class:`CheckResult`."""
    if child.timed_out:
        os.kill(child.pid, signal.SIGKILL)
    os.close(child.fd)
    _, status = os.waitpid(child.pid, 0)
    check = child.check
    base = {"name": check.name, "prop": check.prop, "seconds": time.perf_counter() - child.t0}
    if child.timed_out:
        return CheckResult(**base, status="timeout",
                           message=f"the check did not finish within {check_limit:g} s",
                           hint="look for an infinite loop, or code far slower than it needs "
                                "to be (vectorise with numpy)")
    try:
        data = json.loads(b"".join(child.chunks).decode())
    except ValueError:
        code = os.waitstatus_to_exitcode(status)
        return CheckResult(**base, status="fail",
                           message=f"the process running your code died (exit code {code})",
                           hint="does your code call sys.exit, os._exit or crash the "
                                "interpreter?")
    if data["status"] == "pass":
        return CheckResult(**base, status="pass")
    return CheckResult(**base, status="fail", message=data["message"],
                       hint=data["hint"] or check.hint, example=data["example"])


def run_checks(checks, path, *, call_limit: float = CALL_LIMIT,
               check_limit: float = CHECK_LIMIT, max_examples: int = MAX_EXAMPLES,
               shrink_limit: int = SHRINK_LIMIT, jobs: int = 2) -> list:
    """Run ``checks`` on the file ``path``, each in its own forked child, ``jobs`` at a time.

    ``path`` is one file for every check, or a list of files, one per check (to grade many
    files in one parallel batch). Returns one :class:`CheckResult` per check, in order;
    never raises because of the student's code.

    Parameters
    ----------
    checks : iterable of Check
    path : str, pathlib.Path or list of them
    call_limit : float, default :data:`CALL_LIMIT`
        Seconds per call of a student's function.
    check_limit : float, default :data:`CHECK_LIMIT`
        Seconds per check.
    max_examples : int, default :data:`MAX_EXAMPLES`
        Random inputs per check.
    shrink_limit : int, default :data:`SHRINK_LIMIT`
        Calls spent shrinking a failing input.
    jobs : int, default 2
        Checks run at a time.

    Returns
    -------
    list of CheckResult
    """
    checks = list(checks)
    paths = [path] * len(checks) if isinstance(path, str | os.PathLike) else list(path)
    if len(paths) != len(checks):
        raise ValueError(f"path must be one file or one per check, got {len(paths)} files "
                         f"for {len(checks)} checks")
    _warm_up(checks)
    results: list = [None] * len(checks)
    running: dict = {}  # fd -> (index, child)
    todo = list(enumerate(checks))
    while todo or running:
        while todo and len(running) < max(1, jobs):
            i, check = todo.pop(0)
            child = _spawn(check, paths[i], call_limit, check_limit, max_examples,
                           shrink_limit)
            running[child.fd] = (i, child)
        timeout = max(0.0, min(c.deadline for _, c in running.values()) - time.monotonic())
        ready, _, _ = select.select(list(running), [], [], timeout)
        for fd in ready:
            i, child = running[fd]
            chunk = os.read(fd, 1 << 16)
            if chunk:
                child.chunks.append(chunk)
                continue
            del running[fd]
            results[i] = _collect(child, check_limit)
        now = time.monotonic()
        for fd in [fd for fd, (_, c) in running.items() if c.deadline <= now]:
            i, child = running.pop(fd)
            child.timed_out = True
            results[i] = _collect(child, check_limit)
    return results


def run_check(check: Check, path, **limits) -> CheckResult:
    """Run one check on the file ``path`` in a forked child process; never raises.

    ``limits`` are the keyword arguments of :func:`run_checks`.

    Parameters
    ----------
    check : Check
    path : str or pathlib.Path
    **limits
        ``call_limit``, ``check_limit``, ``max_examples``, ``shrink_limit``.

    Returns
    -------
    CheckResult
    """
    return run_checks([check], path, **{**limits, "jobs": 1})[0]


def grade(exercise: Exercise, path, *, call_limit: float = CALL_LIMIT,
          check_limit: float = CHECK_LIMIT, max_examples: int = MAX_EXAMPLES,
          shrink_limit: int = SHRINK_LIMIT, jobs: int = 2, only=None) -> Report:
    """Grade the file ``path`` on every check of ``exercise``.

    Parameters
    ----------
    exercise : Exercise
    path : str or Path
        The student's file (it must exist).
    call_limit : float
        Seconds one call of the student's code may take.
    check_limit : float
        Seconds one whole check may take (the search for a failing input and its shrinking).
    max_examples : int
        Random inputs per check.
    shrink_limit : int
        Calls spent shrinking a failing input before reporting the smallest one found.
    jobs : int
        How many checks run at once (each in its own process).
    only : iterable of str, optional
        Run only the checks with these names.

    Returns
    -------
    Report
        One :class:`CheckResult` per check, in order; ``report.passed`` when all pass.
    """
    checks = exercise.checks
    if only is not None:
        only = set(only)
        unknown = only - {c.name for c in checks}
        if unknown:
            raise ValueError(f"only names no check of exercise {exercise.stem}: {sorted(unknown)}")
        checks = [c for c in checks if c.name in only]
    report = Report(exercise, Path(path))
    report.results = run_checks(checks, path, call_limit=call_limit,
                                check_limit=check_limit, max_examples=max_examples,
                                shrink_limit=shrink_limit, jobs=jobs)
    return report
