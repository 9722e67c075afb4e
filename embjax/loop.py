"""The training loop: the only place with files, W&B, checkpoints, signals and the progress bar.

It dispatches chunks of steps (one `lax.scan` per chunk, chunks ending where something is logged,
evaluated or saved) and fetches a chunk's metrics only after the next chunk is dispatched, so the
host never stalls the device. Resume: the same config on an existing run directory continues from
the newest readable checkpoint; rows after it are dropped from metrics.jsonl and recomputed exactly.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import config as C
from .checkpoint import CheckpointError, Checkpointer
from .config import Config, ConfigError
from .data import Corpus, make_corpus
from .embedding import load_pretrained, save_word2vec
from .models import count_params
from .sinks import (CompositeSink, ConsoleSink, JsonlSink, WandbSink, truncate_jsonl, write_json_atomic)
from .step import Program, hparams

CHECKPOINTS, CONFIG_FILE = "checkpoints", "config.yaml"


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
    diff = [k for k in given if k != "steps" and given[k] != stored.get(k)]
    if diff:
        k = diff[0]
        raise ConfigError(f"{k}: got {given[k]!r} but run {run_dir!r} was made with {stored.get(k)!r} "
                          f"({len(diff)} key(s) differ); allowed: the stored config (only steps may grow), "
                          "or --overwrite=true to start over")
    if given["steps"] < stored["steps"]:
        raise ConfigError(f"steps: got {given['steps']} but run {run_dir!r} has steps={stored['steps']}; "
                          "allowed: the same or more steps (to extend it), or --overwrite=true")
    return True


def load_inputs(cfg: Config) -> tuple[Corpus, np.ndarray | None]:
    """Everything read from disk that can be wrong, read before the run directory is touched."""
    corpus = make_corpus(cfg)
    pretrained = None
    if cfg.embedding.init == "pretrained":
        try:
            pretrained = load_pretrained(cfg.embedding.pretrained_path, cfg.data.vocab_size, cfg.model.embed_dim,
                                         tokens=None if cfg.embedding.pretrained_path.endswith(".npy") else corpus.tokens)
        except ValueError as err:
            raise ConfigError(f"embedding.pretrained_path: {err}") from None
    return corpus, pretrained


class _Signals:
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


def write_outputs(run_dir: str, E: np.ndarray, corpus: Corpus) -> None:
    """embeddings.npy (float32 V×d) and tokens.tsv (id, token, count[, class])."""
    np.save(os.path.join(run_dir, "embeddings.npy"), np.asarray(E, np.float32))
    with open(os.path.join(run_dir, "tokens.tsv"), "w", encoding="utf-8") as f:
        f.write("id\ttoken\tcount" + ("\tclass" if corpus.labels is not None else "") + "\n")
        for i, tok in enumerate(corpus.tokens):
            extra = f"\t{int(corpus.labels[i])}" if corpus.labels is not None else ""
            f.write(f"{i}\t{tok}\t{corpus.counts[i]:.6g}{extra}\n")


def train(cfg: Config, *, overwrite: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Run (or resume) one training run; returns summary.json's contents."""
    resume = check_run_dir(cfg, overwrite)
    C.enable_compile_cache(cfg.compile_cache)
    corpus, pretrained = load_inputs(cfg)
    run_dir = cfg.run_dir
    os.makedirs(run_dir, exist_ok=True)
    resolved = C.to_dict(cfg)
    write_config(run_dir, cfg)

    program = Program(cfg, corpus, pretrained)
    hp = hparams(cfg)
    init = jax.jit(program.init)
    abstract = jax.eval_shape(program.init, cfg.seed, hp)
    ckpt = Checkpointer(os.path.join(run_dir, CHECKPOINTS), keep=cfg.checkpoint.keep)
    restored = ckpt.restore_latest(abstract)
    if restored is not None:
        start, state, _ = restored
        truncate_jsonl(os.path.join(run_dir, "metrics.jsonl"), start)
        print(f"resuming {run_dir} from step {start} (checkpoint {start})", file=sys.stderr)
    else:
        start, state = 0, init(cfg.seed, hp)
        truncate_jsonl(os.path.join(run_dir, "metrics.jsonl"), -1)

    from .metrics import TrainingGeometry
    geometry = TrainingGeometry(cfg, corpus)

    wandb_sink = None
    if cfg.log.wandb:
        id_path = os.path.join(run_dir, "wandb_id.txt")
        run_id = open(id_path).read().strip() if os.path.exists(id_path) else None
        wandb_sink = WandbSink(run_dir, resolved, project=cfg.log.project, name=cfg.name, mode=cfg.log.mode,
                               entity=cfg.log.entity, group=cfg.log.group, tags=cfg.log.tags,
                               init_timeout=cfg.log.init_timeout, resume_id=run_id)
        if wandb_sink.run_id and run_id is None:
            with open(id_path, "w") as f:
                f.write(wandb_sink.run_id)
    jsonl = JsonlSink(run_dir)
    show = cfg.log.progress if progress is None else progress
    console = ConsoleSink(cfg.steps, start, cfg.name, enabled=show)
    sink = CompositeSink([jsonl, console, wandb_sink])

    tables = corpus.tables
    eval_batches = jnp.asarray(corpus.eval_batches(jax.random.key(cfg.seed + 1_000_003), cfg.data.eval_batches,
                                                   cfg.data.batch_size))
    step_fn = jax.jit(program.train_steps, static_argnums=2, donate_argnums=0)
    stats_fn = jax.jit(program.emb_stats)
    eval_fn = jax.jit(program.eval_loss)
    tokens_per_step = cfg.data.batch_size * cfg.data.seq_len
    total, L = cfg.steps, cfg.log
    status, t_start, t_compile = "running", time.perf_counter(), None
    last = {"step": start, "time": time.perf_counter()}
    final_row: dict[str, Any] = {}

    def fetch(pending) -> dict:
        """Bring one chunk's metrics to the host and log them (one chunk late)."""
        s, dev, E = pending
        row = {k: float(v) for k, v in jax.device_get(dev).items()}
        diverged_at = int(row.pop("_diverged_at"))
        now = time.perf_counter()
        if s > last["step"]:
            row["perf/tokens_per_s"] = (s - last["step"]) * tokens_per_step / max(now - last["time"], 1e-9)
        last.update(step=s, time=now)
        if E is not None:
            scalars, rich = geometry(np.asarray(E), s)
            row.update(scalars)
            sink.log_rich(s, rich)
        sink.log(s, row)
        final_row.update(row, _step=s)
        return {"diverged_at": diverged_at}

    def dispatch_extras(s: int, state) -> tuple:
        dev = dict(stats_fn(state))
        if _hit(s, L.eval_every, total):
            dev["eval/loss"] = eval_fn(state["params"], eval_batches)
        E = jnp.copy(program.table(state["params"])) if _hit(s, L.metrics_every, total) else None
        return s, dev, E

    try:
        with _Signals() as signals:
            pending = None
            if start == 0:
                pending = dispatch_extras(0, state)
            s = start
            while s < total:
                n = _next_event(s, total, (L.every, L.eval_every, L.metrics_every, cfg.checkpoint.every)) - s
                state, m = step_fn(state, tables, n)
                s += n
                extras = dispatch_extras(s, state)
                extras[1].update(m)
                if pending is not None:
                    if fetch(pending)["diverged_at"] >= 0:
                        pending = None
                        status = "diverged"
                        break
                    if t_compile is None:
                        t_compile = time.perf_counter() - t_start
                pending = extras
                if _hit(s, cfg.checkpoint.every, total) or signals.received:
                    info = fetch(pending)  # every row up to s is on disk before checkpoint s exists
                    pending = None
                    jsonl.flush()
                    if info["diverged_at"] >= 0:
                        status = "diverged"
                        break
                    ckpt.save(s, state, resolved)
                    if signals.received:
                        status = "interrupted"
                        break
            if pending is not None:
                if fetch(pending)["diverged_at"] >= 0:
                    status = "diverged"
            if status == "running":
                status = "finished"
    except BaseException:
        status = "failed" if status == "running" else status
        _finish(cfg, run_dir, corpus, program, state, sink, ckpt, status, final_row, t_start, start,
                write_final=False)
        raise
    summary = _finish(cfg, run_dir, corpus, program, state, sink, ckpt, status, final_row, t_start, start,
                      write_final=status in ("finished", "diverged"), compile_s=t_compile)
    if status == "interrupted":
        summary["_signal"] = signals.received
    if wandb_sink is not None:
        summary["_wandb_sync"] = wandb_sink.sync_hint()
    return summary


