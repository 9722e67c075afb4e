"""Corpora: the embedded planted-structure corpus and prepared (tokenised, memory-mapped) text.

Dimensions: V vocabulary, K latent classes, M tokens per class, B batch, T time.
A training batch is a pure function of (data key, step): `corpus.batch(tables, key, step)` runs
inside jit, so resume and vmap over seeds are exact. The planted corpus samples on the device; a
prepared text corpus has the host read the windows at the starts drawn in jit (a callback).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Config, ConfigError
from .prepare import prepare, read_meta, verify
from .tokenizers import UNK


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _inverse_cdf_sample(key: jax.Array, cdf_NxM: jax.Array, rows: jax.Array) -> jax.Array:
    """For each entry of `rows`, draw j with P(j) = cdf[row, j] - cdf[row, j-1].

    A binary search of ⌈log2 M⌉ scalar gathers per draw: no (..., M) slice is ever materialised,
    so a class with 16k tokens costs no more memory than one with 16.
    """
    M = cdf_NxM.shape[1]
    u = jax.random.uniform(key, rows.shape, cdf_NxM.dtype)
    lo = jnp.zeros(rows.shape, jnp.int32)  # answer = #{j : cdf[row, j] <= u}, in [lo, hi]
    hi = jnp.full(rows.shape, M, jnp.int32)

    def halve(_, bounds):
        lo, hi = bounds
        mid = (lo + hi) // 2
        below = cdf_NxM[rows, jnp.minimum(mid, M - 1)] <= u
        return jnp.where(below, mid + 1, lo), jnp.where(below, hi, mid)

    lo, _ = jax.lax.fori_loop(0, max(1, int(M).bit_length()), halve, (lo, hi))
    return jnp.minimum(lo, M - 1)


@dataclass
class Corpus:
    """What the loop needs from any corpus."""

    vocab_size: int
    seq_len: int
    tokens: list[str]  # a string per id, for tokens.tsv and exports
    counts: np.ndarray  # (V,) float64 token frequencies in the training stream (expected or counted)
    labels: np.ndarray | None  # (V,) int ground-truth classes, if the corpus has them
    info: dict[str, float]  # e.g. data/unigram_entropy, data/entropy_rate (nats)
    tables: dict[str, Any]  # arrays `batch` reads; passed into jit as arguments, never baked in
    unk_id = None  # (int) a word-level vocabulary's <unk>: a word that encodes to it is not in the vocabulary

    def batch(self, tables: dict, key: jax.Array, step: jax.Array, batch_size: int) -> jax.Array:
        raise NotImplementedError

    def encode(self, word: str) -> list[int]:
        """A word's token ids (its subword pieces); here: the id of the token spelled `word`, or none."""
        if not hasattr(self, "_ids"):
            self._ids = {t: i for i, t in enumerate(self.tokens)}
        return [self._ids[word]] if word in self._ids else []

    def eval_batches(self, key: jax.Array, n: int, batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def identity(self) -> dict | None:
        """What pins the token stream beyond the config (a resumed run must see the same): None when the
        config alone fixes it (the planted corpus)."""
        return None


class PlantedCorpus(Corpus):
    """V tokens in K classes (token i is in class i mod K), Zipf unigram p_i ∝ (i+1)^-a.

    Sequences: a class-level Markov chain with transition matrix A whose stationary law is the
    class mass q_c = Σ_{i∈c} p_i (A = S/q for a symmetric S with row sums q, found by symmetric
    Sinkhorn scaling of exp(β·G), G a seeded symmetric Gaussian), and tokens emitted inside each
    class with probability p_i/q_c. Every token's marginal is then exactly p_i, and since a token
    fixes its class, the token stream is itself a Markov chain with entropy rate
    H = Σ_c q_c H(A_c,·) + Σ_c q_c H(p_·|c): the floor of any next-token loss.
    """

    def __init__(
        self, vocab_size: int, num_classes: int, zipf_exponent: float, class_sharpness: float, seq_len: int, seed: int
    ):
        V, K = vocab_size, num_classes
        rng = np.random.default_rng([seed, 0x9E3779B9])
        p = (np.arange(1, V + 1, dtype=np.float64)) ** -zipf_exponent
        p /= p.sum()
        cls = np.arange(V) % K
        q = np.bincount(cls, weights=p, minlength=K)
        G = rng.standard_normal((K, K))
        Msym = np.exp(class_sharpness * (G + G.T) / 2.0)
        d = np.sqrt(q)
        for _ in range(10_000):  # symmetric Sinkhorn: d_i Σ_j M_ij d_j = q_i
            d_new = np.sqrt(d * q / (Msym @ d))
            if np.max(np.abs(d_new - d) / d) < 1e-14:
                d = d_new
                break
            d = d_new
        S = d[:, None] * Msym * d[None, :]
        A = S / S.sum(axis=1, keepdims=True)
        # stationary law of A, computed rather than assumed (it equals q to solver precision)
        w, vecs = np.linalg.eig(A.T)
        pi = np.real(vecs[:, np.argmin(np.abs(w - 1.0))])
        pi = pi / pi.sum()
        Mc = -(-V // K)
        emit = np.zeros((K, Mc))
        for c in range(K):
            members = np.arange(c, V, K)
            emit[c, : len(members)] = p[members] / q[c]
        self.transition, self.class_probs, self.unigram = A, pi, p
        h_class = float(sum(pi[c] * _entropy(A[c]) for c in range(K)))
        h_emit = float(sum(pi[c] * _entropy(emit[c]) for c in range(K)))
        super().__init__(
            vocab_size=V,
            seq_len=seq_len,
            tokens=[f"t{i}_c{cls[i]}" for i in range(V)],
            counts=p.copy(),
            labels=cls,
            info={
                "data/unigram_entropy": _entropy(p),
                "data/entropy_rate": h_class + h_emit,
                "data/class_entropy_rate": h_class,
                "data/logit_rank": float(self.logit_rank(A, p, q, cls)),
            },
            tables={
                "class_cdf": jnp.asarray(np.cumsum(pi), jnp.float32)[None],
                "trans_cdf": jnp.asarray(np.cumsum(A, axis=1), jnp.float32),
                "emit_cdf": jnp.asarray(np.cumsum(emit, axis=1), jnp.float32),
            },
        )
        self.num_classes = K

    @staticmethod
    def logit_rank(A: np.ndarray, p: np.ndarray, q: np.ndarray, cls: np.ndarray) -> int:
        """The rank of the true next-token log-probability matrix L[i, j] = log A[c(i), c(j)] + log(p_j / q_c(j)):
        its rows depend on i only through c(i), so it is the rank of the K×V matrix of distinct rows (Yang et
        al. 2018: a softmax over d-dimensional logits cannot express a rank much above d)."""
        w = np.log(p / q[cls])
        # column j is log A[:, c(j)] + w_j·1, so a class's columns span {log A[:, c] + w·1 : its tokens' w}: two
        # of its tokens give that span, and the rank comes from a K×2K matrix (never K×V)
        cols = [np.log(A)[:, c] + w[j] for c in range(A.shape[0]) for j in np.flatnonzero(cls == c)[:2]]
        return int(np.linalg.matrix_rank(np.stack(cols, axis=1)))

    def sample(self, tables: dict, key: jax.Array, batch_size: int) -> jax.Array:
        """(B, T+1) int32 tokens; the first class is drawn from the stationary law."""
        K = self.num_classes
        k0, kc, ke = jax.random.split(key, 3)
        c0 = _inverse_cdf_sample(k0, tables["class_cdf"], jnp.zeros((batch_size,), jnp.int32))

        def next_class(c, k):
            c = _inverse_cdf_sample(k, tables["trans_cdf"], c)
            return c, c

        _, rest = jax.lax.scan(next_class, c0, jax.random.split(kc, self.seq_len))
        cls_BxT = jnp.concatenate([c0[:, None], rest.T], axis=1).astype(jnp.int32)
        j_BxT = _inverse_cdf_sample(ke, tables["emit_cdf"], cls_BxT)
        return (cls_BxT + K * j_BxT).astype(jnp.int32)

    def batch(self, tables, key, step, batch_size):
        return self.sample(tables, jax.random.fold_in(key, step), batch_size)

    def eval_batches(self, key, n, batch_size):
        f = jax.jit(self.sample, static_argnums=2)
        return np.stack([np.asarray(f(self.tables, jax.random.fold_in(key, i), batch_size)) for i in range(n)])


class TextCorpus(Corpus):
    """A prepared token file (see embjax.data.prepare), streamed: a training batch is B windows read from the
    memory map by a host callback, at starts drawn in jit from (key, step) - so the file is never loaded
    whole, each step reads one batch of windows, and resume and vmapped members stay exact. Eval windows
    come from the held-out documents; token counts from the prepared metadata."""

    def __init__(self, folder: str, vocab_size: int, seq_len: int, train_fraction: float = 1.0):
        meta = read_meta(folder)
        verify(folder, meta)  # a truncated or altered token file is named, not trained on
        self.folder, self.meta = folder, meta
        dtype, split = np.dtype(meta["dtype"]), meta["split"]
        self.train = (
            np.memmap(os.path.join(folder, "train.bin"), dtype, "r") if split["train_tokens"] else np.zeros(0, dtype)
        )
        if train_fraction < 1.0:
            self.train = self._first(self.train, train_fraction, meta["tokenizer"]["kind"] == "word")
        held = np.memmap(os.path.join(folder, "eval.bin"), dtype, "r") if split["eval_tokens"] else np.zeros(0, dtype)
        for name, n in (("training", self.train.size), ("held-out", held.size)):
            if n < seq_len + 2:
                raise ConfigError(
                    f"data.seq_len: got {seq_len}, but the corpus's {name} split holds {n} tokens; "
                    f"allowed: a corpus with at least {seq_len + 2} tokens on each side, or a shorter seq_len"
                )
        counts = np.asarray(meta["counts"], np.float64)
        if counts.size > vocab_size:
            raise ConfigError(
                f"data.vocab_size: got {vocab_size}, but {folder} was prepared with {counts.size} tokens; "
                "allowed: the vocabulary the corpus was prepared with"
            )
        counts = np.pad(counts, (0, vocab_size - counts.size))
        if train_fraction < 1.0:  # the counts of the stream trained on
            counts = np.bincount(self.train, minlength=vocab_size).astype(np.float64)
        if os.path.isfile(os.path.join(folder, "tokenizer.json")):
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
            strings = [_printable(t) for t in _token_strings(tok, vocab_size)]
            self.encode = lambda word: list(tok.encode(word, add_special_tokens=False).ids)
            unk = tok.token_to_id(UNK) if meta["tokenizer"]["kind"] == "word" else None
        else:
            strings = [repr(bytes([i]))[2:-1].replace(" ", "\u2581") for i in range(256)]
            self.encode = lambda word: list(word.encode("utf-8"))
            unk = None
        p = counts / counts.sum()
        super().__init__(
            vocab_size=vocab_size,
            seq_len=seq_len,
            tokens=strings,
            counts=counts,
            labels=None,
            info={
                "data/unigram_entropy": _entropy(p),
                "data/train_tokens": float(self.train.size),
                "data/eval_tokens": float(held.size),
                "data/documents": float(meta["documents"]),
            },
            tables={},
        )
        self.held_out, self.unk_id = held, unk

    @staticmethod
    def _first(train: np.ndarray, fraction: float, words: bool) -> np.ndarray:
        """The first `fraction` of the training stream; on a word vocabulary up to the <eos> (id 1) that ends the
        document the cut falls in, so whole documents are kept."""
        n = max(1, int(round(fraction * train.size)))
        if words and n < train.size:
            ends = np.flatnonzero(np.asarray(train[n - 1 :]) == 1)
            n = n + int(ends[0]) if ends.size else train.size
        return train[:n]

    def identity(self) -> dict:
        s = self.meta["split"]
        return {
            "prepared": os.path.basename(self.folder),
            "source_sha1": self.meta["source"]["sha1"],
            "train_tokens": s["train_tokens"],
            "eval_tokens": s["eval_tokens"],
        }

    def _windows(self, bits: np.ndarray) -> np.ndarray:
        """(..., 2) uint32 random bits -> (..., T+1) int32 windows of the training stream."""
        b = np.asarray(bits).astype(np.uint64)
        starts = ((b[..., 0] << np.uint64(32)) | b[..., 1]) % np.uint64(self.train.size - self.seq_len)  # every window
        return self.train[starts[..., None] + np.arange(self.seq_len + 1, dtype=np.uint64)].astype(np.int32)

    def batch(self, tables, key, step, batch_size):
        bits = jax.random.bits(jax.random.fold_in(key, step), (batch_size, 2), jnp.uint32)
        out = jax.ShapeDtypeStruct((batch_size, self.seq_len + 1), jnp.int32)
        return jax.pure_callback(self._windows, out, bits, vmap_method="expand_dims")

    def eval_batches(self, key, n, batch_size):
        L = self.seq_len + 1
        n_seq = min(len(self.held_out) // L, n * batch_size)
        seqs = np.asarray(self.held_out[: n_seq * L], np.int32).reshape(n_seq, L)
        reps = -(-(n * batch_size) // n_seq)
        seqs = np.concatenate([seqs] * reps)[: n * batch_size]
        return seqs.reshape(n, batch_size, L)


def _printable(s: str) -> str:
    """A token as one TSV field: space as ▁, control and line-breaking characters escaped (\\n, \\t, \\x0c, ...)."""
    out = s.replace("\\", "\\\\").replace(" ", "\u2581")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in out)


def _token_strings(tok, vocab_size: int) -> list[str]:
    """Readable, unique strings per id: the decoded text of each token (byte-level BPE's "Ġself" is " self"), its
    vocabulary entry where decoding is empty or not unique (special tokens, partial UTF-8), "<unusedI>" past it."""
    raw = [tok.id_to_token(i) for i in range(vocab_size)]
    text = [tok.decode([i], skip_special_tokens=False) if r is not None else None for i, r in enumerate(raw)]
    seen: dict[str, int] = {}
    for t in text:
        if t:
            seen[t] = seen.get(t, 0) + 1
    return [
        t if t and seen[t] == 1 else (r if r is not None else f"<unused{i}>") for i, (t, r) in enumerate(zip(text, raw))
    ]


def make_corpus(cfg: Config, show: bool = False) -> Corpus:
    d = cfg.data
    if d.kind == "planted":
        # the corpus is fixed by the data settings alone (seed 0), so runs that differ only in seed see one corpus
        return PlantedCorpus(d.vocab_size, d.num_classes, d.zipf_exponent, d.class_sharpness, d.seq_len, seed=0)
    return TextCorpus(prepare(d, show=show), d.vocab_size, d.seq_len, d.train_fraction)
