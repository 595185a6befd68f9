"""Input validation shared by every public function.

Each check names the caller's argument and the bad value, as the project's
conventions ask (``beta must be > 0, got -1.0``; ``pi_ref row 3 sums to 0.7``), and
returns the validated value so that callers can write ``p = check_distribution(p, "pi_ref")``.

A value of the wrong *kind* (a string, a bool or ``None`` where a number is expected, a
complex array, a float where an integer is expected) raises :class:`ArgumentTypeError`, a
``TypeError`` that is also a ``ValueError`` so that callers catching either keep working; a
value of the right kind outside its range (NaN, a negative ``beta``, an index past the end,
an empty table) raises ``ValueError``.
"""

from __future__ import annotations

import numbers

import numpy as np

#: Tolerance on row sums of probability tables.
ROW_SUM_ATOL = 1e-6

#: Integers with more digits than this are described by their size, not printed.
_MAX_PRINTED_DIGITS = 30

#: Largest number of samples (comparisons, draws, sampled pairs) one call may request:
#: a bigger count is refused at once rather than running for hours or exhausting memory.
MAX_SAMPLES = 10**7

#: Largest number of entries of a table (``n_prompts * n_responses``) a call may build.
MAX_TABLE_ENTRIES = 10**7

#: Largest step counter (an index into a schedule, a number of steps of a loop).
MAX_STEPS = 10**9

#: Largest magnitude of a table entry or a scale that a computation squares, multiplies
#: or sums (rewards whose variance is taken, a multiplier times a reward): ``1e100``
#: keeps every square and every sum of up to :data:`MAX_TABLE_ENTRIES` of them finite.
MAX_MAGNITUDE = 1e100


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong kind; both a ``TypeError`` and a ``ValueError``."""


class NonFiniteInputError(FloatingPointError, ValueError):
    """An input whose derived quantity (a gradient norm) is NaN or inf.

    Both a ``FloatingPointError`` (what training loops raise on NaN) and a ``ValueError``
    (what a bad argument raises), so callers catching either keep working.
    """


def _show(value) -> str:
    """``repr(value)``, safe and short for huge integers and long arrays."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if abs(int(value)).bit_length() > 3.33 * _MAX_PRINTED_DIGITS:
            return f"an integer of {abs(int(value)).bit_length()} bits"
        return repr(int(value))
    if isinstance(value, np.ndarray):
        return np.array2string(value, threshold=6, edgeitems=2)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def as_rng(rng) -> np.random.Generator:
    """Return a ``np.random.Generator`` from a Generator or an int seed.

    Raises
    ------
    TypeError
        If ``rng`` is neither (``None`` included: randomness is always explicit).
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0 or int(rng).bit_length() > 128:
            raise ValueError(f"rng seed must be an integer in [0, 2**128), got {_show(rng)}")
        return np.random.default_rng(int(rng))
    raise ArgumentTypeError(f"rng must be a numpy Generator or an int seed, got {_show(rng)}")


# --------------------------------------------------------------------------------------
# scalars
# --------------------------------------------------------------------------------------


def check_float(value, name: str, *, low: float = -np.inf, high: float = np.inf,
                low_open: bool = False, high_open: bool = False,
                allow_nan: bool = False, allow_inf: bool = False) -> float:
    """A real scalar in the interval ``[low, high]`` (ends open when asked), as a float.

    Accepts Python and numpy reals (ints included); rejects ``str``, ``bool``, ``complex``,
    ``None``, arrays and lists with :class:`ArgumentTypeError`; NaN, infinities (unless
    allowed), integers beyond the float64 range and values outside the interval with
    ``ValueError``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a real number, got {_show(value)}")
    if np.isfinite(low) and np.isfinite(high):
        rule = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif np.isfinite(low):
        rule = f"{'>' if low_open else '>='} {low:g}"
    elif np.isfinite(high):
        rule = f"{'<' if high_open else '<='} {high:g}"
    else:
        rule = ""
    finite = f"{rule} and finite" if rule else "finite"
    try:
        v = float(value)
    except OverflowError:
        raise ValueError(f"{name} must be {finite}, got {_show(value)}") from None
    if np.isnan(v):
        if allow_nan:
            return v
        raise ValueError(f"{name} must be {finite}, got nan")
    if np.isinf(v) and not allow_inf:
        raise ValueError(f"{name} must be {finite}, got {v}")
    below = v <= low if low_open else v < low
    above = v >= high if high_open else v > high
    if below or above:
        raise ValueError(f"{name} must be {rule}, got {_show(value)}")
    return v


