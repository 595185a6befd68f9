"""Checkpoint integrity: every byte flip in header or data is refused, non-finite weights
and a config that contradicts the weights are refused, bad paths give one-line errors."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from rlhf_toy.gpt import GPT, GPTConfig, load

SMALL = GPTConfig(vocab_size=5, n_ctx=4, n_embd=4, n_layer=1, n_head=2)


def random_model(config=SMALL, heads=("reward",), dtype=np.float32):
    model = GPT(config, seed=1, dtype=dtype, heads=heads)
    rng = np.random.default_rng(1)
    for p in model.params.values():
        p += rng.normal(scale=0.1, size=p.shape).astype(dtype)
    return model


@pytest.mark.parametrize("bit", [0x01, 0x80])
def test_every_single_byte_flip_is_detected(tmp_path, bit):
    path = tmp_path / "m.safetensors"
    random_model().save(path)
    data = path.read_bytes()
    header_len = 8 + struct.unpack("<Q", data[:8])[0]
    assert len(data) - header_len == 4 * random_model().num_params  # the data really is here
    missed = []
    with open(path, "r+b", buffering=0) as f:  # flip in place: one byte written per case
        for i in range(len(data)):
            f.seek(i)
            f.write(bytes([data[i] ^ bit]))
            try:
                load(path)
            except ValueError:
                pass
            else:
                missed.append(i)
            f.seek(i)
            f.write(data[i : i + 1])
    assert load(path).config == SMALL  # restored: loads again
    assert missed == [], f"{len(missed)} of {len(data)} flips loaded (header ends {header_len})"


def _rewrite(path, tensors=None, metadata=None):
    with safe_open(str(path), framework="np") as f:
        meta = dict(f.metadata())
    ts = load_file(str(path))
    save_file(
        tensors(ts) if tensors else ts, str(path), metadata=metadata(meta) if metadata else meta
    )


def test_config_contradicting_the_weights_is_caught_by_the_digest(tmp_path):
    cfg = GPTConfig(vocab_size=5, n_ctx=4, n_embd=8, n_layer=1, n_head=2)
    path = tmp_path / "m.safetensors"
    random_model(cfg).save(path)

    def four_heads(meta):
        c = json.loads(meta["config"])
        c["n_head"] = 4  # same shapes, another model
        return {**meta, "config": json.dumps(c)}

    _rewrite(path, metadata=four_heads)
    with pytest.raises(ValueError, match="does not match the checkpoint digest"):
        load(path)


def test_edited_tensor_is_named(tmp_path):
    path = tmp_path / "m.safetensors"
    random_model().save(path)
    _rewrite(path, tensors=lambda t: {**t, "wpe": t["wpe"] * 2})
    with pytest.raises(ValueError, match="'wpe' does not match its digest"):
        load(path)


def test_non_finite_weights_are_refused_at_save_and_at_load(tmp_path):
    path = tmp_path / "m.safetensors"
    model = random_model()
    model.params["h.0.ln_1.bias"][1] = np.nan
    with pytest.raises(ValueError, match="'h.0.ln_1.bias' has NaN/inf"):
        model.save(path)
    random_model().save(path)

    def inf_weight(t):
        t["wte"][0, 0] = np.inf
        return t

    _rewrite(path, tensors=inf_weight)
    with pytest.raises(ValueError, match="'wte' does not match its digest"):
        load(path)
    # a consistent but broken file: digests recomputed over the inf, as the format states
    model = random_model()
    model.params["wte"][0, 0] = np.inf
    tensors = {n: np.asarray(model.params[n], order="C") for n, _ in model.param_spec}
    digests = {n: hashlib.sha256(t.tobytes()).hexdigest() for n, t in tensors.items()}
    meta = {
        "format": "rlhf_toy.gpt",
        "format_version": "1",
        "config": json.dumps(model.config_dict()),
        "dtype": "float32",
        "heads": json.dumps(["reward"]),
        "tensor_digests": json.dumps(digests),
    }
    fields = ["rlhf_toy.gpt", "1", meta["config"], "float32", meta["heads"], digests]
    meta["digest"] = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ValueError, match="'wte' has NaN/inf weights"):
        load(path)
    meta["heads"] = json.dumps([])  # the overall digest covers the heads too
    tensors.pop("reward_head.weight"), tensors.pop("reward_head.bias")
    digests.pop("reward_head.weight"), digests.pop("reward_head.bias")
    meta["tensor_digests"] = json.dumps(digests)
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ValueError, match="does not match the checkpoint digest"):
        load(path)


def test_bad_paths_give_one_line_errors_naming_the_path(tmp_path):
    missing = tmp_path / "no" / "such" / "m.safetensors"
    with pytest.raises(FileNotFoundError, match="does not exist") as e:
        random_model().save(missing)
    assert "\n" not in str(e.value) and str(tmp_path / "no" / "such") in str(e.value)
    with pytest.raises(IsADirectoryError, match="is a directory") as e:
        load(tmp_path)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        random_model().save(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load(tmp_path / "nope.safetensors")
