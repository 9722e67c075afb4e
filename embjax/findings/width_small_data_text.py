"""Finding: Bigger d with little data, on a finite real corpus repeated (finding 10's sibling).

Its audit, checks, analysis, table, plot and declaration, top to bottom."""

from __future__ import annotations

import numpy as np

from .plotting import collect_series, line_plot, save_figure
from .runs import final, mean_sd, select, values_of
from .verdict import TEXT_QUICK, Check, Finding, Table

AUDIT = (
    "Varied: d × seed. Held fixed: the corpus (builtin:lee_news word-level V = 2,048: 57,637 training tokens in 279 "
    "stories, 3,923 held out in 21), 600 steps of 16 × 64 tokens (≈ 11 passes: every context is seen again and "
    "again, which finding 10's unlimited stream never allowed), the optimizer and its lr (SP: not retuned per "
    "width). Could confound: the held-out split is small (21 stories), so eval loss is noisy; SP at one lr "
    "favours no width in particular but the best lr falls with width (finding 7); the train loss is a batch "
    "loss (the mean of the last five logged rows), not the loss of the whole training set."
)


def _train_loss(r: dict, last: int = 5) -> float | None:
    v = [row["train/loss"] for row in r["rows"] if isinstance(row.get("train/loss"), (int, float))][-last:]
    return float(np.mean(v)) if v else None


def _gap(r: dict) -> float | None:
    e, t = final(r, "eval/loss"), _train_loss(r)
    return None if e is None or t is None else e - t


def analyse(runs: list[dict]) -> tuple[list[Check], Table]:
    widths = sorted(int(w) for w in values_of(runs, "model.embed_dim"))
    by_d = {d: select(runs, model__embed_dim=d) for d in widths}
    seeds = sorted(set.intersection(*(set(v) for v in by_d.values()))) if by_d else []
    top, low = (widths[-1], widths[0]) if widths else ("?", "?")

    def excess(s: int) -> float | None:
        vals = [final(by_d[d][s], "eval/loss") for d in widths]
        return None if any(v is None for v in vals) or len(vals) < 2 else vals[-1] - min(vals[:-1])

    def gap_growth(s: int) -> float | None:
        hi, lo = _gap(by_d[top][s]), _gap(by_d[low][s])
        return None if hi is None or lo is None else hi - lo

    checks = [
        Check(
            f"With little data a bigger d is not automatically better: the largest width (d = {top}) does not reach "
            "a lower eval loss than the best smaller one",
            "per seed, final eval loss at the largest d − the lowest final eval loss over the smaller d; band in "
            "[0, ∞)",
            [v for s in seeds if (v := excess(s)) is not None],
            lo=0.0,
        ),
        Check(
            f"A wide table overfits a corpus seen many times: the generalisation gap grows from d = {low} to d = {top}",
            "per seed, (final eval loss − train loss) at the largest d − the same at the smallest d; band in [0, ∞)",
            [v for s in seeds if (v := gap_growth(s)) is not None],
            lo=0.0,
        ),
    ]
    rows = [
        [f"d = {d}", str(len(by_d[d]))]
        + [mean_sd([f(r) for r in by_d[d].values()]) for f in (lambda r: final(r, "eval/loss"), _train_loss, _gap)]
        for d in widths
    ]
    return checks, (["width", "seeds", "final eval loss", "train loss (last 5 rows)", "eval − train"], rows)


def plot(runs: list[dict], path: str) -> bool:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    series = collect_series(runs, "model.embed_dim", lambda r: "final eval loss", lambda r: final(r, "eval/loss"))
    series.update(collect_series(runs, "model.embed_dim", lambda r: "train loss", _train_loss))
    line_plot(ax, series, **{"train loss": {"linestyle": "--"}})
    ax.set(xlabel="embedding width d", ylabel="loss (nats)", title="Width with little data: Lee news, ≈ 11 passes")
    return save_figure(fig, path)


FINDING = Finding(
    "width_small_data_text",
    "Bigger d with little data, on a finite real corpus",
    "Finding 10's claim where it can bite: with little data, seen over and over, a bigger embedding width is not "
    "automatically better, and a wide table overfits (its generalisation gap grows).",
    "The lesson's width trade-off; Yin & Shen 2018 (On the Dimensionality of Word Embedding: the bias-variance "
    "trade-off of d); Kaplan et al. 2020 §3.2 (loss against parameters at a small token budget).",
    "builtin:lee_news (300 news stories) word-level V = 2,048, the findings' 2-layer transformer, AdamW lr 3e-3, "
    "600 steps of 16 × 64 tokens (≈ 11 passes over 57,637 training tokens), d ∈ {16, 32, 64, 128, 256} × seeds "
    "{0, 1, 2}; final eval loss and train loss.",
    "Each check below, on the per-seed values' mean ± 2 standard errors.",
    "text_width",
    analyse,
    plot,
    quick={**TEXT_QUICK, "parameters": {"model.embed_dim": [16, 64], "seed": [0]}},
    audit=AUDIT,
    corpus="real text",
    sibling_of="width_small_data",
)
