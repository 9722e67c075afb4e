"""TokenEmbedding through the real module: textbook facts, tying, inits, pretrained, freezing, Linen."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from embjax import TokenEmbedding, cosine
from embjax.config import load_config
from embjax.data.corpus import make_corpus
from embjax.model.embedding import INITS, init_std_for, load_pretrained, save_word2vec
from embjax.model.models import build_model, count_params
from embjax.train.step import Program, hparams


def test_lookup_equals_one_hot_product():
    emb = TokenEmbedding(50, 8, rngs=nnx.Rngs(0))
    ids = jnp.array([[3, 7, 7], [0, 49, 12]])
    E = np.asarray(emb.embedding[...], np.float64)
    one_hot = np.eye(50)[np.asarray(ids)]  # (2, 3, 50)
    np.testing.assert_allclose(np.asarray(emb(ids)), one_hot @ E, rtol=1e-6, atol=1e-7)


def test_parameter_count_and_bytes():
    emb = TokenEmbedding(10_000, 256, rngs=nnx.Rngs(0))
    assert count_params(nnx.state(emb, nnx.Param)) == 10_000 * 256 and emb.embedding[...].dtype == jnp.float32


@pytest.mark.parametrize("tie", [True, False])
def test_transformer_parameter_count_by_hand(tie):
    V, D, T, L, F = 40, 8, 8, 2, 32  # F = mlp_ratio · D
    cfg = _cfg(**{"model.num_layers": L, "model.mlp_ratio": 4, "model.tie_embeddings": tie})
    block = 2 * 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + (D * F + F) + (F * D + D)  # 2 LNs, qkv, proj, fc, out
    want = V * D + T * D + L * block + 2 * D + (0 if tie else V * D)  # table, positions, blocks, final LN, head
    assert count_params(nnx.state(build_model(cfg, rngs=nnx.Rngs(0)), nnx.Param)) == want


def test_cosine_textbook_value():
    assert round(cosine([2, 0, 1], [1, 1, 0]), 3) == 0.632
    assert cosine([2, 0, 1], [1, 1, 0]) == pytest.approx(2 / (np.sqrt(5) * np.sqrt(2)), rel=1e-12)


def test_scale_multiplies_lookup_not_attend():
    emb = TokenEmbedding(20, 16, scale="sqrt_d", rngs=nnx.Rngs(1))
    E = np.asarray(emb.embedding[...])
    np.testing.assert_allclose(np.asarray(emb(jnp.array([5]))), 4.0 * E[[5]], rtol=1e-6)
    h = np.ones((2, 16), np.float32)
    np.testing.assert_allclose(np.asarray(emb.attend(jnp.asarray(h))), h @ E.T, rtol=1e-5)


@pytest.mark.parametrize("init", [i for i in INITS if i != "pretrained"])
def test_init_std(init):
    V, d, sigma = 4000, 64, 0.05
    emb = TokenEmbedding(V, d, init=init, init_std=sigma, rngs=nnx.Rngs(2))
    E = np.asarray(emb.embedding[...], np.float64)
    want = {"scaled_normal": sigma / np.sqrt(d), "xavier": np.sqrt(2 / (V + d))}.get(init, sigma)
    assert init_std_for(init, sigma, V, d) == pytest.approx(want)
    # 256k draws: the sample std is within ~0.3 % of the truth; allow 2 %
    assert E.std() == pytest.approx(want, rel=0.02)
    assert abs(E.mean()) < 0.02 * want
    if init == "truncated_normal":
        assert np.abs(E).max() <= 2 * sigma / 0.8796256610342398 + 1e-6
    if init == "uniform":
        assert np.abs(E).max() <= np.sqrt(3) * sigma + 1e-6


def test_sigma_is_a_value_one_program_for_many():
    """σ can be traced: a vmap over σ gives tables with the asked stds from one compiled init."""

    def table(sigma):
        return TokenEmbedding(2000, 32, init_std=sigma, rngs=nnx.Rngs(0)).embedding[...]

    sigmas = jnp.array([0.01, 0.1, 1.0])
    out = np.asarray(jax.jit(jax.vmap(table))(sigmas))
    np.testing.assert_allclose(out.std(axis=(1, 2)), np.asarray(sigmas), rtol=0.02)
    # same unit draw, only scaled
    np.testing.assert_allclose(out[2] / 1.0, out[0] / 0.01, rtol=1e-4)


def _cfg(**kw):
    base = {
        "data.vocab_size": 40,
        "data.num_classes": 4,
        "data.seq_len": 8,
        "data.batch_size": 4,
        "model.embed_dim": 8,
        "model.num_layers": 1,
        "model.num_heads": 2,
    }
    base.update(kw)
    return load_config(None, base)


def test_the_untied_head_has_its_own_sigma_one_key_one_table():
    """embedding.init_std moves E alone and model.head_init_std the untied head alone: in a group vmapped over
    both (one compiled init), E scales with its σ, the head with its own, and neither follows the other."""
    cfg = _cfg(**{"model.tie_embeddings": False, "data.vocab_size": 400, "model.embed_dim": 32})
    P = Program(cfg, make_corpus(cfg))
    hp = hparams(cfg)
    sig, head = jnp.array([0.02, 1.0, 0.02]), jnp.array([0.02, 0.02, 0.5])  # σ_E and σ_head per member
    hps = {**{k: jnp.full(3, v, jnp.float32) for k, v in hp.items()}, "init_std": sig, "head_init_std": head}
    params = jax.jit(jax.vmap(P.init, in_axes=(None, 0)))(0, hps)["params"]
    E, H = (np.asarray(params[name]["embedding"], np.float64) for name in ("embed", "head"))
    np.testing.assert_array_equal(H[0], H[1])  # σ_E 0.02 -> 1: the head is bit-identical
    np.testing.assert_array_equal(E[0], E[2])  # σ_head 0.02 -> 0.5: E is bit-identical
    np.testing.assert_allclose(E[1], E[0] * 50.0, rtol=1e-5)  # one unit draw, scaled by σ_E
    np.testing.assert_allclose(H[2], H[0] * 25.0, rtol=1e-5)  # and by σ_head
    np.testing.assert_allclose(H.std(axis=(1, 2)), [0.02, 0.02, 0.5], rtol=0.05)  # N(0, σ_head²), 400 × 32 draws
    # the default head σ is 0.02 whatever E's init: a scaled_normal or pretrained E leaves it alone
    assert hp["head_init_std"] == 0.02 and load_config(None, {}).model.head_init_std == 0.02


@pytest.mark.slow
def test_initial_loss_of_an_untied_model_does_not_follow_sigma():
    """Untied, σ_E = 0.02 and 1 (head at its default): the step-0 eval loss is within 0.1 nats of each
    other and of ln V (the head's small logits), where drawing the head with σ_E used to start at ~25 nats."""
    cfg = load_config(
        None,
        [
            "--model.tie_embeddings=false",
            "--data.vocab_size=512",
            "--model.embed_dim=64",
            "--model.num_layers=2",
            "--model.num_heads=4",
            "--data.seq_len=32",
        ],
    )
    P = Program(cfg, make_corpus(cfg))
    batches = P.corpus.eval_batches(jax.random.key(3), 2, cfg.data.batch_size)
    init, evaluate = jax.jit(P.init), jax.jit(P.evaluate)
    loss = {s: float(evaluate(init(0, {**hparams(cfg), "init_std": s}), batches)["eval/loss"]) for s in (0.02, 1.0)}
    assert abs(loss[1.0] - loss[0.02]) < 0.1 and abs(loss[0.02] - np.log(512)) < 0.1, loss


def test_tied_has_one_table_and_logits_are_h_Et():
    tied = build_model(_cfg(**{"model.kind": "linear", "model.tie_embeddings": True}), rngs=nnx.Rngs(0))
    untied = build_model(_cfg(**{"model.kind": "linear", "model.tie_embeddings": False}), rngs=nnx.Rngs(0))
    tables = lambda m: [p for p, _ in nnx.to_flat_state(nnx.state(m, nnx.Param)) if p[-1] == "embedding"]
    assert len(tables(tied)) == 1 and len(tables(untied)) == 2
    assert untied.head.embedding[...].shape == untied.embed.embedding[...].shape
    ids = jnp.array([[1, 2, 3]])
    h = np.asarray(tied.proj(tied.lookup(ids)), np.float64)
    E = np.asarray(tied.embed.embedding[...], np.float64)
    np.testing.assert_allclose(np.asarray(tied(ids)), h @ E.T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "mlp", "transformer", "lstm"])
