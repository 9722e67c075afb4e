"""What the benchmark cases share: the throughput spec, FLOP and peak figures, a case run in a fresh process, and
variants alternated across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
DEFAULT_CONFIG = os.path.join(ROOT, "experiments", "configs", "default.yaml")


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


def emit(obj: dict, as_json: bool) -> None:
    """One result row: a JSON object (--json) or a readable line."""
    if as_json:
        print(json.dumps(obj), flush=True)
    else:
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in obj.items()), flush=True)


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
    plus a transformer's attention, 12·L·T·d (Kaplan et al. 2020; PaLM appendix B). An LSTM uses each weight once
    a token, 6·N as well."""
    m, d = cfg.model, cfg.data
    V, D, T = d.vocab_size, m.embed_dim, d.seq_len
    transformer = m.kind == "transformer"
    positions = T * D if transformer and m.positions == "learned" else 0
    n_matmul = n_params - (V * D if not m.tie_embeddings else 0) - positions
    return 6.0 * n_matmul + (12.0 * m.num_layers * T * D if transformer else 0.0)


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


def run_self(args: list[str]) -> dict:
    """`python -m experiments.bench --json ARGS` in a fresh process: its last JSON row."""
    out = subprocess.run(
        [sys.executable, "-m", "experiments.bench", "--json", *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def alternate(
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
            out = run_self(common + [f"--set={o}" for o in overrides])
            rates[v].append(out["tokens_per_s"])
            rows.append({"round": r, "variant": v, "tokens_per_s": out["tokens_per_s"]})
    first = next(iter(variants))
    last = {"case": case, **{f"{v}_median": float(np.median(x)) for v, x in rates.items()}}
    last.update(
        {f"{v}_over_{first}": float(np.median(x) / np.median(rates[first])) for v, x in rates.items() if v != first}
    )
    return rows + [last]


def timed(cmd: list[str]) -> float:
    """Seconds a command takes."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", *cmd], check=True, capture_output=True, text=True)
    return time.perf_counter() - t


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
