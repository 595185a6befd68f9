"""Exercise 01: the optimal policy of KL-regularised RLHF.

Chapter: *The RLHF Pipeline*, Stage 3, "KL-Regularized RLHF Objective" (the chapter's
first problem).

For one prompt ``x`` the RLHF objective is

    J(pi) = sum_y pi(y) r(y) - beta KL(pi || pi_ref),   KL(pi || pi_ref) = sum_y pi log(pi / pi_ref)

over distributions ``pi`` on the responses. Derive its maximiser (add a Lagrange multiplier
for ``sum_y pi(y) = 1`` and set the derivative to zero), then implement it.

What to implement
-----------------
``optimal_policy(pi_ref, reward, beta)``: ``pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x)``
along the last axis, for tables of shape ``(X, Y)`` (prompts x responses) or ``(..., Y)``.

The grader checks that
- each row sums to one;
- ``pi*`` is zero wherever ``pi_ref`` is zero (zeros are legal in ``pi_ref``);
- the first-order condition holds: ``log pi* - log pi_ref - r / beta`` is the same for every
  response of a row (on the support of ``pi_ref``);
- it agrees with the library on random tables;
- it stays finite and correct for rewards of size 1e3 and ``beta`` down to 1e-4.

Hints
-----
- ``Z(x)`` is a sum over responses: keep the prompt axis (``keepdims=True``).
- ``np.exp(1000.0)`` is ``inf``. The factor ``exp(c(x))`` of any per-prompt constant cancels
  between numerator and ``Z``: choose ``c`` so that nothing overflows.
- Only numpy (and scipy) here: do not import ``rlhf_toy.optimal``.

Check your work with ``rlhf-toy check 1`` (or ``rlhf-toy check 1 --file path/to/yours.py``).
"""

import numpy as np  # noqa: F401


def optimal_policy(pi_ref, reward, beta):
    """``pi* = pi_ref exp(reward / beta) / Z`` along the last axis.

    Parameters
    ----------
    pi_ref : ndarray of shape (..., Y)
        Reference policy; rows sum to one, zeros allowed.
    reward : ndarray of the same shape
        Finite rewards.
    beta : float
        KL coefficient, > 0.

    Returns
    -------
    ndarray of the same shape
    """
    # YOUR CODE HERE
    raise NotImplementedError
