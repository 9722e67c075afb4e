"""What a train chunk logs besides its train metrics, dispatched with the chunk and fetched one chunk late.

At a chunk's last step the loop asks the `Observer` to dispatch (not wait for): the embedding stats,
the eval loss when it is due, a copy of the effective table E when the geometry metrics are due, and
a float16 copy of the snapshot rows when a snapshot is due. The loop fetches them only after the next
chunk has been dispatched, so neither the metrics nor the snapshots stall the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..analysis.metrics import TrainingGeometry
from ..outputs.snapshots import snapshot_every, snapshot_rows
from ..runtime.mesh import replicated, to_host
from .selection import perplexity
from .step import Program


def hit(s: int, every: int, total: int) -> bool:
    """Whether step s logs something that happens every `every` steps (0: only at the end)."""
    return s == total or (every > 0 and s % every == 0)


def member_row(host: dict, i: int | None) -> dict[str, float]:
    """Member i's scalars (i None: not vmapped); an eval bucket with no target (its NaN) is left out; eval/ppl =
    exp(eval/loss) beside the eval loss."""
    row = {k: float(np.asarray(v)[i] if i is not None else v) for k, v in host.items()}
    if "eval/loss" in row:
        row["eval/ppl"] = perplexity(row["eval/loss"])
    return {k: v for k, v in row.items() if v == v or "_bucket_" not in k}


def compile_program(P: Program, vmapped: bool) -> tuple[Any, Any, Any, Any]:
    """The jitted train chunk (donating its state), embedding stats, eval and effective table E of a program;
    on a mesh with explicit in/out shardings (the tables stay split over `model`), vmapped if asked."""
    if P.state_shardings is not None:
        sh, rep = P.state_shardings, replicated(P.mesh)
        return (
            jax.jit(P.train_steps, static_argnums=2, donate_argnums=0, in_shardings=(sh, rep), out_shardings=(sh, rep)),
            jax.jit(P.emb_stats, in_shardings=(sh,), out_shardings=rep),
            jax.jit(P.evaluate, in_shardings=(sh, rep), out_shardings=rep),
            jax.jit(P.table, in_shardings=(sh["params"],)),
        )
    fns = P.train_steps, P.emb_stats, P.evaluate, P.table
    if vmapped:
        fns = jax.vmap(fns[0], in_axes=(0, None, None)), jax.vmap(fns[1]), jax.vmap(fns[2], (0, None)), jax.vmap(fns[3])
    return jax.jit(fns[0], static_argnums=2, donate_argnums=0), *map(jax.jit, fns[1:])


@dataclass
class Fetched:
    """One chunk's extras on the host; E and the snapshot have a leading members axis when vmapped."""

    step: int
    host: dict[str, Any]
    E: np.ndarray | None
    E_out: np.ndarray | None  # the untied output head, when benchmarks score it
    snapshot: tuple[np.ndarray, np.ndarray] | None  # (float16 rows, row update counts)
    extra: dict[str, float]  # the same for every member: train/epoch on a text corpus


class Observer:
    """Dispatches and fetches the extras of a program's chunks (see the module docstring)."""

    def __init__(self, P: Program, fns: tuple, vmapped: bool, place: Any):
        cfg = P.cfg
        self.cfg, self.vmapped = cfg, vmapped
        _, self.stats_fn, self.eval_fn, self.table_fn = fns
        self.geometry = TrainingGeometry(cfg, P.corpus)
        self.out_fn = None  # the untied head, fetched with E when benchmarks score both tables
        if self.geometry.benchmarks and jax.eval_shape(P.output_table, P.abstract_state["params"]) is not None:
            if P.state_shardings is not None:
                self.out_fn = jax.jit(P.output_table, in_shardings=(P.state_shardings["params"],))
            else:
                self.out_fn = jax.jit(jax.vmap(P.output_table) if vmapped else P.output_table)
        self.eval_batches = place(
            P.corpus.eval_batches(jax.random.key(1_000_003), cfg.data.eval_batches, cfg.data.batch_size)
        )
        tokens = P.corpus.info.get("data/train_tokens")  # (a text corpus) passes over the training stream per step
        self.epochs_per_step = cfg.data.batch_size * cfg.data.seq_len / tokens if tokens else None
        self.snapshot_every = snapshot_every(cfg.steps, cfg.log.every, cfg.log.snapshot_every)
        self.rows = snapshot_rows(P.corpus.counts) if self.snapshot_every else None
        if self.rows is not None:
            ids = jnp.asarray(self.rows)
            snap = lambda state: (P.table(state["params"])[ids].astype(jnp.float16), state["row_updates"][ids])
            if P.state_shardings is not None:
                self.snap_fn = jax.jit(snap, in_shardings=(P.state_shardings,), out_shardings=replicated(P.mesh))
            else:
                self.snap_fn = jax.jit(jax.vmap(snap) if vmapped else snap)

    def events(self) -> tuple[int, ...]:
        log = self.cfg.log
        return log.every, log.eval_every, log.metrics_every, self.snapshot_every

    def dispatch(self, state: Any, s: int) -> tuple:
        """Start (not wait for) what step s logs besides the train metrics."""
        log, total = self.cfg.log, self.cfg.steps
        dev = dict(self.stats_fn(state))
        if hit(s, log.eval_every, total):
            dev.update(self.eval_fn(state, self.eval_batches))
        E = self.table_fn(state["params"]) if hit(s, log.metrics_every, total) else None  # a new buffer
        E_out = self.out_fn(state["params"]) if E is not None and self.out_fn is not None else None
        snap = self.snap_fn(state) if self.rows is not None and hit(s, self.snapshot_every, total) else None
        return s, dev, (E, E_out), snap

    def fetch(self, pending: tuple) -> Fetched:
        """Bring a dispatched chunk's extras to the host (a collective in a multi-process run: every process
        takes part)."""
        s, dev, tables, snap = pending
        host = jax.device_get(dev)
        E, E_out = (None if x is None else to_host(x) for x in tables)
        snap = None if snap is None else tuple(np.asarray(to_host(x)) for x in snap)
        return Fetched(
            s, host, E, E_out, snap, {} if self.epochs_per_step is None else {"train/epoch": s * self.epochs_per_step}
        )