@pytest.mark.parametrize("tie", [True, False])
def test_models_shapes(kind, tie):
    cfg = _cfg(**{"model.kind": kind, "model.tie_embeddings": tie})
    m = build_model(cfg, rngs=nnx.Rngs(0))
    assert m(jnp.zeros((3, 8), jnp.int32)).shape == (3, 8, 40)


def test_inv_sqrt_d_logit_scale():
    cfg = _cfg(**{"model.kind": "linear", "model.logit_scale": "inv_sqrt_d"})
    m = build_model(cfg, rngs=nnx.Rngs(0))
    ids = jnp.array([[4, 5]])
    h = m.proj(m.lookup(ids))
    np.testing.assert_allclose(np.asarray(m(ids)), np.asarray(m.embed.attend(h)) / np.sqrt(8), rtol=1e-5, atol=1e-8)


def test_one_sgd_step_changes_only_looked_up_rows():
    cfg = _cfg(
        **{
            "model.kind": "linear",
            "model.tie_embeddings": False,
            "optim.name": "sgd",
            "optim.momentum": 0.0,
            "optim.lr": 0.5,
            "optim.warmup_steps": 0,
            "optim.schedule": "constant",
            "optim.grad_clip": 0.0,
        }
    )
    program = Program(cfg, make_corpus(cfg))
    state = program.init(0, hparams(cfg))
    E0 = np.asarray(state["params"]["embed"]["embedding"])
    batch = jnp.array([[1, 5, 5, 9, 2, 1, 30, 7, 8], [3, 3, 3, 3, 3, 3, 3, 3, 3]])
    new, _ = jax.jit(program.step)(state, batch)
    E1 = np.asarray(new["params"]["embed"]["embedding"])
    changed = np.flatnonzero(np.any(E1 != E0, axis=1))
    inputs = np.unique(np.asarray(batch[:, :-1]))
    np.testing.assert_array_equal(changed, inputs)
    # per-row update counts: exactly the looked-up rows got one update
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(new["row_updates"])), inputs)
    # the untied head is a different table: all its rows move (softmax touches every logit)
    H0, H1 = state["params"]["head"]["embedding"], new["params"]["head"]["embedding"]
    assert np.all(np.any(np.asarray(H1) != np.asarray(H0), axis=1))


