"""Every public function and class of ``rlhf_toy`` has a numpydoc docstring.

Public means listed in the ``__all__`` of the module that defines it. The checks are strict
and structural: a one-line summary ending with a period; a ``Parameters`` section when the
callable takes parameters; a ``Returns`` (or ``Yields``) section for functions that return
something; and, for the functions of the objective modules (each computes a formula of the
chapter), a ``Notes`` section or the formula itself (an equation in double backquotes or
LaTeX). Modules whose offenders are known are marked ``xfail(strict=True)`` naming them, so
fixing them turns the mark into a failure that asks for its removal; a second test makes sure
no new offender joins a marked module.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import textwrap

import pytest

import rlhf_toy

#: Modules whose functions compute a formula of the chapter: each needs Notes or the formula.
FORMULA_MODULES = {
    "rlhf_toy.kl",
    "rlhf_toy.optimal",
    "rlhf_toy.bradley_terry",
    "rlhf_toy.preference_losses",
    "rlhf_toy.best_of_n",
    "rlhf_toy.policy_gradient",
    "rlhf_toy.gao",
}

_SECTION = re.compile(r"^([A-Z][A-Za-z ]+)\n-{3,}\s*$", re.MULTILINE)
_FORMULA = re.compile(r"``[^`]*=[^`]*``|\\frac|\\sum|:math:|\$[^$]+\$")


def _modules():
    names = ["rlhf_toy"]
    for info in pkgutil.walk_packages(rlhf_toy.__path__, prefix="rlhf_toy."):
        names.append(info.name)
    return sorted(names)


def _public_objects(module):
    """``(name, object)`` for each name of ``__all__`` defined in ``module`` itself."""
    out = []
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name, None)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue  # constants and re-exported modules carry no docstring of their own
        if getattr(obj, "__module__", None) != module.__name__:
            continue  # re-exported: checked where it is defined
        out.append((name, obj))
    return out


def _has_parameters(obj) -> bool:
    target = obj.__init__ if inspect.isclass(obj) else obj
    if inspect.isclass(obj) and target is object.__init__:
        return False
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return False
    params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return bool(params)


def _returns_something(obj) -> bool:
    """Whether a function returns a value: its annotation, else a ``return x`` or ``yield``."""
    if inspect.isclass(obj):
        return False
    ann = inspect.signature(obj).return_annotation
    if ann is not inspect.Signature.empty:
        return ann not in (None, "None")
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(obj))))
    except (OSError, TypeError, SyntaxError):
        return True
    func = tree.body[0]
    stack = list(ast.iter_child_nodes(func))
    while stack:  # the function's own body, not that of nested functions or classes
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return True
        if isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            return True
        stack.extend(ast.iter_child_nodes(node))
    return False


def problems(name, obj, module_name) -> list[str]:
    """What the docstring of ``obj`` lacks (empty when it passes)."""
    doc = inspect.getdoc(obj)
    if inspect.isclass(obj) and doc == inspect.getdoc(object):
        doc = None
    if not doc:
        return ["no docstring"]
    out = []
    summary = doc.strip().splitlines()[0].strip()
    if not summary.endswith("."):
        out.append("summary line does not end with a period")
    sections = set(_SECTION.findall(doc))
    # a dataclass documents its fields as Attributes (or inline comments)
    is_dataclass = inspect.isclass(obj) and hasattr(obj, "__dataclass_fields__")
    if _has_parameters(obj) and not sections & {"Parameters", "Attributes"} and not is_dataclass:
        out.append("no Parameters section")
    if _returns_something(obj) and not sections & {"Returns", "Yields"}:
        out.append("no Returns section")
    if (module_name in FORMULA_MODULES and inspect.isfunction(obj) and "Notes" not in sections
            and not _FORMULA.search(doc)):
        out.append("no Notes section and no formula")
    return out


def offenders(module_name) -> dict[str, list[str]]:
    module = importlib.import_module(module_name)
    found = {}
    for name, obj in _public_objects(module):
        p = problems(name, obj, module_name)
        if p:
            found[name] = p
    return found


#: Known offenders, by module (none today: fix and delete any listed here).
KNOWN_OFFENDERS: dict[str, set[str]] = {}

MODULES = _modules()


def _param(module_name):
    known = KNOWN_OFFENDERS.get(module_name)
    if not known:
        return module_name
    reason = f"docstrings lacking numpydoc sections: {', '.join(sorted(known))}"
    return pytest.param(module_name, marks=pytest.mark.xfail(strict=True, reason=reason))


def test_every_module_is_found():
    assert "rlhf_toy.kl" in MODULES and "rlhf_toy.gpt.model" in MODULES


@pytest.mark.parametrize("module_name", [_param(m) for m in MODULES])
def test_public_docstrings_are_numpydoc(module_name):
    found = offenders(module_name)
    assert not found, "\n".join(f"{module_name}.{n}: {', '.join(p)}" for n, p in found.items())


@pytest.mark.parametrize("module_name", sorted(KNOWN_OFFENDERS))
def test_no_new_offenders_in_marked_modules(module_name):
    new = set(offenders(module_name)) - KNOWN_OFFENDERS[module_name]
    assert not new, f"new docstring offenders in {module_name}: {sorted(new)}"


def test_the_check_can_fail():
    def no_doc(x):
        return x

    def no_sections(x):
        """Do something."""
        return x

    def good(x):
        """Double ``x``.

        Parameters
        ----------
        x : float

        Returns
        -------
        float
            ``y = 2 x``.
        """
        return 2 * x

    assert problems("no_doc", no_doc, "rlhf_toy.kl") == ["no docstring"]
    assert problems("no_sections", no_sections, "rlhf_toy.kl") == [
        "no Parameters section", "no Returns section", "no Notes section and no formula"]
    assert problems("good", good, "rlhf_toy.kl") == []
