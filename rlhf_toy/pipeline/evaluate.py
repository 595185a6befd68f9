"""Exact evaluation of every policy of the pipeline (chapter, "KL-Regularized RLHF Objective"
and "Reward Hacking and Goodhart").

Responses are at most a few tokens over a few symbols, so every response ``y`` of each
evaluation prompt ``x`` can be listed with its exact probability ``pi(y | x)``
(:func:`rlhf_toy.gpt.enumerate_continuations`, a tree walk with the KV cache). Every
number is then a sum, never a sample mean; for a policy ``pi``, averaged over the
evaluation prompts:

- ``gold = E_pi r*`` and ``proxy = E_pi r_RM``;
- ``kl = KL(pi || pi_sft)``;
- ``kl_to_optimum = KL(pi || pi*)`` with ``pi* = pi_sft exp(r_RM / beta) / Z``, the optimum
  of the KL-regularised objective the RL methods maximise;
- ``length = E_pi[tokens before EOS]`` and the task's rates (accuracy, agreement, ...).

The reward-KL frontier of ``pi*_beta`` over a grid of ``beta``, in proxy and in gold, is
what every method's point is compared with: the gold curve's peak and fall as ``beta``
shrinks is overoptimisation, computed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhf_toy.kl import kl_divergence
from rlhf_toy.optimal import log_optimal_policy, reward_kl_frontier

from .policy import GPTPolicy, GPTRewardModel
from .reward_model import score

__all__ = [
    "ExactEval",
    "build_exact_eval",
    "demonstrator_cross_entropy",
    "evaluate_logp",
    "evaluate_policy",
    "optimum_metrics",
    "policy_logp",
]

#: Tolerance on ``sum_y pi(y | x) = 1`` of an enumerated policy.
SUM_ATOL = 1e-6


@dataclass
class ExactEval:
    """Everything a policy is evaluated against, on ``X`` prompts and ``N`` responses each."""

    task: object  # the Task
    prompts: np.ndarray  # (X, P) evaluation prompts
    responses: np.ndarray  # (N, T) every response, task.all_responses() order
    mask: np.ndarray  # (N, T)
    gold: np.ndarray  # (X, N) r*(x, y)
    proxy: np.ndarray  # (X, N) r_RM(x, y)
    length: np.ndarray  # (N,) tokens before EOS
    logp_sft: np.ndarray  # (X, N) log pi_sft(y | x)
    beta: float
    log_pi_star: np.ndarray  # (X, N) log pi*(y | x) at beta
    frontier: dict  # {"beta", "kl", "sqrt_kl", "proxy", "gold", "length", rates...} over betas

    def pairs(self):
        """Every (prompt, response) row: ``(prompts (X N, P), responses, mask (X N, T))``."""
        X, N = self.gold.shape
        return (
            np.repeat(self.prompts, N, axis=0),
            np.tile(self.responses, (X, 1)),
            np.tile(self.mask, (X, 1)),
        )


def policy_logp(policy: GPTPolicy, task, prompts) -> np.ndarray:
    """``log pi(y | x)`` of every response of ``task`` (its ``all_responses`` order), (X, N).

    Parameters
    ----------
    policy : GPTPolicy
    task : Task
    prompts : ndarray of int of shape (X, P)

    Returns
    -------
    ndarray of shape (X, N)

    Raises
    ------
    ValueError
        If the policy's enumeration is not exactly the task's response set.
    """
    cont = policy.enumerate(prompts)
    y, _ = task.all_responses()
    if cont.responses.shape == y.shape and np.array_equal(cont.responses, y):
        return cont.logp
    index = {tuple(r): i for i, r in enumerate(cont.responses)}
    try:
        order = np.array([index[tuple(r)] for r in y])
    except KeyError as e:
        raise ValueError(f"the policy never produces the task's response {e.args[0]}") from None
    if len(index) != len(y):
        raise ValueError(f"the policy enumerates {len(index)} responses, the task {len(y)}")
    return cont.logp[:, order]


def build_exact_eval(task, sft_policy: GPTPolicy, reward_model: GPTRewardModel, beta, betas):
    """Tables of the evaluation prompts: gold, proxy, ``pi_sft``, ``pi*`` and the frontier.

    Parameters
    ----------
    task : Task
    sft_policy : GPTPolicy
        The reference ``pi_sft``.
    reward_model : GPTRewardModel
        ``r_RM``, scored on every (prompt, response) pair.
    beta : float
        KL coefficient of ``pi*``.
    betas : array_like of shape (n_betas,)
        Grid of the frontier.

    Returns
    -------
    ExactEval
    """
    prompts = task.eval_prompts()
    y, m = task.all_responses()
    X, N = len(prompts), len(y)
    xp, yp, mp = np.repeat(prompts, N, axis=0), np.tile(y, (X, 1)), np.tile(m, (X, 1))
    gold = task.gold_rewards(xp, yp, mp).reshape(X, N)
    proxy = score(reward_model, xp, yp, mp).reshape(X, N)
    logp_sft = policy_logp(sft_policy, task, prompts)
    pi_sft = np.exp(logp_sft)
    f = reward_kl_frontier(pi_sft, proxy, betas, eval_rewards={"gold": gold})
    frontier = {
        "beta": f.betas.tolist(),
        "kl": f.kl.tolist(),
        "sqrt_kl": np.sqrt(np.maximum(f.kl, 0.0)).tolist(),
        "proxy": f.reward.tolist(),
        "gold": f.extra["gold"].tolist(),
        "length": [],
    }
    length = task.response_lengths(y, m)
    for b in f.betas:  # the task's rates along the frontier (agreement, accuracy, ...)
        pi = np.exp(log_optimal_policy(pi_sft, proxy, b))  # (X, N)
        frontier["length"].append(float((pi @ length).mean()))
        for name, value in task.rates(xp, yp, mp, weights=pi.ravel()).items():
            if name != "length":
                frontier.setdefault(name, []).append(value)
    return ExactEval(
        task=task,
        prompts=prompts,
        responses=y,
        mask=m,
        gold=gold,
        proxy=proxy,
        length=length,
        logp_sft=logp_sft,
        beta=float(beta),
        log_pi_star=log_optimal_policy(pi_sft, proxy, beta),
        frontier=frontier,
    )


def evaluate_logp(ev: ExactEval, logp) -> dict:
    """Exact metrics of the policy whose response log-probs are ``logp`` (X, N).

    Parameters
    ----------
    ev : ExactEval
    logp : array_like of shape (X, N)

    Returns
    -------
    dict
        ``gold``, ``proxy``, ``kl``, ``kl_to_optimum``, ``length`` (means over the prompts)
        and the task's rates, all floats.

    Raises
    ------
    ValueError
        If ``logp`` has the wrong shape or a row's probabilities do not sum to one.
    """
    logp = np.asarray(logp, dtype=np.float64)
    if logp.shape != ev.gold.shape:
        raise ValueError(f"logp must have shape {ev.gold.shape}, got {logp.shape}")
    pi = np.exp(logp)
    sums = pi.sum(axis=1)
    if not np.allclose(sums, 1.0, rtol=0, atol=SUM_ATOL):
        bad = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(f"pi row {bad} sums to {sums[bad]:.9g}, not 1")
    pi /= sums[:, None]
    out = {
        "gold": float((pi * ev.gold).sum(axis=1).mean()),
        "proxy": float((pi * ev.proxy).sum(axis=1).mean()),
        "kl": float(kl_divergence(pi, _normalised(ev.logp_sft)).mean()),
        "kl_to_optimum": float(kl_divergence(pi, _normalised(ev.log_pi_star)).mean()),
        "length": float((pi @ ev.length).mean()),
    }
    xp, yp, mp = ev.pairs()
    out.update(ev.task.rates(xp, yp, mp, weights=pi.ravel()))
    return out


def _normalised(logp) -> np.ndarray:
    """``exp(logp)`` with rows rescaled to sum to one, as :func:`evaluate_logp` does to
    ``pi`` (so that ``KL(pi || pi)`` is exactly 0)."""
    p = np.exp(np.asarray(logp, dtype=np.float64))
    return p / p.sum(axis=1, keepdims=True)


def evaluate_policy(ev: ExactEval, policy: GPTPolicy) -> dict:
    """:func:`evaluate_logp` of a GPT policy, enumerated on the evaluation prompts.

    Parameters
    ----------
    ev : ExactEval
    policy : GPTPolicy

    Returns
    -------
    dict
        As :func:`evaluate_logp`.
    """
    return evaluate_logp(ev, policy_logp(policy, ev.task, ev.prompts))


def optimum_metrics(ev: ExactEval) -> dict:
    """``{"gold", "proxy", "kl"}`` of ``pi*`` at ``ev.beta`` (the ``optimum`` of metrics.json).

    Parameters
    ----------
    ev : ExactEval

    Returns
    -------
    dict of str to float
    """
    m = evaluate_logp(ev, ev.log_pi_star)
    return {"gold": m["gold"], "proxy": m["proxy"], "kl": m["kl"]}


def demonstrator_cross_entropy(task, policy: GPTPolicy, prompts) -> float:
    """Exact per-token cross-entropy of ``policy`` on the demonstrator's responses.

    ``sum_x E_demo[-log pi(y | x)] / sum_x E_demo[tokens]`` over the rows of ``prompts``:
    the SFT loss in expectation, never below the demonstrator's own level
    (:func:`rlhf_toy.pipeline.sft.demonstrator_loss`); the gap is
    ``sum_x KL(demo(.|x) || pi(.|x)) / sum_x E_demo[tokens]``.

    Parameters
    ----------
    task : Task
    policy : GPTPolicy
    prompts : ndarray of int of shape (X, P)

    Returns
    -------
    float
        Nats per token.
    """
    x = task.check_prompts(prompts)
    y, m = task.all_responses()
    X, N = len(x), len(y)
    p = task.demonstrator_probs(np.repeat(x, N, 0), np.tile(y, (X, 1)), np.tile(m, (X, 1)))
    p = p.reshape(X, N)
    logp = policy_logp(policy, task, x)
    return float(-(p * logp).sum() / (p @ m.sum(axis=1)).sum())
