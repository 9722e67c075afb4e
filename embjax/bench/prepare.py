"""Case `prepare`: experiments.prepare on a generated text corpus: wall time, peak memory."""

from __future__ import annotations

import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from .common import generated_text


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
