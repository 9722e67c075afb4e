"""Benchmarks: `python -m experiments.bench [--case NAME] [--steps N] [--json]`.

Cases
  metrics  embedding_report on a float32 V=262,144 × d=1,024 matrix with counts and labels: time, peak memory
  train    the throughput spec (see SPEC below) through embjax's own model and train step: tokens/s, MFU
  peak     the machine's measured float32 matmul FLOP/s (the MFU denominator)
  sweep    an 8-member σ × seed group vectorised in one process vs 8 separate `experiments.train` processes
  mup      the train spec under SP and under μP, alternating: tokens/s of each and their ratio
  kinds    the train spec with the table, factorized and hashed input layers, alternating: tokens/s and ratios
  members  M members of the default model vmapped (--members=1,8,32,128): aggregate tokens/s, bytes per member
  study    sweeps/d_sigma_tying.yaml end to end (--steps shortens it): wall and compile time, members/minute
  compare  the train spec against the PyTorch reference (--peer-python, --peer), alternating
  prepare  experiments.prepare on a generated text corpus (--size-mb, default 1,024): wall time, peak memory
  text     the default run (--base=default) or the spec on a prepared, memory-mapped text corpus vs the planted
           corpus, alternating: tokens/s of each and their ratio
  viewer   the embedding-space page of a V=8,192 run with 50 frames (bytes, build time, load event and first
           frame drawn in headless Chromium), and what snapshots + pages cost: the default run and the quickstart
           sweep with and without them (log.snapshot_every=0), alternating: wall-time medians and ratios
Each prints a JSON object per line with --json, else a readable line.
"""

from __future__ import annotations

import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "configs", "default.yaml"
)
# The throughput spec: the same model as the PyTorch reference script that --case=compare runs (--peer).
SPEC = {
    "data.vocab_size": 8192,
    "data.seq_len": 128,
    "data.batch_size": 32,
    "model.kind": "transformer",
    "model.embed_dim": 256,
    "model.num_layers": 4,
    "model.num_heads": 4,
    "model.mlp_ratio": 4,
    "model.positions": "learned",
    "model.tie_embeddings": True,
    "optim.name": "adamw",
    "optim.lr": 3e-4,
    "optim.b1": 0.9,
    "optim.b2": 0.95,
    "optim.weight_decay": 0.1,
    "optim.embed_weight_decay": 0.1,
    "optim.grad_clip": 1.0,
    "optim.warmup_steps": 0,
    "optim.schedule": "constant",
}


def _emit(obj: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj), flush=True)
    else:
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in obj.items()), flush=True)


def bench_metrics(V: int = 262_144, D: int = 1024, **_) -> dict:
    from .metrics import embedding_report

    rng = np.random.default_rng(0)
    E = rng.standard_normal((V, D), dtype=np.float32) * 0.02
    E += 0.01 * rng.standard_normal(D).astype(np.float32)  # a common direction, as trained tables have
    counts = rng.zipf(1.2, V).astype(np.float64)
    labels = np.arange(V) % 64
    tracemalloc.start()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    report = embedding_report(E, counts=counts, labels=labels)
    dt = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "case": "metrics",
        "V": V,
        "d": D,
        "seconds": dt,
        "peak_extra_mib": peak / 2**20,
        "matrix_mib": E.nbytes / 2**20,
        "maxrss_growth_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024,
        "keys": len(report),
        "isotropy": report["emb/isotropy"],
    }


