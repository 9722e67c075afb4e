"""The real-text findings' verdict rules on synthetic runs: for each new finding, runs written as experiments.train
writes them (config.yaml, summary.json, metrics.jsonl, tables) whose numbers must come out reproduced, not
reproduced, and inconclusive (an effect within the seeds' noise)."""

import json
import os

import numpy as np
import pytest
import yaml

from embjax.findings import BY_NAME
from embjax.findings.document import write_markdown
from embjax.findings.runs import load
from embjax.findings.verdict import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, evaluate

CASES = [(1.0, 0.01, REPRODUCED), (-1.0, 0.01, NOT_REPRODUCED), (0.05, 1.0, INCONCLUSIVE)]
SEEDS = (0, 1, 2)
OUT_TABLE = "output_embeddings.npy"


def _run(root, name, cfg, summary, rows=(), tables=None):
    d = os.path.join(root, name)
    os.makedirs(d)
    yaml.safe_dump(cfg, open(os.path.join(d, "config.yaml"), "w"))
    json.dump({"status": "finished", **summary}, open(os.path.join(d, "summary.json"), "w"))
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        for r in rows or [{"step": 0}]:
            f.write(json.dumps(r) + "\n")
    for file, E in (tables or {}).items():
        np.save(os.path.join(d, file), E)


def _cfg(seed, tie=True, sigma=0.02, **more):
    cfg = {"seed": seed, "steps": 1271, "model": {"tie_embeddings": tie, "embed_dim": 200, "dropout": 0.5}}
    cfg["model"].update(dropout=more.pop("dropout", 0.5), kind=more.pop("kind", "lstm"))
    cfg["embedding"] = {"init_std": sigma, "init": more.pop("init", "normal")}
    cfg["optim"] = {"embed_weight_decay": more.pop("wd", 0.0)}
    cfg["data"] = {"train_fraction": more.pop("fraction", 1.0)}
    return cfg


def _noise(k, noise):
    return noise * (k - 1)  # −noise, 0, +noise over the three seeds: mean 0, s.e. noise/√3


def _verdicts(name, runs):
    verdict, checks, _ = evaluate(BY_NAME[name], runs)
    return verdict, [c.verdict for c in checks]


@pytest.mark.parametrize("effect,noise,want", CASES)
def test_tying_anisotropy_text(tmp_path, effect, noise, want):
    """effect > 0: the tied table a cone (cos 0.02 + 0.6·effect), mostly its mean row, rare rows together, none at
    σ = 1."""
    for s in (0.02, 1.0):
        for tie in (True, False):
            for k in SEEDS:
                cos = 0.02 + (0.6 * effect + _noise(k, noise) if tie and s == 0.02 else 0.0)
                cos = max(cos, 0.06) if tie and s == 0.02 else cos
                summary = {"emb/cos_mean": cos, "emb_centered/cos_mean": (0.03 if effect > 0 else 0.9) * cos}
                summary |= {"emb/cos_mean_rest": cos + 0.1 * effect, "emb/cos_mean_top10pct": cos, "eval/loss": 6.0}
                summary["emb/cos_mean"] += (0.3 * (effect < 0) + _noise(k, noise)) if tie and s == 1.0 else 0.0
                _run(str(tmp_path), f"{s}-{tie}-{k}", _cfg(k, tie, s), summary)
    verdict, checks = _verdicts("tying_anisotropy_text", load(str(tmp_path)))
    assert verdict == want and checks[0] == want, checks
    if want != INCONCLUSIVE:
        assert set(checks) == {want}


@pytest.mark.parametrize("effect,noise,want", CASES)
def test_frequency_rows_text(tmp_path, effect, noise, want):
    """effect > 0: rare rows grow a third as much, norms follow frequency (less when tied), decay hurts rare words;
    σ = 1 members in the same sweep (text_tying has them) are left out."""
    for tie, wd, s in ((True, 0.0, 0.02), (False, 0.0, 0.02), (False, 0.5, 0.02), (False, 0.0, 1.0), (True, 0.0, 1.0)):
        for k in SEEDS:
            e = effect * (1 if s == 0.02 else -1)  # the σ = 1 members say the opposite: they must not count
            top = 3.0
            rest = 1.0 + (1.0 / 3 if e > 0 else 3.0) + _noise(k, noise)
            rho = (0.5 if not tie else 0.2) * e + _noise(k, noise)
            loss = {"eval/loss_bucket_top1": 3.0 + (0.1 if wd else 0.0), "eval/loss_bucket_top1_10": 5.0}
            loss["eval/loss_bucket_rest"] = 7.0 + ((0.1 + 0.3 * e + _noise(k, noise)) if wd else 0.0)
            summary = {
                "emb/norm_mean_rest": rest,
                "emb/norm_mean_top1pct": top,
                "emb/norm_logfreq_spearman": rho,
                **loss,
            }
            first = {"step": 0, "emb/norm_mean_rest": 1.0, "emb/norm_mean_top1pct": 1.0}
            _run(str(tmp_path), f"{tie}-{wd}-{s}-{k}", _cfg(k, tie, s, wd=wd), summary, [first])
    verdict, checks = _verdicts("frequency_rows_text", load(str(tmp_path)))
    assert verdict == want, checks
    if want != INCONCLUSIVE:
        assert set(checks) == {want}, checks


