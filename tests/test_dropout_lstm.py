"""Dropout (model.dropout, model.embed_dropout) and the LSTM LM (model.kind=lstm): masks a pure function of (seed,
step, site), rate 0 unchanged, off at eval; the LSTM against a NumPy float64 forward; vmapped members, resume."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from embjax.config import load_config, replace
from embjax.data.corpus import make_corpus
from embjax.model.layers import MASK_BITS, Dropout, lstm_layer, recurrence
from embjax.model.models import build_model
from embjax.sweep import group_by_shape
from embjax.train.step import Program, hparams
from tests.conftest import TINY

SMALL = {
    "data.vocab_size": 40,
    "data.num_classes": 4,
    "data.seq_len": 8,
    "data.batch_size": 4,
    "model.embed_dim": 8,
    "model.num_layers": 2,
    "model.num_heads": 2,
}


def _program(**kw):
    cfg = load_config(None, {**SMALL, **kw})
    return cfg, Program(cfg, make_corpus(cfg))


def test_masks_are_a_pure_function_of_key_and_site_and_unbiased():
    x = jnp.ones((64, 512), jnp.float32)
    key = jax.random.key(3)
    a, b = Dropout(key, 0.3, 0.1)(x, 5), Dropout(key, 0.3, 0.1)(x, 5)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # same key and site: the same mask
    assert not np.array_equal(np.asarray(a), np.asarray(Dropout(key, 0.3, 0.1)(x, 6)))  # another site
    assert not np.array_equal(np.asarray(a), np.asarray(Dropout(jax.random.key(4), 0.3, 0.1)(x, 5)))  # another key
    full = 2**MASK_BITS
    threshold = round(0.3 * full)
    kept = np.asarray(a) != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_array_equal(np.asarray(a)[kept], np.float32(full / (full - threshold)))  # survivors scaled
    assert abs(float(np.asarray(a, np.float64).mean()) - 1.0) < 0.02  # inverted dropout: E[output] = input
    # entries independent of their neighbours (along rows and columns)
    assert abs(np.corrcoef(kept[:, :-1].ravel(), kept[:, 1:].ravel())[0, 1]) < 0.02
    assert abs(np.corrcoef(kept[:-1].ravel(), kept[1:].ravel())[0, 1]) < 0.02
    e = np.asarray(Dropout(key, 0.3, 0.1).embed(x)) != 0  # embed_dropout: its own rate, site 0
    assert abs(e.mean() - 0.9) < 0.01
    y = jax.random.normal(key, (16, 32))
    np.testing.assert_array_equal(np.asarray(Dropout(key, 0.0, 0.0)(y, 1)), np.asarray(y))  # rate 0: exactly x


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_rate_zero_draws_no_masks_and_carries_no_rates(kind):
    """A program at rate 0 is the program before dropout existed: no random bits in its step, no rates in its
    state (so a tiny default run's metrics.jsonl is byte-identical; checked by hand against main 3a8be90)."""
    for rate, drawn in ((0.0, False), (0.1, True)):
        cfg, P = _program(**{"model.kind": kind, "model.dropout": rate})
        state = P.abstract_state
        jaxpr = str(jax.make_jaxpr(P.step)(state, jax.ShapeDtypeStruct((4, 9), jnp.int32)))
        assert ("random_bits" in jaxpr or "threefry2x32" in jaxpr) == drawn, (kind, rate)
        assert ("dropout" in state["hp"]) == drawn


@pytest.mark.slow
def test_one_vmapped_program_each_member_its_own_masks_as_alone():
    """Two members (seeds 0 and 1, rates 0.2 and 0.5) vmapped in one program: their dropout keys differ, depend on
    the step, and each member's two steps equal the same member's alone; eval has no dropout."""
    cfgs = [
        load_config(None, {**SMALL, "seed": s, "model.dropout": r, "model.embed_dropout": r})
        for s, r in ((0, 0.2), (1, 0.5))
    ]
    P = Program(cfgs[0], make_corpus(cfgs[0]))
    hps = {k: jnp.asarray([hparams(c)[k] for c in cfgs], jnp.float32) for k in hparams(cfgs[0])}
    states = jax.jit(jax.vmap(P.init))(jnp.arange(2), hps)
    keys = np.asarray(jax.random.key_data(jax.vmap(P.dropout_key)(states)))
    assert not np.array_equal(keys[0], keys[1])
    step = jax.jit(jax.vmap(P.train_steps, in_axes=(0, None, None)), static_argnums=2)
    states, ms = step(states, P.corpus.tables, 1)
    states, ms = step(states, P.corpus.tables, 1)
    later = np.asarray(jax.random.key_data(jax.vmap(P.dropout_key)(states)))
    assert not np.array_equal(keys[0], later[0])  # another step, another mask
    for i, c in enumerate(cfgs):
        alone = Program(c, make_corpus(c))
        s = alone.init(c.seed, hparams(c))
        np.testing.assert_array_equal(np.asarray(jax.random.key_data(alone.dropout_key(s))), keys[i])
        for _ in range(2):
            s, m = jax.jit(alone.train_steps, static_argnums=2)(s, alone.corpus.tables, 1)
        assert float(ms["train/loss"][i]) == pytest.approx(float(m["train/loss"]), rel=1e-5)
    # off at eval: the same parameters give the same eval loss as in a program without dropout
    plain_cfg, plain = _program()
    s = jax.tree.map(lambda x: x[0], states)
    batches = plain.corpus.eval_batches(jax.random.key(0), 2, 4)
    no_drop = {**s, "hp": hparams(plain_cfg)}
    assert float(P.evaluate(s, batches)["eval/loss"]) == pytest.approx(
        float(plain.evaluate(no_drop, batches)["eval/loss"]), rel=1e-6
    )
    tok = P.batch(P.corpus.tables, s)
    with_masks = (
        P.loss(s["params"], s["hp"], tok) != P.loss_and_sizes(s["params"], s["hp"], tok, None, P.dropout_key(s))[0]
    )
    assert with_masks  # the train step's loss is the masked one


def test_rates_are_validated_and_refused_where_they_mean_nothing(tmp_path, capsys):
    from embjax.cli import train_main

    for args, needle in (
        (["--model.dropout=1"], "model.dropout: got 1.0; allowed: a value in [0, 1)"),
        (["--model.embed_dropout=-0.1"], "model.embed_dropout: got -0.1; allowed: a value in [0, 1)"),
        (["--model.kind=mlp", "--model.dropout=0.1"], "model.dropout: got 0.1 with model.kind='mlp'"),
        (
            ["--model.kind=lstm", "--model.parametrization=mup"],
            "model.parametrization: got 'mup' with model.kind='lstm'",
        ),
    ):
        assert train_main([*TINY, f"--out_dir={tmp_path}", *args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and needle in err, (args, err)
    assert not os.listdir(tmp_path)
    assert load_config(None, {"model.dropout": 0.999, "model.kind": "lstm", "model.embed_dropout": 0.5})


def test_rates_zero_and_above_zero_are_separate_programs():
    cfgs = [load_config(None, {**SMALL, "model.dropout": r, "seed": s}) for r in (0.0, 0.2, 0.5) for s in (0, 1)]
    assert group_by_shape(cfgs) == [[0, 1], [2, 3, 4, 5]]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _lstm64(x_BxTxD, cell):
    """One LSTM layer in NumPy float64 from a zero state: gates (i, f, g, o) = x·W_i + h·W_h + b."""
    Wi, Wh, b = (
        np.asarray(a, np.float64) for a in (cell.dense_i.kernel[...], cell.dense_h.kernel[...], cell.dense_h.bias[...])
    )
    B, T, D = x_BxTxD.shape
    c, h, out = np.zeros((B, D)), np.zeros((B, D)), []
    for t in range(T):
        z = x_BxTxD[:, t] @ Wi + h @ Wh + b
        i, f, g, o = (
            _sigmoid(z[:, :D]),
            _sigmoid(z[:, D : 2 * D]),
            np.tanh(z[:, 2 * D : 3 * D]),
            _sigmoid(z[:, 3 * D :]),
        )
        c = f * c + i * g
        h = o * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1)


@pytest.mark.parametrize("tie, head_bias", [(True, False), (False, False), (True, True), (False, True)])
def test_lstm_equals_a_numpy_float64_forward(tie, head_bias):
    """Two layers d = 6 over T = 5 from a zero state, with dropout masks at the documented sites (the looked-up
    vectors, each layer's output): logits = h·Eᵀ (+ b with model.head_bias) with the input table E (tied) or the
    head's table (untied)."""
    keys = {**SMALL, "model.kind": "lstm", "model.embed_dim": 6, "model.tie_embeddings": tie}
    cfg = load_config(None, {**keys, "model.head_bias": head_bias})
    model = build_model(cfg, rngs=nnx.Rngs(0))
    b = np.zeros(cfg.data.vocab_size)
    if head_bias:  # starts at zero; drawn here so that the term is checked
        assert not np.asarray(model.head_bias[...]).any()
        model.head_bias[...] = jax.random.normal(jax.random.key(9), model.head_bias[...].shape)
        b = np.asarray(model.head_bias[...], np.float64)
    # biases are drawn too (Flax starts them at 0), so every term of the gates is checked
    for cell in model.lstm.cells:
        cell.dense_h.bias[...] = jax.random.normal(jax.random.key(7), cell.dense_h.bias[...].shape)
    tok = jax.random.randint(jax.random.key(1), (3, 5), 0, 40)
    drop = Dropout(jax.random.key(2), 0.4, 0.25)
    E = np.asarray(model.embed.embedding[...], np.float64)
    W = E if tie else np.asarray(model.head.embedding[...], np.float64)
    ones = jnp.ones((3, 5, 6))
    masks = [np.asarray(drop.embed(ones), np.float64)]  # site 0, batch-major
    masks += [np.swapaxes(np.asarray(drop(jnp.swapaxes(ones, 0, 1), 1 + i)), 0, 1) for i in range(2)]  # time-major
    for d, m in ((None, [1.0, 1.0, 1.0]), (drop, masks)):
        h = E[np.asarray(tok)] * m[0]
        for i, cell in enumerate(model.lstm.cells):
            h = _lstm64(h, cell) * m[1 + i]
        _, h_out, coords = model.features_and_coords(tok, drop=d)
        logits = model.logits(h_out)
        np.testing.assert_allclose(np.asarray(logits, np.float64), h @ W.T + b, rtol=1e-5, atol=1e-6)
        assert set(coords) == {"layer0", "layer1"}
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    assert tie == ("head" not in params) and head_bias == ("head_bias" in params)


def test_hoisted_layer_equals_stepping_the_flax_cell():
    cell = nnx.OptimizedLSTMCell(4, 4, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (6, 2, 4))  # T, B, D
    carry = cell.initialize_carry((2, 4), rngs=nnx.Rngs(0))
    steps = []
    for t in range(6):
        carry, h = cell(carry, x[t])
        steps.append(h)
    np.testing.assert_allclose(np.asarray(lstm_layer(cell, x)), np.asarray(jnp.stack(steps)), rtol=1e-5, atol=1e-6)


def test_recurrence_gradient_equals_autodiff_of_the_plain_scan():
    """The hand-written backward pass (gate gradients in a reverse scan, ∂W_h as one matmul after it) against JAX's
    own derivative of the same scan written plainly (the forward of embjax.model.layers.lstm_layer, step by step)."""

    def plain(xw_TxBxG, Wh_HxG):
        H = Wh_HxG.shape[0]

        def step(carry, xw_BxG):
            c, h = carry
            z = xw_BxG + h @ Wh_HxG
            i, f, g, o = (
                jax.nn.sigmoid(z[:, :H]),
                jax.nn.sigmoid(z[:, H : 2 * H]),
                jnp.tanh(z[:, 2 * H : 3 * H]),
                z[:, 3 * H :],
            )
            c = f * c + i * g
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (c, h), h

        zeros = jnp.zeros((xw_TxBxG.shape[1], H))
        return jax.lax.scan(step, (zeros, zeros), xw_TxBxG)[1]

    k = jax.random.split(jax.random.key(0), 3)
    xw, Wh, w = (
        jax.random.normal(k[0], (7, 3, 20)),
        0.5 * jax.random.normal(k[1], (5, 20)),
        jax.random.normal(k[2], (7, 3, 5)),
    )
    np.testing.assert_allclose(np.asarray(recurrence(xw, Wh)), np.asarray(plain(xw, Wh)), rtol=1e-6, atol=1e-7)
    ours = jax.grad(lambda a, b: (recurrence(a, b) * w).sum(), (0, 1))(xw, Wh)
    ref = jax.grad(lambda a, b: (plain(a, b) * w).sum(), (0, 1))(xw, Wh)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    vm = jax.vmap(jax.grad(lambda a, b: (recurrence(a, b) * w).sum(), 1))(jnp.stack([xw, -xw]), jnp.stack([Wh, Wh]))
    np.testing.assert_allclose(np.asarray(vm[0]), np.asarray(ours[1]), rtol=1e-5, atol=1e-6)  # vmapped members too


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_dropout_runs_vmapped_checkpoint_and_resume_exactly(kind, tmp_path):
    """With dropout on (and the LSTM with model.head_bias), a 2-member vmapped group (seeds 0, 1) equals each member
    alone, and a run stopped at step 10 and resumed from its orbax checkpoint to 20 writes the very rows an
    uninterrupted run writes."""
    from embjax.outputs.sinks import read_jsonl
    from embjax.train.runner import train, train_group

    base = load_config(
        None,
        [
            *TINY,
            f"--out_dir={tmp_path}",
            "--log.wandb=false",
            "--steps=20",
            "--optim.schedule=constant",  # a run of 10 steps then resumed to 20 has the same schedule
            f"--model.kind={kind}",
            "--model.tie_embeddings=false",
            "--model.dropout=0.3",
            "--model.embed_dropout=0.1",
            f"--model.head_bias={str(kind == 'lstm').lower()}",  # the LSTM with the softmax bias of its papers
        ],
    )
    group = train_group([replace(base, name=f"m{s}", seed=s) for s in (0, 1)], vectorize=True, progress=False)
    assert [s["status"] for s in group] == ["finished", "finished"] and group[0]["vectorized_members"] == 2
    straight = train(replace(base, name="straight", seed=1))
    assert straight["eval/loss"] == pytest.approx(group[1]["eval/loss"], rel=2e-4)
    train(replace(base, name="resumed", seed=1, steps=10))
    resumed = train(replace(base, name="resumed", seed=1))
    assert resumed["status"] == "finished" and resumed["step"] == 20
    a, b = (read_jsonl(tmp_path / n / "metrics.jsonl") for n in ("straight", "resumed"))
    assert a == b
    assert os.path.exists(tmp_path / "straight" / "output_embeddings.npy")  # both tables exported


@pytest.mark.slow
def test_lstm_on_real_text_scores_both_tables_and_starts_another_run(tmp_path):
    """An untied LSTM with dropout on builtin:lee_news (word-level V = 2,048): both tables' benchmark keys in
    summary.json, both tables exported; a second LSTM starts from the first's run directory (a pretrained start)."""
    import json

    from embjax.cli import train_main

    common = ["--data.kind=text", "--data.path=builtin:lee_news", "--data.tokenizer=word", "--data.vocab_size=2048"]
    common += ["--model.kind=lstm", "--model.embed_dim=16", "--data.seq_len=16", "--data.batch_size=8", "--steps=10"]
    common += [f"--out_dir={tmp_path}", "--log.wandb=false", "--log.progress=false", "--log.metrics_every=10"]
    first = [*common, "--name=a", "--model.tie_embeddings=false", "--model.dropout=0.3", "--model.embed_dropout=0.2"]
    assert train_main([*first, "--log.word_similarity=[wordsim353, simlex999]"]) == 0
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["status"] == "finished"
    for key in ("word_sim/wordsim353/spearman", "word_sim_out/simlex999/spearman", "coord/layer1"):
        assert np.isfinite(s[key]), key
    E = np.load(tmp_path / "a" / "embeddings.npy")
    assert E.shape == np.load(tmp_path / "a" / "output_embeddings.npy").shape == (2048, 16)
    assert (
        train_main(
            [*common, "--name=b", "--embedding.init=pretrained", f"--embedding.pretrained_path={tmp_path / 'a'}"]
        )
        == 0
    )
    s = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert s["status"] == "finished" and s["embedding/pretrained_matched"] == 2048
