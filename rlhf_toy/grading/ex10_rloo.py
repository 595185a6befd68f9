"""Grader of exercise 10: RLOO's leave-one-out advantages (chapter, *Modern RL for LLMs*).

The student writes ``rloo_advantages(rewards)``; the reference is
:func:`rlhf_toy.policy_gradient.rloo_advantages`.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from rlhf_toy.grading._inputs import floats_array
from rlhf_toy.grading.core import Check, CheckFailed, Exercise, as_array, require_close
from rlhf_toy.policy_gradient import rloo_advantages

__all__ = ["EXERCISE"]


@st.composite
def _groups(draw):
    shape = (draw(st.integers(1, 3)), draw(st.integers(2, 6)))
    return {"rewards": draw(floats_array(shape, -5.0, 5.0)),
            "i": draw(st.integers(0, shape[1] - 1)), "delta": draw(st.floats(-3.0, 3.0))}


def _adv(student, rewards):
    out = student.call("rloo_advantages", rewards)
    adv = as_array(out, rewards.shape, "rloo_advantages(rewards)")
    if not np.all(np.isfinite(adv)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(adv))[0])
        raise CheckFailed(f"the advantage at {idx} is {float(adv[idx])}")
    return adv


def _sum_zero(student, ex):
    sums = _adv(student, ex["rewards"]).sum(-1)
    if np.any(np.abs(sums) > 1e-9):
        i = int(np.argmax(np.abs(sums)))
        raise CheckFailed(f"the advantages of group {i} sum to {float(sums[i]):.6g}, not 0")


def _identity(student, ex):
    r = ex["rewards"]
    g = r.shape[-1]
    require_close(_adv(student, r), g / (g - 1) * (r - r.mean(-1, keepdims=True)),
                  "A compared with G / (G - 1) (r - mean(r))", rtol=1e-9, atol=1e-12)


def _own_reward(student, ex):
    r, i, delta = ex["rewards"], ex["i"], ex["delta"]
    g = r.shape[-1]
    base = _adv(student, r)
    moved = r.copy()
    moved[:, i] += delta
    change = _adv(student, moved) - base
    expected = np.full(r.shape, -delta / (g - 1))
    expected[:, i] = delta
    require_close(change, expected, f"the change of the advantages when r_{i} moves by "
                  f"{delta:.6g}", rtol=1e-7, atol=1e-9)


def _matches_library(student, ex):
    require_close(_adv(student, ex["rewards"]), rloo_advantages(ex["rewards"]),
                  "the advantages", rtol=1e-9, atol=1e-12)


EXERCISE = Exercise(
    number=10,
    slug="rloo",
    title="RLOO: the leave-one-out baseline and its identity A_i = G/(G-1) (r_i - mean)",
    functions=("rloo_advantages",),
    checks=(
        Check("rows sum to zero",
              "the leave-one-out advantages of a group sum to 0",
              "sum_i (r_i - mean_{j != i} r_j) = sum_i r_i - sum_i (S - r_i) / (G - 1)",
              _sum_zero, _groups()),
        Check("leave-one-out identity",
              "A_i = r_i - mean_{j != i} r_j = G / (G - 1) (r_i - mean(r))",
              "the baseline of sample i is the mean of the OTHER G - 1 rewards: (S - r_i) / "
              "(G - 1)",
              _identity, _groups()),
        Check("own reward, own baseline",
              "moving r_i by delta moves A_i by delta (its baseline does not contain r_i) and "
              "every other A_j by -delta / (G - 1)",
              "A_i = r_i - b_i with b_i independent of r_i: that is what keeps the gradient "
              "estimate unbiased",
              _own_reward, _groups()),
        Check("matches the library",
              "the advantages agree with rlhf_toy.policy_gradient.rloo_advantages",
              "one group per row; the mean runs along the last axis",
              _matches_library, _groups()),
    ),
)
