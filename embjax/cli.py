"""The commands behind experiments/*: each parses its arguments (embjax.args), calls the library, says what it did."""

from __future__ import annotations

import glob
import os

from .args import as_bool, as_count, baseline_dir, fail, guarded, split_args
from .config import ConfigError, load_config, parse_value
from .runtime.hostmem import keep_freed_memory


@guarded
def train_main(argv: list[str]) -> int:
    keep_freed_memory()  # a training process: tune malloc before JAX starts its threads (see hostmem)
    known, overrides, positional = split_args(argv, ("config", "overwrite"))
    from .runtime.mesh import maybe_initialize_distributed

    maybe_initialize_distributed()  # before any device use, when a cluster environment is present
    if positional:
        raise ConfigError(f"{positional[0]}: unexpected argument; allowed: --config PATH and --section.key=value")
    sweep_id, run_id = os.environ.get("WANDB_SWEEP_ID"), os.environ.get("WANDB_RUN_ID")
    if sweep_id and run_id and not any(o.lstrip("-").startswith("name=") for o in overrides):
        # launched by `wandb agent`: one directory per agent run, grouped by sweep
        base = load_config(known.get("config"), overrides)
        overrides = overrides + [f"--name={run_id}", f"--out_dir={os.path.join(base.out_dir, sweep_id)}"]
    cfg = load_config(known.get("config"), overrides)
    from .runtime.checkpoint import CheckpointError
    from .train.runner import train

    try:
        summary = train(cfg, overwrite=as_bool("overwrite", known.get("overwrite")))
    except CheckpointError as err:
        return fail(str(err))
    run_dir = summary["run_dir"]
    steps = summary.get("steps", cfg.steps)  # the run's own: --epochs resolves them once the corpus is read
    print(
        f"\n{summary['status']} at step {summary['step']}/{steps} in {summary['wall_time_s']:.1f} s "
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
    known, overrides, positional = split_args(argv, ("out_dir", "vectorize", "progress", "overwrite", "baseline"))
    if len(positional) != 1:
        raise ConfigError(
            f"got {len(positional)} sweep files; allowed: exactly one, "
            "e.g. python -m experiments.sweep sweeps/quickstart.yaml"
        )
    from .config import parse_overrides
    from .train.runner import run_sweep

    progress = as_bool("progress", known["progress"]) if "progress" in known else True
    summaries = run_sweep(
        positional[0],
        out_dir=known.get("out_dir"),
        overrides=parse_overrides(overrides),
        vectorize=known.get("vectorize", "auto"),
        progress=progress,
        overwrite=as_bool("overwrite", known.get("overwrite", "false")),
        baseline=baseline_dir(known),
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

    from .data.prepare import prepare, read_meta

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
    flags = ("out_dir", "quick", "progress", "overwrite", "wandb-report", "jobs")
    known, overrides, positional = split_args(argv, flags)
    from .config import parse_overrides
    from .findings.pipeline import run_findings

    progress = as_bool("progress", known.get("progress", "true"))
    given = {**({} if progress else {"log.progress": False}), **parse_overrides(overrides)}  # (prepare's bars too)
    run_findings(
        positional,
        known.get("out_dir", "runs"),
        given,
        quick=as_bool("quick", known.get("quick", "false")),
        progress=progress,
        overwrite=as_bool("overwrite", known.get("overwrite", "false")),
        wandb_report=as_bool("wandb-report", known.get("wandb-report", "false")),
        jobs=as_count("jobs", known.get("jobs", "1")),
    )
    return 0


@guarded
def dashboard_main(argv: list[str]) -> int:
    """`python -m experiments.dashboard SWEEP_DIR [--entity=E] [--project=P]`: the sweep's W&B workspace."""
    known, extra, positional = split_args(argv, ("entity", "project"))
    if extra or len(positional) != 1 or not os.path.isfile(os.path.join(positional[0], "sweep.yaml")):
        raise ConfigError(
            f"got {[*positional, *extra]!r}; allowed: one sweep directory (with its sweep.yaml), --entity=E, "
            "--project=P"
        )
    from .outputs.dashboard import save_workspace, sweep_log, write_workspace

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
    from .train.baseline import Spec, train_baseline, train_curve

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
        sg=as_bool("sg", known["sg"]) if "sg" in known else Spec.sg,
        keep_unk=as_bool("keep_unk", known["keep_unk"]) if "keep_unk" in known else False,
        epochs=epochs[0],
        **{k: integer(k, getattr(Spec, k)) for k in ("dim", "window", "negative", "workers")},
    ).check()
    if not any(o.lstrip("-").startswith("name=") for o in overrides):
        overrides = [*overrides, f"--name={spec.method}{'-sg' if spec.sg else ''}"]
    cfg = load_config(known.get("config"), overrides)
    overwrite = as_bool("overwrite", known.get("overwrite", "false"))
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
    from .outputs.report import make_report

    try:
        path = make_report(positional[0], baseline=baseline_dir(known))
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
    from .outputs.inspector import inspect

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
    from .outputs.viewer import write_page

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
