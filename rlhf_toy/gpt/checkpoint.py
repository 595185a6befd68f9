"""Checkpoints of the GPT: safetensors files, never pickle, verified at load.

The pipeline stages of the chapter (SFT -> reward model -> PPO / DPO) hand models to each
other through these files. A checkpoint is one ``.safetensors`` file holding every
parameter under its GPT-2 name, and string metadata:

- ``format``: ``"rlhf_toy.gpt"`` (files without it are refused);
- ``format_version``: ``"1"``;
- ``config``: the :class:`GPTConfig` as JSON;
- ``dtype``: ``"float32"`` or ``"float64"``;
- ``heads``: the extra heads as a JSON list;
- ``tensor_digests``: JSON ``{name: sha256 of the tensor's bytes}``;
- ``digest``: sha256 of the format, config, dtype, heads and tensor digests.

Safetensors has no checksum of its own. :func:`read_checkpoint` checks, in order, and says
which check failed: the file (exists, is a file, parses), the metadata, the tensor names,
shapes and dtypes against the config, each tensor against its digest, the metadata against
the overall digest (a config that contradicts the weights, e.g. ``n_head`` changed), and
that every weight is finite.

:func:`export_hf` writes a folder that Hugging Face ``transformers`` loads as
``GPT2LMHeadModel`` (``config.json`` + ``model.safetensors`` with the hub's key names).
This module does not import :mod:`rlhf_toy.gpt.model` (the model imports it).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from .config import GPTConfig, check_heads, param_spec
from .layers import LN_EPS

__all__ = ["FORMAT", "FORMAT_VERSION", "Checkpoint", "export_hf", "read_checkpoint", "save"]

#: Value of the ``format`` metadata entry of an rlhf_toy checkpoint.
FORMAT = "rlhf_toy.gpt"
#: Version of the layout described in this module's docstring.
FORMAT_VERSION = "1"


@dataclass
class Checkpoint:
    """What :func:`read_checkpoint` returns: enough to rebuild the model."""

    config: GPTConfig
    dtype: np.dtype
    heads: tuple
    params: dict  # name -> owned, writable, C-contiguous array, in param_spec order


def _tensor_digest(t: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(t, order="C").tobytes()).hexdigest()


def _overall_digest(config_json: str, dtype: str, heads_json: str, tensor_digests: dict) -> str:
    blob = json.dumps(
        [FORMAT, FORMAT_VERSION, config_json, dtype, heads_json, tensor_digests],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def save(model, path) -> None:
    """Write ``model`` (a :class:`~rlhf_toy.gpt.GPT`) to ``path`` as safetensors.

    Its config and digests go in the metadata. Loading it back gives the same parameters
    bit for bit.

    Parameters
    ----------
    model : GPT
    path : str or pathlib.Path

    Raises
    ------
    FileNotFoundError
        If the folder of ``path`` does not exist.
    IsADirectoryError
        If ``path`` is a directory.
    ValueError
        If a parameter is not finite.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"cannot save checkpoint {path!r}: folder {folder!r} does not exist"
        )
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save checkpoint {path!r}: it is a directory")
    tensors = {}
    for name, _ in model.param_spec:
        t = np.asarray(model.params[name], order="C")
        if not np.all(np.isfinite(t)):
            raise ValueError(f"cannot save {path!r}: parameter {name!r} has NaN/inf entries")
        tensors[name] = t
    config_json = json.dumps(model.config_dict())
    heads_json = json.dumps(list(model.heads))
    digests = {name: _tensor_digest(t) for name, t in tensors.items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config_json,
        "dtype": model.dtype.name,
        "heads": heads_json,
        "tensor_digests": json.dumps(digests),
        "digest": _overall_digest(config_json, model.dtype.name, heads_json, digests),
    }
    save_file(tensors, path, metadata=metadata)


def read_checkpoint(path) -> Checkpoint:
    """Read and verify a checkpoint written by :func:`save` (see the module docstring).

    Parameters
    ----------
    path : str or pathlib.Path

    Returns
    -------
    Checkpoint
        The config, dtype, heads and parameters read from ``path``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    IsADirectoryError
        If ``path`` is a directory.
    ValueError
        Saying which check failed: not valid safetensors, not an rlhf_toy checkpoint,
        malformed metadata, a missing, unexpected, wrongly shaped or typed tensor, a tensor
        or the metadata not matching its digest, or non-finite weights.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory, not a checkpoint file")
    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            _check_metadata(metadata, path)
            config = GPTConfig(**json.loads(metadata["config"]))
            dtype = np.dtype(metadata["dtype"])
            heads = check_heads(json.loads(metadata["heads"]))
            digests = json.loads(metadata["tensor_digests"])
            if not isinstance(digests, dict):
                raise TypeError("tensor_digests must be a JSON object")
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
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path!r}: malformed rlhf_toy metadata: {e}") from None
    params = {}
    for name, shape in spec:
        t = tensors[name]
        if t.shape != tuple(shape):
            raise ValueError(f"{path!r}: tensor {name!r} has shape {t.shape}, expected {shape}")
        if t.dtype != dtype:
            raise ValueError(f"{path!r}: tensor {name!r} has dtype {t.dtype}, expected {dtype}")
        if digests.get(name) != _tensor_digest(t):
            raise ValueError(f"{path!r}: tensor {name!r} does not match its digest (corrupted)")
        params[name] = np.array(t, dtype=dtype, copy=True)  # own, writable memory
    if set(digests) != expected:
        raise ValueError(f"{path!r}: tensor_digests do not list exactly the model's tensors")
    overall = _overall_digest(metadata["config"], metadata["dtype"], metadata["heads"], digests)
    if metadata["digest"] != overall:
        raise ValueError(
            f"{path!r}: metadata (config, dtype or heads) does not match the checkpoint digest"
        )
    for name, t in params.items():
        if not np.all(np.isfinite(t)):
            raise ValueError(f"{path!r}: tensor {name!r} has NaN/inf weights")
    return Checkpoint(config, dtype, heads, params)


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
    for key in ("config", "dtype", "heads", "tensor_digests", "digest"):
        if key not in metadata:
            raise ValueError(f"{path!r}: metadata entry {key!r} is missing")
    if metadata["dtype"] not in ("float32", "float64"):
        raise ValueError(f"{path!r}: dtype must be float32 or float64, got {metadata['dtype']!r}")


def export_hf(model, folder) -> Path:
    """Write ``model`` as a Hugging Face GPT-2 folder: ``config.json`` + ``model.safetensors``.

    Tensor names are those of the hub's ``gpt2`` checkpoint (``wte.weight``, ``wpe.weight``,
    ``h.0.attn.c_attn.weight``, ..., ``ln_f.bias``; the LM head is tied to ``wte``). The
    value and reward heads are not part of GPT-2 and are left out. ``transformers`` is never
    imported here::

        GPT2LMHeadModel.from_pretrained(folder)  # same logits as model.forward

    Parameters
    ----------
    model : GPT
    folder : str or pathlib.Path
        Created if missing.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"cannot export to {str(folder)!r}: it is a file")
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
