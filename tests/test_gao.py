"""Gao et al.'s overoptimisation fits: least squares against an independent solve, the edge
cases of R^2 and of the point count, the documented value bound (chapter, *Why Reward
Models Are Fragile*)."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlhf_toy.gao import fit_gao, gao_curve


def _d_log_d(d):
    out = np.zeros_like(d)
    out[d > 0] = d[d > 0] * np.log(d[d > 0])
    return out


@given(st.integers(0, 2**32 - 1), st.sampled_from(["bon", "rl"]), st.booleans())
def test_fit_gao_is_the_least_squares_solution_and_its_r2(seed, form, ref_known):
    """Noisy data: (a, b[, gold_ref]) solve the normal equations of the linear model, and
    ``R^2 = 1 - SS_res / SS_tot`` with ``SS_tot`` about the target's mean."""
    rng = np.random.default_rng(seed)
    d = np.linspace(0.0, 3.0, 12)
    gold = 0.3 + gao_curve(d, 1.0, 0.4, form) + 0.2 * rng.standard_normal(d.size)
    second = d**2 if form == "bon" else _d_log_d(d)
    if ref_known:
        target = gold - 0.3
        design = np.column_stack([d, -second])
    else:
        target = gold
        design = np.column_stack([d, -second, np.ones_like(d)])
    coef = np.linalg.solve(design.T @ design, design.T @ target)
    resid = target - design @ coef
    r2 = 1.0 - resid @ resid / np.sum((target - target.mean()) ** 2)

    fit = fit_gao(d, gold, form, gold_ref=0.3 if ref_known else None)
    # curve_fit refines the linear solution to its own tolerance (xtol = 1.5e-8)
    np.testing.assert_allclose([fit.a, fit.b], coef[:2], rtol=1e-6, atol=1e-7)
    assert fit.gold_ref == pytest.approx(0.3 if ref_known else coef[2], abs=1e-7)
    assert fit.r2 == pytest.approx(r2, rel=1e-9)
    assert fit.r2 < 1.0


def test_fit_gao_of_a_flat_zero_gain_is_exact_with_no_peak():
    """``gold = gold_ref`` everywhere: ``a = b = 0`` fits exactly (``R^2 = 1`` though
    ``SS_tot = 0``), and ``b = 0`` has no interior maximum."""
    fit = fit_gao([0.0, 1.0, 2.0, 3.0], [0.5, 0.5, 0.5, 0.5], "bon", gold_ref=0.5)
    assert (fit.a, fit.b, fit.r2) == (0.0, 0.0, 1.0)
    assert fit.peak_d == np.inf and fit.peak_gold == np.inf


def test_fit_gao_needs_one_more_point_than_parameters():
    d = np.array([0.0, 1.0, 2.0])
    gold = gao_curve(d, 1.0, 0.25)
    fit = fit_gao(d, gold, "bon", gold_ref=0.0)  # 2 parameters, 3 points
    assert (fit.a, fit.b) == (pytest.approx(1.0), pytest.approx(0.25))
    with pytest.raises(ValueError, match="at least 4 points, got 3"):
        fit_gao(d, gold, "bon")  # gold_ref fitted: 3 parameters
    with pytest.raises(ValueError, match="at least 3 points, got 2"):
        fit_gao(d[:2], gold[:2], "bon", gold_ref=0.0)


def test_fit_gao_accepts_values_at_the_documented_bound():
    """``d`` and ``gold`` entries up to 1e100 are accepted and fitted exactly."""
    d = np.array([0.0, 1e100 / 3, 2e100 / 3, 1e100])
    fit = fit_gao(d, gao_curve(d, 1.0, 0.25e-100), "bon", gold_ref=0.0)
    assert fit.a == pytest.approx(1.0, rel=1e-9) and fit.b == pytest.approx(0.25e-100, rel=1e-9)
    d = np.arange(4.0)
    gold = gao_curve(d, 1.0, 0.25) * (1e100 / 1.0)  # peak gain 1.0 at d = 2, scaled to 1e100
    assert np.max(np.abs(gold)) == 1e100
    fit = fit_gao(d, gold, "bon", gold_ref=0.0)
    np.testing.assert_allclose(fit.predict(d), gold, rtol=1e-12)
    above = 1e100 * (1 + 1e-15)
    with pytest.raises(ValueError, match="d entries must be within"):
        fit_gao([0.0, 1.0, 2.0, above], gold, "bon", gold_ref=0.0)
    with pytest.raises(ValueError, match="gold entries must be within"):
        fit_gao(d, [0.0, 1.0, 2.0, -above], "bon", gold_ref=0.0)


def test_gao_fit_is_immutable():
    fit = fit_gao([0.0, 1.0, 2.0, 3.0], [0.0, 0.8, 1.2, 1.2], "bon", gold_ref=0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.a = 2.0
