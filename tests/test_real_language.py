"""Real language: the word-level vocabulary, the corpora that install with the suite, compressed and non-text
corpus files, the similarity and analogy benchmarks against gensim's own evaluation, and the word2vec baseline."""

import bz2
import collections
import gzip
import json
import lzma
import os
import re

import numpy as np
import pytest
from conftest import run_cli
from test_text import _cfg, _fmix32

from embjax.data.prepare import prepare, read_meta

DOCS = [
    "The cat sat on the mat. The cat ran!",
    "A dog, a cat and a bird: the dog barked.",
    "Dogs and cats; cats and DOGS. Zebra-crossing 1990.",
    "the bird sang; the cat slept",
    "Mat, mat, mat. Unseen-words only here: quokka quokka.",
    "cat dog bird mat the a and",
]


def _held(n, frac):
    return [_fmix32((i + 0x9E3779B9) & 0xFFFFFFFF) < frac * 2**32 for i in range(n)]


def test_the_word_vocabulary_comes_from_the_training_documents(tmp_path):
    """Against a hand reference (Python's re and Counter): lowercased \\w+ words, the V - 2 most frequent words of
    the training documents (ties by the word) after <unk> = 0 and <eos> = 1, an <eos> after every document, every
    other word <unk>, the training stream's counts and each split's OOV rate."""
    frac, V = 0.35, 9
    held = _held(len(DOCS), frac)
    assert any(held) and not all(held)  # both sides hold documents (the split rule, by hand)
    (tmp_path / "c.txt").write_text("\n\n".join(DOCS) + "\n")
    cfg = _cfg(tmp_path, path=str(tmp_path / "c.txt"), tokenizer="word", vocab_size=V, eval_fraction=frac)
    folder = prepare(cfg.data, show=False)
    meta = read_meta(folder)
    words = [re.findall(r"\w+", d.lower()) for d in DOCS]
    counts = collections.Counter(w for ws, h in zip(words, held) if not h for w in ws)
    vocab = ["<unk>", "<eos>"] + sorted(counts, key=lambda w: (-counts[w], w))[: V - 2]
    index = {w: i for i, w in enumerate(vocab)}
    want = {s: [] for s in ("train", "eval")}
    for ws, h in zip(words, held):
        want["eval" if h else "train"] += [index.get(w, 0) for w in ws] + [1]
    for split in ("train", "eval"):
        got = np.fromfile(os.path.join(folder, f"{split}.bin"), np.uint16).tolist()
        assert got == want[split], split
        ids = np.asarray(want[split])
        assert meta["oov"][split] == pytest.approx((ids == 0).sum() / (ids != 1).sum())
    assert meta["counts"] == np.bincount(want["train"], minlength=V).tolist()
    assert meta["tokenizer"]["kind"] == "word" and meta["split"]["by"] == "document"
    assert held[4] and "quokka" not in vocab  # a word seen only in a held-out document is not in the vocabulary
    tokens = [line.split("\t")[1] for line in _tokens_tsv(tmp_path, cfg)]
    assert tokens == vocab


def _tokens_tsv(tmp_path, cfg):
    from embjax.data.corpus import make_corpus
    from embjax.outputs.rundir import write_tokens_tsv

    corpus = make_corpus(cfg)
    write_tokens_tsv(str(tmp_path), corpus)
    return (tmp_path / "tokens.tsv").read_text().splitlines()[1:]


def test_a_vocabulary_larger_than_the_training_words_is_refused(tmp_path):
    (tmp_path / "c.txt").write_text("\n\n".join(DOCS))
    r = run_cli(
        "experiments.prepare",
        "--data.kind=text",
        f"--data.path={tmp_path / 'c.txt'}",
        "--data.tokenizer=word",
        "--data.vocab_size=500",
        f"--data.cache_dir={tmp_path / 'cache'}",
    )
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "distinct words; allowed: at most" in r.stderr


