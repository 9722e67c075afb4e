"""Orbax checkpoints of the full train state plus the resolved config (async, atomic, newest N kept).

Restore walks back from the newest checkpoint: one that cannot be read (truncated or garbled
files) is reported and skipped; if none can be read the run is refused rather than restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import warnings
from collections.abc import Coroutine
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint._src import asyncio_utils

# orbax logs every save at INFO through absl; a research console wants the progress bar instead. Its save threads
# also log a failed write (a full disk) as an ERROR with a traceback before the save's caller sees it: the run
# reports that itself, in one line (outputs.disk.write_failure), so only CRITICAL gets through
logging.getLogger("absl").setLevel(logging.CRITICAL)
logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # (its "Task exception was never retrieved", the same)


def run_draining(coro: Coroutine) -> Any:
    """orbax's `_run_sync_via_new_loop` (0.12.8: new loop, run_until_complete, close), except that when the
    coroutine fails, the tasks it left running finish (or fail) before the loop closes.

    A save is an asyncio.gather of tensorstore writes; on a full disk the first write's error ends the gather,
    the loop is closed, and each write still in flight later completes on a tensorstore thread whose callback
    calls the closed loop's call_soon_threadsafe: `RuntimeError: Event loop is closed`, printed by
    sys.unraisablehook from that thread, 4 to 60 times per failure (no logger reaches it). Those writes could
    also land after the run has removed the half-written checkpoint. Waiting for them (each fails at once on the
    full disk) removes both; a save that succeeds leaves no task and is unchanged."""
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    except BaseException:
        for _ in range(100):  # a task may start another while it finishes: until none is left
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            if not pending:
                break
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        raise
    finally:
        asyncio.set_event_loop(None)
        loop.close()


# every orbax run_sync outside a running loop (each save and commit thread) goes through it: the pinned orbax's
# module-level function, replaced where it is looked up (tests/test_faults.py checks it is still there)
asyncio_utils._run_sync_via_new_loop = run_draining


class CheckpointError(RuntimeError):
    """Checkpoints exist but none can be restored."""


class Checkpointer:
    def __init__(self, directory: str, keep: int, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        opts = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save, create=True, cleanup_tmp_directories=True
        )
        self.manager = ocp.CheckpointManager(self.directory, options=opts)

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, config: dict, force: bool = False) -> None:
        """Start an async save; the device→host copy happens before this returns."""
        if step in self.manager.all_steps():
            return
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config)),
            force=force,
        )

    def restore_latest(
        self, abstract_state: Any, shardings: Any = None, walk_back: bool = True
    ) -> tuple[int, Any, dict] | None:
        """(step, state, config) from the newest readable checkpoint (walk_back=False: the newest or an
        error); None if there are none."""
        steps = self.steps()[-1:] if not walk_back else self.steps()
        if not steps:
            return None
        failures = []
        for step in reversed(steps):
            try:
                state, config = self.restore(step, abstract_state, shardings)
                if failures:
                    warnings.warn(
                        f"checkpoint(s) {', '.join(failures)} could not be restored; resumed from step {step}",
                        stacklevel=2,
                    )
                return step, state, config
            except Exception as err:  # noqa: BLE001 - any read failure means: try the previous one
                failures.append(f"{step} ({type(err).__name__})")
        raise CheckpointError(
            f"no checkpoint in {self.directory} can be restored (tried {', '.join(failures)}; a checkpoint written "
            "by an embjax whose train state had other parts cannot be); refusing to start over: pass "
            "--overwrite=true to discard the run"
        )

    def restore(self, step: int, abstract_state: Any, shardings: Any = None) -> tuple[Any, dict]:
        """(state, config) of the checkpoint at `step` (an error when it cannot be read)."""
        if shardings is not None:
            abstract_state = jax.tree.map(
                lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings
            )
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), config=ocp.args.JsonRestore()),
        )
        return out["state"], out["config"]

    def close(self) -> None:
        """Wait for the async saves, then close the manager (its threads) even when a save failed: the save's
        error is the one raised."""
        try:
            self.manager.wait_until_finished()
        except BaseException:
            with contextlib.suppress(Exception):  # (the failed save again: the first report is the one raised)
                self.manager.close()
            raise
        self.manager.close()
