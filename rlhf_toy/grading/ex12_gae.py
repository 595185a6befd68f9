"""Grader of exercise 12: Generalised Advantage Estimation (chapter, Stage 3's PPO; Schulman
et al. 2016).

The student writes ``gae(rewards, values, gamma, lam) -> (advantages, returns)`` for rows of
complete trajectories (``V = 0`` after the last step); the reference is
:func:`rlhf_toy.policy_gradient.gae` with a mask of ones.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from rlhf_toy.grading._inputs import floats_array
from rlhf_toy.grading.core import Check, CheckFailed, Exercise, as_array, require_close
from rlhf_toy.policy_gradient import gae as reference

__all__ = ["EXERCISE"]


@st.composite
def _trajectories(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 6)))
    return {"rewards": draw(floats_array(shape, -3.0, 3.0)),
            "values": draw(floats_array(shape, -3.0, 3.0)),
            "gamma": draw(st.floats(0.5, 1.0)), "lam": draw(st.floats(0.0, 1.0))}


def _gae(student, ex, gamma=None, lam=None):
    gamma = ex["gamma"] if gamma is None else gamma
    lam = ex["lam"] if lam is None else lam
    out = student.call("gae", ex["rewards"], ex["values"], gamma, lam)
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise CheckFailed(f"gae returned {type(out).__name__}, expected (advantages, returns)",
                          hint="return advantages, returns")
    shape = ex["rewards"].shape
    adv = as_array(out[0], shape, "advantages")
    ret = as_array(out[1], shape, "returns")
    for a, what in ((adv, "advantages"), (ret, "returns")):
        if not np.all(np.isfinite(a)):
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
            raise CheckFailed(f"{what}{list(idx)} = {float(a[idx])}")
    return adv, ret


def _deltas(ex, gamma):
    v_next = np.concatenate([ex["values"][:, 1:], np.zeros((ex["values"].shape[0], 1))], 1)
    return ex["rewards"] + gamma * v_next - ex["values"]


def _double_sum(student, ex):
    adv, _ = _gae(student, ex)
    g, lam = ex["gamma"], ex["lam"]
    delta = _deltas(ex, g)
    T = delta.shape[1]
    expected = np.zeros_like(delta)
    for t in range(T):
        for k in range(t, T):
            expected[:, t] += (g * lam) ** (k - t) * delta[:, k]
    require_close(adv, expected, "A_t compared with sum_l (gamma lam)^l delta_{t+l}",
                  rtol=1e-9, atol=1e-11)


def _lam_one(student, ex):
    _, ret = _gae(student, ex, lam=1.0)
    g, r = ex["gamma"], ex["rewards"]
    T = r.shape[1]
    expected = np.zeros_like(r)
    for t in range(T):
        for k in range(t, T):
            expected[:, t] += g ** (k - t) * r[:, k]
    require_close(ret, expected, "the returns at lam = 1 compared with sum_l gamma^l r_{t+l}",
                  rtol=1e-9, atol=1e-11)


def _lam_zero(student, ex):
    adv, _ = _gae(student, ex, lam=0.0)
    require_close(adv, _deltas(ex, ex["gamma"]), "A_t at lam = 0 compared with the TD error "
                  "r_t + gamma V_{t+1} - V_t (V_T = 0)", rtol=1e-9, atol=1e-11)


def _returns(student, ex):
    adv, ret = _gae(student, ex)
    require_close(ret, adv + ex["values"], "returns compared with advantages + values",
                  rtol=1e-12, atol=1e-12)


def _matches_library(student, ex):
    adv, ret = _gae(student, ex)
    ref_adv, ref_ret = reference(ex["rewards"], ex["values"], np.ones(ex["rewards"].shape),
                                 gamma=ex["gamma"], lam=ex["lam"])
    require_close(adv, ref_adv, "advantages", rtol=1e-9, atol=1e-11)
    require_close(ret, ref_ret, "returns", rtol=1e-9, atol=1e-11)


EXERCISE = Exercise(
    number=12,
    slug="gae",
    title="GAE: advantages as a discounted sum of TD errors",
    functions=("gae",),
    checks=(
        Check("a discounted sum of TD errors",
              "A_t = sum_{l >= 0} (gamma lam)^l delta_{t+l}, delta_t = r_t + gamma V_{t+1} - "
              "V_t, with V = 0 after the last step",
              "run the recursion A_t = delta_t + gamma lam A_{t+1} from the end; the factor "
              "is gamma * lam",
              _double_sum, _trajectories()),
        Check("lam = 1 gives Monte Carlo returns",
              "at lam = 1 the returns are sum_l gamma^l r_{t+l}, whatever the values",
              "the values telescope away when lam = 1; returns = advantages + values",
              _lam_one, _trajectories()),
        Check("lam = 0 gives the TD error",
              "at lam = 0, A_t = r_t + gamma V_{t+1} - V_t, with V_T = 0 after the last step",
              "bootstrap from the NEXT step's value, and from 0 after the last step (the "
              "episode ends there)",
              _lam_zero, _trajectories()),
        Check("returns",
              "returns = advantages + values (the critic's regression target)",
              "add V_t back",
              _returns, _trajectories()),
        Check("matches the library",
              "advantages and returns agree with rlhf_toy.policy_gradient.gae (mask of ones)",
              "one trajectory per row; time runs along the last axis",
              _matches_library, _trajectories()),
    ),
)
