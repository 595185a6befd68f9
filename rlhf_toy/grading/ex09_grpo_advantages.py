"""Grader of exercise 09: GRPO's group-normalised advantages (chapter, *Modern RL for LLMs*).

The student writes ``grpo_advantages(rewards, eps=1e-4)``; the reference is
:func:`rlhf_toy.policy_gradient.grpo_advantages` (``scale="group"``: the sample std).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from rlhf_toy.grading._inputs import floats_array, log_uniform
from rlhf_toy.grading.core import Check, CheckFailed, Exercise, as_array, require_close
from rlhf_toy.policy_gradient import grpo_advantages

__all__ = ["EXERCISE"]


@st.composite
def _groups(draw, flat_row=False):
    shape = (draw(st.integers(1, 3)), draw(st.integers(2, 6)))
    r = draw(floats_array(shape, -5.0, 5.0))
    spread = r.max(-1) - r.min(-1)
    r = np.where((spread < 1e-3)[:, None], r[:, :1], r)  # tiny spreads made exactly flat
    if flat_row:
        r[0] = draw(st.floats(-5.0, 5.0))
    ex = {"rewards": r, "a": draw(log_uniform(0.01, 100.0)),
          "b": draw(floats_array((shape[0], 1), -10.0, 10.0))}
    return ex


def _adv(student, rewards, eps):
    out = student.call("grpo_advantages", rewards, eps)
    adv = as_array(out, rewards.shape, "grpo_advantages(rewards, eps)")
    if not np.all(np.isfinite(adv)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(adv))[0])
        raise CheckFailed(f"the advantage at {idx} is {float(adv[idx])}",
                          hint="a group whose rewards are all equal has std 0: return 0 "
                               "there instead of 0 / 0")
    return adv


def _mean_zero(student, ex):
    adv = _adv(student, ex["rewards"], 1e-4)
    sums = adv.sum(-1)
    if np.any(np.abs(sums) > 1e-9 * ex["rewards"].shape[-1]):
        i = int(np.argmax(np.abs(sums)))
        raise CheckFailed(f"the advantages of group {i} sum to {float(sums[i]):.6g}, not 0")


def _shift(student, ex):
    base = _adv(student, ex["rewards"], 1e-4)
    shifted = _adv(student, ex["rewards"] + ex["b"], 1e-4)
    require_close(shifted, base, "the advantages of r + b(x)", rtol=1e-7, atol=1e-7)


def _scale(student, ex):
    base = _adv(student, ex["rewards"], 0.0)
    scaled = _adv(student, ex["a"] * ex["rewards"], 0.0)
    require_close(scaled, base, "the advantages of a r (eps = 0)", rtol=1e-7, atol=1e-9)


def _flat(student, ex):
    for eps in (1e-4, 0.0):
        adv = _adv(student, ex["rewards"], eps)
        if np.any(adv[0] != 0):
            raise CheckFailed(f"group 0 has equal rewards but advantages {adv[0]} (eps = {eps})")


def _unit_std(student, ex):
    adv = _adv(student, ex["rewards"], 0.0)
    live = ex["rewards"].max(-1) > ex["rewards"].min(-1)
    for i in np.flatnonzero(live):
        s = float(np.std(adv[i], ddof=1))
        if abs(s - 1) > 1e-9:
            raise CheckFailed(f"with eps = 0 the advantages of group {i} have sample std "
                              f"(ddof=1) {s:.9g}, not 1")


def _matches_library(student, ex):
    require_close(_adv(student, ex["rewards"], 1e-4), grpo_advantages(ex["rewards"], eps=1e-4),
                  "the advantages", rtol=1e-9, atol=1e-12)


EXERCISE = Exercise(
    number=9,
    slug="grpo_advantages",
    title="GRPO's group-normalised advantages (r - mean) / (std + eps)",
    functions=("grpo_advantages",),
    checks=(
        Check("mean zero in each group",
              "the advantages of each group (row) sum to 0",
              "subtract the group's own mean (axis=-1), not the batch's",
              _mean_zero, _groups()),
        Check("shift invariance",
              "adding b(x) to every reward of group x leaves its advantages unchanged",
              "the mean and std of a group are taken over that row only",
              _shift, _groups()),
        Check("scale invariance",
              "with eps = 0, multiplying the rewards by a > 0 leaves the advantages unchanged",
              "divide by the group's standard deviation",
              _scale, _groups()),
        Check("zero-spread group",
              "a group whose rewards are all equal gets advantages exactly 0 (never NaN), "
              "with eps = 1e-4 and with eps = 0",
              "r - mean is not exactly 0 in floating point: detect max == min and return 0",
              _flat, _groups(flat_row=True)),
        Check("unit sample std",
              "with eps = 0 each group's advantages have sample standard deviation 1 "
              "(ddof = 1)",
              "GRPO (DeepSeekMath, TRL) divides by the sample std, np.std(..., ddof=1)",
              _unit_std, _groups()),
        Check("matches the library",
              "the advantages agree with rlhf_toy.policy_gradient.grpo_advantages(rewards, "
              "eps=1e-4)",
              "eps is added to the std, outside the square root",
              _matches_library, _groups()),
    ),
)
