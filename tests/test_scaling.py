"""Width-scaling analysis against hand computations."""
import math

import numpy as np
import pytest

from embjax.scaling import coord_slopes, loglog_slope, lr_transfer


def test_loglog_slope_recovers_a_power_law():
    x = np.array([32, 64, 128, 256, 512])
    assert loglog_slope(x, 3.0 * x**0.5) == pytest.approx(0.5, abs=1e-12)
    assert loglog_slope(x, 7.0 * np.ones(5)) == pytest.approx(0.0, abs=1e-12)
    assert loglog_slope(x, 2.0 / x) == pytest.approx(-1.0, abs=1e-12)
    assert math.isnan(loglog_slope([32, 32], [1.0, 2.0]))  # one width: no slope


def test_coord_slopes_average_seeds_first():
    # two seeds whose mean grows exactly like √width; each seed alone does not
    pts = []
    for w in (32, 128):
        mean = math.sqrt(w)
        pts += [(w, 3, "logits", mean * 0.5), (w, 3, "logits", mean * 1.5), (w, 3, "hidden", 1.0), (w, 3, "hidden", 1.0)]
    s = coord_slopes(pts)
    assert s[3]["logits"] == pytest.approx(0.5) and s[3]["hidden"] == pytest.approx(0.0)


def test_lr_transfer_by_hand():
    grid = [0.001, 0.002, 0.004, 0.008]
    initial = 6.0
    losses = {  # width -> per lr, two seeds; a None is a diverged member
        32: [(5.0, 5.2), (4.0, 4.2), (3.5, 3.7), (None, 4.5)],
        256: [(4.5, 4.5), (3.0, 3.4), (3.3, 3.3), (9.0, 9.0)],  # 9.0 is clipped at the initial 6.0
    }
    pts = [(w, lr, seed, ls[i][seed]) for w, ls in losses.items() for i, lr in enumerate(grid) for seed in (0, 1)]
    res = lr_transfer(pts, initial)
    a, b = res["widths"][32], res["widths"][256]
    assert a["curve"] == pytest.approx([5.1, 4.1, 3.6, (6.0 + 4.5) / 2])
    assert a["best_lr"] == 0.004 and a["best_spread"] == (3.5, 3.7) and a["best_lr_seeds"] == [0.004, 0.004]
    assert b["best_lr"] == 0.002 and b["curve"][3] == 6.0 and b["best_lr_seeds"] == [0.002, 0.004]
    # Wortsman et al.: mean over the grid of min(loss, initial) − best loss
    assert a["sensitivity"] == pytest.approx(np.mean([5.1, 4.1, 3.6, 5.25]) - 3.6)
    assert b["sensitivity"] == pytest.approx(np.mean([4.5, 3.2, 3.3, 6.0]) - 3.2)
    assert res["moved"] == 1 and a["inside"] and b["inside"]
