"""Mixed precision, bfloat16 tables, XLA matmul precision, the profiler hook, members per chunk and the members
bench."""

import glob
import json
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from embjax.cli import train_main
from embjax.config import load_config
from embjax.data.corpus import make_corpus
from embjax.train.step import Program, hparams
from tests.conftest import TINY


def _program(*extra):
    cfg = load_config(
        None,
        [
            *TINY,
            "--optim.name=sgd",
            "--optim.momentum=0",
            "--optim.lr=0.05",
            "--optim.grad_clip=0",
            "--optim.warmup_steps=0",
            "--optim.schedule=constant",
            "--embedding.init_std=1.0",
            *extra,
        ],
    )
    return cfg, Program(cfg, make_corpus(cfg))


@pytest.mark.slow
@pytest.mark.parametrize("param_dtype", ["float32", "bfloat16"])
def test_bfloat16_tables_lose_updates_below_their_resolution(param_dtype):
    """One SGD step on E: each entry becomes round(E + u) in the parameter dtype, u = -lr·g (NumPy reference).
    In float32 every row with a gradient moves; in bfloat16 (8 bits of mantissa) most small updates to rows
    of size ~1 round away, and the rows a rare token would have learned from stay where they were."""
    cfg, P = _program(f"--model.param_dtype={param_dtype}")
    state = jax.jit(P.init)(0, hparams(cfg))
    params = state["params"]
    assert P.tables.get(params).dtype == jnp.dtype(param_dtype)
    batch = P.batch(P.corpus.tables, state)
    g = np.asarray(P.tables.get(jax.jit(jax.grad(P.loss))(params, state["hp"], batch)), np.float32)
    E0 = np.asarray(P.tables.get(params)).astype(np.float32)
    new, _ = jax.jit(P.step)(state, batch)
    E1 = np.asarray(P.tables.get(new["params"]))
    expected = (E0 + np.float32(-0.05) * g).astype(ml_dtypes.bfloat16 if param_dtype == "bfloat16" else np.float32)
    # the compiled step's gradient may differ from jax.grad's in the last float32 bit: allow one step of the
    # parameter dtype on a few entries
    off = E1.astype(np.float32) != expected.astype(np.float32)
    assert off.mean() < 0.02
    step = 2.0**-7 if param_dtype == "bfloat16" else 2.0**-21  # two steps of the dtype
    gap = np.abs(E1.astype(np.float64) - expected.astype(np.float64))
    assert np.all(gap <= step * (np.abs(E0) + np.abs(0.05 * g))), gap.max()
    touched = np.any(g != 0, axis=1)
    moved = np.any(E1.astype(np.float32) != E0, axis=1)
    assert touched.sum() > 10
    if param_dtype == "float32":
        assert moved[touched].all()
    else:  # the loss the test is about: entries whose update is under half a bfloat16 step do not change
        entry_moved = E1.astype(np.float32) != E0
        assert entry_moved.sum() < 0.5 * (g != 0).sum()
        half_step = np.abs(E0) * 2.0**-9
        assert not entry_moved[np.abs(0.05 * g) < 0.99 * half_step].any()


@pytest.mark.slow
def test_bfloat16_parameters_keep_float32_adam_state():
    """With bfloat16 parameters Adam's moments stay float32: in bfloat16, b2 = 0.95 or 0.999 rounds (0.999 to
    1.0), and the second moment would stop decaying. After two steps ν equals the float32 recurrence."""
    cfg = load_config(
        None, [*TINY, "--model.param_dtype=bfloat16", "--optim.name=adamw", "--optim.b2=0.999", "--optim.grad_clip=0"]
    )
    P = Program(cfg, make_corpus(cfg))
    state = jax.jit(P.init)(0, hparams(cfg))
    step = jax.jit(P.step)
    grads = []
    for _ in range(2):
        batch = P.batch(P.corpus.tables, state)
        g = jax.jit(jax.grad(P.loss))(state["params"], state["hp"], batch)
        grads.append(np.asarray(P.tables.get(g), np.float64))
        state, _ = step(state, batch)
    dtypes = {x.dtype for x in jax.tree.leaves(state["opt_state"]) if hasattr(x, "dtype") and x.ndim > 0}
    assert dtypes == {jnp.dtype(jnp.float32)}
    assert P.tables.get(state["params"]).dtype == jnp.bfloat16
    nu = [
        x
        for p, x in jax.tree_util.tree_leaves_with_path(state["opt_state"])
        if "nu" in jax.tree_util.keystr(p) and "embed" in jax.tree_util.keystr(p)
    ][0]
    ref = 0.999 * (0.001 * grads[0] ** 2) + 0.001 * grads[1] ** 2
    np.testing.assert_allclose(np.asarray(nu, np.float64), ref, rtol=2e-2, atol=1e-12)


def test_matmul_precision_reaches_xla():
    """model.matmul_precision is the precision of every dot in the lowered step (none marked at 'default')."""
    texts = {}
    for prec in ("default", "highest"):
        cfg, P = _program(f"--model.matmul_precision={prec}")
        state = jax.jit(P.init)(0, hparams(cfg))
        texts[prec] = jax.jit(P.train_steps, static_argnums=2).lower(state, P.corpus.tables, 1).as_text()
    assert "HIGHEST" not in texts["default"]
    assert texts["highest"].count("HIGHEST") >= 10  # forward and backward matmuls of the block and the head


