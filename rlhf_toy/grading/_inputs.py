"""Random inputs for the graders: small float64 tables drawn by hypothesis (exercises/)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rlhf_toy import strategies as st_rl


def log_uniform(low: float, high: float):
    """Floats drawn log-uniformly from ``[low, high]`` (``beta``, a scale)."""
    return st.floats(np.log(low), np.log(high)).map(lambda v: float(np.exp(v)))


def table_shapes(max_prompts: int = 3, max_responses: int = 6, min_responses: int = 2):
    """Shapes ``(X, Y)`` of small tables."""
    return st_rl.shapes(max_prompts, max_responses, min_responses)


def policies(shape, allow_zeros: bool = False):
    """Row-stochastic tables of ``shape``; with ``allow_zeros`` some entries exactly zero."""
    return st_rl.policy_tables(shape=shape, allow_zeros=allow_zeros)


def floats_array(shape, low: float, high: float):
    """float64 arrays of ``shape`` with entries in ``[low, high]``."""
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high))


@st.composite
def bandit(draw, max_prompts=3, max_responses=6, allow_zeros=True, scale=3.0,
           beta=(0.1, 10.0), rewards=("reward",)):
    """``{"pi_ref", <each reward name>, "beta"}`` for one small tabular world."""
    shape = draw(table_shapes(max_prompts, max_responses))
    example = {"pi_ref": draw(policies(shape, allow_zeros))}
    for name in rewards:
        example[name] = draw(floats_array(shape, -scale, scale))
    example["beta"] = draw(log_uniform(*beta))
    return example
