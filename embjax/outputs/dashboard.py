"""A sweep's W&B workspace as code (wandb-workspaces): `python -m experiments.dashboard SWEEP_DIR`.

Built offline from what the sweep varied (sweep.yaml's swept keys) and what its members logged (the keys their
offline W&B runs recorded, read back from the `.wandb` files; metrics.jsonl where a member has none), so a panel
names only keys that exist:
  Loss                        train and eval loss; eval loss by the target's frequency bucket
  Norm growth                 emb/norm_growth and mean row norm, coloured by σ (and by d, when both are swept;
                              a workspace's panels share one run set, so a panel cannot hold one d alone)
  Cosine structure            mean cosine, centred mean cosine, IsoScore, effective rank, coloured by tying
  Word similarity and analogy each benchmark's ρ / accuracy of the input table and of the untied output head
  μP coordinate check         coord/* against step
  Row updates and drift       rows updated per step, untouched rows' drift and the share that moved
  Sweep                       a parallel-coordinates panel over the swept keys → final eval loss (and word-sim ρ)
  Embedding space             the embedding_space page and the projector table, as the runs logged them
Runs are filtered to the sweep's W&B group and grouped by its swept keys but seed (mean ± standard error).

Deterministic: the same sweep gives the same bytes (wandb-workspaces draws panel ids from `random`: they are drawn
from a generator seeded by the sweep's name). Entity and project are placeholders (ENTITY, PROJECT) until
`save_workspace` fills them. Building, writing and reading the spec make no network call; only saving does.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import random
import sys
from collections.abc import Iterator
from typing import Any

from ..config import Config
from .runs import load_runs
from .sinks import read_jsonl, read_wandb_history, write_atomic

FILE = "wandb_workspace.json"
ENTITY, PROJECT = "embjax-entity", "embjax-project"  # placeholders: the spec needs names, the save fills them
SECTIONS = ("Loss", "Norm growth", "Cosine structure", "Word similarity and analogy", "μP coordinate check")
SECTIONS += ("Row updates and drift", "Sweep", "Embedding space")


@contextlib.contextmanager
def seeded(name: str) -> Iterator[None]:
    """Python's `random` seeded from `name` while the spec is built (its ids), restored afterwards."""
    state = random.getstate()
    random.seed(int(hashlib.sha1(name.encode()).hexdigest()[:16], 16))
    try:
        yield
    finally:
        random.setstate(state)


def _member_dirs(sweep_dir: str) -> list[str]:
    return sorted(os.path.dirname(p) for p in glob.glob(os.path.join(sweep_dir, "*", "config.yaml")))


def logged(run_dir: str) -> dict[str, str]:
    """{key: kind} of what a member logged: 'scalar', or a media kind ('html-file', 'table-file', ...). From its
    offline W&B run(s) when it has them (what a dashboard can show), else from metrics.jsonl."""
    out: dict[str, str] = {}
    files = sorted(glob.glob(os.path.join(run_dir, "wandb", "*run-*", "run-*.wandb")))
    rows = [r for f in files for r in read_wandb_history(f)]
    if not files and os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
        rows = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    media = {k[: -len("/_type")]: v for row in rows for k, v in row.items() if k.endswith("/_type")}
    under = lambda k: any(k.startswith(m + "/") for m in media)
    for row in rows:  # W&B's records flatten a media value into <key>/_type, <key>/path, ...
        for key, value in row.items():
            if key.startswith("_") or key == "step" or under(key):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.setdefault(key, "scalar")
    return {**out, **media}


def sweep_facts(sweep_dir: str) -> dict[str, Any]:
    """What the spec is built from: the sweep's name and W&B group, its swept keys (seed apart) with their values,
    and the keys its members logged."""
    from ..config import read_yaml
    from ..sweep import swept_keys

    path = os.path.join(sweep_dir, "sweep.yaml")
    if not os.path.isfile(path):
        raise ValueError(f"{sweep_dir}: no sweep.yaml; allowed: a sweep directory written by experiments.sweep")
    sweep = read_yaml(path)
    runs = load_runs(sweep_dir)
    keys = [k for k in swept_keys(sweep) if k != "seed"]
    values = {k: sorted({json.dumps(_get(r["cfg"], k)) for r in runs}) for k in keys}
    kinds: dict[str, str] = {}
    for d in _member_dirs(sweep_dir):
        for key, kind in logged(d).items():
            kinds.setdefault(key, kind)
    name = str(sweep.get("name") or os.path.basename(os.path.normpath(sweep_dir)))
    group = next((_get(r["cfg"], "log.group") for r in runs if _get(r["cfg"], "log.group")), None) or name
    return {"name": name, "group": group, "swept": keys, "values": values, "logged": kinds}


def sweep_log(sweep_dir: str) -> dict:
    """The `log` section of the sweep's first member (project, entity, mode)."""
    runs = load_runs(sweep_dir)
    return dict(runs[0]["cfg"].get("log", {})) if runs else {}


def _get(cfg: dict, key: str) -> Any:
    for part in key.split("."):
        cfg = cfg.get(part) if isinstance(cfg, dict) else None
    return cfg


def _lines(wr, keys: list[str], logged: dict[str, str], **kw) -> list:
    """A line plot per key that was logged as a scalar (mean ± standard error over the grouped runs)."""
    return [
        wr.LinePlot(title=k, x="Step", y=[k], groupby_aggfunc="mean", groupby_rangefunc="stderr", **kw)
        for k in keys
        if logged.get(k) == "scalar"
    ]


