"""Hypothesis strategies for property-testing the chapter's derivations on random instances.

A public module: import it to test your own derivations the way the project's tests do::

    from hypothesis import given
    from rlhf_toy import strategies as st_rl

    @given(st_rl.bandit_tables(), st_rl.betas())
    def test_my_claim(tables, beta):
        pi_ref, reward = tables
        ...

Requires ``hypothesis`` (installed with the ``dev`` extra). Every strategy draws float64
tables of modest size so that exact sums stay fast; sizes and ranges are arguments.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy._validate import (
    MAX_TABLE_ENTRIES,
    ArgumentTypeError,
    check_float,
    check_int,
    check_nonnegative,
    check_positive,
)

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as err:  # pragma: no cover - exercised only without the dev extra
    raise ImportError(
        "rlhf_toy.strategies needs hypothesis: pip install 'rlhf_toy[dev]'"
    ) from err

__all__ = [
    "bandit_tables",
    "betas",
    "distributions",
    "log_probs",
    "policy_tables",
    "reward_tables",
    "shapes",
]


def _check_shape(shape, name: str = "shape", ndim: int | None = None) -> tuple:
    """A tuple of sizes ``>= 1`` with at most :data:`MAX_TABLE_ENTRIES` entries in all."""
    if not isinstance(shape, (tuple, list)):
        raise ArgumentTypeError(f"{name} must be a tuple of ints, got {shape!r}")
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"{name} must have {ndim} sizes, got {tuple(shape)!r}")
    sizes = tuple(check_int(n, f"{name}[{i}]", maximum=MAX_TABLE_ENTRIES)
                  for i, n in enumerate(shape))
    if int(np.prod(sizes, dtype=object)) > MAX_TABLE_ENTRIES:
        raise ValueError(f"{name} must have at most {MAX_TABLE_ENTRIES} entries, got {sizes}")
    return sizes


def _check_scale(scale) -> float:
    """A finite reward scale ``> 0`` whose range ``[-scale, scale]`` hypothesis can draw."""
    return check_positive(scale, "scale")


def shapes(max_prompts: int = 4, max_responses: int = 8, min_responses: int = 2):
    """Table shapes ``(X, Y)`` with ``1 <= X <= max_prompts``, ``min_responses <= Y``.

    Parameters
    ----------
    max_prompts : int, default 4
    max_responses : int, default 8
        Upper bound on ``Y``.
    min_responses : int, default 2

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Of ``(int, int)`` tuples.

    Raises
    ------
    ValueError
        If a bound is not an integer ``>= 1`` (``TypeError`` for a non-integer) or
        ``max_responses < min_responses``.
    """
    max_prompts = check_int(max_prompts, "max_prompts", maximum=MAX_TABLE_ENTRIES)
    min_responses = check_int(min_responses, "min_responses", maximum=MAX_TABLE_ENTRIES)
    max_responses = check_int(max_responses, "max_responses", minimum=min_responses,
                              maximum=MAX_TABLE_ENTRIES)
    return st.tuples(st.integers(1, max_prompts), st.integers(min_responses, max_responses))


def policy_tables(shape=None, allow_zeros: bool = False, min_prob: float = 0.0):
    """Row-stochastic tables ``[X, Y]`` (float64).

    Rows are softmaxes of logits in ``[-5, 5]``; with ``allow_zeros`` some entries of
    each row (never all) are set exactly to zero and the row renormalised.

    Parameters
    ----------
    shape : tuple of int ``(X, Y)``, optional
        Drawn from :func:`shapes` if omitted.
    allow_zeros : bool, default False
    min_prob : float, default 0.0
        If ``> 0``, mixed with the uniform row: ``(p + min_prob) / (1 + min_prob Y)``.

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Of ndarrays of shape ``shape``.
    """
    shape = None if shape is None else _check_shape(shape, ndim=2)
    min_prob = check_nonnegative(min_prob, "min_prob")
    return _policy_tables(shape, bool(allow_zeros), min_prob)


@st.composite
def _policy_tables(draw, shape, allow_zeros: bool, min_prob: float):
    """:func:`policy_tables` on validated arguments."""
    if shape is None:
        shape = draw(shapes())
    logits = draw(hnp.arrays(np.float64, shape, elements=st.floats(-5, 5)))
    p = np.exp(logits - logits.max(-1, keepdims=True))
    if allow_zeros:
        mask = draw(hnp.arrays(np.bool_, shape))
        mask[np.arange(shape[0]), np.argmax(p, -1)] = False  # keep each row's largest
        p = np.where(mask, 0.0, p)
    p = p / p.sum(-1, keepdims=True)
    if min_prob > 0:
        p = (p + min_prob) / (1 + min_prob * shape[-1])
    return p


def distributions(n: int, allow_zeros: bool = False):
    """Probability vectors of length ``n``.

    Parameters
    ----------
    n : int
    allow_zeros : bool, default False
        As in :func:`policy_tables`.

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Of ndarrays of shape (n,).
    """
    n = check_int(n, "n", maximum=MAX_TABLE_ENTRIES)
    return policy_tables(shape=(1, n), allow_zeros=allow_zeros).map(lambda p: p[0])


def reward_tables(shape, scale: float = 3.0):
    """Finite reward tables of the given shape with entries in ``[-scale, scale]``.

    Parameters
    ----------
    shape : tuple of int
    scale : float, default 3.0

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Of float64 ndarrays of shape ``shape``.
    """
    shape, scale = _check_shape(shape), _check_scale(scale)
    return hnp.arrays(np.float64, shape, elements=st.floats(-scale, scale))


def log_probs(shape, low: float = -20.0, high: float = 0.0):
    """Arrays of log-probabilities (finite, ``<= 0``) of the given shape.

    Parameters
    ----------
    shape : tuple of int
    low, high : float, default -20.0 and 0.0
        Range of the entries.

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Of float64 ndarrays of shape ``shape``.
    """
    shape = _check_shape(shape)
    low = check_float(low, "low", high=0.0)
    high = check_float(high, "high", high=0.0)
    if high < low:
        raise ValueError(f"log_probs needs low <= high, got low={low!r} and high={high!r}")
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high))


def betas(low: float = 0.05, high: float = 20.0):
    """KL coefficients drawn log-uniformly from ``[low, high]``, ``0 < low <= high``.

    Every draw lies in ``[low, high]`` (never 0: a KL coefficient must be positive).

    Parameters
    ----------
    low, high : float, default 0.05 and 20.0

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Of floats.

    Raises
    ------
    ValueError
        If ``low <= 0``, ``high < low`` or either is not finite.
    """
    low = check_positive(low, "low")
    high = check_positive(high, "high")
    if high < low:
        raise ValueError(f"betas needs low <= high, got low={low!r} and high={high!r}")
    return st.floats(np.log(low), np.log(high)).map(
        lambda log_beta: float(np.clip(np.exp(log_beta), low, high)))


def bandit_tables(max_prompts: int = 4, max_responses: int = 8, allow_zeros=False,
                  scale: float = 3.0):
    """A pair ``(pi_ref, reward)`` of matching ``[X, Y]`` tables.

    Parameters
    ----------
    max_prompts, max_responses : int, default 4 and 8
        Bounds of the shape, as in :func:`shapes`.
    allow_zeros : bool, default False
        Zeros in ``pi_ref``, as in :func:`policy_tables`.
    scale : float, default 3.0
        Rewards in ``[-scale, scale]``.

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Of ``(pi_ref, reward)`` pairs of float64 ndarrays of shape (X, Y).
    """
    return _bandit_tables(shapes(max_prompts, max_responses), bool(allow_zeros),
                          _check_scale(scale))


@st.composite
def _bandit_tables(draw, shape_strategy, allow_zeros: bool, scale: float):
    """:func:`bandit_tables` on validated arguments."""
    shape = draw(shape_strategy)
    pi_ref = draw(policy_tables(shape=shape, allow_zeros=allow_zeros))
    reward = draw(reward_tables(shape, scale))
    return pi_ref, reward
