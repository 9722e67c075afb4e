"""Running: one run, a group of runs sharing one compiled program, and a whole sweep.

This is where the layers meet: configs become run directories (`rundir`), the corpus and the
compiled program (`step`) are built once per group, the device loop (`loop`) trains the group, and
a sweep ends with its summary.csv and report (`report`). Planning a sweep is `sweep`'s job.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import jax
import yaml

from .. import config as C
from ..config import Config, ConfigError, OutputError
from ..data.corpus import Corpus, make_corpus
from ..model.align import PretrainedTable, align
from ..model.pretrained import read_source
from ..outputs.dashboard import dashboard
from ..outputs.disk import os_error, warn_if_short_of_disk, write_failure
from ..outputs.rundir import RunDir, check, finished_summary
from ..outputs.summary import write_summary_csv
from ..runtime.mesh import agree_on_config, barrier, make_mesh
from ..runtime.signals import Signals
from ..sweep import group_by_shape, load_sweep, member_configs, member_label, sweep_name, swept_keys
from .loop import Loop
from .memory import check_memory, disk_need, members_that_fit
from .selection import resolve_epochs
from .step import Program


def load_inputs(cfg: Config) -> tuple[Corpus, PretrainedTable | None]:
    """Everything read from disk that can be wrong, read before any run directory is touched."""
    corpus = make_corpus(cfg, show=cfg.log.progress)  # a text corpus is prepared here once, then reused
    pretrained = None
    if cfg.embedding.init == "pretrained":
        pretrained = load_pretrained_table(cfg, corpus)
    return corpus, pretrained


def load_pretrained_table(cfg: Config, corpus: Corpus) -> PretrainedTable:
    """E (V×d) from embedding.pretrained_path, aligned to the corpus's vocabulary (embjax.model.pretrained): by id when
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
    info = {
        "embedding/pretrained_matched": int(al.matched.sum()),
        "embedding/pretrained_initialised": len(al.initialised),
        "embedding/pretrained_source": src.describe(),
        **{f"embedding/pretrained_matched_{k}": n for k, n in al.how.items()},
    }
    return PretrainedTable(al.E, al.matched, info)


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
    cfgs = resolve_epochs(cfgs)  # (epochs: steps from the corpus, before a stored config is compared)
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
        r.open(corpus, wandb_group=group, pretrained=pretrained)
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
    sweep: dict | None = None,
    baseline: str | None = None,
) -> list[dict]:
    """Run every member (finished ones are skipped, unfinished ones resume; with overwrite every member starts
    over); returns their summaries. pretrained_source: see member_configs; sweep: in place of the file's (--quick);
    baseline: a baseline run's directory, drawn beside the members in the report."""
    if vectorize not in ("auto", "on", "off"):
        raise ConfigError(f"--vectorize: got {vectorize!r}; allowed: auto | on | off")
    sweep = load_sweep(path) if sweep is None else sweep
    name = sweep_name(path, sweep)
    cfgs = resolve_epochs(member_configs(path, sweep, out_dir, overrides or {}, pretrained_source))
    for cfg in cfgs:  # refuse a bad member before any is written (or, with overwrite, remove every old one)
        check(cfg, overwrite=overwrite)
    sweep_dir = os.path.dirname(cfgs[0].run_dir)
    os.makedirs(sweep_dir, exist_ok=True)
    with open(os.path.join(sweep_dir, "sweep.yaml"), "w") as f:
        yaml.safe_dump(sweep, f, sort_keys=False)
    summaries: list[dict | None] = [finished_summary(c) for c in cfgs]
    keys = swept_keys(sweep)
    received = _run_groups(cfgs, summaries, keys, name, vectorize, progress)
    result = [s or {"status": "not run"} for s in summaries]
    write_summary_csv(sweep_dir, keys, cfgs, result)
    if report:
        from ..outputs.report import make_report

        make_report(sweep_dir, wandb_group=name if cfgs[0].log.wandb else None, baseline=baseline)
    dashboard(sweep_dir, cfgs[0])
    if received:
        for s in result:
            s["_signal"] = received
    return result


def _run_groups(cfgs: list[Config], summaries: list, keys: list[str], name: str, vectorize: str, progress: bool):
    """Train each shape group's unfinished members, filling `summaries`; returns the signal that stopped the
    sweep (None if none did)."""
    groups = group_by_shape(cfgs)
    print(
        f"sweep {name}: {len(cfgs)} members in {len(groups)} shape group(s); "
        f"{sum(s is not None for s in summaries)} already finished",
        flush=True,
    )
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
    return sig.received
