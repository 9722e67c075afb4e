"""Plots and report.md for a run directory or a sweep directory (`python -m experiments.report DIR`).

Plots (PNG, beside report.md): final eval loss against σ per width d (tied and untied lines), row-norm
growth over steps, mean cosine over steps by tying, and the coordinate check (mean |coordinate| of
embedding outputs, hidden states and logits against d over the first steps, in the style of muP).
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

import numpy as np

from .embedding import init_std_for
from .sinks import read_jsonl


def _load_runs(root: str) -> list[dict[str, Any]]:
    """Every run under root (root itself if it is one): its config, summary and metrics rows."""
    import yaml
    dirs = [root] if os.path.exists(os.path.join(root, "config.yaml")) else sorted(
        os.path.join(root, d) for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "config.yaml")))
    runs = []
    for d in dirs:
        cfg = yaml.safe_load(open(os.path.join(d, "config.yaml")))
        summary_path = os.path.join(d, "summary.json")
        summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {"status": "not run"}
        rows = read_jsonl(os.path.join(d, "metrics.jsonl")) if os.path.exists(os.path.join(d, "metrics.jsonl")) else []
        runs.append({"dir": d, "name": os.path.basename(d), "cfg": cfg, "summary": summary, "rows": rows})
    return runs


def _get(cfg: dict, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])) if pts else (np.array([]), np.array([]))


def _sigma_label(cfg: dict) -> str:
    init, std = _get(cfg, "embedding.init"), _get(cfg, "embedding.init_std")
    return f"{init} σ={std:g}" if init != "normal" else f"σ={std:g}"


def plot_loss_vs_sigma(runs, path) -> bool:
    import matplotlib.pyplot as plt
    pts = defaultdict(list)
    for r in runs:
        loss = r["summary"].get("eval/loss")
        if isinstance(loss, (int, float)) and np.isfinite(loss) and _get(r["cfg"], "embedding.init") != "pretrained":
            cfg = r["cfg"]
            tie = "tied" if _get(cfg, "model.tie_embeddings") else "untied"
            # plot the std the table actually got (scaled_normal divides σ by √d; xavier ignores σ)
            std = init_std_for(_get(cfg, "embedding.init"), _get(cfg, "embedding.init_std"),
                               _get(cfg, "data.vocab_size"), _get(cfg, "model.embed_dim"))
            pts[(_get(cfg, "model.embed_dim"), tie)].append((std, loss))
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    dims = sorted({d for d, _ in pts})
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(dims)))
    for (d, tie), xy in sorted(pts.items()):
        xy = sorted(xy)
        by_x = defaultdict(list)
        for x, y in xy:
            by_x[x].append(y)
        xs = np.array(sorted(by_x))
        ys = np.array([np.mean(by_x[x]) for x in xs])
        ax.plot(xs, ys, "o-" if tie == "tied" else "s--", color=colors[dims.index(d)], label=f"d={d} {tie}")
    ax.set_xscale("log")
    ax.set_xlabel("effective init std of E (σ)")
    ax.set_ylabel("final eval loss (nats, mean over seeds)")
    ax.set_title("Final eval loss against init scale")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_over_steps(runs, key, ylabel, title, path, color_by) -> bool:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    labels = sorted({color_by(r["cfg"]) for r in runs})
    colors = dict(zip(labels, plt.cm.tab10(np.arange(len(labels)) % 10)))
    seen = set()
    for r in runs:
        x, y = _series(r["rows"], key)
        if not len(x):
            continue
        lab = color_by(r["cfg"])
        ax.plot(x, y, color=colors[lab], alpha=0.7, label=None if lab in seen else lab)
        seen.add(lab)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_coord_check(runs, path, max_steps: int = 5) -> bool:
    """mean |x| of embedding outputs, hidden states and logits against d, a line per early logged step."""
    import matplotlib.pyplot as plt
    keys = ("coord/embed_out", "coord/hidden", "coord/logits")
    by = defaultdict(lambda: defaultdict(list))  # key -> step -> [(d, value)]
    for r in runs:
        d = _get(r["cfg"], "model.embed_dim")
        for row in r["rows"]:
            for k in keys:
                if isinstance(row.get(k), (int, float)):
                    by[k][row["step"]].append((d, row[k]))
    dims = {d for k in by for s in by[k] for d, _ in by[k][s]}
    if len(dims) < 2:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, k in zip(axes, keys):
        steps = sorted(by[k])[:max_steps]
        colors = plt.cm.plasma(np.linspace(0, 0.85, max(len(steps), 1)))
        for c, s in zip(colors, steps):
            agg = defaultdict(list)
            for d, v in by[k][s]:
                agg[d].append(v)
            xs = sorted(agg)
            ax.plot(xs, [np.mean(agg[x]) for x in xs], "o-", color=c, label=f"step {s}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width d")
        ax.set_title(k.split("/")[1] + " mean |x|")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Coordinate check: flat lines mean activations stay O(1) as d grows")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def make_report(root: str, wandb_group: str | None = None) -> str:
    """Write the plots and report.md into root; returns report.md's path."""
    import matplotlib
    matplotlib.use("Agg")
    runs = _load_runs(root)
    if not runs:
        raise ValueError(f"{root}: no run directories (config.yaml) found")
    plots = {}
    tie = lambda c: "tied" if _get(c, "model.tie_embeddings") else "untied"
    specs = [
        ("loss_vs_sigma.png", lambda p: plot_loss_vs_sigma(runs, p), "Final eval loss against σ"),
        ("norm_growth.png", lambda p: plot_over_steps(runs, "emb/norm_growth", "mean ‖eᵢ‖ / step 0",
                                                      "Row-norm growth", p, _sigma_label), "Row-norm growth"),
        ("cos_mean.png", lambda p: plot_over_steps(runs, "emb/cos_mean", "mean cos(eᵢ, eⱼ)",
                                                   "Mean cosine by tying", p, tie), "Mean cosine over steps"),
        ("eval_loss.png", lambda p: plot_over_steps(runs, "eval/loss", "eval loss (nats)", "Eval loss", p,
                                                    lambda c: f"d={_get(c, 'model.embed_dim')} {tie(c)}"),
         "Eval loss over steps"),
        ("coord_check.png", lambda p: plot_coord_check(runs, p), "Coordinate check"),
    ]
    for fname, fn, title in specs:
        if fn(os.path.join(root, fname)):
            plots[fname] = title
    lines = [f"# Report: {os.path.basename(os.path.abspath(root))}", ""]
    s0 = runs[0]["summary"]
    if "data/unigram_entropy" in s0:
        lines += [f"Corpus: unigram entropy {s0['data/unigram_entropy']:.4f} nats"
                  + (f", entropy rate {s0['data/entropy_rate']:.4f} nats (the loss floor)."
                     if "data/entropy_rate" in s0 else "."), ""]
    cols = ["eval/loss", "emb/norm_growth", "emb/cos_mean", "emb/isotropy", "emb/eff_rank", "emb/knn_class_purity"]
    lines += ["| run | d | tied | init | σ | lr | seed | status | " + " | ".join(cols) + " |",
              "|" + "---|" * (8 + len(cols))]
    for r in runs:
        c, s = r["cfg"], r["summary"]
        vals = [f"{s[k]:.4g}" if isinstance(s.get(k), (int, float)) else "" for k in cols]
        lines.append(f"| {r['name']} | {_get(c, 'model.embed_dim')} | {_get(c, 'model.tie_embeddings')} | "
                     f"{_get(c, 'embedding.init')} | {_get(c, 'embedding.init_std'):g} | {_get(c, 'optim.lr'):g} | "
                     f"{c.get('seed')} | {s.get('status')} | " + " | ".join(vals) + " |")
    lines.append("")
    for fname, title in plots.items():
        lines += [f"## {title}", "", f"![{title}]({fname})", ""]
    path = os.path.join(root, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    if wandb_group:
        _log_plots_to_wandb(root, wandb_group, plots, runs[0]["cfg"])
    return path


def _log_plots_to_wandb(root, group, plots, cfg) -> None:
    from .sinks import WandbSink
    log = cfg.get("log", {})
    sink = WandbSink(root, {"report_for": group}, project=log.get("project", "embjax"), name=f"{group}-report",
                     mode=log.get("mode", "offline"), entity=log.get("entity"), group=group, tags=("report",),
                     init_timeout=float(log.get("init_timeout", 30)))
    sink.log_rich(0, {f"report/{os.path.splitext(f)[0]}": {"kind": "image", "path": os.path.join(root, f)}
                      for f in plots})
    sink.close("finished")
