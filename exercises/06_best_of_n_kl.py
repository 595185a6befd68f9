"""Exercise 06: best-of-n sampling, exactly, and the log n - (n-1)/n bound on its KL.

Chapter: *Modern variations* (rejection sampling) and *Why Reward Models Are Fragile*
(Gao et al. 2023 measure overoptimisation with best-of-n).

Best-of-n draws ``n`` responses i.i.d. from ``pi_ref(.|x)`` and returns the one of highest
reward. Assume the rewards of a prompt's responses are distinct. With
``F(v) = P_{pi_ref}(r <= v)`` and ``F_<(v) = P_{pi_ref}(r < v)``:

1. Show that the chosen response is ``y`` with probability
   ``pi_bon(y) = F(r(y))^n - F_<(r(y))^n``.
2. Show that, in the continuum limit (many responses, each of tiny mass),
   ``KL(pi_bon || pi_ref) -> log n - (n - 1) / n``, and that on a finite table the KL is
   never larger.

What to implement
-----------------
- ``best_of_n_policy(pi_ref, reward, n)``: ``pi_bon`` along the last axis, shape ``(X, Y)``;
  rewards are distinct within each row; ``pi_ref`` may have zeros.
- ``best_of_n_kl(pi_ref, reward, n)``: ``KL(pi_bon || pi_ref)`` per row, shape ``(X,)``.
- ``kl_bound(n)``: ``log n - (n - 1) / n``, a float.

The grader checks that ``pi_bon`` is a distribution, equals ``pi_ref`` at ``n = 1`` and the
library elsewhere, the KL against the library, the bound's formula, the KL below the bound,
and the bound reached by 2000 equally likely responses.

Hints
-----
- Sort each row by reward (``np.argsort``), take cumulative sums of ``pi_ref`` in that
  order, and put the result back in the original order (``np.put_along_axis``, or index
  with the inverse permutation).
- For the bound: ``u = F(r(y))`` of the chosen response has density ``n u^(n-1)`` on
  ``[0, 1]`` and ``pi_bon / pi_ref`` tends to that density.
- Do not import ``rlhf_toy.best_of_n``.

Check your work with ``rlhf-toy check 6`` (or ``rlhf-toy check 6 --file path/to/yours.py``).
"""

import numpy as np  # noqa: F401


def best_of_n_policy(pi_ref, reward, n):
    """Distribution of the best of ``n`` draws from ``pi_ref``, shape ``(X, Y)``."""
    # YOUR CODE HERE
    raise NotImplementedError


def best_of_n_kl(pi_ref, reward, n):
    """``KL(pi_bon || pi_ref)`` per row, shape ``(X,)``."""
    # YOUR CODE HERE
    raise NotImplementedError


def kl_bound(n):
    """``log n - (n - 1) / n``."""
    # YOUR CODE HERE
    raise NotImplementedError
