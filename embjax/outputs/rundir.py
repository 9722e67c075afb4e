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

import contextlib
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
from typing import Any

import jax
import numpy as np

from .. import config as C
from ..analysis.evals import check_similarity_files
from ..config import Config, ConfigError
from ..data.corpus import Corpus
from ..model.align import PretrainedTable
from ..runtime.checkpoint import Checkpointer
from ..runtime.mesh import is_main_process, share_decision
from . import snapshots
from .exports import export_projector
from .lock import RunLock, RunLocked
from .run import Outcome, logged_evals, summarize
from .runs import read_summary
from .sinks import (
    CompositeSink,
    JsonlSink,
    NullSink,
    WandbSink,
    read_jsonl,
    remove_quietly,
    truncate_jsonl,
    write_atomic,
)
from .viewer import write_page

CHECKPOINTS, CONFIG_FILE, WANDB_ID = "checkpoints", "config.yaml", "wandb_id.txt"
BEST_CHECKPOINT = "best_checkpoint"  # checkpoint.keep_best: the state of the lowest eval loss (one orbax step)
BEST_TABLES = ("best_embeddings.npy", "best_output_embeddings.npy")  # its tables, written when the run ends


def write_tokens_tsv(run_dir: str, corpus: Any, marks: np.ndarray | None = None) -> None:
    """tokens.tsv: id, token, count[, class][, pretrained: 1 for a row from the pretrained source (`marks`, the
    aligned table's matched rows), 0 filled]."""
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


def check(cfg: Config, overwrite: bool) -> bool:
    """Decide before writing anything: True to resume. A changed config is refused unless overwrite
    (which then removes the old run); only keys declared resumable may differ. The pairs files it scores are read."""
    check_similarity_files(cfg)
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
        self.pretrained: PretrainedTable | None = None
        self.ckpt: Checkpointer | None = None
        self.best_ckpt: Checkpointer | None = None
        self.wandb: WandbSink | None = None
        self.jsonl: JsonlSink | None = None
        self.sink: Any = NullSink()
        self.summary: dict | None = None
        self.last_logged: int | None = None
        self.lost: set[str] = set()  # optional outputs given up after a failed write

    def open(self, corpus: Corpus, wandb_group: str | None = None, pretrained: PretrainedTable | None = None) -> None:
        """Create the directory, write config.yaml (and corpus.json for a corpus the config does not pin),
        start the checkpointer and (process 0) the W&B run. A resumed run must see the same corpus."""
        cfg, self.corpus, self.pretrained = self.cfg, corpus, pretrained
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
        if cfg.checkpoint.keep_best:  # saved before the loop goes on, so it is on disk before a later latest one
            self.best_ckpt = Checkpointer(os.path.join(self.path, BEST_CHECKPOINT), keep=1, async_save=False)
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

    def evals(self, step: int) -> list[tuple[int, float]]:
        path = os.path.join(self.path, "metrics.jsonl")
        rows = read_jsonl(path) if step > 0 and os.path.exists(path) else []
        return logged_evals([(r.get("step", -1), r) for r in rows], step)

    def save_best(self, step: int, state: Any) -> None:
        self.best_ckpt.save(step, state, C.to_dict(self.cfg))

    def best_tables(self, E: np.ndarray, E_out: np.ndarray | None) -> None:
        """best_embeddings.npy (and best_output_embeddings.npy for an untied head): the best checkpoint's tables,
        float32, as the findings' per-pair bootstrap reads them (embjax.findings.pairs)."""
        for name, X in ((BEST_TABLES[0], E), (BEST_TABLES[1], E_out)):
            if X is not None:
                np.save(os.path.join(self.path, name), np.asarray(X, np.float32))

    def restore_best(self, step: int, abstract_state: Any, shardings: Any) -> Any:
        """The best checkpoint's state at `step`, or None (with a warning) when it cannot be read."""
        try:
            return self.best_ckpt.restore(step, abstract_state, shardings)[0]
        except Exception as err:  # noqa: BLE001 - the run's results stand; its best/* benchmark keys are lost
            print(f"warning: {self.path}: best checkpoint {step} not read ({type(err).__name__})", file=sys.stderr)
            return None

    def finish(self, o: Outcome) -> dict[str, Any]:
        """The essential outputs first: the last checkpoint (with a good final state), then summary.json (always);
        then the optional ones, each of which costs only itself when it cannot be written: the exports, the page,
        W&B's summary. Once: a second call (after a crash was already summarised) returns the first summary."""
        if self.summary is not None:
            return self.summary
        info = {**self.corpus.info, **(self.pretrained.info if self.pretrained is not None else {})}
        summary = self.summary = summarize(self.cfg, info, o)
        try:
            try:
                if o.state is not None and o.status == "finished":
                    self.ckpt.save(o.step, o.state, C.to_dict(self.cfg), force=True)
                for ckpt in (self.ckpt, self.best_ckpt):
                    if ckpt is not None:
                        ckpt.close()  # waits for the async saves
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
        write_tokens_tsv(self.path, self.corpus, self.pretrained.matched if self.pretrained is not None else None)

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
