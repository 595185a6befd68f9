"""Exercise 02: the gradient of the DPO loss.

Chapter: *DPO: Direct Preference Optimization*, "DPO as Implicit Reward Model" (the
chapter's second problem, "Derive the DPO gradient").

For a preference pair ``(y_w, y_l)`` (chosen, rejected) DPO minimises

    L = -log sigma(h_w - h_l),   h = beta (log pi(y) - log pi_ref(y))

where ``h`` is the implicit reward and ``sigma`` the logistic function. Derive
``dL / d log pi(y_w)`` and ``dL / d log pi(y_l)``, and read off what the gradient does:
which log-prob it raises, which it lowers, and how strongly it weighs a pair the implicit
reward already ranks correctly versus one it ranks wrongly.

What to implement
-----------------
``dpo_gradient(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)`` returning
``(grad_chosen, grad_rejected)``: the per-pair loss's gradients with respect to
``policy_chosen = log pi(y_w)`` and ``policy_rejected = log pi(y_l)``. All four inputs are
arrays of log-probabilities of the same shape (one entry per pair); the outputs have that
shape too.

The grader checks that the two gradients sum to zero, have the right signs, carry the right
weight, equal finite differences of the loss, agree with the library, and stay finite for
margins of 1e4.

Hints
-----
- ``d/dz log sigma(z) = sigma(-z)`` and ``1 - sigma(z) = sigma(-z)``.
- ``np.exp(1000.0)`` is ``inf``: evaluate the sigmoid with ``scipy.special.expit``.
- Do not import ``rlhf_toy.preference_losses``.

Check your work with ``rlhf-toy check 2`` (or ``rlhf-toy check 2 --file path/to/yours.py``).
"""

import numpy as np  # noqa: F401
from scipy.special import expit  # noqa: F401


def dpo_gradient(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    """Gradients of ``-log sigma(h_w - h_l)`` with respect to the policy log-probs.

    Parameters
    ----------
    policy_chosen, policy_rejected : ndarray of shape (N,)
        ``log pi(y_w)`` and ``log pi(y_l)``.
    ref_chosen, ref_rejected : ndarray of shape (N,)
        ``log pi_ref(y_w)`` and ``log pi_ref(y_l)``.
    beta : float
        KL coefficient, > 0.

    Returns
    -------
    grad_chosen, grad_rejected : ndarray of shape (N,)
    """
    # YOUR CODE HERE
    raise NotImplementedError
