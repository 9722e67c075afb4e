"""Device meshes: data parallelism over `data`, the vocabulary axis of every V-row table over `model`.

Dimensions: V vocabulary, D width, B batch. A leaf whose leading axis is V (the input table, an
untied head, their optimizer moments, per-row counters) is sharded P("model", None, ...); the batch
is sharded P("data", None); everything else is replicated. XLA's SPMD partitioner then keeps the
lookup and the logits local to each vocabulary shard (partial results are all-reduced; the table
itself is never gathered), so a table larger than one device's memory trains.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..config import Config, ConfigError


def _env_int(name: str, lo: int, hi: int) -> int:
    text = os.environ.get(name)
    if text is None or not text.strip().isdigit() or not lo <= int(text) <= hi:
        raise ConfigError(f"{name}: got {text!r} with JAX_COORDINATOR_ADDRESS set; allowed: an integer in [{lo}, {hi}]")
    return int(text)


def maybe_initialize_distributed() -> bool:
    """Start jax.distributed when a multi-process environment is present; call it before any device use.

    Explicit: JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID,
    all three (a missing or malformed one is a ConfigError). Slurm: several tasks in a job, detected by
    JAX itself. Returns True when this is a multi-process run.
    """
    addr = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if addr is not None:
        host, _, port = addr.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"JAX_COORDINATOR_ADDRESS: got {addr!r}; allowed: host:port of process 0, e.g. 10.0.0.1:1234"
            )
        n = _env_int("JAX_NUM_PROCESSES", 1, 2**16)
        pid = _env_int("JAX_PROCESS_ID", 0, n - 1)
        _initialize(addr, n, pid)
        return True
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ:
        _initialize(None, None, None)
        return True
    return False


def _initialize(addr: str | None, n: int | None, pid: int | None) -> None:
    timeout = int(os.environ.get("EMBJAX_DISTRIBUTED_TIMEOUT", "300"))
    try:
        jax.distributed.initialize(addr, n, pid, initialization_timeout=timeout)
    except (RuntimeError, ValueError) as err:  # no coordinator within the timeout, a bad cluster setup
        raise ConfigError(
            f"jax.distributed: could not start process {pid} of {n} with coordinator {addr} "
            f"({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        ) from None


def make_mesh(cfg: Config) -> Mesh | None:
    """The mesh cfg.mesh asks for, or None for 1 × 1; refuses shapes the devices or sizes cannot take."""
    data, model = cfg.mesh.data, cfg.mesh.model
    n = jax.device_count()
    if data * model == 1 and jax.process_count() == 1:  # the default: one device, whatever the machine has
        return None
    if data * model != n:
        where = f"across {jax.process_count()} processes" if jax.process_count() > 1 else "present"
        raise ConfigError(
            f"mesh: got data={data} × model={model} = {data * model} devices; allowed: a product "
            f"equal to the {n} device(s) {where} ({jax.default_backend()})"
        )
    if cfg.data.batch_size % data:
        raise ConfigError(
            f"mesh.data: got {data} with data.batch_size={cfg.data.batch_size}; allowed: a divisor of the batch size"
        )
    if cfg.data.vocab_size % model:
        raise ConfigError(
            f"mesh.model: got {model} with data.vocab_size={cfg.data.vocab_size}; "
            "allowed: a divisor of the vocabulary size"
        )
    # Auto axes: the SPMD partitioner places the collectives (the lookup of a V-sharded table included)
    return jax.make_mesh((data, model), ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto))


def state_shardings(abstract_state: Any, mesh: Mesh, per_row: Callable[[tuple, Any], bool]) -> Any:
    """A NamedSharding per leaf: per-row leaves (`per_row(path, leaf)`: the program says which) split
    over `model` along their vocabulary axis, the rest replicated."""

    def spec(path, x):
        if per_row(path, x):
            return NamedSharding(mesh, P("model", *([None] * (len(x.shape) - 1))))
        return NamedSharding(mesh, P())

    return jax.tree_util.tree_map_with_path(spec, abstract_state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data", None))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def is_main_process() -> bool:
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Every process waits here for the others (nothing to wait for in a one-process run)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


# keys each host may set for itself (caches, the console); every other key, out_dir included, must agree
PER_HOST_KEYS = ("compile_cache", "data.cache_dir", "log.progress")
_ROUND = [0]


def agree_on_config(cfgs: list[Config]) -> None:
    """Every process of a run must run the same configs (a group's members) in the same out_dir (else each waits
    for the others at the first checkpoint, for ever): the processes exchange theirs through the JAX
    coordinator's key-value store, once per group, and any difference is one line on every process naming the
    first differing key (ConfigError, exit 2). Nothing to do in a one-process run."""
    if jax.process_count() == 1:
        return
    import json

    from .. import config as C

    me, timeout = jax.process_index(), cfgs[0].mesh.wait_timeout
    mine = [{k: v for k, v in C.flatten(C.to_dict(c)).items() if k not in PER_HOST_KEYS} for c in cfgs]
    _ROUND[0] += 1  # each group of a sweep agrees afresh (the processes run the same groups in the same order)
    _client().key_value_set(f"embjax/config/{_ROUND[0]}/{me}", json.dumps(mine, default=str))
    for other in range(jax.process_count()):
        theirs = json.loads(_get(f"embjax/config/{_ROUND[0]}/{other}", f"process {other}", timeout))
        for a, b in zip(mine, theirs + [{}] * (len(mine) - len(theirs))):
            diff = [k for k in a if json.dumps(a[k], default=str) != json.dumps(b.get(k), default=str)]
            if diff:
                k = diff[0]
                raise ConfigError(
                    f"{k}: got {a[k]!r} on process {me} but {b.get(k)!r} on process {other} ({len(diff)} key(s) "
                    "differ); allowed: the same config and out_dir on every process of a run"
                )


def _client():
    from jax._src import distributed

    return distributed.global_state.client


def _get(key: str, who: str, wait_timeout: float) -> str:
    """The coordinator's value for `key`, waiting at most wait_timeout seconds for `who` to set it."""
    try:
        return _client().blocking_key_value_get(key, int(wait_timeout * 1000))
    except Exception as err:  # noqa: BLE001 - a timeout or a coordinator that went away
        raise ConfigError(
            f"mesh.wait_timeout: {who} did not answer within {wait_timeout:g} s "
            f"({str(err).splitlines()[0] if str(err) else type(err).__name__}); allowed: every process of the run "
            "started with the same command"
        ) from None


