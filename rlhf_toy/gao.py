"""Gao et al.'s (2023) functional forms of reward-model overoptimisation, and their fit.

Implements the chapter's *Why Reward Models Are Fragile*: the gold reward against
``d = sqrt(KL(pi || pi_ref))`` follows ``d (a - b d)`` for best-of-n and ``d (a - b log d)``
for RL (Gao, Schulman and Hilton, "Scaling Laws for Reward Model Overoptimization", 2023).
Model-agnostic: it takes arrays of ``d`` and gold reward.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from rlhf_toy._validate import check_finite, check_float, check_same_shape

__all__ = ["GaoFit", "fit_gao", "gao_curve"]

#: Largest magnitude of ``d``, ``gold`` and ``gold_ref`` :func:`fit_gao` accepts: its least
#: squares square them.
_MAX_VALUE = 1e100


@dataclass(frozen=True)
class GaoFit:
    """A least-squares fit of Gao et al.'s overoptimisation curve.

    Attributes
    ----------
    a, b : float
        Coefficients of ``R(d) = d (a - b d)`` (``form="bon"``) or
        ``R(d) = d (a - b log d)`` (``form="rl"``), where ``R = gold - gold_ref``.
    peak_d : float
        The fitted curve's maximiser ``d*`` (``inf`` if ``b <= 0``: no interior peak).
    peak_gold : float
        ``gold_ref + R(d*)``: the predicted best gold reward (``inf`` if ``b <= 0``).
    r2 : float
        Coefficient of determination of the fit on ``R`` (1 is perfect).
    form : str
        ``"bon"`` or ``"rl"``.
    gold_ref : float
        The gold at ``d = 0`` (given, or fitted as a third parameter).
    """

    a: float
    b: float
    peak_d: float
    peak_gold: float
    r2: float
    form: str
    gold_ref: float

    def predict(self, d) -> np.ndarray:
        """The fitted gold ``gold_ref + R(d)`` at distances ``d`` (validated as
        :func:`gao_curve`)."""
        return self.gold_ref + gao_curve(d, self.a, self.b, self.form)


def _d_log_d(d: np.ndarray) -> np.ndarray:
    """``d log d`` with its limit 0 at ``d = 0``."""
    return d * np.log(np.where(d > 0, d, 1.0))


def _gao(d: np.ndarray, a: float, b: float, form: str) -> np.ndarray:
    """:func:`gao_curve` on validated input (the model the least-squares fit evaluates)."""
    return d * (a - b * d) if form == "bon" else a * d - b * _d_log_d(d)


def gao_curve(d, a, b, form="bon") -> np.ndarray:
    """Gao et al.'s gold-reward gain ``R(d)`` at distance ``d = sqrt(KL)``.

    ``d (a - b d)`` for ``form="bon"`` (best-of-n), ``d (a - b log d)`` for ``form="rl"``
    (with ``d log d = 0`` at ``d = 0``).

    Parameters
    ----------
    d : array_like of float
        Distances ``sqrt(KL)``, finite and ``>= 0``.
    a, b : float
        The coefficients; finite reals.
    form : {"bon", "rl"}, default "bon"

    Returns
    -------
    ndarray of the shape of ``d``

    Raises
    ------
    ValueError
        On a negative or non-finite ``d``, non-finite ``a`` or ``b``, an unknown ``form``,
        or values so large that ``R(d)`` overflows float64.
    TypeError
        If ``d``, ``a`` or ``b`` is not real.
    """
    d = check_finite(d, "d")
    if np.any(d < 0):
        raise ValueError(f"d must be >= 0 (a square root of a KL), got {d[d < 0].ravel()[0]}")
    a = check_float(a, "a")
    b = check_float(b, "b")
    if form not in ("bon", "rl"):
        raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = _gao(d, a, b, form)
    if not np.all(np.isfinite(out)):
        raise ValueError("R(d) overflows float64: d, a or b too large")
    return out


def _lstsq(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients with every column scaled to max 1 first: ``d`` and ``d^2``
    differ by the scale of ``d`` itself, which would otherwise read as rank deficiency."""
    col = np.max(np.abs(design), axis=0)
    col[col == 0] = 1.0
    return np.linalg.lstsq(design / col, y, rcond=None)[0] / col


