"""TokenEmbedding: the Flax NNX embedding table E ∈ ℝ^(V×d) every embjax model is built on.

Dimensions: V vocabulary, D embedding width, `...` any leading batch/time axes.
"""
from __future__ import annotations

import math
import os
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

    def __init__(self, vocab_size: int, embed_dim: int, *, init: str = "normal", init_std: Any = 0.02,
                 scale: float | str = 1.0, pretrained: np.ndarray | None = None, freeze: bool = False,
                 dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.vocab_size, self.embed_dim, self.init, self.freeze = vocab_size, embed_dim, init, freeze
        self.dtype = param_dtype if dtype is None else dtype
        self.scale = math.sqrt(embed_dim) if scale == "sqrt_d" else float(scale)
        dtype = param_dtype
        if init == "pretrained":
            if pretrained is None:
                raise ValueError("embedding.init='pretrained' needs a matrix: pass pretrained= (see load_pretrained)")
            pretrained = np.asarray(pretrained)
            if pretrained.shape != (vocab_size, embed_dim):
                raise ValueError(f"pretrained embeddings: got shape {pretrained.shape}; "
                                 f"allowed: ({vocab_size}, {embed_dim}) = (vocab_size, embed_dim)")
            E_VxD = jnp.asarray(pretrained, dtype)
        else:
            std = init_std_for(init, init_std, vocab_size, embed_dim)
            E_VxD = (std * unit_draw(rngs.params(), init, (vocab_size, embed_dim), dtype)).astype(dtype)
        self.embedding = nnx.Param(E_VxD)

    def table(self) -> jax.Array:
        E_VxD = self.embedding[...]
        return jax.lax.stop_gradient(E_VxD) if self.freeze else E_VxD

    def __call__(self, ids: jax.Array) -> jax.Array:
        """(...,) int ids -> (..., D)."""
        out = jnp.take(self.table(), ids, axis=0).astype(self.dtype)
        return out * self.scale if self.scale != 1.0 else out

    def attend(self, h: jax.Array) -> jax.Array:
        """(..., D) -> (..., V) = h · Eᵀ, no scale: the logits of a tied output head (float32 accumulation)."""
        # flattened to one 2-D matmul: its gradient is two plain matmuls (a 3-D one's is slower on CPU)
        h_NxD = h.reshape(-1, h.shape[-1]).astype(self.dtype)
        logits_NxV = jnp.einsum("nd,vd->nv", h_NxD, self.table().astype(self.dtype), preferred_element_type=jnp.float32)
        return logits_NxV.reshape(*h.shape[:-1], self.vocab_size)


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
            raise ValueError(f"pretrained embeddings in {path!r}: got width {sorted(dims)}; allowed: {embed_dim} (model.embed_dim)")
        if tokens is not None:
            missing = [t for t in tokens if t not in rows]
            if missing:
                raise ValueError(f"pretrained embeddings in {path!r}: {len(missing)} of {len(tokens)} vocabulary tokens "
                                 f"missing (first: {missing[0]!r}); allowed: a file covering the vocabulary")
            order = list(tokens)
        E = np.stack([rows[t] for t in order])
    if E.ndim != 2 or E.shape != (vocab_size, embed_dim):
        raise ValueError(f"pretrained embeddings in {path!r}: got shape {tuple(E.shape)}; "
                         f"allowed: ({vocab_size}, {embed_dim}) = (data.vocab_size, model.embed_dim)")
    return E.astype(np.float32)


def save_word2vec(path: str, E: np.ndarray, tokens: list[str]) -> None:
    """Write E in word2vec text format (gensim's KeyedVectors.load_word2vec_format reads it)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{E.shape[0]} {E.shape[1]}\n")
        for tok, row in zip(tokens, E):
            f.write(tok + " " + " ".join(f"{x:.7g}" for x in row) + "\n")
