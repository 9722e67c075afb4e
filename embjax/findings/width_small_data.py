"""Finding: Bigger d with little data.

Its audit, checks, analysis, table, plot and declaration, top to bottom."""

from __future__ import annotations

from .plotting import collect_series, line_plot, save_figure
from .runs import final, mean_sd, select, values_of
from .verdict import Check, Finding, Table

# What the protocol varies, holds fixed, and what could still confound it (issue 22's audit)
AUDIT = (
    "Varied: d × seed. Held fixed: data, steps, optimizer and its lr (SP: not retuned per "
    "width). Could confound: 'little data' here is a small token budget from an unlimited stream (no example is "
    "seen twice), so a bigger d cannot overfit; what can hold it back is optimisation at one lr in SP (the "
    "best lr falls with width, finding 7), not variance."
)


def analyse(runs: list[dict]) -> tuple[list[Check], Table]:
    widths = sorted(int(w) for w in values_of(runs, "model.embed_dim"))
    by_d = {d: select(runs, model__embed_dim=d) for d in widths}
    seeds = sorted(set.intersection(*(set(v) for v in by_d.values()))) if by_d else []
    loss = lambda d, s: final(by_d[d][s], "eval/loss")
    top = widths[-1] if widths else "?"

    def excess(s: int) -> float | None:
        vals = [loss(d, s) for d in widths]
        return None if any(v is None for v in vals) or len(vals) < 2 else vals[-1] - min(vals[:-1])

    checks = [
        Check(
            f"With little data a bigger d is not automatically better: the largest width (d = {top}) does not reach "
            "a lower eval loss than the best smaller one",
            "per seed, final eval loss at the largest d − the lowest final eval loss over the smaller d; band in "
            "[0, ∞)",
            [v for s in seeds if (v := excess(s)) is not None],
            lo=0.0,
        )
    ]
    rows = [[f"d = {d}", str(len(by_d[d])), mean_sd([final(r, "eval/loss") for r in by_d[d].values()])] for d in widths]
    return checks, (["width", "seeds", "final eval loss"], rows)


def plot(runs: list[dict], path: str) -> bool:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    line_plot(
        ax,
        collect_series(runs, "model.embed_dim", lambda r: "from scratch, 300 steps", lambda r: final(r, "eval/loss")),
    )
    ax.set(xlabel="embedding width d", ylabel="final eval loss (nats)", title="Width with little data")
    return save_figure(fig, path)


# The claim, source, protocol and pass criterion, fixed before any run
FINDING = Finding(
    "width_small_data",
    "Bigger d with little data",
    "With little data, a bigger embedding width is not automatically better: past some d the extra parameters "
    "do not lower the loss (the lesson's 'bigger d is not automatically better').",
    "The lesson's width trade-off; Kaplan et al. 2020 (loss against parameters at a fixed, small token budget, "
    "§3.2, Fig. 4 left); Yin & Shen 2018 (On the Dimensionality of Word Embedding, the bias-variance trade-off).",
    "Finding 9's fine-tuning setting from scratch (planted corpus V = 512, Zipf a = 1.5, 300 AdamW steps at lr "
    "3e-3, about 307,000 training tokens), 2-layer transformer, d ∈ {16, 32, 64, 128, 256} × seeds {0, 1, 2}; "
    "final eval loss.",
    "Each check below, on the per-seed values' mean ± 2 standard errors.",
    "width_small_data",
    analyse,
    plot,
    quick={"steps": 100, "parameters": {"model.embed_dim": [32, 128], "seed": [0]}},
    audit=AUDIT,
)
