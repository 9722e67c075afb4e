"""Experiment configuration: YAML -> frozen, validated dataclasses; `--a.b=value` overrides.

Every key, its type and its allowed range is declared here once; `load_config` refuses an
unknown key, a wrong type or an out-of-range value with a `ConfigError` whose one-line
message names the key, what was given and what is allowed.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Union

import yaml

Scale = Union[float, Literal["sqrt_d"]]
LogitScale = Union[float, Literal["inv_sqrt_d"]]


_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A bad key, type or value in a config, override or sweep file (exit status 2)."""


# Ranges: key -> (low, high, low_inclusive). Checked after types.
_RANGES: dict[str, tuple[float, float, bool]] = {
    "steps": (1, 10**9, True),
    "seed": (0, 2**31 - 1, True),
    "data.vocab_size": (2, 2**22, True),
    "data.num_classes": (1, 2**16, True),
    "data.seq_len": (2, 2**16, True),
    "data.batch_size": (1, 2**16, True),
    "data.zipf_exponent": (0.0, 10.0, True),
    "data.class_sharpness": (0.0, 100.0, True),
    "data.eval_batches": (1, 10**4, True),
    "data.eval_fraction": (0.0, 0.5, False),
    "model.embed_dim": (1, 2**16, True),
    "model.num_layers": (1, 256, True),
    "model.num_heads": (1, 1024, True),
    "model.mlp_ratio": (1, 64, True),
    "model.window": (1, 1024, True),
    "model.hidden_dim": (1, 2**18, True),
    "embedding.init_std": (0.0, 1e4, False),
    "optim.lr": (0.0, 1e3, False),
    "optim.weight_decay": (0.0, 1e3, True),
    "optim.embed_weight_decay": (0.0, 1e3, True),
    "optim.b1": (0.0, 1.0, True),
    "optim.b2": (0.0, 1.0, True),
    "optim.momentum": (0.0, 1.0, True),
    "optim.warmup_steps": (0, 10**9, True),
    "optim.grad_clip": (0.0, 1e9, True),
    "log.every": (1, 10**9, True),
    "log.metrics_every": (0, 10**9, True),
    "log.eval_every": (0, 10**9, True),
    "log.init_timeout": (1.0, 3600.0, True),
    "checkpoint.every": (0, 10**9, True),
    "checkpoint.keep": (1, 1000, True),
    "mesh.data": (1, 2**16, True),
    "mesh.model": (1, 2**16, True),
}


@dataclass(frozen=True)
class DataConfig:
    kind: Literal["planted", "text"] = "planted"
    path: str | None = None  # text: a file or a folder of *.txt
    tokenizer: Literal["bpe", "byte"] = "bpe"  # text only; byte-level forces vocab_size 256
    vocab_size: int = 512  # V
    num_classes: int = 16  # K, planted only
    zipf_exponent: float = 1.1  # planted unigram p_i ∝ i^-a
    class_sharpness: float = 3.0  # planted: larger -> a more predictable class chain
    seq_len: int = 64  # T (tokens a model sees; a batch holds T + 1)
    batch_size: int = 32  # B
    eval_batches: int = 8
    eval_fraction: float = 0.1  # text: tail of the token stream held out


@dataclass(frozen=True)
class ModelConfig:
    kind: Literal["linear", "mlp", "transformer"] = "transformer"
    embed_dim: int = 64  # d
    tie_embeddings: bool = True
    logit_scale: LogitScale = 1.0
    positions: Literal["learned", "sinusoidal", "none"] = "learned"
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: int = 4
    window: int = 4  # mlp: previous tokens seen
    hidden_dim: int = 256  # mlp: hidden width
    pad_id: int | None = None  # tokens equal to this are masked (attention keys and loss)


@dataclass(frozen=True)
class EmbeddingConfig:
    init: Literal["normal", "truncated_normal", "uniform", "scaled_normal", "xavier", "pretrained"] = "normal"
    init_std: float = 0.02  # σ
    scale: Scale = 1.0
    norm: Literal["none", "layernorm", "rmsnorm"] = "none"
    pretrained_path: str | None = None  # .npy (V×d) or word2vec text
    freeze: bool = False


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adamw", "adam", "sgd", "adafactor"] = "adamw"
    lr: float = 3e-3
    weight_decay: float = 0.0
    embed_weight_decay: float | None = None  # None: same as weight_decay
    b1: float = 0.9
    b2: float = 0.95
    momentum: float = 0.9  # sgd
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 50
    grad_clip: float = 1.0  # global norm; 0 turns clipping off
    skip_nonfinite: bool = False  # skip a non-finite update instead of stopping the run


@dataclass(frozen=True)
class LogConfig:
    every: int = 10
    metrics_every: int = 100  # full geometry metrics; 0 = only at the end
    eval_every: int = 100  # 0 = only at the end
    wandb: bool = True
    mode: Literal["offline", "online"] = "offline"
    project: str = "embjax"
    entity: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    init_timeout: float = 30.0  # seconds W&B may take to start before the run goes on without it
    progress: bool = True


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 500  # 0 = only at the end
    keep: int = 2


@dataclass(frozen=True)
class MeshConfig:
    data: int = 1
    model: int = 1


@dataclass(frozen=True)
class Config:
    name: str = "default"
    seed: int = 0
    steps: int = 1000
    out_dir: str = "runs"
    # JAX's persistent compilation cache: "auto" = $EMBJAX_CACHE_DIR or ~/.cache/embjax/xla; "" = off
    compile_cache: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)

    @property
    def run_dir(self) -> str:
        return os.path.join(self.out_dir, self.name)


