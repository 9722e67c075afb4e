"""The code's shape, checked: imports point only downwards through the layers the README draws,
functions stay short, and the run interface works without a disk."""

import ast
import glob
import os

import numpy as np
import pytest

from tests.conftest import ROOT, TINY

# Top to bottom, as drawn in the README's map of the wings; a unit may import only from layers below its own. A
# wing (model, data, analysis, runtime, train, outputs) or package (findings, bench) is one unit: every module in it,
# at any depth, has the unit's layer, and imports freely inside its own unit.
LAYERS = [
    {"commands"},
    {"cli", "bench"},
    {"findings"},
    {"train"},
    {"outputs"},
    {"analysis"},
    {"model", "data"},
    {"runtime", "sweep", "args"},
    {"config"},
]
# Inside embjax/findings/: the shared base every finding module may import; a finding never imports another
FINDINGS_BASE = {"verdict", "runs", "plotting", "bootstrap", "pairs", "learned"}
FINDINGS_TOP = {"__init__", "document", "wandb_report", "pipeline"}  # the registry, the writers and the pipeline


def modules(root=None):
    """Every module of the library at any depth: {dotted name: path}, e.g. 'embjax.findings.runs'."""
    root = root or os.path.join(ROOT, "embjax")
    out = {}
    for path in glob.glob(os.path.join(root, "**", "*.py"), recursive=True):
        rel = os.path.relpath(path, os.path.dirname(root))[:-3].split(os.sep)
        out[".".join(rel[:-1] if rel[-1] == "__init__" else rel)] = path
    return out


def imports(name, path):
    """The absolute dotted names a module imports, relative imports resolved and lazy (in-function) ones included:
    `from .x import y` in embjax.findings.a is embjax.findings.x (and embjax.findings.x.y where that is a module)."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            if base.startswith("embjax"):
                out.add(base)
                out |= {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("embjax.")}
    return out


def upward_imports(mods):
    """(module, what it imports) for every import of a layer at or above the module's own (its package's)."""
    layer = {m: i for i, group in enumerate(LAYERS) for m in group}
    bad = []
    for name, path in mods.items():
        top = name.split(".")[1] if name != "embjax" else None
        for dep in imports(name, path) if top else ():
            if dep in mods and dep != "embjax" and (d := dep.split(".")[1]) != top and layer[d] <= layer[top]:
                bad.append((name, dep))
    return bad


def cross_finding_imports(mods):
    """(module, what it imports) for a finding module (or a shared base module) importing a module of the findings
    package outside the shared base: another finding, the registry or the writers."""
    inside = {n.split(".")[2] for n in mods if n.startswith("embjax.findings.")}
    bad = []
    for name in inside - FINDINGS_TOP:
        for dep in imports(f"embjax.findings.{name}", mods[f"embjax.findings.{name}"]):
            parts = dep.split(".")
            if parts[:2] == ["embjax", "findings"] and (len(parts) == 2 or (dep in mods and parts[2] != name)):
                if len(parts) == 2 or parts[2] not in FINDINGS_BASE:
                    bad.append((name, dep))
    return bad


def test_imports_point_only_downwards():
    mods = modules()
    layer = {m for group in LAYERS for m in group}
    assert {n.split(".")[1] for n in mods if n != "embjax"} == layer, (
        "every module or package has a layer (update LAYERS and the README together)"
    )
    assert upward_imports(mods) == []


def test_a_finding_module_imports_the_shared_base_and_lower_layers_never_another_finding():
    from embjax import findings

    mods = modules()
    inside = {n.split(".")[2] for n in mods if n.startswith("embjax.findings.")}
    assert inside - FINDINGS_BASE - FINDINGS_TOP == {m.__name__.split(".")[-1] for m in findings.MODULES}
    assert cross_finding_imports(mods) == []


def test_the_rules_catch_an_upward_import_a_lazy_one_and_a_finding_importing_another(tmp_path):
    """The two checks above on a made-up tree with one violation of each kind: each is found."""
    pkg = tmp_path / "embjax"
    (pkg / "findings").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "analysis").mkdir()
    (pkg / "train").mkdir()
    (pkg / "analysis" / "stats.py").write_text("from ..train.runner import x\n")  # a low wing importing a high one
    (pkg / "train" / "runner.py").write_text("")
    (pkg / "outputs").mkdir()
    (pkg / "outputs" / "report.py").write_text("")
    (pkg / "cli.py").write_text("")
    (pkg / "findings" / "__init__.py").write_text("from . import a, b\n")
    (pkg / "findings" / "runs.py").write_text("from ..outputs.runs import get\n")
    (pkg / "findings" / "a.py").write_text("from .runs import load\nfrom .b import f\n")  # a finding importing another
    (pkg / "findings" / "b.py").write_text("def f():\n    from embjax.cli import main\n")  # a lazy upward import
    mods = modules(str(pkg))
    assert sorted(upward_imports(mods)) == [
        ("embjax.analysis.stats", "embjax.train.runner"),
        ("embjax.findings.b", "embjax.cli"),
    ]
    assert cross_finding_imports(mods) == [("a", "embjax.findings.b")]


def test_no_module_is_over_400_lines_but_the_config_dataclasses():
    long = {n: len(open(p).read().splitlines()) for n, p in modules().items() if n != "embjax.config"}
    assert {n: k for n, k in long.items() if k > 400} == {}


def test_no_function_over_60_lines_and_a_short_loop():
    long = []
    for path in modules().values():
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{os.path.basename(path)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []
    assert len(open(os.path.join(ROOT, "embjax", "train", "loop.py")).read().splitlines()) <= 250


@pytest.mark.slow
def test_a_memory_run_trains_without_touching_disk_like_a_run_directory(tmp_path, monkeypatch):
    """The loop through the Run interface alone: a MemoryRun's rows equal a RunDir run's metrics.jsonl,
    nothing is written, and a second loop over the same MemoryRun resumes from its in-memory checkpoint."""
    from embjax.cli import train_main
    from embjax.config import load_config, replace
    from embjax.data.corpus import make_corpus
    from embjax.outputs.run import MemoryRun
    from embjax.outputs.sinks import read_jsonl
    from embjax.runtime.signals import Signals
    from embjax.train.loop import Loop
    from embjax.train.step import Program

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
