"""Speed of TRL's DPO and GRPO steps on the workloads of ``bench_pipeline.py``.

Run ``python benchmarks/bench_trl.py`` (``--quick`` for a smoke run) inside a virtual
environment that has ``torch``, ``transformers``, ``trl``, ``datasets`` and ``accelerate``
(plus numpy and scipy for the machine report). Prints a table and writes JSON (default
``benchmarks/results/bench_trl.json``; ``--json PATH``). This script is never imported by
``rlhf_toy`` nor run by the tests: it only gives the PyTorch trainer's times on this machine,
against which ``bench_pipeline.py``'s ``dpo_step_ms`` and ``grpo_step_ms`` are compared.

Workloads
---------
The constants (``TINY``, ``DPO_*``, ``GRPO_*``, the token ids of EOS and PAD) are imported from
``bench_pipeline.py``, so both scripts time the same steps:

- model: ``transformers.GPT2LMHeadModel(GPT2Config(vocab_size=32, n_positions=32, n_embd=64,
  n_layer=2, n_head=4))``, tied head, dropout 0 (``resid_pdrop = embd_pdrop = attn_pdrop = 0``),
  float32, CPU, ``torch.set_num_threads(2)``. It is built from its config, saved to a temporary
  folder and handed to each trainer as that path, so that TRL builds its reference model the
  way it does by default (a second, frozen copy loaded from the same weights);
- tokenizer: a ``PreTrainedTokenizerFast`` over a ``tokenizers`` WordLevel model of 32 tokens
  with a whitespace pre-tokenizer, laid out like the benchmark's toy language: ``a`` .. ``g``
  are ids 0-6, ``<eos>`` is 7 (``bench_pipeline.EOS``), 22 more symbols, ``<bos>`` 30 and
  ``<pad>`` 31 (``bench_pipeline.PAD``). A prompt of 8 symbols is exactly 8 tokens; no BOS is
  added;
- DPO step (``trl.DPOTrainer``): 16 pairs per step, 8-token prompts, chosen and rejected
  responses of at most 13 tokens over ``a`` .. ``g`` and EOS, beta 0.1, sigmoid loss, AdamW
  (lr 1e-4, betas (0.9, 0.95), weight decay 0.1 on matrices, constant learning rate), the
  reference forward inside the step (``precompute_ref_log_probs=False``, TRL's default);
- GRPO step (``trl.GRPOTrainer``): 8 prompts x 8 completions (``num_generations=8``,
  ``per_device_train_batch_size=64``, one gradient accumulation step, so each optimiser step is
  one generation round: generate 64, reward, advantages, reference forward, policy forward,
  backward, AdamW), 8-token prompts, ``max_completion_length=8``, temperature 1, ``beta=0.04``
  (TRL's k3 estimate of the KL), ``num_iterations=1``, ``loss_type="grpo"`` (per-sequence mean,
  like ``agg="seq_mean"``), the reward of ``bench_pipeline.grpo_step_fn`` (count of token 3
  minus half the length) as a Python function, ``model.generate`` (no vLLM).

Set explicitly so as to match the numpy steps, against TRL's own defaults: float32
(``bf16=False``; TRL's default is bf16 autocast), no gradient checkpointing (TRL's default
recomputes the forward in the backward), no gradient clipping (``max_grad_norm=0``), a constant
learning rate. ``--trl-defaults`` times the same steps with TRL's and transformers' defaults
for those settings (bf16 autocast, gradient checkpointing, clipping at 1.0, linear decay, Adam
betas (0.9, 0.999), no weight decay, and GRPO's ``loss_type="dapo"``).

What differs from the numpy steps, because TRL does it so:

- DPO: TRL appends EOS to every response (the numpy step leaves the 13-token ones without
  it), so the responses here are 5-12 symbols plus EOS; every pair has at least one 13-token
  response, so that every batch pads to 8 + 13 = 21 columns like the numpy step's fixed
  ``(B, 13)`` arrays. TRL runs the 32 rows (chosen, then rejected) in one batch of full
  sequences: each prompt is computed twice, where the numpy step computes each distinct
  prompt once. Its fused head scores all positions and also computes the entropy, mean logit
  and top-1 hit of each token for its metrics;
- GRPO: each prompt enters ``generate`` 8 times (64 rows; the numpy sampler encodes each
  prompt once and shares its cache), and sampling runs over all 32 tokens where the numpy
  step samples only the 8 response symbols; ``generate`` runs until all 64 rows have ended
  with EOS or at 8 new tokens (the JSON keeps the width of each call). The policy and reference
  forwards take the 64 full sequences, prompt included, and their log-softmax is over all 32
  tokens (the numpy step normalises over the 8 response symbols). The policy forward also
  computes each token's entropy (a metric). The KL term is multiplied by the importance ratio
  (``use_bias_correction_kl=True``, TRL's default: equal to 1 in value on-policy, not in the
  gradient). TRL tokenises the prompt strings, decodes the completions and computes its
  metrics inside the step;
- both: the timed step is TRL's optimiser step as the trainer runs it (``on_step_begin`` to
  ``on_step_end`` of a ``TrainerCallback``): it includes the trainer's own bookkeeping, the
  learning-rate scheduler and ``zero_grad``, but not the data loader's collation of the next
  batch nor the logging every 10 steps, which happen outside it; ``loop`` in the table is the
  time from one ``on_step_end`` to the next and includes them.

Measured
--------
After 5 warm-up steps, ``--repeats`` timed steps (default 50): the median and fastest wall
time per step (``dpo_step_ms``, ``grpo_step_ms``, ``dpo_step_min_ms``, ``grpo_step_min_ms``),
the process CPU time per step, and a breakdown by part: ``generation`` (``model.generate``),
``ref_forward`` (forward hooks on the reference model), ``policy_forward`` (forward hooks on the
policy, outside ``generate``), ``backward`` (``accelerator.backward``), ``optimizer`` (between
``on_pre_optimizer_step`` and ``on_optimizer_step``: the AdamW step) and ``other`` (the rest:
tokenising, reward, advantages, loss, metrics, scheduler); for GRPO also ``rollout``, TRL's
``_generate_and_score_completions`` whole (generation, decoding, reward, reference forward,
advantages, metrics). The JSON also keeps the shapes each part saw, the seconds to import
torch, transformers and trl, the versions, torch's thread count and the machine
(``_machine.machine_info()``, ``loadavg()``, when importable).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from bench_pipeline import (  # noqa: E402
    DPO_BETA,
    DPO_PAIRS,
    DPO_PROMPT,
    DPO_RESPONSE,
    EOS,
    GRPO_BETA,
    GRPO_GROUP,
    GRPO_NEW,
    GRPO_PROMPT,
    GRPO_PROMPTS,
    PAD,
    TINY,
)

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_trl.json"
TORCH_THREADS = 2
LR = 1e-4
#: The token ids 0-6 are the response symbols, 7 is EOS and 31 is PAD, as in bench_pipeline.
RESPONSE_SYMBOLS = list("abcdefg")
OTHER_SYMBOLS = list("hijklmnopqrstuvwxyz") + ["0", "1", "2"]
BOS_TOKEN, EOS_TOKEN, PAD_TOKEN = "<bos>", "<eos>", "<pad>"
VOCAB = RESPONSE_SYMBOLS + [EOS_TOKEN] + OTHER_SYMBOLS + [BOS_TOKEN, PAD_TOKEN]
PROMPT_SYMBOLS = RESPONSE_SYMBOLS + OTHER_SYMBOLS
#: The token counted by the GRPO reward (bench_pipeline: ``responses == 3``).
REWARD_TOKEN = 3
PARTS = ["generation", "ref_forward", "policy_forward", "backward", "optimizer", "other"]


def import_libraries() -> dict:
    """Import torch, transformers and trl (its four trainer classes), timing each import."""
    seconds = {}
    t0 = time.perf_counter()
    import torch

    seconds["torch"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    import transformers

    seconds["transformers"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    import trl
    from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer  # noqa: F401

    seconds["trl"] = time.perf_counter() - t0
    import accelerate
    import datasets
    import tokenizers

    versions = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
        "tokenizers": tokenizers.__version__,
    }
    return {"import_seconds": seconds, "versions": versions}


def make_tokenizer():
    """The 32-token word-level tokenizer of the toy language (see the module docstring)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    assert len(VOCAB) == TINY["vocab_size"] and VOCAB.index(EOS_TOKEN) == EOS
    assert VOCAB.index(PAD_TOKEN) == PAD
    vocab = {tok: i for i, tok in enumerate(VOCAB)}
    tok = Tokenizer(WordLevel(vocab, unk_token=PAD_TOKEN))
    tok.pre_tokenizer = WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=PAD_TOKEN,
    )
    ids = tokenizer("a b c " + "d" + EOS_TOKEN)["input_ids"]
    assert ids == [0, 1, 2, 3, EOS], f"tokenizer check failed: {ids}"
    return tokenizer


