"""Exercise 08: the RLHF objective as a KL to the optimum, J(pi) = beta (log Z - KL(pi || pi*)).

Chapter: *The RLHF Pipeline*, Stage 3, "KL-Regularized RLHF Objective"; and "RLHF uses
reverse KL, which is mode-seeking".

For one prompt, ``J(pi) = E_pi[r] - beta KL(pi || pi_ref)`` and
``pi* = pi_ref exp(r / beta) / Z`` with ``Z = sum_y pi_ref exp(r / beta)``. Prove that for
every policy ``pi``

    J(pi) = beta (log Z - KL(pi || pi*)),

and conclude: ``pi*`` is the maximiser, ``J(pi*) = beta log Z``, and maximising ``J`` over any
restricted family of policies (a Gaussian, a network) is the reverse-KL projection of
``pi*`` onto that family (so it inherits the mode-seeking of exercise 07).

What to implement (tables of shape ``(X, Y)``; each returns shape ``(X,)``, per prompt)
-----------------
- ``objective(pi, pi_ref, reward, beta)``: ``J(pi)``.
- ``log_partition(pi_ref, reward, beta)``: ``log Z``.
- ``kl_to_optimum(pi, pi_ref, reward, beta)``: ``KL(pi || pi*)``, computed from
  ``log pi* = log pi_ref + r / beta - log Z`` (not from ``objective``).

``pi`` is zero wherever ``pi_ref`` is zero; either may have zeros (``0 log 0 = 0``).

The grader checks each function against the library, the identity among your three
functions, the optimum, and ``log Z`` for ``beta`` down to 1e-3.

Hints
-----
- ``scipy.special.logsumexp``; ``log pi_ref = -inf`` where ``pi_ref = 0`` is fine there.
- Do not import ``rlhf_toy``.

Check your work with ``rlhf-toy check 8`` (or ``rlhf-toy check 8 --file path/to/yours.py``).
"""

import numpy as np  # noqa: F401
from scipy.special import logsumexp  # noqa: F401


def objective(pi, pi_ref, reward, beta):
    """``E_pi[r] - beta KL(pi || pi_ref)`` per prompt, shape ``(X,)``."""
    # YOUR CODE HERE
    raise NotImplementedError


def log_partition(pi_ref, reward, beta):
    """``log sum_y pi_ref exp(r / beta)`` per prompt, shape ``(X,)``."""
    # YOUR CODE HERE
    raise NotImplementedError


def kl_to_optimum(pi, pi_ref, reward, beta):
    """``KL(pi || pi*)`` per prompt, shape ``(X,)``."""
    # YOUR CODE HERE
    raise NotImplementedError
