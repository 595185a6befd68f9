"""Exercise 12: Generalised Advantage Estimation, a discounted sum of TD errors.

Chapter: *The RLHF Pipeline*, Stage 3 (PPO-RLHF uses GAE advantages); Schulman et al.
(2016).

For one trajectory of ``T`` steps (a response of ``T`` tokens) with per-step rewards
``r_t`` and critic values ``V_t``, and ``V = 0`` after the last step (the episode ends), the
TD errors are

    delta_t = r_t + gamma V_{t+1} - V_t,

and GAE's advantage is ``A_t = sum_{l >= 0} (gamma lam)^l delta_{t+l}``. Show that it obeys
the recursion ``A_t = delta_t + gamma lam A_{t+1}`` (``A_T = 0``), that ``lam = 0`` gives the
one-step TD error and that ``lam = 1`` gives ``A_t + V_t = sum_l gamma^l r_{t+l}`` (the
values telescope away: Monte Carlo returns).

What to implement
-----------------
``gae(rewards, values, gamma, lam)`` for arrays of shape ``(B, T)``, one complete trajectory
per row; returns ``(advantages, returns)``, both ``(B, T)``, with ``returns = advantages +
values``.

The grader checks the double sum, ``lam = 1`` and ``lam = 0``, the returns, and agreement
with the library.

Hints
-----
- Loop over ``t`` from ``T - 1`` down to ``0``, vectorised over rows.
- The value after the last step is 0, not ``V_{T-1}`` and not ``V_0``.
- Do not import ``rlhf_toy.policy_gradient``.

Check your work with ``rlhf-toy check 12`` (or ``rlhf-toy check 12 --file path/to/yours.py``).
"""

import numpy as np  # noqa: F401


def gae(rewards, values, gamma, lam):
    """``(advantages, returns)`` of GAE for complete trajectories, one per row."""
    # YOUR CODE HERE
    raise NotImplementedError
