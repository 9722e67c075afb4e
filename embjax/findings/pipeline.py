"""The findings pipeline behind `python -m experiments.findings`: each chosen finding's stages and sweeps (the
shortened forms under --quick), then findings.md, the findings' W&B runs and, when asked, the W&B report."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sys
import time
from typing import NamedTuple

from ..config import ConfigError, load_config, read_yaml
from ..sweep import load_sweep
from ..train.baseline import Spec, train_baseline
from ..train.runner import run_sweep
from . import BY_NAME, FINDINGS
from .document import log_to_wandb, write_markdown
from .runs import load, training_seconds
from .verdict import BASELINES, stage_file
from .wandb_report import save_report, write_report


def run_findings(
    names: list[str],
    out_dir: str,
    given: dict,
    quick: bool,
    progress: bool,
    overwrite: bool,
    wandb_report: bool,
    jobs: int = 1,
) -> str:
    """Run the chosen findings (all when `names` is empty): their stages and sweeps (finished members are not
    rerun; `jobs` at a time in that many worker processes when jobs > 1), then findings.md and the findings' W&B
    runs (and findings_report.json); returns findings.md's path."""
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown finding; allowed: {', '.join(BY_NAME)}")
    chosen = [BY_NAME[n] for n in names] or FINDINGS
    root = os.path.join(out_dir, "findings")
    t0 = time.perf_counter()
    dirs = run_jobs(plan(chosen, quick), root, given, progress, overwrite, jobs)
    runs = {d: load(d) for d in dirs.values()}  # each sweep read once, shared by the findings that use it
    members = lambda f: [r for n in (f.sweep, *f.also, *f.references) for r in runs[dirs[n]]]
    results = [(f, dirs[f.sweep], members(f)) for f in chosen]
    train_s = sum(training_seconds(r) for r in runs.values())
    header = [
        f"Made by `python -m experiments.findings{' --quick' if quick else ''}` on {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} CPU cores ({platform.machine()}): {sum(map(len, runs.values()))} runs in "
        f"{len(runs)} sweeps, {train_s:.0f} s ({train_s / 60:.1f} min) of training as the runs recorded it "
        f"(this invocation: {time.perf_counter() - t0:.0f} s; finished members are not rerun). Verdicts are "
        "computed by `embjax/findings/` from what the runs wrote; none is written by hand."
    ]
    path = write_markdown(root, results, header)
    log_to_wandb(root, results)
    print(open(path).read().split("\n## ")[0])
    print(f"findings: {path}")
    if wandb_report:
        _findings_report(root, results, header[0], given)
    return path


class Task(NamedTuple):
    """One step of a findings job: a source stage, a sweep or a baseline stage."""

    kind: str  # "source" (a stage whose run pretrained sweeps start from) | "sweep" | "stage" (a baseline reference)
    name: str
    quick: dict | None  # its --quick settings (None: the full form)
    needs: str | None  # a sweep's source stage


def plan(chosen: list, quick: bool) -> list[list[Task]]:
    """The chosen findings' stages and sweeps as jobs, each run in order by one process. A finding with a stage
    (`needs`: the run its pretrained arms start from) runs in the job of that stage, after it; every other sweep
    or baseline stage is a job of its own. A name shared by findings runs once, in the first job that has it."""
    jobs: list[list[Task]] = []
    sources: dict[str, list[Task]] = {}  # a source stage -> its job
    where: set[str] = set()  # the sweeps and baseline stages already in a job
    for f in chosen:
        q, nq = (f.quick, f.needs_quick) if quick else (None, None)
        if f.needs is not None and f.needs not in sources:
            sources[f.needs] = [Task("source", f.needs, nq, None)]
            jobs.append(sources[f.needs])
        for kind, name in [("sweep", n) for n in (f.sweep, *f.also)] + [("stage", n) for n in f.references]:
            if name in where:
                continue
            task = Task("sweep", name, q, f.needs) if kind == "sweep" else Task("stage", name, nq, None)
            if kind == "sweep" and f.needs is not None:
                sources[f.needs].append(task)
            else:
                jobs.append([task])
            where.add(name)
    both = where & set(sources)
    if both:  # two processes would run it at once
        raise ConfigError(f"{sorted(both)[0]}: both a source stage and a sweep or reference; allowed: one of them")
    return jobs


_STOP = None  # in a worker of run_jobs: the event set when the command stops (no job starts after it)


def run_job(job: list, root: str, given: dict, progress: bool, overwrite: bool) -> dict[str, str]:
    """One job of `plan`: {name: its directory} for its sweeps (their folders) and baseline stages (their one run
    directory); a source stage's run is passed to the sweeps after it, not returned."""
    dirs: dict[str, str] = {}
    sources: dict[str, str] = {}
    for kind, name, q, needs in job:
        if _STOP is not None and _STOP.is_set():  # (in a worker) the command is stopping: nothing more starts
            break
        if kind == "sweep":
            source = sources[needs] if needs is not None else None
            dirs[name] = _findings_sweep(name, q, root, given, progress, overwrite, pretrained_source=source)
        else:
            (sources if kind == "source" else dirs)[name] = _findings_stage(name, q, root, given, progress, overwrite)
    return dirs


def _worker_start(stop) -> None:
    """A worker of run_jobs: Ctrl-C reaches the whole process group, so an idle worker ignores it (a training run
    sets its own handlers: it stops as a stopped run does); the parent then stops the workers."""
    global _STOP
    from ..runtime.hostmem import keep_freed_memory

    keep_freed_memory()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _STOP = stop


def _job_in_process(job: list, root: str, given: dict, overwrite: bool) -> dict[str, str]:
    """run_job in a worker process of run_jobs (no progress bars: several jobs share the terminal)."""
    return run_job(job, root, {**given, "log.progress": False}, False, overwrite)


class _Stop:
    """run_jobs' way to stop: a SIGTERM to the command sets `sigterm` and interrupts the wait for jobs; stop() sets
    the event every worker checks before it starts a job or a sweep and sends SIGTERM to the live workers (a
    training run stops as a stopped run does, interrupted and resumable; an idle worker or a baseline stage ends)."""

    def __init__(self, ctx):
        self.event, self.sigterm, self.pool = ctx.Event(), False, None

    def on_sigterm(self, signum, frame):
        self.sigterm = True
        raise KeyboardInterrupt

    def quiet(self, signum, frame):  # while stopping: a second SIGTERM is noted, never raised
        self.sigterm = True

    def stop(self) -> None:
        self.event.set()
        for p in list((getattr(self.pool, "_processes", None) or {}).values()):
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)


def run_jobs(jobs: list, root: str, given: dict, progress: bool, overwrite: bool, workers: int) -> dict[str, str]:
    """Every job of `plan`, in order in this process (workers 1), or `workers` at a time in a pool of that many
    worker processes (XLA compiles mostly on one core: two compile-bound sweeps at once on 2 cores take about 0.65
    of the time of one after the other). A failed job, Ctrl-C or SIGTERM stops the others (see _Stop); the error
    is raised here, and SIGTERM exits 143."""
    if workers <= 1 or len(jobs) <= 1:
        return {k: v for job in jobs for k, v in run_job(job, root, given, progress, overwrite).items()}
    import concurrent.futures as cf
    import multiprocessing

    dirs, t0 = {}, time.perf_counter()
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: JAX's threads are not forked
    halt = _Stop(ctx)
    previous = signal.signal(signal.SIGTERM, halt.on_sigterm)
    try:
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_start, initargs=(halt.event,)) as pool:
            halt.pool = pool
            try:
                futures = {pool.submit(_job_in_process, job, root, given, overwrite): job for job in jobs}
                for i, done in enumerate(cf.as_completed(futures), 1):
                    dirs.update(done.result())
                    names, took = ", ".join(t.name for t in futures[done]), time.perf_counter() - t0
                    print(f"findings: {names} done ({i}/{len(jobs)} jobs, {took:.0f} s)", flush=True)
            except BaseException:
                signal.signal(signal.SIGTERM, halt.quiet)
                halt.stop()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    except BaseException:
        if halt.sigterm:
            print("findings: stopped by SIGTERM; run the same command again to go on", file=sys.stderr)
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return dirs


def _findings_report(root: str, results: list, header: str, given: dict) -> None:
    """findings_report.json beside findings.md; saved to W&B when it logs online (one line, exit 2, if that fails)."""
    path = write_report(root, results, header)
    print(f"W&B report spec: {path}")
    log = load_config(None, given).log
    if log.mode != "online" or os.environ.get("WANDB_MODE", "online") in ("offline", "disabled", "dryrun"):
        print("W&B offline: the report is not saved (log.mode=online, a W&B server and an API key save it)")
        return
    try:
        entity = log.entity
        if entity is None:
            import wandb

            entity = wandb.Api().default_entity
        print(f"W&B report: {save_report(path, entity, log.project)}")
    except Exception as err:  # noqa: BLE001 - no API key, no server: one line (the spec is written)
        text = str(err).strip().splitlines()
        raise ConfigError(
            f"the findings report was not saved to W&B ({type(err).__name__}: {text[0] if text else ''}); the spec "
            f"is in {path}; allowed: a reachable W&B server (WANDB_BASE_URL) and an API key (wandb login)"
        ) from None


