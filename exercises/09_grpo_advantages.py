"""Exercise 09: GRPO's group-normalised advantages.

Chapter: *Modern RL for LLMs* (GRPO, DeepSeekMath, Shao et al. 2024; Dr. GRPO, Liu et al.
2025).

GRPO samples ``G`` responses per prompt and scores each; instead of a learned critic, a
response's advantage is its reward standardised within its group:

    A_i = (r_i - mean(r)) / (std(r) + eps).

Show that the advantages of a group sum to zero, that they are unchanged when every reward
of a group is shifted by the same ``b`` or (with ``eps = 0``) scaled by ``a > 0``, and explain
what a group whose responses all get the same reward contributes to the gradient.

What to implement
-----------------
``grpo_advantages(rewards, eps=1e-4)``: rewards of shape ``(n_prompts, G)``, one group per
row, ``G >= 2``; advantages of the same shape. Use the **sample** standard deviation
(``ddof=1``), as GRPO's reference code and TRL do. A group with zero spread must give
exactly 0, never NaN (also with ``eps = 0``).

The grader checks mean zero, shift and scale invariance, the zero-spread group, the unit
sample std at ``eps = 0``, and agreement with the library.

Hints
-----
- ``axis=-1, keepdims=True``.
- ``r - r.mean()`` of equal numbers is not always exactly 0 in floating point.
- Do not import ``rlhf_toy.policy_gradient``.

Check your work with ``rlhf-toy check 9`` (or ``rlhf-toy check 9 --file path/to/yours.py``).
"""

import numpy as np  # noqa: F401


def grpo_advantages(rewards, eps=1e-4):
    """``(r - mean) / (std + eps)`` per row (sample std), 0 for a zero-spread row."""
    # YOUR CODE HERE
    raise NotImplementedError
