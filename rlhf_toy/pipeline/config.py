"""Every setting of one run of the RLHF pipeline (chapter, "The RLHF Pipeline").

A :class:`PipelineConfig` is frozen, written to ``RUN/config.json`` and read back from it,
so that ``rlhf-toy pipeline --config RUN/config.json`` reruns the same experiment. It is
validated as a whole before any training starts: an unknown task or method, ``beta <= 0``,
a prompt plus response longer than the model's ``n_ctx`` or a group of fewer than two
completions raises a ``ValueError`` naming the option.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path

from rlhf_toy._validate import check_int, check_nonnegative, check_positive
from rlhf_toy.tasks import TASKS, get_task

__all__ = ["DEFAULT_METHODS", "METHODS", "PipelineConfig"]

#: Every method the pipeline knows by name (the ``methods`` of ``metrics.json``).
METHODS = ("sft", "ppo", "dpo", "online_dpo", "grpo", "rloo", "best_of_n", "rft")
#: Methods run by ``rlhf-toy pipeline`` with no ``--methods``.
DEFAULT_METHODS = ("ppo", "dpo", "grpo", "rloo", "best_of_n")


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of a pipeline run; every field is written to ``config.json``.

    Raises
    ------
    ValueError
        From :meth:`validate` (called on construction), naming the bad option.
    """

    # ---- the experiment
    task: str = "length"  # toy language, a key of rlhf_toy.tasks.TASKS
    task_options: dict = field(default_factory=dict)  # fields of the task's dataclass
    methods: tuple = DEFAULT_METHODS  # RL / inference methods after SFT and the RM
    seed: int = 0  # one seed; every stage derives its own stream from it
    beta: float = 0.1  # KL coefficient of the RL objective and of pi* = pi_sft e^{r/beta}/Z
    # ---- the model (one GPT shape for policy, reference, critic and reward model)
    n_ctx: int = 12  # positions; prompt_len + max_response_len must fit
    n_embd: int = 32  # width C
    n_layer: int = 2  # blocks L
    n_head: int = 4  # heads NH
    # ---- Stage 1: supervised fine-tuning on demonstrations
    n_demonstrations: int = 4096  # size of the fixed demonstration set
    sft_steps: int = 600  # AdamW steps
    sft_batch_size: int = 64  # demonstrations per step
    sft_lr: float = 1e-2  # peak learning rate (warmup then cosine)
    sft_warmup_steps: int = 20
    # ---- Stage 2: reward model on labelled comparisons of SFT samples
    n_comparisons: int = 8192  # labelled pairs, of which a share is held out
    rm_holdout: float = 0.2  # share of the pairs held out for accuracy
    rm_steps: int = 600  # AdamW steps
    rm_batch_size: int = 64  # pairs per step
    rm_lr: float = 3e-3
    rm_warmup_steps: int = 20
    # ---- shared by the RL stages
    rl_steps: int = 100  # optimisation steps of each RL method
    rl_batch_size: int = 16  # prompts per step
    group_size: int = 4  # completions per prompt (GRPO, RLOO, online DPO)
    rl_lr: float = 1e-3
    best_of_n: int = 4  # n of best-of-n and of rejection-sampling fine-tuning
    # ---- common optimiser settings
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # ---- evaluation
    n_frontier: int = 41  # betas of the exact reward-KL frontier of pi*
    method_options: dict = field(default_factory=dict)  # per-method extras {name: {...}}

    def __post_init__(self):
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "task_options", dict(self.task_options))
        object.__setattr__(self, "method_options", dict(self.method_options))
        self.validate()

    # ------------------------------------------------------------------ validation

    def validate(self) -> None:
        """Check every option together; ``ValueError`` naming the first bad one."""
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {self.task!r}")
        task = get_task(self.task, **self.task_options)
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"methods: unknown method {m!r}; known: {', '.join(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must not repeat, got {list(self.methods)}")
        for name in self.method_options:
            if name not in METHODS:
                raise ValueError(f"method_options: unknown method {name!r}")
        check_positive(self.beta, "beta")
        for name in (
            "n_ctx", "n_embd", "n_layer", "n_head", "n_demonstrations", "sft_steps",
            "sft_batch_size", "n_comparisons", "rm_steps", "rm_batch_size", "rl_steps",
            "rl_batch_size", "best_of_n", "n_frontier",
        ):  # fmt: skip
            check_int(getattr(self, name), name)
        check_int(self.seed, "seed", minimum=0)
        check_int(self.sft_warmup_steps, "sft_warmup_steps", minimum=0)
        check_int(self.rm_warmup_steps, "rm_warmup_steps", minimum=0)
        if self.sft_warmup_steps > self.sft_steps:
            raise ValueError(f"sft_warmup_steps must be <= sft_steps, got {self.sft_warmup_steps}")
        if self.rm_warmup_steps > self.rm_steps:
            raise ValueError(f"rm_warmup_steps must be <= rm_steps, got {self.rm_warmup_steps}")
        check_int(self.group_size, "group_size", minimum=2)
        for name in ("sft_lr", "rm_lr", "rl_lr", "max_grad_norm"):
            check_positive(getattr(self, name), name)
        check_nonnegative(self.weight_decay, "weight_decay")
        if not (isinstance(self.rm_holdout, numbers.Real) and 0 < self.rm_holdout < 1):
            raise ValueError(f"rm_holdout must be in (0, 1), got {self.rm_holdout!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd must be divisible by n_head, got n_embd={self.n_embd}, "
                f"n_head={self.n_head}"
            )
        need = task.prompt_len + task.max_response_len
        if need > self.n_ctx:
            raise ValueError(
                f"n_ctx={self.n_ctx} is too short for task {self.task!r}: prompt "
                f"{task.prompt_len} + response {task.max_response_len} = {need} tokens"
            )
        n_held = round(self.n_comparisons * self.rm_holdout)
        if n_held < 1 or n_held >= self.n_comparisons:
            raise ValueError(
                f"rm_holdout={self.rm_holdout} of n_comparisons={self.n_comparisons} leaves "
                "no training or no held-out pairs"
            )

    # ------------------------------------------------------------------ presets

    @classmethod
    def quick(cls, **overrides) -> PipelineConfig:
        """A run of seconds (the tests' and ``--quick``'s settings), with overrides."""
        settings = dict(
            n_demonstrations=2048,
            sft_steps=400,
            sft_lr=1e-2,
            sft_warmup_steps=10,
            n_comparisons=4096,
            rm_steps=300,
            rm_lr=3e-3,
            rm_warmup_steps=10,
            rl_steps=20,
            n_frontier=21,
        )
        settings.update(overrides)
        return cls(**settings)

    def replace(self, **changes) -> PipelineConfig:
        """A copy with ``changes`` (validated)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict:
        """Plain JSON-ready dict of every field (tuples as lists)."""
        d = dataclasses.asdict(self)
        d["methods"] = list(self.methods)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PipelineConfig:
        """Inverse of :meth:`to_dict`; an unknown key is a ``ValueError`` naming it."""
        if not isinstance(d, dict):
            raise ValueError(f"config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in d:
            if key not in known:
                raise ValueError(f"unknown config option {key!r}")
        return cls(**d)

    def to_json(self, path) -> None:
        """Write ``config.json`` (sorted keys, indented)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, path) -> PipelineConfig:
        """Read a ``config.json`` written by :meth:`to_json`."""
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"config {path} is not valid JSON: {e}") from None
        return cls.from_dict(d)
