"""The device loop: dispatch chunks of train steps, fetch their metrics one chunk late, checkpoint on time.

One loop serves a single run and a group of sweep members that share one compiled program (they
differ only in values: σ, lr, decays, clip, seed), either vmapped over a leading members axis or
one after another. A chunk is one `lax.scan` of steps ending where something is logged, evaluated,
snapshotted or saved; its metrics and snapshots (`observe.Observer`) are fetched only after the next
chunk is dispatched, so the host never stalls the device. The loop talks to each run only through the
`rundir.Run` interface (restore, begin, log, checkpoint, finish): files, W&B and summaries are the run's
business. In a multi-process run every process runs this same loop; the processes agree at each chunk
boundary on whether to stop.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..config import hparams
from ..outputs.run import Run, outcome
from ..outputs.sinks import ConsoleSink
from ..runtime.mesh import replicated, stack_members, start_agree_max
from ..runtime.profiler import Profiler
from ..runtime.signals import Signals
from .observe import Fetched, Observer, compile_program, hit, member_row
from .selection import Selection
from .step import Program


def _next_event(s: int, total: int, every: tuple[int, ...]) -> int:  # the next step something happens at
    return min([total] + [(s // e + 1) * e for e in every if e > 0])


class Loop:
    """Trains runs that share one program: one run, or a sweep group vmapped or one member at a time."""

    def __init__(
        self,
        program: Program,
        *,
        vmapped: bool,
        signals: Signals,
        show: bool = True,
        desc: str | None = None,
        chunk: int | None = None,
    ):
        P, cfg = program, program.cfg
        self.P, self.cfg, self.signals, self.show, self.desc = P, cfg, signals, show, desc
        self.vmapped, self.chunk = vmapped and P.mesh is None, chunk or 2**31  # chunk: members vmapped at once
        self._agreeing: Any = None  # the stop decision in flight (multi-process)
        self.init_fn = jax.jit(P.init, out_shardings=P.state_shardings)
        fns = compile_program(P, self.vmapped)
        self.step_fn = fns[0]
        # on a mesh, inputs are placed once, replicated (every process of a multi-process run holds them)
        place = (lambda x: jax.device_put(jax.tree.map(np.asarray, x), replicated(P.mesh))) if P.mesh else jnp.asarray
        self.tables = P.corpus.tables if P.mesh is None else place(P.corpus.tables)
        self.obs = Observer(P, fns, self.vmapped, place)

    def stopping(self) -> int:
        """The signal to stop on (0: none), the same on every process. One process: the signal now. Several:
        each call dispatches a max over the processes and reads the previous call's, so the host never waits
        for the chunk just dispatched; a process that was not signalled itself stops with the others."""
        local = self.signals.received or 0
        if self._agreeing is None and jax.process_count() == 1:
            return local
        agreed = int(self._agreeing) if self._agreeing is not None else 0
        self._agreeing = start_agree_max(local)
        if agreed:
            self.signals.settle()  # every process answered: none is blocked, the watchdog stands down
        if agreed and not self.signals.received:
            self.signals.received = agreed
        return agreed

    def train(self, runs: list[Run]) -> list[dict[str, Any]]:
        """Restore or initialise every run, train them (members at the same start step together), finish each."""
        starts, states = [], []
        for r in runs:
            restored = r.restore(self.P.abstract_state, self.P.state_shardings)
            step, state = restored if restored is not None else (0, self.init_fn(r.cfg.seed, hparams(r.cfg)))
            r.begin(step)
            starts.append(step)
            states.append(state)
        summaries: dict[int, dict] = {}
        try:
            for start in sorted(set(starts)):  # members resumed at different steps train apart (normally: one)
                idx = [i for i, s in enumerate(starts) if s == start]
                chunks = [idx[j : j + self.chunk] for j in range(0, len(idx), self.chunk)]  # vmapped: all that fit
                for g in chunks if self.vmapped else [[i] for i in idx]:
                    if self.stopping():
                        out = [runs[i].finish(outcome(self.P, "interrupted", states[i], start)) for i in g]
                    else:
                        out = _Cohort(self, [runs[i] for i in g], [states[i] for i in g], start).run()
                    summaries.update(zip(g, out))
        finally:  # after a crash, the runs never trained still get a summary and closed logs
            for i, r in enumerate(runs):
                if i not in summaries:
                    summaries[i] = r.finish(outcome(self.P, "failed", None, starts[i]))
        return [summaries[i] for i in range(len(runs))]


class _Cohort:
    """Members that start at the same step, trained as one vmapped state or alone."""

    def __init__(self, loop: Loop, runs: list[Run], states: list, start: int):
        self.L, self.runs, self.start, self.M = loop, runs, start, len(runs)
        self.state = stack_members(states) if loop.vmapped else states[0]
        self.status, self.rows, self.last_step = ["running"] * self.M, [{} for _ in runs], [start] * self.M
        self.t0, self.compile_s, self.clock = time.perf_counter(), None, (start, time.perf_counter())
        self.select, self.stopped = Selection(loop.cfg, [r.evals(start) for r in runs]), {}  # {member: its state}
        label = runs[0].label if self.M == 1 else f"{loop.desc or ''} {self.M} members vmapped".strip()
        self.console = ConsoleSink(loop.cfg.steps, start, label, enabled=loop.show)
        self.prof = Profiler(loop.cfg.log.profile_steps, loop.cfg.steps, runs[0].cfg.run_dir)

    def _members(self) -> list:
        """Each member's state: one device-to-host transfer, then numpy slices."""
        if not self.L.vmapped:
            return [self.state]
        host = jax.device_get(self.state)
        return [jax.tree.map(lambda x, i=i: x[i], host) for i in range(self.M)]

    def run(self) -> list[dict[str, Any]]:
        try:
            self._train()
        except BaseException:
            self.status = ["failed" if s == "running" else s for s in self.status]
            self.console.close("failed")
            self._finish([None] * self.M)
            raise
        finally:
            self.prof.stop()  # a trace open past a stop signal or a crash is closed
            self.L.signals.disarm()  # the stall watchdog covers training, not the outputs written after it
        self.console.close("done")
        return self._finish(self._members())

    def _train(self) -> None:
        L, cfg = self.L, self.L.cfg
        total, s = cfg.steps, self.start
        if ex := self.select.exhausted():  # a run that stopped early stays stopped when it is run again
            self._stop_early({i: m for i, m in enumerate(self._members()) if i in ex})
        pending = L.obs.dispatch(self.state, 0) if s == 0 else None
        events = (*L.obs.events(), cfg.checkpoint.every)
        while s < total and "running" in self.status:
            n = min(_next_event(s, total, events), self.prof.boundary(s) or total) - s
            self.prof.before(s, self.state)
            self.state, metrics = L.step_fn(self.state, L.tables, n)
            s += n
            self.prof.after(s, metrics)
            extras = L.obs.dispatch(self.state, s)
            extras[1].update(metrics)
            if pending is not None:
                self._fetch(L.obs.fetch(pending))
                self.compile_s = self.compile_s or time.perf_counter() - self.t0
            pending = extras
            stop, select = L.stopping(), self.select.due(s)
            if hit(s, cfg.checkpoint.every, total) or stop or select:
                self._fetch(L.obs.fetch(pending))  # every row (and snapshot) up to s is logged before checkpoint s
                pending = None
                if select:  # a new best is saved, an exhausted patience stops its member (with its state at s)
                    fresh = [st == "running" and t == s for st, t in zip(self.status, self.last_step)]
                    self._stop_early(self.select.update(s, self.runs, self.rows, fresh, self._members))
                if hit(s, cfg.checkpoint.every, total) or stop:
                    self._checkpoint(s)
                if stop:
                    self.status = ["interrupted" if st == "running" else st for st in self.status]
        if pending is not None:
            self._fetch(L.obs.fetch(pending))
        self.status = ["finished" if st == "running" else st for st in self.status]

    def _stop_early(self, states: dict[int, Any]) -> None:
        for i, state in states.items():
            self.status[i], self.stopped[i] = "finished", state

    def _fetch(self, f: Fetched) -> None:
        """Log one chunk's fetched metrics (and snapshot) per member."""
        self.L.signals.beat()  # a chunk came back: the processes are making progress together
        s, host, E, snap = f.step, f.host, f.E, f.snapshot
        now = time.perf_counter()
        rate = (
            (s - self.clock[0]) * self.L.cfg.data.batch_size * self.L.cfg.data.seq_len / max(now - self.clock[1], 1e-9)
        )
        self.clock = (s, now)
        losses = []
        for i, r in enumerate(self.runs):
            if self.status[i] != "running":
                continue
            at = i if self.L.vmapped else None
            row = {**member_row(host, at), **f.extra}
            diverged_at = int(row.pop("_diverged_at"))
            if s > self.start:
                row["perf/tokens_per_s"] = rate
            if E is not None:  # every process measures (only process 0 logs), so all fail or none
                E_out = f.E_out if f.E_out is None or at is None else f.E_out[i]
                scalars, rich = self.L.obs.geometry(E if at is None else E[i], s, E_out)
                row.update(scalars)
                r.log_rich(s, rich)
            if snap is not None:
                r.snapshot(s, self.L.obs.rows, *(x if at is None else x[i] for x in snap))
            r.log(s, row)
            if "eval/loss" in row:  # a bucket left out now must not keep an older value in the summary
                self.rows[i] = {k: v for k, v in self.rows[i].items() if "_bucket_" not in k}
            self.rows[i].update(row)
            self.last_step[i] = s
            losses.append(row.get("train/loss"))
            if diverged_at >= 0:
                self.status[i] = "diverged"
        losses = [x for x in losses if x is not None]
        self.console.log(
            s,
            {
                "train/loss": float(np.mean(losses)) if losses else None,
                "perf/tokens_per_s": rate * self.M if s > self.start else None,
            },
        )

    def _checkpoint(self, s: int) -> None:
        self.L.signals.beat()
        for r, st, state in zip(self.runs, self.status, self._members()):
            if st == "running":
                r.checkpoint(s, state)

    def _finish(self, states: list) -> list[dict[str, Any]]:
        """Every member's run gets its summary, even if bringing one's final state to the host fails."""
        wall, out, error = time.perf_counter() - self.t0, [], None
        for i, r in enumerate(self.runs):
            known = dict(
                row=self.rows[i], wall_s=wall, compile_s=self.compile_s, members=self.M, last_step=self.last_step[i]
            )
            try:
                o = outcome(self.L.P, self.status[i], self.stopped.get(i, states[i]), self.start, **known)
                if o.status in ("finished", "diverged"):
                    o.best = self.select.summary(i, r, self.L.P, self.L.obs.geometry, i in self.stopped)
            except Exception as err:  # noqa: BLE001 - e.g. out of host memory for E: summarise, then re-raise
                o, error = outcome(self.L.P, "failed", None, self.start, **known), err
            out.append(r.finish(o))
        if error is not None:
            raise error
        return out
