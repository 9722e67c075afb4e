"""A pretrained source's rows put in a run's vocabulary order: matched by token string (exact, then the
leading-space spellings reconciled, then lowercase) or by id, the rest filled (`missing`), a wider source narrowed
(`project`). Pure NumPy; `PretrainedTable` is what a run keeps of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .source import Source

MISSING = ("init", "mean", "zero", "error")


PROJECTS = ("error", "pca", "truncate")


# a leading space, as byte-level BPE (Ġ), SentencePiece (▁) and plain text spell it
SPACE_MARKS = ("\u0120", "\u2581", " ")


@dataclass
class Alignment:
    """A run's table from a source: E's rows follow the run's vocabulary."""

    E: np.ndarray  # float32 (V, d); unmatched rows filled per `missing`
    matched: np.ndarray  # bool (V,)
    how: dict[str, int]  # matched rows by rule: exact | spelling (Ġ/▁/space) | lowercase | id
    initialised: list[int]  # the run ids that were not matched (filled)


def _spaced(t: str) -> str:
    """A leading Ġ, ▁ or space as one space."""
    return " " + t[1:] if t[:1] in SPACE_MARKS else t


def _bare(t: str) -> str:
    """Without a leading Ġ, ▁ or space (a word-level source's spelling)."""
    return t[1:] if t[:1] in SPACE_MARKS else t


# tried in order on the tokens still unmatched; a key matches the first source row with that key
_RULES: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("exact", lambda t: t),
    ("spelling", _spaced),
    ("spelling", _bare),
    ("lowercase", lambda t: _spaced(t).lower()),
    ("lowercase", lambda t: _bare(t).lower()),
)


def _match_tokens(tokens: list[str], vocab: list[str], lowercase: bool) -> tuple[np.ndarray, dict[str, int]]:
    """(V,) source row per run token (-1: none) and the count per rule."""
    rows = np.full(len(vocab), -1, np.int64)
    how = dict.fromkeys(("exact", "spelling", "lowercase", "id"), 0)
    todo = [v for v, t in enumerate(vocab) if t]
    for rule, key in _RULES:
        if not todo or (rule == "lowercase" and not lowercase):
            continue
        keys = [key(t) for t in tokens]
        index = dict(zip(reversed(keys), range(len(keys) - 1, -1, -1)))  # the first row wins
        index.pop("", None)
        left = []
        for v in todo:
            i = index.get(key(vocab[v]), -1)
            if i >= 0:
                rows[v], how[rule] = i, how[rule] + 1
            else:
                left.append(v)
        todo = left
    return rows, how


def align(
    source: Source,
    vocab: list[str],
    *,
    d: int,
    missing: str = "init",
    project: str = "error",
    by_id: bool = False,
    lowercase: bool = True,
    rng: np.random.Generator | None = None,
    init_std: float | None = None,
) -> Alignment:
    """The run's V×d table from `source`: row v is the source row of token vocab[v].

    Matching, by token string: exact; then the leading-space spellings reconciled (Ġthe = ▁the = " the"; then
    a word-level source's "the" for Ġthe/▁the, and the reverse); then (`lowercase`) the same case-folded. A
    source without tokens, or `by_id`: run id i is source row i (rows past V unused; fewer rows leave the rest
    unmatched). Unmatched rows (`missing`): `init` N(0, σ²), σ = `init_std` or the std of all entries of the
    matched rows, drawn from `rng` (default: seed 0); `mean` the matched rows' mean; `zero`; `error`.
    A source wider than d (`project`): `error`; `truncate` keeps the first d columns; `pca` gives the scores on
    the d principal components of the matched rows, centred (as sklearn's PCA.transform: the matched rows' mean
    is removed, not added back, so they and `init` rows are centred alike), each component's largest loading
    positive. Neither widens a source narrower than d. σ and the mean are measured after projecting.
    """
    _choose("missing", missing, MISSING)
    _choose("project", project, PROJECTS)
    width = source.E.shape[1]
    if width != d and (project == "error" or width < d):
        allowed = f"{d} (the run's width), or project='pca' | 'truncate' to narrow a wider source"
        raise ValueError(f"pretrained width: got {width} from {source.path!r}; allowed: {allowed}")
    if by_id or source.tokens is None:
        n = min(len(vocab), len(source.E))
        rows = np.where(np.arange(len(vocab)) < n, np.arange(len(vocab)), -1)
        how = {"exact": 0, "spelling": 0, "lowercase": 0, "id": n}
    else:
        rows, how = _match_tokens(source.tokens, vocab, lowercase)
    matched = rows >= 0
    if not matched.any():
        first = ", ".join(map(repr, vocab[:3]))
        raise ValueError(f"pretrained source {source.path!r}: got no row for any of {len(vocab)} tokens ({first}, …)")
    X = _project(source.E[rows[matched]], d, project)
    E = np.empty((len(vocab), d), np.float32)
    E[matched] = X
    initialised = np.flatnonzero(~matched).tolist()
    if initialised:
        E[~matched] = _fill(X, [vocab[v] for v in initialised], len(vocab), missing, rng, init_std, source)
    return Alignment(E, matched, how, initialised)


