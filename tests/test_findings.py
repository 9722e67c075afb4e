"""Findings: the verdict logic on synthetic runs (a finding that holds, one that fails, one within noise), the
metrics they read (IsoScore, per-frequency cosines, the planted logit rank, linear CKA, per-layer gradient
norms) against float64 references, and the outputs they need."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from conftest import TINY, wandb_records

from embjax.analysis.metrics import embedding_report
from embjax.cli import train_main
from embjax.config import load_config
from embjax.data.corpus import PlantedCorpus, make_corpus
from embjax.findings import BY_NAME
from embjax.findings.document import write_markdown
from embjax.findings.runs import linear_cka, load
from embjax.findings.softmax_bottleneck import analyse as analyse_bottleneck
from embjax.findings.tying_anisotropy import analyse as analyse_tying
from embjax.findings.verdict import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, band, evaluate, interval_verdict
from embjax.train.step import Program, hparams


def test_interval_verdict_holds_fails_and_within_noise():
    assert interval_verdict([0.50, 0.52, 0.49], lo=0.2) == REPRODUCED
    assert interval_verdict([0.01, -0.02, 0.00], lo=0.2) == NOT_REPRODUCED
    assert interval_verdict([0.05, 0.45, 0.25], lo=0.2) == INCONCLUSIVE  # the band straddles 0.2
    assert interval_verdict([0.5], lo=0.2) == INCONCLUSIVE  # one seed says nothing about noise
    assert interval_verdict([-1.0, -0.9, -1.1], lo=-1.5, hi=-0.5) == REPRODUCED
    assert interval_verdict([0.7, 0.8, 0.75], lo=-1.5, hi=-0.5) == NOT_REPRODUCED
    m, lo, hi = band([1.0, 2.0, 3.0])  # mean 2, s.e. 1/√3
    assert m == 2.0 and lo == pytest.approx(2 - 2 / math.sqrt(3)) and hi == pytest.approx(2 + 2 / math.sqrt(3))


def _run(d, cfg, summary, rows):
    """A run directory as experiments.train writes it (the part findings read)."""
    os.makedirs(d)
    yaml.safe_dump(cfg, open(os.path.join(d, "config.yaml"), "w"))
    json.dump({"status": "finished", **summary}, open(os.path.join(d, "summary.json"), "w"))
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _tying_sweep(root, tied_cos, noise):
    """Synthetic tying-sweep runs: tied mean cosine `tied_cos` + noise × (−1, 0, 1) over the seeds at small σ,
    untied 0.02, centred 3 % of it: the tied − untied band is (tied_cos − 0.02) ± 2 noise / √3."""
    for s in (0.02, 0.2, 1.0):
        for tie in (True, False):
            for k in range(3):
                cos = tied_cos + noise * (k - 1) if tie and s < 0.5 else 0.02
                _run(
                    os.path.join(root, f"s{s}-{tie}-{k}"),
                    {"seed": k, "model": {"tie_embeddings": tie}, "embedding": {"init_std": s}, "steps": 600},
                    {
                        "emb/cos_mean": cos,
                        "emb_centered/cos_mean": 0.03 * cos,
                        "eval/loss": 2.0,
                        "emb/cos_mean_rest": cos + 0.1,
                        "emb/cos_mean_top10pct": cos - 0.1,
                    },
                    [{"step": 0}],
                )


@pytest.mark.parametrize(
    "tied_cos,noise,verdict", [(0.6, 0.01, REPRODUCED), (0.02, 0.01, NOT_REPRODUCED), (0.25, 0.2, INCONCLUSIVE)]
)
def test_a_finding_from_runs_on_disk(tmp_path, tied_cos, noise, verdict):
    root = str(tmp_path / "tying")
    _tying_sweep(root, tied_cos, noise)
    runs = load(root)
    assert len(runs) == 18
    checks, _ = analyse_tying(runs)
    assert checks[0].verdict == verdict  # tied − untied mean cosine ≥ 0.2
    if verdict == REPRODUCED:
        assert evaluate(BY_NAME["tying_anisotropy"], runs)[0] == REPRODUCED
    path = write_markdown(str(tmp_path), [(BY_NAME["tying_anisotropy"], root, runs)], ["synthetic"])
    text = open(path).read()
    verdict = evaluate(BY_NAME["tying_anisotropy"], runs)[0]
    assert f"| 1 | Tying makes the space anisotropic | [{verdict}](#1-tying-anisotropy) | — |  |" in text
    assert os.path.exists(tmp_path / "tying_anisotropy.png")


def test_the_bottleneck_verdict_reads_the_logit_rank_from_the_summary(tmp_path):
    root = str(tmp_path / "b")
    for d in (2, 4, 8, 16, 32, 64):
        for k in range(3):
            excess = 1.5 * max(0.0, 1 - d / 16) + 0.02 + 0.005 * k  # steep up to r = 16, flat past it
            _run(
                os.path.join(root, f"d{d}-{k}"),
                {"seed": k, "model": {"embed_dim": d}, "steps": 10},
                {"eval/loss": 3.0 + excess, "data/entropy_rate": 3.0, "data/logit_rank": 16.0},
                [{"step": 0}],
            )
    checks, (_, rows) = analyse_bottleneck(load(root))
    assert [c.verdict for c in checks] == [REPRODUCED, REPRODUCED]
    assert checks[0].values == pytest.approx([1.5 * 0.75] * 3)  # d = 4 (≤ r/4) against d = 16
    assert rows[0][0] == "2" and len(rows) == 6


def _isoscore_reference(X):
    """IsoScore by the paper's steps in float64: PCA-rotate, variances, normalise, defect, fraction, score."""
    X = np.asarray(X, np.float64)
    Z = (X - X.mean(0)) @ np.linalg.svd(X - X.mean(0), full_matrices=False)[2].T
    var = Z.var(0)
    n = X.shape[1]
    sig = math.sqrt(n) * var / np.linalg.norm(var)
    delta = np.linalg.norm(sig - 1) / math.sqrt(2 * (n - math.sqrt(n)))
    k = (n - delta**2 * (n - math.sqrt(n))) ** 2 / n**2
    return (n * k - 1) / (n - 1)