@pytest.mark.parametrize("effect,noise,want", CASES)
def test_tied_vs_untied_text(tmp_path, effect, noise, want):
    """effect > 0: the output table scores 0.1 higher than the input table, the tied table as the output one, and is
    (up to noise) the untied output table; the loss the same. In the three models: the regularised LSTM (dropout
    0.5), the small one (no dropout) and the transformer (dropout 0.3)."""
    rng = np.random.default_rng(0)
    for k, (kind, dropout) in ((k, m) for k in SEEDS for m in (("lstm", 0.5), ("lstm", 0.0), ("transformer", 0.3))):
        X, Y = rng.normal(size=(64, 8)), rng.normal(size=(64, 8))
        near, far = X + 0.05 * rng.normal(size=X.shape), Y
        inp, out = (far, near) if effect > 0 else (near, far)
        rho = {f"word_sim/{n}/spearman": 0.1 for n in ("simlex999", "wordsim353")}
        gain = 0.1 * effect + _noise(k, noise)
        untied = {**rho, **{f"word_sim_out/{n}/spearman": 0.1 + gain for n in ("simlex999", "wordsim353")}}
        tied = {f"word_sim/{n}/spearman": 0.1 + gain for n in ("simlex999", "wordsim353")}
        cfg = lambda tie, k=k, kind=kind, dropout=dropout: _cfg(k, tie, kind=kind, dropout=dropout)
        tables = {"embeddings.npy": X}
        _run(str(tmp_path), f"t{k}-{kind}{dropout}", cfg(True), {**tied, "eval/loss": 6.0}, tables=tables)
        tables = {"embeddings.npy": inp, "output_embeddings.npy": out}
        loss = {"eval/loss": 6.0 - 0.1 * (effect < 0)}
        _run(str(tmp_path), f"u{k}-{kind}{dropout}", cfg(False), {**untied, **loss}, tables=tables)
    for k in SEEDS:  # a decoy: a transformer at the LSTM's dropout, its tables far off; no model's arm may take it
        off = {f"word_sim{t}/{n}/spearman": -0.5 for t in ("", "_out") for n in ("simlex999", "wordsim353")}
        X = rng.normal(size=(64, 8))
        cfg = _cfg(k, False, kind="transformer", dropout=0.5)
        _run(str(tmp_path), f"z{k}", cfg, off | {"eval/loss": 9.0}, tables={"embeddings.npy": X, OUT_TABLE: X})
    runs = load(str(tmp_path))
    verdict, checks = _verdicts("tied_vs_untied_text", runs)
    assert len(checks) == 11 and verdict == want, checks
    assert checks[:3] == checks[5:8] == checks[8:] == [want] * 3, checks  # each model's three benchmark checks
    assert checks[3] == (NOT_REPRODUCED if effect < 0 else REPRODUCED)  # the CKA check: no noise in the tables
    _, _, (cols, table) = evaluate(BY_NAME["tied_vs_untied_text"], runs)
    models = [row[0] for row in table]
    assert models[4:6] == ["regularised transformer, tied", "regularised transformer, untied"], models
    assert [row[1] for row in table[:6]] == ["3"] * 6  # each model's arms hold their own three seeds
    assert not any(row[3].startswith("9.000") for row in table), table  # and not the decoy's (loss 9)


@pytest.mark.parametrize("effect,noise,want", CASES)
def test_similarity_emerges(tmp_path, effect, noise, want):
    """effect > 0: ρ rises by 0.1 from the random init, and ends 0.05 higher on the whole corpus than on a quarter;
    word2vec's reference row is in the table and is no check."""
    for k in SEEDS:
        for fraction in (1.0, 0.25):
            end = 0.05 + 0.1 * effect + _noise(k, noise) - (0.05 * effect if fraction < 1 else 0.0)
            rows = [{"step": 0, **{f"word_sim/{n}/spearman": 0.05 for n in ("simlex999", "wordsim353")}}]
            rows.append({"step": 1000, **{f"word_sim/{n}/spearman": end for n in ("simlex999", "wordsim353")}})
            _run(str(tmp_path), f"{fraction}-{k}", _cfg(k, True, fraction=fraction), {"eval/loss": 6.0}, rows)
    ref = {f"word_sim/{n}/spearman": 0.3 for n in ("simlex999", "wordsim353")} | {"analogy/google/accuracy": 0.02}
    ref |= {"baseline/method": "word2vec", "baseline/dim": 32, "baseline/epochs": 5}
    _run(str(tmp_path), "w2v", {"seed": 0, "steps": 5}, ref)
    runs = load(str(tmp_path))
    verdict, checks = _verdicts("similarity_emerges", runs)
    assert verdict == want, checks
    if want != INCONCLUSIVE:
        assert set(checks) == {want}, checks
    _, _, (cols, table) = evaluate(BY_NAME["similarity_emerges"], runs)
    assert table[-1][0].startswith("word2vec (reference") and table[-1][2:4] == ["0.300", "0.300"]


