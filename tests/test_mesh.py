"""A device mesh on 8 virtual CPU devices: data × model sharding, exact losses, sharded checkpoints."""

import json
import os
import subprocess
import sys

import pytest

from embjax.cli import train_main
from tests.conftest import ROOT, TINY, devices_flags, run_cli

EIGHT = {"XLA_FLAGS": devices_flags(8)}
ARGS = [a for a in TINY if not a.startswith("--steps")] + ["--steps=20", "--log.wandb=false"]


def losses(path):
    return {r["step"]: r["train/loss"] for r in map(json.loads, open(path)) if "train/loss" in r}


@pytest.mark.slow
def test_4x2_mesh_matches_single_device_and_resumes_on_another_shape(tmp_path):
    assert train_main(ARGS + [f"--out_dir={tmp_path}", "--name=one"]) == 0  # one device, this process
    mesh = run_cli(
        "experiments.train", *ARGS, f"--out_dir={tmp_path}", "--name=mesh", "--mesh.data=4", "--mesh.model=2", env=EIGHT
    )
    assert mesh.returncode == 0, mesh.stderr
    a, b = losses(tmp_path / "one" / "metrics.jsonl"), losses(tmp_path / "mesh" / "metrics.jsonl")
    assert sorted(a) == sorted(b) == [5, 10, 15, 20]
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-3), step
    s = json.load(open(tmp_path / "mesh" / "summary.json"))
    assert s["mesh"] == {"data": 4, "model": 2} and len(s["devices"]) == 8
    # snapshots gathered from the table split over `model` are the one-device run's frames
    import numpy as np

    from embjax.outputs import snapshots

    fm, f1 = snapshots.read(str(tmp_path / "mesh")), snapshots.read(str(tmp_path / "one"))
    assert fm.steps.tolist() == f1.steps.tolist() == [0, 5, 10, 15, 20]
    assert np.allclose(fm.E.astype(np.float32), f1.E.astype(np.float32), rtol=1e-2, atol=1e-3)
    assert np.array_equal(fm.E[-1], np.load(tmp_path / "mesh" / "embeddings.npy").astype(np.float16))
    # the sharded checkpoint restores onto a 2 × 4 mesh and training goes on
    r = run_cli(
        "experiments.train",
        *ARGS[:-2],
        "--steps=30",
        "--log.wandb=false",
        f"--out_dir={tmp_path}",
        "--name=mesh",
        "--mesh.data=2",
        "--mesh.model=4",
        env=EIGHT,
    )
    assert r.returncode == 0, r.stderr
    assert "from step 20" in r.stderr
    assert sorted(losses(tmp_path / "mesh" / "metrics.jsonl")) == [5, 10, 15, 20, 25, 30]
    assert json.load(open(tmp_path / "mesh" / "summary.json"))["mesh"] == {"data": 2, "model": 4}


SHARDING_PROBE = r"""
import json, re, jax
from embjax.config import load_config
from embjax.data.corpus import make_corpus
from embjax.train.loop import compile_program
from embjax.runtime.mesh import make_mesh, replicated
from embjax.train.step import Program, hparams
cfg = load_config(None, ["--data.vocab_size=96", "--model.embed_dim=16", "--model.num_layers=1",
                         "--model.num_heads=2", "--data.seq_len=16", "--data.batch_size=8",
                         "--mesh.data=4", "--mesh.model=2", "--model.tie_embeddings=false"])
program = Program(cfg, make_corpus(cfg), mesh=make_mesh(cfg))
sh = program.state_shardings  # what the loop uses
state = jax.jit(program.init, out_shardings=sh)(0, hparams(cfg))
step, _, _, _ = compile_program(program, vmapped=False)  # the loop's own jitted chunk
hlo = step.lower(state, program.corpus.tables, 2).compile().as_text()
GATHER = r"= f32\[([0-9,]+)\]\{[^}]*\} all-gather"
# positive control: a program that must gather the V-sharded table, read by the same pattern
gather_all = jax.jit(lambda E: E * 1.0, in_shardings=sh["params"]["embed"]["embedding"],
                     out_shardings=replicated(program.mesh))
control = gather_all.lower(state["params"]["embed"]["embedding"]).compile().as_text()
E = state["params"]["embed"]["embedding"]
H = state["params"]["head"]["embedding"]
print(json.dumps({"spec": str(E.sharding.spec), "head_spec": str(H.sharding.spec),
                  "shard": list(E.addressable_shards[0].data.shape), "gathers": re.findall(GATHER, hlo),
                  "control_gathers": re.findall(GATHER, control), "all_reduces": hlo.count(" all-reduce("),
                  "row_updates_spec": str(state["row_updates"].sharding.spec),
                  "pos_spec": str(state["params"]["pos"].sharding.spec),
                  "mu_specs": sorted({str(x.sharding.spec) for x in jax.tree.leaves(state["opt_state"])
                                      if x.shape == (96, 16)})}))
"""


