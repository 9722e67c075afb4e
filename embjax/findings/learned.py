"""Have a real-text finding's tables learned words? Each arm's trained tables (the best-eval checkpoint's where a run
kept one) scored on the similarity benchmarks with the seeds × pairs bootstrap, against the band of a random table
on the same vocabulary and pairs: findings.md's "Tables against a random one" line, computed from the run
directories alone (tokens.tsv, the saved tables, config.yaml).

A random table's ρ is not 0 on every benchmark (WordSim-353 holds pairs of a word with itself, whose cosine is 1),
and it moves with the draw by about the pairs' sampling error, so the band is measured: RANDOM_DRAWS tables of
N(0, 1) rows of the arm's width, seeded, scored as the runs' tables are; band = their mean ± 2 sd. A table is
*clearly above* it when its seeds × pairs interval's lower end lies above the band's upper end.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from ..analysis.evals import SIMILARITY_SETS, benchmark_files, pair_cosines, read_pairs
from ..analysis.stats import spearman
from ..config import flatten
from ..outputs.runs import get
from .pairs import boot_of, run_lexicon

RANDOM_DRAWS = 200  # the band's sd is then good to about ±5 %
BENCHMARKS = {"simlex999": "SimLex-999", "wordsim353": "WordSim-353"}
TABLES = (("embeddings.npy", "input"), ("output_embeddings.npy", "output"))
# config keys that name a run, not what it trains: never part of an arm's label
NOT_ARM = {"seed", "name", "out_dir", "embedding.pretrained_path", "log.project", "log.group"}


# what an arm's label names, in this order, where arms differ in it (they are grouped by every key but the seed)
LABELS = (
    ("model.kind", "{}"),
    ("model.dropout", "dropout {}"),
    ("model.embed_dim", "d = {}"),
    ("embedding.init", "{} init"),
    ("embedding.init_std", "σ {}"),
    ("model.tie_embeddings", None),
    ("optim.embed_weight_decay", "embedding decay {}"),  # None: it falls back to optim.weight_decay
    ("data.train_fraction", "train_fraction {}"),
)


def arms(runs: list[dict]) -> dict[str, dict[int, dict]]:
    """{label: {seed: run}} of the finished language-model runs (baseline reference rows left out), grouped by
    their sweep folder and every config key but the seed; a label names the LABELS keys in which the arms differ
    ("all runs" for one), and the sweep folder too where that alone tells two arms apart."""
    lm = [r for r in runs if r["summary"].get("status") == "finished" and not os.path.exists(_baseline(r))]
    flats = [flatten(r["cfg"]) for r in lm]
    keys = sorted({k for f in flats for k in f} - NOT_ARM)
    groups: dict[tuple, dict[int, dict]] = {}
    for r, f in zip(lm, flats):
        group = groups.setdefault((os.path.dirname(r["dir"]), *(repr(f.get(k)) for k in keys)), {})
        seed = int(f.get("seed") or 0)
        if seed in group:
            raise ValueError(f"tables against a random one: {r['dir']!r} and {group[seed]['dir']!r} are one arm's seed")
        group[seed] = r
    shown = [(k, fmt) for k, fmt in LABELS if len({repr(_value(f, k)) for f in flats}) > 1]
    labels = []
    for by_seed in groups.values():
        f = flatten(next(iter(by_seed.values()))["cfg"])
        labels.append(", ".join(_part(_value(f, k), fmt) for k, fmt in shown) or "all runs")
    out: dict[str, dict[int, dict]] = {}
    for label, (key, by_seed) in zip(labels, groups.items()):
        out[label if labels.count(label) == 1 else f"{label} ({os.path.basename(key[0])})"] = by_seed
    return out


def _value(f: dict[str, Any], key: str) -> Any:
    """A flat config's value of key, an unset embedding decay read as the weight decay it falls back to."""
    v = f.get(key)
    return f.get("optim.weight_decay") if v is None and key == "optim.embed_weight_decay" else v


def _part(value: Any, fmt: str | None) -> str:
    return ("tied" if value else "untied") if fmt is None else fmt.format(value)


def _baseline(run: dict) -> str:
    return os.path.join(run["dir"], "baseline.json")  # a word2vec / fastText reference row (experiments.baseline)