def build_workspace(facts: dict[str, Any]):
    """The wandb-workspaces Workspace of a sweep (see the module docstring); `facts` from sweep_facts."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces import expr

    L, swept = facts["logged"], facts["swept"]
    scalar = sorted(k for k, kind in L.items() if kind == "scalar")
    colour = lambda key: {"groupby": wr.Config(key)} if key in swept else {}
    buckets = [k for k in scalar if k.startswith("eval/loss_bucket_")]
    bench = [k for k in scalar if k.startswith(("word_sim", "analogy")) and k.endswith(("/spearman", "/accuracy"))]
    norm = [
        wr.LinePlot(title=f"emb/norm_growth by {key}", x="Step", y=["emb/norm_growth"], **colour(key))
        for key in ("embedding.init_std", "model.embed_dim")
        if key in swept and L.get("emb/norm_growth") == "scalar"
    ]
    sections = {
        "Loss": _lines(wr, ["train/loss", "eval/loss"], L)
        + ([wr.LinePlot(title="eval loss by frequency bucket", x="Step", y=buckets)] if buckets else []),
        "Norm growth": norm + _lines(wr, ["emb/norm_growth", "emb/norm_mean"], L, **colour("embedding.init_std")),
        "Cosine structure": _lines(
            wr,
            ["emb/cos_mean", "emb_centered/cos_mean", "emb/isoscore", "emb/eff_rank"],
            L,
            **colour("model.tie_embeddings"),
        ),
        "Word similarity and analogy": _lines(wr, bench, L),
        "μP coordinate check": _lines(wr, [k for k in scalar if k.startswith("coord/")], L, log_y=True),
        "Row updates and drift": _lines(
            wr, ["emb/grad_row_frac", "emb/untouched_drift", "emb/untouched_moved_frac"], L
        ),
        "Sweep": _parallel(wr, swept, L, bench),
        "Embedding space": _media(wr, L),
    }
    return ws.Workspace(
        entity=ENTITY,
        project=PROJECT,
        name=f"embjax sweep: {facts['name']}",
        sections=[ws.Section(name=n, panels=p, is_open=True) for n, p in sections.items() if p],
        runset_settings=ws.RunsetSettings(
            filters=expr.And(expr.Metric("Group") == facts["group"]),
            groupby=[expr.Config(k) for k in swept],
        ),
    )


def _parallel(wr, swept: list[str], logged: dict[str, str], bench: list[str]) -> list:
    ends = [k for k in ("eval/loss", *[b for b in bench if b.startswith("word_sim/")][:2]) if logged.get(k) == "scalar"]
    if not swept or not ends:
        return []
    cols = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(k)) for k in swept]
    cols += [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(k)) for k in ends]
    return [wr.ParallelCoordinatesPlot(title="swept keys → final metrics", columns=cols)]


def _media(wr, logged: dict[str, str]) -> list:
    panels = [wr.MediaBrowser(title=k, media_keys=[k]) for k, kind in sorted(logged.items()) if kind == "html-file"]
    tables = [k for k, kind in sorted(logged.items()) if kind == "table-file" and k.startswith("embeddings/")]
    return panels + [wr.WeavePanelSummaryTable(table_name=k) for k in tables]


def spec_json(workspace) -> str:
    """The workspace's spec (wandb-workspaces' own model), as stable JSON text."""
    return json.dumps(json.loads(workspace._to_model().model_dump_json(by_alias=True)), indent=1, sort_keys=True)


def read_spec(path: str):
    """A written spec back through wandb-workspaces' model: the Workspace it describes."""
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces.workspaces import internal

    with open(path, encoding="utf-8") as f:
        return ws.Workspace._from_model(internal.View.model_validate_json(f.read()))


def write_workspace(sweep_dir: str) -> str:
    """<sweep>/wandb_workspace.json (atomic), the same bytes for the same sweep; returns its path."""
    import wandb_workspaces.reports.v2  # noqa: F401 - imported before the seeded ids: importing draws some too
    import wandb_workspaces.workspaces  # noqa: F401

    facts = sweep_facts(sweep_dir)
    with seeded(facts["name"]):
        text = spec_json(build_workspace(facts))
    path = os.path.join(sweep_dir, FILE)
    write_atomic(path, lambda f: f.write(text + "\n"))
    return path


def save_workspace(path: str, entity: str | None, project: str) -> str:
    """Save a written spec to the W&B server (WANDB_BASE_URL, the API key wandb finds) under entity/project;
    returns the workspace's URL. Errors are the server's or wandb's own (the caller makes them one line)."""
    workspace = read_spec(path)
    if entity is None:
        import wandb

        entity = wandb.Api().default_entity
        if not entity:
            raise ValueError("no W&B entity: give --entity (the server has no default entity for this API key)")
    workspace.entity, workspace.project = entity, project
    with seeded(os.path.basename(os.path.dirname(os.path.abspath(path)))):
        workspace.save()
    return workspace.url


def dashboard(sweep_dir: str, cfg: Config) -> None:
    """The sweep's W&B workspace at its end, as log.wandb_workspace says (null: saved when W&B logs online); a
    failure costs the workspace only, in one warning."""
    log = cfg.log
    online = log.mode == "online" and os.environ.get("WANDB_MODE", "online") not in ("offline", "disabled", "dryrun")
    if not log.wandb or log.wandb_workspace is False or (log.wandb_workspace is None and not online):
        return
    try:
        path = write_workspace(sweep_dir)
        if online:
            print(f"W&B workspace: {save_workspace(path, log.entity, log.project)}")
        else:
            print(f"W&B workspace spec: {path} (save it with: python -m experiments.dashboard {sweep_dir})")
    except Exception as err:  # noqa: BLE001 - the sweep's results are safe; say what was lost
        why = str(err).strip().splitlines()
        print(f"warning: {sweep_dir}: the W&B workspace was not saved ({type(err).__name__}: {why[0] if why else ''})",
              file=sys.stderr)  # fmt: skip
