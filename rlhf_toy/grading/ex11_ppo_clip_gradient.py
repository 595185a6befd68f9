"""Grader of exercise 11: the gradient of PPO's clipped surrogate (chapter, *Modern RL for
LLMs* and Stage 3's PPO).

The student writes ``ppo_clip_gradient(logp, logp_old, advantages, clip_eps)``: the
per-token gradient of ``-min(rho A, clip(rho, 1 - eps, 1 + eps) A)`` with respect to
``logp``. The reference is :func:`rlhf_toy.policy_gradient.ppo_clip_loss` on one row of
tokens (its token mean, times the number of tokens).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from rlhf_toy.grading._inputs import floats_array
from rlhf_toy.grading.core import Check, CheckFailed, Exercise, as_array, require_close
from rlhf_toy.policy_gradient import ppo_clip_loss

__all__ = ["EXERCISE"]


@st.composite
def _tokens(draw):
    n = draw(st.integers(1, 6))
    logp_old = draw(floats_array((n,), -5.0, 0.0))
    return {"logp": logp_old + draw(floats_array((n,), -0.5, 0.5)), "logp_old": logp_old,
            "advantages": draw(floats_array((n,), -3.0, 3.0)),
            "clip_eps": draw(st.floats(0.05, 0.3))}


def _grad(student, ex, logp=None):
    logp = ex["logp"] if logp is None else logp
    out = student.call("ppo_clip_gradient", logp, ex["logp_old"], ex["advantages"],
                       ex["clip_eps"])
    g = as_array(out, logp.shape, "ppo_clip_gradient(logp, logp_old, advantages, clip_eps)")
    if not np.all(np.isfinite(g)):
        i = int(np.argmax(~np.isfinite(g)))
        raise CheckFailed(f"the gradient at token {i} is {float(g[i])}")
    return g


def _loss_sum(ex, logp):
    n = logp.size
    loss, dlogp, _ = ppo_clip_loss(logp[None], ex["logp_old"][None], ex["advantages"][None],
                                   np.ones((1, n)), clip_eps=ex["clip_eps"])
    return loss * n, dlogp[0] * n


def _clipped(ex):
    rho = np.exp(ex["logp"] - ex["logp_old"])
    a, eps = ex["advantages"], ex["clip_eps"]
    return ((a > 0) & (rho > 1 + eps)) | ((a < 0) & (rho < 1 - eps)), rho


def _zero_where_clipped(student, ex):
    g = _grad(student, ex)
    clipped, rho = _clipped(ex)
    bad = clipped & (g != 0)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise CheckFailed(f"token {i} has A = {float(ex['advantages'][i]):.6g} and rho = "
                          f"{float(rho[i]):.6g} outside the clip, but gradient "
                          f"{float(g[i]):.6g}, not 0")


def _ratio_one(student, ex):
    g = _grad(student, ex, logp=ex["logp_old"].copy())
    require_close(g, -ex["advantages"], "the gradient at logp = logp_old", rtol=1e-12,
                  atol=1e-14)


def _unclipped(student, ex):
    g = _grad(student, ex)
    clipped, rho = _clipped(ex)
    live = ~clipped
    require_close(g[live], (-rho * ex["advantages"])[live],
                  "the gradient where the clip is not active", rtol=1e-9, atol=1e-12)


def _finite_differences(student, ex):
    g = _grad(student, ex)
    clipped, rho = _clipped(ex)
    eps, h = ex["clip_eps"], 1e-6
    away = (np.abs(rho - (1 + eps)) > 1e-4) & (np.abs(rho - (1 - eps)) > 1e-4)
    fd = np.empty_like(g)
    for i in range(g.size):
        up, down = ex["logp"].copy(), ex["logp"].copy()
        up[i] += h
        down[i] -= h
        fd[i] = (_loss_sum(ex, up)[0] - _loss_sum(ex, down)[0]) / (2 * h)
    require_close(g[away], fd[away], "the gradient (against central finite differences of "
                  "-min(rho A, clip(rho) A))", rtol=1e-5, atol=1e-8)


def _matches_library(student, ex):
    require_close(_grad(student, ex), _loss_sum(ex, ex["logp"])[1], "the gradient",
                  rtol=1e-9, atol=1e-12)


EXERCISE = Exercise(
    number=11,
    slug="ppo_clip_gradient",
    title="the gradient of PPO's clipped surrogate: zero where the clip is active",
    functions=("ppo_clip_gradient",),
    checks=(
        Check("zero where clipped",
              "the gradient is exactly 0 where the clipped branch is the minimum: A > 0 and "
              "rho > 1 + eps, or A < 0 and rho < 1 - eps",
              "the clipped term clip(rho) A is a constant in logp once rho is outside "
              "[1 - eps, 1 + eps]",
              _zero_where_clipped, _tokens()),
        Check("policy gradient at ratio one",
              "at logp = logp_old (rho = 1) the gradient is -A, the policy gradient",
              "d rho / d logp = rho, and rho = 1 there",
              _ratio_one, _tokens()),
        Check("unclipped tokens",
              "where the clip is not active the gradient is -rho A",
              "rho = exp(logp - logp_old), so d(rho A)/d logp = rho A; the loss is minus the "
              "surrogate",
              _unclipped, _tokens()),
        Check("derivative of the loss",
              "the gradient equals central finite differences of -min(rho A, clip(rho, "
              "1 - eps, 1 + eps) A) (away from the clip's edges)",
              "min, not max: the clip only removes the incentive to move further, never adds "
              "one",
              _finite_differences, _tokens()),
        Check("matches the library",
              "the gradient agrees with rlhf_toy.policy_gradient.ppo_clip_loss's dlogp (times "
              "the number of tokens)",
              "the sign of A decides which side of the clip matters",
              _matches_library, _tokens()),
    ),
)
