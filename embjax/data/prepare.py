"""Tokenise once, stream always: a text corpus -> a memory-mapped token file and its metadata, cached.

A prepared corpus is a folder `<cache>/<source>-<key>/` holding
  train.bin, eval.bin  token ids (uint16 when V <= 65,536, else uint32), documents end to end, each
                       document's text followed by a blank line ("\\n\\n") before it is tokenised
  tokenizer.json       the tokenizer that made them (Hugging Face format; none for bytes)
  meta.json            the source and the SHA-1 of its text, the tokenizer, V, dtype, the document count,
                       the split, token counts, and the train stream's count of every token id
`<key>` hashes everything that defines the tokens (the source files' paths, sizes and mtimes or the
dataset's fingerprint, the text field, the tokenizer, V and eval_fraction): a changed source or
setting is prepared anew, the same one is reused. Memory stays bounded by one batch of documents.

Documents come from embjax.data.sources (files, plain or compressed, datasets, the built-in corpora). The split is by
document: document i is held out when fmix32(i + 0x9E3779B9) / 2^32 < eval_fraction (murmur3's
finaliser, a fixed pseudo-random draw; the offset because fmix32(0) = 0). A corpus too small for that (no
held-out or no train document) holds out the tail of the token stream instead; meta.json says which rule was used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

import numpy as np

from ..config import ConfigError, DataConfig
from ..runtime.hostmem import applied
from .sources import SEPARATOR, Source, held_out, open_source
from .tokenizers import EOS, WORD_RULE, encoder, load_tokenizer_file, train_bpe, train_words

FORMAT = 1


def cache_root(d: DataConfig) -> str:
    return os.path.expanduser(d.cache_dir or os.environ.get("EMBJAX_DATA_DIR") or "~/.cache/embjax/data")


# ---------------------------------------------------------------------------------------
# Preparing


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 65_536 else np.uint32)


def _tokenizer_spec(d: DataConfig) -> dict:
    if d.tokenizer_file:
        st = os.stat(d.tokenizer_file)
        return {
            "kind": "file",
            "file": os.path.abspath(d.tokenizer_file),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
        }
    if _is_word(d):
        return {"kind": "word", "rule": WORD_RULE}
    return {"kind": d.tokenizer}


def _is_word(d: DataConfig) -> bool:
    return d.tokenizer == "word" and not d.tokenizer_file


def prepared_dir(d: DataConfig, source: Source) -> str:
    spec = {
        "format": FORMAT,
        "source": source.fingerprint,
        "tokenizer": _tokenizer_spec(d),
        "vocab_size": d.vocab_size,
        "eval_fraction": d.eval_fraction,
    }
    key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return os.path.join(cache_root(d), f"{source.name}-{key}")


class _Writer:
    """Appends documents' ids to train.bin / eval.bin and counts the train stream's tokens."""

    def __init__(self, folder: str, vocab_size: int, eval_fraction: float):
        self.dtype, self.V, self.frac = token_dtype(vocab_size), vocab_size, eval_fraction
        self.files = {s: open(os.path.join(folder, f"{s}.bin"), "wb") for s in ("train", "eval")}
        self.tokens = {"train": 0, "eval": 0}
        self.documents = {"train": 0, "eval": 0}
        self.counts = np.zeros(vocab_size, np.int64)
        self.next_doc = 0

    def add(self, ids: list[np.ndarray]) -> None:
        doc = np.arange(self.next_doc, self.next_doc + len(ids))
        self.next_doc += len(ids)
        out = held_out(doc, self.frac)
        for split, pick in (("train", ~out), ("eval", out)):
            chosen = [x for x, p in zip(ids, pick) if p]
            if not chosen:
                continue
            flat = np.concatenate(chosen)
            if flat.size and int(flat.max()) >= self.V:
                raise ConfigError(
                    f"data.vocab_size: got {self.V}, but the tokenizer produced token id {int(flat.max())}; "
                    f"allowed: a vocabulary size above every id (at least {int(flat.max()) + 1})"
                )
            self.files[split].write(flat.astype(self.dtype).tobytes())
            self.tokens[split] += flat.size
            self.documents[split] += len(chosen)
            if split == "train":
                self.counts += np.bincount(flat, minlength=self.V)

    def close(self) -> str:
        for f in self.files.values():
            f.close()
        if self.documents["train"] and self.documents["eval"]:
            return "document"
        return "tail"


def _hold_out_tail(folder: str, w: _Writer) -> None:
    """Every document landed on one side: hold out the last eval_fraction of the token stream instead."""
    paths = {s: os.path.join(folder, f"{s}.bin") for s in ("train", "eval")}
    if not w.documents["train"]:  # all were held out: they are the stream
        os.replace(paths["eval"], paths["train"])
        w.tokens["train"], w.tokens["eval"] = w.tokens["eval"], 0
        w.counts = np.bincount(np.fromfile(paths["train"], w.dtype), minlength=w.V).astype(np.int64)
    n = w.tokens["train"]
    n_eval = int(n * w.frac)
    tail = np.fromfile(paths["train"], w.dtype, offset=(n - n_eval) * w.dtype.itemsize)
    tail.tofile(paths["eval"])
    with open(paths["train"], "r+b") as f:
        f.truncate((n - n_eval) * w.dtype.itemsize)
    w.counts -= np.bincount(tail, minlength=w.V)
    w.tokens["train"], w.tokens["eval"] = n - n_eval, n_eval


def _batches(docs: Iterator[str], chars: int = 4 << 20) -> Iterator[list[str]]:
    buf, size = [], 0
    for doc in docs:
        buf.append(doc + SEPARATOR)
        size += len(doc)
        if size >= chars:
            yield buf
            buf, size = [], 0
    if buf:
        yield buf


def _tokenize_into(tmp: str, d: DataConfig, source: Source, tok, show: bool) -> dict:
    from tqdm import tqdm

    w, sha = _Writer(tmp, d.vocab_size, d.eval_fraction), hashlib.sha1()
    encode = encoder(tok, eos=tok.token_to_id(EOS) if _is_word(d) else None)
    with tqdm(
        total=source.total,
        unit=source.unit,
        unit_scale=True,
        desc=f"prepare {source.name}",
        disable=not show,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        for texts in _batches(source.documents()):
            raw = [t.encode("utf-8") for t in texts]
            for b in raw:
                sha.update(b)
            w.add(encode(texts))
            bar.update(len(texts) if source.unit == "rows" else sum(map(len, raw)))
        if bar.total:
            bar.n = bar.total  # paragraphs are counted without the blank lines between them
            bar.refresh()
    split = w.close()
    if w.tokens["train"] + w.tokens["eval"] == 0:
        raise ConfigError(f"data.path: got {d.path or d.dataset!r}, which holds no text; allowed: a non-empty corpus")
    if split == "tail":
        _hold_out_tail(tmp, w)
    return _meta(tmp, d, source, sha.hexdigest(), split, w)


def _meta(tmp: str, d: DataConfig, source: Source, sha1: str, split: str, w: _Writer) -> dict:
    """meta.json's contents (see the module docstring)."""
    rule = (
        "document i held out when fmix32(i + 0x9E3779B9) / 2^32 < eval_fraction"
        if split == "document"
        else "too few documents to split: the last eval_fraction of the token stream is held out"
    )
    return {
        "format": FORMAT,
        # each token file's size and SHA-1, checked when the corpus is opened (verify)
        "files": {f"{s}.bin": _file_digest(os.path.join(tmp, f"{s}.bin")) for s in ("train", "eval")},
        "source": {
            "name": source.name,
            "path": d.path,
            "dataset": d.dataset,
            "split": d.split,
            "text_field": d.text_field,
            "documents": d.documents,
            "sha1": sha1,
            "fingerprint": source.fingerprint,
        },
        "tokenizer": _tokenizer_spec(d),
        "vocab_size": d.vocab_size,
        "dtype": w.dtype.name,
        "separator": SEPARATOR,
        "documents": w.next_doc,
        "split": {
            "by": split,
            "rule": rule,
            "eval_fraction": d.eval_fraction,
            "train_documents": w.documents["train"],
            "eval_documents": w.documents["eval"],
            "train_tokens": w.tokens["train"],
            "eval_tokens": w.tokens["eval"],
        },
        "counts": w.counts.tolist(),
        **({"oov": _oov_rates(tmp, w)} if _is_word(d) else {}),
    }


