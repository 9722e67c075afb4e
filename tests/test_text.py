"""Real text at scale: prepared (tokenised once, memory-mapped) corpora from text, JSON lines, Parquet and
Hugging Face datasets, pretrained tokenizers, streamed batches, and bad input refused before anything is written."""

import glob
import json
import os

import jax
import numpy as np
import pytest
from conftest import TINY

from embjax.cli import prepare_main, train_main
from embjax.config import ConfigError, load_config
from embjax.data.corpus import make_corpus
from embjax.data.prepare import prepare, read_meta, token_dtype

WORDS = ["embedding", "token", "vector", "matrix", "cosine", "norm", "growth", "scale", "rare", "row"]


def _fmix32(x: int) -> int:
    """murmur3's 32-bit finaliser, by hand in Python integers (the reference for the document split)."""
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & 0xFFFFFFFF
    return x ^ (x >> 16)


def _paragraphs(n, seed=0, words=12):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, words)) + f" doc{i}." for i in range(n)]


def _cfg(tmp_path, **data):
    return load_config(
        None,
        {
            "data.kind": "text",
            "data.seq_len": 16,
            "data.batch_size": 4,
            "data.cache_dir": str(tmp_path / "cache"),
            **{f"data.{k}": v for k, v in data.items()},
        },
    )


def test_prepare_splits_by_document_and_counts_the_training_stream(tmp_path):
    docs = _paragraphs(200)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("\n\n".join(docs[:120]) + "\n")
    (tmp_path / "c" / "b.txt").write_text("\n\n\n".join(docs[120:]))
    cfg = _cfg(tmp_path, path=str(tmp_path / "c"), tokenizer="byte", vocab_size=256, eval_fraction=0.2)
    folder = prepare(cfg.data, show=False)
    meta = read_meta(folder)
    held = [i for i in range(200) if _fmix32((i + 0x9E3779B9) & 0xFFFFFFFF) < 0.2 * 2**32]
    assert meta["documents"] == 200 and meta["split"]["by"] == "document" and meta["dtype"] == "uint16"
    assert meta["split"]["eval_documents"] == len(held) and 20 < len(held) < 60
    train = np.fromfile(os.path.join(folder, "train.bin"), np.uint16)
    ev = np.fromfile(os.path.join(folder, "eval.bin"), np.uint16)
    # bytes: the streams are exactly the documents' UTF-8, each followed by a blank line, split by the hash
    assert bytes(ev.astype(np.uint8)).decode() == "".join(docs[i] + "\n\n" for i in held)
    assert bytes(train.astype(np.uint8)).decode() == "".join(docs[i] + "\n\n" for i in range(200) if i not in held)
    np.testing.assert_array_equal(meta["counts"], np.bincount(train, minlength=256))
    corpus = make_corpus(cfg)
    np.testing.assert_array_equal(corpus.counts, np.bincount(train, minlength=256))  # frequencies from the file
    assert corpus.info["data/train_tokens"] == train.size and corpus.encode("ab") == [97, 98]


def test_batches_are_windows_of_the_file_and_a_pure_function_of_key_and_step(tmp_path):
    (tmp_path / "a.txt").write_text("\n\n".join(_paragraphs(300, seed=1)))
    cfg = _cfg(tmp_path, path=str(tmp_path / "a.txt"), vocab_size=300)
    corpus = make_corpus(cfg)
    train = np.fromfile(os.path.join(corpus.folder, "train.bin"), np.uint16)
    assert corpus.tables == {}  # nothing of the corpus is put on the device: windows are read per step
    batch = np.asarray(jax.jit(lambda k, s: corpus.batch({}, k, s, 4))(jax.random.key(0), 3))
    assert batch.shape == (4, 17) and batch.dtype == np.int32
    windows = np.lib.stride_tricks.sliding_window_view(train, 17)
    for row in batch:  # every row is some window of the training stream
        assert (windows == row).all(axis=1).any()
    np.testing.assert_array_equal(batch, np.asarray(corpus.batch({}, jax.random.key(0), 3, 4)))
    assert not np.array_equal(batch, np.asarray(corpus.batch({}, jax.random.key(0), 4, 4)))
    # vmapped over members' keys (a sweep group), each member sees exactly its own batch
    keys = jax.random.split(jax.random.key(7), 3)
    both = np.asarray(jax.jit(jax.vmap(lambda k: corpus.batch({}, k, 5, 4)))(keys))
    for m in range(3):
        np.testing.assert_array_equal(both[m], np.asarray(corpus.batch({}, keys[m], 5, 4)))
    reads = []
    corpus._windows = lambda bits, read=corpus._windows: reads.append(np.shape(bits)) or read(bits)

    def steps(key):  # five train steps' batches in one compiled scan, as the loop dispatches them
        return jax.lax.scan(lambda c, s: (c, corpus.batch({}, key, s, 4)), 0, np.arange(5))[1]

    np.asarray(jax.jit(steps)(jax.random.key(1)))
    assert reads == [(4, 2)] * 5  # one batch of B windows read per step, nothing more
    ev = corpus.eval_batches(None, 2, 4)
    held = np.fromfile(os.path.join(corpus.folder, "eval.bin"), np.uint16)
    np.testing.assert_array_equal(ev.reshape(-1, 17)[0], held[:17])


