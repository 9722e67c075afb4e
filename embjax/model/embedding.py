"""TokenEmbedding: the Flax NNX embedding table E ∈ ℝ^(V×d) every embjax model is built on.

Dimensions: V vocabulary, D embedding width, `...` any leading batch/time axes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

INITS = ("normal", "truncated_normal", "uniform", "scaled_normal", "xavier", "pretrained")
# Standard deviation of N(0, 1) truncated to [-2, 2]; dividing by it gives unit variance.
_TRUNC2_STD = 0.87962566103423978


def init_std_for(init: str, init_std: Any, vocab_size: int, embed_dim: int) -> Any:
    """The standard deviation each init scheme gives E (σ may be a traced value)."""
    if init in ("normal", "truncated_normal", "uniform"):
        return init_std
    if init == "scaled_normal":  # σ/√d keeps ‖eᵢ‖ ≈ σ whatever d is
        return init_std / math.sqrt(embed_dim)
    if init == "xavier":  # Glorot & Bengio 2010, fan_in = V, fan_out = d; σ is not used
        return math.sqrt(2.0 / (vocab_size + embed_dim))
    raise ValueError(f"embedding.init: got {init!r}; allowed: {', '.join(INITS)}")


def unit_draw(key: jax.Array, init: str, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Z with zero mean and unit variance, shaped by the scheme (E = std · Z)."""
    if init in ("normal", "scaled_normal", "xavier"):
        return jax.random.normal(key, shape, dtype)
    if init == "truncated_normal":
        return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype) / _TRUNC2_STD
    if init == "uniform":
        return jax.random.uniform(key, shape, dtype, -math.sqrt(3.0), math.sqrt(3.0))
    raise ValueError(f"embedding.init: got {init!r}; allowed: {', '.join(INITS)}")


class TokenEmbedding(nnx.Module):
    """A lookup table: `emb(ids) = scale · E[ids]`, `emb.attend(h) = h · Eᵀ` (tied logits).

    σ (`init_std`) only multiplies a unit-scale draw, so it may be a traced array: sweep
    members that differ only in σ share one compiled program. `scale` is a number or
    "sqrt_d" (Vaswani et al. 2017 multiply by √d). `freeze=True` stops gradients into E.
    As in Flax, `param_dtype` is E's storage and `dtype` the computation's (None: E's): lookups come
    out in `dtype`, and `attend` multiplies in `dtype` but accumulates and returns float32 logits.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        *,
        init: str = "normal",
        init_std: Any = 0.02,
        scale: float | str = 1.0,
        pretrained: np.ndarray | None = None,
        freeze: bool = False,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.vocab_size, self.embed_dim, self.init, self.freeze = vocab_size, embed_dim, init, freeze
        self.dtype = param_dtype if dtype is None else dtype
        self.scale = math.sqrt(embed_dim) if scale == "sqrt_d" else float(scale)
        dtype = param_dtype
        if init == "pretrained":
            if pretrained is None:
                raise ValueError("embedding.init='pretrained' needs a matrix: pass pretrained= (see load_pretrained)")
            pretrained = np.asarray(pretrained)
            if pretrained.shape != (vocab_size, embed_dim):
                raise ValueError(
                    f"pretrained embeddings: got shape {pretrained.shape}; "
                    f"allowed: ({vocab_size}, {embed_dim}) = (vocab_size, embed_dim)"
                )
            E_VxD = jnp.asarray(pretrained, dtype)
        else:
            std = init_std_for(init, init_std, vocab_size, embed_dim)
            E_VxD = (std * unit_draw(rngs.params(), init, (vocab_size, embed_dim), dtype)).astype(dtype)
        self.embedding = nnx.Param(E_VxD)

    # the parameters with one row per token (sharded over the vocabulary on a mesh, decayed by frequency)
    per_token_params: tuple[str, ...] = ("embedding",)

    def table_of(self, p: dict) -> jax.Array:
        """The effective V×d table from this layer's parameters `p` (a dict of arrays by name)."""
        return p["embedding"]

    def lookup_of(self, p: dict, ids: jax.Array) -> jax.Array:
        """Rows `ids` of the effective table, unscaled: (...,) -> (..., D)."""
        return jnp.take(p["embedding"], ids, axis=0)

    def touched_of(self, g: dict) -> jax.Array:
        """(V,) bool: the tokens whose own parameters got a nonzero gradient `g`."""
        return jnp.any(g["embedding"] != 0, axis=-1)

    # -- the interface every embedding layer shares (EmbeddingLayer) ---------------------------------
    def _params(self) -> dict:
        p = {k: v[...] for k, v in vars(self).items() if isinstance(v, nnx.Param)}
        return jax.lax.stop_gradient(p) if self.freeze else p

    def table(self) -> jax.Array:
        """The effective V×d table (for a plain table: E itself)."""
        return self.table_of(self._params())

    def rows(self, chunk: int = 65_536) -> Iterator[tuple[int, jax.Array]]:
        """The effective table in row chunks, (start, rows[start:start + chunk]), never all V rows at once."""
        p = self._params()
        for start in range(0, self.vocab_size, chunk):
            yield start, self.lookup_of(p, jnp.arange(start, min(start + chunk, self.vocab_size)))

    def __call__(self, ids: jax.Array) -> jax.Array:
        """(...,) int ids -> (..., D)."""
        out = self.lookup_of(self._params(), ids).astype(self.dtype)
        return out * self.scale if self.scale != 1.0 else out

    def attend(self, h: jax.Array) -> jax.Array:
        """(..., D) -> (..., V) = h · Eᵀ, no scale: the logits of a tied output head (float32 accumulation)."""
        # flattened to one 2-D matmul: its gradient is two plain matmuls (a 3-D one's is slower on CPU)
        h_NxD = h.reshape(-1, h.shape[-1]).astype(self.dtype)
        logits_NxV = jnp.einsum("nd,vd->nv", h_NxD, self.table().astype(self.dtype), preferred_element_type=jnp.float32)
        return logits_NxV.reshape(*h.shape[:-1], self.vocab_size)

    def _shapes(self) -> list:
        """Each parameter's array (or, in an abstract layer from nnx.eval_shape, its ShapeDtypeStruct)."""
        return [v.get_value() for v in vars(self).values() if isinstance(v, nnx.Param)]

    def num_params(self) -> int:
        """Parameters in this layer (the lesson's arithmetic: a 50,000 × 768 table holds 38.4 M)."""
        return int(sum(math.prod(x.shape) for x in self._shapes()))

    def num_bytes(self) -> int:
        return int(sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in self._shapes()))


