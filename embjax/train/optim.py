"""The optimizer a train step applies: a rule per parameter (its lr, weight decay and init scale; muP's
per-shape multipliers), the schedule, gradient clipping, decay by rule, and optax's chain built from them. Pure."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from optax import MaskedNode

from ..config import Config
from ..model.models import Tables


@dataclass(frozen=True)
class Rule:
    """How the optimizer treats one parameter: its group (embed: the input table; table: another
    embedding table; matrix; vector; pos: the learned position table) and μP's multipliers on its learning
    rate and weight decay."""

    group: str
    lr_mult: float = 1.0
    decay_mult: float = 1.0
    frozen: bool = False
    per_token: bool = False  # a row per token (the input layer's V-leading arrays): frequency-scaled decay


def param_rules(cfg: Config, tables: Tables, params: Any, base_params: Any) -> Any:
    """A Rule per parameter. Under μP (m = d / d₀) a matrix whose two dimensions both grow with the
    width (compared with the same model at d₀, as `mup`'s base shapes) is hidden: Adam lr × 1/m and
    weight decay × m, so that lr · decay stays the same at every width (MuAdam's convention).
    Everything else (tables, positions, norms, biases) keeps lr η."""
    mup = cfg.model.parametrization == "mup"

    def rule(path, x, base):
        name = tables.name_of(path)
        if name is not None:
            return Rule(
                "embed" if name == "embed" else "table",
                frozen=name in tables.frozen,
                per_token=name == "embed" and tables.per_token(path),
            )
        if x.ndim < 2:
            return Rule("vector")
        if getattr(path[0], "key", None) == "pos":  # the learned position table: lr × optim.pos_lr_scale
            return Rule("pos")
        grown = [a != b for a, b in zip(x.shape, base.shape)]
        if mup and sum(grown) == 2:
            m = x.shape[0] / base.shape[0]  # the fan-in's width multiplier
            return Rule("matrix", lr_mult=1.0 / m, decay_mult=m)
        return Rule("matrix")

    return jax.tree_util.tree_map_with_path(rule, params, base_params)


def _is_rule(x: Any) -> bool:
    return isinstance(x, Rule)


def token_decay_scale(hp: dict, log_rel_freq: Any) -> jax.Array:
    """(V,) multipliers on the input layer's per-token decay: (V·fᵢ)^(−embed_decay_freq_power), fᵢ the token's
    corpus frequency; 1 at the uniform frequency 1/V, larger for rarer tokens (regularise rare rows). Capped so
    that lr · decay · scale ≤ 1/2 (one step shrinks a row by at most half; an uncapped rare row would flip sign
    and grow every step), but never below 1: at power 0 every multiplier is exactly 1, whatever lr and decay."""
    scale = jnp.exp(-hp["embed_decay_freq_power"] * jnp.asarray(log_rel_freq, jnp.float32))
    return jnp.minimum(scale, jnp.maximum(1.0, 0.5 / jnp.maximum(hp["lr"] * hp["embed_weight_decay"], 1e-30)))


def decay_by_rule(rules: Any, hp: dict, log_rel_freq: Any = None) -> optax.GradientTransformation:
    """Weight decay per parameter: matrices by weight_decay (× μP's decay_mult), embedding tables by
    embed_weight_decay (the input layer's rows × token_decay_scale when log_rel_freq = log(V·f) is given),
    vectors (biases, norm scales) not at all."""
    scale_V = None if log_rel_freq is None else token_decay_scale(hp, log_rel_freq)

    def decayed(r, g, p):
        if r.group == "vector" or isinstance(g, MaskedNode):  # (MaskedNode: a frozen table's, outside the chain)
            return g
        wd = hp["weight_decay"] if r.group in ("matrix", "pos") else hp["embed_weight_decay"]
        wd = wd if r.decay_mult == 1.0 else wd * r.decay_mult
        if r.per_token and scale_V is not None:
            wd = wd * scale_V.reshape(-1, *[1] * (p.ndim - 1))
        return g + wd * p

    return optax.GradientTransformation(
        lambda params: optax.EmptyState(),
        lambda u, state, params: (jax.tree.map(decayed, rules, u, params, is_leaf=_is_rule), state),
    )


def scale_by_rule(rules: Any, hp: dict) -> optax.GradientTransformation:
    """Per-parameter learning-rate multipliers: μP's 1/m on hidden matrices, embed_lr_scale on the input table,
    vector_lr_scale on vectors (norm gains, biases), pos_lr_scale on the learned position table."""
    by_group = {"embed": "embed_lr_scale", "vector": "vector_lr_scale", "pos": "pos_lr_scale"}

    def scaled(r, u):
        if isinstance(u, MaskedNode):
            return u
        mult = hp[by_group[r.group]] if r.group in by_group else None
        if r.lr_mult != 1.0:
            mult = r.lr_mult if mult is None else mult * r.lr_mult
        return u if mult is None else u * mult

    return optax.GradientTransformation(
        lambda params: optax.EmptyState(),
        lambda u, state, params=None: (jax.tree.map(scaled, rules, u, is_leaf=_is_rule), state),
    )


def clip_by_global_norm(max_norm: jax.Array) -> optax.GradientTransformation:
    """optax.clip_by_global_norm with max_norm a value (≤ 0: off), so clipping on or off is not a new program.
    With max_norm > 0 it computes exactly what optax's transform computes."""

    def update(updates, state, params=None):
        g_norm = optax.tree.norm(updates)
        keep = (g_norm < max_norm) | (max_norm <= 0)
        return jax.tree.map(
            lambda t: jax.lax.select(keep, t, ((t / g_norm.astype(t.dtype)) * max_norm).astype(t.dtype)), updates
        ), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def schedule_factor(cfg: Config) -> Callable[[jax.Array], jax.Array]:
    """Multiplier on lr at a step: linear warmup, then cosine/linear decay to 0, or constant."""
    o, total = cfg.optim, cfg.steps
    warm = min(o.warmup_steps, max(total - 1, 0))

    def factor(count):
        t = jnp.asarray(count, jnp.float32)
        up = jnp.minimum(1.0, (t + 1.0) / max(warm, 1)) if warm > 0 else 1.0
        frac = jnp.clip((t - warm) / max(total - warm, 1), 0.0, 1.0)
        down = {"cosine": 0.5 * (1.0 + jnp.cos(math.pi * frac)), "linear": 1.0 - frac, "constant": jnp.ones_like(frac)}[
            o.schedule
        ]
        return jnp.where(t < warm, up, down)

    return factor


def make_optimizer(cfg: Config, hp: dict, rules: Any, log_rel_freq: Any = None) -> optax.GradientTransformation:
    """The optax chain for cfg.optim with values from `hp` (traced or not): built inside jit per step.

    adamw/adafactor decay weights decoupled from the gradient (Loshchilov & Hutter 2019); adam/sgd add
    an L2 term to the gradient. Which parameters decay, by how much, and their learning-rate
    multipliers (μP, embed_lr_scale) follow each parameter's Rule.
    """
    o = cfg.optim
    decay = decay_by_rule(rules, hp, log_rel_freq)
    factor = schedule_factor(cfg)
    parts = [clip_by_global_norm(hp["grad_clip"])]
    if o.name == "adamw":
        parts += [optax.scale_by_adam(o.b1, o.b2, eps=1e-8), decay]
    elif o.name == "adam":
        parts += [decay, optax.scale_by_adam(o.b1, o.b2, eps=1e-8)]
    elif o.name == "sgd":
        parts += [decay, optax.trace(decay=o.momentum)]
    elif o.name == "adafactor":
        parts += [optax.scale_by_factored_rms(), decay]
    parts += [optax.scale_by_learning_rate(lambda count: hp["lr"] * factor(count)), scale_by_rule(rules, hp)]
    frozen = jax.tree.map(lambda r: r.frozen, rules)
    if any(jax.tree.leaves(frozen)):  # frozen tables: no optimizer state at all, a zero update
        trainable = jax.tree.map(lambda f: not f, frozen)
        return optax.chain(optax.masked(optax.chain(*parts), trainable), optax.masked(optax.set_to_zero(), frozen))
    return optax.chain(*parts)


def rows_where(rows_V: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """a's rows where rows_V, b's elsewhere (rows: the leading axis)."""
    return jax.lax.select(jnp.broadcast_to(rows_V.reshape(-1, *[1] * (a.ndim - 1)), a.shape), a, b)


def lazy_rows(rows: Any, updates: Any, new_opt: Any, old_opt: Any) -> tuple[Any, Any]:
    """optim.row_updates=lazy: rows (a tree like the parameters: a (V,) bool of rows with a nonzero gradient for
    each per-token array, None elsewhere) keep their update; the others get a zero update and keep their
    optimizer state (every parameter-shaped part of the optax state: Adam's moments, SGD's trace; inside an
    optax.masked chain, where a frozen table's place holds a MaskedNode, too)."""
    pdef = jax.tree.structure(updates)
    masked = lambda x: isinstance(x, MaskedNode)

    def keep(r, new, old):
        if r is None or masked(new) or new.shape[:1] != r.shape:
            return new
        return rows_where(r, new, old)

    is_rows = lambda x: x is None or masked(x)
    updates = jax.tree.map(lambda r, u: keep(r, u, jnp.zeros_like(u)), rows, updates, is_leaf=is_rows)
    is_param_tree = lambda x: not masked(x) and jax.tree.structure(x, is_leaf=masked) == pdef

    def part(new, old):
        return jax.tree.map(keep, rows, new, old, is_leaf=is_rows) if is_param_tree(new) else new

    return updates, jax.tree.map(part, new_opt, old_opt, is_leaf=is_param_tree)