def save_model(folder: Path) -> str:
    """Build the tiny GPT-2 from its config, save it to ``folder`` and return the path."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=TINY["vocab_size"],
        n_positions=TINY["n_ctx"],
        n_embd=TINY["n_embd"],
        n_layer=TINY["n_layer"],
        n_head=TINY["n_head"],
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=VOCAB.index(BOS_TOKEN),
        eos_token_id=EOS,
        pad_token_id=PAD,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    model.save_pretrained(folder)
    return str(folder)


def _symbols(rng, alphabet, n) -> str:
    return " ".join(rng.choice(alphabet, size=n))


def dpo_dataset(n_pairs: int, seed: int = 1):
    """Preference pairs: 8-symbol prompts, responses of 6-13 tokens once TRL appends EOS."""
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    T = DPO_RESPONSE
    rows = {"prompt": [], "chosen": [], "rejected": []}
    for _ in range(n_pairs):
        lengths = rng.integers(T // 2, T + 1, size=2)  # as bench_pipeline._responses
        if lengths.max() < T:  # every batch pads to the numpy step's T columns
            lengths[0] = T
        rows["prompt"].append(_symbols(rng, PROMPT_SYMBOLS, DPO_PROMPT))
        rows["chosen"].append(" " + _symbols(rng, RESPONSE_SYMBOLS, int(lengths[0]) - 1))
        rows["rejected"].append(" " + _symbols(rng, RESPONSE_SYMBOLS, int(lengths[1]) - 1))
    return Dataset.from_dict(rows)


def grpo_dataset(n_prompts: int, seed: int = 2):
    """8-symbol prompts, one per row (GRPOTrainer repeats each ``num_generations`` times)."""
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    return Dataset.from_dict(
        {"prompt": [_symbols(rng, PROMPT_SYMBOLS, GRPO_PROMPT) for _ in range(n_prompts)]}
    )


def reward_count_minus_half_length(completions, completion_ids, **kwargs) -> list[float]:
    """bench_pipeline's GRPO reward: count of token 3 minus half the completion's length."""
    return [sum(t == REWARD_TOKEN for t in ids) - 0.5 * len(ids) for ids in completion_ids]


def common_args(trl_defaults: bool, output_dir: str, steps: int) -> dict:
    """Trainer arguments shared by both steps."""
    args = {
        "output_dir": output_dir,
        "max_steps": steps,
        "learning_rate": LR,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
    }
    if not trl_defaults:
        args.update(
            bf16=False,
            gradient_checkpointing=False,
            max_grad_norm=0.0,
            lr_scheduler_type="constant",
            adam_beta2=0.95,
            weight_decay=0.1,
        )
    return args


class StepTimer:
    """Times each optimiser step of a trainer, whole and by part.

    A ``TrainerCallback`` (made by :meth:`callback`) marks the step's start and end and the
    optimiser step; wrappers of ``model.generate`` and ``accelerator.backward`` and forward
    hooks on the policy and the reference model time the other parts (:meth:`attach`).
    """

    def __init__(self):
        self.steps = []  # one dict per optimiser step
        self.loops = []  # on_step_end to the next on_step_end, seconds
        self.rollouts = []  # GRPO: generate, score, reference forward, advantages, seconds
        self.generated_widths = []  # GRPO: new tokens per generate call (it stops when all end)
        self.shapes = {}
        self.counts = {}
        self.grad_enabled = {}  # whether autograd recorded the last forward of each model
        self._parts = {}
        self._t0 = self._c0 = self._opt0 = self._last_end = None
        self._open = {}
        self._in_generate = False

    def _add(self, part: str, seconds: float) -> None:
        self._parts[part] = self._parts.get(part, 0.0) + seconds
        self.counts[part] = self.counts.get(part, 0) + 1

    def callback(self):
        """The ``TrainerCallback`` to pass to the trainer."""
        from transformers import TrainerCallback

        timer = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer._parts = {}
                timer._c0, timer._t0 = time.process_time(), time.perf_counter()

            def on_pre_optimizer_step(self, args, state, control, **kwargs):
                timer._opt0 = time.perf_counter()

            def on_optimizer_step(self, args, state, control, **kwargs):
                timer._add("optimizer", time.perf_counter() - timer._opt0)

            def on_step_end(self, args, state, control, **kwargs):
                now = time.perf_counter()
                wall = now - timer._t0
                parts = {p: timer._parts.get(p, 0.0) for p in PARTS[:-1]}
                parts["other"] = wall - sum(parts.values())
                timer.steps.append(
                    {"wall": wall, "cpu": time.process_time() - timer._c0, "parts": parts}
                )
                if timer._last_end is not None:
                    timer.loops.append(now - timer._last_end)
                timer._last_end = now

        return _Callback()

    def _hooks(self, model, part: str) -> None:
        import torch

        def pre(module, args, kwargs):
            if not self._in_generate:
                ids = kwargs.get("input_ids", args[0] if args else None)
                if ids is not None:
                    self.shapes[part] = list(ids.shape)
                self.grad_enabled[part] = torch.is_grad_enabled()
                self._open[part] = time.perf_counter()

        def post(module, args, kwargs, output):
            if not self._in_generate and part in self._open:
                self._add(part, time.perf_counter() - self._open.pop(part))

        model.register_forward_pre_hook(pre, with_kwargs=True)
        model.register_forward_hook(post, with_kwargs=True)

    def attach(self, trainer) -> None:
        """Wrap the trainer's generate and backward and hook its policy and reference."""
        model = trainer.model
        generate = model.generate

        def timed_generate(*args, **kwargs):
            self._in_generate = True
            t0 = time.perf_counter()
            try:
                out = generate(*args, **kwargs)
            finally:
                self._in_generate = False
            self._add("generation", time.perf_counter() - t0)
            ids = kwargs.get("input_ids", args[0] if args else None)
            self.shapes["generation_in"] = list(ids.shape)
            self.shapes["generation_out"] = list(out.shape)
            self.generated_widths.append(int(out.shape[1] - ids.shape[1]))
            return out

        model.generate = timed_generate
        if hasattr(trainer, "_generate_and_score_completions"):  # GRPO: the whole rollout
            rollout = trainer._generate_and_score_completions

            def timed_rollout(*args, **kwargs):
                t0 = time.perf_counter()
                out = rollout(*args, **kwargs)
                self.rollouts.append(time.perf_counter() - t0)
                return out

            trainer._generate_and_score_completions = timed_rollout
        backward = trainer.accelerator.backward

        def timed_backward(loss, **kwargs):
            t0 = time.perf_counter()
            backward(loss, **kwargs)
            self._add("backward", time.perf_counter() - t0)

        trainer.accelerator.backward = timed_backward
        self._hooks(model, "policy_forward")
        if getattr(trainer, "ref_model", None) is None:
            raise RuntimeError("the trainer has no reference model: its forward would be missing")
        self._hooks(trainer.ref_model, "ref_forward")

    def summary(self, warmup: int) -> dict:
        """Median and fastest step after ``warmup`` steps, and the median of each part."""
        timed = self.steps[warmup:]
        if not timed:
            raise RuntimeError(f"only {len(self.steps)} steps ran, {warmup} of them warm-up")
        walls = [s["wall"] for s in timed]
        return {
            "median_ms": 1e3 * statistics.median(walls),
            "min_ms": 1e3 * min(walls),
            "cpu_ms_median": 1e3 * statistics.median([s["cpu"] for s in timed]),
            "loop_ms_median": _median_ms(self.loops[warmup:]),
            "rollout_ms_median": _median_ms(self.rollouts[warmup:]),
            "breakdown_ms": {
                p: 1e3 * statistics.median([s["parts"][p] for s in timed]) for p in PARTS
            },
            "n_steps": len(self.steps),
            "n_timed": len(timed),
            "calls": dict(self.counts),
            "shapes": dict(self.shapes),
            "grad_enabled": dict(self.grad_enabled),
            "all_ms": [1e3 * w for w in walls],
            "all_parts_ms": {p: [1e3 * s["parts"][p] for s in timed] for p in PARTS},
            "generated_widths": self.generated_widths[warmup:],
        }


