"""Plot helpers the findings share (matplotlib, Agg): mean ± standard deviation lines over swept values."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np

from ..outputs.runs import get


def line_plot(ax, series: dict[str, dict[float, list[float]]], logx: bool = True, logy: bool = False, **style) -> None:
    """One line per series: the mean over runs at each x, the standard deviation as error bars; x ticks at the
    swept values themselves."""
    from matplotlib.ticker import NullLocator

    ticks = sorted({x for pts in series.values() for x in pts})
    for label, pts in series.items():
        xs = sorted(x for x in pts if pts[x])
        m = [np.mean(pts[x]) for x in xs]
        sd = [np.std(pts[x], ddof=1) if len(pts[x]) > 1 else 0.0 for x in xs]
        ax.errorbar(xs, m, yerr=sd, marker="o", capsize=3, label=label, **style.get(label, {}))
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")
    ax.set_xticks(ticks, [f"{x:g}" for x in ticks])  # the swept values themselves, no crowded minor labels
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def collect_series(
    runs: list[dict], x_key: str, label: Callable[[dict], str | None], y: Callable[[dict], float | None]
):
    """{label(run): {x: [y(run), ...]}} over the finished runs, x the value of the dotted config key `x_key`."""
    out: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        lab, x = label(r), get(r["cfg"], x_key)
        if lab is not None and r["summary"].get("status") == "finished" and (v := y(r)) is not None:
            out[lab][float(x)].append(v)
    return out


def save_figure(fig, path: str) -> bool:
    """Lay out, write and close a figure; True (the plot was made)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
