"""Plots and report.md for a run directory or a sweep directory (`python -m experiments.report DIR`).

Plots (PNG, beside report.md): final eval loss against σ per width d (tied and untied lines), row-norm
growth over steps, mean cosine over steps by tying, and the coordinate check (mean |coordinate| of
embedding outputs, hidden states and logits against d over the first steps, in the style of muP).
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from typing import Any

import numpy as np

from ..model.embedding import init_std_for
from . import benchmark_report
from .figures import save, series
from .mup_report import coord_slope_lines, lr_transfer_lines, plot_coord_check, plot_lr_transfer
from .runs import get, load_runs
from .summary import mark_damaged


def plot_loss_vs_sigma(runs, path) -> bool:
    import matplotlib.pyplot as plt

    pts = defaultdict(list)
    for r in runs:
        loss = r["summary"].get("eval/loss")
        if isinstance(loss, (int, float)) and np.isfinite(loss) and get(r["cfg"], "embedding.init") != "pretrained":
            cfg = r["cfg"]
            tie = "tied" if get(cfg, "model.tie_embeddings") else "untied"
            # plot the std the table actually got (scaled_normal divides σ by √d; xavier ignores σ)
            std = init_std_for(
                get(cfg, "embedding.init"),
                get(cfg, "embedding.init_std"),
                get(cfg, "data.vocab_size"),
                get(cfg, "model.embed_dim"),
            )
            pts[(get(cfg, "model.embed_dim"), tie)].append((std, loss))
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
    return save(fig, path)


# which of the keys that vary across a sweep's runs a step plot shows how: colour, then line style, then
# one panel per value of the rest (seeds are replicates: drawn alike, never in the legend)
_NOT_SHOWN = {"name", "out_dir", "seed", "config"}
_COLOUR_FIRST = ("embedding.init_std", "optim.lr", "model.parametrization", "embedding.kind")
_STYLE_FIRST = ("model.tie_embeddings",)
_STYLES = ("-", "--", ":", "-.")


def varied_keys(runs) -> list[str]:
    """The config keys whose values differ between the runs (identity keys and the seed left out)."""
    from ..config import flatten

    flat = [flatten(r["cfg"]) for r in runs]
    keys = sorted({k for f in flat for k in f} - _NOT_SHOWN)
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1]


def encodings(keys: list[str]) -> tuple[str | None, str | None, list[str]]:
    """(colour key, line-style key, panel keys) of a step plot for the varied keys."""
    colour = next((k for k in _COLOUR_FIRST if k in keys), keys[0] if keys else None)
    rest = [k for k in keys if k != colour]
    style = next((k for k in _STYLE_FIRST if k in rest), rest[0] if rest else None)
    return colour, style, [k for k in rest if k != style]


def _values_of(runs, key: str | None) -> list[Any]:
    """A key's distinct values across the runs: numbers in order, then the rest by their text."""
    vals = {json.dumps(get(r["cfg"], key) if key else None, sort_keys=True) for r in runs}
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    return sorted((json.loads(v) for v in vals), key=lambda v: (not num(v), v if num(v) else json.dumps(v)))