def _median_ms(seconds: list) -> float | None:
    return 1e3 * statistics.median(seconds) if seconds else None


def _check_losses(trainer, name: str) -> list:
    losses = [h.get("loss", h.get("train_loss")) for h in trainer.state.log_history]
    losses = [float(x) for x in losses if x is not None]
    if not all(math.isfinite(x) for x in losses):
        raise FloatingPointError(f"non-finite {name} loss in {losses}")
    return losses


def _check_model(trainer) -> None:
    import torch

    dtypes = {p.dtype for p in trainer.model.parameters()} | {
        p.dtype for p in trainer.ref_model.parameters()
    }
    assert dtypes == {torch.float32}, dtypes


def run_dpo(model_path: str, tokenizer, steps: int, warmup: int, trl_defaults: bool, out: str):
    """Train ``steps`` DPO steps; returns the summary of the timed ones and TRL's settings."""
    from transformers import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        per_device_train_batch_size=DPO_PAIRS,
        beta=DPO_BETA,
        loss_type=["sigmoid"],
        **common_args(trl_defaults, out, steps),
    )
    assert args.precompute_ref_log_probs is False
    timer = StepTimer()
    trainer = DPOTrainer(
        model=model_path,
        args=args,
        train_dataset=dpo_dataset(DPO_PAIRS * steps),
        processing_class=tokenizer,
        callbacks=[timer.callback()],
    )
    ex = trainer.train_dataset[0]
    lengths = {len(r["chosen_ids"]) for r in trainer.train_dataset}
    lengths |= {len(r["rejected_ids"]) for r in trainer.train_dataset}
    assert len(ex["prompt_ids"]) == DPO_PROMPT and max(lengths) == DPO_RESPONSE, lengths
    assert ex["chosen_ids"][-1] == EOS
    if not trl_defaults:
        _check_model(trainer)
    timer.attach(trainer)
    trainer.remove_callback(PrinterCallback)  # the logs stay in trainer.state.log_history
    trainer.train()
    report = timer.summary(warmup)
    assert report["grad_enabled"] == {"policy_forward": True, "ref_forward": False}, report
    report["losses_logged"] = _check_losses(trainer, "DPO")
    report["response_tokens_range"] = [min(lengths), max(lengths)]
    report["settings"] = _settings(trainer.args)
    assert report["shapes"]["policy_forward"] == [2 * DPO_PAIRS, DPO_PROMPT + DPO_RESPONSE]
    return report


