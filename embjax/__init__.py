"""embjax: a JAX/Flax research suite for studying token embeddings.

The names a user's own code needs are importable from here (docs/api.md); each loads its wing on first use, so
`import embjax` imports no JAX and does no JAX work. The wings: model (embedding layers, language models,
pretrained tables), data (sources, tokenizers, corpora), analysis (geometry metrics, benchmarks, scaling fits),
runtime (meshes, signals, checkpoints), train (step, loop, runs and sweeps, the word2vec baseline) and outputs
(run directories, sinks, the page, reports, dashboards).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it (module:name where the two names differ)
_EXPORTS = {
    # embedding layers and models (embjax.model)
    "TokenEmbedding": "embjax.model.embedding",
    "FactorizedEmbedding": "embjax.model.embedding",
    "HashedEmbedding": "embjax.model.embedding",
    "AdaptiveEmbedding": "embjax.model.embedding",
    "cosine": "embjax.model.embedding",
    "save_word2vec": "embjax.model.embedding",
    "build_model": "embjax.model.models",
    "EmbeddingLM": "embjax.model.models",
    "TransformerLM": "embjax.model.models",
    "read_source": "embjax.model.pretrained",
    "Source": "embjax.model.source",
    "align": "embjax.model.align",
    "Alignment": "embjax.model.align",
    # measuring tables (embjax.analysis)
    "embedding_report": "embjax.analysis.metrics",
    "nearest_neighbors": "embjax.analysis.neighbors",
    "word_similarity": "embjax.analysis.evals",
    # configs, corpora and training (embjax.config, embjax.data, embjax.train)
    "Config": "embjax.config",
    "ConfigError": "embjax.config",
    "load_config": "embjax.config",
    "make_corpus": "embjax.data.corpus",
    "prepare": "embjax.data.prepare",
    "train_run": "embjax.train.runner:train",  # (embjax.train is the wing)
    "train_group": "embjax.train.runner",
    "run_sweep": "embjax.train.runner",
    # reading runs back (embjax.outputs)
    "load_runs": "embjax.outputs.runs",
    "make_report": "embjax.outputs.report",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'embjax' has no attribute {name!r}")
    module, _, attr = _EXPORTS[name].partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
