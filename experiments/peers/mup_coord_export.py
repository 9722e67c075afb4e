"""embjax's half of the coordinate check against microsoft/mup (docs/mup.md, "Against mup itself").

Writes, for experiments/configs/coord_check.yaml at widths 32 … 512 and the given seeds (default 0, 1, 2):
- batches_seed{s}.npy: the exact training batches of seed s (steps × batch × seq_len + 1, int32), drawn as the
  train loop draws them (Program.batch on the live state);
- init/w{d}_s{s}.npz: embjax's initial parameters (the same in SP and μP), for the replica to load;
- embjax_coords.json: embjax's own coordinates (coord/*) at every step, SP and μP.

    python -m experiments.peers.mup_coord_export --out=/tmp/mupref [--steps=20] [--seeds 0 1 2 3 4 5 6 7]

Then run experiments/peers/mup_coord.py with a Python that has torch and mup (a separate virtual environment).
"""

import argparse
import json
import os

import jax
import numpy as np

from embjax.config import load_config, replace
from embjax.data.corpus import make_corpus
from embjax.train.step import Program, hparams

WIDTHS = (32, 64, 128, 256, 512)


def flat_params(params) -> dict[str, np.ndarray]:
    """{'blocks/0/qkv/kernel': array, ...}: the parameter tree's leaves by slash-joined path."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): np.asarray(x) for path, x in leaves}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = ap.parse_args()
    os.makedirs(os.path.join(a.out, "init"), exist_ok=True)
    base = load_config("experiments/configs/coord_check.yaml", {"steps": a.steps})
    corpus, coords = make_corpus(base), {}
    for par in ("sp", "mup"):
        for d in WIDTHS:
            cfg = replace(base, **{"model.parametrization": par, "model.embed_dim": d})
            P = Program(cfg, corpus)
            step, batch = jax.jit(P.step), jax.jit(P.batch)
            for s in a.seeds:
                state, rows, toks = P.init(s, hparams(cfg)), [], []
                if par == "sp":
                    np.savez(os.path.join(a.out, "init", f"w{d}_s{s}.npz"), **flat_params(state["params"]))
                for _ in range(a.steps):
                    tok = batch(corpus.tables, state)
                    toks.append(np.asarray(tok, np.int32))
                    state, m = step(state, tok)
                    rows.append({k: float(v) for k, v in m.items() if k.startswith("coord/") or k == "train/loss"})
                if par == "sp" and d == WIDTHS[0]:  # the batches depend on the seed alone
                    np.save(os.path.join(a.out, f"batches_seed{s}.npy"), np.stack(toks))
                coords[f"{par}/{d}/{s}"] = rows
                print(par, d, s, f"loss {rows[0]['train/loss']:.4f} -> {rows[-1]['train/loss']:.4f}", flush=True)
    with open(os.path.join(a.out, "embjax_coords.json"), "w") as f:
        json.dump(coords, f)


if __name__ == "__main__":
    main()
