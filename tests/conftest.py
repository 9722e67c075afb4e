"""Shared helpers: tiny configs that compile in seconds, and a subprocess runner for the CLI."""

import json
import os
import subprocess
import sys
import time

import pytest

# XLA compiles the suite's hundreds of small programs with LLVM's optimisation off: compiling is most of the
# suite's time. The HLO passes are unchanged; the machine code is less tuned, and float results may differ
# from an optimised build's in the last bits (~1e-6 relative), far inside every tolerance (bit-for-bit tests
# compare runs built alike). EMBJAX_TEST_XLA_OPT=default runs the suite as users' runs compile. Processes a
# test starts on several virtual devices (the meshes, several processes) compile alike: `devices_flags(n)`.
USER_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")  # for a test process that runs a long training as users compile it
TEST_XLA_OPT = ""
if os.environ.get("EMBJAX_TEST_XLA_OPT", "0") != "default" and "optimization_level" not in USER_XLA_FLAGS:
    TEST_XLA_OPT = "--xla_backend_optimization_level=0"
    os.environ["XLA_FLAGS"] = f"{USER_XLA_FLAGS} {TEST_XLA_OPT}".strip()


def devices_flags(n: int) -> str:
    """XLA_FLAGS for a test's subprocess on n virtual CPU devices, compiled as the suite compiles."""
    return f"--xla_force_host_platform_device_count={n} {TEST_XLA_OPT}".strip()


os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# one compilation cache for the whole session (fresh per CI run): runs of one shape compile once
if "EMBJAX_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["EMBJAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="embjax-xla-")
# prepared token files (embjax.data.prepare) go to a fresh folder too, never the user's ~/.cache
if "EMBJAX_DATA_DIR" not in os.environ:
    import tempfile

    os.environ["EMBJAX_DATA_DIR"] = tempfile.mkdtemp(prefix="embjax-data-")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# this process (and each xdist worker) uses that cache too: a program compiled by one test, a subprocess
# or another worker is read back, not compiled again, wherever its HLO is the same
from embjax.config import enable_compile_cache  # noqa: E402

enable_compile_cache("auto")


# the longest files, as measured (pytest --durations): started first, so that with one worker per core and
# files kept whole the short files fill the end
LONGEST_FIRST = [  # 2026-12-07, seconds per file on 2 cores: 200, 161, 118, 117, 99, 92, 86, 80, 78, 71, 67, 64, ...
    "test_multiprocess.py",
    "test_faults.py",
    "test_rare_tokens.py",
    "test_mup.py",
    "test_train.py",
    "test_real_language.py",
    "test_pretrained.py",
    "test_dropout_lstm.py",
    "test_selection.py",
    "test_mesh.py",
    "test_rough_edges.py",
    "test_accelerators.py",
    "test_dashboard.py",
    "test_sweep.py",
    "test_lazy_rows.py",
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's tests keep their order


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per core, at most 4 (each worker and its subprocesses import JAX and compile)."""
    return max(1, min(len(os.sched_getaffinity(0)), 4))


# A tiny but complete experiment: every section present, small enough to compile in a few seconds.
TINY = [
    "--data.vocab_size=64",
    "--data.num_classes=4",
    "--data.seq_len=16",
    "--data.batch_size=8",
    "--data.eval_batches=2",
    "--model.embed_dim=16",
    "--model.num_layers=1",
    "--model.num_heads=2",
    "--steps=30",
    "--log.every=5",
    "--log.metrics_every=10",
    "--log.eval_every=10",
    "--checkpoint.every=10",
    "--optim.warmup_steps=5",
    "--log.progress=false",
]


def run_cli(module, *args, timeout=300, env=None):
    """Run `python -m module args` from the repo root; returns the CompletedProcess."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env
    )


@pytest.fixture
def tiny(tmp_path):
    """CLI arguments for a tiny run writing under tmp_path (W&B off unless a test turns it on)."""
    return TINY + [f"--out_dir={tmp_path}", "--log.wandb=false"]


def hold_lock(run_dir):
    """Another process holding `run_dir`'s run lock (until killed)."""
    code = f"from embjax.outputs.lock import RunLock; RunLock({str(run_dir)!r}).acquire(); import time; "
    code += "print('held', flush=True); time.sleep(300)"
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def on_8_devices(code, *args, timeout=300):
    """`python -c code args` on 8 virtual CPU devices (XLA_FLAGS), from the repo root: the CompletedProcess."""
    env = dict(os.environ, XLA_FLAGS=devices_flags(8))
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout
    )


def wait_for_row(path, step, proc, timeout=120):
    t = time.time()
    while time.time() - t < timeout:
        if os.path.exists(path):
            with open(path) as f:
                steps = [json.loads(line)["step"] for line in f if line.strip().endswith("}")]
            if steps and max(steps) >= step:
                return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no row for step {step} within {timeout} s")


def wandb_records(path):
    """The records of an offline `.wandb` file written by this process. `run.finish()` only tells W&B's service
    that the run is done; the service closes the file afterwards, on its own schedule (under load, after the
    test has read it). `wandb.teardown()` waits for every stream to close, as the end of a process does."""
    import wandb

    from embjax.outputs.sinks import read_wandb_records

    wandb.teardown()
    records = list(read_wandb_records(path))
    kinds = [r.WhichOneof("record_type") for r in records]
    assert "run" in kinds and "exit" in kinds, (path, os.path.getsize(path), kinds)
    return records
