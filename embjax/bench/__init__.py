"""Benchmarks: `python -m experiments.bench [--case NAME] [--steps N] [--json]`.

Cases
  metrics  embedding_report on a float32 V=262,144 × d=1,024 matrix with counts and labels: time, peak memory
  train    the throughput spec (see SPEC below) through embjax's own model and train step: tokens/s, MFU, host
           time per dispatch, CPU time per step and page faults of the timed steps
  peak     the machine's measured float32 matmul FLOP/s (the MFU denominator)
  sweep    an 8-member σ × seed group vectorised in one process vs 8 separate `experiments.train` processes
  mup      the train spec under SP and under μP, alternating: tokens/s of each and their ratio
  kinds    the train spec with the table, factorized and hashed input layers, alternating: tokens/s and ratios
  members  M members of the default model vmapped (--members=1,8,32,128): aggregate tokens/s, bytes per member
  study    sweeps/d_sigma_tying.yaml end to end (--steps shortens it): wall and compile time, members/minute
  compare  the train spec against the PyTorch reference (--peer-python, --peer), alternating
  lstm     the LSTM LM (2 × 256, windows 35 × 20, V 8,192) against PyTorch's nn.LSTM (experiments/peers/torch_lstm.py
           run by --torch-python, default this Python), alternating, without and with dropout: tokens/s, "ratio"
           (embjax ÷ PyTorch) and each side's dropout cost
  prepare  experiments.prepare on a generated text corpus (--size-mb, default 1,024): wall time, peak memory
  text     the default run (--base=default) or the spec on a prepared, memory-mapped text corpus vs the planted
           corpus, alternating: tokens/s of each and their ratio
  viewer   the embedding-space page of a V=8,192 run with 50 frames (bytes, build time, load event and first
           frame drawn in headless Chromium), and what snapshots + pages cost: the default run and the quickstart
           sweep with and without them (log.snapshot_every=0), alternating: wall-time medians and ratios
Each prints a JSON object per line with --json, else a readable line.

One module per case (embjax/bench/<case>.py) over `common` (the spec, FLOPs, subprocess runs) and `browser`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .common import emit, peak_flops
from .compare import bench_compare
from .kinds import bench_kinds
from .lstm import bench_lstm
from .members import bench_members
from .metrics import bench_metrics
from .mup import bench_mup
from .prepare import bench_prepare
from .pretrained import bench_pretrained
from .study import bench_study
from .sweep import bench_sweep
from .text import bench_text
from .train import bench_train
from .viewer import bench_viewer

CASES: dict[str, Callable[..., dict]] = {"metrics": bench_metrics, "train": bench_train}


def main(argv: list[str]) -> int:
    from ..config import parse_overrides
    from ..runtime.hostmem import keep_freed_memory

    keep_freed_memory()  # as the train and sweep commands do, before JAX starts its threads
    p = _parser()
    a = p.parse_args(argv)
    for row in _case_rows(a, parse_overrides(a.set), p):
        emit(row, a.json)
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
            "lstm",
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
    p.add_argument("--torch-python", default=None, help="lstm: a Python with torch for the peer (default: this one)")
    p.add_argument("--torch-threads", type=int, default=0, help="lstm: the peer's threads (0: one per core)")
    p.add_argument("--dropout", type=float, default=0.5, help="lstm: the rate whose cost is measured")
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
    if a.case == "lstm":
        return bench_lstm(a.steps, a.per_dispatch, a.rounds, a.torch_python, a.dropout, a.torch_threads)
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
