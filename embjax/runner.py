"""Running: one run, a group of runs sharing one compiled program, and a whole sweep.

This is where the layers meet: configs become run directories (`rundir`), the corpus and the
compiled program (`step`) are built once per group, the device loop (`loop`) trains the group, and
a sweep ends with its summary.csv and report (`report`). Planning a sweep is `sweep`'s job.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import glob
import os
import re
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
import yaml

from . import config as C
from .config import Config, ConfigError, OutputError
from .data import Corpus, make_corpus
from .loop import Loop
from .mesh import agree_on_config, barrier, make_mesh
from .pretrained import align, read_source
from .rundir import CHECKPOINTS, RunDir, check, finished_summary
from .signals import Signals
from .sinks import remove_quietly
from .snapshots import MAX_ROWS, snapshot_every
from .step import Program
from .sweep import group_by_shape, load_sweep, member_configs, member_label, sweep_name, swept_keys


def load_inputs(cfg: Config) -> tuple[Corpus, np.ndarray | None]:
    """Everything read from disk that can be wrong, read before any run directory is touched."""
    corpus = make_corpus(cfg, show=cfg.log.progress)  # a text corpus is prepared here once, then reused
    pretrained = None
    if cfg.embedding.init == "pretrained":
        pretrained = load_pretrained_table(cfg, corpus)
    return corpus, pretrained


def load_pretrained_table(cfg: Config, corpus: Corpus) -> np.ndarray:
    """E (V×d) from embedding.pretrained_path, aligned to the corpus's vocabulary (embjax.pretrained): by id when
    the source has no token strings or is a model folder whose tokenizer.json is the run's data.tokenizer_file,
    else by token string. The summary (and tokens.tsv's `pretrained` column) say what matched and how."""
    e = cfg.embedding
    try:
        src = read_source(e.pretrained_path)
        by_id = bool(
            src.tokenizer_file and cfg.data.tokenizer_file and _same_file(src.tokenizer_file, cfg.data.tokenizer_file)
        )
        al = align(
            src,
            corpus.tokens,
            d=cfg.model.embed_dim,
            missing=e.pretrained_missing,
            project=e.pretrained_project,
            by_id=by_id,
        )
    except ValueError as err:  # (align names its arguments: say which config keys they are)
        msg = (
            str(err)
            .replace("project=", "embedding.pretrained_project=")
            .replace("missing=", "embedding.pretrained_missing=")
        )
        raise ConfigError(f"embedding.pretrained_path: {msg}") from None
    how = ", ".join(f"{n} {k}" for k, n in al.how.items() if n)
    print(
        f"pretrained: {src.describe()}; {int(al.matched.sum())} of {len(al.matched)} vocabulary rows matched ({how})"
        + (f"; {len(al.initialised)} filled ({e.pretrained_missing})" if al.initialised else ""),
        file=sys.stderr,
    )
    corpus.info.update(
        {
            "embedding/pretrained_matched": int(al.matched.sum()),
            "embedding/pretrained_initialised": len(al.initialised),
            "embedding/pretrained_source": src.describe(),
            **{f"embedding/pretrained_matched_{k}": n for k, n in al.how.items()},
        }
    )
    corpus.pretrained_matched = al.matched
    return al.E


def _same_file(a: str, b: str) -> bool:
    with open(a, "rb") as f, open(b, "rb") as g:
        return f.read() == g.read()


@contextlib.contextmanager
def _signals(given: Signals | None, cfg: Config) -> Iterator[Signals]:
    if given is not None:
        yield given
    else:
        with Signals(grace=stop_grace(), wait_timeout=wait_timeout(cfg)) as sig:
            yield sig


def wait_timeout(cfg: Config) -> float | None:
    """mesh.wait_timeout in a multi-process run (a process can only block on another there), else None."""
    return cfg.mesh.wait_timeout if jax.process_count() > 1 else None


def stop_grace() -> float | None:
    """A multi-process run's processes may block in a collective: 30 s after SIGTERM they give up
    (EMBJAX_STOP_GRACE overrides it); one process never blocks so (None: no watchdog)."""
    return float(os.environ.get("EMBJAX_STOP_GRACE", "30")) if jax.process_count() > 1 else None


def train(cfg: Config, *, overwrite: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Run (or resume) one training run; returns summary.json's contents."""
    return train_group([cfg], overwrite=overwrite, vectorize=False, progress=progress)[0]


def train_group(
    cfgs: list[Config],
    *,
    overwrite: bool = False,
    vectorize: bool = True,
    progress: bool | None = None,
    group: str | None = None,
    desc: str | None = None,
    labels: list[str] | None = None,
    signals: Signals | None = None,
) -> list[dict[str, Any]]:
    """Train configs that differ only in values (σ, lr, decays, clip, seed) with one compiled program."""
    agree_on_config(cfgs)  # the processes of a multi-process run: the same configs and out_dir, or one line
    if len({C.uses_dropout(c) for c in cfgs}) > 1:  # one program: all draw dropout masks or none does
        raise ConfigError(
            "model.dropout: got rates 0 and > 0 in one group; allowed: members that all use dropout or none "
            "(sweep.group_by_shape puts them in separate programs)"
        )
    check_memory(cfgs[0], len(cfgs) if vectorize and len(cfgs) > 1 else 1)  # before any run directory is opened
    runs: list[RunDir] = []
    try:
        for i, cfg in enumerate(cfgs):
            runs.append(RunDir(cfg, overwrite=overwrite, label=labels[i] if labels else None))
        return _train_runs(runs, cfgs[0], vectorize, group, progress, desc, signals)
    finally:  # a run that never reached its finish (refused, a bad input, a crash) does not keep its lock
        for r in runs:
            r.lock.release()


def _train_runs(runs: list, base: Config, vectorize: bool, group, progress, desc, signals) -> list[dict[str, Any]]:
    barrier("embjax-run-dirs-checked")  # no process writes before every process has decided
    C.enable_compile_cache(base.compile_cache)
    mesh = make_mesh(base)
    corpus, pretrained = load_inputs(base)
    program = Program(base, corpus, pretrained, mesh=mesh)
    if runs and runs[0].writer:
        warn_if_short_of_disk(base.out_dir, disk_need(program, len(runs)))
    for r in runs:
        r.open(corpus, wandb_group=group)
    vmapped = vectorize and len(runs) > 1
    chunk = members_that_fit(program, len(runs)) if vmapped and mesh is None else None
    with _signals(signals, base) as sig:
        loop = Loop(
            program,
            vmapped=vmapped,
            signals=sig,
            chunk=chunk,
            show=base.log.progress if progress is None else progress,
            desc=desc,
        )
        try:
            out = loop.train(runs)
        except Exception as err:
            failed = os_error(err)
            if failed is None:
                raise
            raise OutputError(write_failure(failed, runs)) from None
    if sig.received:
        for s in out:
            s["_signal"] = sig.received
    return out


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


def disk_need(program: Program, members: int) -> dict[str, float]:
    """Bytes a group of runs may write (an estimate): checkpoints (keep + 1 while a new one is written), the
    embedding snapshots, and the page and exports (the page holds the frames as text, plus Plotly's bundle)."""
    cfg = program.cfg
    state = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(program.abstract_state))
    every = snapshot_every(cfg.steps, cfg.log.every, cfg.log.snapshot_every)
    rows = min(cfg.data.vocab_size, MAX_ROWS) if every else 0
    frames = (cfg.steps // every + 1) if every else 0
    snaps = frames * rows * (cfg.model.embed_dim * 2 + 4)
    tables = cfg.data.vocab_size * cfg.model.embed_dim * 4 * (1 if cfg.model.tie_embeddings else 2)
    return {
        "checkpoints": members * (cfg.checkpoint.keep + 1) * state,
        "snapshots": members * snaps,
        "page and exports": members * (3 * snaps + 3 * tables + (5 * 2**20 if every else 0)),
    }


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


OPTIMIZER_MOMENTS = {"adamw": 2, "adam": 2, "sgd": 1, "adafactor": 0}  # float32 per parameter (adafactor: factored)


def state_estimate(cfg: Config) -> dict[str, int]:
    """Bytes one member's training needs at least, from the config alone (no array made): its parameters (at
    model.param_dtype), the optimizer's moments (float32), one float32 gradient per parameter."""
    from flax import nnx

    from .step import abstract_model

    e = cfg.embedding
    if e.init == "pretrained":  # the same shapes as a drawn table
        cfg = dataclasses.replace(cfg, embedding=dataclasses.replace(e, init="normal"))

    leaves = jax.tree.leaves(nnx.state(abstract_model(C.without_values(cfg)), nnx.Param))
    n = sum(int(np.prod(x.shape)) for x in leaves)
    params = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in leaves)
    moments = OPTIMIZER_MOMENTS.get(cfg.optim.name, 2) * 4 * n
    return {"params": params, "optimizer": moments, "gradients": 4 * n}


def available_memory() -> tuple[int | None, str]:
    """(bytes, where): the accelerator's free memory, or on a CPU the host's available memory (MemAvailable)."""
    import jax

    if jax.default_backend() != "cpu":
        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)), f"free on {jax.devices()[0].device_kind}"
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024, "available on this host"
    except (OSError, KeyError, ValueError):
        return None, ""