@pytest.mark.slow
def test_profile_steps_write_a_trace(tmp_path):
    assert (
        train_main(TINY + [f"--out_dir={tmp_path}", "--log.wandb=false", "--name=p", "--log.profile_steps=10:20"]) == 0
    )
    xplane = glob.glob(str(tmp_path / "p" / "profile" / "plugins" / "profile" / "*" / "*.xplane.pb"))
    perfetto = glob.glob(str(tmp_path / "p" / "profile" / "plugins" / "profile" / "*" / "*.trace.json.gz"))
    assert len(xplane) == 1 and len(perfetto) == 1
    import gzip

    trace = json.loads(gzip.open(perfetto[0]).read())
    names = {e.get("name", "") for e in trace["traceEvents"]}
    assert any("train_steps" in n for n in names)  # the jitted chunk ran while tracing
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 30


def test_profile_steps_are_checked():
    from embjax.config import ConfigError

    for bad in ("5", "20:10", "0:31", "a:b"):
        with pytest.raises(ConfigError, match="log.profile_steps"):
            load_config(None, [*TINY, f"--log.profile_steps={bad}"])


@pytest.mark.slow
def test_group_larger_than_the_memory_budget_trains_in_chunks(tmp_path, monkeypatch):
    """With a budget for two members, a 4-member vmapped group trains as two chunks of two, each member
    exactly as when it trains alone."""
    from embjax.train.memory import member_bytes
    from embjax.train.runner import train, train_group

    cfgs = [
        load_config(
            None,
            [
                *TINY,
                f"--out_dir={tmp_path}",
                "--log.wandb=false",
                f"--name=m{i}",
                f"--seed={i}",
                "--steps=10",
                "--checkpoint.every=0",
            ],
        )
        for i in range(4)
    ]
    per = member_bytes(Program(cfgs[0], make_corpus(cfgs[0])))
    assert per > 4 * 64 * 16 * 3  # at least the table, its two Adam moments (float32)
    monkeypatch.setenv("EMBJAX_MEMORY_BUDGET", str(int(2.5 * per / 0.9)))
    summaries = train_group(cfgs, vectorize=True, progress=False)
    assert [s["vectorized_members"] for s in summaries] == [2, 2, 2, 2]
    assert all(s["status"] == "finished" for s in summaries)
    monkeypatch.delenv("EMBJAX_MEMORY_BUDGET")
    from embjax.config import replace

    alone = train(replace(cfgs[3], name="alone"))
    assert alone["vectorized_members"] == 1
    assert summaries[3]["eval/loss"] == pytest.approx(alone["eval/loss"], rel=2e-4)
    assert summaries[2]["eval/loss"] != pytest.approx(alone["eval/loss"], rel=2e-4)  # members differ


@pytest.mark.slow
def test_members_bench_runs_on_cpu():
    from tests.conftest import run_cli

    out = run_cli(
        "experiments.bench",
        "--case=members",
        "--members=1,2",
        "--steps=2",
        "--json",
        "--set=data.seq_len=16",
        "--set=data.batch_size=8",
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["members"] for r in rows] == [1, 2]
    for r in rows:
        assert r["tokens_per_s"] > 0 and r["bytes_per_member"] > 0 and r["chunk"] == r["members"]
        assert r["tokens_per_s_per_member"] == pytest.approx(r["tokens_per_s"] / r["members"])
    # two members need more memory in all than one, and less than two separate programs' worth
    assert rows[0]["bytes_per_member"] < 2 * rows[1]["bytes_per_member"] < 2 * rows[0]["bytes_per_member"] * 1.01


@pytest.mark.slow
def test_train_bench_reports_host_time_cpu_time_and_page_faults_per_step():
    """bench --case=train, one step per dispatch: the host's time per dispatch lies within the step's wall time,
    and the process's CPU time per step within what the machine's cores can give in that wall time."""
    from tests.conftest import run_cli

    tiny = ["--set=data.vocab_size=64", "--set=model.embed_dim=16", "--set=data.seq_len=16", "--set=data.batch_size=4"]
    out = run_cli("experiments.bench", "--case=train", "--steps=6", "--per-dispatch=1", "--json", *tiny)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["steps_per_dispatch"] == 1 and row["step_ms"] > 0
    assert 0 < row["dispatch_ms"] <= row["step_ms"]
    assert 0 < row["cpu_ms_per_step"] <= (os.cpu_count() or 1) * row["step_ms"] * 1.05
    assert row["page_faults"] >= 0


_REUSE = """
import resource, numpy as np
np._core.multiarray._set_madvise_hugepage(False)  # count 4 KB pages
from embjax.runtime.hostmem import keep_freed_memory
print(keep_freed_memory())
def dispatch():  # a buffer as large as a dispatch's temporaries, allocated, written and freed
    a = np.ones(16 * 2**20, np.float32)
    del a
dispatch()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
dispatch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


@pytest.mark.parametrize("malloc", ["tuned", "system"])
def test_freed_host_memory_is_reused_not_faulted_in_again(malloc):
    """hostmem: the second 64 MB allocation reuses the first one's pages (no page faults); glibc's defaults
    hand them back to the kernel, and every one of the 16,384 pages is faulted in again."""
    import subprocess
    import sys

    env = dict(os.environ, EMBJAX_MALLOC="system" if malloc == "system" else "")
    out = subprocess.run([sys.executable, "-c", _REUSE], capture_output=True, text=True, env=env, check=True)
    applied, faults = out.stdout.split()
    if malloc == "tuned":
        assert applied == "True" and int(faults) < 100
    else:
        assert applied == "False" and int(faults) >= 16 * 2**20 * 4 // 4096
