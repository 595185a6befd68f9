"""Best-of-n sampling, exactly: its distribution, KL, win rate and unbiased estimator.

Implements the chapter's inference-time alternative to RL fine-tuning and the selection step
of rejection-sampling fine-tuning (chapter, *Modern variations*: "Rejection sampling
fine-tuning (RFT)"; *Why Reward Models Are Fragile*: overoptimisation, Gao et al. 2023).
Best-of-n draws ``n`` responses i.i.d. from ``pi_ref(.|x)``, scores them with a reward and
returns the highest-scoring one, ties broken uniformly at random among the drawn maximal
samples.

On a table of responses everything is a finite sum over tie groups of the reward, along
the last axis, vectorised over prompts and over a grid of ``n``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq

from rlhf_toy._validate import (
    ArgumentTypeError,
    check_distribution,
    check_finite,
    check_float,
    check_int,
    check_named_tables,
    check_positive,
    check_prompt_probs,
    check_same_shape,
)
from rlhf_toy.optimal import reward_kl_frontier

__all__ = [
    "BestOfNSweep",
    "best_of_n_disjoint_estimator",
    "best_of_n_estimator",
    "best_of_n_expected_reward",
    "best_of_n_kl",
    "best_of_n_kl_bound",
    "best_of_n_policy",
    "best_of_n_sweep",
    "best_of_n_win_rate",
    "kl_matched_beta",
]

#: Largest number of float64 elements one block (of ``n`` values x rows) of a sweep holds.
_SWEEP_BLOCK = 1 << 20


# --------------------------------------------------------------------------------------
# validation and the tie-group machinery (private)
# --------------------------------------------------------------------------------------


#: Largest ``n`` accepted: integers up to ``2**53`` are exact in float64, where the
#: ``n``-dependent part is computed.
MAX_N = 2**53


def _check_n(n, name: str = "n"):
    """``n`` an integer in ``[1, MAX_N]``, or a non-empty 1-D array of them.

    Returns (float64 array (K,), is_scalar). Integer-valued floats are accepted in arrays
    (grids from ``np.geomspace(...).round()``), never as a scalar.
    """
    if isinstance(n, (numbers.Number, str, bytes, bool, np.bool_)) or n is None:
        return np.array([float(check_int(n, name, minimum=1, maximum=MAX_N))]), True
    arr = np.asarray(n)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be an integer or a non-empty 1-D array of integers, "
                         f"got shape {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise ArgumentTypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if np.any(bad):
            raise ValueError(f"{name} must hold integers, got {arr[np.argmax(bad)]!r}")
    bad = (arr < 1) | (arr > MAX_N)
    if np.any(bad):
        raise ValueError(f"{name} must hold integers in [1, 2**53], got {arr[np.argmax(bad)]!r}")
    return arr.astype(np.float64), False


def _check_tables(pi_ref, reward, reward_name: str = "reward", ndim=None):
    pi_ref = check_distribution(pi_ref, "pi_ref", ndim=ndim)
    reward = check_finite(reward, reward_name)
    check_same_shape(pi_ref, reward, "pi_ref", reward_name)
    return pi_ref, reward


def _tie_bounds(sorted_values: np.ndarray):
    """Index of the first and last element of each element's tie group, per row.

    ``sorted_values`` is ``(M, Y)`` sorted ascending along the last axis; returns two int
    arrays of that shape (``start``, ``end``) and the boolean ``(M, Y)`` group-start mask.
    """
    m, y = sorted_values.shape
    new = np.ones((m, y), dtype=bool)
    new[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    idx = np.broadcast_to(np.arange(y), (m, y))
    start = np.maximum.accumulate(np.where(new, idx, 0), axis=-1)
    is_end = np.ones((m, y), dtype=bool)
    is_end[:, :-1] = new[:, 1:]
    end = np.minimum.accumulate(np.where(is_end, idx, y - 1)[:, ::-1], axis=-1)[:, ::-1]
    return start, end, new


@dataclass(frozen=True)
class _Groups:
    """Rows of ``(pi_ref, reward)`` sorted by reward and cut into tie groups.

    All arrays are ``(M, Y)`` in sorted order (``M`` = number of rows); quantities of a
    tie group are repeated on each of its elements.
    """

    shape: tuple  # original shape (..., Y)
    order: np.ndarray  # argsort of the reward per row
    ps: np.ndarray  # pi_ref, sorted, rows renormalised to sum to exactly one
    share: np.ndarray  # ps / q: the element's share of its group (0 in empty groups)
    q: np.ndarray  # group mass q_v = P(r = v)
    below: np.ndarray  # F_<(v) = P(r < v)
    log_f_le: np.ndarray  # log F_<=(v), accurate near 0 and near 1
    log1m_ratio: np.ndarray  # log(1 - q_v / F_<=(v)) = log(F_<(v) / F_<=(v))
    log_q: np.ndarray  # log q_v, accurate for q_v near 1 too (-inf in empty groups)
    live: np.ndarray  # q_v > 0

    def unsort(self, a: np.ndarray) -> np.ndarray:
        """Map ``(..., M, Y)`` arrays in sorted order back to the original order and shape."""
        out = np.empty_like(a)
        order = np.broadcast_to(self.order, a.shape)
        np.put_along_axis(out, order, a, axis=-1)
        return out.reshape(a.shape[:-2] + self.shape)

    def sort(self, table: np.ndarray) -> np.ndarray:
        """A table of the original shape, in sorted order ``(M, Y)``."""
        return np.take_along_axis(table.reshape(self.order.shape), self.order, axis=-1)

    def group_mass(self, ns: np.ndarray, rows=slice(None)) -> np.ndarray:
        """``P_v``, the probability that best-of-n lands in the group, for each ``n``.

        ``P_v = F_<=(v)^n - F_<(v)^n = F_<=(v)^n (1 - (F_<(v)/F_<=(v))^n)``, computed as
        ``exp(n log F_<=) * -expm1(n log(F_< / F_<=))``; ``0`` in empty groups. Returns
        ``(K, m, Y)`` for the ``m`` rows selected by ``rows``.
        """
        n = ns[:, None, None]
        mass = np.exp(n * self.log_f_le[rows]) * -np.expm1(n * self.log1m_ratio[rows])
        return np.where(self.live[rows], mass, 0.0)  # exact +0.0 in empty groups

    def log_group_mass(self, ns: np.ndarray, rows=slice(None)) -> np.ndarray:
        """``log P_v = n log F_<= + log(1 - (F_< / F_<=)^n)``; ``-inf`` in empty groups."""
        n = ns[:, None, None]
        a = n * self.log1m_ratio[rows]  # log (F_< / F_<=)^n <= 0
        with np.errstate(divide="ignore"):
            # log(1 - e^a): log(-expm1(a)) near 0, log1p(-exp(a)) below -log 2 (Maechler 2012)
            log1m = np.where(a > -np.log(2.0), np.log(-np.expm1(np.minimum(a, -1e-300))),
                             np.log1p(-np.exp(a)))
        return np.where(self.live[rows], n * self.log_f_le[rows] + log1m, -np.inf)

    def stats(self, ns: np.ndarray, evals=(), kl: bool = False, win: bool = False) -> dict:
        """Per-row functionals of ``pi_bon`` for each ``n``, in blocks: dict of ``(K, M)``.

        Keys ``"kl"`` (``sum_v P_v log(P_v / q_v)``), ``"win"`` (``sum_v P_v (F_<(v) +
        q_v / 2)``) and ``("eval", i)`` (``sum_y pi_bon(y) evals[i](y)``, tables in sorted
        order). Blocks of ``n`` and of rows hold at most ``_SWEEP_BLOCK`` elements, small
        enough that temporaries are reused instead of page-faulted in afresh.
        """
        m, y = self.ps.shape
        k = len(ns)
        out = {("eval", i): np.empty((k, m)) for i in range(len(evals))}
        if kl:
            out["kl"] = np.empty((k, m))
        if win:
            out["win"] = np.empty((k, m))
        rows_per = max(1, _SWEEP_BLOCK // y)
        ns_per = max(1, _SWEEP_BLOCK // (rows_per * y))
        for k0 in range(0, k, ns_per):
            kb = slice(k0, k0 + ns_per)
            for r0 in range(0, m, rows_per):
                rows = slice(r0, r0 + rows_per)
                p_group = self.group_mass(ns[kb], rows)  # (kb, rows, Y)
                pi_bon = p_group * self.share[rows]
                for i, table in enumerate(evals):
                    out["eval", i][kb, rows] = (pi_bon * table[rows]).sum(-1)
                if win:
                    out["win"][kb, rows] = (
                        pi_bon * (self.below[rows] + 0.5 * self.q[rows])).sum(-1)
                if kl:  # log P_v - log q_v from accurate logs: no log(1 - 1e-20) = 0
                    with np.errstate(invalid="ignore"):
                        terms = pi_bon * (self.log_group_mass(ns[kb], rows) - self.log_q[rows])
                    out["kl"][kb, rows] = np.where(pi_bon > 0, terms, 0.0).sum(-1)
        if kl:
            out["kl"] = np.maximum(out["kl"], 0.0)
        return out


def _groups(pi_ref: np.ndarray, reward: np.ndarray) -> _Groups:
    """Sort each row by reward and compute the tie-group masses and CDFs."""
    shape = pi_ref.shape
    y = shape[-1]
    p = pi_ref.reshape(-1, y)
    r = reward.reshape(-1, y)
    order = np.argsort(r, axis=-1, kind="stable")
    rs = np.take_along_axis(r, order, axis=-1)
    ps = np.take_along_axis(p, order, axis=-1)
    ps = ps / ps.sum(-1, keepdims=True)
    m = ps.shape[0]
    start, end, new = _tie_bounds(rs)

    # Group masses by a segmented sum (accurate for tiny groups next to big ones).
    flat_starts = np.flatnonzero(new.ravel())
    group_id = np.cumsum(new.ravel()) - 1
    q = np.add.reduceat(ps.ravel(), flat_starts)[group_id].reshape(m, y)

    # Mass strictly below the group (cumsum from the bottom: exact zeros, accurate tails)
    # and strictly above it (cumsum from the top: accurate near F = 1).
    cum_lo = np.zeros((m, y + 1))
    np.cumsum(ps, axis=-1, out=cum_lo[:, 1:])
    cum_hi = np.zeros((m, y + 1))
    cum_hi[:, :-1] = np.cumsum(ps[:, ::-1], axis=-1)[:, ::-1]  # mass at index >= i
    below = np.take_along_axis(cum_lo, start, axis=-1)
    below_eq = np.take_along_axis(cum_lo, end + 1, axis=-1)
    above = np.take_along_axis(cum_hi, end + 1, axis=-1)

    low = below_eq <= 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        f_le = np.where(low, below_eq, 1.0 - above)
        log_f_le = np.where(low, np.log(below_eq), np.log1p(-above))
        ratio = np.clip(q / f_le, 0.0, 1.0)
        # log(F_< / F_<=): from F_< itself when it is the small part (no 1 - ratio
        # cancellation for a group just above a much smaller one)
        log1m_ratio = np.where(below <= 0.5 * f_le, np.log(below) - log_f_le,
                               np.log1p(-ratio))
        # log q_v: from q itself, or as log(1 - F_< - P(r > v)) for a group near one
        log_q = np.where(q <= 0.5, np.log(q), np.log1p(-(below + above)))
        share = np.where(q > 0, ps / q, 0.0)
    live = q > 0
    return _Groups(shape=shape, order=order, ps=ps, share=share, q=q, below=below,
                   log_f_le=np.where(live, log_f_le, 0.0),
                   log1m_ratio=np.where(live, np.minimum(log1m_ratio, 0.0), 0.0),
                   log_q=np.where(live, log_q, -np.inf), live=live)


def _shape_out(values: np.ndarray, scalar: bool) -> np.ndarray:
    return values[0] if scalar else values


# --------------------------------------------------------------------------------------
# the exact best-of-n distribution and its functionals
# --------------------------------------------------------------------------------------


def best_of_n_policy(pi_ref, reward, n) -> np.ndarray:
    """Exact distribution of the response chosen by best-of-n, along the last axis.

    Parameters
    ----------
    pi_ref : array_like of shape (..., Y)
        Reference policy the ``n`` candidates are drawn from; rows sum to one, zeros allowed.
    reward : array_like of the same shape
        The reward that selects (for example the proxy ``r_hat``); finite, ties allowed.
    n : int or array_like of int of shape (K,)
        Number of candidates, ``>= 1``; an array gives the whole sweep at once.

    Returns
    -------
    ndarray of shape (..., Y), or (K, ..., Y) when ``n`` is an array
        ``pi_bon``; exactly zero where ``pi_ref`` is zero. ``n = 1`` gives ``pi_ref``; as
        ``n -> inf`` it tends to ``pi_ref`` restricted to the reward-maximising responses
        on its support (renormalised).

    Raises
    ------
    ValueError
        If ``n`` is not in ``[1, 2**53]``, ``pi_ref`` is not a non-empty probability
        table, ``reward`` is not finite, or the shapes differ.
    TypeError
        If ``n`` is not an integer (a bool, a float, a string), or a table is complex.

    See Also
    --------
    best_of_n_sweep : KL, win rate and expected rewards over a grid of ``n`` without
        materialising ``(K, X, Y)``.

    Notes
    -----
    Chapter, *Modern variations* (rejection sampling) and *Why Reward Models Are Fragile*
    (Gao et al. 2023 measure overoptimisation with best-of-n). Group the responses of a
    row by reward value ``v``; with ``F_<(v) = P(r < v)``, ``F_<=(v) = P(r <= v)`` and the
    group mass ``q_v`` (all under ``pi_ref``), the maximum of ``n`` i.i.d. draws has value
    ``v`` with probability ``P_v = F_<=(v)^n - F_<(v)^n``. Given that value, the draws in the
    group are i.i.d. from ``pi_ref(.)/q_v`` restricted to it, and a uniformly chosen one of
    them (exchangeability) is again distributed as ``pi_ref(y)/q_v``:

        pi_bon(y|x) = pi_ref(y|x) / q_v * (F_<=(v)^n - F_<(v)^n),   v = r(x, y).

    So ``pi_bon / pi_ref`` is constant on a tie group. ("Uniformly among the drawn
    samples", not among distinct responses: a response drawn twice counts twice.) The
    difference of powers is computed as ``F_<=^n (1 - (1 - q_v/F_<=)^n)`` with ``log1p`` /
    ``expm1``, and ``F_<=`` from whichever tail is smaller, so tiny groups and huge ``n``
    stay accurate. Rows are renormalised to sum to exactly one first.

    Examples
    --------
    >>> best_of_n_policy([0.5, 0.5], [0.0, 1.0], n=2)
    array([0.25, 0.75])
    """
    pi_ref, reward = _check_tables(pi_ref, reward)
    ns, scalar = _check_n(n)
    g = _groups(pi_ref, reward)
    pi_bon = g.group_mass(ns) * g.share  # (K, M, Y)
    return _shape_out(g.unsort(pi_bon), scalar)


def best_of_n_kl(pi_ref, reward, n) -> np.ndarray:
    """Exact ``KL(pi_bon(.|x) || pi_ref(.|x))`` per prompt.

    Parameters
    ----------
    pi_ref, reward, n
        As in :func:`best_of_n_policy`.

    Returns
    -------
    ndarray of shape ``pi_ref.shape[:-1]``, or (K, ...) when ``n`` is an array
        The KL in nats; ``0`` at ``n = 1``.

    Notes
    -----
    Since ``pi_bon / pi_ref = P_v / q_v`` on each tie group,
    ``KL = sum_v P_v log(P_v / q_v)``: the KL between the laws of the *reward value* of the
    chosen and of a reference response. It never exceeds :func:`best_of_n_kl_bound`
    ``log n - (n - 1)/n`` and approaches it when ``pi_ref`` spreads over many responses of
    distinct reward, each of small mass; a few heavy responses keep it far below (the
    chosen response cannot move far from a reference that already concentrates).
    """
    pi_ref, reward = _check_tables(pi_ref, reward)
    ns, scalar = _check_n(n)
    g = _groups(pi_ref, reward)
    kl = g.stats(ns, kl=True)["kl"]
    return _shape_out(kl.reshape((len(ns),) + pi_ref.shape[:-1]), scalar)


def best_of_n_kl_bound(n) -> np.ndarray | float:
    """The bound ``KL(best-of-n || pi_ref) <= log n - (n - 1) / n``.

    Parameters
    ----------
    n : int or array_like of int
        Number of candidates, ``>= 1``.

    Returns
    -------
    float or ndarray of shape (K,)
        ``log n - (n - 1)/n``: ``0`` at ``n = 1``, ``log n - 1 + 1/n`` in general.

    Notes
    -----
    Chapter, section "Best-of-n". The formula is the exact KL when the
    reward has a continuous distribution under ``pi_ref``: the chosen reward quantile
    ``U`` has density ``n u^(n-1)`` on ``[0, 1]`` and ``KL = E[log(n U^(n-1))] =
    log n - (n-1)/n``. For discrete rewards it is an upper bound (Beirami et al. 2024).
    It is often quoted loosely as ``log n - (n - 1)/n`` "the KL of best-of-n"; the exact
    value is :func:`best_of_n_kl`.

    Examples
    --------
    >>> float(best_of_n_kl_bound(1))
    0.0
    """
    ns, scalar = _check_n(n)
    bound = np.log(ns) - (ns - 1.0) / ns
    return float(bound[0]) if scalar else bound


def best_of_n_win_rate(pi_ref, reward, n) -> np.ndarray:
    """Exact win rate of best-of-n against one reference sample, judged by ``reward``.

    ``P(r(y_bon) > r(y')) + P(r(y_bon) = r(y')) / 2`` with ``y_bon ~ pi_bon`` and
    ``y' ~ pi_ref`` independent.

    Parameters
    ----------
    pi_ref, reward, n
        As in :func:`best_of_n_policy`.

    Returns
    -------
    ndarray of shape ``pi_ref.shape[:-1]``, or (K, ...) when ``n`` is an array
        ``sum_v P_v (F_<(v) + q_v / 2)``. ``1/2`` at ``n = 1``.

    Notes
    -----
    For a continuous reward distribution this is ``n / (n + 1)`` (the best of ``n + 1``
    i.i.d. draws is equally likely to be any of them). For any discrete one it is at most
    that: with ``a = F_<(v)``, ``b = F_<=(v)``, the group contributes
    ``(b^n - a^n) (a + b) / 2 <= int_a^b u d(u^n)`` (the density ``n u^(n-1)`` is
    increasing, so its mean on ``[a, b]`` is past the midpoint), and the integrals sum to
    ``n / (n + 1)``. For ``m`` equally likely responses with distinct rewards it is
    ``n/(n+1) - n/(12 m^2) + O(n^3/m^4)`` for ``n >= 2`` (Euler-Maclaurin).
    """
    pi_ref, reward = _check_tables(pi_ref, reward)
    ns, scalar = _check_n(n)
    g = _groups(pi_ref, reward)
    win = g.stats(ns, win=True)["win"]
    return _shape_out(win.reshape((len(ns),) + pi_ref.shape[:-1]), scalar)


def best_of_n_expected_reward(pi_ref, select_reward, eval_reward, n) -> np.ndarray:
    """Expected ``eval_reward`` of the response best-of-n picks by ``select_reward``.

    Parameters
    ----------
    pi_ref : array_like of shape (..., Y)
        Reference policy.
    select_reward : array_like of the same shape
        The reward that selects (the proxy ``r_hat``).
    eval_reward : array_like of the same shape
        The reward that judges (the gold ``r_star``); pass ``select_reward`` again for the
        proxy's own expectation.
    n : int or array_like of int of shape (K,)
        Number of candidates.

    Returns
    -------
    ndarray of shape ``pi_ref.shape[:-1]``, or (K, ...) when ``n`` is an array
        ``E_{pi_bon}[eval_reward]`` per prompt.

    Notes
    -----
    Chapter, *Why Reward Models Are Fragile*: as ``n`` grows the expected proxy rises
    monotonically while the gold may peak and fall (regressional Goodhart; Gao et al. 2023
    fit the gold against ``d = sqrt(KL)`` as ``d (a - b d)`` for best-of-n).
    """
    pi_ref, select_reward = _check_tables(pi_ref, select_reward, "select_reward")
    eval_reward = check_finite(eval_reward, "eval_reward")
    check_same_shape(pi_ref, eval_reward, "pi_ref", "eval_reward")
    ns, scalar = _check_n(n)
    g = _groups(pi_ref, select_reward)
    value = g.stats(ns, evals=[g.sort(eval_reward)])["eval", 0]
    return _shape_out(value.reshape((len(ns),) + pi_ref.shape[:-1]), scalar)


@dataclass(frozen=True)
class BestOfNSweep:
    """Best-of-n over a grid of ``n``, averaged over prompts (cf. ``optimal.Frontier``).

    Attributes
    ----------
    ns : ndarray of shape (K,)
    kl : ndarray of shape (K,)
        ``E_x KL(pi_bon(.|x) || pi_ref(.|x))``.
    reward : ndarray of shape (K,)
        ``E_x E_{pi_bon} r``, the reward that selects.
    win_rate : ndarray of shape (K,)
        ``E_x`` of :func:`best_of_n_win_rate`, judged by the selecting reward.
    extra : dict of str to ndarray of shape (K,)
        Expected value under ``pi_bon`` of each reward passed as ``eval_rewards``.
    """

    ns: np.ndarray
    kl: np.ndarray
    reward: np.ndarray
    win_rate: np.ndarray
    extra: dict = field(default_factory=dict)


def best_of_n_sweep(pi_ref, reward, ns, prompt_probs=None, eval_rewards=None) -> BestOfNSweep:
    """KL, expected rewards and win rate of best-of-n for every ``n`` of a grid, exactly.

    Parameters
    ----------
    pi_ref : array_like of shape (X, Y)
        Reference policy.
    reward : array_like of shape (X, Y)
        The selecting reward (for example the proxy ``r_hat``).
    ns : int or array_like of int of shape (K,)
        Numbers of candidates, each ``>= 1``.
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution; uniform if omitted.
    eval_rewards : dict of str to array_like of shape (X, Y), optional
        Other rewards to evaluate (for example ``{"gold": r_star}``).

    Returns
    -------
    BestOfNSweep

    Notes
    -----
    ``kl``, ``reward``, ``win_rate`` and ``extra`` are the per-prompt values of
    :func:`best_of_n_kl`, :func:`best_of_n_expected_reward` and :func:`best_of_n_win_rate`
    averaged with ``prompt_probs``. Rows are sorted and grouped once; the ``n``-dependent
    part runs in blocks of at most ``2**20`` elements.
    """
    pi_ref, reward = _check_tables(pi_ref, reward, ndim=2)
    ns, _ = _check_n(ns, "ns")
    w = check_prompt_probs(prompt_probs, pi_ref.shape[0])
    evals = check_named_tables(eval_rewards, "eval_rewards", reward, "reward")
    g = _groups(pi_ref, reward)
    tables = [g.sort(reward)] + [g.sort(r) for r in evals.values()]
    stats = g.stats(ns, evals=tables, kl=True, win=True)
    extra = {name: stats["eval", i + 1] @ w for i, name in enumerate(evals)}
    return BestOfNSweep(ns=ns, kl=stats["kl"] @ w, reward=stats["eval", 0] @ w,
                        win_rate=stats["win"] @ w, extra=extra)


# --------------------------------------------------------------------------------------
# the unbiased estimator from samples
# --------------------------------------------------------------------------------------


def _order_statistic_weights(ns: np.ndarray, big_n: int) -> np.ndarray:
    """``w[k, i-1] = C(i-1, n_k-1) / C(N, n_k)``, the chance that the ``i``-th smallest of
    ``N`` is the largest of a random ``n_k``-subset: ``(K, N)``.

    Built from the ratio ``w_i / w_{i-1} = (i-1) / (i-n)`` as a cumulative sum of
    ``log1p((n-1)/(i-n))`` (no differences of huge log-gammas), then normalised by the
    hockey-stick identity ``sum_i C(i-1, n-1) = C(N, n)``.
    """
    i = np.arange(1, big_n + 1, dtype=np.float64)
    n = ns[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(i > n, np.log1p((n - 1.0) / (i - n)), 0.0)
    log_w = np.where(i >= n, np.cumsum(step, axis=-1), -np.inf)
    w = np.exp(log_w - log_w[:, -1:])
    return w / w.sum(-1, keepdims=True)


def best_of_n_estimator(proxy_samples, eval_samples, n) -> np.ndarray:
    """Unbiased estimate of best-of-n's expected ``eval`` reward from ``N >= n`` samples.

    Parameters
    ----------
    proxy_samples : array_like of shape (..., N)
        Selecting reward of ``N`` i.i.d. samples from ``pi_ref`` (per prompt along the
        leading axes); ties allowed.
    eval_samples : array_like of the same shape
        Evaluation reward (gold) of the same samples.
    n : int or array_like of int of shape (K,)
        Best-of-n to estimate, ``1 <= n <= N``.

    Returns
    -------
    ndarray of shape ``proxy_samples.shape[:-1]``, or (K, ...) when ``n`` is an array
        The average, over all ``C(N, n)`` subsets of ``n`` of the samples, of the eval
        reward best-of-n would pick from that subset (ties broken uniformly).

    Raises
    ------
    ValueError
        If ``n`` is not an integer ``>= 1`` or exceeds ``N``, the samples are not finite,
        or the shapes differ.

    Notes
    -----
    Nakano et al. (2021, WebGPT, appendix) and Gao et al. (2023). Sort the samples by
    proxy; the ``i``-th smallest (1-based) is the best of a uniformly random ``n``-subset
    with probability ``C(i-1, n-1) / C(N, n)``, so

        estimate = sum_i C(i-1, n-1) / C(N, n) * eval_(i).

    Each ``n``-subset of i.i.d. samples is itself an i.i.d. draw of ``n``, so the estimate
    is unbiased for ``E_{pi_bon}[eval]`` and uses all ``N`` samples (unlike ``N/n``
    disjoint groups). It is *not* the plug-in "best-of-n of the empirical distribution",
    which draws with replacement and is biased. Ties in the proxy: best-of-n breaks them
    uniformly among the drawn maximal samples, so a tie group of ``g`` samples with ``a``
    samples below it gets the total weight ``(C(a+g, n) - C(a, n)) / C(N, n)`` spread
    evenly over its members (their eval rewards are averaged). The weights are built from
    their ratios in log space, so ``N`` in the millions is fine.
    """
    proxy = check_finite(proxy_samples, "proxy_samples")
    evals = check_finite(eval_samples, "eval_samples")
    check_same_shape(proxy, evals, "proxy_samples", "eval_samples")
    if proxy.ndim == 0:
        raise ValueError("proxy_samples must have at least one axis (the samples)")
    ns, scalar = _check_n(n)
    big_n = proxy.shape[-1]
    if np.any(ns > big_n):
        raise ValueError(f"n must be <= N = {big_n} (the number of samples), got "
                         f"{ns[np.argmax(ns > big_n)]:.0f}")
    p = proxy.reshape(-1, big_n)
    order = np.argsort(p, axis=-1, kind="stable")
    ps = np.take_along_axis(p, order, axis=-1)
    es = np.take_along_axis(evals.reshape(-1, big_n), order, axis=-1)
    m = ps.shape[0]
    w = _order_statistic_weights(ns, big_n)  # (K, N)
    start, end, new = _tie_bounds(ps)
    if np.all(new):  # no ties: the textbook sum
        estimate = es @ w.T  # (M, K)
        estimate = estimate.T
    else:  # pool the weight of each tie group and share it evenly among its members
        flat_starts = np.flatnonzero(new.ravel())
        group_id = np.cumsum(new.ravel()) - 1
        w_rows = np.broadcast_to(w[:, None, :], (len(ns), m, big_n)).reshape(len(ns), -1)
        pooled = np.add.reduceat(w_rows, flat_starts, axis=-1)[:, group_id]
        size = (end - start + 1).ravel()
        estimate = (pooled / size * es.ravel()).reshape(len(ns), m, big_n).sum(-1)
    return _shape_out(estimate.reshape((len(ns),) + proxy.shape[:-1]), scalar)


def best_of_n_disjoint_estimator(proxy_samples, eval_samples, n: int) -> np.ndarray:
    """The naive estimate: split ``N`` samples into ``N // n`` disjoint groups of ``n``.

    Parameters
    ----------
    proxy_samples, eval_samples : array_like of shape (..., N)
        As in :func:`best_of_n_estimator`; the samples must be in i.i.d. draw order.
    n : int
        ``1 <= n <= N``.

    Returns
    -------
    ndarray of shape ``proxy_samples.shape[:-1]``
        Mean eval reward of the proxy-best sample of each group (the first maximal one,
        which is uniform among ties since i.i.d. samples are exchangeable); the last
        ``N mod n`` samples are unused.

    Notes
    -----
    Unbiased too, but it uses each sample in one group only: its variance is that of a
    mean of ``N // n`` best-of-n draws, larger than that of :func:`best_of_n_estimator`
    (which averages over all ``C(N, n)`` subsets: a Rao-Blackwellisation of this one).
    """
    proxy = check_finite(proxy_samples, "proxy_samples")
    evals = check_finite(eval_samples, "eval_samples")
    check_same_shape(proxy, evals, "proxy_samples", "eval_samples")
    if proxy.ndim == 0:
        raise ValueError("proxy_samples must have at least one axis (the samples)")
    big_n = proxy.shape[-1]
    if big_n == 0:
        raise ValueError(f"proxy_samples must hold at least one sample, got shape {proxy.shape}")
    n = check_int(n, "n", minimum=1, maximum=big_n)
    groups = big_n // n
    shape = proxy.shape[:-1] + (groups, n)
    p = proxy[..., : groups * n].reshape(shape)
    e = evals[..., : groups * n].reshape(shape)
    best = np.take_along_axis(e, p.argmax(-1)[..., None], axis=-1)[..., 0]
    return best.mean(-1)


# --------------------------------------------------------------------------------------
# matching KL with the regularised optimum
# --------------------------------------------------------------------------------------


def kl_matched_beta(pi_ref, reward, kl, prompt_probs=None, *, bracket=(1e-6, 1e6)) -> float:
    """The ``beta`` at which ``E_x KL(pi*_beta || pi_ref)`` equals ``kl``.

    Parameters
    ----------
    pi_ref, reward : array_like of shape (X, Y)
        Reference policy and the reward ``pi*`` optimises.
    kl : float
        Target KL in nats, ``> 0`` and below the KL of the ``beta -> 0`` limit (the
        argmax policy).
    prompt_probs : array_like of shape (X,), optional
        Prompt distribution; uniform if omitted.
    bracket : (float, float)
        Search interval for ``beta``.

    Returns
    -------
    float
        ``beta``, found by Brent's method on ``log beta`` (the KL of ``pi*_beta`` decreases
        monotonically in ``beta``), to a relative accuracy of about ``1e-12``.

    Raises
    ------
    ValueError
        If ``kl <= 0`` or is not reachable inside ``bracket``.

    Notes
    -----
    Used to compare best-of-n with the KL-regularised optimum ``pi*`` (chapter, Stage 3)
    at the same distance from the reference. ``pi*_beta`` maximises ``E r - beta KL``,
    so no policy has a larger expected ``reward`` at the same KL: best-of-n can at most
    match it on the reward it selects with; on another reward (the gold) either may win.
    """
    pi_ref, reward = _check_tables(pi_ref, reward, ndim=2)
    target = check_positive(kl, "kl")
    prompt_probs = check_prompt_probs(prompt_probs, pi_ref.shape[0])
    if not isinstance(bracket, (tuple, list)) or len(bracket) != 2:
        raise ArgumentTypeError(f"bracket must be a pair (low, high), got {bracket!r}")
    b_lo = check_positive(bracket[0], "bracket[0]")
    b_hi = check_float(bracket[1], "bracket[1]", low=b_lo, low_open=True)
    bracket = (b_lo, b_hi)

    def excess(log_beta):
        f = reward_kl_frontier(pi_ref, reward, [np.exp(log_beta)], prompt_probs=prompt_probs)
        return f.kl[0] - target

    lo, hi = np.log(bracket[0]), np.log(bracket[1])
    f_lo, f_hi = excess(lo), excess(hi)
    if not f_lo >= 0 >= f_hi:
        raise ValueError(
            f"kl = {target!r} is not reachable with this pi_ref and reward for beta in "
            f"bracket {bracket}: KL ranges over "
            f"[{f_hi + target:.6g}, {f_lo + target:.6g}]"
        )
    return float(np.exp(brentq(excess, lo, hi, xtol=1e-13, rtol=1e-12)))
