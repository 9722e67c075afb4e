"""Where a text corpus's documents come from: files (plain or compressed), Hugging Face datasets, and the
corpora that install with the suite (`builtin:NAME`).

`open_source(data_config)` returns a `Source`: a name, a cheap fingerprint for the prepared-corpus cache, a
size for the progress bar and a fresh iterator of document texts on every call. Files are read as UTF-8,
strictly: a byte that does not decode, or a NUL byte, stops with one line naming the file and the byte's
offset, so a binary or compressed file given by mistake is never tokenised as noise. `.gz`, `.bz2`, `.xz`
(`.lzma`) and `.zst` (`.zstd`) files are decompressed by extension, streamed.

Documents: a record of a JSON-lines file, a row of a Parquet file or dataset, and, in a text file, each
paragraph (text between blank lines; one over 1 MB is cut at line ends). The built-in corpora have readers of
their own: `builtin:wiki_sample` is an article per document (gensim's shortened English Wikipedia dump through
gensim's own `extract_pages` and `filter_wiki`: main-namespace pages, redirects and articles under 50 words
left out, as gensim's WikiCorpus does), `builtin:lee_news` a news story per line of the Lee background corpus.
"""

from __future__ import annotations

import bz2
import codecs
import glob
import gzip
import io
import json
import lzma
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from ..config import ConfigError, DataConfig

MAX_DOC_CHARS = 1 << 20
DATASET_BUILDERS = ("text", "json", "parquet", "csv")  # data.dataset names that read local data.path files
COMPRESSED = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".lzma": "xz", ".zst": "zstd", ".zstd": "zstd"}
_FOLDER_PATTERNS = tuple(f"*.{e}{c}" for e in ("txt", "jsonl", "parquet") for c in ("", *COMPRESSED))
BUILTIN = "builtin:"
WIKI_MIN_WORDS = 50  # gensim's WikiCorpus ARTICLE_MIN_WORDS


@dataclass
class Source:
    """Where documents come from: a name, a fingerprint (cheap, for the cache key), a size for the progress
    bar (bytes or rows) and a fresh iterator of documents on every call."""

    name: str
    fingerprint: str
    total: int | None  # None: not known before reading (a compressed file)
    unit: str
    documents: Callable[[], Iterator[str]]


# ---------------------------------------------------------------------------------------
# Files: decompressed by extension, decoded strictly


def _compression(path: str) -> str | None:
    return COMPRESSED.get(os.path.splitext(path.lower())[1])


def _open_binary(path: str) -> BinaryIO:
    kind = _compression(path)
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "bzip2":
        return bz2.open(path, "rb")
    if kind == "xz":
        return lzma.open(path, "rb")
    if kind == "zstd":
        import zstandard

        return zstandard.open(path, "rb")
    return open(path, "rb")


def _not_text(path: str, why: str) -> ConfigError:
    where = " of its decompressed text" if _compression(path) else ""
    return ConfigError(
        f"data.path: {path} is not UTF-8 text ({why}{where}); allowed: UTF-8 text, JSON-lines or Parquet files, "
        f"plain or compressed ({', '.join(sorted(COMPRESSED))}, by extension)"
    )


def _first_bad_byte(path: str) -> str:
    """Where the first byte that does not decode as UTF-8 (or the first NUL) sits: read again, on the error path."""
    dec, done = codecs.getincrementaldecoder("utf-8")("strict"), 0
    with _open_binary(path) as f:
        while True:
            block = f.read(1 << 20)
            pending = len(dec.getstate()[0])
            try:
                text = dec.decode(block, final=not block)
            except UnicodeDecodeError as err:
                at = done - pending + err.start
                bad = (err.object[err.start : err.start + 1] or b"?")[0]
                return f"byte 0x{bad:02x} at offset {at:,} does not decode"
            if "\0" in text:
                return f"a NUL byte at offset {done - pending + len(text[: text.index(chr(0))].encode()):,}"
            if not block:
                return "an undecodable byte"
            done += len(block)


def text_lines(path: str) -> Iterator[str]:
    """A file's lines (universal newlines, ends kept), decompressed by extension, decoded as strict UTF-8: a byte
    that does not decode, a NUL byte or a damaged compressed stream is one ConfigError naming the file."""
    try:
        with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="strict") as f:
            for line in f:
                if "\0" in line:
                    raise UnicodeError("NUL")
                yield line
    except UnicodeError:
        raise _not_text(path, _first_bad_byte(path)) from None
    except Exception as err:  # noqa: BLE001 - each decompressor raises its own kinds for a damaged stream
        if _compression(path) is None or isinstance(err, ConfigError):
            raise
        raise ConfigError(
            f"data.path: {path} does not decompress as {_compression(path)} ({str(err) or type(err).__name__}); "
            "allowed: a complete file in the format its extension names"
        ) from None


