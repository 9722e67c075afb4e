"""The training loop: the only place with files, W&B, checkpoints, signals and the progress bar.

One loop serves a single run and a group of sweep members that differ only in values (σ, lr,
decays, clip, seed): the group shares one compiled program, either vmapped over a leading
members axis (`vectorize=True`) or run member after member. The loop dispatches chunks of steps
(one `lax.scan` per chunk, chunks ending where something is logged, evaluated or saved) and
fetches a chunk's metrics only after the next chunk is dispatched, so the host never stalls the
device. Resume: the same config on an existing run directory continues from the newest readable
checkpoint; rows after it are dropped from metrics.jsonl and recomputed exactly.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import config as C
from .checkpoint import Checkpointer
from .config import Config, ConfigError
from .data import Corpus, make_corpus
from .embedding import load_pretrained
from .models import count_params
from .sinks import CompositeSink, ConsoleSink, JsonlSink, NullSink, WandbSink, truncate_jsonl
from .mesh import is_main_process, make_mesh, replicated, to_host
from .step import Program, hparams
from jax.sharding import AxisType, NamedSharding, PartitionSpec

CHECKPOINTS, CONFIG_FILE = "checkpoints", "config.yaml"
# Keys a resume may change: more steps, and where/how it runs (a preempted run may come back on another
# device count or mesh shape) - none of them changes what a step computes.
RESUMABLE_CHANGES = ("steps", "mesh.data", "mesh.model", "log.progress", "compile_cache")


def check_run_dir(cfg: Config, overwrite: bool) -> bool:
    """Decide before writing anything: True to resume. A changed config is refused unless overwrite."""
    run_dir = cfg.run_dir
    try:
        os.makedirs(cfg.out_dir, exist_ok=True)
        probe = os.path.join(cfg.out_dir, f".embjax-write-test-{os.getpid()}")
        open(probe, "w").close()
        os.remove(probe)
    except OSError as err:
        raise ConfigError(f"out_dir: got {cfg.out_dir!r}, which cannot be written ({err.strerror}); "
                          "allowed: a writable folder") from None
    stored_path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.exists(stored_path):
        return False
    if overwrite:
        shutil.rmtree(run_dir)
        return False
    stored = C.flatten(C.to_dict(C.from_dict(C.read_yaml(stored_path))))
    given = C.flatten(C.to_dict(cfg))
    diff = [k for k in given if k not in RESUMABLE_CHANGES and given[k] != stored.get(k)]
    if diff:
        k = diff[0]
        raise ConfigError(f"{k}: got {given[k]!r} but run {run_dir!r} was made with {stored.get(k)!r} "
                          f"({len(diff)} key(s) differ); allowed: the stored config (steps may grow, mesh may change), "
                          "or --overwrite=true to start over")
    if given["steps"] < stored["steps"]:
        raise ConfigError(f"steps: got {given['steps']} but run {run_dir!r} has steps={stored['steps']}; "
                          "allowed: the same or more steps (to extend it), or --overwrite=true")
    return True


def load_inputs(cfg: Config) -> tuple[Corpus, np.ndarray | None]:
    """Everything read from disk that can be wrong, read before any run directory is touched."""
    corpus = make_corpus(cfg)
    pretrained = None
    if cfg.embedding.init == "pretrained":
        path = cfg.embedding.pretrained_path
        try:
            pretrained = load_pretrained(path, cfg.data.vocab_size, cfg.model.embed_dim,
                                         tokens=None if path.endswith(".npy") else corpus.tokens)
        except ValueError as err:
            raise ConfigError(f"embedding.pretrained_path: {err}") from None
    return corpus, pretrained


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


def _next_event(s: int, total: int, every: tuple[int, ...]) -> int:
    nxt = total
    for e in every:
        if e > 0:
            nxt = min(nxt, (s // e + 1) * e)
    return nxt


def _hit(s: int, every: int, total: int) -> bool:
    return s == total or (every > 0 and s % every == 0)


def write_outputs(run_dir: str, E: np.ndarray, corpus: Corpus, row_updates: np.ndarray | None = None) -> None:
    """embeddings.npy (float32 V×d), tokens.tsv (id, token, count[, class]) and row_updates.npy."""
    np.save(os.path.join(run_dir, "embeddings.npy"), np.asarray(E, np.float32))
    if row_updates is not None:
        np.save(os.path.join(run_dir, "row_updates.npy"), np.asarray(row_updates))
    with open(os.path.join(run_dir, "tokens.tsv"), "w", encoding="utf-8") as f:
        f.write("id\ttoken\tcount" + ("\tclass" if corpus.labels is not None else "") + "\n")
        for i, tok in enumerate(corpus.tokens):
            extra = f"\t{int(corpus.labels[i])}" if corpus.labels is not None else ""
            f.write(f"{i}\t{tok}\t{corpus.counts[i]:.6g}{extra}\n")


def write_config(run_dir: str, cfg: Config) -> None:
    tmp = os.path.join(run_dir, f"{CONFIG_FILE}.tmp")
    with open(tmp, "w") as f:
        f.write(C.dump_yaml(cfg))
    os.replace(tmp, os.path.join(run_dir, CONFIG_FILE))


@dataclass
class Member:
    """One run's files, sinks and bookkeeping inside a (possibly vectorised) group."""
    cfg: Config
    resume: bool
    status: str = "running"
    start: int = 0
    final_row: dict = field(default_factory=dict)
    ckpt: Checkpointer | None = None
    jsonl: JsonlSink | None = None
    wandb: WandbSink | None = None
    sink: CompositeSink | None = None
    summary: dict = field(default_factory=dict)

    @property
    def run_dir(self) -> str:
        return self.cfg.run_dir

    def open(self, group: str | None) -> None:
        cfg = self.cfg
        os.makedirs(self.run_dir, exist_ok=True)
        if is_main_process():
            write_config(self.run_dir, cfg)
        # every process takes part in orbax's (multi-process) saves; only process 0 logs and writes files
        self.ckpt = Checkpointer(os.path.join(self.run_dir, CHECKPOINTS), keep=cfg.checkpoint.keep)
        if cfg.log.wandb and is_main_process():
            id_path = os.path.join(self.run_dir, "wandb_id.txt")
            run_id = open(id_path).read().strip() if os.path.exists(id_path) else None
            self.wandb = WandbSink(self.run_dir, C.to_dict(cfg), project=cfg.log.project, name=cfg.name,
                                   mode=cfg.log.mode, entity=cfg.log.entity, group=cfg.log.group or group,
                                   tags=cfg.log.tags, init_timeout=cfg.log.init_timeout, resume_id=run_id)
            if self.wandb.run_id and run_id is None:
                with open(id_path, "w") as f:
                    f.write(self.wandb.run_id)

    def attach_log(self, start: int) -> None:
        self.start = start
        if not is_main_process():
            self.jsonl, self.sink = NullSink(), CompositeSink([])
            return
        truncate_jsonl(os.path.join(self.run_dir, "metrics.jsonl"), start if start > 0 else -1)
        self.jsonl = JsonlSink(self.run_dir)
        self.sink = CompositeSink([self.jsonl, self.wandb])