def test_isoscore_against_float64_and_what_a_shift_does():
    rng = np.random.default_rng(0)
    E = rng.standard_normal((600, 12)) * np.linspace(0.2, 2.0, 12)  # anisotropic variances
    rep = embedding_report(E.astype(np.float32))
    assert rep["emb/isoscore"] == pytest.approx(_isoscore_reference(E), rel=1e-4)
    assert embedding_report(rng.standard_normal((4000, 8)))["emb/isoscore"] > 0.95
    line = np.outer(rng.standard_normal(500), rng.standard_normal(8))
    assert embedding_report(line)["emb/isoscore"] == pytest.approx(0.0, abs=1e-6)
    shifted = E + 3.0 * rng.standard_normal(12)  # every row moved by one vector
    a = embedding_report(E, center=False)
    b = embedding_report(shifted)
    assert abs(b["emb/cos_mean"] - a["emb/cos_mean"]) > 0.3  # mean cosine moves a lot
    assert b["emb/isoscore"] == pytest.approx(a["emb/isoscore"], abs=1e-9)  # IsoScore does not
    ca, cb = embedding_report(E, center=True, prefix="c/"), embedding_report(shifted, center=True, prefix="c/")
    assert cb["c/cos_mean"] == pytest.approx(ca["c/cos_mean"], abs=1e-9)  # nor does the centred mean cosine


def test_cosines_inside_frequency_groups_against_brute_force():
    rng = np.random.default_rng(1)
    E, counts = rng.standard_normal((200, 6)) + 0.5, rng.permutation(200).astype(float)
    rep = embedding_report(E, counts=counts)
    U = E / np.linalg.norm(E, axis=1, keepdims=True)
    top = np.argsort(-counts, kind="mergesort")[:20]
    rest = np.setdiff1d(np.arange(200), top)
    for ids, key in ((top, "emb/cos_mean_top10pct"), (rest, "emb/cos_mean_rest")):
        C = U[ids] @ U[ids].T
        assert rep[key] == pytest.approx((C.sum() - len(ids)) / (len(ids) * (len(ids) - 1)), rel=1e-9)


def test_logit_rank_is_the_rank_of_the_full_log_probability_matrix():
    c = PlantedCorpus(48, 6, 1.1, 3.0, 8, seed=0)
    cls = np.arange(48) % 6
    q = np.bincount(cls, weights=c.unigram)
    P = c.transition[cls][:, cls] * (c.unigram / q[cls])[None, :]  # P[i, j] = A[c_i, c_j] p_j / q_{c_j}
    np.testing.assert_allclose(P.sum(1), 1.0)
    assert c.info["data/logit_rank"] == np.linalg.matrix_rank(np.log(P)) == 6


