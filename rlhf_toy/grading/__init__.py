"""Graders of the chapter's exercises (``exercises/NN_slug.py``), run by ``rlhf-toy check``.

Each ``exNN_slug`` module defines one :class:`~rlhf_toy.grading.core.Exercise`: the
properties the exercise's derivation implies, tested by hypothesis against the student's
functions with the library as the reference. :mod:`rlhf_toy.grading.core` runs them in
forked processes with time limits; :mod:`rlhf_toy.grading.cli` is the command line.
Requires ``hypothesis`` (the ``dev`` extra).
"""

from __future__ import annotations

import importlib

__all__ = ["exercises", "get_exercise"]

#: The grader modules, in exercise order.
_MODULES = (
    "ex01_optimal_policy",
    "ex02_dpo_gradient",
    "ex03_goodhart",
    "ex04_bradley_terry_gradient",
    "ex05_k3_estimator",
    "ex06_best_of_n_kl",
    "ex07_reverse_forward_kl",
    "ex08_objective_identity",
    "ex09_grpo_advantages",
    "ex10_rloo",
    "ex11_ppo_clip_gradient",
    "ex12_gae",
)


def exercises() -> dict:
    """Every exercise whose grader is present, in order.

    Returns
    -------
    dict of int to Exercise
        ``{number: Exercise}``.
    """
    found = {}
    for name in _MODULES:
        try:
            module = importlib.import_module(f"rlhf_toy.grading.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"rlhf_toy.grading.{name}":
                raise
            continue
        found[module.EXERCISE.number] = module.EXERCISE
    return found


def get_exercise(key) -> object:
    """The exercise named by ``key``: ``1``, ``"01"``, ``"01_optimal_policy"`` or its slug.

    Parameters
    ----------
    key : int or str

    Returns
    -------
    Exercise

    Raises
    ------
    KeyError
        If no exercise matches.
    """
    table = exercises()
    text = str(key).strip()
    if text.isdigit() and int(text) in table:
        return table[int(text)]
    for ex in table.values():
        if text in (ex.stem, ex.slug, f"{ex.stem}.py"):
            return ex
    raise KeyError(key)
