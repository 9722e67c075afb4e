"""Layers the language models are built from: inverted dropout drawn from a key, and the LSTM stack.

Dimensions: B batch, T time, D width (an LSTM layer's input and hidden width alike), G = 4·D gate pre-activations
in Flax's order (input i, forget f, cell g, output o).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

MASK_BITS = 16  # a mask entry is 16 random bits: rates are rounded to multiples of 2⁻¹⁶, survivors scaled exactly


def fmix32(x: jax.Array) -> jax.Array:
    """murmur3's 32-bit finaliser (a bijection of uint32 whose every output bit depends on every input bit)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def mask_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """MASK_BITS random bits per entry (uint32 below 2¹⁶): the finaliser twice over the entry's flat index, keyed by two
    words drawn from `key`. One threefry draw per site instead of one per entry: on 2 CPU cores 2 M entries take
    0.9 ms instead of 51 ms, and plain integer arithmetic is as exact under vmap and resume."""
    seed = jax.random.bits(key, (2,), jnp.uint32)
    n = math.prod(shape)
    h = fmix32(fmix32(jax.lax.iota(jnp.uint32, n) ^ seed[0]) + seed[1])
    return (h >> (32 - MASK_BITS)).reshape(shape)


class Dropout:
    """Inverted dropout whose masks are a pure function of one key and a site's number: a member's masks at a
    step are the same whether it trains alone, vmapped beside other members, or after a resume.

    rate and embed_rate may be traced (a member's model.dropout and model.embed_dropout). A site keeps an entry
    when its 16-bit draw (mask_bits) is at least round(rate·2¹⁶) and scales survivors by 2¹⁶ / (2¹⁶ − that
    threshold), so the expected output is the input exactly; at rate 0 every entry is kept and multiplied by 1."""

    def __init__(self, key: jax.Array, rate: Any, embed_rate: Any):
        self.key, self.rate, self.embed_rate = key, rate, embed_rate

    def __call__(self, x: jax.Array, site: int, rate: Any = None) -> jax.Array:
        """x with its entries dropped at `rate` (default: model.dropout's) by site `site`'s mask."""
        rate = self.rate if rate is None else rate
        full = 2**MASK_BITS
        threshold = jnp.clip(jnp.round(jnp.asarray(rate, jnp.float32) * full), 0, full - 1)
        keep = mask_bits(jax.random.fold_in(self.key, site), x.shape) >= threshold.astype(jnp.uint32)
        scale = (full / (full - threshold)).astype(x.dtype)
        return jnp.where(keep, x * scale, jnp.zeros((), x.dtype))

    def embed(self, x: jax.Array) -> jax.Array:
        """The looked-up vectors (site 0) at model.embed_dropout."""
        return self(x, 0, self.embed_rate)


def lstm_layer(cell: nnx.OptimizedLSTMCell, x_TxBxD: jax.Array) -> jax.Array:
    """One LSTM layer over a window from a zero state, with the cell's parameters and gates (σ, tanh: the cell's
    defaults): c' = σ(f)·c + σ(i)·tanh(g), h' = σ(o)·tanh(c'), where (i, f, g, o) = x·W_i + h·W_h + b.

    x·W_i + b for all T steps is one (T·B, D) × (D, G) matmul outside the scan (the cell's own __call__ would do
    T small ones); the scan carries (c, h) and computes only h·W_h and the gates (see `recurrence`)."""
    if cell.gate_fn is not jax.nn.sigmoid or cell.activation_fn is not jnp.tanh:
        raise ValueError("lstm_layer: the recurrence's gradient is written for sigmoid gates and tanh activations")
    T, B, D = x_TxBxD.shape
    dt = cell.dtype or x_TxBxD.dtype
    Wi_DxG, Wh_HxG = cell.dense_i.kernel[...].astype(dt), cell.dense_h.kernel[...].astype(dt)
    b_G = cell.dense_h.bias[...].astype(dt)
    xw_TxBxG = (x_TxBxD.astype(dt).reshape(T * B, D) @ Wi_DxG + b_G).reshape(T, B, -1)
    return recurrence(xw_TxBxG, Wh_HxG)


def _forward(xw_TxBxG: jax.Array, Wh_HxG: jax.Array) -> tuple[jax.Array, tuple]:
    """The scan from (c, h) = 0: every step's h, and what the backward pass reads (h, c and the four gates)."""
    B, H = xw_TxBxG.shape[1], Wh_HxG.shape[0]

    def step(carry, xw_BxG):
        c_BxH, h_BxH = carry
        z_BxG = xw_BxG + h_BxH @ Wh_HxG
        i, f, o = (jax.nn.sigmoid(z_BxG[:, k * H : (k + 1) * H]) for k in (0, 1, 3))
        g = jnp.tanh(z_BxG[:, 2 * H : 3 * H])
        c_BxH = f * c_BxH + i * g
        h_BxH = o * jnp.tanh(c_BxH)
        return (c_BxH, h_BxH), (h_BxH, c_BxH, jnp.concatenate([i, f, g, o], axis=-1))

    zeros = jnp.zeros((B, H), xw_TxBxG.dtype)
    _, (h_TxBxH, c_TxBxH, gates_TxBxG) = jax.lax.scan(step, (zeros, zeros), xw_TxBxG)
    return h_TxBxH, (h_TxBxH, c_TxBxH, gates_TxBxG, Wh_HxG)


@jax.custom_vjp
def recurrence(xw_TxBxG: jax.Array, Wh_HxG: jax.Array) -> jax.Array:
    """h for every step of an LSTM layer whose input projection (plus bias) is xw. Its gradient is PyTorch's and
    cuDNN's order of work: a reverse scan computes only the gates' gradients dz_t (one small matmul a step), then
    ∂W_h = Σ_t h_{t−1}ᵀ·dz_t is one (H, T·B) × (T·B, G) matmul after it, instead of T accumulations in the loop."""
    return _forward(xw_TxBxG, Wh_HxG)[0]


def _backward(res: tuple, dh_TxBxH: jax.Array) -> tuple[jax.Array, jax.Array]:
    h_TxBxH, c_TxBxH, gates_TxBxG, Wh_HxG = res
    H = Wh_HxG.shape[0]
    c_prev_TxBxH = jnp.concatenate([jnp.zeros_like(c_TxBxH[:1]), c_TxBxH[:-1]])

    def step(carry, xs):
        dh_next_BxH, dc_next_BxH = carry
        dout_BxH, c_BxH, c_prev_BxH, gates_BxG = xs
        i, f, g, o = (gates_BxG[:, k * H : (k + 1) * H] for k in range(4))
        dh_BxH = dout_BxH + dh_next_BxH
        tc_BxH = jnp.tanh(c_BxH)
        dc_BxH = dc_next_BxH + dh_BxH * o * (1 - tc_BxH * tc_BxH)
        dz_BxG = jnp.concatenate(
            [
                dc_BxH * g * i * (1 - i),
                dc_BxH * c_prev_BxH * f * (1 - f),
                dc_BxH * i * (1 - g * g),
                dh_BxH * tc_BxH * o * (1 - o),
            ],
            axis=-1,
        )
        return (dz_BxG @ Wh_HxG.T, dc_BxH * f), dz_BxG

    zeros = jnp.zeros_like(dh_TxBxH[0])
    _, dz_TxBxG = jax.lax.scan(step, (zeros, zeros), (dh_TxBxH, c_TxBxH, c_prev_TxBxH, gates_TxBxG), reverse=True)
    T, B, G = dz_TxBxG.shape
    h_prev_TxBxH = jnp.concatenate([jnp.zeros_like(h_TxBxH[:1]), h_TxBxH[:-1]])
    dWh_HxG = h_prev_TxBxH.reshape(T * B, H).T @ dz_TxBxG.reshape(T * B, G)
    return dz_TxBxG, dWh_HxG.astype(Wh_HxG.dtype)


recurrence.defvjp(_forward, _backward)


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
