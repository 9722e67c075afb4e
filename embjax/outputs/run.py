"""The Run interface the loop trains through (begin, log, checkpoint, finish), what a run's end brings back
(`Outcome`), summary.json's contents (`summarize`) and a run that touches no disk (`MemoryRun`)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

import jax
import numpy as np

from ..config import Config
from ..model.models import count_params, embedding_size
from ..runtime.mesh import to_host
from .sinks import MemorySink


@dataclass
class Outcome:
    """How a run ended, with what the loop brought to the host for its summary and outputs."""

    status: str  # finished | diverged | interrupted | failed
    step: int  # the last step reached (for a diverged run, the step that diverged)
    start: int  # the step this session started at
    row: dict[str, float] = field(default_factory=dict)  # the last logged value of every key
    wall_s: float = 0.0
    compile_s: float | None = None
    members: int = 1  # members trained together (vmapped) with this one
    skipped: int = 0
    params: int | None = None
    state: Any = None  # the final state (on the devices), when it is good: the last checkpoint
    E: np.ndarray | None = None  # the final input table on the host
    E_out: np.ndarray | None = None  # the final untied output table (None when tied)
    row_updates: np.ndarray | None = None
    best: dict[str, Any] = field(default_factory=dict)  # best/* and stopped_early (selection.Selection.summary)


def outcome(P: Any, status: str, state: Any, start: int, **known: Any) -> Outcome:
    """An Outcome from a member's final state (None, or donated after a crash: only what the loop knew)."""
    o = Outcome(status, step=known.pop("last_step", start), start=start, **known)
    try:
        step, diverged_at, skipped = (int(jax.device_get(state[k])) for k in ("step", "diverged_at", "skipped"))
    except (RuntimeError, TypeError):
        return o
    o.step, o.skipped = diverged_at if status == "diverged" and diverged_at >= 0 else step, skipped
    if status in ("finished", "diverged"):
        o.params, o.state = count_params(state["params"]), state
        o.E, o.E_out, o.row_updates = (
            to_host(P.table(state["params"])),
            to_host(P.output_table(state["params"])),
            to_host(state["row_updates"]),
        )
    return o


class Run(Protocol):
    cfg: Config
    label: str

    def restore(self, abstract_state: Any, shardings: Any) -> tuple[int, Any] | None: ...
    def begin(self, step: int) -> None: ...
    def log(self, step: int, row: dict[str, float]) -> None: ...
    def log_rich(self, step: int | None, items: dict[str, Any]) -> None: ...
    def snapshot(self, step: int, rows: np.ndarray, E: np.ndarray, updates: np.ndarray) -> None: ...
    def checkpoint(self, step: int, state: Any) -> None: ...
    def evals(self, step: int) -> list[tuple[int, float]]: ...
    def save_best(self, step: int, state: Any) -> None: ...
    def restore_best(self, step: int, abstract_state: Any, shardings: Any) -> Any: ...
    def best_tables(self, E: np.ndarray, E_out: np.ndarray | None) -> None: ...
    def finish(self, outcome: Outcome) -> dict[str, Any]: ...


def logged_evals(rows: list[tuple[int, dict]], step: int) -> list[tuple[int, float]]:
    """(step, eval/loss) of the logged rows up to `step`, in order: what the run's Selection replays on resume."""
    return [(s, float(r["eval/loss"])) for s, r in rows if s <= step and isinstance(r.get("eval/loss"), (int, float))]


def summarize(cfg: Config, info: dict, o: Outcome) -> dict[str, Any]:
    """summary.json's contents."""
    tokens = (o.step - o.start) * cfg.data.batch_size * cfg.data.seq_len
    out = {k: v for k, v in o.row.items() if not k.startswith("_")}
    out.update(
        {
            "status": o.status,
            "step": o.step,
            "steps": cfg.steps,
            "wall_time_s": o.wall_s,
            "tokens_per_s": tokens / max(o.wall_s, 1e-9),
            "compile_s": o.compile_s,
            "devices": [str(d) for d in jax.devices()],
            "backend": jax.default_backend(),
            "skipped_steps": o.skipped,
            "vectorized_members": o.members,
            "run_dir": os.path.abspath(cfg.run_dir),
            "mesh": {"data": cfg.mesh.data, "model": cfg.mesh.model},
            "process_count": jax.process_count(),
            **info,
        }
    )
    out.update(embedding_size(cfg))
    if o.params is not None:
        out["params"] = o.params
    if o.row_updates is not None:
        out["emb/rows_never_updated"] = float(np.sum(o.row_updates == 0))
    out.update(o.best)
    return out


class MemoryRun:
    """A run that touches no disk: rows, rich objects and the summary go to a MemorySink, checkpoints
    are host copies kept in memory (so a second loop over the same MemoryRun resumes from them)."""

    def __init__(self, cfg: Config, corpus_info: dict | None = None, label: str | None = None):
        self.cfg, self.label, self.info = cfg, label or cfg.name, corpus_info or {}
        self.sink = MemorySink()
        self.checkpoints: dict[int, Any] = {}
        self.best: tuple[int, Any] | None = None  # (step, host state) of checkpoint.keep_best
        self.snapshots: dict[int, tuple] = {}  # step -> (rows, float16 E rows, updates)
        self.outcome: Outcome | None = None

    def restore(self, abstract_state: Any, shardings: Any) -> tuple[int, Any] | None:
        if not self.checkpoints:
            return None
        step = max(self.checkpoints)
        return step, jax.device_put(self.checkpoints[step], shardings)

    def begin(self, step: int) -> None:
        self.sink.rows = [(s, r) for s, r in self.sink.rows if s <= (step if step > 0 else -1)]
        self.snapshots = {s: f for s, f in self.snapshots.items() if s <= (step if step > 0 else -1)}
        self.outcome = None  # a new session of this run: it will finish again

    def log(self, step: int, row: dict[str, float]) -> None:
        self.sink.log(step, row)

    def log_rich(self, step: int | None, items: dict[str, Any]) -> None:
        self.sink.log_rich(step, items)

    def snapshot(self, step: int, rows: np.ndarray, E: np.ndarray, updates: np.ndarray) -> None:
        self.snapshots[step] = (rows, E, updates)

    def checkpoint(self, step: int, state: Any) -> None:
        self.checkpoints[step] = jax.device_get(state)

    def evals(self, step: int) -> list[tuple[int, float]]:
        return logged_evals(self.sink.rows, step) if step > 0 else []

    def save_best(self, step: int, state: Any) -> None:
        self.best = step, jax.device_get(state)

    def restore_best(self, step: int, abstract_state: Any, shardings: Any) -> Any:
        return jax.device_put(self.best[1], shardings) if self.best and self.best[0] == step else None

    def best_tables(self, E: np.ndarray, E_out: np.ndarray | None) -> None:
        self.best_E = E, E_out

    def finish(self, o: Outcome) -> dict[str, Any]:
        if self.outcome is not None:  # finished already (a crash summarised first)
            return summarize(self.cfg, self.info, self.outcome)
        if o.state is not None and o.status == "finished":
            self.checkpoint(o.step, o.state)
        self.outcome = dataclasses.replace(o, state=None)
        summary = summarize(self.cfg, self.info, o)
        self.sink.summary(summary)
        self.sink.close(o.status)
        return summary