# ---------------------------------------------------------------------------------------
# Type checking and coercion


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Return `value` as type `tp`, or raise ConfigError naming the key."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arm in typing.get_args(tp):
            try:
                return _coerce(key, value, arm)
            except ConfigError:
                pass
    elif origin is Literal:
        if value in typing.get_args(tp) and type(value) is type(typing.get_args(tp)[0]):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(key, v, typing.get_args(tp)[0]) for v in value)
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):  # YAML 1.1 reads `1e-3` as a string
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key}: got {value!r}; allowed: {_describe(tp)}")


def _check_range(key: str, value: Any) -> None:
    if key not in _RANGES or not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    lo, hi, lo_incl = _RANGES[key]
    ok = (value >= lo if lo_incl else value > lo) and value <= hi
    if not ok:
        bracket = "[" if lo_incl else "("
        raise ConfigError(f"{key}: got {value!r}; allowed: a value in {bracket}{lo:g}, {hi:g}]")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: got {raw!r}; allowed: a mapping of keys")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), sorted(names), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"{full}: unknown key{hint}; allowed: {', '.join(sorted(names))}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, f"{full}.")
        else:
            kwargs[key] = _coerce(full, value, tp)
            _check_range(full, kwargs[key])
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    """Checks that involve more than one key."""
    m, d, e = cfg.model, cfg.data, cfg.embedding
    if m.kind == "transformer" and m.embed_dim % m.num_heads:
        raise ConfigError(
            f"model.num_heads: got {m.num_heads} with model.embed_dim={m.embed_dim}; allowed: a divisor of embed_dim")
    if d.kind == "text" and not d.path:
        raise ConfigError("data.path: got null with data.kind='text'; allowed: a text file or a folder of .txt files")
    if d.kind == "text" and d.tokenizer == "byte" and d.vocab_size != 256:
        raise ConfigError(f"data.vocab_size: got {d.vocab_size} with data.tokenizer='byte'; allowed: 256")
    if d.kind == "planted" and d.num_classes > d.vocab_size:
        raise ConfigError(
            f"data.num_classes: got {d.num_classes} with data.vocab_size={d.vocab_size}; allowed: at most vocab_size")
    if e.init == "pretrained" and not e.pretrained_path:
        raise ConfigError("embedding.pretrained_path: got null with embedding.init='pretrained'; allowed: a .npy or word2vec text file")
    if m.pad_id is not None and not 0 <= m.pad_id < d.vocab_size:
        raise ConfigError(f"model.pad_id: got {m.pad_id}; allowed: null or an id in [0, {d.vocab_size})")
    if not cfg.name or "/" in cfg.name or cfg.name in (".", ".."):
        raise ConfigError(f"name: got {cfg.name!r}; allowed: a non-empty name without '/'")


# ---------------------------------------------------------------------------------------
# Public API


def to_dict(cfg: Any) -> dict:
    """The config as plain YAML/JSON-ready data (tuples become lists)."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v
    return plain(cfg)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'model': {'embed_dim': 8}} -> {'model.embed_dim': 8}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def parse_value(text: str) -> Any:
    """A command-line value: YAML scalars and flow lists (`true`, `0.02`, `[a, b]`, `null`)."""
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """`--model.embed_dim=128` or `model.embed_dim=128` -> {'model.embed_dim': 128}."""
    out = {}
    for arg in args:
        body = arg[2:] if arg.startswith("--") else arg
        if "=" not in body:
            raise ConfigError(f"{arg}: got an argument without '='; allowed: --section.key=value")
        key, text = body.split("=", 1)
        out[key] = parse_value(text)
    return out


def apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """Set dotted keys in a nested dict (a copy); sections are created on demand."""
    raw = yaml.safe_load(yaml.safe_dump(raw)) if raw else {}
    for key, value in overrides.items():
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p, {}), dict):
                raise ConfigError(f"{key}: '{p}' is not a section")
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return raw


def read_yaml(path: str) -> dict:
    """Read a YAML mapping safely; a missing file or malformed YAML is a ConfigError."""
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config: got {path!r}; allowed: an existing YAML file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where}: {getattr(err, 'problem', err)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: got a {type(raw).__name__}; allowed: a YAML mapping of config keys")
    return raw


def from_dict(raw: dict) -> Config:
    cfg = _build(Config, raw, "")
    _validate(cfg)
    return cfg


def load_config(path: str | None = None, overrides: dict[str, Any] | list[str] | None = None) -> Config:
    """Defaults <- YAML file <- overrides, validated."""
    raw = read_yaml(path) if path else {}
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    raw = apply_overrides(raw, overrides or {})
    return from_dict(raw)


def replace(cfg: Config, **dotted: Any) -> Config:
    """A copy of cfg with dotted keys changed, validated: replace(cfg, **{'model.embed_dim': 8})."""
    return from_dict(apply_overrides(to_dict(cfg), dotted))


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def resolve_scale(value: Scale, d: int) -> float:
    return float(d) ** 0.5 if value == "sqrt_d" else float(value)


def resolve_logit_scale(value: LogitScale, d: int) -> float:
    return float(d) ** -0.5 if value == "inv_sqrt_d" else float(value)


def compile_cache_dir(value: str) -> str | None:
    if value == "":
        return None
    if value == "auto":
        return os.environ.get("EMBJAX_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "embjax", "xla")
    return os.path.expanduser(value)


def enable_compile_cache(value: str) -> str | None:
    """Turn on JAX's persistent compilation cache (repeated runs of one shape skip XLA compiles)."""
    import jax

    path = compile_cache_dir(value)
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None  # an unwritable cache only costs time
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
