"""Grader of exercise 06: best-of-n, exactly, and its KL bound (chapter, *Modern variations*).

The student writes ``best_of_n_policy(pi_ref, reward, n)`` and ``best_of_n_kl(pi_ref,
reward, n)`` for rewards that are distinct within each row, and ``kl_bound(n)``; the
references are :mod:`rlhf_toy.best_of_n`'s functions of the same names.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from rlhf_toy import best_of_n as bon
from rlhf_toy.grading._inputs import floats_array, policies, table_shapes
from rlhf_toy.grading.core import (
    Check,
    CheckFailed,
    Exercise,
    as_array,
    as_scalar,
    require_close,
)

__all__ = ["EXERCISE"]


@st.composite
def _worlds(draw, allow_zeros=True):
    shape = draw(table_shapes(3, 5))
    raw = draw(floats_array(shape, -3.0, 3.0))
    # distinct rewards per row: the ranks of the raw draw, ties broken by column
    order = np.lexsort((np.broadcast_to(np.arange(shape[1]), shape), raw), axis=-1)
    reward = np.argsort(order, axis=-1).astype(np.float64)
    return {"pi_ref": draw(policies(shape, allow_zeros)), "reward": reward,
            "n": draw(st.integers(1, 8))}


def _policy(student, ex, n=None):
    n = ex["n"] if n is None else n
    out = student.call("best_of_n_policy", ex["pi_ref"], ex["reward"], n)
    p = as_array(out, ex["pi_ref"].shape, "best_of_n_policy(pi_ref, reward, n)")
    if not np.all(np.isfinite(p)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(p))[0])
        raise CheckFailed(f"pi_bon has {float(p[idx])} at index {idx}")
    return p


def _kl(student, ex):
    out = student.call("best_of_n_kl", ex["pi_ref"], ex["reward"], ex["n"])
    kl = as_array(out, ex["pi_ref"].shape[:-1], "best_of_n_kl(pi_ref, reward, n)")
    if not np.all(np.isfinite(kl)):
        raise CheckFailed(f"best_of_n_kl returned {kl}",
                          hint="0 log 0 = 0: leave out the terms where pi_bon is 0")
    return kl


def _bound(student, n):
    value = as_scalar(student.call("kl_bound", n), f"kl_bound({n})")
    if not np.isfinite(value):
        raise CheckFailed(f"kl_bound({n}) = {value}")
    return value


def _rows_sum_to_one(student, ex):
    p = _policy(student, ex)
    if np.any(p < 0):
        idx = tuple(int(i) for i in np.argwhere(p < 0)[0])
        raise CheckFailed(f"pi_bon{list(idx)} = {float(p[idx])!r} < 0")
    sums = p.sum(-1)
    if np.any(np.abs(sums - 1) > 1e-9):
        i = int(np.argmax(np.abs(sums - 1)))
        raise CheckFailed(f"row {i} of pi_bon sums to {float(sums[i])!r}")


def _n_one(student, ex):
    require_close(_policy(student, ex, n=1), ex["pi_ref"], "best_of_n_policy at n = 1",
                  rtol=1e-9, atol=1e-12)


def _policy_matches(student, ex):
    require_close(_policy(student, ex), bon.best_of_n_policy(ex["pi_ref"], ex["reward"], ex["n"]),
                  "pi_bon", rtol=1e-9, atol=1e-12)


def _kl_matches(student, ex):
    require_close(_kl(student, ex), bon.best_of_n_kl(ex["pi_ref"], ex["reward"], ex["n"]),
                  "KL(pi_bon || pi_ref)", rtol=1e-8, atol=1e-12)


def _bound_formula(student, ex):
    n = ex["n"]
    require_close(_bound(student, n), float(np.log(n) - (n - 1) / n), f"kl_bound({n})",
                  rtol=1e-12, atol=1e-15)


def _below_bound(student, ex):
    kl = _kl(student, ex)
    b = float(np.log(ex["n"]) - (ex["n"] - 1) / ex["n"])
    if np.any(kl > b + 1e-12):
        i = int(np.argmax(kl))
        raise CheckFailed(f"best_of_n_kl row {i} is {float(kl[i]):.6g} > log n - (n-1)/n = "
                          f"{b:.6g}")


def _continuum(student, ex):
    m, n = 2000, ex["n"]
    world = {"pi_ref": np.full((1, m), 1.0 / m), "reward": np.arange(m, dtype=float)[None, :],
             "n": n}
    kl = float(_kl(student, world)[0])
    b = float(np.log(n) - (n - 1) / n)
    if abs(kl - b) > 1e-5:
        raise CheckFailed(f"for pi_ref uniform over 2000 responses of distinct rewards and "
                          f"n = {n}, best_of_n_kl is {kl:.8g}, more than 1e-5 from "
                          f"log n - (n-1)/n = {b:.8g}")


EXERCISE = Exercise(
    number=6,
    slug="best_of_n_kl",
    title="best-of-n exactly: its distribution, its KL and the log n - (n-1)/n bound",
    functions=("best_of_n_policy", "best_of_n_kl", "kl_bound"),
    checks=(
        Check("rows sum to one",
              "pi_bon is a distribution over responses, per prompt",
              "P(best = y) = F(r(y))^n - F_<(r(y))^n telescopes to 1 over the sorted responses",
              _rows_sum_to_one, _worlds()),
        Check("n = 1 gives pi_ref",
              "best-of-1 is one sample from pi_ref",
              "return the probabilities in the original order of the responses, not the "
              "sorted one",
              _n_one, _worlds()),
        Check("policy matches the library",
              "pi_bon agrees with rlhf_toy.best_of_n.best_of_n_policy to 1e-9",
              "the best of n draws is y exactly when all n draws have reward <= r(y) and not "
              "all have reward < r(y); on a finite table this is a difference of powers, not "
              "the continuum density n F^(n-1) f",
              _policy_matches, _worlds()),
        Check("KL matches the library",
              "best_of_n_kl = KL(pi_bon || pi_ref) = sum_y pi_bon log(pi_bon / pi_ref) per row",
              "best-of-n is on the left: the KL is an expectation under pi_bon; 0 log 0 = 0",
              _kl_matches, _worlds()),
        Check("the bound",
              "kl_bound(n) = log n - (n - 1) / n",
              "for continuous rewards, u = F(r) of the chosen response has density n u^(n-1) "
              "on [0, 1]; the KL is E[log(n u^(n-1))]",
              _bound_formula, st.fixed_dictionaries({"n": st.integers(1, 1000)})),
        Check("KL below the bound",
              "best_of_n_kl <= log n - (n - 1) / n on every table",
              "a finite table is coarser than the continuum: the KL can only be smaller",
              _below_bound, _worlds()),
        Check("the bound is reached in the continuum",
              "for pi_ref uniform over 2000 distinct-reward responses, best_of_n_kl is within "
              "1e-5 of log n - (n - 1) / n",
              "check best_of_n_kl on many small, equally likely responses",
              _continuum, st.fixed_dictionaries({"n": st.integers(2, 8)}), 6),
    ),
)