def train(cfg: Config, *, overwrite: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Run (or resume) one training run; returns summary.json's contents."""
    return train_group([cfg], overwrite=overwrite, vectorize=False, progress=progress)[0]


def train_group(cfgs: list[Config], *, overwrite: bool = False, vectorize: bool = True,
                progress: bool | None = None, group: str | None = None, desc: str | None = None,
                signals: Signals | None = None) -> list[dict[str, Any]]:
    """Train configs that differ only in value hyperparameters (and seed) with one compiled program."""
    base = cfgs[0]
    members = [Member(cfg, check_run_dir(cfg, overwrite)) for cfg in cfgs]
    C.enable_compile_cache(base.compile_cache)
    mesh = make_mesh(base)
    corpus, pretrained = load_inputs(base)
    program = Program(base, corpus, pretrained, mesh=mesh)
    for m in members:
        m.open(group)

    abstract, shardings = program.abstract_state, program.state_shardings
    init = jax.jit(program.init, out_shardings=shardings)
    states = []
    for m in members:
        restored = m.ckpt.restore_latest(abstract, shardings) if m.resume else None
        if restored is not None:
            step, state, _ = restored
            print(f"resuming {m.run_dir} from step {step} (checkpoint {step})", file=sys.stderr)
        else:
            step, state = 0, init(m.cfg.seed, hparams(m.cfg))
        m.attach_log(step)
        states.append(state)

    # members resumed at different steps train in separate cohorts (normally there is one)
    cohorts: dict[int, list[int]] = {}
    for i, m in enumerate(members):
        cohorts.setdefault(m.start, []).append(i)
    runner = _Runner(program, corpus, base, vectorize and len(members) > 1 and mesh is None, shardings)
    own_signals = signals is None
    sig = Signals() if own_signals else signals
    try:
        if own_signals:
            sig.__enter__()
        for start, idx in sorted(cohorts.items()):
            if runner.vmapped and len(idx) > 1:
                groups = [idx]
            else:
                groups = [[i] for i in idx]
            for g in groups:
                if sig.received:
                    for i in g:
                        members[i].status = "interrupted"
                    _close_unstarted([members[i] for i in g], states, g, program, corpus)
                    continue
                runner.run([members[i] for i in g], [states[i] for i in g], start, sig,
                           show=base.log.progress if progress is None else progress, desc=desc)
    finally:
        if own_signals:
            sig.__exit__(None, None, None)
    out = [m.summary for m in members]
    if sig.received:
        for s in out:
            s["_signal"] = sig.received
    return out


def _close_unstarted(members, states, idx, program, corpus):
    for m, i in zip(members, idx):
        _finish(m, program, corpus, states[i], write_final=False, wall=0.0, compile_s=None)


class _Runner:
    """Runs one cohort: members at the same start step, vmapped or one at a time."""

    def __init__(self, program: Program, corpus: Corpus, cfg: Config, vmapped: bool, shardings: Any = None):
        self.program, self.corpus, self.cfg, self.vmapped = program, corpus, cfg, vmapped
        P = program
        if shardings is not None:  # a device mesh: explicit in/out shardings, the table split over `model`
            rep = replicated(P.mesh)
            self.step_fn = jax.jit(P.train_steps, static_argnums=2, donate_argnums=0,
                                   in_shardings=(shardings, rep), out_shardings=(shardings, rep))
            self.stats_fn = jax.jit(P.emb_stats, in_shardings=(shardings,), out_shardings=rep)
            self.eval_fn = jax.jit(P.eval_loss, in_shardings=(shardings["params"], rep), out_shardings=rep)
        elif vmapped:
            steps = jax.vmap(P.train_steps, in_axes=(0, None, None))
            self.step_fn = jax.jit(steps, static_argnums=2, donate_argnums=0)
            self.stats_fn = jax.jit(jax.vmap(P.emb_stats))
            self.eval_fn = jax.jit(jax.vmap(P.eval_loss, in_axes=(0, None)))
        else:
            self.step_fn = jax.jit(P.train_steps, static_argnums=2, donate_argnums=0)
            self.stats_fn = jax.jit(P.emb_stats)
            self.eval_fn = jax.jit(P.eval_loss)
        from .metrics import TrainingGeometry
        self.geometry = TrainingGeometry(cfg, corpus)
        self.eval_batches = jnp.asarray(corpus.eval_batches(jax.random.key(1_000_003), cfg.data.eval_batches,
                                                            cfg.data.batch_size))

    def run(self, members: list[Member], states: list, start: int, sig: Signals, show: bool, desc: str | None):
        cfg, P, L = self.cfg, self.program, self.cfg.log
        M = len(members)
        # stack on the host: jnp.stack would compile a program per leaf shape
        state = states[0]
        if self.vmapped:
            stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *states)
            n_dev = jax.device_count()
            if n_dev > 1 and M % n_dev == 0:  # spread the members axis over the devices
                members_mesh = jax.make_mesh((n_dev,), ("members",), axis_types=(AxisType.Auto,))
                state = jax.device_put(stacked, NamedSharding(members_mesh, PartitionSpec("members")))
            else:
                state = jax.device_put(stacked)
        def members_of(tree) -> list:
            """Each member's state on the host: one transfer, then numpy slices (no per-slice compiles)."""
            if not self.vmapped:
                return [tree]
            host = jax.device_get(tree)
            return [jax.tree.map(lambda x: x[i], host) for i in range(M)]

        total = cfg.steps
        label = desc or (members[0].cfg.name if M == 1 else f"{M} members")
        console = ConsoleSink(total, start, label, enabled=show)
        tokens_per_step = cfg.data.batch_size * cfg.data.seq_len * M
        t_start, t_compile = time.perf_counter(), None
        last = {"step": start, "time": time.perf_counter()}
        live = [True] * M

        def dispatch_extras(s: int, state) -> tuple:
            dev = dict(self.stats_fn(state))
            if _hit(s, L.eval_every, total):
                dev["eval/loss"] = self.eval_fn(state["params"], self.eval_batches)
            E = jnp.copy(P.table(state["params"])) if _hit(s, L.metrics_every, total) else None
            return s, dev, E

        def fetch(pending) -> None:
            """Bring one chunk's metrics to the host and log them per member (one chunk late)."""
            s, dev, E = pending
            host = jax.device_get(dev)
            E = None if E is None else to_host(E)
            now = time.perf_counter()
            rate = (s - last["step"]) * tokens_per_step / max(now - last["time"], 1e-9) if s > last["step"] else None
            last.update(step=s, time=now)
            losses = []
            for i, m in enumerate(members):
                if not live[i]:
                    continue
                row = {k: float(np.asarray(v)[i] if self.vmapped else v) for k, v in host.items()}
                diverged_at = int(row.pop("_diverged_at"))
                if rate is not None:
                    row["perf/tokens_per_s"] = rate / M
                if E is not None:
                    scalars, rich = self.geometry(E[i] if self.vmapped else E, s)
                    row.update(scalars)
                    m.sink.log_rich(s, rich)
                m.sink.log(s, row)
                m.final_row.update(row, _step=s)
                if "train/loss" in row:
                    losses.append(row["train/loss"])
                if diverged_at >= 0:
                    m.status, live[i] = "diverged", False
            console.log(s, {"train/loss": float(np.mean(losses)) if losses else None,
                            "perf/tokens_per_s": rate})

        pending = dispatch_extras(0, state) if start == 0 else None
        s = start
        try:
            while s < total and any(live):
                n = _next_event(s, total, (L.every, L.eval_every, L.metrics_every, cfg.checkpoint.every)) - s
                state, metrics = self.step_fn(state, self.corpus.tables, n)
                s += n
                extras = dispatch_extras(s, state)
                extras[1].update(metrics)
                if pending is not None:
                    fetch(pending)
                    if t_compile is None:
                        t_compile = time.perf_counter() - t_start
                pending = extras
                if _hit(s, cfg.checkpoint.every, total) or sig.received:
                    fetch(pending)  # every row up to s is on disk before checkpoint s exists
                    pending = None
                    per_member = members_of(state)
                    for i, m in enumerate(members):
                        m.jsonl.flush()
                        if live[i]:
                            m.ckpt.save(s, per_member[i], C.to_dict(m.cfg))
                    if sig.received:
                        for i, m in enumerate(members):
                            if live[i]:
                                m.status = "interrupted"
                        break
            if pending is not None:
                fetch(pending)
            for m in members:
                if m.status == "running":
                    m.status = "finished"
        except BaseException:
            for m in members:
                if m.status == "running":
                    m.status = "failed"
            console.close("failed")
            for i, m in enumerate(members):
                _finish(m, P, self.corpus, None, write_final=False, wall=time.perf_counter() - t_start,
                        compile_s=t_compile)
            raise
        console.close("done")
        wall = time.perf_counter() - t_start
        per_member = members_of(state)
        for i, m in enumerate(members):
            _finish(m, P, self.corpus, per_member[i], write_final=m.status in ("finished", "diverged"), wall=wall,
                    compile_s=t_compile, members=M)


