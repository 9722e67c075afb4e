"""One run's home: the directory `<out_dir>/<name>/` and everything in it, behind the interface the loop uses.

A `Run` is what the device loop talks to: `restore` a checkpoint, `begin` logging at a step, `log`
rows and rich objects, keep embedding `snapshot`s, `checkpoint` a state (everything logged so far is
durable first), and `finish` with an `Outcome`. `RunDir` keeps all of it on disk: the
refuse/resume/overwrite decision, config.yaml, the W&B run (and its id, so a resume continues it),
metrics.jsonl and summary.json, snapshots/, orbax checkpoints, the final exports and the
embedding-space page. In a multi-process run every process takes part in the checkpoints; only
process 0 writes files or talks to W&B. `MemoryRun` keeps it all in memory.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import jax
import numpy as np

from . import config as C
from . import snapshots
from .checkpoint import Checkpointer
from .config import Config, ConfigError
from .data import Corpus
from .mesh import is_main_process, share_decision
from .metrics import export_projector
from .models import embedding_size
from .signals import EXIT_HOOKS
from .sinks import (
    CompositeSink,
    JsonlSink,
    MemorySink,
    NullSink,
    WandbSink,
    read_summary,
    remove_quietly,
    truncate_jsonl,
    write_atomic,
)
from .viewer import write_page

CHECKPOINTS, CONFIG_FILE, WANDB_ID = "checkpoints", "config.yaml", "wandb_id.txt"


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


class Run(Protocol):
    cfg: Config
    label: str

    def restore(self, abstract_state: Any, shardings: Any) -> tuple[int, Any] | None: ...
    def begin(self, step: int) -> None: ...
    def log(self, step: int, row: dict[str, float]) -> None: ...
    def log_rich(self, step: int | None, items: dict[str, Any]) -> None: ...
    def snapshot(self, step: int, rows: np.ndarray, E: np.ndarray, updates: np.ndarray) -> None: ...
    def checkpoint(self, step: int, state: Any) -> None: ...
    def finish(self, outcome: Outcome) -> dict[str, Any]: ...


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
    return out


def write_tokens_tsv(run_dir: str, corpus: Any) -> None:
    """tokens.tsv: id, token, count[, class][, pretrained: 1 for a row from the pretrained source, 0 filled]."""
    marks = getattr(corpus, "pretrained_matched", None)  # (a Corpus-like object without it: no column)
    with open(os.path.join(run_dir, "tokens.tsv"), "w", encoding="utf-8") as f:
        f.write(
            "id\ttoken\tcount"
            + ("\tclass" if corpus.labels is not None else "")
            + ("\tpretrained" if marks is not None else "")
            + "\n"
        )
        for i, tok in enumerate(corpus.tokens):
            extra = f"\t{int(corpus.labels[i])}" if corpus.labels is not None else ""
            extra += f"\t{int(marks[i])}" if marks is not None else ""
            f.write(f"{i}\t{tok}\t{corpus.counts[i]:.10g}{extra}\n")


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


def check(cfg: Config, overwrite: bool) -> bool:
    """Decide before writing anything: True to resume. A changed config is refused unless overwrite
    (which then removes the old run); only keys declared resumable may differ."""
    try:
        os.makedirs(cfg.out_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=cfg.out_dir, prefix=".embjax-write-test-")  # unique across hosts too
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise ConfigError(
            f"out_dir: got {cfg.out_dir!r}, which cannot be written ({err.strerror}); allowed: a writable folder"
        ) from None
    stored_path = os.path.join(cfg.run_dir, CONFIG_FILE)
    if not os.path.exists(stored_path):
        return False
    if overwrite:
        if is_main_process():
            shutil.rmtree(cfg.run_dir)
        return False
    try:
        stored = C.flatten(C.to_dict(C.from_dict(C.read_run_config(stored_path))))
    except ConfigError as err:  # (edited by hand, or made by an embjax that allowed what this one refuses)
        raise ConfigError(f"{stored_path}: the stored config is not valid: {err}; or --overwrite=true") from None
    given = C.flatten(C.to_dict(cfg))
    may_change = C.keys_with(resumable=True)
    diff = [k for k in given if k not in may_change and given[k] != stored.get(k)]
    if diff:
        k = diff[0]
        raise ConfigError(
            f"{k}: got {given[k]!r} but run {cfg.run_dir!r} was made with {stored.get(k)!r} "
            f"({len(diff)} key(s) differ); allowed: the stored config (changes only to "
            f"{', '.join(may_change)}; steps may only grow), or --overwrite=true to start over"
        )
    if given["steps"] < stored["steps"]:
        raise ConfigError(
            f"steps: got {given['steps']} but run {cfg.run_dir!r} has steps={stored['steps']}; "
            "allowed: the same or more steps (to extend it), or --overwrite=true"
        )
    _check_pretrained(cfg)
    return True


PRETRAINED_FILE = "pretrained.json"


def pretrained_fingerprint(path: str) -> dict[str, str]:
    """What embedding.pretrained_path was when a run started from it: the SHA-1 of each of its files' name, size
    and modification time (the file, or a folder's own files). A rebuilt, replaced or added file changes it;
    taking it reads no file's contents."""
    real = os.path.realpath(path)
    names = [real] if os.path.isfile(real) else sorted(os.path.join(real, n) for n in os.listdir(real))
    listing = [
        (os.path.basename(f), st.st_size, st.st_mtime_ns) for f in names if os.path.isfile(f) and (st := os.stat(f))
    ]
    return {"path": real, "sha1": hashlib.sha1(json.dumps(listing).encode()).hexdigest()}


def _check_pretrained(cfg: Config) -> None:
    """A run resumed (or a finished sweep member reused) must start from the pretrained source it started from."""
    stored_path = os.path.join(cfg.run_dir, PRETRAINED_FILE)
    if cfg.embedding.init != "pretrained" or not os.path.exists(stored_path):
        return
    try:
        stored, now = json.load(open(stored_path)), pretrained_fingerprint(cfg.embedding.pretrained_path)
    except (OSError, ValueError):  # a source that cannot be read now fails where it is loaded, with its own message
        return
    if stored.get("sha1") != now["sha1"]:
        raise ConfigError(
            f"embedding.pretrained_path: run {cfg.run_dir!r} started from {stored.get('path')!r}, which has changed "
            "since (a file in it was rebuilt, replaced, added or removed); allowed: the same source, or "
            "--overwrite=true to start over"
        )


def finished_summary(cfg: Config) -> dict | None:
    """The summary of a run that already reached cfg.steps (finished or diverged), else None."""
    s = read_summary(cfg.run_dir)  # (a damaged one is not finished: the member trains again)
    return s if s.get("status") in ("finished", "diverged") and s.get("steps") == cfg.steps else None


class RunDir:
    """`<out_dir>/<name>/` of one run; see the module docstring."""

    def __init__(self, cfg: Config, *, overwrite: bool = False, label: str | None = None):
        self.cfg, self.label = cfg, label or cfg.name
        self.lock, refused = RunLock(cfg.run_dir), None
        if is_main_process():  # process 0 holds a multi-process run's lock
            with contextlib.suppress(OSError):
                os.makedirs(cfg.out_dir, exist_ok=True)  # (check() names an out_dir that cannot be written)
            if os.path.isdir(cfg.out_dir):
                try:
                    self.lock.acquire()
                except RunLocked as err:
                    refused = err
        share_decision(str(refused) if refused else "", cfg.mesh.wait_timeout)  # the other processes stop too
        if refused is not None:
            raise refused
        try:
            self.resume = check(cfg, overwrite)  # nothing is written before this has passed
        except BaseException:
            self.lock.release()
            raise
        self.path = cfg.run_dir
        self.writer = is_main_process()
        self.corpus: Corpus | None = None
        self.ckpt: Checkpointer | None = None
        self.wandb: WandbSink | None = None
        self.jsonl: JsonlSink | None = None
        self.sink: Any = NullSink()
        self.summary: dict | None = None
        self.last_logged: int | None = None
        self.lost: set[str] = set()  # optional outputs given up after a failed write

    def open(self, corpus: Corpus, wandb_group: str | None = None) -> None:
        """Create the directory, write config.yaml (and corpus.json for a corpus the config does not pin),
        start the checkpointer and (process 0) the W&B run. A resumed run must see the same corpus."""
        cfg, self.corpus = self.cfg, corpus
        ident, ident_path = corpus.identity(), os.path.join(self.path, "corpus.json")
        if self.resume and ident is not None and os.path.exists(ident_path):
            stored = json.load(open(ident_path))
            if stored != ident:
                raise ConfigError(
                    f"{'data.dataset' if cfg.data.dataset else 'data.path'}: run {self.path!r} was trained on "
                    f"{stored['prepared']} (text SHA-1 "
                    f"{stored['source_sha1'][:12]}), but the source now gives {ident['prepared']} "
                    f"({ident['source_sha1'][:12]}); allowed: the same source, or --overwrite=true"
                )
        os.makedirs(self.path, exist_ok=True)
        if self.writer:  # temporary files a killed writer of this run left (this process holds the run's lock)
            for tmp in glob.glob(os.path.join(glob.escape(self.path), "*.tmp*")):
                remove_quietly(tmp)
        # every process takes part in orbax's (multi-process) saves and restores
        self.ckpt = Checkpointer(os.path.join(self.path, CHECKPOINTS), keep=cfg.checkpoint.keep)
        if not self.writer:
            return
        write_atomic(os.path.join(self.path, CONFIG_FILE), lambda f: f.write(C.dump_yaml(cfg)))
        if ident is not None:
            with open(ident_path, "w") as f:
                json.dump(ident, f)
        fingerprint_path = os.path.join(self.path, PRETRAINED_FILE)
        if cfg.embedding.init == "pretrained" and not os.path.exists(fingerprint_path):  # kept as when resumed
            fingerprint = pretrained_fingerprint(cfg.embedding.pretrained_path)
            write_atomic(fingerprint_path, lambda f: json.dump(fingerprint, f))
        self._write_tokens()  # now, so the viewer can name the tokens of a run that never finishes
        if cfg.log.wandb:
            id_path = os.path.join(self.path, WANDB_ID)
            run_id = open(id_path).read().strip() if os.path.exists(id_path) else None
            self.wandb = WandbSink(
                self.path,
                C.to_dict(cfg),
                project=cfg.log.project,
                name=cfg.name,
                mode=cfg.log.mode,
                entity=cfg.log.entity,
                group=cfg.log.group or wandb_group,
                tags=cfg.log.tags,
                init_timeout=cfg.log.init_timeout,
                resume_id=run_id,
            )
            if self.wandb.run_id and run_id is None:
                with open(id_path, "w") as f:
                    f.write(self.wandb.run_id)

    def restore(self, abstract_state: Any, shardings: Any) -> tuple[int, Any] | None:
        """(step, state) of the newest readable checkpoint (one process walks back over damaged ones)."""
        if not self.resume:
            return None
        # several processes restore together (orbax synchronises them), so they must all try the same steps:
        # there, only the newest is tried, and a damaged one stops the run (an error where the damage is read,
        # a barrier timeout on the other processes)
        restored = self.ckpt.restore_latest(abstract_state, shardings, walk_back=jax.process_count() == 1)
        if restored is None:
            return None
        step, state, _ = restored
        if self.writer:
            print(f"resuming {self.path} from step {step} (checkpoint {step})", file=sys.stderr)
        return step, state

    def begin(self, step: int) -> None:
        """Log from `step` on: rows after it (recomputed exactly by the resumed run) are dropped."""
        if not self.writer:
            return
        truncate_jsonl(os.path.join(self.path, "metrics.jsonl"), step if step > 0 else -1)
        snapshots.truncate(self.path, step if step > 0 else -1)
        self.jsonl = JsonlSink(self.path)
        self.sink = CompositeSink([self.jsonl, self.wandb])

    def log(self, step: int, row: dict[str, float]) -> None:
        self.sink.log(step, row)
        self.last_logged = step  # the final exports join this step's row in W&B (no extra history step)

    def log_rich(self, step: int | None, items: dict[str, Any]) -> None:
        self._optional(f"W&B media {', '.join(items)}", self.sink.log_rich, step, items)

    def snapshot(self, step: int, rows: np.ndarray, E: np.ndarray, updates: np.ndarray) -> None:
        if self.writer and "snapshots" not in self.lost:
            if not self._optional(f"snapshot {step}", snapshots.write_frame, self.path, step, rows, E, updates):
                self.lost.add("snapshots")  # the page shows the frames written so far

    def _optional(self, what: str, fn: Any, *args: Any) -> bool:
        """An optional output (snapshots, exports, the page, W&B media): a failed write is one warning and the
        run goes on. Returns whether it was written."""
        try:
            fn(*args)
            return True
        except OSError as err:
            print(f"warning: {self.path}: {what} not written ({err.strerror or err}); the run goes on", file=sys.stderr)
            return False

    def checkpoint(self, step: int, state: Any) -> None:
        """Every row (and snapshot) up to `step` is on disk before checkpoint `step` exists."""
        if self.jsonl is not None:
            self.jsonl.flush()
        self.ckpt.save(step, state, C.to_dict(self.cfg))

    def finish(self, o: Outcome) -> dict[str, Any]:
        """The essential outputs first: the last checkpoint (with a good final state), then summary.json (always);
        then the optional ones, each of which costs only itself when it cannot be written: the exports, the page,
        W&B's summary. Once: a second call (after a crash was already summarised) returns the first summary."""
        if self.summary is not None:
            return self.summary
        summary = self.summary = summarize(self.cfg, self.corpus.info, o)
        try:
            try:
                if o.state is not None and o.status == "finished":
                    self.ckpt.save(o.step, o.state, C.to_dict(self.cfg), force=True)
                if self.ckpt is not None:
                    self.ckpt.close()  # waits for the async saves
            except BaseException as err:
                summary.update(status="failed", error=f"checkpoint not written: {type(err).__name__}: {err}"[:500])
                raise
            finally:
                if self.jsonl is not None:
                    self.jsonl.summary(summary)
            if o.E is not None and self.writer:
                self._optional("the exports (embeddings.npy, projector files)", self._write_outputs, o)
            # the page last (a stopped run gets it when it resumes and ends), so it never delays a stop
            if o.status in ("finished", "diverged") and self.writer and snapshots.frame_steps(self.path):
                self._write_page()
        finally:
            try:
                self._close_sinks(o.status, summary)
            finally:
                self.lock.release()
        return summary

    def _close_sinks(self, status: str, summary: dict) -> None:
        if self.wandb is not None:
            self._optional("the W&B summary", self.wandb.summary, summary)
        self.sink.close(status)
        if self.wandb is not None:
            summary["_wandb_sync"] = self.wandb.sync_hint()

    def _write_outputs(self, o: Outcome) -> None:
        """embeddings.npy (float32 V×d; untied: output_embeddings.npy too), row_updates.npy, projector files."""
        E = np.asarray(o.E, np.float32)
        write_atomic(os.path.join(self.path, "embeddings.npy"), lambda f: np.save(f, E), "wb")  # a source for others
        if o.E_out is not None:
            np.save(os.path.join(self.path, "output_embeddings.npy"), np.asarray(o.E_out, np.float32))
        if o.row_updates is not None:
            np.save(os.path.join(self.path, "row_updates.npy"), np.asarray(o.row_updates))
        export_projector(self.path, o.E, self.corpus, self.sink, step=self.last_logged)

    def _write_tokens(self) -> None:
        write_tokens_tsv(self.path, self.corpus)

    def _write_page(self) -> None:
        """embedding_space.html from the snapshots, logged to the W&B run; a failure here costs the page only."""
        if self.jsonl is not None:
            self.jsonl.flush()
        try:
            path = write_page(self.path)
        except Exception as err:  # noqa: BLE001 - the run's results are already safe; say what was lost
            print(
                f"warning: {self.path}: embedding_space.html not written ({type(err).__name__}: {err})", file=sys.stderr
            )
            return
        self.log_rich(self.last_logged, {"embedding_space": {"kind": "html", "path": path}})


class MemoryRun:
    """A run that touches no disk: rows, rich objects and the summary go to a MemorySink, checkpoints
    are host copies kept in memory (so a second loop over the same MemoryRun resumes from them)."""

    def __init__(self, cfg: Config, corpus_info: dict | None = None, label: str | None = None):
        self.cfg, self.label, self.info = cfg, label or cfg.name, corpus_info or {}
        self.sink = MemorySink()
        self.checkpoints: dict[int, Any] = {}
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