def check_memory(cfg: Config, members: int) -> None:
    """Refuse, in one line, a run whose train state cannot fit the device (or host) memory: before any array of
    it is made and before its run directory is opened (an XLA out-of-memory midway is a traceback)."""
    need = state_estimate(cfg)
    total = members * sum(need.values())
    have, where = available_memory()
    if have is not None and total > have:
        gib = lambda b: f"{b / 2**30:,.1f} GiB"
        raise ConfigError(
            f"the train state needs about {gib(total)} ({members} member{'s' * (members > 1)} × (parameters "
            f"{gib(need['params'])} + optimizer state {gib(need['optimizer'])} + gradients {gib(need['gradients'])}),"
            f" activations not counted) and {gib(have)} is {where}; allowed: a smaller data.vocab_size × "
            "model.embed_dim, model.param_dtype=bfloat16, fewer members at once, or a device with more memory"
        )


def memory_budget() -> int | None:
    """Bytes one vmapped group may use: $EMBJAX_MEMORY_BUDGET if set, else the accelerator's free memory
    (memory_stats' bytes_limit - bytes_in_use); None on a CPU (host memory is not partitioned here)."""
    import jax

    if os.environ.get("EMBJAX_MEMORY_BUDGET"):
        return int(float(os.environ["EMBJAX_MEMORY_BUDGET"]))
    stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
    return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)) if stats and "bytes_limit" in stats else None


