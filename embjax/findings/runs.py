"""Reading a sweep's runs, and the selectors every finding's analysis shares.

A run is the dict `embjax.outputs.runs.load_runs` makes of a run directory: `dir`, `name`, `cfg` (config.yaml as a
dict), `summary` (summary.json) and `rows` (metrics.jsonl). Analyses read only these (and, for a table's own statistics,
the run's embeddings.npy / output_embeddings.npy), so they work on runs made anywhere and copied back.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..outputs.runs import get, load_runs


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


def best(run: dict, key: str) -> float | None:
    """A run's value of `key` at its best-eval checkpoint (summary.json's best/<key>, written with
    checkpoint.keep_best: the tables the tying papers report), else its final value."""
    v = run["summary"].get(f"best/{key}")
    return float(v) if isinstance(v, (int, float)) else final(run, key)


def best_table(run: dict | str, name: str) -> str:
    """The file name of a run's table at its best-eval checkpoint (best_<name>, written with checkpoint.keep_best)
    when the run directory has it, else `name` (the final table)."""
    run_dir = run if isinstance(run, str) else run["dir"]
    return f"best_{name}" if os.path.exists(os.path.join(run_dir, f"best_{name}")) else name


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


def best_table_of(run: dict, name: str) -> np.ndarray | None:
    """`table_of` at the run's best-eval checkpoint when it kept one (`best_table`), else the final table."""
    return table_of(run, best_table(run, name))


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


def centred_share(r: dict) -> float | None:  # only where there is a cone to remove (raw mean cosine > 0.05)
    """emb_centered/cos_mean ÷ emb/cos_mean: how much of the cone is left once the mean row is removed."""
    c, raw = final(r, "emb_centered/cos_mean"), final(r, "emb/cos_mean")
    return None if c is None or raw is None or raw <= 0.05 else c / raw


def rare_minus_frequent(r: dict) -> float | None:
    """The mean cosine inside the rarest 90 % of types minus inside the top 10 %."""
    rest, top = final(r, "emb/cos_mean_rest"), final(r, "emb/cos_mean_top10pct")
    return None if rest is None or top is None else rest - top


def growth_ratio(r: dict) -> float | None:
    """growth(rest) ÷ growth(top 1 %), growth = final ÷ first mean row norm of the bucket."""
    keys = ("emb/norm_mean_rest", "emb/norm_mean_top1pct")
    f, s = [final(r, k) for k in keys], [first(r, k) for k in keys]
    return None if None in f + s else (f[0] / s[0]) / (f[1] / s[1])


def rare_harm(a: dict, b: dict) -> float | None:  # a with decay, b without
    """(run with embedding decay, run without) -> the decay's eval-loss change on the rarest 90 %'s targets minus
    on the top 1 %'s."""
    d = {k: (final(a, f"eval/loss_bucket_{k}"), final(b, f"eval/loss_bucket_{k}")) for k in ("rest", "top1")}
    return None if None in sum(d.values(), ()) else (d["rest"][0] - d["rest"][1]) - (d["top1"][0] - d["top1"][1])


def norm_freq_spearman(r: dict) -> float | None:
    """The final Spearman correlation of row norm with log(1 + count)."""
    return final(r, "emb/norm_logfreq_spearman")


def steps_saved(budget: int, eval_every: int) -> Callable[[dict, dict], float | None]:
    """(scratch run, pretrained run) -> budget − the first eval step at which the pretrained run's eval loss is at
    or below the scratch run's at the budget (budget + eval_every when it never gets there)."""

    def saved(scratch: dict, pre: dict) -> float | None:
        target = eval_at(scratch, "eval/loss", budget)
        if target is None:
            return None
        steps = sorted(r["step"] for r in pre["rows"] if isinstance(r.get("eval/loss"), (int, float)))
        reached = [t for t in steps if t > 0 and eval_at(pre, "eval/loss", t) <= target]
        return float(budget - (reached[0] if reached else budget + eval_every))

    return saved


def gap_at(key: str, step: int) -> Callable[[dict, dict], float | None]:
    """(run a, run b) -> a's eval value of `key` at `step` − b's (None when either lacks it)."""

    def gap(a: dict, b: dict) -> float | None:
        x, y = eval_at(a, key, step), eval_at(b, key, step)
        return None if x is None or y is None else x - y

    return gap


def band_text(values: list[float]) -> str:
    """Table text: the values' mean and its band, mean ± 2 standard errors (the verdict rule's), over seeds."""
    from .verdict import band

    v = [x for x in values if x is not None]
    if not v:
        return "–"
    m, lo, hi = band(v)
    return f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]" if len(v) > 1 else f"{m:+.3f}"