def test_freeze_keeps_table_fixed():
    cfg = _cfg(
        **{"model.kind": "linear", "model.tie_embeddings": False, "embedding.freeze": True, "optim.weight_decay": 0.1}
    )
    program = Program(cfg, make_corpus(cfg))
    state = program.init(0, hparams(cfg))
    E0 = np.asarray(state["params"]["embed"]["embedding"])
    new, _ = jax.jit(program.step)(state, jnp.ones((2, 9), jnp.int32))
    np.testing.assert_array_equal(np.asarray(new["params"]["embed"]["embedding"]), E0)
    assert not np.array_equal(
        np.asarray(new["params"]["proj"]["kernel"]), np.asarray(state["params"]["proj"]["kernel"])
    )


def test_pretrained_npy_and_word2vec(tmp_path):
    E = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    np.save(tmp_path / "e.npy", E)
    emb = TokenEmbedding(
        6, 4, init="pretrained", pretrained=load_pretrained(str(tmp_path / "e.npy"), 6, 4), rngs=nnx.Rngs(0)
    )
    np.testing.assert_array_equal(np.asarray(emb.embedding[...]), E)
    toks = [f"w{i}" for i in range(6)]
    save_word2vec(str(tmp_path / "e.txt"), E[::-1], toks[::-1])  # file order differs from vocab order
    np.testing.assert_allclose(load_pretrained(str(tmp_path / "e.txt"), 6, 4, tokens=toks), E, rtol=1e-6)
    with pytest.raises(ValueError, match=r"got shape \(6, 4\).*\(6, 8\)"):
        load_pretrained(str(tmp_path / "e.npy"), 6, 8)
    with pytest.raises(ValueError, match="missing"):
        load_pretrained(str(tmp_path / "e.txt"), 7, 4, tokens=toks + ["zzz"])
    with pytest.raises(ValueError, match="width"):
        load_pretrained(str(tmp_path / "e.txt"), 6, 5)


def test_works_inside_linen():
    import flax.linen as nn
    from flax.nnx import bridge

    class Model(nn.Module):
        @nn.compact
        def __call__(self, ids):
            emb = bridge.to_linen(TokenEmbedding, 30, 8, init_std=0.1)
            return nn.Dense(3)(emb(ids))

    model = Model()
    ids = jnp.array([[1, 2, 3]])
    variables = model.init(jax.random.key(0), ids)
    out = model.apply(variables, ids)
    assert out.shape == (1, 3, 3)
    leaves = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(variables)}
    table = [v for k, v in leaves.items() if "embedding" in k]
    assert len(table) == 1 and np.asarray(table[0]).shape == (30, 8)
    assert np.asarray(table[0]).std() == pytest.approx(0.1, rel=0.15)
