"""A run's per-pair word-similarity data: (human score, model cosine) for every pair of a benchmark, in the file's
order, so that several runs (seeds, arms) share the pair index a bootstrap resamples.

The cosines are the ones the run's own `word_sim/<set>/spearman` ranks (`embjax.analysis.evals.pair_cosines`), on
a word-level vocabulary read from the run directory's tokens.tsv and matched as gensim's evaluate_word_pairs does
with case_insensitive=True: a benchmark word is the first row whose token equals it up to case; a pair with a word
that is no row (or `<unk>`, or a zero vector) is skipped. Reads only the run directory (embeddings.npy,
output_embeddings.npy, tokens.tsv, config.yaml).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from ..analysis.evals import SIMILARITY_SETS, Lexicon, benchmark_files, pair_cosines, read_pairs
from ..analysis.stats import spearman
from ..outputs.runs import get
from .bootstrap import DRAWS, Bootstrap, bootstrap
from .runs import best_table

UNK = "<unk>"


@dataclass(frozen=True)
class PairScores:
    """One table's scores on one benchmark: every pair of the file in its order; cos is nan where skipped."""

    benchmark: str
    words: list[tuple[str, str]]
    human: np.ndarray  # (P,) float64
    cos: np.ndarray  # (P,) float64, nan for a skipped pair

    @property
    def used(self) -> np.ndarray:
        return np.isfinite(self.cos)

    @property
    def spearman(self) -> float:
        """Spearman's ρ over the used pairs: the run's logged word_sim/<set>/spearman for the same table."""
        u = self.used
        return spearman(self.cos[u], self.human[u]) if u.sum() >= 2 else float("nan")


def read_tokens(run_dir: str) -> list[str]:
    """tokens.tsv's token column (header "id<TAB>token…"), one per table row."""
    path = os.path.join(run_dir, "tokens.tsv")
    with open(path, encoding="utf-8", newline="\n") as f:
        lines = f.read().split("\n")
    if not lines or not lines[0].startswith("id\ttoken"):
        raise ValueError(f"per-pair scores: {path!r} is not an embjax tokens.tsv (header 'id<TAB>token…')")
    return [line.split("\t")[1] for line in lines[1:] if line]


def run_lexicon(run_dir: str) -> Lexicon:
    """The run's word-level vocabulary as a Lexicon: a word is the first row whose token equals it up to case."""
    tokens = read_tokens(run_dir)
    rows = {t.upper(): i for i, t in reversed(list(enumerate(tokens)))}  # the first row of a case-folded token
    unk = tokens.index(UNK) if UNK in tokens else None
    return Lexicon(lambda w: [rows[w.upper()]] if w.upper() in rows else [], len(tokens), words=True, unk=unk)


def _run_dir(run: dict | str) -> str:
    """A run dict's directory (findings.runs) or a path; refused when its vocabulary is not word-level."""
    run_dir = run["dir"] if isinstance(run, dict) else str(run)
    cfg = run.get("cfg") if isinstance(run, dict) else None
    if cfg is None and os.path.isfile(os.path.join(run_dir, "config.yaml")):
        with open(os.path.join(run_dir, "config.yaml")) as f:
            cfg = yaml.safe_load(f) or {}
    kind, tok = get(cfg or {}, "data.kind"), get(cfg or {}, "data.tokenizer")
    if kind == "text" and tok != "word":
        raise ValueError(
            f"per-pair scores: {run_dir!r} has data.tokenizer={tok!r}; allowed: a word-level vocabulary "
            "(data.tokenizer=word), whose words are rows of tokens.tsv"
        )
    return run_dir


def pair_scores(run: dict | str, benchmark: str, table: str | np.ndarray = "embeddings.npy") -> PairScores:
    """(human, cos) of every pair of `benchmark` (wordsim353, simlex999 or a pairs file) on a run's table: a file
    of the run directory (embeddings.npy, or output_embeddings.npy for an untied head) or a V×d array of its
    vocabulary (e.g. a table restored from its best checkpoint, which no .npy holds)."""
    run_dir = _run_dir(run)
    ((name, path),) = benchmark_files(benchmark, SIMILARITY_SETS)
    pairs = read_pairs(path)[0]
    E = np.load(os.path.join(run_dir, table)) if isinstance(table, str) else np.asarray(table)
    cos, used = pair_cosines(E, run_lexicon(run_dir), pairs)
    human = np.asarray([s for _, _, s in pairs], np.float64)
    return PairScores(name, [(a, b) for a, b, _ in pairs], human, np.where(used, cos, np.nan))


def stack(scores: list[PairScores]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cos_KxN, human_N, kept_N): the runs' cosines on the pairs every run uses (a shared pair index), the human
    scores, and those pairs' positions in the file (a pair skipped by any run is left out of all)."""
    if not scores:
        raise ValueError("per-pair scores: got no runs; allowed: one or more runs' PairScores")
    first = scores[0]
    for s in scores[1:]:
        if s.benchmark != first.benchmark or s.words != first.words:
            raise ValueError(f"per-pair scores: got {first.benchmark!r} and {s.benchmark!r}; allowed: one benchmark")
    kept = np.flatnonzero(np.logical_and.reduce([s.used for s in scores]))
    return np.stack([s.cos[kept] for s in scores]), first.human[kept], kept


def stacked(
    runs: list[Any], benchmark: str, table: str = "embeddings.npy"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`stack` of `pair_scores` over runs (e.g. one arm's seeds, in seed order)."""
    return stack([pair_scores(r, benchmark, table) for r in runs])


def boot_of(
    sides: list[tuple[dict[int, Any], str, float]], benchmark: str, *, paired: bool = True, draws: int = DRAWS
) -> Bootstrap | None:
    """The seeds × pairs bootstrap of Σ sign × mean over seeds of ρ(table) on `benchmark`, each side (runs by seed,
    the run directory's table file, sign; a run that kept its best-eval checkpoint is read at it, best_<file>):
    one side is a table's ρ; two sides a difference of ρs, both on the same drawn pairs, and on the same drawn
    seeds when paired (the seeds every side has, e.g. ρ_out − ρ_in of the same runs, or two arms sharing seeds;
    else each side's seeds are drawn on their own). The pairs are those every run uses. None when a run has no
    such table file (e.g. a reference row, or runs that wrote no tables)."""
    if paired:
        seeds = sorted(set.intersection(*(set(runs) for runs, _, _ in sides)))
        chosen = [[runs[s] for s in seeds] for runs, _, _ in sides]
    else:
        chosen = [[runs[s] for s in sorted(runs)] for runs, _, _ in sides]
    if any(len(c) == 0 for c in chosen):
        return None
    try:
        scores = [
            [pair_scores(r, benchmark, best_table(r, table)) for r in runs]
            for runs, (_, table, _) in zip(chosen, sides)
        ]
    except (OSError, ValueError, KeyError):
        return None
    flat = [s for side in scores for s in side]
    _, human, kept = stack(flat)
    terms = [
        (np.stack([s.cos[kept] for s in side]), sign, 0 if paired else i)
        for i, (side, (_, _, sign)) in enumerate(zip(scores, sides))
    ]
    return bootstrap(terms, human, draws=draws)
