"""What the report's plots share: a metric's (step, value) series from a run's rows, and saving a figure."""

from __future__ import annotations

import numpy as np


def series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])) if pts else (np.array([]), np.array([]))


def save(fig, path: str) -> bool:
    """Lay out, write and close a figure; True (the plot was made)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
