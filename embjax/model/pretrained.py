"""Pretrained token-embedding tables, read from the formats researchers meet.

`read_source(path)` detects the format from the path, its extension and its first bytes, and returns a
`Source`: the table E (float32, N×d') with a token string per row where the format has them.
`Source.describe()` says what was detected. The formats:

- `.npy` (never unpickled), its tokens from `tokens_file` (one per line) or a `tokens.tsv` beside it;
- word2vec text ("V d" header, then "token v1 … vd"), fastText `.vec` (the same) and GloVe text (no header,
  d from the first line; the last d fields are the vector, so a token may hold spaces): streamed line by
  line into one preallocated float32 array (the lines are counted first), never a list of numbers;
- word2vec binary (the header line, then per row: token, a space, d little-endian float32, maybe a newline);
- `.safetensors` and Hugging Face model folders (config.json, model.safetensors or shards with an index,
  tokenizer.json): the input-embedding tensor found by its usual names (`EMBEDDING_NAMES`) or `tensor=`;
- an embjax run directory (embeddings.npy + tokens.tsv).

A file that does not parse is a one-line ValueError naming it, what was expected and what was found.

Aligning a source's rows to a run's vocabulary is `align`'s job (embjax.model.align).
"""

from __future__ import annotations

import codecs
import json
import os

import numpy as np

from .source import CHUNK, EMBEDDING_NAMES, FLOAT_DTYPES, FORMATS, KIND_NAMES, Source, parse_error, snippet

# -- reading ---------------------------------------------------------------------------------------------


def read_source(path: str, *, tokens_file: str | None = None, tensor: str | None = None) -> Source:
    """Read a pretrained table, detecting its format (see the module docstring); `tokens_file` gives the token
    strings of a source that has none of its own (one per line, or an embjax tokens.tsv), `tensor` the tensor
    name in a safetensors file or Hugging Face folder."""
    path = os.fspath(path)
    if os.path.isdir(path):
        src = _read_folder(path, tensor, tokens_file)
    elif not os.path.isfile(path):
        raise ValueError(f"pretrained source: got {path!r}; allowed: an existing file or folder ({FORMATS})")
    elif path.endswith(".npy"):
        src = _read_npy(path, tokens_file)
    elif path.endswith(".safetensors"):
        E, name = _read_tensor([path], tensor, path)
        src = Source(None, E, "safetensors", tensor=name)
    else:
        src = _read_text_or_binary(path)
    if tensor is not None and src.kind not in ("safetensors", "hf_model"):
        raise ValueError(
            f"tensor: got {tensor!r} for a {KIND_NAMES[src.kind]}; allowed: only with a .safetensors file "
            "or a Hugging Face model folder"
        )
    if tokens_file is not None:
        if src.kind in ("word2vec_text", "word2vec_binary", "glove", "fasttext_vec"):
            raise ValueError(
                f"tokens_file: got {tokens_file!r} for a {KIND_NAMES[src.kind]}, which names its own tokens; "
                "allowed: only with a .npy, .safetensors or Hugging Face source"
            )
        src.tokens, src.tokenizer_file = _read_tokens_file(tokens_file, len(src.E)), None
    src.path = path
    _check_finite(src)
    return src


def _check_finite(src: Source, chunk: int = 1 << 16) -> None:
    """A row with a NaN or an infinity would train (and be measured) as noise: refused, naming the first ones."""
    bad = np.concatenate(
        [~np.isfinite(src.E[i : i + chunk]).all(axis=1) for i in range(0, len(src.E), chunk)] or [np.zeros(0, bool)]
    )
    if bad.any():
        rows = np.flatnonzero(bad)
        named = ", ".join(f"{i}" + (f" ({src.tokens[i]!r})" if src.tokens is not None else "") for i in rows[:5])
        raise ValueError(
            f"pretrained source: {src.path!r} has {len(rows):,} of {len(src.E):,} rows that are not finite (NaN or "
            f"±inf): row {named}{', …' if len(rows) > 5 else ''}; allowed: a table of finite numbers"
        )


