"""DPO in the tabular world: convergence to ``pi*``, coverage failure, falling log-probs, losses.

Implements the chapter's *DPO as Implicit Reward Model* and its failure modes: the runs of
notebook 02, which its figures redraw. Each function trains exactly (sums over the table) and
returns the results; the notebook prints from them and the figure builders plot them.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from rlhf_toy._validate import (
    MAX_STEPS,
    check_float,
    check_int,
)
from rlhf_toy.bandit.env import BanditEnv, check_env
from rlhf_toy.bandit.train import TrainResult, all_pairs_preferences, train_dpo
from rlhf_toy.bradley_terry import sample_comparisons
from rlhf_toy.kl import kl_divergence
from rlhf_toy.optimal import optimal_policy
from rlhf_toy.preference_losses import cdpo_loss

__all__ = [
    "BETA_RANGE",
    "dpo_convergence",
    "dpo_on_sampled_pairs",
    "dpo_uncovered",
    "preference_loss_comparison",
    "uncovered_example",
]


#: ``beta`` range of the studies whose step size scales as ``1 / beta^2``.
BETA_RANGE = (1e-150, 1e150)


def _check_beta(beta) -> float:
    """``beta`` in :data:`BETA_RANGE`: the studies' step size ``~ 1 / beta^2`` stays finite."""
    return check_float(beta, "beta", low=BETA_RANGE[0], high=BETA_RANGE[1])


def dpo_convergence(env, beta: float, *, steps: int = 600, record_every: int = 5) -> dict:
    """DPO on Bradley-Terry preferences covering every pair, by gradient descent and by Adam.

    Parameters
    ----------
    env : BanditEnv
        Its gold ``r_star`` labels the pairs; ``pi_ref`` is the reference.
    beta : float
        KL coefficient in :data:`BETA_RANGE` (gradient descent's step is ``100 / beta^2``).
    steps, record_every : int
        ``record_every >= 1``: the curves need the recorded policies.

    Returns
    -------
    dict
        ``"steps"`` (n_records,); ``"kl"``: optimiser name to ``E_x KL(pi_t || pi*)`` of shape
        (n_records,); ``"final"``: optimiser name to the last policy (X, Y); ``"pi_star"``;
        ``"n_pairs"``: the number of weighted pairs.

    Notes
    -----
    Chapter, *DPO as Implicit Reward Model*: with every ordered pair weighted by its
    Bradley-Terry probability (:func:`rlhf_toy.bandit.train.all_pairs_preferences`), the
    DPO minimiser is ``pi* = pi_ref exp(r/beta) / Z``. Learning rates: ``100 / beta^2``
    (gradient descent), ``0.1`` (Adam).
    """
    env = check_env(env)
    beta = _check_beta(beta)
    record_every = check_int(record_every, "record_every", maximum=MAX_STEPS)
    pi_star = optimal_policy(env.pi_ref, env.r_star, beta)
    x, y_w, y_l, w = all_pairs_preferences(env.r_star, pi=env.pi_ref)
    out = {"kl": {}, "final": {}, "pi_star": pi_star, "n_pairs": x.size}
    for name, opt, lr in [("gradient descent", "gd", 100.0 / beta**2), ("Adam", "adam", 0.1)]:
        res = train_dpo(env.pi_ref, x, y_w, y_l, beta, weights=w, steps=steps, lr=lr,
                        optimizer=opt, record_every=record_every)
        probs = res.history["probs"]  # (n_records, X, Y)
        out["kl"][name] = kl_divergence(probs, np.broadcast_to(pi_star, probs.shape)).mean(-1)
        out["final"][name] = res.policy.probs
        out["steps"] = res.history["steps"]
    return out


def uncovered_example():
    """The four-response prompt of the coverage failure: ``(pi_ref, r_star, covered)``.

    Response 2 (the worst, reward -3) is never shown to the labelers.

    Returns
    -------
    pi_ref, r_star : ndarray of shape (1, 4)
    covered : ndarray of bool of shape (1, 4)
    """
    pi_ref = np.array([[0.05, 0.60, 0.30, 0.05]])
    r_star = np.array([[1.0, -1.0, -3.0, 0.0]])
    covered = np.array([[True, True, False, True]])
    return pi_ref, r_star, covered


