"""RLOO on the GPT (chapter, Stage 3; Ahmadian et al. 2024, "Back to Basics"), read top to
bottom.

1. models: a trainable copy of the SFT network; the SFT network is the frozen reference;
   no critic;
2. each step, :func:`rlhf_toy.rl.rloo_step` on ``rl_batch_size`` prompts x ``group_size``
   responses: the return of a response is the reward model's score minus ``beta`` times
   the per-sequence sum of ``k1`` (the KL in the reward, as in PPO), its baseline the mean
   return of the *other* responses of its prompt, and one REINFORCE step;
3. logging: the step's ``kl`` (batch mean of the per-sequence ``k1``), ``return``,
   ``adv_std``, ``entropy``; ``gold``, ``proxy``, ``length`` sampled (means over the
   rollout); the exact metrics every ``eval_every`` steps.

With ``k1`` in the reward the expected gradient is that of the chapter's objective, so
RLOO's fixed point is ``pi* = pi_sft exp(r_RM / beta) / Z`` itself.
"""

from __future__ import annotations

from rlhf_toy._validate import as_rng
from rlhf_toy.rl import RLOOConfig, rloo_step

from .common import progress, task_policy
from .rl_common import (
    ExactTracker,
    MethodResult,
    RewardTracker,
    copy_model,
    exact_eval,
    method_options,
    new_optimiser,
    reference_policy,
    stack_history,
    step_error,
)

__all__ = ["DEFAULTS", "train"]

#: Options of ``config.method_options["rloo"]`` (``None``: the config's shared value).
DEFAULTS = {
    "steps": None,  # optimisation steps (None: config.rl_steps)
    "beta": None,  # KL coefficient in the reward (None: config.beta)
    "lr": None,  # learning rate (None: config.rl_lr)
    "kl_estimator": "k1",  # per-token estimator summed into the return
    "eval_every": 0,  # exact evaluation every k steps (0: never)
}


def train(task, config, sft_model, reward_model, comparisons, rng, verbose=False, exact=None):
    """RLOO from the SFT policy against the reward model.

    Parameters
    ----------
    task, config, sft_model, reward_model, comparisons, rng, verbose, exact
        As in :data:`rlhf_toy.pipeline.methods.METHODS` (``comparisons`` unused). Uses
        ``config.rl_steps``, ``rl_batch_size``, ``group_size``, ``rl_lr``, ``beta``,
        ``max_grad_norm``, ``weight_decay`` and ``config.method_options["rloo"]`` (keys of
        :data:`DEFAULTS`).

    Returns
    -------
    MethodResult

    Raises
    ------
    ValueError
        For an unknown or bad option.
    FloatingPointError
        ``"rloo: step S: ..."`` on a non-finite reward, log-prob or gradient.

    Notes
    -----
    ``R_i = r_RM(x, y_i) - beta sum_t k1_t``, ``A_i = R_i - mean_{j != i} R_j``, loss
    ``-mean_tokens(A logp)`` (Ahmadian et al. 2024; Kool et al. 2019).
    """
    opts = method_options(config, "rloo", DEFAULTS)
    rng = as_rng(rng)
    steps = config.rl_steps if opts["steps"] is None else opts["steps"]
    rloo_config = RLOOConfig(
        group_size=config.group_size,
        beta=config.beta if opts["beta"] is None else opts["beta"],
        kl_estimator=opts["kl_estimator"],
        max_grad_norm=config.max_grad_norm,
    )
    reward_fn = RewardTracker(task, reward_model)
    ev = exact_eval(task, config, sft_model, reward_model, exact) if opts["eval_every"] else None
    tracker = ExactTracker(opts["eval_every"], ev)

    # ---- models: policy (copy of SFT) and the frozen reference (SFT)
    ref = reference_policy(sft_model, task)
    model = copy_model(sft_model)
    policy = task_policy(model, task)
    optimiser = new_optimiser(policy.params, config, opts["lr"])

    # ---- the loop: groups, leave-one-out baselines, one step each, logging
    rows = []
    for step in progress(steps, "rloo", verbose):
        prompts = task.sample_prompts(config.rl_batch_size, rng)  # (n_prompts, P)
        try:
            stats = rloo_step(policy, ref, optimiser, prompts, reward_fn, rloo_config, rng)
        except FloatingPointError as e:
            raise step_error("rloo", step, e) from None
        rows.append({**stats, **reward_fn.last, **tracker.row(step, policy)})
    return MethodResult(policy=policy, history=stack_history(rows), model=model)
