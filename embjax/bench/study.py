"""Case `study`: sweeps/d_sigma_tying.yaml end to end: wall and compile time, members/minute."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
import time


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
