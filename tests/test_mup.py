"""μP beside SP: equal at the base width, per-parameter rules by hand, the coordinate check's direction,
and divergence on a finite blow-up."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from embjax.cli import train_main
from embjax.config import ConfigError, load_config
from embjax.data.corpus import make_corpus
from embjax.train.runner import load_inputs
from embjax.train.step import Program, hparams

BASE = {
    "data.vocab_size": 64,
    "data.num_classes": 4,
    "data.seq_len": 16,
    "data.batch_size": 8,
    "model.num_layers": 1,
    "model.num_heads": 2,
    "model.base_width": 8,
    "optim.warmup_steps": 0,
    "optim.schedule": "constant",
    "steps": 100,
}


def program(**kw):
    cfg = load_config(None, {**BASE, **kw})
    return cfg, Program(cfg, make_corpus(cfg))


def run(cfg, P, n):
    """Losses of n steps, one step per dispatch."""
    state, out = P.init(cfg.seed, hparams(cfg)), []
    step = jax.jit(P.train_steps, static_argnums=2)
    for _ in range(n):
        state, m = step(state, P.corpus.tables, 1)
        out.append(float(m["train/loss"]))
    return state, out


# μP's width-independent base constants, each away from its default (docs/mup.md)
BASE_CONSTANTS = {
    "optim.vector_lr_scale": 0.5,
    "optim.pos_lr_scale": 0.25,
    "model.zero_query_init": True,
    "model.head_init_std": 0.16,
    "model.logit_scale": 2.0,
    "model.attn_mult": 2.0,
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "tie,kind,constants",
    [
        (True, "transformer", False),
        (False, "transformer", False),
        (False, "linear", False),
        (False, "transformer", True),
        (True, "transformer", True),
    ],
)
def test_mup_at_the_base_width_is_sp_step_for_step(tie, kind, constants):
    kw = {
        "model.embed_dim": 8,
        "model.tie_embeddings": tie,
        "optim.weight_decay": 0.1,
        "optim.lr": 0.01,
        "model.kind": kind,
        **(BASE_CONSTANTS if constants else {}),
    }
    (cs, ps), (cm, pm) = program(**kw), program(**kw, **{"model.parametrization": "mup"})
    (ss, ls), (sm, lm) = run(cs, ps, 6), run(cm, pm, 6)
    assert ls == lm
    for a, b in zip(jax.tree.leaves(ss["params"]), jax.tree.leaves(sm["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_per_parameter_learning_rates_and_multipliers_by_hand():
    """One Adam step from fresh moments moves each weight by lr·g/(|g| + ε) ≈ lr·sign(g): so the largest
    move of a parameter is its learning rate. At d₀ = 8 and d = 32 (m = 4), with embed_lr_scale = 0.5."""
    lr, m = 0.01, 4.0
    kw = {
        "model.embed_dim": 32,
        "model.tie_embeddings": False,
        "optim.lr": lr,
        "optim.grad_clip": 0.0,
        "optim.embed_lr_scale": 0.5,
    }
    moves = {}
    for par in ("sp", "mup"):
        cfg, P = program(**kw, **{"model.parametrization": par})
        s0 = P.init(0, hparams(cfg))
        s1, _ = jax.jit(P.train_steps, static_argnums=2)(s0, P.corpus.tables, 1)
        moves[par] = jax.tree.map(
            lambda a, b: float(np.max(np.abs(np.asarray(b) - np.asarray(a)))), s0["params"], s1["params"]
        )
    blk = moves["mup"]["blocks"][0]
    for name in ("qkv", "proj", "fc", "out"):  # hidden matrices: Adam lr η/m under μP, η under SP
        assert blk[name]["kernel"] == pytest.approx(lr / m, rel=1e-3), name
        assert moves["sp"]["blocks"][0][name]["kernel"] == pytest.approx(lr, rel=1e-3), name
        assert blk[name]["bias"] == pytest.approx(lr, rel=1e-3)  # vectors keep η
    assert blk["ln1"]["scale"] == pytest.approx(lr, rel=1e-3) and moves["mup"]["pos"] == pytest.approx(lr, rel=1e-3)
    assert moves["mup"]["head"]["embedding"] == pytest.approx(lr, rel=1e-3)  # the readout keeps η ...
    assert moves["mup"]["embed"]["embedding"] == pytest.approx(0.5 * lr, rel=1e-3)  # the input table: η · scale
    # ... and is multiplied by 1/m; attention scores are q·k·√K₀/K (K = 16, K₀ = 4) = SP's q·k/√K times 1/√m.
    # μP leaves the init alone, so from one seed both parametrisations hold the same weights: at the first
    # forward pass the mean |score| and |logit| differ by exactly those factors
    sizes, heads = {}, {}
    h = jax.random.normal(jax.random.key(3), (2, 5, 32))
    for par in ("sp", "mup"):
        cfg, P = program(**kw, **{"model.parametrization": par})
        state = P.init(0, hparams(cfg))
        _, sizes[par] = P.loss_and_sizes(state["params"], state["hp"], P.batch(P.corpus.tables, state))
        heads[par] = np.asarray(P.model(state["params"]).logits(h))
    assert float(sizes["mup"]["coord/attn_logits0"]) == pytest.approx(
        float(sizes["sp"]["coord/attn_logits0"]) / 2, rel=1e-5
    )
    np.testing.assert_allclose(heads["mup"], heads["sp"] / m, rtol=1e-6)


@pytest.mark.slow
def test_weight_decay_per_step_is_lr_times_decay_at_every_width():
    """With a zero gradient Adam's update is 0, so one AdamW step shrinks each decayed weight by lr·λ·w:
    μP's hidden matrices get lr/m and λ·m, so lr·λ (the per-step decay) is the same at every width."""
    lr, wd = 0.01, 0.1
    from embjax.train.optim import make_optimizer

    for d in (8, 32):
        cfg, P = program(
            **{
                "model.embed_dim": d,
                "model.parametrization": "mup",
                "optim.lr": lr,
                "optim.weight_decay": wd,
                "optim.embed_weight_decay": 0.0,
            }
        )
        params = P.init(0, hparams(cfg))["params"]
        hp = {k: jnp.asarray(v, jnp.float32) for k, v in hparams(cfg).items()}
        tx = make_optimizer(P.cfg, hp, P.rules)
        upd, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
        w, u = params["blocks"][0]["fc"]["kernel"], upd["blocks"][0]["fc"]["kernel"]
        np.testing.assert_allclose(np.asarray(u), -lr * wd * np.asarray(w), rtol=1e-5, atol=1e-12)
        assert float(jnp.abs(upd["embed"]["embedding"]).max()) == 0.0  # embed_weight_decay = 0
        assert float(jnp.abs(upd["blocks"][0]["ln1"]["scale"]).max()) == 0.0  # vectors never decay


