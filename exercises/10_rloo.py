"""Exercise 10: RLOO, REINFORCE with a leave-one-out baseline.

Chapter: *Modern RL for LLMs* (RLOO, Ahmadian et al. 2024, after Kool et al. 2019).

With ``G`` sampled responses per prompt and their rewards ``r_1 .. r_G``, RLOO uses as the
baseline of response ``i`` the mean reward of the **other** ``G - 1`` responses:

    A_i = r_i - (1 / (G - 1)) sum_{j != i} r_j.

Show the identity ``A_i = G / (G - 1) (r_i - mean(r))``, that the advantages of a group sum
to zero, and why leaving ``r_i`` out of its own baseline keeps the policy-gradient estimate
``A_i grad log pi(y_i)`` unbiased, while the plain mean baseline (which contains ``r_i``) is
biased by the factor ``(G - 1) / G``.

What to implement
-----------------
``rloo_advantages(rewards)``: rewards of shape ``(n_prompts, G)``, ``G >= 2``; advantages of
the same shape.

The grader checks the sum, the identity, how the advantages move when one reward moves,
and agreement with the library.

Hints
-----
- One sum per row serves every baseline: ``(S - r_i) / (G - 1)``.
- Do not import ``rlhf_toy.policy_gradient``.

Check your work with ``rlhf-toy check 10`` (or ``rlhf-toy check 10 --file path/to/yours.py``).
"""

import numpy as np  # noqa: F401


def rloo_advantages(rewards):
    """``r_i - mean_{j != i} r_j`` per row."""
    # YOUR CODE HERE
    raise NotImplementedError
