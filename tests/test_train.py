"""End-to-end runs through the real CLI, loop, orbax and an offline W&B run."""

import glob
import json
import os

import numpy as np
import pytest
import yaml

from embjax.cli import train_main
from embjax.outputs.sinks import read_jsonl, read_wandb_history
from tests.conftest import wandb_records


def test_run_directory_contents(tiny, tmp_path, capsys):
    assert train_main(tiny + ["--name=r"]) == 0
    run = tmp_path / "r"
    listed = capsys.readouterr().out.split("run directory:")[1].splitlines()[1:]
    assert [x.strip().rstrip("/") for x in listed] == sorted(os.listdir(run))  # every file, exports included
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "embeddings.npy", "tokens.tsv", "checkpoints"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 30
    assert summary["devices"] and summary["data/unigram_entropy"] > summary["data/entropy_rate"] > 0
    E = np.load(run / "embeddings.npy")
    assert E.shape == (64, 16) and E.dtype == np.float32
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 5, 10, 15, 20, 25, 30]
    assert rows[0]["emb/norm_growth"] == 1.0
    assert "eval/loss" in rows[0] and "train/loss" in rows[1]
    # norm growth is the mean row norm against step 0, recomputed from the logged means
    assert rows[-1]["emb/norm_growth"] == pytest.approx(rows[-1]["emb/norm_mean"] / rows[0]["emb/norm_mean"], rel=1e-5)
    # the final row's norm is the saved table's
    assert rows[-1]["emb/norm_mean"] == pytest.approx(np.linalg.norm(E.astype(np.float64), axis=1).mean(), rel=1e-5)
    # config.yaml repeats the run
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["embed_dim"] == 16 and cfg["steps"] == 30
    tokens = (run / "tokens.tsv").read_text().splitlines()
    assert tokens[0].split("\t") == ["id", "token", "count", "class"] and len(tokens) == 65


@pytest.mark.slow
def test_same_seed_same_metrics(tiny, tmp_path):
    assert train_main(tiny + ["--name=a"]) == 0
    assert train_main(tiny + ["--name=b"]) == 0
    a = (tmp_path / "a" / "metrics.jsonl").read_text()
    b = (tmp_path / "b" / "metrics.jsonl").read_text()
    assert a == b
    assert train_main(tiny + ["--name=c", "--seed=1"]) == 0
    assert (tmp_path / "c" / "metrics.jsonl").read_text() != a


_DEFAULT_MODEL = """
import sys
from embjax.cli import train_main
for dtype in ("float32", "bfloat16"):
    args = ["--config=experiments/configs/default.yaml", f"--out_dir={sys.argv[1]}", "--log.wandb=false",
            "--steps=100", "--log.eval_every=0", "--log.metrics_every=0", "--log.progress=false",
            "--checkpoint.every=0", f"--model.compute_dtype={dtype}", f"--name={dtype}"]
    assert train_main(args) == 0
"""


