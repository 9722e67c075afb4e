"""Case `pretrained`: a generated GloVe file read and aligned in a fresh process; inspect on a large table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

_ALIGN = r"""
import json, resource, sys, time
import numpy as np
from embjax.model.align import align
from embjax.model.pretrained import read_source
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