def dpo_uncovered(beta: float = 1.0, *, steps: int = 100, lr: float = 2.0) -> dict:
    """DPO on :func:`uncovered_example`: all pairs of the covered responses, none of the rest.

    Parameters
    ----------
    beta : float, default 1.0
    steps : int, default 100
    lr : float, default 2.0

    Returns
    -------
    dict
        ``"pi_ref"``, ``"r_star"``, ``"covered"`` (1, Y); ``"pairs"``: ``(x, y_w, y_l,
        weights)``; ``"result"``: the :class:`~rlhf_toy.bandit.train.TrainResult` (recorded at
        every step, with the gold reward); ``"pi_star"``; ``"unseen_mass"``: the DPO policy's
        mass on uncovered responses at each recorded step.

    Notes
    -----
    Chapter, DPO's failure modes: pushing down a common rejected response frees probability
    that the softmax hands to the unseen responses, the worst one included.
    """
    pi_ref, r_star, covered = uncovered_example()
    pairs = all_pairs_preferences(r_star, covered=covered)
    x, y_w, y_l, w = pairs
    res = train_dpo(pi_ref, x, y_w, y_l, beta, weights=w, steps=steps, lr=lr, record_every=1,
                    eval_rewards={"gold": r_star})
    return {"pi_ref": pi_ref, "r_star": r_star, "covered": covered, "pairs": pairs,
            "result": res, "pi_star": optimal_policy(pi_ref, r_star, beta),
            "unseen_mass": res.history["probs"][:, 0, ~covered[0]].sum(-1)}


def dpo_on_sampled_pairs(env, n_pairs: int, beta: float, *, steps: int = 1000, rng=0):
    """DPO on ``n_pairs`` Bradley-Terry comparisons of responses sampled from ``pi_ref``.

    Parameters
    ----------
    env : BanditEnv
    n_pairs : int
        Number of comparisons.
    beta : float
        KL coefficient in :data:`BETA_RANGE` (the step size is ``4 / beta^2``).
    steps : int, default 1000
    rng : numpy.random.Generator or int, default 0

    Returns
    -------
    pairs : tuple of ndarray
        ``(x, y_w, y_l)``.
    result : TrainResult
        Recorded every 10 steps with the gold reward (``history["gold"]``), ``lr = 4 / beta^2``.
    gold_optimal : float
        ``E_x E_{pi*} r_star`` of the optimum at this ``beta``.
    """
    env = check_env(env)
    beta = _check_beta(beta)
    pairs = sample_comparisons(env.pi_ref, env.r_star, n_pairs, rng=rng)
    res = train_dpo(env.pi_ref, *pairs, beta, steps=steps, lr=4.0 / beta**2, record_every=10,
                    eval_rewards={"gold": env.r_star})
    gold_optimal = env.expected(optimal_policy(env.pi_ref, env.r_star, beta), "gold")
    return pairs, res, gold_optimal


def _losses(beta: float) -> dict:
    """The losses compared on the same data, with their learning rates at ``beta``."""
    beta = _check_beta(beta)
    return {"DPO": ("dpo", 4.0 / beta**2), "IPO": ("ipo", 1.0),
            "cDPO (eps = 0.2)": (partial(cdpo_loss, label_smoothing=0.2), 4.0 / beta**2),
            "hinge": ("hinge", 2.0 / beta**2)}


def preference_loss_comparison(env: BanditEnv, pairs, beta: float, *,
                               steps: int = 1000) -> dict[str, TrainResult]:
    """DPO, IPO, cDPO (label smoothing 0.2) and hinge trained on the same pairs.

    Parameters
    ----------
    env : BanditEnv
    pairs : tuple of ndarray
        ``(x, y_w, y_l)``.
    beta : float
    steps : int

    Returns
    -------
    dict of str to TrainResult
        Recorded every 10 steps, with the gold reward.

    Notes
    -----
    Chapter, *Modern variations* (IPO, cDPO, SLiC's hinge): the losses with a finite target
    margin stop drifting from ``pi_ref``; DPO does not.
    """
    env = check_env(env)
    return {name: train_dpo(env.pi_ref, *pairs, beta, steps=steps, lr=lr, loss=loss,
                            record_every=10, eval_rewards={"gold": env.r_star})
            for name, (loss, lr) in _losses(beta).items()}