def source_files(path: str) -> list[str]:
    """A file, a folder (its *.txt, *.jsonl and *.parquet files, compressed or not, recursively) or a glob."""
    if any(c in path for c in "*?["):
        files = sorted(f for f in glob.glob(os.path.expanduser(path), recursive=True) if os.path.isfile(f))
    elif os.path.isdir(path):
        files = sorted(f for p in _FOLDER_PATTERNS for f in glob.glob(os.path.join(path, "**", p), recursive=True))
    else:
        files = [path] if os.path.isfile(path) else []
    if not files:
        raise ConfigError(
            f"data.path: got {path!r}; allowed: an existing text, JSON-lines or Parquet file (or a compressed one), "
            f"a folder of them, a glob pattern that matches files, or {' | '.join(BUILTIN + n for n in CORPORA)}"
        )
    return files


def _paragraphs(lines: Iterator[str]) -> Iterator[str]:
    buf: list[str] = []
    size = 0
    for line in lines:
        if not line.strip():
            if buf:
                yield "".join(buf).rstrip("\n")
            buf, size = [], 0
            continue
        buf.append(line)
        size += len(line)
        if size >= MAX_DOC_CHARS:
            yield "".join(buf).rstrip("\n")
            buf, size = [], 0
    if buf:
        yield "".join(buf).rstrip("\n")


def _field_error(field: str, where: str, found: Any) -> ConfigError:
    return ConfigError(
        f"data.text_field: got {field!r}, but {where} has no such text field (it has: {found}); "
        "allowed: the name of a field holding strings"
    )


