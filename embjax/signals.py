"""Signals: SIGTERM/SIGINT become a flag the loop reads at a chunk boundary (checkpoint, flush, exit)."""

from __future__ import annotations

import signal


class Signals:
    """SIGTERM/SIGINT set a flag; the loop checkpoints, flushes and exits at the next chunk boundary."""

    def __init__(self):
        self.received: int | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
