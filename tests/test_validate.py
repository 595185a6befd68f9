"""Validation helpers: errors name the argument and the bad value."""

import numpy as np
import pytest

from rlhf_toy._validate import (
    as_rng,
    check_distribution,
    check_finite,
    check_int,
    check_nonnegative,
    check_positive,
)


def test_as_rng_accepts_generators_and_seeds_only():
    g = np.random.default_rng(0)
    assert as_rng(g) is g
    assert as_rng(5).integers(1000) == np.random.default_rng(5).integers(1000)
    for bad in (None, 1.5, True, "0"):
        with pytest.raises(TypeError, match="rng"):
            as_rng(bad)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "x", None])
def test_check_positive(bad):
    with pytest.raises(ValueError, match=r"beta must be"):
        check_positive(bad, "beta")


def test_check_int():
    assert check_int(3, "n") == 3
    for bad in (0, 2.0, True, "3"):
        with pytest.raises(ValueError, match="n must be"):
            check_int(bad, "n")


def test_check_distribution_messages():
    with pytest.raises(ValueError, match=r"pi_ref row 1 sums to 0.7"):
        check_distribution([[0.5, 0.5], [0.3, 0.4]], "pi_ref")
    with pytest.raises(ValueError, match="pi_ref must be non-negative, got -0.5"):
        check_distribution([[1.5, -0.5]], "pi_ref")
    with pytest.raises(ValueError, match="finite"):
        check_distribution([np.nan, 1.0], "p")
    with pytest.raises(ValueError, match="scalar"):
        check_distribution(1.0, "p")


def test_check_finite_names_the_index():
    with pytest.raises(ValueError, match=r"reward must be finite, got inf at index \(1, 0\)"):
        check_finite([[0.0, 1.0], [np.inf, 2.0]], "reward")


def test_check_nonnegative_accepts_zero_and_names_the_argument():
    assert check_nonnegative(0, "l2") == 0.0
    assert check_nonnegative(2.5, "l2") == 2.5
    for bad in (-1e-9, float("nan"), float("inf"), "x", None):
        with pytest.raises(ValueError, match="l2 must be"):
            check_nonnegative(bad, "l2")
