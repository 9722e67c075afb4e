"""Planning a sweep from a W&B-format sweep file: validate, expand into member configs, group by shape.

A sweep file is W&B's sweep configuration unchanged (`wandb sweep FILE` accepts it); parameter
names are dotted config keys, and a parameter `config` picks the base config file. The local
runner expands `grid` exactly as W&B's own engine (the `sweeps` package) and `random` by W&B's
distributions with a seeded draw, honouring `run_cap`. `bayes` and `early_terminate` need W&B's
controller: use `wandb agent`. Nothing here runs anything (see `runner.run_sweep`); the file's
`command` is never executed.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import numpy as np

from . import config as C
from .config import Config, ConfigError

# top-level sweep keys W&B's published schema (the `sweeps` package) does not know: run_cap is a documented W&B
# sweep key that the schema predates; baseline is embjax's own (a reference run directory for the report).
# W&B's CLI warns about unknown keys and goes on; the local runner checks everything else against the schema.
OUTSIDE_SCHEMA = ("run_cap",)


def load_sweep(path: str) -> dict:
    """Read and validate a sweep file (W&B's schema, plus what the local runner needs)."""
    raw = C.read_yaml(path)
    if "baseline" in raw:  # (a key of embjax's sweep files before; W&B's schema has no place for it)
        raise ConfigError(
            f"{path}: baseline: not a key of W&B's sweep schema; allowed: --baseline=RUN_DIR on the command line "
            "(python -m experiments.sweep or experiments.report)"
        )
    if not raw.get("parameters"):
        raise ConfigError(
            f"{path}: parameters: got none; allowed: a mapping of config keys to "
            "{value | values | distribution ...} (W&B sweep format)"
        )
    if raw.get("method") not in ("grid", "random", "bayes"):
        raise ConfigError(
            f"{path}: method: got {raw.get('method')!r}; allowed: grid | random (locally) | bayes (with wandb agent)"
        )
    import logging

    logging.getLogger("sweeps").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import jsonschema
        from sweeps.config import SweepConfig

        try:
            SweepConfig({k: v for k, v in raw.items() if k not in OUTSIDE_SCHEMA})
        except jsonschema.ValidationError as err:
            where = ".".join(str(p) for p in err.absolute_path) or "sweep"
            raise ConfigError(f"{path}: {where}: {err.message.splitlines()[0]}") from None
        except Exception as err:  # noqa: BLE001 - the package raises several kinds for bad files
            raise ConfigError(f"{path}: {str(err).splitlines()[0]}") from None
    if raw["method"] == "bayes":
        raise ConfigError(
            f"{path}: method: got 'bayes'; the local runner does grid and random - bayes needs "
            f"W&B's controller: `wandb sweep {path}` then `wandb agent SWEEP_ID`"
        )
    if raw.get("early_terminate"):
        raise ConfigError(
            f"{path}: early_terminate: needs W&B's controller; run it with `wandb sweep {path}` "
            "then `wandb agent SWEEP_ID`, or remove early_terminate to run locally"
        )
    if "run_cap" in raw and not (isinstance(raw["run_cap"], int) and raw["run_cap"] > 0):
        raise ConfigError(f"{path}: run_cap: got {raw['run_cap']!r}; allowed: a positive integer")
    if raw["method"] == "random" and not raw.get("run_cap"):
        raise ConfigError(
            f"{path}: run_cap: got none with method 'random'; allowed: a positive integer "
            "(a local random sweep needs a size)"
        )
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


def _fmt(value: Any) -> str:
    """A swept value as names and labels show it: floats by %g, others lower-case."""
    return f"{value:g}" if isinstance(value, float) else str(value).lower()


def _short(key: str, value: Any) -> str:
    return f"{key.split('.')[-1]}{_fmt(value)}"


def member_configs(
    path: str, sweep: dict, out_dir: str | None, overrides: dict, pretrained_source: str | None = None
) -> list[Config]:
    """Configs for each member: base file (parameter `config`) <- command-line overrides <- member values.
    `pretrained_source` (a findings stage's run): embedding.pretrained_path of the members that start from a
    pretrained table (embedding.init=pretrained), and of no other member."""
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
            if pretrained_source and raw.get("embedding", {}).get("init") == "pretrained":
                raw = C.apply_overrides(raw, {"embedding.pretrained_path": pretrained_source})
            cfgs.append(C.from_dict(raw))
        except ConfigError as err:
            raise ConfigError(f"{path}: member {member}: {err}") from None
    return cfgs


def shape_key(cfg: Config) -> str:
    """Members with equal keys share one compiled program: they differ only in keys declared as values
    (or as identity: a name or place, which computes nothing)."""
    shape = set(C.keys_with(C.SHAPE))
    key = {k: v for k, v in C.flatten(C.to_dict(cfg)).items() if k in shape}
    key["dropout"] = C.uses_dropout(cfg)  # rates are values, but a program at rate 0 draws no masks at all
    return json.dumps(key, sort_keys=True)


def group_by_shape(cfgs: list[Config]) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(shape_key(cfg), []).append(i)
    return list(groups.values())


_SYMBOLS = {"embedding.init_std": "σ", "model.embed_dim": "d", "model.tie_embeddings": "tied", "optim.lr": "lr"}


def member_label(cfg: Config, keys: list[str]) -> str:
    """A member named by its swept values, e.g. `d=32 σ=0.2 seed=1`."""
    return " ".join(value_label(k, C.get(cfg, k)) for k in keys) or cfg.name


def value_label(key: str, value: Any) -> str:
    """One swept value as labels show it: `σ=0.2`, `tied=true`, `warmup_steps=10`."""
    return f"{_SYMBOLS.get(key, key.rpartition('.')[2])}={_fmt(value)}"


def swept_keys(sweep: dict) -> list[str]:
    return [k for k, v in sweep["parameters"].items() if k != "config" and "value" not in v]
