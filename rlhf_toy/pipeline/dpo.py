"""Offline DPO and its relatives on the labelers' comparisons (chapter, "DPO: Direct
Preference Optimization" and its "Modern variations"), read top to bottom.

1. data: the reward model's *training* comparisons (pairs of SFT samples chosen by the
   simulated labelers), so DPO and the reward model see the same preferences; the
   reference log-probs ``log pi_sft(y)`` of every pair are computed once;
2. each step, ``batch_size`` pairs drawn with replacement: sequence log-probs
   ``log pi(y) = sum_t logp_t`` of both responses in one forward, the per-pair loss and its
   gradient wrt those sequence log-probs from :mod:`rlhf_toy.preference_losses` (``loss``:
   ``"dpo"``, ``"ipo"``, ``"cdpo"``, ``"hinge"``, ``"simpo"``, ``"orpo"``, ``"kto"``), spread
   over the response tokens and pushed through ``policy.logprobs_backward``; one clipped
   AdamW step;
3. logging: ``loss``, ``margin`` (``beta`` times the log-ratio margin ``h_w - h_l``),
   ``accuracy`` (share of positive margins), ``chosen_logratio`` and
   ``rejected_logratio`` (means of ``log pi - log pi_sft``: DPO lowers both, TRL issue
   800), ``grad_norm``; the exact metrics every ``eval_every`` steps. There is no rollout,
   so no sampled gold.

KTO takes unpaired examples: each pair gives a desirable (chosen) and an undesirable
(rejected) example, with the reference point ``z0 = 0``. SimPO and ORPO use no reference;
SimPO's scale is ``simpo_beta`` (its paper's 2.0), not the KL coefficient.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy._validate import (
    ArgumentTypeError,
    as_rng,
    check_finite,
    check_ndim,
    check_positive,
    check_same_shape,
)
from rlhf_toy.preference_losses import (
    cdpo_loss,
    dpo_loss,
    hinge_loss,
    ipo_loss,
    kto_loss,
    orpo_loss,
    simpo_loss,
)
from rlhf_toy.rl import apply_gradients, sequence_sum

from .common import check_loss, progress, task_policy
from .rl_common import (
    ExactTracker,
    MethodResult,
    copy_model,
    exact_eval,
    method_options,
    new_optimiser,
    reference_policy,
    stack_history,
    step_error,
)

__all__ = [
    "DEFAULTS",
    "LOSSES",
    "pair_losses",
    "preference_loss_and_grads",
    "sequence_logp",
    "train",
]

#: The offline preference losses, by name.
LOSSES = ("dpo", "ipo", "cdpo", "hinge", "simpo", "orpo", "kto")
#: Rows per forward pass when computing the reference log-probs.
CHUNK = 4096

#: Options of ``config.method_options["dpo"]`` (``None``: the config's shared value).
DEFAULTS = {
    "loss": "dpo",  # one of LOSSES
    "steps": None,  # optimisation steps (None: config.rl_steps)
    "batch_size": None,  # pairs per step (None: config.rl_batch_size * config.group_size)
    "beta": None,  # KL coefficient of dpo/ipo/cdpo/hinge/kto (None: config.beta)
    "lr": None,  # learning rate (None: config.rl_lr)
    "label_smoothing": 0.1,  # cdpo: probability that a label is flipped
    "simpo_beta": 2.0,  # simpo: reward scale
    "simpo_gamma": 0.5,  # simpo: target margin
    "orpo_lam": 0.1,  # orpo: weight of the odds-ratio term
    "eval_every": 0,  # exact evaluation every k steps (0: never)
}


def sequence_logp(policy, prompts, responses, mask) -> np.ndarray:
    """``log pi(y | x) = sum_t logp_t`` of many rows, in chunks, float64 (B,) (no backward).

    Parameters
    ----------
    policy : GPTPolicy
    prompts : ndarray of int of shape (B, P)
    responses : ndarray of int of shape (B, L)
    mask : ndarray of shape (B, L)
        1 on the response's tokens (EOS included), 0 on padding.

    Returns
    -------
    ndarray of float64 of shape (B,)
    """
    out = np.empty(len(prompts))
    for s in range(0, len(prompts), CHUNK):
        sl = slice(s, s + CHUNK)
        out[sl] = sequence_sum(policy.logprobs(prompts[sl], responses[sl], mask[sl]), mask[sl])
    return out


def pair_losses(loss, pc, pr, rc, rr, len_c, len_r, beta, opts):
    """Per-pair loss of ``loss`` and its gradients wrt ``pc`` and ``pr`` (sequence log-probs).

    ``pc, pr``: policy log-probs of the chosen and rejected; ``rc, rr``: the reference's;
    ``len_c, len_r``: token counts (EOS included); ``opts``: the :data:`DEFAULTS` keys.

    Parameters
    ----------
    loss : str
        The offline loss's name.
    pc, pr, rc, rr : ndarray of shape (B,)
    len_c, len_r : ndarray of shape (B,)
    beta : float
        KL coefficient, ``> 0``.
    opts : dict

    Returns
    -------
    loss, grad_chosen, grad_rejected : ndarray of shape (B,)

    Raises
    ------
    ValueError
        If an array is not finite or 1-D, the six differ in shape, a length is not
        ``> 0``, ``beta`` is not ``> 0`` or ``loss`` is unknown; ``TypeError`` if
        ``opts`` is not a dict.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    arrays = {}
    for name, a in (("pc", pc), ("pr", pr), ("rc", rc), ("rr", rr), ("len_c", len_c),
                    ("len_r", len_r)):
        arrays[name] = check_ndim(check_finite(a, name), name, 1, "(B,)")
        check_same_shape(arrays[name], arrays["pc"], name, "pc")
    for name in ("len_c", "len_r"):
        if np.any(arrays[name] <= 0):
            raise ValueError(f"{name} must be > 0 (token counts), got "
                             f"{arrays[name][arrays[name] <= 0][0]}")
    beta = check_positive(beta, "beta")
    if not isinstance(opts, dict):
        raise ArgumentTypeError(f"opts must be a dict of options, got {type(opts).__name__}")
    pc, pr, rc, rr, len_c, len_r = arrays.values()
    if loss == "dpo":
        return dpo_loss(pc, pr, rc, rr, beta)
    if loss == "ipo":
        return ipo_loss(pc, pr, rc, rr, beta)
    if loss == "cdpo":
        return cdpo_loss(pc, pr, rc, rr, beta, opts["label_smoothing"])
    if loss == "hinge":
        return hinge_loss(pc, pr, rc, rr, beta)
    if loss == "simpo":
        return simpo_loss(pc, pr, opts["simpo_beta"], opts["simpo_gamma"], len_c, len_r)
    if loss == "orpo":
        return orpo_loss(pc, pr, opts["orpo_lam"], len_c, len_r)
    if loss == "kto":
        B = len(pc)
        desirable = np.r_[np.ones(B, bool), np.zeros(B, bool)]
        value, grad = kto_loss(np.r_[pc, pr], np.r_[rc, rr], desirable, beta)
        return value[:B] + value[B:], grad[:B], grad[B:]
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def preference_loss_and_grads(policy, pairs, ref_chosen, ref_rejected, loss, beta, opts):
    """Mean preference loss of a batch of pairs and its parameter gradients.

    Parameters
    ----------
    policy : GPTPolicy
    pairs : tuple
        ``(prompts (B, P), chosen (B, T), chosen_mask, rejected (B, T), rejected_mask)``.
    ref_chosen, ref_rejected : ndarray of shape (B,)
        ``log pi_sft`` of the responses (constants).
    loss : str
        One of :data:`LOSSES`.
    beta : float
    opts : dict
        The :data:`DEFAULTS` keys (the losses' extra parameters).

    Returns
    -------
    value : float
        ``mean_b loss_b``.
    grads : dict of str to ndarray
        Its gradient wrt ``policy.params``.
    stats : dict of str to float
        ``margin`` (``beta`` times the mean log-ratio margin), ``accuracy``,
        ``chosen_logratio``, ``rejected_logratio``.

    Notes
    -----
    Both responses go through one forward of ``2B`` rows; ``d value / d logp_t`` is
    ``grad_b / B`` on every token of response ``b`` (the gradient of a sum).
    """
    x, yw, mw, yl, ml = pairs
    B = len(x)
    p2, y2, m2 = np.concatenate([x, x]), np.concatenate([yw, yl]), np.concatenate([mw, ml])
    seq = sequence_sum(policy.logprobs(p2, y2, m2), m2).astype(np.float64)  # (2B,)
    pc, pr = seq[:B], seq[B:]
    per_pair, g_c, g_r = pair_losses(
        loss, pc, pr, ref_chosen, ref_rejected, mw.sum(axis=1), ml.sum(axis=1), beta, opts
    )
    dlogp = (np.concatenate([g_c, g_r]) / B)[:, None] * m2  # (2B, T)
    grads = policy.logprobs_backward(dlogp)
    h_w, h_l = pc - ref_chosen, pr - ref_rejected
    stats = {
        "margin": float(beta * np.mean(h_w - h_l)),
        "accuracy": float(np.mean(h_w > h_l)),
        "chosen_logratio": float(h_w.mean()),
        "rejected_logratio": float(h_l.mean()),
    }
    return float(np.mean(per_pair)), grads, stats