def _json_lines(path: str, field: str) -> Iterator[str]:
    for n, line in enumerate(text_lines(path), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(
                f"data.path: got {path!r}, whose line {n} is not JSON; allowed: JSON lines (one object per line)"
            ) from None
        if not isinstance(rec, dict) or not isinstance(rec.get(field), str):
            found = ", ".join(rec) if isinstance(rec, dict) else type(rec).__name__
            raise _field_error(field, f"{path} line {n}", found)
        yield rec[field]


def _parquet(path: str, field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(_open_binary(path) if _compression(path) else path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several kinds for a file that is not Parquet
        raise ConfigError(
            f"data.path: got {path!r}, which does not read as Parquet ({str(err).splitlines()[0]})"
        ) from None
    if field not in pf.schema_arrow.names:
        raise _field_error(field, path, ", ".join(pf.schema_arrow.names))
    kind = pf.schema_arrow.field(field).type
    if str(kind) not in ("string", "large_string", "string_view"):
        raise _field_error(field, path, f"{field} holds {kind}, not text")
    for batch in pf.iter_batches(batch_size=1024, columns=[field]):
        yield from (t for t in batch.column(0).to_pylist() if t)


def _file_documents(path: str, field: str) -> Iterator[str]:
    stem = path[: -len(os.path.splitext(path)[1])] if _compression(path) else path
    ext = stem.lower().rsplit(".", 1)[-1]
    if ext in ("jsonl", "json"):
        return _json_lines(path, field)
    if ext == "parquet":
        return _parquet(path, field)
    return _paragraphs(text_lines(path))


# ---------------------------------------------------------------------------------------
# Corpora that install with the suite (gensim's test data)


def gensim_data(filename: str) -> str:
    """The path of a file gensim's wheel ships in its test data (gensim.test.utils.datapath)."""
    from gensim.test.utils import datapath

    return datapath(filename)


def _wiki_articles(path: str) -> Iterator[str]:
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    with bz2.open(path, "rb") as f:
        for _title, text, _pageid in extract_pages(f, filter_namespaces=("0",)):
            if text.lstrip().lower().startswith("#redirect"):
                continue
            plain = re.sub(r"'{2,}", "", filter_wiki(text)).strip()  # bold/italic quotes filter_wiki leaves
            if len(re.findall(r"\w+", plain)) >= WIKI_MIN_WORDS:
                yield plain


def _lines_as_documents(path: str) -> Iterator[str]:
    yield from (line.strip() for line in text_lines(path) if line.strip())


# name -> (gensim test-data file, reader, what it is)
CORPORA: dict[str, tuple[str, Callable[[str], Iterator[str]], str]] = {
    "wiki_sample": (
        "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
        _wiki_articles,
        "English Wikipedia articles (CC BY-SA), an article per document",
    ),
    "lee_news": ("lee_background.cor", _lines_as_documents, "the Lee background news corpus, a story per document"),
}


def _builtin_source(path: str) -> Source:
    name = path[len(BUILTIN) :]
    if name not in CORPORA:
        raise ConfigError(
            f"data.path: got {path!r}, an unknown built-in corpus; allowed: "
            f"{' | '.join(BUILTIN + n for n in CORPORA)} (or a file, folder or glob)"
        )
    filename, reader, _ = CORPORA[name]
    file = gensim_data(filename)
    st = os.stat(file)
    total = None if _compression(file) else st.st_size
    return Source(name, json.dumps([path, file, st.st_size, st.st_mtime_ns]), total, "B", lambda: reader(file))


# ---------------------------------------------------------------------------------------
# Hugging Face datasets, and the dispatch


def _load_dataset(d: DataConfig):
    """A Hugging Face dataset: a local builder over data.path (text / json / parquet / csv), a folder written
    by save_to_disk, or a hub name (online only)."""
    import datasets

    datasets.disable_progress_bars()
    name = d.dataset
    try:
        if name in DATASET_BUILDERS:
            if not d.path:
                raise ConfigError(f"data.path: got null with data.dataset={name!r}; allowed: the files to load")
            ds = datasets.load_dataset(name, data_files=source_files(d.path), split=d.split)
        elif os.path.isdir(os.path.expanduser(name)):
            ds = datasets.load_from_disk(os.path.expanduser(name))
            if isinstance(ds, datasets.DatasetDict):
                if d.split not in ds:
                    raise ConfigError(f"data.split: got {d.split!r}; allowed: one of {', '.join(ds)}")
                ds = ds[d.split]
        else:
            ds = datasets.load_dataset(name, split=d.split)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - the datasets library raises many kinds; the user needs the message
        raise ConfigError(
            f"data.dataset: got {name!r}, which did not load ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); allowed: {' | '.join(DATASET_BUILDERS)} "
            "with data.path, a save_to_disk folder, or a hub name when online"
        ) from None
    if d.text_field not in ds.column_names:
        raise _field_error(d.text_field, f"dataset {name!r}", ", ".join(ds.column_names))
    kind = getattr(ds.features[d.text_field], "dtype", None)
    if kind not in ("string", "large_string"):
        raise _field_error(
            d.text_field, f"dataset {name!r}", f"{d.text_field} holds {ds.features[d.text_field]}, not text"
        )
    return ds


def open_source(d: DataConfig) -> Source:
    """The documents a data config names (a dataset, a built-in corpus, or files), all or one shard of them
    (data.documents 'i/n': the documents whose index is i mod n)."""
    src = _open_all(d)
    if d.documents == "all":
        return src
    i, n = (int(x) for x in d.documents.split("/"))
    every = src.documents
    return Source(
        f"{src.name}.{i}of{n}",
        json.dumps([src.fingerprint, d.documents]),
        None,
        src.unit,
        lambda: (doc for k, doc in enumerate(every()) if k % n == i),
    )


def _open_all(d: DataConfig) -> Source:
    if d.dataset:
        ds = _load_dataset(d)
        field = d.text_field

        def docs() -> Iterator[str]:
            for batch in ds.iter(batch_size=1000):
                yield from (t for t in batch[field] if t)

        name = os.path.basename(os.path.normpath(d.dataset)) or "dataset"
        return Source(name, f"dataset:{d.dataset}:{d.split}:{field}:{ds._fingerprint}", len(ds), "rows", docs)
    if d.path.startswith(BUILTIN):
        return _builtin_source(d.path)
    files = source_files(d.path)
    stats = [(os.path.abspath(f), os.path.getsize(f), os.stat(f).st_mtime_ns) for f in files]

    def docs() -> Iterator[str]:
        for f in files:
            yield from _file_documents(f, d.text_field)

    name = os.path.basename(os.path.normpath(d.path.split("*")[0])) or "corpus"
    name = name[: -len(os.path.splitext(name)[1])] if _compression(name) else name
    total = None if any(_compression(f) for f in files) else sum(s[1] for s in stats)
    return Source(name, json.dumps([stats, d.text_field]), total, "B", docs)


# which documents are held out (every prepared corpus splits by this rule)
SEPARATOR = "\n\n"


def _fmix32(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x85EBCA6B)
    x ^= x >> np.uint32(13)
    x *= np.uint32(0xC2B2AE35)
    x ^= x >> np.uint32(16)
    return x


def held_out(doc_ids: np.ndarray, eval_fraction: float) -> np.ndarray:
    """Which documents the split holds out (a pure function of the document index)."""
    return _fmix32(doc_ids.astype(np.uint32) + np.uint32(0x9E3779B9)) < np.uint32(
        min(eval_fraction * 2.0**32, 2.0**32 - 1)
    )