def _curve_fit(model, d, y, p0) -> np.ndarray:
    """``curve_fit``'s estimate; its covariance (unused) may be singular on exact data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        popt, _ = curve_fit(model, d, y, p0=p0)
    return popt


def fit_gao(d, gold, form="bon", gold_ref=None) -> GaoFit:
    """Fit Gao et al.'s (2023) scaling form to a gold-reward curve.

    Parameters
    ----------
    d : array_like of shape (k,)
        Distances ``sqrt(KL)``, ``>= 0``; at most ``1e100``.
    gold : array_like of shape (k,)
        Gold reward at each distance; finite, within ``+-1e100``.
    form : {"bon", "rl"}
        ``"bon"``: ``gold - gold_ref = d (a - b d)``; ``"rl"``:
        ``gold - gold_ref = d (a - b log d)``.
    gold_ref : float, optional
        Gold reward of the reference policy (``d = 0``). If omitted it is fitted as a third
        parameter.

    Returns
    -------
    GaoFit

    Raises
    ------
    ValueError
        On mismatched or non-finite input, negative ``d``, an unknown form, or fewer points
        than parameters.

    Notes
    -----
    Chapter, *Why Reward Models Are Fragile* (Gao et al., "Scaling Laws for Reward Model
    Overoptimization", 2023). Least squares by :func:`scipy.optimize.curve_fit`; both forms
    are linear in ``(a, b)``, so the fit is the ordinary least-squares solution, computed
    with a linear-algebra starting point.

    *Predicted peak.* ``bon``: ``R'(d) = a - 2 b d = 0`` gives ``d* = a / (2b)`` and
    ``R(d*) = a^2 / (4b)``. ``rl``: ``R'(d) = a - b log d - b = 0`` gives
    ``d* = exp(a/b - 1)`` and ``R(d*) = d* (a - b (a/b - 1)) = b d*``. Both are maxima when
    ``b > 0`` (``R'' = -2b`` and ``-b/d``). For ``bon`` with ``a <= 0`` the formula gives
    ``d* <= 0``: the best policy is the reference itself, and ``peak_d`` is reported as 0.

    ``R^2 = 1 - SS_res / SS_tot`` on ``gold - gold_ref`` (on ``gold`` when ``gold_ref`` is
    fitted).
    """
    d = check_finite(d, "d").ravel()
    gold = check_finite(gold, "gold").ravel()
    check_same_shape(d, gold, "d", "gold")
    if np.any(d < 0):
        raise ValueError(f"d must be >= 0, got {d.min()}")
    for arr, name in ((d, "d"), (gold, "gold")):
        if arr.size and np.max(np.abs(arr)) > _MAX_VALUE:
            raise ValueError(f"{name} entries must be within +-{_MAX_VALUE:g}, "
                             f"got {np.max(np.abs(arr)):g}")
    if form not in ("bon", "rl"):
        raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")
    n_params = 2 if gold_ref is not None else 3
    if d.size < n_params + 1:
        raise ValueError(f"fit_gao needs at least {n_params + 1} points, got {d.size}")
    second = d**2 if form == "bon" else _d_log_d(d)  # R = a d - b * second
    if gold_ref is None:
        design = np.column_stack([d, -second, np.ones_like(d)])
        p0 = _lstsq(design, gold)

        def model(dd, a, b, c):
            return c + _gao(dd, a, b, form)

        popt = _curve_fit(model, d, gold, p0)
        a, b, ref = (float(v) for v in popt)
        target, fitted = gold, model(d, *popt)
    else:
        ref = check_float(gold_ref, "gold_ref", low=-_MAX_VALUE, high=_MAX_VALUE)
        target = gold - ref
        design = np.column_stack([d, -second])
        p0 = _lstsq(design, target)

        def model(dd, a, b):
            return _gao(dd, a, b, form)

        popt = _curve_fit(model, d, target, p0)
        a, b = (float(v) for v in popt)
        fitted = model(d, *popt)
    ss_res = float(np.sum((target - fitted) ** 2))
    ss_tot = float(np.sum((target - target.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    if b <= 0:
        peak_d = peak_gold = np.inf
    else:
        peak_d = max(a / (2 * b), 0.0) if form == "bon" else float(np.exp(a / b - 1.0))
        with np.errstate(over="ignore", invalid="ignore"):
            peak_gold = ref + float(_gao(np.float64(peak_d), a, b, form)) if np.isfinite(
                peak_d) else np.inf
    return GaoFit(a=a, b=b, peak_d=float(peak_d), peak_gold=float(peak_gold), r2=r2, form=form,
                  gold_ref=ref)
