"""A sweep's summary.csv: a row per member with its swept values, final metrics and status."""

from __future__ import annotations

import csv
import os

from .. import config as C
from ..config import Config, flatten
from .runs import DAMAGED

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


def mark_damaged(root: str, runs: list[dict]) -> None:
    """summary.csv's row of each damaged member (if the sweep wrote one) says so: status `damaged`, its values
    blank (summary.json no longer backs them); its name and swept keys stay."""
    path = os.path.join(root, "summary.csv")
    damaged = {r["name"]: r for r in runs if r["summary"].get("status") == DAMAGED}
    if not damaged or not os.path.isfile(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:1] != ["member"] or rows[0][-1:] != ["status"]:
        return
    head = rows[0]
    for row in rows[1:]:
        if row and row[0] in damaged and len(row) == len(head):
            keys = flatten(damaged[row[0]]["cfg"] or {})
            row[1:-1] = [v if c in keys else "" for c, v in zip(head[1:-1], row[1:-1])]
            row[-1] = DAMAGED
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
