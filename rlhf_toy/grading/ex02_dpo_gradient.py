"""Grader of exercise 02: the gradient of the DPO loss (chapter, *DPO*, "Derive the DPO gradient").

The student writes ``dpo_gradient(policy_chosen, policy_rejected, ref_chosen, ref_rejected,
beta) -> (grad_chosen, grad_rejected)``; the reference is the gradient returned by
:func:`rlhf_toy.preference_losses.dpo_loss` (and its finite differences).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from scipy.special import expit

from rlhf_toy.grading._inputs import floats_array, log_uniform
from rlhf_toy.grading.core import Check, CheckFailed, Exercise, as_array, require_close
from rlhf_toy.preference_losses import dpo_loss

__all__ = ["EXERCISE", "OVERFLOW_HINT"]

OVERFLOW_HINT = (
    "exp(x) / (1 + exp(x)) is inf / inf = nan once x > 709. Evaluate the sigmoid stably: "
    "scipy.special.expit, or 1 / (1 + exp(-x)) (which only underflows to 0 harmlessly)."
)

_NAMES = ("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected")


@st.composite
def _pairs(draw, low=-20.0, beta=(0.05, 5.0)):
    n = draw(st.integers(1, 4))
    ex = {name: draw(floats_array((n,), low, 0.0)) for name in _NAMES}
    ex["beta"] = draw(log_uniform(*beta))
    return ex


def _args(ex):
    return tuple(ex[k] for k in _NAMES) + (ex["beta"],)


def _grads(student, ex):
    out = student.call("dpo_gradient", *_args(ex))
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise CheckFailed(f"dpo_gradient returned {type(out).__name__}, expected a pair "
                          "(grad_chosen, grad_rejected)",
                          hint="return grad_chosen, grad_rejected")
    shape = ex["policy_chosen"].shape
    g_w = as_array(out[0], shape, "grad_chosen")
    g_l = as_array(out[1], shape, "grad_rejected")
    for g, what in ((g_w, "grad_chosen"), (g_l, "grad_rejected")):
        if not np.all(np.isfinite(g)):
            i = int(np.argmax(~np.isfinite(g)))
            raise CheckFailed(f"{what}[{i}] = {float(g[i])}", hint=OVERFLOW_HINT)
    return g_w, g_l


def _sum_zero(student, ex):
    g_w, g_l = _grads(student, ex)
    total = g_w + g_l
    if np.any(np.abs(total) > 1e-12 * (1 + ex["beta"])):
        i = int(np.argmax(np.abs(total)))
        raise CheckFailed(f"grad_chosen[{i}] + grad_rejected[{i}] = {float(total[i]):.6g}, "
                          "not 0")


def _signs(student, ex):
    g_w, g_l = _grads(student, ex)
    if np.any(g_w > 0):
        i = int(np.argmax(g_w > 0))
        raise CheckFailed(f"grad_chosen[{i}] = {float(g_w[i]):.6g} > 0")
    if np.any(g_l < 0):
        i = int(np.argmax(g_l < 0))
        raise CheckFailed(f"grad_rejected[{i}] = {float(g_l[i]):.6g} < 0")


def _weight(student, ex):
    g_w, _ = _grads(student, ex)
    beta = ex["beta"]
    h_w = beta * (ex["policy_chosen"] - ex["ref_chosen"])
    h_l = beta * (ex["policy_rejected"] - ex["ref_rejected"])
    require_close(-g_w, beta * expit(h_l - h_w), "-grad_chosen", rtol=1e-9, atol=1e-14)


def _finite_differences(student, ex):
    g_w, g_l = _grads(student, ex)
    args = list(_args(ex))
    eps = 1e-6
    for k, g, what in ((0, g_w, "grad_chosen"), (1, g_l, "grad_rejected")):
        up, down = list(args), list(args)
        up[k] = args[k] + eps
        down[k] = args[k] - eps
        fd = (dpo_loss(*up)[0] - dpo_loss(*down)[0]) / (2 * eps)
        require_close(g, fd, f"{what} (against central finite differences of the loss)",
                      rtol=1e-5, atol=1e-8)


def _matches_library(student, ex):
    g_w, g_l = _grads(student, ex)
    _, ref_w, ref_l = dpo_loss(*_args(ex))
    require_close(g_w, ref_w, "grad_chosen", rtol=1e-9, atol=1e-14)
    require_close(g_l, ref_l, "grad_rejected", rtol=1e-9, atol=1e-14)


def _large_margins(student, ex):
    g_w, g_l = _grads(student, ex)
    _, ref_w, ref_l = dpo_loss(*_args(ex))
    require_close(g_w, ref_w, "grad_chosen", rtol=1e-9, atol=1e-14)
    require_close(g_l, ref_l, "grad_rejected", rtol=1e-9, atol=1e-14)


_moderate = _pairs()
_large = _pairs(low=-2000.0, beta=(0.5, 10.0))

EXERCISE = Exercise(
    number=2,
    slug="dpo_gradient",
    title="the gradient of the DPO loss with respect to the policy log-probs",
    functions=("dpo_gradient",),
    checks=(
        Check("gradients sum to zero",
              "grad_chosen + grad_rejected = 0: the loss depends on the two log-probs only "
              "through their difference",
              "the loss is a function of h_w - h_l; differentiate that difference once",
              _sum_zero, _moderate),
        Check("signs",
              "grad_chosen <= 0 <= grad_rejected: gradient descent raises the chosen "
              "log-prob and lowers the rejected one",
              "d/dz (-log sigma(z)) = -sigma(-z) < 0; mind the minus sign of the loss",
              _signs, _moderate),
        Check("weight",
              "-grad_chosen = beta * sigma(h_l - h_w) with h = beta log(pi / pi_ref): the "
              "weight is large when the implicit reward ranks the pair wrongly",
              "chain rule: dL/dz = -sigma(-z) with z = h_w - h_l, and dz/dlog pi(y_w) = beta; "
              "1 - sigma(z) = sigma(-z)",
              _weight, _moderate),
        Check("derivative of the loss",
              "the gradients equal central finite differences of the per-pair DPO loss "
              "-log sigma(beta [(log pi_w - log pi_ref_w) - (log pi_l - log pi_ref_l)])",
              "differentiate the loss of each pair with respect to its own policy log-probs",
              _finite_differences, _moderate),
        Check("matches the library",
              "the gradients agree with rlhf_toy.preference_losses.dpo_loss to 1e-9",
              "compare your formula with the chain rule once more: two betas, one sigma",
              _matches_library, _moderate),
        Check("large margins",
              "for log-probs down to -2000 and beta up to 10 (margins of 1e4) the gradients "
              "are finite and correct",
              "the inputs here are extreme; if other checks fail too, fix those first",
              _large_margins, _large),
    ),
)