@pytest.mark.parametrize("ext", [".gz", ".bz2", ".xz", ".zst"])
def test_compressed_corpora_prepare_as_the_plain_file(tmp_path, ext):
    import zstandard

    text = ("\n\n".join(DOCS * 20) + "\n").encode()
    (tmp_path / "plain.txt").write_bytes(text)
    pack = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress, ".zst": zstandard.compress}[ext]
    (tmp_path / f"packed.txt{ext}").write_bytes(pack(text))
    folders = [
        prepare(_cfg(tmp_path, path=str(tmp_path / f), tokenizer="byte", vocab_size=256).data, show=False)
        for f in ("plain.txt", f"packed.txt{ext}")
    ]
    a, b = (read_meta(f) for f in folders)
    assert a["source"]["sha1"] == b["source"]["sha1"] and a["documents"] == b["documents"] == len(DOCS) * 20
    for split in ("train.bin", "eval.bin"):
        assert open(os.path.join(folders[0], split), "rb").read() == open(os.path.join(folders[1], split), "rb").read()


@pytest.mark.parametrize(
    "name, data, why",
    [
        ("corpus.txt", gzip.compress(b"some text\n" * 50, mtime=0), "byte 0x8b at offset 1 does not decode"),
        (
            "corpus.txt.gz",
            gzip.compress(b"ok text\n" * 9 + b"\xff bad\n", mtime=0),
            "byte 0xff at offset 72 does not decode",
        ),
        ("corpus.txt", b"text with a\x00NUL\n" * 3, "a NUL byte at offset 11"),
        ("corpus.jsonl", b'{"text": "caf\xe9"}\n', "byte 0xe9 at offset 13 does not decode"),
        ("corpus.txt.gz", b"not gzip at all", "does not decompress as gzip"),
    ],
    ids=["gzip-bytes-as-txt", "gzip-bad-utf8", "nul", "latin1-jsonl", "gz-not-gzip"],  # pytest-xdist: stable ids
)
def test_a_file_that_is_not_text_is_refused_in_one_line(tmp_path, name, data, why):
    """Through the real CLI: exit 2, one line naming the file and where, no run directory, no prepared corpus."""
    (tmp_path / name).write_bytes(data)
    r = run_cli(
        "experiments.train",
        "--data.kind=text",
        f"--data.path={tmp_path / name}",
        "--data.tokenizer=byte",
        "--data.vocab_size=256",
        f"--data.cache_dir={tmp_path / 'cache'}",
        f"--out_dir={tmp_path / 'runs'}",
        "--log.wandb=false",
        "--log.progress=false",
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and why in r.stderr and str(tmp_path / name) in r.stderr, r.stderr
    assert not (tmp_path / "runs" / "default").exists()
    assert not list(tmp_path.glob("cache/*/meta.json"))


def test_an_unknown_builtin_corpus_lists_the_names(tmp_path):
    r = run_cli("experiments.prepare", "--data.kind=text", "--data.path=builtin:wikipedia", "--data.tokenizer=word")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "builtin:wiki_sample | builtin:lee_news" in r.stderr


@pytest.mark.slow
def test_both_builtin_corpora_prepare_with_their_documents(tmp_path):
    """In a fresh cache: 106 Wikipedia articles of >= 50 words (of 206 pages: redirects and stubs left out, as
    gensim's WikiCorpus does), 300 Lee news stories; meta.json names the source."""
    for path, docs, V in (("builtin:wiki_sample", 106, 8192), ("builtin:lee_news", 300, 2048)):
        meta = read_meta(prepare(_cfg(tmp_path, path=path, tokenizer="word", vocab_size=V).data, show=False))
        assert meta["documents"] == docs and meta["source"]["path"] == path
        assert meta["split"]["train_documents"] + meta["split"]["eval_documents"] == docs
        assert 0 < meta["oov"]["train"] < meta["oov"]["eval"] < 0.5
    assert sum(meta["counts"]) == meta["split"]["train_tokens"]


def _gensim_scores(E, tokens):
    """gensim 4.4's own evaluation of the same vectors (case_insensitive, dummy4unknown off, every row)."""
    from gensim.models import KeyedVectors
    from gensim.test.utils import datapath

    kv = KeyedVectors(E.shape[1])
    kv.add_vectors(tokens, E.astype(np.float32))
    out = {}
    for name, f in (("wordsim353", "wordsim353.tsv"), ("simlex999", "simlex999.txt")):
        _, rho, _ = kv.evaluate_word_pairs(datapath(f), restrict_vocab=len(tokens), dummy4unknown=False)
        out[f"{name}/spearman"] = rho.statistic
    acc, sections = kv.evaluate_word_analogies(datapath("questions-words.txt"), restrict_vocab=len(tokens))
    out["google/accuracy"] = acc
    out["google/questions"] = len(sections[-1]["correct"]) + len(sections[-1]["incorrect"])
    return out


def _read_tokens(run_dir):
    return [line.split("\t")[1] for line in open(os.path.join(run_dir, "tokens.tsv")).read().splitlines()[1:]]


def _assert_equal_to_gensim(summary, run_dir):
    tokens = _read_tokens(run_dir)
    for table, file in (("", "embeddings.npy"), ("_out", "output_embeddings.npy")):
        want = _gensim_scores(np.load(os.path.join(run_dir, file)), tokens)
        for key in ("wordsim353/spearman", "simlex999/spearman"):
            assert summary[f"word_sim{table}/{key}"] == pytest.approx(want[key], abs=1e-6), (table, key)
        assert summary[f"analogy{table}/google/questions"] == want["google/questions"]
        assert summary[f"analogy{table}/google/accuracy"] == want["google/accuracy"], table  # exactly
    return want


BENCH = ["--log.word_similarity=[wordsim353, simlex999]", "--log.analogy=google"]


@pytest.mark.slow
def test_the_baseline_and_an_untied_lm_score_both_tables_as_gensim_does(tmp_path):
    """word2vec on builtin:wiki_sample's training tokens (a trained table with analogies right) and a short untied
    LM run: every benchmark key of both tables equals gensim's evaluate_word_pairs / evaluate_word_analogies of
    the written tables; the LM logs them at every metrics step, in summary.json and its offline W&B run."""
    from embjax.outputs.sinks import read_wandb_history

    data = ["--data.kind=text", "--data.path=builtin:wiki_sample", "--data.tokenizer=word", "--data.vocab_size=8192"]
    r = run_cli(
        "experiments.baseline",
        "--method=word2vec",
        "--sg=false",
        "--epochs=3",
        "--name=word2vec",
        *data,
        *BENCH,
        f"--out_dir={tmp_path}",
    )
    assert r.returncode == 0, r.stderr
    run = tmp_path / "word2vec"
    summary = json.loads((run / "summary.json").read_text())
    want = _assert_equal_to_gensim(summary, run)
    assert want["google/accuracy"] > 0 and want["google/questions"] > 1000
    assert summary["words_per_s"] > 0 and summary["baseline/method"] == "word2vec"
    for name in ("embedding_space.html", "vectors.tsv", "metadata.tsv", "embeddings.w2v.txt", "metrics.jsonl"):
        assert (run / name).exists(), name
    (wb,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    assert wb.stat().st_size > 0

    lm = [*data, *BENCH, "--model.tie_embeddings=false", "--model.embed_dim=32", "--model.num_layers=1"]
    lm += ["--data.seq_len=32", "--data.batch_size=8", "--steps=20", "--log.metrics_every=10", "--log.progress=false"]
    assert run_cli("experiments.train", *lm, f"--out_dir={tmp_path}", "--name=lm").returncode == 0
    summary = json.loads((tmp_path / "lm" / "summary.json").read_text())
    _assert_equal_to_gensim(summary, tmp_path / "lm")
    rows = [json.loads(x) for x in (tmp_path / "lm" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "analogy_out/google/accuracy" in r] == [0, 10, 20]
    (wb,) = (tmp_path / "lm" / "wandb").glob("offline-run-*/run-*.wandb")
    logged = {k for row in read_wandb_history(str(wb)) for k in row}
    assert {"word_sim/simlex999/spearman", "word_sim_out/wordsim353/spearman", "analogy_out/google/semantic"} <= logged


@pytest.mark.slow
def test_a_baseline_is_read_by_the_report_summary_csv_and_the_page(tmp_path):
    """A sweep given a baseline (--baseline=RUN_DIR): summary.csv gains its row (its own summary's values),
    report.md its line and the benchmarks' plot its reference line; the page of the baseline's directory is written
    like a run's."""
    import csv

    import yaml

    from embjax.outputs.viewer import page_data

    data = ["--data.kind=text", "--data.path=builtin:lee_news", "--data.tokenizer=word", "--data.vocab_size=2048"]
    r = run_cli(
        "experiments.baseline",
        "--dim=16",
        "--sg=false",
        "--epochs=2",
        "--name=word2vec",
        *data,
        *BENCH,
        f"--out_dir={tmp_path}",
        "--log.wandb=false",
    )
    assert r.returncode == 0, r.stderr
    base = {
        "steps": 6,
        "data": {
            "kind": "text",
            "path": "builtin:lee_news",
            "tokenizer": "word",
            "vocab_size": 2048,
            "seq_len": 16,
            "batch_size": 4,
            "eval_batches": 1,
        },  # fmt: skip
        "model": {"embed_dim": 16, "num_layers": 1, "num_heads": 2},
        "log": {
            "every": 3,
            "metrics_every": 3,
            "eval_every": 3,
            "progress": False,
            "wandb": False,
            "word_similarity": ["wordsim353", "simlex999"],
            "analogy": "google",
        },  # fmt: skip
        "checkpoint": {"every": 0},
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    sweep = {
        "name": "bs",
        "program": "experiments/train.py",
        "method": "grid",
        "parameters": {
            "config": {"value": str(tmp_path / "base.yaml")},
            "model.tie_embeddings": {"values": [True, False]},
        },
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    given = (str(tmp_path / "s.yaml"), f"--out_dir={tmp_path}", "--progress=false")
    r = run_cli("experiments.sweep", *given, f"--baseline={tmp_path / 'word2vec'}")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "bs" / "summary.csv")))
    assert [row["member"] for row in rows][-1] == "baseline:word2vec" and len(rows) == 3
    summary = json.loads((tmp_path / "word2vec" / "summary.json").read_text())
    for key in ("word_sim/simlex999/spearman", "word_sim_out/wordsim353/spearman", "analogy/google/questions"):
        assert float(rows[-1][key]) == pytest.approx(summary[key], rel=1e-12) and rows[1][key] != ""
    assert rows[0]["word_sim_out/simlex999/spearman"] == ""  # the tied member has no output head
    report = (tmp_path / "bs" / "report.md").read_text()
    assert "## Word similarity and analogies" in report and "| word2vec |" in report
    assert (tmp_path / "bs" / "benchmarks.png").stat().st_size > 10_000
    page = page_data([str(tmp_path / "word2vec")])
    assert page["members"][0]["F"] == 1 and page["members"][0]["N"] == 2048
    assert (tmp_path / "word2vec" / "embedding_space.html").stat().st_size > 1_000_000
    r = run_cli("experiments.report", str(tmp_path / "bs"), f"--baseline={tmp_path / 'nothing'}")
    assert r.returncode == 2 and "holds no summary.json" in r.stderr


def test_the_baseline_by_default_leaves_unk_out_of_its_stream_and_scores_the_shipped_benchmarks(tmp_path, monkeypatch):
    """The default anchor is skip-gram; the ids gensim reads are the training stream (read from train.bin) without
    <unk> (id 0), in order, and the <unk> row stays zero; --keep_unk=true feeds the whole stream; with no
    log.word_similarity / log.analogy on a word vocabulary, WordSim-353, SimLex-999 and Google are scored."""
    from embjax.cli import baseline_main
    from embjax.config import load_config
    from embjax.data.corpus import make_corpus
    from embjax.train import baseline

    data = ["--data.kind=text", "--data.path=builtin:lee_news", "--data.tokenizer=word", "--data.vocab_size=2048"]
    fed, original = [], baseline.TokenStream
    monkeypatch.setattr(
        baseline, "TokenStream", lambda ids, tokens: fed.append(np.asarray(ids)) or original(ids, tokens)
    )
    common = ["--dim=8", *data, f"--out_dir={tmp_path}", "--log.wandb=false", "--log.progress=false"]
    assert baseline_main([*common, "--epochs=1"]) == 0
    folder = make_corpus(load_config(None, data)).folder
    train = np.fromfile(os.path.join(folder, "train.bin"), read_meta(folder)["dtype"])
    assert _read_tokens(tmp_path / "word2vec-sg")[0] == "<unk>" and (train == 0).sum() > 100
    np.testing.assert_array_equal(fed[0], train[train != 0])
    E = np.load(tmp_path / "word2vec-sg" / "embeddings.npy")
    assert not E[0].any() and E[1].any()  # <unk>'s row: never trained
    s = json.loads((tmp_path / "word2vec-sg" / "summary.json").read_text())
    assert s["baseline/sg"] is True and s["baseline/keep_unk"] is False and s["baseline/stream_tokens"] == len(fed[0])
    for key in ("word_sim/wordsim353/spearman", "word_sim/simlex999/spearman", "analogy/google/accuracy"):
        assert isinstance(s[key], float) and isinstance(s[key.replace("/", "_out/", 1)], float), key
    assert baseline_main([*common, "--epochs=1", "--keep_unk=true", "--name=keep"]) == 0
    np.testing.assert_array_equal(fed[1], train)
    assert np.load(tmp_path / "keep" / "embeddings.npy")[0].any()

    assert baseline_main([*common, "--epochs=[1, 2]", "--name=curve"]) == 0  # the anchor's curve: a run each
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("curve")) == ["curve-e1", "curve-e2"]
    for n in (1, 2):
        s = json.loads((tmp_path / f"curve-e{n}" / "summary.json").read_text())
        assert s["status"] == "finished" and s["baseline/epochs"] == n and "word_sim/simlex999/spearman" in s
    assert baseline_main([*common, "--epochs=[1, 0]", "--name=bad"]) == 2 and not (tmp_path / "bad-e1").exists()


def test_document_shards_are_disjoint_and_a_train_fraction_keeps_whole_documents(tmp_path):
    """data.documents '0/2' and '1/2' hold the even and the odd documents (each split and worded on its own);
    data.train_fraction keeps the training stream's first documents up to an <eos>, with the vocabulary, the
    eval split and V unchanged, and counts that are the kept stream's."""
    from embjax.data.corpus import make_corpus

    docs = [f"doc{i} " + " ".join(["alpha", "beta", "gamma", "delta"][: 1 + i % 4] * 3) for i in range(80)]
    (tmp_path / "c.txt").write_text("\n\n".join(docs))
    tokens = []
    for shard in ("0/2", "1/2", "all"):
        cfg = _cfg(tmp_path, path=str(tmp_path / "c.txt"), tokenizer="word", vocab_size=8, documents=shard)
        meta = read_meta(prepare(cfg.data, show=False))
        assert meta["documents"] == (80 if shard == "all" else 40) and meta["source"]["documents"] == shard
        tokens.append(meta["split"]["train_tokens"] + meta["split"]["eval_tokens"])
    lengths = [len(d.split()) + 1 for d in docs]  # words + <eos>
    assert tokens == [sum(lengths[0::2]), sum(lengths[1::2]), sum(lengths)]
    cfg = _cfg(tmp_path, path=str(tmp_path / "c.txt"), tokenizer="word", vocab_size=8)
    full = make_corpus(cfg)
    cfg = _cfg(tmp_path, path=str(tmp_path / "c.txt"), tokenizer="word", vocab_size=8, train_fraction=0.25)
    part = make_corpus(cfg)
    assert part.tokens == full.tokens and np.array_equal(part.held_out, full.held_out)
    n = part.train.size
    assert np.array_equal(part.train, full.train[:n]) and part.train[-1] == 1  # whole documents: it ends at an <eos>
    assert 0.25 * full.train.size <= n < 0.25 * full.train.size + 14  # the first document end past a quarter
    assert np.array_equal(part.counts, np.bincount(full.train[:n], minlength=8))
    with pytest.raises(Exception, match=r"data.documents: got '2/2'; allowed"):
        _cfg(tmp_path, path=str(tmp_path / "c.txt"), documents="2/2")
