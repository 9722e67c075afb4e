"""A sweep's summary.csv: a row per member with its swept values, final metrics and status."""

from __future__ import annotations

import csv
import os

from .. import config as C
from ..config import Config

SUMMARY_METRICS = (
    "eval/loss",
    "train/loss",
    "emb/norm_mean",
    "emb/norm_growth",
    "emb/cos_mean",
    "emb/cos_std",
    "emb/eff_rank",
    "emb/isotropy",
    "emb/pc1_var_share",
    "emb/class_cos_gap",
    "emb/knn_class_purity",
    "emb/norm_logfreq_spearman",
    "step",
    "wall_time_s",
)


BENCHMARK_PREFIXES = ("word_sim/", "word_sim_out/", "analogy/", "analogy_out/")


def write_summary_csv(sweep_dir: str, keys: list[str], cfgs: list[Config], summaries: list[dict]) -> str:
    """summary.csv: a row per member: its name, a column per swept key, final metrics (the benchmark keys and best/*
    keys any member has among them), status. The report adds a baseline's row (benchmark_report.add_baseline_row)."""
    path = os.path.join(sweep_dir, "summary.csv")
    bench = sorted({k for s in summaries for k in s if k.startswith(BENCHMARK_PREFIXES) or k.startswith("best/")})
    metrics = [*SUMMARY_METRICS[:-2], *bench, *SUMMARY_METRICS[-2:]]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["member", *keys, *metrics, "status"])
        for cfg, s in zip(cfgs, summaries):
            values = [s.get(m, "") for m in metrics]
            w.writerow([cfg.name, *[C.get(cfg, k) for k in keys], *values, s.get("status", "")])
    return path