def run_grpo(model_path: str, tokenizer, steps: int, warmup: int, trl_defaults: bool, out: str):
    """Train ``steps`` GRPO steps; returns the summary of the timed ones and TRL's settings."""
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    batch = GRPO_PROMPTS * GRPO_GROUP
    extra = {} if trl_defaults else {"loss_type": "grpo"}
    args = GRPOConfig(
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_generations=GRPO_GROUP,
        num_iterations=1,
        max_completion_length=GRPO_NEW,
        temperature=1.0,
        beta=GRPO_BETA,
        use_vllm=False,
        **extra,
        **common_args(trl_defaults, out, steps),
    )
    assert args.generation_batch_size == batch
    timer = StepTimer()
    trainer = GRPOTrainer(
        model=model_path,
        reward_funcs=reward_count_minus_half_length,
        args=args,
        train_dataset=grpo_dataset(GRPO_PROMPTS * steps),
        processing_class=tokenizer,
        callbacks=[timer.callback()],
    )
    if not trl_defaults:
        _check_model(trainer)
    timer.attach(trainer)
    trainer.remove_callback(PrinterCallback)  # the logs stay in trainer.state.log_history
    trainer.train()
    report = timer.summary(warmup)
    assert report["grad_enabled"] == {"policy_forward": True, "ref_forward": False}, report
    report["losses_logged"] = _check_losses(trainer, "GRPO")
    report["completion_mean_length"] = trainer_metric_history(trainer, "completions/mean_length")
    report["settings"] = _settings(trainer.args)
    assert report["shapes"]["generation_in"] == [batch, GRPO_PROMPT], report["shapes"]
    assert report["calls"]["generation"] == steps, report["calls"]
    return report


