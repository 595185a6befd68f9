"""Where and how much the proxy is wrong under the policies optimised against it.

Implements the chapter's *Why Reward Models Are Fragile*, distributional shift: "the reward
model is trained on outputs from ``pi_ref``"; a policy optimised against it moves where the
model saw few comparisons, and its error there is larger and, because the policy chose those
responses for their high ``r_hat``, positive.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy._validate import check_distribution, check_same_shape
from rlhf_toy.bandit.env import BanditEnv, check_env
from rlhf_toy.bandit.experiments.goodhart import check_betas
from rlhf_toy.optimal import reward_kl_frontier

__all__ = [
    "aligned_proxy",
    "distribution_shift",
    "excess_overestimation",
    "overestimation",
    "proxy_error_under",
]


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
    env = check_env(env)
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

    For Gaussian ``(r_star, eps)`` with variances ``1`` and ``sigma^2`` and a large response
    set, the tilted mean of ``eps`` is ``sigma^2 / beta`` (:func:`excess_overestimation`),
    until the policy runs out of responses (``beta`` below about ``sqrt(1 + sigma^2)``;
    notebook 03).
    """
    env = check_env(env)
    betas = check_betas(betas)
    err = _error_table(env, align)
    f = reward_kl_frontier(env.pi_ref, env.r_hat, betas, env.prompt_probs,
                           eval_rewards={"err": err})
    return f.extra["err"]


def proxy_error_under(env, pi, *, align=True) -> dict[str, float]:
    """The proxy's error weighted by a policy: where the policy goes, how wrong is ``r_hat``.

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
    env = check_env(env)
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
    env = check_env(env)
    betas = check_betas(betas)
    err = _error_table(env, align)
    f = reward_kl_frontier(env.pi_ref, env.r_hat, betas, env.prompt_probs,
                           eval_rewards={"abs": np.abs(err), "err": err})
    ref = proxy_error_under(env, env.pi_ref, align=align)
    return {"kl": f.kl, "d": np.sqrt(f.kl), "mae": f.extra["abs"], "bias": f.extra["err"],
            "mae_ref": ref["mae"], "bias_ref": ref["bias"]}


def excess_overestimation(env, betas) -> np.ndarray:
    """:func:`overestimation` of ``pi*_beta`` minus that of ``pi_ref`` (unaligned proxy).

    Removes the table's own ``E_{pi_ref}[r_hat - r_star]``, so that for Gaussian rewards and
    noise of variance ``sigma^2`` in a large response set it is ``sigma^2 / beta`` (see
    :func:`overestimation`).

    Parameters
    ----------
    env : BanditEnv
    betas : array_like of shape (k,)

    Returns
    -------
    ndarray of shape (k,)
    """
    env = check_env(env)
    return (overestimation(env, betas)
            - proxy_error_under(env, env.pi_ref, align=False)["bias"])