def test_linear_cka_against_the_hsic_formula_and_its_invariances():
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((50, 5)), rng.standard_normal((50, 7))
    H = np.eye(50) - 1 / 50
    K, L = X @ X.T, Y @ Y.T
    hsic = lambda A, B: np.trace(A @ H @ B @ H)
    assert linear_cka(X, Y) == pytest.approx(hsic(K, L) / math.sqrt(hsic(K, K) * hsic(L, L)), rel=1e-10)
    Q = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    assert linear_cka(X, 3 * X @ Q + 1) == pytest.approx(1.0, abs=1e-12)


# a tiny untied 2-layer transformer: the per-layer and residual-stream gradient tests' model
UNTIED_2_LAYERS = {
    "data.vocab_size": 64,
    "data.num_classes": 4,
    "data.seq_len": 8,
    "data.batch_size": 4,
    "model.embed_dim": 16,
    "model.num_layers": 2,
    "model.num_heads": 2,
    "model.tie_embeddings": False,
}


@pytest.mark.slow
def test_per_layer_gradient_norms_and_the_untied_output_table(tmp_path):
    cfg = load_config(None, UNTIED_2_LAYERS)
    P = Program(cfg, make_corpus(cfg))
    state = jax.jit(P.init)(0, hparams(cfg))
    batch = P.corpus.sample(P.corpus.tables, jax.random.key(3), 4)
    _, m = jax.jit(P.step)(state, batch)
    grads = jax.jit(jax.grad(P.loss))(state["params"], state["hp"], batch)
    norm = lambda t: math.sqrt(sum(float(np.sum(np.asarray(x, np.float64) ** 2)) for x in jax.tree.leaves(t)))
    assert float(m["train/grad_norm_embed"]) == pytest.approx(norm(grads["embed"]), rel=1e-4)
    assert float(m["train/grad_norm_block0"]) == pytest.approx(norm(grads["blocks"][0]), rel=1e-4)
    args = [a for a in TINY if not a.startswith("--steps")] + [
        "--steps=5",
        f"--out_dir={tmp_path}",
        "--log.wandb=false",
        "--model.kind=linear",
        "--model.tie_embeddings=false",
    ]
    assert train_main(args) == 0
    out, inp = np.load(tmp_path / "default" / "output_embeddings.npy"), np.load(tmp_path / "default" / "embeddings.npy")
    assert out.shape == inp.shape == (64, 16) and not np.allclose(out, inp)
    assert train_main(args[:-1] + ["--model.tie_embeddings=true", "--name=tied"]) == 0
    assert not os.path.exists(tmp_path / "tied" / "output_embeddings.npy")


def test_verdicts_and_plots_reach_an_offline_wandb_report_run(tmp_path):
    import glob

    from embjax.findings.document import log_to_wandb

    root = str(tmp_path / "tying")
    _tying_sweep(root, 0.6, 0.01)
    for cfg_path in glob.glob(f"{root}/*/config.yaml"):  # runs made with W&B on (offline), as by default
        cfg = yaml.safe_load(open(cfg_path))
        yaml.safe_dump({**cfg, "log": {"wandb": True, "mode": "offline"}}, open(cfg_path, "w"))
    results = [(BY_NAME[n], root, load(root)) for n in ("tying_anisotropy", "tied_vs_untied")]
    write_markdown(str(tmp_path), results, [])
    log_to_wandb(str(tmp_path), results)
    files = glob.glob(f"{root}/wandb/offline-run-*/*.wandb")
    assert len(files) == 1
    records = wandb_records(files[0])
    run = [r.run for r in records if r.WhichOneof("record_type") == "run"][0]
    assert run.run_group == "tying" and run.display_name == "tying-findings"
    summary = {
        i.key: json.loads(i.value_json)
        for r in records
        if r.WhichOneof("record_type") == "summary"
        for i in r.summary.update
    }
    assert summary["finding/tying_anisotropy"] == REPRODUCED
    assert summary["finding/tied_vs_untied"] == evaluate(BY_NAME["tied_vs_untied"], results[1][2])[0]
    images = {
        i.nested_key[0]: json.loads(i.value_json)
        for r in records
        if r.WhichOneof("record_type") == "history"
        for i in r.history.item
        if list(i.nested_key[1:]) == ["_type"]
    }
    assert images == {"findings/tying_anisotropy": "image-file"}  # the plot (tied vs untied has none)


