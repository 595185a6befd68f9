"""Figures of the pitfalls gallery (notebook 12).

Each builder runs a small seeded experiment and returns its Figure; importing this module
registers them in :data:`rlhf_toy.presentation.figures.registry.FIGURES` by ``@register``.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy._validate import as_rng
from rlhf_toy.bandit import make_bandit
from rlhf_toy.bandit.experiments.kl_study import sample_categorical
from rlhf_toy.kl import kl_divergence, kl_estimates
from rlhf_toy.optimal import optimal_policy
from rlhf_toy.policy_gradient import grpo_advantages, ppo_clip_loss
from rlhf_toy.presentation.figures.registry import register
from rlhf_toy.presentation.plots.pitfalls import plot_length_bias, plot_negative_kl

__all__ = ["length_bias_study", "negative_kl_study"]

SECTION = "Pitfalls gallery (notebook 12)"


def negative_kl_study(n_samples: int = 2000, batch_sizes=(8, 64), n_batches: int = 2000,
                      beta: float = 1.0, rng=0) -> dict:
    """Per-sample k1, k3 and batch means of k1 for ``pi = pi*_beta`` on a 16-response prompt.

    Parameters
    ----------
    n_samples : int
        Single samples drawn from ``pi``.
    batch_sizes : tuple of int
        Sizes of the batches whose k1 means are returned.
    n_batches : int
        Batches per size.
    beta : float
        KL coefficient of ``pi = pi_ref exp(r_star / beta) / Z``.
    rng : numpy Generator or int
        Seed of the draws.

    Returns
    -------
    dict
        ``"k1"``, ``"k3"`` (n_samples,), ``"exact_kl"`` (float) and ``"batch_means"``
        (dict of batch size to (n_batches,) means of k1).
    """
    env = make_bandit(1, 16, proxy="exact", rng=0)
    pi_ref = env.pi_ref[0]
    pi = optimal_policy(pi_ref, env.r_star[0], beta)
    rng = as_rng(rng)
    y = sample_categorical(pi, n_samples, rng=rng)
    est = kl_estimates(np.log(pi[y]), np.log(pi_ref[y]))
    batch_means = {}
    for size in batch_sizes:
        ys = sample_categorical(pi, size * n_batches, rng=rng).reshape(n_batches, size)
        batch_means[size] = kl_estimates(np.log(pi[ys]), np.log(pi_ref[ys]))["k1"].mean(axis=1)
    return {"k1": est["k1"], "k3": est["k3"], "exact_kl": float(kl_divergence(pi, pi_ref)),
            "batch_means": batch_means}


def length_bias_study(lengths=(2, 8, 2, 8), rewards=(1.0, 1.0, 0.0, 0.0)) -> dict:
    """The per-token push of one on-policy group under ``seq_mean`` and ``constant``.

    Parameters
    ----------
    lengths : tuple of int
        Number of tokens of each response of the group.
    rewards : tuple of float
        Their rewards.

    Returns
    -------
    dict
        ``"lengths"``, ``"rewards"`` (G,) and ``"push"``: aggregation name to
        ``-d loss / d logp`` of shape (G, max(lengths)), for Dr. GRPO's advantages
        (``scale="none"``) at ratio 1.
    """
    lengths = np.asarray(lengths, int)
    rewards = np.asarray(rewards, float)
    mask = (np.arange(lengths.max()) < lengths[:, None]).astype(float)
    adv = grpo_advantages(rewards[None], scale="none").reshape(-1)
    logp = np.where(mask > 0, -1.0, 0.0)
    push = {agg: -ppo_clip_loss(logp, logp, adv, mask, agg=agg)[1]
            for agg in ("seq_mean", "constant")}
    return {"lengths": lengths, "rewards": rewards, "push": push}


@register("pitfall_negative_kl",
          "Single-sample k1 estimates of KL(pi || pi_ref) are negative about a quarter of the "
          "time and even batch means can be; k3 is never negative, and both are unbiased.",
          SECTION)
def pitfall_negative_kl():
    s = negative_kl_study()
    return plot_negative_kl(s["k1"], s["k3"], s["exact_kl"], s["batch_means"])


@register("pitfall_length_bias",
          "GRPO's per-sequence mean gives a long response's tokens a smaller push than a short "
          "one's, so long wrong answers are penalised less per token; Dr. GRPO's constant "
          "normaliser pushes every token alike.",
          SECTION)
def pitfall_length_bias():
    s = length_bias_study()
    return plot_length_bias(s["lengths"], s["rewards"], s["push"])
