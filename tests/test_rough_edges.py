"""Rough edges a new user hits (issue 40), each through the real CLI: the lesson's toy sizes (V = 2 … 8, d = 2 or
3) train to the end with every metric, page and report; a similarity file that is mostly not pairs is refused
and one with a few unreadable lines is said in one warning and counted; a sweep member whose summary.json is
damaged is named, and the report covers the others."""

import csv
import json
import math

import numpy as np
import pytest
import yaml
from conftest import TINY, run_cli

from embjax.cli import report_main, sweep_main, train_main, view_main

# a short run that still logs every kind of output: train rows, geometry metrics and eval twice, snapshots, exports
SHORT = [
    "--steps=4",
    "--log.every=2",
    "--log.metrics_every=2",
    "--log.eval_every=2",
    "--checkpoint.every=0",
    "--optim.warmup_steps=1",
    "--data.seq_len=8",
    "--data.batch_size=4",
    "--data.eval_batches=1",
    "--log.progress=false",
    "--log.wandb=false",
]


def _finished(run_dir) -> dict:
    """A run's summary, checked: finished, its geometry and eval keys there and finite where they must be, the
    neighbour table, snapshots and exports written."""
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "finished", s.get("status")
    for key in ("eval/loss", "emb/norm_mean", "emb/cos_mean", "emb/eff_rank", "emb/isotropy", "emb/isoscore",
                "emb_centered/cos_mean", "emb/norm_mean_top1pct", "emb/unseen_tokens"):  # fmt: skip
        assert isinstance(s.get(key), float) and math.isfinite(s[key]), (key, s.get(key))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "emb/cos_mean" in r] == [0, 2, 4]
    assert (run_dir / "embeddings.npy").exists() and (run_dir / "embedding_space.html").exists()
    assert len(list((run_dir / "snapshots").glob("*.npz"))) >= 2
    return s


@pytest.mark.parametrize(
    "V, kind",
    [
        (5, "transformer"),  # the lesson's worked example
        pytest.param(2, "linear", marks=pytest.mark.slow),  # the smallest V the config allows
        pytest.param(2, "transformer", marks=pytest.mark.slow),
        pytest.param(3, "transformer", marks=pytest.mark.slow),
        pytest.param(8, "transformer", marks=pytest.mark.slow),
    ],
)
def test_the_lessons_toy_sizes_train_to_the_end(tmp_path, V, kind):
    """V ∈ {2, 3, 5, 8}, d = 3 on the planted corpus (the lesson's example is V = 5), the transformer and the linear
    model: every metric, the neighbour probes (every row when V ≤ 8), snapshots, exports and the page. Any V ≤ 8
    used to end in an IndexError from the probe rows of metrics.TrainingGeometry."""
    args = [*SHORT, f"--out_dir={tmp_path}", f"--data.vocab_size={V}", "--model.embed_dim=3", f"--model.kind={kind}"]
    assert train_main([*args, "--data.num_classes=1", "--model.num_heads=1", "--model.num_layers=1"]) == 0
    s = _finished(tmp_path / "default")
    assert s["emb/knn_class_purity"] == 1.0  # one class: every neighbour shares it


@pytest.mark.parametrize("V", [2, 3, 5, 8])
def test_every_row_is_a_probe_with_its_neighbours_at_small_v(V):
    """The loop's neighbour table at V ≤ 8: a row per token, each with its V - 1 (at most 5) nearest other rows."""
    from embjax.analysis.metrics import TrainingGeometry
    from embjax.config import load_config
    from embjax.data.corpus import make_corpus

    cfg = load_config(
        None, [f"--data.vocab_size={V}", "--data.num_classes=1", "--model.embed_dim=3", "--model.num_heads=1"]
    )
    geometry = TrainingGeometry(cfg, make_corpus(cfg))
    E = np.random.default_rng(V).normal(size=(V, 3))
    scalars, rich = geometry(E, 7)
    rows = rich["tables/nearest_neighbors"]["data"]
    assert [r[1] for r in rows] == [f"t{i}_c0" for i in range(V)]
    assert all(len(r[3].split(", ")) == min(5, V - 1) for r in rows)
    assert all(math.isfinite(v) for v in scalars.values()), scalars