def _read_folder(path: str, tensor: str | None, tokens_file: str | None) -> Source:
    """An embjax run directory or a Hugging Face model folder."""
    has = lambda name: os.path.isfile(os.path.join(path, name))
    if has("embeddings.npy") and has("tokens.tsv"):
        src = _read_npy(os.path.join(path, "embeddings.npy"), tokens_file)
        src.kind = "run_dir"
        return src
    if has("config.json"):
        return _read_hf(path, tensor)
    names = sorted(os.listdir(path))
    held = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    expected = (
        "a Hugging Face model folder (config.json + model*.safetensors) or an embjax run directory "
        "(embeddings.npy + tokens.tsv)"
    )
    raise parse_error(path, expected, f"a folder holding {held or 'nothing'}")


def _read_npy(path: str, tokens_file: str | None) -> Source:
    """A 2-D numeric .npy, loaded without unpickling; tokens from `tokens_file` or a tokens.tsv beside it."""
    try:
        E = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower():
            found = "pickled Python objects (not loaded: a pickle can run code)"
            raise parse_error(path, "a numeric V×d .npy array", found) from None
        raise parse_error(path, "a numeric V×d .npy array", f"a file that does not parse ({e}) (damaged)") from None
    except (OSError, EOFError) as e:
        raise parse_error(path, "a numeric V×d .npy array", f"a file that does not parse ({e}) (damaged)") from None
    if not isinstance(E, np.ndarray) or E.ndim != 2 or E.dtype.kind not in "fiu":
        found = f"an array of shape {getattr(E, 'shape', '?')} and dtype {getattr(E, 'dtype', '?')}"
        raise parse_error(path, "a numeric V×d .npy array", found)
    beside = os.path.join(os.path.dirname(path), "tokens.tsv")
    tokens = None
    if tokens_file is None and os.path.isfile(beside):
        tokens = _read_tokens_file(beside, len(E))
    return Source(tokens, np.ascontiguousarray(E, np.float32), "npy")


def _read_tokens_file(path: str, n: int) -> list[str]:
    """Token strings: an embjax tokens.tsv (header "id<TAB>token…": the token column, as written) or one per line."""
    with open(path, encoding="utf-8", newline="\n") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines and lines[0].startswith("id\ttoken"):
        rows = [line.split("\t") for line in lines[1:]]
        bad = next((i for i, r in enumerate(rows) if len(r) < 2), None)
        if bad is not None:
            raise parse_error(
                path, "id<TAB>token<TAB>… rows (tokens.tsv)", f"line {bad + 2}: {snippet(lines[bad + 1])}"
            )
        tokens = [r[1] for r in rows]
    else:
        tokens = [line.rstrip("\r") for line in lines]
    if len(tokens) != n:
        raise parse_error(path, f"{n} tokens, one per row of the table", f"{len(tokens)}")
    return tokens


def _read_text_or_binary(path: str) -> Source:
    """word2vec text or binary, fastText .vec or GloVe, told apart by the first bytes."""
    with open(path, "rb") as f:
        head = f.read(CHUNK)
    first, _, rest = head.partition(b"\n")
    fields = first.split()
    if len(fields) == 2 and all(x.isdigit() for x in fields):
        n, d = int(fields[0]), int(fields[1])
        if _is_text(rest, d):
            kind = "fasttext_vec" if path.endswith(".vec") else "word2vec_text"
            tokens, E = _read_text(path, kind, d, header=n)
        else:
            kind = "word2vec_binary"
            tokens, E = _read_binary(path, n, d, offset=len(first) + 1)
        return Source(tokens, E, kind)
    parts = first.decode("utf-8", errors="replace").rstrip().split(" ")
    if len(parts) >= 2 and _floats(parts[1:]):
        tokens, E = _read_text(path, "glove", len(parts) - 1, header=None)
        return Source(tokens, E, "glove")
    raise parse_error(path, FORMATS, f"a file starting {snippet(first)}")


def _floats(fields: list[str]) -> bool:
    try:
        np.asarray(fields, np.float32)
        return True
    except ValueError:
        return False


