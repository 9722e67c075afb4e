"""Device meshes: data parallelism over `data`, the vocabulary axis of every V-row table over `model`.

Dimensions: V vocabulary, D width, B batch. A leaf whose leading axis is V (the input table, an
untied head, their optimizer moments, per-row counters) is sharded P("model", None, ...); the batch
is sharded P("data", None); everything else is replicated. XLA's SPMD partitioner then keeps the
lookup and the logits local to each vocabulary shard (partial results are all-reduced; the table
itself is never gathered), so a table larger than one device's memory trains.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from .config import Config, ConfigError


def maybe_initialize_distributed() -> bool:
    """Call jax.distributed.initialize() when a multi-process cluster environment is present
    (Slurm with several tasks, or JAX's coordinator variables); before any device is touched."""
    multi_slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ
    explicit = "JAX_COORDINATOR_ADDRESS" in os.environ or "COORDINATOR_ADDRESS" in os.environ
    if not (multi_slurm or explicit):
        return False
    jax.distributed.initialize()
    return True


def make_mesh(cfg: Config) -> Mesh | None:
    """The mesh cfg.mesh asks for, or None for 1 × 1; refuses shapes the devices or sizes cannot take."""
    data, model = cfg.mesh.data, cfg.mesh.model
    n = jax.device_count()
    if data * model == 1:  # the default: one device, whatever the machine has
        return None
    if data * model != n:
        raise ConfigError(f"mesh: got data={data} × model={model} = {data * model} devices; allowed: a product "
                          f"equal to the {n} device(s) present ({jax.default_backend()})")
    if cfg.data.batch_size % data:
        raise ConfigError(f"mesh.data: got {data} with data.batch_size={cfg.data.batch_size}; "
                          "allowed: a divisor of the batch size")
    if cfg.data.vocab_size % model:
        raise ConfigError(f"mesh.model: got {model} with data.vocab_size={cfg.data.vocab_size}; "
                          "allowed: a divisor of the vocabulary size")
    # Auto axes: the SPMD partitioner places the collectives (the lookup of a V-sharded table included)
    return jax.make_mesh((data, model), ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto))


def state_shardings(abstract_state: Any, mesh: Mesh, vocab_size: int) -> Any:
    """A NamedSharding per leaf: V-leading leaves split over `model`, the rest replicated."""
    def spec(x):
        shape = getattr(x, "shape", ())
        if len(shape) >= 1 and shape[0] == vocab_size:
            return NamedSharding(mesh, P("model", *([None] * (len(shape) - 1))))
        return NamedSharding(mesh, P())
    return jax.tree.map(spec, abstract_state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data", None))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def is_main_process() -> bool:
    return jax.process_index() == 0


def to_host(x: jax.Array) -> np.ndarray:
    """A (possibly sharded) array on the host, assembled shard by shard (no device-side gather);
    across processes, the shards other hosts hold are fetched with process_allgather."""
    if not isinstance(x, jax.Array):
        return np.asarray(x)
    if jax.process_count() > 1 and not x.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    if len(x.addressable_shards) <= 1:
        return np.asarray(x)
    out = np.empty(x.shape, x.dtype)
    for shard in x.addressable_shards:
        out[shard.index] = np.asarray(shard.data)
    return out


def describe(mesh: Mesh | None) -> dict:
    if mesh is None:
        return {"data": 1, "model": 1}
    return {name: int(size) for name, size in mesh.shape.items()}
