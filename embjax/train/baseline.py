"""The classic anchor: gensim's word2vec or fastText on exactly a prepared corpus's training stream, written as a
run directory (`python -m experiments.baseline --method=word2vec|fasttext --data...`).

Same tokens as the LM runs: the training split's token ids, as strings (tokens.tsv's), in stream order,
`<eos>` kept as a word and `<unk>` left out (`keep_unk` keeps it), cut into gensim sentences of 10,000 tokens
(gensim's longest); the vocabulary is the prepared one (every token of the stream, min_count 1), so row i of
embeddings.npy is token i, as in an LM run (a token the stream never holds, `<unk>` by default, gets a zero row).
The default is the strong small-corpus setting measured in docs/text.md (skip-gram, d 100, window 5, negative 5,
DEFAULT_EPOCHS epochs, where the curve over epochs flattens); a list of epochs is one run directory each.
On a word vocabulary the shipped benchmarks (wordsim353, simlex999, google) are scored unless log.word_similarity /
log.analogy say otherwise. The output table
(word2vec's negative-sampling context vectors, syn1neg) is output_embeddings.npy, scored like an untied LM head.
One worker thread and a fixed hash make a run repeatable (gensim's own requirement); `--workers` trades that for
speed. The run directory holds what an LM run's does for its final table: summary.json (status, wall time,
words/s, the geometry and benchmark keys), metrics.jsonl (one row), embeddings.npy, tokens.tsv, projector
files, a one-frame embedding_space.html and an offline W&B run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import config as C
from ..analysis.evals import check_similarity_files
from ..analysis.metrics import TrainingGeometry
from ..config import Config, ConfigError
from ..data.corpus import TextCorpus, make_corpus
from ..outputs import snapshots
from ..outputs.exports import export_projector
from ..outputs.lock import RunLock
from ..outputs.rundir import write_tokens_tsv
from ..outputs.sinks import JsonlSink, WandbSink, write_json_atomic
from ..outputs.viewer import write_page

METHODS = ("word2vec", "fasttext")
SENTENCE = 10_000  # gensim's MAX_WORDS_IN_BATCH: a longer sentence is cut there
DEFAULT_EPOCHS = 20  # where the anchor's curve on builtin:wiki_sample flattens (docs/text.md: 5, 10, 20, 40 measured)


@dataclass(frozen=True)
class Spec:
    """A baseline's own settings: gensim's word2vec defaults but skip-gram, more epochs (a small corpus), the
    vocabulary's min_count and `<unk>` left out of the stream."""

    method: str = "word2vec"
    sg: bool = True  # skip-gram (true) or CBOW
    dim: int = 100
    epochs: int = DEFAULT_EPOCHS
    window: int = 5
    negative: int = 5
    workers: int = 1
    keep_unk: bool = False  # a word vocabulary's <unk> stays in the stream as a word (false: left out)

    def check(self) -> Spec:
        if self.method not in METHODS:
            raise ConfigError(f"--method: got {self.method!r}; allowed: {' | '.join(METHODS)}")
        for key in ("sg", "keep_unk"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"--{key}: got {getattr(self, key)!r}; allowed: true/false")
        for key, lo in (("dim", 1), ("epochs", 1), ("window", 1), ("negative", 1), ("workers", 1)):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < lo:
                raise ConfigError(f"--{key}: got {getattr(self, key)!r}; allowed: an integer >= {lo}")
        return self


def _stable_hash(s: str) -> int:
    return zlib.crc32(s.encode("utf-8"))  # gensim seeds each word's initial vector from hash(word + seed)


