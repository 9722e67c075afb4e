"""Small language models built on TokenEmbedding: linear toy, MLP over a window, decoder-only transformer, LSTM.

Dimensions: B batch, T time, D embedding width, V vocabulary, H heads, K head width, F MLP width, W window.
Every model maps `tok_BxT` (and an optional validity mask) to next-token logits `BxTxV`; while training, a
`Dropout` (embjax.model.layers) passed as `drop` drops entries at its sites (site 0: the looked-up vectors).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ..config import Config, PerMember, resolve_logit_scale
from .embedding import AdaptiveEmbedding, FactorizedEmbedding, HashedEmbedding, TokenEmbedding
from .layers import Dropout, LSTMStack


def dtypes(cfg: Config) -> dict:
    """Flax's dtype (matmuls, activations) and param_dtype (parameters) from model.compute_dtype / param_dtype."""
    return {"dtype": jnp.dtype(cfg.model.compute_dtype), "param_dtype": jnp.dtype(cfg.model.param_dtype)}


def mean_abs(x: jax.Array) -> jax.Array:
    """Mean |x| in float32, whatever x's dtype."""
    return jnp.abs(x.astype(jnp.float32)).mean()


class Linear(nnx.Linear):
    """nnx.Linear on the flattened leading axes: (..., I) -> (N, I) @ (I, O) -> (..., O), the same parameters.

    The same numbers as nnx.Linear, but autodiff of a 2-D matmul gives XLA two plain matmuls; from a 3-D
    dot_general it gets a transposed copy and a slower CPU matmul path (measured on 2 CPU cores, one
    4,096 x 256 x 1,024 backward: 38.6 ms 3-D, 17.1 ms flattened)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return super().__call__(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)


def sinusoidal_positions(T: int, D: int) -> jax.Array:
    """Vaswani et al. 2017: sin on even features, cos on odd, wavelengths up to 10,000·2π."""
    pos = jnp.arange(T, dtype=jnp.float32)[:, None]
    freq = jnp.exp(-math.log(10000.0) * jnp.arange(0, D, 2, dtype=jnp.float32) / D)
    ang = pos * freq
    out = jnp.zeros((T, D), jnp.float32)
    out = out.at[:, 0::2].set(jnp.sin(ang))
    return out.at[:, 1::2].set(jnp.cos(ang[:, : D // 2]))


class EmbeddingLM(nnx.Module):
    """Shared parts: the input table, optional norm after lookup, the tied or untied head."""

    def _init_tables(
        self, cfg: Config, rngs: nnx.Rngs, init_std: Any = None, head_init_std: Any = None, pretrained=None, order=None
    ):
        """E from embedding.* (σ = init_std, default embedding.init_std); an untied head from model.head_init_std
        alone (default: the config's), so that a σ sweep moves E and nothing else."""
        V, D, e, dt = cfg.data.vocab_size, cfg.model.embed_dim, cfg.embedding, dtypes(cfg)
        init_std = e.init_std if init_std is None else init_std
        self.embed = make_embedding(cfg, init_std, pretrained, order, rngs=rngs)
        # An untied head is a second table of the same shape, read through `attend`, so tied and untied
        # runs have tables to compare: N(0, head_init_std²) whatever E's init (embedding.init, σ, pretrained).
        head_std = cfg.model.head_init_std if head_init_std is None else head_init_std
        self.head = (
            None
            if cfg.model.tie_embeddings
            else TokenEmbedding(V, D, init="normal", init_std=head_std, rngs=rngs, **dt)
        )
        self.head_bias = nnx.Param(jnp.zeros((V,), dt["param_dtype"])) if cfg.model.head_bias else None
        if e.norm == "layernorm":  # a norm right after the lookup (e.g. BLOOM's embedding LayerNorm)
            self.embed_norm = nnx.LayerNorm(D, epsilon=1e-5, rngs=rngs, **dt)
        elif e.norm == "rmsnorm":
            self.embed_norm = nnx.RMSNorm(D, epsilon=1e-5, rngs=rngs, **dt)
        else:
            self.embed_norm = None
        # μP's readout multiplier 1/m (tied or untied alike), on top of model.logit_scale
        self.logit_scale = resolve_logit_scale(cfg.model.logit_scale, D) / width_multiplier(cfg)

    def lookup(self, tok_BxT: jax.Array) -> jax.Array:
        x_BxTxD = self.embed(tok_BxT)
        return self.embed_norm(x_BxTxD) if self.embed_norm is not None else x_BxTxD

    def lookup_dropped(self, tok_BxT: jax.Array, drop: Dropout | None, mask_BxT=None) -> tuple[jax.Array, jax.Array]:
        """(the looked-up vectors, zero where mask_BxT is False if given; the same after model.embed_dropout: what
        the layers above read)."""
        x_BxTxD = self.lookup(tok_BxT)
        if mask_BxT is not None:
            x_BxTxD = x_BxTxD * mask_BxT[..., None].astype(x_BxTxD.dtype)
        return x_BxTxD, x_BxTxD if drop is None else drop.embed(x_BxTxD)

    def __call__(self, tok_BxT: jax.Array, mask_BxT: jax.Array | None = None) -> jax.Array:
        """(B, T) ids -> (B, T, V) next-token logits."""
        return self.logits(self.features(tok_BxT, mask_BxT)[1])

    def features(self, tok_BxT: jax.Array, mask_BxT: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """(embedding output, final hidden state), both (B, T, D)."""
        emb_BxTxD, h_BxTxD, _ = self.features_and_coords(tok_BxT, mask_BxT)
        return emb_BxTxD, h_BxTxD

    def logits(self, h_BxTxD: jax.Array) -> jax.Array:
        """(B, T, D) -> (B, T, V) = logit_scale · h · Eᵀ (+ b with model.head_bias); the scale multiplies h (D wide),
        not the V-wide logits."""
        table = self.embed if self.head is None else self.head
        logits = table.attend(h_BxTxD * self.logit_scale if self.logit_scale != 1.0 else h_BxTxD)
        return logits if self.head_bias is None else logits + self.head_bias[...].astype(logits.dtype)


class LinearLM(EmbeddingLM):
    """The textbook toy: lookup -> one linear map -> softmax over the next token (a bilinear bigram model)."""

    def __init__(self, cfg: Config, *, rngs: nnx.Rngs, **tables: Any):  # tables: see EmbeddingLM._init_tables
        D = cfg.model.embed_dim
        self._init_tables(cfg, rngs, **tables)
        self.proj = Linear(D, D, rngs=rngs, **dtypes(cfg))

    def features_and_coords(self, tok_BxT: jax.Array, mask_BxT: jax.Array | None = None, drop=None) -> tuple:
        emb_BxTxD, x_BxTxD = self.lookup_dropped(tok_BxT, drop)
        return emb_BxTxD, self.proj(x_BxTxD), {}


class MLPLM(EmbeddingLM):
    """Window of the W previous tokens (zeros before the start) -> concat -> GELU MLP -> head."""

    def __init__(self, cfg: Config, *, rngs: nnx.Rngs, **tables: Any):  # tables: see EmbeddingLM._init_tables
        D, W, F = cfg.model.embed_dim, cfg.model.window, cfg.model.hidden_dim
        self._init_tables(cfg, rngs, **tables)
        self.window = W
        self.fc = Linear(W * D, F, rngs=rngs, **dtypes(cfg))
        self.out = Linear(F, D, rngs=rngs, **dtypes(cfg))

    def features_and_coords(self, tok_BxT: jax.Array, mask_BxT: jax.Array | None = None, drop=None) -> tuple:
        emb_BxTxD, x_BxTxD = self.lookup_dropped(tok_BxT, drop, mask_BxT)
        T = x_BxTxD.shape[1]
        pad = jnp.pad(x_BxTxD, ((0, 0), (self.window - 1, 0), (0, 0)))
        # position t sees tokens t, t-1, ..., t-W+1
        ctx_BxTxWD = jnp.concatenate(
            [pad[:, self.window - 1 - w : self.window - 1 - w + T] for w in range(self.window)], axis=-1
        )
        return emb_BxTxD, self.out(jax.nn.gelu(self.fc(ctx_BxTxWD), approximate=False)), {}


class Block(nnx.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + MLP(LN(x)); fused QKV, exact GELU.

    Scores are q·k/√K under SP; under μP q·k/√(K·m) = q·k·√K₀/K (K₀ the head width at the base width),
    which is the same number at m = 1 and 1/K-scaled as the width grows; both times attn_mult (model.attn_mult)."""

    def __init__(
        self,
        D: int,
        H: int,
        F: int,
        *,
        width_mult: float = 1.0,
        zero_query: Any = False,
        attn_mult: float | None = 1.0,
        rngs: nnx.Rngs,
        **dt,
    ):
        self.H, self.width_mult, self.attn_mult = H, width_mult, attn_mult
        self.ln1, self.ln2 = (nnx.LayerNorm(D, epsilon=1e-5, rngs=rngs, **dt) for _ in range(2))
        self.qkv = Linear(D, 3 * D, rngs=rngs, **dt)
        # the fused kernel's outputs are (q, k, v) × heads × K: q is its first D columns, multiplied by 1 − zero_query
        # (a bool, or a member's traced 0/1 model.zero_query_init; × 1 is exact)
        keep = (1 - jnp.asarray(zero_query, jnp.float32)).astype(self.qkv.kernel[...].dtype)
        self.qkv.kernel[...] = self.qkv.kernel[...].at[:, :D].multiply(keep)
        self.proj = Linear(D, D, rngs=rngs, **dt)
        self.fc = Linear(D, F, rngs=rngs, **dt)
        self.out = Linear(F, D, rngs=rngs, **dt)

    def __call__(
        self, x_BxTxD: jax.Array, allowed_BxTxT: jax.Array, attn_mult: Any = None, drop=None, site: int = 1
    ) -> tuple:
        """(new residual stream, mean |score| over the allowed query-key pairs). Scores and softmax in float32.
        attn_mult: the factor on the scores, a number or a traced value (the train step passes each member's
        model.attn_mult); None: the one the block was built with (a shared program's blocks have none).
        drop: model.dropout on the attention probabilities and both residual branches (sites site .. site + 2)."""
        attn_mult = self.attn_mult if attn_mult is None else attn_mult
        if attn_mult is None:
            raise TypeError("model.attn_mult is a per-member value: pass the train state's hp['attn_mult']")
        B, T, D = x_BxTxD.shape
        K = D // self.H
        qkv = self.qkv(self.ln1(x_BxTxD)).reshape(B, T, 3, self.H, K)
        q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        s_BxHxTxT = jnp.einsum("bqhk,bshk->bhqs", q_BxTxHxK, k_BxTxHxK, preferred_element_type=jnp.float32) / math.sqrt(
            K * self.width_mult
        )
        s_BxHxTxT = s_BxHxTxT * jnp.asarray(attn_mult, jnp.float32)  # a separate multiply (× 1.0 is exact)
        n_allowed = self.H * jnp.sum(allowed_BxTxT, dtype=jnp.float32)
        score_l1 = jnp.sum(jnp.where(allowed_BxTxT[:, None], jnp.abs(s_BxHxTxT), 0.0)) / jnp.maximum(n_allowed, 1)
        s_BxHxTxT = jnp.where(allowed_BxTxT[:, None], s_BxHxTxT, jnp.finfo(s_BxHxTxT.dtype).min)
        p_BxHxTxT = jax.nn.softmax(s_BxHxTxT, axis=-1)
        keep = (lambda x, i: x) if drop is None else (lambda x, i: drop(x, site + i))
        p_BxHxTxT = keep(p_BxHxTxT, 0)
        y_BxTxHxK = jnp.einsum("bhqs,bshk->bqhk", p_BxHxTxT.astype(v_BxTxHxK.dtype), v_BxTxHxK)
        x_BxTxD = x_BxTxD + keep(self.proj(y_BxTxHxK.reshape(B, T, D)), 1)
        return x_BxTxD + keep(self.out(jax.nn.gelu(self.fc(self.ln2(x_BxTxD)), approximate=False)), 2), score_l1


class TransformerLM(EmbeddingLM):
    """Decoder-only: embed (+ positions) -> pre-LN blocks with causal (and padding) masks -> LN -> head."""

    def __init__(self, cfg: Config, *, rngs: nnx.Rngs, zero_query: Any = None, **tables: Any):
        """tables: see EmbeddingLM._init_tables; zero_query: model.zero_query_init (a member's value, possibly
        traced; default the config's)."""
        m = cfg.model
        D, T = m.embed_dim, cfg.data.seq_len
        zero_query = m.zero_query_init if zero_query is None else zero_query
        self._init_tables(cfg, rngs, **tables)
        self.positions = m.positions
        dt = dtypes(cfg)
        if m.positions == "learned":
            self.pos = nnx.Param((0.02 * jax.random.normal(rngs.params(), (T, D))).astype(dt["param_dtype"]))
        self.blocks = nnx.List(
            [
                Block(
                    D,
                    m.num_heads,
                    m.mlp_ratio * D,
                    width_mult=width_multiplier(cfg),
                    zero_query=zero_query,
                    attn_mult=None if isinstance(m.attn_mult, PerMember) else m.attn_mult,
                    rngs=rngs,
                    **dt,
                )
                for _ in range(m.num_layers)
            ]
        )
        self.ln_f = nnx.LayerNorm(D, epsilon=1e-5, rngs=rngs, **dt)

    def features_and_coords(
        self, tok_BxT: jax.Array, mask_BxT: jax.Array | None = None, probes=None, attn_mult: Any = None, drop=None
    ) -> tuple:
        """(embedding output, final hidden state, {blockI: mean |x| after block I, attn_logitsI: mean |score|}).
        probes: None, or one (B, T, D) array per block added to its input (zeros: the gradient with respect to
        a probe is ∂L/∂x at that block's input, the residual stream its first LayerNorm reads). attn_mult: the
        factor on every block's attention scores (a member's model.attn_mult, possibly traced; None: the config's).
        drop: dropout while training (embjax.model.layers.Dropout), None at eval."""
        B, T = tok_BxT.shape
        emb_BxTxD, x_BxTxD = self.lookup_dropped(tok_BxT, drop)
        if self.positions == "learned":
            x_BxTxD = x_BxTxD + self.pos[...][:T].astype(x_BxTxD.dtype)
        elif self.positions == "sinusoidal":
            x_BxTxD = x_BxTxD + sinusoidal_positions(T, x_BxTxD.shape[-1]).astype(x_BxTxD.dtype)
        allowed_BxTxT = jnp.broadcast_to(jnp.tril(jnp.ones((T, T), bool)), (B, T, T))
        if mask_BxT is not None:  # padding: no query attends to a padded key (its own position stays allowed)
            allowed_BxTxT = allowed_BxTxT & (mask_BxT[:, None, :] | jnp.eye(T, dtype=bool))
        coords = {}
        for i, block in enumerate(self.blocks):
            if probes is not None:
                x_BxTxD = x_BxTxD + probes[i].astype(x_BxTxD.dtype)
            x_BxTxD, coords[f"attn_logits{i}"] = block(x_BxTxD, allowed_BxTxT, attn_mult, drop, site=1 + 3 * i)
            coords[f"block{i}"] = mean_abs(x_BxTxD)
        return emb_BxTxD, self.ln_f(x_BxTxD), coords


class LSTMLM(EmbeddingLM):
    """The tying papers' LSTM LM (Zaremba et al. 2014; Press & Wolf 2017; Inan et al. 2017): lookup -> num_layers
    LSTM layers of width D (embjax.model.layers.LSTMStack), so the head has E's shape and tying works. Every window
    starts from a zero state (no state is carried from one batch to the next); padded inputs are zeros."""

    def __init__(self, cfg: Config, *, rngs: nnx.Rngs, **tables: Any):  # tables: see EmbeddingLM._init_tables
        self._init_tables(cfg, rngs, **tables)
        self.lstm = LSTMStack(cfg.model.embed_dim, cfg.model.num_layers, rngs=rngs, **dtypes(cfg))

    def features_and_coords(self, tok_BxT: jax.Array, mask_BxT: jax.Array | None = None, drop=None) -> tuple:
        """(embedding output, last layer's output, {layerI: mean |h| of layer I}); drop: dropout while training."""
        emb_BxTxD, x_BxTxD = self.lookup_dropped(tok_BxT, drop, mask_BxT)
        h_BxTxD, coords = self.lstm(x_BxTxD, drop)
        return emb_BxTxD, h_BxTxD, coords


MODELS = {"linear": LinearLM, "mlp": MLPLM, "transformer": TransformerLM, "lstm": LSTMLM}


def width_multiplier(cfg: Config) -> float:
    """μP's m = embed_dim / base_width (1 under SP)."""
    m = cfg.model
    return m.embed_dim / m.base_width if m.parametrization == "mup" else 1.0


def build_model(
    cfg: Config,
    *,
    init_std: Any = None,
    head_init_std: Any = None,
    zero_query: Any = None,
    pretrained=None,
    order=None,
    rngs: nnx.Rngs,
) -> EmbeddingLM:
    """The model `cfg.model.kind` names; `init_std` (σ), `head_init_std` and `zero_query` (a transformer's
    model.zero_query_init) may be traced values, None for the config's; `order`: token ids from most to least
    frequent (the adaptive embedding's clusters)."""
    extra = {"zero_query": zero_query} if cfg.model.kind == "transformer" else {}
    return MODELS[cfg.model.kind](
        cfg, init_std=init_std, head_init_std=head_init_std, pretrained=pretrained, order=order, rngs=rngs, **extra
    )


def make_embedding(cfg: Config, init_std: Any, pretrained=None, order=None, *, rngs: nnx.Rngs) -> TokenEmbedding:
    """The input embedding layer `embedding.kind` names (table, factorized, hashed, adaptive)."""
    V, D, e = cfg.data.vocab_size, cfg.model.embed_dim, cfg.embedding
    # frozen for good: the layer stops the gradient (the optimizer keeps no state for it); frozen rows, or rows
    # that thaw at embedding.unfreeze_at, are held by the train step instead (step.Program.held_rows)
    frozen = e.freeze is True and e.unfreeze_at is None
    common = dict(init=e.init, init_std=init_std, scale=e.scale, freeze=frozen, rngs=rngs, **dtypes(cfg))
    if e.kind == "factorized":
        return FactorizedEmbedding(V, D, rank=e.rank, **common)
    if e.kind == "hashed":
        return HashedEmbedding(V, D, buckets=e.buckets, num_hashes=e.num_hashes, hash_seed=e.hash_seed, **common)
    if e.kind == "adaptive":
        return AdaptiveEmbedding(V, D, cutoffs=e.cutoffs, factor=e.cutoff_factor, order=order, **common)
    return TokenEmbedding(V, D, pretrained=pretrained, **common)


def path_keys(path: tuple) -> tuple:
    """A pytree path (DictKey, GetAttrKey, SequenceKey ...) as plain keys."""
    return tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)


class Tables:
    """Where a model's embedding tables sit in its parameter tree: the one way tables are found.

    Found by type (every TokenEmbedding, however deep), named by module path: "embed" is the input
    table, "head" an untied output table. Step (masks, row counters), mesh (which leaves are split over
    the vocabulary) and the loop (what the geometry metrics read) all ask this object.
    """

    def __init__(self, model: nnx.Module):
        found = [(p, m) for p, m in nnx.iter_modules(model) if isinstance(m, TokenEmbedding)]
        self.layers = {"/".join(map(str, p)): (tuple(p), m) for p, m in found}  # name -> (module path, layer)
        self.frozen = {"/".join(map(str, p)) for p, m in found if m.freeze}  # tables whose updates are zeroed

    def subtree(self, tree: Any, name: str = "embed") -> dict:
        """The layer `name`'s part of a parameter (or gradient) tree: its arrays by parameter name."""
        for k in self.layers[name][0]:
            tree = tree[k]
        return tree

    def get(self, params: Any, name: str = "embed") -> jax.Array:
        """The effective V×d table `name` from a parameter tree (E by default)."""
        return self.layers[name][1].table_of(self.subtree(params, name))

    def touched(self, grads: Any, name: str = "embed") -> jax.Array:
        """(V,) bool: tokens whose own parameters in layer `name` got a nonzero gradient."""
        return self.layers[name][1].touched_of(self.subtree(grads, name))

    def per_token(self, path: tuple) -> bool:
        """Whether a tree path's parameter has one row per token (its layer's `per_token_params`)."""
        name = self.name_of(path)
        return name is not None and path_keys(path)[-1] in self.layers[name][1].per_token_params

    def name_of(self, path: tuple) -> str | None:
        """The layer a tree path's parameter belongs to (params, gradients and optimizer moments alike), or None."""
        keys = path_keys(path)
        for name, (p, _) in self.layers.items():
            if len(keys) > len(p) and keys[-len(p) - 1 : -1] == p:
                return name
        return None


def count_params(state: Any) -> int:
    return int(sum(x.size for x in jax.tree.leaves(state)))


def drawn_shapes(cfg: Config) -> Config:
    """The config with a drawn table in place of a pretrained one: the same shapes, and no file to read."""
    if cfg.embedding.init == "pretrained":
        cfg = dataclasses.replace(cfg, embedding=dataclasses.replace(cfg.embedding, init="normal"))
    return cfg


def embedding_size(cfg: Config) -> dict[str, int]:
    """The input embedding layer's parameter count and bytes, from the config alone (no arrays made)."""
    cfg = drawn_shapes(cfg)
    layer = nnx.eval_shape(lambda: make_embedding(cfg, 1.0, rngs=nnx.Rngs(0)))
    return {"embedding/params": layer.num_params(), "embedding/bytes": layer.num_bytes()}


def abstract_model(cfg: Config, pretrained: Any = None, order=None) -> nnx.Module:
    """The model's shapes alone, no array made (placeholder numbers for its per-member init values): what a
    program compiles for, and what runner's memory check counts."""
    return nnx.eval_shape(
        lambda: build_model(
            cfg,
            init_std=1.0,
            head_init_std=1.0,
            zero_query=False,
            pretrained=pretrained,
            order=order,
            rngs=nnx.Rngs(0),
        )
    )
