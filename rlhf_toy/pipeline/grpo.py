"""GRPO and Dr. GRPO on the GPT (chapter, "Modern RL for LLMs"), read top to bottom.

1. models: a trainable copy of the SFT network; the SFT network is the frozen reference;
   no critic (the group is the baseline);
2. each step, :func:`rlhf_toy.rl.grpo_step` on ``rl_batch_size`` prompts x ``group_size``
   responses scored by the reward model: group-standardised advantages
   ``(r - mean) / (std + eps)`` (``dr_grpo``: no std division and a constant normaliser,
   :func:`rlhf_toy.rl.dr_grpo_config`), the per-token clipped surrogate over ``mu``
   epochs, and ``beta * k3`` in the loss;
3. logging: the step's ``pg_loss``, ``kl_loss`` (mean ``k3``), ``approx_kl``, ``clipfrac``,
   ``zero_spread``, ``entropy``; ``gold``, ``proxy``, ``length`` sampled (means over the
   rollout); the exact metrics every ``eval_every`` steps.

The KL coefficient is ``config.beta`` by default, the same number as PPO's, but it weighs
``k3`` *in the loss*, whose expected gradient is that of the forward ``KL(pi_ref || pi)``
(see :mod:`rlhf_toy.rl.grpo`): GRPO's fixed point is not ``pi*``, only near it.
"""

from __future__ import annotations

from rlhf_toy._validate import as_rng
from rlhf_toy.rl import GRPOConfig, dr_grpo_config, grpo_step

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

#: Options of ``config.method_options["grpo"]`` (``None``: the config's shared value).
DEFAULTS = {
    "steps": None,  # optimisation steps (None: config.rl_steps)
    "beta": None,  # coefficient of k3 in the loss (None: config.beta)
    "lr": None,  # learning rate (None: config.rl_lr)
    "dr_grpo": False,  # Dr. GRPO: scale="none", agg="constant"
    "mu": 2,  # epochs over each batch of samples
    "clip_eps": 0.2,
    "clip_eps_high": None,  # DAPO's asymmetric upper clip
    "eval_every": 0,  # exact evaluation every k steps (0: never)
}


def train(task, config, sft_model, reward_model, comparisons, rng, verbose=False, exact=None):
    """GRPO (or Dr. GRPO) from the SFT policy against the reward model.

    Parameters
    ----------
    task, config, sft_model, reward_model, comparisons, rng, verbose, exact
        As in :data:`rlhf_toy.pipeline.methods.METHODS` (``comparisons`` unused). Uses
        ``config.rl_steps``, ``rl_batch_size``, ``group_size`` (``G``), ``rl_lr``, ``beta``,
        ``max_grad_norm``, ``weight_decay`` and ``config.method_options["grpo"]`` (keys of
        :data:`DEFAULTS`).

    Returns
    -------
    MethodResult

    Raises
    ------
    ValueError
        For an unknown or bad option.
    FloatingPointError
        ``"grpo: step S: ..."`` on a non-finite reward, log-prob or gradient.

    Notes
    -----
    ``A_i = (r_i - mean_j r_j) / (std_j r_j + eps)`` per group, loss
    ``-agg min(rho A, clip(rho) A) + beta k3`` (Shao et al. 2024; Liu et al. 2025 for
    Dr. GRPO).
    """
    opts = method_options(config, "grpo", DEFAULTS)
    rng = as_rng(rng)
    steps = config.rl_steps if opts["steps"] is None else opts["steps"]
    settings = dict(
        group_size=config.group_size,
        beta=config.beta if opts["beta"] is None else opts["beta"],
        clip_eps=opts["clip_eps"],
        clip_eps_high=opts["clip_eps_high"],
        mu=opts["mu"],
        max_grad_norm=config.max_grad_norm,
    )
    grpo_config = dr_grpo_config(**settings) if opts["dr_grpo"] else GRPOConfig(**settings)
    reward_fn = RewardTracker(task, reward_model)
    ev = exact_eval(task, config, sft_model, reward_model, exact) if opts["eval_every"] else None
    tracker = ExactTracker(opts["eval_every"], ev)

    # ---- models: policy (copy of SFT) and the frozen reference (SFT)
    ref = reference_policy(sft_model, task)
    model = copy_model(sft_model)
    policy = task_policy(model, task)
    optimiser = new_optimiser(policy.params, config, opts["lr"])

    # ---- the loop: groups, group advantages, clipped epochs, logging
    rows = []
    name = "dr_grpo" if opts["dr_grpo"] else "grpo"
    for step in progress(steps, name, verbose):
        prompts = task.sample_prompts(config.rl_batch_size, rng)  # (n_prompts, P)
        try:
            stats = grpo_step(policy, ref, optimiser, prompts, reward_fn, grpo_config, rng)
        except FloatingPointError as e:
            raise step_error("grpo", step, e) from None
        rows.append({**stats, **reward_fn.last, **tracker.row(step, policy)})
    return MethodResult(policy=policy, history=stack_history(rows), model=model)