def member_bytes(program: Program) -> int:
    """Device bytes one vmapped member of `program` needs in a train chunk: the compiled program's arguments
    (less the corpus tables, which members share), outputs and temporaries at one member (an over-estimate
    per member of a larger group). It costs one compile of the one-member program."""
    import jax

    state = jax.tree.map(lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype), program.abstract_state)
    step = jax.jit(jax.vmap(program.train_steps, in_axes=(0, None, None)), static_argnums=2, donate_argnums=0)
    shared = sum(np.asarray(x).nbytes for x in jax.tree.leaves(program.corpus.tables))
    return compiled_bytes(step.lower(state, program.corpus.tables, 1).compile()) - shared


def compiled_bytes(compiled: Any) -> int:
    """Device bytes a compiled program uses: arguments + outputs (less what donation aliases) + temporaries."""
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes)


def members_that_fit(program: Program, members: int) -> int:
    """How many members one vmapped chunk holds: all of them, or as many as fit 90 % of the memory budget."""
    budget = memory_budget()
    if budget is None or members == 1:
        return members
    return max(1, min(members, int(0.9 * budget // member_bytes(program))))


def decide_vectorize(mode: str) -> bool:
    """auto: vmap on accelerators; on CPU run members in turn with the one compiled program.

    Measured (python -m experiments.bench --case=sweep, 8 quickstart members, 2 CPU cores): vmapped
    39.6 s, in turn 37.0 s, 8 separate processes 159.1 s - the win is compiling once, and on a CPU the
    cores are already busy inside each member's matmuls, so stacking members buys nothing more.
    """
    if mode in ("on", "off"):
        return mode == "on"
    import jax

    return jax.default_backend() != "cpu"


def run_sweep(
    path: str,
    out_dir: str | None = None,
    overrides: dict | None = None,
    vectorize: str = "auto",
    progress: bool = True,
    report: bool = True,
    overwrite: bool = False,
    pretrained_source: str | None = None,
) -> list[dict]:
    """Run every member (finished ones are skipped, unfinished ones resume; with overwrite every member
    starts over); returns their summaries. pretrained_source: see sweep.member_configs."""
    if vectorize not in ("auto", "on", "off"):
        raise ConfigError(f"--vectorize: got {vectorize!r}; allowed: auto | on | off")
    sweep = load_sweep(path)
    name = sweep_name(path, sweep)
    cfgs = member_configs(path, sweep, out_dir, overrides or {}, pretrained_source)
    for cfg in cfgs:  # refuse a bad member before any is written (or, with overwrite, remove every old one)
        check(cfg, overwrite=overwrite)
    sweep_dir = os.path.dirname(cfgs[0].run_dir)
    os.makedirs(sweep_dir, exist_ok=True)
    with open(os.path.join(sweep_dir, "sweep.yaml"), "w") as f:
        yaml.safe_dump(sweep, f, sort_keys=False)
    summaries: list[dict | None] = [finished_summary(c) for c in cfgs]
    groups = group_by_shape(cfgs)
    print(
        f"sweep {name}: {len(cfgs)} members in {len(groups)} shape group(s); "
        f"{sum(s is not None for s in summaries)} already finished",
        flush=True,
    )
    keys = swept_keys(sweep)
    with Signals(grace=stop_grace(), wait_timeout=wait_timeout(cfgs[0])) as sig:
        for g_i, idx in enumerate(groups):
            todo = [i for i in idx if summaries[i] is None]
            if not todo or sig.received:
                continue
            tag = f"[{g_i + 1}/{len(groups)}]"
            out = train_group(
                [cfgs[i] for i in todo],
                vectorize=decide_vectorize(vectorize),
                progress=progress,
                group=name,
                desc=tag,
                labels=[f"{tag} {member_label(cfgs[i], keys)}" for i in todo],
                signals=sig,
            )
            for i, s in zip(todo, out):
                summaries[i] = s
    result = [s or {"status": "not run"} for s in summaries]
    write_summary_csv(sweep_dir, keys, cfgs, result)
    if report:
        from .report import make_report

        make_report(sweep_dir, wandb_group=name if cfgs[0].log.wandb else None, baseline=sweep.get("baseline"))
    dashboard(sweep_dir, cfgs[0])
    if sig.received:
        for s in result:
            s["_signal"] = sig.received
    return result


SUMMARY_METRICS = (
    "eval/loss",
    "train/loss",
    "emb/norm_mean",
    "emb/norm_growth",
    "emb/cos_mean",
    "emb/cos_std",
    "emb/eff_rank",
    "emb/isotropy",
    "emb/pc1_var_share",
    "emb/class_cos_gap",
    "emb/knn_class_purity",
    "emb/norm_logfreq_spearman",
    "step",
    "wall_time_s",
)


def dashboard(sweep_dir: str, cfg: Config) -> None:
    """The sweep's W&B workspace at its end, as log.wandb_workspace says (null: saved when W&B logs online); a
    failure costs the workspace only, in one warning."""
    log = cfg.log
    online = log.mode == "online" and os.environ.get("WANDB_MODE", "online") not in ("offline", "disabled", "dryrun")
    if not log.wandb or log.wandb_workspace is False or (log.wandb_workspace is None and not online):
        return
    from .dashboard import save_workspace, write_workspace

    try:
        path = write_workspace(sweep_dir)
        if online:
            print(f"W&B workspace: {save_workspace(path, log.entity, log.project)}")
        else:
            print(f"W&B workspace spec: {path} (save it with: python -m experiments.dashboard {sweep_dir})")
    except Exception as err:  # noqa: BLE001 - the sweep's results are safe; say what was lost
        why = str(err).strip().splitlines()
        print(f"warning: {sweep_dir}: the W&B workspace was not saved ({type(err).__name__}: {why[0] if why else ''})",
              file=sys.stderr)  # fmt: skip


BENCHMARK_PREFIXES = ("word_sim/", "word_sim_out/", "analogy/", "analogy_out/")


def write_summary_csv(sweep_dir: str, keys: list[str], cfgs: list[Config], summaries: list[dict]) -> str:
    """summary.csv: a row per member: its name, a column per swept key, final metrics (the benchmark keys any member
    logged among them), status. The report adds a baseline's row (benchmark_report.add_baseline_row)."""
    path = os.path.join(sweep_dir, "summary.csv")
    bench = sorted({k for s in summaries for k in s if k.startswith(BENCHMARK_PREFIXES)})
    metrics = [*SUMMARY_METRICS[:-2], *bench, *SUMMARY_METRICS[-2:]]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["member", *keys, *metrics, "status"])
        for cfg, s in zip(cfgs, summaries):
            values = [s.get(m, "") for m in metrics]
            w.writerow([cfg.name, *[C.get(cfg, k) for k in keys], *values, s.get("status", "")])
    return path
