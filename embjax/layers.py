"""Layers the language models are built from: inverted dropout drawn from a key, and the LSTM stack.

Dimensions: B batch, T time, D width (an LSTM layer's input and hidden width alike), G = 4·D gate pre-activations
in Flax's order (input i, forget f, cell g, output o).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

MASK_BITS = 16  # a mask entry is one uint16 draw: rates are rounded to multiples of 2⁻¹⁶, survivors scaled exactly


class Dropout:
    """Inverted dropout whose masks are a pure function of one key and a site's number: a member's masks at a
    step are the same whether it trains alone, vmapped beside other members, or after a resume.

    rate and embed_rate may be traced (a member's model.dropout and model.embed_dropout). A site keeps an entry
    when its uint16 draw is at least round(rate·2¹⁶) and scales survivors by 2¹⁶ / (2¹⁶ − that threshold), so the
    expected output is the input exactly; at rate 0 every entry is kept and multiplied by exactly 1."""

    def __init__(self, key: jax.Array, rate: Any, embed_rate: Any):
        self.key, self.rate, self.embed_rate = key, rate, embed_rate

    def __call__(self, x: jax.Array, site: int, rate: Any = None) -> jax.Array:
        """x with its entries dropped at `rate` (default: model.dropout's) by site `site`'s mask."""
        rate = self.rate if rate is None else rate
        full = 2**MASK_BITS
        threshold = jnp.clip(jnp.round(jnp.asarray(rate, jnp.float32) * full), 0, full - 1)
        bits = jax.random.bits(jax.random.fold_in(self.key, site), x.shape, jnp.uint16)
        keep = bits.astype(jnp.int32) >= threshold.astype(jnp.int32)
        scale = (full / (full - threshold)).astype(x.dtype)
        return jnp.where(keep, x * scale, jnp.zeros((), x.dtype))

    def embed(self, x: jax.Array) -> jax.Array:
        """The looked-up vectors (site 0) at model.embed_dropout."""
        return self(x, 0, self.embed_rate)


def lstm_layer(cell: nnx.OptimizedLSTMCell, x_TxBxD: jax.Array) -> jax.Array:
    """One LSTM layer over a window from a zero state, with the cell's parameters and gate functions:
    c' = σ(f)·c + σ(i)·tanh(g), h' = σ(o)·tanh(c'), where (i, f, g, o) = x·W_i + h·W_h + b.

    x·W_i + b for all T steps is one (T·B, D) × (D, G) matmul outside the scan (the cell's own __call__ would do
    T small ones); the scan carries (c, h) and computes only h·W_h and the gates."""
    T, B, D = x_TxBxD.shape
    dt = cell.dtype or x_TxBxD.dtype
    Wi_DxG, Wh_DxG = cell.dense_i.kernel[...].astype(dt), cell.dense_h.kernel[...].astype(dt)
    b_G = cell.dense_h.bias[...].astype(dt)
    xw_TxBxG = (x_TxBxD.astype(dt).reshape(T * B, D) @ Wi_DxG + b_G).reshape(T, B, -1)
    H = Wh_DxG.shape[0]

    def step(carry, xw_BxG):
        c_BxH, h_BxH = carry
        i, f, g, o = jnp.split(xw_BxG + h_BxH @ Wh_DxG, 4, axis=-1)
        c_BxH = cell.gate_fn(f) * c_BxH + cell.gate_fn(i) * cell.activation_fn(g)
        h_BxH = cell.gate_fn(o) * cell.activation_fn(c_BxH)
        return (c_BxH, h_BxH), h_BxH

    zeros = jnp.zeros((B, H), dt)
    _, h_TxBxH = jax.lax.scan(step, (zeros, zeros), xw_TxBxG)
    return h_TxBxH


class LSTMStack(nnx.Module):
    """num_layers LSTM layers of width D (Flax NNX's OptimizedLSTMCell: its parameters, init and gate layout), each
    window from a zero state; dropout (model.dropout) on every layer's output, i.e. between layers and before the
    head, as Zaremba et al. 2014 drop the non-recurrent connections."""

    def __init__(self, D: int, num_layers: int, *, rngs: nnx.Rngs, **dt: Any):
        self.cells = nnx.List([nnx.OptimizedLSTMCell(D, D, rngs=rngs, **dt) for _ in range(num_layers)])

    def __call__(self, x_BxTxD: jax.Array, drop: Dropout | None = None) -> tuple[jax.Array, dict]:
        """(B, T, D) inputs -> (the last layer's outputs (B, T, D), {layerI: mean |h| of layer I, before dropout})."""
        x_TxBxD = jnp.swapaxes(x_BxTxD, 0, 1)  # time-major once for the whole stack
        coords = {}
        for i, cell in enumerate(self.cells):
            x_TxBxD = lstm_layer(cell, x_TxBxD)
            coords[f"layer{i}"] = jnp.abs(x_TxBxD.astype(jnp.float32)).mean()
            if drop is not None:
                x_TxBxD = drop(x_TxBxD, site=1 + i)
        return jnp.swapaxes(x_TxBxD, 0, 1), coords
