"""Validation helpers: errors name the argument and the bad value."""

import numpy as np
import pytest

from rlhf_toy._validate import (
    MAX_MAGNITUDE,
    as_rng,
    check_bounded,
    check_counts,
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


# --- the root checks ----------------------------------------------------------------------

from rlhf_toy._validate import (  # noqa: E402
    ArgumentTypeError,
    as_real_array,
    check_float,
    check_index,
    check_mask,
    check_named_tables,
    check_prompt_probs,
)


def test_wrong_kinds_are_type_errors_that_callers_catching_value_error_still_catch():
    assert issubclass(ArgumentTypeError, TypeError) and issubclass(ArgumentTypeError, ValueError)


@pytest.mark.parametrize("bad", ["0.5", True, np.bool_(True), 0.5j, None, [0.5],
                                 np.array([0.5])])
def test_check_float_rejects_what_is_not_a_real_number(bad):
    with pytest.raises(TypeError, match=r"lr must be a real number, got"):
        check_float(bad, "lr")


def test_check_float_ranges_and_special_values():
    assert check_float(3, "x") == 3.0 and type(check_float(np.float32(0.5), "x")) is float
    assert check_float(0.0, "x", low=0.0) == 0.0
    with pytest.raises(ValueError, match=r"x must be > 0, got 0.0"):
        check_float(0.0, "x", low=0.0, low_open=True)
    with pytest.raises(ValueError, match=r"eps must be in \[0, 0.5\], got 0.6"):
        check_float(0.6, "eps", low=0.0, high=0.5)
    with pytest.raises(ValueError, match=r"x must be < 1, got 1"):
        check_float(1, "x", high=1.0, high_open=True)
    with pytest.raises(ValueError, match="x must be finite, got nan"):
        check_float(float("nan"), "x")
    assert np.isnan(check_float(float("nan"), "x", allow_nan=True))
    assert check_float(float("inf"), "x", allow_inf=True) == np.inf
    with pytest.raises(ValueError, match=r"x must be >= 0 and finite, got inf"):
        check_float(float("inf"), "x", low=0.0)
    with pytest.raises(ValueError, match="x must be finite, got an integer of 1329 bits"):
        check_float(10**400, "x")


def test_check_positive_and_nonnegative_keep_their_messages():
    with pytest.raises(ValueError, match=r"beta must be > 0, got -1.0"):
        check_positive(-1.0, "beta")
    with pytest.raises(ValueError, match=r"l2 must be >= 0, got -1"):
        check_nonnegative(-1, "l2")
    with pytest.raises(TypeError, match="beta must be a real number"):
        check_positive("1", "beta")


def test_check_int_kinds_and_bounds():
    assert check_int(np.int64(4), "n") == 4 and type(check_int(np.int32(4), "n")) is int
    for bad in (2.7, 3.0, "3", True, None, np.float64(3.0)):
        with pytest.raises(TypeError, match="n must be an integer"):
            check_int(bad, "n")
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        check_int(0, "n")
    with pytest.raises(ValueError, match="steps must be <= 1000, got 1001"):
        check_int(1001, "steps", maximum=1000)
    with pytest.raises(ValueError, match="n must be <= 1000, got an integer of 1329 bits"):
        check_int(10**400, "n", maximum=1000)  # never OverflowError nor a 400-digit message
    with pytest.raises(ValueError, match="n must be >= 1, got an integer of"):
        check_int(-(10**400), "n")


def test_as_real_array_rejects_complex_bools_strings_and_ragged():
    np.testing.assert_array_equal(as_real_array([1, 2], "a"), [1.0, 2.0])
    assert as_real_array([1, 2], "a").dtype == np.float64
    for bad, match in ((np.array([1 + 1j]), "a must be real"),
                       (np.array([True]), "a must hold numbers, got booleans"),
                       (np.array(["1"]), "a must hold real numbers"),
                       ("1.0", "a must be an array"),
                       (None, "a must be an array")):
        with pytest.raises(TypeError, match=match):
            as_real_array(bad, "a")
    with pytest.raises(ValueError, match="a must be a rectangular array"):
        as_real_array([[1.0], [1.0, 2.0]], "a")


def test_check_distribution_empty_ndim_axis_and_complex():
    with pytest.raises(ValueError, match=r"pi_ref must not be empty, got shape \(0, 3\)"):
        check_distribution(np.zeros((0, 3)), "pi_ref")
    assert check_distribution(np.zeros((0, 3)), "pi_ref", allow_empty=True).shape == (0, 3)
    with pytest.raises(ValueError, match=r"pi_ref must have shape \(X, Y\), got shape \(2,\)"):
        check_distribution([0.5, 0.5], "pi_ref", ndim=2)
    with pytest.raises(ValueError, match="pi_ref row 0 sums to 1.5 along axis 0"):
        check_distribution([[0.5, 1.0], [1.0, 0.0]], "pi_ref", axis=0)
    with pytest.raises(TypeError, match="pi_ref must be real"):
        check_distribution(np.array([0.5, 0.5]) + 0j, "pi_ref")
    with pytest.raises(ValueError, match="axis 2 is out of range for p"):
        check_distribution([[0.5, 0.5]], "p", axis=2)


def test_check_prompt_probs_is_the_one_shape_check():
    np.testing.assert_array_equal(check_prompt_probs(None, 4), 0.25)
    with pytest.raises(ValueError, match=r"prompt_probs must have shape \(2,\), got \(3,\)"):
        check_prompt_probs([0.2, 0.3, 0.5], 2)
    with pytest.raises(ValueError, match=r"prompt_probs must have shape \(8,\), got \(2, 4\)"):
        check_prompt_probs(np.full((2, 4), 0.125), 8)  # sums to one overall, wrong shape
    with pytest.raises(ValueError, match="at least one prompt"):
        check_prompt_probs(None, 0)


def test_check_index():
    np.testing.assert_array_equal(check_index([0, 2], "x", 3), [0, 2])
    assert check_index([], "x", 3, allow_empty=True).dtype == np.int64
    with pytest.raises(ValueError, match="x must not be empty"):
        check_index([], "x", 3)
    with pytest.raises(ValueError, match=r"y_w must hold indices in \[0, 3\), got 3"):
        check_index([0, 3], "y_w", 3)
    with pytest.raises(ValueError, match=r"y_w must hold indices in \[0, 3\), got -1"):
        check_index([-1, 0], "y_w", 3)
    with pytest.raises(ValueError, match="y_l must have length 2 as x, got shape"):
        check_index([0, 1, 2], "y_l", 3, length=2, length_name="x")
    for bad in ([0.0, 1.0], [True, False], ["0"], None):
        with pytest.raises(TypeError, match="x must"):
            check_index(bad, "x", 3)


def test_check_mask():
    np.testing.assert_array_equal(check_mask([True, False], "mask"), [1.0, 0.0])
    np.testing.assert_array_equal(check_mask([0.5, 2.0], "mask"), [0.5, 2.0])
    with pytest.raises(ValueError, match="mask must be >= 0, got -0.5"):
        check_mask([1.0, -0.5], "mask")
    with pytest.raises(ValueError, match="mask must be finite"):
        check_mask([1.0, np.nan], "mask")
    with pytest.raises(ValueError, match="mask must contain only 0 and 1, got 0.5"):
        check_mask([1.0, 0.5], "mask", binary=True)
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 2\), got \(2,\)"):
        check_mask([1.0, 1.0], "mask", shape=(2, 2))
    with pytest.raises(TypeError, match="mask must be real"):
        check_mask([1.0 + 0j], "mask")