class FactorizedEmbedding(TokenEmbedding):
    """ALBERT's factorized table (Lan et al. 2020): E = A · P, A ∈ ℝ^(V×k) looked up, P ∈ ℝ^(k×d) shared.

    V·k + k·d parameters instead of V·d. A is drawn like a table at σ and P ~ N(0, 1/k), so the effective
    rows have entries of variance σ² at init, as a plain table's do. Tied logits are (h·Pᵀ)·Aᵀ.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        *,
        rank: int,
        init: str = "normal",
        init_std: Any = 0.02,
        scale: float | str = 1.0,
        freeze: bool = False,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
        **_,
    ):
        super().__init__(
            vocab_size,
            rank,
            init=init,
            init_std=init_std,
            freeze=freeze,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.embed_dim, self.rank = embed_dim, rank
        self.scale = math.sqrt(embed_dim) if scale == "sqrt_d" else float(scale)
        P_KxD = jax.random.normal(rngs.params(), (rank, embed_dim)) / math.sqrt(rank)
        self.projection = nnx.Param(P_KxD.astype(param_dtype))

    def table_of(self, p: dict) -> jax.Array:
        return p["embedding"] @ p["projection"]

    def lookup_of(self, p: dict, ids: jax.Array) -> jax.Array:
        return jnp.take(p["embedding"], ids, axis=0) @ p["projection"]

    def attend(self, h: jax.Array) -> jax.Array:
        p = self._params()
        h_NxK = h.reshape(-1, h.shape[-1]).astype(self.dtype) @ p["projection"].astype(self.dtype).T
        logits_NxV = jnp.einsum(
            "nk,vk->nv", h_NxK, p["embedding"].astype(self.dtype), preferred_element_type=jnp.float32
        )
        return logits_NxV.reshape(*h.shape[:-1], self.vocab_size)


def hash_buckets(ids: Any, num_hashes: int, buckets: int, seed: int = 0, xp=jnp) -> Any:
    """(...,) ids -> (..., num_hashes) bucket indices in [0, buckets): hash j of token i is murmur3's 32-bit
    finaliser of (i · num_hashes + j) XOR a seed word, mod buckets. Plain uint32 arithmetic, so the same
    numbers in jnp and NumPy (xp=np), in every process and on every machine."""
    x = xp.asarray(ids).astype(xp.uint32)[..., None] * xp.uint32(num_hashes) + xp.arange(num_hashes, dtype=xp.uint32)
    x = x ^ xp.uint32((0x9E3779B9 * (seed + 1)) & 0xFFFFFFFF)
    x = (x ^ (x >> xp.uint32(16))) * xp.uint32(0x85EBCA6B)
    x = (x ^ (x >> xp.uint32(13))) * xp.uint32(0xC2B2AE35)
    x = x ^ (x >> xp.uint32(16))
    return (x % xp.uint32(buckets)).astype(xp.int32)


class HashedEmbedding(TokenEmbedding):
    """Hash embeddings (Svenstrup et al. 2017): token i's row is Σⱼ wᵢⱼ · B[hⱼ(i)], with h hash functions into
    B shared bucket rows and per-token importance weights w ∈ ℝ^(V×h). B·d + V·h parameters.

    B is drawn like a table at σ and w ~ N(0, 1/h), so rows have entries of variance σ² at init.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        *,
        buckets: int,
        num_hashes: int,
        hash_seed: int = 0,
        init: str = "normal",
        init_std: Any = 0.02,
        scale: float | str = 1.0,
        freeze: bool = False,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
        **_,
    ):
        super().__init__(
            buckets,
            embed_dim,
            init=init,
            init_std=init_std,
            scale=scale,
            freeze=freeze,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.vocab_size, self.buckets, self.num_hashes, self.hash_seed = vocab_size, buckets, num_hashes, hash_seed
        w_VxH = jax.random.normal(rngs.params(), (vocab_size, num_hashes)) / math.sqrt(num_hashes)
        self.importance = nnx.Param(w_VxH.astype(param_dtype))

    per_token_params = ("importance",)

    def lookup_of(self, p: dict, ids: jax.Array) -> jax.Array:
        idx = hash_buckets(ids, self.num_hashes, self.buckets, self.hash_seed)  # (..., h)
        rows = jnp.take(p["embedding"], idx, axis=0)  # (..., h, D)
        return jnp.einsum("...h,...hd->...d", jnp.take(p["importance"], ids, axis=0).astype(rows.dtype), rows)

    def table_of(self, p: dict) -> jax.Array:
        return self.lookup_of(p, jnp.arange(self.vocab_size))

    def touched_of(self, g: dict) -> jax.Array:
        return jnp.any(g["importance"] != 0, axis=-1)


class AdaptiveEmbedding(TokenEmbedding):
    """Adaptive input representations (Baevski & Auli 2019): tokens ranked by frequency fall into clusters
    split at `cutoffs`; cluster c has width d / factorᶜ and a projection to d. A row of cluster c is
    T_c[rank − start_c] · P_c. `order` lists token ids from most to least frequent (None: ids already are).
    Tied, the head's logits are h · Eᵀ for this effective E: input and output share every parameter, as
    Baevski & Auli's tied adaptive softmax shares them, but the softmax is a full one (no cluster savings).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        *,
        cutoffs: tuple[int, ...],
        factor: int = 4,
        order: Any = None,
        init: str = "normal",
        init_std: Any = 0.02,
        scale: float | str = 1.0,
        freeze: bool = False,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
        **_,
    ):
        bounds = (0, *cutoffs, vocab_size)
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"embedding.cutoffs: got {list(cutoffs)}; allowed: increasing ids in (0, {vocab_size})")
        self.vocab_size, self.embed_dim, self.init, self.freeze = vocab_size, embed_dim, init, freeze
        self.dtype = param_dtype if dtype is None else dtype
        self.scale = math.sqrt(embed_dim) if scale == "sqrt_d" else float(scale)
        self.bounds = bounds
        self.widths = tuple(max(1, embed_dim // factor**c) for c in range(len(bounds) - 1))
        order = np.arange(vocab_size) if order is None else np.asarray(order)
        if sorted(order.tolist()) != list(range(vocab_size)):
            raise ValueError(f"AdaptiveEmbedding: order must list each of the {vocab_size} token ids once")
        self.order = tuple(int(i) for i in order)  # static: rank -> id
        rank = np.empty(vocab_size, np.int32)
        rank[order] = np.arange(vocab_size, dtype=np.int32)
        self.rank = tuple(int(r) for r in rank)  # static: id -> rank
        std = init_std_for(init, init_std, vocab_size, embed_dim)
        for c, w in enumerate(self.widths):
            n = bounds[c + 1] - bounds[c]
            setattr(self, f"table{c}", nnx.Param((std * unit_draw(rngs.params(), init, (n, w))).astype(param_dtype)))
            setattr(
                self,
                f"proj{c}",
                nnx.Param((jax.random.normal(rngs.params(), (w, embed_dim)) / math.sqrt(w)).astype(param_dtype)),
            )

    per_token_params = ()  # cluster tables are indexed by frequency rank, not by token id

    def lookup_of(self, p: dict, ids: jax.Array) -> jax.Array:
        r = jnp.asarray(self.rank, jnp.int32)[ids]
        out = 0.0
        for c in range(len(self.widths)):
            lo, hi = self.bounds[c], self.bounds[c + 1]
            rows = jnp.take(p[f"table{c}"], jnp.clip(r - lo, 0, hi - lo - 1), axis=0) @ p[f"proj{c}"]
            out = out + jnp.where(((r >= lo) & (r < hi))[..., None], rows, 0.0)
        return out

    def table_of(self, p: dict) -> jax.Array:
        E_rank = jnp.concatenate([p[f"table{c}"] @ p[f"proj{c}"] for c in range(len(self.widths))])
        return jnp.take(E_rank, jnp.asarray(self.rank, jnp.int32), axis=0)

    def touched_of(self, g: dict) -> jax.Array:
        by_rank = jnp.concatenate([jnp.any(g[f"table{c}"] != 0, axis=-1) for c in range(len(self.widths))])
        return jnp.take(by_rank, jnp.asarray(self.rank, jnp.int32))


def cosine(a: Any, b: Any) -> float:
    """cos(a, b) = a·b / (‖a‖‖b‖), in float64; 0 when either vector is zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def load_pretrained(path: str, vocab_size: int, embed_dim: int, tokens: list[str] | None = None) -> np.ndarray:
    """Read E from a `.npy` (V×d) or word2vec text file ("V d" header, then "token v1 … vd").

    For word2vec files with `tokens` given, rows are matched to the vocabulary by token string;
    a token missing from the file is an error naming how many are missing.
    """
    if not os.path.isfile(path):
        raise ValueError(f"embedding.pretrained_path: got {path!r}; allowed: an existing .npy or word2vec text file")
    if path.endswith(".npy"):
        E = np.load(path, allow_pickle=False)
    else:
        with open(path, encoding="utf-8") as f:
            header = f.readline().split()
            if len(header) != 2 or not all(h.isdigit() for h in header):
                raise ValueError(f"embedding.pretrained_path: {path!r} has no word2vec header 'V d'")
            rows: dict[str, np.ndarray] = {}
            order: list[str] = []
            for line in f:
                parts = line.rstrip("\n").split(" ")
                if len(parts) < 2:
                    continue
                rows[parts[0]] = np.asarray(parts[1:], np.float32)
                order.append(parts[0])
        dims = {v.shape[0] for v in rows.values()}
        if dims != {embed_dim}:
            raise ValueError(
                f"pretrained embeddings in {path!r}: got width {sorted(dims)}; allowed: {embed_dim} (model.embed_dim)"
            )
        if tokens is not None:
            missing = [t for t in tokens if t not in rows]
            if missing:
                raise ValueError(
                    f"pretrained embeddings in {path!r}: {len(missing)} of {len(tokens)} vocabulary tokens "
                    f"missing (first: {missing[0]!r}); allowed: a file covering the vocabulary"
                )
            order = list(tokens)
        E = np.stack([rows[t] for t in order])
    if E.ndim != 2 or E.shape != (vocab_size, embed_dim):
        raise ValueError(
            f"pretrained embeddings in {path!r}: got shape {tuple(E.shape)}; "
            f"allowed: ({vocab_size}, {embed_dim}) = (data.vocab_size, model.embed_dim)"
        )
    return E.astype(np.float32)


def save_word2vec(path: str, E: np.ndarray, tokens: list[str]) -> None:
    """Write E in word2vec text format (gensim's KeyedVectors.load_word2vec_format reads it)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{E.shape[0]} {E.shape[1]}\n")
        for tok, row in zip(tokens, E):
            f.write(tok + " " + " ".join(f"{x:.7g}" for x in row) + "\n")
