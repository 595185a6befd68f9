"""Speed of the numpy GPT: train step, forward, and KV-cache sampling, against PyTorch.

Run ``python benchmarks/bench_gpt.py`` (``--quick`` for a smoke run). Prints a table and
writes JSON (default ``benchmarks/results/bench_gpt.json``) with the machine, the BLAS, the
OpenBLAS environment variables and every timing.

Two configurations, float32:

- tiny:   V=32, n_ctx=32, C=64,  L=2, NH=4, batch 64 x 32 tokens;
- medium: V=64, n_ctx=64, C=128, L=4, NH=4, batch 32 x 64 tokens.

Measured (median of ``--repeats`` runs after warm-up; the JSON also keeps the fastest run):

- train step: forward + cross-entropy over all positions + backward + AdamW step;
- forward: logits only;
- sampling (tiny only): 64 sequences, 8-token prompt, 24 new tokens, KV cache, tokens/s;
- train matmuls: the matrix products of a train step alone, on the same shards and threads
  (:func:`matmul_floor`), a floor that no numpy implementation can beat here. Its ratio is
  to PyTorch's whole train step.

The numpy GPT runs as a user gets it: its batch cut into row shards, one per thread
(``rlhf_toy.gpt.get_num_threads()``, recorded in the JSON; ``RLHF_TOY_NUM_THREADS=1`` turns
sharding off), with BLAS held to one thread inside the model.

When ``torch`` is importable, the same three measurements run on a minimal PyTorch GPT-2
written below (``nn.Linear``, ``nn.LayerNorm``, ``nn.GELU(approximate="tanh")``, causal
``F.scaled_dot_product_attention``, tied head, ``torch.optim.AdamW`` with decay on matrices
only, ``torch.set_num_threads(os.cpu_count())``, its own KV-cache loop under
``torch.no_grad()``), loaded with the numpy model's weights (the script checks that both
give the same logits). Numpy and torch runs alternate in chunks of five, so both see the same
background load on a shared machine, with a short pause at each switch so that neither
library's idle worker threads spin on the other's cores. The load average at start and end
is recorded. Torch is never a dependency of ``rlhf_toy``; it is imported only here.

Targets on a 2-core laptop: tiny train step <= 0.5x torch's time, medium <= 1.0x, sampling
>= 2x torch's tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _machine import loadavg, machine_info

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_gpt.json"

#: The two model sizes and their batches: (config kwargs, batch size, sequence length).
CONFIGS = {
    "tiny": ({"vocab_size": 32, "n_ctx": 32, "n_embd": 64, "n_layer": 2, "n_head": 4}, 64, 32),
    "medium": (
        {"vocab_size": 64, "n_ctx": 64, "n_embd": 128, "n_layer": 4, "n_head": 4},
        32,
        64,
    ),
}
#: Sampling workload (tiny config): sequences, prompt length, new tokens.
SAMPLE_B, SAMPLE_P, SAMPLE_N = 64, 8, 24
#: Targets: (config, measurement) -> (comparison, bound) on numpy/torch.
TARGETS = {
    ("tiny", "train_step"): ("<=", 0.5),
    ("medium", "train_step"): ("<=", 1.0),
    ("tiny", "sample"): (">=", 2.0),
}
ADAMW = {"lr": 3e-4, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1}
#: Seconds of rest when switching between numpy and torch (OpenBLAS workers spin ~0.1 s).
SWITCH_PAUSE = 0.2


# --------------------------------------------------------------------------- timing


def _time_calls(fn, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def interleaved_times(fns: dict, repeats: int, warmup: int, chunk: int = 5) -> dict:
    """Wall times of each callable in ``fns``, measured in alternating chunks.

    After ``warmup`` untimed calls each, the callables take turns running ``chunk`` timed
    calls until each has ``repeats``: on a machine shared with other jobs, numpy and torch
    then see the same background load. A pause at every switch lets the previous library's
    idle BLAS / OpenMP threads stop spinning before the next one runs.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    while any(len(t) < repeats for t in times.values()):
        for k, fn in fns.items():
            n = min(chunk, repeats - len(times[k]))
            if n > 0:
                time.sleep(SWITCH_PAUSE)
                times[k] += _time_calls(fn, n)
    return times


# ---------------------------------------------------------------------------- numpy