def _is_text(rest: bytes, d: int) -> bool:
    """After a "V d" header: text if the first row parses as a token and d numbers, or the bytes read are
    UTF-8 without NULs (a damaged text file, to be named by its line); else binary."""
    line = rest.partition(b"\n")[0].decode("utf-8", errors="replace").rstrip()
    parts = line.rsplit(" ", d)
    if len(parts) == d + 1 and _floats(parts[1:]):
        return True
    if b"\x00" in rest:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(rest, final=False)
        return True
    except UnicodeDecodeError:
        return False


def _count_lines(path: str) -> int:
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            n, last = n + chunk.count(b"\n"), chunk[-1:]
    return n + (last != b"\n")


def _read_text(path: str, kind: str, d: int, header: int | None) -> tuple[list[str], np.ndarray]:
    """Rows of "token v1 … vd" streamed into one float32 array, sized by the header or by counting the lines
    first (blank lines skipped; the token is all but the last d fields, so it may hold spaces)."""
    lines = _count_lines(path) - (header is not None)
    expected = f"{KIND_NAMES[kind]}: a token and {d} numbers per line"
    if header is not None and lines < header:
        raise parse_error(path, f"{header} rows (its header)", f"{max(lines, 0)} lines (damaged: truncated)")
    n = header if header is not None else lines
    E, tokens, i = np.empty((n, d), np.float32), [], 0
    with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
        if header is not None:
            f.readline()
        for lineno, line in enumerate(f, 1 + (header is not None)):
            line = line.rstrip()
            if not line:
                continue
            parts = line.rsplit(" ", d)
            if i == n:
                raise parse_error(path, f"{n} rows (its header)", f"more, from line {lineno} (damaged)")
            try:
                if len(parts) != d + 1:
                    raise ValueError
                E[i] = parts[1:]
            except ValueError:
                raise parse_error(path, expected, f"line {lineno}: {snippet(line)} (damaged)") from None
            tokens.append(parts[0])
            i += 1
    if header is not None and i != n:
        raise parse_error(path, f"{n} rows (its header)", f"{i} (damaged: truncated)")
    return tokens, (E if i == n else E[:i].copy())


def _read_binary(path: str, n: int, d: int, offset: int) -> tuple[list[str], np.ndarray]:
    """word2vec binary rows (token, space, d float32 little-endian, maybe a newline), read in 1 MiB chunks."""
    expected = f"{n} rows of a token and {d} float32 (word2vec binary, by its header)"
    size, need = os.path.getsize(path), 4 * d
    if size - offset < n * (need + 2):
        raise parse_error(path, expected, f"{size} bytes, too few (damaged: truncated)")
    E, tokens = np.empty((n, d), np.float32), []
    with open(path, "rb") as f:
        f.seek(offset)
        buf, pos = b"", 0
        for i in range(n):
            buf, pos, sp = _next_record(f, buf, pos, need)
            if sp < 0:
                why = "the file ends" if sp == -1 else "no token ends"
                raise parse_error(path, expected, f"{why} in row {i + 1} (damaged)")
            tokens.append(buf[pos:sp].lstrip(b"\n").decode("utf-8", errors="replace"))
            E[i] = np.frombuffer(buf, "<f4", d, sp + 1)
            pos = sp + 1 + need
    return tokens, E


def _next_record(f, buf: bytes, pos: int, need: int) -> tuple[bytes, int, int]:
    """(buffer, start, end of the token) with `need` bytes after the token's space in the buffer; end -1: the
    file ended first, -2: no space in a chunk's worth of bytes."""
    while True:
        sp = buf.find(b" ", pos)
        if sp >= 0 and len(buf) - sp - 1 >= need:
            return buf, pos, sp
        if sp < 0 and len(buf) - pos > CHUNK:
            return buf, pos, -2
        more = f.read(CHUNK)
        if not more:
            return buf, pos, -1
        buf, pos = buf[pos:] + more, 0


def _catalog(files: list[str]) -> dict[str, tuple[str, tuple[int, ...], str]]:
    """{tensor name: (file, shape, dtype)} from the safetensors headers (no tensor read)."""
    from safetensors import safe_open

    out = {}
    for file in files:
        try:
            with safe_open(file, framework="np") as f:
                for name in f.keys():
                    s = f.get_slice(name)
                    out[name] = (file, tuple(s.get_shape()), s.get_dtype())
        except Exception as e:  # safetensors raises its own error types for a bad header
            raise parse_error(file, "a safetensors file", f"a file that does not parse ({e}) (damaged)") from None
    return out


