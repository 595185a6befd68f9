"""Exercise 11: the gradient of PPO's clipped surrogate.

Chapter: *The RLHF Pipeline*, Stage 3 (PPO) and *Modern RL for LLMs* (GRPO uses the same
surrogate); Schulman et al. (2017).

Per token, with ``rho = exp(logp - logp_old)`` (``logp_old`` from the policy that sampled the
token, a constant), an advantage ``A`` (a constant) and a clip ``eps``, PPO minimises

    l(logp) = -min(rho A, clip(rho, 1 - eps, 1 + eps) A).

Derive ``dl / dlogp``. Show that it is exactly zero where the clipped branch is the minimum
(``A > 0`` and ``rho > 1 + eps``, or ``A < 0`` and ``rho < 1 - eps``), equals ``-rho A``
elsewhere, and equals the policy gradient ``-A`` at ``rho = 1``. Explain why the ``min``
makes the clip one-sided: it removes the incentive to move further in the direction the
advantage favours, never the incentive to come back.

What to implement
-----------------
``ppo_clip_gradient(logp, logp_old, advantages, clip_eps)``: arrays of shape ``(N,)`` (one
entry per token) and a float; returns ``dl / dlogp`` per token, shape ``(N,)``. No
averaging: the gradient of each token's own loss.

The grader checks the zeros, the ratio-one case, the unclipped tokens, finite differences of
the loss and agreement with the library.

Hints
-----
- ``d rho / d logp = rho``.
- Exactly at ``rho = 1 +- eps`` both branches agree; return the unclipped gradient there.
- Do not import ``rlhf_toy.policy_gradient``.

Check your work with ``rlhf-toy check 11`` (or ``rlhf-toy check 11 --file path/to/yours.py``).
"""

import numpy as np  # noqa: F401


def ppo_clip_gradient(logp, logp_old, advantages, clip_eps):
    """``d/dlogp [-min(rho A, clip(rho, 1 - eps, 1 + eps) A)]`` per token."""
    # YOUR CODE HERE
    raise NotImplementedError