def test_prepared_once_then_reused_and_a_changed_source_is_prepared_anew(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("\n\n".join(_paragraphs(100)))
    cfg = _cfg(tmp_path, path=str(path), tokenizer="byte", vocab_size=256)
    first = prepare(cfg.data, show=False)
    stamp = os.stat(os.path.join(first, "train.bin")).st_mtime_ns
    assert prepare(cfg.data, show=False) == first
    assert os.stat(os.path.join(first, "train.bin")).st_mtime_ns == stamp
    path.write_text("\n\n".join(_paragraphs(100, seed=5)))
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    second = prepare(cfg.data, show=False)
    assert second != first and read_meta(second)["source"]["sha1"] != read_meta(first)["source"]["sha1"]


@pytest.mark.slow
def test_json_lines_parquet_and_datasets_give_the_same_tokens(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = _paragraphs(80, seed=2)
    with open(tmp_path / "c.jsonl", "w") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({"id": i, "body": d}) + "\n")
    pq.write_table(pa.table({"body": docs, "id": list(range(80))}), tmp_path / "c.parquet", row_group_size=16)
    datasets.Dataset.from_dict({"body": docs}).save_to_disk(str(tmp_path / "saved"))
    sources = {
        "jsonl": {"path": str(tmp_path / "c.jsonl")},
        "parquet": {"path": str(tmp_path / "c.parquet")},
        "saved": {"dataset": str(tmp_path / "saved")},
        "builder": {"dataset": "json", "path": str(tmp_path / "c.jsonl")},
    }
    streams = {}
    for name, src in sources.items():
        folder = prepare(_cfg(tmp_path, tokenizer="byte", vocab_size=256, text_field="body", **src).data, show=False)
        meta = read_meta(folder)
        assert meta["documents"] == 80, name
        streams[name] = (meta["source"]["sha1"], open(os.path.join(folder, "train.bin"), "rb").read())
    assert len(set(streams.values())) == 1  # the same documents -> the same text hash and token stream


@pytest.mark.slow
def test_a_pretrained_tokenizer_file_defines_v_and_pads_to_uint32(tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {w: i for i, w in enumerate(["[UNK]", *WORDS, "."] + [f"doc{i}" for i in range(50)])}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "a.txt").write_text("\n\n".join(_paragraphs(60)))
    cfg = _cfg(tmp_path, path=str(tmp_path / "a.txt"), tokenizer_file=str(tmp_path / "tokenizer.json"))
    assert cfg.data.vocab_size == len(vocab)
    corpus = make_corpus(cfg)
    assert corpus.tokens[1] == "embedding" and corpus.encode("cosine norm") == [vocab["cosine"], vocab["norm"]]
    assert (
        np.bincount(np.fromfile(os.path.join(corpus.folder, "train.bin"), np.uint16), minlength=len(vocab))[vocab["."]]
        == corpus.counts[vocab["."]]
        > 0
    )
    big = _cfg(
        tmp_path, path=str(tmp_path / "a.txt"), tokenizer_file=str(tmp_path / "tokenizer.json"), vocab_size=70_000
    )
    assert token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.uint32
    padded = make_corpus(big)
    assert read_meta(padded.folder)["dtype"] == "uint32" and padded.counts.shape == (70_000,)
    assert int(np.asarray(padded.batch({}, jax.random.key(0), 0, 4)).max()) < len(vocab)
    with pytest.raises(ConfigError, match=f"at least {len(vocab)}"):
        _cfg(tmp_path, path=str(tmp_path / "a.txt"), tokenizer_file=str(tmp_path / "tokenizer.json"), vocab_size=10)
    # saved truncation and padding are turned off: every document is tokenised whole, no pad id in the stream
    tok.enable_truncation(max_length=3)
    tok.enable_padding(pad_id=0, length=8)
    tok.save(str(tmp_path / "truncating.json"))
    whole = make_corpus(_cfg(tmp_path, path=str(tmp_path / "a.txt"), tokenizer_file=str(tmp_path / "truncating.json")))
    assert read_meta(whole.folder)["split"] == read_meta(corpus.folder)["split"]
    # ids with a gap: V is the largest id + 1, not the number of entries
    Tokenizer(WordLevel({"[UNK]": 0, "a": 1, "b": 7}, unk_token="[UNK]")).save(str(tmp_path / "gap.json"))
    assert _cfg(tmp_path, path=str(tmp_path / "a.txt"), tokenizer_file=str(tmp_path / "gap.json")).data.vocab_size == 8


def test_too_few_documents_hold_out_the_tail(tmp_path):
    (tmp_path / "a.txt").write_text(" ".join(_paragraphs(30)))  # no blank line: one document
    folder = prepare(_cfg(tmp_path, path=str(tmp_path / "a.txt"), tokenizer="byte", vocab_size=256).data, show=False)
    meta = read_meta(folder)
    text = (tmp_path / "a.txt").read_text() + "\n\n"
    n_eval = int(len(text) * 0.1)
    assert meta["split"]["by"] == "tail" and meta["split"]["eval_tokens"] == n_eval
    ev = np.fromfile(os.path.join(folder, "eval.bin"), np.uint16)
    assert bytes(ev.astype(np.uint8)).decode() == text[-n_eval:]
    np.testing.assert_array_equal(
        meta["counts"], np.bincount(np.frombuffer(text[:-n_eval].encode(), np.uint8), minlength=256)
    )


BAD = [
    ("missing", lambda p: [f"--data.path={p}/nope.txt"], "data.path"),
    ("empty", lambda p: [f"--data.path={p}/empty.txt", "--data.tokenizer=byte", "--data.vocab_size=256"], "no text"),
    ("no field", lambda p: [f"--data.path={p}/c.jsonl", "--data.text_field=text"], "data.text_field"),
    ("parquet field", lambda p: [f"--data.path={p}/c.parquet", "--data.text_field=text"], "data.text_field"),
    ("not text", lambda p: [f"--data.path={p}/c.parquet", "--data.text_field=n"], "not text"),
    ("not json", lambda p: [f"--data.path={p}/bad.jsonl"], "not JSON"),
    ("tokenizer", lambda p: [f"--data.path={p}/a.txt", f"--data.tokenizer_file={p}/tok.json"], "does not parse"),
    (
        "id beyond V",
        lambda p: [f"--data.path={p}/a.txt", f"--data.tokenizer_file={p}/ok.json", "--data.vocab_size=3"],
        "data.vocab_size",
    ),
]


@pytest.mark.parametrize("name,args,says", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_exit_2_and_nothing_written(name, args, says, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    (tmp_path / "empty.txt").write_text("\n \n")
    (tmp_path / "a.txt").write_text("cosine norm\n\nrow")
    (tmp_path / "c.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    pq.write_table(pa.table({"body": ["x"], "n": [3]}), tmp_path / "c.parquet")
    (tmp_path / "tok.json").write_text('{"model": 3}')
    Tokenizer(WordLevel({"[UNK]": 0, "a": 1, "b": 2, "c": 3, "d": 4}, unk_token="[UNK]")).save(
        str(tmp_path / "ok.json")
    )
    cache = tmp_path / "cache"
    common = [
        "--data.kind=text",
        f"--data.cache_dir={cache}",
        f"--out_dir={tmp_path}/o",
        "--log.wandb=false",
        "--log.progress=false",
    ]
    for main in (train_main, prepare_main):
        assert main(common + args(tmp_path)) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err, err
    assert not os.path.exists(tmp_path / "o" / "default") and glob.glob(f"{cache}/*") == []


@pytest.mark.slow
def test_a_run_trains_on_a_prepared_corpus_from_the_cli(tmp_path):
    (tmp_path / "a.txt").write_text("\n\n".join(_paragraphs(400, seed=3)))
    args = [a for a in TINY if not a.startswith("--data.vocab_size")] + [
        "--data.kind=text",
        f"--data.path={tmp_path}/a.txt",
        "--data.vocab_size=300",
        f"--data.cache_dir={tmp_path}/cache",
        f"--out_dir={tmp_path}/o",
        "--log.wandb=false",
        "--name=text",
    ]
    assert train_main(args) == 0
    run = tmp_path / "o" / "text"
    summary = json.load(open(run / "summary.json"))
    assert summary["status"] == "finished" and summary["eval/loss"] < np.log(300)
    (folder,) = glob.glob(f"{tmp_path}/cache/a.txt-*")
    counts = read_meta(folder)["counts"]
    rows = [line.split("\t") for line in open(run / "tokens.tsv").read().splitlines()[1:]]
    assert [float(r[2]) for r in rows] == [float(c) for c in counts] + [0.0] * (300 - len(counts))
    assert json.load(open(run / "corpus.json"))["prepared"] == os.path.basename(folder)
    assert train_main(args + ["--steps=35"]) == 0  # the same corpus: extended
    (tmp_path / "a.txt").write_text("\n\n".join(_paragraphs(400, seed=4)))  # the source changes under the run
    assert train_main(args + ["--steps=40", "--log.progress=false"]) == 2
    assert json.load(open(run / "summary.json"))["step"] == 35  # refused before anything was written


def test_a_truncated_or_altered_token_file_is_named_not_trained_on(tmp_path, capsys):
    """meta.json records each token file's size and SHA-1: a train.bin cut to a third (an interrupted copy) is
    refused by its size on every open, a same-size altered one by its SHA-1 (checked once per change of the file:
    verified.json remembers it), each in one line naming the file and how to prepare it anew, exit 2."""
    import hashlib

    path = tmp_path / "a.txt"
    path.write_text("\n\n".join(_paragraphs(200)))
    cfg = _cfg(tmp_path, path=str(path), tokenizer="byte", vocab_size=256)
    folder = prepare(cfg.data, show=False)
    train = os.path.join(folder, "train.bin")
    meta = read_meta(folder)
    assert meta["files"]["train.bin"] == {
        "bytes": os.path.getsize(train),
        "sha1": hashlib.sha1(open(train, "rb").read()).hexdigest(),
    }
    make_corpus(cfg)  # opens, verifies and remembers it
    assert json.load(open(os.path.join(folder, "verified.json")))["train.bin"][0] == os.path.getsize(train)
    args = [
        "--data.kind=text",
        f"--data.path={path}",
        "--data.tokenizer=byte",
        "--data.vocab_size=256",
        "--data.seq_len=16",
        "--data.batch_size=4",
        f"--data.cache_dir={tmp_path / 'cache'}",
        f"--out_dir={tmp_path / 'runs'}",
        "--log.wandb=false",
        "--steps=2",
    ]
    data = bytearray(open(train, "rb").read())
    with open(train, "wb") as f:
        f.write(data[: len(data) // 3])
    assert train_main(args) == 2
    err = capsys.readouterr().err.strip()
    want = f"{len(data) // 3:,} bytes, meta.json says {len(data):,}"
    assert err == (
        f"error: {train}: damaged prepared corpus ({want}); allowed: the files as prepared (delete {folder} and run "
        "again to prepare it anew)"
    )
    data[100] ^= 1
    with open(train, "wb") as f:
        f.write(data)
    assert train_main(args) == 2
    assert "its SHA-1 differs from meta.json's" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "default").exists()