class TokenStream:
    """The training stream as gensim sentences, restartable (gensim reads it once per epoch)."""

    def __init__(self, ids: np.ndarray, tokens: list[str]):
        self.ids, self.tokens = ids, np.asarray(tokens, dtype=object)

    def __len__(self) -> int:
        return -(-len(self.ids) // SENTENCE)

    def __iter__(self):
        for s in range(0, len(self.ids), SENTENCE):
            yield self.tokens[np.asarray(self.ids[s : s + SENTENCE], np.int64)].tolist()


def training_ids(corpus: TextCorpus, keep_unk: bool) -> np.ndarray:
    """The token ids gensim reads: the training stream, a word vocabulary's <unk> left out unless keep_unk."""
    unk = getattr(corpus, "unk_id", None)
    ids = np.asarray(corpus.train)
    return ids if keep_unk or unk is None else ids[ids != unk]


def fit(corpus: TextCorpus, spec: Spec, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(E, E_out, seconds): gensim's model trained on the corpus's training stream, rows in token-id order."""
    from gensim.models import FastText, Word2Vec

    ids = training_ids(corpus, spec.keep_unk)
    stream = TokenStream(ids, corpus.tokens)
    counts = np.bincount(ids, minlength=corpus.vocab_size)
    freq = {t: int(c) for t, c in zip(corpus.tokens, counts) if c > 0}
    cls = Word2Vec if spec.method == "word2vec" else FastText
    model = cls(
        vector_size=spec.dim,
        window=spec.window,
        negative=spec.negative,
        sg=int(spec.sg),
        min_count=1,
        workers=spec.workers,
        seed=seed,
        hashfxn=_stable_hash,
    )
    model.build_vocab_from_freq(freq, corpus_count=len(stream))
    t0 = time.perf_counter()
    model.train(stream, total_examples=len(stream), total_words=len(ids), epochs=spec.epochs)
    seconds = time.perf_counter() - t0
    V, wv = corpus.vocab_size, model.wv
    E, E_out = np.zeros((V, spec.dim), np.float32), np.zeros((V, spec.dim), np.float32)
    for i, tok in enumerate(corpus.tokens[:V]):
        j = wv.key_to_index.get(tok)
        if j is not None:
            E[i], E_out[i] = wv.vectors[j], model.syn1neg[j]
    return E, E_out, seconds


def _settings(cfg: Config, spec: Spec) -> dict:
    return {"config": C.to_dict(cfg), "baseline": dataclasses.asdict(spec)}


def _same(stored: dict, cfg: Config, spec: Spec) -> bool:
    """Whether a finished baseline was made with these settings: the spec, and every config key a resumed run
    could not change either (names, places, progress bars and the like may differ)."""
    free = set(C.keys_with(resumable=True))
    keep = lambda d: {k: v for k, v in C.flatten(d).items() if k not in free}
    now = json.loads(json.dumps(_settings(cfg, spec)))
    return stored.get("baseline") == now["baseline"] and keep(stored.get("config", {})) == keep(now["config"])


SHIPPED_BENCHMARKS = {"word_similarity": ("wordsim353", "simlex999"), "analogy": ("google",)}


def with_benchmarks(cfg: Config) -> Config:
    """On a word vocabulary, the shipped benchmarks where log.word_similarity / log.analogy are null (an empty
    list scores none)."""
    if cfg.data.tokenizer != "word" or cfg.data.tokenizer_file:
        return cfg
    given = {k: v for k, v in SHIPPED_BENCHMARKS.items() if getattr(cfg.log, k) is None}
    return dataclasses.replace(cfg, log=dataclasses.replace(cfg.log, **given)) if given else cfg


def train_curve(cfg: Config, spec: Spec, epochs: list[int], overwrite: bool = False) -> list[dict[str, Any]]:
    """One baseline per number of epochs, in `<name>-e<N>` each: the anchor's curve over epochs."""
    return [
        train_baseline(
            dataclasses.replace(cfg, name=f"{cfg.name}-e{n}"), dataclasses.replace(spec, epochs=n), overwrite
        )
        for n in epochs
    ]


def train_baseline(cfg: Config, spec: Spec, overwrite: bool = False) -> dict[str, Any]:
    """Fit the baseline and write its run directory (a finished one with the same settings is returned as it is;
    other settings in an existing directory are refused unless `overwrite`)."""
    spec.check()
    if cfg.data.kind != "text":
        raise ConfigError(
            f"data.kind: got {cfg.data.kind!r}; allowed: 'text' (a baseline trains on a prepared corpus's tokens), "
            "e.g. --data.kind=text --data.path=builtin:wiki_sample --data.tokenizer=word"
        )
    cfg = with_benchmarks(cfg)
    check_similarity_files(cfg)
    run_dir = cfg.run_dir
    done = _finished(run_dir)
    if done is not None and not overwrite:
        if _same(done["settings"], cfg, spec):
            print(f"{run_dir}: already finished with these settings", file=sys.stderr)
            return done["summary"]
        raise ConfigError(
            f"{run_dir}: a baseline with other settings is there; allowed: the same settings, another --name, "
            "or --overwrite=true"
        )
    ours = os.path.exists(os.path.join(run_dir, "baseline.json"))  # a baseline that did not finish is redone
    if os.path.exists(os.path.join(run_dir, "metrics.jsonl")) and not ours and not overwrite:
        raise ConfigError(
            f"{run_dir}: holds a run that is not a baseline; allowed: another --name or --out_dir, or --overwrite=true"
        )
    corpus = make_corpus(cfg, show=cfg.log.progress)  # bad data settings stop here, before anything is written
    geometry = TrainingGeometry(cfg, corpus)
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        if os.path.isdir(run_dir) and (overwrite or ours):
            shutil.rmtree(run_dir)
        os.makedirs(run_dir, exist_ok=True)
        return _run(cfg, spec, corpus, geometry, run_dir)
    finally:
        lock.release()


def _finished(run_dir: str) -> dict | None:
    try:
        with open(os.path.join(run_dir, "baseline.json")) as f:
            settings = json.load(f)
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    return {"settings": settings, "summary": summary} if summary.get("status") == "finished" else None


def _run(cfg: Config, spec: Spec, corpus: TextCorpus, geometry: TrainingGeometry, run_dir: str) -> dict[str, Any]:
    with open(os.path.join(run_dir, "config.yaml"), "w") as f:
        f.write(C.dump_yaml(dataclasses.replace(cfg, steps=spec.epochs)))
    write_json_atomic(os.path.join(run_dir, "baseline.json"), _settings(cfg, spec))
    write_tokens_tsv(run_dir, corpus)
    t0 = time.perf_counter()
    E, E_out, fit_s = fit(corpus, spec, cfg.seed)
    scalars, rich = geometry(E, spec.epochs, E_out)
    stream_tokens = len(training_ids(corpus, spec.keep_unk))
    words = stream_tokens * spec.epochs
    summary = {
        **scalars,
        "status": "finished",
        "step": spec.epochs,
        "steps": spec.epochs,
        "wall_time_s": time.perf_counter() - t0,
        "fit_s": fit_s,
        "words_per_s": words / max(fit_s, 1e-9),
        "params": int(E.size + E_out.size),
        "baseline/stream_tokens": stream_tokens,
        "run_dir": os.path.abspath(run_dir),
        **{f"baseline/{k}": v for k, v in dataclasses.asdict(spec).items()},
        **corpus.info,
    }
    sink = None
    if cfg.log.wandb:
        settings = {**C.flatten(C.to_dict(cfg)), **{f"baseline.{k}": v for k, v in dataclasses.asdict(spec).items()}}
        sink = WandbSink(
            run_dir,
            settings,
            project=cfg.log.project,
            name=cfg.name,
            mode=cfg.log.mode,
            entity=cfg.log.entity,
            group=cfg.log.group,
            tags=(*cfg.log.tags, "baseline", spec.method),
            init_timeout=cfg.log.init_timeout,
        )
    jsonl = JsonlSink(run_dir)
    jsonl.log(spec.epochs, scalars)
    np.save(os.path.join(run_dir, "embeddings.npy"), E)
    np.save(os.path.join(run_dir, "output_embeddings.npy"), E_out)
    export_projector(run_dir, E, corpus, sink, step=spec.epochs)
    rows = snapshots.snapshot_rows(corpus.counts)
    snapshots.write_frame(run_dir, spec.epochs, rows, E[rows], np.full(len(rows), 1, np.int32))
    page = write_page(run_dir)
    jsonl.summary(summary)
    jsonl.close("finished")
    if sink is not None:
        sink.log(spec.epochs, scalars)
        sink.log_rich(spec.epochs, {**rich, "embedding_space": {"kind": "html", "path": page}})
        sink.summary(summary)
        sink.close("finished")
        summary["_wandb_sync"] = sink.sync_hint()
    return summary