def _pick(names, tensor: str | None) -> str | None:
    """The input-embedding tensor's name: `tensor` itself, or the first suffix of EMBEDDING_NAMES that some name
    ends with (the encoder's before a decoder's, then the shortest)."""
    names = list(names)
    if tensor is not None:
        return tensor if tensor in names else None
    for suffix in EMBEDDING_NAMES:
        hits = [n for n in names if n == suffix or n.endswith("." + suffix)]
        if hits:
            return min(hits, key=lambda n: ("decoder" in n, len(n), n))
    return None


def _read_tensor(files: list[str], tensor: str | None, where: str) -> tuple[np.ndarray, str]:
    """The input-embedding tensor (2-D, a float type) from safetensors `files`, as float32, and its name."""
    catalog = _catalog(files)
    matrices = {n: v for n, v in catalog.items() if len(v[1]) == 2}
    name = _pick(matrices, tensor)
    if name is None:
        listed = ", ".join(f"{n} {tuple(v[1])}" for n, v in list(matrices.items())[:10])
        listed += f" and {len(matrices) - 10} more" if len(matrices) > 10 else ""
        if tensor is not None:
            raise ValueError(f"tensor: got {tensor!r}; allowed: a 2-D tensor of {where!r}: {listed or 'none'}")
        wanted = f"an input-embedding tensor (a name ending in {', '.join(EMBEDDING_NAMES)}) or tensor=NAME"
        raise parse_error(where, wanted, f"2-D tensors {listed}" if listed else "no 2-D tensor")
    file, _, dtype = matrices[name]
    if dtype not in FLOAT_DTYPES:
        raise parse_error(file, f"a float tensor {name} ({', '.join(FLOAT_DTYPES)})", dtype)
    from safetensors import safe_open

    try:
        with safe_open(file, framework="np") as f:
            E = np.asarray(f.get_tensor(name)).astype(np.float32)  # bfloat16 through ml_dtypes
    except Exception as e:
        raise parse_error(file, f"tensor {name}", f"data that does not read ({e}) (damaged)") from None
    return E, name


def _read_hf(path: str, tensor: str | None) -> Source:
    """A Hugging Face model folder: the embedding tensor from model.safetensors or the shard that the index's
    weight_map names for it; token strings by id from tokenizer.json (when there is one)."""
    index, single = os.path.join(path, "model.safetensors.index.json"), os.path.join(path, "model.safetensors")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise parse_error(index, "a safetensors index (JSON with a weight_map)", f"{e} (damaged)") from None
        shard = weight_map.get(_pick(weight_map, tensor))
        files = [shard] if shard else sorted(set(weight_map.values()))
        E, name = _read_tensor([os.path.join(path, f) for f in files], tensor, path)
    elif os.path.isfile(single):
        E, name = _read_tensor([single], tensor, path)
    else:
        found = ", ".join(sorted(n for n in os.listdir(path) if n != "config.json")[:8]) or "no weights"
        expected = "model.safetensors, or shards with model.safetensors.index.json (convert other weights first)"
        raise parse_error(path, expected, found)
    tokenizer = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(tokenizer):
        return Source(None, E, "hf_model", tensor=name)
    return Source(hf_tokens(tokenizer, len(E)), E, "hf_model", tensor=name, tokenizer_file=tokenizer)


def hf_tokens(tokenizer: str, n: int) -> list[str]:
    """A token string per row, by id, from a tokenizer.json ("" for a row no token has; ids past the table
    dropped)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        msg = f"pretrained source: {tokenizer!r} needs the tokenizers package (pip install embjax[text])"
        raise ValueError(msg) from None
    try:
        vocab = Tokenizer.from_file(tokenizer).get_vocab()
    except Exception as e:
        raise parse_error(
            tokenizer, "a Hugging Face tokenizer.json", f"a file that does not load ({e}) (damaged)"
        ) from None
    tokens = [""] * n
    for token, i in vocab.items():
        if i < n:
            tokens[i] = token
    return tokens
