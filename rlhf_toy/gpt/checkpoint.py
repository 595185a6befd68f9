"""Checkpoints of the GPT: safetensors files, never pickle.

A checkpoint is one ``.safetensors`` file holding every parameter under its GPT-2 name, and
string metadata:

- ``format``: ``"rlhf_toy.gpt"`` (files without it are refused);
- ``format_version``: ``"1"``;
- ``config``: the :class:`GPTConfig` as JSON;
- ``dtype``: ``"float32"`` or ``"float64"``;
- ``heads``: the extra heads as a JSON list.

:func:`export_hf` writes a folder that Hugging Face ``transformers`` loads as
``GPT2LMHeadModel`` (``config.json`` + ``model.safetensors`` with the hub's key names).
The pipeline stages of the chapter (SFT -> reward model -> PPO / DPO) hand models to each
other through these files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from .layers import LN_EPS
from .model import GPT, GPTConfig, param_spec

__all__ = ["FORMAT", "FORMAT_VERSION", "export_hf", "load", "save"]

#: Value of the ``format`` metadata entry of an rlhf_toy checkpoint.
FORMAT = "rlhf_toy.gpt"
#: Version of the layout described in this module's docstring.
FORMAT_VERSION = "1"


def save(model: GPT, path) -> None:
    """Write ``model`` to ``path`` as safetensors with its config in the metadata.

    Loading it back with :func:`load` gives the same parameters bit for bit.
    """
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config_dict()),
        "dtype": model.dtype.name,
        "heads": json.dumps(list(model.heads)),
    }
    tensors = {name: np.asarray(model.params[name], order="C") for name, _ in model.param_spec}
    save_file(tensors, os.fspath(path), metadata=metadata)


def load(path) -> GPT:
    """Read a checkpoint written by :func:`save`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not valid safetensors, is not an rlhf_toy checkpoint, or has a
        missing, unexpected, wrongly shaped or wrongly typed tensor.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            _check_metadata(metadata, path)
            config = GPTConfig(**json.loads(metadata["config"]))
            dtype = np.dtype(metadata["dtype"])
            heads = tuple(json.loads(metadata["heads"]))
            spec = param_spec(config, heads)
            keys = set(f.keys())
            expected = {name for name, _ in spec}
            if keys - expected:
                raise ValueError(f"{path!r}: unexpected tensor {sorted(keys - expected)[0]!r}")
            if expected - keys:
                raise ValueError(f"{path!r}: missing tensor {sorted(expected - keys)[0]!r}")
        tensors = load_file(path)  # (safe_open's get_tensor turns shape () into (1,))
    except SafetensorError as e:
        raise ValueError(f"{path!r} is not a valid safetensors file: {e}") from None
    except (json.JSONDecodeError, TypeError) as e:
        raise ValueError(f"{path!r}: malformed rlhf_toy metadata: {e}") from None
    model = GPT(config, dtype=dtype, heads=heads)
    for name, shape in spec:
        t = tensors[name]
        if t.shape != tuple(shape):
            raise ValueError(f"{path!r}: tensor {name!r} has shape {t.shape}, expected {shape}")
        if t.dtype != dtype:
            raise ValueError(f"{path!r}: tensor {name!r} has dtype {t.dtype}, expected {dtype}")
        model.params[name] = np.array(t, dtype=dtype, copy=True)  # own, writable memory
    return model


def _check_metadata(metadata: dict, path: str) -> None:
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"{path!r} is not an rlhf_toy checkpoint (metadata format="
            f"{metadata.get('format')!r}, expected {FORMAT!r})"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path!r}: unsupported format_version {metadata.get('format_version')!r}, "
            f"expected {FORMAT_VERSION!r}"
        )
    for key in ("config", "dtype", "heads"):
        if key not in metadata:
            raise ValueError(f"{path!r}: metadata entry {key!r} is missing")
    if metadata["dtype"] not in ("float32", "float64"):
        raise ValueError(f"{path!r}: dtype must be float32 or float64, got {metadata['dtype']!r}")


def export_hf(model: GPT, folder) -> Path:
    """Write ``model`` as a Hugging Face GPT-2 folder: ``config.json`` + ``model.safetensors``.

    Tensor names are those of the hub's ``gpt2`` checkpoint (``wte.weight``, ``wpe.weight``,
    ``h.0.attn.c_attn.weight``, ..., ``ln_f.bias``; the LM head is tied to ``wte``). The
    value and reward heads are not part of GPT-2 and are left out. ``transformers`` is never
    imported here::

        GPT2LMHeadModel.from_pretrained(folder)  # same logits as model.forward

    Returns
    -------
    pathlib.Path
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    hf_config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.n_ctx,
        "n_ctx": cfg.n_ctx,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": LN_EPS,
        "initializer_range": 0.02,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bos_token_id": None,
        "eos_token_id": None,
        "torch_dtype": model.dtype.name,
    }
    (folder / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    tensors = {}
    for name, _ in param_spec(cfg):  # GPT-2 parameters only
        hf_name = f"{name}.weight" if name in ("wte", "wpe") else name
        tensors[hf_name] = np.asarray(model.params[name], order="C")
    save_file(tensors, os.fspath(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder
