"""Training loops of the tabular world: exact RLHF gradient ascent and offline DPO.

Two ways to reach the chapter's optimal policy ``pi* = pi_ref exp(r / beta) / Z``:

- :func:`gradient_ascent` climbs the KL-regularised objective of Stage 3,
  ``J(pi) = E_x [E_pi r - beta KL(pi || pi_ref)]``, with its exact gradient through the
  softmax (what PPO approximates with samples; chapter, "Stage 3: RL Fine-Tuning with
  KL Penalty");
- :func:`train_dpo` minimises the DPO loss (or IPO, cDPO, hinge, any loss with the
  signature of :func:`rlhf_toy.preference_losses.dpo_loss`) on a fixed preference data
  set (chapter, "DPO: Direct Preference Optimization"). On data that covers every pair of
  responses, weighted by the Bradley-Terry probabilities of a reward ``r``
  (:func:`all_pairs_preferences`), its minimiser is ``pi*`` of that reward; on data that
  leaves responses uncovered it is not, which is the coverage limit the chapter's "DPO and
  PPO target the same optimal policy in theory, not in practice" refers to.

Both return a :class:`TrainResult`: the final :class:`~rlhf_toy.bandit.policy.TabularPolicy`
and a history of exact quantities (sums over the tables, never samples).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.special import rel_entr
from tqdm import tqdm

from rlhf_toy._validate import (
    MAX_STEPS,
    ArgumentTypeError,
    NonFiniteInputError,
    check_comparisons,
    check_distribution,
    check_finite,
    check_int,
    check_named_tables,
    check_ndim,
    check_nonempty,
    check_positive,
    check_prompt_probs,
    check_same_shape,
)
from rlhf_toy.bandit.policy import TabularPolicy, TrainableTabularPolicy
from rlhf_toy.optim import AdamW

__all__ = [
    "TrainResult",
    "all_pairs_preferences",
    "gradient_ascent",
    "train_dpo",
]

#: Preference losses :func:`train_dpo` knows by name (all with ``dpo_loss``'s signature).
#: ``cdpo_loss`` needs its ``label_smoothing``: pass ``functools.partial(cdpo_loss, ...)``.
NAMED_LOSSES = ("dpo", "ipo", "hinge")


@dataclass(frozen=True)
class TrainResult:
    """What a training loop returns.

    Attributes
    ----------
    policy : TabularPolicy
        The policy after the last step.
    history : dict of str to ndarray
        One entry per recorded step, all of the same length: ``"steps"`` (the number of
        updates done when the record was taken; 0 is the initial policy) and the exact
        scalars each loop documents; ``"probs"`` of shape ``(n_records, X, Y)`` when
        ``record_every > 0``; ``history[name]`` for each reward of ``eval_rewards``.
    """

    policy: TabularPolicy
    history: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------


def _check_pi_ref(pi_ref) -> tuple[np.ndarray, np.ndarray]:
    """``pi_ref`` as a validated ``(X, Y)`` table, and its log (``-inf`` on its zeros)."""
    pi_ref = check_distribution(pi_ref, "pi_ref", ndim=2)
    with np.errstate(divide="ignore"):
        log_ref = np.log(pi_ref)
    return pi_ref, log_ref


def _check_init_logits(init_logits, pi_ref: np.ndarray, log_ref: np.ndarray) -> np.ndarray:
    """Initial logits: ``log pi_ref`` by default; never mass where ``pi_ref`` is zero."""
    if init_logits is None:
        return log_ref.copy()
    z = TabularPolicy(init_logits).logits.copy()  # validates finiteness and rows
    check_same_shape(z, pi_ref, "init_logits", "pi_ref")
    bad = (z > -np.inf) & (pi_ref == 0)
    if np.any(bad):
        i = tuple(int(k) for k in np.argwhere(bad)[0])
        raise ValueError(
            f"init_logits must be -inf where pi_ref is 0 (infinite KL), got {z[i]} at index {i}"
        )
    return z


def _diverged(what: str) -> NonFiniteInputError:
    """The error of a loop that left the float64 range: a ``FloatingPointError`` naming the
    step, and a ``ValueError`` naming the hyper-parameters that cause it."""
    return NonFiniteInputError(f"{what}: beta, lr or the rewards are too large")


def _record_steps(steps: int, record_every: int) -> np.ndarray:
    """Steps at which the history is recorded: every step if 0, else every k and the last."""
    if record_every == 0:
        return np.arange(steps + 1)
    return np.unique(np.r_[np.arange(0, steps + 1, record_every), steps])


class _History:
    """Accumulates the records of a training loop into lists, then numpy arrays."""

    def __init__(self, keys, record_every: int, eval_rewards: dict, prompt_probs: np.ndarray):
        self.rows = {key: [] for key in ("steps", *keys)}
        self.keep_probs = record_every > 0
        self.eval_rewards = eval_rewards
        self.w = prompt_probs
        if self.keep_probs:
            self.rows["probs"] = []
        for name in eval_rewards:
            if name in self.rows:
                raise ValueError(f"eval_rewards name {name!r} clashes with a history key")
            self.rows[name] = []

    def add(self, step: int, pi: np.ndarray, **values) -> None:
        self.rows["steps"].append(step)
        for key, value in values.items():
            self.rows[key].append(value)
        if self.keep_probs:
            self.rows["probs"].append(pi.copy())
        for name, r in self.eval_rewards.items():
            self.rows[name].append(float(self.w @ (pi * r).sum(-1)))

    def arrays(self) -> dict[str, np.ndarray]:
        return {key: np.asarray(value) for key, value in self.rows.items()}


def _expected_kl(pi: np.ndarray, pi_ref: np.ndarray, w: np.ndarray) -> float:
    """``E_x KL(pi(.|x) || pi_ref(.|x))`` under the prompt distribution ``w``.

    :func:`rlhf_toy.kl.kl_divergence` without its input checks (the loops' tables are
    valid by construction): ``sum_y rel_entr(pi, pi_ref)``.
    """
    return float(w @ rel_entr(pi, pi_ref).sum(-1))


# --------------------------------------------------------------------------------------
# exact gradient ascent on the regularised objective
# --------------------------------------------------------------------------------------


def gradient_ascent(pi_ref, reward, beta, *, steps, lr, prompt_probs=None, init_logits=None,
                    record_every=0, eval_rewards=None, kl_gradient=None,
                    verbose=False) -> TrainResult:
    """Exact gradient ascent on ``J(pi) = E_x [E_pi r - beta KL(pi || pi_ref)]`` over logits.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy; rows sum to one, zeros allowed (they stay zero).
    reward : array_like of shape (X, Y)
        The reward optimised (the gold ``r_star`` or a proxy ``r_hat``); finite.
    beta : float
        KL coefficient, ``> 0``.
    steps : int
        Number of gradient steps, ``>= 0``.
    lr : float
        Step size, ``> 0``. The gradient carries the factor ``p(x)``, so with ``X``
        uniform prompts a step of ``lr`` moves each row by about ``lr / X``.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution ``p(x)``; uniform if omitted.
    init_logits : array_like of shape (X, Y), optional
        Starting logits; ``log pi_ref`` if omitted. Must be ``-inf`` where ``pi_ref``
        is zero.
    record_every : int, default 0
        ``0``: record the scalars at every step, and no probability tables. ``k > 0``:
        record at steps ``0, k, 2k, ...`` and the last one, including ``"probs"``.
    eval_rewards : dict of str to array_like of shape (X, Y), optional
        Other rewards whose expectation under the policy is recorded as
        ``history[name]`` (for example ``{"gold": r_star}`` while a proxy is optimised).
    kl_gradient : callable, optional
        Replace the exact gradient of the KL term by another *expected* penalty gradient:
        ``kl_gradient(log_pi, log_ref) -> (X, Y)``, the gradient wrt the logits of each
        prompt's penalty (no prompt weighting; e.g. GRPO's k3 in the loss, ``pi - pi_ref``,
        see :func:`rlhf_toy.bandit.experiments.kl_study.kl_gradients`). The step is then
        ``p(x) [pi (r - E_pi r) - beta kl_gradient]``. ``None`` (default): the true
        gradient of ``J``. The recorded ``"objective"`` is ``J`` in both cases.
    verbose : bool, default False
        Show a progress bar.

    Returns
    -------
    TrainResult
        ``history`` holds ``"steps"``, ``"objective"`` (``J``), ``"kl"``
        (``E_x KL(pi || pi_ref)``), ``"reward"`` (``E_x E_pi r``), optionally
        ``"probs"`` and the ``eval_rewards``.

    Raises
    ------
    ValueError
        On invalid tables, ``beta``, ``lr``, ``steps``, ``record_every``,
        ``init_logits`` or a ``kl_gradient`` that is not callable.
    FloatingPointError
        If the objective or the gradient becomes non-finite; the message names the step.

    See Also
    --------
    rlhf_toy.optimal.optimal_policy : the maximiser this converges to.
    rlhf_toy.bandit.rl.train_rl : the same objective climbed with sampled gradients.

    Notes
    -----
    Chapter, Stage 3, "KL-Regularized RLHF Objective". With the advantage
    ``A(x, y) = r(x, y) - beta log(pi(y|x) / pi_ref(y|x))``, ``J = E_x E_pi A`` and the
    exact gradient through the softmax is

        dJ / dz(x, y) = p(x) pi(y|x) (A(x, y) - E_{pi(.|x)} A(x, .)),

    (:meth:`TabularPolicy.logits_grad_from_probs` of ``p(x) A``). It vanishes exactly
    when ``A`` is constant on the support, i.e. at ``pi* = pi_ref exp(r / beta) / Z``
    (``A = beta log Z`` there). PPO estimates the same gradient from samples.

    Examples
    --------
    >>> res = gradient_ascent([[0.5, 0.5]], [[0.0, 1.0]], beta=1.0, steps=200, lr=5.0)
    >>> res.policy.probs.round(4)
    array([[0.2689, 0.7311]])
    """
    pi_ref, log_ref = _check_pi_ref(pi_ref)
    reward = check_finite(reward, "reward")
    check_same_shape(reward, pi_ref, "reward", "pi_ref")
    beta = check_positive(beta, "beta")
    steps = check_int(steps, "steps", minimum=0, maximum=MAX_STEPS)
    lr = check_positive(lr, "lr")
    record_every = check_int(record_every, "record_every", minimum=0, maximum=MAX_STEPS)
    w = check_prompt_probs(prompt_probs, pi_ref.shape[0])
    z = _check_init_logits(init_logits, pi_ref, log_ref)
    evals = check_named_tables(eval_rewards, "eval_rewards", pi_ref, "pi_ref")

    if kl_gradient is not None and not callable(kl_gradient):
        raise ValueError(f"kl_gradient must be callable or None, got {kl_gradient!r}")

    history = _History(("objective", "kl", "reward"), record_every, evals, w)
    record_at = set(_record_steps(steps, record_every).tolist())
    policy = TrainableTabularPolicy(z)  # updated in place
    z = policy.params["logits"]
    support = policy.support
    bar = tqdm(total=steps, desc="gradient ascent", disable=not verbose, leave=False)
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite: raised below
        for t in range(steps + 1):
            logp = policy.log_probs  # (X, Y)
            pi = np.exp(logp)
            adv = np.where(support, reward - beta * (logp - log_ref), 0.0)  # (X, Y)
            obj = float(w @ (pi * adv).sum(-1))
            if not np.isfinite(obj):
                raise _diverged(f"gradient_ascent: objective is {obj} at step {t}")
            if t in record_at:
                history.add(t, pi, objective=obj, kl=_expected_kl(pi, pi_ref, w),
                            reward=float(w @ (pi * reward).sum(-1)))
            if t == steps:
                break
            if kl_gradient is None:
                grad = policy.logits_grad_from_probs(w[:, None] * adv)  # (X, Y); 0 off support
            else:
                with np.errstate(all="ignore"):  # non-finite values are reported just below
                    r_part = pi * (reward - (pi * reward).sum(-1, keepdims=True))
                    penalty = np.asarray(kl_gradient(logp, log_ref), dtype=np.float64)
                    grad = np.where(support, w[:, None] * (r_part - beta * penalty), 0.0)
            if not np.all(np.isfinite(grad)):
                raise _diverged(f"gradient_ascent: non-finite gradient at step {t}")
            z += lr * grad  # in place; -inf + 0 stays -inf
            if np.any(np.isnan(z) | (z == np.inf)):
                raise _diverged(f"gradient_ascent: logits overflow at step {t}")
            bar.update()
    bar.close()
    return TrainResult(policy=policy.snapshot(), history=history.arrays())


# --------------------------------------------------------------------------------------
# preference data sets in the tabular world
# --------------------------------------------------------------------------------------


def all_pairs_preferences(reward, *, pi=None, covered=None, prompt_probs=None):
    """Every ordered pair of distinct responses, weighted by its Bradley-Terry probability.

    The "infinite data" limit of :func:`rlhf_toy.bradley_terry.sample_comparisons`: pair
    ``(x, y_w, y_l)`` gets the weight of drawing ``x``, then ``{y_w, y_l}``, then the
    label ``y_w > y_l``.

    Parameters
    ----------
    reward : array_like of shape (X, Y)
        The labeler's reward (for example ``r_star``); finite.
    pi : array_like of shape (X, Y), optional
        The policy the responses are drawn from (for example ``pi_ref``); if omitted,
        pairs are uniform over the covered responses of each prompt.
    covered : array_like of bool, shape (X, Y), optional
        Responses that may appear in the data; all by default. Responses outside it
        (or with ``pi = 0``) never appear: they are *uncovered*.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution; uniform if omitted.

    Returns
    -------
    x, y_w, y_l : ndarray of int64, shape (N,)
        Every ordered pair ``y_w != y_l`` of covered responses of every prompt (each
        unordered pair appears twice, once per label).
    weights : ndarray of float64, shape (N,)
        ``p(x) q(y_w|x) q(y_l|x) sigma(r(x, y_w) - r(x, y_l))``, normalised to sum to one,
        with ``q = pi`` restricted to the covered responses (or uniform on them).

    Raises
    ------
    ValueError
        On invalid tables, or if no prompt has two covered responses.

    Notes
    -----
    Chapter, Stage 2, "Bradley-Terry Model". Pairs ``y_w = y_l`` are left out: they carry
    no information (zero gradient for DPO). Weighted DPO on this data set is DPO's
    population loss; if every pair of the support of ``pi_ref`` is covered, its
    minimiser over tabular policies is exactly ``optimal_policy(pi_ref, reward, beta)``:
    the loss of pair ``{y, y'}`` is a cross-entropy between ``sigma(r_y - r_y')`` and
    ``sigma(h_y - h_y')`` with ``h = beta log(pi / pi_ref)``, minimised at
    ``h = r + c(x)``.
    """
    from rlhf_toy.bradley_terry import preference_probability

    reward = check_nonempty(check_ndim(check_finite(reward, "reward"), "reward", 2), "reward")
    n_prompts, n_responses = reward.shape
    if covered is None:
        mask = np.ones(reward.shape, dtype=bool)
    else:
        mask = np.asarray(covered)
        if mask.dtype != bool:
            raise ArgumentTypeError(f"covered must be a boolean table, got dtype {mask.dtype}")
        check_same_shape(mask, reward, "covered", "reward")
    if pi is None:
        q = mask.astype(np.float64)
    else:
        pi = check_distribution(pi, "pi")
        check_same_shape(pi, reward, "pi", "reward")
        q = np.where(mask, pi, 0.0)
        mask = mask & (pi > 0)
    w_x = check_prompt_probs(prompt_probs, n_prompts)

    distinct = ~np.eye(n_responses, dtype=bool)[None, :, :]  # (1, Y, Y)
    pair_mask = mask[:, :, None] & mask[:, None, :] & distinct  # (X, Y, Y): [x, y_w, y_l]
    if not np.any(pair_mask):
        raise ValueError("covered leaves no prompt with two responses: the data set is empty")
    # Normalise q per prompt so that each prompt's pairs carry its weight p(x).
    q_sum = q.sum(1, keepdims=True)
    q = np.divide(q, q_sum, out=np.zeros_like(q), where=q_sum > 0)
    x, y_w, y_l = np.nonzero(pair_mask)
    weights = (w_x[x] * q[x, y_w] * q[x, y_l]
               * preference_probability(reward[x, y_w], reward[x, y_l]))
    total = weights.sum()
    if not total > 0:
        raise ValueError("prompt_probs puts no mass on the prompts with two covered "
                         "responses: the data set is empty")
    return x.astype(np.int64), y_w.astype(np.int64), y_l.astype(np.int64), weights / total


# --------------------------------------------------------------------------------------
# offline DPO (and its relatives) on a fixed preference data set
# --------------------------------------------------------------------------------------


def _resolve_loss(loss) -> Callable:
    if callable(loss):
        return loss
    if loss not in NAMED_LOSSES:
        hint = (" (cdpo needs its label smoothing: pass "
                "functools.partial(cdpo_loss, label_smoothing=...))") if loss == "cdpo" else ""
        raise ValueError(
            f"loss must be one of {NAMED_LOSSES} or a callable, got {loss!r}{hint}"
        )
    from rlhf_toy import preference_losses

    return getattr(preference_losses, f"{loss}_loss")


def _check_pairs(x, y_w, y_l, pi_ref: np.ndarray):
    """The comparison triple, every response of which has ``pi_ref > 0``."""
    x, y_w, y_l = check_comparisons(x, y_w, y_l, *pi_ref.shape, table="pi_ref")
    for name, y in [("y_w", y_w), ("y_l", y_l)]:
        off = np.flatnonzero(pi_ref[x, y] == 0)
        if off.size:
            i = int(off[0])
            raise ValueError(f"{name}[{i}] = {int(y[i])} has pi_ref = 0 at prompt {int(x[i])}: "
                             "its log-ratio is undefined")
    return x, y_w, y_l


def _check_weights(weights, n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    weights = check_finite(weights, "weights")
    if weights.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {weights.shape}")
    if np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("weights must be >= 0 with a positive sum")
    return weights / weights.sum()


def train_dpo(pi_ref, x, y_w, y_l, beta, *, steps, lr, loss="dpo", weights=None,
              init_logits=None, optimizer="gd", prompt_probs=None, record_every=0,
              eval_rewards=None, verbose=False) -> TrainResult:
    """Offline DPO (or IPO, cDPO, hinge, ...) on a fixed preference data set, full batch.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy; every response of the data must have ``pi_ref > 0``.
    x, y_w, y_l : array_like of int, shape (N,)
        Prompt, preferred and dispreferred response of each pair (indices into the
        tables), e.g. from :func:`rlhf_toy.bradley_terry.sample_comparisons` or
        :func:`all_pairs_preferences`.
    beta : float
        The loss's KL coefficient, ``> 0``.
    steps : int
        Number of full-batch steps, ``>= 0``.
    lr : float
        Step size, ``> 0``.
    loss : {"dpo", "ipo", "hinge"} or callable, default "dpo"
        The preference loss: a name from :mod:`rlhf_toy.preference_losses` or any callable
        ``f(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) ->
        (loss, grad_chosen, grad_rejected)`` of per-pair arrays, such as
        ``functools.partial(cdpo_loss, label_smoothing=0.1)``.
    weights : array_like of shape (N,), optional
        Non-negative pair weights (normalised to sum to one); uniform if omitted. With
        the weights of :func:`all_pairs_preferences` the loss is DPO's population loss.
    init_logits : array_like of shape (X, Y), optional
        Starting logits; ``log pi_ref`` if omitted.
    optimizer : {"gd", "adam"}, default "gd"
        Full-batch gradient descent, or full-batch Adam: :class:`rlhf_toy.optim.AdamW`
        with ``betas = (0.9, 0.999)``, ``eps = 1e-8`` and no weight decay (both moments
        bias-corrected).
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution used for the recorded KL and ``eval_rewards``; uniform if
        omitted. (The loss weights prompts as the data set does.)
    record_every : int, default 0
        As in :func:`gradient_ascent`.
    eval_rewards : dict of str to array_like of shape (X, Y), optional
        Rewards whose expectation under the policy is recorded as ``history[name]``.
    verbose : bool, default False
        Show a progress bar.

    Returns
    -------
    TrainResult
        ``history`` holds ``"steps"``, ``"loss"`` (the weighted mean loss), ``"kl"``
        (``E_x KL(pi || pi_ref)``), ``"logp_chosen"`` and ``"logp_rejected"`` (weighted
        means of ``log pi(y_w|x)`` and ``log pi(y_l|x)`` over the data), ``"margin"``
        (weighted mean of the implicit-reward margin ``h_w - h_l`` with
        ``h = beta log(pi / pi_ref)``), ``"accuracy"`` (weight of the pairs with
        ``h_w > h_l``), optionally ``"probs"`` and the ``eval_rewards``.

    Raises
    ------
    ValueError
        On invalid tables, indices, weights, hyper-parameters, loss or optimizer.
    FloatingPointError
        If the loss or its gradient becomes non-finite; the message names the step.

    Notes
    -----
    Chapter, "DPO: Direct Preference Optimization". With ``L = sum_i w_i l_i``, the loss
    returns ``dl_i / d log pi(y_w,i|x_i)`` and ``dl_i / d log pi(y_l,i|x_i)`` (for DPO
    ``-beta sigma(h_l - h_w)`` and ``+beta sigma(h_l - h_w)``); they are scattered into
    a table ``G[X, Y]`` with ``np.bincount`` and pushed through the softmax by
    :meth:`TabularPolicy.logits_grad_from_logp`: ``dL/dz = G - pi sum_y G``.

    For losses whose two gradients are opposite (DPO, IPO, cDPO, hinge) ``sum_y G = 0``,
    so each pair moves only the logits of its own two responses, by equal and opposite
    amounts: the logits of *uncovered* responses never move, but their probabilities do,
    through the normaliser, and gradient descent (not Adam, which rescales each logit)
    never changes the sum of a prompt's logits. In logits the DPO loss of a tabular
    policy is convex (``h_w - h_l`` is linear in ``z``), so gradient descent converges to
    a minimiser when one exists (every compared pair seen with both labels, as with the
    weights of :func:`all_pairs_preferences`); on separable data the margins grow without
    bound, like ``log t``.

    Step size: the DPO loss's curvature in the logits is at most ``beta**2 d_max / 2``,
    with ``d_max`` the largest total (normalised) weight of the pairs one response appears
    in, so gradient descent is stable for ``lr < 4 / (beta**2 d_max)``. Adam is
    insensitive to that scale (``lr`` of 0.01 to 0.1 work).
    """
    pi_ref, log_ref = _check_pi_ref(pi_ref)
    x, y_w, y_l = _check_pairs(x, y_w, y_l, pi_ref)
    beta = check_positive(beta, "beta")
    steps = check_int(steps, "steps", minimum=0, maximum=MAX_STEPS)
    lr = check_positive(lr, "lr")
    record_every = check_int(record_every, "record_every", minimum=0, maximum=MAX_STEPS)
    if optimizer not in ("gd", "adam"):
        raise ValueError(f"optimizer must be 'gd' or 'adam', got {optimizer!r}")
    loss_fn = _resolve_loss(loss)
    w_pair = _check_weights(weights, x.size)
    w_x = check_prompt_probs(prompt_probs, pi_ref.shape[0])
    z = _check_init_logits(init_logits, pi_ref, log_ref)
    off = ~np.isfinite(np.r_[z[x, y_w], z[x, y_l]])
    if np.any(off):
        raise ValueError("init_logits must be finite on every response of the data, "
                         f"got -inf at pair {int(np.flatnonzero(off)[0] % x.size)}")
    evals = check_named_tables(eval_rewards, "eval_rewards", pi_ref, "pi_ref")

    n_responses, size = pi_ref.shape[1], pi_ref.size
    i_w, i_l = x * n_responses + y_w, x * n_responses + y_l  # flat indices into the tables
    ref_chosen, ref_rejected = log_ref.ravel()[i_w], log_ref.ravel()[i_l]
    keys = ("loss", "kl", "logp_chosen", "logp_rejected", "margin", "accuracy")
    history = _History(keys, record_every, evals, w_x)
    record_at = set(_record_steps(steps, record_every).tolist())
    policy = TrainableTabularPolicy(z)  # updated in place
    adam = (AdamW(policy.params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
            if optimizer == "adam" else None)
    name = loss if isinstance(loss, str) else getattr(loss, "__name__", "preference loss")
    bar = tqdm(total=steps, desc=name, disable=not verbose, leave=False)
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite: raised below
        for t in range(steps + 1):
            log_probs = policy.log_probs  # (X, Y)
            probs = np.exp(log_probs)
            logp = log_probs.ravel()
            chosen, rejected = logp[i_w], logp[i_l]  # (N,)
            loss_i, g_chosen, g_rejected = loss_fn(chosen, rejected, ref_chosen, ref_rejected, beta)
            value = float(w_pair @ np.asarray(loss_i, dtype=np.float64))
            if not np.isfinite(value):
                raise _diverged(f"train_dpo: loss is {value} at step {t}")
            if t in record_at:
                margin = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))  # (N,)
                if not np.all(np.isfinite(margin)):
                    raise _diverged(f"train_dpo: the recorded margin overflows at step {t}")
                history.add(t, probs, loss=value,
                            kl=_expected_kl(probs, pi_ref, w_x),
                            logp_chosen=float(w_pair @ chosen),
                            logp_rejected=float(w_pair @ rejected),
                            margin=float(w_pair @ margin),
                            accuracy=float(w_pair @ (margin > 0)))
            if t == steps:
                break
            g_logp = (np.bincount(i_w, weights=w_pair * g_chosen, minlength=size)
                      + np.bincount(i_l, weights=w_pair * g_rejected, minlength=size))  # (X*Y,)
            if not np.all(np.isfinite(g_logp)):
                raise _diverged(f"train_dpo: non-finite gradient at step {t}")
            grad = policy.logits_grad_from_logp(g_logp.reshape(pi_ref.shape))  # (X, Y)
            if adam is None:
                policy.params["logits"] -= lr * grad
            else:
                adam.step({"logits": grad})
            bar.update()
    bar.close()
    return TrainResult(policy=policy.snapshot(), history=history.arrays())
