"""A numpy GPT-2 with a hand-written backward pass: the sequence world of the chapter.

- :mod:`~rlhf_toy.gpt.layers`: forward/backward pairs (embedding, LayerNorm, linear,
  causal attention, GELU, block) and the masked cross-entropy;
- :mod:`~rlhf_toy.gpt.model`: :class:`GPTConfig`, :class:`GPT` (GPT-2 names and layouts,
  optional value / reward heads, per-token log-probs and their backward, KV-cache steps);
- :mod:`~rlhf_toy.gpt.sample`: :func:`sample` with temperature, top-k, EOS, PAD and a
  restricted output alphabet;
- :mod:`~rlhf_toy.gpt.enumerate`: :func:`enumerate_continuations`, every short response
  with its exact log-prob (a batched tree walk with the KV cache);
- AdamW, clipping and the lr schedule, re-exported from :mod:`rlhf_toy.optim`;
- :mod:`~rlhf_toy.gpt.config`: :class:`GPTConfig` and :func:`param_spec`;
- :mod:`~rlhf_toy.gpt.checkpoint`: verified safetensors checkpoints and the Hugging Face
  export;
- :mod:`~rlhf_toy.gpt.reference`: the plain-numpy forward the tests compare against;
- :mod:`~rlhf_toy.gpt.parallel`: row shards of a batch on threads (one per core).

``gpt/`` knows nothing of RLHF: the objectives hand it gradients with respect to
log-probabilities (``model.logprobs_backward``) and it returns parameter gradients.
"""

from rlhf_toy.optim import AdamW, clip_grad_norm, lr_schedule

from .checkpoint import export_hf, save
from .enumerate import Continuations, enumerate_continuations
from .layers import cross_entropy
from .model import GPT, GPTConfig, KVCache, check_finite_grads, load, param_spec
from .parallel import get_num_threads, set_num_threads
from .sample import SampleResult, sample

__all__ = [
    "GPT",
    "AdamW",
    "Continuations",
    "GPTConfig",
    "KVCache",
    "SampleResult",
    "check_finite_grads",
    "clip_grad_norm",
    "cross_entropy",
    "enumerate_continuations",
    "export_hf",
    "get_num_threads",
    "load",
    "lr_schedule",
    "param_spec",
    "sample",
    "save",
    "set_num_threads",
]
