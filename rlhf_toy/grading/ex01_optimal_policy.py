"""Grader of exercise 01: the KL-regularised optimum (chapter, Stage 3, the optimal policy).

The student writes ``optimal_policy(pi_ref, reward, beta)``; the reference is
:func:`rlhf_toy.optimal.optimal_policy`.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy.grading._inputs import bandit
from rlhf_toy.grading.core import Check, CheckFailed, Exercise, as_array, require_close
from rlhf_toy.optimal import optimal_policy as reference

__all__ = ["EXERCISE", "OVERFLOW_HINT"]

OVERFLOW_HINT = (
    "exp(r / beta) overflows float64 once r / beta > 709 (and underflows to 0 below -745), "
    "so pi_ref * exp(r / beta) / Z becomes inf / inf = nan. Subtract each row's largest "
    "r / beta on the support of pi_ref before exponentiating (the shift cancels in the "
    "normalisation), or work in log space with scipy.special.logsumexp."
)


def _pi(student, ex) -> np.ndarray:
    out = student.call("optimal_policy", ex["pi_ref"], ex["reward"], ex["beta"])
    return as_array(out, ex["pi_ref"].shape, "optimal_policy(pi_ref, reward, beta)")


def _finite(pi, ex, hint=None):
    bad = ~np.isfinite(pi)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        big = np.max(np.abs(ex["reward"])) / ex["beta"] > 700
        raise CheckFailed(f"pi has {float(pi[idx])} at index {idx}",
                          hint=OVERFLOW_HINT if big else hint)


def _rows_sum_to_one(student, ex):
    pi = _pi(student, ex)
    _finite(pi, ex)
    sums = pi.sum(-1)
    bad = np.abs(sums - 1) > 1e-9
    if np.any(bad):
        i = int(np.argmax(bad))
        raise CheckFailed(f"row {i} of pi sums to {float(sums[i])!r}")


def _zeros_stay_zero(student, ex):
    pi = _pi(student, ex)
    _finite(pi, ex)
    if np.any(pi < 0):
        idx = tuple(int(i) for i in np.argwhere(pi < 0)[0])
        raise CheckFailed(f"pi has a negative entry {float(pi[idx])!r} at index {idx}")
    bad = (ex["pi_ref"] == 0) & (pi != 0)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise CheckFailed(f"pi_ref{list(idx)} = 0 but pi{list(idx)} = {float(pi[idx])!r}")


def _first_order_condition(student, ex):
    pi = _pi(student, ex)
    _finite(pi, ex)
    support = ex["pi_ref"] > 0
    if np.any(support & (pi <= 0)):
        idx = tuple(int(i) for i in np.argwhere(support & (pi <= 0))[0])
        raise CheckFailed(f"pi{list(idx)} = {float(pi[idx])!r} although pi_ref{list(idx)} > 0")
    with np.errstate(divide="ignore"):
        c = np.log(np.where(support, pi, 1.0)) - np.log(np.where(support, ex["pi_ref"], 1.0))
    c = c - ex["reward"] / ex["beta"]
    hi = np.max(np.where(support, c, -np.inf), axis=-1)
    lo = np.min(np.where(support, c, np.inf), axis=-1)
    spread = hi - lo
    tol = 1e-7 * (1 + np.max(np.abs(ex["reward"])) / ex["beta"])
    if np.any(spread > tol):
        i = int(np.argmax(spread))
        raise CheckFailed(f"in row {i}, log pi - log pi_ref - reward / beta ranges over "
                          f"[{lo[i]:.6g}, {hi[i]:.6g}] on the support (spread {spread[i]:.3g}); "
                          "it should be one constant, -log Z")


def _matches_library(student, ex):
    pi = _pi(student, ex)
    _finite(pi, ex)
    require_close(pi, reference(ex["pi_ref"], ex["reward"], ex["beta"]), "pi",
                  rtol=1e-7, atol=1e-12)


def _extreme(student, ex):
    pi = _pi(student, ex)
    _finite(pi, ex, hint=OVERFLOW_HINT)
    sums = pi.sum(-1)
    if np.any(np.abs(sums - 1) > 1e-9):
        big = np.max(np.abs(ex["reward"])) / ex["beta"] > 700
        raise CheckFailed(f"rows of pi sum to {sums}", hint=OVERFLOW_HINT if big else None)
    require_close(pi, reference(ex["pi_ref"], ex["reward"], ex["beta"]), "pi",
                  rtol=1e-6, atol=1e-12)


_moderate = bandit(allow_zeros=True, scale=3.0, beta=(0.1, 10.0))
_large = bandit(allow_zeros=True, scale=1000.0, beta=(1e-4, 1e-2))

EXERCISE = Exercise(
    number=1,
    slug="optimal_policy",
    title="the KL-regularised optimal policy pi* = pi_ref exp(r / beta) / Z",
    functions=("optimal_policy",),
    checks=(
        Check("rows sum to one",
              "each row of pi* is a distribution: sum_y pi*(y|x) = 1",
              "divide by the normaliser Z(x) = sum_y pi_ref(y|x) exp(r(x, y) / beta), "
              "summed along the last axis (responses), one Z per prompt",
              _rows_sum_to_one, _moderate),
        Check("zeros of pi_ref stay zero",
              "pi*(y|x) >= 0, and pi*(y|x) = 0 wherever pi_ref(y|x) = 0",
              "pi* is pi_ref times a positive factor: it cannot put mass where pi_ref has none",
              _zeros_stay_zero, _moderate),
        Check("first-order condition",
              "on the support of pi_ref, log pi*(y|x) - log pi_ref(y|x) - r(x, y) / beta is "
              "the same for every y (it equals -log Z(x))",
              "set the derivative of E_pi[r] - beta KL(pi || pi_ref) + lambda (sum_y pi - 1) "
              "to zero: the reward enters divided by beta, with a plus sign",
              _first_order_condition, _moderate),
        Check("matches the library",
              "pi* agrees with rlhf_toy.optimal.optimal_policy to 1e-7 (relative)",
              "if the properties above hold, check the axis you normalise over",
              _matches_library, _moderate),
        Check("large rewards and small beta",
              "for |r| up to 1e3 and beta down to 1e-4, pi* is finite, sums to one and is "
              "correct (r / beta reaches 1e7)",
              "the inputs here are extreme; if other checks fail too, fix those first",
              _extreme, _large),
    ),
)