def random_band(
    run: dict, benchmark: str, table: str = "embeddings.npy", draws: int = RANDOM_DRAWS, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, lo, hi) of ρ for `draws` random N(0, 1) tables of the run's vocabulary and its table's width:
    mean ∓ 2 sd."""
    ((_, path),) = benchmark_files(benchmark, SIMILARITY_SETS)
    pairs, lex = read_pairs(path)[0], run_lexicon(run["dir"])
    human = np.asarray([s for _, _, s in pairs], np.float64)
    d = np.load(os.path.join(run["dir"], table), mmap_mode="r").shape[1]
    rows = sorted({i for a, b, _ in pairs for w in (a, b) for i in lex.pieces(w)})  # the only rows a pair reads
    E, rng, rhos = np.zeros((lex.V, d), np.float32), np.random.default_rng([seed, d, lex.V]), []
    for _ in range(draws):
        E[rows] = rng.standard_normal((len(rows), d), np.float32)
        cos, used = pair_cosines(E, lex, pairs)
        rhos.append(spearman(cos[used], human[used]))
    m, sd = float(np.mean(rhos)), float(np.std(rhos, ddof=1))
    return m, m - 2 * sd, m + 2 * sd


def best_tables(runs: list[dict], cache: dict | None = None) -> dict[str, tuple[str, Any, dict, str]] | None:
    """Per benchmark: (name, Bootstrap, a run, table file) of the arm table whose seeds × pairs interval has the
    highest lower end; None when no run saved a table on a word-level vocabulary."""
    cache = {} if cache is None else cache
    out: dict[str, tuple[str, Any, dict, str]] = {}
    for label, by_seed in arms(runs).items():
        untied = all(get(r["cfg"], "model.tie_embeddings") is False for r in by_seed.values())
        for table, side in TABLES:
            name = f"{label}: its {side if untied else 'tied'} table"
            for bench in BENCHMARKS:
                b = _boot(cache, by_seed, table, bench)  # None: no such table (a tied run's output table)
                if b is not None and (bench not in out or b.lo > out[bench][1].lo):
                    out[bench] = (name, b, by_seed[min(by_seed)], table)
    return out or None


def _boot(cache: dict, by_seed: dict[int, dict], table: str, bench: str) -> Any:
    """`pairs.boot_of` of one table's ρ over these runs, computed once per findings.md (findings share arms)."""
    key = (tuple(sorted(r["dir"] for r in by_seed.values())), table, bench)
    if key not in cache:
        cache[key] = boot_of([(by_seed, table, 1.0)], bench)
    return cache[key]


def _band(cache: dict, run: dict, bench: str, table: str) -> tuple[float, float, float]:
    """`random_band`, computed once per vocabulary, width and benchmark (the findings' arms share vocabularies)."""
    with open(os.path.join(run["dir"], "tokens.tsv"), "rb") as f:
        vocab = hashlib.sha1(f.read()).hexdigest()
    key = ("band", vocab, np.load(os.path.join(run["dir"], table), mmap_mode="r").shape[1], bench)
    if key not in cache:
        cache[key] = random_band(run, bench, table)
    return cache[key]


def statement(runs: list[dict], cache: dict | None = None) -> str | None:
    """findings.md's line: per benchmark, the best table's ρ and interval against the random band, and whether any
    table stands clearly above it. None when no run has a table to score."""
    cache = {} if cache is None else cache
    best = best_tables(runs, cache)
    if best is None:
        return None
    parts, above = [], []
    for bench, (name, b, run, table) in best.items():
        m, lo, hi = _band(cache, run, bench, table)
        clear = b.lo > hi
        above.append(clear)
        parts.append(
            f"{BENCHMARKS[bench]}: the best is {name}, ρ {b.estimate:+.3f} [{b.lo:+.3f}, {b.hi:+.3f}] ({b.seeds} "
            f"seed{'s' if b.seeds != 1 else ''} × {b.pairs} pairs), a random table {m:+.3f} [{lo:+.3f}, {hi:+.3f}]: "
            + ("**clearly above**" if clear else "not clearly above")
        )
    refs = _references(runs, cache)
    verdict = (
        "At least one table stands clearly above a random one (the best of several tables: a lenient reading)."
        if any(above)
        else "**No table stands clearly above a random one**: by this measure none can be told from a random table "
        "(it asks for about 2/√n plus two pair-sampling errors: ρ ≈ 0.19 on 462 pairs), so the benchmark checks read "
        "tables that have not measurably learned words at this budget (docs/findings_guide.md: what it would take, "
        "measured)."
    )
    return "; ".join(parts) + ". " + verdict + (f" The reference rows, on the same tokens: {refs}." if refs else "")


def _references(runs: list[dict], cache: dict) -> str:
    """The baseline reference rows' tables (word2vec, fastText: one run each) on each benchmark, as above."""
    out = []
    for r in runs:
        if r["summary"].get("status") != "finished" or not os.path.exists(_baseline(r)):
            continue
        with open(_baseline(r)) as f:
            spec = json.load(f)["baseline"]
        for bench in BENCHMARKS:
            b = _boot(cache, {0: r}, "embeddings.npy", bench)
            if b is not None:
                out.append(
                    f"{spec['method']} ({spec['epochs']} epochs) {BENCHMARKS[bench]} {b.estimate:+.3f} "
                    f"[{b.lo:+.3f}, {b.hi:+.3f}]"
                )
    return "; ".join(out)
