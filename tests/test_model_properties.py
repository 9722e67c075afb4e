"""Model and optimizer properties on tiny sizes: causality, padding, positions, schedules, optimizers, text data."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from embjax.config import load_config
from embjax.data.corpus import make_corpus
from embjax.model.models import build_model, sinusoidal_positions
from embjax.train.optim import schedule_factor
from embjax.train.step import Program, hparams


def cfg_of(**kw):
    base = {
        "data.vocab_size": 50,
        "data.num_classes": 5,
        "data.seq_len": 12,
        "data.batch_size": 4,
        "model.embed_dim": 16,
        "model.num_layers": 2,
        "model.num_heads": 2,
    }
    base.update(kw)
    return load_config(None, base)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["transformer", "mlp", "linear", "lstm"])
def test_causal_future_tokens_do_not_change_past_logits(kind):
    model = build_model(cfg_of(**{"model.kind": kind}), rngs=nnx.Rngs(0))
    a = jax.random.randint(jax.random.key(1), (2, 12), 0, 50)
    b = a.at[:, 7:].set((a[:, 7:] + 13) % 50)
    la, lb = np.asarray(model(a)), np.asarray(model(b))
    np.testing.assert_allclose(la[:, :7], lb[:, :7], rtol=1e-5, atol=1e-6)
    assert not np.allclose(la[:, 7:], lb[:, 7:])


def test_padding_mask_hides_padded_keys():
    model = build_model(cfg_of(**{"model.pad_id": 0}), rngs=nnx.Rngs(0))
    tok = jnp.array([[5, 6, 7, 0, 0, 9, 4, 3, 2, 1, 8, 8]])
    mask = tok != 0
    alt = tok.at[0, 3:5].set(jnp.array([11, 12]))  # other tokens at the padded positions, still masked
    keep = np.asarray(mask[0])
    l1, l2 = np.asarray(model(tok, mask)), np.asarray(model(alt, mask))
    np.testing.assert_allclose(l1[0, keep], l2[0, keep], rtol=1e-5, atol=1e-6)
    # without the mask the same change reaches every later position: the mask is what hides it
    u1, u2 = np.asarray(model(tok)), np.asarray(model(alt))
    assert not np.allclose(u1[0, 5:], u2[0, 5:], atol=1e-4)
    np.testing.assert_allclose(u1[0, :3], u2[0, :3], rtol=1e-5, atol=1e-6)  # causality: earlier ones never see it


def test_sinusoidal_positions_formula():
    P = np.asarray(sinusoidal_positions(10, 8))
    pos = 7  # feature pair i = 2: sin at 2i = 4, cos at 2i + 1 = 5
    w = 1.0 / 10000 ** (4 / 8)
    assert P[pos, 4] == pytest.approx(math.sin(pos * w), abs=1e-6)
    assert P[pos, 5] == pytest.approx(math.cos(pos * w), abs=1e-6)
    model = build_model(cfg_of(**{"model.positions": "none"}), rngs=nnx.Rngs(0))
    assert "pos" not in nnx.to_pure_dict(nnx.state(model, nnx.Param))


def test_schedules_by_hand():
    c = cfg_of(**{"steps": 110, "optim.warmup_steps": 10, "optim.schedule": "cosine"})
    f = schedule_factor(c)
    assert float(f(0)) == pytest.approx(0.1) and float(f(9)) == pytest.approx(1.0)
    assert float(f(10)) == pytest.approx(1.0) and float(f(60)) == pytest.approx(0.5, abs=1e-6)
    assert float(f(110)) == pytest.approx(0.0, abs=1e-7)
    lin = schedule_factor(cfg_of(**{"steps": 110, "optim.warmup_steps": 10, "optim.schedule": "linear"}))
    assert float(lin(35)) == pytest.approx(0.75)
    const = schedule_factor(cfg_of(**{"steps": 110, "optim.warmup_steps": 0, "optim.schedule": "constant"}))
    assert float(const(77)) == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adamw", "adam", "sgd", "adafactor"])
def test_every_optimizer_lowers_the_loss(name):
    lr = {"sgd": 0.5, "adafactor": 0.05}.get(name, 0.01)
    c = cfg_of(
        **{
            "model.kind": "linear",
            "optim.name": name,
            "optim.lr": lr,
            "optim.warmup_steps": 0,
            "optim.weight_decay": 0.01,
            "steps": 40,
        }
    )
    program = Program(c, make_corpus(c))
    state = program.init(0, hparams(c))
    run = jax.jit(program.train_steps, static_argnums=2)
    first = float(program.loss(state["params"], state["hp"], program.batch(program.corpus.tables, state)))
    state, m = run(state, program.corpus.tables, 40)
    assert float(m["train/loss"]) < first - 0.3, name


def test_jit_and_no_jit_agree():
    c = cfg_of(**{"model.kind": "mlp", "data.seq_len": 8})
    program = Program(c, make_corpus(c))
    state = program.init(0, hparams(c))
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 50, (4, 9)), jnp.int32)
    loss_grad = jax.value_and_grad(program.loss)
    args = (state["params"], state["hp"], batch)
    (la, ga), (lb, gb) = loss_grad(*args), jax.jit(loss_grad)(*args)
    assert float(la) == pytest.approx(float(lb), rel=1e-5)
    for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
