"""Best-of-n against the reward model as an inference-time policy, exactly (chapter, "Modern
variations": rejection sampling / best-of-n; Gao et al. 2023).

Draw ``n`` responses of ``pi_sft`` and answer with the one the reward model scores highest.
No training: the policy is the distribution of the winner, which for enumerable responses is
exact (:func:`rlhf_toy.best_of_n.best_of_n_policy` on the enumerated ``pi_sft(.|x)`` and
``r_RM(x, .)`` of each evaluation prompt; ties, i.e. equal scores, broken uniformly). Its
KL from ``pi_sft`` is at most ``log n - (n - 1) / n``.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy._validate import check_int
from rlhf_toy.best_of_n import best_of_n_kl, best_of_n_kl_bound, best_of_n_policy

from .rl_common import MethodResult, exact_eval, method_options

__all__ = ["DEFAULTS", "train"]

#: Options of ``config.method_options["best_of_n"]``.
DEFAULTS = {"n": None}  # candidates (None: config.best_of_n)


def train(task, config, sft_model, reward_model, comparisons, rng, verbose=False, exact=None):
    """The exact best-of-n policy of ``pi_sft`` under the reward model on the eval prompts.

    Parameters
    ----------
    task, config, sft_model, reward_model, comparisons, rng, verbose, exact
        As in :data:`rlhf_toy.pipeline.methods.METHODS` (``comparisons``, ``rng`` and
        ``verbose`` unused: nothing is sampled). ``n`` is ``config.best_of_n`` unless
        ``config.method_options["best_of_n"]["n"]`` is set.

    Returns
    -------
    MethodResult
        ``logp`` (X, N): ``log pi_bon(y | x)`` over the exact evaluation's prompts and
        responses; ``extra`` holds ``n``, ``kl_exact`` (mean ``KL(pi_bon || pi_sft)``) and
        ``kl_bound`` (``log n - (n - 1) / n``).

    Notes
    -----
    ``pi_bon(y|x) = pi_sft(y|x) / q_v (F_<=(v)^n - F_<(v)^n)``, ``v = r_RM(x, y)``
    (:func:`rlhf_toy.best_of_n.best_of_n_policy`).
    """
    opts = method_options(config, "best_of_n", DEFAULTS)
    n = check_int(config.best_of_n if opts["n"] is None else opts["n"], "n")
    ev = exact_eval(task, config, sft_model, reward_model, exact)
    pi_sft = np.exp(ev.logp_sft)
    pi_sft /= pi_sft.sum(axis=1, keepdims=True)  # exactly one, for the table checks
    pi = best_of_n_policy(pi_sft, ev.proxy, n)  # (X, N)
    with np.errstate(divide="ignore"):
        logp = np.log(pi)
    return MethodResult(
        logp=logp,
        extra={
            "n": n,
            "kl_exact": float(np.mean(best_of_n_kl(pi_sft, ev.proxy, n))),
            "kl_bound": float(best_of_n_kl_bound(n)),
        },
    )