@pytest.mark.slow
def test_stream_gradient_is_the_gradient_at_the_first_layernorms_input():
    """train/grad_norm_stream0 (a zero probe at each block's input) equals ‖∂L/∂x‖ from jax.grad of the loss
    written as a function of the first block's input x (embedding + positions), and the ratio uses the last
    block's the same way; the probes change nothing else (loss and parameter gradients as without them)."""
    import optax

    cfg = load_config(None, {**UNTIED_2_LAYERS, "embedding.init_std": 0.01})
    P = Program(cfg, make_corpus(cfg))
    state = jax.jit(P.init)(0, hparams(cfg))
    batch = P.corpus.sample(P.corpus.tables, jax.random.key(3), 4)
    _, m = jax.jit(P.step)(state, batch)
    model = P.model(state["params"])
    inp, tgt = batch[:, :-1], batch[:, 1:]
    T = inp.shape[1]
    allowed = jnp.broadcast_to(jnp.tril(jnp.ones((T, T), bool)), (4, T, T))

    mult = state["hp"]["attn_mult"]  # a per-member value: the shared program's blocks take it from the state

    def loss_from(i, x):  # the loss as a function of block i's input
        for block in model.blocks[i:]:
            x, _ = block(x, allowed, mult)
        logits = model.logits(model.ln_f(x))
        return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), tgt).mean()

    x0 = model.lookup(inp) + model.pos[...][:T]
    g0 = np.asarray(jax.jit(jax.grad(lambda x: loss_from(0, x)))(x0), np.float64)
    x1, _ = model.blocks[0](x0, allowed, mult)
    g1 = np.asarray(jax.jit(jax.grad(lambda x: loss_from(1, x)))(x1), np.float64)
    assert float(m["train/grad_norm_stream0"]) == pytest.approx(np.linalg.norm(g0), rel=1e-4)
    assert float(m["train/grad_stream_ratio"]) == pytest.approx(np.linalg.norm(g0) / np.linalg.norm(g1), rel=1e-4)
    loss, grads = jax.jit(jax.value_and_grad(P.loss))(state["params"], state["hp"], batch)
    assert float(m["train/loss"]) == pytest.approx(float(loss), rel=1e-6)
    assert float(m["train/grad_norm"]) == pytest.approx(float(optax.tree.norm(grads)), rel=1e-5)
    # a model without blocks logs no stream gradient
    lin = load_config(None, {"data.vocab_size": 64, "model.kind": "linear", "model.embed_dim": 16})
    PL = Program(lin, make_corpus(lin))
    _, ml = jax.jit(PL.step)(
        jax.jit(PL.init)(0, hparams(lin)), PL.corpus.sample(PL.corpus.tables, jax.random.key(3), 4)
    )
    assert "train/grad_norm_stream0" not in ml and np.isfinite(float(ml["train/loss"]))


def test_small_sigma_reads_the_stream_gradient_at_the_first_step():
    """Finding 3's checks on hand-made runs: ‖∂L/∂x₀‖ = c/σ (slope −1, noise-free per seed) and 8× smaller with √d
    is reproduced on every check; the same runs with the gradient flat in σ are not reproduced on the slopes."""
    from embjax.findings.small_sigma_preln import analyse as analyse_small_sigma

    def runs(power):
        out = []
        for s in (0.001, 0.01, 0.1, 1.0):
            for scale in (1.0, "sqrt_d"):
                for seed in (0, 1, 2):
                    g = (1 + 0.01 * seed) * s**power / (8 if scale == "sqrt_d" else 1)
                    rows = [
                        {
                            "step": t,
                            "train/grad_norm_stream0": g * (1 + 0.001 * t),
                            "train/grad_norm_embed": g / 3,
                            "train/grad_norm_block0": 1.0,
                        }
                        for t in range(1, 11)
                    ]
                    cfg = {"seed": seed, "embedding": {"init_std": s, "scale": scale}}
                    out.append({"cfg": cfg, "rows": rows, "summary": {"status": "finished"}})
        return out

    checks, (cols, rows) = analyse_small_sigma(runs(-1.0))
    assert [c.verdict for c in checks] == [REPRODUCED] * 4
    assert checks[0].values == pytest.approx([-1.0] * 3) and checks[3].values == pytest.approx([math.log(1 / 8)] * 3)
    assert len(rows) == 8 and cols[3] == "‖∂L/∂x₀‖ step 1"
    flat, _ = analyse_small_sigma(runs(0.0))
    assert [c.verdict for c in flat[:3]] == [NOT_REPRODUCED] * 3
    assert evaluate(BY_NAME["small_sigma_preln"], runs(-1.0))[0] == REPRODUCED


