"""The code's shape, checked: imports point only downwards through the layers the README draws,
functions stay short, and the run interface works without a disk."""

import ast
import glob
import os

import numpy as np
import pytest

from tests.conftest import ROOT, TINY

# Top to bottom, as drawn in the README's "Architecture"; a module may import only from layers below its own.
LAYERS = [
    {"commands"},
    {"cli", "bench"},
    {"runner", "findings", "inspector", "baseline"},
    {"loop"},
    {"rundir", "report", "observe"},
    {"viewer", "benchmark_report"},
    {"step", "sweep"},
    {"models"},
    {"data", "metrics", "mesh", "profiler"},
    {"prepare"},
    {"sources"},
    {"config", "embedding", "sinks", "checkpoint", "signals", "scaling", "hostmem", "evals", "snapshots", "pretrained"},
    {"stats"},
]


def _imports(path):
    """The embjax modules a file imports, lazily imported ones included."""
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out |= {node.module} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("embjax."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("embjax.")}
    return out


def test_imports_point_only_downwards():
    layer = {m: i for i, group in enumerate(LAYERS) for m in group}
    modules = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "embjax", "*.py"))} - {"__init__"}
    assert modules == set(layer), "every module has a layer (update LAYERS and the README together)"
    upward = [
        (m, dep) for m in modules for dep in _imports(os.path.join(ROOT, "embjax", f"{m}.py")) if layer[dep] <= layer[m]
    ]
    assert upward == []


def test_no_function_over_60_lines_and_a_short_loop():
    long = []
    for path in glob.glob(os.path.join(ROOT, "embjax", "*.py")):
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{os.path.basename(path)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []
    assert len(open(os.path.join(ROOT, "embjax", "loop.py")).read().splitlines()) <= 250


@pytest.mark.slow
def test_a_memory_run_trains_without_touching_disk_like_a_run_directory(tmp_path, monkeypatch):
    """The loop through the Run interface alone: a MemoryRun's rows equal a RunDir run's metrics.jsonl,
    nothing is written, and a second loop over the same MemoryRun resumes from its in-memory checkpoint."""
    from embjax.cli import train_main
    from embjax.config import load_config, replace
    from embjax.data import make_corpus
    from embjax.loop import Loop
    from embjax.rundir import MemoryRun
    from embjax.signals import Signals
    from embjax.sinks import read_jsonl
    from embjax.step import Program

    args = [a for a in TINY if not a.startswith("--steps")] + ["--steps=20", "--log.wandb=false"]
    assert train_main(args + [f"--out_dir={tmp_path}", "--name=disk"]) == 0
    disk = read_jsonl(tmp_path / "disk" / "metrics.jsonl")

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)  # anything written to a relative path would land here
    cfg = load_config(None, args + ["--out_dir=nowhere"])
    run = MemoryRun(cfg)
    program = Program(cfg, make_corpus(cfg))
    with Signals() as sig:
        (summary,) = Loop(program, vmapped=False, signals=sig, show=False).train([run])
    assert os.listdir(empty) == []
    memory = [{"step": s, **{k: v for k, v in r.items() if not k.startswith("perf/")}} for s, r in run.sink.rows]
    assert [r["step"] for r in memory] == [r["step"] for r in disk]
    for a, b in zip(disk, memory):
        for k, v in a.items():
            assert b[k] == pytest.approx(v, rel=1e-6, abs=1e-9), (a["step"], k)
    assert summary["status"] == "finished" and run.sink.status == "finished" and sorted(run.checkpoints) == [10, 20]
    np.testing.assert_allclose(run.outcome.E, np.load(tmp_path / "disk" / "embeddings.npy"), rtol=1e-6)

    longer = MemoryRun(replace(cfg, steps=30))
    longer.checkpoints = run.checkpoints  # the same run, extended: resumes from step 20
    program = Program(longer.cfg, make_corpus(longer.cfg))
    with Signals() as sig:
        Loop(program, vmapped=False, signals=sig, show=False).train([longer])
    assert [s for s, _ in longer.sink.rows] == [25, 30] and longer.outcome.start == 20
