"""Evaluations of a learned table against human judgments: word similarity and word analogies.

Benchmarks by name (the files gensim's wheel ships) or by path:
  wordsim353  WordSim-353 (Finkelstein et al. 2002): 353 pairs, relatedness scores 0-10
  simlex999   SimLex-999 (Hill et al. 2015): 999 pairs, similarity scores 0-10
  google      the Google analogies (Mikolov et al. 2013): 19,544 questions "a b c d" in 14 sections
A word's vector: on a word-level vocabulary (data.tokenizer=word, the planted corpus) the row of the token
spelled as the word (lowercased by the word tokenizer); a word that is not one row (it maps to <unk>, or to no
token) is left out, with its pair or question, as gensim does with dummy4unknown=False. On a subword
vocabulary (BPE, bytes) a word's vector for similarity is the mean of its pieces' rows; analogies need
single rows (a word that is one piece).

Similarity: Spearman's ρ between cos(vec(w₁), vec(w₂)) and the human scores. Analogy: 3CosAdd (Mikolov et al.
2013), the row x maximising cos(x, b̂ − â + ĉ) over every row but a, b and c, top-1 accuracy over the questions
whose four words are rows; semantic and syntactic are the sections whose names do not / do start with "gram"
(the Google set's own split). With the same vectors and vocabulary both equal gensim 4.4's KeyedVectors
`evaluate_word_pairs` / `evaluate_word_analogies` with case_insensitive=True (the word tokenizer lowercases),
dummy4unknown=False and restrict_vocab=V (every row a candidate; gensim's default, 300,000, covers V ≤ 300,000).
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Config, ConfigError
from .stats import spearman

_SEP = re.compile(r"[\t,;]|\s+")
# benchmark name -> gensim test-data file (config.py lists the same names, to validate log.* keys)
SIMILARITY_SETS = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}
ANALOGY_SETS = {"google": "questions-words.txt"}

Pair = tuple[str, str, float]
Question = tuple[str, str, str, str, str]  # (section, a, b, c, expected)


def benchmark_files(value: str | tuple[str, ...] | None, names: dict[str, str]) -> list[tuple[str, str]]:
    """(set name, file) for a log.word_similarity / log.analogy value: a name (`names`), a path (named by its file
    stem), or a list of them; the config has checked each is a known name or an existing file."""
    if value is None:
        return []
    out = []
    for item in (value,) if isinstance(value, str) else value:
        if item in names:
            from gensim.test.utils import datapath

            out.append((item, datapath(names[item])))
        else:
            out.append((os.path.splitext(os.path.basename(item))[0], item))
    return out


@dataclass(frozen=True)
class PairsFile:
    """A pairs file as read: its (word, word, score) rows and the non-empty, non-comment lines that are not one
    (`unreadable`: how many; `first`: the first, as `line N: 'text'`)."""

    path: str
    pairs: tuple[Pair, ...]
    unreadable: int
    first: str | None

    def problem(self) -> str | None:
        """Why a run must not score this file (fewer than MIN_PAIRS pairs, or fewer pairs than unreadable lines:
        not a pairs file, or the wrong separator), or None."""
        if len(self.pairs) >= MIN_PAIRS and len(self.pairs) >= self.unreadable:
            return None
        return (
            f"{self.path!r}: {len(self.pairs)} 'word word score' pair(s) and {self.unreadable} unreadable line(s) "
            f"(the first: {self.first}); allowed: at least {MIN_PAIRS} pairs and at least as many pairs as "
            "unreadable lines"
            if self.unreadable
            else f"{self.path!r}: {len(self.pairs)} 'word word score' pair(s); allowed: at least {MIN_PAIRS} pairs"
        )

    def warning(self) -> str | None:
        """One line saying which lines were left out, or None when every line is a pair (or a comment)."""
        if not self.unreadable:
            return None
        return (
            f"warning: {self.path}: {self.unreadable} of {self.unreadable + len(self.pairs)} lines are not "
            f"'word word score' pairs and are left out (the first: {self.first}); scored on the other "
            f"{len(self.pairs)}"
        )


MIN_PAIRS = 10  # a run refuses a similarity file with fewer pairs (a ρ over fewer says next to nothing)


def read_pairs(path: str) -> tuple[list[Pair], int]:
    """(word, word, score) rows of a pairs file, and how many non-empty lines were not pairs (a header, say); see
    `load_pairs` for the first such line."""
    f = load_pairs(path)
    return list(f.pairs), f.unreadable


def load_pairs(path: str) -> PairsFile:
    """A pairs file's rows and unreadable lines. A line is `word1 SEP word2 SEP score [more columns]`, SEP a tab,
    comma, semicolon or spaces, the score a finite number; lines starting with '#' are comments. SimLex-999's
    original file (a header, then word1 word2 POS SimLex999 ...) needs its score column chosen by the caller first:
    here the third field is the score. Read once per version of the file (its size and mtime)."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise ValueError(f"word similarity pairs: got {path!r}; allowed: an existing, non-empty text file")
    st = os.stat(path)
    return _read_pairs(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_pairs(path: str, size: int, mtime_ns: int) -> PairsFile:
    pairs, unreadable, first = [], 0, None
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                fields = [x for x in _SEP.split(line) if x]
                try:
                    score = float(fields[2])
                    if not math.isfinite(score):
                        raise ValueError(score)
                    pairs.append((fields[0], fields[1], score))
                except (IndexError, ValueError):
                    unreadable += 1
                    first = first or f"line {n}: {line[:60]!r}"
    except UnicodeDecodeError as err:
        raise ValueError(
            f"word similarity pairs: {path!r} is not UTF-8 text (byte {err.start}); allowed: a 'word word score' "
            "text file"
        ) from None
    if not pairs:
        raise ValueError(
            f"word similarity pairs: {path!r} holds no 'word word score' line"
            + (f" ({unreadable} unreadable, the first: {first})" if first else "")
        )
    return PairsFile(path, tuple(pairs), unreadable, first)


def read_questions(path: str) -> list[Question]:
    """The questions of an analogy file in the Google format: `: section` lines, then `a b c d` lines (a line
    without four words is skipped, as gensim skips it)."""
    questions, section = [], None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.startswith(": "):
                section = line[2:].strip()
                continue
            words = line.split()
            if not words:
                continue
            if section is None:
                raise ValueError(f"analogies: {path!r} line {n} comes before any ': section' line")
            if len(words) == 4:
                questions.append((section, *words))
    if not questions:
        raise ValueError(f"analogies: {path!r} holds no 'a b c d' question under a ': section' line")
    return questions


def _encoder(tokenizer: Any) -> Callable[[str], list[int]]:
    """word -> piece ids, from a `tokenizers.Tokenizer`, a {token: id} mapping or a callable."""
    if hasattr(tokenizer, "encode"):
        return lambda w: list(tokenizer.encode(w).ids)
    if isinstance(tokenizer, dict):
        return lambda w: [tokenizer[w]] if w in tokenizer else []
    if callable(tokenizer):
        return lambda w: list(tokenizer(w))
    raise TypeError(f"tokenizer: got {type(tokenizer).__name__}; allowed: a tokenizers.Tokenizer, a dict or a callable")


@dataclass
class Lexicon:
    """Words -> rows of a V-row table: `encode` gives a word's token ids; with a word-level vocabulary
    (`words=True`) a word is one row or none (`unk`: the id that means "not in the vocabulary")."""

    encode: Callable[[str], list[int]]
    V: int
    words: bool = True
    unk: int | None = None

    def __post_init__(self):
        self._cache: dict[str, list[int]] = {}

    def pieces(self, word: str) -> list[int]:
        """The rows whose mean is the word's vector ([] when the word is not in the vocabulary)."""
        if word not in self._cache:
            ids = self.encode(word)
            bad = [i for i in ids if not 0 <= i < self.V]
            if bad:
                raise ValueError(f"word similarity: {word!r} encodes to id {bad[0]}; allowed: ids in [0, {self.V})")
            if self.words and (len(ids) != 1 or ids[0] == self.unk):
                ids = []
            self._cache[word] = ids
        return self._cache[word]

    def row(self, word: str) -> int | None:
        """The word's single row, or None."""
        ids = self.pieces(word)
        return ids[0] if len(ids) == 1 and ids[0] != self.unk else None


def word_similarity(E: Any, tokenizer: Any, pairs_file: str) -> dict[str, float]:
    """Spearman's ρ of a pairs file on E, a word's vector the mean of its subword pieces' rows (see
    `pairs_similarity`); keys `word_sim/spearman`, `word_sim/pairs`, `word_sim/skipped`, and `word_sim/unreadable`
    (the file's lines that are not pairs, see `load_pairs`)."""
    lex = Lexicon(_encoder(tokenizer), np.asarray(E).shape[0], words=False)
    got = load_pairs(pairs_file)
    return {**pairs_similarity(E, lex, got.pairs, "word_sim"), "word_sim/unreadable": float(got.unreadable)}


def _unit32(v: np.ndarray) -> np.ndarray:
    """v / ‖v‖ as gensim's unitvec makes it: the norm and the scaling in float64, the result float32."""
    v64 = np.asarray(v, np.float64)
    return (v64 * (1.0 / np.sqrt(v64 @ v64))).astype(np.float32)


def pair_cosines(E: Any, lex: Lexicon, pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
    """(cos, used): each pair's cos(vec(w₁), vec(w₂)) in the file's order (float64 of gensim's float32 dot product of
    float32 unit vectors; 0 where unused) and whether it is used (both words have rows and a nonzero vector)."""
    E = np.asarray(E)
    vecs: dict[str, np.ndarray | None] = {}

    def vec(word: str) -> np.ndarray | None:
        if word not in vecs:
            ids = lex.pieces(word)
            v = np.asarray(E[ids], np.float64).mean(axis=0) if ids else None
            vecs[word] = _unit32(v) if v is not None and np.linalg.norm(v) > 0 else None
        return vecs[word]

    cos, used = np.zeros(len(pairs), np.float64), np.zeros(len(pairs), bool)
    for i, (w1, w2, _) in enumerate(pairs):
        a, b = vec(w1), vec(w2)
        if a is not None and b is not None:
            cos[i], used[i] = float(np.dot(a, b)), True
    return cos, used


def pairs_similarity(E: Any, lex: Lexicon, pairs: list[Pair], prefix: str) -> dict[str, float]:
    """Spearman's ρ between cos(vec(w₁), vec(w₂)) and the human scores; a pair is skipped when a word has no rows
    or a zero vector. The cosine is gensim's: float32 unit vectors' float32 dot product, so equal words tie as in
    gensim (ρ equal to its evaluate_word_pairs to 1e-6). Keys `<prefix>/spearman`, `/pairs`, `/skipped`."""
    cos, used = pair_cosines(E, lex, pairs)
    human = np.asarray([score for _, _, score in pairs], np.float64)
    rho = spearman(cos[used], human[used]) if used.sum() >= 2 else float("nan")
    n = float(used.sum())
    return {f"{prefix}/spearman": rho, f"{prefix}/pairs": n, f"{prefix}/skipped": float(len(pairs)) - n}


def analogy_accuracy(E: Any, lex: Lexicon, questions: list[Question], prefix: str, chunk: int = 512) -> dict:
    """3CosAdd top-1 accuracy (float32 unit rows, as gensim): keys `<prefix>/accuracy`, `/semantic`,
    `/syntactic` (NaN when no question of that kind is used), `/questions` (used) and `/skipped`."""
    E = np.asarray(E, np.float32)
    norms = np.linalg.norm(E, axis=1)
    U = np.where(norms[:, None] > 0, E / np.where(norms > 0, norms, 1)[:, None], 0).astype(np.float32)
    used = []
    for section, *words in questions:
        rows = [lex.row(w) for w in words]
        if all(r is not None for r in rows) and all(norms[r] > 0 for r in rows):
            used.append((section.startswith("gram"), *rows))
    q = np.asarray(used, np.int64).reshape(-1, 5)
    correct = np.zeros(len(q), bool)
    for s in range(0, len(q), chunk):
        a, b, c, d = (q[s : s + chunk, j] for j in range(1, 5))
        target = np.stack([U[b], U[c], -U[a]]).mean(axis=0)
        target /= np.maximum(np.linalg.norm(target, axis=1, keepdims=True), np.finfo(np.float32).tiny)
        sims = target @ U.T  # (n, V)
        sims[:, norms == 0] = -np.inf
        n = np.arange(len(a))
        sims[n, a] = sims[n, b] = sims[n, c] = -np.inf
        correct[s : s + chunk] = sims.argmax(axis=1) == d
    mean = lambda x: float(x.mean()) if x.size else float("nan")
    syntactic = q[:, 0].astype(bool)
    return {
        f"{prefix}/accuracy": mean(correct),
        f"{prefix}/semantic": mean(correct[~syntactic]),
        f"{prefix}/syntactic": mean(correct[syntactic]),
        f"{prefix}/questions": float(len(q)),
        f"{prefix}/skipped": float(len(questions) - len(q)),
    }


class Benchmarks:
    """The benchmarks a run's log config names, read once, scored on any table of its vocabulary. A similarity file
    with unreadable lines is said once per process in one warning line (the config has refused a file that is
    mostly not pairs: `check_similarity_file`)."""

    def __init__(self, log: Any, lex: Lexicon):
        self.lex = lex
        self.pairs = []
        for n, p in benchmark_files(log.word_similarity, SIMILARITY_SETS):
            self.pairs.append((n, load_pairs(p)))
            _warn_once(self.pairs[-1][1].warning())
        self.analogies = [(n, read_questions(p)) for n, p in benchmark_files(log.analogy, ANALOGY_SETS)]

    def __bool__(self) -> bool:
        return bool(self.pairs or self.analogies)

    def scores(self, E: Any, table: str = "") -> dict[str, float]:
        """Every set's keys for one table: `word_sim{table}/<set>/…`, `analogy{table}/<set>/…` (table "" for the
        input table, "_out" for an untied output head)."""
        out: dict[str, float] = {}
        for name, got in self.pairs:
            out.update(pairs_similarity(E, self.lex, got.pairs, f"word_sim{table}/{name}"))
            out[f"word_sim{table}/{name}/unreadable"] = float(got.unreadable)
        for name, questions in self.analogies:
            out.update(analogy_accuracy(E, self.lex, questions, f"analogy{table}/{name}"))
        return out


_WARNED: set[str] = set()


def _warn_once(line: str | None) -> None:
    if line and line not in _WARNED:
        _WARNED.add(line)
        print(line, file=sys.stderr)


def check_similarity_file(path: str) -> None:
    """A ValueError (one line) when a run must not score this pairs file: see `PairsFile.problem`."""
    problem = load_pairs(path).problem()
    if problem:
        raise ValueError(problem)


def check_similarity_files(cfg: Config) -> None:
    """Every pairs file log.word_similarity names (not a shipped set), read before a run writes anything: one line
    (ConfigError) when one is not fit to score (see `PairsFile.problem`)."""
    value = cfg.log.word_similarity
    for item in () if value is None else (value,) if isinstance(value, str) else value:
        if item not in SIMILARITY_SETS:
            try:
                check_similarity_file(item)
            except ValueError as err:
                raise ConfigError(f"log.word_similarity: {err}") from None
