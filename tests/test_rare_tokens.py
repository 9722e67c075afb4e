"""Rare tokens: eval loss and accuracy per frequency bucket, and the token counts they rest on."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from embjax.config import load_config
from embjax.data.corpus import make_corpus
from embjax.train.step import Program, hparams
from tests.conftest import TINY


def _program(*extra):
    cfg = load_config(None, [*TINY, "--data.vocab_size=300", "--data.zipf_exponent=1.5", *extra])
    return cfg, Program(cfg, make_corpus(cfg))


@pytest.mark.slow
def test_token_counts_are_the_trained_batches_bincount():
    cfg, P = _program()
    state = jax.jit(P.init)(0, hparams(cfg))
    step = jax.jit(P.train_steps, static_argnums=2)
    expected = np.zeros(cfg.data.vocab_size, np.int64)
    for _ in range(3):
        expected += np.bincount(np.asarray(P.batch(P.corpus.tables, state)).ravel(), minlength=cfg.data.vocab_size)
        state, _ = step(state, P.corpus.tables, 1)
    np.testing.assert_array_equal(np.asarray(state["token_counts"]), expected)


def _log_softmax64(logits):
    x = np.asarray(logits, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


@pytest.mark.slow
@pytest.mark.parametrize("pad_id", [None, 5])
def test_eval_buckets_match_a_float64_reference(pad_id):
    """Buckets by the corpus counts' rank (top 3 of 300 types = 1 %, next 27, the rest) with unseen tokens
    (count 0 in the state) taken out of them; each bucket's loss is the mean cross-entropy of its
    non-padding targets, recomputed here in float64 from the model's logits."""
    extra = [] if pad_id is None else [f"--model.pad_id={pad_id}"]
    cfg, P = _program(*extra)
    state = jax.jit(P.init)(0, hparams(cfg))
    V = cfg.data.vocab_size
    rng = np.random.default_rng(0)
    unseen = rng.random(V) < 0.3
    state["token_counts"] = jnp.asarray(np.where(unseen, 0, 7), jnp.int32)
    batches = P.corpus.eval_batches(jax.random.key(3), 2, cfg.data.batch_size)
    out = jax.device_get(jax.jit(P.evaluate)(state, batches))

    order = np.argsort(-np.asarray(P.corpus.counts, np.float64), kind="stable")
    bucket = np.full(V, 2)
    bucket[order[:3]], bucket[order[3:30]] = 0, 1
    bucket[unseen] = 3
    model = P.model(state["params"])
    ce, hit, bk = [], [], []
    means = []
    for b in batches:
        inp, tgt = b[:, :-1], b[:, 1:]
        mask = None if pad_id is None else jnp.asarray(inp != pad_id)
        # the shared program's blocks take the member's attn_mult (a value key) from the state
        h = model.features_and_coords(jnp.asarray(inp), mask, attn_mult=state["hp"]["attn_mult"])[1]
        logits = np.asarray(model.logits(h), np.float64)
        lp = _log_softmax64(logits)
        c = -np.take_along_axis(lp, tgt[..., None], -1)[..., 0]
        keep = np.ones_like(c, bool) if pad_id is None else tgt != pad_id
        means.append(c[keep].mean())
        ce.append(c[keep]), hit.append((logits.argmax(-1) == tgt)[keep]), bk.append(bucket[tgt][keep])
    ce, hit, bk = np.concatenate(ce), np.concatenate(hit), np.concatenate(bk)
    assert out["eval/loss"] == pytest.approx(np.mean(means), rel=1e-5)
    assert out["eval/acc"] == pytest.approx(hit.mean(), abs=1e-6)
    for k, name in enumerate(("top1", "top1_10", "rest", "unseen")):
        assert (bk == k).sum() > 0, name  # every bucket has targets in this case
        assert out[f"eval/loss_bucket_{name}"] == pytest.approx(ce[bk == k].mean(), rel=1e-5), name
        assert out[f"eval/acc_bucket_{name}"] == pytest.approx(hit[bk == k].mean(), abs=1e-6), name


