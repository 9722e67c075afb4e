"""One writer per run directory: a lock file beside it, held by a live process and released at exit (the
watchdog's hard exit too); a stale lock left by a dead process is taken over."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import sys
import time

from ..config import ConfigError
from ..runtime.signals import EXIT_HOOKS


class RunLocked(ConfigError):
    """Another live process holds the run directory."""


class RunLock:
    """One writer per run directory: `<out_dir>/.<name>.lock` (beside the directory, so --overwrite's removal of
    the directory leaves it), held with an exclusive flock, which the kernel drops when the holder dies however
    it dies, and holding {pid, host, since, command} for the message. A free lock whose last holder ran on this
    host is taken over (it is dead); one naming another host is refused (a shared file system may not carry
    flocks across hosts), with how to clear it; a held one is refused with its holder."""

    _held: dict[str, RunLock] = {}  # this process's locks by path (a second RunDir for a run replaces the first's)

    def __init__(self, run_dir: str):
        head, name = os.path.split(os.path.realpath(run_dir))
        self.run_dir, self.path, self.fd = run_dir, os.path.join(head, f".{name}.lock"), None

    def acquire(self) -> None:
        import fcntl

        if self.path in RunLock._held:
            RunLock._held[self.path].release()
        host = socket.gethostname()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return  # an out_dir that cannot be written: check() says so in one line
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = _read_lock(fd)
            os.close(fd)
            if not held:  # the holder is between taking the lock and writing its name
                raise RunLocked(
                    f"run {self.run_dir!r} is in use by another process ({self.path} names no holder yet); allowed: "
                    "one process per run"
                ) from None
            raise RunLocked(
                f"run {self.run_dir!r} is in use: locked by pid {held.get('pid')} on host {held.get('host')} since "
                f"{held.get('since')} ({held.get('command', '?')}); allowed: one process per run (wait for it, or "
                "stop it)"
            ) from None
        held = _read_lock(fd)
        if held.get("host") not in (None, host):
            os.close(fd)
            raise RunLocked(
                f"run {self.run_dir!r} is in use: locked by pid {held.get('pid')} on host {held['host']} since "
                f"{held.get('since')}; allowed: one process per run (if nothing on {held['host']} runs it any more, "
                f"delete {self.path})"
            )
        if held.get("pid") not in (None, os.getpid()):
            print(f"{self.run_dir}: took over the lock of pid {held['pid']} (no longer running)", file=sys.stderr)
        me = {"pid": os.getpid(), "host": host, "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        me["command"] = " ".join(sys.argv)[:300]
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self.fd, RunLock._held[self.path] = fd, self

    def release(self) -> None:
        """Empty the file (a later run on any host finds it free) and drop the flock; the file stays (removing a
        flocked file would let two processes lock two different files of one name)."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        if RunLock._held.get(self.path) is self:
            del RunLock._held[self.path]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # the flock goes with the last descriptor


def _read_lock(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode()
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}  # torn by a holder that died while writing it: nobody's


@atexit.register
def _release_all() -> None:
    for lock in list(RunLock._held.values()):
        lock.release()


EXIT_HOOKS.append(_release_all)  # the watchdog's hard exit releases them too
