"""Reward-model ensembles against overoptimisation (Coste et al., 2023).

Implements the chapter's *Modern variations*, "Reward model ensembling. Train several reward
models and use their disagreement to detect out-of-distribution inputs or as a conservative
aggregate", and the remark of Stage 3's *Why It Matters* that practical systems combine the
KL penalty with "reward model ensembling (Coste et al., 2023)" and "conservative or
pessimistic reward estimation".

In the bandit world a reward model is a Bradley-Terry table fitted on comparisons of
responses drawn from ``pi_ref`` (:mod:`rlhf_toy.bradley_terry`). An ensemble is ``k`` such
tables fitted on resampled comparisons; :func:`aggregate` turns it into one conservative
proxy, :func:`disagreement` into an out-of-distribution signal, and
:func:`ensemble_sweep` runs the whole experiment: Goodhart curves of a single reward model
against the mean, worst-case and uncertainty-weighted ensembles.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from tqdm import tqdm

from rlhf_toy._validate import (
    MAX_MAGNITUDE,
    MAX_SAMPLES,
    as_rng,
    check_bounded,
    check_comparisons,
    check_distribution,
    check_finite,
    check_float,
    check_int,
    check_ndim,
    check_nonempty,
    check_nonnegative,
    check_prompt_probs,
    check_same_shape,
)
from rlhf_toy.bandit.env import BanditEnv, check_env, make_bandit
from rlhf_toy.bandit.experiments.goodhart import GoodhartCurve, beta_sweep
from rlhf_toy.bradley_terry import (
    comparison_counts,
    fit_bradley_terry,
    fit_bradley_terry_with_prior,
    sample_comparisons,
)

#: Largest ensemble :func:`fit_ensemble` fits (each member is one Bradley-Terry fit).
MAX_MEMBERS = 1000

#: Largest ``prior_scale``: the members' prior means (a few ``prior_scale`` at most) stay
#: within the ``+-1e100`` that :func:`rlhf_toy.bradley_terry.fit_bradley_terry_with_prior`
#: accepts.
MAX_PRIOR_SCALE = 1e90

#: Smallest ``l2`` (the prior's precision) of a randomised-prior member: below it the
#: fit's preconditioner ``sqrt(l2 / N)`` underflows to 0.
MIN_PRIOR_L2 = 1e-300

__all__ = [
    "AGGREGATIONS",
    "aggregate",
    "disagreement",
    "ensemble_study",
    "ensemble_sweep",
    "final_gold_over_worlds",
    "fit_ensemble",
]

#: The aggregation rules :func:`aggregate` knows.
AGGREGATIONS = ("mean", "min", "uwo")


def fit_ensemble(pi_ref, r_star, k, n_comparisons, rng, *, l2=0.1, bootstrap=True,
                 prior_scale=0.0, prompt_probs=None, comparisons=None) -> np.ndarray:
    """Fit ``k`` Bradley-Terry reward models on resampled comparisons.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        The policy whose responses the labelers compare (the reward model's training
        distribution).
    r_star : array_like of shape (X, Y)
        The gold reward the simulated labelers follow (Bradley-Terry labels).
    k : int
        Number of members, in ``[1, MAX_MEMBERS]`` (1000).
    n_comparisons : int
        Size of each member's training set, in ``[1, MAX_SAMPLES]`` (``10**7``).
    rng : numpy Generator or int
        Randomness (sampling, resampling, labels and random priors).
    l2 : float, default 0.1
        Penalty of each fit (a ``N(0, 1/l2)`` prior per entry; see
        :func:`rlhf_toy.bradley_terry.fit_bradley_terry`), ``>= 0``; at least
        ``1e-300`` (:data:`MIN_PRIOR_L2`) when ``prior_scale > 0``.
    bootstrap : bool, default True
        ``True``: draw *one* comparison set of ``n_comparisons`` pairs (or use
        ``comparisons``) and fit each member on a bootstrap resample of it (as many pairs,
        drawn with replacement), as one does with a fixed, expensive preference data set.
        ``False``: each member gets its own independent set of ``n_comparisons`` fresh pairs
        (``k`` times the labelling budget).
    prior_scale : float, default 0.0
        In ``[0, 1e90]`` (:data:`MAX_PRIOR_SCALE`). ``0``: each member is
        :func:`rlhf_toy.bradley_terry.fit_bradley_terry` (prior mean 0). ``> 0``: member
        ``i`` draws its own prior mean ``mu_i ~ N(0, prior_scale^2)`` per entry and is the
        MAP under ``N(mu_i, 1/l2)``
        (:func:`rlhf_toy.bradley_terry.fit_bradley_terry_with_prior`; a "randomised prior",
        Osband et al. 2018: the tabular stand-in for members' different random
        initialisations).
        ``1/sqrt(l2)`` makes each member a randomise-then-optimise sample of the
        Bradley-Terry posterior.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution of the comparisons; uniform if omitted.
    comparisons : tuple of arrays (x, y_w, y_l), optional
        An existing comparison set to bootstrap (``bootstrap=True`` only); then
        ``n_comparisons`` is ignored in favour of its length.

    Returns
    -------
    ndarray of shape (k, X, Y)
        The members, each row shifted to mean zero *under* ``pi_ref``.

    Raises
    ------
    ValueError
        On invalid sizes, tables or ``prior_scale``, ``comparisons`` whose indices are out
        of range of the table or of unequal lengths, or ``comparisons`` with
        ``bootstrap=False``.

    Notes
    -----
    Chapter, *Modern variations* (Coste et al. 2023). In a convex tabular world different
    seeds give the same fit, so diversity comes from the data (bootstrap) or the priors.
    Each member is shifted so that ``E_{pi_ref}[r | x] = 0`` (a Bradley-Terry reward is
    defined up to a per-prompt shift). Bootstrap alone leaves a never-compared response at
    the row mean in every member; only random priors make members disagree there.
    """
    pi_ref = check_distribution(pi_ref, "pi_ref", ndim=2)
    r_star = check_finite(r_star, "r_star")
    check_same_shape(pi_ref, r_star, "pi_ref", "r_star")
    k = check_int(k, "k", maximum=MAX_MEMBERS)
    rng = as_rng(rng)
    l2 = check_nonnegative(l2, "l2")
    prior_scale = check_float(prior_scale, "prior_scale", low=0.0, high=MAX_PRIOR_SCALE)
    if prior_scale > 0 and not l2 >= MIN_PRIOR_L2:
        raise ValueError(f"prior_scale > 0 needs l2 >= {MIN_PRIOR_L2:g} (the prior's "
                         f"precision), got l2={l2!r}")
    n_prompts, n_responses = pi_ref.shape
    prompt_probs = check_prompt_probs(prompt_probs, n_prompts)
    if comparisons is not None:
        if not isinstance(comparisons, (tuple, list)) or len(comparisons) != 3:
            raise ValueError("comparisons must be a tuple (x, y_w, y_l) of index arrays")
        comparisons = check_comparisons(*comparisons, n_prompts, n_responses, table="pi_ref")
    members = np.empty((k, n_prompts, n_responses))

    def fit(x, y_w, y_l):
        if prior_scale == 0:
            return fit_bradley_terry(x, y_w, y_l, n_prompts, n_responses, l2=l2)
        mu = prior_scale * rng.standard_normal((n_prompts, n_responses))
        return fit_bradley_terry_with_prior(x, y_w, y_l, n_prompts, n_responses, mu, l2)

    if not bootstrap:
        if comparisons is not None:
            raise ValueError("comparisons can only be given with bootstrap=True")
        n_comparisons = check_int(n_comparisons, "n_comparisons", maximum=MAX_SAMPLES)
        for i in range(k):  # k independent fits; each fit is itself vectorised
            members[i] = fit(*sample_comparisons(pi_ref, r_star, n_comparisons, rng,
                                                 prompt_probs))
        return _centre_on(members, pi_ref)
    if comparisons is None:
        n_comparisons = check_int(n_comparisons, "n_comparisons", maximum=MAX_SAMPLES)
        comparisons = sample_comparisons(pi_ref, r_star, n_comparisons, rng, prompt_probs)
    x, y_w, y_l = comparisons
    n = x.size
    for i in range(k):
        idx = rng.integers(n, size=n)  # one bootstrap resample
        members[i] = fit(x[idx], y_w[idx], y_l[idx])
    return _centre_on(members, pi_ref)


def _centre_on(members: np.ndarray, pi_ref: np.ndarray) -> np.ndarray:
    """Shift each member's rows so that their mean under ``pi_ref`` is zero."""
    return members - (members * pi_ref).sum(-1, keepdims=True)


