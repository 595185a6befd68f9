"""Goodhart curves: gold and proxy reward as optimisation pressure grows.

Implements the chapter's *Why Reward Models Are Fragile* (overoptimisation: "the gold reward
first increases, then decreases", Gao et al. 2023), the *Failure Mode* of Stage 3 and the
*Common Confusion* "More RLHF is not always better". Every curve is exact (sums over the
bandit's tables) and is drawn against Gao et al.'s distance ``d = sqrt(KL(pi || pi_ref))``
(KL averaged over prompts):

- :func:`beta_sweep`: the KL-optimal policies ``pi*_beta`` of the proxy, ``beta`` from large
  to small;
- :func:`best_of_n_curve`: best-of-``n`` by the proxy, ``n`` from 1 up;
- :func:`trajectory_sweep`: the iterates of exact gradient ascent on the proxy objective.

Where and how much the proxy is wrong: :mod:`rlhf_toy.bandit.experiments.proxy_error`;
exercise 3: :mod:`rlhf_toy.bandit.experiments.overestimation`; Gao et al.'s functional
forms: :mod:`rlhf_toy.gao`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from rlhf_toy._validate import MAX_STEPS, check_int
from rlhf_toy._validate import check_betas as validate_betas
from rlhf_toy.bandit.env import BanditEnv, check_env, make_bandit
from rlhf_toy.bandit.train import gradient_ascent
from rlhf_toy.best_of_n import best_of_n_sweep
from rlhf_toy.gao import fit_gao
from rlhf_toy.optimal import reward_kl_frontier

__all__ = [
    "LEARNED_WORLD",
    "GoodhartCurve",
    "best_of_n_curve",
    "beta_sweep",
    "check_betas",
    "gao_panels",
    "heavy_tail_sweeps",
    "mean_curve",
    "seed_sweeps",
    "trajectory_sweep",
]

#: The kinds of optimisation a :class:`GoodhartCurve` can trace.
KINDS = ("kl_optimal", "best_of_n", "trajectory")

#: The learned-proxy world of the chapter's Goodhart experiments, as keywords of
#: :func:`rlhf_toy.bandit.env.make_bandit`: a weak ``N(0, 1/0.03)`` prior, so that a response
#: that won its few comparisons gets a large reward, and a peaked ``pi_ref`` (temperature
#: 0.5), so that many responses are compared rarely or never.
LEARNED_WORLD = {"proxy": "learned", "l2": 0.03, "ref_temperature": 0.5}


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
        ``pi_ref``, the shift-invariant view the Goodhart plots take."""
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


def check_betas(betas) -> np.ndarray:
    """A non-empty 1-D float64 array of finite ``beta > 0``, else ``ValueError``.

    The root check (a ``TypeError`` for non-real input).

    Parameters
    ----------
    betas : float or array_like

    Returns
    -------
    ndarray of shape (n_betas,)
    """
    return validate_betas(betas)


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
    env = check_env(env)
    betas = check_betas(betas)
    f = reward_kl_frontier(env.pi_ref, env.r_hat, betas, env.prompt_probs,
                           eval_rewards={"gold": env.r_star})
    return _curve(f.kl, f.reward, f.extra["gold"], betas, "kl_optimal", env)


def best_of_n_curve(env, ns) -> GoodhartCurve:
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
    :func:`rlhf_toy.best_of_n.best_of_n_sweep`, vectorised over the grid of ``n``; the KL
    never exceeds ``log n - (n-1)/n``, so ``d`` grows only like ``sqrt(log n)``.
    """
    env = check_env(env)
    sweep = best_of_n_sweep(env.pi_ref, env.r_hat, ns, env.prompt_probs,
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
    env = check_env(env)
    steps = check_int(steps, "steps", minimum=1)
    record_every = check_int(record_every, "record_every", minimum=1, maximum=MAX_STEPS)
    res = gradient_ascent(env.pi_ref, env.r_hat, beta, steps=steps, lr=lr,
                          prompt_probs=env.prompt_probs, record_every=0,
                          eval_rewards={"gold": env.r_star}, verbose=verbose)
    h = res.history
    keep = np.unique(np.r_[np.arange(0, steps + 1, record_every), steps])
    idx = np.searchsorted(h["steps"], keep)
    return _curve(h["kl"][idx], h["reward"][idx], h["gold"][idx], h["steps"][idx],
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

    Parameters
    ----------
    curves : iterable of GoodhartCurve
        Of one kind, on one parameter grid.

    Returns
    -------
    GoodhartCurve

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


def heavy_tail_sweeps(betas, seeds=range(20), *, n_prompts=16, n_responses=1000,
                      noise_scale=0.2, df=1.5):
    """:func:`seed_sweeps` of Student-t and of Gaussian proxy noise of the same scale.

    Parameters
    ----------
    betas : array_like of shape (k,)
    seeds : iterable of int, default range(20)
    n_prompts, n_responses : int, default 16 and 1000
        World shape.
    noise_scale : float, default 0.2
        Scale of the proxy noise.
    df : float, default 1.5
        Degrees of freedom of the Student-t noise.

    Returns
    -------
    heavy, gauss : list of GoodhartCurve
        One curve per seed each; world ``s`` of both shares ``pi_ref`` and ``r_star``.

    Notes
    -----
    Chapter, *Why Reward Models Are Fragile*: heavy-tailed proxy error (catastrophic
    Goodhart) makes the gold rise and fall back; Gaussian error keeps its gains.
    """
    shape = (n_prompts, n_responses)
    heavy = seed_sweeps(lambda s: make_bandit(*shape, proxy="student_t", noise_scale=noise_scale,
                                              df=df, rng=s), seeds, betas)
    gauss = seed_sweeps(lambda s: make_bandit(*shape, proxy="gaussian", noise_scale=noise_scale,
                                              rng=s), seeds, betas)
    return heavy, gauss


def gao_panels(env, ns, betas, *, beta: float = 0.003, steps: int = 400, lr: float = 0.5,
               record_every: int = 4) -> dict[str, dict]:
    """Gao et al.'s forms fitted to best-of-n, to ``pi*_beta`` and to a gradient-ascent run.

    Parameters
    ----------
    env : BanditEnv
    ns : array_like of int
        Best-of-n sizes.
    betas : array_like
        KL coefficients of the ``pi*_beta`` sweep.
    beta : float, default 0.003
        KL coefficient of the gradient-ascent run.
    steps : int, default 400
    lr : float, default 0.5
    record_every : int, default 4

    Returns
    -------
    dict of str to dict
        By title: the curve's :meth:`GoodhartCurve.centred` arrays, the fit's ``a``, ``b``,
        ``r2``, ``peak_d`` and ``form`` (the panels of the Gao figure), and the ``curve`` and
        its ``fit`` (:class:`rlhf_toy.gao.GaoFit`) themselves.
    """
    env = check_env(env)
    traj = trajectory_sweep(env, beta, steps=steps, lr=lr, record_every=record_every)
    families = {"best-of-n": (best_of_n_curve(env, ns), "bon"),
                r"KL-optimal $\pi^*_\beta$": (beta_sweep(env, betas), "rl"),
                rf"gradient ascent, $\beta$={beta:g}": (traj, "rl")}
    panels = {}
    for title, (curve, form) in families.items():
        fit = fit_gao(curve.d, curve.gold, form, curve.gold_ref)
        panels[title] = {**curve.centred(), "a": fit.a, "b": fit.b, "r2": fit.r2,
                         "peak_d": fit.peak_d, "form": form, "curve": curve, "fit": fit}
    return panels
