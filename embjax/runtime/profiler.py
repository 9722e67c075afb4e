"""log.profile_steps=A:B: a jax.profiler trace of train steps A+1..B, written into the run directory.

The trace lands in `<run_dir>/profile/plugins/profile/<time>/`: `*.xplane.pb` for TensorBoard's
profile plugin (`tensorboard --logdir <run_dir>/profile`) and `*.trace.json.gz` for Perfetto
(ui.perfetto.dev, "Open trace file"). The loop ends a chunk of steps at A and at B, so exactly
those steps run while tracing; the trace stops after step B's results exist on the device.
"""

from __future__ import annotations

import os
from typing import Any

import jax

from ..config import profile_range


class Profiler:
    """Start and stop one trace around the chunks covering steps A+1..B (a no-op when profile_steps is '')."""

    def __init__(self, profile_steps: str, total: int, run_dir: str):
        self.span = profile_range(profile_steps, total) if profile_steps else None
        self.dir, self.active = os.path.join(run_dir, "profile"), False

    def boundary(self, s: int) -> int | None:
        """The next step after s where a chunk must end (A, then B), or None."""
        return None if self.span is None else next((b for b in self.span if b > s), None)

    def before(self, s: int, state: Any) -> None:
        if self.span is not None and s == self.span[0] and not self.active:
            jax.block_until_ready(state)  # the chunk before A is done: the trace holds steps A+1..B alone
            os.makedirs(self.dir, exist_ok=True)
            jax.profiler.start_trace(self.dir, create_perfetto_trace=True)
            self.active = True

    def after(self, s: int, outputs: Any) -> None:
        if self.active and s >= self.span[1]:
            jax.block_until_ready(outputs)
            self.stop()

    def stop(self) -> None:
        """Stop an open trace (also after a crash, so the profiler is free for the next run)."""
        if self.active:
            self.active = False
            jax.profiler.stop_trace()
