"""Rejection-sampling fine-tuning (RFT) on the bandit (chapter, *Modern variations*).

The chapter: "Sample many candidates per prompt, keep only those the reward model or a
verifier rates highly, then do supervised fine-tuning on the survivors. Cheap, off-policy,
and often competitive with PPO." On a tabular policy every step is exact or plainly
sampled:

1. per prompt, draw ``samples_per_prompt`` groups of ``n`` candidates from the current
   policy (``pi_ref`` in the first round);
2. keep the proxy-best candidate of each group (ties broken uniformly among the drawn
   maximal candidates), i.e. ``samples_per_prompt`` draws of best-of-n;
3. "supervised fine-tuning" of a tabular policy by maximum likelihood: the empirical
   frequency table of the survivors, optionally with add-``smoothing`` pseudo-counts on
   the support of ``pi_ref``.

As the number of survivors grows the fitted table converges to the exact
:func:`rlhf_toy.best_of_n.best_of_n_policy` (its error is multinomial sampling noise,
``O(1/sqrt(samples_per_prompt))``), and ``k`` rounds of best-of-n converge to
best-of-``n^k`` (best-of-m of best-of-n is best-of-nm). The experiments compare it with the
KL-regularised optimum at matched KL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from rlhf_toy._validate import (
    MAX_MAGNITUDE,
    MAX_SAMPLES,
    MAX_STEPS,
    as_rng,
    check_counts,
    check_distribution,
    check_finite,
    check_float,
    check_int,
    check_same_shape,
)
from rlhf_toy.bandit.env import BanditEnv, check_env, make_bandit
from rlhf_toy.best_of_n import (
    best_of_n_disjoint_estimator,
    best_of_n_estimator,
    best_of_n_policy,
    best_of_n_sweep,
    kl_matched_beta,
)
from rlhf_toy.kl import kl_divergence
from rlhf_toy.optimal import optimal_policy, reward_kl_frontier

__all__ = [
    "MatchedKL",
    "RFTResult",
    "best_of_n_vs_optimal",
    "curve_arrays",
    "estimator_experiment",
    "kl_bound_worlds",
    "matched_kl_comparison",
    "rejection_sampling_finetune",
    "rft_convergence",
    "round_arrays",
    "sample_responses",
]

#: Largest number of sampled candidates (int64) one chunk of a round holds.
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RFTResult:
    """What :func:`rejection_sampling_finetune` fitted, round by round.

    Attributes
    ----------
    policy : ndarray of shape (X, Y)
        The policy after the last round.
    policies : ndarray of shape (n_rounds, X, Y)
        The policy fitted in each round (round ``k`` samples from round ``k - 1``'s).
    counts : ndarray of shape (n_rounds, X, Y)
        How many survivors each response had in each round.
    n : int
        Candidates per group.
    samples_per_prompt : int
        Survivors per prompt and round.
    kl : ndarray of shape (n_rounds,)
        ``E_x KL(policy_k || pi_ref)``, exact (``+inf`` never: survivors lie in the support).
    proxy : ndarray of shape (n_rounds,)
        ``E_x E_{policy_k} r_hat``, exact.
    gold : ndarray of shape (n_rounds,) or None
        ``E_x E_{policy_k} r_star``, exact; ``None`` when no gold reward was given.
    survivor_proxy : ndarray of shape (n_rounds,)
        Mean proxy reward of the kept samples (the sample estimate a practitioner sees).
    """

    policy: np.ndarray
    policies: np.ndarray
    counts: np.ndarray
    n: int
    samples_per_prompt: int
    kl: np.ndarray
    proxy: np.ndarray
    gold: np.ndarray | None
    survivor_proxy: np.ndarray


def sample_responses(pi, size: int, rng) -> np.ndarray:
    """``size`` i.i.d. responses per prompt from a tabular policy, vectorised over prompts.

    Parameters
    ----------
    pi : array_like of shape (X, Y)
        Policy; rows sum to one, zeros allowed (never sampled).
    size : int
        Samples per prompt, ``>= 1``.
    rng : numpy Generator or int
        Source of randomness.

    Returns
    -------
    ndarray of int of shape (X, size)
        Response indices, i.i.d. ``pi(.|x)`` along each row.

    Notes
    -----
    Exact and loop-free: the per-row counts are one multinomial draw, the multiset is
    expanded with ``np.repeat`` and each row is shuffled by ``Generator.permuted``; a
    uniformly shuffled multinomial multiset is an i.i.d. sequence.
    """
    pi = check_distribution(pi, "pi")
    if pi.ndim != 2:
        raise ValueError(f"pi must have shape (X, Y), got {pi.shape}")
    size = check_int(size, "size", maximum=MAX_SAMPLES)
    rng = as_rng(rng)
    n_prompts, n_responses = pi.shape
    counts = rng.multinomial(size, pi / pi.sum(-1, keepdims=True))  # (X, Y)
    flat = np.repeat(np.tile(np.arange(n_responses), n_prompts), counts.ravel())
    return rng.permuted(flat.reshape(n_prompts, size), axis=1)


def _unpack(env):
    if isinstance(env, BanditEnv):
        return env.pi_ref, env.r_hat, env.r_star, env.prompt_probs
    try:
        pi_ref, r_hat = env
    except (TypeError, ValueError):
        raise TypeError(
            f"env must be a BanditEnv or a pair (pi_ref, r_hat), got {type(env).__name__}"
        ) from None
    pi_ref = check_distribution(pi_ref, "pi_ref")
    if pi_ref.ndim != 2:
        raise ValueError(f"pi_ref must have shape (X, Y), got {pi_ref.shape}")
    r_hat = check_finite(r_hat, "r_hat")
    check_same_shape(pi_ref, r_hat, "pi_ref", "r_hat")
    return pi_ref, r_hat, None, np.full(pi_ref.shape[0], 1.0 / pi_ref.shape[0])


def rejection_sampling_finetune(env, n: int, samples_per_prompt: int, rng, *,
                                n_rounds: int = 1, smoothing: float = 0.0,
                                verbose: bool = False) -> RFTResult:
    """Rejection-sampling fine-tuning of a tabular policy against the proxy reward.

    Parameters
    ----------
    env : BanditEnv or tuple (pi_ref, r_hat)
        The world; with a :class:`~rlhf_toy.bandit.env.BanditEnv` the gold reward is
        reported too.
    n : int
        Candidates per group (best-of-``n`` selection), ``>= 1``.
    samples_per_prompt : int
        Survivors kept per prompt and round, ``>= 1``; each is the proxy-best of ``n``
        fresh candidates, so ``n * samples_per_prompt`` candidates are drawn per prompt.
    rng : numpy Generator or int
        Source of randomness.
    n_rounds : int, default 1
        Iterated RFT: round ``k`` samples its candidates from the policy fitted in round
        ``k - 1``.
    smoothing : float, default 0
        Add-``smoothing`` pseudo-counts on every response in the support of ``pi_ref``
        (Laplace smoothing of the maximum-likelihood table; ``0`` is the plain MLE), in
        ``[0, 1e100]`` (the row's total of pseudo-counts stays finite).
    verbose : bool, default False
        Show a progress bar over rounds and sampling chunks.

    Returns
    -------
    RFTResult

    Raises
    ------
    ValueError
        On a bad ``n``, ``samples_per_prompt``, ``n_rounds`` or ``smoothing``, or bad tables.
    FloatingPointError
        If a fitted policy is not finite (naming the round).

    Notes
    -----
    Chapter, *Modern variations*, "Rejection sampling fine-tuning (RFT)". Maximum
    likelihood on survivors ``y_1..y_S`` of prompt ``x`` maximises
    ``sum_s log pi(y_s|x)``, whose tabular solution is the frequency table
    ``pi(y|x) = #{s: y_s = y} / S``. The survivors are i.i.d. draws of best-of-n of the
    sampling policy, so the counts are ``Multinomial(S, pi_bon)`` and the fit converges to
    :func:`~rlhf_toy.best_of_n.best_of_n_policy` at rate ``1/sqrt(S)``; after ``k``
    rounds (without smoothing, in the limit ``S -> inf``) to best-of-``n^k``. Zeros are
    sticky: a response no survivor hit is gone from every later round (smoothing keeps it).
    Ties in ``r_hat``: the first maximal candidate of each randomly ordered group is kept,
    which is uniform among the drawn maximal candidates.
    """
    pi_ref, r_hat, r_star, prompt_probs = _unpack(env)
    n = check_int(n, "n", maximum=MAX_SAMPLES)
    samples_per_prompt = check_int(samples_per_prompt, "samples_per_prompt",
                                   maximum=max(MAX_SAMPLES // pi_ref.shape[0], 1))
    n_rounds = check_int(n_rounds, "n_rounds", maximum=MAX_STEPS)
    smoothing = check_float(smoothing, "smoothing", low=0.0, high=MAX_MAGNITUDE)
    rng = as_rng(rng)

    n_prompts, n_responses = pi_ref.shape
    rows = np.arange(n_prompts)[:, None]
    support = pi_ref > 0
    groups_per_chunk = max(1, _CHUNK // (n_prompts * n))
    n_chunks = -(-samples_per_prompt // groups_per_chunk)
    policies = np.empty((n_rounds, n_prompts, n_responses))
    counts = np.zeros((n_rounds, n_prompts, n_responses), dtype=np.int64)
    survivor_proxy = np.empty(n_rounds)
    policy = pi_ref
    bar = tqdm(total=n_rounds * n_chunks, desc="rejection sampling", disable=not verbose)
    for k in range(n_rounds):
        proxy_sum = np.zeros(n_prompts)
        for c in range(n_chunks):
            groups = min(groups_per_chunk, samples_per_prompt - c * groups_per_chunk)
            cand = sample_responses(policy, groups * n, rng).reshape(n_prompts, groups, n)
            scores = r_hat[rows[..., None], cand]  # (X, groups, n)
            keep = np.take_along_axis(cand, scores.argmax(-1)[..., None], axis=-1)[..., 0]
            counts[k] += np.bincount((rows * n_responses + keep).ravel(),
                                     minlength=n_prompts * n_responses).reshape(
                                         n_prompts, n_responses)
            proxy_sum += r_hat[rows, keep].sum(-1)
            bar.update()
        pseudo = smoothing * support
        policy = (counts[k] + pseudo) / (samples_per_prompt + pseudo.sum(-1, keepdims=True))
        if not np.all(np.isfinite(policy)):
            raise FloatingPointError(f"rejection sampling round {k}: fitted policy not finite")
        policies[k] = policy
        survivor_proxy[k] = prompt_probs @ (proxy_sum / samples_per_prompt)
    bar.close()

    kl = kl_divergence(policies, np.broadcast_to(pi_ref, policies.shape)) @ prompt_probs
    proxy = (policies * r_hat).sum(-1) @ prompt_probs
    gold = None if r_star is None else (policies * r_star).sum(-1) @ prompt_probs
    return RFTResult(policy=policy, policies=policies, counts=counts, n=n,
                     samples_per_prompt=samples_per_prompt, kl=kl, proxy=proxy, gold=gold,
                     survivor_proxy=survivor_proxy)


# --------------------------------------------------------------------------------------
# experiments of notebook 04: best-of-n and RFT against the KL-regularised optimum
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchedKL:
    """Best-of-n and ``pi*`` at the same KL from ``pi_ref``, one entry per ``n``.

    Attributes
    ----------
    ns : ndarray of shape (K,)
    kl : ndarray of shape (K,)
        ``E_x KL(pi_bon || pi_ref)``, which ``pi*_beta`` is matched to.
    betas : ndarray of shape (K,)
        The matching ``beta`` of each ``n``.
    bon_gold, bon_proxy : ndarray of shape (K,)
        Expected gold and proxy reward of best-of-n.
    opt_gold, opt_proxy : ndarray of shape (K,)
        Expected gold and proxy reward of ``pi*_beta``.
    """

    ns: np.ndarray
    kl: np.ndarray
    betas: np.ndarray
    bon_gold: np.ndarray
    bon_proxy: np.ndarray
    opt_gold: np.ndarray
    opt_proxy: np.ndarray


def best_of_n_vs_optimal(env: BanditEnv, ns, betas):
    """Exact reward-KL curves of best-of-n (over ``ns``) and of ``pi*`` (over ``betas``).

    Parameters
    ----------
    env : BanditEnv
        Both select / optimise the proxy ``r_hat`` and are judged by the gold ``r_star``.
    ns : array_like of int of shape (K,)
    betas : array_like of shape (B,)

    Returns
    -------
    (BestOfNSweep, Frontier)
        ``sweep.extra["gold"]`` and ``frontier.extra["gold"]`` hold the gold rewards.
    """
    gold = {"gold": env.r_star}
    sweep = best_of_n_sweep(env.pi_ref, env.r_hat, ns, env.prompt_probs, eval_rewards=gold)
    frontier = reward_kl_frontier(env.pi_ref, env.r_hat, betas, env.prompt_probs,
                                  eval_rewards=gold)
    return sweep, frontier


def curve_arrays(sweep, frontier) -> dict[str, np.ndarray]:
    """The arrays of a best-of-n sweep and a ``pi*`` frontier, as the figures take them.

    Parameters
    ----------
    sweep : BestOfNSweep
    frontier : Frontier
        Both from :func:`best_of_n_vs_optimal`.

    Returns
    -------
    dict
        ``"bon_kl"``, ``"bon_gold"``, ``"bon_proxy"`` from ``sweep`` and ``"opt_kl"``,
        ``"opt_gold"``, ``"opt_proxy"`` from ``frontier`` (:func:`best_of_n_vs_optimal`).
    """
    return {"bon_kl": sweep.kl, "bon_gold": sweep.extra["gold"], "bon_proxy": sweep.reward,
            "opt_kl": frontier.kl, "opt_gold": frontier.extra["gold"],
            "opt_proxy": frontier.reward}


def round_arrays(result) -> dict:
    """KL, gold and proxy of each round of an :class:`RFTResult`, labelled ``k=.. (n=..)``.

    Parameters
    ----------
    result : RFTResult

    Returns
    -------
    dict
        ``"kl"``, ``"gold"``, ``"proxy"`` (one entry per round) and ``"labels"`` (list of str).
    """
    labels = [f"k={k + 1} (n={result.n ** (k + 1)})" for k in range(len(result.kl))]
    return {"kl": result.kl, "gold": result.gold, "proxy": result.proxy, "labels": labels}


def kl_bound_worlds() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reference policies and rewards that make the best-of-n KL bound tight, loose or flat.

    Returns
    -------
    dict of str to (pi_ref, reward)
        A uniform policy over 10,000 distinct rewards (tight), a softmax ``pi_ref`` over 64
        responses, a peaked one (temperature 0.25), and the 64 responses with rounded
        rewards (ties).
    """
    m = 10_000
    soft = make_bandit(50, 64, proxy="exact", rng=0)
    peaked = make_bandit(50, 64, proxy="exact", ref_temperature=0.25, rng=0)
    return {
        f"uniform, {m} distinct rewards": (
            np.full((1, m), 1.0 / m),
            np.random.default_rng(0).permutation(m).astype(float)[None]),
        "softmax pi_ref, 64 responses": (soft.pi_ref, soft.r_star),
        "peaked pi_ref (temperature 0.25)": (peaked.pi_ref, peaked.r_star),
        "64 responses, reward rounded (ties)": (soft.pi_ref, np.round(soft.r_star)),
    }


def matched_kl_comparison(env: BanditEnv, ns) -> MatchedKL:
    """For each ``n``: best-of-n and the ``pi*_beta`` with the same expected KL.

    ``beta`` comes from :func:`rlhf_toy.best_of_n.kl_matched_beta`. On the proxy ``pi*``
    always wins (it maximises ``E r_hat`` at its KL); the gold column is the question.
    ``n = 1`` (KL 0) is matched with ``pi_ref`` itself (``beta = inf``).

    Parameters
    ----------
    env : BanditEnv
    ns : array_like of int
        Best-of-n sizes, ``>= 1``.

    Returns
    -------
    MatchedKL
    """
    sweep = best_of_n_sweep(env.pi_ref, env.r_hat, ns, env.prompt_probs,
                            eval_rewards={"gold": env.r_star})
    betas, opt_gold, opt_proxy = (np.empty(len(sweep.ns)) for _ in range(3))
    for k, kl in enumerate(sweep.kl):
        if sweep.ns[k] == 1:
            betas[k], pi = np.inf, env.pi_ref
        else:
            betas[k] = kl_matched_beta(env.pi_ref, env.r_hat, kl, env.prompt_probs)
            pi = optimal_policy(env.pi_ref, env.r_hat, betas[k])
        opt_gold[k] = env.expected(pi, "gold")
        opt_proxy[k] = env.expected(pi, "proxy")
    return MatchedKL(ns=sweep.ns, kl=sweep.kl, betas=betas, bon_gold=sweep.extra["gold"],
                     bon_proxy=sweep.reward, opt_gold=opt_gold, opt_proxy=opt_proxy)


def rft_convergence(env, n: int, sample_sizes, rng, *, repeats: int = 1) -> np.ndarray:
    """Distance of the one-round RFT fit from the exact best-of-n policy, per sample size.

    Parameters
    ----------
    env : BanditEnv or tuple (pi_ref, r_hat)
    n : int
        Candidates per group.
    sample_sizes : array_like of int of shape (S,)
        Values of ``samples_per_prompt``.
    rng : numpy Generator or int
    repeats : int, default 1
        Independent fits averaged per size.

    Returns
    -------
    ndarray of shape (S,)
        Mean over prompts (``E_x``) and repeats of the total-variation distance
        ``TV = 1/2 sum_y |pi_RFT(y|x) - pi_bon(y|x)|``; it shrinks like
        ``1/sqrt(samples_per_prompt)``.
    """
    pi_ref, r_hat, _, prompt_probs = _unpack(env)
    repeats = check_int(repeats, "repeats", maximum=MAX_STEPS)
    rng = as_rng(rng)
    exact = best_of_n_policy(pi_ref, r_hat, n)
    sizes = check_counts(np.atleast_1d(sample_sizes), "sample_sizes",
                         maximum=max(MAX_SAMPLES // pi_ref.shape[0], 1)).tolist()
    out = np.zeros(len(sizes))
    for i, size in enumerate(sizes):
        for _ in range(repeats):
            fit = rejection_sampling_finetune((pi_ref, r_hat), n, size, rng).policy
            out[i] += 0.5 * np.abs(fit - exact).sum(-1) @ prompt_probs / repeats
    return out


def estimator_experiment(env: BanditEnv, ns, n_samples: int, repeats: int, rng):
    """Best-of-n gold estimated from ``n_samples`` reference samples, ``repeats`` times.

    Parameters
    ----------
    env : BanditEnv
        Best-of-n selects by ``r_hat`` and is judged by ``r_star``.
    ns : array_like of int of shape (K,)
        Values of ``n`` (each ``<= n_samples``).
    n_samples : int
        ``N``, samples per prompt in one run.
    repeats : int
        Independent runs ``R``.
    rng : numpy Generator or int

    Returns
    -------
    exact : ndarray of shape (K,)
        ``E_x`` of the exact best-of-n gold reward.
    unbiased : ndarray of shape (R, K)
        ``E_x`` of :func:`~rlhf_toy.best_of_n.best_of_n_estimator` per run.
    disjoint : ndarray of shape (R, K)
        ``E_x`` of :func:`~rlhf_toy.best_of_n.best_of_n_disjoint_estimator` per run.
    """
    env = check_env(env)
    n_samples = check_int(n_samples, "n_samples", maximum=max(MAX_SAMPLES // env.n_prompts, 1))
    repeats = check_int(repeats, "repeats",
                        maximum=max(MAX_SAMPLES // (env.n_prompts * n_samples), 1))
    rng = as_rng(rng)
    ns = np.atleast_1d(np.asarray(ns))
    exact = best_of_n_sweep(env.pi_ref, env.r_hat, ns, env.prompt_probs,
                            eval_rewards={"gold": env.r_star}).extra["gold"]
    # (X, R * N) draws, viewed as R runs of N samples per prompt
    draws = sample_responses(env.pi_ref, repeats * n_samples, rng)
    rows = np.arange(env.n_prompts)[:, None]
    proxy = env.r_hat[rows, draws].reshape(env.n_prompts, repeats, n_samples)
    gold = env.r_star[rows, draws].reshape(env.n_prompts, repeats, n_samples)
    unbiased = np.einsum("kxr,x->rk", best_of_n_estimator(proxy, gold, ns), env.prompt_probs)
    disjoint = np.stack([best_of_n_disjoint_estimator(proxy, gold, int(n)).T @ env.prompt_probs
                         for n in ns], axis=1)
    return exact, unbiased, disjoint