def test_neighbour_probes_are_unchanged_where_they_always_worked():
    """For V > 8 the probes are what they were: the 4 most frequent and 4 spread over the ranks 8 … V - 1."""
    from embjax.analysis.metrics import neighbour_probes

    counts = np.arange(100, 0, -1.0)  # id i has rank i
    np.testing.assert_array_equal(neighbour_probes(counts), [0, 1, 2, 3, 8, 38, 68, 99])
    np.testing.assert_array_equal(neighbour_probes(counts[:9]), [0, 1, 2, 3, 8])
    assert len(neighbour_probes(np.ones(2**16))) == 8


@pytest.mark.slow
def test_a_word_vocabulary_of_8_and_the_lessons_v4_d2_run(tmp_path, capsys):
    """A word vocabulary of 8 (6 words, <unk>, <eos>) on a tiny text corpus made here, untied; and the lesson's
    V = 4, d = 2 example on the planted corpus; then the page again and the report over both."""
    rng = np.random.default_rng(0)
    words = "the cat dog sat on a mat ran ate big".split()
    (tmp_path / "tiny.txt").write_text("\n".join(" ".join(rng.choice(words, 12)) for _ in range(300)) + "\n")
    runs = tmp_path / "runs"
    text = [*SHORT, f"--out_dir={runs}", "--name=words", "--data.kind=text", f"--data.path={tmp_path}/tiny.txt"]
    text += ["--data.tokenizer=word", "--data.vocab_size=8", "--model.embed_dim=3", "--model.num_heads=1"]
    assert train_main([*text, "--model.num_layers=1", "--model.tie_embeddings=false"]) == 0
    s = _finished(runs / "words")
    assert "eval/loss_bucket_top1" in s and "emb/unseen_tokens" in s
    lesson = [*SHORT, f"--out_dir={runs}", "--name=v4d2", "--data.vocab_size=4", "--model.embed_dim=2"]
    assert train_main([*lesson, "--data.num_classes=2", "--model.num_heads=1", "--model.num_layers=1"]) == 0
    _finished(runs / "v4d2")
    capsys.readouterr()
    assert view_main([str(runs / "words")]) == 0
    assert report_main([str(runs)]) == 0
    report = (runs / "report.md").read_text()
    assert "| words |" in report and "| v4d2 |" in report, report


# ---- a similarity file that is not what it claims

PAIRS = [f"t{i}_c{i % 4} t{i + 4}_c{i % 4} {i % 10}" for i in range(12)]  # TINY's planted token strings


def test_a_similarity_file_that_is_mostly_unreadable_is_refused_before_any_run(tmp_path):
    (tmp_path / "ws.txt").write_text("car\nhouse home notanumber\ncar automobile 9\n")
    r = run_cli("experiments.train", *TINY, f"--out_dir={tmp_path}", f"--log.word_similarity={tmp_path}/ws.txt")
    assert r.returncode == 2, r.stderr[-2000:]
    err = r.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("error: log.word_similarity: "), err
    assert "1 'word word score' pair(s) and 2 unreadable line(s) (the first: line 1: 'car')" in err, err
    assert not (tmp_path / "default").exists()


def test_the_refusal_rules_before_anything_is_written(tmp_path):
    """Fewer than 10 pairs, or fewer pairs than unreadable lines: refused (rundir.check reads the files for a run and
    every sweep member, the baseline too); comments, blank lines and the named sets are fine; a NaN score is
    unreadable."""
    from embjax.analysis.evals import check_similarity_files
    from embjax.config import ConfigError, load_config

    def check(lines):
        path = tmp_path / "p.txt"
        path.write_text("\n".join(lines) + "\n")
        cfg = load_config(None, [f"--log.word_similarity={path}"])
        check_similarity_files(cfg)
        return cfg

    with pytest.raises(ConfigError, match="9 'word word score' pair\\(s\\); allowed: at least 10 pairs"):
        check(PAIRS[:9])
    with pytest.raises(ConfigError, match="10 'word word score' pair\\(s\\) and 11 unreadable"):
        check(PAIRS[:10] + ["a b c"] * 11)
    with pytest.raises(ConfigError, match=r"the first: line 1: 'a b nan'"):
        check(["a b nan"] * 11 + PAIRS[:10])
    check(["# comment", "", *PAIRS[:10], "word1 word2 score"])  # a header: one unreadable line, allowed
    check_similarity_files(load_config(None, ["--log.word_similarity=[wordsim353, simlex999]"]))


