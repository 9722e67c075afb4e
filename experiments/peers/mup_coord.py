"""The reference half of the coordinate check against microsoft/mup (docs/mup.md, "Against mup itself").

A PyTorch replica of experiments/configs/coord_check.yaml's transformer built on `mup` (MuSharedReadout for the
tied table, set_base_shapes with base d 32 and delta d 64, MuAdam), trained and recorded by mup's own
`coord_check._get_coord_data` on the batches experiments/peers/mup_coord_export.py wrote. Needs torch and mup,
which embjax does not install: run it from a separate virtual environment, single-threaded.

    python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch mup numpy pandas
    /tmp/torchvenv/bin/python experiments/peers/mup_coord.py --param=mup --data_dir=/tmp/mupref --out=mup.json
    /tmp/torchvenv/bin/python experiments/peers/mup_coord.py --param=mup --init=embjax ... (embjax's init)
    /tmp/torchvenv/bin/python experiments/peers/mup_coord.py --slopes mup.json [sp.json ...]
    /tmp/torchvenv/bin/python experiments/peers/mup_coord.py --compare same.json --data_dir=/tmp/mupref

Model (as embjax.model.models.TransformerLM): E and learned positions N(0, 0.02²); 2 pre-LN blocks (LayerNorm eps
1e-5, fused QKV with biases, 4 heads, exact-GELU MLP × 4); final LayerNorm; tied readout. Kernels truncated
normal with variance 1/fan_in (jax's lecun_normal), biases 0, the query third of the fused QKV at zero (SP and
μP). μP: logits (h/m)·Eᵀ, scores q·k·attn_mult/K with attn_mult = √K₀ (= SP's 1/√K at d₀ = 32),
rescale_params=False (embjax does not rescale the tied table; mup issue #55). SP: logits h·Eᵀ, scores q·k/√K,
torch.optim.Adam. Adam lr 1e-2, β (0.9, 0.95), eps 1e-8, no decay, no clipping.
"""

import argparse
import json
import math
import time

import numpy as np

V, H, L, D0 = 512, 4, 2, 32
STEPS = (1, 2, 3, 5, 8, 12, 16, 20)
COLUMNS = {"attn0": "blocks.0.score", "attn1": "blocks.1.score", "block0": "blocks.0", "block1": "blocks.1"}
COLUMNS |= {"logits": "logits", "embed": "tok", "hidden": "lnf"}
COLUMNS |= {f"{x}{i}": f"blocks.{i}.{x}" for i in range(L) for x in ("q", "k", "cos")}
EMBJAX = {"attn0": "coord/attn_logits0", "attn1": "coord/attn_logits1", "block0": "coord/block0"}
EMBJAX |= {"block1": "coord/block1", "logits": "coord/logits", "embed": "coord/embed_out", "hidden": "coord/hidden"}


