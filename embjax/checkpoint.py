"""Orbax checkpoints of the full train state plus the resolved config (async, atomic, newest N kept).

Restore walks back from the newest checkpoint: one that cannot be read (truncated or garbled
files) is reported and skipped; if none can be read the run is refused rather than restarted.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp

# orbax logs every save at INFO through absl; a research console wants the progress bar instead. Its save threads
# also log a failed write (a full disk) as an ERROR with a traceback before the save's caller sees it: the run
# reports that itself, in one line (runner.write_failure), so only CRITICAL gets through
logging.getLogger("absl").setLevel(logging.CRITICAL)
logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # (its "Task exception was never retrieved", the same)


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
        if shardings is not None:
            abstract_state = jax.tree.map(
                lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings
            )
        failures = []
        for step in reversed(steps):
            try:
                out = self.manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state), config=ocp.args.JsonRestore()
                    ),
                )
                if failures:
                    warnings.warn(
                        f"checkpoint(s) {', '.join(failures)} could not be restored; resumed from step {step}",
                        stacklevel=2,
                    )
                return step, out["state"], out["config"]
            except Exception as err:  # noqa: BLE001 - any read failure means: try the previous one
                failures.append(f"{step} ({type(err).__name__})")
        raise CheckpointError(
            f"no checkpoint in {self.directory} can be restored (tried {', '.join(failures)}; a checkpoint written "
            "by an embjax whose train state had other parts cannot be); refusing to start over: pass "
            "--overwrite=true to discard the run"
        )

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
