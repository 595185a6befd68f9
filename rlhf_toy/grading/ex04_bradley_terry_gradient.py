"""Grader of exercise 04: the gradient of the Bradley-Terry NLL (chapter, Stage 2).

The student writes ``nll_gradient(reward, x, y_w, y_l)``, the gradient of
``-mean_i log sigma(r[x_i, y_w_i] - r[x_i, y_l_i])`` with respect to the reward table; the
reference is :func:`rlhf_toy.bradley_terry.bradley_terry_grad` (and finite differences of
:func:`rlhf_toy.bradley_terry.bradley_terry_nll`).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import expit

from rlhf_toy.bradley_terry import bradley_terry_grad, bradley_terry_nll
from rlhf_toy.grading._inputs import floats_array, table_shapes
from rlhf_toy.grading.core import Check, CheckFailed, Exercise, as_array, require_close

__all__ = ["EXERCISE"]


@st.composite
def _comparisons(draw, scale=5.0, max_pairs=6, repeat=False):
    shape = draw(table_shapes(3, 5))
    n = draw(st.integers(1, max_pairs))
    ex = {"reward": draw(floats_array(shape, -scale, scale))}
    for name, upper in (("x", shape[0]), ("y_w", shape[1]), ("y_l", shape[1])):
        ex[name] = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, upper - 1)))
    if repeat:  # the first comparison occurs k more times
        k = draw(st.integers(1, 3))
        for name in ("x", "y_w", "y_l"):
            ex[name] = np.concatenate([ex[name], np.repeat(ex[name][:1], k)])
    return ex


def _grad(student, ex):
    out = student.call("nll_gradient", ex["reward"], ex["x"], ex["y_w"], ex["y_l"])
    g = as_array(out, ex["reward"].shape, "nll_gradient(reward, x, y_w, y_l)")
    if not np.all(np.isfinite(g)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(g))[0])
        raise CheckFailed(f"the gradient has {float(g[idx])} at index {idx}",
                          hint="evaluate the sigmoid with scipy.special.expit")
    return g


def _library(ex):
    return bradley_terry_grad(ex["reward"], ex["x"], ex["y_w"], ex["y_l"])


def _rows_sum_to_zero(student, ex):
    g = _grad(student, ex)
    sums = g.sum(-1)
    if np.any(np.abs(sums) > 1e-12):
        i = int(np.argmax(np.abs(sums)))
        raise CheckFailed(f"row {i} of the gradient sums to {float(sums[i]):.6g}, not 0")


def _untouched_zero(student, ex):
    g = _grad(student, ex)
    used = np.zeros(ex["reward"].shape, dtype=bool)
    used[ex["x"], ex["y_w"]] = True
    used[ex["x"], ex["y_l"]] = True
    bad = ~used & (g != 0)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise CheckFailed(f"reward{list(idx)} is in no comparison but its gradient is "
                          f"{float(g[idx]):.6g}")


def _one_comparison(student, ex):
    n_responses = ex["reward"].shape[1]
    y_l = ex["y_l"][:1]
    if y_l[0] == ex["y_w"][0]:  # a pair with itself carries no information: pick another
        y_l = (y_l + 1) % n_responses
    ex = {**ex, "x": ex["x"][:1], "y_w": ex["y_w"][:1], "y_l": y_l}
    g = _grad(student, ex)
    x, w, lo = int(ex["x"][0]), int(ex["y_w"][0]), int(ex["y_l"][0])
    if not g[x, w] < 0 < g[x, lo]:
        raise CheckFailed(f"one comparison, {w} preferred to {lo} in prompt {x}: the gradient "
                          f"is {float(g[x, w]):.6g} at the winner and {float(g[x, lo]):.6g} at "
                          "the loser (descent must raise the winner's reward)")
    d = ex["reward"][x, w] - ex["reward"][x, lo]
    require_close(-g[x, w], expit(-d), "the winner's -gradient", rtol=1e-9, atol=1e-14)


def _finite_differences(student, ex):
    g = _grad(student, ex)
    r, eps = ex["reward"], 1e-6
    fd = np.empty_like(r)
    for idx in np.ndindex(r.shape):
        up, down = r.copy(), r.copy()
        up[idx] += eps
        down[idx] -= eps
        fd[idx] = (bradley_terry_nll(up, ex["x"], ex["y_w"], ex["y_l"])
                   - bradley_terry_nll(down, ex["x"], ex["y_w"], ex["y_l"])) / (2 * eps)
    require_close(g, fd, "the gradient (against central finite differences of the mean NLL)",
                  rtol=1e-5, atol=1e-8)


def _matches_library(student, ex):
    require_close(_grad(student, ex), _library(ex), "the gradient", rtol=1e-9, atol=1e-13)


EXERCISE = Exercise(
    number=4,
    slug="bradley_terry_gradient",
    title="the gradient of the Bradley-Terry negative log-likelihood",
    functions=("nll_gradient",),
    checks=(
        Check("rows sum to zero",
              "each row of the gradient sums to 0: adding c(x) to a prompt's rewards changes "
              "no preference probability",
              "each comparison adds +g to its loser and -g to its winner, in the same row",
              _rows_sum_to_zero, _comparisons()),
        Check("untouched entries are zero",
              "rewards that appear in no comparison get gradient 0",
              "accumulate into a table of zeros, only at the compared entries",
              _untouched_zero, _comparisons()),
        Check("one comparison",
              "for one comparison y_w > y_l: dL/dr(y_w) = -sigma(-(r_w - r_l)) < 0 and "
              "dL/dr(y_l) = +sigma(-(r_w - r_l))",
              "d/dd (-log sigma(d)) = -sigma(-d): the weight is large when the model ranks "
              "the pair wrongly",
              _one_comparison, _comparisons(max_pairs=1)),
        Check("derivative of the NLL",
              "the gradient equals central finite differences of "
              "-mean_i log sigma(r[x_i, y_w_i] - r[x_i, y_l_i])",
              "the loss is a mean over comparisons: divide by their number",
              _finite_differences, _comparisons()),
        Check("repeated comparisons add up",
              "a comparison that occurs k times contributes k times (duplicates included)",
              "g[x, y_w] -= w keeps only one of several writes to the same entry; "
              "use np.add.at or np.bincount to accumulate",
              _matches_library, _comparisons(repeat=True)),
        Check("large rewards",
              "for rewards of size 1e3 the gradient is finite and correct",
              "evaluate sigma(-d) with scipy.special.expit; exp(d) overflows for d > 709",
              _matches_library, _comparisons(scale=1e3)),
    ),
)
