"""Epochs, the best checkpoint and early stopping: --epochs derives steps by its formula, best/* come from the
lowest eval loss (its benchmark keys equal gensim's on the best checkpoint's tables), resume and vmapped members
decide as uninterrupted, lone runs do, and patience stops a run early."""

import json
import math
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import ROOT, TINY, run_cli, wait_for_row

from embjax.config import ConfigError, load_config
from embjax.data.corpus import make_corpus
from embjax.outputs.run import MemoryRun
from embjax.runtime.signals import Signals
from embjax.train.loop import Loop
from embjax.train.step import Program

LEE = ["--data.kind=text", "--data.path=builtin:lee_news", "--data.tokenizer=word", "--data.vocab_size=2048"]
# planted, a constant lr high enough that the eval loss is lowest at step 40 of 80 (then 3 evals without a lower one
# at 45, 50, 55): measured 3.346 3.433 3.359 3.331 3.304 3.291 3.237 3.235 | 3.247 3.254 3.243 3.258 ...
PLANTED = [a for a in TINY if not a.startswith(("--steps", "--log.eval_every"))] + [
    "--steps=80",
    "--log.eval_every=5",
    "--log.wandb=false",
    "--checkpoint.keep_best=true",
    "--checkpoint.every=20",
    "--optim.schedule=constant",
    "--optim.warmup_steps=0",
    "--optim.lr=0.05",
]


def _train_tokens(cfg):
    """The prepared training stream's length, from the token file's size (not from embjax's metadata)."""
    folder = make_corpus(cfg).folder
    itemsize = np.dtype(json.load(open(os.path.join(folder, "meta.json")))["dtype"]).itemsize
    return os.path.getsize(os.path.join(folder, "train.bin")) // itemsize


def test_epochs_derive_steps_by_the_formula_and_a_different_steps_or_the_planted_corpus_is_refused():
    from embjax.train.selection import resolve_epochs

    cfg = load_config(None, [*LEE, "--data.seq_len=16", "--data.batch_size=8", "--epochs=3"])
    n = _train_tokens(cfg)
    (resolved,) = resolve_epochs([cfg])
    assert resolved.steps == math.ceil(3 * n / (8 * 16)) and resolved.epochs == 3 and n > 10_000
    given = load_config(
        None, [*LEE, "--data.seq_len=16", "--data.batch_size=8", "--epochs=3", f"--steps={resolved.steps}"]
    )
    assert resolve_epochs([given])[0] == resolved  # the stored config read back: the same run
    other = load_config(None, [*LEE, "--data.seq_len=16", "--data.batch_size=8", "--epochs=3", "--steps=7"])
    with pytest.raises(ConfigError, match=rf"^steps: got 7 with epochs=3, which is {resolved.steps} steps"):
        resolve_epochs([other])
    with pytest.raises(ConfigError, match=r"^epochs: got 2 with data.kind='planted'"):
        load_config(None, ["--epochs=2"])


def test_a_refused_epochs_is_one_line_and_exit_2(tmp_path):
    r = run_cli("experiments.train", *LEE, "--epochs=2", "--steps=7", f"--out_dir={tmp_path}", "--log.wandb=false")
    assert r.returncode == 2 and r.stderr.startswith("error: steps: got 7 with epochs=2") and r.stderr.count("\n") == 1
    assert not (tmp_path / "default").exists()


def _rows(run):
    return [(s, {k: v for k, v in r.items() if not k.startswith("perf/")}) for s, r in run.sink.rows]


def _evals(run):
    return [(s, r["eval/loss"]) for s, r in run.sink.rows if "eval/loss" in r and s > 0]


class _StopAt(MemoryRun):
    """A run that asks the loop to stop (as SIGTERM does) once it has logged a step at or past `at`."""

    def __init__(self, cfg, at):
        super().__init__(cfg)
        self.at, self.sig = at, None

    def log(self, step, row):
        super().log(step, row)
        if self.sig is not None and step >= self.at:
            self.sig.received = signal.SIGTERM


def _loop(runs, vmapped=False):
    cfg = runs[0].cfg
    with Signals() as sig:
        for r in runs:
            if isinstance(r, _StopAt):
                r.sig = sig
        return Loop(Program(cfg, make_corpus(cfg)), vmapped=vmapped, signals=sig, show=False).train(runs)