def coord_trace(par: str, d: int, steps: int = 4, **kw) -> list[dict[str, float]]:
    """The coord/* sizes at each of `steps` Adam steps at lr 1e-2, no clipping, d₀ = 32 (one step per dispatch)."""
    base = {"model.embed_dim": d, "model.parametrization": par, "model.base_width": 32}
    cfg, P = program(**base, **{"optim.lr": 0.01, "optim.grad_clip": 0.0}, **kw)
    state, step, seen = P.init(0, hparams(cfg)), jax.jit(P.train_steps, static_argnums=2), []
    for _ in range(steps):
        state, m = step(state, P.corpus.tables, 1)
        seen.append({k: float(v) for k, v in m.items() if k.startswith("coord/")})
    return seen


@pytest.mark.slow
def test_coordinate_check_tells_sp_from_mup():
    """Train widths 32 and 128 for 4 steps at Adam lr 1e-2: under SP the logits grow with width, under μP not."""
    ratio = {}
    for par in ("sp", "mup"):
        sizes = [coord_trace(par, d)[-1]["coord/logits"] for d in (32, 128)]
        ratio[par] = sizes[1] / sizes[0]
    assert ratio["sp"] > 1.5 and ratio["mup"] < 1.2 and ratio["sp"] > 2 * ratio["mup"], ratio


@pytest.mark.slow
def test_zero_query_coordinate_check_is_flat_at_two_widths():
    """With zero-initialised queries, μP at d = 32 and 128 (d₀ = 32, two blocks), 4 Adam steps at lr 1e-2: after
    the first update the embedding output, every block's output and the final hidden state, and after the
    second the logits, have |log–log slope against width| ≤ 0.15; SP's logits and block outputs grow (slope
    ≥ 0.25). The attention scores are left out: under μP they shrink with width for the first updates at these
    widths, in microsoft/mup itself too (docs/mup.md)."""
    kw = {"model.num_layers": 2, "model.zero_query_init": True, "optim.name": "adam", "data.batch_size": 16}
    sizes = {(par, d): coord_trace(par, d, **kw) for par in ("sp", "mup") for d in (32, 128)}
    keys = ["coord/embed_out", "coord/block0", "coord/block1", "coord/hidden", "coord/logits"]
    slope = lambda par, t, k: math.log(sizes[par, 128][t][k] / sizes[par, 32][t][k]) / math.log(4)
    for t in (1, 2, 3):  # logged steps 2–4: after 1–3 updates; after one update the logits still carry the
        for k in keys[:-1] if t == 1 else keys:  # init's readout, which μP's 1/m shrinks like 1/√d (docs/mup.md)
            assert abs(slope("mup", t, k)) <= 0.15, (t, k, slope("mup", t, k))
    assert slope("sp", 3, "coord/logits") >= 0.25 and slope("sp", 3, "coord/block1") >= 0.25


