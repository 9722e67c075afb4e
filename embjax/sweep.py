"""W&B-format sweep files run locally: validate, expand, group by shape, train each group as one program.

A sweep file is W&B's sweep configuration unchanged (`wandb sweep FILE` accepts it); parameter
names are dotted config keys, and a parameter `config` picks the base config file. The local
runner expands `grid` exactly as W&B's own engine (the `sweeps` package) and `random` by W&B's
distributions with a seeded draw, honouring `run_cap`. `bayes` and `early_terminate` need W&B's
controller: use `wandb agent`. The runner never executes the file's `command`.
"""
from __future__ import annotations

import csv
import json
import os
import warnings
from typing import Any

import numpy as np
import yaml

from . import config as C
from .config import Config, ConfigError

# Keys whose values enter the compiled program as arrays: members differing only here share a program.
VALUE_KEYS = ("seed", "embedding.init_std", "optim.lr", "optim.weight_decay", "optim.embed_weight_decay",
              "optim.grad_clip")
# Keys that name or place a member, not what it computes.
IDENTITY_KEYS = ("name", "out_dir", "log.group", "log.tags", "log.progress", "log.wandb", "log.mode",
                 "log.project", "log.entity", "log.init_timeout", "compile_cache")


def load_sweep(path: str) -> dict:
    """Read and validate a sweep file (W&B's schema, plus what the local runner needs)."""
    raw = C.read_yaml(path)
    if not raw.get("parameters"):
        raise ConfigError(f"{path}: parameters: got none; allowed: a mapping of config keys to "
                          "{value | values | distribution ...} (W&B sweep format)")
    if raw.get("method") not in ("grid", "random", "bayes"):
        raise ConfigError(f"{path}: method: got {raw.get('method')!r}; allowed: grid | random (locally) | bayes "
                          "(with wandb agent)")
    import logging
    logging.getLogger("sweeps").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sweeps.config import SweepConfig
        import jsonschema
        try:
            # run_cap is a documented W&B sweep key that the published engine's schema predates
            SweepConfig({k: v for k, v in raw.items() if k != "run_cap"})
        except jsonschema.ValidationError as err:
            where = ".".join(str(p) for p in err.absolute_path) or "sweep"
            raise ConfigError(f"{path}: {where}: {err.message.splitlines()[0]}") from None
        except Exception as err:  # noqa: BLE001 - the package raises several kinds for bad files
            raise ConfigError(f"{path}: {str(err).splitlines()[0]}") from None
    if raw["method"] == "bayes":
        raise ConfigError(f"{path}: method: got 'bayes'; the local runner does grid and random - bayes needs "
                          f"W&B's controller: `wandb sweep {path}` then `wandb agent SWEEP_ID`")
    if raw.get("early_terminate"):
        raise ConfigError(f"{path}: early_terminate: needs W&B's controller; run it with `wandb sweep {path}` "
                          "then `wandb agent SWEEP_ID`, or remove early_terminate to run locally")
    if "run_cap" in raw and not (isinstance(raw["run_cap"], int) and raw["run_cap"] > 0):
        raise ConfigError(f"{path}: run_cap: got {raw['run_cap']!r}; allowed: a positive integer")
    if raw["method"] == "random" and not raw.get("run_cap"):
        raise ConfigError(f"{path}: run_cap: got none with method 'random'; allowed: a positive integer "
                          "(a local random sweep needs a size)")
    for key, spec in raw["parameters"].items():
        if raw["method"] == "grid" and not ("value" in spec or "values" in spec):
            raise ConfigError(f"{path}: parameters.{key}: grid needs 'value' or 'values'; got {sorted(spec)}")
    return raw


