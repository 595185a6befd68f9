"""Grader of exercise 05: the KL estimators k1 and k3 (chapter, "RLHF uses reverse KL").

The student writes ``k1(logp, logp_ref)`` and ``k3(logp, logp_ref)``: per-sample estimates of
``KL(pi || pi_ref)`` for samples drawn from ``pi``. The reference is
:func:`rlhf_toy.kl.kl_estimates`; unbiasedness is checked exactly, by weighting every
response with its probability under ``pi`` and comparing with
:func:`rlhf_toy.kl.kl_divergence`.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from rlhf_toy.grading._inputs import floats_array, policies
from rlhf_toy.grading.core import Check, CheckFailed, Exercise, as_array, require_close
from rlhf_toy.kl import kl_divergence, kl_estimates

__all__ = ["EXERCISE"]

CANCELLATION_HINT = (
    "for r near 1, exp(log r) - 1 - log r subtracts nearly equal numbers and keeps only "
    "rounding noise; np.expm1(log_r) - log_r computes the same value accurately"
)


def _estimate(student, name, logp, logp_ref):
    out = student.call(name, logp, logp_ref)
    k = as_array(out, np.shape(logp), f"{name}(logp, logp_ref)")
    if not np.all(np.isfinite(k)):
        i = tuple(int(v) for v in np.argwhere(~np.isfinite(k))[0])
        raise CheckFailed(f"{name} is {float(k[i])} at index {i}")
    return k


@st.composite
def _samples(draw, low=-20.0):
    n = draw(st.integers(1, 6))
    return {"logp": draw(floats_array((n,), low, 0.0)),
            "logp_ref": draw(floats_array((n,), low, 0.0))}


@st.composite
def _pairs_of_policies(draw):
    y = draw(st.integers(2, 6))
    pi, pi_ref = draw(policies((2, y), spread=3.0))
    return {"pi": pi, "pi_ref": pi_ref}


@st.composite
def _near_one(draw):
    ex = draw(_samples(low=-5.0))
    ex["log_r"] = draw(floats_array(ex["logp"].shape, -1e-6, 1e-6))
    return ex


def _nonnegative(student, ex):
    k = _estimate(student, "k3", ex["logp"], ex["logp_ref"])
    if np.any(k < -1e-12):
        i = int(np.argmax(k < -1e-12))
        raise CheckFailed(f"k3[{i}] = {float(k[i])!r} < 0")


def _zero_at_equal(student, ex):
    k = _estimate(student, "k3", ex["logp"], ex["logp"].copy())
    if np.any(np.abs(k) > 1e-15):
        i = int(np.argmax(np.abs(k)))
        raise CheckFailed(f"with logp_ref = logp, k3[{i}] = {float(k[i])!r}, not 0")


def _unbiased(name):
    def test(student, ex):
        pi, pi_ref = ex["pi"], ex["pi_ref"]
        k = _estimate(student, name, np.log(pi), np.log(pi_ref))
        mean = float((pi * k).sum())
        require_close(mean, float(kl_divergence(pi, pi_ref)),
                      f"E_pi[{name}] = sum_y pi(y) {name}(y), as an estimate of KL(pi || pi_ref),",
                      rtol=1e-9, atol=1e-12)
    return test


def _matches_library(student, ex):
    ref = kl_estimates(ex["logp"], ex["logp_ref"])
    for name in ("k1", "k3"):
        require_close(_estimate(student, name, ex["logp"], ex["logp_ref"]), ref[name], name,
                      rtol=1e-9, atol=1e-12)


def _near_r_one(student, ex):
    logp_ref = ex["logp"] + ex["log_r"]
    k = _estimate(student, "k3", ex["logp"], logp_ref)
    require_close(k, kl_estimates(ex["logp"], logp_ref)["k3"], "k3 near r = 1", rtol=1e-6,
                  atol=0.0)


EXERCISE = Exercise(
    number=5,
    slug="k3_estimator",
    title="the KL estimators k1 and k3: unbiased, and k3 non-negative",
    functions=("k1", "k3"),
    checks=(
        Check("k3 is non-negative",
              "k3 = (r - 1) - log r >= 0 for every sample, r = pi_ref(y) / pi(y)",
              "x - 1 >= log x for every x > 0; check which ratio r is",
              _nonnegative, _samples()),
        Check("k3 is zero where pi = pi_ref",
              "if log pi_ref(y) = log pi(y) then k3 = 0",
              "at r = 1 both (r - 1) and log r vanish",
              _zero_at_equal, _samples()),
        Check("k1 is unbiased",
              "sum_y pi(y) k1(log pi(y), log pi_ref(y)) = KL(pi || pi_ref), exactly",
              "k1 = -log r = log pi(y) - log pi_ref(y): the KL's own integrand",
              _unbiased("k1"), _pairs_of_policies()),
        Check("k3 is unbiased",
              "sum_y pi(y) k3(log pi(y), log pi_ref(y)) = KL(pi || pi_ref), exactly",
              "E_pi[r] = sum_y pi(y) pi_ref(y) / pi(y) = 1, so E_pi[r - 1] = 0: the ratio is "
              "pi_ref / pi, for samples from pi",
              _unbiased("k3"), _pairs_of_policies()),
        Check("matches the library",
              "k1 and k3 agree with rlhf_toy.kl.kl_estimates to 1e-9",
              "log r = logp_ref - logp",
              _matches_library, _samples()),
        Check("accurate near r = 1",
              "for |log r| < 1e-6, k3 (about (log r)^2 / 2) is correct to 1e-6 relative",
              CANCELLATION_HINT,
              _near_r_one, _near_one()),
    ),
)