def train(task, config, sft_model, reward_model, comparisons, rng, verbose=False, exact=None):
    """Offline DPO (or a relative) from the SFT policy on the labelled comparisons.

    Parameters
    ----------
    task, config, sft_model, reward_model, comparisons, rng, verbose, exact
        As in :data:`rlhf_toy.pipeline.methods.METHODS` (``reward_model`` used only for
        the exact evaluation). Uses ``config.rl_steps``, ``rl_batch_size * group_size``
        pairs per step, ``rl_lr``, ``beta``, ``max_grad_norm``, ``weight_decay`` and
        ``config.method_options["dpo"]`` (keys of :data:`DEFAULTS`).

    Returns
    -------
    MethodResult

    Raises
    ------
    ValueError
        For an unknown loss or option.
    FloatingPointError
        ``"dpo: step S: ..."`` on a non-finite loss or gradient.

    Notes
    -----
    DPO: ``-log sigma(beta [(log pi(y_w) - log pi_sft(y_w)) - (log pi(y_l) -
    log pi_sft(y_l))])`` per pair (Rafailov et al. 2023); its gradient wrt the sequence
    log-prob is that of every token of the response.
    """
    opts = method_options(config, "dpo", DEFAULTS)
    if opts["loss"] not in LOSSES:
        raise ValueError(f"method_options['dpo']['loss'] must be one of {LOSSES}, "
                         f"got {opts['loss']!r}")  # fmt: skip
    rng = as_rng(rng)
    steps = config.rl_steps if opts["steps"] is None else opts["steps"]
    B = config.rl_batch_size * config.group_size if opts["batch_size"] is None else opts[
        "batch_size"]  # fmt: skip
    beta = config.beta if opts["beta"] is None else opts["beta"]
    ev = exact_eval(task, config, sft_model, reward_model, exact) if opts["eval_every"] else None
    tracker = ExactTracker(opts["eval_every"], ev)

    # ---- data: the comparisons and their reference log-probs
    x, yw, mw, yl, ml = comparisons.as_tuple()
    ref = reference_policy(sft_model, task)
    ref_w, ref_l = sequence_logp(ref, x, yw, mw), sequence_logp(ref, x, yl, ml)  # (n,), (n,)

    # ---- model: a copy of SFT
    model = copy_model(sft_model)
    policy = task_policy(model, task)
    optimiser = new_optimiser(policy.params, config, opts["lr"])

    # ---- the loop: sequence log-probs of both responses, the loss, one step, logging
    rows = []
    for step in progress(steps, f"offline {opts['loss']}", verbose):
        idx = rng.integers(0, len(x), size=B)  # (B,)
        pairs = (x[idx], yw[idx], mw[idx], yl[idx], ml[idx])
        value, grads, stats = preference_loss_and_grads(
            policy, pairs, ref_w[idx], ref_l[idx], opts["loss"], beta, opts
        )
        value = check_loss("dpo", step, value)
        try:
            grad_norm = apply_gradients(optimiser, grads, config.max_grad_norm, "dpo")
        except FloatingPointError as e:
            raise step_error("dpo", step, e) from None
        rows.append({"loss": value, **stats, "grad_norm": grad_norm, **tracker.row(step, policy)})
    return MethodResult(policy=policy, history=stack_history(rows), model=model)
