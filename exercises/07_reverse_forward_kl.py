"""Exercise 07: reverse versus forward KL, mode-seeking versus mass-covering.

Chapter: "RLHF uses reverse KL, which is mode-seeking" (Common Confusions). Note: the
chapter's text swaps the labels "zero-forcing" / "zero-avoiding"; the exercise asks you to
find out which is which.

The RLHF penalty is ``KL(pi || pi_ref)``, with the policy on the left (reverse KL). Fit a
single Gaussian ``q`` to a target ``t`` with two well-separated modes, once by minimising
the reverse ``KL(q || t)`` and once the forward ``KL(t || q)``. Predict, then verify: which
fit sits on one mode, which straddles both? Explain from where each divergence is infinite
(or huge): ``p log(p / q)`` blows up where ``p > 0`` and ``q -> 0``.

What to implement
-----------------
- ``kl(p, q)``: exact ``KL(p || q) = sum_y p log(p / q)`` of two 1-D distributions, with
  ``0 log 0 = 0`` and ``+inf`` when some ``p(y) > 0 = q(y)``; a float.
- ``gaussian_divergence(target, grid, mean, std, divergence)``: with
  ``q(g_i) ∝ exp(-(g_i - mean)^2 / (2 std^2))`` normalised on the grid (a Gaussian restricted
  to the grid points), ``KL(q || target)`` for ``divergence="reverse"`` and
  ``KL(target || q)`` for ``"forward"``; a float.
- ``fit_gaussian(target, grid, divergence)``: the ``(mean, std)`` minimising that divergence
  (a grid search over means across the grid and stds from a fraction of the spacing to the
  grid's width is enough); a pair of floats.

The grader uses ``grid = np.linspace(-8, 8, 81)`` and targets that mix two discretised
Gaussians at ``-d`` and ``d`` (``d`` in [2.5, 4], widths in [0.5, 0.8]).

Hints
-----
- Compute ``log q`` with a log-sum-exp so narrow Gaussians do not underflow to 0.
- Do not import ``rlhf_toy.kl`` or ``rlhf_toy.bandit.experiments.modes``.

Check your work with ``rlhf-toy check 7`` (or ``rlhf-toy check 7 --file path/to/yours.py``).
"""

import numpy as np  # noqa: F401


def kl(p, q):
    """``KL(p || q)`` of two distributions, a float (``0 log 0 = 0``, ``+inf`` off q's support)."""
    # YOUR CODE HERE
    raise NotImplementedError


def gaussian_divergence(target, grid, mean, std, divergence):
    """``KL(q || target)`` ("reverse") or ``KL(target || q)`` ("forward"), a float."""
    # YOUR CODE HERE
    raise NotImplementedError


def fit_gaussian(target, grid, divergence):
    """``(mean, std)`` of the grid Gaussian minimising the divergence."""
    # YOUR CODE HERE
    raise NotImplementedError
