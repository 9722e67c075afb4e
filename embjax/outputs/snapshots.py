"""Embedding snapshots for the viewer: which rows, how often, and their files.

Every `log.snapshot_every` steps a run keeps a float16 copy of rows of its input table (the effective
V×d table for every `embedding.kind`), so `experiments.view` can show the embedding space move:

    <run>/snapshots/rows.npy          int32 ids of the rows kept, ascending (the same in every frame)
    <run>/snapshots/<step:09d>.npz    E: float16 (rows, d), the rows at that step;
                                      updates: int32 (rows,), steps in which each row got a nonzero gradient so far

The rows are all of them when V ≤ 4,096, else the 1,024 most frequent plus a sample of 3,072 of the
others drawn with a fixed seed, so every member of a sweep on one corpus keeps the same rows. Each
frame is written to a temporary file and renamed, so a killed run leaves whole frames only, and a
resumed run drops the frames after the step it resumes from (it writes them again, identically).
"""

from __future__ import annotations

import contextlib
import glob
import os
import zipfile
from dataclasses import dataclass

import numpy as np

FOLDER = "snapshots"
MAX_ROWS, TOP_ROWS = 4096, 1024
FRAMES = 50  # the default cadence aims at about this many frames per run


def snapshot_every(steps: int, log_every: int, given: int | None) -> int:
    """Steps between snapshots (0: none): as given, else the multiple of log.every nearest steps/50 (at
    least log.every), so the snapshots fall on chunk boundaries the loop has anyway."""
    if given is not None:
        return given
    return max(log_every, round(steps / FRAMES / log_every) * log_every)


def snapshot_rows(counts: np.ndarray, seed: int = 0) -> np.ndarray:
    """The ids kept: every row when V ≤ MAX_ROWS, else the TOP_ROWS most frequent (ties to the lower id)
    plus a seeded sample of the others."""
    V = len(counts)
    if V <= MAX_ROWS:
        return np.arange(V, dtype=np.int32)
    order = np.argsort(-np.asarray(counts, np.float64), kind="stable")
    rest = np.sort(order[TOP_ROWS:])
    sample = np.random.default_rng(seed).choice(rest, MAX_ROWS - TOP_ROWS, replace=False)
    return np.sort(np.concatenate([order[:TOP_ROWS], sample])).astype(np.int32)


def _frame_path(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, FOLDER, f"{step:09d}.npz")


def _atomic(path: str, write) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # durable before the checkpoint that follows it
        os.replace(tmp, path)
    except BaseException:  # a failed write (a full disk) leaves no temporary file behind
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_frame(run_dir: str, step: int, rows: np.ndarray, E: np.ndarray, updates: np.ndarray) -> None:
    """One frame (and rows.npy, which every frame of a run shares)."""
    folder = os.path.join(run_dir, FOLDER)
    os.makedirs(folder, exist_ok=True)
    rows_path = os.path.join(folder, "rows.npy")
    if not os.path.exists(rows_path):
        _atomic(rows_path, lambda f: np.save(f, np.asarray(rows, np.int32)))
    _atomic(
        _frame_path(run_dir, step),
        lambda f: np.savez(f, E=np.asarray(E, np.float16), updates=np.asarray(updates, np.int32)),
    )


def frame_steps(run_dir: str) -> list[int]:
    names = glob.glob(os.path.join(run_dir, FOLDER, "[0-9]" * 9 + ".npz"))
    return sorted(int(os.path.basename(n)[:9]) for n in names)


def truncate(run_dir: str, last_step: int) -> None:
    """Drop the frames after last_step (and temporary files a killed writer left)."""
    for s in frame_steps(run_dir):
        if s > last_step:
            os.remove(_frame_path(run_dir, s))
    for tmp in glob.glob(os.path.join(run_dir, FOLDER, "*.tmp-*")):
        os.remove(tmp)


@dataclass
class Snapshots:
    rows: np.ndarray  # (N,) int32 ids
    steps: np.ndarray  # (F,) int
    E: np.ndarray  # (F, N, d) float16
    updates: np.ndarray  # (F, N) int32


def read(run_dir: str) -> Snapshots | None:
    """All frames of a run, oldest first (None: it has none)."""
    steps = frame_steps(run_dir)
    if not steps:
        return None
    rows = _load(os.path.join(run_dir, FOLDER, "rows.npy"), lambda a: a)
    E, updates = [], []
    for s in steps:
        e, u = _load(_frame_path(run_dir, s), lambda z: (z["E"], z["updates"]))
        E.append(e)
        updates.append(u)
    return Snapshots(rows, np.asarray(steps), np.stack(E), np.stack(updates))


def _load(path: str, take):
    """take(np.load(path)) for a snapshot file; one that does not parse is a ValueError naming it as damaged (never
    loaded with pickle: a snapshot holds numbers only)."""
    try:
        with contextlib.ExitStack() as stack:
            obj = np.load(path, allow_pickle=False)
            if hasattr(obj, "close"):
                stack.callback(obj.close)
            return take(obj)
    except (FileNotFoundError, PermissionError) as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror}); allowed: a readable run directory") from None
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile, OSError) as err:
        why = "it holds Python objects, not numbers" if "pickle" in str(err) else type(err).__name__
        raise ValueError(
            f"{path}: damaged snapshot ({why}); allowed: the .npy/.npz files a run writes (delete the damaged "
            "file, or resume the run to write its frames again)"
        ) from None
