"""Goodhart curves: gold and proxy reward as optimisation pressure grows.

Implements the chapter's *Why Reward Models Are Fragile* (overoptimisation: "the gold reward
first increases, then decreases", Gao et al. 2023; distributional shift), the *Failure
Mode* of Stage 3 ("the reward model score increases, but actual human preference
decreases"), the *Common Confusion* "More RLHF is not always better", and exercise 3 (the
KL-optimal policy of a noisy proxy overestimates the true reward).

Every curve is exact (sums over the bandit's tables) and is drawn against Gao et al.'s
distance ``d = sqrt(KL(pi || pi_ref))`` (KL averaged over prompts):

- :func:`beta_sweep`: the KL-optimal policies ``pi*_beta`` of the proxy, ``beta`` from large
  to small;
- :func:`best_of_n_sweep`: best-of-``n`` by the proxy, ``n`` from 1 up;
- :func:`trajectory_sweep`: the iterates of exact gradient ascent on the proxy objective.

:func:`fit_gao` fits Gao et al.'s functional forms; :func:`overestimation`,
:func:`expected_overestimation` and :func:`proxy_error_under` measure how and where the
proxy is wrong.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from tqdm import tqdm

from rlhf_toy import best_of_n as _bon
from rlhf_toy._validate import (
    as_rng,
    check_distribution,
    check_finite,
    check_int,
    check_positive,
    check_same_shape,
)
from rlhf_toy.bandit.env import BanditEnv, make_bandit
from rlhf_toy.bandit.train import gradient_ascent
from rlhf_toy.bradley_terry import fit_bradley_terry, sample_comparisons
from rlhf_toy.optimal import reward_kl_frontier

__all__ = [
    "GaoFit",
    "GoodhartCurve",
    "aligned_proxy",
    "best_of_n_sweep",
    "beta_sweep",
    "comparison_counts",
    "distribution_shift",
    "expected_overestimation",
    "fit_gao",
    "gao_curve",
    "learned_bandit",
    "mean_curve",
    "overestimation",
    "overestimation_monte_carlo",
    "proxy_error_under",
    "seed_sweeps",
    "trajectory_sweep",
]

#: The kinds of optimisation a :class:`GoodhartCurve` can trace.
KINDS = ("kl_optimal", "best_of_n", "trajectory")

#: Largest number of noise patterns times table entries :func:`expected_overestimation`
#: enumerates (the enumeration is exact, so it must stay small).
_MAX_ENUMERATION = 1 << 22


@dataclass(frozen=True)
class GoodhartCurve:
    """Gold and proxy reward of a family of policies, against ``d = sqrt(KL)``.

    Attributes
    ----------
    kl : ndarray of shape (k,)
        ``E_x KL(pi(.|x) || pi_ref(.|x))`` of each policy.
    d : ndarray of shape (k,)
        ``sqrt(kl)``: Gao et al.'s distance from the reference.
    proxy : ndarray of shape (k,)
        ``E_x E_pi r_hat``, the reward being optimised.
    gold : ndarray of shape (k,)
        ``E_x E_pi r_star``, the reward we actually want.
    parameter : ndarray of shape (k,)
        What indexes the family: ``beta`` (``kind="kl_optimal"``), ``n``
        (``"best_of_n"``) or the step (``"trajectory"``), in the order given.
    kind : str
        One of :data:`KINDS`.
    gold_ref, proxy_ref : float
        Gold and proxy under ``pi_ref`` itself (``d = 0``).

    Notes
    -----
    Proxies learned by Bradley-Terry are identified only up to a per-prompt shift, so
    compare *changes* (``proxy - proxy_ref``, ``gold - gold_ref``), never the levels of
    ``proxy`` and ``gold`` with each other.
    """

    kl: np.ndarray
    d: np.ndarray
    proxy: np.ndarray
    gold: np.ndarray
    parameter: np.ndarray
    kind: str
    gold_ref: float
    proxy_ref: float

    def centred(self) -> dict[str, np.ndarray]:
        """``{"d": d, "gold": gold - gold_ref, "proxy": proxy - proxy_ref}``: gains over
        ``pi_ref``, the shift-invariant view the plots of :mod:`rlhf_toy.plots` take."""
        return {"d": self.d, "gold": self.gold - self.gold_ref,
                "proxy": self.proxy - self.proxy_ref}

    @property
    def most_optimised(self) -> int:
        """Index of the hardest optimisation: smallest ``beta``, largest ``n``, last step."""
        if self.kind == "kl_optimal":
            return int(np.argmin(self.parameter))
        return int(np.argmax(self.parameter))

    @property
    def peak_index(self) -> int:
        """Index of the largest gold reward."""
        return int(np.argmax(self.gold))

    @property
    def peak_d(self) -> float:
        """``d`` at the largest gold reward."""
        return float(self.d[self.peak_index])

    @property
    def peak_gold(self) -> float:
        """The largest gold reward along the curve."""
        return float(self.gold[self.peak_index])

    @property
    def final_drop(self) -> float:
        """``peak_gold - gold`` at the hardest optimisation (>= 0; 0 if gold never falls)."""
        return float(self.peak_gold - self.gold[self.most_optimised])


def _check_env(env) -> BanditEnv:
    if not isinstance(env, BanditEnv):
        raise TypeError(f"env must be a BanditEnv, got {type(env).__name__}")
    return env


def _check_betas(betas) -> np.ndarray:
    betas = np.atleast_1d(np.asarray(betas, dtype=np.float64))
    if betas.ndim != 1 or betas.size == 0 or not np.all(np.isfinite(betas)) or np.any(
        betas <= 0
    ):
        raise ValueError(f"betas must be a non-empty 1-D array of finite values > 0, got {betas}")
    return betas


def _reference_values(env: BanditEnv) -> tuple[float, float]:
    return env.expected(env.pi_ref, env.r_star), env.expected(env.pi_ref, env.r_hat)


def _curve(kl, proxy, gold, parameter, kind, env) -> GoodhartCurve:
    kl = np.maximum(np.asarray(kl, dtype=np.float64), 0.0)
    gold_ref, proxy_ref = _reference_values(env)
    return GoodhartCurve(kl=kl, d=np.sqrt(kl), proxy=np.asarray(proxy, dtype=np.float64),
                         gold=np.asarray(gold, dtype=np.float64),
                         parameter=np.asarray(parameter), kind=kind, gold_ref=gold_ref,
                         proxy_ref=proxy_ref)


# --------------------------------------------------------------------------------------
# sweeps
# --------------------------------------------------------------------------------------


def beta_sweep(env, betas) -> GoodhartCurve:
    """Gold and proxy reward of the KL-optimal policies ``pi*_beta`` of the proxy.

    Parameters
    ----------
    env : BanditEnv
        The world: ``pi_ref``, gold ``r_star``, proxy ``r_hat``, prompt distribution.
    betas : array_like of shape (k,)
        KL coefficients, each ``> 0``; smaller is harder optimisation.

    Returns
    -------
    GoodhartCurve
        ``kind="kl_optimal"``, ``parameter = betas`` (in the order given).

    Raises
    ------
    TypeError
        If ``env`` is not a :class:`BanditEnv`.
    ValueError
        If a beta is not finite and positive.

    Notes
    -----
    Chapter, Stage 3 *Failure Mode* and *Why Reward Models Are Fragile*. With
    ``pi*_beta = pi_ref exp(r_hat / beta) / Z`` (:mod:`rlhf_toy.optimal`), the proxy
    ``E_{pi*} r_hat`` is non-decreasing as ``beta`` falls (its derivative in ``1/beta`` is
    ``Var_{pi*}(r_hat) >= 0``); the gold ``E_{pi*} r_star`` need not be. Computed by one
    vectorised call of :func:`rlhf_toy.optimal.reward_kl_frontier` with
    ``eval_rewards={"gold": r_star}``.
    """
    env = _check_env(env)
    betas = _check_betas(betas)
    f = reward_kl_frontier(env.pi_ref, env.r_hat, betas, env.prompt_probs,
                           eval_rewards={"gold": env.r_star})
    return _curve(f.kl, f.reward, f.extra["gold"], betas, "kl_optimal", env)


def best_of_n_sweep(env, ns) -> GoodhartCurve:
    """Gold and proxy reward of best-of-``n`` sampling by the proxy, exactly.

    Parameters
    ----------
    env : BanditEnv
        The world.
    ns : array_like of int of shape (k,)
        Numbers of candidates, each ``>= 1``; larger is harder optimisation.

    Returns
    -------
    GoodhartCurve
        ``kind="best_of_n"``, ``parameter = ns``.

    Notes
    -----
    Chapter, *Why Reward Models Are Fragile*: Gao et al. (2023) measure overoptimisation
    with best-of-n. The exact distribution of the chosen response and its KL come from
    :func:`rlhf_toy.best_of_n.best_of_n_sweep`, vectorised over the grid of ``n``. The KL
    of best-of-n never exceeds ``log n - (n-1)/n``, so ``d`` grows only like
    ``sqrt(log n)``.
    """
    env = _check_env(env)
    sweep = _bon.best_of_n_sweep(env.pi_ref, env.r_hat, ns, env.prompt_probs,
                                 eval_rewards={"gold": env.r_star})
    return _curve(sweep.kl, sweep.reward, sweep.extra["gold"], sweep.ns, "best_of_n", env)


def trajectory_sweep(env, beta, steps, lr, record_every=1, *, verbose=False) -> GoodhartCurve:
    """Gold and proxy reward along exact gradient ascent on the proxy objective.

    Parameters
    ----------
    env : BanditEnv
        The world.
    beta : float
        KL coefficient of the objective ``E_x [E_pi r_hat - beta KL(pi || pi_ref)]``.
    steps : int
        Number of gradient steps, ``>= 1``.
    lr : float
        Step size (see :func:`rlhf_toy.bandit.train.gradient_ascent`).
    record_every : int, default 1
        Keep steps ``0, k, 2k, ...`` and the last one.
    verbose : bool, default False
        Progress bar.

    Returns
    -------
    GoodhartCurve
        ``kind="trajectory"``, ``parameter`` = the steps kept.

    Raises
    ------
    FloatingPointError
        From the training loop, naming the step, if the objective becomes non-finite.

    Notes
    -----
    Chapter, *Common Confusions*, "More RLHF is not always better": training longer is
    another way of optimising harder. The iterates start at ``pi_ref`` (``d = 0``) and
    converge to ``pi*_beta``; with a small ``beta`` the path passes the gold peak on its way,
    which is why early stopping against a held-out gold reward works.
    """
    env = _check_env(env)
    steps = check_int(steps, "steps", minimum=1)
    record_every = check_int(record_every, "record_every", minimum=1)
    res = gradient_ascent(env.pi_ref, env.r_hat, beta, steps=steps, lr=lr,
                          prompt_probs=env.prompt_probs, record_every=0,
                          eval_rewards={"gold": env.r_star}, verbose=verbose)
    h = res.history
    keep = np.unique(np.r_[np.arange(0, steps + 1, record_every), steps])
    idx = np.searchsorted(h["step"], keep)
    return _curve(h["kl"][idx], h["reward"][idx], h["gold"][idx], h["step"][idx],
                  "trajectory", env)


def seed_sweeps(make_env, seeds, betas, *, verbose=False) -> list[GoodhartCurve]:
    """:func:`beta_sweep` of ``make_env(seed)`` for each seed: one curve per random world.

    Parameters
    ----------
    make_env : callable
        ``seed -> BanditEnv`` (for example ``lambda s: make_bandit(proxy="student_t", rng=s)``).
    seeds : iterable of int
    betas : array_like of shape (k,)
    verbose : bool, default False
        Progress bar over worlds.

    Returns
    -------
    list of GoodhartCurve
        Same ``betas`` for every world, so they can be averaged with :func:`mean_curve`.
    """
    seeds = list(seeds)
    return [beta_sweep(make_env(int(seed)), betas)
            for seed in tqdm(seeds, desc="worlds", disable=not verbose, leave=False)]


def mean_curve(curves) -> GoodhartCurve:
    """Average of curves over worlds at each value of their common parameter.

    ``kl``, ``proxy``, ``gold`` and the reference values are averaged; ``d`` is
    ``sqrt(mean kl)``. Peaks of the average curve are not the average of the peaks.

    Raises
    ------
    ValueError
        If the curves differ in kind or parameter grid.
    """
    curves = list(curves)
    if not curves:
        raise ValueError("mean_curve needs at least one curve")
    first = curves[0]
    for c in curves[1:]:
        if c.kind != first.kind or not np.array_equal(c.parameter, first.parameter):
            raise ValueError("mean_curve needs curves of one kind on one parameter grid")
    kl = np.mean([c.kl for c in curves], axis=0)
    return GoodhartCurve(kl=kl, d=np.sqrt(kl), proxy=np.mean([c.proxy for c in curves], axis=0),
                         gold=np.mean([c.gold for c in curves], axis=0),
                         parameter=first.parameter.copy(), kind=first.kind,
                         gold_ref=float(np.mean([c.gold_ref for c in curves])),
                         proxy_ref=float(np.mean([c.proxy_ref for c in curves])))


def comparison_counts(x, y_w, y_l, n_prompts, n_responses) -> np.ndarray:
    """How many comparisons each response took part in (as winner or loser).

    Parameters
    ----------
    x, y_w, y_l : array_like of int of shape (N,)
        Prompt, preferred and dispreferred response of each comparison.
    n_prompts, n_responses : int
        Table shape ``(X, Y)``.

    Returns
    -------
    ndarray of int64 of shape (X, Y)
        A comparison of a response with itself counts twice.
    """
    n_prompts = check_int(n_prompts, "n_prompts")
    n_responses = check_int(n_responses, "n_responses")
    x, y_w, y_l = (np.asarray(a).ravel() for a in (x, y_w, y_l))
    check_same_shape(x, y_w, "x", "y_w")
    check_same_shape(x, y_l, "x", "y_l")
    size = n_prompts * n_responses
    for name, a, upper in (("x", x, n_prompts), ("y_w", y_w, n_responses),
                           ("y_l", y_l, n_responses)):
        if not np.issubdtype(a.dtype, np.integer) or np.any((a < 0) | (a >= upper)):
            raise ValueError(f"{name} must hold integer indices in [0, {upper})")
    counts = (np.bincount(x * n_responses + y_w, minlength=size)
              + np.bincount(x * n_responses + y_l, minlength=size))
    return counts.reshape(n_prompts, n_responses).astype(np.int64)


def learned_bandit(n_prompts=8, n_responses=64, n_comparisons=3000, *, l2=0.03,
                   ref_temperature=0.5, rng=0):
    """A world whose proxy is a Bradley-Terry fit, returned with its comparison counts.

    Parameters
    ----------
    n_prompts, n_responses : int
    n_comparisons : int
        Comparisons of pairs drawn from ``pi_ref``, labelled by ``r_star``.
    l2 : float, default 0.03
        Penalty of the fit: a weak ``N(0, 1/l2)`` prior, so that a response that won its
        few comparisons gets a large reward.
    ref_temperature : float, default 0.5
        ``pi_ref = softmax(g / T)``: at 0.5 the reference is peaked, and many responses
        are compared rarely or never.
    rng : int or Generator
        The world (``pi_ref``, ``r_star``) is ``make_bandit(..., rng)``'s; the
        comparisons are drawn after it from the same generator.

    Returns
    -------
    env : BanditEnv
        ``proxy="learned"``.
    counts : ndarray of int64 of shape (X, Y)
        :func:`comparison_counts` of the training comparisons.

    Notes
    -----
    The same construction as ``make_bandit(proxy="learned")`` (chapter, Stage 2: the
    reward model is trained on outputs of ``pi_ref``), keeping the comparisons so that the
    experiments can ask where the data were scarce.
    """
    rng = as_rng(rng)
    base = make_bandit(n_prompts, n_responses, proxy="exact", ref_temperature=ref_temperature,
                       rng=rng)
    x, y_w, y_l = sample_comparisons(base.pi_ref, base.r_star,
                                     check_int(n_comparisons, "n_comparisons"), rng)
    r_hat = fit_bradley_terry(x, y_w, y_l, n_prompts, n_responses, l2=l2)
    env = BanditEnv(pi_ref=base.pi_ref, r_star=base.r_star, r_hat=r_hat,
                    prompt_probs=base.prompt_probs, proxy="learned")
    return env, comparison_counts(x, y_w, y_l, n_prompts, n_responses)


# --------------------------------------------------------------------------------------
# where and how much the proxy is wrong
# --------------------------------------------------------------------------------------


def aligned_proxy(env) -> np.ndarray:
    """The proxy shifted per prompt to agree with the gold on average under ``pi_ref``.

    ``r_hat(x, y) + c(x)`` with ``c(x) = E_{pi_ref(.|x)}[r_star - r_hat]``.

    Parameters
    ----------
    env : BanditEnv

    Returns
    -------
    ndarray of shape (X, Y)

    Notes
    -----
    Bradley-Terry identifies a reward only up to a per-prompt shift (chapter, Stage 2), and
    shifting a row changes no policy (``pi*`` and best-of-n are shift-invariant). To speak of
    the proxy's *error* a shift must be chosen; this one calibrates the reward model on its
    own training distribution, so that its mean signed error under ``pi_ref`` is zero and
    any error under another policy is due to that policy moving elsewhere.
    """
    env = _check_env(env)
    shift = (env.pi_ref * (env.r_star - env.r_hat)).sum(-1, keepdims=True)  # (X, 1)
    return env.r_hat + shift


def _error_table(env: BanditEnv, align: bool) -> np.ndarray:
    r_hat = aligned_proxy(env) if align else env.r_hat
    return r_hat - env.r_star


def overestimation(env, betas, *, align=False) -> np.ndarray:
    """``E_x E_{pi*_beta}[r_hat - r_star]``: how much the optimised policy's proxy overstates gold.

    Parameters
    ----------
    env : BanditEnv
    betas : array_like of shape (k,)
        KL coefficients, each ``> 0``.
    align : bool, default False
        Measure the error of :func:`aligned_proxy` (use it for learned proxies, whose level
        is arbitrary per prompt).

    Returns
    -------
    ndarray of shape (k,)
        In the order of ``betas``.

    Notes
    -----
    Chapter, exercise 3. Write ``r_hat = r_star + eps`` and ``t = 1/beta``. Under ``pi_ref``
    the overestimation is ``E_{pi_ref}[eps]``; tilting by ``exp(t r_hat)`` moves it, with

        d/dt E_{pi*}[eps] = Cov_{pi*}(eps, r_hat) = Var_{pi*}(eps) + Cov_{pi*}(eps, r_star).

    *Large response set, Gaussian rewards.* If under ``pi_ref`` the pair
    ``(r_star, eps)`` is Gaussian, independent, with variances ``1`` and ``sigma^2``, then
    ``r_hat`` is Gaussian and exponential tilting of a Gaussian shifts its mean exactly:
    the tilted mean of ``eps`` is ``t Cov(eps, r_hat) = sigma^2 / beta`` for *every*
    ``beta``. A finite table of ``Y`` responses is a sample from that population and
    ``pi*`` is a self-normalised importance sample of the tilt, so the formula holds (after
    subtracting the table's own ``E_{pi_ref}[eps]``) while the tilt stays inside the sample:
    ``t s`` well below ``sqrt(2 log Y_eff)``, ``s = sqrt(1 + sigma^2)``, where ``Y_eff`` is
    the effective number of responses under ``pi_ref``; ``beta >= s`` is safe for ``Y`` in
    the thousands. For smaller ``beta`` the policy runs out of responses: as
    ``beta -> 0`` it picks ``argmax r_hat`` and the overestimation saturates at
    ``E[eps | argmax]`` (about ``sigma^2 / s * sqrt(2 log Y)``), far below
    ``sigma^2 / beta``.
    """
    env = _check_env(env)
    betas = _check_betas(betas)
    err = _error_table(env, align)
    f = reward_kl_frontier(env.pi_ref, env.r_hat, betas, env.prompt_probs,
                           eval_rewards={"err": err})
    return f.extra["err"]


def proxy_error_under(env, pi, *, align=True) -> dict[str, float]:
    """The proxy's error weighted by a policy: where the policy goes, how wrong is ``r_hat``?

    Parameters
    ----------
    env : BanditEnv
    pi : array_like of shape (X, Y)
        The policy weighting the error (``pi_ref``, ``pi*_beta``, a trained policy).
    align : bool, default True
        Use :func:`aligned_proxy` (so that the signed error under ``pi_ref`` is zero).

    Returns
    -------
    dict
        ``{"mae": E_x E_pi |r_hat - r_star|, "bias": E_x E_pi (r_hat - r_star),
        "rmse": sqrt(E_x E_pi (r_hat - r_star)^2)}``.

    Notes
    -----
    Chapter, *Why Reward Models Are Fragile*, distributional shift: "the reward model is
    trained on outputs from ``pi_ref``"; a policy optimised against it moves where the
    model saw few comparisons and its error there is larger (and, because the policy chose
    those responses *for* their high ``r_hat``, positive).
    """
    env = _check_env(env)
    pi = check_distribution(pi, "pi")
    check_same_shape(pi, env.pi_ref, "pi", "pi_ref")
    err = _error_table(env, align)
    w = env.prompt_probs
    return {
        "mae": float(w @ (pi * np.abs(err)).sum(-1)),
        "bias": float(w @ (pi * err).sum(-1)),
        "rmse": float(np.sqrt(w @ (pi * err**2).sum(-1))),
    }


def distribution_shift(env, betas, *, align=True) -> dict[str, np.ndarray]:
    """:func:`proxy_error_under` for ``pi*_beta`` over a grid of betas, vectorised.

    Parameters
    ----------
    env : BanditEnv
    betas : array_like of shape (k,)
    align : bool, default True

    Returns
    -------
    dict
        ``"kl"``, ``"d"``, ``"mae"``, ``"bias"`` (arrays of shape (k,), in the order of
        ``betas``) and ``"mae_ref"``, ``"bias_ref"`` (floats: the same under ``pi_ref``).

    Notes
    -----
    One :func:`rlhf_toy.optimal.reward_kl_frontier` call, with ``|err|`` and ``err`` as
    evaluation rewards.
    """
    env = _check_env(env)
    betas = _check_betas(betas)
    err = _error_table(env, align)
    f = reward_kl_frontier(env.pi_ref, env.r_hat, betas, env.prompt_probs,
                           eval_rewards={"abs": np.abs(err), "err": err})
    ref = proxy_error_under(env, env.pi_ref, align=align)
    return {"kl": f.kl, "d": np.sqrt(f.kl), "mae": f.extra["abs"], "bias": f.extra["err"],
            "mae_ref": ref["mae"], "bias_ref": ref["bias"]}


# --------------------------------------------------------------------------------------
# exercise 3: expected overestimation over the noise
# --------------------------------------------------------------------------------------


def expected_overestimation(pi_ref, r_star, betas, noise_values, noise_probs=None,
                            prompt_probs=None) -> np.ndarray:
    """Exact ``E_eps E_x E_{pi*_beta}[eps]`` for ``r_hat = r_star + eps``, ``eps`` i.i.d. discrete.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy.
    r_star : array_like of shape (X, Y)
        The gold reward, held fixed.
    betas : array_like of shape (k,)
        KL coefficients.
    noise_values : array_like of shape (m,)
        Support of the noise of one entry; every entry of ``eps`` is drawn independently
        from it (for example ``[-1, 1]``: Rademacher noise).
    noise_probs : array_like of shape (m,), optional
        Probabilities of ``noise_values``; uniform if omitted.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution; uniform if omitted.

    Returns
    -------
    ndarray of shape (k,)
        The expectation over the ``m^Y`` noise patterns of each prompt, computed exactly.

    Raises
    ------
    ValueError
        If ``m^Y * X * Y`` exceeds about four million (the enumeration would be too big).

    Notes
    -----
    Chapter, exercise 3. The noise patterns are stacked as extra "prompts" weighted by
    their probability, and the stack goes through one
    :func:`rlhf_toy.optimal.reward_kl_frontier` call: no sampling, no loop over patterns.

    *What is true.* (i) For every draw, ``E_{pi*}[r_hat]`` is non-decreasing in ``1/beta``
    (derivative ``Var_{pi*}(r_hat)``). (ii) If the noise has mean zero and is independent
    across responses, the expected overestimation is ``>= 0`` for every ``beta``,
    whatever ``r_star`` and ``pi_ref``: ``pi*(y)`` is increasing in ``eps_y`` with the other
    entries fixed, so ``E[pi*(y) eps_y | eps_{-y}] = Cov(pi*(y), eps_y | eps_{-y}) >= 0``;
    sum over ``y``. It is ``0`` at ``beta = inf`` and its slope there is
    ``E Var_{pi_ref}(eps) > 0``. (iii) It need *not* increase monotonically as ``beta``
    falls for a fixed ``r_star``: with ``r_star = (0, 4)``, uniform ``pi_ref`` and
    ``eps = +-1``, the hard-optimised policy always picks response 2, whose noise averages
    to zero, so the expected overestimation rises from 0 and falls back to 0.
    (iv) It does increase monotonically in expectation over a *random* gold reward,
    independent across responses, when ``E[eps_y | r_hat_y]`` is non-decreasing in
    ``r_hat_y`` (Efron 1965: true when ``r_star`` and ``eps`` have log-concave densities,
    e.g. Gaussian): then ``E[overestimation] = E E_{pi*}[m(r_hat)]`` with ``m``
    non-decreasing, and ``d/dt E_{pi*}[m(r_hat)] = Cov_{pi*}(m(r_hat), r_hat) >= 0`` for each
    draw (two non-decreasing functions of one variable). See
    :func:`overestimation_monte_carlo`.
    """
    pi_ref = check_distribution(pi_ref, "pi_ref")
    r_star = check_finite(r_star, "r_star")
    check_same_shape(pi_ref, r_star, "pi_ref", "r_star")
    if pi_ref.ndim != 2:
        raise ValueError(f"pi_ref must have shape (X, Y), got {pi_ref.shape}")
    betas = _check_betas(betas)
    values = check_finite(noise_values, "noise_values").ravel()
    probs = (np.full(values.size, 1.0 / values.size) if noise_probs is None
             else check_distribution(noise_probs, "noise_probs"))
    if probs.shape != values.shape:
        raise ValueError(f"noise_probs must have shape {values.shape}, got {probs.shape}")
    n_prompts, n_responses = pi_ref.shape
    n_patterns = values.size**n_responses
    if n_patterns * pi_ref.size > _MAX_ENUMERATION:
        raise ValueError(
            f"expected_overestimation enumerates {values.size}^{n_responses} noise patterns "
            f"per prompt: too many for a {pi_ref.shape} table; use fewer responses or values"
        )
    w_x = (np.full(n_prompts, 1.0 / n_prompts) if prompt_probs is None
           else check_distribution(prompt_probs, "prompt_probs"))
    codes = np.array(list(itertools.product(range(values.size), repeat=n_responses)))  # (P, Y)
    eps = values[codes]  # (P, Y)
    p_eps = probs[codes].prod(-1)  # (P,)
    # Stack (pattern, prompt) as rows: (P * X, Y).
    eps_rows = np.repeat(eps, n_prompts, axis=0)
    r_hat_rows = np.tile(r_star, (n_patterns, 1)) + eps_rows
    weights = np.outer(p_eps, w_x).ravel()
    f = reward_kl_frontier(np.tile(pi_ref, (n_patterns, 1)), r_hat_rows, betas,
                           weights / weights.sum(), eval_rewards={"eps": eps_rows})
    return f.extra["eps"]


def overestimation_monte_carlo(pi_ref, betas, *, noise_scale, n_draws, rng, n_batches=20,
                               prompt_probs=None) -> dict[str, np.ndarray]:
    """Monte Carlo ``E[E_x E_{pi*_beta}(r_hat - r_star)]`` over random Gaussian gold and noise.

    Each draw is a fresh gold table ``r_star ~ N(0, 1)`` and noise ``eps ~ N(0, sigma^2)``,
    i.i.d. over entries, with ``pi_ref`` fixed.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy.
    betas : array_like of shape (k,)
    noise_scale : float
        ``sigma``.
    n_draws : int
        Number of ``(r_star, eps)`` tables; a multiple of ``n_batches``.
    rng : numpy Generator or int
    n_batches : int, default 20
        The draws are averaged in this many independent batches; the spread of the batch
        means gives the standard errors.
    prompt_probs : array_like of shape (X,), optional

    Returns
    -------
    dict
        ``"mean"`` (shape (k,)): the estimate; ``"se"``: its standard error;
        ``"diff"``, ``"diff_se"`` (shape (k-1,)): the estimated increments between
        consecutive betas and their standard errors (same draws for every beta, so the
        increments are much more precise than the levels).

    Notes
    -----
    Chapter, exercise 3, fact (iv) of :func:`expected_overestimation`: here
    ``E[eps | r_hat] = sigma^2 / (1 + sigma^2) r_hat`` is linear, so the expected
    overestimation is non-decreasing in ``1/beta``. Each batch is one vectorised
    :func:`rlhf_toy.optimal.reward_kl_frontier` call with the draws stacked as prompts.
    """
    pi_ref = check_distribution(pi_ref, "pi_ref")
    if pi_ref.ndim != 2:
        raise ValueError(f"pi_ref must have shape (X, Y), got {pi_ref.shape}")
    betas = _check_betas(betas)
    sigma = check_positive(noise_scale, "noise_scale")
    n_draws = check_int(n_draws, "n_draws")
    n_batches = check_int(n_batches, "n_batches", minimum=2)
    if n_draws % n_batches:
        raise ValueError(f"n_draws must be a multiple of n_batches={n_batches}, got {n_draws}")
    rng = as_rng(rng)
    n_prompts = pi_ref.shape[0]
    w_x = (np.full(n_prompts, 1.0 / n_prompts) if prompt_probs is None
           else check_distribution(prompt_probs, "prompt_probs"))
    per = n_draws // n_batches
    ref_rows = np.tile(pi_ref, (per, 1))  # (per * X, Y)
    weights = np.tile(w_x, per) / per
    batch_means = np.empty((n_batches, betas.size))
    for b in range(n_batches):  # a handful of batches, each fully vectorised
        r_star = rng.standard_normal(ref_rows.shape)
        eps = sigma * rng.standard_normal(ref_rows.shape)
        f = reward_kl_frontier(ref_rows, r_star + eps, betas, weights,
                               eval_rewards={"eps": eps})
        batch_means[b] = f.extra["eps"]
    diffs = np.diff(batch_means, axis=1)
    scale = 1.0 / np.sqrt(n_batches)
    return {"mean": batch_means.mean(0), "se": batch_means.std(0, ddof=1) * scale,
            "diff": diffs.mean(0), "diff_se": diffs.std(0, ddof=1) * scale}


# --------------------------------------------------------------------------------------
# Gao et al.'s functional forms
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GaoFit:
    """A least-squares fit of Gao et al.'s overoptimisation curve.

    Attributes
    ----------
    a, b : float
        Coefficients of ``R(d) = d (a - b d)`` (``form="bon"``) or
        ``R(d) = d (a - b log d)`` (``form="rl"``), where ``R = gold - gold_ref``.
    peak_d : float
        The fitted curve's maximiser ``d*`` (``inf`` if ``b <= 0``: no interior peak).
    peak_gold : float
        ``gold_ref + R(d*)``: the predicted best gold reward (``inf`` if ``b <= 0``).
    r2 : float
        Coefficient of determination of the fit on ``R`` (1 is perfect).
    form : str
        ``"bon"`` or ``"rl"``.
    gold_ref : float
        The gold at ``d = 0`` (given, or fitted as a third parameter).
    """

    a: float
    b: float
    peak_d: float
    peak_gold: float
    r2: float
    form: str
    gold_ref: float

    def predict(self, d) -> np.ndarray:
        """The fitted gold ``gold_ref + R(d)`` at distances ``d``."""
        return self.gold_ref + gao_curve(d, self.a, self.b, self.form)


def _d_log_d(d: np.ndarray) -> np.ndarray:
    """``d log d`` with its limit 0 at ``d = 0``."""
    return d * np.log(np.where(d > 0, d, 1.0))


def gao_curve(d, a, b, form="bon") -> np.ndarray:
    """Gao et al.'s gold-reward gain ``R(d)`` at distance ``d = sqrt(KL)``.

    ``d (a - b d)`` for ``form="bon"`` (best-of-n), ``d (a - b log d)`` for ``form="rl"``
    (with ``d log d = 0`` at ``d = 0``).
    """
    d = np.asarray(d, dtype=np.float64)
    if form == "bon":
        return d * (a - b * d)
    if form == "rl":
        return a * d - b * _d_log_d(d)
    raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")


def _curve_fit(model, d, y, p0) -> np.ndarray:
    """``curve_fit``'s estimate; its covariance (unused) may be singular on exact data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        popt, _ = curve_fit(model, d, y, p0=p0)
    return popt


def fit_gao(d, gold, form="bon", gold_ref=None) -> GaoFit:
    """Fit Gao et al.'s (2023) scaling form to a gold-reward curve.

    Parameters
    ----------
    d : array_like of shape (k,)
        Distances ``sqrt(KL)``, ``>= 0``.
    gold : array_like of shape (k,)
        Gold reward at each distance.
    form : {"bon", "rl"}
        ``"bon"``: ``gold - gold_ref = d (a - b d)``; ``"rl"``:
        ``gold - gold_ref = d (a - b log d)``.
    gold_ref : float, optional
        Gold reward of the reference policy (``d = 0``). If omitted it is fitted as a third
        parameter.

    Returns
    -------
    GaoFit

    Raises
    ------
    ValueError
        On mismatched or non-finite input, negative ``d``, an unknown form, or fewer points
        than parameters.

    Notes
    -----
    Chapter, *Why Reward Models Are Fragile* (Gao et al., "Scaling Laws for Reward Model
    Overoptimization", 2023). Least squares by :func:`scipy.optimize.curve_fit`; both forms
    are linear in ``(a, b)``, so the fit is the ordinary least-squares solution, computed
    with a linear-algebra starting point.

    *Predicted peak.* ``bon``: ``R'(d) = a - 2 b d = 0`` gives ``d* = a / (2b)`` and
    ``R(d*) = a^2 / (4b)``. ``rl``: ``R'(d) = a - b log d - b = 0`` gives
    ``d* = exp(a/b - 1)`` and ``R(d*) = d* (a - b (a/b - 1)) = b d*``. Both are maxima when
    ``b > 0`` (``R'' = -2b`` and ``-b/d``). For ``bon`` with ``a <= 0`` the formula gives
    ``d* <= 0``: the best policy is the reference itself, and ``peak_d`` is reported as 0.

    ``R^2 = 1 - SS_res / SS_tot`` on ``gold - gold_ref`` (on ``gold`` when ``gold_ref`` is
    fitted).
    """
    d = check_finite(d, "d").ravel()
    gold = check_finite(gold, "gold").ravel()
    check_same_shape(d, gold, "d", "gold")
    if np.any(d < 0):
        raise ValueError(f"d must be >= 0, got {d.min()}")
    if form not in ("bon", "rl"):
        raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")
    n_params = 2 if gold_ref is not None else 3
    if d.size < n_params + 1:
        raise ValueError(f"fit_gao needs at least {n_params + 1} points, got {d.size}")
    second = d**2 if form == "bon" else _d_log_d(d)  # R = a d - b * second
    if gold_ref is None:
        design = np.column_stack([d, -second, np.ones_like(d)])
        p0 = np.linalg.lstsq(design, gold, rcond=None)[0]

        def model(dd, a, b, c):
            return c + gao_curve(dd, a, b, form)

        popt = _curve_fit(model, d, gold, p0)
        a, b, ref = (float(v) for v in popt)
        target, fitted = gold, model(d, *popt)
    else:
        ref = float(check_finite(gold_ref, "gold_ref"))
        target = gold - ref
        design = np.column_stack([d, -second])
        p0 = np.linalg.lstsq(design, target, rcond=None)[0]

        def model(dd, a, b):
            return gao_curve(dd, a, b, form)

        popt = _curve_fit(model, d, target, p0)
        a, b = (float(v) for v in popt)
        fitted = model(d, *popt)
    ss_res = float(np.sum((target - fitted) ** 2))
    ss_tot = float(np.sum((target - target.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    if b <= 0:
        peak_d = peak_gold = np.inf
    else:
        peak_d = max(a / (2 * b), 0.0) if form == "bon" else float(np.exp(a / b - 1.0))
        peak_gold = ref + float(gao_curve(peak_d, a, b, form))
    return GaoFit(a=a, b=b, peak_d=float(peak_d), peak_gold=float(peak_gold), r2=r2, form=form,
                  gold_ref=ref)
