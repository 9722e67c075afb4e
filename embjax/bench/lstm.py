"""Case `lstm`: embjax's LSTM LM (model.kind=lstm) against PyTorch's nn.LSTM on the same shapes, alternating; and
what dropout costs a step on each side."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from .common import ROOT, run_self

# The tying papers' medium-small regime on a word vocabulary: 2 × 256, windows of 35 × 20, Adam 2e-3, an untied head
LSTM_SPEC = {
    "model.kind": "lstm",
    "data.vocab_size": 8192,
    "data.seq_len": 35,
    "data.batch_size": 20,
    "model.embed_dim": 256,
    "model.num_layers": 2,
    "model.tie_embeddings": False,
    "optim.name": "adamw",
    "optim.lr": 2e-3,
    "optim.weight_decay": 0.0,
    "optim.embed_weight_decay": 0.0,
    "optim.grad_clip": 1.0,
    "optim.warmup_steps": 0,
    "optim.schedule": "constant",
}
PEER = os.path.join(ROOT, "experiments", "peers", "torch_lstm.py")


def peer_args(dropout: float) -> list[str]:
    """The PyTorch peer's arguments for LSTM_SPEC's shapes."""
    s = LSTM_SPEC
    args = [f"--vocab={s['data.vocab_size']}", f"--dim={s['model.embed_dim']}", f"--layers={s['model.num_layers']}"]
    args += [f"--seq={s['data.seq_len']}", f"--batch={s['data.batch_size']}", f"--lr={s['optim.lr']}"]
    return args + [f"--dropout={dropout}"] + (["--tie"] if s["model.tie_embeddings"] else [])


def run_peer(python: str, steps: int, dropout: float, threads: int = 0) -> dict:
    """The PyTorch peer in its own process (`python`: an interpreter with torch; threads 0: one per core): its row."""
    cmd = [python, PEER, f"--steps={steps}", f"--threads={threads}", *peer_args(dropout)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_lstm(
    steps: int, per_dispatch: int, rounds: int, torch_python: str | None, dropout: float = 0.5, torch_threads: int = 0
) -> list:
    """Rounds of embjax and the peer, each without and with dropout (model.dropout = model.embed_dropout =
    `dropout`; PyTorch: nn.LSTM's dropout and nn.Dropout on the embeddings and before the head), alternating so
    drift on a shared machine hits every side; the last row has the medians, "ratio" (embjax ÷ PyTorch, no
    dropout) and each side's dropout cost (1 − tokens/s with dropout ÷ without)."""
    python = torch_python or sys.executable
    spec = [f"--set={k}={v}" for k, v in LSTM_SPEC.items()]
    with_dropout = [f"--set=model.dropout={dropout}", f"--set=model.embed_dropout={dropout}"]
    common = ["--case=train", f"--steps={steps}", f"--per-dispatch={per_dispatch}", *spec]
    rows, rates = [], {"embjax": [], "embjax_dropout": [], "torch": [], "torch_dropout": []}
    for r in range(rounds):
        for side, run in (
            ("embjax", lambda: run_self(common)),
            ("torch", lambda: run_peer(python, steps, 0.0, torch_threads)),
            ("embjax_dropout", lambda: run_self(common + with_dropout)),
            ("torch_dropout", lambda: run_peer(python, steps, dropout, torch_threads)),
        ):
            rates[side].append(run()["tokens_per_s"])
            rows.append({"round": r, "side": side, "tokens_per_s": rates[side][-1]})
    med = {k: float(np.median(v)) for k, v in rates.items()}
    shape = {k.rpartition(".")[2]: v for k, v in LSTM_SPEC.items() if k.startswith(("data.", "model."))}
    return rows + [
        {
            "case": "lstm",
            **shape,
            "embjax_tokens_per_s": med["embjax"],
            "torch_tokens_per_s": med["torch"],
            "ratio": med["embjax"] / med["torch"],
            "torch_threads": torch_threads or len(os.sched_getaffinity(0)),
            "dropout": dropout,
            "embjax_dropout_tokens_per_s": med["embjax_dropout"],
            "torch_dropout_tokens_per_s": med["torch_dropout"],
            "embjax_dropout_cost": 1 - med["embjax_dropout"] / med["embjax"],
            "torch_dropout_cost": 1 - med["torch_dropout"] / med["torch"],
            "rounds": rounds,
            "steps": steps,
        }
    ]
