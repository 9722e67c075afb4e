"""A sweep's runs read back from their directories (`load_runs`, `get`), and the per-run points that the report
and the findings both analyse: the muP coordinate check's and the learning-rate transfer's."""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from typing import Any

import numpy as np

from ..analysis.scaling import lr_transfer
from .sinks import read_jsonl

DAMAGED = "damaged"  # the status a reader gives a run whose summary.json does not parse


def read_summary(run_dir: str) -> dict:
    """A run's summary.json, never an exception: {"status": "not run"} when it has none; {"status": "damaged",
    "_damaged": one line naming the file and why} when it cannot be read or is not a JSON object (a copy cut short,
    say). The sweep command (which trains such a member again) and the report (which lists it as damaged and
    reports the others) both read summaries here."""
    path = os.path.join(run_dir, "summary.json")
    try:
        with open(path, encoding="utf-8") as f:
            s = json.load(f)
    except FileNotFoundError:
        return {"status": "not run"}
    except (OSError, ValueError) as err:  # (a JSON or UTF-8 decoding error is a ValueError)
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        return {"status": DAMAGED, "_damaged": f"{path}: damaged ({why})"}
    if not isinstance(s, dict):
        return {"status": DAMAGED, "_damaged": f"{path}: damaged (a JSON {type(s).__name__}, not an object)"}
    return s


def load_runs(root: str) -> list[dict[str, Any]]:
    """Every run under root (root itself if it is one): its config, summary and metrics rows."""
    import yaml

    dirs = (
        [root]
        if os.path.exists(os.path.join(root, "config.yaml"))
        else sorted(
            os.path.join(root, d) for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "config.yaml"))
        )
    )
    runs = []
    for d in dirs:
        cfg = yaml.safe_load(open(os.path.join(d, "config.yaml")))
        summary = read_summary(d)  # as the sweep command reads it: a damaged one is named, and listed as damaged
        if summary["status"] == DAMAGED:
            print(f"warning: {summary['_damaged']}; the report lists {os.path.basename(d)} as damaged", file=sys.stderr)
        rows = read_jsonl(os.path.join(d, "metrics.jsonl")) if os.path.exists(os.path.join(d, "metrics.jsonl")) else []
        runs.append({"dir": d, "name": os.path.basename(d), "cfg": cfg, "summary": summary, "rows": rows})
    return runs


def get(cfg: dict, key: str) -> Any:
    """The value at a dotted key of a config dict (config.yaml as read), None where it has none."""
    node = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def coord_points(runs) -> dict[str, list[tuple[int, int, str, float]]]:
    """{parametrization: [(width, step, activation, mean |x|)]} from every run's coord/* rows."""
    out = defaultdict(list)
    for r in runs:
        par, d = get(r["cfg"], "model.parametrization") or "sp", get(r["cfg"], "model.embed_dim")
        for row in r["rows"]:
            for k, v in row.items():
                if k.startswith("coord/") and isinstance(v, (int, float)):
                    out[par].append((d, row["step"], k[len("coord/") :], float(v)))
    return dict(out)


_PANEL_KEYS = ("model.parametrization", "model.kind", "model.tie_embeddings", "embedding.init", "embedding.init_std")


def _lr_points(runs) -> tuple[dict[tuple, list], dict[tuple, float]]:
    """{panel: [(width, lr, seed, final eval loss, or None if diverged)]} and each panel's initial loss (the
    mean eval loss at step 0, else ln V). A panel is one value of every other config key that may vary
    (parametrisation, model, tying, init, σ); members not (yet) finished or diverged are left out."""
    out, initial, V = defaultdict(list), defaultdict(list), 2
    for r in runs:
        c, s = r["cfg"], r["summary"]
        if s.get("status") not in ("finished", "diverged"):
            continue
        panel = ((get(c, "model.parametrization") or "sp"), *(get(c, k) for k in _PANEL_KEYS[1:]))
        loss = s.get("eval/loss") if s["status"] == "finished" else None
        out[panel].append((get(c, "model.embed_dim"), get(c, "optim.lr"), c.get("seed"), loss))
        initial[panel] += [row["eval/loss"] for row in r["rows"][:1] if row.get("step") == 0 and "eval/loss" in row]
        V = get(c, "data.vocab_size") or V
    return dict(out), {p: float(np.mean(initial[p])) if initial[p] else float(np.log(V)) for p in out}


def _panel_name(panel: tuple, panels: list[tuple]) -> str:
    """'μP', or 'μP untied σ=0.2' when other keys vary between panels."""
    varying = [i for i in range(1, len(_PANEL_KEYS)) if len({p[i] for p in panels}) > 1]
    name = "μP" if panel[0] == "mup" else "SP"
    return " ".join([name] + [f"{_PANEL_KEYS[i].rpartition('.')[2]}={panel[i]}" for i in varying])


def lr_analysis(runs) -> dict[str, dict]:
    """{panel name: lr_transfer(...)} for panels with ≥ 3 learning rates and ≥ 2 widths, SP before μP."""
    points, initial = _lr_points(runs)
    panels = sorted(points, key=lambda p: (p[0] != "sp", str(p)))
    return {
        _panel_name(p, panels): lr_transfer(points[p], initial[p])
        for p in panels
        if len({lr for _, lr, _, _ in points[p]}) >= 3 and len({w for w, _, _, _ in points[p]}) >= 2
    }
