"""Command-line front ends shared by experiments/*: parse, call the library, map errors to exit codes."""

from __future__ import annotations

import functools
import glob
import os
import sys
from collections.abc import Callable

from .config import ConfigError, OutputError, load_config, parse_value
from .hostmem import keep_freed_memory


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def split_args(argv: list[str], flags: tuple[str, ...]) -> tuple[dict, list[str], list[str]]:
    """Pull `--flag=value` / `--flag value` for known flags; the rest are positionals and overrides."""
    known, overrides, positional = {}, [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if name in flags:
            if "=" in arg:
                known[name] = arg.split("=", 1)[1]
            elif i + 1 < len(argv):
                known[name] = argv[i + 1]
                i += 1
            else:
                raise ConfigError(f"--{name}: got no value")
        elif arg.startswith("--") or "=" in arg:
            overrides.append(arg)
        else:
            positional.append(arg)
        i += 1
    return known, overrides, positional


def _as_bool(flag: str, text: str | None) -> bool:
    v = parse_value(text) if text is not None else False
    if not isinstance(v, bool):
        raise ConfigError(f"--{flag}: got {text!r}; allowed: true/false")
    return v


def guarded(main: Callable[[list[str]], int]) -> Callable[[list[str] | None], int]:
    """Bad input -> one line and exit 2, never a traceback."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        try:
            return main(sys.argv[1:] if argv is None else argv)
        except ConfigError as err:
            return _fail(str(err))
        except OutputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Exception as err:
            if not out_of_memory(err):
                raise
            first = next((line for line in str(err).splitlines() if "memory" in line.lower()), str(err)[:200])
            print(
                f"error: out of memory ({type(err).__name__}: {first.strip()[:300]}); allowed: a smaller model, "
                "batch or vocabulary, fewer members at once (--vectorize=off), or a device with more memory",
                file=sys.stderr,
            )
            return 1

    return run


def out_of_memory(err: BaseException) -> bool:
    """An allocation the device or host could not make (XLA's RESOURCE_EXHAUSTED, NumPy's MemoryError), anywhere
    in the exception's chain."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = str(err)
        if isinstance(err, MemoryError) or ("RESOURCE_EXHAUSTED" in text and "memory" in text.lower()):
            return True
        err = err.__cause__ or err.__context__
    return False


@guarded
def train_main(argv: list[str]) -> int:
    keep_freed_memory()  # a training process: tune malloc before JAX starts its threads (see hostmem)
    known, overrides, positional = split_args(argv, ("config", "overwrite"))
    from .mesh import maybe_initialize_distributed

    maybe_initialize_distributed()  # before any device use, when a cluster environment is present
    if positional:
        raise ConfigError(f"{positional[0]}: unexpected argument; allowed: --config PATH and --section.key=value")
    sweep_id, run_id = os.environ.get("WANDB_SWEEP_ID"), os.environ.get("WANDB_RUN_ID")
    if sweep_id and run_id and not any(o.lstrip("-").startswith("name=") for o in overrides):
        # launched by `wandb agent`: one directory per agent run, grouped by sweep
        base = load_config(known.get("config"), overrides)
        overrides = overrides + [f"--name={run_id}", f"--out_dir={os.path.join(base.out_dir, sweep_id)}"]
    cfg = load_config(known.get("config"), overrides)
    from .checkpoint import CheckpointError
    from .runner import train

    try:
        summary = train(cfg, overwrite=_as_bool("overwrite", known.get("overwrite")))
    except CheckpointError as err:
        return _fail(str(err))
    run_dir = summary["run_dir"]
    print(
        f"\n{summary['status']} at step {summary['step']}/{cfg.steps} in {summary['wall_time_s']:.1f} s "
        f"({summary['tokens_per_s']:,.0f} tokens/s)"
    )
    for key in (
        "train/loss",
        "eval/loss",
        "eval/ppl",
        "best/eval/ppl",
        "data/unigram_entropy",
        "data/entropy_rate",
        "emb/norm_growth",
        "emb/cos_mean",
    ):
        if isinstance(summary.get(key), float):
            print(f"  {key:22s} {summary[key]:.4f}")
    if "best/step" in summary:  # checkpoint.keep_best / log.patience
        stopped = f"stopped early (log.patience={cfg.log.patience}); " if summary.get("stopped_early") else ""
        print(f"  {stopped}best eval loss {summary['best/eval/loss']:.4f} at step {summary['best/step']}")
    print(f"run directory: {run_dir}")
    for name in sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []:  # written by now, exports included
        print(f"  {name}{'/' if os.path.isdir(os.path.join(run_dir, name)) else ''}")
    if summary.get("_wandb_sync"):
        print(f"W&B (offline) - upload with:\n  {summary['_wandb_sync']}")
    if summary["status"] == "interrupted":
        return 128 + int(summary.get("_signal") or 2)
    return 0 if summary["status"] in ("finished", "diverged") else 1


@guarded
def sweep_main(argv: list[str]) -> int:
    keep_freed_memory()
    known, overrides, positional = split_args(argv, ("out_dir", "vectorize", "progress", "overwrite"))
    if len(positional) != 1:
        raise ConfigError(
            f"got {len(positional)} sweep files; allowed: exactly one, "
            "e.g. python -m experiments.sweep sweeps/quickstart.yaml"
        )
    from .config import parse_overrides
    from .runner import run_sweep

    progress = _as_bool("progress", known["progress"]) if "progress" in known else True
    summaries = run_sweep(
        positional[0],
        out_dir=known.get("out_dir"),
        overrides=parse_overrides(overrides),
        vectorize=known.get("vectorize", "auto"),
        progress=progress,
        overwrite=_as_bool("overwrite", known.get("overwrite", "false")),
    )
    counts: dict[str, int] = {}
    for s in summaries:
        counts[s.get("status", "?")] = counts.get(s.get("status", "?"), 0) + 1
    sweep_dir = os.path.dirname(summaries[0]["run_dir"]) if summaries and "run_dir" in summaries[0] else None
    print("\n" + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if sweep_dir:
        print(f"sweep directory: {sweep_dir}\n  summary.csv\n  report.md (+ plots)")
        if glob.glob(os.path.join(sweep_dir, "*", "wandb", "offline-run-*")):  # only runs that were written
            print(f"W&B (offline) - upload every member with:\n  wandb sync {sweep_dir}/*/wandb/offline-run-*")
    if any(s.get("_signal") for s in summaries):
        return 128 + int(summaries[0]["_signal"])
    return 0 if all(s.get("status") in ("finished", "diverged") for s in summaries) else 1


@guarded
def prepare_main(argv: list[str]) -> int:
    known, overrides, positional = split_args(argv, ("config",))
    if positional:
        raise ConfigError(f"{positional[0]}: unexpected argument; allowed: --config PATH and --data.key=value")
    cfg = load_config(known.get("config"), overrides)
    if cfg.data.kind != "text":
        raise ConfigError(
            f"data.kind: got {cfg.data.kind!r}; allowed: 'text' (the planted corpus needs no preparing), "
            "e.g. --data.kind=text --data.path=FILES"
        )
    import time

    from .prepare import prepare, read_meta

    t = time.perf_counter()
    folder = prepare(cfg.data, show=cfg.log.progress)
    meta = read_meta(folder)
    s = meta["split"]
    print(
        f"{folder}  ({time.perf_counter() - t:.1f} s)\n  {meta['documents']:,} documents, V = {meta['vocab_size']:,} "
        f"({meta['tokenizer']['kind']}), {meta['dtype']}\n  train: {s['train_tokens']:,} tokens in "
        f"{s['train_documents']:,} documents; eval: {s['eval_tokens']:,} tokens in {s['eval_documents']:,} "
        f"documents (split by {s['by']})"
    )
    return 0


@guarded
def findings_main(argv: list[str]) -> int:
    keep_freed_memory()
    argv = [{"--quick": "--quick=true", "--wandb-report": "--wandb-report=true"}.get(a, a) for a in argv]
    known, overrides, positional = split_args(argv, ("out_dir", "quick", "progress", "overwrite", "wandb-report"))
    import time

    from .config import parse_overrides
    from .findings import BY_NAME, FINDINGS
    from .findings.document import log_to_wandb, write_markdown
    from .findings.runs import load, training_seconds

    unknown = [n for n in positional if n not in BY_NAME]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown finding; allowed: {', '.join(BY_NAME)}")
    chosen = [BY_NAME[n] for n in positional] or FINDINGS
    quick = _as_bool("quick", known.get("quick", "false"))
    progress = _as_bool("progress", known.get("progress", "true"))
    overwrite = _as_bool("overwrite", known.get("overwrite", "false"))
    root = os.path.join(known.get("out_dir", "runs"), "findings")
    t0, dirs = time.perf_counter(), {}
    given = {**({} if progress else {"log.progress": False}), **parse_overrides(overrides)}  # (prepare's bars too)
    for f in chosen:
        source = None
        if f.needs is not None:  # a stage run first: its one run directory is the pretrained arms' source
            source = _findings_stage(f.needs, f.needs_quick if quick else None, root, given, progress, overwrite)
        for name in (f.sweep, *f.also):
            if name not in dirs:
                q = f.quick if quick else None
                dirs[name] = _findings_sweep(name, q, root, given, progress, overwrite, pretrained_source=source)
        for name in f.references:  # baseline stages whose run directories join the finding's runs
            if name not in dirs:
                dirs[name] = _findings_stage(name, f.needs_quick if quick else None, root, given, progress, overwrite)
    import platform

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
    if _as_bool("wandb-report", known.get("wandb-report", "false")):
        _findings_report(root, results, header[0], given)
    return 0


def _findings_report(root: str, results: list, header: str, given: dict) -> None:
    """findings_report.json beside findings.md; saved to W&B when it logs online (one line, exit 2, if that fails)."""
    from .findings.wandb_report import save_report, write_report

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
    """A findings stage, sweeps/findings/<name>.yaml: a sweep of one run, or a baseline (`baseline: {method, sg,
    dim, epochs, ...}` and `config: FILE`: experiments.baseline on that config); returns its one run directory."""
    path = os.path.join("sweeps", "findings", f"{name}.yaml")
    from .config import read_yaml

    raw = read_yaml(path) if os.path.isfile(path) else {}
    if "baseline" not in raw:
        return _only_run(_findings_sweep(name, quick, root, overrides, progress, overwrite))
    from .baseline import Spec, train_baseline

    spec = Spec(**{**raw["baseline"], **({"epochs": quick["epochs"]} if quick and "epochs" in quick else {})}).check()
    stage = f"{name}_quick" if quick is not None else name
    given = {**overrides, "name": "run", "out_dir": os.path.join(root, stage), "log.group": stage}
    cfg = load_config(raw.get("config"), given)
    return train_baseline(cfg, spec, overwrite=overwrite)["run_dir"]


def _only_run(sweep_dir: str) -> str:
    import json

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
    """Run sweeps/findings/<name>.yaml (under --quick: shortened, as `<name>_quick`: its steps, and the values of
    the swept keys the sweep has); returns its directory. overwrite: every member starts over."""
    import yaml

    from .runner import run_sweep

    path = os.path.join("sweeps", "findings", f"{name}.yaml")
    if not os.path.isfile(path):
        raise ConfigError(
            f"{path}: not found; allowed: run from the repository root (sweeps/findings/ holds the sweeps)"
        )
    if quick is not None:
        sweep = yaml.safe_load(open(path))
        sweep["name"] = name = f"{name}_quick"
        for key, values in quick.get("parameters", {}).items():
            if key in sweep["parameters"]:  # a finding's other sweeps (Finding.also) may not sweep it
                sweep["parameters"][key] = {"values": values}
        os.makedirs(root, exist_ok=True)
        path = os.path.join(root, f".{name}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(sweep, f, sort_keys=False)
        overrides = {**({"steps": quick["steps"]} if "steps" in quick else {}), **overrides}
    run_sweep(path, root, overrides, progress=progress, overwrite=overwrite, pretrained_source=pretrained_source)
    return os.path.join(root, name)


@guarded
def dashboard_main(argv: list[str]) -> int:
    """`python -m experiments.dashboard SWEEP_DIR [--entity=E] [--project=P]`: the sweep's W&B workspace."""
    known, extra, positional = split_args(argv, ("entity", "project"))
    if extra or len(positional) != 1 or not os.path.isfile(os.path.join(positional[0], "sweep.yaml")):
        raise ConfigError(
            f"got {[*positional, *extra]!r}; allowed: one sweep directory (with its sweep.yaml), --entity=E, "
            "--project=P"
        )
    from .dashboard import save_workspace, sweep_log, write_workspace

    try:
        path = write_workspace(positional[0])
    except ValueError as err:
        raise ConfigError(str(err)) from None
    print(f"workspace spec: {path}")
    log = sweep_log(positional[0])
    if os.environ.get("WANDB_MODE", "") in ("offline", "disabled", "dryrun"):
        print(f"WANDB_MODE={os.environ['WANDB_MODE']}: not saved (unset it, with a W&B server and API key, to save)")
        return 0
    entity, project = known.get("entity") or log.get("entity"), known.get("project") or log.get("project", "embjax")
    try:
        url = save_workspace(path, entity, project)
    except Exception as err:  # noqa: BLE001 - no API key, no server, a refusal: one line (the spec is written)
        text = str(err).strip().splitlines()
        raise ConfigError(
            f"the workspace was not saved to W&B ({type(err).__name__}: {text[0] if text else ''}); the spec is in "
            f"{path}; allowed: a reachable W&B server (WANDB_BASE_URL) and an API key (wandb login)"
        ) from None
    print(f"workspace: {url}")
    return 0


BASELINE_FLAGS = ("config", "method", "sg", "dim", "epochs", "window", "negative", "workers", "keep_unk", "overwrite")


@guarded
def baseline_main(argv: list[str]) -> int:
    """`python -m experiments.baseline --method=word2vec|fasttext [--sg] [--dim] [--epochs=N or [N, ...]] [--window]
    [--negative] [--workers] [--keep_unk] --data...`: gensim on a prepared corpus's training tokens, as a run
    directory (a list of epochs: one each, `<name>-e<N>`)."""
    known, overrides, positional = split_args(argv, BASELINE_FLAGS)
    if positional:
        raise ConfigError(
            f"{positional[0]}: unexpected argument; allowed: --method, --sg, --dim, --epochs, --window, --negative, "
            "--workers, --keep_unk, --overwrite, --config PATH and --section.key=value"
        )
    from .baseline import Spec, train_baseline, train_curve

    def integer(flag: str, default: int) -> int:
        v = parse_value(known[flag]) if flag in known else default
        if not isinstance(v, int) or isinstance(v, bool):
            raise ConfigError(f"--{flag}: got {known[flag]!r}; allowed: an integer")
        return v

    given = parse_value(known["epochs"]) if "epochs" in known else Spec.epochs
    curve = isinstance(given, list)
    epochs = given if curve else [given]
    if not epochs or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in epochs):
        raise ConfigError(
            f"--epochs: got {known['epochs']!r}; allowed: an integer >= 1 or a list of them, e.g. [5, 10]"
        )
    spec = Spec(
        method=known.get("method", "word2vec"),
        sg=_as_bool("sg", known["sg"]) if "sg" in known else Spec.sg,
        keep_unk=_as_bool("keep_unk", known["keep_unk"]) if "keep_unk" in known else False,
        epochs=epochs[0],
        **{k: integer(k, getattr(Spec, k)) for k in ("dim", "window", "negative", "workers")},
    ).check()
    if not any(o.lstrip("-").startswith("name=") for o in overrides):
        overrides = [*overrides, f"--name={spec.method}{'-sg' if spec.sg else ''}"]
    cfg = load_config(known.get("config"), overrides)
    overwrite = _as_bool("overwrite", known.get("overwrite", "false"))
    summaries = train_curve(cfg, spec, epochs, overwrite) if curve else [train_baseline(cfg, spec, overwrite)]
    for n, summary in zip(epochs, summaries):
        print(
            f"\n{spec.method} ({'skip-gram' if spec.sg else 'CBOW'}, d = {spec.dim}, {n} epochs): "
            f"{summary['wall_time_s']:.1f} s, {summary['words_per_s']:,.0f} words/s"
        )
        for key, value in summary.items():
            if key.startswith(("word_sim", "analogy")) and key.endswith(("/spearman", "/accuracy")):
                print(f"  {key:36s} {value:.4f}")
        print(f"run directory: {summary['run_dir']}")
        if summary.get("_wandb_sync"):
            print(f"W&B (offline) - upload with:\n  {summary['_wandb_sync']}")
    if curve:  # the anchor's curve in one table
        cols = ("word_sim/wordsim353/spearman", "word_sim/simlex999/spearman", "analogy/google/accuracy")
        print("\nepochs  fit s  " + "  ".join(c.split("/")[1] for c in cols))
        for n, s in zip(epochs, summaries):
            print(f"{n:6d} {s['fit_s']:6.1f}  " + "  ".join(f"{s.get(c, float('nan')):.3f}" for c in cols))
    return 0


@guarded
def report_main(argv: list[str]) -> int:
    """`python -m experiments.report DIR [--baseline=RUN_DIR]`."""
    known, extra, positional = split_args(argv, ("baseline",))
    if extra or len(positional) != 1 or not os.path.isdir(positional[0]):
        raise ConfigError(
            f"got {[*positional, *extra]!r}; allowed: one run or sweep directory and --baseline=RUN_DIR "
            "(a run of experiments.baseline)"
        )
    if known.get("baseline") and not os.path.isfile(os.path.join(known["baseline"], "summary.json")):
        raise ConfigError(
            f"--baseline: got {known['baseline']!r}, which holds no summary.json; allowed: a finished run directory "
            "of python -m experiments.baseline"
        )
    from .report import make_report

    try:
        path = make_report(positional[0], baseline=known.get("baseline"))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    print(path)
    return 0


@guarded
def inspect_main(argv: list[str]) -> int:
    """`python -m experiments.inspect SOURCE [--tokenizer_file=PATH] [--counts=PATH] [--out=DIR]`."""
    known, extra, positional = split_args(argv, ("tokenizer_file", "counts", "out"))
    if extra or len(positional) != 1:
        raise ConfigError(
            f"got {[*positional, *extra]!r}; allowed: one SOURCE (a word2vec, GloVe, fastText, .npy or .safetensors "
            "file, a Hugging Face model folder or a run directory), --tokenizer_file=PATH, --counts=PATH, --out=DIR"
        )
    from .inspector import inspect

    source = positional[0]
    out = known.get("out") or os.path.join("runs", "inspect", os.path.basename(os.path.normpath(source)))
    report = inspect(source, out, tokenizer_file=known.get("tokenizer_file"), counts=known.get("counts"))
    for key in ("emb/norm_mean", "emb/cos_mean", "emb/isotropy", "emb/isoscore", "emb/eff_rank"):
        if key in report:
            print(f"  {key:22s} {report[key]:.4f}")
    print(f"inspection: {out}\n  report.md, report.json, embedding_space.html, vectors.tsv, metadata.tsv")
    return 0


@guarded
def view_main(argv: list[str]) -> int:
    """`python -m experiments.view RUN_OR_SWEEP_DIR [--members=NAME,PATTERN,...] [--out=PATH]
    [--highlight=BENCHMARK,...]`."""
    known, extra, positional = split_args(argv, ("members", "out", "highlight"))
    if extra or len(positional) != 1 or not os.path.isdir(positional[0]):
        raise ConfigError(
            f"got {[*positional, *extra]!r}; allowed: one run or sweep directory, "
            "--members=NAME,PATTERN,..., --out=PATH and --highlight=BENCHMARK,..."
        )
    from .config import ANALOGY_NAMES, SIMILARITY_NAMES
    from .viewer import write_page

    members = [m for m in known["members"].split(",") if m] if known.get("members") else None
    highlight = [h.strip() for h in known.get("highlight", "").strip("[]").split(",") if h.strip()] or None
    for h in highlight or ():
        if h not in SIMILARITY_NAMES + ANALOGY_NAMES and not os.path.isfile(h):
            raise ConfigError(
                f"--highlight: got {h!r}; allowed: {' | '.join(SIMILARITY_NAMES + ANALOGY_NAMES)}, a pairs or "
                "analogy file, or a comma-separated list of them"
            )
    try:
        path = write_page(positional[0], members=members, out=known.get("out"), highlight=highlight)
    except ValueError as err:  # no snapshots, --members with a run, or a file in the run that does not parse
        raise ConfigError(str(err)) from None
    except OSError as err:
        raise ConfigError(
            f"{err.filename or known.get('out')}: {err.strerror}; allowed: readable run files and "
            "an --out path in an existing, writable folder"
        ) from None
    print(path)
    return 0
