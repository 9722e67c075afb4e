"""Look at any table with a training run's lens: `python -m experiments.inspect SOURCE [--out=DIR]`.

SOURCE is anything `embjax.model.pretrained.read_source` reads (a word2vec/GloVe/fastText file, a .npy, a
.safetensors file, a Hugging Face model folder, an embjax run). DIR (default `runs/inspect/<source name>`)
gets what a run would show of its final table:

  report.md, report.json   the geometry report (docs/metrics.md): norms, mean cosine, anisotropy, IsoScore,
                           effective rank, rogue dimensions, the same for the centred table, norms by frequency
                           when counts are given, and the nearest neighbours of the most frequent (or first) tokens
  norms_by_frequency.png   row norm against frequency rank (with counts)
  embedding_space.html     the embedding-space page, one frame (config.yaml, tokens.tsv and snapshots/ are its
                           inputs, written as a run writes them)
  vectors.tsv, metadata.tsv, embeddings.w2v.txt   the TensorBoard-projector files and word2vec text
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from .. import config as C
from ..analysis.metrics import embedding_report
from ..analysis.neighbors import nearest_neighbors
from ..config import ConfigError
from ..model.pretrained import hf_tokens, read_source
from ..model.source import Source
from . import snapshots
from .exports import export_projector
from .viewer import write_page

PROBES = 20  # tokens whose neighbours the report lists


@dataclass
class Table:
    """What the report reads: tokens, counts (zeros when none were given) and the rows."""

    tokens: list[str]
    counts: np.ndarray
    E: np.ndarray
    labels: None = None


def load_table(source: str, tokenizer_file: str | None = None, counts: str | None = None) -> tuple[Source, Table]:
    """The source's rows with a token per row (from the source, `tokenizer_file`, or the row index) and counts
    (`counts`: lines of "token count", tab- or space-separated, or an embjax tokens.tsv; unlisted tokens 0)."""
    try:
        src = read_source(source)
    except ValueError as err:
        raise ConfigError(f"SOURCE: {err}") from None
    n = len(src.E)
    tokens = src.tokens
    if tokenizer_file:
        tokens = hf_tokens(tokenizer_file, n)
    tokens = list(tokens) if tokens is not None else [str(i) for i in range(n)]
    return src, Table(tokens, _read_counts(counts, tokens), np.asarray(src.E, np.float32))


def _read_counts(path: str | None, tokens: list[str]) -> np.ndarray:
    out = np.zeros(len(tokens))
    if path is None:
        return out
    if not os.path.isfile(path):
        raise ConfigError(f"--counts: got {path!r}; allowed: a file of 'token count' lines or an embjax tokens.tsv")
    index = {t: i for i, t in enumerate(tokens)}
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    tsv = bool(lines) and lines[0].split("\t")[:3] == ["id", "token", "count"]
    for line in lines[1:] if tsv else lines:
        cols = line.split("\t") if "\t" in line else line.rsplit(" ", 1)
        tok, cnt = (cols[1], cols[2]) if tsv else (cols[0], cols[-1])
        try:
            if tok in index:
                out[index[tok]] = float(cnt)
        except ValueError:
            raise ConfigError(f"--counts: {path!r} has a line that is not 'token count': {line[:60]!r}") from None
    return out


def inspect(source: str, out: str, tokenizer_file: str | None = None, counts: str | None = None) -> dict:
    """Write the report, the page and the projector files for `source` into `out`; returns the report's scalars."""
    if any(os.path.exists(os.path.join(out, n)) for n in ("metrics.jsonl", "checkpoints")):
        raise ConfigError(f"--out: got {out!r}, a training run's directory; allowed: a new or an inspection folder")
    src, t = load_table(source, tokenizer_file, counts)
    os.makedirs(out, exist_ok=True)
    has_counts = bool(t.counts.any())
    report = {
        **embedding_report(t.E, counts=t.counts if has_counts else None),
        **embedding_report(t.E, counts=t.counts if has_counts else None, center=True, prefix="emb_centered/"),
    }
    order = np.argsort(-t.counts, kind="stable") if has_counts else np.arange(len(t.tokens))
    probes = order[: min(PROBES, len(order))]
    ids, cos = nearest_neighbors(t.E, probes, k=5)
    neighbours = {t.tokens[p]: [[t.tokens[j], round(float(c), 4)] for j, c in zip(ids[i], cos[i]) if j >= 0]
                  for i, p in enumerate(probes)}  # fmt: skip
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump({"source": src.describe(), "report": report, "neighbours": neighbours}, f, indent=1)
    _write_markdown(out, src, report, neighbours, has_counts and _plot_norms(out, t))
    _write_run_files(out, src, t)
    export_projector(out, t.E, t)
    write_page(out)
    return report


def _write_markdown(out: str, src: Source, report: dict, neighbours: dict, plot: bool) -> None:
    lines = [
        f"# {os.path.basename(os.path.normpath(src.path))}",
        "",
        src.describe(),
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| `{k}` | {v:.6g} |" for k, v in report.items()]
    lines += ["", "## Nearest neighbours (cosine)", ""]
    lines += [f"- `{tok}`: " + ", ".join(f"`{n}` {c:.3f}" for n, c in nn) for tok, nn in neighbours.items()]
    if plot:
        lines += ["", "![norms by frequency](norms_by_frequency.png)"]
    lines += ["", "[embedding_space.html](embedding_space.html): the table in 3-D (PCA), with norms and neighbours."]
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _plot_norms(out: str, t: Table) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(-t.counts, kind="stable")
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.scatter(np.arange(1, len(order) + 1), np.linalg.norm(t.E[order], axis=1), s=3, alpha=0.5)
    ax.set(xscale="log", xlabel="frequency rank", ylabel="‖eᵢ‖", title="Row norm by frequency")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "norms_by_frequency.png"), dpi=110)
    plt.close(fig)
    return True


def _write_run_files(out: str, src: Source, t: Table) -> None:
    """config.yaml, tokens.tsv and one snapshot frame: the page's inputs, as a run writes them."""
    name = os.path.basename(os.path.normpath(src.path))
    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write(C.dump_yaml(C.from_dict({"name": name or "table", "steps": 1})))
    with open(os.path.join(out, "tokens.tsv"), "w", encoding="utf-8") as f:
        f.write("id\ttoken\tcount\n")
        for i, tok in enumerate(t.tokens):
            tok = tok.replace("\t", "\\t").replace("\n", "\\n")  # one line per token
            f.write(f"{i}\t{tok}\t{t.counts[i]:.10g}\n")
    rows = snapshots.snapshot_rows(t.counts)
    snapshots.truncate(out, -1)
    snapshots.write_frame(out, 0, rows, t.E[rows], np.zeros(len(rows), np.int32))