def peak_flops(n: int = 2048, reps: int = 20) -> float:
    """Measured float32 matmul FLOP/s on the default JAX device: the best of reps (a peak, and the
    least disturbed by other work on a shared machine)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - t)
    return 2 * n**3 / float(np.min(times))


def train_flops_per_token(cfg, n_params: int) -> float:
    """6·N per token for the matmul weights (the tied head's V×d matmul counted, lookups and positions not)
    plus attention's 12·L·T·d (Kaplan et al. 2020; PaLM appendix B)."""
    m, d = cfg.model, cfg.data
    V, D, T = d.vocab_size, m.embed_dim, d.seq_len
    n_matmul = n_params - (V * D if not m.tie_embeddings else 0) - (T * D if m.positions == "learned" else 0)
    return 6.0 * n_matmul + 12.0 * m.num_layers * T * D


def bench_train(steps: int = 20, per_dispatch: int = 1, overrides: dict | None = None, base: str = "spec", **_) -> dict:
    import jax

    from .config import load_config
    from .data import make_corpus
    from .models import count_params
    from .step import Program, hparams

    if base == "default":  # experiments/configs/default.yaml: what `experiments.train` runs with no arguments
        cfg = load_config(DEFAULT_CONFIG, {**(overrides or {}), "steps": 10**6})
    else:
        cfg = load_config(None, {**SPEC, **(overrides or {}), "steps": 10**6})
    corpus = make_corpus(cfg)
    program = Program(cfg, corpus)
    t0 = time.perf_counter()
    state = jax.jit(program.init)(cfg.seed, hparams(cfg))
    step = jax.jit(program.train_steps, static_argnums=2, donate_argnums=0)
    compiled = step.lower(state, corpus.tables, per_dispatch).compile()
    compile_s = time.perf_counter() - t0
    state, m = compiled(state, corpus.tables)  # warm-up
    jax.block_until_ready(m)
    first_step_s = time.perf_counter() - t0
    n = max(1, steps // per_dispatch)
    t = time.perf_counter()
    for _ in range(n):
        state, m = compiled(state, corpus.tables)
    loss = float(m["train/loss"])
    dt = time.perf_counter() - t
    params = count_params(state["params"])
    tokens = n * per_dispatch * cfg.data.batch_size * cfg.data.seq_len
    flops = train_flops_per_token(cfg, params) * tokens / dt
    kind = jax.devices()[0].device_kind
    published = published_peak(kind, cfg.model.compute_dtype, cfg.model.matmul_precision)
    peak = published or peak_flops()  # a CPU has no published figure: its measured float32 matmul peak
    return {
        "case": "train",
        "base": base,
        "V": cfg.data.vocab_size,
        "data": cfg.data.kind,
        "params": params,
        "tokens_per_s": tokens / dt,
        "step_ms": 1e3 * dt / (n * per_dispatch),
        "compile_s": compile_s,
        "time_to_first_step_s": first_step_s,
        "model_flops_per_s": flops,
        "peak_flops_per_s": peak,
        "peak_source": "published" if published else "measured matmul",
        "mfu": flops / peak,
        "loss": loss,
        "backend": jax.default_backend(),
        "device_kind": kind,
        "compute_dtype": cfg.model.compute_dtype,
        "devices": len(jax.devices()),
        "steps_per_dispatch": per_dispatch,
    }


def bench_peer(python: str, peer: str, steps: int = 20, **_) -> dict:
    """Run the PyTorch reference script `peer` (it prints a JSON line with tokens_per_s) with another interpreter."""
    out = subprocess.run([python, peer, f"--steps={steps}"], capture_output=True, text=True, check=True)
    return {"case": "peer", **json.loads(out.stdout.strip().splitlines()[-1])}


def bench_members(
    members: list[int], steps: int = 20, per_dispatch: int = 1, overrides: dict | None = None
) -> list[dict]:
    """M members of the default model (experiments/configs/default.yaml) vmapped as one program, per M: the
    aggregate tokens/s, the compiled program's bytes per member, and how many members the runner would put
    in one chunk on this device (all of them unless the device's memory says fewer)."""
    import jax
    import jax.numpy as jnp

    from .config import load_config
    from .data import make_corpus
    from .runner import compiled_bytes, members_that_fit
    from .step import Program, hparams

    cfg = load_config(DEFAULT_CONFIG, {**(overrides or {}), "steps": 10**6})
    corpus = make_corpus(cfg)
    program = Program(cfg, corpus)
    rows = []
    for M in members:
        hp = {k: jnp.full((M,), v, jnp.float32) for k, v in hparams(cfg).items()}
        state = jax.jit(jax.vmap(program.init))(jnp.arange(M), hp)
        t0 = time.perf_counter()
        step = jax.jit(jax.vmap(program.train_steps, in_axes=(0, None, None)), static_argnums=2, donate_argnums=0)
        compiled = step.lower(state, corpus.tables, per_dispatch).compile()
        compile_s = time.perf_counter() - t0
        used = compiled_bytes(compiled)  # the corpus tables included, so per member it falls as M grows
        state, m = compiled(state, corpus.tables)
        jax.block_until_ready(m)
        n = max(1, steps // per_dispatch)
        t = time.perf_counter()
        for _ in range(n):
            state, m = compiled(state, corpus.tables)
        jax.block_until_ready(m)
        dt = time.perf_counter() - t
        tokens = M * n * per_dispatch * cfg.data.batch_size * cfg.data.seq_len
        rows.append(
            {
                "case": "members",
                "members": M,
                "tokens_per_s": tokens / dt,
                "tokens_per_s_per_member": tokens / dt / M,
                "step_ms": 1e3 * dt / (n * per_dispatch),
                "bytes_per_member": used / M,
                "compile_s": compile_s,
                "chunk": members_that_fit(program, M),
                "backend": jax.default_backend(),
            }
        )
    return rows


def bench_study(steps: int | None = None, sweep: str = "sweeps/d_sigma_tying.yaml") -> dict:
    """The whole d × σ × tying study end to end (`experiments.sweep`, vmapped groups, W&B off): wall time,
    the summed compile time of its groups, and members per minute. --steps shortens every member."""
    import csv

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "experiments.sweep",
            sweep,
            f"--out_dir={tmp}",
            "--vectorize=on",
            "--progress=false",
            "--log.wandb=false",
            "--compile_cache=",
            *([f"--steps={steps}"] if steps else []),
        ]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - t
        summaries = [json.load(open(p)) for p in glob.glob(os.path.join(tmp, "*", "*", "summary.json"))]
        with open(glob.glob(os.path.join(tmp, "*", "summary.csv"))[0]) as f:
            statuses = [r["status"] for r in csv.DictReader(f)]
    groups = {(s.get("compile_s"), s.get("wall_time_s")) for s in summaries}  # a vmapped group's members share both
    return {
        "case": "study",
        "sweep": sweep,
        "members": len(summaries),
        "steps": steps or "as in the sweep",
        "finished": statuses.count("finished"),
        "wall_s": wall,
        "compile_s": sum(c or 0.0 for c, _ in groups),
        "members_per_minute": 60 * len(summaries) / wall,
    }


# Published dense peak FLOP/s by device kind and dtype (vendor data sheets; SXM parts, no sparsity).
PUBLISHED_PEAK = {
    "H200": {"bfloat16": 989e12, "tf32": 494e12, "float32": 67e12},
    "H100": {"bfloat16": 989e12, "tf32": 494e12, "float32": 67e12},
    "A100": {"bfloat16": 312e12, "tf32": 156e12, "float32": 19.5e12},
    "TPU v4": {"bfloat16": 275e12, "tf32": 275e12, "float32": 275e12 / 6},
    "TPU v5 lite": {"bfloat16": 197e12, "tf32": 197e12, "float32": 197e12 / 6},
    "TPU v5p": {"bfloat16": 459e12, "tf32": 459e12, "float32": 459e12 / 6},
}


def published_peak(device_kind: str, compute_dtype: str, precision: str) -> float | None:
    """The dense peak for the dtype a train step's matmuls run in (float32 at default precision runs as TF32
    on NVIDIA GPUs and as bfloat16 passes on TPUs), or None for a device not in PUBLISHED_PEAK (e.g. a CPU)."""
    kind = "tf32" if compute_dtype == "float32" and precision == "default" else compute_dtype
    for name, peaks in PUBLISHED_PEAK.items():
        if name.lower() in device_kind.lower():
            return peaks["float32" if kind == "float32" else kind]
    return None


CASES: dict[str, Callable[..., dict]] = {"metrics": bench_metrics, "train": bench_train}


def main(argv: list[str]) -> int:
    from .config import parse_overrides
    from .hostmem import keep_freed_memory

    keep_freed_memory()  # as the train and sweep commands do, before JAX starts its threads
    p = _parser()
    a = p.parse_args(argv)
    for row in _case_rows(a, parse_overrides(a.set), p):
        _emit(row, a.json)
    return 0


def _parser():
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m experiments.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--case",
        default="train",
        choices=[
            "metrics",
            "train",
            "peak",
            "sweep",
            "compare",
            "mup",
            "kinds",
            "members",
            "study",
            "prepare",
            "text",
            "viewer",
            "pretrained",
        ],
    )
    p.add_argument(
        "--base",
        default="spec",
        choices=["spec", "default"],
        help="train/text: the throughput spec or experiments/configs/default.yaml",
    )
    p.add_argument("--size-mb", type=int, default=1024, help="prepare: the generated corpus's size")
    p.add_argument("--rows", type=int, default=400_000, help="pretrained: rows of the generated GloVe file")
    p.add_argument("--dim", type=int, default=300, help="pretrained: its width")
    p.add_argument("--vocab", type=int, default=50_000, help="pretrained: the vocabulary it is aligned to")
    p.add_argument("--members", default="1,8,32,128", help="members: comma-separated group sizes M")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--per-dispatch", type=int, default=1, help="train steps per dispatch (lax.scan)")
    p.add_argument("--rounds", type=int, default=3, help="compare: alternating rounds")
    p.add_argument("--peer-python", default=None, help="compare: a Python with torch==2.13.0 for the peer")
    p.add_argument("--peer", default=None, help="compare: the PyTorch reference script (torch_lm.py)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="train: a config override")
    p.add_argument("--json", action="store_true")
    return p


def _case_rows(a, overrides: dict, p) -> list[dict]:
    """The rows of the case the arguments name (p: the parser, for its usage error)."""
    if a.case == "peak":
        return [{"case": "peak", "flops_per_s": peak_flops()}]
    if a.case == "sweep":
        return bench_sweep(steps=a.steps if a.steps != 20 else 300)
    if a.case == "members":
        return bench_members([int(m) for m in a.members.split(",")], a.steps, a.per_dispatch, overrides)
    if a.case == "study":
        return [bench_study(a.steps if a.steps != 20 else None)]
    if a.case == "prepare":
        return [bench_prepare(a.size_mb, a.set)]
    if a.case == "text":
        return bench_text(a.steps, a.per_dispatch, a.rounds, a.base, a.set)
    if a.case == "viewer":
        return bench_viewer(a.rounds)
    if a.case == "pretrained":
        return bench_pretrained(a.rows, a.dim, a.vocab)
    if a.case in ("mup", "kinds"):
        return (bench_mup if a.case == "mup" else bench_kinds)(a.steps, a.per_dispatch, a.rounds, a.set)
    if a.case == "compare":
        if not a.peer_python or not a.peer or not os.path.isfile(a.peer):
            p.error(
                f"--case=compare needs --peer-python=PATH (a Python with torch==2.13.0) and --peer=SCRIPT "
                f"(the PyTorch reference); got {a.peer_python!r} and {a.peer!r}"
            )
        return bench_compare(a.peer_python, a.peer, a.steps, a.per_dispatch, a.rounds)
    return [CASES[a.case](steps=a.steps, per_dispatch=a.per_dispatch, overrides=overrides, base=a.base)]


def bench_compare(peer_python: str, peer: str, steps: int, per_dispatch: int, rounds: int) -> list[dict]:
    """The train spec in embjax and in the PyTorch reference, alternating rounds so drift on a shared machine
    hits both sides; the last row has the medians and their ratio."""
    rows, jax_rates, torch_rates = [], [], []
    for r in range(rounds):
        j = _run_self(["--case=train", f"--steps={steps}", f"--per-dispatch={per_dispatch}"])
        t = bench_peer(peer_python, peer, steps)
        jax_rates.append(j["tokens_per_s"])
        torch_rates.append(t["tokens_per_s"])
        rows.append(
            {
                "round": r,
                "embjax_tokens_per_s": j["tokens_per_s"],
                "torch_tokens_per_s": t["tokens_per_s"],
                "mfu": j["mfu"],
            }
        )
    return rows + [
        {
            "case": "compare",
            "embjax_median": float(np.median(jax_rates)),
            "torch_median": float(np.median(torch_rates)),
            "ratio": float(np.median(jax_rates) / np.median(torch_rates)),
        }
    ]


def _alternate(
    case: str,
    variants: dict[str, list[str]],
    steps: int,
    per_dispatch: int,
    rounds: int,
    sets: list[str] = (),
    base: str = "spec",
) -> list[dict]:
    """The train spec under each variant (a list of config overrides), alternating in separate processes so
    drift on a shared machine hits every side; the last row has each variant's median and its ratio to
    the first variant's."""
    rows, rates = [], {v: [] for v in variants}
    common = [
        "--case=train",
        f"--base={base}",
        f"--steps={steps}",
        f"--per-dispatch={per_dispatch}",
        *[f"--set={s}" for s in sets],
    ]
    for r in range(rounds):
        for v, overrides in variants.items():
            out = _run_self(common + [f"--set={o}" for o in overrides])
            rates[v].append(out["tokens_per_s"])
            rows.append({"round": r, "variant": v, "tokens_per_s": out["tokens_per_s"]})
    first = next(iter(variants))
    last = {"case": case, **{f"{v}_median": float(np.median(x)) for v, x in rates.items()}}
    last.update(
        {f"{v}_over_{first}": float(np.median(x) / np.median(rates[first])) for v, x in rates.items() if v != first}
    )
    return rows + [last]


def bench_mup(steps: int, per_dispatch: int, rounds: int, sets: list[str] = ()) -> list[dict]:
    """The train spec under SP and under μP (d₀ = d / 4, so every μP multiplier is active)."""
    return _alternate(
        "mup",
        {v: [f"model.parametrization={v}", "model.base_width=64"] for v in ("sp", "mup")},
        steps,
        per_dispatch,
        rounds,
        sets,
    )


# The rare-token layers at the spec (V = 8,192, d = 256, tied): a factorized table of rank 64 (V·k + k·d =
# 541 k parameters vs the table's 2.1 M) and hash embeddings with 2,048 buckets × 2 hashes (541 k).
KINDS = {
    "table": ["embedding.kind=table"],
    "factorized": ["embedding.kind=factorized", "embedding.rank=64"],
    "hashed": ["embedding.kind=hashed", "embedding.buckets=2048", "embedding.num_hashes=2"],
}


def bench_kinds(steps: int, per_dispatch: int, rounds: int, sets: list[str] = ()) -> list[dict]:
    """Tokens/s of the factorized and hashed input layers against the plain table, side by side."""
    return _alternate("kinds", KINDS, steps, per_dispatch, rounds, sets)


def bench_sweep(steps: int = 300, base: str = "experiments/configs/quickstart.yaml") -> list[dict]:
    """8 members (σ ∈ {0.02, 0.2} × seed ∈ {0..3}) as one vectorised sweep process, as one process running
    them in turn, and as 8 separate `experiments.train` processes (what `wandb agent` does). W&B off and the
    persistent compilation cache off on every side, so each side pays the compiles it would on a fresh machine."""
    with tempfile.TemporaryDirectory() as tmp:
        times = _sweep_sides(tmp, steps, base)
    return [
        {
            "case": "sweep",
            "members": 8,
            "steps": steps,
            "base": base,
            "vectorized_s": times["on"],
            "in_turn_one_process_s": times["off"],
            "separate_processes_s": times["processes"],
            "ratio_vectorized_to_processes": times["on"] / times["processes"],
            "ratio_in_turn_to_processes": times["off"] / times["processes"],
        }
    ]


def _sweep_sides(tmp: str, steps: int, base: str) -> dict[str, float]:
    """bench_sweep's three sides' wall times (s) in the folder tmp."""
    import yaml

    sweep = {
        "name": "bench",
        "program": "experiments/train.py",
        "method": "grid",
        "parameters": {
            "config": {"value": base},
            "embedding.init_std": {"values": [0.02, 0.2]},
            "seed": {"values": [0, 1, 2, 3]},
        },
    }
    path = os.path.join(tmp, "bench.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(sweep, f)
    common = [f"--steps={steps}", "--log.wandb=false", "--compile_cache=", "--log.progress=false"]
    times = {}
    for mode in ("on", "off"):
        t = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "experiments.sweep",
                path,
                f"--out_dir={tmp}/{mode}",
                f"--vectorize={mode}",
                "--progress=false",
                *common,
            ],
            check=True,
            capture_output=True,
        )
        times[mode] = time.perf_counter() - t
    t = time.perf_counter()
    for std in (0.02, 0.2):
        for seed in range(4):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "experiments.train",
                    f"--config={base}",
                    f"--embedding.init_std={std}",
                    f"--seed={seed}",
                    f"--out_dir={tmp}/procs",
                    f"--name=s{std}-{seed}",
                    *common,
                ],
                check=True,
                capture_output=True,
            )
    times["processes"] = time.perf_counter() - t
    return times


