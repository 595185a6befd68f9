"""PPO on the GPT: InstructGPT's Stage 3 (chapter, "The RLHF Pipeline", Stage 3: "In
practice, PPO is used"), read top to bottom as cleanrl's ``ppo.py``.

1. models: the policy is a trainable copy of the SFT network, the reference ``pi_sft`` the
   SFT network itself (frozen); the critic is a copy of the reward model whose reward head
   is replaced by a value head starting at zero (InstructGPT initialises the value function
   from the reward model);
2. each step, :func:`rlhf_toy.rl.ppo_step` on ``rl_batch_size`` prompts x ``group_size``
   responses: the per-token KL penalty in the reward (``k1`` by default, ``k3`` as an
   option) plus the reward model's score on the last token, GAE, advantage whitening, the
   clipped surrogate and the clipped value loss over ``epochs`` passes of
   ``n_minibatches`` minibatches; the optional adaptive KL controller of Ziegler et al.;
3. logging: the step's ``approx_kl``, ``clipfrac``, ``explained_variance``, ``entropy``,
   ``kl`` (to the reference, batch mean of the per-sequence sum of ``k1``) and ``beta``;
   ``gold``, ``proxy`` and ``length`` *sampled* (means over the step's rollout); and, every
   ``eval_every`` steps, the *exact* ``exact_gold``, ``exact_proxy``, ``exact_kl``,
   ``exact_kl_to_optimum`` by enumeration.

Missing EOS: a response that uses every position without an EOS can have
``missing_eos_penalty`` *subtracted* from its score (TRL's rule, which keeps the reward
model's ranking among such responses; lm-human-preferences *replaces* the score by -1).
Off by default: in the toy languages a response of ``max_response_len`` tokens is a
legitimate response of the task, and on the length task it is exactly the reward model's
exploit that overoptimisation is about.
"""

from __future__ import annotations

from rlhf_toy._validate import as_rng
from rlhf_toy.policy_gradient import AdaptiveKLController
from rlhf_toy.rl import PPOConfig, ppo_step

from .common import progress, task_policy
from .policy import GPTCritic
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

#: Options of ``config.method_options["ppo"]`` (``None``: the config's shared value).
DEFAULTS = {
    "steps": None,  # optimisation steps (None: config.rl_steps)
    "beta": None,  # KL coefficient in the reward (None: config.beta)
    "lr": None,  # policy learning rate (None: config.rl_lr)
    "critic_lr": None,  # critic learning rate (None: config.rl_lr)
    "kl_estimator": "k1",  # per-token KL in the reward: "k1" (InstructGPT), "k2", "k3"
    "adaptive_kl": False,  # Ziegler et al.'s proportional controller on beta
    "kl_target": 1.0,  # its target KL per response (nats)
    "kl_horizon": 2000,  # its horizon (responses)
    "gamma": 1.0,
    "lam": 0.95,
    "clip_eps": 0.2,
    "vf_clip": 0.2,
    "epochs": 4,
    "n_minibatches": 2,
    "whiten_advantages": True,
    "whiten_rewards": False,
    "missing_eos_penalty": None,  # subtracted from the score of a response without EOS
    "eval_every": 0,  # exact evaluation every k steps (0: never)
}


def train(task, config, sft_model, reward_model, comparisons, rng, verbose=False, exact=None):
    """PPO-RLHF from the SFT policy against the reward model.

    Parameters
    ----------
    task, config, sft_model, reward_model, comparisons, rng, verbose, exact
        As in :data:`rlhf_toy.pipeline.methods.METHODS` (``comparisons`` unused). Uses
        ``config.rl_steps``, ``rl_batch_size``, ``group_size``, ``rl_lr``, ``beta``,
        ``max_grad_norm``, ``weight_decay`` and ``config.method_options["ppo"]`` (keys of
        :data:`DEFAULTS`).

    Returns
    -------
    MethodResult
        The trained policy; ``history`` with the stats of :func:`rlhf_toy.rl.ppo_step`
        and the sampled (and, if ``eval_every``, exact) gold, proxy and length;
        ``extra["beta_final"]``, the KL coefficient at the end (adaptive KL).

    Raises
    ------
    ValueError
        For an unknown or bad option.
    FloatingPointError
        ``"ppo: step S: ..."`` on a non-finite reward, log-prob, value or gradient.

    Notes
    -----
    Per token ``r_t = -beta k(t) + [t = last] (r_RM(x, y) - penalty [no EOS])``, GAE
    ``A_t = sum_l (gamma lam)^l delta_{t+l}``, loss
    ``-mean min(rho A, clip(rho, 1 - eps, 1 + eps) A)`` (Schulman et al. 2017; Ziegler et al.
    2019; Ouyang et al. 2022).
    """
    opts = method_options(config, "ppo", DEFAULTS)
    rng = as_rng(rng)
    steps = config.rl_steps if opts["steps"] is None else opts["steps"]
    beta = config.beta if opts["beta"] is None else opts["beta"]
    ppo_config = PPOConfig(
        group_size=config.group_size,
        beta=beta,
        kl_estimator=opts["kl_estimator"],
        gamma=opts["gamma"],
        lam=opts["lam"],
        clip_eps=opts["clip_eps"],
        vf_clip=opts["vf_clip"],
        epochs=opts["epochs"],
        n_minibatches=opts["n_minibatches"],
        whiten_advantages=opts["whiten_advantages"],
        whiten_rewards=opts["whiten_rewards"],
        max_grad_norm=config.max_grad_norm,
    )
    kl_controller = None
    if opts["adaptive_kl"]:
        kl_controller = AdaptiveKLController(beta, opts["kl_target"], opts["kl_horizon"])
    reward_fn = RewardTracker(task, reward_model, opts["missing_eos_penalty"])
    ev = exact_eval(task, config, sft_model, reward_model, exact) if opts["eval_every"] else None
    tracker = ExactTracker(opts["eval_every"], ev)

    # ---- models: policy (copy of SFT), frozen reference (SFT), critic (copy of the RM)
    ref = reference_policy(sft_model, task)
    model = copy_model(sft_model)
    policy = task_policy(model, task)
    critic = GPTCritic(copy_model(reward_model.model, heads=("value",), skip=("reward_head",)))
    optimiser = new_optimiser(policy.params, config, opts["lr"])
    critic_optimiser = new_optimiser(critic.params, config, opts["critic_lr"])

    # ---- the loop: rollout, rewards, GAE, epochs of clipped minibatches, logging
    rows = []
    for step in progress(steps, "ppo", verbose):
        prompts = task.sample_prompts(config.rl_batch_size, rng)  # (n_prompts, P)
        try:
            stats = ppo_step(
                policy,
                ref,
                optimiser,
                prompts,
                reward_fn,
                ppo_config,
                rng,
                critic=critic,
                critic_optimiser=critic_optimiser,
                kl_controller=kl_controller,
            )
        except FloatingPointError as e:
            raise step_error("ppo", step, e) from None
        rows.append({**stats, **reward_fn.last, **tracker.row(step, policy)})
    beta_final = beta if kl_controller is None else float(kl_controller.value)
    return MethodResult(
        policy=policy,
        history=stack_history(rows),
        model=model,
        extra={"beta_final": beta_final},
    )
