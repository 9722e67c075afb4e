"""Case `metrics`: embedding_report on a float32 V=262,144 × d=1,024 matrix with counts and labels."""

from __future__ import annotations

import resource
import time
import tracemalloc

import numpy as np


def bench_metrics(V: int = 262_144, D: int = 1024, **_) -> dict:
    from ..analysis.metrics import embedding_report

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
