"""Signals: SIGTERM/SIGINT become a flag the loop reads at a chunk boundary (checkpoint, flush, exit).

In a multi-process run a process can be blocked in a collective, waiting for a process that will never come
(stopped, hung, on another host that died), where Python never runs its signal handler. A watchdog thread sees
the signal through the wakeup fd instead: if the process has not stopped `grace` seconds after SIGTERM, it
says so in one line and exits (128 + 15); the run resumes from its last checkpoint. The same thread ends a
process that has made no progress (no `beat` from the loop) for `wait_timeout` seconds and for three times the
longest interval between two beats so far (a long chunk is not a stall): exit 1."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time

# called before the watchdog ends the process with os._exit (which skips atexit): e.g. release the run locks
EXIT_HOOKS: list = []


def _hard_exit(code: int) -> None:
    for hook in EXIT_HOOKS:
        try:
            hook()
        except Exception:  # noqa: BLE001, S110 - exiting anyway
            pass
    os._exit(code)


class Signals:
    """SIGTERM/SIGINT set a flag; the loop checkpoints, flushes and exits at the next chunk boundary."""

    def __init__(self, grace: float | None = None, wait_timeout: float | None = None):
        self.received: int | None = None
        self.grace = grace  # seconds a SIGTERM'd process may stay blocked (None: no watchdog)
        # seconds without progress (beat) after which a process blocked on the others gives up (None: never)
        self.wait_timeout = wait_timeout
        self._old = {}
        self._wakeup = None
        self._settled = threading.Event()  # the stop is under way everywhere (or over): the watchdog stands down
        self._last_beat: float | None = None  # armed by the first beat (compiling is not waiting)
        self._longest = 0.0  # the longest interval between two beats so far

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        if (self.grace is not None or self.wait_timeout is not None) and self._old:
            r, w = socket.socketpair()
            w.setblocking(False)
            self._wakeup = (r, w, signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False))
            threading.Thread(target=self._watch, args=(r,), daemon=True, name="embjax-sigterm-watchdog").start()
        return self

    def disarm(self) -> None:
        """Training is over (what follows, e.g. writing the page, may take its time): no stall exit until the
        next beat."""
        self._last_beat = None

    def beat(self) -> None:
        """The loop made progress (a chunk's metrics came back, a checkpoint was started)."""
        now = time.monotonic()
        if self._last_beat is not None:  # the slowest healthy interval so far: a long chunk is not a stall
            self._longest = max(self._longest, now - self._last_beat)
        self._last_beat = now

    def _stalled(self, paused: float) -> None:
        last = self._last_beat
        if last is not None and paused > 5.0:  # the whole process was stopped (SIGSTOP, a suspended job): not idle
            self._last_beat = last = last + paused
        if self.wait_timeout is None or last is None or self._settled.is_set():
            return
        idle = time.monotonic() - last
        if idle > max(self.wait_timeout, 3 * self._longest):
            print(
                f"error: no progress for {idle:.0f} s: this process is waiting for the other processes of the run "
                f"(mesh.wait_timeout = {self.wait_timeout:g} s); run the same command again to resume from the last "
                "checkpoint",
                file=sys.stderr,
                flush=True,
            )
            _hard_exit(1)

    def _watch(self, r: socket.socket) -> None:
        r.settimeout(1.0)
        tick = time.monotonic()
        while True:
            try:
                data = r.recv(64)
            except TimeoutError:
                now = time.monotonic()
                self._stalled(paused=now - tick - 1.0)
                tick = now
                continue
            except OSError:
                return
            if not data:
                return
            if signal.SIGTERM in data and self.grace is not None:
                if self._settled.wait(self.grace):  # every process agreed to stop, or the block was left
                    return
                print(
                    f"error: stopped by SIGTERM while waiting for the other processes of the run (blocked for "
                    f"{self.grace:g} s); run the same command again to resume from the last checkpoint",
                    file=sys.stderr,
                    flush=True,
                )
                _hard_exit(128 + signal.SIGTERM)

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.received = signum

    def settle(self) -> None:
        """The processes agreed to stop (so none is blocked on another): no watchdog exit from here on."""
        self._settled.set()

    def __exit__(self, *exc):
        self._settled.set()
        for sig, old in self._old.items():
            signal.signal(sig, old)
        if self._wakeup is not None:
            r, w, previous = self._wakeup
            signal.set_wakeup_fd(previous)
            w.close()  # the watchdog's recv returns empty: it ends
            r.close()
