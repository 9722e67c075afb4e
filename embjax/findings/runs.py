"""Reading a sweep's runs, and the selectors every finding's analysis shares.

A run is the dict `embjax.report.load_runs` makes of a run directory: `dir`, `name`, `cfg` (config.yaml as a dict),
`summary` (summary.json) and `rows` (metrics.jsonl). Analyses read only these (and, for a table's own statistics,
the run's embeddings.npy / output_embeddings.npy), so they work on runs made anywhere and copied back.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..report import get, load_runs


def load(sweep_dir: str) -> list[dict]:
    """Every run of a sweep directory (none when it does not exist)."""
    return load_runs(sweep_dir) if os.path.isdir(sweep_dir) else []


def final(run: dict, key: str) -> float | None:
    """A run's final value of `key`: summary.json, else the last metrics row holding it."""
    v = run["summary"].get(key)
    if isinstance(v, (int, float)):
        return float(v)
    for row in reversed(run["rows"]):
        if isinstance(row.get(key), (int, float)):
            return float(row[key])
    return None


def first(run: dict, key: str) -> float | None:
    """A run's first logged value of `key` (None when no row holds it)."""
    for row in run["rows"]:
        if isinstance(row.get(key), (int, float)):
            return float(row[key])
    return None


def select(runs: list[dict], **where: Any) -> dict[int, dict]:
    """{seed: run} among finished runs whose config matches every dotted key (given with __ for dots)."""
    out = {}
    for r in runs:
        if r["summary"].get("status") != "finished":
            continue
        if all(_close(get(r["cfg"], k.replace("__", ".")), v) for k, v in where.items()):
            out[int(get(r["cfg"], "seed") or 0)] = r
    return out


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def paired(a: dict[int, dict], b: dict[int, dict], fn: Callable[[dict, dict], float | None]) -> list[float]:
    """fn(a_seed, b_seed) for every seed both sides have."""
    return [v for s in sorted(set(a) & set(b)) if (v := fn(a[s], b[s])) is not None]


def per_seed(side: dict[int, dict], fn: Callable[[dict], float | None]) -> list[float]:
    """fn(run) for every seed of one side (None results left out)."""
    return [v for s in sorted(side) if (v := fn(side[s])) is not None]


def mean_sd(values: list[float]) -> str:
    """Table text: mean ± standard deviation over the values given ('–' when none)."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    if not v.size:
        return "–"
    return f"{v.mean():.3f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.3f}"


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) of two row-aligned matrices: ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), columns centred."""
    X = np.asarray(X, np.float64) - np.mean(X, axis=0)
    Y = np.asarray(Y, np.float64) - np.mean(Y, axis=0)
    return float(np.sum((Y.T @ X) ** 2) / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)))


def table_of(run: dict, name: str) -> np.ndarray | None:
    """A run's saved table (`embeddings.npy`, `output_embeddings.npy`) as an array, or None."""
    path = os.path.join(run["dir"], name)
    return np.load(path) if os.path.exists(path) else None


def values_of(runs: list[dict], key: str) -> list:
    """The distinct values of a dotted config key over the runs, sorted (numbers before strings)."""
    return sorted({v for r in runs if (v := get(r["cfg"], key)) is not None}, key=lambda x: (isinstance(x, str), x))


def early_mean(run: dict, key: str, last: int = 5) -> float | None:
    """The mean of `key` over the logged steps 1..last (the early-training value)."""
    v = [row[key] for row in run["rows"] if 1 <= row["step"] <= last and isinstance(row.get(key), (int, float))]
    return float(np.mean(v)) if v else None


def at_first_step(run: dict, key: str) -> float | None:
    """`key` at the first logged train step (its gradient is the one at the initial parameters)."""
    v = [row[key] for row in run["rows"] if row["step"] == 1 and isinstance(row.get(key), (int, float))]
    return float(v[0]) if v else None


def eval_at(run: dict, key: str, step: int) -> float | None:
    """A run's value of `key` in the metrics row of `step` (None when that row lacks it)."""
    v = [row[key] for row in run["rows"] if row["step"] == step and isinstance(row.get(key), (int, float))]
    return float(v[0]) if v else None


def diff(key: str) -> Callable[[dict, dict], float | None]:
    """(run a, run b) -> a's final `key` − b's (None when either lacks it)."""

    def fn(a: dict, b: dict) -> float | None:
        x, y = final(a, key), final(b, key)
        return None if x is None or y is None else x - y

    return fn


def training_seconds(runs: list[dict]) -> float:
    """The wall time the runs recorded: members trained together (one vmapped group) share their group's
    wall_time_s and compile_s, so each distinct pair counts once."""
    groups = {(r["summary"].get("compile_s"), r["summary"].get("wall_time_s")) for r in runs}
    return float(sum(w for _, w in groups if isinstance(w, (int, float))))