def generated_text(path: str, size_bytes: int, seed: int = 0, vocab: int = 30_000, paragraphs: int = 20_000) -> int:
    """Write about `size_bytes` of generated English-like text to `path`: Zipf-distributed made-up words in
    paragraphs of 20-200 words, the paragraphs repeated in a fresh shuffled order until the size is reached
    (a corpus bigger than memory is typically many documents with a long tail of word types)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    lp = 1.0 / np.arange(1, 27)
    lp /= lp.sum()
    words = np.array(["".join(rng.choice(letters, rng.integers(1, 11), p=lp)) for _ in range(vocab)])
    wp = 1.0 / np.arange(1, vocab + 1)
    wp /= wp.sum()
    paras = []
    for _ in range(paragraphs):
        w = words[rng.choice(vocab, rng.integers(20, 201), p=wp)]
        paras.append((" ".join(w).capitalize() + ".").encode())
    written = 0
    with open(path, "wb") as f:
        while written < size_bytes:
            for i in rng.permutation(paragraphs):
                f.write(paras[i] + b"\n\n")
                written += len(paras[i]) + 2
                if written >= size_bytes:
                    break
    return written


def bench_prepare(size_mb: int = 1024, sets: list[str] = ()) -> dict:
    """`experiments.prepare` (a fresh process: its peak RSS is its own) on a generated corpus of `size_mb` MB with
    the spec's BPE vocabulary (8,192): wall time, MB/s and peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "corpus.txt")
        t = time.perf_counter()
        size = generated_text(path, size_mb << 20)
        gen_s = time.perf_counter() - t
        cmd = [
            sys.executable,
            "-m",
            "experiments.prepare",
            "--data.kind=text",
            f"--data.path={path}",
            "--data.vocab_size=8192",
            f"--data.cache_dir={tmp}/cache",
            "--log.progress=false",
            *[f"--{s}" for s in sets],
        ]
        t = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        meta = json.load(open(glob.glob(os.path.join(tmp, "cache", "*", "meta.json"))[0]))
    return {
        "case": "prepare",
        "bytes": size,
        "generate_s": gen_s,
        "prepare_s": wall,
        "mb_per_s": size / 2**20 / wall,
        "peak_rss_mib": peak_mib,
        "documents": meta["documents"],
        "tokens": meta["split"]["train_tokens"] + meta["split"]["eval_tokens"],
        "vocab_size": meta["vocab_size"],
        "dtype": meta["dtype"],
        "printed": out.stdout.strip().splitlines()[0],
    }