@pytest.mark.slow
def test_finite_blow_up_ends_diverged_and_a_healthy_run_does_not(tiny, tmp_path):
    assert train_main(tiny + ["--name=hot", "--optim.lr=1000", "--optim.grad_clip=0", "--steps=60"]) == 0
    s = json.load(open(tmp_path / "hot" / "summary.json"))
    rows = [json.loads(line) for line in open(tmp_path / "hot" / "metrics.jsonl")]
    assert s["status"] == "diverged" and s["step"] < 60
    assert all(math.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)  # never NaN: the bound did it
    assert max(r["train/loss"] for r in rows if "train/loss" in r) > 10 * math.log(64)
    assert train_main(tiny + ["--name=ok"]) == 0
    assert json.load(open(tmp_path / "ok" / "summary.json"))["status"] == "finished"
    # a large-σ start is far above 10·ln V for many steps, but it comes down: not a blow-up
    assert train_main(tiny + ["--name=wide", "--embedding.init_std=30"]) == 0
    rows = [json.loads(line) for line in open(tmp_path / "wide" / "metrics.jsonl")]
    assert rows[1]["train/loss"] > 10 * math.log(64)
    assert json.load(open(tmp_path / "wide" / "summary.json"))["status"] == "finished"


@pytest.mark.slow
def test_pretrained_tables_train_in_sp_and_mup(tmp_path):
    E = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32) * 0.1
    np.save(tmp_path / "e.npy", E)
    for par in ("sp", "mup"):
        cfg = load_config(
            None,
            {
                **BASE,
                "model.embed_dim": 32,
                "model.parametrization": par,
                "embedding.init": "pretrained",
                "embedding.pretrained_path": str(tmp_path / "e.npy"),
            },
        )
        corpus, pretrained = load_inputs(cfg)
        P = Program(cfg, corpus, pretrained)
        state, losses = run(cfg, P, 3)
        assert np.isfinite(losses).all()
        np.testing.assert_array_equal(np.asarray(P.init(0, hparams(cfg))["params"]["embed"]["embedding"]), E)


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"embedding.scale": "sqrt_d"}, "width-dependent multiplier"),
        ({"model.logit_scale": "inv_sqrt_d"}, "width-dependent multiplier"),
        ({"model.kind": "mlp"}, "model.kind='mlp'"),
        ({"optim.name": "sgd"}, "optim.name='sgd'"),
        ({"model.base_width": 9}, "model.base_width: got 9"),
    ],
)
def test_mup_refuses_what_it_does_not_define(kw, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, {**BASE, "model.parametrization": "mup", **kw})


@pytest.mark.slow
@pytest.mark.parametrize("par", ["sp", "mup"])
def test_vector_and_position_lr_scales_move_exactly_their_parameters(par):
    """One Adam step from fresh moments moves each weight by lr·g/(|g| + ε) ≈ lr·sign(g), so a parameter's largest
    move is its learning rate: with vector_lr_scale = 0.5 and pos_lr_scale = 0.25, LayerNorm gains and biases
    and linear biases move 0.5·lr, the position table 0.25·lr, and everything else as without them
    (hidden matrices lr/m under μP), at d = 8 (= d₀) and d = 32. A hand computation of each rule."""
    lr = 0.01
    for d in (8, 32):
        m = d / 8 if par == "mup" else 1.0
        cfg, P = program(
            **{
                "model.embed_dim": d,
                "model.tie_embeddings": False,
                "optim.lr": lr,
                "optim.grad_clip": 0.0,
                "optim.vector_lr_scale": 0.5,
                "optim.pos_lr_scale": 0.25,
                "model.parametrization": par,
            }
        )
        s0 = P.init(0, hparams(cfg))
        s1, _ = jax.jit(P.train_steps, static_argnums=2)(s0, P.corpus.tables, 1)
        move = jax.tree.map(
            lambda a, b: float(np.max(np.abs(np.asarray(b) - np.asarray(a)))), s0["params"], s1["params"]
        )
        blk = move["blocks"][0]
        for name in ("ln1", "ln2"):
            assert blk[name]["scale"] == pytest.approx(0.5 * lr, rel=1e-3), (d, name)
            assert blk[name]["bias"] == pytest.approx(0.5 * lr, rel=1e-3), (d, name)
        assert move["ln_f"]["scale"] == pytest.approx(0.5 * lr, rel=1e-3)
        for name in ("qkv", "proj", "fc", "out"):
            assert blk[name]["bias"] == pytest.approx(0.5 * lr, rel=1e-3), (d, name)
            assert blk[name]["kernel"] == pytest.approx(lr / m, rel=1e-3), (d, name)
        assert move["pos"] == pytest.approx(0.25 * lr, rel=1e-3)
        assert move["embed"]["embedding"] == pytest.approx(lr, rel=1e-3)
        assert move["head"]["embedding"] == pytest.approx(lr, rel=1e-3)


