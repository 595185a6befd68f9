"""On- versus off-policy preference data on the exact bandit, at a fixed labelling budget.

The chapter's "DPO and PPO target the same optimal policy in theory, not in practice" has a
measurable side: where the labelled comparisons come from. With the same number ``budget``
of comparisons, labelled by Bradley-Terry on the gold reward ``r_star`` (the labelers):

- **offline DPO**: all pairs sampled from ``pi_ref`` once, then DPO on them;
- **iterative DPO**: ``rounds`` rounds; each samples ``budget / rounds`` pairs from the
  *current* policy, labels them and continues DPO from the current policy (Xu et al. 2024,
  "Is DPO superior to PPO for LLM alignment?"; iterative / online DPO);
- **online DPO**: fresh pairs at every gradient step (the limit ``rounds = steps``), and
  the online-DPO step of :mod:`rlhf_toy.rl` (one pair per prompt per step, AdamW);
- **RM + RL**: a Bradley-Terry reward model fitted on ``budget`` pairs from ``pi_ref``
  (Stage 2), then KL-regularised RL against it (Stage 3): the exact optimum of the fitted
  reward (the limit PPO converges to) or a sampled policy-gradient run.

Each method is scored exactly: gold reward ``E_pi r_star``, ``KL(pi || pi_ref)`` and the
distance ``KL(pi || pi*_beta(r_star))`` to the optimum the labels define. Tajwar et al.
(2024), "Preference fine-tuning of LLMs should leverage suboptimal, on-policy data", make
the case for on-policy sampling; here it is a measurement, over seeds.

The three DPO variants share one loss (:func:`rlhf_toy.bandit.train.train_dpo`), one
optimiser (full-batch gradient descent on each round's pairs) and one total number of
gradient steps: only the data schedule differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.special import rel_entr

from rlhf_toy._validate import (
    as_rng,
    check_bounded,
    check_distribution,
    check_int,
    check_nonnegative,
    check_positive,
    check_prompt_probs,
    check_same_shape,
)
from rlhf_toy.bandit.env import BanditEnv
from rlhf_toy.bandit.rl import method_name, train_rl
from rlhf_toy.bandit.train import train_dpo
from rlhf_toy.bradley_terry import fit_bradley_terry, sample_comparisons
from rlhf_toy.optimal import log_optimal_policy, optimal_policy
from rlhf_toy.rl import OnlineDPOConfig, PPOConfig

__all__ = [
    "DPORun",
    "OnOffComparison",
    "OnOffSweep",
    "compare_on_off_policy",
    "dpo_schedule",
    "exact_scores",
    "reward_model_then_rl",
    "sampled_rl_stage",
    "sweep_budgets",
]


def _check_world(pi_ref, r_star, prompt_probs):
    pi_ref = check_distribution(pi_ref, "pi_ref")
    if pi_ref.ndim != 2:
        raise ValueError(f"pi_ref must have shape (X, Y), got shape {pi_ref.shape}")
    r_star = check_bounded(r_star, "r_star")  # E_pi r_star and its sampled variance finite
    check_same_shape(r_star, pi_ref, "r_star", "pi_ref")
    prompt_probs = check_prompt_probs(prompt_probs, pi_ref.shape[0])
    return pi_ref, r_star, prompt_probs


def _scores(pi, pi_ref, r_star, log_pi_star, w) -> dict[str, float]:
    """Trusted exact ``gold``, ``kl`` and ``kl_to_optimum`` of one policy table.

    The KL to the optimum is taken from ``log pi*``: ``pi*`` underflows to 0 long before
    its logarithm leaves the float64 range (a small ``beta``).
    """
    with np.errstate(invalid="ignore"):
        terms = pi * (np.log(np.where(pi > 0, pi, 1.0)) - log_pi_star)
    return {"gold": float(w @ (pi * r_star).sum(-1)),
            "kl": float(w @ rel_entr(pi, pi_ref).sum(-1)),
            "kl_to_optimum": float(w @ np.where(pi > 0, terms, 0.0).sum(-1))}


def exact_scores(pi, pi_ref, r_star, beta, prompt_probs=None) -> dict[str, float]:
    """Exact gold reward, KL to the reference and KL to the optimum of a policy.

    Parameters
    ----------
    pi : array_like of shape (X, Y)
        The policy.
    pi_ref : array_like of shape (X, Y)
        Reference policy.
    r_star : array_like of shape (X, Y)
        Gold reward, entries within ``+-1e100``.
    beta : float
        KL coefficient of the optimum, ``> 0``.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution; uniform if omitted.

    Returns
    -------
    dict
        ``"gold"`` ``E_x E_pi r_star``, ``"kl"`` ``E_x KL(pi || pi_ref)`` and
        ``"kl_to_optimum"`` ``E_x KL(pi || pi*)`` with
        ``pi* = optimal_policy(pi_ref, r_star, beta)``, from ``log pi*`` (finite where
        ``pi*`` underflows); ``+inf`` only where the true value exceeds float64 (a
        ``beta`` so small that ``log pi*`` leaves the range on a response ``pi`` covers)
        or where ``pi* = 0 < pi`` (``pi_ref = 0``).

    Raises
    ------
    ValueError
        On invalid tables, shapes or ``beta``.
    """
    pi_ref, r_star, w = _check_world(pi_ref, r_star, prompt_probs)
    pi = check_distribution(pi, "pi")
    check_same_shape(pi, pi_ref, "pi", "pi_ref")
    log_pi_star = log_optimal_policy(pi_ref, r_star, check_positive(beta, "beta"))
    return _scores(pi, pi_ref, r_star, log_pi_star, w)


# --------------------------------------------------------------------------------------
# DPO with a data schedule: offline (1 round), iterative (k rounds), online (every step)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DPORun:
    """One DPO run under a data schedule, scored exactly after every round.

    Attributes
    ----------
    probs : ndarray of shape (X, Y)
        The final policy.
    labels : ndarray of int, shape (rounds + 1,)
        Comparisons labelled before each record (0 for the initial policy).
    gold, kl, kl_to_optimum : ndarray of shape (rounds + 1,)
        Exact scores (see :func:`exact_scores`) of the policy after each round.
    """

    probs: np.ndarray
    labels: np.ndarray
    gold: np.ndarray
    kl: np.ndarray
    kl_to_optimum: np.ndarray


def dpo_schedule(pi_ref, r_star, beta, *, budget, rounds, steps, lr, prompt_probs=None,
                 rng=0) -> DPORun:
    """DPO on ``budget`` labelled comparisons sampled from the policy in ``rounds`` rounds.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy (DPO's reference and the first round's sampler).
    r_star : array_like of shape (X, Y)
        Gold reward: the labelers' Bradley-Terry reward; entries within ``+-1e100``.
    beta : float
        DPO's KL coefficient, ``> 0``.
    budget : int
        Total labelled comparisons, ``>= rounds``.
    rounds : int
        Number of rounds: ``1`` is offline DPO, ``rounds == steps`` online DPO.
    steps : int
        Total full-batch gradient steps, a multiple of ``rounds`` (``steps / rounds`` per
        round, on that round's pairs).
    lr : float
        Gradient-descent step size, ``> 0``.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution of the pairs and of the scores; uniform if omitted.
    rng : numpy Generator or int
        Source of randomness (pairs and labels).

    Returns
    -------
    DPORun

    Raises
    ------
    ValueError
        On invalid tables or hyper-parameters.
    FloatingPointError
        If training goes non-finite (from :func:`rlhf_toy.bandit.train.train_dpo`).

    Notes
    -----
    Round ``k`` draws ``n_k`` pairs (``budget`` split as evenly as possible) from the
    current policy ``pi_k`` by :func:`rlhf_toy.bradley_terry.sample_comparisons` with the
    gold reward, and runs ``steps / rounds`` steps of DPO with reference ``pi_ref`` on
    those pairs only, starting from ``pi_k``'s logits. A sampled pair whose two responses
    are equal carries no gradient and still costs a label. The DPO loss's minimiser on
    data covering every pair is ``pi*_beta(r_star)`` (:mod:`rlhf_toy.bandit.train`), the
    target all schedules share.
    """
    pi_ref, r_star, w = _check_world(pi_ref, r_star, prompt_probs)
    beta = check_positive(beta, "beta")
    rounds = check_int(rounds, "rounds")
    budget = check_int(budget, "budget")
    steps = check_int(steps, "steps")
    lr = check_positive(lr, "lr")
    if budget < rounds:
        raise ValueError(f"budget must be >= rounds = {rounds}, got {budget}")
    if steps % rounds:
        raise ValueError(f"steps must be a multiple of rounds = {rounds}, got {steps}")
    rng = as_rng(rng)
    log_pi_star = log_optimal_policy(pi_ref, r_star, beta)
    sizes = np.full(rounds, budget // rounds)
    sizes[: budget % rounds] += 1
    with np.errstate(divide="ignore"):
        z = np.log(pi_ref)
    pi = pi_ref
    records = [_scores(pi, pi_ref, r_star, log_pi_star, w)]
    for n_pairs in sizes:
        x, y_w, y_l = sample_comparisons(pi, r_star, int(n_pairs), rng, prompt_probs=prompt_probs)
        result = train_dpo(pi_ref, x, y_w, y_l, beta, steps=steps // rounds, lr=lr,
                           init_logits=z, prompt_probs=w, record_every=steps // rounds)
        z = np.array(result.policy.logits)
        pi = np.array(result.policy.probs)
        records.append(_scores(pi, pi_ref, r_star, log_pi_star, w))
    return DPORun(probs=pi, labels=np.r_[0, np.cumsum(sizes)],
                  **{k: np.array([r[k] for r in records]) for k in records[0]})


# --------------------------------------------------------------------------------------
# reward model on pi_ref's pairs, then RL against it
# --------------------------------------------------------------------------------------


def reward_model_then_rl(pi_ref, r_star, beta, *, budget, l2=1.0, rl=None, prompt_probs=None,
                         rng=0) -> tuple[np.ndarray, np.ndarray]:
    """Fit a Bradley-Terry reward model on ``budget`` pairs from ``pi_ref``, then do RL on it.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy (the pairs' sampler and the RL reference).
    r_star : array_like of shape (X, Y)
        Gold reward (the labelers), entries within ``+-1e100``.
    beta : float
        KL coefficient of the RL stage, ``> 0``.
    budget : int
        Labelled comparisons, ``>= 1``.
    l2 : float, default 1.0
        Penalty of :func:`rlhf_toy.bradley_terry.fit_bradley_terry`.
    rl : callable, optional
        ``rl(pi_ref, r_hat, beta, rng) -> probs (X, Y)``: the RL stage (for example a
        PPO run of :mod:`rlhf_toy.bandit.rl`). If omitted, the exact optimum
        ``optimal_policy(pi_ref, r_hat, beta)``, the fixpoint PPO converges to.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution of the pairs; uniform if omitted.
    rng : numpy Generator or int
        Source of randomness (pairs, labels, then the RL stage).

    Returns
    -------
    probs : ndarray of shape (X, Y)
        The trained policy.
    r_hat : ndarray of shape (X, Y)
        The fitted reward model (rows centred).

    Raises
    ------
    ValueError
        On invalid tables or hyper-parameters, or if ``rl`` returns a non-distribution.

    Notes
    -----
    Chapter, Stages 2 and 3. A response never compared gets the row mean ``0`` of the
    fitted reward: RL neither favours nor avoids it, unlike DPO whose logits of uncovered
    responses move only through the normaliser.
    """
    pi_ref, r_star, w = _check_world(pi_ref, r_star, prompt_probs)
    beta = check_positive(beta, "beta")
    budget = check_int(budget, "budget")
    l2 = check_nonnegative(l2, "l2")
    rng = as_rng(rng)
    x, y_w, y_l = sample_comparisons(pi_ref, r_star, budget, rng, prompt_probs=prompt_probs)
    r_hat = fit_bradley_terry(x, y_w, y_l, *pi_ref.shape, l2=l2)
    if rl is None:
        return optimal_policy(pi_ref, r_hat, beta), r_hat
    probs = check_distribution(rl(pi_ref, r_hat, beta, rng), "rl(...)")
    check_same_shape(probs, pi_ref, "rl(...)", "pi_ref")
    return probs, r_hat


def sampled_rl_stage(config=None, *, steps: int = 150, lr: float = 0.05) -> Callable:
    """The RL stage of :func:`reward_model_then_rl` as a sampled run.

    A run of :func:`rlhf_toy.bandit.rl.train_rl` against the fitted reward model.

    Parameters
    ----------
    config : step config of :mod:`rlhf_toy.rl`, optional
        ``PPOConfig()`` by default (KL in the reward, learned per-prompt critic, clip);
        its ``beta`` is replaced by the stage's. Not online DPO (it needs labels).
    steps : int, default 150
        Sampled steps (each samples ``config.group_size`` responses for every prompt,
        scored by the reward model: these cost no labels).
    lr : float, default 0.05
        AdamW learning rate on the logits.

    Returns
    -------
    callable
        ``stage(pi_ref, r_hat, beta, rng) -> probs (X, Y)``.

    Raises
    ------
    ValueError
        On bad ``steps``, ``lr`` or an online-DPO config.
    TypeError
        If ``config`` is not a step config.
    """
    config = PPOConfig() if config is None else config
    method_name(config)  # TypeError on an unknown config
    if isinstance(config, OnlineDPOConfig):
        raise ValueError("config must be a policy-gradient step, got an OnlineDPOConfig")
    steps = check_int(steps, "steps")
    lr = check_positive(lr, "lr")

    def stage(pi_ref, r_hat, beta, rng):
        # The world of the stage: its "gold" is the reward model (only r_hat is optimised;
        # the gold score is computed exactly afterwards).
        env = BanditEnv(pi_ref=pi_ref, r_star=r_hat, r_hat=r_hat,
                        prompt_probs=np.full(pi_ref.shape[0], 1.0 / pi_ref.shape[0]))
        result = train_rl(env, replace(config, beta=beta), steps=steps, lr=lr, rng=rng)
        return np.array(result.policy.probs)

    return stage


# --------------------------------------------------------------------------------------
# the comparison over seeds
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnOffComparison:
    """Exact scores of each method at one labelling budget, over seeds.

    Attributes
    ----------
    methods : tuple of str
        Method names, in order.
    gold, kl, kl_to_optimum : dict of str to ndarray of shape (n_seeds,)
        Exact scores of each method's final policy per seed.
    curves : dict of str to DPORun list
        The DPO runs per method (per-round scores), one per seed.
    optimum : dict of str to float
        Scores of ``pi*_beta(r_star)`` itself (``kl_to_optimum`` 0) and of ``pi_ref``.
    budget : int
        Labelled comparisons every method used.
    """

    methods: tuple
    gold: dict
    kl: dict
    kl_to_optimum: dict
    curves: dict = field(default_factory=dict)
    optimum: dict = field(default_factory=dict)
    budget: int = 0

    def summary(self) -> dict[str, dict[str, float]]:
        """Per method: mean and standard error over seeds of gold and kl_to_optimum."""
        out = {}
        for m in self.methods:
            n = len(self.gold[m])
            se = np.sqrt(n) if n > 1 else np.inf
            out[m] = {"gold": float(np.mean(self.gold[m])),
                      "gold_se": float(np.std(self.gold[m], ddof=1) / se) if n > 1 else 0.0,
                      "kl_to_optimum": float(np.mean(self.kl_to_optimum[m])),
                      "kl_to_optimum_se": (float(np.std(self.kl_to_optimum[m], ddof=1) / se)
                                           if n > 1 else 0.0),
                      "kl": float(np.mean(self.kl[m]))}
        return out


#: The methods :func:`compare_on_off_policy` knows (besides the names of its ``rl`` stages).
METHODS = ("offline_dpo", "iterative_dpo", "online_dpo", "online_dpo_adamw", "rm_optimum")


def compare_on_off_policy(pi_ref, r_star, beta, *, budget, seeds, steps=1000, lr=None,
                          iterative_rounds=5, online_lr=0.05, l2=1.0,
                          rl: dict[str, Callable] | None = None, methods=None,
                          prompt_probs=None) -> OnOffComparison:
    """Offline, iterative and online DPO and RM + RL on the same labelling budget, per seed.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy.
    r_star : array_like of shape (X, Y)
        Gold reward (the labelers), entries within ``+-1e100``.
    beta : float
        KL coefficient shared by every method (and by the optimum ``pi*_beta(r_star)``).
    budget : int
        Labelled comparisons per method, ``>= steps`` (online DPO labels
        ``budget / steps`` fresh pairs per step, split as evenly as possible).
    seeds : sequence of int
        One run of every method per seed (the world is fixed).
    steps : int, default 1000
        Gradient steps of the three gradient-descent DPO variants; a multiple of
        ``iterative_rounds``.
    lr : float, optional
        Their step size; ``1 / beta**2`` by default (the DPO curvature scale).
    iterative_rounds : int, default 5
        Rounds of iterative DPO.
    online_lr : float, default 0.05
        AdamW learning rate of ``"online_dpo_adamw"``: the online-DPO step of
        :mod:`rlhf_toy.rl` run by :func:`rlhf_toy.bandit.rl.train_rl`, one fresh pair per
        prompt per step for ``budget // X`` steps.
    l2 : float, default 1.0
        Bradley-Terry penalty of the reward model: the MAP under the ``N(0, 1)`` prior the
        gold reward of :func:`rlhf_toy.bandit.env.make_bandit` is drawn from.
    rl : dict of str to callable, optional
        Sampled RL stages after the reward model, by name (see
        :func:`reward_model_then_rl`); ``{"ppo": sampled_rl_stage()}`` if omitted, ``{}``
        for none. The exact optimum of the fitted reward (``"rm_optimum"``, the fixpoint
        of every unbiased RL stage) is a method of its own.
    methods : sequence of str, optional
        Which of :data:`METHODS` and the ``rl`` names to run; all by default.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution; uniform if omitted.

    Returns
    -------
    OnOffComparison

    Raises
    ------
    ValueError
        On invalid tables, hyper-parameters, an unknown method or an empty ``seeds``.

    Notes
    -----
    Each seed draws independent pairs and labels for each DPO method (seed
    ``(seed, method index)``); every RL stage of a seed shares one reward model. The
    samples PPO draws are scored by the reward model and cost no labels.
    """
    pi_ref, r_star, w = _check_world(pi_ref, r_star, prompt_probs)
    beta = check_positive(beta, "beta")
    budget = check_int(budget, "budget")
    steps = check_int(steps, "steps")
    iterative_rounds = check_int(iterative_rounds, "iterative_rounds")
    lr = 1.0 / beta**2 if lr is None else check_positive(lr, "lr")
    online_lr = check_positive(online_lr, "online_lr")
    if budget < steps:
        raise ValueError(f"budget must be >= steps = {steps} (online DPO labels at least "
                         f"one pair per step), got {budget}")
    if budget < pi_ref.shape[0]:
        raise ValueError(f"budget must be >= the number of prompts {pi_ref.shape[0]}, "
                         f"got {budget}")
    seeds = [check_int(s, "seed", minimum=0) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    rl = {"ppo": sampled_rl_stage()} if rl is None else dict(rl)
    known = (*METHODS, *rl)
    methods = known if methods is None else tuple(methods)
    unknown = sorted(set(methods) - set(known))
    if unknown or not methods:
        raise ValueError(f"methods must be among {known}, got {list(methods)}")
    pi_star = optimal_policy(pi_ref, r_star, beta)
    log_pi_star = log_optimal_policy(pi_ref, r_star, beta)
    schedules = {"offline_dpo": 1, "iterative_dpo": iterative_rounds, "online_dpo": steps}
    labelers = BanditEnv(pi_ref=pi_ref, r_star=r_star, r_hat=r_star, prompt_probs=w)
    scores = {m: [] for m in methods}
    curves = {m: [] for m in schedules if m in methods}
    for seed in seeds:
        for i, (name, rounds) in enumerate(schedules.items()):
            if name not in methods:
                continue
            run = dpo_schedule(pi_ref, r_star, beta, budget=budget, rounds=rounds, steps=steps,
                               lr=lr, prompt_probs=prompt_probs,
                               rng=np.random.default_rng([seed, i]))
            curves[name].append(run)
            scores[name].append(_scores(run.probs, pi_ref, r_star, log_pi_star, w))
        if "online_dpo_adamw" in methods:
            result = train_rl(labelers, OnlineDPOConfig(beta=beta), lr=online_lr,
                              steps=budget // pi_ref.shape[0],
                              rng=np.random.default_rng([seed, len(schedules)]))
            scores["online_dpo_adamw"].append(_scores(np.array(result.policy.probs), pi_ref,
                                                      r_star, log_pi_star, w))
        for name in ("rm_optimum", *rl):
            if name not in methods:
                continue
            stage = None if name == "rm_optimum" else rl[name]
            # The same pairs for every RL stage of a seed: they share the reward model.
            probs, _ = reward_model_then_rl(pi_ref, r_star, beta, budget=budget, l2=l2, rl=stage,
                                            prompt_probs=prompt_probs,
                                            rng=np.random.default_rng([seed, len(schedules) + 1]))
            scores[name].append(_scores(probs, pi_ref, r_star, log_pi_star, w))
    table = {k: {m: np.array([s[k] for s in scores[m]]) for m in methods}
             for k in ("gold", "kl", "kl_to_optimum")}
    optimum = {"gold": float(w @ (pi_star * r_star).sum(-1)),
               "kl": float(w @ rel_entr(pi_star, pi_ref).sum(-1)),
               "gold_ref": float(w @ (pi_ref * r_star).sum(-1))}
    return OnOffComparison(methods=methods, curves=curves, optimum=optimum, budget=budget,
                           **table)


@dataclass(frozen=True)
class OnOffSweep:
    """:func:`compare_on_off_policy` at several budgets.

    Attributes
    ----------
    budgets : ndarray of int, shape (n,)
    methods : tuple of str
    gold, kl, kl_to_optimum : dict of str to ndarray of shape (n, n_seeds)
    optimum : dict of str to float
        As in :class:`OnOffComparison`.
    """

    budgets: np.ndarray
    methods: tuple
    gold: dict
    kl: dict
    kl_to_optimum: dict
    optimum: dict


def sweep_budgets(pi_ref, r_star, beta, *, budgets, seeds, **kwargs) -> OnOffSweep:
    """:func:`compare_on_off_policy` at each budget of ``budgets`` (same seeds).

    Parameters
    ----------
    pi_ref, r_star, beta
        As in :func:`compare_on_off_policy`.
    budgets : sequence of int
        Labelling budgets, each ``>= steps``.
    seeds : sequence of int
    **kwargs
        Passed to :func:`compare_on_off_policy`.

    Returns
    -------
    OnOffSweep

    Raises
    ------
    ValueError
        If ``budgets`` is empty, or as :func:`compare_on_off_policy`.
    """
    budgets = [check_int(b, "budget") for b in budgets]
    if not budgets:
        raise ValueError("budgets must not be empty")
    runs = [compare_on_off_policy(pi_ref, r_star, beta, budget=b, seeds=seeds, **kwargs)
            for b in budgets]
    methods = runs[0].methods
    stack = {k: {m: np.stack([getattr(r, k)[m] for r in runs]) for m in methods}
             for k in ("gold", "kl", "kl_to_optimum")}
    return OnOffSweep(budgets=np.array(budgets), methods=methods, optimum=runs[0].optimum,
                      **stack)
