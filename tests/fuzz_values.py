"""Valid example calls of the public functions, and the bad values the fuzz suite tries.

``REGISTRY`` maps ``"module.function"`` to an :class:`Entry`: a factory of valid keyword
arguments (a fresh copy per call) and what the function documents about infinities. The
fuzz suite (``tests/test_fuzz.py``) replaces one argument at a time by each value of
:func:`bad_values` for that argument's kind and checks the promise of the conventions: a
``ValueError`` / ``TypeError`` whose message names the argument, or a finite result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

HUGE_INT = 10**400


@dataclass(frozen=True)
class Entry:
    """A valid call and the documented exceptions to "finite result".

    Attributes
    ----------
    kwargs : callable returning dict
        A valid call's keyword arguments.
    inf_result : bool
        The function documents ``+-inf`` results (a KL where ``q = 0 < p``).
    inf_args : tuple of str
        Arguments where ``-inf`` / ``+inf`` entries are documented as valid input.
    count_args : tuple of str
        Integer arrays that are counts (a grid of ``n``), not indices into a table.
    none_args : tuple of str
        Arguments whose documented values include ``None`` though their default is not.
    weight_args : tuple of str
        Boolean masks that also take any finite weight ``>= 0`` (a 2 is valid there).
    nan_fields : tuple of str
        Fields or keys of the result documented to hold ``NaN`` placeholders (a diagnostic
        at step 0, before any step); their values are not checked.
    diverge_args : tuple of str
        Arguments whose non-finite values are a diverged run (a training loss): a
        ``FloatingPointError`` naming the step is the documented answer there.
    inf_fields : tuple of str
        Fields or keys of the result documented to be ``+inf`` where the true value
        exceeds float64; NaN there is still a failure.
    shape_args : tuple of str
        Tuples that are array shapes of any length: a shorter or reversed one is valid.
    pair_args : tuple of str
        Tuples that are pairs of values (``(mean, std)``), not ``(low, high)`` brackets:
        their reversal is valid.
    trains : bool
        A training loop: a valid value that makes the run diverge (``lr = 1e308``) may
        stop it with a ``FloatingPointError`` naming the step, as the conventions ask.
    """

    kwargs: Callable[[], dict]
    inf_result: bool = False
    inf_args: tuple = ()
    count_args: tuple = field(default=())
    none_args: tuple = ()
    weight_args: tuple = ()
    nan_fields: tuple = ()
    diverge_args: tuple = ()
    inf_fields: tuple = ()
    pair_args: tuple = ()
    shape_args: tuple = ()
    trains: bool = False


# --------------------------------------------------------------------------------------
# the bad values, per kind of argument
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """A bad value: ``must_fail`` means only a named error keeps the promise;
    ``type_error`` that the error must be a ``TypeError`` (a value of the wrong kind)."""

    label: str
    value: object
    must_fail: bool = True
    type_error: bool = False


def _float_bads():
    return [
        Bad("nan", float("nan")),
        Bad("inf", float("inf")),
        Bad("-inf", float("-inf")),
        Bad("negative", -1.0, must_fail=False),
        Bad("zero", 0.0, must_fail=False),
        Bad("subnormal", 5e-324, must_fail=False),
        Bad("1e308", 1e308, must_fail=False),
        Bad("str", "0.5", type_error=True),
        Bad("bool", True, type_error=True),
        Bad("complex", 0.5 + 0.5j, type_error=True),
        Bad("None", None, type_error=True),
        Bad("list", [0.5], type_error=True),
        Bad("huge int", HUGE_INT),
    ]


def _int_bads():
    return [
        Bad("2.7", 2.7, type_error=True),
        Bad("3.0", 3.0, type_error=True),
        Bad("str", "3", type_error=True),
        Bad("bool", True, type_error=True),
        Bad("None", None, type_error=True),
        Bad("nan", float("nan"), type_error=True),
        Bad("zero", 0, must_fail=False),
        Bad("negative", -1, must_fail=False),
        Bad("huge int", HUGE_INT),
        Bad("-huge int", -HUGE_INT, must_fail=False),
    ]


def _array_bads(a: np.ndarray, inf_ok: bool):
    first = (0,) * a.ndim
    out = []
    for label, v in (("nan entry", np.nan), ("+inf entry", np.inf), ("-inf entry", -np.inf)):
        b = a.copy()
        b[first] = v
        out.append(Bad(label, b, must_fail=not (inf_ok and label != "nan entry")))
    big = a.copy()
    big[first] = 1e308
    out.append(Bad("1e308 entry", big, must_fail=False))
    tiny = a.copy()
    tiny[first] = 5e-324
    out.append(Bad("subnormal entry", tiny, must_fail=False))
    out.append(Bad("-1e308 entry", -big, must_fail=False))
    out.append(Bad("empty", np.zeros((0,) + a.shape[1:]), must_fail=False))
    wide = np.concatenate([a, np.zeros(a.shape[:-1] + (1,))], axis=-1)
    out.append(Bad("extra column", wide, must_fail=False))
    if a.ndim >= 2:
        out.append(Bad("one row", a[:1], must_fail=False))
        out.append(Bad("flattened", a.ravel(), must_fail=False))
    out.append(Bad("extra axis", a[None], must_fail=False))
    out.append(Bad("0-d", np.float64(a.ravel()[0]), must_fail=False))
    out.append(Bad("list", a.tolist(), must_fail=False))
    out.append(Bad("bools", a > a.mean(), type_error=True))
    out.append(Bad("strings", a.astype(str), type_error=True))
    out.append(Bad("complex", a + 1j, type_error=True))
    out.append(Bad("None", None, type_error=True))
    out.append(Bad("ragged", [[0.5], [0.5, 0.5]], must_fail=True))
    return out


def _count_bads(a: np.ndarray):
    return [
        Bad("zero", np.zeros_like(a), must_fail=False),
        Bad("negative", -a, must_fail=False),
        Bad("huge", np.full_like(a, 2**62), must_fail=False),
        Bad("non-integer floats", a + 0.5),
        Bad("nan", np.full(a.shape, np.nan)),
        Bad("bools", a > 1, type_error=True),
        Bad("strings", a.astype(str), type_error=True),
        Bad("complex", a + 0j, type_error=True),
        Bad("empty", np.zeros(0, dtype=np.int64), must_fail=False),
        Bad("2-D", a[None], must_fail=False),
        Bad("list", a.tolist(), must_fail=False),
    ]


def _index_bads(a: np.ndarray):
    return [
        Bad("out of range", a + 10**6),
        Bad("negative", a - 10**6),
        Bad("huge", np.full_like(a, 2**62)),
        Bad("float dtype", a.astype(np.float64) + 0.5, type_error=True),
        Bad("bools", a > 0, type_error=True),
        Bad("strings", a.astype(str), type_error=True),
        Bad("empty", np.zeros(0, dtype=np.int64), must_fail=False),
        Bad("one fewer", a[:-1], must_fail=False),
        Bad("2-D", a[None], must_fail=False),
        Bad("list", a.tolist(), must_fail=False),
        Bad("None", None, type_error=True),
    ]


def _dict_bads(d: dict):
    key, value = next(iter(d.items()))
    if not isinstance(value, np.ndarray) or value.ndim == 0:
        return [Bad("not a dict", "gold", type_error=True)]  # a dict of options
    v = np.asarray(value, dtype=np.float64)
    nan = v.copy()
    nan.flat[0] = np.nan
    return [
        Bad("nan table", {key: nan}),
        Bad("wrong shape", {key: v[..., :-1]}, must_fail=False),
        Bad("complex table", {key: v + 1j}, type_error=True),
        Bad("not a dict", "gold", type_error=True),
        Bad("list of tables", [v], type_error=True),
    ]


def _rng_bads():
    return [
        Bad("None", None, type_error=True),
        Bad("float", 1.5, type_error=True),
        Bad("str", "0", type_error=True),
        Bad("bool", True, type_error=True),
        Bad("negative", -1),
        Bad("huge int", HUGE_INT),
    ]


def bad_values(value, inf_ok: bool = False, count: bool = False,
               weights: bool = False, pair: bool = False, shape: bool = False) -> list[Bad]:
    """The bad values to try in place of ``value`` (its kind inferred from it)."""
    if isinstance(value, np.random.Generator):
        return _rng_bads()
    if isinstance(value, bool):
        return []
    if isinstance(value, float):
        return _float_bads()
    if isinstance(value, int):
        return _int_bads()
    if isinstance(value, dict):
        return _dict_bads(value)
    if isinstance(value, tuple):
        return [Bad("short", value[:1], must_fail=not shape),
                Bad("nan", (np.nan,) * len(value)),
                Bad("reversed", value[::-1], must_fail=not (pair or shape)),
                Bad("str", ("a",) * len(value), type_error=True)]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iu":
            return _count_bads(value) if count else _index_bads(value)
        if value.dtype.kind == "b":
            return [Bad("strings", value.astype(str), type_error=True),
                    Bad("nan", np.where(value, np.nan, 0.0)),
                    Bad("2", value * 2.0, must_fail=not weights),
                    Bad("complex", value + 1j, type_error=True)]
        return _array_bads(value, inf_ok)
    return []


def joint_bads(base: dict, optional: set) -> list[tuple[str, dict]]:
    """Bad values that only make sense together: every table empty at once (zero prompts),
    optional arguments at their defaults."""
    tables = {k: v for k, v in base.items()
              if isinstance(v, np.ndarray) and v.ndim >= 1 and v.dtype.kind == "f"}
    if not tables:
        return []
    empty = {k: (None if k in optional else v) for k, v in base.items()}
    for k, v in tables.items():
        if k not in optional:
            empty[k] = np.zeros((0,) + v.shape[1:])
    return [("every table empty", empty)]


# --------------------------------------------------------------------------------------
# valid calls
# --------------------------------------------------------------------------------------


def _pi_ref():
    return np.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]])


def _pi():
    return np.array([[0.1, 0.6, 0.3], [0.4, 0.4, 0.2]])


def _reward():
    return np.array([[0.0, 1.0, 2.0], [1.0, -1.0, 0.5]])


def _gold():
    return np.array([[0.5, 1.5, -1.0], [0.0, 2.0, 1.0]])


def _pairs():
    return dict(policy_chosen=np.array([-1.0, -2.5, -0.5]),
                policy_rejected=np.array([-2.0, -1.0, -3.0]),
                ref_chosen=np.array([-1.2, -2.0, -0.7]),
                ref_rejected=np.array([-1.8, -1.5, -2.0]))


def _comparisons():
    return dict(x=np.array([0, 0, 1, 1, 1, 0]), y_w=np.array([2, 1, 0, 0, 2, 2]),
                y_l=np.array([0, 0, 1, 2, 1, 1]))


def _tokens():
    return np.array([[0.5, -1.0, 2.0, 0.3], [1.5, 0.2, -0.7, 0.1]])


def _mask():
    return np.array([[True, True, True, False], [True, True, False, False]])


REGISTRY: dict[str, Entry] = {
    # kl
    "rlhf_toy.kl.kl_divergence": Entry(lambda: dict(p=_pi(), q=_pi_ref(), axis=-1)),
    "rlhf_toy.kl.entropy": Entry(lambda: dict(p=_pi(), axis=-1)),
    "rlhf_toy.kl.kl_estimates": Entry(
        lambda: dict(logp_sampled=np.log(_pi()), logp_other=np.log(_pi_ref())),
        inf_result=True, inf_args=("logp_other",)),
    # optimal
    "rlhf_toy.optimal.log_optimal_policy": Entry(
        lambda: dict(pi_ref=_pi_ref(), reward=_reward(), beta=0.5), inf_result=True),
    "rlhf_toy.optimal.optimal_policy": Entry(
        lambda: dict(pi_ref=_pi_ref(), reward=_reward(), beta=0.5)),
    "rlhf_toy.optimal.log_partition": Entry(
        lambda: dict(pi_ref=_pi_ref(), reward=_reward(), beta=0.5), inf_result=True),
    "rlhf_toy.optimal.objective": Entry(
        lambda: dict(pi=_pi(), pi_ref=_pi_ref(), reward=_reward(), beta=0.5,
                     prompt_probs=np.array([0.3, 0.7])), inf_result=True),
    "rlhf_toy.optimal.optimal_value": Entry(
        lambda: dict(pi_ref=_pi_ref(), reward=_reward(), beta=0.5,
                     prompt_probs=np.array([0.3, 0.7]))),
    "rlhf_toy.optimal.objective_gradient": Entry(
        lambda: dict(pi=_pi(), pi_ref=_pi_ref(), reward=_reward(), beta=0.5,
                     prompt_probs=np.array([0.3, 0.7])), inf_result=True),
    "rlhf_toy.optimal.reward_kl_frontier": Entry(
        lambda: dict(pi_ref=_pi_ref(), reward=_reward(), betas=np.array([0.1, 1.0, 10.0]),
                     prompt_probs=np.array([0.3, 0.7]), eval_rewards={"gold": _gold()})),
    # best_of_n
    "rlhf_toy.best_of_n.best_of_n_policy": Entry(
        lambda: dict(pi_ref=_pi_ref(), reward=_reward(), n=4)),
    "rlhf_toy.best_of_n.best_of_n_kl": Entry(
        lambda: dict(pi_ref=_pi_ref(), reward=_reward(), n=4)),
    "rlhf_toy.best_of_n.best_of_n_kl_bound": Entry(lambda: dict(n=4)),
    "rlhf_toy.best_of_n.best_of_n_win_rate": Entry(
        lambda: dict(pi_ref=_pi_ref(), reward=_reward(), n=4)),
    "rlhf_toy.best_of_n.best_of_n_expected_reward": Entry(
        lambda: dict(pi_ref=_pi_ref(), select_reward=_reward(), eval_reward=_gold(), n=4)),
    "rlhf_toy.best_of_n.best_of_n_sweep": Entry(
        lambda: dict(pi_ref=_pi_ref(), reward=_reward(), ns=np.array([1, 2, 8]),
                     prompt_probs=np.array([0.3, 0.7]), eval_rewards={"gold": _gold()}),
        count_args=("ns",)),
    "rlhf_toy.best_of_n.best_of_n_estimator": Entry(
        lambda: dict(proxy_samples=np.array([[0.1, 0.5, 0.2, 0.9], [1.0, 0.0, 1.0, 2.0]]),
                     eval_samples=np.array([[1.0, 0.0, 2.0, 0.5], [0.3, 0.1, 0.2, 0.4]]),
                     n=2)),
    "rlhf_toy.best_of_n.best_of_n_disjoint_estimator": Entry(
        lambda: dict(proxy_samples=np.array([[0.1, 0.5, 0.2, 0.9], [1.0, 0.0, 1.0, 2.0]]),
                     eval_samples=np.array([[1.0, 0.0, 2.0, 0.5], [0.3, 0.1, 0.2, 0.4]]),
                     n=2)),
    "rlhf_toy.best_of_n.kl_matched_beta": Entry(
        lambda: dict(pi_ref=_pi_ref(), reward=_reward(), kl=0.05,
                     prompt_probs=np.array([0.3, 0.7]), bracket=(1e-6, 1e6))),
    # preference losses
    "rlhf_toy.preference_losses.implicit_reward": Entry(
        lambda: dict(policy_logp=np.array([-1.0, -2.0]), ref_logp=np.array([-1.5, -1.0]),
                     beta=0.1)),
    "rlhf_toy.preference_losses.dpo_loss": Entry(lambda: dict(**_pairs(), beta=0.1)),
    "rlhf_toy.preference_losses.ipo_loss": Entry(lambda: dict(**_pairs(), beta=0.1)),
    "rlhf_toy.preference_losses.cdpo_loss": Entry(
        lambda: dict(**_pairs(), beta=0.1, label_smoothing=0.1)),
    "rlhf_toy.preference_losses.hinge_loss": Entry(lambda: dict(**_pairs(), beta=0.1)),
    "rlhf_toy.preference_losses.simpo_loss": Entry(
        lambda: dict(policy_chosen=np.array([-3.0, -6.0]), policy_rejected=np.array([-4.0, -2.0]),
                     beta=2.0, gamma=0.5, len_chosen=np.array([3.0, 4.0]),
                     len_rejected=np.array([2.0, 5.0]))),
    "rlhf_toy.preference_losses.orpo_loss": Entry(
        lambda: dict(policy_chosen=np.array([-3.0, -6.0]), policy_rejected=np.array([-4.0, -2.0]),
                     lam=0.5, len_chosen=np.array([3.0, 4.0]),
                     len_rejected=np.array([2.0, 5.0]))),
    "rlhf_toy.preference_losses.kto_loss": Entry(
        lambda: dict(policy_logp=np.array([-1.0, -2.0, -0.5]),
                     ref_logp=np.array([-1.5, -1.0, -0.5]),
                     desirable=np.array([True, False, True]), beta=0.1,
                     kl_ref=np.array([0.2, 0.1, 0.0]),
                     lambda_d=1.0, lambda_u=1.5)),
    # bradley_terry
    "rlhf_toy.bradley_terry.preference_probability": Entry(
        lambda: dict(r_chosen=np.array([0.0, 2.0]), r_rejected=np.array([1.0, -1.0]))),
    "rlhf_toy.bradley_terry.sample_comparisons": Entry(
        lambda: dict(pi=_pi_ref(), reward=_reward(), n_pairs=16, rng=np.random.default_rng(0),
                     prompt_probs=np.array([0.3, 0.7]))),
    "rlhf_toy.bradley_terry.bradley_terry_nll": Entry(
        lambda: dict(reward=_reward(), **_comparisons(), l2=0.1)),
    "rlhf_toy.bradley_terry.bradley_terry_grad": Entry(
        lambda: dict(reward=_reward(), **_comparisons(), l2=0.1)),
    "rlhf_toy.bradley_terry.fit_bradley_terry": Entry(
        lambda: dict(**_comparisons(), n_prompts=2, n_responses=3, l2=0.1)),
    "rlhf_toy.bradley_terry.fit_bradley_terry_with_prior": Entry(
        lambda: dict(**_comparisons(), n_prompts=2, n_responses=3,
                     prior_mean=np.array([[0.1, -0.2, 0.3], [0.0, 0.5, -0.5]]), l2=1.0)),
    "rlhf_toy.bradley_terry.comparison_counts": Entry(
        lambda: dict(**_comparisons(), n_prompts=2, n_responses=3)),
    # gao
    "rlhf_toy.gao.gao_curve": Entry(lambda: dict(d=np.array([0.0, 0.5, 2.0]), a=1.0, b=0.3)),
    "rlhf_toy.gao.fit_gao": Entry(
        lambda: dict(d=np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0]),
                     gold=np.array([0.0, 0.4, 0.7, 0.8, 0.75, 0.4]), gold_ref=0.0),
        inf_result=True),
    # bandit core
    "rlhf_toy.bandit.env.make_bandit": Entry(
        lambda: dict(n_prompts=2, n_responses=3, noise_scale=0.5, ref_temperature=1.0, rng=0)),
    "rlhf_toy.bandit.train.gradient_ascent": Entry(
        lambda: dict(pi_ref=_pi_ref(), reward=_reward(), beta=0.5, steps=3, lr=0.5,
                     prompt_probs=np.array([0.3, 0.7]), eval_rewards={"gold": _gold()})),
    "rlhf_toy.bandit.train.all_pairs_preferences": Entry(
        lambda: dict(reward=_reward(), pi=_pi(), covered=np.array([[True, True, False],
                                                                   [True, True, True]]),
                     prompt_probs=np.array([0.3, 0.7]))),
    "rlhf_toy.bandit.train.train_dpo": Entry(
        lambda: dict(pi_ref=_pi_ref(), **_comparisons(), beta=0.5, steps=3, lr=0.5,
                     weights=np.array([0.1, 0.2, 0.3, 0.1, 0.2, 0.1]),
                     prompt_probs=np.array([0.3, 0.7]), eval_rewards={"gold": _gold()})),
    # policy_gradient
    "rlhf_toy.policy_gradient.reinforce_advantages": Entry(
        lambda: dict(rewards=np.array([[1.0, 0.0, 0.5], [0.2, 0.3, 0.9]]))),
    "rlhf_toy.policy_gradient.rloo_advantages": Entry(
        lambda: dict(rewards=np.array([[1.0, 0.0, 0.5], [0.2, 0.3, 0.9]]))),
    "rlhf_toy.policy_gradient.grpo_advantages": Entry(
        lambda: dict(rewards=np.array([[1.0, 0.0, 0.5], [0.2, 0.3, 0.9]]), eps=1e-4)),
    "rlhf_toy.policy_gradient.whiten": Entry(
        lambda: dict(x=_tokens(), mask=_mask())),
    "rlhf_toy.policy_gradient.gae": Entry(
        lambda: dict(rewards=_tokens(), values=_tokens() * 0.5, mask=_mask(), gamma=0.9,
                     lam=0.95)),
    "rlhf_toy.policy_gradient.score_at_last_token": Entry(
        lambda: dict(scores=np.array([1.0, -0.5]), mask=_mask())),
    "rlhf_toy.policy_gradient.policy_gradient_loss": Entry(
        lambda: dict(logp=-np.abs(_tokens()), advantages=np.array([0.5, -1.0]), mask=_mask())),
    "rlhf_toy.policy_gradient.ppo_clip_loss": Entry(
        lambda: dict(logp=-np.abs(_tokens()), logp_old=-np.abs(_tokens()) - 0.1,
                     advantages=np.array([0.5, -1.0]), mask=_mask(), clip_eps=0.2)),
    "rlhf_toy.policy_gradient.value_loss": Entry(
        lambda: dict(values=_tokens(), values_old=_tokens() + 0.1, returns=_tokens() * 2,
                     mask=_mask(), clip_range=0.2), none_args=("clip_range",)),
    "rlhf_toy.policy_gradient.explained_variance": Entry(
        lambda: dict(values=_tokens(), returns=_tokens() * 2 + 0.3, mask=_mask())),
    "rlhf_toy.policy_gradient.kl_penalty_rewards": Entry(
        lambda: dict(logp=-np.abs(_tokens()), logp_ref=-np.abs(_tokens()) - 0.2, mask=_mask(),
                     beta=0.1)),
    "rlhf_toy.policy_gradient.kl_loss": Entry(
        lambda: dict(logp=-np.abs(_tokens()), logp_ref=-np.abs(_tokens()) - 0.2,
                     mask=_mask())),
    # bandit experiments (the closed-form ones; the sweeps are exercised by their tests)
    "rlhf_toy.bandit.experiments.kl_study.estimator_stats": Entry(
        lambda: dict(q=_pi(), p=_pi_ref())),
    "rlhf_toy.bandit.experiments.kl_study.estimator_table": Entry(
        lambda: dict(pi_ref=np.array([0.2, 0.3, 0.5]), reward=np.array([0.0, 1.0, 2.0]),
                     betas=np.array([0.5, 2.0])),
        inf_result=True),  # k3_std: +inf where its true value exceeds float64
    "rlhf_toy.bandit.experiments.kl_study.tilted_policies": Entry(
        lambda: dict(pi_ref=np.array([0.2, 0.3, 0.5]), reward=np.array([0.0, 1.0, 2.0]),
                     betas=np.array([0.5, 2.0]))),
    "rlhf_toy.bandit.experiments.kl_study.sample_categorical": Entry(
        lambda: dict(q=_pi(), n=5, rng=np.random.default_rng(0))),
    "rlhf_toy.bandit.experiments.kl_study.batch_negative_probability_normal": Entry(
        lambda: dict(q=_pi(), p=_pi_ref(), batch_size=4)),
    "rlhf_toy.bandit.experiments.overestimation.expected_overestimation": Entry(
        lambda: dict(pi_ref=_pi_ref(), r_star=_reward(), betas=np.array([0.5, 2.0]),
                     noise_values=np.array([-1.0, 1.0]), noise_probs=np.array([0.4, 0.6]),
                     prompt_probs=np.array([0.3, 0.7]))),
    "rlhf_toy.bandit.experiments.modes.discretized_gaussian": Entry(
        lambda: dict(grid=np.linspace(-3.0, 3.0, 7), mean=np.array([0.5]),
                     std=np.array([1.0]))),
    "rlhf_toy.bandit.experiments.modes.two_mode_target": Entry(
        lambda: dict(grid=np.linspace(-3.0, 3.0, 7))),
    "rlhf_toy.bandit.experiments.pg_study.grpo_effective_weight": Entry(
        lambda: dict(p=np.array([0.1, 0.5, 0.9]), group_size=4)),
    "rlhf_toy.bandit.experiments.pg_study.zero_spread_probability": Entry(
        lambda: dict(p=np.array([0.1, 0.5, 0.9]), group_size=4)),
    "rlhf_toy.bandit.experiments.multi_objective.scalarised_reward": Entry(
        lambda: dict(r_help=_reward(), r_harm=_gold(), w=0.3)),
    "rlhf_toy.bandit.experiments.multi_objective.non_dominated": Entry(
        lambda: dict(maximise=np.array([[1.0, 0.0], [0.5, 0.5], [0.2, 0.2], [0.0, 1.0]]))),
    # tasks
    "rlhf_toy.tasks.digits.digit_sequences": Entry(
        lambda: dict(rng=np.random.default_rng(0), n=3, n_digits=4)),
    # gpt layers (numerics only)
    "rlhf_toy.gpt.layers.log_softmax": Entry(lambda: dict(x=_tokens(), axis=-1),
                                             inf_args=("x",), inf_result=True),  # -inf: p = 0
    "rlhf_toy.gpt.layers.cross_entropy": Entry(
        lambda: dict(logits=np.arange(24.0).reshape(2, 3, 4) / 10,
                     targets=np.array([[0, 1, 3], [2, 2, 0]]),
                     mask=np.array([[True, True, False], [True, False, True]])),
        weight_args=("mask",)),
    "rlhf_toy.gpt.enumerate.count_continuations": Entry(
        lambda: dict(n_symbols=3, max_new_tokens=4, has_eos=True)),
    "rlhf_toy.gpt.parallel.row_shards": Entry(lambda: dict(n_rows=8, n_positions=16)),
    "rlhf_toy.rl.rollout.sequence_sum": Entry(lambda: dict(x=_tokens(), mask=_mask())),
    "rlhf_toy.gpt.model.check_token_id": Entry(
        lambda: dict(token=3, name="eos_token", vocab_size=8), none_args=("token",)),
    "rlhf_toy.gpt.model.check_allowed_tokens": Entry(
        lambda: dict(allowed_tokens=np.array([1, 3, 4]), vocab_size=8),
        none_args=("allowed_tokens",)),  # None: every token
    "rlhf_toy.tasks.get_task": Entry(lambda: dict(name="length")),
    "rlhf_toy.strategies.betas": Entry(lambda: dict(low=0.05, high=20.0)),
    # optim
    "rlhf_toy.optim.clip_grad_norm": Entry(
        lambda: dict(grads={"w": np.array([3.0, 4.0])}, max_norm=1.0)),
    "rlhf_toy.optim.lr_schedule": Entry(
        lambda: dict(step=5, lr=0.1, total_steps=100, warmup_steps=10, min_lr=0.01)),
}


# --------------------------------------------------------------------------------------
# the bandit world, its experiments and the RL steps (tiny worlds, a few steps)
# --------------------------------------------------------------------------------------


def _env(**kw):
    from rlhf_toy.bandit.env import make_bandit

    return make_bandit(2, 3, rng=0, **kw)


def _rl_args(config, **extra):
    """A policy, its reference, an optimiser, prompts, a reward and ``config`` on the bandit."""
    from rlhf_toy.bandit.policy import TabularPolicy, TrainableTabularPolicy
    from rlhf_toy.bandit.rl import table_reward
    from rlhf_toy.optim import AdamW

    policy = TrainableTabularPolicy(np.log(_pi()))
    return dict(policy=policy, ref=TabularPolicy.from_probs(_pi_ref()),
                optimiser=AdamW(policy.params, lr=0.1, weight_decay=0.0),
                prompts=np.array([0, 1]), reward_fn=table_reward(_reward()), config=config,
                rng=np.random.default_rng(0), **extra)


def _rl_registry():
    from rlhf_toy.bandit.policy import TabularPolicy, TrainableTabularPolicy
    from rlhf_toy.bandit.rl import TabularCritic
    from rlhf_toy.optim import AdamW
    from rlhf_toy.rl import (
        GRPOConfig,
        OnlineDPOConfig,
        PPOConfig,
        ReinforceConfig,
        RLOOConfig,
    )

    def ppo():
        critic = TabularCritic(2)
        return _rl_args(PPOConfig(group_size=2, epochs=1), critic=critic,
                        critic_optimiser=AdamW(critic.params, lr=0.1, weight_decay=0.0))

    def rollout():
        policy = TrainableTabularPolicy(np.log(_pi()))
        from rlhf_toy.bandit.rl import table_reward

        return dict(policy=policy, ref=TabularPolicy.from_probs(_pi_ref()),
                    prompts=np.array([0, 1]), reward_fn=table_reward(_reward()),
                    group_size=2, rng=np.random.default_rng(0))

    def gradients():
        policy = TrainableTabularPolicy(np.log(_pi()))
        return dict(optimiser=AdamW(policy.params, lr=0.1, weight_decay=0.0),
                    grads={"logits": np.full((2, 3), 0.1)}, max_grad_norm=1.0, where="step")

    return {
        "rlhf_toy.rl.reinforce.reinforce_step": Entry(
            lambda: _rl_args(ReinforceConfig(group_size=2))),
        "rlhf_toy.rl.reinforce.rloo_step": Entry(lambda: _rl_args(RLOOConfig(group_size=2))),
        "rlhf_toy.rl.grpo.grpo_step": Entry(lambda: _rl_args(GRPOConfig(group_size=2))),
        "rlhf_toy.rl.grpo.dr_grpo_config": Entry(lambda: dict(group_size=4, beta=0.1)),
        "rlhf_toy.rl.online_dpo.online_dpo_step": Entry(
            lambda: _rl_args(OnlineDPOConfig(beta=0.1))),
        "rlhf_toy.rl.ppo.ppo_step": Entry(ppo),
        "rlhf_toy.rl.rollout.collect_rollout": Entry(rollout),
        "rlhf_toy.rl.rollout.apply_gradients": Entry(gradients, none_args=("max_grad_norm",)),
    }


def _bandit_registry():
    from rlhf_toy.rl import ReinforceConfig

    return {
        "rlhf_toy.bandit.env.check_env": Entry(lambda: dict(env=_env())),
        "rlhf_toy.bandit.rl.method_name": Entry(lambda: dict(config=ReinforceConfig())),
        "rlhf_toy.bandit.rl.table_reward": Entry(lambda: dict(reward=_reward())),
        "rlhf_toy.bandit.rl.train_rl": Entry(
            lambda: dict(env=_env(), config=ReinforceConfig(group_size=2), steps=2, lr=0.05,
                         rng=0, critic_lr=0.1),
            none_args=("critic_lr",), nan_fields=("diagnostics",), trains=True),
    }


def _experiments_registry():
    grid = np.linspace(-3.0, 3.0, 9)
    target = np.exp(-0.5 * (grid - 1.0) ** 2)
    target = target / target.sum()
    ens = np.stack([_reward(), _gold(), _reward() * 0.5])
    ex = "rlhf_toy.bandit.experiments."
    return {
        # kl_study
        ex + "kl_study.batch_negative_probability": Entry(
            lambda: dict(q=_pi(), p=_pi_ref(), batch_size=4, n_batches=8,
                         rng=np.random.default_rng(0))),
        ex + "kl_study.kl_gradients": Entry(lambda: dict(logits=np.log(_pi()), pi_ref=_pi_ref())),
        ex + "kl_study.sampled_estimator_stats": Entry(
            lambda: dict(q=_pi(), p=_pi_ref(), n_samples=8, rng=np.random.default_rng(0))),
        ex + "kl_study.sampled_kl_gradients": Entry(
            lambda: dict(logits=np.log(_pi()), pi_ref=_pi_ref(), n_samples=8,
                         rng=np.random.default_rng(0))),
        ex + "kl_study.kl_penalised_ascent": Entry(
            lambda: dict(pi_ref=_pi_ref(), reward=_reward(), beta=0.5, kl_gradient="k3_in_loss",
                         steps=2, lr=0.5, record_every=1), trains=True),
        # modes
        ex + "modes.forward_kl_regularised_policy": Entry(
            lambda: dict(pi_ref=_pi_ref(), reward=_reward(), beta=0.5)),
        ex + "modes.gaussian_divergence": Entry(
            lambda: dict(target=target, grid=grid, mean=np.array([0.0, 1.0]),
                         std=np.array([1.0, 0.5]), divergence="reverse")),
        ex + "modes.reverse_kl_landscape": Entry(
            lambda: dict(target=target, grid=grid, means=np.array([0.0, 1.0]),
                         stds=np.array([1.0, 0.5]))),
        ex + "modes.mode_summary": Entry(lambda: dict(pi=_pi(), threshold=0.05)),
        ex + "modes.fit_gaussian_local": Entry(
            lambda: dict(target=target, grid=grid, divergence="forward", init=(0.5, 1.0)),
            pair_args=("init",)),
        ex + "modes.rlhf_mode_sweep": Entry(
            lambda: dict(pi_ref=target, reward=grid, betas=np.array([0.5, 2.0]),
                         threshold=0.05)),
        # multi_objective
        ex + "multi_objective.lagrangian_policy": Entry(
            lambda: dict(pi_ref=_pi_ref(), r_help=_reward(), r_harm=_gold(), lam=0.5, beta=0.5)),
        ex + "multi_objective.policy_values": Entry(
            lambda: dict(pi=_pi(), pi_ref=_pi_ref(), r_help=_reward(), r_harm=_gold(), beta=0.5,
                         prompt_probs=np.array([0.3, 0.7]))),
        ex + "multi_objective.scalarisation_front": Entry(
            lambda: dict(pi_ref=_pi_ref(), r_help=_reward(), r_harm=_gold(), beta=0.5,
                         weights=np.array([0.0, 0.5, 1.0]), prompt_probs=np.array([0.3, 0.7]))),
        ex + "multi_objective.lagrangian_front": Entry(
            lambda: dict(pi_ref=_pi_ref(), r_help=_reward(), r_harm=_gold(), beta=0.5,
                         lams=np.array([0.0, 0.5, 2.0]), prompt_probs=np.array([0.3, 0.7]))),
        ex + "multi_objective.constrained_optimum": Entry(
            lambda: dict(pi_ref=_pi_ref(), r_help=_reward(), r_harm=_gold(), beta=0.5, c=1.0,
                         prompt_probs=np.array([0.3, 0.7]))),
        ex + "multi_objective.make_two_reward_bandit": Entry(
            lambda: dict(n_prompts=2, n_responses=3, correlation=0.5, noise_scale=0.3,
                         ref_temperature=1.0, rng=0)),
        ex + "multi_objective.train_constrained": Entry(
            lambda: dict(pi_ref=_pi_ref(), r_help=_reward(), r_harm=_gold(), beta=0.5, c=1.0,
                         steps=2, lr=0.05, eta=0.02, lam_init=0.0, rng=0), trains=True,
            nan_fields=("harm_sampled",), inf_fields=("kl_to_optimum",)),
        # ensembles
        ex + "ensembles.aggregate": Entry(lambda: dict(ensemble=ens, method="uwo", lam=1.0)),
        ex + "ensembles.disagreement": Entry(lambda: dict(ensemble=ens)),
        ex + "ensembles.fit_ensemble": Entry(
            lambda: dict(pi_ref=_pi_ref(), r_star=_reward(), k=2, n_comparisons=20,
                         rng=np.random.default_rng(0), l2=0.1, prior_scale=0.5,
                         prompt_probs=np.array([0.3, 0.7]))),
        # goodhart
        ex + "goodhart.check_betas": Entry(lambda: dict(betas=np.array([0.1, 1.0]))),
        ex + "goodhart.beta_sweep": Entry(lambda: dict(env=_env(), betas=np.array([0.1, 1.0]))),
        ex + "goodhart.best_of_n_curve": Entry(
            lambda: dict(env=_env(), ns=np.array([1, 2, 4])), count_args=("ns",)),
        ex + "goodhart.trajectory_sweep": Entry(
            lambda: dict(env=_env(), beta=0.5, steps=2, lr=0.5, record_every=1), trains=True),
        # proxy_error
        ex + "proxy_error.aligned_proxy": Entry(lambda: dict(env=_env())),
        ex + "proxy_error.overestimation": Entry(
            lambda: dict(env=_env(), betas=np.array([0.1, 1.0]))),
        ex + "proxy_error.excess_overestimation": Entry(
            lambda: dict(env=_env(), betas=np.array([0.1, 1.0]))),
        ex + "proxy_error.distribution_shift": Entry(
            lambda: dict(env=_env(), betas=np.array([0.1, 1.0]))),
        ex + "proxy_error.proxy_error_under": Entry(lambda: dict(env=_env(), pi=_pi())),
        # pg_study
        ex + "pg_study.exact_gradient": Entry(
            lambda: dict(pi=_pi(), pi_ref=_pi_ref(), reward=_reward(), beta=0.5)),
        ex + "pg_study.difficulty_weights": Entry(
            lambda: dict(success_probs=np.array([0.1, 0.5, 0.9]), group_size=4, n_draws=50,
                         rng=np.random.default_rng(0))),
        ex + "pg_study.zero_spread_study": Entry(
            lambda: dict(success_probs=np.array([0.1, 0.5, 0.9]), group_sizes=np.array([2, 4]),
                         n_groups=50, rng=np.random.default_rng(0)), count_args=("group_sizes",)),
        ex + "pg_study.estimator_mse": Entry(
            lambda: dict(pi=_pi(), pi_ref=_pi_ref(), reward=_reward(), beta=0.5,
                         group_sizes=np.array([2, 4]), n_draws=20, rng=np.random.default_rng(0)),
            count_args=("group_sizes",)),
        # rft, on/off-policy, overestimation, preferences, dpo
        ex + "rft.sample_responses": Entry(
            lambda: dict(pi=_pi(), size=4, rng=np.random.default_rng(0))),
        ex + "rft.rejection_sampling_finetune": Entry(
            lambda: dict(env=_env(), n=2, samples_per_prompt=4, rng=np.random.default_rng(0),
                         n_rounds=1, smoothing=0.5)),
        ex + "on_off_policy.exact_scores": Entry(
            lambda: dict(pi=_pi(), pi_ref=_pi_ref(), r_star=_reward(), beta=0.5,
                         prompt_probs=np.array([0.3, 0.7])), inf_fields=("kl_to_optimum",)),
        ex + "overestimation.overestimation_monte_carlo": Entry(
            lambda: dict(pi_ref=_pi_ref(), betas=np.array([0.5, 2.0]), noise_scale=0.5,
                         n_draws=20, rng=np.random.default_rng(0), n_batches=2,
                         prompt_probs=np.array([0.3, 0.7]))),
        ex + "preferences.bt_recovery": Entry(
            lambda: dict(r_star=_reward(), sizes=np.array([20, 40]), n_seeds=1),
            count_args=("sizes",)),
        ex + "dpo.dpo_uncovered": Entry(lambda: dict(beta=1.0, steps=2, lr=2.0), trains=True),
        ex + "dpo.uncovered_example": Entry(lambda: dict()),
        ex + "dpo.dpo_convergence": Entry(
            lambda: dict(env=_env(), beta=0.5, steps=2, record_every=1), trains=True),
        ex + "dpo.dpo_on_sampled_pairs": Entry(
            lambda: dict(env=_env(), n_pairs=20, beta=0.5, steps=2, rng=0), trains=True),
        ex + "rft.kl_bound_worlds": Entry(lambda: dict()),
        ex + "modes.fit_gaussian": Entry(
            lambda: dict(target=target, grid=grid, divergence="reverse", n_starts=2)),
        ex + "modes.rlhf_gaussian_fits": Entry(
            lambda: dict(pi_ref=target, reward=-((grid - 1.0) ** 2), grid=grid, beta=0.5)),
        ex + "overestimation.exercise3_curves": Entry(
            lambda: dict(inv_beta=np.array([0.5, 2.0]), n_draws=20, rng=0)),
        ex + "rft.best_of_n_vs_optimal": Entry(
            lambda: dict(env=_env(), ns=np.array([1, 2, 4]), betas=np.array([0.5, 2.0])),
            count_args=("ns",)),
        ex + "rft.estimator_experiment": Entry(
            lambda: dict(env=_env(), ns=np.array([1, 2]), n_samples=8, repeats=2,
                         rng=np.random.default_rng(0)), count_args=("ns",)),
        ex + "rft.matched_kl_comparison": Entry(
            lambda: dict(env=_env(), ns=np.array([2, 4])), count_args=("ns",)),
        ex + "rft.rft_convergence": Entry(
            lambda: dict(env=_env(), n=2, sample_sizes=np.array([4, 8]),
                         rng=np.random.default_rng(0), repeats=1), count_args=("sample_sizes",)),
        ex + "preferences.ascent_convergence": Entry(
            lambda: dict(env=_env(), betas=np.array([0.5, 2.0]), steps=2, record_every=1),
            trains=True),
        ex + "modes.rlhf_mode_world": Entry(lambda: dict(n_grid=41)),
    }


def _pipeline_registry():
    from rlhf_toy.pipeline import dpo
    from rlhf_toy.pipeline.config import PipelineConfig

    pairs = _pairs()
    return {
        "rlhf_toy.tasks.digits.digit_batches": Entry(
            lambda: dict(rng=np.random.default_rng(0), batch_size=3, n_digits=4,
                         task="reverse")),
        "rlhf_toy.tasks.digits.lm_batch": Entry(
            lambda: dict(sequences=np.array([[1, 2, 3, 4, 5], [2, 3, 4, 5, 6]]), prompt_len=2),
            count_args=("sequences",)),
        "rlhf_toy.strategies.shapes": Entry(
            lambda: dict(max_prompts=4, max_responses=8, min_responses=2)),
        "rlhf_toy.strategies.distributions": Entry(lambda: dict(n=3)),
        "rlhf_toy.strategies.log_probs": Entry(lambda: dict(shape=(2, 3), low=-20.0, high=0.0),
                                               shape_args=("shape",)),
        "rlhf_toy.strategies.policy_tables": Entry(
            lambda: dict(shape=(2, 3), min_prob=0.0), pair_args=("shape",)),
        "rlhf_toy.strategies.reward_tables": Entry(lambda: dict(shape=(2, 3), scale=3.0),
                                                   shape_args=("shape",)),
        "rlhf_toy.strategies.bandit_tables": Entry(
            lambda: dict(max_prompts=4, max_responses=8, scale=3.0)),
        "rlhf_toy.pipeline.reward_model.pairwise_accuracy": Entry(
            lambda: dict(r_a=np.array([0.5, -1.0, 2.0]), r_b=np.array([0.0, 1.0, 2.0]),
                         truth_a=np.array([1.0, 0.0, 3.0]), truth_b=np.array([0.0, 1.0, 1.0]))),
        "rlhf_toy.pipeline.dpo.pair_losses": Entry(
            lambda: dict(loss="dpo", pc=pairs["policy_chosen"], pr=pairs["policy_rejected"],
                         rc=pairs["ref_chosen"], rr=pairs["ref_rejected"],
                         len_c=np.array([3.0, 4.0, 2.0]), len_r=np.array([2.0, 5.0, 3.0]),
                         beta=0.1, opts=dict(dpo.DEFAULTS))),
        "rlhf_toy.pipeline.rl_common.method_options": Entry(
            lambda: dict(config=PipelineConfig(method_options={"ppo": {"epochs": 2}}),
                         name="ppo", defaults={"epochs": 1, "clip": 0.2})),
        "rlhf_toy.pipeline.methods.check_method_options": Entry(
            lambda: dict(config=PipelineConfig(method_options={"dpo": {"loss": "ipo"}}))),
        "rlhf_toy.pipeline.cli.summary_table": Entry(
            lambda: dict(metrics={"methods": {"ppo": dict(gold=0.5, proxy=0.6, kl=0.1,
                                                          kl_to_optimum=0.05, length=3.0,
                                                          seconds=1.0)},
                                  "optimum": dict(gold=0.7, proxy=0.8, kl=0.2)})),
        "rlhf_toy.pipeline.common.check_loss": Entry(
            lambda: dict(stage="sft", step=3, loss=0.5), diverge_args=("loss",)),
        "rlhf_toy.pipeline.rl_common.stack_history": Entry(
            lambda: dict(rows=[{"loss": 0.5, "kl": 0.1}, {"loss": 0.4}]),
            nan_fields=("kl",)),  # a key a step did not record: NaN, as documented
    }


def _plots_registry():
    pl = "rlhf_toy.presentation.plots."
    ns = np.array([1, 2, 4, 8])
    return {
        pl + "preferences.plot_preference_probability": Entry(
            lambda: dict(delta=np.linspace(-3.0, 3.0, 5),
                         prob=1 / (1 + np.exp(-np.linspace(-3.0, 3.0, 5))))),
        pl + "best_of_n.plot_bon_kl_bound": Entry(
            lambda: dict(ns=ns, kls={"world": np.array([0.0, 0.2, 0.6, 1.2])},
                         bound=np.log(ns) - (ns - 1) / ns), count_args=("ns",)),
        pl + "dpo.plot_dpo_loss_and_weight": Entry(
            lambda: dict(margin=np.linspace(-2.0, 2.0, 5),
                         loss=np.log1p(np.exp(-np.linspace(-2.0, 2.0, 5))),
                         weight=1 / (1 + np.exp(np.linspace(-2.0, 2.0, 5))))),
        pl + "best_of_n.plot_bon_win_rate": Entry(
            lambda: dict(ns=ns, win_rates={"world": np.array([0.5, 0.6, 0.7, 0.8])}),
            count_args=("ns",)),
        pl + "pitfalls.plot_negative_kl": Entry(
            lambda: dict(k1=np.array([0.1, -0.2, 0.3]), k3=np.array([0.01, 0.02, 0.05]),
                         exact_kl=0.05, batch_means={1: np.array([0.1, -0.2]),
                                                     4: np.array([0.05, 0.04])})),
        pl + "preferences.plot_convergence": Entry(
            lambda: dict(steps=np.array([0, 1, 2]), curves={"a": np.array([1.0, 0.1, 0.01])},
                         ylabel="gap", title="t"), count_args=("steps",)),
        pl + "preferences.plot_reward_kl_frontier": Entry(
            lambda: dict(kl=np.array([0.1, 0.5, 1.0]), reward=np.array([0.2, 0.6, 0.9]),
                         betas=np.array([2.0, 1.0, 0.5]), gold=np.array([0.2, 0.5, 0.4]))),
        pl + "dpo.plot_logprobs_fall": Entry(
            lambda: dict(steps=np.array([0, 1, 2]), logp_chosen=np.array([-1.0, -1.2, -1.5]),
                         logp_rejected=np.array([-1.0, -2.0, -3.0]),
                         margin=np.array([0.0, 0.5, 1.0]), gold=np.array([0.1, 0.2, 0.3]),
                         gold_optimal=0.5), count_args=("steps",)),
        pl + "preferences.plot_first_order_condition": Entry(
            lambda: dict(reward=np.array([0.0, 1.0, 2.0]),
                         grads={"pi*": np.array([0.5, 0.5, 0.5])})),
        pl + "pitfalls.plot_length_bias": Entry(
            lambda: dict(lengths=np.array([1, 2, 3]), rewards=np.array([0.1, 0.4, 0.9]),
                         push={"seq_mean": np.array([[0.5, 0.0, 0.0], [0.2, 0.2, 0.0],
                                                     [0.1, 0.1, 0.1]])}),
            count_args=("lengths",)),
        pl + "preferences.plot_optimal_policy_betas": Entry(
            lambda: dict(reward=np.array([0.0, 1.0, 2.0]), pi_ref=np.array([0.2, 0.3, 0.5]),
                         betas=np.array([0.5, 2.0]),
                         pi_stars=np.array([[0.05, 0.15, 0.8], [0.15, 0.3, 0.55]]))),
    }


REGISTRY.update(_bandit_registry())
REGISTRY.update(_plots_registry())
REGISTRY.update(_pipeline_registry())
REGISTRY.update(_experiments_registry())
REGISTRY.update(_rl_registry())

#: Modules whose every public function must have an entry.
OBJECTIVES = ("rlhf_toy.kl", "rlhf_toy.optimal", "rlhf_toy.bradley_terry",
              "rlhf_toy.preference_losses", "rlhf_toy.best_of_n")