@pytest.mark.slow
def test_attn_mult_multiplies_the_attention_scores_alone():
    """model.attn_mult = 2.5 under μP at d = 8 (= d₀, where μP is SP) and d = 32: from one seed the weights are
    the same, the first block's mean |score| is exactly 2.5× the default's (by hand: the scores are
    q·k·attn_mult/√(K·m); the second block's input has moved with the first's
    attention), and nothing before the scores changes."""
    for par in ("mup",):
        for d in (8, 32):
            kw = {"model.embed_dim": d, "model.parametrization": par, "model.num_layers": 2}
            sizes = []
            for mult in (1.0, 2.5):
                cfg, P = program(**kw, **{"model.attn_mult": mult})
                state = jax.jit(P.init)(0, hparams(cfg))
                tok = P.batch(P.corpus.tables, state)
                sizes.append(jax.jit(P.loss_and_sizes)(state["params"], state["hp"], tok)[1])
            assert float(sizes[1]["coord/attn_logits0"]) == pytest.approx(
                2.5 * float(sizes[0]["coord/attn_logits0"]), rel=1e-5
            ), (par, d)
            assert float(sizes[1]["coord/embed_out"]) == float(sizes[0]["coord/embed_out"])
            assert float(sizes[1]["coord/block0"]) != float(sizes[0]["coord/block0"])  # the attention moved


def test_attn_mult_is_a_value_each_vmapped_member_brings_its_own():
    """model.attn_mult is a value key: two members (attn_mult 1 and 3) vmapped in one program each take two steps
    exactly as the same member alone (its own compiled program from its own config), under μP at d = 16 (m = 2)."""
    kw = {"model.embed_dim": 16, "model.parametrization": "mup", "model.num_layers": 2}
    cfgs = [load_config(None, {**BASE, **kw, "model.attn_mult": a}) for a in (1.0, 3.0)]
    P = Program(cfgs[0], make_corpus(cfgs[0]))
    hps = {k: jnp.asarray([hparams(c)[k] for c in cfgs], jnp.float32) for k in hparams(cfgs[0])}
    states = jax.jit(jax.vmap(P.init))(jnp.zeros(2, jnp.int32), hps)
    for _ in range(2):
        states, ms = jax.jit(jax.vmap(P.train_steps, in_axes=(0, None, None)), static_argnums=2)(
            states, P.corpus.tables, 1
        )
    scores = []
    for i, c in enumerate(cfgs):
        _, alone = run(c, Program(c, make_corpus(c)), 2)
        assert float(ms["train/loss"][i]) == pytest.approx(alone[-1], rel=1e-5), (i, alone)
        scores.append(float(ms["coord/attn_logits0"][i]))
    assert scores[1] > 2 * scores[0]  # the scores differ by the factor (the queries after two steps differ a little)


@pytest.mark.slow
def test_zero_query_init_zeroes_the_queries_alone():
    """model.zero_query_init: every block's fused QKV kernel starts with its query columns (the first d) at zero,
    keys and values as drawn without it, in SP and μP; the first step's attention scores are then exactly 0."""
    for par in ("sp", "mup"):
        kw = {"model.embed_dim": 16, "model.parametrization": par, "model.num_layers": 2}
        (c0, p0), (c1, p1) = program(**kw), program(**kw, **{"model.zero_query_init": True})
        a, b = jax.jit(p0.init)(0, hparams(c0))["params"], jax.jit(p1.init)(0, hparams(c1))["params"]
        for layer in range(2):
            ka, kb = (np.asarray(p["blocks"][layer]["qkv"]["kernel"]) for p in (a, b))
            assert np.abs(ka[:, :16]).max() > 0  # drawn, without the key
            np.testing.assert_array_equal(kb[:, :16], 0.0)
            np.testing.assert_array_equal(kb[:, 16:], ka[:, 16:])
        state = jax.jit(p1.init)(0, hparams(c1))
        _, m = jax.jit(p1.step)(state, p1.batch(p1.corpus.tables, state))
        assert float(m["coord/attn_logits0"]) == 0.0 and float(m["coord/attn_logits1"]) == 0.0
        # a value key: one program, two vmapped members (off, on), each member's parameters as when alone
        hps = {k: jnp.asarray([hparams(c)[k] for c in (c0, c1)], jnp.float32) for k in hparams(c0)}
        both = jax.jit(jax.vmap(p0.init))(jnp.zeros(2, jnp.int32), hps)["params"]
        for i, alone in enumerate((a, b)):
            for x, y in zip(jax.tree.leaves(alone), jax.tree.leaves(both)):
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y[i]))
