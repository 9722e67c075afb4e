"""Case `sweep`: an 8-member group vectorised in one process vs 8 separate processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


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
