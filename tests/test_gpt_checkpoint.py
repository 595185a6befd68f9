"""Checkpoints: bit-for-bit safetensors round trips, clear errors for bad files, and the
Hugging Face export (loaded by ``transformers`` only when it happens to be installed)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from rlhf_toy.gpt import GPT, GPTConfig, export_hf, load, save

CFG = GPTConfig(vocab_size=11, n_ctx=8, n_embd=8, n_layer=2, n_head=2)


def trained_looking(dtype=np.float32, heads=("value", "reward"), seed=0):
    model = GPT(CFG, seed=seed, dtype=dtype, heads=heads)
    rng = np.random.default_rng(seed)
    for p in model.params.values():
        p += rng.normal(scale=0.1, size=p.shape).astype(dtype)
    return model


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("heads", [(), ("value",), ("value", "reward")])
def test_round_trip_is_bit_for_bit(tmp_path, dtype, heads):
    model = trained_looking(dtype, heads)
    path = tmp_path / "m.safetensors"
    model.save(path)
    back = GPT.load(path)
    assert back.config == model.config and back.dtype == model.dtype and back.heads == heads
    assert back.param_spec == model.param_spec
    for name, p in model.params.items():
        q = back.params[name]
        assert q.dtype == p.dtype and q.shape == p.shape and q.tobytes() == p.tobytes(), name
        assert q.flags.writeable and q.flags.c_contiguous  # ready for AdamW's in-place update
    tokens = np.arange(6).reshape(1, 6)
    assert np.array_equal(back.forward(tokens), model.forward(tokens))
    assert load(str(path)).config == model.config  # str paths, module-level function


def test_metadata_is_json_strings(tmp_path):
    path = tmp_path / "m.safetensors"
    save(trained_looking(heads=("reward",)), path)
    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    assert meta["format"] == "rlhf_toy.gpt" and meta["format_version"] == "1"
    assert json.loads(meta["config"]) == {
        "vocab_size": 11,
        "n_ctx": 8,
        "n_embd": 8,
        "n_layer": 2,
        "n_head": 2,
    }
    assert meta["dtype"] == "float32" and json.loads(meta["heads"]) == ["reward"]
    assert open(path, "rb").read(1) != b"\x80"  # not a pickle


def _rewrite(path, tensors=None, metadata=None):
    """Re-save a checkpoint with edited tensors and/or metadata."""
    with safe_open(str(path), framework="np") as f:
        meta = dict(f.metadata())
    ts = load_file(str(path))
    ts = tensors(ts) if tensors else ts
    meta = metadata(meta) if metadata else meta
    save_file(ts, str(path), metadata=meta)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (dict(tensors=lambda t: {k: v for k, v in t.items() if k != "h.1.ln_2.bias"}), "missing"),
        (dict(tensors=lambda t: {**t, "lm_head.weight": t["wte"]}), "unexpected tensor"),
        (dict(tensors=lambda t: {**t, "wpe": t["wpe"][:4]}), r"'wpe' has shape \(4, 8\)"),
        (dict(tensors=lambda t: {**t, "wte": t["wte"].astype(np.float64)}), "dtype float64"),
        (dict(metadata=lambda m: {k: v for k, v in m.items() if k != "format"}), "not an rlhf_toy"),
        (dict(metadata=lambda m: {**m, "format_version": "99"}), "format_version"),
        (dict(metadata=lambda m: {**m, "config": "{not json"}), "malformed"),
        (dict(metadata=lambda m: {**m, "config": '{"vocab_size": 11}'}), "malformed"),
        (dict(metadata=lambda m: {k: v for k, v in m.items() if k != "heads"}), "'heads'"),
        (dict(metadata=lambda m: {**m, "dtype": "int8"}), "dtype must be"),
    ],
)
def test_bad_checkpoints_raise_value_error(tmp_path, edit, message):
    path = tmp_path / "m.safetensors"
    trained_looking().save(path)
    _rewrite(path, **edit)
    with pytest.raises(ValueError, match=message):
        GPT.load(path)


def test_corrupted_and_foreign_files_raise_value_error(tmp_path):
    good = tmp_path / "good.safetensors"
    trained_looking().save(good)
    data = good.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "garbage": b"this is not a safetensors file at all" * 3,
        "empty": b"",
        "bad_header": struct.pack("<Q", 20) + b"{ not json, at all }",
    }
    for name, blob in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(blob)
        with pytest.raises(ValueError, match="not a valid safetensors"):
            GPT.load(path)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": np.zeros(3, np.float32)}, str(foreign))  # no metadata at all
    with pytest.raises(ValueError, match="not an rlhf_toy checkpoint"):
        GPT.load(foreign)
    with pytest.raises(FileNotFoundError):
        GPT.load(tmp_path / "nope.safetensors")


def test_export_hf_writes_gpt2_config_and_names(tmp_path):
    model = trained_looking(heads=("value",))
    folder = export_hf(model, tmp_path / "hf")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"]
    assert (cfg["vocab_size"], cfg["n_positions"], cfg["n_embd"]) == (11, 8, 8)
    assert (cfg["n_layer"], cfg["n_head"], cfg["n_inner"]) == (2, 2, None)
    assert cfg["layer_norm_epsilon"] == 1e-5 and cfg["activation_function"] == "gelu_new"
    assert cfg["tie_word_embeddings"] is True
    assert cfg["resid_pdrop"] == cfg["embd_pdrop"] == cfg["attn_pdrop"] == 0.0
    tensors = load_file(str(folder / "model.safetensors"))
    expected = {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"}
    for i in range(2):
        for n in ("ln_1", "ln_2", "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            expected |= {f"h.{i}.{n}.weight", f"h.{i}.{n}.bias"}
    assert set(tensors) == expected  # GPT-2 only: the value head is left out
    assert np.array_equal(tensors["wte.weight"], model.params["wte"])
    assert np.array_equal(tensors["h.1.attn.c_attn.weight"], model.params["h.1.attn.c_attn.weight"])


def test_export_hf_loads_in_transformers_with_the_same_logits(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    model = trained_looking(dtype=np.float32, heads=())
    export_hf(model, tmp_path / "hf")
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "hf")).eval()
    tokens = np.random.default_rng(0).integers(0, 11, size=(2, 8))
    with torch.no_grad():
        hf_logits = hf(torch.from_numpy(tokens)).logits.numpy()
    np.testing.assert_allclose(hf_logits, model.forward(tokens), rtol=1e-4, atol=1e-5)