def expand(sweep: dict, seed: int = 0) -> list[dict[str, Any]]:
    """The members' parameter values, in W&B's order for grid; seeded draws for random."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sweeps.params import HyperParameterSet
        if sweep["method"] == "grid":
            from sweeps.grid_search import grid_search_next_runs
            size = int(np.prod([len(v["values"]) if "values" in v else 1 for v in sweep["parameters"].values()]))
            size = min(size, sweep.get("run_cap") or size)
            runs = [r for r in grid_search_next_runs([], sweep, n=size) if r is not None]
            members = [{k: v["value"] for k, v in r.config.items()} for r in runs]
        else:
            params = HyperParameterSet.from_config(sweep["parameters"])
            members = []
            for i in range(int(sweep["run_cap"])):
                rng = np.random.default_rng([seed, i])
                members.append({p.name: p.ppf(rng.uniform()) for p in params})
    return [{k: _plain(v) for k, v in m.items()} for m in members]


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def sweep_name(path: str, sweep: dict) -> str:
    return str(sweep.get("name") or os.path.splitext(os.path.basename(path))[0])


def _short(key: str, value: Any) -> str:
    v = f"{value:g}" if isinstance(value, float) else str(value).lower()
    return f"{key.split('.')[-1]}{v}"


def member_configs(path: str, sweep: dict, out_dir: str | None, overrides: dict) -> list[Config]:
    """Configs for each member: base file (parameter `config`) <- command-line overrides <- member values."""
    name = sweep_name(path, sweep)
    members = expand(sweep)
    varying = [k for k in sweep["parameters"] if len({json.dumps(m.get(k), sort_keys=True) for m in members}) > 1]
    cfgs = []
    for i, values in enumerate(members):
        values = dict(values)
        base_file = values.pop("config", None)
        raw = C.read_yaml(base_file) if base_file else {}
        raw = C.apply_overrides(raw, overrides)
        member = f"m{i:03d}" + "".join("-" + _short(k, values[k]) for k in varying if k in values and k != "config")
        root = out_dir or raw.get("out_dir", "runs")
        try:
            raw = C.apply_overrides(raw, {**values, "name": member, "out_dir": os.path.join(root, name)})
            cfgs.append(C.from_dict(raw))
        except ConfigError as err:
            raise ConfigError(f"{path}: member {member}: {err}") from None
    return cfgs


def shape_key(cfg: Config) -> str:
    """Members with equal keys share one compiled program (they differ only in values)."""
    flat = C.flatten(C.to_dict(cfg))
    key = {k: v for k, v in flat.items() if k not in VALUE_KEYS and k not in IDENTITY_KEYS}
    key["clipping"] = cfg.optim.grad_clip > 0  # whether the clip transform exists is structure
    return json.dumps(key, sort_keys=True)


def group_by_shape(cfgs: list[Config]) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(shape_key(cfg), []).append(i)
    return list(groups.values())


def is_finished(cfg: Config) -> dict | None:
    path = os.path.join(cfg.run_dir, "summary.json")
    if not os.path.exists(path):
        return None
    try:
        s = json.load(open(path))
    except (OSError, json.JSONDecodeError):
        return None
    return s if s.get("status") in ("finished", "diverged") and s.get("steps") == cfg.steps else None


def decide_vectorize(mode: str, cfg: Config) -> bool:
    """auto: vmap on accelerators; on CPU run members in turn with the one compiled program.

    Measured (python -m experiments.bench --case=sweep, 8 quickstart members, 2 CPU cores): vmapped
    39.6 s, in turn 37.0 s, 8 separate processes 159.1 s - the win is compiling once, and on a CPU the
    cores are already busy inside each member's matmuls, so stacking members buys nothing more.
    """
    if mode in ("on", "off"):
        return mode == "on"
    import jax
    return jax.default_backend() != "cpu"


def run_sweep(path: str, out_dir: str | None = None, overrides: dict | None = None, vectorize: str = "auto",
              progress: bool = True, report: bool = True) -> list[dict]:
    """Run every member (finished ones are skipped, unfinished ones resume); returns their summaries."""
    if vectorize not in ("auto", "on", "off"):
        raise ConfigError(f"--vectorize: got {vectorize!r}; allowed: auto | on | off")
    sweep = load_sweep(path)
    name = sweep_name(path, sweep)
    cfgs = member_configs(path, sweep, out_dir, overrides or {})
    from .loop import Signals, check_run_dir, train_group
    for cfg in cfgs:  # refuse a bad member before any is written
        check_run_dir(cfg, overwrite=False)
    sweep_dir = os.path.dirname(cfgs[0].run_dir)
    os.makedirs(sweep_dir, exist_ok=True)
    with open(os.path.join(sweep_dir, "sweep.yaml"), "w") as f:
        yaml.safe_dump(sweep, f, sort_keys=False)
    summaries: list[dict | None] = [is_finished(c) for c in cfgs]
    groups = group_by_shape(cfgs)
    print(f"sweep {name}: {len(cfgs)} members in {len(groups)} shape group(s); "
          f"{sum(s is not None for s in summaries)} already finished", flush=True)
    with Signals() as sig:
        for g_i, idx in enumerate(groups):
            todo = [i for i in idx if summaries[i] is None]
            if not todo or sig.received:
                continue
            vec = decide_vectorize(vectorize, cfgs[todo[0]])
            desc = f"[{g_i + 1}/{len(groups)}] {len(todo)} member(s){' vmapped' if vec and len(todo) > 1 else ''}"
            out = train_group([cfgs[i] for i in todo], vectorize=vec, progress=progress, group=name, desc=desc,
                              signals=sig)
            for i, s in zip(todo, out):
                summaries[i] = s
    result = [s or {"status": "not run"} for s in summaries]
    write_summary_csv(sweep_dir, sweep, cfgs, result)
    if report:
        from .report import make_report
        make_report(sweep_dir, wandb_group=name if cfgs[0].log.wandb else None)
    if sig.received:
        for s in result:
            s["_signal"] = sig.received
    return result


SUMMARY_METRICS = ("eval/loss", "train/loss", "emb/norm_mean", "emb/norm_growth", "emb/cos_mean", "emb/cos_std",
                   "emb/eff_rank", "emb/isotropy", "emb/pc1_var_share", "emb/class_cos_gap", "emb/knn_class_purity",
                   "emb/norm_logfreq_spearman", "step", "wall_time_s")


def swept_keys(sweep: dict) -> list[str]:
    return [k for k, v in sweep["parameters"].items() if k != "config" and "value" not in v]


def write_summary_csv(sweep_dir: str, sweep: dict, cfgs: list[Config], summaries: list[dict]) -> str:
    """summary.csv: a row per member: its name, a column per swept key, final metrics, status."""
    keys = swept_keys(sweep)
    path = os.path.join(sweep_dir, "summary.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["member", *keys, *SUMMARY_METRICS, "status"])
        for cfg, s in zip(cfgs, summaries):
            flat = C.flatten(C.to_dict(cfg))
            w.writerow([cfg.name, *[flat.get(k) for k in keys], *[s.get(m, "") for m in SUMMARY_METRICS],
                        s.get("status", "")])
    return path
