"""Grader of exercise 07: reverse versus forward KL on a two-mode target (chapter, "RLHF uses
reverse KL, which is mode-seeking").

The student writes ``kl(p, q)``, ``gaussian_divergence(target, grid, mean, std, divergence)``
and ``fit_gaussian(target, grid, divergence)``; the references are
:func:`rlhf_toy.kl.kl_divergence` and :mod:`rlhf_toy.bandit.experiments.modes`.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from rlhf_toy.bandit.experiments.modes import gaussian_divergence, two_mode_target
from rlhf_toy.grading._inputs import log_uniform, policies
from rlhf_toy.grading.core import (
    Check,
    CheckFailed,
    Exercise,
    as_array,
    as_scalar,
    require_close,
)
from rlhf_toy.kl import kl_divergence

__all__ = ["EXERCISE"]

GRID = np.linspace(-8.0, 8.0, 81)


@st.composite
def _pq(draw):
    y = draw(st.integers(2, 6))
    p = draw(policies((1, y), allow_zeros=True))[0]
    q = draw(policies((1, y)))[0]
    return {"p": p, "q": q}


@st.composite
def _targets(draw):
    return {"separation": draw(st.floats(2.5, 4.0)), "width": draw(st.floats(0.5, 0.8)),
            "weight": draw(st.floats(0.3, 0.7))}


@st.composite
def _gaussians(draw):
    ex = draw(_targets())
    ex["mean"] = draw(st.floats(-6.0, 6.0))
    ex["std"] = draw(log_uniform(0.3, 5.0))
    ex["divergence"] = draw(st.sampled_from(["reverse", "forward"]))
    return ex


def _target(ex):
    d, s, w = ex["separation"], ex["width"], ex["weight"]
    return two_mode_target(GRID, means=(-d, d), stds=(s, s), weights=(w, 1 - w))


def _kl(student, p, q):
    return as_scalar(student.call("kl", p, q), "kl(p, q)")


def _kl_zero(student, ex):
    value = _kl(student, ex["p"], ex["p"].copy())
    if not np.isfinite(value) or abs(value) > 1e-12:
        raise CheckFailed(f"kl(p, p) = {value!r}, not 0",
                          hint="0 log 0 = 0: leave out the entries where p is 0")


def _kl_support(student, ex):
    p = ex["p"]
    q = np.where(p > 0, ex["q"], 0.0)
    q = q / q.sum()
    value = _kl(student, p, q)
    if not np.isfinite(value):
        raise CheckFailed(f"kl(p, q) = {value} although q > 0 wherever p > 0",
                          hint="0 log 0 = 0: entries with p = 0 contribute nothing")
    zero = int(np.argmax(p > 0))
    q2 = q.copy()
    q2[zero] = 0.0
    q2 = q2 / q2.sum() if q2.sum() > 0 else q2
    if q2.sum() > 0:
        value = _kl(student, p, q2)
        if value != np.inf:
            raise CheckFailed(f"kl(p, q) = {value!r} although p[{zero}] > 0 = q[{zero}]; it "
                              "must be +inf",
                              hint="p log(p / 0) = +inf: the KL is infinite when q misses "
                                   "mass of p")


def _kl_matches(student, ex):
    require_close(_kl(student, ex["p"], ex["q"]), float(kl_divergence(ex["p"], ex["q"])),
                  "kl(p, q)", rtol=1e-9, atol=1e-12)


def _divergence_matches(student, ex):
    target = _target(ex)
    out = student.call("gaussian_divergence", target, GRID, ex["mean"], ex["std"],
                       ex["divergence"])
    value = as_scalar(out, "gaussian_divergence(...)")
    ref = float(gaussian_divergence(target, GRID, ex["mean"], ex["std"], ex["divergence"]))
    require_close(value, ref, f"the {ex['divergence']} divergence", rtol=1e-8, atol=1e-10)


def _fit(student, ex, divergence):
    out = student.call("fit_gaussian", _target(ex), GRID, divergence)
    out = as_array(out, (2,), f"fit_gaussian(target, grid, {divergence!r})")
    if not np.all(np.isfinite(out)) or out[1] <= 0:
        raise CheckFailed(f"fit_gaussian returned (mean, std) = {tuple(out)}")
    return float(out[0]), float(out[1])


def _reverse_seeks(student, ex):
    mean, std = _fit(student, ex, "reverse")
    d, s = ex["separation"], ex["width"]
    if min(abs(mean - d), abs(mean + d)) > 0.5 or std > 1.5 * s:
        raise CheckFailed(f"the reverse-KL fit is (mean, std) = ({mean:.3f}, {std:.3f}); the "
                          f"modes are at -{d:.3f} and {d:.3f}, each of std {s:.3f}")


def _forward_covers(student, ex):
    mean, std = _fit(student, ex, "forward")
    t = _target(ex)
    mu = float(t @ GRID)
    sd = float(np.sqrt(t @ (GRID - mu) ** 2))
    if abs(mean - mu) > 0.3 or abs(std - sd) > 0.15 * sd:
        raise CheckFailed(f"the forward-KL fit is (mean, std) = ({mean:.3f}, {std:.3f}); the "
                          f"target's mean and std are ({mu:.3f}, {sd:.3f})")


EXERCISE = Exercise(
    number=7,
    slug="reverse_forward_kl",
    title="reverse vs forward KL: which divergence seeks a mode, which covers them",
    functions=("kl", "gaussian_divergence", "fit_gaussian"),
    checks=(
        Check("KL of a distribution with itself",
              "kl(p, p) = 0, zeros of p included",
              "0 log 0 = 0",
              _kl_zero, _pq()),
        Check("KL and supports",
              "kl(p, q) is finite when q > 0 wherever p > 0, and +inf when some p(y) > 0 = q(y)",
              "sum only over p > 0; a term with q = 0 there is +inf",
              _kl_support, _pq()),
        Check("KL matches the library",
              "kl(p, q) = sum_y p(y) log(p(y) / q(y)) agrees with rlhf_toy.kl.kl_divergence",
              "the first argument is the one you average over",
              _kl_matches, _pq()),
        Check("divergences match the library",
              "gaussian_divergence is KL(q || target) for 'reverse' and KL(target || q) for "
              "'forward', with q the Gaussian restricted to the grid and normalised there",
              "q(g_i) = exp(-(g_i - mean)^2 / (2 std^2)) / sum_j exp(-(g_j - mean)^2 / "
              "(2 std^2)); reverse has the model q on the left",
              _divergence_matches, _gaussians()),
        Check("reverse KL seeks a mode",
              "on two well-separated modes, the Gaussian minimising KL(q || target) sits on "
              "one mode with (about) that mode's width",
              "KL(q || t) is huge where q has mass and t has little: q must avoid the gap "
              "between the modes",
              _reverse_seeks, _targets(), 6),
        Check("forward KL covers both modes",
              "the Gaussian minimising KL(target || q) matches the target's mean and standard "
              "deviation (it straddles both modes)",
              "KL(t || q) is huge where t has mass and q has little: q must cover both modes; "
              "search means across the whole grid and stds up to the grid's width",
              _forward_covers, _targets(), 6),
    ),
)
