"""The RLHF pipeline on the numpy GPT (chapter, "The RLHF Pipeline"), one file per stage.

- :mod:`.config`: :class:`PipelineConfig`, every setting of a run, to and from JSON,
  validated before any training;
- :mod:`.sft`: Stage 1, supervised fine-tuning on the task's demonstrations;
- :mod:`.reward_model`: Stage 2, Bradley-Terry on labelled comparisons of SFT samples;
- :mod:`.evaluate`: exact evaluation by enumerating every response (gold, proxy, KL to
  ``pi_sft`` and to ``pi* = pi_sft exp(r_RM / beta) / Z``, the exact frontier);
- :mod:`.run`: the run folder and the registry of method stages (:func:`register_stage`);
- :mod:`.policy`: the GPT behind the policy protocol; :mod:`.cli`: ``rlhf-toy pipeline``.
"""

from .config import DEFAULT_METHODS, METHODS, PipelineConfig
from .run import STAGES, Run, StageOutput, register_stage, run_pipeline

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "STAGES",
    "PipelineConfig",
    "Run",
    "StageOutput",
    "register_stage",
    "run_pipeline",
]
