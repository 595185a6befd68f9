"""What the RL and preference stages of the pipeline share (chapter, Stage 3 of "The RLHF
Pipeline"): the result type, the trainable copy of the SFT network, the reward function
handed to the :mod:`rlhf_toy.rl` steps, per-step logging and the exact evaluation every
``eval_every`` steps.

Every method of :mod:`rlhf_toy.pipeline.methods` starts from a *copy* of the SFT network
(the SFT model itself stays the frozen reference ``pi_sft``) and returns a
:class:`MethodResult`. Per-step logs are of two kinds:

- *sampled*, every step: ``gold``, ``proxy`` and ``length`` are means over the responses
  the step sampled (the rollout), scored by the task's gold reward and by the reward model;
- *exact*, after every ``eval_every``-th update (0: never): ``exact_gold``, ``exact_proxy``,
  ``exact_kl`` (``KL(pi || pi_sft)``) and ``exact_kl_to_optimum`` by enumerating every
  response of the evaluation prompts (:mod:`rlhf_toy.pipeline.evaluate`); NaN on the steps
  in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rlhf_toy._validate import ArgumentTypeError
from rlhf_toy.gpt import GPT
from rlhf_toy.optim import AdamW

from .common import task_policy
from .evaluate import ExactEval, build_exact_eval, evaluate_policy
from .policy import GPTPolicy, GPTRewardModel
from .reward_model import score

__all__ = [
    "ExactTracker",
    "MethodResult",
    "RewardTracker",
    "copy_model",
    "exact_eval",
    "method_options",
    "new_optimiser",
    "reference_policy",
    "stack_history",
    "step_error",
]


@dataclass
class MethodResult:
    """What every method of :data:`rlhf_toy.pipeline.methods.METHODS` returns.

    Exactly one of ``policy`` (a trained GPT policy, evaluated by enumeration) and ``logp``
    (an exact distribution, for inference-time methods such as best-of-n) is set.
    """

    policy: GPTPolicy | None = None  # trained policy (its network is `model`)
    logp: np.ndarray | None = None  # (X, N) log pi(y|x) over the exact eval's prompts x responses
    history: dict | None = None  # per-step arrays of equal length (None: no training loop)
    model: GPT | None = None  # the network to checkpoint (None for best-of-n)
    extra: dict = field(default_factory=dict)  # JSON-ready numbers for metrics.json


def copy_model(src: GPT, heads=(), skip=()) -> GPT:
    """A fresh GPT of ``src``'s shape with ``heads``, its shared parameters copied.

    Every shared parameter is copied from ``src`` except those whose name starts with one
    of ``skip``; new heads start at zero.

    Parameters
    ----------
    src : GPT
    heads : tuple of str, default ()
    skip : tuple of str, default ()
        Name prefixes not copied.

    Returns
    -------
    GPT
    """
    model = GPT(src.config, seed=0, dtype=src.dtype, heads=heads)
    for name, p in src.params.items():
        if name in model.params and not any(name.startswith(s) for s in skip):
            model.params[name][...] = p
    return model


def reference_policy(sft_model: GPT, task) -> GPTPolicy:
    """``pi_sft`` over ``task``'s responses as a frozen reference.

    Log-probs only, each distinct prompt encoded once
    (:class:`~rlhf_toy.pipeline.policy.GPTPolicy` with ``frozen=True``; the same options as
    :func:`~rlhf_toy.pipeline.common.task_policy`).

    Parameters
    ----------
    sft_model : GPT
    task : Task

    Returns
    -------
    GPTPolicy
    """
    return task_policy(sft_model, task, frozen=True)


def method_options(config, name: str, defaults: dict) -> dict:
    """``defaults`` updated with ``config.method_options[name]``.

    An unknown key is a ``ValueError`` naming it and the method.

    Parameters
    ----------
    config : PipelineConfig
    name : str
        The method.
    defaults : dict
        Every option of the method with its default.

    Returns
    -------
    dict
    """
    if not isinstance(defaults, dict):
        raise ArgumentTypeError(f"defaults must be a dict of option to default, got "
                                f"{type(defaults).__name__}")
    if not isinstance(getattr(config, "method_options", None), dict):
        raise ArgumentTypeError(f"config must be a PipelineConfig (with a method_options "
                                f"dict), got {type(config).__name__}")
    given = dict(config.method_options.get(name, {}))
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(
            f"method_options[{name!r}]: unknown option(s) {unknown}; known: {sorted(defaults)}"
        )
    return {**defaults, **given}


def new_optimiser(params: dict, config, lr: float | None = None) -> AdamW:
    """AdamW over ``params`` at a constant ``lr``, with the config's weight decay.

    ``lr`` is ``config.rl_lr`` by default. Gradient clipping is done by the
    :mod:`rlhf_toy.rl` steps.

    Parameters
    ----------
    params : dict of str to ndarray
    config : PipelineConfig
    lr : float, optional

    Returns
    -------
    AdamW
    """
    return AdamW(params, lr=config.rl_lr if lr is None else lr, weight_decay=config.weight_decay)


def step_error(stage: str, step: int, err: FloatingPointError) -> FloatingPointError:
    """The error of a training step, renamed to say the stage and step number.

    Parameters
    ----------
    stage : str
    step : int
    err : FloatingPointError

    Returns
    -------
    FloatingPointError
    """
    return FloatingPointError(f"{stage}: step {step}: {err}")


def stack_history(rows: list[dict]) -> dict:
    """Per-step dicts of floats to ``{"step": arange, key: array}`` (missing keys NaN).

    Parameters
    ----------
    rows : list of dict of str to float

    Returns
    -------
    dict of str to ndarray of shape (len(rows),)
    """
    keys = sorted({k for r in rows for k in r})
    out = {"step": np.arange(len(rows))}
    for k in keys:
        out[k] = np.array([float(r.get(k, np.nan)) for r in rows])
    return out


class RewardTracker:
    """The reward function of the RL steps: the reward model's score.

    With what the last batch looked like in gold, proxy and length.

    Parameters
    ----------
    task : Task
    reward_model : GPTRewardModel
        ``r_RM``; its score is the reward (the proxy).
    missing_eos_penalty : float or None, default None
        Subtracted from the score of a response that used all ``max_response_len`` tokens
        without an EOS (TRL's choice; the original lm-human-preferences *replaces* the
        score by a constant instead). ``None``: no penalty.

    Notes
    -----
    Calling the tracker sets ``last = {"proxy", "gold", "length"}`` (means over the batch;
    ``proxy`` is the reward model's score before any penalty, ``length`` the tokens before
    EOS) and ``last_scores`` (the raw scores, shape ``(B,)``).
    """

    def __init__(self, task, reward_model: GPTRewardModel, missing_eos_penalty=None):
        self.task, self.reward_model = task, reward_model
        if missing_eos_penalty is not None and not np.isfinite(missing_eos_penalty):
            raise ValueError(f"missing_eos_penalty must be finite, got {missing_eos_penalty}")
        self.missing_eos_penalty = missing_eos_penalty
        self.last: dict = {}
        self.last_scores = None

    def normalise(self, responses, mask):
        """Responses with ``pad_id`` off the mask, in the task's form."""
        return self.task.responses_from_tokens(np.where(mask > 0, responses, self.task.pad_id))

    def __call__(self, prompts, responses, mask) -> np.ndarray:
        y, m = self.normalise(responses, mask)
        r_hat = score(self.reward_model, prompts, y, m)  # (B,)
        self.last_scores = r_hat
        self.last = {
            "proxy": float(r_hat.mean()),
            "gold": float(self.task.gold_rewards(prompts, y, m).mean()),
            "length": float(self.task.response_lengths(y, m).mean()),
        }
        if self.missing_eos_penalty is None:
            return r_hat
        no_eos = ~np.any((y == self.task.eos_id) & (m > 0), axis=1)  # (B,)
        self.last["no_eos"] = float(no_eos.mean())
        return r_hat - self.missing_eos_penalty * no_eos