@pytest.mark.slow
def test_a_few_unreadable_lines_are_said_once_and_counted(tmp_path, capsys):
    lines = PAIRS[:3] + ["car"] + PAIRS[3:7] + ["house home notanumber"] + PAIRS[7:]
    (tmp_path / "ws.txt").write_text("\n".join(lines) + "\n")
    args = [*SHORT, f"--out_dir={tmp_path}", "--data.vocab_size=64", "--data.num_classes=4", "--model.embed_dim=8"]
    args += ["--model.num_heads=1", "--model.num_layers=1", "--model.tie_embeddings=false"]
    assert train_main([*args, f"--log.word_similarity={tmp_path}/ws.txt"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "ws.txt" in line]
    assert err == [
        f"warning: {tmp_path}/ws.txt: 2 of 14 lines are not 'word word score' pairs and are left out (the first: "
        "line 4: 'car'); scored on the other 12"
    ]
    s = json.loads((tmp_path / "default" / "summary.json").read_text())
    for table in ("word_sim", "word_sim_out"):
        assert s[f"{table}/ws/unreadable"] == 2 and s[f"{table}/ws/pairs"] + s[f"{table}/ws/skipped"] == 12


# ---- a damaged sweep member

BASE = {
    "steps": 4,
    "data": {"vocab_size": 16, "num_classes": 2, "seq_len": 8, "batch_size": 4, "eval_batches": 1},
    "model": {"embed_dim": 8, "num_layers": 1, "num_heads": 2},
    "optim": {"warmup_steps": 1},
    "log": {"every": 2, "metrics_every": 2, "eval_every": 2, "progress": False, "wandb": False, "snapshot_every": 0},
    "checkpoint": {"every": 0},
}


@pytest.mark.slow
def test_a_damaged_member_is_named_and_the_report_covers_the_others(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    sweep = {
        "name": "s",
        "program": "experiments/train.py",
        "method": "grid",
        "metric": {"name": "eval/loss", "goal": "minimize"},
        "parameters": {
            "config": {"value": str(tmp_path / "base.yaml")},
            "embedding.init_std": {"values": [0.02, 0.2, 1.0]},
        },
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    assert sweep_main([str(tmp_path / "s.yaml"), f"--out_dir={tmp_path}/out", "--progress=false"]) == 0
    root = tmp_path / "out" / "s"
    names = sorted(p.parent.name for p in root.glob("*/config.yaml"))
    damaged = root / names[1] / "summary.json"
    text = damaged.read_bytes()
    damaged.write_bytes(text[:18] + b"\x01" + text[18:60])  # cut short, with a stray control character

    r = run_cli("experiments.report", str(root))
    assert r.returncode == 0, r.stderr[-2000:]
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {damaged}: damaged (Invalid control character"), err
    assert err[0].endswith(f"); the report lists {names[1]} as damaged"), err
    table = {line.split(" | ")[0].strip("| "): line for line in (root / "report.md").read_text().splitlines()}
    assert "| damaged |" in table[names[1]]
    assert all("| finished |" in table[n] for n in (names[0], names[2]))
    with open(root / "summary.csv", newline="") as f:
        rows = {row["member"]: row for row in csv.DictReader(f)}
    assert rows[names[1]]["status"] == "damaged" and rows[names[1]]["eval/loss"] == ""
    assert rows[names[1]]["embedding.init_std"] == "0.2"  # the member's config stays
    assert all(rows[n]["status"] == "finished" and float(rows[n]["eval/loss"]) > 0 for n in (names[0], names[2]))

    # the sweep command reads summaries the same way: to it the damaged member is not finished (it trains it again)
    from embjax.outputs.rundir import finished_summary
    from embjax.sweep import load_sweep, member_configs

    path = str(tmp_path / "s.yaml")
    cfgs = {c.name: c for c in member_configs(path, load_sweep(path), f"{tmp_path}/out", {})}
    assert finished_summary(cfgs[names[1]]) is None and finished_summary(cfgs[names[0]])["status"] == "finished"