def bench_text(steps: int, per_dispatch: int, rounds: int, base: str = "default", sets: list[str] = ()) -> list[dict]:
    """A run on a prepared text corpus (generated, 64 MB, the run's V in BPE tokens) vs the planted corpus, side by
    side in separate processes: what streaming windows from the memory map costs per step."""
    from .config import load_config
    from .prepare import prepare

    V = 512 if base == "default" else SPEC["data.vocab_size"]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "corpus.txt")
        generated_text(path, 64 << 20)
        text = ["data.kind=text", f"data.path={path}", f"data.vocab_size={V}", f"data.cache_dir={tmp}/cache"]
        prepare(
            load_config(
                None, {"data.kind": "text", "data.path": path, "data.vocab_size": V, "data.cache_dir": f"{tmp}/cache"}
            ).data,
            show=False,
        )
        return _alternate("text", {"planted": [], "text": text}, steps, per_dispatch, rounds, sets, base)


_ALIGN = r"""
import json, resource, sys, time
import numpy as np
from embjax.pretrained import align, read_source
path, V = sys.argv[1], int(sys.argv[2])
t = time.perf_counter()
src = read_source(path)
read_s = time.perf_counter() - t
vocab = [f"w{i}" if i % 10 else f"new{i}" for i in range(V)]  # every tenth token absent from the file
al = align(src, vocab, d=src.E.shape[1])
print(json.dumps({"read_s": read_s, "total_s": time.perf_counter() - t, "matched": int(al.matched.sum()),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bench_pretrained(rows: int = 400_000, dim: int = 300, vocab: int = 50_000) -> list[dict]:
    """A generated GloVe-format text file (rows × dim, 5 decimals) read and aligned to a vocabulary of `vocab`
    tokens (every tenth absent) in a fresh process: wall time and peak RSS; then `experiments.inspect` on a
    50,000 × 768 table (.npy + tokens file): wall time."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "glove.txt")
        bodies = [" ".join(f"{x:.5f}" for x in row) for row in rng.standard_normal((4096, dim))]
        t = time.perf_counter()
        with open(path, "w") as f:
            for i in range(rows):
                f.write(f"w{i} {bodies[i % len(bodies)]}\n")
        gen_s = time.perf_counter() - t
        out = subprocess.run(
            [sys.executable, "-c", _ALIGN, path, str(vocab)], capture_output=True, text=True, check=True
        )
        row = {"case": "pretrained", "rows": rows, "dim": dim, "vocab": vocab, "bytes": os.path.getsize(path)}
        row.update(generate_s=gen_s, **json.loads(out.stdout.strip().splitlines()[-1]))
        os.remove(path)
        np.save(os.path.join(tmp, "E.npy"), rng.standard_normal((50_000, 768)).astype(np.float32))
        with open(os.path.join(tmp, "tokens.txt"), "w") as f:
            f.write("".join(f"t{i}\n" for i in range(50_000)))
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "experiments.inspect", os.path.join(tmp, "E.npy"), f"--out={tmp}/inspect"],
            capture_output=True,
            text=True,
            check=True,
        )
        inspect_row = {"case": "inspect", "rows": 50_000, "dim": 768, "wall_s": time.perf_counter() - t}
    return [row, inspect_row]


