"""Bradley-Terry reward modelling: chapter, *The RLHF Pipeline*, Stage 2 (Reward Model Training).

The chapter's *Bradley-Terry Model* and *Bradley-Terry Maximum Likelihood* on a tabular
world: a reward is a table ``reward[X, Y]`` (prompts x responses), a comparison is a triple
``(x, y_w, y_l)`` of integer indices (prompt, preferred response, dispreferred response).

- :func:`preference_probability`: ``P(y_w > y_l | x) = sigma(r(x, y_w) - r(x, y_l))``.
- :func:`sample_comparisons`: simulated labelers: responses drawn from a policy, labelled by
  Bradley-Terry under a known reward.
- :func:`bradley_terry_nll` and :func:`bradley_terry_grad`: the reward model's negative
  log-likelihood ``-mean log sigma(r(x, y_w) - r(x, y_l))`` (plus an optional Gaussian
  penalty) and its exact gradient.
- :func:`fit_bradley_terry`: the (penalised) maximum-likelihood reward table.

Rewards are identified only up to a per-prompt shift: adding ``c(x)`` to row ``x`` leaves
every preference probability unchanged, so fitted tables are returned with each row centred
to mean zero, and recovery is measured after centring the generating table the same way.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import expit, log_expit

from rlhf_toy._sampling import sample_rows
from rlhf_toy._validate import (
    MAX_SAMPLES,
    as_rng,
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
    check_table_size,
)

#: Largest gradient entry of the (mean-scaled) objective accepted at a fitted table.
_GRAD_TOL = 1e-7

#: Largest penalty precision a fit accepts (a prior standard deviation of 1e-4): beyond it
#: the preconditioned optimiser cannot resolve the data term.
_MAX_L2 = 1e8
#: Smallest prior precision the MAP fit accepts: below it ``l2 / N`` underflows in the
#: preconditioner (the Hessian of an entry no comparison touches) and the fit has no scale.
_MIN_PRIOR_L2 = 1e-300

#: Restarts of the MAP fit from its last table (each removes the rounding of the objective's
#: value at the previous one); one suffices unless prior means are huge.
_PRIOR_ROUNDS = 4

#: Largest prior mean a MAP fit accepts: margins between entries stay finite.
_MAX_PRIOR_MEAN = 1e100

__all__ = [
    "preference_probability",
    "sample_comparisons",
    "bradley_terry_nll",
    "bradley_terry_grad",
    "fit_bradley_terry",
    "fit_bradley_terry_with_prior",
    "comparison_counts",
]


def _reward_table(reward, name: str = "reward") -> np.ndarray:
    """A finite, non-empty float64 table of shape ``(X, Y)``."""
    return check_nonempty(check_ndim(check_finite(reward, name), name, 2, "(X, Y)"), name)


def _flat_comparisons(x, y_w, y_l, n_prompts: int, n_responses: int, table: str = "the table"):
    """Validate a comparison triple; return the flat table indices of winners and losers."""
    x, y_w, y_l = check_comparisons(x, y_w, y_l, n_prompts, n_responses, table)
    return x * n_responses + y_w, x * n_responses + y_l


def _finite_or_raise(value, what: str):
    """``value`` if finite, else a ``ValueError`` naming the arguments that overflowed."""
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{what} overflows float64: reward entries or l2 are too large")
    return value


def _softplus_shift(a, b):
    """``softplus(a + b) - softplus(a)``, accurate to ``eps * (1 + |b|)`` however large ``|a|``.

    ``softplus(t) = max(t, 0) + log1p(exp(-|t|))``: the two ``max`` terms are subtracted
    exactly (``b``, ``-a``, ``a + b`` or 0, each at most ``|b|`` in size), the two bounded
    ``log1p`` terms directly, so a huge ``a`` never enters the result through cancellation.
    """
    t = a + b
    hinge = np.where(a >= 0, np.maximum(b, -a), np.maximum(t, 0.0))
    return hinge + (np.log1p(np.exp(-np.abs(t))) - np.log1p(np.exp(-np.abs(a))))


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------


def preference_probability(r_chosen, r_rejected):
    """Bradley-Terry probability that the first response is preferred.

    Parameters
    ----------
    r_chosen, r_rejected : array_like of float
        Rewards ``r(x, y_w)`` and ``r(x, y_l)``; broadcast against each other.

    Returns
    -------
    ndarray of float
        ``sigma(r_chosen - r_rejected)``, of the broadcast shape.

    Raises
    ------
    ValueError
        If an input has a NaN or inf entry, or the shapes do not broadcast.

    See Also
    --------
    sample_comparisons : draws labels from this probability.

    Notes
    -----
    Chapter, Stage 2, *Bradley-Terry Model*:

    .. math:: P(y_w \\succ y_l \\mid x) = \\sigma\\big(r(x, y_w) - r(x, y_l)\\big).

    Only the difference of rewards enters, which is why a per-prompt shift of the
    reward is unidentifiable. ``P(a, b) + P(b, a) = 1``.

    Examples
    --------
    >>> float(preference_probability(1.0, 1.0))
    0.5
    """
    r_w = check_finite(r_chosen, "r_chosen")
    r_l = check_finite(r_rejected, "r_rejected")
    try:
        np.broadcast_shapes(r_w.shape, r_l.shape)
    except ValueError:
        raise ValueError(
            f"r_chosen and r_rejected must broadcast, got shapes {r_w.shape} and {r_l.shape}"
        ) from None
    return expit(r_w - r_l)


def sample_comparisons(pi, reward, n_pairs, rng, prompt_probs=None):
    """Simulate labelled comparisons from a policy and a Bradley-Terry labeler.

    For each pair: a prompt ``x ~ prompt_probs``, two responses ``y1, y2 ~ pi[x]`` drawn
    independently, and a label: ``y1`` wins with probability ``sigma(r(x, y1) - r(x, y2))``.

    Parameters
    ----------
    pi : array_like of shape (X, Y)
        The sampling policy; each row a distribution over responses (zeros allowed).
    reward : array_like of shape (X, Y)
        The labeler's reward (e.g. the gold reward ``r_star``); finite.
    n_pairs : int
        Number of comparisons, in ``[1, MAX_SAMPLES]`` (``10**7``).
    rng : numpy.random.Generator or int
        Randomness; the same seed gives the same comparisons, bit for bit.
    prompt_probs : array_like of shape (X,), optional
        Distribution of prompts; uniform if ``None``.

    Returns
    -------
    x, y_w, y_l : ndarray of int64, each of shape (n_pairs,)
        Prompt, preferred response and dispreferred response of each comparison.

    Raises
    ------
    ValueError
        If ``n_pairs < 1``, a row of ``pi`` or ``prompt_probs`` is not a distribution,
        ``reward`` is not finite, or the shapes disagree.
    TypeError
        If ``rng`` is neither a Generator nor an int.

    See Also
    --------
    preference_probability : the labelling probability.
    fit_bradley_terry : recovers ``reward`` (up to a per-prompt shift) from the output.

    Notes
    -----
    Chapter, Stage 2, *Bradley-Terry Model*: the labels follow
    ``P(y_w > y_l | x) = sigma(r(x, y_w) - r(x, y_l))``.

    The two responses are independent, so a pair may repeat a response
    (``y_w == y_l``, probability ``sum_y pi(y|x)^2``); such a pair carries no information
    (its NLL is ``log 2`` whatever the reward, its gradient zero) and is kept, as real
    preference data can contain it. Sampling is vectorised over pairs (inverse CDF);
    the only Python loop is over distinct prompts. Draw order from ``rng``: prompts,
    then the ``(n_pairs, 2)`` responses, then the labels.

    Examples
    --------
    >>> pi = [[0.5, 0.5]]
    >>> x, y_w, y_l = sample_comparisons(pi, [[2.0, 0.0]], 4, rng=0)
    >>> x.shape, y_w.dtype
    ((4,), dtype('int64'))
    """
    pi = check_distribution(pi, "pi", ndim=2)
    reward = _reward_table(reward)
    check_same_shape(pi, reward, "pi", "reward")
    n_pairs = check_int(n_pairs, "n_pairs", minimum=1, maximum=MAX_SAMPLES)
    rng = as_rng(rng)
    n_prompts, n_responses = pi.shape

    if prompt_probs is None:
        x = rng.integers(n_prompts, size=n_pairs)
    else:
        prompt_probs = check_prompt_probs(prompt_probs, n_prompts)
        x = sample_rows(prompt_probs[None, :], np.zeros(n_pairs, np.int64), rng.random(n_pairs))
    x = x.astype(np.int64)

    u = rng.random((n_pairs, 2))  # (N, 2): the two independent draws of each pair
    y = sample_rows(pi, np.repeat(x, 2), u.ravel()).reshape(n_pairs, 2)
    y1, y2 = y[:, 0], y[:, 1]

    first_wins = rng.random(n_pairs) < preference_probability(reward[x, y1], reward[x, y2])
    y_w = np.where(first_wins, y1, y2)
    y_l = np.where(first_wins, y2, y1)
    return x, y_w, y_l


# --------------------------------------------------------------------------------------
# negative log-likelihood, gradient, fit
# --------------------------------------------------------------------------------------


def _nll_and_grad(r_flat, i_w, i_l, counts, n_total, l2):
    """Penalised NLL and gradient on the flat table; the one place the formula lives.

    ``counts[k]`` is the multiplicity of comparison ``(i_w[k], i_l[k])`` (``None``: 1).
    Returns ``(f, g)`` with
    ``f = (sum_k counts_k * -log sigma(r[i_w_k] - r[i_l_k]) + l2/2 ||r||^2) / n_total``.
    """
    d = r_flat[i_w] - r_flat[i_l]  # (K,) reward margins
    nll_k = -log_expit(d)  # (K,)
    dnll_dd = -expit(-d)  # (K,) derivative of -log sigma(d)
    if counts is not None:
        nll_k = counts * nll_k
        dnll_dd = counts * dnll_dd
    size = r_flat.size
    grad = np.bincount(i_w, weights=dnll_dd, minlength=size) - np.bincount(
        i_l, weights=dnll_dd, minlength=size
    )
    if l2 == 0.0:
        return nll_k.sum() / n_total, grad / n_total
    f = (nll_k.sum() + 0.5 * l2 * np.dot(r_flat, r_flat)) / n_total
    g = (grad + l2 * r_flat) / n_total
    return f, g


def bradley_terry_nll(reward, x, y_w, y_l, l2=0.0) -> float:
    """Bradley-Terry negative log-likelihood of comparisons, with an optional Gaussian penalty.

    Parameters
    ----------
    reward : array_like of shape (X, Y)
        Reward table; finite.
    x, y_w, y_l : array_like of int, same shape (N,) with N >= 1
        Prompt, preferred and dispreferred response of each comparison.
    l2 : float, default 0.0
        Penalty coefficient, >= 0 (the precision of a Gaussian prior on every entry).

    Returns
    -------
    float
        ``(1/N) [ sum_i -log sigma(r[x_i, y_w_i] - r[x_i, y_l_i]) + (l2/2) ||r||_F^2 ]``.

    Raises
    ------
    ValueError
        If ``reward`` is not a finite 2-D table, the index arrays differ in shape, are
        empty, are not integers or are out of range, or ``l2`` is negative or not finite.

    See Also
    --------
    bradley_terry_grad : its gradient.
    fit_bradley_terry : its minimiser.

    Notes
    -----
    Chapter, Stage 2, *Bradley-Terry Maximum Likelihood*: with ``l2 = 0`` this is exactly
    the chapter's loss ``-mean log sigma(r(x, y_w) - r(x, y_l))``.

    Regulariser scaling: the penalty ``(l2/2) ||r||_F^2`` (Frobenius norm, the whole table)
    is added to the *summed* NLL and the total divided by ``N``. So ``N`` times this value
    is the negative log-posterior under independent ``N(0, 1/l2)`` priors, and the penalty's
    weight relative to the data falls as ``1/N``: the penalised fit is consistent. (Adding
    ``(l2/2) ||r||^2`` to the *mean* NLL instead would keep a bias that never vanishes.)

    Computed as ``-log_expit(margin)``: finite for any finite margin.

    Examples
    --------
    >>> round(bradley_terry_nll([[0.0, 0.0]], [0], [0], [1]), 6)  # log 2
    0.693147
    """
    reward = _reward_table(reward)
    l2 = check_nonnegative(l2, "l2")
    i_w, i_l = _flat_comparisons(x, y_w, y_l, *reward.shape, table="reward")
    with np.errstate(over="ignore", invalid="ignore"):
        f, _ = _nll_and_grad(reward.ravel(), i_w, i_l, None, i_w.size, l2)
    return float(_finite_or_raise(f, "bradley_terry_nll"))


def bradley_terry_grad(reward, x, y_w, y_l, l2=0.0) -> np.ndarray:
    """Exact gradient of :func:`bradley_terry_nll` with respect to the reward table.

    Parameters
    ----------
    reward : array_like of shape (X, Y)
        Reward table; finite.
    x, y_w, y_l : array_like of int, same shape (N,) with N >= 1
        Prompt, preferred and dispreferred response of each comparison.
    l2 : float, default 0.0
        Penalty coefficient, >= 0.

    Returns
    -------
    ndarray of shape (X, Y)
        ``dL/dr``; entries of responses never compared get only the penalty term
        ``l2 r / N``.

    Raises
    ------
    ValueError
        As :func:`bradley_terry_nll`.

    Notes
    -----
    Chapter, Stage 2, *Bradley-Terry Maximum Likelihood*. With ``d_i`` the margin of
    comparison ``i``, ``d/dd (-log sigma(d)) = -sigma(-d)``, so

    .. math::

        \\frac{\\partial L}{\\partial r(x, y)} = \\frac{1}{N}\\Big[
            \\sum_{i: (x_i, y_{w,i}) = (x, y)} -\\sigma(-d_i)
          + \\sum_{i: (x_i, y_{l,i}) = (x, y)} \\sigma(-d_i) + l_2\\, r(x, y) \\Big].

    Accumulated with ``np.bincount`` (no loop over comparisons). Each comparison adds
    ``+g`` and ``-g`` to one row, so without the penalty every row of the gradient sums
    to zero: the per-prompt shift is a flat direction.
    """
    reward = _reward_table(reward)
    l2 = check_nonnegative(l2, "l2")
    i_w, i_l = _flat_comparisons(x, y_w, y_l, *reward.shape, table="reward")
    with np.errstate(over="ignore", invalid="ignore"):
        _, g = _nll_and_grad(reward.ravel(), i_w, i_l, None, i_w.size, l2)
    return _finite_or_raise(g, "bradley_terry_grad").reshape(reward.shape)


def _aggregate(i_w, i_l, size: int):
    """Distinct ``(winner, loser)`` pairs of flat indices with their multiplicities."""
    pair_ids, counts = np.unique(i_w * size + i_l, return_counts=True)
    a_w, a_l = np.divmod(pair_ids, size)
    return a_w, a_l, counts.astype(np.float64)


def _preconditioner(a_w, a_l, counts, size: int, l2: float, n_total: int) -> np.ndarray:
    """``sqrt`` of the Hessian diagonal at ``r = 0``: each comparison adds ``sigma'(0) = 1/4``
    to its two entries, the penalty ``l2``; all divided by ``N``."""
    occurrences = np.bincount(a_w, counts, size) + np.bincount(a_l, counts, size)
    return np.sqrt((0.25 * occurrences + l2) / n_total)


def _comparison_graph(a_w, a_l, size: int):
    """Directed graph on the flat table, an edge winner -> loser per distinct comparison."""
    return coo_matrix((np.ones(a_w.size), (a_w, a_l)), shape=(size, size)).tocsr()


def _check_mle_exists(graph, n_weak: int, a_w, a_l, n_responses: int) -> None:
    """Raise unless the unpenalised Bradley-Terry MLE is finite (Ford's condition).

    The MLE exists iff every weakly connected component of the comparison graph is
    strongly connected: no group of responses that never loses to the rest of the
    responses it was compared with.
    """
    n_strong, strong = connected_components(graph, directed=True, connection="strong")
    if n_strong == n_weak:
        return
    # Name one undefeated group: a strong component that plays others but is never beaten
    # by them (the condensation is a DAG with an edge between components, so one exists).
    cross = strong[a_w] != strong[a_l]
    beaten = np.zeros(n_strong, dtype=bool)
    beaten[strong[a_l[cross]]] = True
    plays_outside = np.zeros(n_strong, dtype=bool)
    plays_outside[strong[a_w[cross]]] = True
    group = int(np.flatnonzero(plays_outside & ~beaten)[0])
    nodes = np.flatnonzero(strong == group)
    prompt = int(nodes[0] // n_responses)
    responses = (nodes % n_responses).tolist()
    shown = responses if len(responses) <= 10 else [*responses[:10], "..."]
    raise ValueError(
        "with l2=0 the Bradley-Terry MLE does not exist (the likelihood keeps rising as "
        f"rewards diverge): in prompt {prompt}, responses {shown} never lose to the other "
        "responses they were compared with. Pass l2 > 0."
    )


def fit_bradley_terry(x, y_w, y_l, n_prompts, n_responses, l2=1e-3) -> np.ndarray:
    """Fit a reward table to comparisons by (penalised) maximum likelihood.

    Parameters
    ----------
    x, y_w, y_l : array_like of int, same shape (N,) with N >= 1
        Prompt, preferred and dispreferred response of each comparison.
    n_prompts, n_responses : int
        Table shape ``(X, Y)``, each >= 1.
    l2 : float, default 1e-3
        Penalty coefficient, in ``[0, 1e8]`` (see :func:`bradley_terry_nll` for its scaling:
        a ``N(0, 1/l2)`` prior per entry, whose weight vanishes as ``N`` grows).

    Returns
    -------
    ndarray of shape (n_prompts, n_responses)
        The minimiser of :func:`bradley_terry_nll`, each row centred to mean zero.

    Raises
    ------
    ValueError
        On invalid comparisons or sizes, or if ``l2 == 0`` and the data are separable
        (the MLE does not exist; the message names the prompt and responses).

    Warns
    -----
    RuntimeWarning
        If the optimiser stops with a gradient entry above ``1e-7``.

    See Also
    --------
    bradley_terry_nll, bradley_terry_grad, sample_comparisons

    Notes
    -----
    Chapter, Stage 2, *Bradley-Terry Maximum Likelihood*: minimising the NLL gives the
    Bradley-Terry reward estimate.

    *Identifiability.* Responses linked by a chain of comparisons form a connected group;
    only differences within a group are identified. Each group is returned with mean zero
    (with ``l2 > 0`` that is the unique optimum), so every row has mean zero and a response
    never compared is exactly 0.

    *l2 = 0* needs the MLE to exist (Ford, 1957: no group of responses never loses to the
    rest of its connected group); otherwise ``ValueError``.

    *Optimiser.* L-BFGS-B with the analytic gradient (``ftol=1e-15``, ``gtol=1e-12``) on
    distinct comparisons with counts, in the subspace where each connected group has mean
    zero, diagonally preconditioned by the Hessian at ``r = 0``.

    References
    ----------
    Bradley and Terry, "Rank analysis of incomplete block designs" (Biometrika, 1952).
    Ford, "Solution of a ranking problem from binary comparisons" (Amer. Math. Monthly, 1957).

    Examples
    --------
    >>> r_hat = fit_bradley_terry([0, 0, 0], [0, 0, 1], [1, 1, 0], 1, 2, l2=0.0)
    >>> round(float(r_hat[0, 0] - r_hat[0, 1]), 6)  # log(2/1): won 2 of 3
    0.693147
    """
    n_prompts, n_responses = check_table_size(n_prompts, n_responses)
    l2 = check_float(l2, "l2", low=0.0, high=_MAX_L2)
    i_w, i_l = _flat_comparisons(x, y_w, y_l, n_prompts, n_responses)
    n_total = i_w.size
    size = n_prompts * n_responses
    a_w, a_l, counts = _aggregate(i_w, i_l, size)

    graph = _comparison_graph(a_w, a_l, size)
    n_groups, group = connected_components(graph, directed=True, connection="weak")
    if l2 == 0.0:
        _check_mle_exists(graph, n_groups, a_w, a_l, n_responses)
    group_size = np.bincount(group, minlength=n_groups)

    def centre_groups(v):
        """Orthogonal projection onto tables whose every connected group has mean zero."""
        return v - (np.bincount(group, weights=v, minlength=n_groups) / group_size)[group]

    # Diagonal preconditioning: optimise s = scale * r.
    scale = _preconditioner(a_w, a_l, counts, size, l2, n_total)
    scale[scale == 0] = 1.0  # l2 == 0 and never compared: the projection pins it to 0

    def objective(s):
        f, g = _nll_and_grad(centre_groups(s / scale), a_w, a_l, counts, n_total, l2)
        return f, centre_groups(g) / scale

    res = minimize(
        objective,
        np.zeros(size),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 20_000, "maxfun": 40_000, "maxcor": 20, "ftol": 1e-15, "gtol": 1e-12},
    )
    r_flat = centre_groups(res.x / scale)
    _, g = _nll_and_grad(r_flat, a_w, a_l, counts, n_total, l2)
    if np.max(np.abs(g)) > _GRAD_TOL:
        warnings.warn(
            f"fit_bradley_terry: L-BFGS-B stopped after {res.nit} iterations with max |grad| = "
            f"{np.max(np.abs(g)):.3g} > {_GRAD_TOL:g} ({res.message})",
            RuntimeWarning,
            stacklevel=2,
        )
    # Every connected group lies in one row and has mean zero, so each row has mean zero
    # already; a never-compared response is a group of its own and stays exactly 0.
    return r_flat.reshape(n_prompts, n_responses)


def fit_bradley_terry_with_prior(x, y_w, y_l, n_prompts, n_responses, prior_mean,
                                 l2) -> np.ndarray:
    """Bradley-Terry MAP estimate under an independent ``N(prior_mean, 1/l2)`` prior per entry.

    Parameters
    ----------
    x, y_w, y_l : array_like of int, same shape (N,) with N >= 1
        Prompt, preferred and dispreferred response of each comparison.
    n_prompts, n_responses : int
        Table shape ``(X, Y)``.
    prior_mean : array_like of shape (X, Y)
        Mean of the prior (a member's random "initialisation" in an ensemble); finite,
        entries within ``+-1e100``.
    l2 : float
        Prior precision, in ``[1e-300, 1e8]``.

    Returns
    -------
    ndarray of shape (n_prompts, n_responses)
        The minimiser, not centred (the prior fixes each row's level).

    Raises
    ------
    ValueError
        On invalid comparisons or sizes, ``l2`` outside ``[1e-300, 1e8]``, or ``prior_mean`` of the
        wrong shape, not finite or beyond ``+-1e100``.

    Warns
    -----
    RuntimeWarning
        If the optimiser stops with a gradient entry above ``1e-7`` plus what float64 can
        resolve at the table's scale (``4 eps R H_ii``, ``R`` the row's largest entry,
        ``H_ii`` the Hessian bound of :func:`fit_bradley_terry`'s preconditioner; it matters
        only for prior means far above 1e6). The message names the iterations and the
        gradient.

    Notes
    -----
    Minimises ``(1/N) [sum_i -log sigma(r[x_i, y_w_i] - r[x_i, y_l_i])
    + (l2/2) ||r - prior_mean||_F^2]``: :func:`bradley_terry_nll` with the penalty
    recentred (Osband et al. 2018, randomised prior functions; used by the reward-model
    ensembles of Coste et al. 2023). L-BFGS-B, preconditioned as :func:`fit_bradley_terry`,
    on the objective minus its value at the start (the data term as
    ``softplus(a + b) - softplus(a)``, exact however large the prior margins), restarted
    from its last table while the gradient is above the tolerance (at most 4 runs).
    """
    n_prompts, n_responses = check_table_size(n_prompts, n_responses)
    l2 = check_float(l2, "l2", low=_MIN_PRIOR_L2, high=_MAX_L2)
    mu = check_finite(prior_mean, "prior_mean")
    if mu.size and np.max(np.abs(mu)) > _MAX_PRIOR_MEAN:
        raise ValueError(f"prior_mean entries must be in [-{_MAX_PRIOR_MEAN:g}, "
                         f"{_MAX_PRIOR_MEAN:g}], got {np.max(np.abs(mu)):g}")
    if mu.shape != (n_prompts, n_responses):
        raise ValueError(f"prior_mean must have shape {(n_prompts, n_responses)}, "
                         f"got {mu.shape}")
    mu = mu.ravel()
    i_w, i_l = _flat_comparisons(x, y_w, y_l, n_prompts, n_responses)
    n_total = i_w.size
    size = mu.size
    a_w, a_l, counts = _aggregate(i_w, i_l, size)
    scale = _preconditioner(a_w, a_l, counts, size, l2, n_total)
    def grad_at(r):
        """Gradient of the objective at the float64 table ``r``."""
        dnll_dd = counts * -expit(-(r[a_w] - r[a_l]))
        return (np.bincount(a_w, dnll_dd, size) - np.bincount(a_l, dnll_dd, size)
                + l2 * (r - mu)) / n_total

    # What float64 can resolve: rounding a table whose row holds entries up to R moves the
    # gradient by at most eps * R * (Hessian row sum <= 2 * scale^2); huge prior means only.
    row_max = np.repeat(np.max(np.abs(mu.reshape(n_prompts, n_responses)), axis=1), n_responses)
    r, n_iter = mu.copy(), 0
    for _ in range(_PRIOR_ROUNDS):
        # Minimise F(r0 + u) - F(r0) over u, computed without the cancellation of F(r0):
        # the data term by _softplus_shift, the penalty expanded around dev0 = r0 - mu.
        d0, dev0 = r[a_w] - r[a_l], r - mu

        def objective(s, d0=d0, dev0=dev0):
            u = s / scale
            delta = u[a_w] - u[a_l]
            f = counts @ _softplus_shift(-d0, -delta) + l2 * (dev0 @ u + 0.5 * u @ u)
            dnll_dd = counts * -expit(-(d0 + delta))
            g = np.bincount(a_w, dnll_dd, size) - np.bincount(a_l, dnll_dd, size)
            return f / n_total, (g + l2 * (dev0 + u)) / (n_total * scale)

        res = minimize(objective, np.zeros(size), jac=True, method="L-BFGS-B",
                       options={"maxiter": 20_000, "maxfun": 40_000, "maxcor": 30,
                                "ftol": 1e-15, "gtol": 1e-12})
        r, n_iter = r + res.x / scale, n_iter + res.nit
        g = np.abs(grad_at(r))
        floor = 4 * np.finfo(float).eps * np.maximum(row_max, np.abs(r)) * scale**2
        if np.all(g <= _GRAD_TOL + floor):
            break
    else:
        warnings.warn(
            f"fit_bradley_terry_with_prior: L-BFGS-B stopped after {n_iter} iterations with "
            f"max |grad| = {np.max(g):.3g} > {_GRAD_TOL:g} ({res.message})",
            RuntimeWarning,
            stacklevel=2,
        )
    return r.reshape(n_prompts, n_responses)


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

    Examples
    --------
    >>> comparison_counts([0, 0], [1, 1], [0, 2], 1, 3).tolist()
    [[1, 2, 1]]

    Notes
    -----
    ``N[x, y] = #{i : x_i = x, y_w_i = y} + #{i : x_i = x, y_l_i = y}``.
    """
    n_prompts, n_responses = check_table_size(n_prompts, n_responses)
    i_w, i_l = _flat_comparisons(x, y_w, y_l, n_prompts, n_responses)
    size = n_prompts * n_responses
    counts = np.bincount(i_w, minlength=size) + np.bincount(i_l, minlength=size)
    return counts.reshape(n_prompts, n_responses).astype(np.int64)
