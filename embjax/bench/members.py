"""Case `members`: M members of the default model vmapped: aggregate tokens/s, bytes per member."""

from __future__ import annotations

import time

from .common import DEFAULT_CONFIG


def bench_members(
    members: list[int], steps: int = 20, per_dispatch: int = 1, overrides: dict | None = None
) -> list[dict]:
    """M members of the default model (experiments/configs/default.yaml) vmapped as one program, per M: the
    aggregate tokens/s, the compiled program's bytes per member, and how many members the runner would put
    in one chunk on this device (all of them unless the device's memory says fewer)."""
    import jax
    import jax.numpy as jnp

    from ..config import load_config
    from ..data.corpus import make_corpus
    from ..train.memory import compiled_bytes, members_that_fit
    from ..train.step import Program, hparams

    cfg = load_config(DEFAULT_CONFIG, {**(overrides or {}), "steps": 10**6})
    corpus = make_corpus(cfg)
    program = Program(cfg, corpus)
    rows = []
    for M in members:
        hp = {k: jnp.full((M,), v, jnp.float32) for k, v in hparams(cfg).items()}
        state = jax.jit(jax.vmap(program.init))(jnp.arange(M), hp)
        t0 = time.perf_counter()
        step = jax.jit(jax.vmap(program.train_steps, in_axes=(0, None, None)), static_argnums=2, donate_argnums=0)
        compiled = step.lower(state, corpus.tables, per_dispatch).compile()
        compile_s = time.perf_counter() - t0
        used = compiled_bytes(compiled)  # the corpus tables included, so per member it falls as M grows
        state, m = compiled(state, corpus.tables)
        jax.block_until_ready(m)
        n = max(1, steps // per_dispatch)
        t = time.perf_counter()
        for _ in range(n):
            state, m = compiled(state, corpus.tables)
        jax.block_until_ready(m)
        dt = time.perf_counter() - t
        tokens = M * n * per_dispatch * cfg.data.batch_size * cfg.data.seq_len
        rows.append(
            {
                "case": "members",
                "members": M,
                "tokens_per_s": tokens / dt,
                "tokens_per_s_per_member": tokens / dt / M,
                "step_ms": 1e3 * dt / (n * per_dispatch),
                "bytes_per_member": used / M,
                "compile_s": compile_s,
                "chunk": members_that_fit(program, M),
                "backend": jax.default_backend(),
            }
        )
    return rows