def _oov_rates(folder: str, w: _Writer) -> dict[str, float]:
    """The fraction of each split's words (its tokens but <eos>) that are <unk>: a word outside the vocabulary."""
    out = {}
    for split in ("train", "eval"):
        ids = np.fromfile(os.path.join(folder, f"{split}.bin"), w.dtype)
        words = int((ids != 1).sum())
        out[split] = float((ids == 0).sum() / words) if words else 0.0
    return out


def prepare(d: DataConfig, show: bool = True) -> str:
    """The prepared folder for this data config: reused when it exists, else written (atomically). In a
    training process (malloc tuned by embjax.runtime.hostmem) the tokenising runs in a fresh child process."""
    source = open_source(d)
    final = prepared_dir(d, source)
    if os.path.isfile(os.path.join(final, "meta.json")):
        return final
    if not applied():
        return _prepare(d, source, final, show)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ex = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:  # a child that dies (killed, out of memory) raises BrokenProcessPool here instead of hanging
        return ex.submit(_prepare, d, None, final, show).result()  # the child opens the source itself
    finally:
        ex.shutdown(wait=False, cancel_futures=True)


def _prepare(d: DataConfig, source: Source | None, final: str, show: bool) -> str:
    """Tokenise into a fresh temporary folder beside `final`, then rename it into place. Concurrent prepares
    of one corpus (processes of a multi-host run, parallel agents) each write their own folder and the first
    rename wins; an interrupted one leaves a `*.tmp*` folder that is never read (delete it at will)."""
    source = source or open_source(d)
    os.makedirs(cache_root(d), exist_ok=True)
    tmp = tempfile.mkdtemp(dir=cache_root(d), prefix=os.path.basename(final) + ".tmp")
    try:
        if d.tokenizer_file:
            tok = load_tokenizer_file(d.tokenizer_file)
        else:
            tok = {"byte": lambda: None, "word": lambda: train_words(source, d)}.get(
                d.tokenizer, lambda: train_bpe(source, d.vocab_size)
            )()
        if tok is not None:
            tok.save(os.path.join(tmp, "tokenizer.json"))
        meta = _tokenize_into(tmp, d, source, tok, show)
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f)
        if os.path.isdir(final) and not os.path.isfile(os.path.join(final, "meta.json")):
            os.replace(final, tempfile.mkdtemp(dir=cache_root(d), prefix=os.path.basename(final) + ".stale"))
        try:
            os.replace(tmp, final)
        except OSError:  # another process prepared the same corpus first: use theirs
            if not os.path.isfile(os.path.join(final, "meta.json")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_meta(folder: str) -> dict:
    try:
        with open(os.path.join(folder, "meta.json")) as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(_damaged(folder, "meta.json", "it does not parse")) from None


def _file_digest(path: str) -> dict:
    sha = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            sha.update(block)
    return {"bytes": os.path.getsize(path), "sha1": sha.hexdigest()}


def _damaged(folder: str, name: str, why: str) -> str:
    return (
        f"{os.path.join(folder, name)}: damaged prepared corpus ({why}); allowed: the files as prepared (delete "
        f"{folder} and run again to prepare it anew)"
    )


def verify(folder: str, meta: dict) -> None:
    """Each token file's size, every time (against meta.json's token counts); its SHA-1 (corpora prepared since
    it is recorded) once per change of the file: a verified (size, mtime) is remembered in verified.json."""
    itemsize = np.dtype(meta["dtype"]).itemsize
    try:
        with open(os.path.join(folder, "verified.json")) as f:
            verified = json.load(f)
    except (OSError, ValueError):
        verified = {}
    changed = False
    for split in ("train", "eval"):
        name, path = f"{split}.bin", os.path.join(folder, f"{split}.bin")
        want = meta["split"][f"{split}_tokens"] * itemsize
        size = os.path.getsize(path) if os.path.exists(path) else -1
        if size != want:
            got = "missing" if size < 0 else f"{size:,} bytes"
            raise ConfigError(_damaged(folder, name, f"{got}, meta.json says {want:,}"))
        stamp = [size, os.stat(path).st_mtime_ns]
        record = meta.get("files", {}).get(name)
        if record is None or verified.get(name) == stamp:
            continue
        if _file_digest(path)["sha1"] != record["sha1"]:
            raise ConfigError(_damaged(folder, name, "its SHA-1 differs from meta.json's"))
        verified[name], changed = stamp, True
    if changed:
        with contextlib.suppress(OSError):  # a read-only cache is checked again next time
            with open(os.path.join(folder, "verified.json"), "w") as f:
                json.dump(verified, f)
