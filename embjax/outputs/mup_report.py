"""The muP sections of a report: the coordinate check (mean |coordinate| against width over the first steps, with
its fitted slopes) and learning-rate transfer (final loss against lr per width, with the optimum's drift)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..analysis.scaling import coord_slopes
from .figures import save
from .runs import coord_points, lr_analysis

_COORD_ORDER = ("embed_out", "block", "attn_logits", "hidden", "logits")


def _coord_key_order(key: str) -> tuple:
    stem = key.rstrip("0123456789")
    return (_COORD_ORDER.index(stem) if stem in _COORD_ORDER else len(_COORD_ORDER), key)


def plot_coord_check(runs, path, max_steps: int = 5) -> bool:
    """As `mup`'s coord-check plots: a row per parametrisation, a column per step, mean |x| of every
    activation against width (log2) on a log axis, seeds averaged."""
    import matplotlib.pyplot as plt

    data = coord_points(runs)
    pars = [p for p in ("sp", "mup") if p in data]
    if not pars or len({w for p in pars for w, _, _, _ in data[p]}) < 2:
        return False
    steps = sorted({s for p in pars for _, s, _, _ in data[p]})[:max_steps]
    keys = sorted({k for p in pars for _, _, k, _ in data[p]}, key=_coord_key_order)
    colors = dict(zip(keys, plt.cm.tab10(np.arange(len(keys)) % 10)))
    fig, axes = plt.subplots(len(pars), len(steps), figsize=(3.0 * len(steps), 2.8 * len(pars)), squeeze=False)
    for i, p in enumerate(pars):
        for j, s in enumerate(steps):
            ax = axes[i][j]
            for k in keys:
                agg = defaultdict(list)
                for w, st, kk, v in data[p]:
                    if st == s and kk == k:
                        agg[w].append(v)
                ws = sorted(agg)
                ax.plot(ws, [np.mean(agg[w]) for w in ws], "o-", ms=3, color=colors[k], label=k)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{'μP' if p == 'mup' else 'SP'}  t={s}", fontsize=9)
            ax.grid(alpha=0.3)
            if i == len(pars) - 1:
                ax.set_xlabel("width d")
            if j == 0:
                ax.set_ylabel("mean |x|")
    axes[0][0].legend(fontsize=6)
    fig.suptitle("Coordinate check: under μP no activation should grow with width")
    return save(fig, path)


def _slope_cell(slope, points, step, key) -> str:
    if slope is not None and np.isfinite(slope):
        return f"{slope:+.2f}"
    values = [v for _, s, k, v in points if s == step and k == key]
    return "zero" if values and all(v == 0 for v in values) else "n/a"


def coord_slope_lines(runs, max_steps: int = 5) -> list[str]:
    """report.md's table of log–log slopes of each activation against width, per parametrisation and step."""
    data = coord_points(runs)
    lines = []
    for p in (p for p in ("sp", "mup") if p in data):
        slopes = coord_slopes(data[p])
        steps = sorted(slopes)[:max_steps]
        keys = sorted({k for s in steps for k in slopes[s]}, key=_coord_key_order)
        if len({w for w, _, _, _ in data[p]}) < 2 or not keys:
            continue
        lines += [
            f"**{'μP' if p == 'mup' else 'SP'}**: slope of log mean |x| against log width (step t: step t's forward "
            "pass, after t − 1 updates; 'zero': exactly 0 at every width, e.g. zero-initialised queries' scores)",
            "",
            "| step | " + " | ".join(keys) + " |",
            "|---" * (len(keys) + 1) + "|",
        ]
        lines += [
            f"| {s} | " + " | ".join(_slope_cell(slopes[s].get(k), data[p], s, k) for k in keys) + " |" for s in steps
        ]
        lines.append("")
    return lines


def plot_lr_transfer(runs, path) -> bool:
    """Final eval loss against lr per width, a panel per parametrisation (TP5's Figure 1), best lr marked."""
    import matplotlib.pyplot as plt

    res = lr_analysis(runs)
    if not res:
        return False
    pars = list(res)
    fig, axes = plt.subplots(1, len(pars), figsize=(6 * len(pars), 4.2), squeeze=False, sharey=True)
    for ax, p in zip(axes[0], pars):
        a = res[p]
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(a["widths"])))
        for c, (w, row) in zip(colors, a["widths"].items()):
            ax.plot(a["grid"], row["curve"], "o-", ms=3, color=c, label=f"d={w}")
            lo, hi = row["best_spread"]
            ax.errorbar(
                [row["best_lr"]],
                [row["best_loss"]],
                yerr=[[row["best_loss"] - lo], [hi - row["best_loss"]]],
                fmt="*",
                ms=12,
                color=c,
                capsize=3,
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("learning rate")
        ax.set_title(f"{p}: best lr moved {a['moved']} grid step(s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("final eval loss (mean over seeds; diverged = initial loss)")
    return save(fig, path)


def lr_transfer_lines(runs) -> list[str]:
    res = lr_analysis(runs)
    lines = []
    for name, a in res.items():
        ws = list(a["widths"])
        lines += [
            f"**{name}**: across widths {ws[0]}–{ws[-1]} the best lr moved {a['moved']} grid step(s) "
            f"(a grid step is ×{a['grid'][1] / a['grid'][0]:g}).",
            "",
            "| width | best lr | loss at best (seed min–max) | each seed's best lr | lr sensitivity "
            "| min inside grid |",
            "|---|---|---|---|---|---|",
        ]
        for w, row in a["widths"].items():
            lo, hi = row["best_spread"]
            lines.append(
                f"| {w} | {row['best_lr']:.3g} | {row['best_loss']:.4f} ({lo:.4f}–{hi:.4f}) | "
                f"{', '.join(f'{x:.3g}' for x in row['best_lr_seeds'])} | {row['sensitivity']:.4f} | "
                f"{'yes' if row['inside'] else 'no'} |"
            )
        lines.append("")
    return lines