def trainer_metric_history(trainer, name: str) -> list:
    """The logged values of one of TRL's metrics (averaged over each logging window)."""
    return [h[name] for h in trainer.state.log_history if name in h]


def _settings(args) -> dict:
    keys = (
        "bf16", "gradient_checkpointing", "max_grad_norm", "lr_scheduler_type", "optim",
        "adam_beta1", "adam_beta2", "weight_decay", "learning_rate", "logging_steps",
        "per_device_train_batch_size", "gradient_accumulation_steps", "beta", "loss_type",
        "precompute_ref_log_probs", "num_generations", "max_completion_length",
        "steps_per_generation", "num_iterations", "temperature", "top_k", "top_p",
        "use_bias_correction_kl", "scale_rewards", "epsilon", "max_length", "disable_dropout",
    )  # fmt: skip
    out = {}
    for k in keys:
        if hasattr(args, k):
            v = getattr(args, k)
            out[k] = v if isinstance(v, (bool, int, float, str, list, type(None))) else str(v)
    return out


def run(repeats: int, warmup: int, trl_defaults: bool) -> dict:
    """Time both steps; returns the report."""
    try:
        from _machine import loadavg, machine_info

        machine = machine_info()
    except Exception as exc:  # numpy/scipy missing or another platform
        machine, loadavg = {"error": repr(exc)}, None
    report = {"machine": machine, "repeats": repeats, "warmup": warmup}
    report.update(import_libraries())
    import torch
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    disable_progress_bar()
    torch.set_num_threads(TORCH_THREADS)
    report["torch_threads"] = torch.get_num_threads()
    report["torch_parallel_info"] = torch.__config__.parallel_info()
    report["trl_defaults"] = trl_defaults
    report["config"] = TINY
    steps = warmup + repeats
    tokenizer = make_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        model_path = save_model(Path(tmp) / "tiny_gpt2")
        dpo = run_dpo(model_path, tokenizer, steps, warmup, trl_defaults, str(Path(tmp) / "dpo"))
        grpo = run_grpo(model_path, tokenizer, steps, warmup, trl_defaults, str(Path(tmp) / "g"))
    report["dpo"], report["grpo"] = dpo, grpo
    report["torch_threads_at_end"] = torch.get_num_threads()
    report["dpo_step_ms"], report["grpo_step_ms"] = dpo["median_ms"], grpo["median_ms"]
    report["dpo_step_min_ms"], report["grpo_step_min_ms"] = dpo["min_ms"], grpo["min_ms"]
    report["dpo_breakdown_ms"] = dpo["breakdown_ms"]
    report["grpo_breakdown_ms"] = grpo["breakdown_ms"]
    if loadavg is not None:
        report["machine"]["loadavg_at_end"] = loadavg()
    return report