def test_an_empty_bucket_is_nan():
    cfg, P = _program()
    state = jax.jit(P.init)(0, hparams(cfg))
    state["token_counts"] = jnp.ones_like(state["token_counts"])  # every token seen: no unseen targets
    out = jax.jit(P.evaluate)(state, P.corpus.eval_batches(jax.random.key(3), 1, cfg.data.batch_size))
    assert np.isnan(out["eval/loss_bucket_unseen"]) and np.isfinite(out["eval/loss_bucket_rest"])


# -- embedding kinds ----------------------------------------------------------------------------------
from flax import nnx  # noqa: E402

from embjax import AdaptiveEmbedding, FactorizedEmbedding, HashedEmbedding, TokenEmbedding  # noqa: E402
from embjax.model.embedding import hash_buckets  # noqa: E402


def _fmix_reference(i, j, h, B, seed):
    """murmur3's 32-bit finaliser in plain Python integers, as hash_buckets documents it."""
    x = ((i * h + j) ^ ((0x9E3779B9 * (seed + 1)) & 0xFFFFFFFF)) & 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x85EBCA6B) & 0xFFFFFFFF
    x = ((x ^ (x >> 13)) * 0xC2B2AE35) & 0xFFFFFFFF
    return (x ^ (x >> 16)) % B


def _layer(kind):
    V, D = 12, 4
    order = np.array([3, 0, 7, 1, 11, 2, 5, 4, 10, 6, 9, 8])  # ids from most to least frequent
    if kind == "factorized":
        return FactorizedEmbedding(V, D, rank=3, init_std=0.5, rngs=nnx.Rngs(0))
    if kind == "hashed":
        return HashedEmbedding(V, D, buckets=5, num_hashes=2, hash_seed=7, init_std=0.5, rngs=nnx.Rngs(0))
    return AdaptiveEmbedding(V, D, cutoffs=(2, 6), factor=2, order=order, init_std=0.5, rngs=nnx.Rngs(0))


