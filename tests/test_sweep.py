"""Sweep files, expansion as W&B's engine does it, vectorised groups, resume, divergence, report."""

import csv
import glob
import json
import os
import warnings

import numpy as np
import pytest
import yaml

from embjax.cli import sweep_main
from embjax.outputs.sinks import read_jsonl
from embjax.sweep import expand, group_by_shape, load_sweep, member_configs
from tests.conftest import wandb_records

BASE = {
    "steps": 20,
    "data": {"vocab_size": 64, "num_classes": 4, "seq_len": 16, "batch_size": 8, "eval_batches": 2},
    "model": {"embed_dim": 16, "num_layers": 1, "num_heads": 2},
    "optim": {"warmup_steps": 5},
    "log": {"every": 5, "metrics_every": 10, "eval_every": 10, "progress": False},
    "checkpoint": {"every": 10},
}


def write(tmp_path, params, method="grid", base=None, **extra):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base or BASE))
    sweep = {
        "name": "t",
        "program": "experiments/train.py",
        "method": method,
        "metric": {"name": "eval/loss", "goal": "minimize"},
        "parameters": {"config": {"value": str(tmp_path / "base.yaml")}, **params},
        **extra,
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return str(path)


@pytest.mark.slow
def test_shipped_sweeps_are_valid_w_and_b_sweeps():
    import sweeps

    shipped = sorted(glob.glob("sweeps/**/*.y*ml", recursive=True))
    assert len(shipped) >= 25 and any(p.startswith("sweeps/findings/") for p in shipped)
    for path in shipped:  # every file under sweeps/, as shipped: W&B's own schema (what `wandb sweep` checks)
        raw = yaml.safe_load(open(path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert sweeps.schema_violations_from_proposed_config(raw) == [], path
        cfgs = member_configs(path, load_sweep(path), "/tmp/unused", {}, pretrained_source="/tmp/a_findings_stage")
        assert cfgs
    for path in glob.glob("sweeps/*.yaml"):  # the user-facing ones run under `wandb agent` as they are
        assert yaml.safe_load(open(path))["command"] == ["${env}", "${interpreter}", "${program}", "${args}"]
    qs = member_configs("sweeps/quickstart.yaml", load_sweep("sweeps/quickstart.yaml"), "/tmp/x", {})
    assert len(qs) == 12 and len(group_by_shape(qs)) == 4  # σ varies inside a group; d and tying split groups
    full = member_configs("sweeps/d_sigma_tying.yaml", load_sweep("sweeps/d_sigma_tying.yaml"), "/tmp/x", {})
    assert len(full) == 192 and len(group_by_shape(full)) == 16


def test_grid_is_exactly_w_and_bs_grid(tmp_path):
    from sweeps import RunState, next_run

    params = {
        "model.embed_dim": {"values": [8, 16]},
        "embedding.init_std": {"values": [0.02, 0.2, 1.0]},
        "model.tie_embeddings": {"values": [True, False]},
        "seed": {"value": 3},
    }
    sweep = load_sweep(write(tmp_path, params))
    ours = expand(sweep)
    theirs, runs = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while (run := next_run(sweep, runs)) is not None:
            run.state = RunState.finished
            runs.append(run)
            theirs.append({k: v["value"] for k, v in run.config.items()})
    assert ours == theirs and len(ours) == 12
    keys = {(m["model.embed_dim"], m["embedding.init_std"], m["model.tie_embeddings"]) for m in ours}
    assert len(keys) == 12 and all(m["seed"] == 3 for m in ours)


def test_random_is_seeded_bounded_and_capped(tmp_path):
    params = {
        "optim.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
        "embedding.init_std": {"distribution": "uniform", "min": 0.01, "max": 0.5},
        "seed": {"distribution": "int_uniform", "min": 0, "max": 5},
        "model.tie_embeddings": {"values": [True, False]},
    }
    sweep = load_sweep(write(tmp_path, params, method="random", run_cap=40))
    a, b = expand(sweep), expand(sweep)
    assert a == b and len(a) == 40
    lrs = np.array([m["optim.lr"] for m in a])
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-1 and np.log10(lrs).std() > 0.5  # spread in log space
    assert all(0.01 <= m["embedding.init_std"] <= 0.5 for m in a)
    assert {m["seed"] for m in a} <= set(range(6)) and {m["model.tie_embeddings"] for m in a} == {True, False}


@pytest.mark.parametrize(
    "params,extra,needle",
    [
        ({}, {}, "parameters: got none"),
        ({"model.embed_dim": {"values": [8]}}, {"method": "bayes"}, "wandb agent"),
        (
            {"model.embed_dim": {"values": [8]}},
            {"early_terminate": {"type": "hyperband", "min_iter": 3}},
            "early_terminate",
        ),
        ({"model.embed_dim": {"values": [8]}}, {"method": "random"}, "run_cap"),
        ({"model.embed_dim": {"values": [8]}}, {"method": "sideways"}, "method"),
        ({"model.embed_dim": {"min": 8, "max": 16}}, {}, "grid needs"),
        ({"model.embed_dimm": {"values": [8]}}, {}, "did you mean model.embed_dim"),
        ({"model.embed_dim": {"values": [0]}}, {}, "model.embed_dim: got 0"),
    ],
)
def test_bad_sweep_files_exit_2(tmp_path, capsys, params, extra, needle):
    path = write(
        tmp_path, params, **{k: v for k, v in extra.items() if k != "method"}, method=extra.get("method", "grid")
    )
    if not params:
        raw = yaml.safe_load(open(path))
        raw["parameters"] = {}
        open(path, "w").write(yaml.safe_dump(raw))
    assert sweep_main([path, f"--out_dir={tmp_path}/out", "--log.wandb=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not os.path.exists(tmp_path / "out" / "t")


@pytest.mark.slow
def test_vectorized_group_matches_members_run_in_turn(tmp_path, capsys):
    params = {
        "embedding.init_std": {"values": [0.02, 0.5]},
        "optim.lr": {"values": [0.003, 0.03]},
        "seed": {"values": [0, 1]},
    }
    path = write(tmp_path, params)
    assert sweep_main([path, f"--out_dir={tmp_path}/on", "--vectorize=on", "--log.wandb=false"]) == 0
    assert sweep_main([path, f"--out_dir={tmp_path}/off", "--vectorize=off", "--log.wandb=false"]) == 0
    captured = capsys.readouterr()
    assert "wandb sync" not in captured.out  # no W&B runs were written, so nothing to upload
    assert "[1/1] 8 members vmapped" in captured.err  # the vmapped group's bar
    assert "[1/1] σ=0.5 lr=0.03 seed=1" in captured.err  # in turn: each bar names its member
    on = sorted(glob.glob(str(tmp_path / "on" / "t" / "m*")))
    assert len(on) == 8
    for d in on:
        a = read_jsonl(os.path.join(d, "metrics.jsonl"))
        b = read_jsonl(os.path.join(d.replace("/on/", "/off/"), "metrics.jsonl"))
        assert [r["step"] for r in a] == [r["step"] for r in b]
        for ra, rb in zip(a, b):
            for k in ("train/loss", "eval/loss", "emb/norm_mean"):
                if k in ra:
                    assert ra[k] == pytest.approx(rb[k], rel=2e-4), (d, ra["step"], k)
        s = json.load(open(os.path.join(d, "summary.json")))
        assert s["status"] == "finished" and s["vectorized_members"] == 8
    # members really differ: σ and lr reached the compiled program as values
    finals = {json.load(open(os.path.join(d, "summary.json")))["emb/norm_mean"] for d in on}
    assert len(finals) == 8
    rows = list(csv.DictReader(open(tmp_path / "on" / "t" / "summary.csv")))
    assert len(rows) == 8 and {"embedding.init_std", "optim.lr", "seed", "eval/loss", "status"} <= set(rows[0])
    for f in ("report.md", "loss_vs_sigma.png", "norm_growth.png", "cos_mean.png"):
        assert (tmp_path / "on" / "t" / f).exists(), f


@pytest.mark.slow
def test_diverging_member_is_frozen_others_go_on(tmp_path):
    params = {
        "optim.lr": {"values": [0.003, 1000.0]},
        "optim.name": {"value": "sgd"},
        "optim.grad_clip": {"value": 0.0},
        "embedding.init_std": {"value": 1.0},
    }
    planted = tmp_path / "pwned"
    path = write(tmp_path, params, command=["touch", str(planted)])  # the local runner never executes this
    assert sweep_main([path, f"--out_dir={tmp_path}", "--vectorize=on", "--log.wandb=false"]) == 0
    s = [json.load(open(f)) for f in sorted(glob.glob(str(tmp_path / "t" / "m*" / "summary.json")))]
    assert [x["status"] for x in s] == ["finished", "diverged"]
    assert s[0]["step"] == 20 and s[1]["step"] < 20
    assert not planted.exists()


@pytest.mark.slow
def test_rerun_skips_finished_and_groups_by_sweep_in_wandb(tmp_path, capsys):
    params = {"embedding.init_std": {"values": [0.02, 0.2]}, "model.tie_embeddings": {"values": [True, False]}}
    path = write(tmp_path, params)
    assert sweep_main([path, f"--out_dir={tmp_path}", "--log.wandb=true"]) == 0
    captured = capsys.readouterr()
    assert "4 members in 2 shape group(s); 0 already finished" in captured.out
    assert "wandb sync" in captured.out
    assert sweep_main([path, f"--out_dir={tmp_path}", "--log.wandb=true"]) == 0
    again = capsys.readouterr()
    assert "4 already finished" in again.out
    for member in glob.glob(str(tmp_path / "t" / "m*")):
        files = glob.glob(os.path.join(member, "wandb", "offline-run-*", "*.wandb"))
        assert len(files) == 1
        runs = [r.run for r in wandb_records(files[0]) if r.WhichOneof("record_type") == "run"]
        assert runs and runs[0].run_group == "t" and runs[0].display_name == os.path.basename(member)
    # each report run (one per sweep command) carries the members' embedding-space page next to the plots
    reports = sorted(glob.glob(str(tmp_path / "t" / "wandb" / "offline-run-*" / "*.wandb")))
    assert len(reports) == 2, reports
    for report in reports:
        kinds = {
            i.nested_key[0]: json.loads(i.value_json)
            for r in wandb_records(report)
            if r.WhichOneof("record_type") == "history"
            for i in r.history.item
            if list(i.nested_key[1:]) == ["_type"]
        }
        what = (report, kinds, captured.err[-2000:], again.err[-2000:])  # on a failure: what the run and sweeps said
        assert kinds.get("report/embedding_space") == "html-file" and kinds["report/norm_growth"] == "image-file", what


def test_step_plots_tell_apart_every_swept_key(tmp_path, monkeypatch):
    """d × σ × tying × seed (the quickstart's grid): colour σ, line style tying, a panel per d, seeds drawn alike;
    every drawn line's (colour, style, panel) names its run's values, and the legend names each value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embjax.outputs.report import encodings, plot_over_steps, varied_keys

    runs = []
    for d in (16, 32):
        for s in (0.02, 0.2, 1.0):
            for tie in (True, False):
                for seed in (0, 1):
                    cfg = {
                        "name": f"m{d}{s}{tie}{seed}",
                        "seed": seed,
                        "out_dir": "x",
                        "model": {"embed_dim": d, "tie_embeddings": tie, "num_layers": 1},
                        "embedding": {"init_std": s, "init": "normal"},
                    }
                    rows = [{"step": t, "emb/norm_growth": 1 + t * s * d / (1 + tie)} for t in (0, 10)]
                    runs.append({"cfg": cfg, "rows": rows})
    assert varied_keys(runs) == ["embedding.init_std", "model.embed_dim", "model.tie_embeddings"]
    assert encodings(varied_keys(runs)) == ("embedding.init_std", "model.tie_embeddings", ["model.embed_dim"])
    assert encodings(["model.embed_dim", "optim.lr"]) == ("optim.lr", "model.embed_dim", [])
    figs = []
    monkeypatch.setattr("embjax.outputs.report.save", lambda fig, path: figs.append(fig) or True)
    assert plot_over_steps(runs, "emb/norm_growth", "growth", "Row-norm growth", str(tmp_path / "p.png"))
    (fig,) = figs
    axes = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in axes] == ["d=16", "d=32"]
    legend = [t.get_text() for t in axes[-1].get_legend().get_texts()]
    assert legend == ["σ=0.02", "σ=0.2", "σ=1", "tied=false", "tied=true"]
    colour = {h.get_label(): h.get_color() for h in axes[-1].get_legend().legend_handles}
    style = {h.get_label(): h.get_linestyle() for h in axes[-1].get_legend().legend_handles}
    for ax, d in zip(axes, (16, 32)):
        assert len(ax.lines) == 12  # 3 σ × 2 tying × 2 seeds
        for line in ax.lines:  # the growth at step 10 says which run drew it: it must match the encodings
            ((s, tie),) = {
                (s, tie)
                for s in (0.02, 0.2, 1.0)
                for tie in (True, False)
                if line.get_ydata()[1] == pytest.approx(1 + 10 * s * d / (1 + tie))
            }
            assert tuple(line.get_color()) == tuple(colour[f"σ={s:g}"])
            assert line.get_linestyle() == style[f"tied={str(tie).lower()}"]
    plt.close(fig)


def test_a_sweep_file_with_the_old_baseline_key_or_a_bad_baseline_flag_is_refused_in_one_line(tmp_path, capsys):
    """`baseline:` is not W&B's (its schema rejects it): the file is refused, naming --baseline; a --baseline that is
    no finished run directory is refused too; nothing is written in either case."""
    path = write(tmp_path, {"model.embed_dim": {"value": 8}})
    raw = yaml.safe_load(open(path))
    (tmp_path / "old.yaml").write_text(yaml.safe_dump({**raw, "baseline": "runs/word2vec-sg"}))
    assert sweep_main([str(tmp_path / "old.yaml"), f"--out_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {tmp_path / 'old.yaml'}: baseline: not a key of W&B's sweep schema; allowed: --baseline=RUN_DIR on "
        "the command line (python -m experiments.sweep or experiments.report)"
    ]
    assert sweep_main([path, f"--out_dir={tmp_path / 'out'}", f"--baseline={tmp_path / 'nowhere'}"]) == 2
    assert "--baseline: got" in capsys.readouterr().err and not (tmp_path / "out").exists()
