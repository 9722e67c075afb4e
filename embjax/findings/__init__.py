"""Findings: published results about token embeddings, reproduced by shipped sweeps, each with a verdict computed
from the numbers by a pure analysis function.

A finding is one module here (claim, source, protocol, audit, checks, analysis, table, plot: its `FINDING`), over
the verdict rule (`verdict`), the run readers (`runs`), shared plot helpers (`plotting`), the seeds x pairs bootstrap
of benchmark correlations (`bootstrap`), a run's per-pair benchmark data (`pairs`) and its tables against a random
one (`learned`); `document` writes findings.md and the W&B findings runs. MODULES below is the order findings.md
shows them in. A finding states its claim, source, protocol and pass criterion before anything runs; its analysis
reads only what runs write (config.yaml, summary.json, metrics.jsonl, and for some checks the final tables).
"""

from __future__ import annotations

from . import (
    frequency_rows,
    frequency_rows_text,
    mup_coord_check,
    mup_lr_transfer,
    pretrained_start,
    pretrained_start_text,
    row_sparse_updates,
    similarity_emerges,
    small_sigma_preln,
    softmax_bottleneck,
    tied_vs_untied,
    tied_vs_untied_text,
    tying_anisotropy,
    tying_anisotropy_text,
    width_small_data,
    width_small_data_text,
)
from .verdict import Finding

MODULES = [
    tying_anisotropy,
    frequency_rows,
    small_sigma_preln,
    softmax_bottleneck,
    tied_vs_untied,
    mup_coord_check,
    mup_lr_transfer,
    row_sparse_updates,
    pretrained_start,
    width_small_data,
    # on real language: the siblings of findings 1, 2, 5, 9 and 10, and the lesson's "why similarity emerges"
    tying_anisotropy_text,
    frequency_rows_text,
    tied_vs_untied_text,
    similarity_emerges,
    pretrained_start_text,
    width_small_data_text,
]
FINDINGS: list[Finding] = [m.FINDING for m in MODULES]
BY_NAME = {f.name: f for f in FINDINGS}
