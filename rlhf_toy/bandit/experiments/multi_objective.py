"""Multi-objective RLHF on the exact bandit: helpfulness against harm.

The chapter's reward is one number; real preference data mixes several goals (helpful,
harmless). With two reward tables ``r_help`` and ``r_harm`` (each with a gold and a proxy
version, as in :mod:`rlhf_toy.bandit.env`) the KL-regularised problem has two classic
multi-objective forms, both solved exactly by Boltzmann policies:

- *Linear scalarisation*: ``r_w = w r_help - (1 - w) r_harm``. The policy
  ``optimal_policy(pi_ref, r_w, beta)`` maximises ``w J_help - (1 - w) J_harm`` with the
  regularised objectives ``J_help = E[help] - beta KL`` and ``J_harm = E[harm] + beta KL``
  (a cost): sweeping ``w`` traces their exact Pareto front (:func:`scalarisation_front`).
- *Constrained*: maximise ``J_help`` subject to ``E[harm] <= c``. Its optimum is the
  Lagrangian policy ``optimal_policy(pi_ref, r_help - lam r_harm, beta)`` at the multiplier
  ``lam`` found by bisection (:func:`constrained_optimum`; ``E[harm]`` falls monotonically
  in ``lam``); sampled training reaches it by dual ascent on ``lam``
  (:func:`train_constrained`).

Chapter: "RLHF and Alignment", the reward as a summary of preferences; multi-objective
RLHF as in Safe RLHF (Dai et al. 2024, a Lagrange multiplier on a cost model) and
MORLHF / Rewarded Soups (linear scalarisation of several rewards).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.special import rel_entr, softmax

from rlhf_toy._validate import (
    MAX_MAGNITUDE,
    MAX_STEPS,
    as_rng,
    check_bounded,
    check_distribution,
    check_finite,
    check_float,
    check_int,
    check_nonnegative,
    check_positive,
    check_prompt_probs,
    check_same_shape,
    check_table_size,
)
from rlhf_toy.bandit.policy import TabularPolicy, TrainableTabularPolicy
from rlhf_toy.bandit.rl import STEPS, TabularCritic, method_name
from rlhf_toy.optim import AdamW
from rlhf_toy.optimal import log_optimal_policy, optimal_policy
from rlhf_toy.rl import OnlineDPOConfig, PPOConfig, RLOOConfig

__all__ = [
    "ConstrainedOptimum",
    "ConstrainedRun",
    "Front",
    "TwoRewardBandit",
    "constrained_optimum",
    "lagrangian_front",
    "lagrangian_policy",
    "make_two_reward_bandit",
    "multi_objective_study",
    "non_dominated",
    "policy_values",
    "scalarisation_front",
    "scalarised_reward",
    "train_constrained",
]


# --------------------------------------------------------------------------------------
# the world: two gold rewards and their proxies
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TwoRewardBandit:
    """A contextual bandit with two rewards, helpfulness and harm, gold and proxy for each.

    Attributes
    ----------
    pi_ref : ndarray of shape (X, Y)
        Reference policy.
    r_help_star, r_harm_star : ndarray of shape (X, Y)
        Gold helpfulness and gold harm (harm is a cost: lower is better).
    r_help_hat, r_harm_hat : ndarray of shape (X, Y)
        Their proxies (the two reward models' scores).
    prompt_probs : ndarray of shape (X,)
        Prompt distribution.
    """

    pi_ref: np.ndarray
    r_help_star: np.ndarray
    r_harm_star: np.ndarray
    r_help_hat: np.ndarray
    r_harm_hat: np.ndarray
    prompt_probs: np.ndarray

    def __post_init__(self):
        pi_ref = check_distribution(self.pi_ref, "pi_ref")
        if pi_ref.ndim != 2:
            raise ValueError(f"pi_ref must have shape (X, Y), got shape {pi_ref.shape}")
        tables = {"pi_ref": pi_ref}
        for name in ("r_help_star", "r_harm_star", "r_help_hat", "r_harm_hat"):
            table = check_finite(getattr(self, name), name)
            check_same_shape(table, pi_ref, name, "pi_ref")
            tables[name] = table
        prompt_probs = check_prompt_probs(self.prompt_probs, pi_ref.shape[0])
        tables["prompt_probs"] = prompt_probs
        for name, value in tables.items():
            value = np.array(value)
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    def rewards(self, kind: str = "proxy") -> tuple[np.ndarray, np.ndarray]:
        """``(r_help, r_harm)``: the gold tables (``kind="gold"``) or the proxies."""
        if kind == "gold":
            return self.r_help_star, self.r_harm_star
        if kind == "proxy":
            return self.r_help_hat, self.r_harm_hat
        raise ValueError(f"kind must be 'gold' or 'proxy', got {kind!r}")


def make_two_reward_bandit(n_prompts: int = 8, n_responses: int = 32, *,
                           correlation: float = 0.5, noise_scale: float = 0.3,
                           ref_temperature: float = 1.0, rng=0) -> TwoRewardBandit:
    """Draw a two-reward world in which helpfulness and harm are in tension.

    Parameters
    ----------
    n_prompts, n_responses : int
        Table size ``X`` and ``Y`` (``Y >= 2``).
    correlation : float, default 0.5
        Correlation ``rho`` in ``[-1, 1]`` of gold help and gold harm across responses:
        ``rho > 0`` makes the more helpful responses more harmful (a trade-off).
    noise_scale : float, default 0.3
        ``sigma`` of the Gaussian proxy noise: ``r_hat = r_star + sigma N(0, 1)``
        independently for each reward (``0`` gives exact proxies).
    ref_temperature : float, default 1.0
        ``pi_ref = softmax(g / ref_temperature)`` with standard normal logits ``g``.
    rng : numpy Generator or int
        Source of randomness.

    Returns
    -------
    TwoRewardBandit

    Raises
    ------
    ValueError
        On a size, correlation, noise scale or temperature out of range.

    Notes
    -----
    ``r_help_star = u``, ``r_harm_star = rho u + sqrt(1 - rho^2) v`` with ``u, v`` i.i.d.
    ``N(0, 1)`` per entry; the proxies add independent ``N(0, sigma^2)`` noise
    (the ``"gaussian"`` proxy of :func:`rlhf_toy.bandit.env.make_bandit`, once per reward).
    """
    n_prompts, n_responses = check_table_size(n_prompts, n_responses)
    if n_responses < 2:
        raise ValueError(f"n_responses must be >= 2, got {n_responses}")
    correlation = check_float(correlation, "correlation", low=-1.0, high=1.0)
    noise_scale = check_nonnegative(noise_scale, "noise_scale")
    ref_temperature = check_positive(ref_temperature, "ref_temperature")
    rng = as_rng(rng)
    shape = (n_prompts, n_responses)
    g = rng.standard_normal(shape)
    with np.errstate(over="ignore"):  # a tiny temperature: -inf logits, an argmax policy
        pi_ref = softmax((g - g.max(-1, keepdims=True)) / ref_temperature, axis=-1)
    u, v = rng.standard_normal(shape), rng.standard_normal(shape)
    r_help_star = u
    r_harm_star = correlation * u + np.sqrt(1.0 - correlation**2) * v
    noise = noise_scale * rng.standard_normal((2, *shape))
    return TwoRewardBandit(pi_ref=pi_ref, r_help_star=r_help_star, r_harm_star=r_harm_star,
                           r_help_hat=r_help_star + noise[0], r_harm_hat=r_harm_star + noise[1],
                           prompt_probs=np.full(n_prompts, 1.0 / n_prompts))


# --------------------------------------------------------------------------------------
# exact values of a policy
# --------------------------------------------------------------------------------------


def _check_tables(pi_ref, r_help, r_harm, prompt_probs):
    pi_ref = check_distribution(pi_ref, "pi_ref")
    if pi_ref.ndim != 2:
        raise ValueError(f"pi_ref must have shape (X, Y), got shape {pi_ref.shape}")
    # bounded: lam * r_harm and the variances of sampled rewards stay finite
    r_help = check_bounded(r_help, "r_help")
    r_harm = check_bounded(r_harm, "r_harm")
    check_same_shape(r_help, pi_ref, "r_help", "pi_ref")
    check_same_shape(r_harm, pi_ref, "r_harm", "pi_ref")
    prompt_probs = check_prompt_probs(prompt_probs, pi_ref.shape[0])
    return pi_ref, r_help, r_harm, prompt_probs


def _values(pi, pi_ref, r_help, r_harm, w) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trusted ``(E help, E harm, KL)`` of policies ``pi[..., X, Y]`` under prompts ``w``."""
    help_ = (pi * r_help).sum(-1) @ w
    harm = (pi * r_harm).sum(-1) @ w
    kl = rel_entr(pi, pi_ref).sum(-1) @ w
    return help_, harm, kl


def policy_values(pi, pi_ref, r_help, r_harm, beta, prompt_probs=None) -> dict[str, np.ndarray]:
    """Exact helpfulness, harm, KL and the two regularised objectives of policies.

    Parameters
    ----------
    pi : array_like of shape (..., X, Y)
        One policy or a stack of them; each row a distribution.
    pi_ref : array_like of shape (X, Y)
        Reference policy.
    r_help, r_harm : array_like of shape (X, Y)
        Helpfulness and harm tables (gold or proxy), entries within ``+-1e100``.
    beta : float
        KL coefficient, ``> 0``.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution; uniform if omitted.

    Returns
    -------
    dict of str to ndarray of shape ``pi.shape[:-2]``
        ``"help"`` ``E_x E_pi r_help``, ``"harm"`` ``E_x E_pi r_harm``, ``"kl"``
        ``E_x KL(pi || pi_ref)``, ``"j_help"`` ``help - beta kl`` and ``"j_harm"``
        ``harm + beta kl``.

    Raises
    ------
    ValueError
        On invalid tables, shapes or ``beta``.

    Notes
    -----
    ``w J_help - (1 - w) J_harm = w E[help] - (1 - w) E[harm] - beta KL`` is the
    KL-regularised objective of Stage 3 for the reward ``r_w`` of
    :func:`scalarised_reward`.
    """
    pi_ref, r_help, r_harm, w = _check_tables(pi_ref, r_help, r_harm, prompt_probs)
    beta = check_positive(beta, "beta")
    pi = check_distribution(pi, "pi")
    if pi.shape[-2:] != pi_ref.shape:
        raise ValueError(f"pi must have shape (..., {pi_ref.shape[0]}, {pi_ref.shape[1]}), "
                         f"got {pi.shape}")
    help_, harm, kl = _values(pi, pi_ref, r_help, r_harm, w)
    return {"help": help_, "harm": harm, "kl": kl, "j_help": help_ - beta * kl,
            "j_harm": harm + beta * kl}


def scalarised_reward(r_help, r_harm, w) -> np.ndarray:
    """The linear scalarisation ``r_w = w r_help - (1 - w) r_harm``.

    Parameters
    ----------
    r_help, r_harm : array_like of the same shape
        Helpfulness (a reward) and harm (a cost).
    w : float
        Weight on helpfulness, in ``[0, 1]``.

    Returns
    -------
    ndarray of the input shape

    Raises
    ------
    ValueError
        If ``w`` is outside ``[0, 1]`` or the tables are not finite or differ in shape.

    Examples
    --------
    >>> scalarised_reward([1.0, 0.0], [0.0, 1.0], 0.25)
    array([ 0.25, -0.75])
    """
    r_help = check_finite(r_help, "r_help")
    r_harm = check_finite(r_harm, "r_harm")
    check_same_shape(r_help, r_harm, "r_help", "r_harm")
    w = check_float(w, "w", low=0.0, high=1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        out = w * r_help - (1.0 - w) * r_harm
    if not np.all(np.isfinite(out)):
        raise ValueError("the scalarised reward overflows float64: r_help or r_harm too large")
    return out


def non_dominated(maximise) -> np.ndarray:
    """Which points no other point Pareto-dominates (all objectives maximised).

    Parameters
    ----------
    maximise : array_like of shape (n, k)
        ``n`` points, ``k`` objectives to maximise (negate a cost).

    Returns
    -------
    ndarray of bool, shape (n,)
        ``True`` where no point ``j`` has ``f_j >= f_i`` in every objective and
        ``f_j > f_i`` in one.

    Raises
    ------
    ValueError
        If ``maximise`` is not a finite 2-D array.

    Examples
    --------
    >>> non_dominated([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    array([ True,  True, False])
    """
    f = check_finite(maximise, "maximise")
    if f.ndim != 2:
        raise ValueError(f"maximise must have shape (n, k), got shape {f.shape}")
    geq = np.all(f[:, None, :] >= f[None, :, :], axis=-1)  # (n, n): [j, i] f_j >= f_i
    gt = np.any(f[:, None, :] > f[None, :, :], axis=-1)
    return ~np.any(geq & gt, axis=0)


# --------------------------------------------------------------------------------------
# exact fronts
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Front:
    """A family of exact Boltzmann policies and their values.

    Attributes
    ----------
    param : ndarray of shape (n,)
        The scalarisation weights ``w`` (:func:`scalarisation_front`) or the multipliers
        ``lam`` (:func:`lagrangian_front`).
    policies : ndarray of shape (n, X, Y)
        The policies.
    help, harm, kl : ndarray of shape (n,)
        ``E[help]``, ``E[harm]``, ``E_x KL(pi || pi_ref)``, exact.
    beta : float
        The KL coefficient.
    """

    param: np.ndarray
    policies: np.ndarray
    help: np.ndarray
    harm: np.ndarray
    kl: np.ndarray
    beta: float

    @property
    def j_help(self) -> np.ndarray:
        """``E[help] - beta KL``, shape (n,)."""
        return self.help - self.beta * self.kl

    @property
    def j_harm(self) -> np.ndarray:
        """``E[harm] + beta KL``, shape (n,)."""
        return self.harm + self.beta * self.kl


def _front(pi_ref, r_help, r_harm, beta, param, rewards, w) -> Front:
    policies = np.stack([optimal_policy(pi_ref, r, beta) for r in rewards])  # (n, X, Y)
    help_, harm, kl = _values(policies, pi_ref, r_help, r_harm, w)
    return Front(param=param, policies=policies, help=help_, harm=harm, kl=kl, beta=beta)


def scalarisation_front(pi_ref, r_help, r_harm, beta, weights, prompt_probs=None) -> Front:
    """The exact Pareto front of ``(J_help, J_harm)`` by linear scalarisation.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy.
    r_help, r_harm : array_like of shape (X, Y)
        Helpfulness and harm tables, entries within ``+-1e100``.
    beta : float
        KL coefficient, ``> 0``.
    weights : array_like of shape (n,)
        Weights ``w`` in ``[0, 1]``.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution; uniform if omitted.

    Returns
    -------
    Front
        ``param = weights``; ``policies[i] = optimal_policy(pi_ref, r_w_i, beta)``.

    Raises
    ------
    ValueError
        On invalid tables, ``beta`` or a weight outside ``[0, 1]``.

    Notes
    -----
    ``pi_w`` is the unique maximiser of the strictly concave
    ``w J_help(pi) - (1 - w) J_harm(pi) = E_pi[r_w] - beta KL(pi || pi_ref)`` (Stage 3's
    optimum for the reward ``r_w``). A policy with ``J_help >= J_help(pi_w)`` and
    ``J_harm <= J_harm(pi_w)``, one strictly, would score strictly higher for
    ``0 < w < 1``: so every ``pi_w`` is Pareto-optimal (MORLHF; Rewarded Soups,
    Ramé et al. 2023, interpolate the same front in weight space).
    """
    pi_ref, r_help, r_harm, w_x = _check_tables(pi_ref, r_help, r_harm, prompt_probs)
    beta = check_positive(beta, "beta")
    weights = check_finite(weights, "weights")
    if weights.ndim != 1 or weights.size == 0:
        raise ValueError(f"weights must be a non-empty 1-D array, got shape {weights.shape}")
    if np.any((weights < 0) | (weights > 1)):
        bad = weights[(weights < 0) | (weights > 1)][0]
        raise ValueError(f"weights must be in [0, 1], got {bad!r}")
    rewards = [w * r_help - (1.0 - w) * r_harm for w in weights]
    return _front(pi_ref, r_help, r_harm, beta, weights, rewards, w_x)


def lagrangian_policy(pi_ref, r_help, r_harm, lam, beta) -> np.ndarray:
    """``optimal_policy(pi_ref, r_help - lam r_harm, beta)``: the Lagrangian's maximiser.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy.
    r_help, r_harm : array_like of shape (X, Y)
        Helpfulness and harm tables, entries within ``+-1e100``.
    lam : float
        Lagrange multiplier, in ``[0, 1e100]``.
    beta : float
        KL coefficient, ``> 0``.

    Returns
    -------
    ndarray of shape (X, Y)

    Raises
    ------
    ValueError
        On invalid tables, ``lam < 0`` or ``beta <= 0``.

    Notes
    -----
    ``L(pi, lam) = E[help] - beta KL - lam (E[harm] - c)`` is Stage 3's objective for the
    reward ``r_help - lam r_harm`` plus a constant, so its maximiser is Boltzmann.
    """
    pi_ref, r_help, r_harm, _ = _check_tables(pi_ref, r_help, r_harm, None)
    lam = check_float(lam, "lam", low=0.0, high=MAX_MAGNITUDE)
    return optimal_policy(pi_ref, r_help - lam * r_harm, check_positive(beta, "beta"))


def lagrangian_front(pi_ref, r_help, r_harm, beta, lams, prompt_probs=None) -> Front:
    """The exact front of ``(J_help, E[harm])``: Lagrangian policies over multipliers.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy.
    r_help, r_harm : array_like of shape (X, Y)
        Helpfulness and harm tables, entries within ``+-1e100``.
    beta : float
        KL coefficient, ``> 0``.
    lams : array_like of shape (n,)
        Multipliers in ``[0, 1e100]``.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution; uniform if omitted.

    Returns
    -------
    Front
        ``param = lams``; ``policies[i] = lagrangian_policy(pi_ref, r_help, r_harm, lams[i],
        beta)``. For each ``i`` it is the constrained optimum at ``c = harm[i]``.

    Raises
    ------
    ValueError
        On invalid tables, ``beta`` or a negative multiplier.

    Notes
    -----
    ``pi_lam`` maximises ``J_help - lam E[harm]``, so no policy has a higher ``J_help``
    and a lower ``E[harm]``: the curve ``c -> max {J_help : E[harm] <= c}``, concave
    and non-decreasing in ``c`` (Safe RLHF, Dai et al. 2024).
    """
    pi_ref, r_help, r_harm, w_x = _check_tables(pi_ref, r_help, r_harm, prompt_probs)
    beta = check_positive(beta, "beta")
    lams = check_finite(lams, "lams")
    if lams.ndim != 1 or lams.size == 0:
        raise ValueError(f"lams must be a non-empty 1-D array, got shape {lams.shape}")
    if np.any((lams < 0) | (lams > MAX_MAGNITUDE)):
        bad = lams[(lams < 0) | (lams > MAX_MAGNITUDE)][0]
        raise ValueError(f"lams must be in [0, {MAX_MAGNITUDE:g}], got {bad:g}")
    rewards = [r_help - lam * r_harm for lam in lams]
    return _front(pi_ref, r_help, r_harm, beta, lams, rewards, w_x)


# --------------------------------------------------------------------------------------
# the exact constrained optimum
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConstrainedOptimum:
    """The exact solution of ``max J_help s.t. E[harm] <= c``.

    Attributes
    ----------
    lam : float
        The optimal multiplier (0 when the constraint is inactive).
    policy : ndarray of shape (X, Y)
        ``lagrangian_policy(pi_ref, r_help, r_harm, lam, beta)``.
    help, harm, kl, j_help : float
        Its exact values (``j_help = help - beta kl``).
    c : float
        The harm budget.
    active : bool
        Whether the constraint binds (``harm == c`` up to the bisection tolerance).
    """

    lam: float
    policy: np.ndarray
    help: float
    harm: float
    kl: float
    j_help: float
    c: float
    active: bool


def constrained_optimum(pi_ref, r_help, r_harm, beta, c, prompt_probs=None, *,
                        tol: float = 1e-10, max_iter: int = 200) -> ConstrainedOptimum:
    """Maximise ``E[help] - beta KL`` subject to ``E[harm] <= c``, exactly, by bisection.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy.
    r_help, r_harm : array_like of shape (X, Y)
        Helpfulness and harm tables, entries within ``+-1e100``.
    beta : float
        KL coefficient, ``> 0``.
    c : float
        Harm budget; must exceed the smallest harm any policy on the support of
        ``pi_ref`` reaches, ``sum_x p(x) min_{y: pi_ref > 0} r_harm(x, y)``.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution; uniform if omitted.
    tol : float, default 1e-10
        Bisection stops when ``|E[harm] - c| <= tol`` (or the bracket is below 1e-15
        relative).
    max_iter : int, default 200
        Bisection steps at most.

    Returns
    -------
    ConstrainedOptimum

    Raises
    ------
    ValueError
        On invalid tables or ``beta``, or when the constraint is infeasible (``c`` at or
        below the smallest reachable harm).

    Notes
    -----
    Strong duality holds (concave objective, linear constraint, Slater's point exists
    when ``c`` exceeds the minimum). The dual function's maximiser is
    ``pi_lam = optimal_policy(pi_ref, r_help - lam r_harm, beta)`` and
    ``d E_{pi_lam}[harm] / d lam = -E_x Var_{pi_lam(.|x)}(r_harm) / beta <= 0``, so the
    harm falls monotonically in ``lam``: ``lam = 0`` if ``pi_0`` already meets the budget,
    otherwise the unique root of ``E_{pi_lam}[harm] = c``, found by bisection after
    doubling an upper bracket.
    """
    pi_ref, r_help, r_harm, w = _check_tables(pi_ref, r_help, r_harm, prompt_probs)
    beta = check_positive(beta, "beta")
    c = float(check_finite(c, "c"))
    tol = check_positive(tol, "tol")
    max_iter = check_int(max_iter, "max_iter")
    harm_min = float(w @ np.where(pi_ref > 0, r_harm, np.inf).min(-1))
    if c <= harm_min:
        raise ValueError(f"c must exceed the smallest reachable harm {harm_min:.6g}, got {c!r}")

    def harm_at(lam):
        pi = optimal_policy(pi_ref, r_help - lam * r_harm, beta)
        return float(w @ (pi * r_harm).sum(-1)), pi

    def result(lam, pi, active):
        help_, harm, kl = _values(pi, pi_ref, r_help, r_harm, w)
        return ConstrainedOptimum(lam=float(lam), policy=pi, help=float(help_),
                                  harm=float(harm), kl=float(kl),
                                  j_help=float(help_ - beta * kl), c=c, active=active)

    harm0, pi0 = harm_at(0.0)
    if harm0 <= c:
        return result(0.0, pi0, False)
    lo, hi = 0.0, 1.0
    while harm_at(hi)[0] > c:
        lo, hi = hi, 2.0 * hi
        if hi > 1e300:  # unreachable for c > harm_min; a guard against a silent loop
            raise ValueError(f"no finite multiplier meets c = {c!r}")
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        harm, _pi = harm_at(mid)
        if abs(harm - c) <= tol or hi - lo <= 1e-15 * max(hi, 1.0):
            break
        lo, hi = (mid, hi) if harm > c else (lo, mid)
    return result(mid, harm_at(mid)[1], True)


# --------------------------------------------------------------------------------------
# sampled training with a Lagrange multiplier updated by dual ascent
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConstrainedRun:
    """A sampled constrained run, recorded exactly after every step (0 = the start).

    Attributes
    ----------
    method : str
        The step's name (:func:`rlhf_toy.bandit.rl.method_name`).
    steps : ndarray of int, shape (S + 1,)
        ``0, 1, ..., S``.
    lam : ndarray of shape (S + 1,)
        The multiplier used by the next step (``lam[0]`` the initial one).
    harm_sampled : ndarray of shape (S + 1,)
        The batch mean of the trained harm ``E_hat[harm]`` that updated ``lam`` (``NaN``
        at step 0).
    help, harm, kl : ndarray of shape (S + 1,)
        Exact ``E[r_help]``, ``E[r_harm]`` of the trained rewards and ``E_x KL(pi || pi_ref)``.
    kl_to_optimum : ndarray of shape (S + 1,)
        ``E_x KL(pi || pi_c)`` to the exact constrained optimum ``pi_c`` of the trained
        rewards (:func:`constrained_optimum`), from ``log pi_c`` (finite where ``pi_c``
        underflows); ``+inf`` only where the true value exceeds float64 (a ``beta`` so
        small that ``log pi_c`` leaves the range on a response ``pi`` covers).
    eval : dict of str to ndarray of shape (S + 1,)
        Exact expectations of the ``eval_rewards`` (for example the gold tables).
    optimum : ConstrainedOptimum
        The exact constrained optimum of the trained rewards.
    policy : TabularPolicy
        The final policy.
    """

    method: str
    steps: np.ndarray
    lam: np.ndarray
    harm_sampled: np.ndarray
    help: np.ndarray
    harm: np.ndarray
    kl: np.ndarray
    kl_to_optimum: np.ndarray
    eval: dict
    optimum: ConstrainedOptimum
    policy: TabularPolicy

    def tail_mean(self, name: str, fraction: float = 0.25) -> float:
        """Mean of the curve ``name`` (an attribute or an ``eval`` key) over the last
        ``fraction`` of the steps: the dual iterates oscillate, their average settles."""
        curve = self.eval[name] if name in self.eval else getattr(self, name)
        k = max(1, int(round(fraction * (len(curve) - 1))))
        return float(np.mean(curve[-k:]))


def train_constrained(pi_ref, r_help, r_harm, beta, c, *, steps, config=None, lr=0.05,
                      eta=0.02, lam_init=0.0, eval_rewards=None, prompt_probs=None,
                      rng=0) -> ConstrainedRun:
    """Maximise ``E[help] - beta KL`` s.t. ``E[harm] <= c`` by sampled RL and dual ascent.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy (and the start).
    r_help, r_harm : array_like of shape (X, Y)
        The trained rewards (typically the proxies ``r_help_hat``, ``r_harm_hat``), entries
        within ``+-1e100``.
    beta : float
        KL coefficient, in ``(0, 1e100]`` (the sampled penalties and their variances stay
        finite); it overrides the config's ``beta``.
    c : float
        Harm budget (feasible: see :func:`constrained_optimum`).
    steps : int
        Sampled steps, ``>= 1``.
    config : step config of :mod:`rlhf_toy.rl`, optional
        Any step but online DPO (REINFORCE, RLOO, GRPO, PPO); ``RLOOConfig(group_size=8)``
        by default (KL in the reward: unbiased for the regularised objective).
    lr : float, default 0.05
        AdamW learning rate on the logits (no weight decay), as in
        :func:`rlhf_toy.bandit.rl.train_rl`; PPO's critic uses the same.
    eta : float, default 0.02
        Dual step size, ``> 0``. Much larger values (0.2 here) make ``lam`` swing between
        0 and twice its optimum in a limit cycle: the policy lags the multiplier.
    lam_init : float, default 0.0
        Initial multiplier, ``>= 0``.
    eval_rewards : dict of str to array_like of shape (X, Y), optional
        Tables whose exact expectation is recorded each step (the gold rewards).
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution of the exact records; uniform if omitted. (Every step uses
        every prompt once.)
    rng : numpy Generator or int
        Source of randomness.

    Returns
    -------
    ConstrainedRun

    Raises
    ------
    ValueError
        On invalid tables, hyper-parameters, an infeasible ``c`` or an online-DPO config.
    FloatingPointError
        If a step goes non-finite; the message names the step.

    Notes
    -----
    Step ``t`` trains on the reward ``r_help - lam_t r_harm`` with the config's step
    function (the KL penalty ``beta`` as the step applies it), then
    ``lam_{t+1} = max(0, lam_t + eta (E_hat[harm] - c))`` with ``E_hat[harm]`` the mean
    harm of the step's own samples: projected gradient descent on the dual
    ``g(lam) = max_pi L(pi, lam)``, ``dg/dlam = c - E_{pi_lam}[harm]`` (Safe RLHF,
    Dai et al. 2024; the primal-dual scheme of constrained RL, Altman 1999). The policy
    tracks ``pi_lam`` while ``lam`` drifts to the exact multiplier of
    :func:`constrained_optimum`; the iterates oscillate around it with an amplitude set by
    ``eta`` and the sampling noise, so compare tail averages (:meth:`ConstrainedRun.tail_mean`).
    """
    pi_ref, r_help, r_harm, w = _check_tables(pi_ref, r_help, r_harm, prompt_probs)
    beta = check_float(beta, "beta", low=0.0, low_open=True, high=MAX_MAGNITUDE)
    steps = check_int(steps, "steps", maximum=MAX_STEPS)
    lr = check_positive(lr, "lr")
    eta = check_positive(eta, "eta")
    lam = check_float(lam_init, "lam_init", low=0.0, high=MAX_MAGNITUDE)
    config = RLOOConfig(group_size=8) if config is None else config
    if isinstance(config, OnlineDPOConfig):
        raise ValueError("config must be a policy-gradient step (REINFORCE, RLOO, GRPO, PPO), "
                         "got an OnlineDPOConfig")
    name = method_name(config)  # TypeError on an unknown config
    config = replace(config, beta=beta)
    evals = {}
    for key, table in (eval_rewards or {}).items():
        table = check_finite(table, f"eval_rewards[{key!r}]")
        check_same_shape(table, pi_ref, f"eval_rewards[{key!r}]", "pi_ref")
        evals[key] = table
    optimum = constrained_optimum(pi_ref, r_help, r_harm, beta, c, w)
    rng = as_rng(rng)

    ref = TabularPolicy.from_probs(pi_ref)
    policy = TrainableTabularPolicy(ref.logits)
    optimiser = AdamW(policy.params, lr=lr, betas=(0.9, 0.999), weight_decay=0.0)
    extra = {}
    if isinstance(config, PPOConfig):
        critic = TabularCritic(pi_ref.shape[0])
        extra = {"critic": critic, "critic_optimiser": AdamW(critic.params, lr=lr,
                                                             betas=(0.9, 0.999),
                                                             weight_decay=0.0)}
    step_fn = STEPS[type(config)]
    prompts = np.arange(pi_ref.shape[0])
    batch_harm = []  # filled by the reward function: the step's sampled harms

    def reward_fn(x, responses, mask):
        y = responses[:, 0]
        batch_harm.append(r_harm[x, y])
        return r_help[x, y] - lam * r_harm[x, y]

    curves = {k: np.empty(steps + 1) for k in ("lam", "harm_sampled", "help", "harm", "kl",
                                               "kl_to_optimum")}
    eval_curves = {k: np.empty(steps + 1) for k in evals}

    def record(t):
        pi = policy.probs
        h, m, kl = _values(pi, pi_ref, r_help, r_harm, w)
        curves["help"][t], curves["harm"][t], curves["kl"][t] = h, m, kl
        # in log space: pi* underflows to 0 long before log pi* leaves the float64 range
        with np.errstate(invalid="ignore"):
            terms = pi * (np.log(np.where(pi > 0, pi, 1.0)) - log_optimum)
        curves["kl_to_optimum"][t] = w @ np.where(pi > 0, terms, 0.0).sum(-1)
        curves["lam"][t] = lam
        for key, table in evals.items():
            eval_curves[key][t] = w @ (pi * table).sum(-1)

    log_optimum = log_optimal_policy(pi_ref, r_help - optimum.lam * r_harm, beta)
    curves["harm_sampled"][0] = np.nan
    record(0)
    for t in range(1, steps + 1):
        batch_harm.clear()
        try:
            step_fn(policy, ref, optimiser, prompts, reward_fn, config, rng, **extra)
        except FloatingPointError as err:
            raise FloatingPointError(f"train_constrained ({name}): {err} at step {t}") from err
        z = policy.params["logits"]
        if np.any(np.isnan(z) | (z == np.inf)):
            raise FloatingPointError(f"train_constrained ({name}): non-finite logits at step {t}")
        harm_hat = float(np.mean(batch_harm[0]))  # the rollout's samples (first call)
        lam = max(0.0, lam + eta * (harm_hat - c))
        curves["harm_sampled"][t] = harm_hat
        record(t)
    return ConstrainedRun(method=name, steps=np.arange(steps + 1), eval=eval_curves,
                          optimum=optimum, policy=policy.snapshot(), **curves)


# --------------------------------------------------------------------------------------
# the study behind the figure and the notebook
# --------------------------------------------------------------------------------------


def multi_objective_study(world: TwoRewardBandit, beta, c, *, configs, seeds, steps=600,
                          lr=0.1, eta=0.02, weights=None, lams=None, n_random=300,
                          rng=0) -> dict:
    """Fronts, the constrained optimum and the landings of dual-ascent runs, proxy and gold.

    Parameters
    ----------
    world : TwoRewardBandit
        Training uses the proxies; everything is also scored on the gold tables.
    beta : float
        KL coefficient, ``> 0``.
    c : float
        Harm budget on the proxy harm.
    configs : dict of str to step config
        The sampled methods run by :func:`train_constrained`, by name.
    seeds : sequence of int
        One run per method and seed.
    steps, lr, eta : int, float, float
        As in :func:`train_constrained`.
    weights : array_like, optional
        Scalarisation weights; 21 from 0 to 1 if omitted.
    lams : array_like, optional
        Multipliers of the Lagrangian fronts; 0 and 60 log-spaced in ``[1e-3, 1e2]``.
    n_random : int, default 300
        Random policies (softmaxes of ``log pi_ref`` plus Gaussian noise of random scale).
    rng : numpy Generator or int
        Randomness of the random policies.

    Returns
    -------
    dict
        ``"scalarised"`` :class:`Front` (proxy), ``"random"``
        :func:`policy_values` of the random policies (proxy), ``"front"`` and
        ``"gold_front"`` Lagrangian :class:`Front` of the proxy and gold tables,
        ``"optimum"`` and ``"gold_optimum"`` :class:`ConstrainedOptimum` at ``c``,
        ``"optimum_on_gold"`` :func:`policy_values` of the proxy optimum on the gold
        tables, and ``"runs"``: per method the list of :class:`ConstrainedRun`, with
        ``"landings"`` / ``"gold_landings"``: per method ``(harm, j_help)`` arrays of the
        final policies on the proxy / gold tables.

    Raises
    ------
    ValueError
        On invalid settings (see :func:`train_constrained`).
    """
    beta = check_positive(beta, "beta")
    weights = np.linspace(0.0, 1.0, 21) if weights is None else weights
    lams = np.r_[0.0, np.geomspace(1e-3, 1e2, 60)] if lams is None else lams
    n_random = check_int(n_random, "n_random")
    pi_ref = world.pi_ref
    (h_hat, m_hat), (h_star, m_star) = world.rewards("proxy"), world.rewards("gold")
    rng = as_rng(rng)
    scales = rng.uniform(0.1, 3.0, size=(n_random, 1, 1))
    random_pis = softmax(np.log(pi_ref) + scales * rng.standard_normal((n_random,
                                                                        *pi_ref.shape)), -1)
    out = {
        "scalarised": scalarisation_front(pi_ref, h_hat, m_hat, beta, weights,
                                          world.prompt_probs),
        "random": policy_values(random_pis, pi_ref, h_hat, m_hat, beta, world.prompt_probs),
        "front": lagrangian_front(pi_ref, h_hat, m_hat, beta, lams, world.prompt_probs),
        "gold_front": lagrangian_front(pi_ref, h_star, m_star, beta, lams, world.prompt_probs),
        "optimum": constrained_optimum(pi_ref, h_hat, m_hat, beta, c, world.prompt_probs),
        "gold_optimum": constrained_optimum(pi_ref, h_star, m_star, beta, c,
                                            world.prompt_probs),
        "runs": {}, "landings": {}, "gold_landings": {},
    }
    out["optimum_on_gold"] = policy_values(out["optimum"].policy, pi_ref, h_star, m_star, beta,
                                           world.prompt_probs)
    for name, config in configs.items():
        runs = [train_constrained(pi_ref, h_hat, m_hat, beta, c, steps=steps, config=config,
                                  lr=lr, eta=eta, prompt_probs=world.prompt_probs, rng=seed)
                for seed in seeds]
        finals = np.stack([run.policy.probs for run in runs])  # (n_seeds, X, Y)
        proxy = policy_values(finals, pi_ref, h_hat, m_hat, beta, world.prompt_probs)
        gold = policy_values(finals, pi_ref, h_star, m_star, beta, world.prompt_probs)
        out["runs"][name] = runs
        out["landings"][name] = (proxy["harm"], proxy["j_help"])
        out["gold_landings"][name] = (gold["harm"], gold["j_help"])
    return out
