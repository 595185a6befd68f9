"""Reverse versus forward KL: mode-seeking and mass-covering, on a 1-D response grid.

Implements the chapter's section "RLHF uses reverse KL, which is mode-seeking": the
RLHF penalty ``KL(pi || pi_ref)`` has the policy on the left. Two
experiments make the asymmetry concrete.

1. **Fitting one Gaussian to two modes.** :func:`fit_gaussian` projects a target
   distribution ``t`` on a grid onto the family of discretised Gaussians ``q``, either
   by the *reverse* KL ``KL(q || t)`` (what RLHF does: the fitted model is on the left)
   or by the *forward* KL ``KL(t || q)`` (maximum likelihood / distribution matching).
   Reverse KL is *zero-forcing*: ``q`` must be small wherever ``t`` is small, so it
   locks onto one mode. Forward KL is *zero-avoiding* (mass-covering): ``q`` must be
   large wherever ``t`` has mass, so it straddles both modes. The chapter's text calls
   forward KL "zero-forcing"; the two labels are swapped there (its description of
   what each divergence does is right).
2. **The RLHF picture.** On a 1-D response grid with a multi-modal ``pi_ref``:

   - the exact optimum ``pi* = pi_ref exp(r / beta) / Z`` (:func:`rlhf_mode_sweep`)
     keeps every mode of ``pi_ref`` in principle (``pi* > 0`` wherever ``pi_ref > 0``),
     but tilts them by ``exp(r / beta)``: as ``beta`` shrinks the lower-reward modes are
     suppressed *exponentially* and :func:`mode_summary` stops counting them;
   - the optimum of the objective with the KL *swapped*,
     ``E_pi r - beta KL(pi_ref || pi)`` (:func:`forward_kl_regularised_policy`,
     ``pi = beta pi_ref / (lambda - r)``), is *not* more diverse: it suppresses the low
     responses only polynomially but piles more mass near the argmax of ``r``, and in
     the world of :func:`rlhf_mode_world` it counts no more modes at equal ``beta`` and
     has no more entropy at equal expected reward (a few hundredths of a nat more near
     ``pi_ref``, up to 1.5 nats less far from it);
   - within a restricted family (one Gaussian), maximising the RLHF objective is exactly
     the reverse-KL projection of ``pi*`` (``J(q) = beta log Z - beta KL(q || pi*)``),
     while Korbak et al.'s distribution matching (GDC) is the forward-KL projection of
     ``pi*``: the first picks one mode, the second covers them all
     (:func:`rlhf_gaussian_fits`). This is where mode-seeking shows.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import entr, logsumexp

from rlhf_toy._validate import (
    MAX_TABLE_ENTRIES,
    check_betas,
    check_distribution,
    check_finite,
    check_float,
    check_int,
    check_ndim,
    check_nonempty,
    check_positive,
    check_same_shape,
)
from rlhf_toy.kl import entropy, kl_divergence
from rlhf_toy.optimal import objective, optimal_policy

__all__ = [
    "DIVERGENCES",
    "discretized_gaussian",
    "fit_gaussian",
    "fit_gaussian_local",
    "forward_kl_regularised_policy",
    "gaussian_divergence",
    "mode_summary",
    "reverse_kl_landscape",
    "rlhf_gaussian_fits",
    "rlhf_mode_sweep",
    "rlhf_mode_world",
    "two_mode_target",
]

#: The two directions :func:`fit_gaussian` knows: ``"reverse"`` is ``KL(q || target)``,
#: ``"forward"`` is ``KL(target || q)``, with ``q`` the fitted Gaussian.
DIVERGENCES = ("reverse", "forward")


# --- distributions on a grid ----------------------------------------------------------------


def _check_grid(grid) -> np.ndarray:
    grid = check_finite(grid, "grid")
    if grid.ndim != 1 or grid.size < 3:
        raise ValueError(f"grid must be a 1-D array of at least 3 points, got shape {grid.shape}")
    if np.any(np.diff(grid) <= 0):
        raise ValueError("grid must be strictly increasing")
    return grid


def _gaussian_log_probs(grid, mean, std) -> np.ndarray:
    """``log q`` of discretised Gaussians, broadcasting ``mean`` and ``std``; shape (..., G).

    The logits are taken relative to the grid point ``g_k`` nearest the mean,
    ``-(z_i^2 - z_k^2) / 2 = -(g_i - g_k)(g_i + g_k - 2 mean) / (2 std^2) <= 0``, so that a
    mean near ``1e308`` or a subnormal ``std`` gives the exact limit (all mass on the
    nearest points) instead of ``inf - inf``.
    """
    mean = np.asarray(mean, dtype=np.float64)[..., None]  # (..., 1)
    std = np.asarray(std, dtype=np.float64)[..., None]
    # the nearest point, found on the clipped mean (grid - 1e308 rounds to one value)
    k = np.argmin(np.abs(grid - np.clip(mean, grid[0], grid[-1])), axis=-1)[..., None]
    g_k = grid[k]  # (..., 1)
    with np.errstate(over="ignore"):  # -inf logits: probabilities below float64's range
        a = np.abs((grid - g_k) / std)  # (..., G)
        b = np.abs(((grid - mean) + (g_k - mean)) / std)
        tie = (a == 0) | (b == 0)
        logits = -0.5 * np.where(tie, 0.0, a) * np.where(tie, 0.0, b)
    return logits - logsumexp(logits, axis=-1, keepdims=True)


def discretized_gaussian(grid, mean, std) -> np.ndarray:
    """A Gaussian restricted to a 1-D grid: ``q(g_i) ∝ exp(-(g_i - mean)^2 / (2 std^2))``.

    Parameters
    ----------
    grid : array_like of shape (G,)
        Strictly increasing grid points (the "responses").
    mean : float or array_like
        Centre(s); broadcast against ``std``.
    std : float or array_like
        Width(s), each ``> 0``.

    Returns
    -------
    ndarray of shape ``broadcast(mean, std).shape + (G,)``
        Probabilities summing to one along the last axis (the density at the grid points,
        renormalised on the grid; computed in log space so far tails underflow to 0 only
        below ``1e-308``).

    Raises
    ------
    ValueError
        If the grid is not strictly increasing, or a ``std`` is not positive and finite.

    Notes
    -----
    The family :func:`fit_gaussian` projects onto (chapter: "RLHF uses reverse KL, which
    is mode-seeking").
    """
    grid = _check_grid(grid)
    mean = check_finite(mean, "mean")
    std = check_finite(std, "std")
    if np.any(std <= 0):
        raise ValueError(f"std must be > 0, got {std}")
    return np.exp(_gaussian_log_probs(grid, mean, std))


def two_mode_target(grid, means=(-3.0, 3.0), stds=(0.7, 0.7), weights=(0.5, 0.5)) -> np.ndarray:
    """A mixture of discretised Gaussians on ``grid`` (two modes by default, any number allowed).

    ``t = sum_k w_k discretized_gaussian(grid, mean_k, std_k)``.

    Parameters
    ----------
    grid : array_like of shape (G,)
        Strictly increasing grid.
    means, stds, weights : sequences of the same length K
        Component centres, widths (``> 0``) and weights (``>= 0``, summing to one).

    Returns
    -------
    ndarray of shape (G,)
        Probabilities summing to one.
    """
    means = check_ndim(np.atleast_1d(check_finite(means, "means")), "means", 1, "(M,)")
    stds = check_ndim(np.atleast_1d(_check_stds(stds, "stds")), "stds", 1, "(S,)")
    check_nonempty(stds, "stds")
    weights = check_distribution(np.atleast_1d(weights), "weights")
    if not (means.shape == stds.shape == weights.shape) or means.ndim != 1:
        raise ValueError(
            f"means, stds and weights must be 1-D of the same length, got shapes "
            f"{means.shape}, {stds.shape}, {weights.shape}"
        )
    return weights @ discretized_gaussian(grid, means, stds)


# --- projecting onto Gaussians ----------------------------------------------------------------


def _check_target(target, grid, divergence):
    grid = _check_grid(grid)
    target = check_distribution(target, "target")
    if target.shape != grid.shape:
        raise ValueError(f"target must have the grid's shape {grid.shape}, got {target.shape}")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    if divergence == "reverse" and np.any(target <= 0):
        bad = int(np.argmax(target <= 0))
        raise ValueError(
            f"target must be > 0 on the whole grid for the reverse KL (a Gaussian puts mass "
            f"everywhere, so KL(q || target) would be infinite), got 0 at grid index {bad}"
        )
    return target, grid


def _check_stds(std, name: str) -> np.ndarray:
    """Finite widths ``> 0``, as float64."""
    std = check_finite(std, name)
    if np.any(std <= 0):
        raise ValueError(f"{name} must be > 0, got {std[std <= 0].ravel()[0]}")
    return std


def gaussian_divergence(target, grid, mean, std, divergence: str) -> np.ndarray:
    """``KL(q || target)`` (``"reverse"``) or ``KL(target || q)`` (``"forward"``), exactly.

    ``q = discretized_gaussian(grid, mean, std)``; ``mean`` and ``std`` broadcast, so a
    whole landscape is one call.

    Parameters
    ----------
    target : array_like of shape (G,)
        Distribution on the grid (``> 0`` everywhere for ``"reverse"``).
    grid : array_like of shape (G,)
    mean, std : float or array_like
    divergence : {"reverse", "forward"}

    Returns
    -------
    ndarray of shape ``broadcast(mean, std).shape``
    """
    target, grid = _check_target(target, grid, divergence)
    mean = check_finite(mean, "mean")
    std = _check_stds(std, "std")
    try:
        np.broadcast_shapes(mean.shape, std.shape)
    except ValueError:
        raise ValueError(f"mean and std must broadcast together, got shapes {mean.shape} "
                         f"and {std.shape}") from None
    log_q = _gaussian_log_probs(grid, mean, std)
    if divergence == "reverse":
        # q log(q / target) -> 0 where q underflows to 0 (log q = -inf): the exact limit
        with np.errstate(invalid="ignore"):
            terms = np.exp(log_q) * (log_q - np.log(target))
        return np.where(np.isneginf(log_q), 0.0, terms).sum(-1)
    # log q stays finite where q underflows, so a too-narrow q gets a large finite value
    return -entr(target).sum() - (target * log_q).sum(-1)


def _objective_and_grad(params, grid, target, log_target, neg_entropy, divergence):
    """Divergence and its gradient wrt ``(mean, log std)``.

    With ``l_i = -z_i^2 / 2``, ``z_i = (g_i - m) / s`` and ``q = softmax(l)``:
    reverse ``dKL/dl = q (f - KL)`` with ``f = log q - log t``; forward ``dKL/dl = q - t``;
    ``dl/dm = z / s`` and ``dl/d log s = z^2``.
    """
    m, u = params
    s = np.exp(u)
    z = (grid - m) / s
    logits = -0.5 * z**2  # max is ~0 (the grid point nearest m), so no overflow
    log_q = logits - np.log(np.exp(logits).sum())
    q = np.exp(log_q)
    if divergence == "reverse":
        f = log_q - log_target
        value = q @ f
        d_logits = q * (f - value)
    else:
        value = neg_entropy - target @ log_q  # finite even where q underflows
        d_logits = q - target
    grad = np.array([d_logits @ (z / s), d_logits @ z**2])
    return float(value), grad


def _local_fit(target, grid, divergence, mean0, std0):
    spacing = float(np.min(np.diff(grid)))
    span = float(grid[-1] - grid[0])
    with np.errstate(divide="ignore"):
        log_target = np.log(target)
    res = minimize(
        _objective_and_grad,
        x0=np.array([mean0, np.log(std0)]),
        args=(grid, target, log_target, -entr(target).sum(), divergence),
        jac=True,
        method="L-BFGS-B",
        bounds=[(grid[0], grid[-1]), (np.log(spacing / 2), np.log(span))],
        options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 2000},
    )
    return float(res.x[0]), float(np.exp(res.x[1])), float(res.fun)


def fit_gaussian_local(target, grid, divergence: str, init) -> tuple[float, float]:
    """The local minimiser of the divergence reached from ``init = (mean, std)``.

    L-BFGS-B on ``(mean, log std)`` with exact gradients, ``mean`` kept on the grid's
    range and ``std`` between half the grid spacing and the grid's span.

    Parameters
    ----------
    target : array_like of shape (G,)
    grid : array_like of shape (G,)
    divergence : {"reverse", "forward"}
        ``"reverse"``: minimise ``KL(q || target)``; ``"forward"``: ``KL(target || q)``.
    init : (float, float)
        Starting ``(mean, std)``.

    Returns
    -------
    (mean, std) : tuple of float

    Notes
    -----
    Forward KL is convex in the natural parameters of the Gaussian family (it is a
    moment-matching problem), so every start reaches the same fit. Reverse KL is not:
    each well-separated mode is a basin of its own, so a start near the *lighter* mode
    of an unequal mixture stays there, at a worse objective than the global fit. For
    two equal modes at -3 and +3 (std 0.7, grid [-12, 12]) there is also a third,
    poorer basin between them: starts at mean 0 (every width tried, 0.05 to 20), or at
    mean 0.5 and std 1, end at the broad Gaussian (0, 2.58), a strict local minimum with
    ``KL = 2.24`` against ``log 2 = 0.69`` at either mode; a narrow start at 1.5
    reaches the mode. See the tests and notebook 05.
    """
    target, grid = _check_target(target, grid, divergence)
    if isinstance(init, (str, bytes)) or np.ndim(init) != 1 or len(init) != 2:
        raise ValueError(f"init must be a pair (mean, std), got {init!r}")
    mean0, std0 = init
    mean0 = float(check_finite(mean0, "init mean"))
    std0 = check_positive(std0, "init std")
    mean, std, _ = _local_fit(target, grid, divergence, mean0, std0)
    return mean, std


def fit_gaussian(target, grid, divergence: str, n_starts: int = 6) -> tuple[float, float]:
    """The global minimiser of ``KL(q || target)`` or ``KL(target || q)`` over Gaussians ``q``.

    Two stages: the divergence is evaluated (vectorised) on a coarse grid of 61 means
    spread over the grid's range times 16 widths from one grid spacing to the grid's
    span; a local fit (:func:`fit_gaussian_local`) is then run from each of the
    ``n_starts`` best local minima of that coarse landscape, and the best result kept.

    Parameters
    ----------
    target : array_like of shape (G,)
        Distribution on the grid; ``> 0`` everywhere for ``"reverse"``.
    grid : array_like of shape (G,)
        Strictly increasing grid.
    divergence : {"reverse", "forward"}
        ``"reverse"``: ``KL(q || target)``, the direction of the RLHF penalty (the fitted
        model on the left): mode-seeking, zero-forcing. ``"forward"``: ``KL(target || q)``,
        maximum likelihood / distribution matching: mass-covering, zero-avoiding.
    n_starts : int, default 6
        How many coarse local minima (best first) to refine.

    Returns
    -------
    (mean, std) : tuple of float
        For two well-separated equal modes: reverse gives one of the modes (mean and std
        of that component, up to the other's negligible pull), forward gives the mixture's
        mean and (nearly) its standard deviation.

    Raises
    ------
    ValueError
        If the target is not a distribution on the grid, or is zero somewhere on it for
        ``"reverse"``, or ``divergence`` is unknown.

    Notes
    -----
    Chapter, "RLHF uses reverse KL, which is mode-seeking". For the forward direction
    the minimiser matches the target's mean and variance (up to the grid's truncation
    of the Gaussian's tails).
    """
    target, grid = _check_target(target, grid, divergence)
    n_starts = check_int(n_starts, "n_starts", maximum=61 * 16)  # the coarse grid's points
    span = float(grid[-1] - grid[0])
    spacing = float(np.min(np.diff(grid)))
    means = np.linspace(grid[0], grid[-1], 61)
    stds = np.geomspace(spacing, span, 16)
    values = gaussian_divergence(target, grid, means[:, None], stds[None, :], divergence)
    # coarse local minima: no smaller value among the (up to 8) neighbours
    padded = np.pad(values, 1, constant_values=np.inf)
    neighbours = np.stack([
        padded[1 + di:padded.shape[0] - 1 + di, 1 + dj:padded.shape[1] - 1 + dj]
        for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)
    ])
    is_min = np.all(values <= neighbours, axis=0)
    order = np.argsort(np.where(is_min, values, np.inf), axis=None)[:n_starts]
    candidates = [np.unravel_index(k, values.shape) for k in order if is_min.flat[k]]
    best = None
    for i, j in candidates:  # a few small optimisations
        fit = _local_fit(target, grid, divergence, means[i], stds[j])
        if best is None or fit[2] < best[2]:
            best = fit
    return best[0], best[1]


def reverse_kl_landscape(target, grid, means, stds) -> np.ndarray:
    """``min over std`` of ``KL(q_{mean, std} || target)`` for each ``mean``, on a std grid.

    Parameters
    ----------
    target, grid : as in :func:`fit_gaussian`
    means : array_like of shape (M,)
    stds : array_like of shape (S,)

    Returns
    -------
    ndarray of shape (M,)
        The profile of the reverse-KL objective along the mean: one basin per
        well-separated mode (and a ridge between them).
    """
    means = check_ndim(np.atleast_1d(check_finite(means, "means")), "means", 1, "(M,)")
    stds = check_ndim(np.atleast_1d(_check_stds(stds, "stds")), "stds", 1, "(S,)")
    check_nonempty(stds, "stds")
    values = gaussian_divergence(target, grid, means[:, None], stds[None, :], "reverse")
    return values.min(axis=1)


# --- the RLHF picture -----------------------------------------------------------------------


def mode_summary(pi, threshold: float = 0.05) -> dict[str, np.ndarray]:
    """Entropy and number of modes of distributions on a 1-D response grid.

    Parameters
    ----------
    pi : array_like of shape (..., G)
        Distributions along the last axis (neighbouring entries are neighbouring responses).
    threshold : float, default 0.05
        A mode is a local maximum ``pi[i] > pi[i-1]`` and ``pi[i] >= pi[i+1]`` (an end point
        needs only its one neighbour) whose height is at least ``threshold * max(pi)``.

    Returns
    -------
    dict
        ``"entropy"``: ``H(pi)`` in nats; ``"effective_size"``: ``exp(H)``, the number of
        equally likely responses with the same entropy; ``"n_modes"``: the count above.
        Arrays of shape ``pi.shape[:-1]``.

    Notes
    -----
    Used to watch ``pi* = pi_ref exp(r / beta) / Z`` drop the modes of ``pi_ref`` as
    ``beta`` shrinks (chapter: "RLHF uses reverse KL, which is mode-seeking").
    """
    pi = check_distribution(pi, "pi")
    if pi.shape[-1] < 2:
        raise ValueError(f"pi needs at least 2 responses, got shape {pi.shape}")
    threshold = check_float(threshold, "threshold", low=0.0, high=1.0, high_open=True)
    pad = np.full(pi.shape[:-1] + (1,), -np.inf)
    padded = np.concatenate([pad, pi, pad], axis=-1)
    left, centre, right = padded[..., :-2], padded[..., 1:-1], padded[..., 2:]
    is_mode = (centre > left) & (centre >= right)
    is_mode &= centre >= threshold * pi.max(-1, keepdims=True)
    h = entropy(pi)
    return {"entropy": h, "effective_size": np.exp(h), "n_modes": is_mode.sum(-1)}


def forward_kl_regularised_policy(pi_ref, reward, beta) -> np.ndarray:
    """Maximiser of the objective with the KL swapped: ``E_pi r - beta KL(pi_ref || pi)``.

    ``pi(y) = beta pi_ref(y) / (lambda - r(y))``, with ``lambda > max_y r(y)`` the unique
    value making the row sum to one.

    Parameters
    ----------
    pi_ref : array_like of shape (..., Y)
        Reference policy, ``> 0`` everywhere (see Raises).
    reward : array_like of the same shape
        Finite rewards.
    beta : float
        KL coefficient, ``> 0``.

    Returns
    -------
    ndarray of the input shape

    Raises
    ------
    ValueError
        If ``pi_ref`` has a zero: the forward KL puts no price on mass where
        ``pi_ref = 0``, so the optimum there is not of this form (it is not
        zero-forcing), and this function does not handle it.

    Notes
    -----
    Stationarity on the simplex: ``r(y) + beta pi_ref(y) / pi(y) = lambda``. The
    objective is concave in ``pi`` so this is the global maximum. Compared with
    ``pi* ∝ pi_ref exp(r / beta)`` the low-reward responses are suppressed only by the
    factor ``beta / (lambda - r)``: the forward penalty is infinite if ``pi`` drops any
    response of ``pi_ref`` (mass-covering). But as ``lambda -> max r`` the same factor
    concentrates mass sharply at the argmax of ``r``, so this optimum is not more diverse
    than ``pi*`` at equal expected reward (notebook 05). It is also what gradient ascent
    converges to when the KL gradient is GRPO's "k3 in the loss" (see
    :mod:`rlhf_toy.bandit.experiments.kl_study`).
    ``lambda`` is found by bisection on ``log((lambda - r_max) / beta)`` between
    ``log pi_ref(argmax r)`` and ``0``, vectorised over rows; scaled by ``beta`` so that
    every accepted ``beta``, subnormal included, keeps the bracket finite.
    """
    pi_ref = check_distribution(pi_ref, "pi_ref")
    reward = check_finite(reward, "reward")
    check_same_shape(pi_ref, reward, "pi_ref", "reward")
    beta = check_positive(beta, "beta")
    if np.any(pi_ref <= 0):
        raise ValueError("pi_ref must be > 0 everywhere for the forward-KL-regularised optimum")
    r_max = reward.max(-1, keepdims=True)
    gap = r_max - reward  # >= 0
    p_top = np.take_along_axis(pi_ref, reward.argmax(-1)[..., None], axis=-1)
    # lambda = beta * mu: pi = pi_ref / (mu + gap / beta), so a subnormal beta cannot
    # underflow the bracket; gap / beta = inf (pi = 0 off the top) is the exact limit
    with np.errstate(over="ignore"):
        scaled_gap = gap / beta
    lo = np.log(p_top)  # sum >= 1 here
    hi = np.zeros_like(lo)  # sum <= 1 here
    for _ in range(200):  # fixed-count bisection, every row at once
        mid = 0.5 * (lo + hi)
        total = (pi_ref / (np.exp(mid) + scaled_gap)).sum(-1, keepdims=True)
        too_big = total > 1.0
        lo = np.where(too_big, mid, lo)
        hi = np.where(too_big, hi, mid)
    pi = pi_ref / (np.exp(0.5 * (lo + hi)) + scaled_gap)
    return pi / pi.sum(-1, keepdims=True)


def rlhf_mode_world(n_grid: int = 401):
    """The 1-D response world of notebook 05: three clusters of responses of unequal quality.

    Parameters
    ----------
    n_grid : int, default 401
        Number of grid points on ``[-8, 8]``.

    Returns
    -------
    grid : ndarray of shape (n_grid,)
    pi_ref : ndarray of shape (n_grid,)
        ``two_mode_target(grid, means=(-4, 0, 4), stds=(0.8, 0.8, 0.8),
        weights=(0.3, 0.4, 0.3))``: the reference policy has three modes.
    reward : ndarray of shape (n_grid,)
        ``0.4 b(y + 4) + 0.7 b(y) + b(y - 4)`` with ``b(u) = exp(-u^2 / 2)``: the right
        cluster is best, the middle one second, the left one worst.
    """
    n_grid = check_int(n_grid, "n_grid", minimum=3, maximum=MAX_TABLE_ENTRIES)
    grid = np.linspace(-8.0, 8.0, n_grid)
    pi_ref = two_mode_target(grid, (-4.0, 0.0, 4.0), (0.8, 0.8, 0.8), (0.3, 0.4, 0.3))
    bump = lambda u: np.exp(-0.5 * u**2)  # noqa: E731
    reward = 0.4 * bump(grid + 4) + 0.7 * bump(grid) + bump(grid - 4)
    return grid, pi_ref, reward


def rlhf_mode_sweep(pi_ref, reward, betas, threshold: float = 0.05) -> dict[str, np.ndarray]:
    """Entropy, modes and expected reward of ``pi*_beta`` and of the forward-KL optimum.

    Parameters
    ----------
    pi_ref : array_like of shape (G,)
        Reference policy on a 1-D response grid, ``> 0`` everywhere.
    reward : array_like of shape (G,)
        Reward of each response.
    betas : array_like of shape (B,)
        KL coefficients, each ``> 0``.
    threshold : float
        Passed to :func:`mode_summary`.

    Returns
    -------
    dict of ndarray
        ``"betas"`` (B,); ``"pi_star"`` (B, G), the RLHF optimum
        ``pi_ref exp(r / beta) / Z`` (reverse KL); ``"pi_forward"`` (B, G), the maximiser
        of ``E r - beta KL(pi_ref || pi)``; and for each of the two (suffix ``_star`` /
        ``_forward``): ``"entropy"``, ``"n_modes"``, ``"reward"`` (expected reward),
        ``"kl"`` (``KL(pi || pi_ref)``), each (B,).
    """
    pi_ref = check_distribution(pi_ref, "pi_ref")
    reward = check_finite(reward, "reward")
    check_same_shape(pi_ref, reward, "pi_ref", "reward")
    if pi_ref.ndim != 1:
        raise ValueError(f"pi_ref must be 1-D (one prompt), got shape {pi_ref.shape}")
    betas = check_betas(betas)
    ref_b = np.broadcast_to(pi_ref, betas.shape + pi_ref.shape)
    # one exact solve per beta (r / beta would overflow for a subnormal beta)
    pi_star = np.stack([optimal_policy(pi_ref, reward, beta) for beta in betas])
    pi_fwd = np.stack([forward_kl_regularised_policy(pi_ref, reward, beta) for beta in betas])
    out = {"betas": betas, "pi_star": pi_star, "pi_forward": pi_fwd}
    for name, pi in [("star", pi_star), ("forward", pi_fwd)]:
        summary = mode_summary(pi, threshold)
        out[f"entropy_{name}"] = summary["entropy"]
        out[f"n_modes_{name}"] = summary["n_modes"]
        out[f"reward_{name}"] = pi @ reward
        out[f"kl_{name}"] = kl_divergence(pi, ref_b)
    return out


def rlhf_gaussian_fits(pi_ref, reward, grid, beta) -> dict:
    """The best single-Gaussian policy for the RLHF objective, and the distribution-matching one.

    Parameters
    ----------
    pi_ref : array_like of shape (G,)
        Reference policy on the grid (``> 0`` everywhere).
    reward : array_like of shape (G,)
    grid : array_like of shape (G,)
    beta : float

    Returns
    -------
    dict
        ``"pi_star"``: the exact optimum on the grid; ``"rlhf"``: ``(mean, std)`` of the
        Gaussian maximising ``J(q) = E_q r - beta KL(q || pi_ref)``, which is the
        reverse-KL projection of ``pi*`` since ``J(q) = beta log Z - beta KL(q || pi*)``;
        ``"gdc"``: ``(mean, std)`` of the forward-KL projection ``argmin KL(pi* || q)``,
        the distribution-matching fit of Korbak et al. (2022); ``"q_rlhf"`` and ``"q_gdc"``:
        the fitted Gaussians on the grid; ``"objective_rlhf"`` and ``"objective_gdc"``:
        ``J`` of each fit.

    Notes
    -----
    Chapter, "RLHF uses reverse KL, which is mode-seeking" (Korbak et al., arXiv
    2206.00761). The identity ``J(q) = beta log Z - beta KL(q || pi*)`` holds for every
    ``q``, so within any family RLHF is a reverse-KL projection of ``pi*``.
    """
    beta = check_positive(beta, "beta")
    pi_star = optimal_policy(pi_ref, reward, beta)
    if np.any(pi_star <= 0):  # the reverse-KL fit needs pi* > 0 on the whole grid
        bad = int(np.argmax(pi_star <= 0))
        raise ValueError(f"reward / beta spans too wide a range: pi* underflows to 0 at grid "
                         f"index {bad}, and the reverse-KL Gaussian fit needs pi* > 0 "
                         f"everywhere (beta={beta!r})")
    fits = {"pi_star": pi_star}
    for name, divergence in [("rlhf", "reverse"), ("gdc", "forward")]:
        mean, std = fit_gaussian(pi_star, grid, divergence)
        fits[name] = (mean, std)
        q = discretized_gaussian(grid, mean, std)
        fits[f"q_{name}"] = q
        fits[f"objective_{name}"] = objective(q, pi_ref, reward, beta)
    return fits