@pytest.mark.slow
def test_patience_stops_early_and_an_interrupted_run_with_keep_best_resumes_exactly():
    """Patience 3: the run stops 3 evals after its lowest eval loss (status finished, stopped early, its last
    checkpoint there); a run interrupted after the best and resumed logs the same rows, stops at the same step and
    keeps the same best state."""
    cfg = load_config(None, [*PLANTED, "--log.patience=3"])
    ref = MemoryRun(cfg)
    (s,) = _loop([ref])
    evals = _evals(ref)
    lowest, since, stop_at = math.inf, 0, None  # the rule, replayed on the logged eval losses
    for step, loss in evals:
        lowest, since = (loss, 0) if loss < lowest else (lowest, since + 1)
        stop_at = stop_at or (step if since == 3 else None)
    best = min(range(len(evals)), key=lambda i: evals[i][1])
    assert stop_at == evals[-1][0] and best == len(evals) - 4  # stopped 3 evals after the lowest
    assert s["status"] == "finished" and s["stopped_early"] is True and s["step"] == evals[-1][0] < 80
    assert s["best/step"] == evals[best][0] and s["best/eval/loss"] == evals[best][1]
    assert s["best/eval/ppl"] == pytest.approx(math.exp(evals[best][1]), rel=1e-12)
    assert max(ref.checkpoints) == s["step"] and ref.best[0] == s["best/step"]
    for _, row in ref.sink.rows:
        if "eval/loss" in row:
            assert row["eval/ppl"] == pytest.approx(math.exp(row["eval/loss"]), rel=1e-12)

    run = _StopAt(cfg, at=evals[best][0] + 1)  # interrupted after the best, before the stop
    (first,) = _loop([run])
    assert first["status"] == "interrupted" and evals[best][0] < first["step"] < s["step"]
    run.sig = None
    (again,) = _loop([run])
    assert _rows(run) == _rows(ref)
    assert {k: again[k] for k in s if k.startswith(("best/", "step", "status", "stopped"))} == {
        k: s[k] for k in s if k.startswith(("best/", "step", "status", "stopped"))
    }
    assert run.best[0] == ref.best[0]
    for a, b in zip(*(jax.tree.leaves(r.best[1]) for r in (run, ref))):
        np.testing.assert_array_equal(a, b)
    (third,) = _loop([run])  # run again when it has stopped early: it stays stopped there
    assert third["step"] == s["step"] and third["stopped_early"] is True and _rows(run) == _rows(ref)


@pytest.mark.slow
def test_vmapped_members_each_keep_their_own_best_and_stop_on_their_own():
    """Two lrs vmapped in one program, patience 3: each member's best step, stop step and best state are those of
    the member trained alone."""
    cfgs = [load_config(None, [*PLANTED, "--log.patience=3", f"--optim.lr={lr}", f"--name=m{i}"]) for i, lr in
            enumerate((0.05, 0.01))]  # fmt: skip
    together = [MemoryRun(c) for c in cfgs]
    summaries = _loop(together, vmapped=True)
    for cfg, run, s in zip(cfgs, together, summaries):
        alone = MemoryRun(cfg)
        (want,) = _loop([alone])
        assert (s["best/step"], s["step"], s["stopped_early"]) == (
            want["best/step"],
            want["step"],
            want["stopped_early"],
        )
        assert s["best/eval/loss"] == pytest.approx(want["best/eval/loss"], rel=1e-5)
        assert [st for st, _ in _rows(run)] == [st for st, _ in _rows(alone)]
        table = Program(cfg, make_corpus(cfg)).table  # the best tables (a key bias, whose gradient is 0, is noise)
        np.testing.assert_allclose(table(run.best[1]["params"]), table(alone.best[1]["params"]), rtol=1e-4, atol=1e-5)
    assert summaries[0]["step"] != summaries[1]["step"]  # they stopped at different steps