def plot_over_steps(runs, key, ylabel, title, path) -> bool:
    """`key` against the step for every run; colour, line style and panels tell apart every key the runs vary
    (e.g. colour σ, line style tying, a panel per d), and the legend names each value."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from ..sweep import value_label

    runs = [r for r in runs if len(series(r["rows"], key)[0])]
    if not runs:
        return False
    colour, style, panel_keys = encodings(varied_keys(runs))
    of = lambda r, k: json.dumps(get(r["cfg"], k) if k else None, sort_keys=True)
    colours = {json.dumps(v, sort_keys=True): plt.cm.tab10(i % 10) for i, v in enumerate(_values_of(runs, colour))}
    styles = {json.dumps(v, sort_keys=True): _STYLES[i % 4] for i, v in enumerate(_values_of(runs, style))}
    panels = sorted({tuple(of(r, k) for k in panel_keys) for r in runs})
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels) + 2.6, 4.2), sharey=True, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for r in (r for r in runs if tuple(of(r, k) for k in panel_keys) == panel):
            ax.plot(*series(r["rows"], key), color=colours[of(r, colour)], ls=styles[of(r, style)], alpha=0.75)
        ax.set_title(" ".join(value_label(k, json.loads(v)) for k, v in zip(panel_keys, panel)) or title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    handles = []
    if colour:
        handles += [Line2D([], [], color=c, label=value_label(colour, json.loads(v))) for v, c in colours.items()]
    if style:
        handles += [
            Line2D([], [], color="0.3", ls=s, label=value_label(style, json.loads(v))) for v, s in styles.items()
        ]
    if handles:
        axes[0][-1].legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if panel_keys:
        fig.suptitle(title)
    return save(fig, path)


BUCKETS = ("top1", "top1_10", "rest", "unseen")
BUCKET_NAMES = {"top1": "top 1 %", "top1_10": "1-10 %", "rest": "rest", "unseen": "unseen"}


def _layer_label(cfg: dict) -> str:
    power = get(cfg, "optim.embed_decay_freq_power") or 0.0
    return f"{get(cfg, 'embedding.kind') or 'table'} {'tied' if get(cfg, 'model.tie_embeddings') else 'untied'}" + (
        f" decay∝f^-{power:g}" if power else ""
    )


def _bucket_groups(runs) -> dict[str, dict[str, list[float]]]:
    """Final eval loss per frequency bucket, by input layer (kind, tying, frequency-scaled decay), over seeds;
    empty unless the runs differ in their input layer and report bucket losses."""
    labels = {_layer_label(r["cfg"]) for r in runs}
    if len(labels) < 2 or not any("eval/loss_bucket_top1" in r["summary"] for r in runs):
        return {}
    out: dict[str, dict[str, list[float]]] = {}
    for r in sorted(runs, key=lambda r: _layer_label(r["cfg"])):
        if r["summary"].get("status") != "finished":
            continue
        g = out.setdefault(_layer_label(r["cfg"]), {k: [] for k in (*BUCKETS, "all", "params")})
        for b in BUCKETS:
            v = r["summary"].get(f"eval/loss_bucket_{b}")
            if isinstance(v, (int, float)) and np.isfinite(v):
                g[b].append(float(v))
        g["all"].append(float(r["summary"].get("eval/loss", np.nan)))
        g["params"].append(float(r["summary"].get("embedding/params", np.nan)))
    return out


def plot_loss_by_bucket(runs, path) -> bool:
    """A panel per frequency bucket (each its own scale): final eval loss of that bucket's targets, one bar per
    input layer (mean ± sd over seeds)."""
    import matplotlib.pyplot as plt

    groups = _bucket_groups(runs)
    buckets = [b for b in BUCKETS if any(g[b] for g in groups.values())]
    if not groups or not buckets:
        return False
    fig, axes = plt.subplots(1, len(buckets), figsize=(min(16.0, 3.0 + 2.6 * len(buckets)), 4.2), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, b in zip(axes[0], buckets):
        labels = [label for label, g in groups.items() if g[b]]
        means = [np.mean(groups[label][b]) for label in labels]
        ax.bar(
            range(len(labels)),
            means,
            yerr=[np.std(groups[label][b]) for label in labels],
            capsize=2,
            color=[colors[list(groups).index(label) % len(colors)] for label in labels],
        )
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        lo, hi = min(means), max(means)
        ax.set_ylim(lo - 0.3 * (hi - lo + 0.05), hi + 0.3 * (hi - lo + 0.05))  # the differences, not the bulk
        ax.set_title(BUCKET_NAMES[b], fontsize=9)
    axes[0][0].set_ylabel("final eval loss (nats)")
    fig.suptitle("Eval loss by the target token's frequency bucket")
    return save(fig, path)


def bucket_lines(runs) -> list[str]:
    """report.md's table under the bucket plot: mean ± sd over seeds (n seeds) per input layer."""
    groups = _bucket_groups(runs)
    if not groups:
        return []

    def fmt(xs: list[float], n: int) -> str:
        """mean ± sd; a bucket some seeds had no eval target in says how many seeds it averages."""
        if not xs:
            return "-"
        text = f"{np.mean(xs):.3f} ± {np.std(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"
        return text if len(xs) == n else f"{text} ({len(xs)} of {n} seeds)"

    lines = [
        "| input layer | embedding params | " + " | ".join(BUCKET_NAMES[b] for b in BUCKETS) + " | all | n |",
        "|" + "---|" * (len(BUCKETS) + 4),
    ]
    for label, g in groups.items():
        n = len(g["all"])
        lines.append(
            f"| {label} | {np.mean(g['params']):,.0f} | "
            + " | ".join(fmt(g[b], n) for b in BUCKETS)
            + f" | {fmt(g['all'], n)} | {n} |"
        )
    return lines + ["", "Seeds are the members that differ only in seed; mean ± population sd over them.", ""]