def _reference(kind, layer, p, ids):
    """Forward rows (float64) and the gradient of Σ rows·G for each parameter, by hand."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    G = np.random.default_rng(1).standard_normal((len(ids), layer.embed_dim))
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    rows = []
    for n, i in enumerate(ids):
        if kind == "factorized":
            rows.append(p["embedding"][i] @ p["projection"])
            grads["embedding"][i] += p["projection"] @ G[n]
            grads["projection"] += np.outer(p["embedding"][i], G[n])
        elif kind == "hashed":
            idx = [_fmix_reference(int(i), j, 2, 5, 7) for j in range(2)]
            rows.append(sum(p["importance"][i, j] * p["embedding"][b] for j, b in enumerate(idx)))
            for j, b in enumerate(idx):
                grads["embedding"][b] += p["importance"][i, j] * G[n]
                grads["importance"][i, j] += p["embedding"][b] @ G[n]
        else:
            r = list(layer.order).index(int(i))
            c = 0 if r < 2 else 1 if r < 6 else 2
            local = r - (0, 2, 6)[c]
            rows.append(p[f"table{c}"][local] @ p[f"proj{c}"])
            grads[f"table{c}"][local] += p[f"proj{c}"] @ G[n]
            grads[f"proj{c}"] += np.outer(p[f"table{c}"][local], G[n])
    return np.stack(rows), G, grads


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["factorized", "hashed", "adaptive"])
def test_kind_forward_and_gradient_match_float64_references(kind):
    layer = _layer(kind)
    ids = np.array([0, 3, 5, 5, 11, 8, 2])
    graphdef, params = nnx.split(layer, nnx.Param)
    p = {k: v.get_value() for k, v in params.items()}
    rows_ref, G, grads_ref = _reference(kind, layer, p, ids)
    np.testing.assert_allclose(np.asarray(layer(jnp.asarray(ids)), np.float64), rows_ref, rtol=1e-5, atol=1e-6)
    # the effective table holds the same rows, in id order, and in chunks too
    table = np.asarray(layer.table(), np.float64)
    np.testing.assert_allclose(table[ids], rows_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([np.asarray(r) for _, r in layer.rows(chunk=5)]), table, rtol=1e-6)

    def f(state):
        return jnp.sum(nnx.merge(graphdef, state)(jnp.asarray(ids)) * jnp.asarray(G, jnp.float32))

    g = jax.grad(f)(params)
    for k, ref in grads_ref.items():
        np.testing.assert_allclose(np.asarray(g[k].get_value(), np.float64), ref, rtol=1e-4, atol=1e-5, err_msg=k)
    # tied logits are h · Eᵀ of the effective table
    h = jax.random.normal(jax.random.key(2), (3, 4))
    np.testing.assert_allclose(np.asarray(layer.attend(h)), np.asarray(h) @ table.T, rtol=1e-4, atol=1e-5)


def test_parameter_counts_follow_the_papers_arithmetic():
    # the large layers abstractly (nnx.eval_shape: shapes and dtypes, no 38 M floats drawn); the counts are
    # the layers' own num_params, which read only shapes
    big = nnx.eval_shape(lambda: TokenEmbedding(50_000, 768, rngs=nnx.Rngs(0)))
    assert big.num_params() == 38_400_000 and big.num_bytes() == 4 * 38_400_000  # the lesson's 38.4 M
    fact = nnx.eval_shape(lambda: FactorizedEmbedding(50_000, 768, rank=128, rngs=nnx.Rngs(0)))
    assert fact.num_params() == 50_000 * 128 + 128 * 768
    assert TokenEmbedding(50, 8, rngs=nnx.Rngs(0)).num_params() == 400  # a concrete layer counts the same way
    assert HashedEmbedding(1000, 64, buckets=100, num_hashes=3, rngs=nnx.Rngs(0)).num_params() == 100 * 64 + 1000 * 3
    a = AdaptiveEmbedding(1000, 64, cutoffs=(10, 100), factor=4, rngs=nnx.Rngs(0))
    assert a.num_params() == 10 * 64 + 64 * 64 + 90 * 16 + 16 * 64 + 900 * 4 + 4 * 64
    assert a.num_bytes() == 4 * a.num_params()


_HASH_IN_ANOTHER_PROCESS = """
import json, numpy as np
from embjax.model.embedding import hash_buckets
print(json.dumps(np.asarray(hash_buckets(np.arange(5000), 3, 977, seed=11)).tolist()))
"""


@pytest.mark.slow
def test_hashing_is_identical_across_processes_and_matches_its_definition():
    import json
    import subprocess
    import sys

    here = np.asarray(hash_buckets(jnp.arange(5000), 3, 977, seed=11))
    there = np.array(
        json.loads(
            subprocess.run(
                [sys.executable, "-c", _HASH_IN_ANOTHER_PROCESS], capture_output=True, text=True, check=True
            ).stdout
        )
    )
    np.testing.assert_array_equal(here, there)
    np.testing.assert_array_equal(np.asarray(hash_buckets(np.arange(5000), 3, 977, seed=11, xp=np)), here)
    ref = np.array([[_fmix_reference(i, j, 3, 977, 11) for j in range(3)] for i in range(0, 5000, 37)])
    np.testing.assert_array_equal(here[::37], ref)
    # buckets are used evenly (a χ²-style check: no bucket more than 3x its expected load)
    load = np.bincount(here.ravel(), minlength=977)
    assert load.max() < 3 * here.size / 977 and load.min() > 0


KIND_ARGS = {
    "factorized": ["--embedding.kind=factorized", "--embedding.rank=4"],
    "hashed": ["--embedding.kind=hashed", "--embedding.buckets=24", "--embedding.num_hashes=2"],
    "adaptive": ["--embedding.kind=adaptive", "--embedding.cutoffs=[4, 16]"],
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(KIND_ARGS))
def test_kind_trains_vmapped_checkpoints_and_resumes_exactly(kind, tmp_path):
    """Each kind under jit with donation: a vmapped 2-member group, and a run stopped at step 10 and resumed
    from its orbax checkpoint to 20 writing the very rows a straight run writes."""
    from embjax.config import replace
    from embjax.outputs.sinks import read_jsonl
    from embjax.train.runner import train, train_group

    base = load_config(
        None,
        [
            *TINY,
            f"--out_dir={tmp_path}",
            "--log.wandb=false",
            "--steps=20",
            "--log.metrics_every=10",
            "--optim.schedule=constant",
            "--model.kind=linear",
            *KIND_ARGS[kind],
        ],
    )  # resumable at 10; the layer, not the body, is under test
    group = train_group([replace(base, name=f"m{s}", seed=s) for s in (0, 1)], vectorize=True, progress=False)
    assert [s["status"] for s in group] == ["finished", "finished"] and group[0]["vectorized_members"] == 2
    assert group[0]["eval/loss"] != group[1]["eval/loss"]
    straight = train(replace(base, name="straight", seed=1))
    assert straight["eval/loss"] == pytest.approx(group[1]["eval/loss"], rel=2e-4)
    train(replace(base, name="resumed", seed=1, steps=10))
    resumed = train(replace(base, name="resumed", seed=1))
    assert resumed["status"] == "finished" and resumed["step"] == 20
    a, b = (read_jsonl(tmp_path / n / "metrics.jsonl") for n in ("straight", "resumed"))
    assert a == b
    V, D = 64, 16
    expect = {
        "factorized": V * 4 + 4 * D,
        "hashed": 24 * D + V * 2,
        "adaptive": 4 * D + D * D + 12 * 4 + 4 * D + 48 * 1 + 1 * D,
    }[kind]
    assert straight["embedding/params"] == expect and straight["embedding/bytes"] == 4 * expect
    E = np.load(tmp_path / "straight" / "embeddings.npy")  # exports and geometry read the effective table
    assert E.shape == (V, D) and straight["emb/norm_mean"] == pytest.approx(np.linalg.norm(E, axis=1).mean(), rel=1e-4)


def test_bad_cutoffs_are_one_line_exit_2(tmp_path, capsys):
    from embjax.cli import train_main

    assert train_main([*TINY, f"--out_dir={tmp_path}", "--embedding.kind=adaptive", "--embedding.cutoffs=[16, 4]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "embedding.cutoffs: got [16, 4] with embedding.kind='adaptive'" in err
    assert not os.path.exists(tmp_path / "default")


@pytest.mark.slow
@pytest.mark.parametrize("power", [0.0, 0.5])
def test_frequency_scaled_decay_of_rare_rows(power):
    """One SGD step: each row of E moves by -lr·(g + wdᵢ·e) with wdᵢ = embed_weight_decay · (V·fᵢ)^(-power),
    fᵢ the corpus frequency (NumPy float64 reference); other matrices keep the plain weight decay."""
    cfg, P = _program(
        "--optim.name=sgd",
        "--optim.momentum=0",
        "--optim.lr=0.1",
        "--optim.grad_clip=0",
        "--optim.warmup_steps=0",
        "--optim.schedule=constant",
        "--optim.weight_decay=0.3",
        f"--optim.embed_decay_freq_power={power}",
        "--model.tie_embeddings=false",
    )
    state = jax.jit(P.init)(0, hparams(cfg))
    batch = P.batch(P.corpus.tables, state)
    g = jax.jit(jax.grad(P.loss))(state["params"], state["hp"], batch)
    new, _ = jax.jit(P.step)(state, batch)
    E0, gE, E1 = (np.asarray(t["embed"]["embedding"], np.float64) for t in (state["params"], g, new["params"]))
    f = np.asarray(P.corpus.counts, np.float64) / np.sum(P.corpus.counts)
    wd = 0.3 * (cfg.data.vocab_size * f) ** -power
    np.testing.assert_allclose(E1, E0 - 0.1 * (gE + wd[:, None] * E0), rtol=1e-4, atol=1e-7)
    H0, gH, H1 = (np.asarray(t["head"]["embedding"], np.float64) for t in (state["params"], g, new["params"]))
    np.testing.assert_allclose(H1, H0 - 0.1 * (gH + 0.3 * H0), rtol=1e-4, atol=1e-7)  # the head: plain decay
    if power > 0:  # measured from the step: the rarest token's row decays more than the most frequent one's
        rare, common = np.argmin(f), np.argmax(f)
        shrink = lambda i: -np.sum((E1[i] - E0[i] + 0.1 * gE[i]) * E0[i]) / (0.1 * np.sum(E0[i] ** 2))
        assert shrink(rare) > 0.3 * 1.5 and shrink(common) < 0.3 / 1.5


def test_frequency_scaled_decay_is_capped_and_checked():
    from embjax.config import ConfigError
    from embjax.train.optim import token_decay_scale

    hp = {"embed_decay_freq_power": jnp.float32(2.0), "lr": jnp.float32(0.01), "embed_weight_decay": jnp.float32(1.0)}
    scale = np.asarray(token_decay_scale(hp, np.log(np.array([1e-3, 0.5, 1.0, 4.0]))))
    np.testing.assert_allclose(scale, [50.0, 4.0, 1.0, 1 / 16], rtol=1e-5)  # 1e6 capped at 0.5 / (lr · wd)
    big = {"embed_decay_freq_power": jnp.float32(0.0), "lr": jnp.float32(10.0), "embed_weight_decay": jnp.float32(1.0)}
    np.testing.assert_array_equal(np.asarray(token_decay_scale(big, np.log(np.array([1e-3, 4.0])))), [1.0, 1.0])
    for extra in (
        ["--optim.weight_decay=0"],
        ["--embedding.kind=adaptive", "--embedding.cutoffs=[4, 16]", "--optim.weight_decay=0.1"],
    ):
        with pytest.raises(ConfigError, match="optim.embed_decay_freq_power: got 0.5"):
            load_config(None, [*TINY, "--optim.embed_decay_freq_power=0.5", *extra])


KINDS_ON_A_MESH = r"""
import json, jax, numpy as np
from embjax.config import load_config
from embjax.data.corpus import make_corpus
from embjax.train.loop import compile_program
from embjax.runtime.mesh import make_mesh
from embjax.train.step import Program, hparams
out = {}
for kind, extra in (("factorized", ["--embedding.rank=4"]), ("hashed", ["--embedding.buckets=24"]),
                    ("adaptive", ["--embedding.cutoffs=[8, 32]"])):
    losses = {}
    for mesh in ((1, 1), (4, 2)):
        cfg = load_config(None, ["--data.vocab_size=96", "--model.embed_dim=16", "--model.kind=linear",
                                 "--data.seq_len=16", "--data.batch_size=8",
                                 f"--mesh.data={mesh[0]}", f"--mesh.model={mesh[1]}", f"--embedding.kind={kind}",
                                 *extra])
        m = make_mesh(cfg) if mesh != (1, 1) else None
        P = Program(cfg, make_corpus(cfg), mesh=m)
        state = jax.jit(P.init, out_shardings=P.state_shardings)(0, hparams(cfg))
        step = compile_program(P, vmapped=False)[0]
        state, metrics = step(state, P.corpus.tables, 3)
        losses[str(mesh)] = float(metrics["train/loss"])
        if m is not None:
            out[kind] = {k: str(v.sharding.spec) for k, v in state["params"]["embed"].items()}
    out[kind + "_losses"] = losses
