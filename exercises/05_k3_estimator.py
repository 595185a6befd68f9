"""Exercise 05: estimating KL(pi || pi_ref) from samples, k1 and k3.

Chapter: "RLHF uses reverse KL, which is mode-seeking" and Stage 3's KL penalty; Schulman,
*Approximating KL Divergence* (2020); GRPO adds ``beta * k3`` to its loss.

When responses are sampled ``y ~ pi`` and the response space is too large to sum over, RLHF
code estimates ``KL(pi || pi_ref) = E_pi[log pi(y) - log pi_ref(y)]`` per sample. With
``r = pi_ref(y) / pi(y)``:

    k1 = -log r,        k3 = (r - 1) - log r.

Show that both are unbiased (``E_pi[k1] = E_pi[k3] = KL(pi || pi_ref)``), that ``k3 >= 0`` for
every sample while ``k1`` can be negative, and explain why ``k3`` has lower variance when
``pi`` is close to ``pi_ref``.

What to implement
-----------------
``k1(logp, logp_ref)`` and ``k3(logp, logp_ref)``: per-sample estimates, arrays of the
inputs' shape; ``logp = log pi(y)`` and ``logp_ref = log pi_ref(y)`` for samples from ``pi``.

The grader checks non-negativity and the zero of ``k3``, the exact unbiasedness of both
(every response weighted by ``pi``), agreement with the library, and ``k3``'s accuracy when
``r`` is within 1e-6 of 1.

Hints
-----
- ``E_pi[r] = sum_y pi(y) pi_ref(y) / pi(y) = 1`` when ``pi_ref`` is a distribution.
- ``x - 1 >= log x``.
- ``np.expm1``.
- Do not import ``rlhf_toy.kl``.

Check your work with ``rlhf-toy check 5`` (or ``rlhf-toy check 5 --file path/to/yours.py``).
"""

import numpy as np  # noqa: F401


def k1(logp, logp_ref):
    """Per-sample ``-log r``, ``r = pi_ref(y) / pi(y)``; arrays of the inputs' shape."""
    # YOUR CODE HERE
    raise NotImplementedError


def k3(logp, logp_ref):
    """Per-sample ``(r - 1) - log r``, ``r = pi_ref(y) / pi(y)``."""
    # YOUR CODE HERE
    raise NotImplementedError