def print_table(report: dict, file=sys.stdout) -> None:
    """The human-readable summary of a report."""
    v, m = report["versions"], report["machine"]
    imp = report["import_seconds"]
    print(
        f"torch {v['torch']}, transformers {v['transformers']}, trl {v['trl']}; "
        f"{report['torch_threads']} torch threads; import trl {imp['trl']:.2f} s "
        f"(torch {imp['torch']:.2f} s, transformers {imp['transformers']:.2f} s)",
        file=file,
    )
    if "loadavg_at_start" in m:
        print(
            f"python {m['python']}, {m['cpu_count']} CPUs, load average "
            f"{m['loadavg_at_start']} -> {m.get('loadavg_at_end')}; median of "
            f"{report['repeats']} after {report['warmup']} warm-up steps"
            + ("; TRL's default settings" if report["trl_defaults"] else ""),
            file=file,
        )
    head = "".join(f"{p:>15s}" for p in PARTS)
    print(
        f"{'step':6s} {'median':>8s} {'min':>8s} {'cpu':>8s} {'loop':>8s} {'1/3':>8s}{head}  (ms)",
        file=file,
    )
    for key, name in (("dpo", "DPO"), ("grpo", "GRPO")):
        r = report[key]
        cells = "".join(f"{r['breakdown_ms'][p]:15.2f}" for p in PARTS)
        print(
            f"{name:6s} {r['median_ms']:8.2f} {r['min_ms']:8.2f} {r['cpu_ms_median']:8.2f} "
            f"{r['loop_ms_median'] or math.nan:8.2f} {r['median_ms'] / 3:8.2f}{cells}",
            file=file,
        )
    g = report["grpo"]
    if g.get("rollout_ms_median") is not None:
        print(
            f"GRPO rollout (generate, decode, reward, reference forward, advantages): "
            f"{g['rollout_ms_median']:.2f} ms; completions of "
            f"{statistics.mean(g['completion_mean_length'] or [math.nan]):.2f} tokens on average",
            file=file,
        )


def main(argv=None) -> int:
    """Command-line entry point: run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 steps after 2 of warm-up")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (default 50)")
    parser.add_argument(
        "--trl-defaults",
        action="store_true",
        help="TRL's default bf16, gradient checkpointing, clipping, schedule, Adam and GRPO loss",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write the results (default benchmarks/results/bench_trl.json, or "
        "bench_trl_quick.json with --quick, bench_trl_defaults.json with --trl-defaults)",
    )
    args = parser.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 50)
    if repeats < 1:
        parser.error(f"--repeats must be >= 1, got {repeats}")
    report = run(repeats, warmup=2 if args.quick else 5, trl_defaults=args.trl_defaults)
    report["quick"] = args.quick
    print_table(report)
    path = args.json
    if path is None:
        suffix = ("_defaults" if args.trl_defaults else "") + ("_quick" if args.quick else "")
        path = DEFAULT_JSON.with_name(f"bench_trl{suffix}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
