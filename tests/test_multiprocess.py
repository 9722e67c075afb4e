"""Two real processes on localhost (JAX's CPU collectives, 2 virtual devices each) against one process with 4."""

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, TINY, devices_flags, hold_lock, run_cli, wait_for_row

ARGS = [a for a in TINY if not a.startswith("--steps")] + [
    "--steps=20",
    "--log.wandb=false",
    "--mesh.data=2",
    "--mesh.model=2",
    "--model.tie_embeddings=false",
]
FOUR = {"XLA_FLAGS": devices_flags(4)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_pair(*args, per_process=((), ())):
    """Processes 0 and 1 of one run (per_process: arguments for each alone); process 1 creates files with mode
    0600 (umask 077), process 0 with 0644 (umask 022), so every file says which process wrote it."""
    port, procs = free_port(), []
    for pid, mask in ((0, 0o022), (1, 0o077)):
        env = dict(
            os.environ,
            PYTHONUNBUFFERED="1",
            XLA_FLAGS=devices_flags(2),
            JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
            JAX_NUM_PROCESSES="2",
            JAX_PROCESS_ID=str(pid),
            EMBJAX_DISTRIBUTED_TIMEOUT="60",
        )
        cmd = ["/bin/sh", "-c", f'umask {mask:03o} && exec "$0" "$@"', sys.executable, "-m", "experiments.train"]
        procs.append(
            subprocess.Popen(
                [*cmd, *ARGS, *args, *per_process[pid]],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def finish(procs, timeout=120):
    outs = [p.communicate(timeout=timeout) for p in procs]
    return [p.returncode for p in procs], "\n".join(err for _, err in outs)


def rows(path):
    return {r["step"]: r for r in map(json.loads, open(path))}


def assert_same_losses(a, b, steps):
    for s in steps:
        for k in ("train/loss", "eval/loss"):
            if k in a[s]:
                assert b[s][k] == pytest.approx(a[s][k], rel=1e-5), (s, k)


def writers(run_dir):
    """{file (relative): 'p0' | 'p1'} by the mode its creator's umask left."""
    out = {}
    for base, _, files in os.walk(run_dir):
        for f in files:
            path = os.path.join(base, f)
            out[os.path.relpath(path, run_dir)] = "p1" if not os.stat(path).st_mode & stat.S_IRGRP else "p0"
    return out


@pytest.mark.slow
def test_two_processes_equal_one_and_checkpoints_cross_over(tmp_path):
    out = [f"--out_dir={tmp_path}"]
    # the reference: one process, 4 devices, 20 steps, then extended to 30
    assert run_cli("experiments.train", *ARGS, *out, "--name=ref", env=FOUR).returncode == 0
    shutil.copytree(tmp_path / "ref", tmp_path / "copy" / "ref")  # one process's step 20, resumed below by two
    assert run_cli("experiments.train", *ARGS, *out, "--name=ref", "--steps=30", env=FOUR).returncode == 0
    ref = rows(tmp_path / "ref" / "metrics.jsonl")
    assert sorted(ref) == [0, 5, 10, 15, 20, 25, 30]

    codes, err = finish(start_pair(*out, "--name=two"))
    assert codes == [0, 0], err
    two = rows(tmp_path / "two" / "metrics.jsonl")
    assert sorted(two) == [0, 5, 10, 15, 20]
    assert_same_losses(ref, two, [0, 5, 10, 15, 20])
    who = writers(tmp_path / "two")
    assert {f for f, w in who.items() if w == "p1" and not f.startswith("checkpoints")} == set(), who
    for f in (
        "config.yaml",
        "metrics.jsonl",
        "summary.json",
        "embeddings.npy",
        "tokens.tsv",
        "snapshots/rows.npy",
        "snapshots/000000020.npz",
        "embedding_space.html",
    ):
        assert who[f] == "p0", f
    import numpy as np

    from embjax.outputs import snapshots

    f2, f1 = snapshots.read(str(tmp_path / "two")), snapshots.read(str(tmp_path / "copy" / "ref"))  # ref at step 20
    assert f2.steps.tolist() == f1.steps.tolist() == [0, 5, 10, 15, 20]
    assert np.allclose(f2.E.astype(np.float32), f1.E.astype(np.float32), rtol=1e-2, atol=1e-3)
    assert any(w == "p1" for f, w in who.items() if f.startswith("checkpoints")), "process 1 wrote no shard"
    s = json.load(open(tmp_path / "two" / "summary.json"))
    assert s["process_count"] == 2 and len(s["devices"]) == 4 and s["status"] == "finished"

    # a checkpoint of two processes resumes in one, and one process's in two: the same following losses
    r = run_cli("experiments.train", *ARGS, *out, "--name=two", "--steps=30", env=FOUR)
    assert r.returncode == 0 and "from step 20" in r.stderr, r.stderr
    assert_same_losses(ref, rows(tmp_path / "two" / "metrics.jsonl"), [25, 30])
    codes, err = finish(start_pair(f"--out_dir={tmp_path / 'copy'}", "--name=ref", "--steps=30"))
    assert codes == [0, 0], err
    assert_same_losses(ref, rows(tmp_path / "copy" / "ref" / "metrics.jsonl"), [25, 30])


@pytest.mark.slow
def test_sigterm_to_the_processes_interrupts_both_at_one_step_with_a_resumable_checkpoint(tmp_path):
    out = [f"--out_dir={tmp_path}", "--steps=400", "--checkpoint.every=1000"]
    procs = start_pair(*out)
    wait_for_row(tmp_path / "default" / "metrics.jsonl", 15, procs[0])
    procs[1].send_signal(signal.SIGTERM)  # process 1 first: process 0 must stop at the same step without its own
    time.sleep(0.3)
    procs[0].send_signal(signal.SIGTERM)
    codes, err = finish(procs)
    assert codes == [128 + signal.SIGTERM] * 2, err
    s = json.load(open(tmp_path / "default" / "summary.json"))
    assert s["status"] == "interrupted" and 15 <= s["step"] < 400
    ckpts = sorted(int(d) for d in os.listdir(tmp_path / "default" / "checkpoints") if d.isdigit())
    assert ckpts[-1] == s["step"]  # both processes saved where they stopped, together
    r = run_cli("experiments.train", *ARGS, *out[:1], "--steps=400", "--checkpoint.every=1000", env=FOUR, timeout=300)
    assert r.returncode == 0 and f"from step {s['step']}" in r.stderr, r.stderr
    steps = [json.loads(line)["step"] for line in open(tmp_path / "default" / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 400


@pytest.mark.slow
def test_processes_with_different_out_dirs_stop_at_once_naming_the_key(tmp_path):
    """Process 1 launched with a typo in --out_dir: both processes stop before any training, each with one line
    naming out_dir and both values, exit 2 (before: both hung at the first checkpoint and ignored SIGTERM)."""
    procs = start_pair(per_process=([f"--out_dir={tmp_path / 'runs'}"], [f"--out_dir={tmp_path / 'runz'}"]))
    t0 = time.time()
    codes, errs = zip(*[(p.wait(timeout=120), p.stderr.read()) for p in procs])
    assert codes == (2, 2), errs
    a, b = str(tmp_path / "runs"), str(tmp_path / "runz")
    assert errs[0].strip().splitlines()[-1] == (
        f"error: out_dir: got {a!r} on process 0 but {b!r} on process 1 (1 key(s) differ); allowed: the same "
        "config and out_dir on every process of a run"
    )
    assert f"error: out_dir: got {b!r} on process 1 but {a!r} on process 0" in errs[1]
    assert time.time() - t0 < 60 and not (tmp_path / "runs" / "default" / "checkpoints").exists()


@contextlib.contextmanager
def peer_stopped(tmp_path, *args):
    """A two-process run (100,000 steps, a checkpoint every 10) past step 15 with process 1 frozen by SIGSTOP:
    yields both processes; process 1 is thawed and killed afterwards."""
    procs = start_pair(f"--out_dir={tmp_path}", "--steps=100000", "--checkpoint.every=10", *args)
    try:
        wait_for_row(tmp_path / "default" / "metrics.jsonl", 15, procs[0])
        procs[1].send_signal(signal.SIGSTOP)
        yield procs
    finally:
        procs[1].send_signal(signal.SIGCONT)
        procs[1].kill()
        procs[1].wait()


@pytest.mark.slow
def test_sigterm_ends_a_process_blocked_on_a_stopped_peer(tmp_path, monkeypatch):
    """Process 1 is frozen (SIGSTOP) mid-run, so process 0 blocks in its next collective, where Python never runs
    a signal handler. SIGTERM still ends process 0 within its grace (EMBJAX_STOP_GRACE, 30 s by default; 3 here)
    with one line and exit 143; the run's checkpoints are left for a resume."""
    monkeypatch.setenv("EMBJAX_STOP_GRACE", "3")
    with peer_stopped(tmp_path) as procs:
        time.sleep(1.0)  # process 0 reaches a collective and waits there for process 1
        t0 = time.time()
        procs[0].send_signal(signal.SIGTERM)
        code = procs[0].wait(timeout=60)
        took = time.time() - t0
        err = procs[0].stderr.read()
        assert code == 128 + signal.SIGTERM, err
        assert took < 30, (took, err)
        line = (
            "error: stopped by SIGTERM while waiting for the other processes of the run (blocked for 3 s); run the "
            "same command again to resume from the last checkpoint"
        )
        assert line in err.splitlines(), err  # (the runtime's own threads may log around it)
        assert any(d.isdigit() or "orbax-checkpoint-tmp" in d for d in os.listdir(tmp_path / "default" / "checkpoints"))


@pytest.mark.slow
def test_a_process_blocked_on_a_stopped_peer_gives_up_after_the_wait_timeout(tmp_path):
    """Process 1 is frozen mid-run and nobody sends a signal: process 0, blocked in its next collective, makes no
    progress and ends after mesh.wait_timeout (3 s here) with one line and exit 1."""
    with peer_stopped(tmp_path, "--mesh.wait_timeout=3") as procs:
        t0 = time.time()
        code = procs[0].wait(timeout=90)
        err = procs[0].stderr.read()
        assert code == 1, err
        assert time.time() - t0 < 45, err
        assert any(
            line.startswith("error: no progress for ")
            and line.endswith(
                "s: this process is waiting for the other processes of the run (mesh.wait_timeout = 3 s); run the "
                "same command again to resume from the last checkpoint"
            )
            for line in err.splitlines()
        ), err


@pytest.mark.slow
def test_a_locked_run_stops_every_process_of_a_multi_process_launch(tmp_path):
    """Another process holds the run (its lock): process 0 of a two-process launch is refused, and process 1,
    which checks no lock itself, stops with the same line instead of waiting for process 0 at a barrier."""
    run = str(tmp_path / "default")
    holder = hold_lock(run)
    try:
        procs = start_pair(f"--out_dir={tmp_path}")
        codes, err = finish(procs, timeout=90)
        assert codes == [2, 2], err
        line = f"error: run {run!r} is in use: locked by pid {holder.pid} on host {socket.gethostname()}"
        assert sum(line in e for e in err.splitlines()) == 2, err
        assert not (tmp_path / "default").exists()
    finally:
        holder.kill()
        holder.wait()
