"""Case `train`: the throughput spec through embjax's own model and train step: tokens/s, MFU."""

from __future__ import annotations

import resource
import time

from .common import DEFAULT_CONFIG, SPEC, peak_flops, published_peak, train_flops_per_token

# Untimed steps before the timed ones, as the PyTorch peer takes (its --warmup, 3 by default; docs/benchmarks.md).
# The first ones grow the host heap that the later ones reuse (embjax.runtime.hostmem): about 80,000 page faults a
# step at the spec, none once it has grown.
WARMUP_STEPS = 3


def bench_train(steps: int = 20, per_dispatch: int = 1, overrides: dict | None = None, base: str = "spec", **_) -> dict:
    import jax

    from ..config import load_config
    from ..data.corpus import make_corpus
    from ..model.models import count_params
    from ..train.step import Program, hparams

    if base == "default":  # experiments/configs/default.yaml: what `experiments.train` runs with no arguments
        cfg = load_config(DEFAULT_CONFIG, {**(overrides or {}), "steps": 10**6})
    else:
        cfg = load_config(None, {**SPEC, **(overrides or {}), "steps": 10**6})
    corpus = make_corpus(cfg)
    program = Program(cfg, corpus)
    t0 = time.perf_counter()
    state = jax.jit(program.init)(cfg.seed, hparams(cfg))
    step = jax.jit(program.train_steps, static_argnums=2, donate_argnums=0)
    compiled = step.lower(state, corpus.tables, per_dispatch).compile()
    compile_s = time.perf_counter() - t0
    state, m = compiled(state, corpus.tables)  # the first step: compile's end to a result
    jax.block_until_ready(m)
    first_step_s = time.perf_counter() - t0
    state = _warm(compiled, state, corpus.tables, -(-(WARMUP_STEPS - per_dispatch) // per_dispatch))
    n = max(1, steps // per_dispatch)
    state, loss, dt, host_s, cpu_s, faults = _timed(compiled, state, corpus.tables, n)
    params = count_params(state["params"])
    tokens = n * per_dispatch * cfg.data.batch_size * cfg.data.seq_len
    flops = train_flops_per_token(cfg, params) * tokens / dt
    kind = jax.devices()[0].device_kind
    published = published_peak(kind, cfg.model.compute_dtype, cfg.model.matmul_precision)
    peak = published or peak_flops()  # a CPU has no published figure: its measured float32 matmul peak
    return {
        "case": "train",
        "base": base,
        "V": cfg.data.vocab_size,
        "data": cfg.data.kind,
        "params": params,
        "tokens_per_s": tokens / dt,
        "step_ms": 1e3 * dt / (n * per_dispatch),
        # what the host spends per dispatch (the call returns before the step runs), the process's CPU time per
        # step (user + system: what other processes on a shared machine take shows in step_ms, not here) and
        # the minor page faults of the timed steps (first-touch heap growth: the timed dispatches are all queued
        # at once, and the heap grows with the queue; see embjax.hostmem)
        "dispatch_ms": 1e3 * host_s / n,
        "cpu_ms_per_step": 1e3 * cpu_s / (n * per_dispatch),
        "page_faults": faults,
        "compile_s": compile_s,
        "time_to_first_step_s": first_step_s,
        "model_flops_per_s": flops,
        "peak_flops_per_s": peak,
        "peak_source": "published" if published else "measured matmul",
        "mfu": flops / peak,
        "loss": loss,
        "backend": jax.default_backend(),
        "device_kind": kind,
        "compute_dtype": cfg.model.compute_dtype,
        "devices": len(jax.devices()),
        "steps_per_dispatch": per_dispatch,
    }


def _warm(compiled, state, tables, n: int):
    """n untimed dispatches (the rest of the peer's warm-up steps), waited for; the state after them."""
    import jax

    for _ in range(n):
        state, m = compiled(state, tables)
        jax.block_until_ready(m)
    return state


def _timed(compiled, state, tables, n: int) -> tuple:
    """n dispatches of the compiled steps, each one's metrics waited for after the next is dispatched (as
    embjax.train.loop fetches them, one chunk late: at most two dispatches in flight): (state, the last loss,
    wall s, host s in the calls, CPU s, page faults)."""
    import jax

    r0, host_s, pending = resource.getrusage(resource.RUSAGE_SELF), 0.0, None
    t = time.perf_counter()
    for _ in range(n):
        h = time.perf_counter()
        state, m = compiled(state, tables)
        host_s += time.perf_counter() - h
        if pending is not None:
            jax.block_until_ready(pending)
        pending = m
    loss = float(m["train/loss"])
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    return state, loss, dt, host_s, cpu_s, r1.ru_minflt - r0.ru_minflt