@pytest.mark.parametrize("effect,noise,want", CASES)
def test_pretrained_start_text(tmp_path, effect, noise, want):
    """effect > 0: the word2vec start's eval loss is 0.5 nats lower at every eval (so it reaches scratch's final
    loss well before the end) and its ρ 0.1 higher at step 50."""
    for k in SEEDS:
        for init in ("normal", "pretrained"):
            shift = (0.5 * effect + _noise(k, noise)) if init == "pretrained" else 0.0
            rows = [
                {"step": t, "eval/loss": 7.0 - 2.0 * t / 600 - shift}
                | {
                    f"word_sim/{n}/spearman": 0.05 + (0.2 * shift if t == 50 else 0.0)
                    for n in ("simlex999", "wordsim353")
                }
                for t in range(0, 601, 50)
            ]
            cfg = _cfg(k, True, init=init) | {"steps": 600}
            _run(str(tmp_path), f"{init}-{k}", cfg, {"eval/loss": rows[-1]["eval/loss"]}, rows)
    verdict, checks = _verdicts("pretrained_start_text", load(str(tmp_path)))
    assert verdict == want, checks
    if want != INCONCLUSIVE:
        assert set(checks) == {want}, checks


@pytest.mark.parametrize("effect,noise,want", CASES)
def test_width_small_data_text(tmp_path, effect, noise, want):
    """effect > 0: the widest table ends 0.3 nats above the best smaller one and its train loss 0.5 lower than
    its eval loss (d = 16: 0.1)."""
    for d in (16, 32, 64, 128, 256):
        for k in SEEDS:
            wide = d == 256
            ev = 5.0 + (0.3 * effect + _noise(k, noise) if wide else -0.01 * np.log2(d))
            gap = 0.1 + ((0.4 * effect + _noise(k, noise)) if wide else 0.0)
            rows = [{"step": t, "train/loss": ev - gap} for t in range(500, 601, 20)]
            cfg = {"seed": k, "steps": 600, "model": {"embed_dim": d}}
            _run(str(tmp_path), f"{d}-{k}", cfg, {"eval/loss": ev}, rows)
    runs = load(str(tmp_path))
    verdict, checks = _verdicts("width_small_data_text", runs)
    assert verdict == want and checks == [want, want], checks
    path = write_markdown(str(tmp_path), [(BY_NAME["width_small_data_text"], str(tmp_path), runs)], [])
    assert "| 1 | Bigger d with little data, on a finite real corpus | — | [" in open(path).read()


def test_a_finding_and_its_sibling_share_a_row_and_the_row_says_where_they_differ(tmp_path):
    """findings.md's summary: the planted verdict and the real-text one on one row; where they differ, the real-text
    checks that did not reproduce."""
    for d in (16, 32, 64, 128, 256):  # the widest is worst (both reproduce that), but its gap is the smallest
        for k in SEEDS:
            ev = 5.0 + (0.3 if d == 256 else 0.0) + 0.001 * k
            rows = [{"step": t, "train/loss": ev - 1.0 + d / 1000} for t in range(500, 601, 20)]
            _run(
                str(tmp_path), f"{d}-{k}", {"seed": k, "steps": 600, "model": {"embed_dim": d}}, {"eval/loss": ev}, rows
            )
    runs = load(str(tmp_path))
    results = [(BY_NAME[n], str(tmp_path), runs) for n in ("width_small_data", "width_small_data_text")]
    text = open(write_markdown(str(tmp_path), results, [])).read()
    planted, real = (evaluate(BY_NAME[n], runs)[0] for n in ("width_small_data", "width_small_data_text"))
    row = next(line for line in text.splitlines() if line.startswith("| 1 | Bigger d with little data |"))
    assert f"[{planted}](#1-width-small-data)" in row and f"[{real}](#2-width-small-data-text)" in row
    assert (planted, real) == (REPRODUCED, NOT_REPRODUCED)
    assert row.endswith("| real text: A wide table overfits a corpus seen many times: not reproduced |")
    assert not any(line.startswith("| 2 |") for line in text.splitlines())  # the sibling has no row of its own


