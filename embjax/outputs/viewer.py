"""The embedding space over training as one self-contained, offline HTML page (`embedding_space.html`).

`write_page(dir)` reads a run's snapshots (`embjax.outputs.snapshots`), tokens.tsv, config.yaml and
metrics.jsonl, or those of a sweep's members, and writes a page that needs no server and no network:
Plotly's own JavaScript bundle is inlined, the data travels as base64 typed arrays, and a short
script (`viewer.js`) drives the frames. What the page computes here, in NumPy:

- the projection: PCA of the final frame (centred on its mean), applied to every frame, so the axes
  never flip or jump; the first three components (the 3-D view uses the third);
- each row's norm and its 5 nearest neighbours by cosine among the rows kept, at every frame;
- colours by planted class, frequency bucket (the top 1 %, the next 9 %, the rest, unseen) or
  whether the row has received a gradient yet; marker size grows with log frequency;
- the curves beside it (train/eval loss, norm growth, mean cosine) from metrics.jsonl;
- with `highlight` (benchmark names or files, as log.word_similarity / log.analogy take them): the benchmark's
  words among the rows shown, a colour mode of their own, and for a similarity set each word's benchmark
  partners with their cosine at every frame in its hover, so a reader sees whether "car" sits by "automobile".
"""

from __future__ import annotations

import base64
import fnmatch
import html
import json
import os
import sys
from typing import Any

import numpy as np

from .. import config as C
from ..analysis.metrics import frequency_bucket_of
from ..config import read_run_config
from ..sweep import member_label
from . import snapshots
from .sinks import write_atomic

PAGE = "embedding_space.html"
MAX_MEMBERS = 16  # a sweep page shows at most this many members side by side
NEIGHBOURS = 5
CURVES = ("train/loss", "eval/loss", "emb/norm_growth", "emb/cos_mean")


