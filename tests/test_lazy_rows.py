"""optim.row_updates=lazy: rows absent from a step keep their parameters and optimizer state (one device, vmapped,
a 4 x 2 mesh); a present row's update is LazyAdam's by hand; the untouched-row drift metric against NumPy."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from embjax.config import ConfigError, load_config
from embjax.data.corpus import make_corpus
from embjax.train.optim import Rule, lazy_rows, make_optimizer
from embjax.train.step import Program, hparams
from tests.conftest import on_8_devices

SMALL = {
    "data.vocab_size": 96,
    "data.num_classes": 4,
    "data.seq_len": 8,
    "data.batch_size": 2,
    "data.zipf_exponent": 1.5,  # steep: most tokens are absent from a 16-token batch
    "model.embed_dim": 16,
    "model.num_layers": 1,
    "model.num_heads": 2,
    "model.tie_embeddings": False,
    "optim.lr": 0.01,
    "optim.weight_decay": 0.1,
    "optim.warmup_steps": 0,
    "optim.schedule": "constant",
    "optim.grad_clip": 0.0,
    "steps": 10,
}


def lazy_adamw_by_hand(grads, p0, lr, wd, b1, b2, eps, lazy):
    """float64 AdamW over steps of row gradients; lazy: a row with an all-zero gradient is skipped entirely
    (parameters, moments), the bias correction uses the global step count (TF Addons' LazyAdam, PyTorch's
    SparseAdam)."""
    p, m, v = p0.astype(np.float64), np.zeros(p0.shape), np.zeros(p0.shape)
    for t, g in enumerate(grads, 1):
        g = g.astype(np.float64)
        rows = np.any(g != 0, axis=1) if lazy else np.ones(len(g), bool)
        m[rows] = b1 * m[rows] + (1 - b1) * g[rows]
        v[rows] = b2 * v[rows] + (1 - b2) * g[rows] ** 2
        step = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps) + wd * p
        p[rows] -= lr * step[rows]
    return p, m, v


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_a_present_rows_update_is_lazyadams_by_hand(name):
    """Three steps of made-up gradients on a 6 x 3 table: row 1 absent at step 2, row 4 never present. Under lazy
    they keep parameters and moments exactly; every other row's update is LazyAdam's (or momentum SGD's) in
    float64; a dense matrix beside the table is plain AdamW."""
    cfg = load_config(None, {**SMALL, "optim.name": name, "optim.momentum": 0.9, "optim.row_updates": "lazy"})
    hp = {k: jnp.asarray(v, jnp.float32) for k, v in hparams(cfg).items()}
    rules = {"embed": {"embedding": Rule("embed", per_token=True)}, "w": Rule("matrix")}
    tx = make_optimizer(cfg, hp, rules)
    rng = np.random.default_rng(0)
    p0 = {"embed": {"embedding": rng.normal(size=(6, 3)).astype(np.float32)}, "w": rng.normal(size=(3, 3))}
    p0["w"] = p0["w"].astype(np.float32)
    gs = [rng.normal(size=(6, 3)).astype(np.float32) for _ in range(3)]
    gs[1][1] = 0.0
    for g in gs:
        g[4] = 0.0
    gw = [rng.normal(size=(3, 3)).astype(np.float32) for _ in range(3)]
    params, state = jax.tree.map(jnp.asarray, p0), tx.init(jax.tree.map(jnp.asarray, p0))
    for t in range(3):
        grads = {"embed": {"embedding": jnp.asarray(gs[t])}, "w": jnp.asarray(gw[t])}
        rows = {"embed": {"embedding": jnp.any(grads["embed"]["embedding"] != 0, axis=1)}, "w": None}
        before = (params, state)
        upd, new_state = tx.update(grads, state, params)
        upd, state = lazy_rows(rows, upd, new_state, state)
        params = jax.tree.map(lambda p, u: p + u, params, upd)
        if t == 1:  # row 1 absent: its parameters and every optimizer-state row are bit-identical
            np.testing.assert_array_equal(params["embed"]["embedding"][1], before[0]["embed"]["embedding"][1])
            for new, old in zip(jax.tree.leaves(state), jax.tree.leaves(before[1])):
                if new.shape == (6, 3):
                    np.testing.assert_array_equal(np.asarray(new)[1], np.asarray(old)[1])
    np.testing.assert_array_equal(params["embed"]["embedding"][4], p0["embed"]["embedding"][4])
    if name == "adamw":
        want, _, _ = lazy_adamw_by_hand(gs, p0["embed"]["embedding"], 0.01, 0.1, cfg.optim.b1, cfg.optim.b2, 1e-8, True)
        dense_w, _, _ = lazy_adamw_by_hand(gw, p0["w"], 0.01, 0.1, cfg.optim.b1, cfg.optim.b2, 1e-8, False)
        np.testing.assert_allclose(np.asarray(params["w"]), dense_w, rtol=1e-5, atol=1e-6)
    else:  # sgd: L2 decay added to the gradient, then momentum (trace) and the lr, skipped rows untouched
        want, tr = p0["embed"]["embedding"].astype(np.float64), np.zeros((6, 3))
        for g in gs:
            rows = np.any(g != 0, axis=1)
            tr[rows] = 0.9 * tr[rows] + (g[rows] + 0.1 * want[rows])
            want[rows] -= 0.01 * tr[rows]
    np.testing.assert_allclose(np.asarray(params["embed"]["embedding"]), want, rtol=1e-5, atol=1e-6)


def _absent_rows_kept(P, state, new, tok):
    present = np.zeros(P.cfg.data.vocab_size, bool)
    present[np.asarray(tok)[..., :-1].reshape(-1)] = True
    absent = ~present
    assert absent.sum() > 20  # the steep corpus leaves many rows out of a batch
    E0, E1 = (np.asarray(s["params"]["embed"]["embedding"]) for s in (state, new))
    np.testing.assert_array_equal(E1[absent], E0[absent])
    assert np.all(np.any(E1[present] != E0[present], axis=1))
    moments = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(new["opt_state"]):
        keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
        if "embed" in keys and leaf.shape[:1] == (P.cfg.data.vocab_size,):
            old = _leaf_at(state["opt_state"], path)
            np.testing.assert_array_equal(np.asarray(leaf)[absent], np.asarray(old)[absent])
            moments += 1
    assert moments == 2  # Adam's mu and nu of the input table
    return absent


def _leaf_at(tree, path):
    for k in path:
        tree = tree[k.key] if hasattr(k, "key") else tree[k.idx] if hasattr(k, "idx") else getattr(tree, k.name)
    return tree


def test_absent_rows_are_bit_identical_and_the_drift_matches_numpy():
    """One device: two lazy AdamW steps; rows of tokens absent from a step's inputs keep E and Adam's moments bit
    for bit. Under dense the same rows move, and emb/untouched_drift and emb/untouched_moved_frac match a NumPy
    computation from the tables before and after each step (drift measured from each row's last present step)."""
    drifts = {}
    for mode in ("lazy", "dense"):
        cfg = load_config(None, {**SMALL, "optim.row_updates": mode})
        P = Program(cfg, make_corpus(cfg))
        state = jax.jit(P.init)(0, hparams(cfg))
        step, batch = jax.jit(P.step), jax.jit(P.batch)
        anchor = np.asarray(P.table(state["params"]), np.float64)
        drifts[mode] = []
        for _ in range(2):
            tok = batch(P.corpus.tables, state)
            new, m = step(state, tok)
            before, after = (np.asarray(P.table(s["params"]), np.float64) for s in (state, new))
            present = np.zeros(96, bool)
            present[np.asarray(tok)[:, :-1].reshape(-1)] = True
            if mode == "lazy":
                _absent_rows_kept(P, state, new, tok)
            want = np.linalg.norm(after - anchor, axis=1)[~present].mean()
            assert float(m["emb/untouched_drift"]) == pytest.approx(want, rel=1e-5, abs=1e-12)
            moved = np.any(after != before, axis=1) & ~present
            assert float(m["emb/untouched_moved_frac"]) == pytest.approx(moved.sum() / (~present).sum(), abs=1e-7)
            anchor = np.where(present[:, None], after, anchor)
            np.testing.assert_allclose(np.asarray(new["row_anchor"]), anchor, rtol=1e-6)
            drifts[mode].append(float(m["emb/untouched_drift"]))
            state = new
    assert drifts["lazy"] == [0.0, 0.0]
    assert drifts["dense"][0] > 0 and drifts["dense"][1] > drifts["dense"][0]  # AdamW's decay moves absent rows


def test_lazy_vmapped_members_keep_their_own_absent_rows():
    """Two members (seeds 0 and 1: different batches) vmapped in one program: each keeps the rows its own batch
    lacked, bit for bit, and equals the same member run alone."""
    cfg = load_config(None, {**SMALL, "optim.row_updates": "lazy"})
    P = Program(cfg, make_corpus(cfg))
    hp = hparams(cfg)
    hps = {k: jnp.full((2,), v, jnp.float32) for k, v in hp.items()}
    states = jax.jit(jax.vmap(P.init))(jnp.arange(2), hps)
    toks = jax.jit(jax.vmap(P.batch, in_axes=(None, 0)))(P.corpus.tables, states)
    news, _ = jax.jit(jax.vmap(P.step))(states, toks)
    for i in range(2):
        pick = lambda t, i=i: jax.tree.map(lambda x: x[i], t)
        _absent_rows_kept(P, pick(states), pick(news), toks[i])
        alone, _ = jax.jit(P.step)(pick(states), toks[i])
        np.testing.assert_allclose(
            np.asarray(alone["params"]["embed"]["embedding"]),
            np.asarray(news["params"]["embed"]["embedding"][i]),
            rtol=1e-6,
            atol=1e-7,
        )


MESH_LAZY = r"""
import json, jax, numpy as np
from embjax.config import load_config
from embjax.data.corpus import make_corpus
from embjax.runtime.mesh import make_mesh
from embjax.train.step import Program, hparams
out = {}
for shape in ((1, 1), (4, 2)):
    cfg = load_config(None, {**json.loads(SMALL), "mesh.data": shape[0], "mesh.model": shape[1],
                             "data.batch_size": 4, "optim.row_updates": "lazy"})
    m = make_mesh(cfg) if shape != (1, 1) else None
    P = Program(cfg, make_corpus(cfg), mesh=m)
    state = jax.jit(P.init, out_shardings=P.state_shardings)(0, hparams(cfg))
    tok = jax.jit(P.batch)(P.corpus.tables, state)
    new, metrics = jax.jit(P.step)(state, tok)
    present = np.zeros(cfg.data.vocab_size, bool)
    present[np.asarray(tok)[:, :-1].reshape(-1)] = True
    E0, E1 = (np.asarray(s["params"]["embed"]["embedding"]) for s in (state, new))
    rows = lambda s: [np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(s["opt_state"])
                      if "['embed']" in jax.tree_util.keystr(p) and x.shape[:1] == (cfg.data.vocab_size,)]
    pairs = [(E1, E0), *zip(rows(new), rows(state))]
    out[str(shape)] = {
        "spec": str(new["params"]["embed"]["embedding"].sharding.spec) if m is not None else None,
        "absent": int((~present).sum()),
        "absent_equal": all(np.array_equal(a[~present], b[~present]) for a, b in pairs),
        "state_rows": len(pairs) - 1,
        "present_moved": bool(np.all(np.any(E1[present] != E0[present], axis=1))),
        "E1": E1.tolist(),
        "drift": float(metrics["emb/untouched_drift"]),
    }
print(json.dumps(out))
"""


@pytest.mark.slow
def test_lazy_on_a_4x2_mesh_keeps_absent_rows_and_matches_one_device():
    p = on_8_devices(f"SMALL = {json.dumps(json.dumps(SMALL))}\n" + MESH_LAZY)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    one, mesh = out["(1, 1)"], out["(4, 2)"]
    assert mesh["spec"] in ("P('model',)", "P('model', None)")  # the table's rows split over `model`
    for r in (one, mesh):
        assert r["absent"] > 20 and r["absent_equal"] and r["present_moved"] and r["drift"] == 0.0
        assert r["state_rows"] == 2  # Adam's mu and nu of the input table
    np.testing.assert_allclose(np.asarray(mesh["E1"]), np.asarray(one["E1"]), rtol=1e-5, atol=1e-6)


def test_lazy_with_adafactor_is_refused():
    with pytest.raises(ConfigError, match="optim.row_updates: got 'lazy' with optim.name='adafactor'"):
        load_config(None, {**SMALL, "optim.name": "adafactor", "optim.row_updates": "lazy"})


def test_dense_is_the_plain_optimizer_bit_for_bit():
    """optim.row_updates=dense (the default) is the optimizer as written: three Program steps equal three steps of
    the optax chain applied by hand to the loss's gradient, bit for bit (no row is masked, nothing else moves)."""
    import optax

    cfg = load_config(None, SMALL)
    P = Program(cfg, make_corpus(cfg))
    state = jax.jit(P.init)(0, hparams(cfg))
    hp = state["hp"]
    tx = make_optimizer(P.cfg, hp, P.rules, P.log_rel_freq)

    @jax.jit
    def by_hand(params, opt_state, tok):
        grads = jax.grad(lambda p: P.loss_and_sizes(p, hp, tok, P._stream_probes(tok))[0])(params)
        updates, opt_state = tx.update(jax.tree.map(lambda g: g.astype(jnp.float32), grads), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params, opt_state = state["params"], state["opt_state"]
    step, batch = jax.jit(P.step), jax.jit(P.batch)
    for _ in range(3):
        tok = batch(P.corpus.tables, state)
        state, _ = step(state, tok)
        params, opt_state = by_hand(params, opt_state, tok)
        for a, b in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_lazy_reaches_the_moments_inside_a_frozen_tables_masked_chain():
    """With a table frozen for good, the optimizer chain is optax.masked (the frozen table's state is a
    MaskedNode): lazy rows of another per-token table (an untied head) still keep their Adam moments."""
    cfg = load_config(None, {**SMALL, "optim.row_updates": "lazy"})
    hp = {k: jnp.asarray(v, jnp.float32) for k, v in hparams(cfg).items()}
    rules = {
        "embed": {"embedding": Rule("embed", frozen=True, per_token=True)},
        "head": {"embedding": Rule("table", per_token=True)},
    }
    tx = make_optimizer(cfg, hp, rules)
    params = {"embed": {"embedding": jnp.ones((4, 2))}, "head": {"embedding": jnp.ones((4, 2))}}
    state = tx.init(params)
    g = {"embed": {"embedding": jnp.ones((4, 2))}, "head": {"embedding": jnp.ones((4, 2))}}
    upd, state = tx.update(g, state, params)  # every row moves once: nonzero moments everywhere
    g2 = {"embed": {"embedding": jnp.zeros((4, 2))}, "head": {"embedding": jnp.zeros((4, 2)).at[0].set(1.0)}}
    rows = {"embed": {"embedding": None}, "head": {"embedding": jnp.arange(4) == 0}}
    upd2, new = tx.update(g2, state, params)
    upd2, new = lazy_rows(rows, upd2, new, state)
    moments = [
        (np.asarray(a), np.asarray(b))
        for (p, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(new), jax.tree_util.tree_leaves_with_path(state))
        if "'head'" in jax.tree_util.keystr(p) and np.ndim(a) == 2
    ]
    assert len(moments) == 2  # Adam's mu and nu of the head
    for a, b in moments:
        np.testing.assert_array_equal(a[1:], b[1:])  # rows 1-3: no gradient, moments kept
        assert np.all(a[0] != b[0])
    assert np.all(np.asarray(upd2["head"]["embedding"][1:]) == 0)
    assert np.all(np.asarray(upd2["embed"]["embedding"]) == 0)  # frozen