def _finish(m: Member, program: Program, corpus: Corpus, state, *, write_final: bool, wall: float,
            compile_s: float | None, members: int = 1) -> None:
    """Write summary.json (always), embeddings and the last checkpoint (when the state is good)."""
    cfg = m.cfg
    try:
        host = {k: (to_host(state[k]) if k == "row_updates" else jax.device_get(state[k]))
                for k in ("step", "diverged_at", "skipped", "row_updates")}
        step, diverged_at, skipped = int(host["step"]), int(host["diverged_at"]), int(host["skipped"])
    except (RuntimeError, TypeError):  # no state, or a crash mid-dispatch left its buffers donated
        host, step, diverged_at, skipped, write_final = None, int(m.final_row.get("_step", m.start)), -1, 0, False
    if m.status == "diverged" and diverged_at >= 0:
        step = diverged_at
    summary = {k: v for k, v in m.final_row.items() if not k.startswith("_")}
    summary.update({
        "status": m.status, "step": step, "steps": cfg.steps, "wall_time_s": wall,
        "tokens_per_s": (step - m.start) * cfg.data.batch_size * cfg.data.seq_len / max(wall, 1e-9),
        "compile_s": compile_s, "devices": [str(d) for d in jax.devices()], "backend": jax.default_backend(),
        "skipped_steps": skipped, "vectorized_members": members, "run_dir": os.path.abspath(m.run_dir),
        "mesh": {"data": cfg.mesh.data, "model": cfg.mesh.model}, "process_count": jax.process_count(),
        **corpus.info,
    })
    try:
        if write_final:
            summary["params"] = count_params(state["params"])
            E = to_host(program.table(state["params"]))
            if m.status == "finished":
                m.ckpt.save(step, state, C.to_dict(cfg), force=True)
            summary["emb/rows_never_updated"] = float(np.sum(to_host(host["row_updates"]) == 0))
            if is_main_process():
                write_outputs(m.run_dir, E, corpus, to_host(host["row_updates"]))
                from .metrics import export_projector
                export_projector(m.run_dir, E, corpus, m.sink)
        if m.ckpt is not None:
            m.ckpt.close()
    finally:
        if m.sink is not None:
            m.sink.summary(summary)
            m.sink.close(m.status)
        if m.wandb is not None:
            summary["_wandb_sync"] = m.wandb.sync_hint()
        m.summary = summary