@pytest.mark.slow
def test_table_is_split_over_model_axis_and_never_gathered():
    p = subprocess.run(
        [sys.executable, "-c", SHARDING_PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, **EIGHT),
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["spec"] == out["head_spec"] == "P('model', None)"
    assert out["mu_specs"] == ["P('model', None)"]  # Adam's moments of the tables are split the same way
    assert out["row_updates_spec"] == "P('model',)" and out["pos_spec"] == "P()"  # per-row counters split, rest not
    assert "96,16" in out["control_gathers"]  # the pattern does find a gathered table when there is one
    assert out["shard"] == [48, 16]  # V / model rows on each device
    # no all-gather rebuilds a full V×d table, in either layout (V = 96 is no other dimension of the model)
    assert "96,16" not in out["gathers"] and "16,96" not in out["gathers"], out["gathers"]
    assert out["all_reduces"] > 0  # the program really is partitioned: partial sums cross devices


def test_mesh_that_does_not_fit_the_devices_is_refused(tmp_path):
    r = run_cli("experiments.train", *ARGS, f"--out_dir={tmp_path}", "--mesh.data=3", "--mesh.model=2", env=EIGHT)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "mesh: got data=3 × model=2 = 6 devices" in r.stderr and "8 device(s)" in r.stderr
    assert not os.path.exists(tmp_path / "default")


@pytest.mark.slow
def test_sweep_group_on_a_mesh_runs_every_member(tmp_path):
    import yaml

    base = {
        "steps": 10,
        "data": {"vocab_size": 64, "num_classes": 4, "seq_len": 16, "batch_size": 8, "eval_batches": 2},
        "model": {"embed_dim": 16, "num_layers": 1, "num_heads": 2, "parametrization": "mup", "base_width": 8},
        "mesh": {"data": 4, "model": 2},
        "log": {"every": 5, "metrics_every": 10, "eval_every": 10, "progress": False, "wandb": False},
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    sweep = {
        "name": "ms",
        "program": "experiments/train.py",
        "method": "grid",
        "parameters": {"config": {"value": str(tmp_path / "base.yaml")}, "embedding.init_std": {"values": [0.02, 0.5]}},
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    r = run_cli(
        "experiments.sweep",
        str(tmp_path / "s.yaml"),
        f"--out_dir={tmp_path}",
        "--vectorize=on",
        "--progress=false",
        env=EIGHT,
    )
    assert r.returncode == 0, r.stderr
    summaries = [
        json.load(open(tmp_path / "ms" / d / "summary.json"))
        for d in sorted(os.listdir(tmp_path / "ms"))
        if d.startswith("m")
    ]
    assert [s["status"] for s in summaries] == ["finished", "finished"]
    assert all(s["mesh"] == {"data": 4, "model": 2} for s in summaries)
    assert summaries[0]["emb/norm_mean"] < summaries[1]["emb/norm_mean"]  # σ = 0.02 vs 0.5 really trained