def check_positive(value, name: str) -> float:
    """A finite real scalar > 0 (``beta``, a temperature, a learning rate)."""
    return check_float(value, name, low=0.0, low_open=True)


def check_nonnegative(value, name: str) -> float:
    """A finite real scalar >= 0 (a penalty weight, a smoothing count, a weight decay)."""
    return check_float(value, name, low=0.0)


def check_int(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer in ``[minimum, maximum]`` (``n``, ``n_pairs``, a number of steps).

    Python and numpy integers are accepted; ``bool``, floats (``2.7`` and ``3.0`` alike)
    and strings raise :class:`ArgumentTypeError`. An integer above ``maximum`` raises a
    ``ValueError`` however large it is (never ``OverflowError``).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be an integer, got {_show(value)}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {_show(value)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {_show(value)}")
    return value


def check_counts(values, name: str, minimum: int = 1, maximum: int | None = None
                 ) -> np.ndarray:
    """A non-empty 1-D grid of integers in ``[minimum, maximum]`` (group sizes, ``ns``), int64.

    Integer dtypes and integer-valued floats (``np.geomspace(...).round()``) are accepted;
    booleans, strings, complex and scalars raise :class:`ArgumentTypeError`; fractions, NaN,
    an empty or 2-D grid and values out of range raise ``ValueError``.
    """
    if values is None or isinstance(values, (str, bytes, numbers.Number, np.bool_)):
        raise ArgumentTypeError(f"{name} must be a 1-D array of integers, got {_show(values)}")
    try:
        arr = np.asarray(values)
    except ValueError:
        raise ValueError(f"{name} must be a rectangular array, got a ragged sequence") from None
    if arr.dtype.kind not in "iuf":
        raise ArgumentTypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of integers, got shape "
                         f"{arr.shape}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if np.any(bad):
            raise ValueError(f"{name} must hold integers, got {arr[np.argmax(bad)]!r}")
        wide = np.abs(arr) >= 2.0**63  # would not survive the cast to int64
        if np.any(wide):
            raise ValueError(f"{name} must hold integers within int64, got "
                             f"{arr[np.argmax(wide)]:g}")
    top = np.inf if maximum is None else maximum
    bad = (arr < minimum) | (arr > top)
    if np.any(bad):
        rule = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must hold integers {rule}, got {arr[np.argmax(bad)]!r}")
    return arr.astype(np.int64)


# --------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------


def as_real_array(a, name: str, keep_float: bool = False) -> np.ndarray:
    """``a`` as a float64 array; complex, boolean, string and ragged input rejected.

    With ``keep_float``, a float array keeps its own precision (float32 stays float32, for
    the GPT's computations); integers still become float64.

    Raises
    ------
    ArgumentTypeError
        For ``None``, complex, boolean, string or object data.
    ValueError
        For ragged nested lists.
    """
    if a is None or isinstance(a, (str, bytes)):
        raise ArgumentTypeError(f"{name} must be an array of real numbers, got {_show(a)}")
    try:
        arr = np.asarray(a)
    except ValueError:
        raise ValueError(f"{name} must be a rectangular array, got a ragged sequence") from None
    kind = arr.dtype.kind
    if kind == "c":
        raise ArgumentTypeError(f"{name} must be real, got a complex array")
    if kind == "b":
        raise ArgumentTypeError(f"{name} must hold numbers, got booleans")
    if kind not in "iuf":
        raise ArgumentTypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if keep_float and kind == "f":
        return arr
    return arr.astype(np.float64, copy=False)


def check_finite(a, name: str) -> np.ndarray:
    """A float64 array with no NaN or inf (rewards, log-probs, logits); complex rejected."""
    a = as_real_array(a, name)
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(
            f"{name} must be finite, got {a[tuple(bad)]} at index {tuple(int(i) for i in bad)}"
        )
    return a


def check_bounded(a, name: str, bound: float = MAX_MAGNITUDE) -> np.ndarray:
    """A finite float64 array whose entries lie in ``[-bound, bound]``
    (default :data:`MAX_MAGNITUDE`)."""
    a = check_finite(a, name)
    if a.size and np.max(np.abs(a)) > bound:
        bad = a.ravel()[np.argmax(np.abs(a.ravel()))]
        raise ValueError(f"{name} entries must be in [-{bound:g}, {bound:g}], got {bad:g}")
    return a


def check_ndim(a: np.ndarray, name: str, ndim: int, what: str = "") -> np.ndarray:
    """Raise unless ``a`` has ``ndim`` axes (``what`` names them, e.g. ``"(X, Y)"``)."""
    if a.ndim != ndim:
        want = what or {1: "(N,)", 2: "(X, Y)"}.get(ndim, f"of {ndim} axes")
        raise ValueError(f"{name} must have shape {want}, got shape {a.shape}")
    return a


def check_nonempty(a: np.ndarray, name: str) -> np.ndarray:
    """Raise if ``a`` has an axis of length zero (no prompts, no responses)."""
    if a.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    return a


def check_distribution(p, name: str, axis: int = -1, *, ndim: int | None = None,
                       allow_empty: bool = False) -> np.ndarray:
    """A float64 probability table: real, finite, >= 0, summing to one along ``axis``.

    Parameters
    ----------
    p : array_like
        The table.
    name : str
        The caller's argument name, used in messages.
    axis : int, default -1
        The axis holding the categories.
    ndim : int, optional
        Required number of axes (2 for a ``(X, Y)`` table).
    allow_empty : bool, default False
        Accept a table with a zero-length axis (no prompts); refused by default.
    """
    p = as_real_array(p, name)
    if p.ndim == 0:
        raise ValueError(f"{name} must have at least one axis, got a scalar")
    if ndim is not None:
        check_ndim(p, name, ndim)
    if not -p.ndim <= axis < p.ndim:
        raise ValueError(f"axis {axis} is out of range for {name} of shape {p.shape}")
    if not allow_empty:
        check_nonempty(p, name)
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be finite, got a NaN or inf entry")
    if np.any(p < 0):
        bad = np.argwhere(p < 0)[0]
        raise ValueError(
            f"{name} must be non-negative, got {p[tuple(bad)]} at index "
            f"{tuple(int(i) for i in bad)}"
        )
    s = p.sum(axis=axis)
    off = np.abs(s - 1.0) > ROW_SUM_ATOL
    if np.any(off):
        bad = np.argwhere(np.atleast_1d(off))[0]
        row = tuple(int(i) for i in bad)
        row_txt = row[0] if len(row) == 1 else row
        along = "" if axis in (-1, p.ndim - 1) else f" along axis {axis}"
        raise ValueError(
            f"{name} row {row_txt} sums to {np.atleast_1d(s)[tuple(bad)]:.6g}{along}, not 1"
        )
    return p


def check_prompt_probs(prompt_probs, n_prompts: int, name: str = "prompt_probs",
                       table: str | None = None) -> np.ndarray:
    """The prompt distribution ``p(x)``, shape ``(n_prompts,)``; uniform when ``None``.

    ``table`` names the argument whose rows are the prompts (``"pi_ref"``), for the
    message when the two disagree.
    """
    if n_prompts < 1:
        raise ValueError(f"the table must have at least one prompt, got {n_prompts}")
    if prompt_probs is None:
        return np.full(n_prompts, 1.0 / n_prompts)
    shape = as_real_array(prompt_probs, name).shape
    if shape != (n_prompts,):  # the shape first: it is the likelier mistake
        of = f" (one per prompt of {table})" if table else ""
        raise ValueError(f"{name} must have shape ({n_prompts},){of}, got {shape}")
    return check_distribution(prompt_probs, name)


def check_index(idx, name: str, size: int, *, length: int | None = None,
                length_name: str | None = None, allow_empty: bool = False,
                size_name: str | None = None) -> np.ndarray:
    """An int64 array of indices into an axis of length ``size``: ``0 <= idx < size``.

    Parameters
    ----------
    idx : array_like of int
        The indices; integer dtype required (an empty list is accepted as empty).
    name : str
        The caller's argument name.
    size : int
        Length of the indexed axis.
    length : int, optional
        Required number of indices (the length of the partner arrays).
    length_name : str, optional
        Name of the partner, for the message.
    allow_empty : bool, default False
        Accept zero indices.
    size_name : str, optional
        What the indexed axis is (``"the prompts of reward"``), for the message.
    """
    if idx is None or isinstance(idx, (str, bytes)):
        raise ArgumentTypeError(f"{name} must be an array of integer indices, got {_show(idx)}")
    try:
        arr = np.asarray(idx)
    except ValueError:
        raise ValueError(f"{name} must be a rectangular array, got a ragged sequence") from None
    if arr.size == 0 and arr.dtype.kind == "f":
        arr = arr.astype(np.int64)  # np.asarray([]) is float64
    if arr.dtype.kind not in "iu":
        raise ArgumentTypeError(f"{name} must hold integer indices, got dtype {arr.dtype}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    if length is not None and arr.shape[:1] != (length,):
        partner = f" as {length_name}" if length_name else ""
        raise ValueError(
            f"{name} must have length {length}{partner}, got shape {arr.shape}"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        bad = arr.ravel()[np.argmax((arr.ravel() < 0) | (arr.ravel() >= size))]
        of = f" ({size_name})" if size_name else ""
        raise ValueError(f"{name} must hold indices in [0, {size}){of}, got {int(bad)}")
    return arr.astype(np.int64, copy=False)


def check_comparisons(x, y_w, y_l, n_prompts: int, n_responses: int,
                      table: str = "the table") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A comparison triple ``(x, y_w, y_l)``: three 1-D int64 index arrays of one length >= 1.

    ``x`` indexes the ``n_prompts`` rows, ``y_w`` and ``y_l`` the ``n_responses`` columns of
    ``table`` (named in the messages, e.g. ``"reward"``).
    """
    x = check_index(x, "x", n_prompts, size_name=f"the prompts of {table}")
    if x.ndim != 1:
        raise ValueError(f"x must have shape (N,), got shape {x.shape}")
    out = [x]
    for arr, name in ((y_w, "y_w"), (y_l, "y_l")):
        out.append(check_index(arr, name, n_responses, length=x.size, length_name="x",
                               size_name=f"the responses of {table}"))
        if out[-1].ndim != 1:
            raise ValueError(f"{name} must have shape (N,), got shape {out[-1].shape}")
    return out[0], out[1], out[2]


def check_table_size(n_prompts, n_responses, names=("n_prompts", "n_responses")) -> tuple:
    """Two sizes ``>= 1`` whose product is at most :data:`MAX_TABLE_ENTRIES`."""
    a = check_int(n_prompts, names[0], minimum=1, maximum=MAX_TABLE_ENTRIES)
    b = check_int(n_responses, names[1], minimum=1, maximum=MAX_TABLE_ENTRIES)
    if a * b > MAX_TABLE_ENTRIES:
        raise ValueError(
            f"{names[0]} * {names[1]} must be <= {MAX_TABLE_ENTRIES}, got {a} * {b}"
        )
    return a, b


def check_mask(mask, name: str, shape: tuple | None = None, *, binary: bool = False,
               like_name: str | None = None) -> np.ndarray:
    """A float64 weight mask: real, finite, ``>= 0`` (``{0, 1}`` when ``binary``).

    Booleans are accepted here (a mask is naturally boolean). ``shape``, when given, must
    match exactly; ``like_name`` names the array it comes from (``"logp"``), for the message.
    """
    if mask is None or isinstance(mask, (str, bytes)):
        raise ArgumentTypeError(f"{name} must be an array of weights, got {_show(mask)}")
    arr = np.asarray(mask)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.float64)
    arr = as_real_array(arr, name)
    if shape is not None and arr.shape != tuple(shape):
        of = f" (that of {like_name})" if like_name else ""
        raise ValueError(f"{name} must have shape {tuple(shape)}{of}, got {arr.shape}")
    if binary:
        bad = ~((arr == 0) | (arr == 1))  # NaN, negatives and fractions alike
        if np.any(bad):
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name} must contain only 0 and 1, got {arr[idx]} at index {idx}")
        return arr
    arr = check_finite(arr, name)
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0, got {arr[arr < 0].ravel()[0]}")
    return arr


def check_named_tables(tables, name: str, like: np.ndarray, like_name: str) -> dict:
    """A dict of finite tables of ``like``'s shape (``{"gold": r_star}``); ``None``: ``{}``."""
    if tables is None:
        return {}
    if not isinstance(tables, dict):
        raise ArgumentTypeError(
            f"{name} must be a dict of tables, got {type(tables).__name__}"
        )
    out = {}
    for key, table in tables.items():
        table = check_finite(table, f"{name}[{key!r}]")
        check_same_shape(table, like, f"{name}[{key!r}]", like_name)
        out[key] = table
    return out


def check_betas(betas, name: str = "betas") -> np.ndarray:
    """A non-empty 1-D float64 grid of finite KL coefficients ``> 0`` (a scalar is one)."""
    arr = np.atleast_1d(as_real_array(betas, name))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(
            f"{name} must be a non-empty 1-D array of finite values > 0, got {_show(arr)}"
        )
    return arr


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise unless ``a`` and ``b`` have the same shape."""
    if np.shape(a) != np.shape(b):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {np.shape(a)} and {np.shape(b)}"
        )