def test_check_named_tables():
    like = np.zeros((2, 3))
    assert check_named_tables(None, "eval_rewards", like, "reward") == {}
    with pytest.raises(TypeError, match="eval_rewards must be a dict"):
        check_named_tables([like], "eval_rewards", like, "reward")
    with pytest.raises(ValueError, match=r"eval_rewards\['gold'\] and reward must have the same"):
        check_named_tables({"gold": np.zeros((2, 2))}, "eval_rewards", like, "reward")


def test_as_rng_refuses_bad_seeds_by_name():
    with pytest.raises(ValueError, match="rng seed must be"):
        as_rng(-1)
    with pytest.raises(ValueError, match="rng seed must be .* an integer of"):
        as_rng(10**400)


def test_check_counts_takes_integer_grids_and_names_what_it_refuses():
    from rlhf_toy._validate import ArgumentTypeError, check_counts

    np.testing.assert_array_equal(check_counts([1, 2, 8], "ns"), [1, 2, 8])
    out = check_counts(np.array([2.0, 4.0]), "ns", minimum=2)
    assert out.dtype == np.int64 and list(out) == [2, 4]
    for bad, kind, match, top in [
        (3, ArgumentTypeError, "ns must be a 1-D array of integers, got 3", None),
        (np.array([True]), ArgumentTypeError, "ns must hold integers, got dtype bool", None),
        ([1.5], ValueError, "ns must hold integers, got", None),
        ([np.nan], ValueError, "ns must hold integers, got", None),
        ([], ValueError, r"ns must be a non-empty 1-D array of integers, got shape \(0,\)",
         None),
        ([[1, 2]], ValueError, r"got shape \(1, 2\)", None),
        ([1, 10**6], ValueError, r"ns must hold integers in \[1, 1000\], got", 1000),
        ([0], ValueError, r"ns must hold integers >= 1, got", None),
    ]:
        with pytest.raises(kind, match=match):
            check_counts(bad, "ns", maximum=top)


def test_check_bounded_names_the_entry_beyond_the_documented_magnitude():
    a = check_bounded([[1.0, -MAX_MAGNITUDE], [MAX_MAGNITUDE, 0.0]], "reward")
    assert a.dtype == np.float64 and a.shape == (2, 2)
    with pytest.raises(ValueError, match=r"reward entries must be in \[-1e\+100, 1e\+100\], "
                                         r"got -1e\+101"):
        check_bounded([0.0, -1e101], "reward")
    with pytest.raises(ValueError, match="r must be finite"):
        check_bounded([np.inf], "r")
    with pytest.raises(ValueError, match=r"x entries must be in \[-2, 2\], got 3"):
        check_bounded([3.0], "x", bound=2.0)
    assert check_bounded(np.zeros((0, 3)), "r").shape == (0, 3)


def test_check_counts_refuses_integer_valued_floats_beyond_int64():
    np.testing.assert_array_equal(check_counts(np.array([1.0, 4.0]), "ns"), [1, 4])
    with pytest.raises(ValueError, match=r"lengths must hold integers within int64, got 1e\+308"):
        check_counts(np.array([1.0, 1e308]), "lengths")
