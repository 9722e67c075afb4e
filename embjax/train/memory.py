"""What a run needs from its machine, estimated before it starts: the train state's memory (from the config
alone, or from a compiled program for a vmapped chunk) and the disk a group of runs may write."""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from .. import config as C
from ..config import Config, ConfigError
from ..model.models import drawn_shapes
from ..outputs.snapshots import MAX_ROWS, snapshot_every
from .step import Program


def disk_need(program: Program, members: int) -> dict[str, float]:
    """Bytes a group of runs may write (an estimate): checkpoints (keep + 1 while a new one is written, + the best), the
    embedding snapshots, and the page and exports (the page holds the frames as text, plus Plotly's bundle)."""
    cfg = program.cfg
    state = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(program.abstract_state))
    every = snapshot_every(cfg.steps, cfg.log.every, cfg.log.snapshot_every)
    rows = min(cfg.data.vocab_size, MAX_ROWS) if every else 0
    frames = (cfg.steps // every + 1) if every else 0
    snaps = frames * rows * (cfg.model.embed_dim * 2 + 4)
    tables = cfg.data.vocab_size * cfg.model.embed_dim * 4 * (1 if cfg.model.tie_embeddings else 2)
    return {
        "checkpoints": members * (cfg.checkpoint.keep + 1 + cfg.checkpoint.keep_best) * state,
        "snapshots": members * snaps,
        "page and exports": members * (3 * snaps + 3 * tables + (5 * 2**20 if every else 0)),
    }


OPTIMIZER_MOMENTS = {"adamw": 2, "adam": 2, "sgd": 1, "adafactor": 0}  # float32 per parameter (adafactor: factored)


def state_estimate(cfg: Config) -> dict[str, int]:
    """Bytes one member's training needs at least, from the config alone (no array made): its parameters (at
    model.param_dtype), the optimizer's moments (float32), one float32 gradient per parameter."""
    from flax import nnx

    from .step import abstract_model

    leaves = jax.tree.leaves(nnx.state(abstract_model(C.without_values(drawn_shapes(cfg))), nnx.Param))
    n = sum(int(np.prod(x.shape)) for x in leaves)
    params = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in leaves)
    moments = OPTIMIZER_MOMENTS.get(cfg.optim.name, 2) * 4 * n
    return {"params": params, "optimizer": moments, "gradients": 4 * n}


def available_memory() -> tuple[int | None, str]:
    """(bytes, where): the accelerator's free memory, or on a CPU the host's available memory (MemAvailable)."""
    import jax

    if jax.default_backend() != "cpu":
        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)), f"free on {jax.devices()[0].device_kind}"
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024, "available on this host"
    except (OSError, KeyError, ValueError):
        return None, ""


def check_memory(cfg: Config, members: int) -> None:
    """Refuse, in one line, a run whose train state cannot fit the device (or host) memory: before any array of
    it is made and before its run directory is opened (an XLA out-of-memory midway is a traceback)."""
    need = state_estimate(cfg)
    total = members * sum(need.values())
    have, where = available_memory()
    if have is not None and total > have:
        gib = lambda b: f"{b / 2**30:,.1f} GiB"
        raise ConfigError(
            f"the train state needs about {gib(total)} ({members} member{'s' * (members > 1)} × (parameters "
            f"{gib(need['params'])} + optimizer state {gib(need['optimizer'])} + gradients {gib(need['gradients'])}),"
            f" activations not counted) and {gib(have)} is {where}; allowed: a smaller data.vocab_size × "
            "model.embed_dim, model.param_dtype=bfloat16, fewer members at once, or a device with more memory"
        )


def memory_budget() -> int | None:
    """Bytes one vmapped group may use: $EMBJAX_MEMORY_BUDGET if set, else the accelerator's free memory
    (memory_stats' bytes_limit - bytes_in_use); None on a CPU (host memory is not partitioned here)."""
    import jax

    if os.environ.get("EMBJAX_MEMORY_BUDGET"):
        return int(float(os.environ["EMBJAX_MEMORY_BUDGET"]))
    stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
    return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)) if stats and "bytes_limit" in stats else None


def member_bytes(program: Program) -> int:
    """Device bytes one vmapped member of `program` needs in a train chunk: the compiled program's arguments
    (less the corpus tables, which members share), outputs and temporaries at one member (an over-estimate
    per member of a larger group). It costs one compile of the one-member program."""
    import jax

    state = jax.tree.map(lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype), program.abstract_state)
    step = jax.jit(jax.vmap(program.train_steps, in_axes=(0, None, None)), static_argnums=2, donate_argnums=0)
    shared = sum(np.asarray(x).nbytes for x in jax.tree.leaves(program.corpus.tables))
    return compiled_bytes(step.lower(state, program.corpus.tables, 1).compile()) - shared


def compiled_bytes(compiled: Any) -> int:
    """Device bytes a compiled program uses: arguments + outputs (less what donation aliases) + temporaries."""
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes)


def members_that_fit(program: Program, members: int) -> int:
    """How many members one vmapped chunk holds: all of them, or as many as fit 90 % of the memory budget."""
    budget = memory_budget()
    if budget is None or members == 1:
        return members
    return max(1, min(members, int(0.9 * budget // member_bytes(program))))
