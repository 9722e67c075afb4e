"""A run's tables exported for other tools: TensorBoard's projector files (vectors.tsv, metadata.tsv), word2vec
text and a W&B table."""

from __future__ import annotations

import os

import numpy as np

from ..model.embedding import save_word2vec


def export_projector(
    run_dir: str, E: np.ndarray, corpus, sink=None, max_table_rows: int = 10_000, step: int | None = None
) -> None:
    """TensorBoard-projector files (vectors.tsv, metadata.tsv), word2vec text, and a W&B table
    (W&B keeps 10,000 table rows: the most frequent tokens plus a seeded random sample)."""
    V = E.shape[0]
    np.savetxt(os.path.join(run_dir, "vectors.tsv"), E, delimiter="\t", fmt="%.6g")
    has_cls = corpus.labels is not None
    with open(os.path.join(run_dir, "metadata.tsv"), "w", encoding="utf-8") as f:
        f.write("token\tfrequency" + ("\tclass" if has_cls else "") + "\n")
        for i, tok in enumerate(corpus.tokens):
            f.write(f"{tok}\t{corpus.counts[i]:.6g}" + (f"\t{int(corpus.labels[i])}" if has_cls else "") + "\n")
    save_word2vec(os.path.join(run_dir, "embeddings.w2v.txt"), E, corpus.tokens)
    if sink is None:
        return
    if V <= max_table_rows:
        rows, name = np.arange(V), "embeddings/all"
    else:
        top = np.argsort(-corpus.counts, kind="mergesort")[: max_table_rows // 2]
        rest = np.setdiff1d(np.arange(V), top)
        sample = np.random.default_rng(0).choice(rest, max_table_rows - len(top), replace=False)
        rows = np.r_[top, np.sort(sample)]
        name = f"embeddings/top{len(top)}_freq_plus_{len(sample)}_random"
    cols = ["token", "frequency"] + (["class"] if has_cls else []) + [f"d{j}" for j in range(E.shape[1])]
    data = [
        [corpus.tokens[i], float(corpus.counts[i])]
        + ([int(corpus.labels[i])] if has_cls else [])
        + [float(x) for x in E[i]]
        for i in rows
    ]
    dtype = [str, float] + ([int] if has_cls else []) + [float] * E.shape[1]
    sink.log_rich(step, {name: {"kind": "table", "columns": cols, "data": data, "dtype": dtype}})
