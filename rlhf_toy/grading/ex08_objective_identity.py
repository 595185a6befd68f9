"""Grader of exercise 08: ``J(pi) = beta (log Z - KL(pi || pi*))`` (chapter, Stage 3).

The student writes ``objective``, ``log_partition`` and ``kl_to_optimum``, each per prompt;
the references are :mod:`rlhf_toy.optimal` and :func:`rlhf_toy.kl.kl_divergence`.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from rlhf_toy.grading._inputs import bandit, policies
from rlhf_toy.grading.core import Check, CheckFailed, Exercise, as_array, require_close
from rlhf_toy.kl import kl_divergence
from rlhf_toy.optimal import log_partition, optimal_policy

__all__ = ["EXERCISE"]

LOGSUMEXP_HINT = (
    "log sum_y pi_ref exp(r / beta) overflows if you exponentiate r / beta directly (r / beta "
    "reaches 3e4 here); use scipy.special.logsumexp(log pi_ref + r / beta, axis=-1), with "
    "log pi_ref = -inf where pi_ref = 0"
)


@st.composite
def _worlds(draw, beta=(0.1, 10.0)):
    ex = draw(bandit(scale=3.0, beta=beta))
    pi = draw(policies(ex["pi_ref"].shape, allow_zeros=True))
    pi = np.where(ex["pi_ref"] > 0, pi, 0.0)  # pi lives on pi_ref's support
    pi = np.where(pi.sum(-1, keepdims=True) > 0, pi, ex["pi_ref"])
    ex["pi"] = pi / pi.sum(-1, keepdims=True)
    return {"pi": ex["pi"], "pi_ref": ex["pi_ref"], "reward": ex["reward"], "beta": ex["beta"]}


def _per_row(student, name, ex, *args, hint=None):
    out = student.call(name, *args)
    value = as_array(out, ex["pi_ref"].shape[:-1], f"{name}(...)")
    if not np.all(np.isfinite(value)):
        i = tuple(int(v) for v in np.argwhere(~np.isfinite(value))[0])
        raise CheckFailed(f"{name} is {float(value[i])} at row {i}", hint=hint)
    return value


def _objective(student, ex, pi=None):
    pi = ex["pi"] if pi is None else pi
    return _per_row(student, "objective", ex, pi, ex["pi_ref"], ex["reward"], ex["beta"],
                    hint="0 log 0 = 0: leave out the entries where pi is 0")


def _log_z(student, ex):
    return _per_row(student, "log_partition", ex, ex["pi_ref"], ex["reward"], ex["beta"],
                    hint=LOGSUMEXP_HINT)


def _kl_opt(student, ex, pi=None):
    pi = ex["pi"] if pi is None else pi
    return _per_row(student, "kl_to_optimum", ex, pi, ex["pi_ref"], ex["reward"], ex["beta"],
                    hint="0 log 0 = 0, and log pi* = log pi_ref + r / beta - log Z is -inf "
                         "only where pi_ref = 0 (where pi is 0 too)")


def _objective_matches(student, ex):
    ref = (ex["pi"] * ex["reward"]).sum(-1) - ex["beta"] * kl_divergence(ex["pi"], ex["pi_ref"])
    require_close(_objective(student, ex), ref, "objective", rtol=1e-9, atol=1e-12)


def _log_z_matches(student, ex):
    require_close(_log_z(student, ex), log_partition(ex["pi_ref"], ex["reward"], ex["beta"]),
                  "log_partition", rtol=1e-9, atol=1e-12)


def _kl_matches(student, ex):
    pi_star = optimal_policy(ex["pi_ref"], ex["reward"], ex["beta"])
    require_close(_kl_opt(student, ex), kl_divergence(ex["pi"], pi_star), "kl_to_optimum",
                  rtol=1e-8, atol=1e-11)


def _identity(student, ex):
    j = _objective(student, ex)
    rhs = ex["beta"] * (_log_z(student, ex) - _kl_opt(student, ex))
    require_close(j, rhs, "objective - beta (log_partition - kl_to_optimum), as 0,",
                  rtol=1e-8, atol=1e-10)


def _optimum(student, ex):
    pi_star = optimal_policy(ex["pi_ref"], ex["reward"], ex["beta"])
    j = _objective(student, ex, pi=pi_star)
    require_close(j, ex["beta"] * log_partition(ex["pi_ref"], ex["reward"], ex["beta"]),
                  "objective(pi*)", rtol=1e-8, atol=1e-10)
    kl = _kl_opt(student, ex, pi=pi_star)
    if np.any(np.abs(kl) > 1e-10):
        raise CheckFailed(f"kl_to_optimum(pi*) = {kl}, not 0")


def _small_beta(student, ex):
    require_close(_log_z(student, ex), log_partition(ex["pi_ref"], ex["reward"], ex["beta"]),
                  "log_partition", rtol=1e-9, atol=1e-9)


EXERCISE = Exercise(
    number=8,
    slug="objective_identity",
    title="J(pi) = beta (log Z - KL(pi || pi*)): RLHF is a reverse-KL projection onto pi*",
    functions=("objective", "log_partition", "kl_to_optimum"),
    checks=(
        Check("objective matches the library",
              "objective = E_pi[r] - beta KL(pi || pi_ref), per prompt",
              "the KL has the policy on the left: sum_y pi log(pi / pi_ref), subtracted",
              _objective_matches, _worlds()),
        Check("log Z matches the library",
              "log_partition = log sum_y pi_ref(y) exp(r(y) / beta), per prompt",
              "the sum is weighted by pi_ref",
              _log_z_matches, _worlds()),
        Check("KL to the optimum matches the library",
              "kl_to_optimum = KL(pi || pi*) with pi* = pi_ref exp(r / beta) / Z",
              "log pi* = log pi_ref + r / beta - log Z: do not forget log Z",
              _kl_matches, _worlds()),
        Check("the identity",
              "objective(pi) = beta (log_partition - kl_to_optimum(pi)) for every pi",
              "expand KL(pi || pi*) with log pi* = log pi_ref + r / beta - log Z",
              _identity, _worlds()),
        Check("the optimum attains beta log Z",
              "objective(pi*) = beta log Z and kl_to_optimum(pi*) = 0",
              "at pi = pi* the KL term of the identity vanishes",
              _optimum, _worlds()),
        Check("small beta",
              "for beta down to 1e-3 (r / beta up to 3e3) log_partition is finite and correct",
              LOGSUMEXP_HINT,
              _small_beta, _worlds(beta=(1e-3, 1e-2))),
    ),
)