def _run_self(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "experiments.bench", "--json", *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) on the PATH (Debian's `chromium` and `chromium-driver`), or None."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def headless_chromium(console_log: bool = False):
    """A Selenium driver for headless Chromium at 1300×1000 (console_log: keep the page's console messages)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = chromium_paths()
    if found is None:
        raise RuntimeError("no chromium/chromedriver on the PATH; allowed: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1000"):
        opts.add_argument(arg)
    if console_log:
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(found[1]), options=opts)


def browser_load_ms(page: str, rounds: int) -> list[tuple[float, float]]:
    """(load event, first frame drawn) in ms from navigation, each in a fresh headless Chromium."""
    from selenium.webdriver.support.ui import WebDriverWait

    out = []
    for _ in range(rounds):
        driver = headless_chromium()
        try:
            driver.get(f"file://{os.path.abspath(page)}")
            WebDriverWait(driver, 60).until(
                lambda d: d.execute_script("return window.embjaxViewer && window.embjaxViewer.ready")
            )
            out.append(
                tuple(
                    driver.execute_script(
                        "return [performance.getEntriesByType('navigation')[0].loadEventStart, "
                        "window.embjaxViewer.ready]"
                    )
                )
            )
        finally:
            driver.quit()
    return out


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", *cmd], check=True, capture_output=True, text=True)
    return time.perf_counter() - t


def bench_viewer(rounds: int = 3) -> list[dict]:
    """The V = 8,192 × 50-frame page, then snapshots + pages against none, alternating in separate processes."""
    from .viewer import write_page

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        _timed(
            [
                "experiments.train",
                f"--out_dir={tmp}",
                "--name=v8192",
                "--data.vocab_size=8192",
                "--steps=100",
                "--log.every=2",
                "--log.snapshot_every=2",
                "--log.wandb=false",
                "--log.progress=false",
                "--checkpoint.every=0",
            ]
        )
        run = os.path.join(tmp, "v8192")
        t = time.perf_counter()
        page = write_page(run)
        build = time.perf_counter() - t
        loads = browser_load_ms(page, rounds)
        rows.append(
            {
                "case": "viewer_page",
                "V": 8192,
                "rows_shown": 4096,
                "frames": len(glob.glob(f"{run}/snapshots/*.npz")),
                "page_mb": os.path.getsize(page) / 1e6,
                "snapshots_mb": sum(os.path.getsize(f) for f in glob.glob(f"{run}/snapshots/*")) / 1e6,
                "build_s": build,
                "load_ms": [x[0] for x in loads],
                "first_frame_ms": [x[1] for x in loads],
                "load_ms_median": float(np.median([x[0] for x in loads])),
                "first_frame_ms_median": float(np.median([x[1] for x in loads])),
            }
        )
        rows += _viewer_cost(tmp, rounds)
    return rows


def _viewer_cost(tmp: str, rounds: int) -> list[dict]:
    """The default run and the quickstart sweep with snapshots + pages and without, alternating rounds."""
    rows = []
    sides = {
        "default run": ["experiments.train", "--log.progress=false"],
        "quickstart sweep": ["experiments.sweep", "sweeps/quickstart.yaml", "--log.progress=false"],
    }
    for name, cmd in sides.items():
        walls: dict[str, list[float]] = {"with": [], "without": []}
        for r in range(rounds):
            for side, extra in (("with", []), ("without", ["--log.snapshot_every=0"])):
                out = os.path.join(tmp, f"{name[:3]}-{side}-{r}")
                walls[side].append(_timed(cmd + [f"--out_dir={out}", *extra]))
                rows.append({"round": r, "job": name, "side": side, "wall_s": walls[side][-1]})
        w, wo = float(np.median(walls["with"])), float(np.median(walls["without"]))
        rows.append(
            {
                "case": "viewer_cost",
                "job": name,
                "with_median_s": w,
                "without_median_s": wo,
                "extra_fraction": w / wo - 1,
            }
        )
    return rows
