"""Width-scaling analysis, pure: coordinate-check slopes and learning-rate transfer (TP5; Wortsman et al. 2023).

Inputs are plain numbers gathered from runs (width, lr, seed, losses, per-step activation sizes);
outputs are what the report prints and plots. Nothing here reads files.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np


def loglog_slope(x: Any, y: Any) -> float:
    """The least-squares slope of log y against log x (the exponent a of y ∝ xᵃ); nan with < 2 points."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    if len(np.unique(x[ok])) < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def coord_slopes(points: list[tuple[int, int, str, float]]) -> dict[int, dict[str, float]]:
    """{step: {activation: slope}} from (width, step, activation, mean |x|) points (seeds averaged first)."""
    by: dict[tuple[int, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for width, step, key, value in points:
        by[(step, key)][width].append(value)
    out: dict[int, dict[str, float]] = defaultdict(dict)
    for (step, key), per_width in sorted(by.items()):
        widths = sorted(per_width)
        out[step][key] = loglog_slope(widths, [np.mean(per_width[w]) for w in widths])
    return dict(out)


def lr_transfer(points: list[tuple[int, float, int, float]], initial: float) -> dict[str, Any]:
    """Best lr per width from (width, lr, seed, final loss) points; a missing or non-finite loss (a diverged
    member) and any loss above `initial` count as `initial` (Wortsman et al. 2023 clip at the initial loss).

    Returns {"grid": lrs, "widths": {width: {"curve": mean loss per lr, "best_lr", "best_loss",
    "best_spread": (min, max) over seeds at the best lr, "best_lr_seeds": each seed's own best lr,
    "sensitivity": mean over the grid of min(loss, initial) − best loss, "inside": best not at a grid edge}},
    "moved": grid steps between the smallest and largest best lr across widths}.
    """
    grid = sorted({lr for _, lr, _, _ in points})
    table: dict[int, dict[float, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for width, lr, seed, loss in points:
        table[width][lr][seed] = min(loss, initial) if loss is not None and np.isfinite(loss) else initial
    widths: dict[int, dict[str, Any]] = {}
    for width in sorted(table):
        curve = np.array([np.mean(list(table[width][lr].values())) if table[width][lr] else initial for lr in grid])
        b = int(np.argmin(curve))
        seeds = sorted({s for lr in grid for s in table[width][lr]})
        per_seed = [grid[int(np.argmin([table[width][lr].get(s, initial) for lr in grid]))] for s in seeds]
        at_best = list(table[width][grid[b]].values())
        widths[width] = {
            "curve": curve.tolist(),
            "best_lr": grid[b],
            "best_loss": float(curve[b]),
            "best_spread": (float(min(at_best)), float(max(at_best))),
            "best_lr_seeds": per_seed,
            "sensitivity": float(np.mean(curve - curve[b])),
            "inside": 0 < b < len(grid) - 1,
        }
    idx = [grid.index(w["best_lr"]) for w in widths.values()]
    return {"grid": grid, "widths": widths, "moved": (max(idx) - min(idx)) if idx else 0}
