"""Exercise 04: the gradient of the Bradley-Terry negative log-likelihood.

Chapter: *The RLHF Pipeline*, Stage 2, "Bradley-Terry Model" and "Bradley-Terry Maximum
Likelihood".

A reward model on a tabular world is a table ``reward[X, Y]``; a comparison is a triple
``(x, y_w, y_l)`` of integer indices (prompt, preferred response, dispreferred response).
Bradley-Terry says ``P(y_w > y_l | x) = sigma(r(x, y_w) - r(x, y_l))``, and the reward model
minimises the mean negative log-likelihood of ``N`` comparisons

    L(r) = -(1/N) sum_i log sigma(r[x_i, y_w_i] - r[x_i, y_l_i]).

Derive ``dL / dr(x, y)`` and explain why every row of the gradient sums to zero.

What to implement
-----------------
``nll_gradient(reward, x, y_w, y_l)``: the gradient of ``L`` with respect to the table,
shape ``(X, Y)``. ``x, y_w, y_l`` are int arrays of shape ``(N,)``. The same comparison may
occur several times, and ``y_w == y_l`` is allowed (such a pair carries no information).

The grader checks that rows sum to zero, untouched entries get zero, the gradient of one
comparison has the right sign and size, it equals finite differences of ``L``, repeated
comparisons add up, and rewards of size 1e3 stay finite.

Hints
-----
- ``d/dd (-log sigma(d)) = -sigma(-d)``; ``scipy.special.expit`` is a stable sigma.
- ``g[x, y_w] += v`` with repeated indices writes once: see ``np.add.at``.
- Do not import ``rlhf_toy.bradley_terry``.

Check your work with ``rlhf-toy check 4`` (or ``rlhf-toy check 4 --file path/to/yours.py``).
"""

import numpy as np  # noqa: F401
from scipy.special import expit  # noqa: F401


def nll_gradient(reward, x, y_w, y_l):
    """``dL/dr`` of the mean Bradley-Terry NLL, shape ``reward.shape``.

    Parameters
    ----------
    reward : ndarray of shape (X, Y)
    x, y_w, y_l : ndarray of int, shape (N,)

    Returns
    -------
    ndarray of shape (X, Y)
    """
    # YOUR CODE HERE
    raise NotImplementedError