def numpy_workloads(name: str, with_sampling: bool) -> tuple[dict, tuple]:
    """The numpy GPT's callables for one configuration, and the state torch copies."""
    from rlhf_toy.gpt import GPT, AdamW, GPTConfig, cross_entropy, sample

    kwargs, B, T = CONFIGS[name]
    model = GPT(GPTConfig(**kwargs), seed=0, dtype=np.float32)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, kwargs["vocab_size"], size=(B, T))
    targets = rng.integers(0, kwargs["vocab_size"], size=(B, T))
    prompts = rng.integers(0, kwargs["vocab_size"], size=(SAMPLE_B, SAMPLE_P))
    reference_logits = model.forward(tokens).copy()  # before any update, for the torch check
    start_params = {k: p.copy() for k, p in model.params.items()}
    opt = AdamW(model.params, **ADAMW)

    def train_step():
        logits = model.forward(tokens)  # (B, T, V)
        _, dlogits = cross_entropy(logits, targets)  # mean over all B * T positions
        grads = model.backward(dlogits)
        opt.step(grads)

    def forward():
        model.forward(tokens)

    def sampling():
        sample(model, prompts, SAMPLE_N, rng=0, use_cache=True)

    fns = {"train_step": train_step, "forward": forward}
    if with_sampling:
        fns["sample"] = sampling
    fns["train_matmuls"] = matmul_floor(model, B, T)
    return fns, (start_params, tokens, targets, prompts, reference_logits)


def matmul_floor(model, B: int, T: int):
    """Every matrix product of one train step and nothing else, on the model's row shards.

    The same shapes, shards and threads as the train step: for each block, the forward
    product of ``c_attn``, ``c_proj``, ``c_fc`` and the MLP's ``c_proj`` and their two
    backward products (input and weight gradients), the attention's per-head products (two
    forward, four backward), and the tied LM head (forward, input and weight gradients). No
    element-wise work at all: no numpy implementation of the step can be faster than this
    on the machine.
    """
    from rlhf_toy.gpt.parallel import map_shards, row_shards, single_blas_thread

    cfg, p = model.config, model.params
    C, V, NH, hs = cfg.n_embd, cfg.vocab_size, cfg.n_head, cfg.head_size
    widths = {  # (input width, output width) of each linear layer in a block
        "attn.c_attn": (C, 3 * C),
        "attn.c_proj": (C, C),
        "mlp.c_fc": (C, 4 * C),
        "mlp.c_proj": (4 * C, C),
    }
    rng = np.random.default_rng(1)

    def operands(rows):
        x = {  # activations and their gradients, (N, width) for each width in the step
            w: rng.standard_normal((rows * T, w)).astype(np.float32) for w in (C, 3 * C, 4 * C, V)
        }
        q = rng.standard_normal((rows, NH, T, hs)).astype(np.float32)  # (B, NH, T, hs)
        att = rng.standard_normal((rows, NH, T, T)).astype(np.float32)  # (B, NH, T, T)
        return x, q, att

    def one_shard(x, q, att):
        for i in range(cfg.n_layer):
            for name, (w_in, w_out) in widths.items():
                w = p[f"h.{i}.{name}.weight"]  # (w_in, w_out)
                x[w_in] @ w  # forward
                x[w_out] @ w.T  # input gradient
                x[w_in].T @ x[w_out]  # weight gradient
            kt, at = q.swapaxes(-1, -2), att.swapaxes(-1, -2)
            q @ kt, att @ q  # forward: scores, mixing
            q @ kt, at @ q, att @ q, at @ q  # backward: d att, d v, d q, d k
        x[C] @ p["wte"].T, x[V] @ p["wte"], x[V].T @ x[C]  # tied head: logits, dx, dwte

    shard_operands = [operands(s.stop - s.start) for s in row_shards(B, T)]

    def floor():
        with single_blas_thread():
            map_shards(one_shard, shard_operands)

    return floor


# ---------------------------------------------------------------------------- torch