def make_report(root: str, wandb_group: str | None = None, baseline: str | None = None) -> str:
    """Write the plots and report.md into root; returns report.md's path. `baseline`: a baseline run directory
    (experiments.baseline), drawn as a reference line in the benchmarks' plot and added as a row of summary.csv."""
    import matplotlib

    matplotlib.use("Agg")
    runs = load_runs(root)
    if not runs:
        raise ValueError(f"{root}: no run directories (config.yaml) found")
    mark_damaged(root, runs)
    base = benchmark_report.read_baseline(baseline)
    if base is not None:
        benchmark_report.add_baseline_row(root, base)
    plots = _plots(root, runs)
    if benchmark_report.plot(runs, os.path.join(root, "benchmarks.png"), base):
        plots["benchmarks.png"] = "Word similarity and analogies"
    lines = [f"# Report: {os.path.basename(os.path.abspath(root))}", ""] + _summary_lines(runs)
    extra = {
        "coord_check.png": coord_slope_lines(runs),
        "lr_transfer.png": lr_transfer_lines(runs),
        "loss_by_bucket.png": bucket_lines(runs),
        "benchmarks.png": benchmark_report.lines(runs, base),
    }
    for fname, title in plots.items():
        lines += [f"## {title}", "", f"![{title}]({fname})", "", *extra.get(fname, [])]
    page = _space_page(root)
    if page:
        lines += [
            "## The embedding space over training",
            "",
            f"[{os.path.basename(page)}]({os.path.basename(page)}): the members side by side, frame by frame "
            "(open it in a browser; it works offline).",
            "",
        ]
    path = os.path.join(root, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    if wandb_group:
        _log_plots_to_wandb(root, wandb_group, plots, runs[0]["cfg"], page)
    return path


def _plots(root: str, runs: list[dict]) -> dict[str, str]:
    """Every plot the runs allow, written into root: {file name: title}."""
    plots = {}
    specs = [
        ("loss_vs_sigma.png", lambda p: plot_loss_vs_sigma(runs, p), "Final eval loss against σ"),
        (
            "norm_growth.png",
            lambda p: plot_over_steps(runs, "emb/norm_growth", "mean ‖eᵢ‖ / step 0", "Row-norm growth", p),
            "Row-norm growth",
        ),
        (
            "cos_mean.png",
            lambda p: plot_over_steps(runs, "emb/cos_mean", "mean cos(eᵢ, eⱼ)", "Mean cosine", p),
            "Mean cosine over steps",
        ),
        (
            "eval_loss.png",
            lambda p: plot_over_steps(runs, "eval/loss", "eval loss (nats)", "Eval loss", p),
            "Eval loss over steps",
        ),
        ("coord_check.png", lambda p: plot_coord_check(runs, p), "Coordinate check"),
        ("lr_transfer.png", lambda p: plot_lr_transfer(runs, p), "Learning-rate transfer"),
        ("loss_by_bucket.png", lambda p: plot_loss_by_bucket(runs, p), "Eval loss by frequency bucket"),
    ]
    for fname, fn, title in specs:
        if fn(os.path.join(root, fname)):
            plots[fname] = title
    return plots


def _summary_lines(runs: list[dict]) -> list[str]:
    """The corpus's entropies and a table row per run."""
    lines = []
    s0 = runs[0]["summary"]
    if "data/unigram_entropy" in s0:
        lines += [
            f"Corpus: unigram entropy {s0['data/unigram_entropy']:.4f} nats"
            + (
                f", entropy rate {s0['data/entropy_rate']:.4f} nats (the loss floor)."
                if "data/entropy_rate" in s0
                else "."
            ),
            "",
        ]
    cols = ["eval/loss", "emb/norm_growth", "emb/cos_mean", "emb/isotropy", "emb/eff_rank", "emb/knn_class_purity"]
    lines += [
        "| run | d | tied | init | σ | lr | seed | status | " + " | ".join(cols) + " |",
        "|" + "---|" * (8 + len(cols)),
    ]
    for r in runs:
        c, s = r["cfg"], r["summary"]
        vals = [f"{s[k]:.4g}" if isinstance(s.get(k), (int, float)) else "" for k in cols]
        lines.append(
            f"| {r['name']} | {get(c, 'model.embed_dim')} | {get(c, 'model.tie_embeddings')} | "
            f"{get(c, 'embedding.init')} | {get(c, 'embedding.init_std'):g} | {get(c, 'optim.lr'):g} | "
            f"{c.get('seed')} | {s.get('status')} | " + " | ".join(vals) + " |"
        )
    lines.append("")
    return lines


def _space_page(root: str) -> str | None:
    """embedding_space.html for the run or sweep (None when no run has snapshots)."""

    from .viewer import NoSnapshots, write_page

    try:
        return write_page(root)
    except NoSnapshots:
        return None
    except Exception as err:  # noqa: BLE001 - the report stands without the page; say what was lost
        print(f"warning: {root}: embedding_space.html not written ({type(err).__name__}: {err})", file=sys.stderr)
        return None


def _log_plots_to_wandb(root, group, plots, cfg, page=None) -> None:
    from .sinks import WandbSink

    log = cfg.get("log", {})
    sink = WandbSink(
        root,
        {"report_for": group},
        project=log.get("project", "embjax"),
        name=f"{group}-report",
        mode=log.get("mode", "offline"),
        entity=log.get("entity"),
        group=group,
        tags=("report",),
        init_timeout=float(log.get("init_timeout", 30)),
    )
    items = {f"report/{os.path.splitext(f)[0]}": {"kind": "image", "path": os.path.join(root, f)} for f in plots}
    if page:
        items["report/embedding_space"] = {"kind": "html", "path": page}
    sink.log_rich(0, items)
    sink.close("finished")
