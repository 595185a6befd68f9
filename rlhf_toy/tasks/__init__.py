"""Toy languages of the sequence world: the tasks the RLHF pipeline runs on.

Each task (:class:`~rlhf_toy.tasks.base.Task`) is a small vocabulary, a prompt
distribution, a gold reward program, an imperfect demonstrator for SFT and simulated
Bradley-Terry labelers whose utility is the gold reward plus a known bias:

- ``length`` (the default, :class:`LengthTask`): labelers like long answers; optimising
  their reward model drives length up and correctness down;
- ``sycophancy`` (:class:`SycophancyTask`): labelers like agreement with the user's belief;
  optimising raises agreement with wrong beliefs;
- ``digits`` (:class:`DigitsTask`): the digit language with honest labelers (the control).

Responses are at most four tokens, so every response of a prompt can be enumerated
(:meth:`Task.all_responses`) and the pipeline's evaluation is exact.
"""

from __future__ import annotations

from .base import Task
from .digits import DigitsTask
from .length import LengthTask
from .sycophancy import SycophancyTask

__all__ = ["TASKS", "DigitsTask", "LengthTask", "SycophancyTask", "Task", "get_task"]

#: Task classes by name; the first is the default.
TASKS = {"length": LengthTask, "sycophancy": SycophancyTask, "digits": DigitsTask}


def get_task(name: str = "length", **options) -> Task:
    """The toy language called ``name``, built with ``options`` (its dataclass fields).

    Parameters
    ----------
    name : {"length", "sycophancy", "digits"}, default "length"
    **options
        Fields of the task's class, e.g. ``length_bias=0.6`` or ``label_temperature=1.0``.

    Returns
    -------
    Task

    Raises
    ------
    ValueError
        For an unknown name, an unknown option or a bad option value.

    Examples
    --------
    >>> task = get_task("length")
    >>> task.decode(task.eval_prompts()[7])
    '<bos> 1 + 2 ='
    >>> task.gold_reward(task.eval_prompts()[7], task.encode("3 <eos>"))
    1.0
    """
    if name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    try:
        return TASKS[name](**options)
    except TypeError as e:
        raise ValueError(f"bad option for task {name!r}: {e}") from None
