"""Every method of the pipeline after SFT and the reward model, behind one signature
(chapter, "The RLHF Pipeline", Stage 3, "DPO" and "Modern variations").

:data:`METHODS` maps a name of ``metrics.json`` to its ``train`` function, one readable
file each: :mod:`.ppo`, :mod:`.dpo` (offline, every loss of
:mod:`rlhf_toy.preference_losses`), :mod:`.online_dpo`, :mod:`.grpo` (Dr. GRPO as an
option), :mod:`.rloo`, :mod:`.best_of_n` (exact, inference-time) and :mod:`.rft`. The RL
methods run the training steps of :mod:`rlhf_toy.rl` on the GPT through
:class:`~rlhf_toy.pipeline.policy.GPTPolicy`; no loss or advantage is written here.

The signature, the same for every entry::

    train(task, config, sft_model, reward_model, comparisons, rng, verbose=False,
          exact=None) -> MethodResult

- ``task``: the :class:`~rlhf_toy.tasks.base.Task`;
- ``config``: the :class:`~rlhf_toy.pipeline.config.PipelineConfig` (shared RL settings,
  ``beta``, and the method's extras in ``config.method_options[name]``, keys of the
  module's ``DEFAULTS``; see :func:`check_method_options`);
- ``sft_model``: the SFT :class:`~rlhf_toy.gpt.GPT`, the frozen reference ``pi_sft``
  (never modified: each method trains a copy);
- ``reward_model``: the :class:`~rlhf_toy.pipeline.policy.GPTRewardModel` (``r_RM``);
- ``comparisons``: the reward model's training
  :class:`~rlhf_toy.pipeline.reward_model.Comparisons` (offline DPO learns from them);
- ``rng``: a Generator or int seed, the method's only randomness;
- ``verbose``: a progress bar;
- ``exact``: the run's :class:`~rlhf_toy.pipeline.evaluate.ExactEval`, reused by best-of-n
  and by ``eval_every`` instead of enumerating again (built when ``None``).

It returns a :class:`~rlhf_toy.pipeline.rl_common.MethodResult`: ``policy`` (a trained
``GPTPolicy``) or ``logp`` (an exact ``(X, N)`` table of ``log pi(y | x)`` over
``exact``'s prompts and responses, best-of-n), ``history`` (per-step arrays of equal length
with ``step``, or ``None``), ``model`` (the network to checkpoint, or ``None``) and
``extra`` (numbers for ``metrics.json``).

In :mod:`rlhf_toy.pipeline.run` a stage is then::

    result = METHODS[name](run.task, run.config, run.sft.model, run.rm.reward_model,
                           run.rm.train, run.rng(name), run.verbose, exact=run.exact)
    StageOutput(policy=result.policy, logp=result.logp, history=result.history,
                checkpoint=result.model, extra=result.extra)
"""

from __future__ import annotations

from . import best_of_n, dpo, grpo, online_dpo, ppo, rft, rloo
from .rl_common import MethodResult

__all__ = ["METHODS", "MethodResult", "check_method_options"]

_MODULES = {
    "ppo": ppo,
    "dpo": dpo,
    "online_dpo": online_dpo,
    "grpo": grpo,
    "rloo": rloo,
    "best_of_n": best_of_n,
    "rft": rft,
}

#: name -> ``train(task, config, sft_model, reward_model, comparisons, rng, verbose=False,
#: exact=None) -> MethodResult``.
METHODS = {name: module.train for name, module in _MODULES.items()}


def check_method_options(config) -> None:
    """Check the method options of a config; call it before any training.

    ``ValueError`` naming the first unknown key of ``config.method_options[name]`` for a
    method of :data:`METHODS`, or a bad offline-DPO loss.

    Parameters
    ----------
    config : PipelineConfig
    """
    for name, given in config.method_options.items():
        if name not in _MODULES:
            continue
        if not isinstance(given, dict):
            raise ValueError(f"method_options[{name!r}] must be a dict, got {given!r}")
        defaults = _MODULES[name].DEFAULTS
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ValueError(
                f"method_options[{name!r}]: unknown option(s) {unknown}; "
                f"known: {sorted(defaults)}"
            )
    loss = config.method_options.get("dpo", {}).get("loss", "dpo")
    if loss not in dpo.LOSSES:
        raise ValueError(f"method_options['dpo']['loss'] must be one of {dpo.LOSSES}, "
                         f"got {loss!r}")  # fmt: skip