def _check_ensemble(ensemble) -> np.ndarray:
    """A ``(k, X, Y)`` stack with at least one member, prompt and response, entries within
    ``+-1e100`` (their variance across members stays finite)."""
    ensemble = check_ndim(check_bounded(ensemble, "ensemble"), "ensemble", 3, "(k, X, Y)")
    return check_nonempty(ensemble, "ensemble")


def aggregate(ensemble, method="mean", lam=1.0) -> np.ndarray:
    """One proxy table from an ensemble: mean, worst case, or uncertainty-weighted.

    Parameters
    ----------
    ensemble : array_like of shape (k, X, Y)
        The members' reward tables, entries within ``+-1e100``.
    method : {"mean", "min", "uwo"}
        ``"mean"``: ``mean_i r_i``. ``"min"``: worst-case optimisation, ``min_i r_i``.
        ``"uwo"``: uncertainty-weighted optimisation, ``mean_i r_i - lam Var_i r_i``.
    lam : float, default 1.0
        Weight of the variance penalty of ``"uwo"``, in ``[0, 1e100]``.

    Returns
    -------
    ndarray of shape (X, Y)

    Notes
    -----
    Coste et al. (2023), "Reward Model Ensembles Help Mitigate Overoptimization": the mean
    averages out the members' independent errors; the minimum and the variance penalty are
    *conservative*: where members disagree (little data, out of distribution) the
    aggregate is pulled down, so the policy has less to gain by going there. The variance
    is the population variance across members (``ddof=0``), as in the paper's
    ``R = mean - lam * Var``.
    """
    ensemble = _check_ensemble(ensemble)
    if method not in AGGREGATIONS:
        raise ValueError(f"method must be one of {AGGREGATIONS}, got {method!r}")
    lam = check_float(lam, "lam", low=0.0, high=MAX_MAGNITUDE)
    if method == "mean":
        return ensemble.mean(0)
    if method == "min":
        return ensemble.min(0)
    return ensemble.mean(0) - lam * ensemble.var(0)


