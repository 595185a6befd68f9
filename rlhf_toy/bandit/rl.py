"""Sampled RL on the exact bandit: REINFORCE, RLOO, GRPO, PPO, online DPO (chapter, Stage 3
and "Modern RL for LLMs").

Each step of :mod:`rlhf_toy.rl` samples responses from the current tabular policy, scores
them with the proxy ``r_hat`` and pushes the objective's gradient through the exact
softmax. Because the world is a table, every run records after every step, *exactly*
(sums over the table, not samples): the proxy and gold rewards, ``E_x KL(pi || pi_ref)``,
the distance ``E_x KL(pi || pi*_beta)`` to the optimum of the optimised reward, the
entropy, and the step's own diagnostics (``approx_kl``, ``clipfrac``, ``zero_spread``...).

One loop, :func:`train_rl`, runs every family: the algorithm lives entirely in its step
function, and what is left (evaluate exactly, call the step, stop on non-finite values) is
the same for all of them, so five copies would differ only in the name of the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import rel_entr
from tqdm import tqdm

from rlhf_toy._validate import MAX_STEPS, as_rng, check_finite, check_int, check_positive
from rlhf_toy.bandit.env import BanditEnv
from rlhf_toy.bandit.policy import TabularPolicy, TrainableTabularPolicy
from rlhf_toy.optim import AdamW
from rlhf_toy.optimal import optimal_policy
from rlhf_toy.rl import (
    GRPOConfig,
    OnlineDPOConfig,
    PPOConfig,
    ReinforceConfig,
    RLOOConfig,
    grpo_step,
    online_dpo_step,
    ppo_step,
    reinforce_step,
    rloo_step,
)

__all__ = ["RLResult", "TabularCritic", "method_name", "table_reward", "train_rl"]

#: The step function of each config type.
STEPS = {ReinforceConfig: reinforce_step, RLOOConfig: rloo_step, GRPOConfig: grpo_step,
         PPOConfig: ppo_step, OnlineDPOConfig: online_dpo_step}


def method_name(config) -> str:
    """A label for a step config.

    ``"reinforce"``, ``"reinforce_mean"``, ``"rloo"``, ``"grpo"``, ``"dr_grpo"``, ``"ppo"``
    or ``"online_dpo"``.

    Parameters
    ----------
    config : ReinforceConfig, RLOOConfig, GRPOConfig, PPOConfig or OnlineDPOConfig

    Returns
    -------
    str
    """
    if isinstance(config, ReinforceConfig):
        return "reinforce" if config.baseline is None else f"reinforce_{config.baseline}"
    if isinstance(config, GRPOConfig):
        return "dr_grpo" if config.scale == "none" else "grpo"
    names = {RLOOConfig: "rloo", PPOConfig: "ppo", OnlineDPOConfig: "online_dpo"}
    if type(config) not in names:
        raise TypeError(f"config must be one of {[c.__name__ for c in STEPS]}, "
                        f"got {type(config).__name__}")
    return names[type(config)]


def table_reward(reward):
    """``reward_fn(prompts, responses, mask) -> reward[prompts, responses[:, 0]]``.

    Parameters
    ----------
    reward : array_like of shape (X, Y)
        A reward table (the proxy ``r_hat`` or the gold ``r_star``); finite.

    Returns
    -------
    callable
        The reward function of the protocol for one-token responses.
    """
    table = check_finite(reward, "reward").copy()
    if table.ndim != 2:
        raise ValueError(f"reward must have shape (X, Y), got shape {table.shape}")

    def reward_fn(prompts, responses, mask):
        return table[prompts, responses[:, 0]]

    return reward_fn


class TabularCritic:
    """PPO's critic on the bandit: one value ``V(x)`` per prompt (the state before the token).

    Parameters
    ----------
    n_prompts : int
        ``X``.
    init : float, default 0.0
        Initial value of every entry (InstructGPT starts the value head at zero... of
        its own scale; 0 here).

    Attributes
    ----------
    params : dict
        ``{"values": V}``, shape (X,), updated in place by the critic's optimiser.
    """

    def __init__(self, n_prompts: int, init: float = 0.0):
        n_prompts = check_int(n_prompts, "n_prompts")
        self.params = {"values": np.full(n_prompts, float(init))}
        self._cache = None

    def values(self, prompts, responses, mask) -> np.ndarray:
        """``V(x)`` on each response token, shape (B, T), 0 off the mask."""
        x = np.asarray(prompts, dtype=np.int64)
        m = np.asarray(mask, dtype=np.float64)
        self._cache = (x, m)
        return self.params["values"][x][:, None] * m

    def values_backward(self, dvalues) -> dict[str, np.ndarray]:
        """Gradient of ``sum(dvalues * values)`` wrt ``V``: a sum per prompt."""
        if self._cache is None:
            raise RuntimeError("values_backward needs a values call first")
        x, m = self._cache
        g = np.sum(np.asarray(dvalues, dtype=np.float64) * m, axis=1)  # (B,)
        return {"values": np.bincount(x, weights=g, minlength=self.params["values"].size)}


@dataclass(frozen=True)
class RLResult:
    """What :func:`train_rl` returns: exact curves, one entry per step (0 = the start).

    Attributes
    ----------
    method : str
        :func:`method_name` of the config.
    beta : float
        The ``beta`` of ``pi*_beta`` (the config's KL coefficient).
    steps : ndarray of int, shape (S + 1,)
        ``0, 1, ..., S``: updates done when the record was taken.
    proxy, gold : ndarray of shape (S + 1,)
        ``E_x E_pi r_hat`` and ``E_x E_pi r_star``.
    kl : ndarray of shape (S + 1,)
        ``E_x KL(pi || pi_ref)``.
    kl_to_optimum : ndarray of shape (S + 1,)
        ``E_x KL(pi || pi*_beta)`` with ``pi*_beta = optimal_policy(pi_ref, r_hat, beta)``
        (``NaN`` when ``beta = 0``: there is no regularised optimum).
    entropy : ndarray of shape (S + 1,)
        ``E_x H(pi(.|x))``.
    kl_to : dict of str to ndarray of shape (S + 1,)
        ``E_x KL(pi || target)`` for each table of ``targets``.
    diagnostics : dict of str to ndarray of shape (S + 1,)
        The step's statistics (``approx_kl``, ``clipfrac``, ``zero_spread``, ...), ``NaN``
        at step 0 (no step was taken).
    policy : TabularPolicy
        The final policy.
    """

    method: str
    beta: float
    steps: np.ndarray
    proxy: np.ndarray
    gold: np.ndarray
    kl: np.ndarray
    kl_to_optimum: np.ndarray
    entropy: np.ndarray
    kl_to: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
    policy: TabularPolicy | None = None


def _kl_rows(pi: np.ndarray, q: np.ndarray, w: np.ndarray) -> float:
    """``E_x KL(pi || q)`` of validated tables (``+inf`` if ``pi`` leaves ``q``'s support)."""
    return float(w @ rel_entr(pi, q).sum(-1))


def train_rl(env: BanditEnv, config, *, steps: int, lr: float = 0.05, rng=0,
             critic_lr: float | None = None, kl_controller=None, targets=None,
             verbose: bool = False) -> RLResult:
    """Train the tabular policy with one sampled RL method, recording exact curves.

    Parameters
    ----------
    env : BanditEnv
        The world: ``pi_ref`` (also the start), the proxy ``r_hat`` (optimised) and the
        gold ``r_star`` (evaluated only).
    config : ReinforceConfig, RLOOConfig, GRPOConfig, PPOConfig or OnlineDPOConfig
        Chooses the step function (:data:`STEPS`) and its settings.
    steps : int
        Number of steps (>= 0). Each step uses every prompt of the table once, with
        the config's group of responses (two for online DPO).
    lr : float, default 0.05
        AdamW learning rate on the logits (``betas = (0.9, 0.999)``, no weight decay: a
        decay would pull the logits towards the uniform policy).
    rng : numpy Generator or int, default 0
    critic_lr : float, optional
        Learning rate of PPO's critic; ``lr`` if omitted.
    kl_controller : AdaptiveKLController, optional
        PPO only: adapts ``beta`` during training (``pi*_beta`` stays at ``config.beta``).
    targets : dict of str to array_like of shape (X, Y), optional
        Other policies to record ``E_x KL(pi || target)`` to, e.g. the forward-KL fixpoint
        of GRPO's ``k3`` penalty.
    verbose : bool, default False
        Progress bar.

    Returns
    -------
    RLResult

    Raises
    ------
    TypeError
        If ``config`` is not one of the step configs.
    ValueError
        On a bad ``steps``, ``lr``, ``critic_lr``, ``targets`` or ``kl_controller`` with a
        method other than PPO.
    FloatingPointError
        If a step produces a non-finite reward, loss, gradient or logit; the message
        names the method and the step.

    Notes
    -----
    Prompts are used uniformly (all of them every step), whatever ``env.prompt_probs``;
    the recorded expectations use ``env.prompt_probs``. Neither changes the target:
    ``pi*_beta`` is optimal prompt by prompt.
    """
    name = method_name(config)
    step_fn = STEPS[type(config)]
    steps = check_int(steps, "steps", minimum=0, maximum=MAX_STEPS)
    lr = check_positive(lr, "lr")
    critic_lr = lr if critic_lr is None else check_positive(critic_lr, "critic_lr")
    if kl_controller is not None and not isinstance(config, PPOConfig):
        raise ValueError(f"kl_controller applies to PPO only, got a {name} config")
    rng = as_rng(rng)
    pi_ref, r_hat, r_star, w = env.pi_ref, env.r_hat, env.r_star, env.prompt_probs
    beta = float(config.beta)
    pi_star = optimal_policy(pi_ref, r_hat, beta) if beta > 0 else None
    target_tables = {}
    for key, table in (targets or {}).items():
        table = np.asarray(table, dtype=np.float64)
        if table.shape != pi_ref.shape:
            raise ValueError(f"targets[{key!r}] must have shape {pi_ref.shape}, "
                             f"got {table.shape}")
        target_tables[key] = table

    ref = TabularPolicy.from_probs(pi_ref)
    policy = TrainableTabularPolicy(ref.logits)
    optimiser = AdamW(policy.params, lr=lr, betas=(0.9, 0.999), weight_decay=0.0)
    extra = {}
    if isinstance(config, PPOConfig):
        critic = TabularCritic(env.n_prompts)
        extra = {"critic": critic, "kl_controller": kl_controller,
                 "critic_optimiser": AdamW(critic.params, lr=critic_lr, betas=(0.9, 0.999),
                                           weight_decay=0.0)}
    prompts = np.arange(env.n_prompts)
    reward_fn = table_reward(r_hat)

    curves = {k: np.empty(steps + 1) for k in ("proxy", "gold", "kl", "kl_to_optimum",
                                               "entropy")}
    kl_to = {k: np.empty(steps + 1) for k in target_tables}
    diagnostics: dict[str, np.ndarray] = {}

    def record(t: int) -> None:
        logp = policy.log_probs  # (X, Y)
        pi = np.exp(logp)
        curves["proxy"][t] = w @ (pi * r_hat).sum(-1)
        curves["gold"][t] = w @ (pi * r_star).sum(-1)
        curves["kl"][t] = _kl_rows(pi, pi_ref, w)
        curves["kl_to_optimum"][t] = _kl_rows(pi, pi_star, w) if pi_star is not None \
            else np.nan
        curves["entropy"][t] = -(w @ np.where(pi > 0, pi * logp, 0.0).sum(-1))
        for key, table in target_tables.items():
            kl_to[key][t] = _kl_rows(pi, table, w)

    record(0)
    for t in tqdm(range(1, steps + 1), desc=name, disable=not verbose, leave=False):
        try:
            stats = step_fn(policy, ref, optimiser, prompts, reward_fn, config, rng, **extra)
        except FloatingPointError as err:
            raise FloatingPointError(f"train_rl ({name}): {err} at step {t}") from err
        z = policy.params["logits"]
        if np.any(np.isnan(z) | (z == np.inf)):
            raise FloatingPointError(f"train_rl ({name}): non-finite logits at step {t}")
        for key, value in stats.items():
            if key not in diagnostics:
                diagnostics[key] = np.full(steps + 1, np.nan)
            diagnostics[key][t] = value
        record(t)
    return RLResult(method=name, beta=beta, steps=np.arange(steps + 1), kl_to=kl_to,
                    diagnostics=diagnostics, policy=policy.snapshot(), **curves)