def exact_eval(task, config, sft_model: GPT, reward_model: GPTRewardModel, exact=None):
    """``exact`` if given, else the exact tables of the evaluation prompts.

    At ``config.beta`` (:func:`rlhf_toy.pipeline.evaluate.build_exact_eval`, no frontier).

    Parameters
    ----------
    task : Task
    config : PipelineConfig
    sft_model : GPT
    reward_model : GPTRewardModel
    exact : ExactEval, optional

    Returns
    -------
    ExactEval
    """
    if exact is not None:
        if not isinstance(exact, ExactEval):
            raise TypeError(f"exact must be an ExactEval, got {type(exact).__name__}")
        return exact
    return build_exact_eval(
        task, task_policy(sft_model, task), reward_model, config.beta, [config.beta]
    )


class ExactTracker:
    """Exact metrics of a policy every ``every`` steps.

    ``row(step, policy)``, called after the update of ``step``, returns ``{"exact_gold",
    "exact_proxy", "exact_kl", "exact_kl_to_optimum", "exact_length"}`` of the policy after
    ``step + 1`` updates when ``(step + 1) % every == 0``, and ``{}`` otherwise.

    Parameters
    ----------
    every : int
        ``>= 0``; 0 never evaluates.
    ev : ExactEval or None
    """

    KEYS = ("gold", "proxy", "kl", "kl_to_optimum", "length")

    def __init__(self, every: int, ev: ExactEval | None):
        if isinstance(every, bool) or not isinstance(every, int | np.integer) or every < 0:
            raise ValueError(f"eval_every must be an int >= 0, got {every!r}")
        self.every, self.ev = int(every), ev

    def row(self, step: int, policy: GPTPolicy) -> dict:
        if self.every == 0 or (step + 1) % self.every:
            return {}
        m = evaluate_policy(self.ev, policy)
        return {f"exact_{k}": m[k] for k in self.KEYS}