def disagreement(ensemble) -> np.ndarray:
    """Standard deviation across members per ``(x, y)``: an out-of-distribution signal.

    Parameters
    ----------
    ensemble : array_like of shape (k, X, Y)
        Entries within ``+-1e100``.

    Returns
    -------
    ndarray of shape (X, Y)
        ``std_i r_i(x, y)`` (``ddof=0``). Large where the members were trained on few
        comparisons of ``y``, i.e. where ``pi_ref`` puts little mass.
    """
    return _check_ensemble(ensemble).std(0)


def ensemble_sweep(pi_ref, r_star, betas, *, k=5, n_comparisons=3000, rng=0, l2=0.1, lam=1.0,
                   prior_scale=0.0, prompt_probs=None) -> dict:
    """Goodhart curves of one reward model and of three ensemble aggregates, same data.

    One comparison set is drawn from ``pi_ref`` and labelled by ``r_star``; the *single*
    proxy is the Bradley-Terry fit on all of it, the ensemble ``k`` fits on bootstrap
    resamples of it (:func:`fit_ensemble`). Each proxy is then optimised exactly
    (:func:`rlhf_toy.bandit.experiments.goodhart.beta_sweep`) and scored by the gold reward.

    Parameters
    ----------
    pi_ref, r_star : array_like of shape (X, Y)
    betas : array_like of shape (n_betas,)
    k, n_comparisons, rng, l2, prior_scale, prompt_probs
        As in :func:`fit_ensemble`.
    lam : float
        Variance weight of ``"uwo"``.

    Returns
    -------
    dict
        ``"curves"``: ``{"single", "mean", "min", "uwo"}`` to :class:`GoodhartCurve`;
        ``"ensemble"`` (k, X, Y); ``"single"`` (X, Y); ``"counts"`` (X, Y) from
        :func:`rlhf_toy.bradley_terry.comparison_counts`; ``"comparisons"``: ``(x, y_w, y_l)``.
    """
    pi_ref = check_distribution(pi_ref, "pi_ref", ndim=2)
    r_star = check_finite(r_star, "r_star")
    check_same_shape(pi_ref, r_star, "pi_ref", "r_star")
    rng = as_rng(rng)
    n_prompts, n_responses = pi_ref.shape
    w = check_prompt_probs(prompt_probs, n_prompts)
    n_comparisons = check_int(n_comparisons, "n_comparisons", maximum=MAX_SAMPLES)
    comparisons = sample_comparisons(pi_ref, r_star, n_comparisons, rng, w)
    single = fit_bradley_terry(*comparisons, n_prompts, n_responses, l2=l2)
    ensemble = fit_ensemble(pi_ref, r_star, k, n_comparisons, rng, l2=l2,
                            prior_scale=prior_scale, comparisons=comparisons)
    base = BanditEnv(pi_ref=pi_ref.copy(), r_star=r_star.copy(), r_hat=single, prompt_probs=w,
                     proxy="learned")
    curves: dict[str, GoodhartCurve] = {"single": beta_sweep(base, betas)}
    for method in AGGREGATIONS:
        env = replace(base, r_hat=aggregate(ensemble, method, lam), proxy=f"ensemble-{method}")
        curves[method] = beta_sweep(env, betas)
    return {"curves": curves, "ensemble": ensemble, "single": single,
            "counts": comparison_counts(*comparisons, n_prompts, n_responses),
            "comparisons": comparisons}


