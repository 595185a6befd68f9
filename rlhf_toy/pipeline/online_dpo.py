"""Online DPO on the GPT (chapter, "DPO"; Guo et al. 2024), read top to bottom.

1. models: a trainable copy of the SFT network; the SFT network is the frozen reference;
2. each step, :func:`rlhf_toy.rl.online_dpo_step`: two responses of the *current* policy for
   each of ``rl_batch_size * group_size / 2`` prompts (the same number of samples per step
   as the other RL methods), labelled by the reward model (Bradley-Terry on its scores by
   default, the higher score with ``label="argmax"``), and one step of DPO's loss at
   ``beta``;
3. logging: the step's ``loss``, ``margin``, ``accuracy``, ``ties``, ``reward_gap``,
   ``entropy``; ``gold``, ``proxy``, ``length`` sampled (means over the pairs); the exact
   metrics every ``eval_every`` steps.

With Bradley-Terry labels the population loss is minimised at
``pi* = pi_sft exp(r_RM / beta) / Z``, the same target as PPO's.
"""

from __future__ import annotations

from rlhf_toy._validate import as_rng
from rlhf_toy.rl import OnlineDPOConfig, online_dpo_step

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

#: Options of ``config.method_options["online_dpo"]`` (``None``: the config's value).
DEFAULTS = {
    "steps": None,  # optimisation steps (None: config.rl_steps)
    "beta": None,  # DPO's beta (None: config.beta)
    "lr": None,  # learning rate (None: config.rl_lr)
    "label": "bradley_terry",  # or "argmax" (TRL: the higher score is chosen)
    "eval_every": 0,  # exact evaluation every k steps (0: never)
}


def train(task, config, sft_model, reward_model, comparisons, rng, verbose=False, exact=None):
    """Online DPO from the SFT policy, pairs of its own samples labelled by the reward model.

    Parameters
    ----------
    task, config, sft_model, reward_model, comparisons, rng, verbose, exact
        As in :data:`rlhf_toy.pipeline.methods.METHODS` (``comparisons`` unused). Uses
        ``config.rl_steps``, ``rl_batch_size * group_size // 2`` prompts per step,
        ``rl_lr``, ``beta``, ``max_grad_norm``, ``weight_decay`` and
        ``config.method_options["online_dpo"]`` (keys of :data:`DEFAULTS`).

    Returns
    -------
    MethodResult

    Raises
    ------
    ValueError
        For an unknown or bad option.
    FloatingPointError
        ``"online_dpo: step S: ..."`` on a non-finite reward, log-prob or gradient.

    Notes
    -----
    Per pair ``-log sigma(beta [(log pi(y_w) - log pi_sft(y_w)) - (log pi(y_l) -
    log pi_sft(y_l))])`` (Rafailov et al. 2023) on fresh samples of the policy.
    """
    opts = method_options(config, "online_dpo", DEFAULTS)
    rng = as_rng(rng)
    steps = config.rl_steps if opts["steps"] is None else opts["steps"]
    dpo_config = OnlineDPOConfig(
        beta=config.beta if opts["beta"] is None else opts["beta"],
        label=opts["label"],
        max_grad_norm=config.max_grad_norm,
    )
    n_prompts = max(1, config.rl_batch_size * config.group_size // 2)
    reward_fn = RewardTracker(task, reward_model)
    ev = exact_eval(task, config, sft_model, reward_model, exact) if opts["eval_every"] else None
    tracker = ExactTracker(opts["eval_every"], ev)

    # ---- models: policy (copy of SFT) and the frozen reference (SFT)
    ref = reference_policy(sft_model, task)
    model = copy_model(sft_model)
    policy = task_policy(model, task)
    optimiser = new_optimiser(policy.params, config, opts["lr"])

    # ---- the loop: fresh pairs, labels from the reward model, one DPO step, logging
    rows = []
    for step in progress(steps, "online dpo", verbose):
        prompts = task.sample_prompts(n_prompts, rng)  # (n_prompts, P)
        try:
            stats = online_dpo_step(policy, ref, optimiser, prompts, reward_fn, dpo_config, rng)
        except FloatingPointError as e:
            raise step_error("online_dpo", step, e) from None
        rows.append({**stats, **reward_fn.last, **tracker.row(step, policy)})
    return MethodResult(policy=policy, history=stack_history(rows), model=model)
