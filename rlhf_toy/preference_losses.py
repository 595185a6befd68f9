"""Preference losses on log-probabilities: chapter, *DPO: Direct Preference Optimization*.

The chapter's *DPO as Implicit Reward Model* (DPO's loss, its implicit reward and the
gradient asked for in the exercise *Derive the DPO gradient*), and the offline relatives of
DPO its *Modern variations* paragraph alludes to (SLiC is named there): IPO, conservative
DPO, the SLiC/RSO hinge, SimPO, ORPO and KTO.

Every loss is model-agnostic: it takes arrays of log-probabilities of whole responses
(sums of per-token log-probs; SimPO and ORPO take the lengths to average them) and returns
the **per-example** loss together with its gradient with respect to the *policy*
log-probabilities it was given (never the reference's, which are constants). The tabular
world pushes that gradient through an exact softmax; the GPT world spreads it over the
tokens of the response (the gradient of a sum is the same for every term). Averaging over a
batch is left to the caller.

Shapes: ``policy_chosen`` and ``policy_rejected`` have the same shape, the pairs' shape;
every other array argument (reference log-probs, lengths, labels) must broadcast to it.
Losses and gradients come back with the pairs' shape.

Conventions (checked against the papers and Hugging Face TRL's trainers, see each
function): ``h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))`` is the
log-ratio margin and ``beta > 0``. Every sigmoid is evaluated in log space
(``log_expit``, ``expit``), so margins of 1e4 and ``beta`` from 1e-8 to 1e8 give finite
losses and gradients.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np
from scipy.special import expit, log_expit

from rlhf_toy._validate import (
    check_finite,
    check_float,
    check_mask,
    check_positive,
    check_same_shape,
)

__all__ = [
    "implicit_reward",
    "dpo_loss",
    "ipo_loss",
    "cdpo_loss",
    "hinge_loss",
    "simpo_loss",
    "orpo_loss",
    "kto_loss",
]


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _check_broadcast(a, name: str, shape: tuple, target: str = "the pairs'") -> np.ndarray:
    """A finite float64 array broadcast (read-only) to ``shape`` (``target``'s shape)."""
    a = check_finite(a, name)
    try:
        return np.broadcast_to(a, shape)
    except ValueError:
        raise ValueError(
            f"{name} of shape {a.shape} does not broadcast to {target} shape {shape}"
        ) from None


def _check_pairs(policy_chosen, policy_rejected, **others):
    """Validate the policy log-probs (same shape) and broadcast the other arrays to it."""
    pc = check_finite(policy_chosen, "policy_chosen")
    pr = check_finite(policy_rejected, "policy_rejected")
    check_same_shape(pc, pr, "policy_chosen", "policy_rejected")
    rest = [_check_broadcast(v, k, pc.shape) for k, v in others.items()]
    return (pc, pr, *rest)


def _check_lengths(length, name: str, shape: tuple) -> np.ndarray:
    """Response lengths: finite, > 0, broadcast to ``shape``."""
    length = _check_broadcast(length, name, shape)
    if np.any(length <= 0):
        bad = np.argwhere(length <= 0)[0]
        raise ValueError(
            f"{name} must be > 0, got {length[tuple(bad)]} at index {tuple(int(i) for i in bad)}"
        )
    return length


def _log_ratio_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected):
    """``h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))``.

    ``+-inf`` when finite inputs overflow one way (the losses' limits are then exact);
    ``inf - inf`` has no meaning and raises ``ValueError`` (the hinge would hide it as 0).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    if np.any(np.isnan(h)):
        raise ValueError(
            "policy_chosen, policy_rejected, ref_chosen, ref_rejected overflow float64: "
            "their log-ratio margin is inf - inf"
        )
    return h


def _log1mexp(a):
    """``log(1 - exp(a))`` for ``a < 0``, accurate everywhere.

    Maechler, "Accurately computing log(1 - exp(-|a|))" (Rmpfr vignette, 2012):

    ``log(-expm1(a))`` above ``-log 2``, where ``1 - exp(a)`` cancels; ``log1p(-exp(a))``
    below, where ``exp(a)`` is small.
    """
    a = np.asarray(a, dtype=np.float64)
    near_zero = a > -np.log(2.0)
    out = np.empty_like(a)
    out[near_zero] = np.log(-np.expm1(a[near_zero]))
    out[~near_zero] = np.log1p(-np.exp(a[~near_zero]))
    return out


def _guarded(fn):
    """Run ``fn`` with float64 overflow silenced, then refuse a non-finite result.

    Finite inputs can still overflow float64 together (a margin ``beta h`` or a squared
    IPO residual past ``1.8e308``, ``inf - inf`` in ``h``): that raises ``ValueError``
    naming the inputs, never a NaN or inf returned silently.
    """
    names = ", ".join(inspect.signature(fn).parameters)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = fn(*args, **kwargs)
        for a in out if isinstance(out, tuple) else (out,):
            if not np.all(np.isfinite(a)):
                raise ValueError(
                    f"{fn.__name__}: the inputs ({names}) overflow float64; got "
                    f"{np.asarray(a)[~np.isfinite(a)].ravel()[0]} in the result"
                )
        return out

    return wrapper


# --------------------------------------------------------------------------------------
# DPO and its implicit reward
# --------------------------------------------------------------------------------------


@_guarded
def implicit_reward(policy_logp, ref_logp, beta):
    """DPO's implicit reward ``beta * (log pi(y|x) - log pi_ref(y|x))``.

    Parameters
    ----------
    policy_logp, ref_logp : array_like of float
        Log-probabilities of responses under the policy and the reference; broadcast.
    beta : float
        KL coefficient, > 0.

    Returns
    -------
    ndarray of float
        ``beta * (policy_logp - ref_logp)``, of the broadcast shape.

    Raises
    ------
    ValueError
        If ``beta`` is not a finite positive number, an input is not finite, or the shapes
        do not broadcast.

    Notes
    -----
    Chapter, *DPO as Implicit Reward Model*: the optimum of the KL-regularised objective,
    ``pi*(y|x) = pi_ref(y|x) exp(r(x, y)/beta) / Z(x)``, inverts to
    ``r(x, y) = beta log(pi*(y|x)/pi_ref(y|x)) + beta log Z(x)``. The ``log Z`` term is the
    per-prompt shift that Bradley-Terry cannot see, so ``implicit_reward`` is the reward the
    policy implies, up to that shift.
    """
    beta = check_positive(beta, "beta")
    policy_logp = check_finite(policy_logp, "policy_logp")
    ref_logp = check_finite(ref_logp, "ref_logp")
    try:
        np.broadcast_shapes(policy_logp.shape, ref_logp.shape)
    except ValueError:
        raise ValueError(
            f"policy_logp and ref_logp must broadcast, got shapes {policy_logp.shape} "
            f"and {ref_logp.shape}"
        ) from None
    return beta * (policy_logp - ref_logp)


@_guarded
def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    """Direct Preference Optimization loss per pair, with its gradient.

    Parameters
    ----------
    policy_chosen, policy_rejected : array_like of float, same shape
        ``log pi(y_w | x)`` and ``log pi(y_l | x)`` under the policy being trained.
    ref_chosen, ref_rejected : array_like of float
        The same under the frozen reference ``pi_ref``; broadcast to the pairs' shape.
    beta : float
        KL coefficient, > 0.

    Returns
    -------
    loss : ndarray
        ``-log sigma(beta h)`` per pair, ``h`` the log-ratio margin.
    grad_chosen : ndarray
        ``d loss / d policy_chosen = -beta sigma(-beta h)`` (always < 0).
    grad_rejected : ndarray
        ``d loss / d policy_rejected = +beta sigma(-beta h)`` (always > 0).

    Raises
    ------
    ValueError
        If ``beta`` is not finite and > 0, a log-prob is NaN or inf, the policy arrays
        differ in shape, a reference array does not broadcast to them, or the inputs
        overflow float64 together (no NaN or inf is ever returned).
    TypeError
        If a number is a string, a bool or complex.

    See Also
    --------
    cdpo_loss : DPO with label smoothing (equal to this at ``label_smoothing=0``).
    implicit_reward : ``beta log(pi / pi_ref)``.

    Notes
    -----
    Chapter, *DPO as Implicit Reward Model*. With the log-ratio margin
    ``h = log(pi(y_w)/pi_ref(y_w)) - log(pi(y_l)/pi_ref(y_l))`` (unscaled, as everywhere
    in this module), substituting the implicit reward ``r_theta(y) = beta log(pi(y|x) /
    pi_ref(y|x))`` into the Bradley-Terry loss gives

    .. math::

        L = -\\log\\sigma\\big(r_\\theta(y_w) - r_\\theta(y_l)\\big) = -\\log\\sigma(\\beta h).

    Gradient (the chapter's exercise): ``dL/d log pi(y_w) = -beta sigma(-beta h)`` and
    ``dL/d log pi(y_l) = +beta sigma(-beta h)``, weighted by ``sigma(-beta h)``, the
    probability the implicit reward gives to the wrong ranking. At ``pi = pi_ref``,
    ``L = log 2``.

    References
    ----------
    Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a
    Reward Model" (arXiv 2305.18290, 2023), Eq. 7 and Sec. 4. TRL ``DPOTrainer``,
    ``loss_type="sigmoid"``.

    Examples
    --------
    >>> loss, g_w, g_l = dpo_loss(-1.0, -2.0, -1.0, -2.0, beta=0.1)
    >>> float(loss), float(g_w), float(g_l)
    (0.6931471805599453, -0.05, 0.05)
    """
    beta = check_positive(beta, "beta")
    pc, pr, rc, rr = _check_pairs(
        policy_chosen, policy_rejected, ref_chosen=ref_chosen, ref_rejected=ref_rejected
    )
    z = beta * _log_ratio_margin(pc, pr, rc, rr)  # beta h = r_theta(y_w) - r_theta(y_l)
    loss = -log_expit(z)
    wrong = expit(-z)  # sigma(h_l - h_w)
    return loss, -beta * wrong, beta * wrong


# --------------------------------------------------------------------------------------
# relatives with a reference model
# --------------------------------------------------------------------------------------


@_guarded
def ipo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    """Identity Preference Optimization (IPO) loss per pair, with its gradient.

    Parameters
    ----------
    policy_chosen, policy_rejected : array_like of float, same shape
        Policy log-probs of the chosen and rejected responses.
    ref_chosen, ref_rejected : array_like of float
        Reference log-probs; broadcast to the pairs' shape.
    beta : float
        Regularisation strength, > 0 (the paper's ``tau``); the target margin is
        ``1/(2 beta)``.

    Returns
    -------
    loss : ndarray
        ``(h - 1/(2 beta))^2`` per pair.
    grad_chosen, grad_rejected : ndarray
        ``+2 (h - 1/(2 beta))`` and ``-2 (h - 1/(2 beta))``.

    Raises
    ------
    ValueError
        As :func:`dpo_loss`.

    Notes
    -----
    Convention: the squared loss is on the *unscaled* log-ratio margin
    ``h = log(pi(y_w) pi_ref(y_l) / (pi(y_l) pi_ref(y_w)))``, regressed onto
    ``1/(2 beta)``, as in Azar et al. (2023), Eq. 17 (empirical IPO, with ``tau`` the
    regulariser) and TRL's ``DPOTrainer(loss_type="ipo")``, ``(logits - 1/(2 beta))**2``
    with ``logits = h``. Unlike DPO the loss does not saturate: it pulls the margin to a
    finite target instead of to infinity, which is IPO's answer to DPO's overfitting of
    deterministic preferences. TRL feeds IPO per-token *averaged* log-probs; here the caller
    chooses what to pass (sums, or sums divided by lengths).

    References
    ----------
    Azar et al., "A General Theoretical Paradigm to Understand Learning from Human
    Preferences" (arXiv 2310.12036, 2023).
    """
    beta = check_positive(beta, "beta")
    pc, pr, rc, rr = _check_pairs(
        policy_chosen, policy_rejected, ref_chosen=ref_chosen, ref_rejected=ref_rejected
    )
    residual = _log_ratio_margin(pc, pr, rc, rr) - 1.0 / (2.0 * beta)
    return residual**2, 2.0 * residual, -2.0 * residual


@_guarded
def cdpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, label_smoothing):
    """Conservative DPO (label-smoothed DPO) loss per pair, with its gradient.

    Parameters
    ----------
    policy_chosen, policy_rejected : array_like of float, same shape
        Policy log-probs of the chosen and rejected responses.
    ref_chosen, ref_rejected : array_like of float
        Reference log-probs; broadcast to the pairs' shape.
    beta : float
        KL coefficient, > 0.
    label_smoothing : float
        ``eps`` in ``[0, 0.5]``: the assumed probability that a label is flipped.

    Returns
    -------
    loss : ndarray
        ``-(1 - eps) log sigma(beta h) - eps log sigma(-beta h)`` per pair.
    grad_chosen, grad_rejected : ndarray
        ``beta [eps sigma(beta h) - (1 - eps) sigma(-beta h)]`` and its negative.

    Raises
    ------
    ValueError
        As :func:`dpo_loss`, or ``label_smoothing`` outside ``[0, 0.5]``.

    Notes
    -----
    ``(1 - eps)`` times DPO plus ``eps`` times DPO with the labels swapped: the
    cross-entropy of the Bradley-Terry implicit-reward model against soft labels
    ``(1 - eps, eps)``. Its minimiser is the finite margin ``beta h = log((1-eps)/eps)``
    rather than infinity. ``eps = 0`` is DPO exactly; ``eps = 0.5`` makes the loss
    symmetric, with its minimum at ``h = 0``.

    References
    ----------
    Mitchell, "A note on DPO with noisy preferences & relationship to IPO" (2023),
    Eq. 3. TRL ``DPOTrainer(loss_type="sigmoid", label_smoothing=eps)``, which requires
    ``0 <= eps <= 0.5`` (TRL's ``loss_type="robust"`` is a different, unbiased estimator).
    """
    beta = check_positive(beta, "beta")
    eps = check_float(label_smoothing, "label_smoothing", low=0.0, high=0.5)
    pc, pr, rc, rr = _check_pairs(
        policy_chosen, policy_rejected, ref_chosen=ref_chosen, ref_rejected=ref_rejected
    )
    z = beta * _log_ratio_margin(pc, pr, rc, rr)
    loss = -(1.0 - eps) * log_expit(z) - eps * log_expit(-z)
    dloss_dz = eps * expit(z) - (1.0 - eps) * expit(-z)
    return loss, beta * dloss_dz, -beta * dloss_dz


@_guarded
def hinge_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    """Hinge (SLiC / RSO) loss on the log-ratio margin per pair, with its gradient.

    Parameters
    ----------
    policy_chosen, policy_rejected : array_like of float, same shape
        Policy log-probs of the chosen and rejected responses.
    ref_chosen, ref_rejected : array_like of float
        Reference log-probs; broadcast to the pairs' shape.
    beta : float
        Inverse margin, > 0.

    Returns
    -------
    loss : ndarray
        ``max(0, 1 - beta h)`` per pair.
    grad_chosen, grad_rejected : ndarray
        ``-beta`` and ``+beta`` where ``beta h < 1``; 0 where ``beta h >= 1`` (at the kink
        the subgradient 0 is returned, like ReLU's).

    Raises
    ------
    ValueError
        As :func:`dpo_loss`.

    Notes
    -----
    SLiC-HF's calibration loss ``max(0, delta - log pi(y_w) + log pi(y_l))`` applied, as
    in RSO, to the reference-normalised likelihood: with ``delta = 1/beta``,
    ``max(0, 1 - beta h) = beta max(0, 1/beta - h)``. Pairs already separated by the margin
    contribute nothing. Matches TRL ``DPOTrainer(loss_type="hinge")``,
    ``relu(1 - beta * logits)``, where "beta is the reciprocal of the margin".

    References
    ----------
    Zhao et al., "SLiC-HF: Sequence Likelihood Calibration with Human Feedback"
    (arXiv 2305.10425, 2023). Liu et al., "Statistical Rejection Sampling Improves
    Preference Optimization" (RSO, arXiv 2309.06657, 2023).
    """
    beta = check_positive(beta, "beta")
    pc, pr, rc, rr = _check_pairs(
        policy_chosen, policy_rejected, ref_chosen=ref_chosen, ref_rejected=ref_rejected
    )
    slack = 1.0 - beta * _log_ratio_margin(pc, pr, rc, rr)
    active = slack > 0
    loss = np.where(active, slack, 0.0)
    grad = np.where(active, beta, 0.0)
    return loss, -grad, grad


# --------------------------------------------------------------------------------------
# reference-free relatives
# --------------------------------------------------------------------------------------


@_guarded
def simpo_loss(policy_chosen, policy_rejected, beta, gamma, len_chosen=1, len_rejected=1):
    """Simple Preference Optimization (SimPO) loss per pair, with its gradient.

    Parameters
    ----------
    policy_chosen, policy_rejected : array_like of float, same shape
        Summed log-probs ``log pi(y_w | x)``, ``log pi(y_l | x)`` of the two responses.
    beta : float
        Reward scale, > 0.
    gamma : float
        Target reward margin (finite; the paper uses ``gamma > 0``).
    len_chosen, len_rejected : array_like of float, default 1
        Response lengths ``|y_w|``, ``|y_l|`` (> 0), broadcast to the pairs' shape. With
        the default 1 the log-probs are taken as already length-averaged.

    Returns
    -------
    loss : ndarray
        ``-log sigma(beta/|y_w| log pi(y_w) - beta/|y_l| log pi(y_l) - gamma)`` per pair.
    grad_chosen, grad_rejected : ndarray
        ``-(beta/|y_w|) sigma(-z)`` and ``+(beta/|y_l|) sigma(-z)``, ``z`` the argument
        of ``log sigma``.

    Raises
    ------
    ValueError
        If ``beta`` is not finite and > 0, ``gamma`` is not finite, a log-prob is not
        finite, a length is not > 0, or shapes disagree.

    Notes
    -----
    No reference model: the implicit reward is the length-normalised log-likelihood
    ``(beta/|y|) log pi(y|x)``, and the Bradley-Terry margin must exceed ``gamma``. Matches
    TRL's ``CPOTrainer(loss_type="simpo")``, ``-logsigmoid(beta * (avg_w - avg_l) - gamma)``
    with ``avg`` the token-averaged log-probs (written there as
    ``beta * (logits - gamma/beta)``).

    References
    ----------
    Meng, Xia and Chen, "SimPO: Simple Preference Optimization with a Reference-Free
    Reward" (arXiv 2405.14734, 2024).
    """
    beta = check_positive(beta, "beta")
    gamma = check_float(gamma, "gamma")
    pc, pr = _check_pairs(policy_chosen, policy_rejected)
    len_c = _check_lengths(len_chosen, "len_chosen", pc.shape)
    len_r = _check_lengths(len_rejected, "len_rejected", pc.shape)
    z = beta * pc / len_c - beta * pr / len_r - gamma
    loss = -log_expit(z)
    wrong = expit(-z)
    return loss, -beta / len_c * wrong, beta / len_r * wrong


@_guarded
def orpo_loss(policy_chosen, policy_rejected, lam, len_chosen=1, len_rejected=1):
    """Odds Ratio Preference Optimization (ORPO) loss per pair, with its gradient.

    Parameters
    ----------
    policy_chosen, policy_rejected : array_like of float, same shape
        Summed log-probs of the two responses. The length-averaged log-prob
        ``logp / len`` must be < 0 (a probability below 1, so its odds are finite).
    lam : float
        Weight ``lambda >= 0`` of the odds-ratio term (0 leaves plain SFT on the chosen).
    len_chosen, len_rejected : array_like of float, default 1
        Response lengths (> 0), broadcast to the pairs' shape. With the default 1 the
        log-probs are taken as already length-averaged.

    Returns
    -------
    loss : ndarray
        ``-a + lam * -log sigma(log odds(a) - log odds(b))`` per pair, with
        ``a = policy_chosen / len_chosen``, ``b = policy_rejected / len_rejected`` and
        ``log odds(a) = a - log(1 - exp(a))``.
    grad_chosen, grad_rejected : ndarray
        Gradients with respect to the *summed* log-probs ``policy_chosen`` and
        ``policy_rejected``:
        ``[-1 - lam sigma(-m) / (1 - e^a)] / len_chosen`` and
        ``[+lam sigma(-m) / (1 - e^b)] / len_rejected``, ``m`` the log odds ratio.

    Raises
    ------
    ValueError
        If ``lam`` is negative or not finite, a log-prob is not finite, an averaged
        log-prob is >= 0, a length is not > 0, or shapes disagree.

    Notes
    -----
    ORPO adds to the SFT negative log-likelihood of the chosen response (token-averaged,
    ``-a``) a penalty on the log odds ratio, with ``P = exp(a)`` the geometric mean of the
    token probabilities and ``odds = P / (1 - P)``:

    .. math::

        L = -a + \\lambda\\big[-\\log\\sigma\\big(\\log\\mathrm{odds}(a)
              - \\log\\mathrm{odds}(b)\\big)\\big], \\qquad
        \\frac{d\\log\\mathrm{odds}(a)}{da} = \\frac{1}{1 - e^{a}}.

    No reference model. ``log(1 - e^a)`` is computed by ``log1mexp`` (``log(-expm1(a))``
    near 0, ``log1p(-exp(a))`` below ``-log 2``) and every product of a sigmoid with
    ``1/(1 - e^a)`` is taken in log space, so the loss and gradient stay finite for
    averaged log-probs from ``-1e4`` up to just below 0. Matches TRL's
    ``ORPOTrainer`` (``beta`` there is ``lambda``; log-probs token-averaged).

    References
    ----------
    Hong, Lee and Thorne, "ORPO: Monolithic Preference Optimization without Reference
    Model" (arXiv 2403.07691, 2024).
    """
    lam = check_float(lam, "lam", low=0.0)
    pc, pr = _check_pairs(policy_chosen, policy_rejected)
    len_c = _check_lengths(len_chosen, "len_chosen", pc.shape)
    len_r = _check_lengths(len_rejected, "len_rejected", pc.shape)
    a = pc / len_c  # length-averaged log-probs
    b = pr / len_r
    for avg, name in ((a, "policy_chosen / len_chosen"), (b, "policy_rejected / len_rejected")):
        if np.any(avg >= 0):
            bad = np.argwhere(avg >= 0)[0]
            raise ValueError(
                f"{name} must be < 0 (a probability below 1, for finite odds), got "
                f"{avg[tuple(bad)]} at index {tuple(int(i) for i in bad)}"
            )
    log1m_a = _log1mexp(a)  # log(1 - P_w)
    log1m_b = _log1mexp(b)
    m = (a - log1m_a) - (b - log1m_b)  # log odds ratio
    loss = -a - lam * log_expit(m)
    # lam * sigma(-m) / (1 - e^a), in log space (and exactly 0 when lam = 0: plain SFT)
    if lam > 0:
        pull_w = lam * np.exp(log_expit(-m) - log1m_a)
        pull_l = lam * np.exp(log_expit(-m) - log1m_b)
    else:
        pull_w = pull_l = np.zeros_like(m)
    grad_c = (-1.0 - pull_w) / len_c
    grad_r = pull_l / len_r
    return loss, grad_c, grad_r


# --------------------------------------------------------------------------------------
# unpaired feedback
# --------------------------------------------------------------------------------------


@_guarded
def kto_loss(policy_logp, ref_logp, desirable, beta, kl_ref=0.0, lambda_d=1.0, lambda_u=1.0):
    """Kahneman-Tversky Optimization (KTO) loss per example, with its gradient.

    Parameters
    ----------
    policy_logp : array_like of float
        ``log pi(y | x)`` of each example's response; its shape is the examples' shape.
    ref_logp : array_like of float
        ``log pi_ref(y | x)``; broadcast to ``policy_logp``.
    desirable : array_like of bool
        Label per example (True: desirable, False: undesirable; 0/1 accepted);
        broadcast to ``policy_logp``.
    beta : float
        Risk-aversion / KL coefficient, > 0.
    kl_ref : float or array_like, default 0.0
        The reference point ``z0``, an estimate of ``KL(pi || pi_ref)``; finite, broadcast.
        Treated as a constant: no gradient flows through it.
    lambda_d, lambda_u : float, default 1.0
        Weights of desirable and undesirable examples, > 0.

    Returns
    -------
    loss : ndarray
        Per example, with ``h = policy_logp - ref_logp``:
        ``lambda_d (1 - sigma(beta (h - z0)))`` if desirable,
        ``lambda_u (1 - sigma(beta (z0 - h)))`` if undesirable.
    grad : ndarray
        ``d loss / d policy_logp``: ``-lambda_d beta sigma(u) sigma(-u)`` (desirable,
        ``u = beta (h - z0)``), ``+lambda_u beta sigma(v) sigma(-v)`` (undesirable,
        ``v = beta (z0 - h)``).

    Raises
    ------
    ValueError
        If ``beta``, ``lambda_d`` or ``lambda_u`` is not finite and > 0, a log-prob or
        ``kl_ref`` is not finite, ``desirable`` holds values other than 0/1, or shapes do
        not broadcast.

    Notes
    -----
    Prospect-theoretic value ``v(x, y)`` of the implicit reward relative to a reference
    point: ``L = lambda_y - v(x, y)`` with ``v = lambda_D sigma(beta (h - z0))`` for
    desirable and ``lambda_U sigma(beta (z0 - h))`` for undesirable outputs. In the paper
    and in TRL's ``KTOTrainer`` ``z0`` is a batch estimate of the KL from mismatched
    pairs, detached, and clamped at 0 (``.clamp(min=0)``); here the caller supplies it
    (pass ``max(0, estimate)`` for TRL's behaviour). Desirable examples push ``log pi``
    up, undesirable ones down; both saturate, the loss lies in ``[0, lambda_y]``.
    ``1 - sigma(u)`` is computed as ``sigma(-u)`` and ``sigma(u) sigma(-u)`` as
    ``exp(log_expit(u) + log_expit(-u))``.

    References
    ----------
    Ethayarajh et al., "KTO: Model Alignment as Prospect Theoretic Optimization"
    (arXiv 2402.01306, 2024), the KTO loss (Eq. 7 as TRL cites it). TRL ``KTOTrainer``
    (``loss_type="kto"``; ``lambda_d``, ``lambda_u`` are its ``desirable_weight``,
    ``undesirable_weight``).
    """
    beta = check_positive(beta, "beta")
    lambda_d = check_positive(lambda_d, "lambda_d")
    lambda_u = check_positive(lambda_u, "lambda_u")
    logp = check_finite(policy_logp, "policy_logp")
    shape = logp.shape
    ref = _check_broadcast(ref_logp, "ref_logp", shape, target="policy_logp's")
    z0 = _check_broadcast(kl_ref, "kl_ref", shape, target="policy_logp's")
    labels = check_mask(desirable, "desirable", binary=True).astype(bool)
    try:
        labels = np.broadcast_to(labels, shape)
    except ValueError:
        raise ValueError(
            f"desirable of shape {labels.shape} does not broadcast to policy_logp's shape {shape}"
        ) from None

    sign = np.where(labels, 1.0, -1.0)
    weight = np.where(labels, lambda_d, lambda_u)
    u = sign * beta * ((logp - ref) - z0)  # beta(h - z0) if desirable, beta(z0 - h) if not
    loss = weight * expit(-u)  # lambda_y (1 - sigma(u))
    slope = np.exp(log_expit(u) + log_expit(-u))  # sigma'(u) = sigma(u) sigma(-u)
    grad = -sign * weight * beta * slope
    return loss, grad