def write_config(run_dir: str, cfg: Config) -> None:
    tmp = os.path.join(run_dir, f"{CONFIG_FILE}.tmp")
    with open(tmp, "w") as f:
        f.write(C.dump_yaml(cfg))
    os.replace(tmp, os.path.join(run_dir, CONFIG_FILE))


def _finish(cfg, run_dir, corpus, program, state, sink, ckpt, status, final_row, t_start, start, *,
            write_final: bool, compile_s: float | None = None) -> dict:
    """Write summary.json (always), embeddings and the last checkpoint (when the state is good)."""
    wall = time.perf_counter() - t_start
    try:
        step, diverged_at, skipped = (int(x) for x in jax.device_get(
            (state["step"], state["diverged_at"], state["skipped"])))
    except RuntimeError:  # a crash mid-dispatch can leave the state's buffers donated
        step, diverged_at, skipped, write_final = int(final_row.get("_step", start)), -1, 0, False
    if status == "diverged":
        step = diverged_at
    summary = {k: v for k, v in final_row.items() if not k.startswith("_")}
    summary.update({
        "status": status, "step": step, "steps": cfg.steps, "wall_time_s": wall,
        "tokens_per_s": (step - start) * cfg.data.batch_size * cfg.data.seq_len / max(wall, 1e-9),
        "compile_s": compile_s, "devices": [str(d) for d in jax.devices()], "backend": jax.default_backend(),
        "params": count_params(state["params"]), "skipped_steps": skipped,
        "run_dir": os.path.abspath(run_dir), **corpus.info,
    })
    try:
        if write_final:
            if status == "finished":
                ckpt.save(step, state, C.to_dict(cfg), force=True)
            write_outputs(run_dir, np.asarray(jax.device_get(program.table(state["params"]))), corpus)
            if status == "finished":
                E = np.asarray(jax.device_get(program.table(state["params"])))
                from .metrics import export_projector
                export_projector(run_dir, E, corpus, sink)
        ckpt.close()
    finally:
        sink.summary(summary)
        sink.close(status)
    return summary
