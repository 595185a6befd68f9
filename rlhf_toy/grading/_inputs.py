"""Random inputs for the graders: small float64 tables drawn by hypothesis (exercises/).

Few primitive draws per input (a bit mask for the zeros of a table, not one boolean per
entry): hypothesis' cost is per draw, and each check tries dozens of inputs and shrinks.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def log_uniform(low: float, high: float):
    """Floats drawn log-uniformly from ``[low, high]`` (``beta``, a scale)."""
    return st.floats(np.log(low), np.log(high)).map(lambda v: float(np.exp(v)))


def floats_array(shape, low: float, high: float):
    """float64 arrays of ``shape`` with entries in ``[low, high]``."""
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high))


@st.composite
def policies(draw, shape, allow_zeros: bool = False, spread: float = 4.0):
    """Row-stochastic tables: softmax of logits in ``[-spread, spread]``; with ``allow_zeros``
    some entries (never a row's largest) exactly zero."""
    logits = draw(floats_array(shape, -spread, spread))
    p = np.exp(logits - logits.max(-1, keepdims=True))
    if allow_zeros:
        bits = draw(st.integers(0, 2 ** p.size - 1))
        mask = ((bits >> np.arange(p.size)) & 1).astype(bool).reshape(shape)
        rows = np.arange(int(np.prod(shape[:-1]))).reshape(shape[:-1])
        mask[rows, np.argmax(p, -1)] = False
        p = np.where(mask, 0.0, p)
    return p / p.sum(-1, keepdims=True)


def table_shapes(max_prompts: int = 3, max_responses: int = 5, min_responses: int = 2):
    """Shapes ``(X, Y)`` of small tables."""
    return st.tuples(st.integers(1, max_prompts), st.integers(min_responses, max_responses))


@st.composite
def bandit(draw, max_prompts=3, max_responses=5, allow_zeros=True, scale=3.0,
           beta=(0.1, 10.0), rewards=("reward",)):
    """``{"pi_ref", <each reward name>, "beta"}`` for one small tabular world."""
    shape = draw(table_shapes(max_prompts, max_responses))
    example = {"pi_ref": draw(policies(shape, allow_zeros))}
    for name in rewards:
        example[name] = draw(floats_array(shape, -scale, scale))
    example["beta"] = draw(log_uniform(*beta))
    return example
