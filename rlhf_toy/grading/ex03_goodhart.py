"""Grader of exercise 03: Goodhart's law as overestimation (chapter, exercises, problem 3).

The student writes ``overestimation(pi_ref, r_star, r_hat, beta)``, the mean over prompts of
``E_{pi*_beta(r_hat)}[r_hat - r_star]``, and ``overestimation_slope(...)``, its derivative
in ``1 / beta``. The reference is built from :func:`rlhf_toy.optimal.optimal_policy`.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from rlhf_toy.grading._inputs import bandit, floats_array
from rlhf_toy.grading.core import Check, CheckFailed, Exercise, as_scalar, require_close
from rlhf_toy.optimal import optimal_policy

__all__ = ["EXERCISE", "OVERFLOW_HINT"]

OVERFLOW_HINT = (
    "exp(r_hat / beta) overflows float64 once r_hat / beta > 709: build pi* with each row's "
    "largest r_hat / beta (on the support of pi_ref) subtracted first"
)


def _reference(ex, beta=None):
    beta = ex["beta"] if beta is None else beta
    pi = optimal_policy(ex["pi_ref"], ex["r_hat"], beta)
    return float(np.mean((pi * (ex["r_hat"] - ex["r_star"])).sum(-1)))


def _call(student, ex, name="overestimation", **changes):
    args = {k: ex[k] for k in ("pi_ref", "r_star", "r_hat", "beta")}
    args.update(changes)
    value = student.call(name, args["pi_ref"], args["r_star"], args["r_hat"], args["beta"])
    value = as_scalar(value, f"{name}(...)")
    if not np.isfinite(value):
        big = np.max(np.abs(args["r_hat"])) / args["beta"] > 700
        raise CheckFailed(f"{name}(...) returned {value}", hint=OVERFLOW_HINT if big else None)
    return value


def _exact_proxy(student, ex):
    value = _call(student, ex, r_hat=ex["r_star"])
    if abs(value) > 1e-12 * (1 + np.max(np.abs(ex["r_star"]))):
        raise CheckFailed(f"with r_hat = r_star the overestimation is {value!r}, not 0")


def _shift(student, ex):
    base = _call(student, ex)
    shifted = _call(student, ex, r_hat=ex["r_hat"] + ex["c"][:, None])
    require_close(shifted - base, float(np.mean(ex["c"])),
                  "overestimation(r_hat + c) - overestimation(r_hat)", rtol=1e-8, atol=1e-10)


def _large_beta(student, ex):
    value = _call(student, ex, beta=1e8)
    ref = float(np.mean((ex["pi_ref"] * (ex["r_hat"] - ex["r_star"])).sum(-1)))
    require_close(value, ref, "overestimation at beta = 1e8", rtol=1e-6, atol=1e-7)


def _matches_library(student, ex):
    require_close(_call(student, ex), _reference(ex), "overestimation", rtol=1e-8, atol=1e-12)


def _small_beta(student, ex):
    require_close(_call(student, ex), _reference(ex), "overestimation", rtol=1e-6, atol=1e-10)


def _slope_fd(student, ex):
    slope = _call(student, ex, name="overestimation_slope")
    t, h = 1.0 / ex["beta"], 1e-5 * (1.0 / ex["beta"])
    fd = (_reference(ex, 1.0 / (t + h)) - _reference(ex, 1.0 / (t - h))) / (2 * h)
    require_close(slope, fd, "overestimation_slope (against central finite differences in "
                  "1 / beta)", rtol=1e-5, atol=1e-8)


def _slope_variance(student, ex):
    slope = _call(student, ex, name="overestimation_slope", r_star=np.zeros_like(ex["r_hat"]))
    if slope < -1e-12:
        raise CheckFailed(f"with r_star = 0 the slope is {slope!r} < 0")
    pi = optimal_policy(ex["pi_ref"], ex["r_hat"], ex["beta"])
    mean = (pi * ex["r_hat"]).sum(-1, keepdims=True)
    var = float(np.mean((pi * (ex["r_hat"] - mean) ** 2).sum(-1)))
    require_close(slope, var, "overestimation_slope with r_star = 0", rtol=1e-8, atol=1e-12)


@st.composite
def _worlds(draw, scale=3.0, beta=(0.1, 10.0)):
    ex = draw(bandit(scale=scale, beta=beta, rewards=("r_star", "r_hat")))
    ex["c"] = draw(floats_array((ex["pi_ref"].shape[0],), -5.0, 5.0))
    return ex


_moderate = _worlds()
_tiny_beta = bandit(scale=3.0, beta=(1e-4, 1e-2), rewards=("r_star", "r_hat"))

EXERCISE = Exercise(
    number=3,
    slug="goodhart",
    title="Goodhart: how much pi*(r_hat) overestimates the true reward, and how fast",
    functions=("overestimation", "overestimation_slope"),
    checks=(
        Check("exact proxy",
              "with r_hat = r_star the overestimation is 0",
              "the overestimation is the expected error r_hat - r_star under pi*(r_hat)",
              _exact_proxy, _moderate),
        Check("shift of the proxy",
              "adding c(x) to r_hat(x, .) leaves pi* unchanged and raises the overestimation "
              "by mean_x c(x)",
              "pi* is built from r_hat (not r_star); average over prompts with equal weights",
              _shift, _moderate),
        Check("beta to infinity",
              "at beta = 1e8, pi* = pi_ref, so the overestimation is mean_x E_{pi_ref}[r_hat - "
              "r_star]",
              "one number: the mean over prompts (rows) of each row's expectation",
              _large_beta, _moderate),
        Check("matches the library",
              "overestimation agrees with mean_x sum_y pi*(y|x) (r_hat - r_star) built from "
              "rlhf_toy.optimal.optimal_policy(pi_ref, r_hat, beta), to 1e-8",
              "pi* tilts pi_ref by exp(r_hat / beta): the proxy, divided by beta",
              _matches_library, _moderate),
        Check("small beta",
              "for beta down to 1e-4 (r_hat / beta up to 3e4) the overestimation is finite "
              "and correct",
              "the inputs here are extreme; if other checks fail too, fix those first. "
              + OVERFLOW_HINT,
              _small_beta, _tiny_beta),
        Check("slope in 1/beta",
              "overestimation_slope = d overestimation / d(1/beta), against central finite "
              "differences",
              "differentiate E_{pi*}[eps] in t = 1/beta: d pi*(y) / dt = pi*(y) (r_hat(y) - "
              "E_{pi*}[r_hat]); the result is a covariance under pi*",
              _slope_fd, _moderate),
        Check("slope is a variance when r_star = 0",
              "with r_star = 0 the slope is Var_{pi*}(r_hat) >= 0 (averaged over prompts)",
              "Cov(eps, r_hat) = E[eps r_hat] - E[eps] E[r_hat], each under pi*, per prompt",
              _slope_variance, _moderate),
    ),
)
