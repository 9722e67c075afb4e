"""Misuse that used to train on garbage, ignore a setting or end in a traceback: each through the real CLI (the
compressed and non-text corpora are in test_real_language.py, the full disk in test_faults.py)."""

import os
import re

import jax
import numpy as np
import pytest
from conftest import TINY, run_cli

from embjax.config import ConfigError, from_dict, load_config, read_run_config

ARGS = [*TINY, "--log.wandb=false"]


def _one_line_exit_2(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    err = r.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("error: "), err
    for n in needles:
        assert n in err, (n, err)
    return err


def test_a_pretrained_path_without_the_pretrained_init_is_refused(tmp_path):
    np.save(tmp_path / "E.npy", np.ones((64, 16), np.float32))
    r = run_cli("experiments.train", *ARGS, f"--out_dir={tmp_path}", f"--embedding.pretrained_path={tmp_path}/E.npy")
    _one_line_exit_2(r, "embedding.pretrained_path: got", "embedding.init='normal'", "embedding.init=pretrained")
    assert not (tmp_path / "default").exists()


def test_a_run_stored_before_the_rule_still_reads(tmp_path):
    """A config.yaml written when such a path was silently ignored reads back with the path null (what it trained)."""
    (tmp_path / "config.yaml").write_text("embedding: {init: normal, pretrained_path: /old/E.npy}\n")
    assert from_dict(read_run_config(str(tmp_path / "config.yaml"))).embedding.pretrained_path is None


def test_the_findings_stage_source_goes_to_the_pretrained_arms_only():
    """Finding 9's sweep: the scratch arms (init normal) get no path, every pretrained arm gets the stage's run."""
    from embjax.sweep import load_sweep, member_configs

    path = "sweeps/findings/pretrained_start.yaml"
    cfgs = member_configs(path, load_sweep(path), "/tmp/out", {}, pretrained_source="/tmp/src/run")
    by_init = {(c.embedding.init, c.embedding.pretrained_path) for c in cfgs}
    assert by_init == {("normal", None), ("pretrained", "/tmp/src/run")}
    assert sum(c.embedding.init == "pretrained" for c in cfgs) == 6
    with pytest.raises(ConfigError, match="embedding.pretrained_path: got"):  # without the rule, every arm had it
        member_configs(path, load_sweep(path), "/tmp/out", {"embedding.pretrained_path": "/tmp/src/run"})


def _non_finite(tmp_path):
    E = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32)
    E[7, 3], E[40] = np.nan, np.inf
    np.save(tmp_path / "E.npy", E)
    return str(tmp_path / "E.npy")


def test_a_pretrained_table_with_non_finite_rows_is_refused_before_training(tmp_path):
    path = _non_finite(tmp_path)
    r = run_cli(
        "experiments.train",
        *ARGS,
        f"--out_dir={tmp_path}",
        "--embedding.init=pretrained",
        f"--embedding.pretrained_path={path}",
    )
    _one_line_exit_2(r, "has 2 of 64 rows that are not finite", "row 7, 40")
    assert not (tmp_path / "default").exists()
    r = run_cli("experiments.inspect", path, f"--out={tmp_path}/inspect")
    _one_line_exit_2(r, "SOURCE:", "has 2 of 64 rows that are not finite")
    assert not (tmp_path / "inspect").exists()


def test_a_table_beyond_memory_is_refused_at_once_in_one_line(tmp_path):
    """4,000,000 × 4,096 float32 with AdamW: the table alone is 61.0 GiB, its moments twice that; refused before
    any array or directory is made."""
    r = run_cli(
        "experiments.train",
        *ARGS,
        f"--out_dir={tmp_path}",
        "--data.vocab_size=4000000",
        "--model.embed_dim=4096",
        "--model.num_heads=4",
        timeout=120,
    )
    err = _one_line_exit_2(r, "the train state needs about", "optimizer state", "allowed: a smaller data.vocab_size")
    gib = lambda key: float(re.search(rf"{key} ([\d,.]+) GiB", err).group(1).replace(",", ""))
    params, moments = gib("parameters"), gib("optimizer state")
    assert 4_000_000 * 4096 * 4 / 2**30 <= params < 62.5 and moments == pytest.approx(2 * params, abs=0.1)  # AdamW
    assert "available on this host" in err or "free on" in err
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("optim", ["adamw", "sgd"])
def test_the_memory_estimate_counts_the_train_state_it_will_make(optim):
    """state_estimate from the config alone against the program's own abstract train state: the parameters'
    bytes, and the optimizer's moments (Adam: two float32 per parameter; SGD with momentum: one)."""
    from embjax.data.corpus import make_corpus
    from embjax.train.memory import state_estimate
    from embjax.train.step import Program

    cfg = load_config(None, [*TINY, f"--optim.name={optim}", "--model.tie_embeddings=false"])
    est = state_estimate(cfg)
    P = Program(cfg, make_corpus(cfg))
    params = jax.tree.leaves(P.abstract_state["params"])
    assert est["params"] == sum(x.size * x.dtype.itemsize for x in params)
    moment_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(P.abstract_state["opt_state"]) if x.ndim)
    assert est["optimizer"] == moment_bytes and est["gradients"] == est["params"]


def test_equal_rows_share_one_cosine_and_ties_go_to_the_lower_index():
    """A 600 × 48 table with 21 equal rows (as pretrained_missing=mean makes them): every equal neighbour gets the
    same cosine bit for bit, so the neighbours are ordered by index, and knn_class_purity equals a NumPy float64
    reference that computes one cosine per distinct row (the raw and the centred table)."""
    from embjax.analysis.metrics import embedding_report
    from embjax.analysis.neighbors import duplicate_rows, nearest_neighbors

    rng = np.random.default_rng(0)
    E = rng.normal(size=(600, 48)).astype(np.float32)
    E[100:120] = E[5]
    E[300:302] = E[7]
    labels = np.arange(600) % 16
    group, R = duplicate_rows(E)
    assert len(R) == 2 and sorted(np.flatnonzero(group >= 0)) == [5, 7, *range(100, 120), 300, 301]
    ids, cos = nearest_neighbors(E, np.array([5, 100, 119]), k=10)
    for row_ids, row_cos in zip(ids, cos):
        assert len(set(row_cos.tolist())) == 1 and list(row_ids) == sorted(row_ids)  # all at one cosine, by index

    def reference(X):
        uniq, inv = np.unique(X, axis=0, return_inverse=True)
        U = uniq / np.linalg.norm(uniq, axis=1, keepdims=True)
        C = (U @ U.T)[inv.ravel()][:, inv.ravel()]
        np.fill_diagonal(C, -np.inf)
        nn = np.array([np.lexsort((np.arange(len(X)), -C[i]))[:10] for i in range(len(X))])
        return np.mean((labels[nn] == labels[:, None]).mean(1))

    X = E.astype(np.float64)
    assert embedding_report(E, labels=labels)["emb/knn_class_purity"] == pytest.approx(reference(X), abs=1e-12)
    centred = embedding_report(E, labels=labels, center=True, prefix="c/")["c/knn_class_purity"]
    assert centred == pytest.approx(reference(X - X.mean(0)), abs=1e-12)
    assert duplicate_rows(rng.normal(size=(50, 8))) is None