def _choose(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key}: got {value!r}; allowed: {' | '.join(allowed)}")


def _fill(
    X: np.ndarray, absent: list[str], V: int, missing: str, rng, init_std: float | None, source: Source
) -> np.ndarray:
    """Rows for the `absent` tokens, from the matched rows X."""
    k, d = len(absent), X.shape[1]
    if missing == "error":
        first = ", ".join(map(repr, absent[:5])) + (", …" if k > 5 else "")
        raise ValueError(
            f"pretrained source {source.path!r}: got no row for {k} of {V} tokens ({first}); "
            "allowed: missing='init' | 'mean' | 'zero' to fill them"
        )
    if missing == "zero":
        return np.zeros((k, d), np.float32)
    if missing == "mean":
        return np.broadcast_to(X.mean(0, dtype=np.float64), (k, d)).astype(np.float32)
    sigma = float(np.std(X, dtype=np.float64)) if init_std is None else float(init_std)
    rng = np.random.default_rng(0) if rng is None else rng
    return rng.normal(0.0, sigma, (k, d)).astype(np.float32)


def _project(X: np.ndarray, d: int, project: str, chunk: int = 65_536) -> np.ndarray:
    """X (n×d') -> n×d: itself, its first d columns, or its centred scores on its top d principal components
    (fit in float64 from the d'×d' covariance, accumulated in row chunks)."""
    n, width = X.shape
    if width == d:
        return X
    if project == "truncate":
        return np.ascontiguousarray(X[:, :d])
    if n < d:
        raise ValueError(f"project='pca': got {n} matched rows; allowed: at least d={d} to fit {d} components")
    mu = X.mean(0, dtype=np.float64)
    C = np.zeros((width, width))
    for s in range(0, n, chunk):
        Xc = X[s : s + chunk].astype(np.float64) - mu
        C += Xc.T @ Xc
    _, vecs = np.linalg.eigh(C)  # ascending eigenvalues
    W = vecs[:, ::-1][:, :d]  # d'×d, largest first
    W *= np.sign(W[np.abs(W).argmax(0), np.arange(d)])  # each component's largest loading positive
    out = np.empty((n, d), np.float32)
    for s in range(0, n, chunk):
        out[s : s + chunk] = (X[s : s + chunk].astype(np.float64) - mu) @ W
    return out


@dataclass(frozen=True)
class PretrainedTable:
    """What a run keeps of an aligned source: E (V×d float32), which rows the source had (tokens.tsv's `pretrained`
    column, embedding.freeze=pretrained's held rows) and the summary's `embedding/pretrained_*` keys."""

    E: np.ndarray
    matched: np.ndarray
    info: dict
