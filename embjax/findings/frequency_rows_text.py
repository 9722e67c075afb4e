"""Finding: Frequency shapes rows, on real text (finding 2's sibling).

Its audit, checks, analysis, table, plot and declaration, top to bottom."""

from __future__ import annotations

import numpy as np

from .plotting import save_figure
from .runs import final, growth_ratio, mean_sd, norm_freq_spearman, paired, per_seed, rare_harm, select
from .verdict import TEXT_QUICK, Check, Finding, Table

AUDIT = (
    "Varied: tying × embedding weight decay {0, 0.5} (untied only: the decay check reads untied runs) × seed, at "
    "σ_E = 0.02. Held fixed: corpus (builtin:wiki_sample word-level V = 8,192: real word frequencies, no Zipf "
    "exponent imposed), model (the regularised LSTM, 2 × 200), optimizer (Adam 2e-3, decoupled decay), 1,271 "
    "steps; final tables (the best-eval step in these runs). Could confound: the frequency buckets are of types by "
    "training count, so the top 1 % (82 words) holds most tokens and <unk>; the decay covers the untied head too "
    "(embed_weight_decay covers every embedding table), so the decay check moves the readout as well."
)


def _side(runs: list[dict], tie: bool, wd: float) -> dict[int, dict]:
    return select(runs, model__tie_embeddings=tie, optim__embed_weight_decay=wd, embedding__init_std=0.02)


def analyse(runs: list[dict]) -> tuple[list[Check], Table]:
    side = lambda tie, wd: _side(runs, tie, wd)
    checks = [
        Check(
            "Rows of rarely seen words stay nearer their init: the rarest 90 %'s mean norm grows by less than half "
            "the factor of the top 1 %'s (untied, no decay)",
            "per seed, growth(rest) ÷ growth(top 1 %), growth = final ÷ step-0 mean norm; band in (−∞, 0.5]",
            per_seed(side(False, 0.0), growth_ratio),
            hi=0.5,
        ),
        Check(
            "Row norm rises with word frequency in an untied input table",
            "per seed, Spearman(‖eᵢ‖, log(1 + countᵢ)) (untied, no decay); band in [0, ∞)",
            per_seed(side(False, 0.0), norm_freq_spearman),
            lo=0.0,
        ),
        Check(
            "Tying lowers the norm–log-frequency correlation",
            "per seed, tied − untied Spearman (no decay); band in (−∞, 0]",
            paired(side(True, 0.0), side(False, 0.0), lambda a, b: norm_freq_spearman(a) - norm_freq_spearman(b)),
            hi=0.0,
        ),
        Check(
            "Weight decay on the embedding (0.5) hurts rare words more than frequent ones (untied)",
            "per seed, the decay's eval-loss change on targets in the rarest 90 % minus on the top 1 %; band in [0, ∞)",
            paired(side(False, 0.5), side(False, 0.0), rare_harm),
            lo=0.0,
        ),
    ]
    rows = []
    for tie, wd in ((True, 0.0), (False, 0.0), (False, 0.5)):
        g = list(side(tie, wd).values())
        rows.append(
            ["tied" if tie else "untied", f"{wd:g}", str(len(g))]
            + [mean_sd([norm_freq_spearman(r) for r in g]), mean_sd([growth_ratio(r) for r in g])]
            + [mean_sd([final(r, f"eval/loss_bucket_{k}") for r in g]) for k in ("top1", "top1_10", "rest")]
        )
    cols = ["output", "embedding decay", "seeds", "Spearman(norm, log freq)", "growth rest ÷ top 1 %"]
    return checks, (cols + ["eval loss top 1 %", "1–10 %", "rest"], rows)


def plot(runs: list[dict], path: str) -> bool:
    import matplotlib.pyplot as plt

    buckets = ("top1", "top1_10", "rest")
    groups = [(True, 0.0), (False, 0.0), (False, 0.5)]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    width = 0.8 / len(groups)
    for i, (tie, wd) in enumerate(groups):
        g = _side(runs, tie, wd).values()
        vals = [[v for r in g if (v := final(r, f"eval/loss_bucket_{b}")) is not None] for b in buckets]
        ax.bar(
            np.arange(3) + i * width,
            [np.mean(v) if v else np.nan for v in vals],
            width,
            yerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals],
            capsize=3,
            label=f"{'tied' if tie else 'untied'}, embedding decay {wd:g}",
        )
    ax.set_xticks(np.arange(3) + 0.4 - width / 2, ["top 1 %", "1–10 %", "rest"])
    ax.set(ylabel="final eval loss on targets in the bucket", title="Frequency buckets: English Wikipedia words")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


FINDING = Finding(
    "frequency_rows_text",
    "Frequency shapes rows, on real text",
    "Finding 2's claim on real word frequencies: rows of rarely seen words stay near their init; row norm rises "
    "with frequency and tying changes that correlation; weight decay on the embedding hurts rare words more than "
    "frequent ones.",
    "Gao et al. 2019 §4 (rare-token rows); Bis et al. 2021 §5 (frequency and norms); Pinto et al. 2024, "
    "per-frequency evaluation of embedding regularisation.",
    "builtin:wiki_sample word-level V = 8,192, the regularised LSTM (2 × 200, dropout 0.5), σ = 0.02, Adam 2e-3, "
    "1,271 steps of 20 × 35 tokens: the σ = 0.02 members of text_tying (tied and untied, no decay) and sweeps/findings/"
    "text_frequency.yaml (untied, embedding decay 0.5, no other decay) × seeds {0, 1, 2}; eval loss by the target's "
    "frequency bucket (top 1 %, 1–10 %, rest); the same four checks and bands as finding 2.",
    "Each check below, on the per-seed values' mean ± 2 standard errors.",
    "text_tying",
    analyse,
    plot,
    quick=TEXT_QUICK,
    also=("text_frequency",),
    audit=AUDIT,
    corpus="real text",
    sibling_of="frequency_rows",
)