@pytest.mark.slow
def test_a_run_directory_killed_after_its_best_resumes_to_the_same_rows_best_checkpoint_and_stop(tmp_path):
    """kill -9 between the best eval and the early stop, then the same command: metrics.jsonl byte for byte, the
    same best checkpoint (step and arrays), the same stop and best/* keys as an uninterrupted run directory."""
    from embjax.cli import train_main
    from embjax.runtime.checkpoint import Checkpointer

    args = [*PLANTED, "--log.patience=3", "--log.progress=false", "--checkpoint.every=10"]
    assert train_main([*args, f"--out_dir={tmp_path / 'ref'}"]) == 0
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "experiments.train", *args, f"--out_dir={tmp_path / 'cut'}"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_for_row(tmp_path / "cut" / "default" / "metrics.jsonl", 46, p)  # past the best (40), before the stop (55)
    p.send_signal(signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL  # killed mid-run, not finished
    assert not (tmp_path / "cut" / "default" / "summary.json").exists()
    r = run_cli("experiments.train", *args, f"--out_dir={tmp_path / 'cut'}")
    assert r.returncode == 0 and "resuming" in r.stderr, r.stderr
    ref, cut = tmp_path / "ref" / "default", tmp_path / "cut" / "default"
    assert (cut / "metrics.jsonl").read_text() == (ref / "metrics.jsonl").read_text()
    a, b = (json.loads((d / "summary.json").read_text()) for d in (ref, cut))
    assert a["best/step"] == 40 and a["stopped_early"] is True and a["step"] == 55
    assert {k: b[k] for k in a if k.startswith(("best/", "stopped", "step"))} == {
        k: a[k] for k in a if k.startswith(("best/", "stopped", "step"))
    }
    assert os.listdir(ref / "best_checkpoint") == os.listdir(cut / "best_checkpoint") == ["40"]
    cfg = load_config(str(ref / "config.yaml"))
    abstract = Program(cfg, make_corpus(cfg)).abstract_state
    states = [Checkpointer(str(d / "best_checkpoint"), keep=1).restore(40, abstract)[0] for d in (ref, cut)]
    for x, y in zip(*(jax.tree.leaves(st) for st in states)):
        np.testing.assert_array_equal(x, y)


def _gensim_scores(E, tokens):
    from gensim.models import KeyedVectors
    from gensim.test.utils import datapath

    kv = KeyedVectors(E.shape[1])
    kv.add_vectors(tokens, E.astype(np.float32))
    out = {}
    for name, f in (("wordsim353", "wordsim353.tsv"), ("simlex999", "simlex999.txt")):
        _, rho, _ = kv.evaluate_word_pairs(datapath(f), restrict_vocab=len(tokens), dummy4unknown=False)
        out[f"{name}/spearman"] = rho.statistic
    acc, sections = kv.evaluate_word_analogies(datapath("questions-words.txt"), restrict_vocab=len(tokens))
    out["google/accuracy"] = acc
    return out


@pytest.mark.slow
def test_best_keys_come_from_the_lowest_eval_loss_and_equal_gensim_on_the_best_checkpoints_tables(tmp_path):
    """An untied LM overfitting 3 % of lee_news for 10 epochs: its eval loss is lowest mid-run and rises at the end;
    best/step is that eval's step, and best/word_sim…, best/analogy… (both tables) equal gensim's evaluation of the
    tables of best_checkpoint/ restored with orbax, which best_embeddings.npy and best_output_embeddings.npy hold;
    the steps are the formula's and every row has train/epoch."""
    from embjax.runtime.checkpoint import Checkpointer

    args = [*LEE, "--data.seq_len=16", "--data.batch_size=8", "--data.eval_batches=2", "--data.train_fraction=0.03"]
    args += ["--model.embed_dim=32", "--model.num_layers=1", "--model.num_heads=2", "--model.tie_embeddings=false"]
    args += ["--optim.lr=0.01", "--optim.schedule=constant", "--optim.warmup_steps=0", "--epochs=10"]
    args += ["--log.eval_every=10", "--log.metrics_every=0", "--checkpoint.keep_best=true", "--checkpoint.every=0"]
    args += ["--log.word_similarity=[wordsim353, simlex999]", "--log.analogy=google", "--log.wandb=false"]
    r = run_cli("experiments.train", *args, f"--out_dir={tmp_path}", "--name=lm", "--log.progress=false")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "lm"
    s = json.loads((run / "summary.json").read_text())
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    n = s["data/train_tokens"]
    assert s["steps"] == s["step"] == math.ceil(10 * n / (8 * 16))
    assert f"finished at step {s['step']}/{s['steps']} in" in r.stdout  # the resolved steps, not the config's 0
    cfg = load_config(str(run / "config.yaml"))
    assert cfg.steps == s["steps"] and cfg.epochs == 10
    assert all(row["train/epoch"] == pytest.approx(row["step"] * 8 * 16 / n, rel=1e-12) for row in rows)
    evals = [(row["step"], row["eval/loss"]) for row in rows if "eval/loss" in row and row["step"] > 0]
    best_step, best_loss = min(evals, key=lambda e: e[1])
    assert evals[-1][1] > best_loss + 0.1 and best_step < evals[-1][0]  # it rose at the end
    assert (s["best/step"], s["best/eval/loss"]) == (best_step, best_loss) and s["stopped_early"] is False
    assert sorted(os.listdir(run / "best_checkpoint")) == [str(best_step)]

    program = Program(cfg, make_corpus(cfg))
    state, _ = Checkpointer(str(run / "best_checkpoint"), keep=1).restore(best_step, program.abstract_state)
    tokens = [line.split("\t")[1] for line in (run / "tokens.tsv").read_text().splitlines()[1:]]
    for table, E in (("", program.table(state["params"])), ("_out", program.output_table(state["params"]))):
        # the run directory holds the best tables too (best_embeddings.npy, best_output_embeddings.npy)
        np.testing.assert_array_equal(np.load(run / f"best{table.replace('_out', '_output')}_embeddings.npy"), E)
        want = _gensim_scores(np.asarray(E), tokens)
        for key in ("wordsim353/spearman", "simlex999/spearman"):
            assert s[f"best/word_sim{table}/{key}"] == pytest.approx(want[key], abs=1e-6), (table, key)
        assert s[f"best/analogy{table}/google/accuracy"] == want["google/accuracy"]
    final = _gensim_scores(np.load(run / "embeddings.npy"), tokens)  # the final table scores otherwise
    assert s["word_sim/simlex999/spearman"] == pytest.approx(final["simlex999/spearman"], abs=1e-6)
    assert s["best/word_sim/simlex999/spearman"] != s["word_sim/simlex999/spearman"]