def test_the_pretrained_start_and_row_update_verdicts_from_runs_on_disk(tmp_path):
    """Finding 9 on synthetic fine-tuning runs where the pretrained start is 0.3 nats ahead at step 50 and reaches
    scratch's final loss at step 100 (200 steps sooner), frozen ends 0.1 behind trainable, frozen random 0.5
    behind frozen pretrained, and freezing only the pretrained rows ends 0.2 ahead of freezing all on the rare
    targets: every check reproduced; with the frozen arm ahead at the end, the adaptation check is not; a
    pretrained start that never reaches scratch's final loss saves −50 steps. Finding 8 on synthetic drift rows."""
    from embjax.findings.pretrained_start import analyse as analyse_pretrained_start
    from embjax.findings.row_sparse_updates import analyse as analyse_row_updates

    def sweep(root, frozen_end, pre_end=2.9):
        ends = {("normal", False): 3.0, ("pretrained", False): pre_end, ("pretrained", True): frozen_end}
        ends |= {("normal", True): frozen_end + 0.5, ("pretrained", "pretrained"): frozen_end}
        for (init, freeze), end in ends.items():
            rest = end + 1 - (0.2 if freeze == "pretrained" else 0.0)
            for k in range(3):
                early = 4.0 - (0.3 if init == "pretrained" else 0.0) + 0.01 * k
                mid = end if init == "pretrained" else (early + end) / 2
                rows = [
                    {"step": 50, "eval/loss": early, "eval/loss_bucket_rest": early + 1},
                    {"step": 100, "eval/loss": mid + 0.01 * k, "eval/loss_bucket_rest": mid + 1},
                    {"step": 300, "eval/loss": end + 0.01 * k, "eval/loss_bucket_rest": rest},
                ]
                cfg = {"seed": k, "steps": 300, "log": {"eval_every": 50}}
                cfg["embedding"] = {"init": init, "freeze": freeze}
                _run(os.path.join(root, f"{init}-{freeze}-{k}"), cfg, {}, rows)
        return load(root)

    checks, (cols, rows) = analyse_pretrained_start(sweep(str(tmp_path / "a"), 3.0))
    assert [c.verdict for c in checks] == [REPRODUCED] * 6 and len(rows) == 5
    assert checks[0].values == [200.0] * 3
    checks, _ = analyse_pretrained_start(sweep(str(tmp_path / "b"), 2.5))
    assert checks[3].verdict == NOT_REPRODUCED
    checks, _ = analyse_pretrained_start(sweep(str(tmp_path / "c"), 3.0, pre_end=3.2))
    assert checks[0].values == [-50.0] * 3 and checks[0].verdict == NOT_REPRODUCED

    root = str(tmp_path / "rows")
    for name in ("sgd", "adamw"):
        for mode in ("dense", "lazy"):
            for tie in (False, True):
                moves = name == "adamw" and (mode == "dense" or tie)
                for k in range(3):
                    rows = [
                        {"step": s, "emb/untouched_drift": 0.01 * s if moves else 0.0,
                         "emb/untouched_moved_frac": 0.9 + 0.01 * k if moves else 0.0}
                        for s in range(10, 110, 10)
                    ]  # fmt: skip
                    rest = 5.0 + (0.02 if mode == "lazy" else 0.0) + 0.01 * k
                    cfg = {"seed": k, "optim": {"name": name, "row_updates": mode}, "model": {"tie_embeddings": tie}}
                    _run(os.path.join(root, f"{name}-{mode}-{tie}-{k}"), cfg, {"eval/loss_bucket_rest": rest}, rows)
    checks, (cols, rows) = analyse_row_updates(load(root))
    assert [c.verdict for c in checks] == [REPRODUCED] * 5 and len(rows) == 8
