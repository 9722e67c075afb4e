"""Case `viewer`: the embedding-space page's size and load time, and what snapshots + pages cost."""

from __future__ import annotations

import glob
import os
import tempfile
import time

import numpy as np

from .browser import browser_load_ms
from .common import timed


def bench_viewer(rounds: int = 3) -> list[dict]:
    """The V = 8,192 × 50-frame page, then snapshots + pages against none, alternating in separate processes."""
    from ..outputs.viewer import write_page

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        timed(
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
                walls[side].append(timed(cmd + [f"--out_dir={out}", *extra]))
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