def build_torch_gpt(kwargs: dict):
    """A minimal GPT-2 in PyTorch with the numpy model's sizes and semantics."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    V, n_ctx, C = kwargs["vocab_size"], kwargs["n_ctx"], kwargs["n_embd"]
    L, NH = kwargs["n_layer"], kwargs["n_head"]
    hs = C // NH

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(C, eps=1e-5)
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)
            self.ln_2 = nn.LayerNorm(C, eps=1e-5)
            self.c_fc = nn.Linear(C, 4 * C)
            self.gelu = nn.GELU(approximate="tanh")
            self.mlp_proj = nn.Linear(4 * C, C)

        def forward(self, x, kv=None, t0=0):
            B, T, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)  # (B, T, C) each
            q, k, v = (z.view(B, T, NH, hs).transpose(1, 2) for z in (q, k, v))  # (B,NH,T,hs)
            if kv is not None:  # incremental decoding: append to the cache, attend to it all
                kc, vc = kv
                kc[:, :, t0 : t0 + T] = k
                vc[:, :, t0 : t0 + T] = v
                k, v = kc[:, :, : t0 + T], vc[:, :, : t0 + T]
            y = F.scaled_dot_product_attention(q, k, v, is_causal=(t0 == 0 and T > 1))
            x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.mlp_proj(self.gelu(self.c_fc(self.ln_2(x))))

    class TorchGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(V, C)
            self.wpe = nn.Embedding(n_ctx, C)
            self.h = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(C, eps=1e-5)

        def forward(self, tokens, kvs=None, t0=0):
            T = tokens.shape[1]
            pos = torch.arange(t0, t0 + T)
            x = self.wte(tokens) + self.wpe(pos)
            for i, block in enumerate(self.h):
                x = block(x, None if kvs is None else kvs[i], t0)
            return self.ln_f(x) @ self.wte.weight.T  # tied head, (B, T, V)

        @torch.no_grad()
        def sample(self, prompts, max_new_tokens, generator):
            B, P = prompts.shape
            kvs = [(torch.zeros(B, NH, n_ctx, hs), torch.zeros(B, NH, n_ctx, hs)) for _ in range(L)]
            tokens = torch.empty(B, P + max_new_tokens, dtype=torch.long)
            tokens[:, :P] = prompts
            logprobs = torch.empty(B, max_new_tokens)
            for t in range(max_new_tokens):
                new = tokens[:, :P] if t == 0 else tokens[:, P + t - 1 : P + t]
                t0 = 0 if t == 0 else P + t - 1
                logq = torch.log_softmax(self(new, kvs, t0)[:, -1], dim=-1)  # (B, V)
                nxt = torch.multinomial(logq.exp(), 1, generator=generator)  # (B, 1)
                tokens[:, P + t] = nxt[:, 0]
                logprobs[:, t] = logq.gather(1, nxt)[:, 0]
            return tokens, logprobs

    return TorchGPT()


def load_numpy_weights(tmodel, params: dict) -> None:
    """Copy GPT-2-layout numpy weights (``[in, out]``) into the torch model (``[out, in]``)."""
    import torch

    def put(dst, src, transpose=False):
        a = torch.from_numpy(np.ascontiguousarray(src.T if transpose else src))
        dst.data.copy_(a)

    put(tmodel.wte.weight, params["wte"])
    put(tmodel.wpe.weight, params["wpe"])
    for i, blk in enumerate(tmodel.h):
        p = f"h.{i}."
        for mod, name in (
            (blk.ln_1, "ln_1"),
            (blk.ln_2, "ln_2"),
        ):
            put(mod.weight, params[p + name + ".weight"])
            put(mod.bias, params[p + name + ".bias"])
        for mod, name in (
            (blk.c_attn, "attn.c_attn"),
            (blk.c_proj, "attn.c_proj"),
            (blk.c_fc, "mlp.c_fc"),
            (blk.mlp_proj, "mlp.c_proj"),
        ):
            put(mod.weight, params[p + name + ".weight"], transpose=True)
            put(mod.bias, params[p + name + ".bias"])
    put(tmodel.ln_f.weight, params["ln_f.weight"])
    put(tmodel.ln_f.bias, params["ln_f.bias"])


def torch_workloads(name: str, with_sampling: bool, numpy_state) -> tuple[dict, float]:
    """The torch GPT's callables (same weights, data and optimiser), and the logit check."""
    import torch
    from torch.nn import functional as F

    torch.set_num_threads(os.cpu_count() or 1)
    kwargs, B, T = CONFIGS[name]
    V = kwargs["vocab_size"]
    start_params, tokens_np, targets_np, prompts_np, reference_logits = numpy_state
    tmodel = build_torch_gpt(kwargs)
    load_numpy_weights(tmodel, start_params)
    tokens = torch.from_numpy(tokens_np.astype(np.int64))
    targets = torch.from_numpy(targets_np.astype(np.int64))
    prompts = torch.from_numpy(prompts_np.astype(np.int64))
    with torch.no_grad():
        max_diff = float(np.abs(tmodel(tokens).numpy() - reference_logits).max())

    decay = [p for p in tmodel.parameters() if p.dim() >= 2]
    no_decay = [p for p in tmodel.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": ADAMW["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=ADAMW["lr"],
        betas=ADAMW["betas"],
        eps=ADAMW["eps"],
    )
    gen = torch.Generator().manual_seed(0)

    def train_step():
        logits = tmodel(tokens)  # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, V), targets.view(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def forward():
        with torch.no_grad():
            tmodel(tokens)

    def sampling():
        tmodel.sample(prompts, SAMPLE_N, gen)

    fns = {"train_step": train_step, "forward": forward}
    if with_sampling:
        fns["sample"] = sampling
    return fns, max_diff


# ----------------------------------------------------------------------------- main


def _fmt(what: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f} tok/s" if what == "sample" else f"{value * 1e3:.2f} ms"


