"""A full or read-only disk under a run: the first failed write behind an exception, the one line that says what
could not be written and how to resume, and the warning when a run may not fit the free space."""

from __future__ import annotations

import errno
import glob
import os
import re
import shutil
import sys

from .rundir import CHECKPOINTS
from .sinks import remove_quietly

_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)  # what a write to a full/RO disk raises


_FULL = ("No space left on device", "Disk quota exceeded")


def os_error(err: BaseException | None) -> OSError | None:
    """The first failed write to disk behind an exception (a full disk, a quota, a read-only file system), or
    None (then the exception goes on as it is). Orbax's writer (tensorstore) reports a full disk as a ValueError
    "RESOURCE_EXHAUSTED: ... local file "PATH" ... No space left on device": that counts too; an XLA
    out-of-memory (also RESOURCE_EXHAUSTED) does not."""
    found: list[OSError] = []
    seen: set[int] = set()
    while err is not None and id(err) not in seen:  # (a cause cycle ends it too)
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
            found.append(err)
        elif not isinstance(err, OSError) and any(m in str(err) for m in _FULL) and "local file" in str(err):
            where = re.search(r'local file "([^"]+)"', str(err))
            found.append(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), where.group(1) if where else None))
        err = err.__cause__ or err.__context__
    # the first failure is the innermost (a summary that then failed too wraps it); prefer one that names its file
    named = [e for e in found if e.filename]
    return (named or found or [None])[-1]


def _inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) == os.path.abspath(folder)
    except ValueError:
        return False


def write_failure(err: OSError, runs: list) -> str:
    """One line: what could not be written, the free space there, the last good checkpoint, how to resume.
    Temporary files and half-written checkpoints the failure left are removed first."""
    what = err.filename or "an output"
    run = next((r for r in runs if _inside(str(what), r.path)), runs[0])
    for tmp in glob.glob(os.path.join(run.path, "**", "*.tmp*"), recursive=True):
        remove_quietly(tmp)
    for tmp in glob.glob(os.path.join(run.path, CHECKPOINTS, "*orbax-checkpoint-tmp*")):
        shutil.rmtree(tmp, ignore_errors=True)
    steps = (
        sorted(int(n) for n in os.listdir(os.path.join(run.path, CHECKPOINTS)) if n.isdigit())
        if os.path.isdir(os.path.join(run.path, CHECKPOINTS))
        else []
    )
    last = f"step {steps[-1]} in {os.path.join(run.path, CHECKPOINTS, str(steps[-1]))}" if steps else "none yet"
    return (
        f"could not write {what} ({err.strerror or err}); {free_mib(run.path):,.1f} MiB free there; last good "
        f"checkpoint: {last}; to resume, free some space and run the same command again"
    )


def warn_if_short_of_disk(out_dir: str, need: dict[str, float]) -> bool:
    """A warning naming both numbers when the estimate exceeds the free space under out_dir."""
    free, total = free_mib(out_dir), sum(need.values()) / 2**20
    if total <= free:
        return False
    parts = ", ".join(f"{k} {v / 2**20:,.1f}" for k, v in need.items())
    print(
        f"warning: {out_dir}: this run may need about {total:,.1f} MiB ({parts}) but {free:,.1f} MiB are free; "
        "it stops with a message where an essential file cannot be written",
        file=sys.stderr,
    )
    return True


def free_mib(path: str) -> float:
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path or ".").free / 2**20
