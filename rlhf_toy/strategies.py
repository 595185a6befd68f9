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

from rlhf_toy._validate import check_positive

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
    """
    return st.tuples(st.integers(1, max_prompts), st.integers(min_responses, max_responses))


@st.composite
def policy_tables(draw, shape=None, allow_zeros: bool = False, min_prob: float = 0.0):
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


@st.composite
def bandit_tables(draw, max_prompts: int = 4, max_responses: int = 8, allow_zeros=False,
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
    shape = draw(shapes(max_prompts, max_responses))
    pi_ref = draw(policy_tables(shape=shape, allow_zeros=allow_zeros))
    reward = draw(reward_tables(shape, scale))
    return pi_ref, reward