@pytest.fixture(scope="module")
def default_model(tmp_path_factory):
    """The default experiment's model and corpus (100 steps) in float32 and with bfloat16 matmuls, in one
    process compiled as users' runs are (running 200 steps, not compiling, is the time here): the summaries."""
    import subprocess
    import sys

    from tests.conftest import ROOT, USER_XLA_FLAGS

    out = tmp_path_factory.mktemp("default_model")
    p = subprocess.run(
        [sys.executable, "-c", _DEFAULT_MODEL, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, XLA_FLAGS=USER_XLA_FLAGS),
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    return {d: json.loads((out / d / "summary.json").read_text()) for d in ("float32", "bfloat16")}


@pytest.mark.slow
def test_default_model_learns_below_unigram_entropy(default_model):
    """The default experiment's model and corpus (fewer steps): eval loss beats the unigram floor."""
    s = default_model["float32"]
    assert s["status"] == "finished"
    assert s["eval/loss"] < s["data/unigram_entropy"]
    assert s["eval/loss"] > s["data/entropy_rate"] - 0.05  # nobody beats the entropy rate


@pytest.mark.slow
def test_bfloat16_compute_trains_like_float32(default_model):
    """The default model and corpus (fewer steps): bfloat16 matmuls end within 0.05 nats of float32's eval loss."""
    losses = {d: s["eval/loss"] for d, s in default_model.items()}
    assert default_model["bfloat16"]["status"] == "finished"
    assert losses["float32"] < default_model["float32"]["data/unigram_entropy"]
    assert abs(losses["bfloat16"] - losses["float32"]) < 0.05, losses


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_small_models_learn(tiny, tmp_path, kind):
    assert train_main(tiny + [f"--name={kind}", f"--model.kind={kind}", "--steps=60", "--optim.lr=0.03"]) == 0
    rows = read_jsonl(tmp_path / kind / "metrics.jsonl")
    assert rows[-1]["eval/loss"] < rows[0]["eval/loss"] - 0.2


def test_offline_wandb_recorded_what_metrics_jsonl_has(tiny, tmp_path):
    assert train_main([a for a in tiny if a != "--log.wandb=false"] + ["--name=w", "--log.wandb=true"]) == 0
    files = glob.glob(str(tmp_path / "w" / "wandb" / "offline-run-*" / "*.wandb"))
    assert len(files) == 1 and wandb_records(files[0])  # complete: W&B's service has closed the file
    history = {row["_step"]: row for row in read_wandb_history(files[0])}
    local = read_jsonl(tmp_path / "w" / "metrics.jsonl")
    assert sorted(history) == [r["step"] for r in local]
    for row in local:
        for key, value in row.items():
            if key != "step":
                assert history[row["step"]][key] == pytest.approx(value, rel=1e-12), key
    # rich objects went to W&B too: histograms and the nearest-neighbour table
    assert any("hist/row_norm/values" in r for r in history.values())
    assert any(k.startswith("tables/nearest_neighbors") for r in history.values() for k in r)


def test_exports_projector_word2vec_and_capped_wandb_table(tiny, tmp_path):
    from embjax.data.corpus import PlantedCorpus
    from embjax.model.embedding import load_pretrained
    from embjax.outputs.exports import export_projector
    from embjax.outputs.sinks import MemorySink

    assert train_main(tiny + ["--name=x"]) == 0
    run = tmp_path / "x"
    E = np.load(run / "embeddings.npy")
    np.testing.assert_allclose(np.loadtxt(run / "vectors.tsv", delimiter="\t"), E, rtol=1e-5, atol=1e-7)
    meta = (run / "metadata.tsv").read_text().splitlines()
    assert meta[0] == "token\tfrequency\tclass" and len(meta) == 65
    tokens = [line.split("\t")[0] for line in meta[1:]]
    np.testing.assert_allclose(load_pretrained(str(run / "embeddings.w2v.txt"), 64, 16, tokens=tokens), E, rtol=1e-6)
    rows = read_jsonl(run / "metrics.jsonl")
    assert 0 < rows[-1]["emb/grad_row_frac"] <= 1 and rows[-1]["coord/logits"] > 0
    assert (np.load(run / "row_updates.npy") > 0).sum() > 0
    # past W&B's 10,000 table rows: the most frequent tokens plus a seeded sample, and the name says so
    big = PlantedCorpus(12_000, 8, 1.1, 3.0, 4, seed=0)
    sink = MemorySink()
    export_projector(str(tmp_path), np.random.default_rng(0).standard_normal((12_000, 3)).astype(np.float32), big, sink)
    ((name, table),) = sink.rich[0][1].items()
    assert name == "embeddings/top5000_freq_plus_5000_random" and len(table["data"]) == 10_000
    assert [r[0] for r in table["data"][:3]] == big.tokens[:3]  # token 0 is the most frequent
