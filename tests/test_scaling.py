"""Width-scaling analysis against hand computations."""

import math

import numpy as np
import pytest

from embjax.analysis.scaling import coord_slopes, loglog_slope, lr_transfer


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
        pts += [
            (w, 3, "logits", mean * 0.5),
            (w, 3, "logits", mean * 1.5),
            (w, 3, "hidden", 1.0),
            (w, 3, "hidden", 1.0),
        ]
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


def test_report_lr_panels_each_clip_at_their_own_initial_loss():
    """Two panels (SP with σ = 0.02 and σ = 2): each member's loss is clipped at its own panel's step-0 loss,
    an old config without model.parametrization counts as SP, and unfinished members are left out."""
    from embjax.outputs.runs import lr_analysis

    def run(par, sigma, width, lr, loss, status="finished", first=6.0):
        model = {"embed_dim": width, "kind": "transformer", "tie_embeddings": True}
        if par is not None:
            model["parametrization"] = par
        return {
            "cfg": {
                "model": model,
                "embedding": {"init": "normal", "init_std": sigma},
                "optim": {"lr": lr},
                "seed": 0,
                "data": {"vocab_size": 512},
            },
            "summary": {"status": status, "eval/loss": loss},
            "rows": [{"step": 0, "eval/loss": first}],
        }

    runs = []
    for w in (32, 64):
        runs += [run(None, 0.02, w, lr, loss) for lr, loss in ((1e-3, 5.0), (2e-3, 4.0), (4e-3, 7.0))]
        runs += [run("sp", 2.0, w, lr, loss, first=20.0) for lr, loss in ((1e-3, 15.0), (2e-3, 12.0), (4e-3, 30.0))]
    runs.append(run("sp", 0.02, 128, 1e-3, 1.0, status="interrupted"))  # left out
    res = lr_analysis(runs)
    assert sorted(res) == ["SP init_std=0.02", "SP init_std=2.0"]
    small, large = res["SP init_std=0.02"], res["SP init_std=2.0"]
    assert small["widths"][32]["curve"] == [5.0, 4.0, 6.0] and 128 not in small["widths"]  # 7.0 clipped at 6.0
    assert large["widths"][64]["curve"] == [15.0, 12.0, 20.0]  # 30.0 clipped at its own panel's 20.0