def build_model_classes():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from mup import MuSharedReadout

    class Block(nn.Module):
        def __init__(self, d, mup):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
            # identities whose outputs mup's hooks record: scores over the causal pairs, |q|, |k|, cos(q, k)
            self.score, self.q, self.k, self.cos = nn.Identity(), nn.Identity(), nn.Identity(), nn.Identity()
            K = d // H
            self.scale = math.sqrt(D0 // H) / K if mup else 1.0 / math.sqrt(K)

        def forward(self, x):
            B, T, D = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, H, D // H).unbind(2)
            s = torch.einsum("bqhk,bshk->bhqs", q, k) * self.scale
            allowed = torch.ones(T, T, dtype=torch.bool).tril()
            self.score(s[:, :, allowed])
            self.q(q), self.k(k)
            with torch.no_grad():
                c = torch.einsum("bqhk,bshk->bhqs", F.normalize(q, dim=-1, eps=1e-30), F.normalize(k, dim=-1))
                self.cos(c[:, :, allowed])
            p = s.masked_fill(~allowed, float("-inf")).softmax(-1)
            x = x + self.proj(torch.einsum("bhqs,bshk->bqhk", p, v).reshape(B, T, D))
            return x + self.out(F.gelu(self.fc(self.ln2(x))))

    class LM(nn.Module):
        def __init__(self, d, T, mup):
            super().__init__()
            self.tok, self.pos = nn.Embedding(V, d), nn.Parameter(torch.zeros(T, d))
            self.blocks = nn.ModuleList(Block(d, mup) for _ in range(L))
            self.lnf, self.logits = nn.LayerNorm(d, eps=1e-5), nn.Identity()
            self.readout = MuSharedReadout(self.tok.weight, bias=False) if mup else None
            with torch.no_grad():
                nn.init.normal_(self.tok.weight, std=0.02)
                nn.init.normal_(self.pos, std=0.02)
                for b in self.blocks:
                    for lin in (b.qkv, b.proj, b.fc, b.out):
                        sd = lin.in_features**-0.5 / 0.87962566103423978  # lecun_normal: truncated at ±2 sd
                        nn.init.trunc_normal_(lin.weight, std=sd, a=-2 * sd, b=2 * sd)
                        nn.init.zeros_(lin.bias)
                    b.qkv.weight[: b.qkv.in_features].zero_()  # zero queries

        def forward(self, idx):
            x = self.tok(idx) + self.pos[: idx.shape[1]]
            for b in self.blocks:
                x = b(x)
            h = self.lnf(x)
            return self.logits(h @ self.tok.weight.T if self.readout is None else self.readout(h))

    return LM


def load_embjax(model, path):
    """Copy embjax's initial parameters (mup_coord_export.py's init/w{d}_s{s}.npz) into the replica."""
    import torch

    z = np.load(path)
    with torch.no_grad():
        model.tok.weight.copy_(torch.from_numpy(z["embed/embedding"]))
        model.pos.copy_(torch.from_numpy(z["pos"])[: model.pos.shape[0]])
        for i, b in enumerate(model.blocks):
            for n in ("qkv", "proj", "fc", "out"):
                getattr(b, n).weight.copy_(torch.from_numpy(z[f"blocks/{i}/{n}/kernel"]).T)
                getattr(b, n).bias.copy_(torch.from_numpy(z[f"blocks/{i}/{n}/bias"]))
            for n in ("ln1", "ln2"):
                getattr(b, n).weight.copy_(torch.from_numpy(z[f"blocks/{i}/{n}/scale"]))
                getattr(b, n).bias.copy_(torch.from_numpy(z[f"blocks/{i}/{n}/bias"]))
        model.lnf.weight.copy_(torch.from_numpy(z["ln_f/scale"]))
        model.lnf.bias.copy_(torch.from_numpy(z["ln_f/bias"]))


def run(a) -> None:
    import torch
    from mup import MuAdam, set_base_shapes
    from mup.coord_check import _get_coord_data

    torch.set_num_threads(1)
    LM, mup = build_model_classes(), a.param == "mup"
    opt = MuAdam if mup else torch.optim.Adam

    def make(d, seed):
        def build():
            torch.manual_seed(1000 * seed + d)
            m = LM(d, a.seq, mup)
            if a.init == "embjax":
                load_embjax(m, f"{a.data_dir}/init/w{d}_s{seed}.npz")
            if mup:
                set_base_shapes(m, LM(D0, a.seq, True), delta=LM(2 * D0, a.seq, True), rescale_params=False)
            return m

        return build

    rows, t0 = [], time.time()
    for s in a.seeds:
        bt = np.load(f"{a.data_dir}/batches_seed{s}.npy")[: a.steps, : a.batch, : a.seq + 1]
        loader = [(torch.from_numpy(b[:, :-1]).long(), torch.from_numpy(b[:, 1:]).reshape(-1).long()) for b in bt]
        df = _get_coord_data(
            {d: make(d, s) for d in a.widths},
            loader,
            lambda m: opt(m.parameters(), lr=a.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0),
            nsteps=a.steps,
            flatten_output=True,
            lossfn="xent",
            filter_module_by_name=lambda n: n in set(COLUMNS.values()),
            fix_data=False,
            cuda=False,
            nseeds=1,
            show_progress=False,
        )
        df["seed"] = s
        rows += df.to_dict("records")
        with open(a.out, "w") as f:  # after every seed: a failure later keeps what was done
            json.dump({"args": vars(a), "rows": rows}, f)
        print(f"seed {s} done {time.time() - t0:.0f} s", flush=True)


def _slope(widths: list[int], ys: list[float]) -> float | None:
    """The least-squares slope of log y against log width; None when a value is missing or not positive."""
    return float(np.polyfit(np.log(widths), np.log(ys), 1)[0]) if np.all(np.isfinite(ys)) and min(ys) > 0 else None


def slopes(paths: list[str]) -> None:
    """Per file and step: the slope against width of each seed's mean |x|, as the mean over seeds ± its standard
    error [the seeds' min, max] ("zero": every value exactly 0; "–": not recorded)."""
    for path in paths:
        cells: dict[tuple, float] = {}
        for r in json.load(open(path))["rows"]:
            cells[(r["module"], r["t"], r["width"], r["seed"])] = r["l1"]
        widths, seeds = sorted({k[2] for k in cells}), sorted({k[3] for k in cells})
        print(f"\n{path} (widths {widths}, seeds {seeds})\n| step | " + " | ".join(COLUMNS) + " |")
        print("|---|" + "---|" * len(COLUMNS))
        for t in STEPS:
            out = []
            for module in COLUMNS.values():
                ys = [[cells.get((module, t, w, s), np.nan) for w in widths] for s in seeds]
                per_seed = [v for y in ys if (v := _slope(widths, y)) is not None]
                if np.all(np.isnan(ys)):
                    out.append("–")
                elif np.nanmax(np.abs(ys)) == 0:
                    out.append("zero")
                elif not per_seed:
                    out.append("–")
                else:
                    m, se = (
                        np.mean(per_seed),
                        np.std(per_seed, ddof=1) / np.sqrt(len(per_seed)) if len(per_seed) > 1 else 0,
                    )
                    out.append(f"{m:+.2f} ± {se:.2f} [{min(per_seed):+.2f}, {max(per_seed):+.2f}]")
            print(f"| {t} | " + " | ".join(out) + " |")


def compare(path: str, data_dir: str) -> None:
    """The largest relative difference between the replica's coordinates (a run with --init=embjax) and embjax's
    own (mup_coord_export.py's embjax_coords.json), over every recorded width, seed, step and coordinate."""
    run = json.load(open(path))
    param = run["args"]["param"]
    ours = json.load(open(f"{data_dir}/embjax_coords.json"))
    worst, n = 0.0, 0
    for r in run["rows"]:
        name = next((c for c, m in COLUMNS.items() if m == r["module"] and c in EMBJAX), None)
        key = f"{param}/{r['width']}/{r['seed']}"
        if name is None or key not in ours or r["t"] > len(ours[key]):
            continue
        want = ours[key][r["t"] - 1][EMBJAX[name]]
        if want != 0:
            worst, n = max(worst, abs(r["l1"] - want) / abs(want)), n + 1
    print(f"{path}: {n} coordinates compared with embjax's; largest relative difference {worst:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slopes", nargs="+", help="print the slope tables of these output files, and stop")
    ap.add_argument("--compare", help="compare this output file (made with --init=embjax) with embjax's, and stop")
    ap.add_argument("--param", choices=["mup", "sp"], default="mup")
    ap.add_argument("--init", choices=["torch", "embjax"], default="torch")
    ap.add_argument("--data_dir", default="/tmp/mupref")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--out", default="mup_coord.json")
    a = ap.parse_args()
    if a.slopes:
        slopes(a.slopes)
    elif a.compare:
        compare(a.compare, a.data_dir)
    else:
        run(a)


if __name__ == "__main__":
    main()
