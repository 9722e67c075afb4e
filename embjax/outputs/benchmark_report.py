"""The report's word-similarity and analogy section: each benchmark's score (Spearman's ρ, analogy accuracy) of
the input table and of the untied output head against the width d, one line per σ and tying (mean ± standard
error over seeds), with a baseline (experiments.baseline: word2vec or fastText on the same tokens) as a dashed
reference line, and the same numbers as a table."""

from __future__ import annotations

import csv
import json
import os
import sys
from typing import Any

import numpy as np

TABLES = (("", "input table"), ("_out", "output head (untied)"))
SCORES = (("word_sim", "spearman", "ρ"), ("analogy", "accuracy", "accuracy"))


def read_baseline(run_dir: str | None) -> dict | None:
    """A baseline run's summary.json with its directory (`_dir`), or None: none named, or not there (said in one
    line; the report goes on without it)."""
    if not run_dir:
        return None
    try:
        with open(os.path.join(run_dir, "summary.json")) as f:
            return {**json.load(f), "_dir": run_dir}
    except (OSError, ValueError):
        print(
            f"warning: baseline {run_dir!r} has no summary.json (train it first: python -m experiments.baseline "
            "--method=word2vec ...); the report goes on without it",
            file=sys.stderr,
        )
        return None


def add_baseline_row(sweep_dir: str, baseline: dict) -> bool:
    """summary.csv gains (or renews) the row `baseline:<directory name>`: its value in every column it has."""
    path = os.path.join(sweep_dir, "summary.csv")
    if not os.path.isfile(path):
        return False
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return False
    head = rows[0]
    name = f"baseline:{os.path.basename(os.path.normpath(baseline['_dir']))}"
    kept = [r for r in rows[1:] if not (r and r[0].startswith("baseline:"))]
    row = [name if c == "member" else baseline.get(c, "") for c in head]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([head, *kept, row])
    return True


def _cfg(run: dict, key: str) -> Any:
    node = run["cfg"]
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def metrics(runs: list[dict], baseline: dict | None = None) -> list[tuple[str, str, str]]:
    """(kind, set, label) of every benchmark score the runs' summaries (or the baseline's) hold."""
    keys = {k for r in runs for k in r["summary"]} | set(baseline or {})
    out = []
    for kind, stat, label in SCORES:
        sets = sorted({k.split("/")[1] for k in keys if k.startswith(f"{kind}/") and k.endswith(f"/{stat}")})
        out += [(kind, s, f"{s} {label}") for s in sets]
    return out


def _key(kind: str, table: str, name: str) -> str:
    return f"{kind}{table}/{name}/{'spearman' if kind == 'word_sim' else 'accuracy'}"


def _groups(runs: list[dict]) -> dict[tuple, dict[Any, list[float]]]:
    """(σ, tied) -> d -> [run, ...]: the runs grouped as the plot draws them."""
    out: dict[tuple, dict[Any, list]] = {}
    for r in runs:
        if r["summary"].get("status") not in ("finished", "diverged"):
            continue
        line = (_cfg(r, "embedding.init_std"), _cfg(r, "model.tie_embeddings"))
        out.setdefault(line, {}).setdefault(_cfg(r, "model.embed_dim"), []).append(r)
    return out


def _mean_se(xs: list[float]) -> tuple[float, float]:
    a = np.asarray([x for x in xs if x == x], float)
    if not a.size:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1) / np.sqrt(a.size)) if a.size > 1 else 0.0


def plot(runs: list[dict], path: str, baseline: dict | None = None) -> bool:
    """Rows: a benchmark score each; columns: the input table and the output head. False when nothing was scored."""
    found = metrics(runs, baseline)
    if not found:
        return False
    import matplotlib.pyplot as plt

    groups = _groups(runs)
    sigmas = sorted({s for s, _ in groups if s is not None})
    colour = {s: plt.cm.viridis(i / max(1, len(sigmas) - 1)) for i, s in enumerate(sigmas)}
    fig, axes = plt.subplots(len(found), 2, figsize=(10, 2.8 * len(found)), squeeze=False, sharex=True)
    for row, (kind, name, label) in enumerate(found):
        for col, (table, title) in enumerate(TABLES):
            ax, key = axes[row][col], _key(kind, table, name)
            for (sigma, tied), by_d in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
                if tied and table:
                    continue  # a tied model has no output head of its own
                ds = sorted(d for d in by_d if d is not None)
                stats = [_mean_se([r["summary"].get(key, float("nan")) for r in by_d[d]]) for d in ds]
                if ds and any(m == m for m, _ in stats):
                    ax.errorbar(ds, [m for m, _ in stats], yerr=[e for _, e in stats], marker="o", capsize=3,
                                color=colour.get(sigma), linestyle="-" if tied else "--",
                                label=f"σ={sigma:g} {'tied' if tied else 'untied'}")  # fmt: skip
            if baseline and isinstance(baseline.get(key), float):
                method = baseline.get("baseline/method", "baseline")
                ax.axhline(baseline[key], color="k", linestyle=":", label=f"{method} ({title.split()[0]})")
            ax.set(title=f"{label}: {title}", xscale="log", ylabel=label.split()[-1])
            ticks = sorted({d for by_d in groups.values() for d in by_d if d is not None})
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            if row == len(found) - 1:
                ax.set_xlabel("d (embed_dim)")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def lines(runs: list[dict], baseline: dict | None = None) -> list[str]:
    """report.md's table: a row per (d, σ, tying) with each score's mean ± s.e. over seeds, then the baseline."""
    found = metrics(runs, baseline)
    if not found:
        return []
    cols = [(kind, table, name) for kind, name, _ in found for table, _ in TABLES]
    head = " | ".join(f"{name} {'ρ' if kind == 'word_sim' else 'acc'}{' out' if table else ''}"
                      for kind, table, name in cols)  # fmt: skip
    out = ["| d | σ | tied | seeds | " + head + " |", "|" + "---|" * (4 + len(cols))]
    for (sigma, tied), by_d in sorted(_groups(runs).items(), key=lambda kv: (str(kv[0][1]), str(kv[0][0]))):
        for d in sorted(by_d, key=lambda x: (x is None, x)):
            cells = []
            for kind, table, name in cols:
                m, se = _mean_se([r["summary"].get(_key(kind, table, name), float("nan")) for r in by_d[d]])
                cells.append("" if m != m else f"{m:.3f}" + (f" ± {se:.3f}" if len(by_d[d]) > 1 else ""))
            out.append(f"| {d} | {sigma:g} | {tied} | {len(by_d[d])} | " + " | ".join(cells) + " |")
    if baseline:
        cells = [f"{baseline[k]:.3f}" if isinstance(baseline.get(k := _key(kind, table, name)), float) else ""
                 for kind, table, name in cols]  # fmt: skip
        name = os.path.basename(os.path.normpath(baseline.get("_dir", "baseline")))
        out.append(f"| {baseline.get('baseline/dim', '')} | {name} | | | " + " | ".join(cells) + " |")
    return [*out, ""]