def _findings_stage(
    name: str, quick: dict | None, root: str, overrides: dict, progress: bool, overwrite: bool = False
) -> str:
    """A findings stage: a baseline, experiments/configs/findings/baselines/<name>.yaml (`baseline: {method, sg, dim,
    epochs, ...}` and `config: FILE`: experiments.baseline on that config), or else a sweep of one run,
    sweeps/findings/<name>.yaml; returns its one run directory."""
    path = stage_file(name)
    if not path.startswith(BASELINES):
        return _only_run(_findings_sweep(name, quick, root, overrides, progress, overwrite))
    raw = read_yaml(path)
    shortened = {k: quick[k] for k in ("epochs", "dim") if quick and k in quick}  # --quick: its epochs and dim
    spec = Spec(**{**raw["baseline"], **shortened}).check()
    stage = f"{name}_quick" if quick is not None else name
    if quick is not None:
        _start_over(root, stage)
    given = {**overrides, "name": "run", "out_dir": os.path.join(root, stage), "log.group": stage}
    cfg = load_config(raw.get("config"), given)
    return train_baseline(cfg, spec, overwrite=overwrite)["run_dir"]


def _only_run(sweep_dir: str) -> str:
    def finished(d: str) -> bool:
        try:
            with open(os.path.join(sweep_dir, d, "summary.json")) as f:
                return json.load(f).get("status") == "finished"
        except (OSError, ValueError):
            return False

    runs = sorted(d for d in os.listdir(sweep_dir) if finished(d))
    if len(runs) != 1:
        raise ConfigError(f"{sweep_dir}: got {len(runs)} finished runs; allowed: exactly one (a findings stage)")
    return os.path.join(sweep_dir, runs[0])


def _findings_sweep(
    name: str,
    quick: dict | None,
    root: str,
    overrides: dict,
    progress: bool,
    overwrite: bool = False,
    pretrained_source: str | None = None,
) -> str:
    """Run sweeps/findings/<name>.yaml (under --quick: shortened, as `<name>_quick`: its steps, the values of the
    swept keys the sweep has, and its settings under them); returns its directory. overwrite: every member starts
    over."""
    path = os.path.join("sweeps", "findings", f"{name}.yaml")
    if not os.path.isfile(path):
        raise ConfigError(
            f"{path}: not found; allowed: run from the repository root (sweeps/findings/ holds the sweeps)"
        )
    sweep = None
    if quick is not None:  # the shortened form, given to the runner as it is (no file written)
        sweep, overrides = quick_form(path, quick, overrides)
        name = sweep["name"]
        _start_over(root, name)
    summaries = run_sweep(
        path, root, overrides, progress=progress, overwrite=overwrite, pretrained_source=pretrained_source, sweep=sweep
    )
    stopped = next((s["_signal"] for s in summaries if s.get("_signal")), None)
    if stopped:  # SIGTERM / Ctrl-C stopped its runs (resumable): no later sweep starts
        print(f"findings: stopped by signal {int(stopped)}; run the same command again to go on", file=sys.stderr)
        raise SystemExit(128 + int(stopped))
    return os.path.join(root, name)


def _start_over(root: str, quick_name: str) -> None:
    """--quick starts its own `<name>_quick` folders over: an earlier --quick's runs may have other settings."""
    shutil.rmtree(os.path.join(root, quick_name), ignore_errors=True)


def quick_form(path: str, quick: dict, overrides: dict) -> tuple[dict, dict]:
    """--quick's form of sweeps/findings/<name>.yaml, `<name>_quick`: the values of the swept keys the sweep has,
    and the overrides its members get (the finding's steps and settings; the command line's win, and a member's
    swept values win over all of them)."""
    sweep = load_sweep(path)
    sweep["name"] = f"{os.path.splitext(os.path.basename(path))[0]}_quick"
    for key, values in quick.get("parameters", {}).items():
        if key in sweep["parameters"]:  # a finding's other sweeps (Finding.also) may not sweep it
            sweep["parameters"][key] = {"values": values}
    shortened = {**({"steps": quick["steps"]} if "steps" in quick else {}), **quick.get("settings", {})}
    return sweep, {**shortened, **overrides}
