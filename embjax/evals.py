"""Evaluations of a learned table against outside data: word similarity (WordSim-353 / SimLex-999 style).

`word_similarity(E, tokenizer, pairs_file)` reads pairs of words with a human similarity score, gives
each word the mean of its subword pieces' rows of E, and reports Spearman's ρ between the pairs'
cosine similarities and the human scores, with how many pairs were used and skipped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from .stats import spearman

_SEP = re.compile(r"[\t,;]|\s+")


def read_pairs(path: str) -> tuple[list[tuple[str, str, float]], int]:
    """(word, word, score) rows of a pairs file, and how many non-empty lines were not pairs (a header, say).

    A line is `word1 SEP word2 SEP score [more columns]`, SEP a tab, comma, semicolon or spaces; lines
    starting with '#' are comments. SimLex-999's own file (a header, then word1 word2 POS SimLex999 ...)
    needs its score column chosen by the caller first: here the third field is the score.
    """
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise ValueError(f"word similarity pairs: got {path!r}; allowed: an existing, non-empty text file")
    pairs, other = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = [x for x in _SEP.split(line) if x]
            try:
                pairs.append((fields[0], fields[1], float(fields[2])))
            except (IndexError, ValueError):
                other += 1
    if not pairs:
        raise ValueError(f"word similarity pairs: {path!r} holds no 'word word score' line")
    return pairs, other


def _encoder(tokenizer: Any) -> Callable[[str], list[int]]:
    """word -> piece ids, from a `tokenizers.Tokenizer`, a {token: id} mapping or a callable."""
    if hasattr(tokenizer, "encode"):
        return lambda w: list(tokenizer.encode(w).ids)
    if isinstance(tokenizer, dict):
        return lambda w: [tokenizer[w]] if w in tokenizer else []
    if callable(tokenizer):
        return lambda w: list(tokenizer(w))
    raise TypeError(f"tokenizer: got {type(tokenizer).__name__}; allowed: a tokenizers.Tokenizer, a dict or a callable")


def word_similarity(E: Any, tokenizer: Any, pairs_file: str) -> dict[str, float]:
    """Spearman's ρ between cos(vec(w₁), vec(w₂)) and the file's human scores, vec(w) = the mean of the rows
    of w's subword pieces (in float64). A pair is skipped when a word has no pieces or a zero vector;
    a piece id outside [0, V) is an error (the tokenizer does not belong to E)."""
    return pairs_similarity(E, tokenizer, read_pairs(pairs_file)[0])


def pairs_similarity(E: Any, tokenizer: Any, pairs: list[tuple[str, str, float]]) -> dict[str, float]:
    """word_similarity on pairs already read (read_pairs), e.g. once for a whole run."""
    E = np.asarray(E)
    encode = _encoder(tokenizer)
    cache: dict[str, np.ndarray | None] = {}

    def vec(word: str) -> np.ndarray | None:
        if word not in cache:
            ids = encode(word)
            bad = [i for i in ids if not 0 <= i < E.shape[0]]
            if bad:
                raise ValueError(f"word similarity: {word!r} encodes to id {bad[0]}; allowed: ids in [0, {E.shape[0]})")
            v = np.asarray(E[ids], np.float64).mean(axis=0) if ids else None
            cache[word] = v if v is not None and np.linalg.norm(v) > 0 else None
        return cache[word]

    cos, human = [], []
    for w1, w2, score in pairs:
        a, b = vec(w1), vec(w2)
        if a is None or b is None:
            continue
        cos.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
        human.append(score)
    rho = spearman(np.asarray(cos), np.asarray(human)) if len(cos) >= 2 else float("nan")
    return {
        "word_sim/spearman": rho,
        "word_sim/pairs": float(len(cos)),
        "word_sim/skipped": float(len(pairs) - len(cos)),
    }
