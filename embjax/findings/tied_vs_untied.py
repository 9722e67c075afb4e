"""Finding: Tied vs untied quality.

Its audit, checks, analysis, table, plot and declaration, top to bottom."""

from __future__ import annotations

from .runs import diff, final, linear_cka, mean_sd, paired, per_seed, select, table_of
from .verdict import Check, Finding, Table

# What the protocol varies, holds fixed, and what could still confound it (issue 22's audit)
AUDIT = (
    "Varied: tying × seed (the σ_E = 0.02 members of the tying sweep; head 0.02, as before). "
    "Held fixed: data, model, optimizer, steps. Could confound: the untied model has twice the embedding "
    "parameters; the same lr serves both."
)


def analyse(runs: list[dict]) -> tuple[list[Check], Table]:
    tied, untied = (select(runs, model__tie_embeddings=t, embedding__init_std=0.02) for t in (True, False))

    def cka_gap(a: dict, b: dict) -> float | None:
        E, In, Out = table_of(a, "embeddings.npy"), table_of(b, "embeddings.npy"), table_of(b, "output_embeddings.npy")
        return None if E is None or In is None or Out is None else linear_cka(E, Out) - linear_cka(E, In)

    def cka(a: dict, b: dict, name: str) -> float | None:
        E, X = table_of(a, "embeddings.npy"), table_of(b, name)
        return None if E is None or X is None else linear_cka(E, X)

    checks = [
        Check(
            "At small data (a few hundred steps) the tied model's eval loss is no worse than the untied one's",
            "per seed, tied − untied final eval/loss; band in (−∞, 0.02] nats",
            paired(tied, untied, diff("eval/loss")),
            hi=0.02,
        ),
        Check(
            "The tied table is closer (linear CKA) to the untied output table than to the untied input table",
            "per seed, CKA(tied, untied output) − CKA(tied, untied input); band in [0, ∞)",
            paired(tied, untied, cka_gap),
            lo=0.0,
        ),
    ]
    rows = [
        ["tied", mean_sd(per_seed(tied, lambda r: final(r, "eval/loss"))), "–", "–"],
        [
            "untied",
            mean_sd(per_seed(untied, lambda r: final(r, "eval/loss"))),
            mean_sd(paired(tied, untied, lambda a, b: cka(a, b, "embeddings.npy"))),
            mean_sd(paired(tied, untied, lambda a, b: cka(a, b, "output_embeddings.npy"))),
        ],
    ]
    return checks, (
        ["model (σ = 0.02)", "eval loss", "CKA(tied E, this input table)", "CKA(tied E, this output table)"],
        rows,
    )


# The claim, source, protocol and pass criterion, fixed before any run
FINDING = Finding(
    "tied_vs_untied",
    "Tied vs untied quality",
    "At small data a tied model's eval loss is no worse than an untied one's, and the tied table resembles "
    "the untied model's output table more than its input table.",
    "Press & Wolf 2017, Using the Output Embedding to Improve Language Models (EACL), §3–5; Inan et al. 2017, "
    "Tying Word Vectors and Word Classifiers (ICLR).",
    "The σ = 0.02 members of the tying sweep (finding 1): tied vs untied × seeds {0, 1, 2}; linear CKA "
    "(Kornblith et al. 2019) between final tables, rows aligned by token id.",
    "Each check below, on the per-seed values' mean ± 2 standard errors.",
    "tying",
    analyse,
    None,
    quick={"steps": 100, "parameters": {"seed": [0]}},
    audit=AUDIT,
)