def run(repeats: int, warmup: int, use_torch: bool = True) -> dict:
    """Run every measurement and return the JSON-ready report."""
    from rlhf_toy.gpt import get_num_threads

    report = {"machine": machine_info(), "repeats": repeats, "warmup": warmup, "results": []}
    report["machine"]["rlhf_toy_threads"] = get_num_threads()
    torch = None
    if use_torch:
        try:
            import torch
        except ImportError:
            torch = None
    if torch is not None:
        report["machine"]["torch"] = torch.__version__
        report["machine"]["torch_threads"] = os.cpu_count()
    for name in CONFIGS:
        with_sampling = name == "tiny"
        np_fns, state = numpy_workloads(name, with_sampling)
        if torch is not None:
            torch_fns, max_diff = torch_workloads(name, with_sampling, state)
            report.setdefault("torch_logit_check", {})[name] = max_diff
        for what, np_fn in np_fns.items():
            fns = {"numpy": np_fn}
            if torch is not None and what in torch_fns:
                fns["torch"] = torch_fns[what]
            times = interleaved_times(fns, repeats, warmup)
            row = {"config": name, "measurement": what}
            row["unit"] = "tokens/s" if what == "sample" else "s"
            for lib in ("numpy", "torch"):
                if lib not in times:
                    row[lib] = row[lib + "_best"] = None
                elif what == "sample":
                    n_tok = SAMPLE_B * SAMPLE_N
                    row[lib] = n_tok / statistics.median(times[lib])
                    row[lib + "_best"] = n_tok / min(times[lib])
                else:
                    row[lib] = statistics.median(times[lib])
                    row[lib + "_best"] = min(times[lib])
            r = row["numpy"] / row["torch"] if row["torch"] else None
            if what == "train_matmuls" and torch is not None:  # the floor against torch's step
                torch_step = next(
                    x["torch"]
                    for x in report["results"]
                    if x["config"] == name and x["measurement"] == "train_step"
                )
                r = row["numpy"] / torch_step
                row["compared_to"] = "torch train_step"
            row["numpy_over_torch"] = r
            if (name, what) in TARGETS:
                op, bound = TARGETS[(name, what)]
                row["target"] = f"{op} {bound}"
                row["met"] = None if r is None else (r <= bound if op == "<=" else r >= bound)
            report["results"].append(row)
    report["machine"]["loadavg_at_end"] = loadavg()
    return report


def print_table(report: dict, file=sys.stdout) -> None:
    """The human-readable table of :func:`run`'s report."""
    m = report["machine"]
    print(
        f"numpy {m['numpy']} ({m['numpy_blas'].get('name', '?')} "
        f"{m['numpy_blas'].get('version', '')}), torch {m.get('torch', 'not installed')}, "
        f"{m['cpu_count']} CPUs, {m['platform']}",
        file=file,
    )
    env = ", ".join(f"{k}={v}" for k, v in m["env"].items() if v is not None) or "none set"
    print(
        f"env: {env}; rlhf_toy threads {m.get('rlhf_toy_threads', '?')}; median of "
        f"{report['repeats']} runs; load average "
        f"{m['loadavg_at_start']} at start, {m.get('loadavg_at_end')} at end",
        file=file,
    )
    header = f"{'config':<8} {'measurement':<13} {'numpy':>14} {'torch':>14} {'np/torch':>9} "
    header += f"{'target':>8} {'ok':>4}"
    print(header, file=file)
    print("-" * len(header), file=file)
    for r in report["results"]:
        ratio = r["numpy_over_torch"]
        ok = {True: "yes", False: "NO", None: "-"}[r.get("met")]
        print(
            f"{r['config']:<8} {r['measurement']:<13} {_fmt(r['measurement'], r['numpy']):>14} "
            f"{_fmt(r['measurement'], r['torch']):>14} "
            f"{('-' if ratio is None else f'{ratio:.2f}x'):>9} {r.get('target', ''):>8} {ok:>4}",
            file=file,
        )
    for name, diff in report.get("torch_logit_check", {}).items():
        print(
            f"torch model check ({name}): max |logits_torch - logits_numpy| = {diff:.2e}",
            file=file,
        )


def main(argv=None) -> int:
    """Command-line entry point (also used by ``rlhf-toy bench``)."""
    parser = argparse.ArgumentParser(
        prog="bench_gpt", description="Speed of the numpy GPT (and PyTorch, if installed)."
    )
    parser.add_argument("--quick", action="store_true", help="3 repeats, 1 warm-up")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 20)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 20)
    if repeats < 1:
        parser.error(f"--repeats must be >= 1, got {repeats}")
    warmup = 1 if args.quick else 3
    report = run(repeats, warmup, use_torch=not args.no_torch)
    print_table(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    print(f"wrote {args.json}")
    return 0


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


if __name__ == "__main__":
    sys.exit(main())
