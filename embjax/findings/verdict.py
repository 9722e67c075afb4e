"""The verdict rule: a check's per-seed values against its claimed interval, and what a finding declares.

Every check reduces the runs to one number per seed (a paired difference, a ratio, a fitted
slope) and asks whether their mean lies in the claimed interval [lo, hi]. With m the mean and s its
standard error over the n seeds, the band is m ± 2s:
  reproduced      the whole band lies inside [lo, hi]
  not reproduced  the whole band lies outside it
  inconclusive    the band straddles an edge (within noise), or fewer than 2 seeds
A benchmark check (a ρ on human similarity judgments, or a difference of ρs) also carries its sampling noise: its
runs share one sample of the benchmark's pairs, which no number of seeds averages out. Such a check is given the
percentile interval of a two-level bootstrap over seeds and pairs (embjax.findings.bootstrap) and the same rule
reads that interval instead of the band; when it straddles, the check names the noise that dominated (seeds or
pairs), and it states the smallest distance from the threshold its design resolves (2 bootstrap standard errors);
with fewer than 2 seeds it is inconclusive, as a seed band is.
A finding is reproduced when all its checks are, not reproduced when any check is not, else inconclusive.

Pure: nothing here reads or writes a file (stage_file only asks whether a stage's file exists).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"

Table = tuple[list[str], list[list[str]]]  # a finding's table: column names, rows of cells


def band(values: Any) -> tuple[float, float, float]:
    """(mean, lower, upper) of the mean ± 2 standard errors over seeds (nan band with < 2 values)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if v.size < 2:
        m = float(v.mean()) if v.size else float("nan")
        return m, float("nan"), float("nan")
    m, se = float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))
    return m, m - 2 * se, m + 2 * se


def interval_verdict(values: Any, lo: float = -math.inf, hi: float = math.inf) -> str:
    """The verdict for 'the per-seed values' mean lies in [lo, hi]' (see the module docstring)."""
    _, low, up = band(values)
    return interval_rule(low, up, lo, hi)


def interval_rule(low: float, up: float, lo: float = -math.inf, hi: float = math.inf) -> str:
    """An interval [low, up] against the claimed [lo, hi]: inside, outside, or straddling an edge (or undefined)."""
    if not (np.isfinite(low) and np.isfinite(up)):
        return INCONCLUSIVE
    if lo <= low and up <= hi:
        return REPRODUCED
    if up < lo or low > hi:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def combine(verdicts: list[str]) -> str:
    if verdicts and all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return NOT_REPRODUCED if NOT_REPRODUCED in verdicts else INCONCLUSIVE


@dataclass
class Check:
    claim: str
    criterion: str
    values: list[float]  # one per seed
    lo: float = -math.inf
    hi: float = math.inf
    verdict: str = ""
    # a benchmark check: the seeds × pairs bootstrap (embjax.findings.bootstrap.Bootstrap) whose interval the rule
    # reads instead of the seed band; None for every other check
    boot: Any = None
    noise: str | None = None  # when a bootstrap interval straddles: "seeds" or "pairs", the larger noise

    def __post_init__(self):
        if self.boot is None:
            self.verdict = interval_verdict(self.values, self.lo, self.hi)
        elif self.boot.seeds < 2:  # as the seed band: one seed cannot say how much training noise there is
            self.verdict = INCONCLUSIVE
        else:
            self.verdict = interval_rule(self.boot.lo, self.boot.hi, self.lo, self.hi)
            self.noise = self.boot.dominant if self.verdict == INCONCLUSIVE else None

    def summary(self) -> str:
        if self.boot is None:
            m, low, up = band(self.values)
            return f"{m:+.3f} [{low:+.3f}, {up:+.3f}] (n = {len(self.values)})"
        b = self.boot
        out = f"{b.estimate:+.3f} [{b.lo:+.3f}, {b.hi:+.3f}] over seeds × pairs ({b.seeds} seeds × {b.pairs} pairs)"
        out += f"; resolves ±{b.resolvable:.3f}"
        return out + (f"; {self.noise} noise dominates" if self.noise else "")


# --quick on real text is a pipeline check, not a small experiment: tables of d = 32 (at d = 200 the W&B projector
# table of 8,192 × 200 values alone costs about 8 s a run) and 4 eval batches; a baseline stage's dim goes with it
TEXT_QUICK = {"steps": 60, "parameters": {"seed": [0]}, "settings": {"model.embed_dim": 32, "data.eval_batches": 4}}
TEXT_NEEDS_QUICK = {"epochs": 1, "dim": 32}


BASELINES = os.path.join("experiments", "configs", "findings", "baselines")  # stages that are not W&B sweeps


def stage_file(name: str) -> str:
    """A finding's sweep or stage file: BASELINES/<name>.yaml for a baseline stage, else sweeps/findings/<name>.yaml
    (paths from the repository root, where the findings run)."""
    baseline = os.path.join(BASELINES, f"{name}.yaml")
    return baseline if os.path.isfile(baseline) else os.path.join("sweeps", "findings", f"{name}.yaml")


@dataclass
class Finding:
    name: str
    title: str
    claim: str
    source: str
    protocol: str
    criterion: str
    sweep: str  # sweeps/findings/<sweep>.yaml
    analyse: Callable[[list[dict]], tuple[list[Check], list[tuple[str, str]]]]  # -> checks, (label, numbers) rows
    plot: Callable[[list[dict], str], bool] | None = None
    # --quick: {"steps": N, "parameters": {key: values}, "settings": {key: value}} (settings: config keys set
    # under the members' swept values, e.g. TEXT_QUICK)
    quick: dict = field(default_factory=dict)
    # a stage run first (a sweep of one run, or a baseline stage: see references) whose run directory becomes the
    # pretrained arms' embedding.pretrained_path (and its --quick settings: steps, or a baseline's epochs and dim)
    needs: str | None = None
    needs_quick: dict = field(default_factory=dict)
    # more sweeps whose runs join this finding's (arms a grid cannot express: a combination another arm's key
    # refuses, such as embedding.freeze=pretrained with embedding.init=normal)
    also: tuple[str, ...] = ()
    # what the protocol varies, holds fixed, and what could still confound it (findings.md's "Audit")
    audit: str = ""
    # baseline stages (sweeps/findings/<name>.yaml with a `baseline:` key: word2vec or fastText on a config's
    # tokens) whose run directories join this finding's runs, as reference rows
    references: tuple[str, ...] = ()
    # the planted finding this one tries on real language (findings.md's summary puts them on one row)
    sibling_of: str | None = None
    # what it is measured on: "planted" (the embedded corpus) or "real text" (findings.md's two verdict columns)
    corpus: str = "planted"
    # the effect each benchmark check tests and the smallest its design resolves, stated before the run
    power: str = ""


def evaluate(finding: Finding, runs: list[dict]) -> tuple[str, list[Check], Table]:
    """The finding's verdict on these runs, its checks and its table."""
    checks, table = finding.analyse(runs)
    return combine([c.verdict for c in checks]), checks, table
