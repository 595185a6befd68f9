"""Exercise 03: Goodhart's law as overestimation of the true reward.

Chapter: exercises, problem 3 ("The Goodhart's Law phenomenon in RLHF can be formalized as
follows"), with *Why Reward Models Are Fragile*.

Let ``r_star`` be the true (gold) reward and ``r_hat = r_star + eps`` the proxy a reward
model learned. RLHF optimises the proxy: its policy is ``pi*_beta = pi_ref exp(r_hat / beta)
/ Z``. The policy's proxy reward then overstates its true reward by

    overestimation(beta) = mean_x E_{y ~ pi*_beta(.|x)} [r_hat(x, y) - r_star(x, y)].

Derive ``d overestimation / d(1/beta)`` (differentiate ``pi*`` in ``t = 1/beta``; the answer
is a covariance under ``pi*``). Then show that for a large response set on which, under
``pi_ref``, ``r_star`` and ``eps`` are independent Gaussians, the overestimation is
``Var(eps) / beta``: it grows as ``beta`` shrinks. (On a small table the tilt runs out of
responses at small ``beta``: the grader checks the exact formulas, not this limit.)

What to implement
-----------------
- ``overestimation(pi_ref, r_star, r_hat, beta)``: the number above, for tables of shape
  ``(X, Y)`` (prompts, uniform over rows, x responses).
- ``overestimation_slope(pi_ref, r_star, r_hat, beta)``: its derivative with respect to
  ``1 / beta``, averaged over prompts.

The grader checks the exact proxy (zero), a per-prompt shift of the proxy, the limit
``beta -> inf``, agreement with the library, ``beta`` down to 1e-4, the slope against finite
differences, and the slope's variance form when ``r_star = 0``.

Hints
-----
- Write your own ``pi*`` (exercise 01); do not import ``rlhf_toy``.
- ``d/dt log pi*(y) = r_hat(y) - E_{pi*}[r_hat]``.

Check your work with ``rlhf-toy check 3`` (or ``rlhf-toy check 3 --file path/to/yours.py``).
"""

import numpy as np  # noqa: F401


def overestimation(pi_ref, r_star, r_hat, beta):
    """``mean_x E_{pi*_beta(r_hat)}[r_hat - r_star]``, a float.

    Parameters
    ----------
    pi_ref : ndarray of shape (X, Y)
        Reference policy; rows sum to one, zeros allowed.
    r_star, r_hat : ndarray of shape (X, Y)
        True and proxy rewards.
    beta : float
        KL coefficient, > 0.

    Returns
    -------
    float
    """
    # YOUR CODE HERE
    raise NotImplementedError


def overestimation_slope(pi_ref, r_star, r_hat, beta):
    """``d overestimation / d(1 / beta)``, a float (same parameters)."""
    # YOUR CODE HERE
    raise NotImplementedError