def final_gold_over_worlds(seeds, betas, *, n_prompts=8, n_responses=64, ref_temperature=0.5,
                           verbose=False, **sweep_kw) -> dict[str, np.ndarray]:
    """:func:`ensemble_sweep` over random worlds: gold gain at the hardest optimisation.

    Parameters
    ----------
    seeds : iterable of int
        One world per seed: ``make_bandit(n_prompts, n_responses, proxy="exact",
        ref_temperature=ref_temperature, rng=seed)`` supplies ``pi_ref`` and ``r_star``,
        and the seed is also the ``rng`` of the comparisons and the ensemble.
    betas : array_like
        The beta grid; its smallest value is the "hardest optimisation".
    n_prompts, n_responses, ref_temperature
        The worlds (see :func:`rlhf_toy.bandit.env.make_bandit`).
    verbose : bool, default False
        Progress bar over worlds.
    **sweep_kw
        ``k``, ``n_comparisons``, ``l2``, ``lam``, ``prior_scale`` of :func:`ensemble_sweep`.

    Returns
    -------
    dict of str to ndarray of shape (n_seeds,)
        For ``"single"``, ``"mean"``, ``"min"``, ``"uwo"``: ``gold - gold_ref`` of
        ``pi*`` at the smallest beta, per world; and ``"peak_" + name``: the largest gold gain
        along the curve.
    """
    out: dict[str, list] = {}
    seeds = list(seeds)
    for seed in tqdm(seeds, desc="ensemble worlds", disable=not verbose, leave=False):
        seed = check_int(seed, "seeds", minimum=0)  # a seed, never a float coerced by int()
        env = make_bandit(n_prompts, n_responses, proxy="exact",
                          ref_temperature=ref_temperature, rng=seed)
        res = ensemble_sweep(env.pi_ref, env.r_star, betas, rng=seed, **sweep_kw)
        for name, c in res["curves"].items():
            out.setdefault(name, []).append(c.gold[c.most_optimised] - c.gold_ref)
            out.setdefault(f"peak_{name}", []).append(c.peak_gold - c.gold_ref)
    return {name: np.array(v) for name, v in out.items()}


def ensemble_study(env, betas, *, k: int = 10, n_comparisons: int = 30000, l2: float = 0.03,
                   lam: float = 1.0, rng: int = 0) -> dict:
    """The ensembles experiment of the chapter: randomised-prior members against bootstrap.

    :func:`ensemble_sweep` with randomised priors of scale ``1/sqrt(l2)`` (seed ``rng``),
    plus a bootstrap-only ensemble on the same comparisons (seed ``rng + 1``).

    Parameters
    ----------
    env : BanditEnv
    betas : array_like of shape (n_betas,)
    k : int, default 10
        Ensemble size.
    n_comparisons : int, default 30000
    l2 : float, default 0.03
    lam : float, default 1.0
        Variance weight of ``"uwo"``.
    rng : int, default 0

    Returns
    -------
    dict
        :func:`ensemble_sweep`'s entries plus ``"bootstrap"`` (k, X, Y).
    """
    env = check_env(env)
    out = ensemble_sweep(env.pi_ref, env.r_star, betas, k=k, n_comparisons=n_comparisons,
                         rng=rng, l2=l2, lam=lam, prior_scale=1 / np.sqrt(l2))
    out["bootstrap"] = fit_ensemble(env.pi_ref, env.r_star, k, n_comparisons, rng=rng + 1,
                                    l2=l2, comparisons=out["comparisons"])
    return out