def _b64(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def _is_run(path: str) -> bool:
    return os.path.exists(os.path.join(path, "config.yaml"))


class NoSnapshots(ValueError):
    """The directory has no run with snapshots to show."""


def run_dirs(path: str, members: list[str] | None = None) -> tuple[list[str], int]:
    """The runs a page shows: the run itself, or the sweep's members that have snapshots (those whose names
    match one of `members`, as names or glob patterns), at most MAX_MEMBERS; and how many were eligible."""
    if _is_run(path):
        if members:
            raise ValueError(
                f"--members: got {members!r} for the run directory {path!r}; allowed: --members with a sweep directory"
            )
        if not snapshots.frame_steps(path):
            raise NoSnapshots(
                f"{path}: no embedding snapshots (snapshots/); allowed: a run trained with "
                "log.snapshot_every > 0 (the default)"
            )
        return [path], 1
    names = sorted(n for n in os.listdir(path) if _is_run(os.path.join(path, n))) if os.path.isdir(path) else []
    with_frames = [n for n in names if snapshots.frame_steps(os.path.join(path, n))]
    chosen = [n for n in with_frames if members is None or any(fnmatch.fnmatchcase(n, m) for m in members)]
    if not chosen:
        raise NoSnapshots(
            f"{path}: no run directory with embedding snapshots"
            + (f" among the members {members}" if members else "")
            + f"; allowed: a run or a sweep directory ({len(names)} run(s) here, "
            f"{len(with_frames)} with snapshots: {', '.join(with_frames[:8]) or 'none'})"
        )
    return [os.path.join(path, n) for n in chosen[:MAX_MEMBERS]], len(chosen)


def read_tokens(run_dir: str) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """tokens.tsv: token strings, counts and (planted) classes, indexed by id."""
    tokens, counts, labels = [], [], []
    with open(os.path.join(run_dir, "tokens.tsv"), encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            cols = line.rstrip("\n").split("\t")
            tokens.append(cols[1])
            counts.append(float(cols[2]))
            if "class" in header:
                labels.append(int(cols[3]))
    return tokens, np.asarray(counts), np.asarray(labels) if labels else None


def projection(final: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(mean, d×k basis): PCA of the final frame's finite rows, each component's sign fixed so that its largest
    coordinate is positive; zero columns where d < k."""
    X = final.astype(np.float64)
    X = X[np.isfinite(X).all(1)]
    if len(X) == 0:
        X = np.zeros((1, final.shape[1]))
    mu = X.mean(0)
    _, _, Vt = np.linalg.svd(X - mu, full_matrices=False)
    W = np.zeros((X.shape[1], k))
    W[:, : min(k, Vt.shape[0])] = Vt[:k].T
    proj = (X - mu) @ W
    signs = np.sign(proj[np.abs(proj).argmax(0), np.arange(k)])
    return mu, W * np.where(signs == 0, 1.0, signs)


def neighbours(E: np.ndarray, k: int = NEIGHBOURS, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest other rows by cosine, highest first, ties to the lower id (a zero row has cosine 0
    with every row), and those cosines: (N, k) indices and (N, k) float32. The same neighbours as
    `neighbors.nearest_neighbors` for nonzero rows (a test checks it), which verifies every probe in float64 for
    huge V; here all N ≤ 4,096 rows of every frame are probes and two decimals are shown, and one float32
    Gram chunk is 4× faster at the default run's 512 rows (3 vs 14 ms a frame)."""
    X = np.nan_to_num(E.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    n = np.linalg.norm(X, axis=1, keepdims=True)
    U = np.divide(X, n, out=np.zeros_like(X), where=n > 0)
    N = len(U)
    k = min(k, N - 1)
    m = min(N - 1, k + 16)  # candidates: a partial sort keeps the m largest, then an exact sort of those
    idx, cos = np.zeros((N, k), np.int64), np.zeros((N, k), np.float32)
    for a in range(0, N, chunk):
        G = U[a : a + chunk] @ U.T
        G[np.arange(len(G)), np.arange(a, a + len(G))] = -np.inf  # not itself
        part = np.argpartition(-G, m - 1, axis=1)[:, :m]
        vals = np.take_along_axis(G, part, 1)
        order = np.lexsort((part, -vals), axis=1)
        part, vals = np.take_along_axis(part, order, 1), np.take_along_axis(vals, order, 1)
        if m < N - 1:  # a tie at the k-th value may reach past the candidates: sort those rows fully
            for r in np.flatnonzero(vals[:, k - 1] <= vals[:, m - 1]):
                part[r, :k] = np.argsort(-G[r], kind="stable")[:k]
                vals[r, :k] = G[r, part[r, :k]]
        idx[a : a + len(G)], cos[a : a + len(G)] = part[:, :k], vals[:, :k]
    return idx, cos


def _labels(cfgs: list[dict]) -> list[str]:
    """Each member named by the config keys that differ between the members shown, as a sweep's progress bars
    name them (`d=32 σ=0.2`); a run by its name."""
    flat = [C.flatten(c) for c in cfgs]
    keys = [k for k in flat[0] if k not in ("name", "out_dir") and len({json.dumps(f.get(k)) for f in flat}) > 1]
    if len(cfgs) == 1 or not keys:
        return [c.get("name", "run") for c in cfgs]
    return [member_label(C.from_dict(c), keys) for c in cfgs]


def _curves(run_dir: str) -> dict[str, list]:
    """The curves' points from metrics.jsonl (a torn last line, as a kill leaves it, is skipped)."""
    rows = []
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    out: dict[str, list] = {}
    for key in CURVES:
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and np.isfinite(r[key])]
        out[key] = [[s for s, _ in pts], [v for _, v in pts]]
    return out


def _range(a: np.ndarray) -> list[float]:
    a = a[np.isfinite(a)]
    lo, hi = (float(a.min()), float(a.max())) if a.size else (-1.0, 1.0)
    pad = 0.05 * (hi - lo) or 1.0
    return [lo - pad, hi + pad]


def _sizes(counts: np.ndarray) -> np.ndarray:
    """Marker sizes 3…12 px, linear in log frequency between the rarest seen token and the most frequent."""
    pos = counts[counts > 0]
    if pos.size == 0 or pos.min() == pos.max():
        return np.full(len(counts), 6.0)
    lo, hi = np.log(pos.min()), np.log(pos.max())
    return np.where(counts > 0, 3.0 + 9.0 * (np.log(np.maximum(counts, pos.min())) - lo) / (hi - lo), 3.0)


def benchmark_words(names: list[str]) -> tuple[str, list[str], list[tuple[str, str]]]:
    """(label, words, word pairs) of the benchmarks named (a similarity set's pairs; an analogy set's words)."""
    from ..analysis.evals import ANALOGY_SETS, SIMILARITY_SETS, benchmark_files, read_pairs, read_questions

    words: dict[str, None] = {}
    pairs: list[tuple[str, str]] = []
    for name in names:
        if name in ANALOGY_SETS or (name not in SIMILARITY_SETS and _is_questions(name)):
            for _, path in benchmark_files(name, ANALOGY_SETS):
                words.update((w, None) for q in read_questions(path) for w in q[1:])
        else:
            for _, path in benchmark_files(name, SIMILARITY_SETS):
                got = read_pairs(path)[0]
                pairs += [(a, b) for a, b, _ in got]
                words.update((w, None) for a, b, _ in got for w in (a, b))
    return "+".join(os.path.splitext(os.path.basename(n))[0] for n in names), list(words), pairs


def _is_questions(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        return f.readline().startswith(": ")


def _highlight(tokens: list[str], rows: np.ndarray, E: np.ndarray, spec: tuple) -> dict[str, Any]:
    """Which shown rows are benchmark words (a word matches its token exactly, else lowercased), the pairs among
    them (positions in the shown rows) and each pair's cosine at every frame."""
    label, words, pairs = spec
    where = {t: k for k, t in enumerate(tokens[i] for i in rows)}
    lower = {t.lower(): k for t, k in reversed(list(where.items()))}
    pos = lambda w: where.get(w, lower.get(w.lower()))
    found = {w: pos(w) for w in words if pos(w) is not None}
    marked = np.zeros(len(rows), np.uint8)
    marked[list(found.values())] = 1
    shown = sorted({(found[a], found[b]) for a, b in pairs if a in found and b in found and found[a] != found[b]})
    P = np.asarray(shown, np.int64).reshape(-1, 2)
    U = E / np.maximum(np.linalg.norm(E, axis=2, keepdims=True), 1e-30)
    cos = np.einsum("fpd,fpd->fp", U[:, P[:, 0]], U[:, P[:, 1]]) if len(P) else np.zeros((len(E), 0))
    vocab = set(tokens) | {t.lower() for t in tokens}
    in_vocab = sum(1 for w in words if w in vocab or w.lower() in vocab)
    return {
        "label": html.escape(label, quote=False),
        "marked": _b64(marked, "u1"),
        "pairs": P.tolist(),
        "paircos": _b64(np.round(np.nan_to_num(cos) * 10000), "i2"),
        "note": f"{label}: {len(found):,} of its {len(words):,} words shown ({in_vocab:,} in the vocabulary)",
    }


def member_data(run_dir: str, cfg: dict, label: str, highlight: tuple | None = None) -> dict[str, Any]:
    """One member's frames, projected, with norms, neighbours and colours, ready for the page."""
    snap = snapshots.read(run_dir)
    tokens, counts, classes = read_tokens(run_dir)
    rows, E = snap.rows, snap.E.astype(np.float32)
    F, N, _ = E.shape
    finite = np.isfinite(E).all(2)  # float16 overflow (|x| > 65,504) or a diverged run: such rows are hidden
    mu, W = projection(E[max([f for f in range(F) if finite[f].any()], default=F - 1)])
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows project to NaN: hidden on the page
        coords = ((E - mu.astype(np.float32)) @ W.astype(np.float32)).astype(np.float32)  # (F, N, 3)
    nn = [neighbours(E[f]) for f in range(F)]
    integer = bool(np.all(counts == np.round(counts)))
    V = len(tokens)
    return {
        "name": os.path.basename(os.path.normpath(run_dir)),
        "label": html.escape(label, quote=False),
        "N": N,
        "F": F,
        "V": V,
        "hidden": int((~finite).any(0).sum()),
        "steps": snap.steps.tolist(),
        "total": int(cfg.get("steps", snap.steps[-1])),
        "ids": rows.tolist(),
        "tokens": [html.escape(tokens[i], quote=False) for i in rows],  # Plotly reads tags
        "counts": [float(counts[i]) for i in rows],
        "count_name": "count" if integer else "p",
        "classes": None if classes is None else classes[rows].tolist(),
        "bucket": frequency_bucket_of(counts)[rows].tolist(),
        "size": _sizes(counts)[rows].round(2).tolist(),
        "coords": _b64(coords, "f4"),
        "norms": _b64(np.linalg.norm(E, axis=2), "f4"),
        "nn": _b64(np.stack([i for i, _ in nn]), "u2" if N < 2**16 else "u4"),
        "nn_wide": N >= 2**16,
        "nncos": _b64(np.round(np.stack([c for _, c in nn]) * 10000), "i2"),
        "updated": _b64(snap.updates > 0, "u1"),
        "ranges": [_range(coords[..., j]) for j in range(3)],
        "rows_note": (
            f"all {V:,} rows"
            if N == V
            else f"{N:,} of {V:,} rows ({snapshots.TOP_ROWS:,} most frequent + {N - snapshots.TOP_ROWS:,} "
            "sampled with a fixed seed); neighbours among these"
        ),
        "curves": _curves(run_dir),
        "highlight": None if highlight is None else _highlight(tokens, rows, E, highlight),
    }


def page_data(dirs: list[str], eligible: int | None = None, highlight: list[str] | None = None) -> dict[str, Any]:
    cfgs = [read_run_config(os.path.join(d, "config.yaml")) for d in dirs]
    spec = benchmark_words(highlight) if highlight else None
    members = [member_data(d, c, label, spec) for d, c, label in zip(dirs, cfgs, _labels(cfgs))]
    steps = sorted({s for m in members for s in m["steps"]})
    title = members[0]["name"] if len(members) == 1 else os.path.basename(os.path.dirname(os.path.abspath(dirs[0])))
    return {"title": title, "steps": steps, "members": members, "eligible": eligible or len(members)}


def render(data: dict[str, Any]) -> str:
    """The page: Plotly's bundle, the data as JSON and viewer.js, inlined."""
    from plotly.offline import get_plotlyjs

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "viewer.js"), encoding="utf-8") as f:
        script = f.read()
    blob = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")  # no tag ends it
    title = html.escape(f"embedding space: {data['title']}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_CSS}</style><script>{get_plotlyjs()}</script></head><body>"
        f'<h1>{title}</h1>{_CONTROLS}<div id="main"><div id="members"></div><div id="curves"></div></div>'
        f'<p id="notes"></p><script id="embjax-data" type="application/json">{blob}</script>'
        f"<script>{script}</script></body></html>\n"
    )


def write_page(
    path: str, members: list[str] | None = None, out: str | None = None, highlight: list[str] | None = None
) -> str:
    """Write the page for a run or a sweep directory (see run_dirs); returns its path. `highlight`: benchmark
    names or files whose words the page can colour (see benchmark_words)."""
    dirs, eligible = run_dirs(path, members)
    if eligible > len(dirs):
        print(f"{path}: the page shows {len(dirs)} of {eligible} members (choose with --members)", file=sys.stderr)
    page = render(page_data(dirs, eligible, highlight))  # built before any file is opened: a failure leaves nothing
    out = out or os.path.join(path, PAGE)
    write_atomic(out, lambda f: f.write(page))  # a full disk leaves no half page behind
    return out


_CONTROLS = """<div id="controls">
<button id="first" title="first frame (Home)">|&#x25C0;</button>
<button id="back" title="step back (&larr;)">&#x25C0;&#x25C0;</button>
<button id="play" title="play / pause (space)">&#x25B6;</button>
<button id="forward" title="step forward (&rarr;)">&#x25B6;&#x25B6;</button>
<label>speed <select id="speed"><option value="0.25">0.25&times;</option>
<option value="1" selected>1&times;</option><option value="4">4&times;</option></select></label>
<input id="slider" type="range" min="0" max="0" value="0" step="1">
<span id="step-label"></span>
<label>colour <select id="colour"></select></label>
<label><input id="three" type="checkbox"> 3-D</label>
</div><div id="legend"></div>"""

_CSS = """body{font-family:system-ui,sans-serif;margin:12px;color:#222}h1{font-size:18px;margin:4px 0}
#controls{display:flex;gap:8px;align-items:center;flex-wrap:wrap;position:sticky;top:0;background:#fff;z-index:5;
padding:4px 0}
#controls button{font-size:15px;min-width:40px}#slider{flex:1;min-width:200px}
#step-label{font-variant-numeric:tabular-nums;min-width:210px}
#legend span{margin-right:14px;font-size:13px}
#legend i{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:4px}
#members{display:flex;flex-wrap:wrap;gap:6px}#main.single{display:flex;gap:8px;align-items:flex-start}
.member{border:1px solid #ddd}#notes{font-size:12px;color:#666}"""
