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

Scale = float | Literal["sqrt_d"]
LogitScale = float | Literal["inv_sqrt_d"]
Freeze = bool | Literal["pretrained"]


_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A bad key, type or value in a config, override or sweep file (exit status 2)."""


class OutputError(Exception):
    """An essential output of a run (a checkpoint, metrics.jsonl, summary.json) could not be written (exit 1)."""


# Each field is declared once, here: its default, its allowed range and its role. Everything that
# sorts keys derives from these declarations: range validation, the per-member values a vmapped
# sweep group varies (`values`), the keys that only name or place a run (left out of sweep grouping)
# and the keys a resume may change.
SHAPE, VALUE, IDENTITY = "shape", "value", "identity"


def setting(
    default: Any,
    *,
    range: tuple[float, float] | None = None,
    low_open: bool = False,
    high_open: bool = False,
    role: str = SHAPE,
    resumable: bool = False,
    falls_back_to: str | None = None,
) -> Any:
    """A config field and its one declaration.

    role: SHAPE (changes the compiled program: a new program per distinct value), VALUE (enters the
    program as an array: sweep members differing only in values share one program, vmapped or in
    turn) or IDENTITY (names or places a run; computes nothing). resumable: a resume may change it.
    falls_back_to: a None default takes that key's value (values only).
    """
    meta = {
        "range": None if range is None else (range[0], range[1], not low_open, not high_open),
        "role": role,
        "resumable": resumable,
        "falls_back_to": falls_back_to,
    }
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DataConfig:
    kind: Literal["planted", "text"] = "planted"
    # text: a file, a folder (*.txt, *.jsonl, *.parquet; compressed too), a glob pattern, or builtin:wiki_sample |
    # builtin:lee_news (corpora that install with the suite)
    path: str | None = None
    # text only: a local byte-level BPE, the 256 bytes (vocab_size 256), or the word-level vocabulary of PTB/WikiText
    # research (lowercased words: the V - 2 most frequent of the training documents, <unk> and <eos>; docs/text.md)
    tokenizer: Literal["bpe", "byte", "word"] = "bpe"
    tokenizer_file: str | None = None  # text: a Hugging Face tokenizer.json; its vocabulary defines V
    text_field: str = "text"  # the text field of JSON-lines / Parquet records and dataset rows
    dataset: str | None = (
        None  # text: a Hugging Face dataset (text/json/parquet/csv over data.path, a saved folder, a hub name)
    )
    split: str = "train"  # the dataset's split
    # where prepared token files are cached; "" = $EMBJAX_DATA_DIR or ~/.cache/embjax/data
    cache_dir: str = setting("", role=IDENTITY, resumable=True)
    vocab_size: int = setting(512, range=(2, 2**22))  # V
    num_classes: int = setting(16, range=(1, 2**16))  # K, planted only
    zipf_exponent: float = setting(1.1, range=(0.0, 10.0))  # planted unigram p_i ∝ i^-a
    class_sharpness: float = setting(3.0, range=(0.0, 100.0))  # planted: larger -> a more predictable class chain
    seq_len: int = setting(64, range=(2, 2**16))  # T (tokens a model sees; a batch holds T + 1)
    batch_size: int = setting(32, range=(1, 2**16))  # B
    eval_batches: int = setting(8, range=(1, 10**4))
    eval_fraction: float = setting(0.1, range=(0.0, 0.5), low_open=True)  # text: fraction of documents held out
    # text: which of the source's documents form the corpus: "all", or "i/n" (those whose index is i mod n: "0/2" and
    # "1/2" are disjoint halves), chosen before the split and the vocabulary
    documents: str = "all"
    # text: train on the first fraction of the training stream only (cut at a document's <eos> on a word vocabulary),
    # the vocabulary and the eval split unchanged: fewer distinct contexts at the same steps and batches
    train_fraction: float = setting(1.0, range=(0.0, 1.0), low_open=True)


@dataclass(frozen=True)
class ModelConfig:
    # lstm: the tying papers' LSTM LM (Zaremba et al. 2014): num_layers LSTM layers of width embed_dim, each window
    # from a zero state (docs/models.md)
    kind: Literal["linear", "mlp", "transformer", "lstm"] = "transformer"
    embed_dim: int = setting(64, range=(1, 2**16))  # d
    tie_embeddings: bool = True
    # a learned bias on the logits (V numbers, zero at init; the softmax bias of the tying papers' models and of
    # PyTorch's word_language_model), tied or untied alike; it is no table: metrics and exports read none
    head_bias: bool = False
    # σ of an untied output head, N(0, σ²), apart from embedding.init_std (E's σ): a σ sweep moves E alone. 0.02 is
    # GPT-2's and BERT's output init and today's default E σ, so default runs start as before (see docs/metrics.md)
    head_init_std: float = setting(0.02, range=(0.0, 1e4), low_open=True, role=VALUE)
    # the attention query projection starts at zero (scores 0: uniform attention at step 0), in SP and μP alike,
    # as mup's own transformer example does. A value key (it enters the init as each member's 0 or 1)
    zero_query_init: bool = setting(False, role=VALUE)
    # a factor on the attention scores (mup's attn_mult): q·k·attn_mult/√K under SP, q·k·attn_mult·√K₀/K under μP; a
    # width-independent base constant (docs/mup.md). A value key: it enters the forward pass as each member's number
    attn_mult: float = setting(1.0, range=(0.0, 1e4), low_open=True, role=VALUE)
    # inverted dropout while training (never at eval or in a metric): the transformer's residual branches and attention
    # probabilities, the LSTM's outputs between layers and before the head; embed_dropout on the looked-up vectors.
    # Value keys: masks are a pure function of (seed, step, site); 0 = no dropout in the program at all
    dropout: float = setting(0.0, range=(0.0, 1.0), high_open=True, role=VALUE)
    embed_dropout: float = setting(0.0, range=(0.0, 1.0), high_open=True, role=VALUE)
    logit_scale: LogitScale = 1.0
    positions: Literal["learned", "sinusoidal", "none"] = "learned"
    num_layers: int = setting(2, range=(1, 256))
    num_heads: int = setting(4, range=(1, 1024))
    mlp_ratio: int = setting(4, range=(1, 64))
    window: int = setting(4, range=(1, 1024))  # mlp: previous tokens seen
    hidden_dim: int = setting(256, range=(1, 2**18))  # mlp: hidden width
    pad_id: int | None = None  # tokens equal to this are masked (attention keys and loss)
    # sp: standard; mup: μP (Yang et al. 2021) for Adam, width multiplier m = embed_dim / base_width (see docs/mup.md)
    parametrization: Literal["sp", "mup"] = "sp"
    base_width: int = setting(64, range=(1, 2**16))  # d₀: at embed_dim = base_width μP computes exactly what SP does
    # matmuls and activations; softmax, cross-entropy, layer-norm statistics and the metrics stay float32
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    # parameters (the optimizer state stays float32); a bfloat16 table loses row updates below its resolution
    param_dtype: Literal["float32", "bfloat16"] = "float32"
    # XLA's float32 matmul precision: default (TF32 on NVIDIA GPUs, one bfloat16 pass on TPUs), high, highest
    matmul_precision: Literal["default", "high", "highest"] = "default"


@dataclass(frozen=True)
class EmbeddingConfig:
    init: Literal["normal", "truncated_normal", "uniform", "scaled_normal", "xavier", "pretrained"] = "normal"
    init_std: float = setting(0.02, range=(0.0, 1e4), low_open=True, role=VALUE)  # σ
    scale: Scale = 1.0
    norm: Literal["none", "layernorm", "rmsnorm"] = "none"
    # a .npy (+ tokens), word2vec text/binary, GloVe, fastText .vec, .safetensors, a Hugging Face model folder or an
    # embjax run directory (embjax.model.pretrained); rows are matched to the vocabulary by token string, or by id
    pretrained_path: str | None = None
    # vocabulary rows the source lacks: init (N(0, σ²), σ the matched rows' std), mean, zero, or error
    pretrained_missing: Literal["init", "mean", "zero", "error"] = "init"
    # a source wider than model.embed_dim: error, pca (its d principal components), or truncate (its first d columns)
    pretrained_project: Literal["error", "pca", "truncate"] = "error"
    # false; true (every row); pretrained (the rows the pretrained source gave; filled rows train)
    freeze: Freeze = False
    # the step at which frozen rows start training (null: never)
    unfreeze_at: int | None = setting(None, range=(1, 10**9))
    # the input layer: a V×d table, ALBERT's factorized table, hash embeddings, or adaptive input clusters
    kind: Literal["table", "factorized", "hashed", "adaptive"] = "table"
    rank: int = setting(16, range=(1, 2**16))  # factorized: k (V·k + k·d parameters)
    buckets: int = setting(1024, range=(1, 2**24))  # hashed: B shared rows
    num_hashes: int = setting(2, range=(1, 16))  # hashed: h hash functions (and importance weights per token)
    hash_seed: int = setting(0, range=(0, 2**31 - 1))  # hashed: which hash functions (the same in every process)
    cutoffs: tuple[int, ...] = ()  # adaptive: frequency ranks where the 2nd, 3rd, ... clusters start
    cutoff_factor: int = setting(4, range=(1, 1024))  # adaptive: cluster c has width d / factor^c


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adamw", "adam", "sgd", "adafactor"] = "adamw"
    lr: float = setting(3e-3, range=(0.0, 1e3), low_open=True, role=VALUE)
    weight_decay: float = setting(0.0, range=(0.0, 1e3), role=VALUE)
    # None: same as weight_decay
    embed_weight_decay: float | None = setting(None, range=(0.0, 1e3), role=VALUE, falls_back_to="optim.weight_decay")
    b1: float = setting(0.9, range=(0.0, 1.0))
    b2: float = setting(0.95, range=(0.0, 1.0))
    momentum: float = setting(0.9, range=(0.0, 1.0))  # sgd
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = setting(50, range=(0, 10**9))
    grad_clip: float = setting(1.0, range=(0.0, 1e9), role=VALUE)  # global norm; 0 turns clipping off
    embed_lr_scale: float = setting(1.0, range=(0.0, 1e6), low_open=True, role=VALUE)  # × lr of the input table alone
    # × lr of the vectors alone (LayerNorm gains and biases, linear biases) and of the learned position table alone:
    # width-independent constants, as mup's base-width tuning sets them (docs/mup.md); 1 = the plain lr
    vector_lr_scale: float = setting(1.0, range=(0.0, 1e6), low_open=True, role=VALUE)
    pos_lr_scale: float = setting(1.0, range=(0.0, 1e6), low_open=True, role=VALUE)
    # the input layer's per-token rows decay at embed_weight_decay × (V·f_token)^(-power): rare rows more (0: uniform)
    embed_decay_freq_power: float = setting(0.0, range=(0.0, 2.0), role=VALUE)
    # dense: every row of every parameter moves each step (Adam's moments, weight decay); lazy: a per-token row of an
    # embedding table whose gradient is exactly 0 this step keeps its parameters and optimizer state (LazyAdam,
    # SparseAdam); bias correction keeps the global step count, as LazyAdam does (docs/metrics.md)
    row_updates: Literal["dense", "lazy"] = "dense"
    skip_nonfinite: bool = False  # skip a non-finite update instead of stopping the run
    # a member whose train loss stays above this (null: 10 · ln V) and above twice its first loss for
    # divergence_patience steps is diverged
    divergence_loss: float | None = setting(None, range=(0.0, 1e30), low_open=True)
    divergence_patience: int = setting(20, range=(1, 10**9))


@dataclass(frozen=True)
class LogConfig:
    every: int = setting(10, range=(1, 10**9))
    metrics_every: int = setting(100, range=(0, 10**9))  # full geometry metrics; 0 = only at the end
    eval_every: int = setting(100, range=(0, 10**9))  # 0 = only at the end
    wandb: bool = setting(True, role=IDENTITY)
    mode: Literal["offline", "online"] = setting("offline", role=IDENTITY)
    project: str = setting("embjax", role=IDENTITY)
    entity: str | None = setting(None, role=IDENTITY)
    group: str | None = setting(None, role=IDENTITY)
    tags: tuple[str, ...] = setting((), role=IDENTITY)
    # seconds W&B may take to start before the run goes on without it
    init_timeout: float = setting(30.0, range=(1.0, 3600.0), role=IDENTITY)
    progress: bool = setting(True, role=IDENTITY, resumable=True)
    # a sweep's W&B workspace (embjax.outputs.dashboard), saved when the sweep ends: null = when W&B logs online, true =
    # always (offline: written as <sweep>/wandb_workspace.json only), false = never
    wandb_workspace: bool | None = setting(None, role=IDENTITY, resumable=True)
    # word similarity benchmarks scored every metrics step on every table (docs/metrics.md): a name (wordsim353 |
    # simlex999: the files gensim ships), a "word word score" file, or a list of them
    word_similarity: str | tuple[str, ...] | None = setting(None, role=IDENTITY, resumable=True)
    # word analogy benchmarks, the same way: google (the Google analogies gensim ships) or a file in its format
    analogy: str | tuple[str, ...] | None = setting(None, role=IDENTITY, resumable=True)
    # "A:B": a jax.profiler trace of steps A+1..B in <run>/profile (TensorBoard's profile plugin or Perfetto); "" off
    profile_steps: str = setting("", role=IDENTITY, resumable=True)
    # float16 copies of the embedding rows for the viewer (embedding_space.html); null = about 50 frames per run
    # (the multiple of log.every nearest steps/50), 0 = none
    snapshot_every: int | None = setting(None, range=(0, 10**9), resumable=True)
    # stop a member after this many evals (every eval_every steps) without a lower eval loss; 0 = never
    patience: int = setting(0, range=(0, 10**6))


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = setting(500, range=(0, 10**9))  # 0 = only at the end
    keep: int = setting(2, range=(1, 1000))
    # also keep the state of the lowest eval loss (evals after step 0) in best_checkpoint/; summary.json gains best/*
    keep_best: bool = False


@dataclass(frozen=True)
class MeshConfig:
    # a preempted run may come back on another device count or mesh shape: neither changes what a step computes
    data: int = setting(1, range=(1, 2**16), resumable=True)
    model: int = setting(1, range=(1, 2**16), resumable=True)
    # seconds a process of a multi-process run waits for the others: to agree on the config at the start (then one
    # line, exit 2) and, during training, without progress (then one line, exit 1)
    wait_timeout: float = setting(300.0, range=(1.0, 86400.0), role=IDENTITY, resumable=True)


@dataclass(frozen=True)
class Config:
    # name and out_dir place a run: a run directory moved or copied elsewhere resumes there
    name: str = setting("default", role=IDENTITY, resumable=True)
    seed: int = setting(0, range=(0, 2**31 - 1), role=VALUE)  # the init and data-stream key
    steps: int = setting(1000, range=(1, 10**9), resumable=True)  # a resume may extend a run
    # a text corpus: passes over the training stream; steps = ceil(epochs × training tokens / (batch_size × seq_len)),
    # derived when the corpus is read (selection.resolve_epochs) and stored; a steps given beside it must agree
    epochs: int | None = setting(None, range=(1, 10**6), resumable=True)
    out_dir: str = setting("runs", role=IDENTITY, resumable=True)
    # JAX's persistent compilation cache: "auto" = $EMBJAX_CACHE_DIR or ~/.cache/embjax/xla; "" = off
    compile_cache: str = setting("auto", role=IDENTITY, resumable=True)
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
# What the declarations say, derived from them alone


_DEFAULT_DECL = {"range": None, "role": SHAPE, "resumable": False, "falls_back_to": None}


def declarations(cls: type | None = None, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every leaf key (dotted) -> its declaration (range, role, resumable, falls_back_to)."""
    cls = cls or Config
    hints = typing.get_type_hints(cls)
    out: dict[str, dict[str, Any]] = {}
    for f in fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(declarations(hints[f.name], f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = {**_DEFAULT_DECL, **f.metadata}
    return out


def keys_with(role: str | None = None, resumable: bool | None = None) -> tuple[str, ...]:
    """The dotted keys declared with a role (and/or resumable), in declaration order."""
    return tuple(
        k
        for k, d in declarations().items()
        if (role is None or d["role"] == role) and (resumable is None or d["resumable"] == resumable)
    )


def get(cfg: Any, key: str) -> Any:
    """cfg's value at a dotted key."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def values(cfg: Config) -> dict[str, Any]:
    """The per-member values of cfg (dotted key -> value, fallbacks resolved)."""
    decl = declarations()
    out = {}
    for key in keys_with(VALUE):
        v, fallback = get(cfg, key), decl[key]["falls_back_to"]
        out[key] = get(cfg, fallback) if v is None and fallback else v
    return out


class PerMember:
    """Stands for a value key in the config a shared program sees: using it as a number is an error,
    since a vmapped sweep group would otherwise compute every member with the first member's value."""

    def __init__(self, key: str):
        self.key = key

    def __repr__(self) -> str:
        return f"PerMember({self.key!r})"

    def _refuse(self, *_: Any) -> Any:
        raise TypeError(f"{self.key} is a per-member value: read it from the train state's hp, not from the config")

    __bool__ = __float__ = __int__ = __index__ = __neg__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __pow__ = _refuse
    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _refuse  # (`x is None` cannot be caught: don't write it)
    __hash__ = object.__hash__


def without_values(cfg: Config) -> Config:
    """cfg with every value key replaced by a PerMember placeholder: what a shared program may read."""
    sections: dict[str, dict[str, Any]] = {}
    for key in keys_with(VALUE):
        section, _, leaf = key.rpartition(".")
        sections.setdefault(section, {})[leaf] = PerMember(key)
    top = sections.pop("", {})
    for section, repl in sections.items():
        top[section] = dataclasses.replace(getattr(cfg, section), **repl)
    return dataclasses.replace(cfg, **top)


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


def _check_range(key: str, value: Any, rng: tuple | None) -> None:
    if rng is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    lo, hi, lo_incl, hi_incl = rng
    ok = (value >= lo if lo_incl else value > lo) and (value <= hi if hi_incl else value < hi)
    if not ok:
        low, high = "[" if lo_incl else "(", "]" if hi_incl else ")"
        raise ConfigError(f"{key}: got {value!r}; allowed: a value in {low}{lo:g}, {hi:g}{high}")


def _build(cls: type, raw: Any, prefix: str, decl: dict[str, dict[str, Any]]) -> Any:
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
            kwargs[key] = _build(tp, value, f"{full}.", decl)
        else:
            kwargs[key] = _coerce(full, value, tp)
            _check_range(full, kwargs[key], decl[full]["range"])
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    """Checks that involve more than one key."""
    m, d, e = cfg.model, cfg.data, cfg.embedding
    _validate_model(m)
    if d.kind == "text" and not d.path and not d.dataset:
        raise ConfigError(
            "data.path: got null with data.kind='text'; allowed: a text, JSON-lines or Parquet file, a "
            "folder of them or a glob pattern (or data.dataset)"
        )
    if d.kind == "planted" and (d.tokenizer_file or d.dataset):
        key = "data.tokenizer_file" if d.tokenizer_file else "data.dataset"
        raise ConfigError(
            f"{key}: got {d.tokenizer_file or d.dataset!r} with data.kind='planted'; allowed: null, or data.kind=text"
        )
    if not re.fullmatch(r"all|\d+/[1-9]\d*", d.documents) or (
        d.documents != "all" and int(d.documents.split("/")[0]) >= int(d.documents.split("/")[1])
    ):
        raise ConfigError(
            f"data.documents: got {d.documents!r}; allowed: 'all' or 'i/n' with 0 <= i < n (e.g. '0/2', '1/2')"
        )
    if d.kind == "text" and d.tokenizer == "byte" and not d.tokenizer_file and d.vocab_size != 256:
        raise ConfigError(f"data.vocab_size: got {d.vocab_size} with data.tokenizer='byte'; allowed: 256")
    if d.kind == "planted" and d.num_classes > d.vocab_size:
        raise ConfigError(
            f"data.num_classes: got {d.num_classes} with data.vocab_size={d.vocab_size}; allowed: at most vocab_size"
        )
    _validate_freeze(e)
    if e.init == "pretrained" and not e.pretrained_path:
        raise ConfigError(
            "embedding.pretrained_path: got null with embedding.init='pretrained'; "
            "allowed: a .npy, word2vec, GloVe, fastText or .safetensors file, a Hugging Face model folder or a run"
        )
    if e.pretrained_path and e.init != "pretrained":  # a source that would be ignored: never silently
        raise ConfigError(
            f"embedding.pretrained_path: got {e.pretrained_path!r} with embedding.init={e.init!r}; allowed: null, "
            "or a source with embedding.init=pretrained"
        )
    if m.pad_id is not None and not 0 <= m.pad_id < d.vocab_size:
        raise ConfigError(f"model.pad_id: got {m.pad_id}; allowed: null or an id in [0, {d.vocab_size})")
    if m.parametrization == "mup":
        _validate_mup(cfg)
    if e.kind != "table":
        _validate_kind(cfg)
    _validate_optim(cfg)
    _validate_benchmarks("log.word_similarity", cfg.log.word_similarity, SIMILARITY_NAMES, "'word word score'")
    _validate_benchmarks("log.analogy", cfg.log.analogy, ANALOGY_NAMES, "': section' / 'a b c d'")
    if cfg.epochs is not None and d.kind != "text":
        raise ConfigError(
            f"epochs: got {cfg.epochs} with data.kind={d.kind!r} (an endless stream has no epochs); allowed: null "
            "(and steps), or epochs with a text corpus (data.kind=text)"
        )
    if cfg.log.profile_steps and cfg.steps:  # (steps 0: derived from epochs later, checked then)
        profile_range(cfg.log.profile_steps, cfg.steps)
    if not cfg.name or "/" in cfg.name or cfg.name in (".", ".."):
        raise ConfigError(f"name: got {cfg.name!r}; allowed: a non-empty name without '/'")


def _validate_model(m: ModelConfig) -> None:
    if m.kind == "transformer" and m.embed_dim % m.num_heads:
        raise ConfigError(
            f"model.num_heads: got {m.num_heads} with model.embed_dim={m.embed_dim}; allowed: a divisor of embed_dim"
        )
    if m.kind in ("linear", "mlp") and m.dropout > 0:
        raise ConfigError(
            f"model.dropout: got {m.dropout:g} with model.kind={m.kind!r} (no layers to drop between); allowed: 0, "
            "or model.kind transformer | lstm (model.embed_dropout works with every kind)"
        )


def uses_dropout(cfg: Config) -> bool:
    """Whether a run's program has dropout at all (a rate above 0). The rates are values, but a program without
    dropout draws no masks, so a run at rate 0 computes exactly what it computed before dropout existed."""
    return cfg.model.dropout > 0 or cfg.model.embed_dropout > 0


def hparams(cfg: Config) -> dict[str, float]:
    """The per-member values a train state carries in `hp`, by leaf name (derived from the config's
    declarations: every value key except the seed, which enters as the init and data key)."""
    hp = {key.rpartition(".")[2]: v for key, v in values(cfg).items() if key != "seed"}
    assert len(hp) == len(keys_with(VALUE)) - 1, "value keys need distinct leaf names"
    if not uses_dropout(cfg):  # a program without dropout carries no rates: its state is what it was before them
        del hp["dropout"], hp["embed_dropout"]
    return hp


SIMILARITY_NAMES = ("wordsim353", "simlex999")  # embjax.analysis.evals maps each to the file gensim ships
ANALOGY_NAMES = ("google",)


def _validate_benchmarks(key: str, value: str | tuple[str, ...] | None, names: tuple[str, ...], form: str) -> None:
    for item in () if value is None else (value,) if isinstance(value, str) else value:
        if item not in names and not (os.path.isfile(item) and os.path.getsize(item) > 0):
            raise ConfigError(
                f"{key}: got {item!r}; allowed: null, {' | '.join(names)}, an existing non-empty {form} file, "
                f"or a list of them (e.g. [{', '.join(names)}])"
            )


def _validate_freeze(e: EmbeddingConfig) -> None:
    if e.freeze == "pretrained" and e.init != "pretrained":
        raise ConfigError(
            f"embedding.freeze: got 'pretrained' with embedding.init={e.init!r}; allowed: true or false, or "
            "'pretrained' with embedding.init=pretrained"
        )
    if e.unfreeze_at is not None and e.kind != "table":
        raise ConfigError(
            f"embedding.unfreeze_at: got {e.unfreeze_at} with embedding.kind={e.kind!r}; allowed: null, or a step "
            "with kind 'table' (other layers' shared arrays are frozen for good or not at all)"
        )
    if e.unfreeze_at is not None and e.freeze is False:
        raise ConfigError(
            f"embedding.unfreeze_at: got {e.unfreeze_at} with embedding.freeze=false; allowed: null, or a step "
            "with embedding.freeze true or 'pretrained'"
        )


def _validate_optim(cfg: Config) -> None:
    e = cfg.embedding
    o = cfg.optim
    embed_wd = o.weight_decay if o.embed_weight_decay is None else o.embed_weight_decay
    if o.embed_decay_freq_power > 0 and (embed_wd == 0 or e.kind == "adaptive"):
        raise ConfigError(
            f"optim.embed_decay_freq_power: got {o.embed_decay_freq_power:g} with "
            + (
                "embedding.kind='adaptive' (no per-token rows)"
                if e.kind == "adaptive"
                else "an embedding weight decay of 0"
            )
            + "; allowed: 0, or a table, factorized or hashed "
            "layer with optim.embed_weight_decay (or weight_decay) > 0"
        )
    if o.row_updates == "lazy" and o.name == "adafactor":
        raise ConfigError(
            "optim.row_updates: got 'lazy' with optim.name='adafactor' (its factored second moment is shared "
            "by rows); allowed: 'lazy' with adamw, adam or sgd, or 'dense'"
        )


def _validate_kind(cfg: Config) -> None:
    e, V = cfg.embedding, cfg.data.vocab_size
    if e.init == "pretrained":
        raise ConfigError(
            f"embedding.init: got 'pretrained' with embedding.kind={e.kind!r}; allowed: pretrained "
            "with kind 'table' (a pretrained matrix is a table)"
        )
    if cfg.model.parametrization == "mup":
        raise ConfigError(
            f"model.parametrization: got 'mup' with embedding.kind={e.kind!r}; allowed: 'mup' with "
            "kind 'table', or 'sp'"
        )
    if e.kind == "adaptive" and (
        not e.cutoffs or list(e.cutoffs) != sorted(set(e.cutoffs)) or e.cutoffs[0] <= 0 or e.cutoffs[-1] >= V
    ):
        raise ConfigError(
            f"embedding.cutoffs: got {list(e.cutoffs)} with embedding.kind='adaptive'; allowed: "
            f"increasing frequency ranks in (0, {V}), e.g. [{max(1, V // 20)}, {max(2, V // 4)}]"
        )


def _validate_mup(cfg: Config) -> None:
    m, o = cfg.model, cfg.optim
    if m.kind in ("mlp", "lstm"):
        why = "whose hidden_dim does not grow with embed_dim" if m.kind == "mlp" else "no μP rules for its recurrence"
        raise ConfigError(
            f"model.parametrization: got 'mup' with model.kind={m.kind!r}, {why}; allowed: 'mup' with model.kind "
            "transformer or linear, or 'sp'"
        )
    if o.name not in ("adam", "adamw"):
        raise ConfigError(
            f"model.parametrization: got 'mup' with optim.name={o.name!r}; allowed: 'mup' with adam or "
            "adamw (its per-layer learning rates are Adam's), or 'sp'"
        )
    if cfg.embedding.scale == "sqrt_d" or m.logit_scale == "inv_sqrt_d":
        raise ConfigError(
            "model.parametrization: got 'mup' with a width-dependent multiplier (embedding.scale=sqrt_d "
            "or model.logit_scale=inv_sqrt_d); allowed: numbers (μP sets the width scaling itself)"
        )
    if m.kind == "transformer" and m.base_width % m.num_heads:
        raise ConfigError(
            f"model.base_width: got {m.base_width} with model.num_heads={m.num_heads}; allowed: a "
            "multiple of num_heads (μP keeps the head count and scales the head width)"
        )


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
    if re.fullmatch(r"\d+:\d+", text):  # a step range (log.profile_steps), not YAML 1.1's base-60 integer
        return text
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


def read_run_config(path: str) -> dict:
    """A run's stored config.yaml as a raw mapping. Runs made before embedding.pretrained_path without
    embedding.init=pretrained was refused stored such a path, which their training never read: it reads as null."""
    raw = read_yaml(path)
    e = raw.get("embedding")
    if isinstance(e, dict) and e.get("pretrained_path") and e.get("init", "normal") != "pretrained":
        raw["embedding"] = {**e, "pretrained_path": None}
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
    """A validated Config from raw data. With epochs and no steps given, steps is 0 until the corpus is read
    (selection.resolve_epochs derives it)."""
    if raw.get("epochs") is not None and raw.get("steps") == 0:  # (such a config written back and read again)
        raw = {k: v for k, v in raw.items() if k != "steps"}
    cfg = _build(Config, raw, "", declarations())
    if cfg.epochs is not None and "steps" not in raw:
        cfg = dataclasses.replace(cfg, steps=0)
    d = cfg.data
    if d.kind == "text" and d.tokenizer_file:  # the tokenizer's vocabulary defines V unless V is given (to pad)
        n = tokenizer_file_size(d.tokenizer_file)
        if "vocab_size" not in (raw.get("data") or {}):
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(d, vocab_size=n))
        elif d.vocab_size < n:
            raise ConfigError(
                f"data.vocab_size: got {d.vocab_size} with data.tokenizer_file={d.tokenizer_file!r} "
                f"({n} ids); allowed: at least {n} (e.g. --data.vocab_size={n}), or no data.vocab_size in "
                "the config and overrides to take the tokenizer's size"
            )
    _validate(cfg)
    return cfg


def tokenizer_file_size(path: str) -> int:
    """The table size a Hugging Face tokenizer.json needs: its largest id (added tokens included) + 1 (ids may
    have gaps, so this is not always the number of entries), or a ConfigError."""
    from tokenizers import Tokenizer

    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise ConfigError(f"data.tokenizer_file: got {path!r}; allowed: an existing Hugging Face tokenizer.json file")
    try:
        return max(Tokenizer.from_file(path).get_vocab(with_added_tokens=True).values(), default=-1) + 1
    except Exception as err:  # noqa: BLE001 - the Rust side raises a bare Exception
        raise ConfigError(
            f"data.tokenizer_file: got {path!r}, which does not parse as a Hugging Face tokenizer.json "
            f"({str(err).splitlines()[0][:120] if str(err) else type(err).__name__})"
        ) from None


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


def profile_range(text: str, steps: int) -> tuple[int, int]:
    """log.profile_steps "A:B" -> (A, B): the steps after A up to B are traced (0 ≤ A < B ≤ steps)."""
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
    if not m or not int(m[1]) < int(m[2]) <= steps:
        raise ConfigError(f"log.profile_steps: got {text!r}; allowed: '' or 'A:B' with 0 <= A < B <= steps ({steps})")
    return int(m[1]), int(m[2])


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