_DECISIONS = [0]


def share_decision(message: str, wait_timeout: float) -> None:
    """Process 0's verdict on something only it checks (e.g. the run lock): "" to go on, else its one-line
    error, which every other process then raises too (instead of waiting at the next barrier for a process that
    has stopped). Nothing to do in a one-process run."""
    if jax.process_count() == 1:
        return
    _DECISIONS[0] += 1  # the processes take the same decisions in the same order
    key = f"embjax/decision/{_DECISIONS[0]}"
    if jax.process_index() == 0:
        _client().key_value_set(key, message or "-")
        return
    got = _get(key, "process 0", wait_timeout)
    if got != "-":
        raise ConfigError(got)


def start_agree_max(value: int) -> Any:
    """The largest of every process's `value`, read with int() (the processes of a run must take the same
    decisions, e.g. stop here, to run the same collectives). Dispatched as a device all-reduce queued behind
    the work already dispatched, so the host can read it later without waiting now. One process: the value."""
    if jax.process_count() == 1:
        return value
    global _AGREE
    if _AGREE is None:
        devices = Mesh(np.asarray(jax.devices()), ("all",))
        _AGREE = (
            NamedSharding(devices, P("all")),
            jax.jit(lambda x: x.max(), out_shardings=NamedSharding(devices, P())),
        )
    sharding, reduce_max = _AGREE
    local = np.full((jax.local_device_count(),), value, np.int32)
    return reduce_max(jax.make_array_from_process_local_data(sharding, local))


_AGREE: tuple | None = None


def to_host(x: jax.Array) -> np.ndarray:
    """A (possibly sharded) array on the host, assembled shard by shard (no device-side gather);
    across processes, the shards other hosts hold are fetched with process_allgather."""
    if x is None:
        return None
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


def stack_members(states: list) -> Any:
    """Members' states stacked on the host (jnp.stack would compile a program per leaf shape), then
    placed: spread over the devices along a members axis when they divide the member count."""
    stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *states)
    n_dev = jax.device_count()
    if n_dev > 1 and len(states) % n_dev == 0:
        members_mesh = jax.make_mesh((n_dev,), ("members",), axis_types=(AxisType.Auto,))
        return jax.device_put(stacked, NamedSharding(members_mesh, P("members")))
    return jax.device_put(stacked)
