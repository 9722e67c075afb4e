"""Pretrained tables (embjax.model.pretrained): every format written by its own tool (gensim for word2vec and fastText,
safetensors, tokenizers, embjax's run writer) and read back; damaged files; streaming memory; alignment checked
against references (sklearn's PCA, NumPy's SVD in float64, sample statistics)."""

import json
import os
import tracemalloc
from types import SimpleNamespace

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from embjax.model.align import align
from embjax.model.pretrained import read_source
from embjax.model.source import EMBEDDING_NAMES, Source

KEYS = ["the", "Ġcat", "▁sat", "café", "naïve", "</s>", "on", "mat"]


def _kv(keys=KEYS, d=5, seed=0):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=d)
    kv.add_vectors(keys, np.random.default_rng(seed).standard_normal((len(keys), d)).astype(np.float32))
    return kv


def _one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(ValueError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# -- word2vec, fastText, GloVe ----------------------------------------------------------------------------


W2V = [(False, "w.txt", "word2vec_text"), (True, "w.bin", "word2vec_binary"), (False, "w.vec", "fasttext_vec")]


@pytest.mark.parametrize(("binary", "name", "kind"), W2V)
def test_word2vec_files_written_by_gensim_read_back_exactly(tmp_path, binary, name, kind):
    from gensim.models import KeyedVectors

    kv, path = _kv(), str(tmp_path / name)
    kv.save_word2vec_format(path, binary=binary)
    src = read_source(path)
    assert src.kind == kind and src.tokens == KEYS and src.E.dtype == np.float32
    np.testing.assert_array_equal(src.E, kv.vectors)  # float32 written as its shortest repr reads back exactly
    back = KeyedVectors.load_word2vec_format(path, binary=binary)  # gensim's own reader agrees
    assert back.index_to_key == src.tokens
    np.testing.assert_array_equal(back.vectors, src.E)
    assert src.describe().endswith(f"{path!r}: 8 × 5 float32 (a token per row)")


def test_word2vec_binary_with_a_newline_after_each_row_as_the_c_tool_writes(tmp_path):
    from gensim.models import KeyedVectors

    kv, path = _kv(), tmp_path / "c.bin"
    with open(path, "wb") as f:
        f.write(b"8 5\n")
        for k, v in zip(KEYS, kv.vectors):
            f.write(k.encode() + b" " + v.astype("<f4").tobytes() + b"\n")
    src = read_source(str(path))
    back = KeyedVectors.load_word2vec_format(str(path), binary=True)
    assert src.kind == "word2vec_binary" and src.tokens == KEYS == back.index_to_key
    np.testing.assert_array_equal(src.E, kv.vectors)
    np.testing.assert_array_equal(src.E, back.vectors)


def test_fasttext_vec_lines_with_a_trailing_space(tmp_path):
    from gensim.models import KeyedVectors

    kv, path = _kv(), tmp_path / "cc.en.vec"
    with open(path, "w", encoding="utf-8") as f:  # fastText's writer: each value followed by a space
        f.write("8 5\n" + "".join(k + " " + "".join(f"{x} " for x in v) + "\n" for k, v in zip(KEYS, kv.vectors)))
    src = read_source(str(path))
    assert src.kind == "fasttext_vec" and src.tokens == KEYS
    np.testing.assert_array_equal(src.E, kv.vectors)
    np.testing.assert_array_equal(KeyedVectors.load_word2vec_format(str(path)).vectors, src.E)


def test_glove_text_with_tokens_holding_spaces(tmp_path):
    A = np.round(np.random.default_rng(1).standard_normal((5, 4)), 6)
    tokens = [",", "the", "at & t", ". . .", "e-mail"]
    path = tmp_path / "glove.840B.4d.txt"
    path.write_text("".join(t + " " + " ".join(f"{x:.6f}" for x in row) + "\n" for t, row in zip(tokens, A)))
    src = read_source(str(path))
    assert src.kind == "glove" and src.tokens == tokens
    np.testing.assert_array_equal(src.E, A.astype(np.float32))
    assert src.describe() == f"GloVe text {str(path)!r}: 5 × 4 float32 (a token per row)"


def test_a_text_file_is_streamed_not_held_as_python_numbers(tmp_path):
    """~20 MB of GloVe text: the peak Python allocation while reading stays under twice the float32 table."""
    n, d = 20_000, 100
    A = np.round(np.random.default_rng(2).standard_normal((n, d)), 6)
    path = tmp_path / "big.txt"
    with open(path, "w") as f:
        for i, row in enumerate(A):
            f.write(f"w{i} " + " ".join(f"{x:.6f}" for x in row) + "\n")
    assert os.path.getsize(path) > 18e6
    tracemalloc.start()
    try:
        src = read_source(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert src.E.shape == (n, d) and src.tokens[-1] == f"w{n - 1}"
    np.testing.assert_array_equal(src.E, A.astype(np.float32))
    assert peak < 2 * src.E.nbytes, (peak, src.E.nbytes)


# -- .npy, run directories --------------------------------------------------------------------------------


def test_npy_with_and_without_tokens(tmp_path):
    E = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.save(tmp_path / "E.npy", E)
    src = read_source(str(tmp_path / "E.npy"))
    assert src.kind == "npy" and src.tokens is None and src.E.dtype == np.float32
    np.testing.assert_array_equal(src.E, E)
    (tmp_path / "vocab.txt").write_text("a\n b\nc d\n\\n\n")  # one per line, spaces kept
    src = read_source(str(tmp_path / "E.npy"), tokens_file=str(tmp_path / "vocab.txt"))
    assert src.tokens == ["a", " b", "c d", "\\n"]
    (tmp_path / "short.txt").write_text("a\nb\n")
    msg = _one_line_error(read_source, str(tmp_path / "E.npy"), tokens_file=str(tmp_path / "short.txt"))
    assert "expected 4 tokens, one per row of the table; found 2" in msg


def test_an_embjax_run_directory_written_by_its_own_writer(tmp_path):
    from embjax.outputs.rundir import RunDir

    tokens = ["t0_c0", "t1_c1", "▁the", "a\\\\b", "\\n"]  # as data._printable spells them: ▁, escapes
    corpus = SimpleNamespace(tokens=tokens, counts=np.array([5.0, 4, 3, 2, 1]), labels=np.array([0, 1, 0, 1, 0]))
    RunDir._write_tokens(SimpleNamespace(path=str(tmp_path), corpus=corpus, pretrained=None))
    E = np.random.default_rng(3).standard_normal((5, 6)).astype(np.float32)
    np.save(tmp_path / "embeddings.npy", E)
    src = read_source(str(tmp_path))
    assert src.kind == "run_dir" and src.tokens == tokens
    np.testing.assert_array_equal(src.E, E)
    beside = read_source(str(tmp_path / "embeddings.npy"))  # a .npy with tokens.tsv beside it
    assert beside.kind == "npy" and beside.tokens == tokens
    # another run with the same tokenizer takes the rows over exactly
    a = align(src, ["\\n", "t1_c1", "▁the"], d=6, missing="error")
    np.testing.assert_array_equal(a.E, E[[4, 1, 2]])
    assert a.how["exact"] == 3


# -- safetensors, Hugging Face folders --------------------------------------------------------------------


def test_safetensors_picks_the_input_embedding_by_name(tmp_path):
    rng = np.random.default_rng(4)
    W, P = rng.standard_normal((10, 4)).astype(np.float32), rng.standard_normal((6, 4)).astype(np.float32)
    path = str(tmp_path / "gpt2.safetensors")
    save_file({"transformer.wpe.weight": P, "transformer.wte.weight": W, "transformer.ln_f.weight": W[0]}, path)
    src = read_source(path)
    assert src.kind == "safetensors" and src.tensor == "transformer.wte.weight" and src.tokens is None
    np.testing.assert_array_equal(src.E, W)
    assert read_source(path, tensor="transformer.wpe.weight").E.shape == (6, 4)
    msg = _one_line_error(read_source, path, tensor="nope")
    assert "transformer.wpe.weight (6, 4)" in msg and "ln_f" not in msg  # 2-D candidates only
    # the priority order: embed_tokens before a generic embeddings.weight; BERT's word (not position) embeddings
    save_file({"x.embeddings.weight": P, "model.embed_tokens.weight": W}, str(tmp_path / "a.safetensors"))
    assert read_source(str(tmp_path / "a.safetensors")).tensor == "model.embed_tokens.weight"
    bert = {"bert.embeddings.position_embeddings.weight": P, "bert.embeddings.word_embeddings.weight": W}
    save_file(bert, str(tmp_path / "b.safetensors"))
    assert read_source(str(tmp_path / "b.safetensors")).tensor == "bert.embeddings.word_embeddings.weight"
    save_file({"enc.w": W, "bias": W[0]}, str(tmp_path / "none.safetensors"))
    msg = _one_line_error(read_source, str(tmp_path / "none.safetensors"))
    assert "enc.w (10, 4)" in msg and "bias" not in msg and EMBEDDING_NAMES[0] in msg


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_half_precision_tensors_come_back_as_float32(tmp_path, dtype):
    W = np.random.default_rng(5).standard_normal((7, 3)).astype(dtype)
    save_file({"model.embed_tokens.weight": W}, str(tmp_path / "h.safetensors"))
    (tmp_path / "v.txt").write_text("".join(f"tok{i}\n" for i in range(7)))
    src = read_source(str(tmp_path / "h.safetensors"), tokens_file=str(tmp_path / "v.txt"))
    assert src.E.dtype == np.float32 and src.tokens[6] == "tok6"
    np.testing.assert_array_equal(src.E, W.astype(np.float32))


def _bpe_tokenizer(path):
    """A tiny byte-level BPE (GPT-2 style: Ġ marks a leading space) trained on a few strings."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(["the cat sat on the mat", "the dog sat on the log", "a cat and the dog"] * 20, trainer)
    tok.save(str(path))
    return tok


def test_a_sharded_hugging_face_folder_with_its_tokenizer(tmp_path):
    tok = _bpe_tokenizer(tmp_path / "tokenizer.json")
    V = tok.get_vocab_size()
    rng = np.random.default_rng(6)
    E = rng.standard_normal((V + 4, 8)).astype(np.float32)  # padded past the vocabulary, as many models are
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": V + 4, "hidden_size": 8}))
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    save_file({"model.layers.0.mlp.weight": rng.standard_normal((8, 8)).astype(np.float32)}, str(tmp_path / shards[0]))
    save_file({"model.embed_tokens.weight": E, "lm_head.weight": E[::-1].copy()}, str(tmp_path / shards[1]))
    weight_map = {"model.layers.0.mlp.weight": shards[0], "model.embed_tokens.weight": shards[1]}
    weight_map["lm_head.weight"] = shards[1]
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (tmp_path / shards[0]).write_bytes(b"not read: the index says the embedding is in the other shard")
    src = read_source(str(tmp_path))
    assert src.kind == "hf_model" and src.tensor == "model.embed_tokens.weight"
    assert src.tokenizer_file == str(tmp_path / "tokenizer.json")
    np.testing.assert_array_equal(src.E, E)
    assert src.tokens[:V] == [tok.id_to_token(i) for i in range(V)] and src.tokens[V:] == [""] * 4
    assert "Ġthe" in src.tokens and "Ġcat" in src.tokens
    # a SentencePiece-spelled run vocabulary takes the byte-level rows; the pad rows match nothing
    a = align(src, ["▁the", "▁cat", "the", "dog", "Ġsat", ""], d=8, missing="zero")
    ids = tok.get_vocab()
    np.testing.assert_array_equal(a.E[:5], E[[ids["Ġthe"], ids["Ġcat"], ids["the"], ids["dog"], ids["Ġsat"]]])
    assert a.how == {"exact": 3, "spelling": 2, "lowercase": 0, "id": 0} and a.initialised == [5]


def test_a_single_file_hugging_face_folder_without_tokenizer_is_matched_by_id(tmp_path):
    W = np.random.default_rng(7).standard_normal((6, 4)).astype(np.float32)
    (tmp_path / "config.json").write_text("{}")
    save_file({"gpt_neox.embed_in.weight": W, "embed_out.weight": W}, str(tmp_path / "model.safetensors"))
    src = read_source(str(tmp_path))
    assert src.tensor == "gpt_neox.embed_in.weight" and src.tokens is None and src.tokenizer_file is None
    a = align(src, ["x", "y", "z"], d=4)
    np.testing.assert_array_equal(a.E, W[:3])
    assert a.how["id"] == 3 and a.matched.all()


# -- damaged and unknown inputs ---------------------------------------------------------------------------


def test_damaged_files_are_one_line_errors_naming_the_file(tmp_path):
    kv = _kv(keys=[f"a_rather_long_token_{i}" for i in range(8)])
    kv.save_word2vec_format(str(tmp_path / "w.bin"), binary=True)
    data = (tmp_path / "w.bin").read_bytes()
    for cut in (10, 200):  # past the size check and caught by the reader; caught by the size check
        (tmp_path / "cut.bin").write_bytes(data[:-cut])
        msg = _one_line_error(read_source, str(tmp_path / "cut.bin"))
        assert str(tmp_path / "cut.bin") in msg and "damaged" in msg and "word2vec binary" in msg
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    msg = _one_line_error(read_source, str(tmp_path / "obj.npy"))
    assert str(tmp_path / "obj.npy") in msg and "pickle" in msg and "allow_pickle" not in msg
    np.save(tmp_path / "ok.npy", np.ones((50, 4)))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:-7])
    assert "damaged" in _one_line_error(read_source, str(tmp_path / "cut.npy"))
    (tmp_path / "bad.txt").write_text("3 2\na 0.1 0.2\nb 0.3 x\nc 0.5 0.6\n")
    msg = _one_line_error(read_source, str(tmp_path / "bad.txt"))
    assert "line 3" in msg and "damaged" in msg and "'b 0.3 x'" in msg
    (tmp_path / "short.txt").write_text("5 2\na 0.1 0.2\nb 0.3 0.4\n")
    assert "expected 5 rows" in _one_line_error(read_source, str(tmp_path / "short.txt"))
    (tmp_path / "x.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    assert "damaged" in _one_line_error(read_source, str(tmp_path / "x.safetensors"))


def test_unknown_inputs_say_what_was_expected(tmp_path):
    (tmp_path / "notes.md").write_text("# my embeddings\nsee the paper\n")
    msg = _one_line_error(read_source, str(tmp_path / "notes.md"))
    assert "expected a .npy, .safetensors, word2vec" in msg and "# my embeddings" in msg
    assert "allowed: an existing file or folder" in _one_line_error(read_source, str(tmp_path / "absent.vec"))
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "pytorch_model.bin").write_bytes(b"PK")
    msg = _one_line_error(read_source, str(hf))
    assert "model.safetensors" in msg and "pytorch_model.bin" in msg and "allow_pickle" not in msg
    (tmp_path / "empty").mkdir()
    assert "a folder holding nothing" in _one_line_error(read_source, str(tmp_path / "empty"))
    np.save(tmp_path / "v.npy", np.ones(3))
    assert "shape (3,)" in _one_line_error(read_source, str(tmp_path / "v.npy"))
    _kv().save_word2vec_format(str(tmp_path / "w.txt"))
    assert "tensor: got 'x'" in _one_line_error(read_source, str(tmp_path / "w.txt"), tensor="x")


# -- alignment --------------------------------------------------------------------------------------------


def _src(tokens, E):
    return Source(tokens, np.asarray(E, np.float32), "glove", path="src.txt")


def test_spellings_reconciled_then_lowercase():
    tokens = ["▁the", "▁cat", "sat", "Dog", " on", "the", "▁The"]
    E = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)
    vocab = ["Ġthe", "Ġcat", "Ġsat", "dog", "Ġon", "the", "zzz", "▁The", "ĠTHE"]
    a = align(_src(tokens, E), vocab, d=2, missing="zero")
    # Ġthe = ▁the (spelling), Ġsat -> word-level "sat" (spelling fallback), dog -> Dog (lowercase), the exact
    assert a.matched.tolist() == [True, True, True, True, True, True, False, True, True]
    np.testing.assert_array_equal(a.E[[0, 1, 2, 3, 4, 5, 7, 8]], E[[0, 1, 2, 3, 4, 5, 6, 0]])
    assert a.how == {"exact": 2, "spelling": 4, "lowercase": 2, "id": 0} and a.initialised == [6]
    np.testing.assert_array_equal(a.E[6], 0)
    strict = align(_src(tokens, E), vocab, d=2, missing="zero", lowercase=False)
    assert strict.initialised == [3, 6, 8] and strict.how["lowercase"] == 0


def test_missing_rows_init_at_the_matched_std():
    rng = np.random.default_rng(8)
    E = (0.3 * rng.standard_normal((4000, 32)) + 0.1).astype(np.float32)
    vocab = [f"w{i}" for i in range(2000)] + [f"new{i}" for i in range(2000)]
    a = align(_src([f"w{i}" for i in range(4000)], E), vocab, d=32)
    sigma = np.std(E[:2000].astype(np.float64))  # over every entry of the matched rows (their mean removed)
    fill = a.E[2000:].astype(np.float64)
    # 64k draws: the sample std is within ~0.3 % of σ and the mean within ~3σ/√64k of 0
    assert fill.std() == pytest.approx(sigma, rel=0.02) and abs(fill.mean()) < 4 * sigma / np.sqrt(fill.size)
    assert a.initialised == list(range(2000, 4000)) and not a.matched[2000:].any()
    np.testing.assert_array_equal(a.E[:2000], E[:2000])
    again = align(_src([f"w{i}" for i in range(4000)], E), vocab, d=32)  # seed 0 by default: reproducible
    np.testing.assert_array_equal(a.E, again.E)
    own = align(_src([f"w{i}" for i in range(4000)], E), vocab, d=32, init_std=0.02, rng=np.random.default_rng(1))
    assert own.E[2000:].std() == pytest.approx(0.02, rel=0.02)


def test_missing_mean_zero_and_error():
    E = np.random.default_rng(9).standard_normal((5, 3)).astype(np.float32)
    src = _src(["a", "b", "c", "d", "e"], E)
    vocab = ["a", "x", "c", "y", "e", "z", "w", "v", "u"]
    mean = align(src, vocab, d=3, missing="mean")
    np.testing.assert_allclose(mean.E[1], E[[0, 2, 4]].astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_array_equal(mean.E[[1, 3, 5]], np.repeat(mean.E[[1]], 3, 0))
    assert align(src, vocab, d=3, missing="zero").E[[1, 3]].tolist() == [[0.0] * 3] * 2
    msg = _one_line_error(align, src, vocab, d=3, missing="error")
    assert "6 of 9 tokens" in msg and "'x', 'y', 'z', 'w', 'v', …" in msg and "'src.txt'" in msg
    assert "missing: got 'drop'; allowed: init | mean | zero | error" in _one_line_error(
        align, src, vocab, d=3, missing="drop"
    )
    assert "got no row for any of 2 tokens" in _one_line_error(align, src, ["p", "q"], d=3)


def test_by_id():
    E = np.arange(20, dtype=np.float32).reshape(10, 2)
    no_tokens = Source(None, E, "npy")
    a = align(no_tokens, ["x"] * 7, d=2)  # rows past V unused
    np.testing.assert_array_equal(a.E, E[:7])
    assert a.how == {"exact": 0, "spelling": 0, "lowercase": 0, "id": 7}
    b = align(no_tokens, ["x"] * 12, d=2, missing="zero")  # fewer rows: the rest unmatched
    np.testing.assert_array_equal(b.E[:10], E)
    assert b.initialised == [10, 11] and b.E[10:].tolist() == [[0, 0], [0, 0]]
    c = align(_src([f"t{i}" for i in range(10)][::-1], E), ["t0", "t1"], d=2, by_id=True)
    np.testing.assert_array_equal(c.E, E[:2])  # by id, whatever the tokens say


def test_pca_projection_against_sklearn_and_numpy_svd():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(10)
    E = (rng.standard_normal((600, 16)) @ rng.standard_normal((16, 16)) + 2.0).astype(np.float32)
    tokens = [f"w{i}" for i in range(600)]
    vocab = tokens[:500] + ["new1", "new2"]  # fit on the 500 matched rows only
    a = align(_src(tokens, E), vocab, d=5, project="pca", missing="zero")
    X = E[:500].astype(np.float64)
    ref = PCA(n_components=5, svd_solver="full").fit(X).transform(X)
    signs = np.sign(np.sum(ref * a.E[:500], 0))  # components are defined up to sign
    np.testing.assert_allclose(a.E[:500], ref * signs, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    Xc = X - X.mean(0)  # by hand: the documented sign (each component's largest loading positive)
    Vt = np.linalg.svd(Xc, full_matrices=False)[2][:5]
    Vt *= np.sign(Vt[np.arange(5), np.abs(Vt).argmax(1)])[:, None]
    np.testing.assert_allclose(a.E[:500], Xc @ Vt.T, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert np.abs(a.E[:500].mean(0)).max() < 1e-4 and a.E[500:].tolist() == [[0.0] * 5] * 2


def test_truncate_and_width_errors():
    E = np.random.default_rng(11).standard_normal((4, 6)).astype(np.float32)
    src = _src(["a", "b", "c", "d"], E)
    np.testing.assert_array_equal(align(src, ["d", "a"], d=4, project="truncate").E, E[[3, 0], :4])
    msg = _one_line_error(align, src, ["a"], d=4)
    assert "pretrained width: got 6" in msg and "allowed: 4" in msg
    assert "got 6" in _one_line_error(align, src, ["a"], d=8, project="pca")  # a projection never widens
    assert "at least d=3" in _one_line_error(align, src, ["a", "b"], d=3, project="pca")
    assert "project: got 'svd'" in _one_line_error(align, src, ["a"], d=6, project="svd")


def test_a_run_starts_from_a_partial_word2vec_binary_and_says_what_matched(tmp_path, capsys):
    """A gensim-written word2vec binary holding half of the run's tokens (in another order, upper-cased): the run
    matches them (lowercase fallback), fills the rest at the matched rows' σ, says so on its first log line, in
    summary.json and in tokens.tsv's `pretrained` column; with the table frozen its final rows are the file's."""
    from gensim.models import KeyedVectors

    from embjax.cli import train_main
    from embjax.config import load_config
    from embjax.data.corpus import make_corpus
    from tests.conftest import TINY

    tokens = make_corpus(load_config(None, TINY)).tokens
    rng = np.random.default_rng(1)
    kept = [t for i, t in enumerate(tokens) if i % 2 == 0][::-1]
    E = (0.3 * rng.standard_normal((len(kept), 16))).astype(np.float32)
    kv = KeyedVectors(16)
    kv.add_vectors([t.upper() for t in kept], E)
    kv.save_word2vec_format(str(tmp_path / "w.bin"), binary=True)
    args = [f"--out_dir={tmp_path}", "--log.wandb=false", "--steps=5", "--embedding.freeze=true"]
    args += ["--embedding.init=pretrained", f"--embedding.pretrained_path={tmp_path / 'w.bin'}"]
    assert train_main(TINY + args) == 0
    err = capsys.readouterr().err
    assert f"pretrained: word2vec binary {str(tmp_path / 'w.bin')!r}: 32 × 16 float32" in err
    assert "32 of 64 vocabulary rows matched (32 lowercase); 32 filled (init)" in err
    s = json.load(open(tmp_path / "default" / "summary.json"))
    assert s["embedding/pretrained_matched"] == 32 and s["embedding/pretrained_initialised"] == 32
    lines = (tmp_path / "default" / "tokens.tsv").read_text().splitlines()
    assert lines[0] == "id\ttoken\tcount\tclass\tpretrained"
    assert [int(line.split("\t")[-1]) for line in lines[1:]] == [1 - i % 2 for i in range(64)]
    final = np.load(tmp_path / "default" / "embeddings.npy")
    for j, t in enumerate(kept):
        np.testing.assert_array_equal(final[tokens.index(t)], E[j])
    filled = final[1::2]
    assert abs(filled.std() / E.std() - 1) < 0.15  # drawn at the matched rows' σ (512 draws)


def _frozen_run(tmp_path, name, *extra):
    """A run from a .npy holding the first 40 of 64 rows (by id: the rest filled), 8 AdamW steps with decay,
    checkpointed every step: {step: the input table} and the last state's optimizer leaves under `embed`."""
    import orbax.checkpoint as ocp

    from embjax.cli import train_main
    from tests.conftest import TINY

    E = (0.5 * np.random.default_rng(2).standard_normal((40, 16))).astype(np.float32)
    np.save(tmp_path / "E40.npy", E)
    args = [f"--out_dir={tmp_path}", f"--name={name}", "--log.wandb=false", "--steps=8", "--checkpoint.every=1"]
    args += ["--checkpoint.keep=10", "--optim.weight_decay=0.1", "--embedding.init=pretrained"]
    args += [f"--embedding.pretrained_path={tmp_path / 'E40.npy'}", "--model.tie_embeddings=false", *extra]
    assert train_main([a for a in TINY if not a.startswith("--steps")] + args) == 0
    tables, embed_state = {}, None
    with ocp.CheckpointManager(str(tmp_path / name / "checkpoints")) as m:
        for step in m.all_steps():
            state = m.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
            tables[step] = np.asarray(state["params"]["embed"]["embedding"])
            embed_state = [
                np.asarray(x)
                for p, x in jax.tree_util.tree_leaves_with_path(state["opt_state"])
                if "'embed'" in jax.tree_util.keystr(p) and np.ndim(x) == 2
            ]
    return E, tables, embed_state


import jax  # noqa: E402


@pytest.mark.slow
def test_freeze_modes_hold_exactly_their_rows(tmp_path):
    """freeze=pretrained: the 40 matched rows are bit-identical after 8 AdamW steps with weight decay and their
    optimizer-state rows stay zero, the 24 filled rows train. freeze=true: every row identical and the optimizer
    keeps no state for the table. unfreeze_at=4 (with freeze=pretrained): held through step 4, trained after."""
    E, tables, state = _frozen_run(tmp_path, "rows", "--embedding.freeze=pretrained")
    assert sorted(tables)[-1] == 8
    np.testing.assert_array_equal(tables[8][:40], E)
    assert np.all(np.any(tables[8][40:] != tables[1][40:], axis=1))
    assert len(state) == 2 and all(np.all(s[:40] == 0) and np.any(s[40:] != 0) for s in state)  # Adam's mu, nu
    _, tables, state = _frozen_run(tmp_path, "all", "--embedding.freeze=true")
    np.testing.assert_array_equal(tables[8][:40], E)
    np.testing.assert_array_equal(tables[8], tables[1])
    assert state == []
    _, tables, _ = _frozen_run(tmp_path, "thaw", "--embedding.freeze=pretrained", "--embedding.unfreeze_at=4")
    for step in (1, 2, 3, 4):
        np.testing.assert_array_equal(tables[step][:40], E)
    assert np.all(np.any(tables[5][:40] != E, axis=1))


def test_inspect_a_word2vec_file_with_counts(tmp_path, capsys):
    """experiments.inspect on a gensim-written word2vec file with a counts file: report.json's mean cosine and
    norms against NumPy float64, the most frequent token's neighbours against a brute-force float64 search, the
    projector files, the norm-by-frequency plot and a one-frame embedding-space page holding every token."""
    from gensim.models import KeyedVectors

    from embjax.cli import inspect_main

    rng = np.random.default_rng(0)
    toks = [f"w{i}" for i in range(120)]
    E = rng.standard_normal((120, 12)).astype(np.float32) + 0.5
    kv = KeyedVectors(12)
    kv.add_vectors(toks, E)
    kv.save_word2vec_format(str(tmp_path / "v.txt"))
    (tmp_path / "counts.txt").write_text("".join(f"{t} {1000 // (i + 3)}\n" for i, t in enumerate(toks[::-1])))
    out = tmp_path / "out"
    assert inspect_main([str(tmp_path / "v.txt"), f"--counts={tmp_path / 'counts.txt'}", f"--out={out}"]) == 0
    rep = json.load(open(out / "report.json"))
    X = E.astype(np.float64)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    C = U @ U.T
    off = C[~np.eye(120, dtype=bool)]
    assert rep["report"]["emb/cos_mean"] == pytest.approx(off.mean(), rel=1e-5)
    assert rep["report"]["emb/norm_mean"] == pytest.approx(np.linalg.norm(X, axis=1).mean(), rel=1e-6)
    top = "w119"  # the most frequent: the counts file lists the tokens in reverse
    want = [toks[j] for j in np.argsort(-np.where(np.eye(120, dtype=bool), -2, C)[119], kind="stable")[:5]]
    assert [n for n, _ in rep["neighbours"][top]] == want
    assert list(rep["neighbours"])[0] == top
    for name in ("report.md", "norms_by_frequency.png", "vectors.tsv", "metadata.tsv", "embeddings.w2v.txt"):
        assert (out / name).exists(), name
    page = (out / "embedding_space.html").read_text()
    assert '"V":120' in page and "w119" in page
    assert "emb/cos_mean" in capsys.readouterr().out


def _cli_error(tmp_path, capsys, *args):
    """A run with these arguments: exit 2, one line, no run directory; the line."""
    from embjax.cli import train_main
    from tests.conftest import TINY

    capsys.readouterr()
    assert train_main(TINY + [f"--out_dir={tmp_path / 'runs'}", "--log.wandb=false", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert not (tmp_path / "runs" / "default").exists()
    return err[0]


def test_bad_pretrained_inputs_are_one_line_exit_2_no_run_directory(tmp_path, capsys):
    """A missing file, an unknown format, a safetensors file with no recognisable table (its tensors listed),
    zero matched rows, a width mismatch under `error`, freeze=pretrained without a pretrained source."""
    pre = ["--embedding.init=pretrained"]
    msg = _cli_error(tmp_path, capsys, *pre, f"--embedding.pretrained_path={tmp_path / 'absent.txt'}")
    assert "embedding.pretrained_path" in msg and "absent.txt" in msg and "allowed: an existing file" in msg
    (tmp_path / "notes.md").write_text("# not vectors\n")
    msg = _cli_error(tmp_path, capsys, *pre, f"--embedding.pretrained_path={tmp_path / 'notes.md'}")
    assert "notes.md" in msg and "expected a .npy, .safetensors, word2vec" in msg
    save_file({"encoder.weight": np.ones((4, 3), np.float32), "bias": np.ones(3, np.float32)}, str(tmp_path / "m.st"))
    os.replace(tmp_path / "m.st", tmp_path / "m.safetensors")
    msg = _cli_error(tmp_path, capsys, *pre, f"--embedding.pretrained_path={tmp_path / 'm.safetensors'}")
    assert "encoder.weight" in msg and "m.safetensors" in msg
    _kv(keys=["zz1", "zz2", "zz3"], d=16).save_word2vec_format(str(tmp_path / "none.txt"))
    msg = _cli_error(tmp_path, capsys, *pre, f"--embedding.pretrained_path={tmp_path / 'none.txt'}")
    assert "got no row for any of 64 tokens" in msg
    _kv(keys=["t0_c0", "t1_c1"], d=5).save_word2vec_format(str(tmp_path / "narrow.txt"))
    msg = _cli_error(tmp_path, capsys, *pre, f"--embedding.pretrained_path={tmp_path / 'narrow.txt'}")
    assert "got 5" in msg and "allowed: 16" in msg
    msg = _cli_error(tmp_path, capsys, "--embedding.freeze=pretrained")
    assert msg.startswith("error: embedding.freeze: got 'pretrained' with embedding.init='normal'")


@pytest.mark.slow
def test_inspect_on_a_run_gives_the_runs_own_metrics(tmp_path):
    """experiments.inspect on a finished run directory (its embeddings.npy and tokens.tsv, counts from its
    tokens.tsv) reports the same geometry the run's summary.json holds for its final table."""
    from embjax.cli import inspect_main, train_main
    from tests.conftest import TINY

    assert train_main(TINY + [f"--out_dir={tmp_path}", "--log.wandb=false"]) == 0
    run = tmp_path / "default"
    out = tmp_path / "inspected"
    assert inspect_main([str(run), f"--counts={run / 'tokens.tsv'}", f"--out={out}"]) == 0
    mine = json.load(open(out / "report.json"))["report"]
    theirs = json.load(open(run / "summary.json"))
    keys = [
        "emb/norm_mean",
        "emb/cos_mean",
        "emb/isotropy",
        "emb/eff_rank",
        "emb/isoscore",
        "emb/norm_logfreq_spearman",
    ]
    keys += ["emb_centered/cos_mean", "emb/rogue_dim_share"]
    for key in keys:
        assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7), key


FREEZE_ON_A_MESH = r"""
import json, sys, jax, numpy as np
from embjax.config import load_config
from embjax.runtime.mesh import make_mesh
from embjax.train.runner import load_inputs
from embjax.train.step import Program, hparams
src, mode = sys.argv[1], sys.argv[2]
cfg = load_config(None, {"data.vocab_size": 96, "data.seq_len": 8, "data.batch_size": 8, "model.embed_dim": 16,
                         "model.num_layers": 1, "model.num_heads": 2, "model.tie_embeddings": False,
                         "optim.weight_decay": 0.1, "embedding.init": "pretrained", "embedding.pretrained_path": src,
                         "embedding.freeze": {"true": True}.get(mode, mode), "mesh.data": 4, "mesh.model": 2})
corpus, pretrained = load_inputs(cfg)
P = Program(cfg, corpus, pretrained, mesh=make_mesh(cfg))
state = jax.jit(P.init, out_shardings=P.state_shardings)(0, hparams(cfg))
E0 = np.asarray(state["params"]["embed"]["embedding"])
state, _ = jax.jit(P.train_steps, static_argnums=2)(state, P.corpus.tables, 6)
E = state["params"]["embed"]["embedding"]
print(json.dumps({"spec": str(E.sharding.spec), "same": np.all(np.asarray(E) == E0, axis=1).tolist()}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["pretrained", "true"])
def test_freeze_modes_hold_their_rows_on_a_4x2_mesh(tmp_path, mode):
    """On 8 virtual devices (data 4 × model 2, the table's rows split over `model`), 6 AdamW steps with decay:
    freeze=pretrained keeps exactly the 40 rows the source gave bit-identical (the 56 filled rows train);
    freeze=true keeps every row."""

    from tests.conftest import on_8_devices

    np.save(tmp_path / "E40.npy", (0.5 * np.random.default_rng(3).standard_normal((40, 16))).astype(np.float32))
    p = on_8_devices(FREEZE_ON_A_MESH, str(tmp_path / "E40.npy"), mode)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["spec"] in ("P('model',)", "P('model', None)")
    want = [True] * 96 if mode == "true" else [True] * 40 + [False] * 56
    assert out["same"] == want


@pytest.mark.slow
def test_a_run_is_not_extended_from_a_rebuilt_pretrained_source(tmp_path, capsys):
    """A run from a .npy records its source's fingerprint (pretrained.json); extending it from the same file
    works, from the file rewritten (a rebuilt source) it is one line, exit 2, and --overwrite=true starts over.
    A finished sweep member is not reused from a rebuilt source either, and the sweep command takes --overwrite."""
    import yaml

    from embjax.cli import sweep_main, train_main
    from tests.conftest import TINY

    src = tmp_path / "E.npy"
    np.save(src, np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32))
    args = TINY + [f"--out_dir={tmp_path}", "--log.wandb=false", "--name=r", "--embedding.init=pretrained"]
    args += [f"--embedding.pretrained_path={src}"]
    assert train_main(args + ["--steps=4"]) == 0
    assert json.load(open(tmp_path / "r" / "pretrained.json"))["path"] == str(src)
    assert train_main(args + ["--steps=6"]) == 0  # extended: the same source
    np.save(src, np.random.default_rng(1).standard_normal((64, 16)).astype(np.float32))  # rebuilt
    capsys.readouterr()
    assert train_main(args + ["--steps=8"]) == 2
    want = (
        f"error: embedding.pretrained_path: run '{tmp_path / 'r'}' started from '{src}', which has changed since "
        "(a file in it was rebuilt, replaced, added or removed); allowed: the same source, or --overwrite=true to "
        "start over"
    )
    assert capsys.readouterr().err.strip().splitlines()[-1] == want
    assert train_main(args + ["--steps=8", "--overwrite=true"]) == 0
    assert json.load(open(tmp_path / "r" / "summary.json"))["step"] == 8

    sweep = {"name": "s", "program": "experiments/train.py", "method": "grid", "parameters": {"seed": {"values": [0]}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    sweep_args = [str(tmp_path / "s.yaml"), "--progress=false", *TINY, f"--out_dir={tmp_path}", "--log.wandb=false"]
    sweep_args += ["--embedding.init=pretrained", f"--embedding.pretrained_path={src}"]
    assert sweep_main(sweep_args + ["--steps=4"]) == 0
    np.save(src, np.random.default_rng(2).standard_normal((64, 16)).astype(np.float32))
    capsys.readouterr()
    assert sweep_main(sweep_args + ["--steps=4"]) == 2
    assert "which has changed since" in capsys.readouterr().err
    assert sweep_main(sweep_args + ["--steps=4", "--overwrite=true"]) == 0
    assert "0 already finished" in capsys.readouterr().out
