"""The pure training program: loss, init, train step, eval (the optimizer is `optim`'s). No I/O here.

Dimensions: B batch, T time, V vocabulary. A train state is a plain pytree (dict):
  step           int32   steps taken
  params         nested dict of arrays (the model's nnx.Param values)
  opt_state      optax state
  hp             per-run values that may differ between vmapped sweep members (σ, lr, decays, clip)
  rng            uint32[2] key data for the data stream; a batch is f(rng, step)
  diverged_at    int32   -1, or the step whose loss or gradient was non-finite, or whose loss had stayed
                         above the divergence bound for divergence_patience steps (the state is frozen there)
  skipped        int32   non-finite updates skipped (optim.skip_nonfinite)
  high_loss_steps int32  consecutive steps with a loss above the divergence bound
  loss0          float32 the first finite loss (a blow-up must also pass twice it)
  norm0          float32 mean row norm of E at step 0, for emb/norm_growth
  row_updates    int32[V] steps in which each row of E received a nonzero gradient
  row_anchor     float32[V, d] each row of E as it was after the last step whose batch held its token (the
                 untouched-row drift is measured from it)
Shapes and structure are static per compiled program; everything in `hp` and the seed are values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from .. import config as C
from ..analysis.metrics import FREQ_BUCKETS, frequency_bucket_of
from ..config import Config, hparams
from ..data.corpus import Corpus
from ..model.align import PretrainedTable
from ..model.layers import Dropout
from ..model.models import Tables, abstract_model, build_model, drawn_shapes, mean_abs, path_keys
from .optim import lazy_rows, make_optimizer, param_rules, rows_where, schedule_factor

DROPOUT = 0x64726F70  # "drop": folded into a step's key for its dropout masks


def _float32(tree: Any) -> Any:
    return jax.tree.map(lambda x: x.astype(jnp.float32), tree)


def precision(name: str):
    """model.matmul_precision as a tracing context ("default": XLA's own choice, no context)."""
    return contextlib.nullcontext() if name == "default" else jax.default_matmul_precision(name)


def _tree_where(pred, a, b):
    # lax.select, not jnp.where: jnp.where's nested jit hides shardings from the SPMD partitioner,
    # which then all-gathers vocabulary-sharded tables to select between them. The result keeps b's dtypes
    # (bfloat16 parameters stay bfloat16 even where float32 values were mixed into their update).
    return jax.tree.map(lambda x, y: jax.lax.select(jnp.broadcast_to(pred, x.shape), x.astype(y.dtype), y), a, b)


class Program:
    """Everything compiled for one config shape: init, step, eval, embedding stats (all pure).

    The program sees the config without its per-member values (`config.without_values`): those
    arrive in the state's `hp` and the seed, so every member of a sweep group can share it.
    """

    def __init__(self, cfg: Config, corpus: Corpus, pretrained: PretrainedTable | None = None, mesh=None):
        self.cfg, self.corpus, self.mesh = C.without_values(cfg), corpus, mesh
        self.pretrained = pretrained.E if pretrained is not None else None
        self.dropout = C.uses_dropout(cfg)  # masks drawn in the train step (the rates are each member's values)
        self.order = np.argsort(-np.asarray(corpus.counts, np.float64), kind="stable")  # ids, most frequent first
        abstract = abstract_model(self.cfg, self.pretrained, self.order)
        self.graphdef, _ = nnx.split(abstract)
        self.tables = Tables(abstract)
        params = nnx.to_pure_dict(nnx.state(abstract, nnx.Param))
        base = params  # μP compares every shape with the same model at the base width (`mup`'s base shapes)
        if cfg.model.parametrization == "mup":
            base_cfg = drawn_shapes(
                dataclasses.replace(self.cfg, model=dataclasses.replace(self.cfg.model, embed_dim=cfg.model.base_width))
            )
            base = nnx.to_pure_dict(nnx.state(abstract_model(base_cfg), nnx.Param))
        self.rules = param_rules(self.cfg, self.tables, params, base)
        # rows of the input table the step holds: the pretrained ones (embedding.freeze=pretrained), or all of them
        # until embedding.unfreeze_at; None when nothing is held row by row
        e = cfg.embedding
        self.held_rows = None
        if e.freeze == "pretrained":
            self.held_rows = np.asarray(pretrained.matched, bool)
        elif e.freeze is True and e.unfreeze_at is not None:
            self.held_rows = np.ones(cfg.data.vocab_size, bool)
        self.pad_id = cfg.model.pad_id
        # each token's frequency bucket (FREQ_BUCKETS: top 1 %, 1-10 %, rest) by the corpus's counts; a token not
        # yet seen in training (the state's token_counts) counts as unseen when evaluated
        self.freq_bucket = frequency_bucket_of(corpus.counts)
        f = np.asarray(corpus.counts, np.float64) / max(float(np.sum(corpus.counts)), 1e-300)
        self.log_rel_freq = np.log(np.maximum(cfg.data.vocab_size * f, 1e-3))  # log(V·f), floored at 10⁻³
        o = cfg.optim
        # a blow-up is a loss past this and past twice the run's first loss (so a large-σ start is not one)
        self.divergence_loss = (
            o.divergence_loss if o.divergence_loss is not None else 10 * math.log(cfg.data.vocab_size)
        )
        # the train state's shapes, and on a mesh each leaf's sharding (the loop and the scan carry share them)
        self.abstract_state = jax.eval_shape(self.init, 0, hparams(cfg))
        self.state_shardings = None
        if mesh is not None:
            from ..runtime.mesh import state_shardings

            self.state_shardings = state_shardings(self.abstract_state, mesh, self.per_row)

    def per_row(self, path: tuple, leaf: Any) -> bool:
        """Leaves with one entry per vocabulary row: the tables, their optimizer moments, row counters."""
        rows = self.tables.per_token(path) or path_keys(path) in (("row_updates",), ("token_counts",), ("row_anchor",))
        return rows and tuple(leaf.shape[:1]) == (self.cfg.data.vocab_size,)

    # -- pieces ------------------------------------------------------------------------
    def model(self, params: Any) -> nnx.Module:
        return nnx.merge(self.graphdef, params)

    def table(self, params: Any) -> jax.Array:
        """E (V×d), the input embedding table, in float32 (whatever model.param_dtype stores)."""
        return self.tables.get(params).astype(jnp.float32)

    def output_table(self, params: Any) -> jax.Array | None:
        """The untied output table (V×d) in float32, or None when the output is tied to E."""
        return self.tables.get(params, "head").astype(jnp.float32) if "head" in self.tables.layers else None

    def loss(self, params: Any, hp: dict, tok_BxT1: jax.Array) -> jax.Array:
        """Mean next-token cross-entropy (nats) over non-padding targets."""
        return self.loss_and_sizes(params, hp, tok_BxT1)[0]

    def forward(
        self, params: Any, hp: dict, tok_BxT1: jax.Array, probes=None, dropout_key=None
    ) -> tuple[jax.Array, jax.Array, dict]:
        """(logits, per-token cross-entropy, sizes): the sizes are the mean |coordinate| of the embedding
        output, each block's output and attention scores, the final hidden state and the logits (what a
        μP coordinate check plots against width). hp: the member's value keys (the state's `hp`; the forward pass
        reads model.attn_mult). probes: the transformer's zero probes at each block's input. dropout_key: the
        step's dropout key (the train step's alone; None, as at eval and in every metric: no dropout)."""
        inp_BxT, tgt_BxT = tok_BxT1[:, :-1], tok_BxT1[:, 1:]
        mask_BxT = None if self.pad_id is None else inp_BxT != self.pad_id
        model = self.model(params)
        with precision(self.cfg.model.matmul_precision):
            extra = {} if probes is None else {"probes": probes}
            if self.cfg.model.kind == "transformer":
                extra["attn_mult"] = hp["attn_mult"]
            if dropout_key is not None:
                extra["drop"] = Dropout(dropout_key, hp["dropout"], hp["embed_dropout"])
            emb_BxTxD, h_BxTxD, coords = model.features_and_coords(inp_BxT, mask_BxT, **extra)
            logits_BxTxV = model.logits(h_BxTxD)
        ce_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV.astype(jnp.float32), tgt_BxT)
        sizes = {
            "coord/embed_out": mean_abs(emb_BxTxD),
            **{f"coord/{k}": v for k, v in coords.items()},
            "coord/hidden": mean_abs(h_BxTxD),
            "coord/logits": mean_abs(logits_BxTxV),
        }
        return logits_BxTxV, ce_BxT, jax.tree.map(jax.lax.stop_gradient, sizes)

    def target_weights(self, tok_BxT1: jax.Array) -> jax.Array:
        """1 for each target the loss counts, 0 for padding targets."""
        tgt_BxT = tok_BxT1[:, 1:]
        return (
            jnp.ones(tgt_BxT.shape, jnp.float32)
            if self.pad_id is None
            else (tgt_BxT != self.pad_id).astype(jnp.float32)
        )

    def loss_and_sizes(
        self, params: Any, hp: dict, tok_BxT1: jax.Array, probes=None, dropout_key=None
    ) -> tuple[jax.Array, dict]:
        """The mean loss over non-padding targets, and the sizes (see forward)."""
        _, ce_BxT, sizes = self.forward(params, hp, tok_BxT1, probes, dropout_key)
        if self.pad_id is None:
            return ce_BxT.mean(), sizes
        w_BxT = self.target_weights(tok_BxT1)
        return (ce_BxT * w_BxT).sum() / jnp.maximum(w_BxT.sum(), 1.0), sizes

    def emb_stats(self, state: dict) -> dict[str, jax.Array]:
        """The cheap embedding statistics logged every log.every steps."""
        norms_V = jnp.linalg.norm(self.table(state["params"]), axis=-1)
        mean = norms_V.mean()
        # diverged_at is copied out here: the state's own buffers are donated to the next step
        return {
            "emb/norm_mean": mean,
            "emb/norm_max": norms_V.max(),
            "emb/norm_growth": mean / state["norm0"],
            "_diverged_at": state["diverged_at"] + 0,
        }

    # -- init --------------------------------------------------------------------------
    def init(self, seed: jax.Array, hp: dict) -> dict:
        """A fresh train state from an integer seed and value hyperparameters (vmappable over both)."""
        root = jax.random.key(seed)
        k_params, k_data = jax.random.split(root)
        model = build_model(
            self.cfg,
            init_std=hp["init_std"],
            head_init_std=hp["head_init_std"],
            zero_query=hp["zero_query_init"],
            pretrained=self.pretrained,
            order=self.order,
            rngs=nnx.Rngs(params=k_params),
        )
        params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
        hp = {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()}
        return {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            # optimizer state in float32 whatever the parameters' dtype (a bfloat16 b2 = 0.999 rounds to 1.0)
            "opt_state": make_optimizer(self.cfg, hp, self.rules, self.log_rel_freq).init(_float32(params)),
            "hp": hp,
            "rng": jax.random.key_data(k_data),
            "diverged_at": jnp.full((), -1, jnp.int32),
            "skipped": jnp.zeros((), jnp.int32),
            "high_loss_steps": jnp.zeros((), jnp.int32),
            "loss0": jnp.full((), jnp.nan, jnp.float32),
            "norm0": jnp.linalg.norm(self.table(params), axis=-1).mean(),
            "row_updates": jnp.zeros((self.cfg.data.vocab_size,), jnp.int32),
            "row_anchor": self.table(params),
            "token_counts": jnp.zeros((self.cfg.data.vocab_size,), jnp.int32),  # occurrences in trained batches
        }

    # -- train -------------------------------------------------------------------------
    def step(self, state: dict, tok_BxT1: jax.Array) -> tuple[dict, dict]:
        """One optimizer step: `(state, batch) -> (state, metrics)`. A non-finite step freezes the state
        there (or is skipped); so does a loss above the divergence bound for `divergence_patience` steps."""
        params, hp = state["params"], state["hp"]
        probes = self._stream_probes(tok_BxT1)
        key = self.dropout_key(state) if self.dropout else None
        (loss, sizes), (grads, stream) = jax.value_and_grad(self.loss_and_sizes, (0, 3), has_aux=True)(
            params, hp, tok_BxT1, probes, key
        )
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = self._update(state, grads)
        new_params = optax.apply_updates(params, updates)
        live = state["diverged_at"] < 0
        loss0 = jnp.where(finite & jnp.isnan(state["loss0"]), loss, state["loss0"])  # the first finite loss
        high = loss > jnp.maximum(self.divergence_loss, jnp.nan_to_num(2 * loss0, nan=0.0))
        # a non-finite step (skipped or not) leaves the count as it was
        high_loss_steps = jnp.where(finite, jnp.where(high, state["high_loss_steps"] + 1, 0), state["high_loss_steps"])
        blown_up = high_loss_steps >= self.cfg.optim.divergence_patience  # finite, but far past ln V for too long
        apply = finite & live & ~blown_up
        touched_V = self.tables.touched(grads)  # tokens whose own parameters got a nonzero gradient
        rows_touched = touched_V.mean()
        stop_here = live & ((~finite & (not self.cfg.optim.skip_nonfinite)) | blown_up)
        new_params = _tree_where(apply, new_params, params)
        drift, anchor = self._untouched_drift(state, params, new_params, tok_BxT1)
        new_state = dict(
            state,
            step=state["step"] + 1,
            params=new_params,
            row_anchor=anchor,
            opt_state=_tree_where(apply, opt_state, state["opt_state"]),
            diverged_at=jnp.where(stop_here, state["step"] + 1, state["diverged_at"]),
            skipped=state["skipped"] + (~finite & live).astype(jnp.int32),
            high_loss_steps=high_loss_steps,
            loss0=loss0,
            row_updates=state["row_updates"] + (touched_V & apply).astype(jnp.int32),
            token_counts=state["token_counts"].at[tok_BxT1.reshape(-1)].add(apply.astype(jnp.int32)),
        )
        lr = hp["lr"] * schedule_factor(self.cfg)(state["step"])
        parts = {"train/grad_norm_embed": optax.tree.norm(self.tables.subtree(grads))}  # the input layer's gradient
        if "blocks" in grads:  # and the first block's (Takase et al.'s small-σ effect enters through its LN)
            parts["train/grad_norm_block0"] = optax.tree.norm(grads["blocks"][0])
            # ‖∂L/∂x‖ at the first block's input (its LayerNorm's input: Takase et al.'s quantity), and its
            # ratio to the last block's
            first, last = (optax.tree.norm(stream[i]) for i in (0, -1))
            parts["train/grad_norm_stream0"], parts["train/grad_stream_ratio"] = first, first / last
        return new_state, {
            "train/loss": loss,
            "train/grad_norm": grad_norm,
            "train/lr": lr,
            "emb/grad_row_frac": rows_touched,
            **drift,
            **parts,
            **sizes,
        }

    def dropout_key(self, state: dict) -> jax.Array:
        """The step's dropout key: a pure function of the member's stream key (its seed) and the step, apart from
        the batch's key f(rng, step); each dropout site folds in its number (embjax.model.layers.Dropout)."""
        return jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"]), DROPOUT)

    def _update(self, state: dict, grads: Any) -> tuple[Any, Any]:
        """The optimizer's updates and new state; lazy rows and held (frozen) rows keep their state."""
        tx = make_optimizer(self.cfg, state["hp"], self.rules, self.log_rel_freq)
        old = state["opt_state"]
        updates, opt_state = tx.update(_float32(grads), old, state["params"])
        if self.cfg.optim.row_updates == "lazy":
            updates, opt_state = lazy_rows(self._grad_rows(grads), updates, opt_state, old)
        if self.held_rows is not None:  # frozen rows (until embedding.unfreeze_at): no update, no state change
            updates, opt_state = lazy_rows(self._train_rows(grads, state["step"]), updates, opt_state, old)
        return updates, opt_state

    def _grad_rows(self, grads: Any) -> Any:
        """For each per-token array: (V,) bool, the rows with a nonzero gradient; None for every other parameter."""
        V = self.cfg.data.vocab_size

        def rows(path, g):
            if not self.tables.per_token(path) or g.shape[:1] != (V,):
                return None
            return jnp.any(g.reshape(V, -1) != 0, axis=1)

        return jax.tree_util.tree_map_with_path(rows, grads)

    def _train_rows(self, grads: Any, step: jax.Array) -> Any:
        """For the input table's per-token arrays: (V,) bool, the rows that train at this step (not held)."""
        e = self.cfg.embedding
        held_V = jnp.asarray(self.held_rows) & (step < (e.unfreeze_at if e.unfreeze_at is not None else 2**31 - 1))
        V = self.cfg.data.vocab_size
        pick = lambda path, g: (
            ~held_V
            if self.tables.name_of(path) == "embed" and self.tables.per_token(path) and g.shape[:1] == (V,)
            else None
        )
        return jax.tree_util.tree_map_with_path(pick, grads)

    def _untouched_drift(self, state: dict, params: Any, new_params: Any, tok_BxT1: jax.Array) -> tuple[dict, Any]:
        """emb/untouched_drift: the mean ‖eᵢ(after this step) − eᵢ(after the last step whose inputs held token i)‖
        over the tokens absent from this step's inputs (0 when every token is present); emb/untouched_moved_frac:
        the fraction of those absent tokens' rows that changed in this step. And the new
        anchors (rows of E after the last step that held their token)."""
        V = self.cfg.data.vocab_size
        inp = tok_BxT1[:, :-1].reshape(-1)
        present_V = jnp.zeros((V,), bool).at[inp].set(True)
        before, after = self.table(params), self.table(new_params)
        absent = ~present_V
        n_absent = jnp.maximum(absent.sum(), 1).astype(jnp.float32)
        drift_V = jnp.linalg.norm(after - state["row_anchor"], axis=-1)
        moved_V = jnp.any(after != before, axis=-1)
        metrics = {
            "emb/untouched_drift": jnp.sum(jnp.where(absent, drift_V, 0.0)) / n_absent,
            "emb/untouched_moved_frac": jnp.sum((absent & moved_V).astype(jnp.float32)) / n_absent,
        }
        return metrics, rows_where(present_V, after, state["row_anchor"])

    def _stream_probes(self, tok_BxT1: jax.Array) -> list | None:
        """Zeros added to each transformer block's input, so the step's gradient includes ∂L/∂x there."""
        if self.cfg.model.kind != "transformer":
            return None
        B, T1 = tok_BxT1.shape
        shape = (B, T1 - 1, self.cfg.model.embed_dim)
        return [jnp.zeros(shape, jnp.dtype(self.cfg.model.compute_dtype)) for _ in range(self.cfg.model.num_layers)]

    def batch(self, tables: dict, state: dict) -> jax.Array:
        key = jax.random.wrap_key_data(state["rng"])
        tok = self.corpus.batch(tables, key, state["step"], self.cfg.data.batch_size)
        if self.mesh is not None:  # data parallel: each `data` slice of the mesh holds B / data rows
            from ..runtime.mesh import batch_sharding

            tok = jax.lax.with_sharding_constraint(tok, batch_sharding(self.mesh))
        return tok

    def train_steps(self, state: dict, tables: dict, n: int) -> tuple[dict, dict]:
        """n steps in one dispatch (lax.scan), each on its own batch f(rng, step); metrics of the last."""

        def body(s, _):
            s, m = self.step(s, self.batch(tables, s))
            if (
                self.state_shardings is not None
            ):  # pin the loop carry's layout, or XLA may gather tables at the loop edge
                s = jax.lax.with_sharding_constraint(s, self.state_shardings)
            return s, m

        if n == 1:
            return body(state, None)
        state, ms = jax.lax.scan(body, state, None, length=n)
        return state, jax.tree.map(lambda x: x[-1], ms)

    # -- eval --------------------------------------------------------------------------
    def evaluate(self, state: dict, batches_NxBxT1: jax.Array) -> dict[str, jax.Array]:
        """eval/loss (the mean of the batches' mean losses), eval/acc, and the loss and accuracy of the targets
        in each frequency bucket (`eval/loss_bucket_top1` ...; NaN for a bucket with no eval target)."""
        bucket_V = jnp.where(state["token_counts"] == 0, FREQ_BUCKETS.index("unseen"), jnp.asarray(self.freq_bucket))

        def one(tok_BxT1):
            logits_BxTxV, ce_BxT, _ = self.forward(state["params"], state["hp"], tok_BxT1)
            tgt_BxT, w_BxT = tok_BxT1[:, 1:], self.target_weights(tok_BxT1)
            hit_BxT = (jnp.argmax(logits_BxTxV, axis=-1) == tgt_BxT).astype(jnp.float32)
            in_BxTxK = jax.nn.one_hot(bucket_V[tgt_BxT], len(FREQ_BUCKETS)) * w_BxT[..., None]
            sums_3xK = jnp.einsum("btk,sbt->sk", in_BxTxK, jnp.stack([ce_BxT, hit_BxT, jnp.ones_like(ce_BxT)]))
            return (ce_BxT * w_BxT).sum() / jnp.maximum(w_BxT.sum(), 1.0), sums_3xK

        means_N, sums_Nx3xK = jax.lax.map(one, batches_NxBxT1)
        ce_K, hit_K, n_K = sums_Nx3xK.sum(axis=0)
        out = {"eval/loss": means_N.mean(), "eval/acc": hit_K.sum() / jnp.maximum(n_K.sum(), 1.0)}
        for k, name in enumerate(FREQ_BUCKETS):
            out[f"eval/loss_bucket_{name}"] = ce_K[k] / n_K[k]  # 0/0 = NaN: no target in this bucket
            out[f"eval/acc_bucket_{name}"] = hit_K[k] / n_K[k]
        return out