print(json.dumps(out))
"""


@pytest.mark.slow
def test_kinds_on_a_mesh_split_their_per_token_arrays_and_match_one_device():
    """The input layers on a 4 x 2 mesh (a linear LM around them: the layer's arrays are under test)."""
    import json

    from tests.conftest import on_8_devices

    p = on_8_devices(KINDS_ON_A_MESH)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    # V-leading arrays (factorized A: V×k, hashed importance: V×h) split over `model`; shared ones replicated
    assert out["factorized"] == {"embedding": "P('model', None)", "projection": "P()"}
    assert out["hashed"] == {"embedding": "P()", "importance": "P('model', None)"}
    assert set(out["adaptive"].values()) == {"P()"}  # no V-sized array: every cluster table is replicated
    for kind in ("factorized", "hashed", "adaptive"):
        one, mesh = out[kind + "_losses"]["(1, 1)"], out[kind + "_losses"]["(4, 2)"]
        assert mesh == pytest.approx(one, rel=1e-4), kind


def test_kinds_work_inside_linen():
    import flax.linen as nn
    from flax.nnx import bridge

    class Model(nn.Module):
        @nn.compact
        def __call__(self, ids):
            emb = bridge.to_linen(HashedEmbedding, 30, 8, buckets=7, num_hashes=2, init_std=0.1)
            return nn.Dense(3)(emb(ids))

    ids = jnp.array([[1, 2, 3]])
    variables = Model().init(jax.random.key(0), ids)
    assert Model().apply(variables, ids).shape == (1, 3, 3)
    shapes = sorted(np.asarray(v).shape for v in jax.tree.leaves(variables))
    assert (7, 8) in shapes and (30, 2) in shapes  # the shared buckets and the per-token importance weights


@pytest.mark.slow
def test_rare_token_sweep_report_shows_loss_by_bucket(tmp_path):
    import yaml

    from embjax.cli import sweep_main

    base = tmp_path / "base.yaml"
    base.write_text(
        yaml.safe_dump(
            {
                "steps": 10,
                "data": {
                    "vocab_size": 200,
                    "num_classes": 4,
                    "zipf_exponent": 1.5,
                    "seq_len": 16,
                    "batch_size": 8,
                    "eval_batches": 2,
                },
                "model": {"kind": "linear", "embed_dim": 16},
                "embedding": {"buckets": 20, "rank": 4},
                "log": {"every": 5, "metrics_every": 10, "eval_every": 10, "progress": False},
            }
        )
    )
    sweep = {
        "name": "rt",
        "program": "experiments/train.py",
        "method": "grid",
        "parameters": {
            "config": {"value": str(base)},
            "embedding.kind": {"values": ["table", "hashed"]},
            "seed": {"values": [0, 1]},
        },
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    assert sweep_main([str(tmp_path / "s.yaml"), f"--out_dir={tmp_path}", "--log.wandb=false"]) == 0
    report = (tmp_path / "rt" / "report.md").read_text()
    assert (tmp_path / "rt" / "loss_by_bucket.png").exists()
    assert "## Eval loss by frequency bucket" in report
    rows = [line for line in report.splitlines() if line.startswith(("| hashed tied", "| table tied"))]
    assert len(rows) == 2 and rows[0].split("|")[2].strip() == f"{20 * 16 + 200 * 2:,}"  # hashed: B·d + V·h
    import json

    s = [json.load(open(p)) for p in sorted((tmp_path / "rt").glob("*/summary.json"))]
    hashed = [x for x in s if x["embedding/params"] == 20 * 16 + 200 * 2]
    mean_top1 = np.mean([x["eval/loss_bucket_top1"] for x in hashed])
    assert f"{mean_top1:.3f} ± " in rows[0]  # the table's numbers are the members' summaries
