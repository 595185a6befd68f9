"""Rejection-sampling fine-tuning (chapter, "Modern variations": rejection sampling; the
expert-iteration step of Llama 2's RLHF and of RAFT, Dong et al. 2023), read top to bottom.

1. data: for ``n_prompts`` prompts, ``n`` responses each from ``pi_sft``, scored by the
   reward model; the winner of each prompt (the highest score; equal scores only between
   identical responses, so the choice among them does not matter) is kept;
2. fine-tuning: a copy of the SFT network trained on the winners by the SFT loss
   (:func:`rlhf_toy.pipeline.sft.sft_loss_and_grads`, cross-entropy on response tokens);
3. logging: ``loss``, ``grad_norm``, ``lr``; the exact metrics every ``eval_every`` steps.

Its target is the best-of-n distribution itself: the policy that best imitates the winners
is ``pi_bon`` (:mod:`rlhf_toy.pipeline.best_of_n`), amortised into the weights.
"""

from __future__ import annotations

import numpy as np

from rlhf_toy._validate import as_rng, check_int

from .common import Optimizer, check_loss, progress, task_policy
from .reward_model import score
from .rl_common import (
    ExactTracker,
    MethodResult,
    copy_model,
    exact_eval,
    method_options,
    stack_history,
)
from .sft import sft_loss_and_grads

__all__ = ["DEFAULTS", "best_of_n_winners", "train"]

#: Options of ``config.method_options["rft"]`` (``None``: the config's value).
DEFAULTS = {
    "n": None,  # candidates per prompt (None: config.best_of_n)
    "n_prompts": 1024,  # prompts of the winners' data set
    "steps": None,  # fine-tuning steps (None: config.rl_steps)
    "batch_size": None,  # winners per step (None: config.sft_batch_size)
    "lr": None,  # peak learning rate (None: config.rl_lr), warmup-free cosine
    "eval_every": 0,  # exact evaluation every k steps (0: never)
}


def best_of_n_winners(task, policy, reward_model, prompts, n, rng):
    """The best of ``n`` samples of ``policy`` for each prompt under the reward model.

    Parameters
    ----------
    task : Task
    policy : GPTPolicy
    reward_model : GPTRewardModel
    prompts : ndarray of int of shape (n_prompts, P)
    n : int
        Samples per prompt.
    rng : numpy.random.Generator or int

    Returns
    -------
    responses, mask : ndarray of shape (n_prompts, T)
        The winners (the first of equal top scores).
    scores : ndarray of shape (n_prompts,)
        Their reward-model scores.
    """
    n = check_int(n, "n")
    y, m = policy.sample(prompts, n, rng)  # (n_prompts n, T), prompt-major
    y, m = task.responses_from_tokens(np.where(m > 0, y, task.pad_id))
    r = score(reward_model, np.repeat(prompts, n, axis=0), y, m).reshape(len(prompts), n)
    win = np.arange(len(prompts)) * n + np.argmax(r, axis=1)  # (n_prompts,)
    return y[win], m[win], r.max(axis=1)


def train(task, config, sft_model, reward_model, comparisons, rng, verbose=False, exact=None):
    """Fine-tune a copy of the SFT policy on its best-of-n samples.

    Parameters
    ----------
    task, config, sft_model, reward_model, comparisons, rng, verbose, exact
        As in :data:`rlhf_toy.pipeline.methods.METHODS` (``comparisons`` unused). Uses
        ``config.best_of_n``, ``rl_steps``, ``sft_batch_size``, ``rl_lr``,
        ``weight_decay``, ``max_grad_norm`` and ``config.method_options["rft"]``.

    Returns
    -------
    MethodResult
        ``extra``: ``winner_proxy`` and ``winner_gold``, the winners' mean scores.

    Raises
    ------
    FloatingPointError
        ``"rft: non-finite loss at step S"`` (or gradient).
    """
    opts = method_options(config, "rft", DEFAULTS)
    rng = as_rng(rng)
    n = config.best_of_n if opts["n"] is None else opts["n"]
    steps = config.rl_steps if opts["steps"] is None else opts["steps"]
    batch = config.sft_batch_size if opts["batch_size"] is None else opts["batch_size"]
    lr = config.rl_lr if opts["lr"] is None else opts["lr"]
    ev = exact_eval(task, config, sft_model, reward_model, exact) if opts["eval_every"] else None
    tracker = ExactTracker(opts["eval_every"], ev)

    # ---- data: the winners of best-of-n on pi_sft
    prompts = task.sample_prompts(check_int(opts["n_prompts"], "n_prompts"), rng)
    y, m, r = best_of_n_winners(task, task_policy(sft_model, task), reward_model, prompts, n, rng)
    gold = task.gold_rewards(prompts, y, m)

    # ---- fine-tuning: SFT on the winners, from a copy of the SFT network
    model = copy_model(sft_model)
    policy = task_policy(model, task)
    opt = Optimizer(model.params, "rft", lr, steps, 0, config.weight_decay, config.max_grad_norm)
    rows = []
    for step in progress(steps, "rft", verbose):
        idx = rng.integers(0, len(prompts), size=batch)  # (B,)
        loss, grads = sft_loss_and_grads(policy, prompts[idx], y[idx], m[idx])
        loss = check_loss("rft", step, loss)
        grad_norm, lr_t = opt.step(step, grads)
        rows.append({"loss": loss, "grad_norm": grad_norm, "lr": lr_t,
                     **tracker.row(step, policy)})  # fmt: skip
    return MethodResult(
        policy=policy,
        history=stack_history(rows),
        model=model,
        extra={"winner_proxy": float(r.mean()), "winner_gold": float(gold.mean())},
    )