def test_quick_forms_of_the_text_sweeps_are_narrow_and_keep_the_swept_widths():
    """--quick on real text: d = 32 and 4 eval batches under every member, except where the sweep sweeps the key
    (the width sibling keeps its own d); the command line's keys win; a baseline stage's dim goes with it."""
    from embjax.findings.pipeline import quick_form
    from embjax.sweep import member_configs

    def members(sweep_name, finding, given=None):
        path = f"sweeps/findings/{sweep_name}.yaml"
        sweep, overrides = quick_form(path, BY_NAME[finding].quick, given or {})
        return sweep["name"], member_configs(path, sweep, "/tmp/out", overrides, pretrained_source="/tmp/src/run")

    name, cfgs = members("text_tying", "tying_anisotropy_text")
    assert name == "text_tying_quick" and len(cfgs) == 4  # σ × tying, one seed
    assert {(c.model.embed_dim, c.data.eval_batches, c.steps) for c in cfgs} == {(32, 4, 60)}
    _, cfgs = members("text_width", "width_small_data_text")
    assert sorted(c.model.embed_dim for c in cfgs) == [16, 64] and {c.data.eval_batches for c in cfgs} == {4}
    _, cfgs = members("text_tying", "tying_anisotropy_text", {"data.eval_batches": 2})
    assert {c.data.eval_batches for c in cfgs} == {2}
    f = BY_NAME["pretrained_start_text"]
    _, cfgs = members(f.sweep, "pretrained_start_text")  # its pretrained arms load the stage's table: one width
    assert {c.model.embed_dim for c in cfgs} == {f.needs_quick["dim"]} and f.needs_quick["dim"] < 200


def test_findings_md_names_every_sweep_and_stage_file_where_it_lives(tmp_path):
    """Each finding's protocol line names its sweep and stage files by their paths in the repository: a baseline
    stage (no W&B sweep) under experiments/configs/findings/baselines/, a sweep under sweeps/findings/."""
    import re

    from embjax.findings import FINDINGS
    from tests.conftest import ROOT

    text = open(write_markdown(str(tmp_path), [(f, str(tmp_path), []) for f in FINDINGS], [])).read()
    named = [
        p
        for line in text.splitlines()
        if line.startswith("- **Protocol.**")
        for p in re.findall(r"`([^`]+\.yaml)`", line)
    ]
    assert "experiments/configs/findings/baselines/text_source.yaml" in named
    assert "sweeps/findings/text_pretrained.yaml" in named and "sweeps/findings/text_source.yaml" not in named
    missing = [p for p in named if not os.path.exists(os.path.join(ROOT, p))]
    assert not missing and len(named) >= len(FINDINGS), missing


@pytest.mark.parametrize("quick", [False, True])
def test_findings_jobs_run_every_sweep_once_and_a_stage_before_the_sweeps_that_start_from_it(quick):
    """--jobs: the plan's jobs hold every sweep and stage of the findings exactly once; a finding's pretrained arms
    run in the job of their source stage, after it (so two processes never run one sweep, and no sweep starts
    from a stage that has not run); in one process the order is the findings' order."""
    from embjax.findings import FINDINGS
    from embjax.findings.pipeline import plan

    jobs = plan(FINDINGS, quick)
    names = [t[1] for job in jobs for t in job]
    wanted = []
    for f in FINDINGS:
        for n in ((f.needs,) if f.needs else ()) + (f.sweep, *f.also, *f.references):
            wanted += [n] if n not in wanted else []
    assert sorted(names) == sorted(wanted) and len(names) == len(set(names))
    assert names == wanted  # jobs=1 runs them in this order, as before --jobs
    for job in jobs:
        for i, (_kind, name, q, needs) in enumerate(job):
            if needs is not None:
                assert [t[1] for t in job[:i] if t[0] == "source"] == [needs], (name, job)
            assert (q is not None) == quick
    assert sum(1 for job in jobs if job[0][0] == "source") == sum(1 for f in FINDINGS if f.needs)


def test_findings_plan_refuses_a_name_that_is_both_a_source_stage_and_a_reference():
    """Two processes would run it at once (one as a source, one as a baseline stage): refused in one line."""
    import dataclasses

    from embjax.config import ConfigError
    from embjax.findings.pipeline import plan

    a = dataclasses.replace(BY_NAME["similarity_emerges"], references=("text_source",))
    with pytest.raises(ConfigError, match="text_source: both a source stage and a sweep or reference"):
        plan([a, BY_NAME["pretrained_start_text"]], quick=False)


def test_findings_jobs_must_be_a_whole_number_of_at_least_one(capsys):
    from embjax.cli import findings_main

    for bad in ("0", "two", "1.5"):
        assert findings_main(["tying_anisotropy", f"--jobs={bad}"]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"error: --jobs: got {bad!r}; allowed: a whole number ≥ 1"
        ]
