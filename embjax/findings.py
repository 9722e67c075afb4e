"""Findings: published results about token embeddings, reproduced by shipped sweeps, each with a verdict
computed from the numbers by a pure analysis function.

A finding states its claim, source, protocol and pass criterion before anything runs (FINDINGS below);
its analysis reads only what runs write (config.yaml, summary.json, metrics.jsonl, and for one check
the final tables), so it works as well on runs a `wandb agent` made elsewhere and copied back.

Verdicts. Every check reduces the runs to one number per seed (a paired difference, a ratio, a fitted
slope) and asks whether their mean lies in the claimed interval [lo, hi]. With m the mean and s its
standard error over the n seeds, the band is m ± 2s:
  reproduced      the whole band lies inside [lo, hi]
  not reproduced  the whole band lies outside it
  inconclusive    the band straddles an edge (within noise), or fewer than 2 seeds
A finding is reproduced when all its checks are, not reproduced when any check is not, else inconclusive.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .report import _coord_points as report_coord_points
from .report import _get, _load_runs, plot_coord_check, plot_lr_transfer
from .report import _lr_analysis as report_lr_analysis
from .scaling import coord_slopes, loglog_slope

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


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

    def __post_init__(self):
        self.verdict = interval_verdict(self.values, self.lo, self.hi)

    def summary(self) -> str:
        m, low, up = band(self.values)
        return f"{m:+.3f} [{low:+.3f}, {up:+.3f}] (n = {len(self.values)})"


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
    quick: dict = field(default_factory=dict)  # --quick: {"steps": N, "parameters": {key: values}}
    # a sweep run first whose one run directory becomes embedding.pretrained_path (and its --quick steps)
    needs: str | None = None
    needs_quick: dict = field(default_factory=dict)
    # more sweeps whose runs join this finding's (arms a grid cannot express: a combination another arm's key
    # refuses, such as embedding.freeze=pretrained with embedding.init=normal)
    also: tuple[str, ...] = ()


# The protocol audit (issue 22): per finding, what varies, what is held fixed, and what could still confound it
AUDITS = {
    "tying_anisotropy": "Varied: tying × σ_E ∈ {0.02, 0.2, 1} × seed. Held fixed: data, model, optimizer, steps, "
    "and (since model.head_init_std) the untied head's init at 0.02 whatever σ_E; before, the head was drawn with "
    "σ_E, so σ moved the output logits too. Could confound: an untied model has a second table (more parameters) "
    "and its input table receives only input-side gradients, which is the mechanism under test, not a confound.",
    "frequency_rows": "Varied: tying × embedding weight decay {0, 0.5} × seed (σ_E = 0.02, head 0.02). Held fixed: "
    "data (Zipf 1.1), model, optimizer, steps. Could confound: the decay also applies to the untied head "
    "(embed_weight_decay covers every embedding table), so the decay check moves the readout too.",
    "small_sigma_preln": "Varied: σ_E × embedding scale {1, √d} × seed. Held fixed: the untied head at 0.02, no "
    "position table, data, model, optimizer. Could confound: nothing known; before this protocol the head moved "
    "with σ, learned positions capped the LayerNorm input's scale, and block-0 parameter gradients (which carry "
    "no 1/σ) were measured.",
    "softmax_bottleneck": "Varied: d × seed (linear LM, untied). Held fixed: corpus and its logit rank, optimizer, "
    "steps. Could confound: 1,500 steps may leave small-d models short of their optimum, which would overstate "
    "the fall below r; the head's init is fixed at 0.02 and E's σ is 0.02 at every d.",
    "tied_vs_untied": "Varied: tying × seed (the σ_E = 0.02 members of the tying sweep; head 0.02, as before). "
    "Held fixed: data, model, optimizer, steps. Could confound: the untied model has twice the embedding "
    "parameters; the same lr serves both.",
    "mup_coord_check": "Varied: parametrization × width × seed. Held fixed: lr, base width, data, steps; queries "
    "start at zero in SP and μP alike (model.zero_query_init, as mup's example; before issue 22 they did not, and "
    "the check also counted logged step 1, which is the initialisation's forward pass: now steps 2–5, after ≥ 1 "
    "update). Could confound: the model is tied, so the table is also the readout (× 1/m); at these widths "
    "(K = 8 … 64 per head) the queries a few Adam steps make are mostly random relative to the keys, so the "
    "1/K-scaled scores shrink with width (their q–k alignment falls like 1/√K). microsoft/mup itself shows the "
    "same on this model and these batches: step for step equal to embjax from the same init, and from its own "
    "init attention slopes −0.49/−0.56 at step 2 and −0.07/−0.19 (±0.1 over seeds) at step 20 (docs/mup.md), "
    "so a failed attention check here is μP's finite-width behaviour, not a departure from mup.",
    "pretrained_start": "Varied: E's start (scratch, pretrained) × frozen (no rows, all rows, the pretrained rows "
    "only) × seed. Held fixed: vocabulary, model, optimizer, fine-tuning data and budget; the source is one "
    "pretraining run, which lacks the 128 rarest tokens (filled by embedding.pretrained_missing=init, σ matched "
    "to the pretrained rows). Could confound: the pretrained table's scale differs from σ = 0.02 (its rows grew "
    "in pretraining), so 'pretrained' also moves the input scale; the frozen arms train fewer parameters at the "
    "same lr; only the input table is transferred (the blocks start fresh), which is the lesson's setting, not a "
    "full fine-tune; 'steps to reach' is measured at the eval interval (50 steps), so it cannot resolve less.",
    "width_small_data": "Varied: d × seed. Held fixed: data, steps, optimizer and its lr (SP: not retuned per "
    "width). Could confound: 'little data' here is a small token budget from an unlimited stream (no example is "
    "seen twice), so a bigger d cannot overfit; what can hold it back is optimisation at one lr in SP (the "
    "best lr falls with width, finding 7), not variance.",
    "mup_lr_transfer": "Varied: parametrization × width × lr × seed. Held fixed: data, steps, base width, and μP's "
    "base-width constants, tuned at d₀ by sweeps/mup_base.yaml before this run (zero queries, readout × 8, "
    "attention × 2, position lr × 1/8, vector lr × 1/4; SP uses the same constants). Could confound: the tuning "
    "used the same task and seeds 0–1 (seeds 0–2 here), so d₀'s loss is optimistic for both parametrisations alike.",
}


# ---------------------------------------------------------------------------------------
# Reading runs


def final(run: dict, key: str) -> float | None:
    """A run's final value of `key`: summary.json, else the last metrics row holding it."""
    v = run["summary"].get(key)
    if isinstance(v, (int, float)):
        return float(v)
    for row in reversed(run["rows"]):
        if isinstance(row.get(key), (int, float)):
            return float(row[key])
    return None


def first(run: dict, key: str) -> float | None:
    for row in run["rows"]:
        if isinstance(row.get(key), (int, float)):
            return float(row[key])
    return None


def select(runs: list[dict], **where: Any) -> dict[int, dict]:
    """{seed: run} among finished runs whose config matches every dotted key (given with __ for dots)."""
    out = {}
    for r in runs:
        if r["summary"].get("status") != "finished":
            continue
        if all(_close(_get(r["cfg"], k.replace("__", ".")), v) for k, v in where.items()):
            out[int(_get(r["cfg"], "seed") or 0)] = r
    return out


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def paired(a: dict[int, dict], b: dict[int, dict], fn: Callable[[dict, dict], float | None]) -> list[float]:
    """fn(a_seed, b_seed) for every seed both sides have."""
    return [v for s in sorted(set(a) & set(b)) if (v := fn(a[s], b[s])) is not None]


def per_seed(side: dict[int, dict], fn: Callable[[dict], float | None]) -> list[float]:
    return [v for s in sorted(side) if (v := fn(side[s])) is not None]


def mean_sd(values: list[float]) -> str:
    v = np.asarray([x for x in values if x is not None], np.float64)
    if not v.size:
        return "–"
    return f"{v.mean():.3f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.3f}"


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) of two row-aligned matrices: ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), columns centred."""
    X = np.asarray(X, np.float64) - np.mean(X, axis=0)
    Y = np.asarray(Y, np.float64) - np.mean(Y, axis=0)
    return float(np.sum((Y.T @ X) ** 2) / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)))


def _table(run: dict, name: str) -> np.ndarray | None:
    path = os.path.join(run["dir"], name)
    return np.load(path) if os.path.exists(path) else None


def _values(runs: list[dict], key: str) -> list:
    return sorted({v for r in runs if (v := _get(r["cfg"], key)) is not None}, key=lambda x: (isinstance(x, str), x))


def _early(run: dict, key: str, last: int = 5) -> float | None:
    """The mean of `key` over the logged steps 1..last (the early-training value)."""
    v = [row[key] for row in run["rows"] if 1 <= row["step"] <= last and isinstance(row.get(key), (int, float))]
    return float(np.mean(v)) if v else None


def _diff(key: str) -> Callable[[dict, dict], float | None]:
    def fn(a: dict, b: dict) -> float | None:
        x, y = final(a, key), final(b, key)
        return None if x is None or y is None else x - y

    return fn


Table = tuple[list[str], list[list[str]]]


# ---------------------------------------------------------------------------------------
# 1 and 5: tying (one sweep)


def _centred(r: dict) -> float | None:  # only where there is a cone to remove (raw mean cosine > 0.05)
    c, raw = final(r, "emb_centered/cos_mean"), final(r, "emb/cos_mean")
    return None if c is None or raw is None or raw <= 0.05 else c / raw


def _rare_minus_frequent(r: dict) -> float | None:
    rest, top = final(r, "emb/cos_mean_rest"), final(r, "emb/cos_mean_top10pct")
    return None if rest is None or top is None else rest - top


def analyse_tying(runs: list[dict]) -> tuple[list[Check], Table]:
    side = lambda tie, s: select(runs, model__tie_embeddings=tie, embedding__init_std=s)
    checks = [
        Check(
            "At σ = 0.02 the tied table's mean cosine exceeds the untied input table's by more than 0.2",
            "per seed, tied − untied final emb/cos_mean; mean band in [0.2, ∞)",
            paired(side(True, 0.02), side(False, 0.02), _diff("emb/cos_mean")),
            lo=0.2,
        ),
        Check(
            "Removing the mean row removes most of it: the tied table's centred mean cosine is under a quarter "
            "of its raw mean cosine (σ = 0.02)",
            "per seed, emb_centered/cos_mean ÷ emb/cos_mean; band in (−∞, 0.25]",
            per_seed(side(True, 0.02), _centred),
            hi=0.25,
        ),
        Check(
            "Rare-token rows drift together more than frequent ones (tied, σ = 0.02)",
            "per seed, mean cosine inside the rarest 90 % − inside the top 10 %; band in [0, ∞)",
            per_seed(side(True, 0.02), _rare_minus_frequent),
            lo=0.0,
        ),
        Check(
            "It depends on σ: at σ = 1 the tied − untied gap is under 0.05",
            "per seed, tied − untied final emb/cos_mean at σ = 1; band in (−∞, 0.05]",
            paired(side(True, 1.0), side(False, 1.0), _diff("emb/cos_mean")),
            hi=0.05,
        ),
    ]
    return checks, _tying_table(side, _values(runs, "embedding.init_std"))


def _tying_table(side: Any, sigmas: list) -> Table:
    rows = []
    for s in sigmas:
        for tie in (True, False):
            g = list(side(tie, s).values())
            rows.append(
                [f"{s:g}", "tied" if tie else "untied", str(len(g))]
                + [
                    mean_sd([final(r, k) for r in g])
                    for k in (
                        "emb/cos_mean",
                        "emb_centered/cos_mean",
                        "emb/isoscore",
                        "emb/cos_mean_top10pct",
                        "emb/cos_mean_rest",
                        "eval/loss",
                    )
                ]
            )
    return (
        ["σ", "output", "seeds", "mean cos", "centred mean cos", "IsoScore", "cos top 10 %", "cos rest", "eval loss"],
        rows,
    )


def analyse_tied_untied(runs: list[dict]) -> tuple[list[Check], Table]:
    tied, untied = (select(runs, model__tie_embeddings=t, embedding__init_std=0.02) for t in (True, False))

    def cka_gap(a: dict, b: dict) -> float | None:
        E, In, Out = _table(a, "embeddings.npy"), _table(b, "embeddings.npy"), _table(b, "output_embeddings.npy")
        return None if E is None or In is None or Out is None else linear_cka(E, Out) - linear_cka(E, In)

    def cka(a: dict, b: dict, name: str) -> float | None:
        E, X = _table(a, "embeddings.npy"), _table(b, name)
        return None if E is None or X is None else linear_cka(E, X)

    checks = [
        Check(
            "At small data (a few hundred steps) the tied model's eval loss is no worse than the untied one's",
            "per seed, tied − untied final eval/loss; band in (−∞, 0.02] nats",
            paired(tied, untied, _diff("eval/loss")),
            hi=0.02,
        ),
        Check(
            "The tied table is closer (linear CKA) to the untied output table than to the untied input table",
            "per seed, CKA(tied, untied output) − CKA(tied, untied input); band in [0, ∞)",
            paired(tied, untied, cka_gap),
            lo=0.0,
        ),
    ]
    rows = [
        ["tied", mean_sd(per_seed(tied, lambda r: final(r, "eval/loss"))), "–", "–"],
        [
            "untied",
            mean_sd(per_seed(untied, lambda r: final(r, "eval/loss"))),
            mean_sd(paired(tied, untied, lambda a, b: cka(a, b, "embeddings.npy"))),
            mean_sd(paired(tied, untied, lambda a, b: cka(a, b, "output_embeddings.npy"))),
        ],
    ]
    return checks, (
        ["model (σ = 0.02)", "eval loss", "CKA(tied E, this input table)", "CKA(tied E, this output table)"],
        rows,
    )


# ---------------------------------------------------------------------------------------
# 2: frequency


def _growth_ratio(r: dict) -> float | None:
    keys = ("emb/norm_mean_rest", "emb/norm_mean_top1pct")
    f, s = [final(r, k) for k in keys], [first(r, k) for k in keys]
    return None if None in f + s else (f[0] / s[0]) / (f[1] / s[1])


def _rare_harm(a: dict, b: dict) -> float | None:  # a with decay, b without
    d = {k: (final(a, f"eval/loss_bucket_{k}"), final(b, f"eval/loss_bucket_{k}")) for k in ("rest", "top1")}
    return None if None in sum(d.values(), ()) else (d["rest"][0] - d["rest"][1]) - (d["top1"][0] - d["top1"][1])


def _spearman(r: dict) -> float | None:
    return final(r, "emb/norm_logfreq_spearman")


def analyse_frequency(runs: list[dict]) -> tuple[list[Check], Table]:
    side = lambda tie, wd: select(runs, model__tie_embeddings=tie, optim__embed_weight_decay=wd)
    wds = _values(runs, "optim.embed_weight_decay")
    wd_hi = wds[-1] if wds else 0.0
    checks = [
        Check(
            "Rows of rarely seen tokens stay nearer their init: the rarest 90 %'s mean norm grows by less than "
            "half the factor of the top 1 %'s (untied, no decay)",
            "per seed, growth(rest) ÷ growth(top 1 %), growth = final ÷ step-0 mean norm; band in (−∞, 0.5]",
            per_seed(side(False, 0.0), _growth_ratio),
            hi=0.5,
        ),
        Check(
            "Row norm rises with token frequency in an untied input table",
            "per seed, Spearman(‖eᵢ‖, log(1 + countᵢ)) (untied, no decay); band in [0, ∞)",
            per_seed(side(False, 0.0), _spearman),
            lo=0.0,
        ),
        Check(
            "Tying lowers the norm–log-frequency correlation",
            "per seed, tied − untied Spearman (no decay); band in (−∞, 0]",
            paired(side(True, 0.0), side(False, 0.0), lambda a, b: _spearman(a) - _spearman(b)),
            hi=0.0,
        ),
        Check(
            f"Weight decay on the embedding ({wd_hi:g}) hurts rare tokens more than frequent ones (untied)",
            "per seed, the decay's eval-loss change on targets in the rarest 90 % minus on the top 1 %; band in [0, ∞)",
            paired(side(False, wd_hi), side(False, 0.0), _rare_harm),
            lo=0.0,
        ),
    ]
    return checks, _frequency_table(side, wds)


def _frequency_table(side: Any, wds: list) -> Table:
    rows = []
    for tie in (True, False):
        for wd in wds:
            g = list(side(tie, wd).values())
            rows.append(
                [
                    "tied" if tie else "untied",
                    f"{wd:g}",
                    str(len(g)),
                    mean_sd([_spearman(r) for r in g]),
                    mean_sd([_growth_ratio(r) for r in g]),
                ]
                + [mean_sd([final(r, f"eval/loss_bucket_{k}") for r in g]) for k in ("top1", "top1_10", "rest")]
            )
    return (
        [
            "output",
            "embedding decay",
            "seeds",
            "Spearman(norm, log freq)",
            "growth rest ÷ top 1 %",
            "eval loss top 1 %",
            "1–10 %",
            "rest",
        ],
        rows,
    )


# ---------------------------------------------------------------------------------------
# 3: small σ with pre-LN


def _first(run: dict, key: str) -> float | None:
    """`key` at the first logged train step (its gradient is the one at the initial parameters)."""
    v = [row[key] for row in run["rows"] if row["step"] == 1 and isinstance(row.get(key), (int, float))]
    return float(v[0]) if v else None


def analyse_small_sigma(runs: list[dict]) -> tuple[list[Check], Table]:
    sigmas = [s for s in _values(runs, "embedding.init_std") if isinstance(s, (int, float))]

    def slopes(scale: Any, key: str, at: Callable = _first) -> list[float]:
        by_seed: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for s in sigmas:
            for seed, r in select(runs, embedding__init_std=s, embedding__scale=scale).items():
                if (g := at(r, key)) is not None:
                    by_seed[seed].append((s, g))
        return [loglog_slope(*zip(*pts)) for _, pts in sorted(by_seed.items()) if len(pts) >= 2]

    def sqrt_d_ratio(a: dict, b: dict) -> float | None:
        x, y = _first(a, "train/grad_norm_stream0"), _first(b, "train/grad_norm_stream0")
        return None if not x or not y else math.log(x / y)

    stream = "train/grad_norm_stream0"
    checks = [
        Check(
            "With pre-LN and scale 1, ‖∂L/∂x‖ at the first LayerNorm's input grows as σ shrinks, ∝ 1/σ "
            "(LayerNorm's Jacobian is about (1/σ_x)·I)",
            f"per seed, the log–log slope of {stream} at the first step against σ; band in [−1.3, −0.7]",
            slopes(1.0, stream),
            lo=-1.3,
            hi=-0.7,
        ),
        Check(
            "It holds over the first steps too (mean over steps 1–5)",
            f"per seed, the same slope for the mean of {stream} over steps 1–5; band in [−1.3, −0.7]",
            slopes(1.0, stream, _early),
            lo=-1.3,
            hi=-0.7,
        ),
        Check(
            "The embedding's own gradient carries the same 1/σ (its rows are ∂L/∂x summed per token)",
            "per seed, the slope of train/grad_norm_embed at the first step against σ; band in [−1.3, −0.7]",
            slopes(1.0, "train/grad_norm_embed"),
            lo=-1.3,
            hi=-0.7,
        ),
        Check(
            "Scaling the embedding by √d removes it: at σ = 0.01 ‖∂L/∂x‖ falls by at least half "
            "(the argument predicts 1/√d = 1/8)",
            f"per seed, log({stream} with √d ÷ without) at σ = 0.01, first step; band in (−∞, log 0.5]",
            paired(
                select(runs, embedding__init_std=0.01, embedding__scale="sqrt_d"),
                select(runs, embedding__init_std=0.01, embedding__scale=1.0),
                sqrt_d_ratio,
            ),
            hi=math.log(0.5),
        ),
    ]
    return checks, _small_sigma_table(runs, sigmas, stream)


def _small_sigma_table(runs: list[dict], sigmas: list, stream: str) -> Table:
    rows = []
    for scale in (1.0, "sqrt_d"):
        for s in sigmas:
            g = list(select(runs, embedding__init_std=s, embedding__scale=scale).values())
            rows.append(
                ["1" if scale == 1.0 else "√d", f"{s:g}", str(len(g)), mean_sd([_first(r, stream) for r in g])]
                + [
                    mean_sd([_early(r, k) for r in g])
                    for k in (stream, "train/grad_norm_embed", "train/grad_norm_block0")
                ]
            )
    cols = [
        "scale",
        "σ",
        "seeds",
        "‖∂L/∂x₀‖ step 1",
        "‖∂L/∂x₀‖ steps 1–5",
        "embedding ‖g‖ steps 1–5",
        "first block ‖g‖ steps 1–5",
    ]
    return cols, rows


# ---------------------------------------------------------------------------------------
# 4: softmax bottleneck


def analyse_bottleneck(runs: list[dict]) -> tuple[list[Check], Table]:
    ds = [d for d in _values(runs, "model.embed_dim")]
    if not ds:
        return [], (["d"], [])
    ranks = [v for r in runs if (v := r["summary"].get("data/logit_rank")) is not None]
    rank = int(ranks[0]) if ranks else max(ds)
    excess = lambda r: (
        None
        if final(r, "eval/loss") is None or r["summary"].get("data/entropy_rate") is None
        else final(r, "eval/loss") - r["summary"]["data/entropy_rate"]
    )
    d_lo = max([d for d in ds if d <= rank / 4] or ds[:1])
    d_r = min([d for d in ds if d >= rank] or ds[-1:])
    d_hi = ds[-1]
    at = {d: select(runs, model__embed_dim=d) for d in ds}
    below = paired(
        at[d_lo], at[d_r], lambda a, b: None if excess(a) is None or excess(b) is None else excess(a) - excess(b)
    )
    above_ratio = []
    for s in sorted(set(at[d_lo]) & set(at[d_r]) & set(at[d_hi])):
        lo, r, hi = (excess(at[d][s]) for d in (d_lo, d_r, d_hi))
        if None not in (lo, r, hi) and lo - r > 0:
            above_ratio.append((r - hi) / (lo - r))
    checks = [
        Check(
            f"The excess of eval loss over the entropy rate falls steeply as d rises to the logit rank r = {rank} "
            f"(d = {d_lo} → {d_r})",
            "per seed, excess(d ≤ r/4) − excess(d ≥ r); band in [0.1, ∞) nats",
            below,
            lo=0.1,
        ),
        Check(
            f"… and flattens past it (d = {d_r} → {d_hi})",
            "per seed, the fall from d ≥ r to the largest d as a fraction of the fall below r; band in (−∞, 0.25]",
            above_ratio,
            hi=0.25,
        ),
    ]
    rows = [
        [
            str(d),
            str(len(at[d])),
            mean_sd([excess(r) for r in at[d].values()]),
            mean_sd([final(r, "eval/loss") for r in at[d].values()]),
        ]
        for d in ds
    ]
    return checks, (["d", "seeds", "eval loss − entropy rate", "eval loss"], rows)


# ---------------------------------------------------------------------------------------
# 6 and 7: μP


def _coord_points(runs: list[dict], par: str) -> dict[int, list[tuple[int, int, str, float]]]:
    """{seed: [(width, step, activation, mean |x|)]} of one parametrisation's finished runs (report's points,
    by seed)."""
    done = [r for r in runs if r["summary"].get("status") == "finished"]
    return {
        seed: pts
        for seed in sorted({int(_get(r["cfg"], "seed") or 0) for r in done})
        if (pts := report_coord_points([r for r in done if int(_get(r["cfg"], "seed") or 0) == seed]).get(par))
    }


def analyse_coord_check(runs: list[dict]) -> tuple[list[Check], Table]:
    slopes = {par: {seed: coord_slopes(pts) for seed, pts in _coord_points(runs, par).items()} for par in ("sp", "mup")}
    # coord/* logged at step t come from step t's forward pass, before its update: step 1 is the initialisation
    # (where μP's readout 1/m makes the logits shrink like 1/√d), so "after the first update" is step ≥ 2
    worst = lambda sl: max(
        (abs(v) for st, acts in sl.items() if st >= 2 for v in acts.values() if np.isfinite(v)), default=float("nan")
    )
    last_logits = lambda sl: sl[max(sl)].get("logits", float("nan")) if sl else float("nan")
    checks = [
        Check(
            "Under μP every activation's mean |x| is independent of width at every step after the first update",
            "per seed, the largest |log–log slope against width| over activations, logged steps 2 … 5 (after ≥ 1 "
            "update); band in (−∞, 0.25]",
            [worst(sl) for _, sl in sorted(slopes["mup"].items())],
            hi=0.25,
        ),
        Check(
            "Under SP (Adam) the output logits grow with width after a few steps",
            "per seed, the slope of coord/logits against width at the last step; band in [0.25, ∞)",
            [last_logits(sl) for _, sl in sorted(slopes["sp"].items())],
            lo=0.25,
        ),
    ]
    rows = [
        [
            "SP" if par == "sp" else "μP",
            str(len(slopes[par])),
            mean_sd([worst(sl) for sl in slopes[par].values()]),
            mean_sd([last_logits(sl) for sl in slopes[par].values()]),
        ]
        for par in ("sp", "mup")
    ]
    return checks, (["parametrisation", "seeds", "max |slope| (steps ≥ 2)", "logits slope (last step)"], rows)


def analyse_lr_transfer(runs: list[dict]) -> tuple[list[Check], Table]:
    # the report's analysis (the plot beside this finding): losses clipped at the initial loss, diverged = initial
    panels = report_lr_analysis(runs)
    out = {par: panels[name] for par, name in (("sp", "SP"), ("mup", "μP")) if name in panels}
    moves: dict[str, list[float]] = {"sp": [], "mup": []}
    for par, res in out.items():
        ws = sorted(res["widths"])
        # per seed: log2(best lr at the smallest width / at the largest): grid steps the optimum moved down
        moves[par] = (
            [
                math.log2(a / b)
                for a, b in zip(res["widths"][ws[0]]["best_lr_seeds"], res["widths"][ws[-1]]["best_lr_seeds"])
            ]
            if len(ws) > 1
            else []
        )
    checks = [
        Check(
            "Under μP the best learning rate transfers across width: it moves by at most one ×2 grid step",
            "per seed, |log₂(best lr at the smallest width ÷ at the largest)|; band in (−∞, 1]",
            [abs(m) for m in moves["mup"]],
            hi=1.0,
        ),
        Check(
            "Under SP the best learning rate falls as the width grows",
            "per seed, log₂(best lr at the smallest width ÷ at the largest); band in [1, ∞)",
            moves["sp"],
            lo=1.0,
        ),
    ]
    rows = [
        [
            "SP" if par == "sp" else "μP",
            f"d = {w}",
            f"{res['widths'][w]['best_lr']:g}",
            f"{res['widths'][w]['best_loss']:.3f}",
            ", ".join(f"{x:g}" for x in res["widths"][w]["best_lr_seeds"]),
        ]
        for par, res in out.items()
        for w in sorted(res["widths"])
    ]
    return checks, (
        ["parametrisation", "width", "best lr (seed mean curve)", "its eval loss", "each seed's best lr"],
        rows,
    )


def _mean_logged(run: dict, key: str, from_step: int = 50) -> float | None:
    """The mean of `key` over the logged steps ≥ from_step (past the warm-up)."""
    v = [row[key] for row in run["rows"] if row["step"] >= from_step and isinstance(row.get(key), (int, float))]
    return float(np.mean(v)) if v else None


def analyse_row_updates(runs: list[dict]) -> tuple[list[Check], Table]:
    arm = lambda name, mode, tie: select(runs, optim__name=name, optim__row_updates=mode, model__tie_embeddings=tie)
    drift = lambda r: _mean_logged(r, "emb/untouched_drift")
    moved = lambda r: _mean_logged(r, "emb/untouched_moved_frac")
    rare = lambda a, b: (
        final(a, "eval/loss_bucket_rest") - final(b, "eval/loss_bucket_rest")
        if final(a, "eval/loss_bucket_rest") is not None and final(b, "eval/loss_bucket_rest") is not None
        else None
    )
    checks = [
        Check(
            "Under plain SGD the rows of tokens absent from a step do not move (untied input table)",
            "per seed, the mean over logged steps ≥ 50 of emb/untouched_drift (SGD, dense); band in (−∞, 0]",
            per_seed(arm("sgd", "dense", False), drift),
            hi=0.0,
        ),
        Check(
            "Under AdamW as used by default (dense) most absent rows still move, through Adam's moments",
            "per seed, the mean over logged steps ≥ 50 of emb/untouched_moved_frac (AdamW dense, untied); band in "
            "[0.5, ∞)",
            per_seed(arm("adamw", "dense", False), moved),
            lo=0.5,
        ),
        Check(
            "Lazy AdamW keeps absent rows where they were (untied input table)",
            "per seed, the mean over logged steps ≥ 50 of emb/untouched_drift (AdamW lazy, untied); band in (−∞, 0]",
            per_seed(arm("adamw", "lazy", False), drift),
            hi=0.0,
        ),
        Check(
            "A tied table's rows all get a gradient through the output side, so even lazy updates move absent rows",
            "per seed, the mean over logged steps ≥ 50 of emb/untouched_moved_frac (AdamW lazy, tied); band in "
            "[0.5, ∞)",
            per_seed(arm("adamw", "lazy", True), moved),
            lo=0.5,
        ),
        Check(
            "Lazy updates do not cost rare tokens (untied): their eval loss at the fixed budget is within 0.05 nats "
            "of dense AdamW's or better",
            "per seed, lazy − dense eval loss on targets in the rarest 90 % at the last step; band in (−∞, 0.05]",
            paired(arm("adamw", "lazy", False), arm("adamw", "dense", False), rare),
            hi=0.05,
        ),
    ]
    return checks, _row_updates_table(arm, drift, moved)


def _row_updates_table(arm: Callable, drift: Callable, moved: Callable) -> Table:
    rows = []
    for name in ("sgd", "adamw"):
        for mode in ("dense", "lazy"):
            for tie in (False, True):
                g = list(arm(name, mode, tie).values())
                rows.append(
                    [
                        f"{'SGD' if name == 'sgd' else 'AdamW'} {mode}",
                        "tied" if tie else "untied",
                        str(len(g)),
                        mean_sd([drift(r) for r in g]),
                        mean_sd([moved(r) for r in g]),
                        mean_sd([final(r, "eval/loss_bucket_rest") for r in g]),
                        mean_sd([final(r, "eval/loss") for r in g]),
                    ]
                )
    cols = ["optimizer", "output", "seeds", "untouched drift", "absent rows moved", "eval loss rest", "eval loss"]
    return cols, rows


def _eval_at(run: dict, key: str, step: int) -> float | None:
    v = [row[key] for row in run["rows"] if row["step"] == step and isinstance(row.get(key), (int, float))]
    return float(v[0]) if v else None


def _arm(runs: list[dict], init: str, freeze: bool | str) -> dict[int, dict]:
    return select(runs, embedding__init=init, embedding__freeze=freeze)


def _steps_saved(budget: int, eval_every: int) -> Callable[[dict, dict], float | None]:
    """(scratch run, pretrained run) -> budget − the first eval step at which the pretrained run's eval loss is at
    or below the scratch run's at the budget (budget + eval_every when it never gets there)."""

    def saved(scratch: dict, pre: dict) -> float | None:
        target = _eval_at(scratch, "eval/loss", budget)
        if target is None:
            return None
        steps = sorted(r["step"] for r in pre["rows"] if isinstance(r.get("eval/loss"), (int, float)))
        reached = [t for t in steps if t > 0 and _eval_at(pre, "eval/loss", t) <= target]
        return float(budget - (reached[0] if reached else budget + eval_every))

    return saved


def _gap(key: str, step: int) -> Callable[[dict, dict], float | None]:
    """(run a, run b) -> a's eval value of `key` at `step` − b's (None when either lacks it)."""

    def gap(a: dict, b: dict) -> float | None:
        x, y = _eval_at(a, key, step), _eval_at(b, key, step)
        return None if x is None or y is None else x - y

    return gap


# finding 9's arms: (label, embedding.init, embedding.freeze)
PRETRAINED_ARMS = (
    ("scratch", "normal", False),
    ("pretrained", "pretrained", False),
    ("pretrained, frozen", "pretrained", True),
    ("pretrained, its rows frozen", "pretrained", "pretrained"),
    ("random, frozen", "normal", True),
)


def analyse_pretrained_start(runs: list[dict]) -> tuple[list[Check], Table]:
    early, last = 50, max((int(_get(r["cfg"], "steps")) for r in runs), default=300)
    arms = {label: _arm(runs, init, freeze) for label, init, freeze in PRETRAINED_ARMS}
    scratch, pre, frozen, held, frozen_rand = arms.values()
    every = min((int(_get(r["cfg"], "log.eval_every")) for r in runs), default=50)
    checks = [
        Check(
            f"Initialising from a pretrained table converges faster: it reaches the scratch start's final loss "
            f"(step {last}) at least one eval interval ({every} steps) sooner",
            f"per seed, {last} − the first eval step at which pretrained's eval loss ≤ scratch's at step {last} "
            f"({last} + {every} if never); band in [{every}, ∞)",
            paired(scratch, pre, _steps_saved(last, every)),
            lo=float(every),
        ),
        Check(
            f"Initialising from a pretrained table converges faster: lower eval loss at an early budget (step {early})",
            f"per seed, scratch − pretrained eval loss at step {early}; band in [0, ∞)",
            paired(scratch, pre, _gap("eval/loss", early)),
            lo=0.0,
        ),
        Check(
            "It helps rare tokens early: lower eval loss on targets in the rarest 90 % at the early budget",
            f"per seed, scratch − pretrained eval/loss_bucket_rest at step {early}; band in [0, ∞)",
            paired(scratch, pre, _gap("eval/loss_bucket_rest", early)),
            lo=0.0,
        ),
        Check(
            "Freezing the pretrained table limits adaptation to the shifted data: a higher final eval loss than "
            "training it",
            f"per seed, frozen − trainable pretrained eval loss at step {last}; band in [0, ∞)",
            paired(frozen, pre, _gap("eval/loss", last)),
            lo=0.0,
        ),
        Check(
            "A frozen pretrained table carries what it learned: better than a frozen random table",
            f"per seed, frozen random − frozen pretrained eval loss at step {last}; band in [0, ∞)",
            paired(frozen_rand, frozen, _gap("eval/loss", last)),
            lo=0.0,
        ),
        Check(
            "Freezing only the pretrained rows lets the tokens the source lacks adapt: a lower final loss on the "
            "rare targets (where the new tokens are) than freezing every row",
            f"per seed, frozen (all rows) − frozen (pretrained rows only) eval/loss_bucket_rest at step {last}; "
            "band in [0, ∞)",
            paired(frozen, held, _gap("eval/loss_bucket_rest", last)),
            lo=0.0,
        ),
    ]
    rows = [
        [label, str(len(arm))]
        + [mean_sd([_eval_at(r, "eval/loss", t) for r in arm.values()]) for t in (early, last)]
        + [mean_sd([_eval_at(r, "eval/loss_bucket_rest", t) for r in arm.values()]) for t in (early, last)]
        for label, arm in arms.items()
    ]
    cols = ["start", "seeds", f"eval loss @{early}", f"@{last}", f"rest-bucket loss @{early}", f"@{last}"]
    return checks, (cols, rows)


def analyse_width_small_data(runs: list[dict]) -> tuple[list[Check], Table]:
    widths = sorted(int(w) for w in _values(runs, "model.embed_dim"))
    by_d = {d: select(runs, model__embed_dim=d) for d in widths}
    seeds = sorted(set.intersection(*(set(v) for v in by_d.values()))) if by_d else []
    loss = lambda d, s: final(by_d[d][s], "eval/loss")
    top = widths[-1] if widths else "?"

    def excess(s: int) -> float | None:
        vals = [loss(d, s) for d in widths]
        return None if any(v is None for v in vals) or len(vals) < 2 else vals[-1] - min(vals[:-1])

    checks = [
        Check(
            f"With little data a bigger d is not automatically better: the largest width (d = {top}) does not reach "
            "a lower eval loss than the best smaller one",
            "per seed, final eval loss at the largest d − the lowest final eval loss over the smaller d; band in "
            "[0, ∞)",
            [v for s in seeds if (v := excess(s)) is not None],
            lo=0.0,
        )
    ]
    rows = [[f"d = {d}", str(len(by_d[d])), mean_sd([final(r, "eval/loss") for r in by_d[d].values()])] for d in widths]
    return checks, (["width", "seeds", "final eval loss"], rows)


# ---------------------------------------------------------------------------------------
# Plots (matplotlib, Agg): one figure per finding where a picture says it faster


def _lines(ax, series: dict[str, dict[float, list[float]]], logx: bool = True, logy: bool = False, **style) -> None:
    from matplotlib.ticker import NullLocator

    ticks = sorted({x for pts in series.values() for x in pts})
    for label, pts in series.items():
        xs = sorted(x for x in pts if pts[x])
        m = [np.mean(pts[x]) for x in xs]
        sd = [np.std(pts[x], ddof=1) if len(pts[x]) > 1 else 0.0 for x in xs]
        ax.errorbar(xs, m, yerr=sd, marker="o", capsize=3, label=label, **style.get(label, {}))
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")
    ax.set_xticks(ticks, [f"{x:g}" for x in ticks])  # the swept values themselves, no crowded minor labels
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _collect(runs: list[dict], x_key: str, label: Callable[[dict], str | None], y: Callable[[dict], float | None]):
    out: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        lab, x = label(r), _get(r["cfg"], x_key)
        if lab is not None and r["summary"].get("status") == "finished" and (v := y(r)) is not None:
            out[lab][float(x)].append(v)
    return out


def _save(fig, path: str) -> bool:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_tying(runs: list[dict], path: str) -> bool:
    import matplotlib.pyplot as plt

    tie = lambda r: "tied" if _get(r["cfg"], "model.tie_embeddings") else "untied"
    series = {
        **_collect(runs, "embedding.init_std", tie, lambda r: final(r, "emb/cos_mean")),
        **{
            f"{k} (centred)": v
            for k, v in _collect(runs, "embedding.init_std", tie, lambda r: final(r, "emb_centered/cos_mean")).items()
        },
    }
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    _lines(ax, series, **{k: {"linestyle": "--"} for k in series if "centred" in k})
    ax.set(xlabel="init σ", ylabel="final mean cos(eᵢ, eⱼ)", title="Tying and anisotropy")
    return _save(fig, path)


def plot_small_sigma(runs: list[dict], path: str) -> bool:
    import matplotlib.pyplot as plt

    scale = lambda r: "scale 1" if _get(r["cfg"], "embedding.scale") == 1.0 else "scale √d"
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    keys = ("train/grad_norm_stream0", "train/grad_norm_embed")
    for ax, key, title in zip(axes, keys, ("‖∂L/∂x‖ at the first LayerNorm's input", "embedding gradient")):
        _lines(ax, _collect(runs, "embedding.init_std", scale, lambda r, key=key: _first(r, key)), logy=True)
        ax.set(xlabel="init σ", ylabel="norm at the first step", title=f"Pre-LN: {title}")
    return _save(fig, path)


def plot_bottleneck(runs: list[dict], path: str) -> bool:
    import matplotlib.pyplot as plt

    ranks = [v for r in runs if (v := r["summary"].get("data/logit_rank")) is not None]
    excess = lambda r: (
        final(r, "eval/loss") - r["summary"]["data/entropy_rate"]
        if final(r, "eval/loss") is not None and "data/entropy_rate" in r["summary"]
        else None
    )
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    _lines(ax, _collect(runs, "model.embed_dim", lambda r: "linear LM", excess))  # linear y: the excess can dip below 0
    ax.axhline(0.0, color="black", linewidth=0.6)
    if ranks:
        ax.axvline(ranks[0], color="gray", linestyle=":", label=f"logit rank r = {int(ranks[0])}")
        ax.legend(fontsize=8)
    ax.set(xlabel="embedding width d", ylabel="eval loss − entropy rate (nats)", title="The softmax bottleneck")
    return _save(fig, path)


def plot_row_updates(runs: list[dict], path: str) -> bool:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    colours = {"sgd": "tab:green", "adamw": "tab:blue"}
    for ax, tie in zip(axes, (False, True)):
        for name in ("sgd", "adamw"):
            for mode, style in (("dense", "-"), ("lazy", "--")):
                g = select(runs, optim__name=name, optim__row_updates=mode, model__tie_embeddings=tie).values()
                by_step = defaultdict(list)
                for r in g:
                    for row in r["rows"]:
                        if isinstance(row.get("emb/untouched_drift"), (int, float)):
                            by_step[row["step"]].append(row["emb/untouched_drift"])
                if by_step:
                    steps = sorted(by_step)
                    label = f"{'SGD' if name == 'sgd' else 'AdamW'} {mode}"
                    ys = [np.mean(by_step[t]) for t in steps]
                    ax.plot(steps, ys, style, color=colours[name], label=label, linewidth=1.4)
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set(xlabel="step", title=f"{'tied' if tie else 'untied'}: rows absent from the step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("mean ‖eᵢ − eᵢ(last present)‖")
    return _save(fig, path)


def plot_pretrained_start(runs: list[dict], path: str) -> bool:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    looks = {"scratch": ("tab:gray", "-"), "pretrained": ("tab:blue", "-"), "pretrained, frozen": ("tab:blue", "--")}
    looks |= {"pretrained, its rows frozen": ("tab:orange", "-."), "random, frozen": ("tab:gray", "--")}
    for ax, key, title in zip(axes, ("eval/loss", "eval/loss_bucket_rest"), ("all targets", "rarest 90 % of types")):
        for label, init, freeze in PRETRAINED_ARMS:
            colour, style = looks[label]
            arm = list(_arm(runs, init, freeze).values())
            steps = sorted({row["step"] for r in arm for row in r["rows"] if isinstance(row.get(key), (int, float))})
            ys = [np.mean([v for r in arm if (v := _eval_at(r, key, t)) is not None]) for t in steps]
            ax.plot(steps, ys, style, color=colour, marker="o", markersize=3, label=label)
        ax.set(xlabel="fine-tuning step", ylabel="eval loss (nats)", title=f"Fine-tuning on shifted data: {title}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_width_small_data(runs: list[dict], path: str) -> bool:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    _lines(ax, _collect(runs, "model.embed_dim", lambda r: "from scratch, 300 steps", lambda r: final(r, "eval/loss")))
    ax.set(xlabel="embedding width d", ylabel="final eval loss (nats)", title="Width with little data")
    return _save(fig, path)


def plot_frequency(runs: list[dict], path: str) -> bool:
    import matplotlib.pyplot as plt

    buckets = ("top1", "top1_10", "rest")
    fig, ax = plt.subplots(figsize=(6, 3.8))
    groups = [(tie, wd) for tie in (False, True) for wd in _values(runs, "optim.embed_weight_decay")]
    width = 0.8 / max(len(groups), 1)
    for i, (tie, wd) in enumerate(groups):
        g = select(runs, model__tie_embeddings=tie, optim__embed_weight_decay=wd).values()
        vals = [[v for r in g if (v := final(r, f"eval/loss_bucket_{b}")) is not None] for b in buckets]
        ax.bar(
            np.arange(3) + i * width,
            [np.mean(v) if v else np.nan for v in vals],
            width,
            yerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals],
            capsize=3,
            label=f"{'tied' if tie else 'untied'}, embedding decay {wd:g}",
        )
    ax.set_xticks(np.arange(3) + 0.4 - width / 2, ["top 1 %", "1–10 %", "rest"])
    ax.set(ylabel="final eval loss on targets in the bucket", title="Frequency buckets")
    ax.legend(fontsize=7)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------
# The findings. Claims, sources and pass criteria are fixed here, before any run.

FINDINGS = [
    Finding(
        "tying_anisotropy",
        "Tying makes the space anisotropic",
        "Tied input/output tables end with a large mean cosine between rows (a narrow cone) where untied input "
        "tables do not; most of it is one shared mean direction; rare-token rows drift together most; it depends "
        "on the init scale σ.",
        "Gao et al. 2019, Representation Degeneration Problem in Training Natural Language Generation Models "
        "(ICLR), §3–4 and Fig. 1; Bis et al. 2021, Too Much in Common (NAACL), §3–4 (the common drift direction).",
        "Planted corpus (V = 512, K = 16), 2-layer pre-LN transformer d = 32, AdamW lr 3e-3, 600 steps; "
        "σ ∈ {0.02, 0.2, 1} × tied/untied × seeds {0, 1, 2}.",
        "Each check below, on the per-seed values' mean ± 2 standard errors.",
        "tying",
        analyse_tying,
        plot_tying,
        quick={"steps": 100},
    ),
    Finding(
        "frequency_rows",
        "Frequency shapes rows",
        "Rows of rarely seen tokens stay near their init; row norm rises with frequency and tying changes that "
        "correlation; weight decay on the embedding hurts rare tokens more than frequent ones.",
        "Gao et al. 2019 §4 (rare-token rows); Bis et al. 2021 §5 (frequency and norms); Pinto et al. 2024, "
        "per-frequency evaluation of embedding regularisation.",
        "Planted corpus (V = 512, K = 16, Zipf a = 1.1), 2-layer transformer d = 32, σ = 0.02, AdamW lr 3e-3 with "
        "embedding decay ∈ {0, 0.5} (no other decay), 600 steps; tied/untied × seeds {0, 1, 2}; eval loss by the "
        "target's frequency bucket (top 1 %, 1–10 %, rest).",
        "Each check below, on the per-seed values' mean ± 2 standard errors.",
        "frequency",
        analyse_frequency,
        plot_frequency,
        quick={"steps": 100},
    ),
    Finding(
        "small_sigma_preln",
        "Small σ and pre-LN gradients",
        "With pre-LN, the gradient through the residual stream at the first LayerNorm's input grows as the "
        "embedding init σ shrinks (∝ 1/σ: LayerNorm's Jacobian is about (1/σ_x)·I), which is Takase et al.'s "
        "mechanism for loss spikes; scaling the embedding by √d removes it. The spikes themselves (billions of "
        "parameters, long runs) are out of reach here: this finding tests the mechanism.",
        "Takase et al. 2023, Spike No More: Stabilizing the Pre-training of Large Language Models, §3–4.",
        "Planted corpus (V = 512), untied 2-layer pre-LN transformer d = 64 with no position table (positions "
        "added after the lookup would cap the LayerNorm input's scale), the output head fixed at "
        "model.head_init_std = 0.02 whatever σ; AdamW lr 3e-3, warm-up 9 steps; σ ∈ {0.001, 0.01, 0.1, 1} × "
        "embedding scale {1, √d} × seeds {0, 1, 2}; train/grad_norm_stream0 (‖∂L/∂x‖ at the first block's input, "
        "a zero probe's gradient) at every one of the first 10 steps; the bands come from the argument (slope −1, "
        "√d cuts it by 8), not from earlier runs.",
        "Each check below, on the per-seed values' mean ± 2 standard errors.",
        "small_sigma",
        analyse_small_sigma,
        plot_small_sigma,
        quick={"steps": 6},
    ),
    Finding(
        "softmax_bottleneck",
        "The softmax bottleneck, exactly",
        "The planted corpus's true next-token log-probability matrix has a known rank r; a model whose logits "
        "have rank ≤ d has an excess of eval loss over the entropy rate that falls steeply as d rises to r and "
        "flattens past it.",
        "Yang et al. 2018, Breaking the Softmax Bottleneck: A High-Rank RNN Language Model (ICLR), §2 "
        "(Proposition 1 and Corollary 1).",
        "Planted corpus (V = 512, K = 16 classes: r = data/logit_rank in summary.json), the linear bigram LM "
        "(logits = W·E[x], rank ≤ d, untied), Adam lr 1e-2, 1,500 steps; d ∈ {2, 4, 8, 16, 32, 64} × seeds {0, 1, 2}.",
        "Each check below, on the per-seed values' mean ± 2 standard errors.",
        "bottleneck",
        analyse_bottleneck,
        plot_bottleneck,
        quick={"steps": 400, "parameters": {"model.embed_dim": [4, 16, 64]}},
    ),
    Finding(
        "tied_vs_untied",
        "Tied vs untied quality",
        "At small data a tied model's eval loss is no worse than an untied one's, and the tied table resembles "
        "the untied model's output table more than its input table.",
        "Press & Wolf 2017, Using the Output Embedding to Improve Language Models (EACL), §3–5; Inan et al. 2017, "
        "Tying Word Vectors and Word Classifiers (ICLR).",
        "The σ = 0.02 members of the tying sweep (finding 1): tied vs untied × seeds {0, 1, 2}; linear CKA "
        "(Kornblith et al. 2019) between final tables, rows aligned by token id.",
        "Each check below, on the per-seed values' mean ± 2 standard errors.",
        "tying",
        analyse_tied_untied,
        None,
        quick={"steps": 100},
    ),
    Finding(
        "mup_coord_check",
        "μP coordinate check",
        "Under μP every activation's typical size is independent of width during training; under standard "
        "parametrisation with Adam the output logits grow with width.",
        "Yang et al. 2021, Tensor Programs V (μTransfer), Fig. 5 and Appendix D.1 (coordinate check).",
        "Planted corpus (V = 512), 2-layer transformer with zero-initialised queries, d ∈ {32, 64, 128, 256}, "
        "d₀ = 32, Adam lr 1e-2, 5 steps, SP/μP × seeds {0, 1, 2}; mean |x| of the embedding output, each block, "
        "attention logits and output logits at every step (logged step t: step t's forward pass, after t − 1 "
        "updates); log–log slopes against width.",
        "Each check below, on the per-seed values' mean ± 2 standard errors.",
        "coord_check",
        analyse_coord_check,
        plot_coord_check,
        quick={"parameters": {"model.embed_dim": [32, 128]}},
    ),
    Finding(
        "mup_lr_transfer",
        "Learning-rate transfer",
        "Under μP the best learning rate found at a small width is the best at a larger width; under SP it moves.",
        "Yang et al. 2021, Tensor Programs V, Fig. 1 and §5.",
        "Planted corpus (V = 512), 2-layer transformer, d ∈ {32, 128}, d₀ = 32, μP's base constants tuned at d₀ "
        "(sweeps/mup_base.yaml), AdamW, lr ∈ 2^-11 … 2^-5 (×2 grid), 200 steps, SP/μP × seeds {0, 1, 2}; "
        "final eval loss clipped at the initial loss (the mean step-0 "
        "eval loss), a diverged member counted there (Wortsman et al. 2023), as in the report's plot.",
        "Each check below, on the per-seed values' mean ± 2 standard errors.",
        "lr_transfer",
        analyse_lr_transfer,
        plot_lr_transfer,
        quick={"steps": 40, "parameters": {"optim.lr": [0.001953125, 0.00390625, 0.0078125, 0.015625]}},
    ),
    Finding(
        "row_sparse_updates",
        "Updates stay sparse over rows",
        "A lookup reads one row, so the gradient is row-sparse and (the lesson says) so are the updates: a token "
        "absent from a step leaves its row where it was. True of plain SGD; Adam's moments (and decoupled weight "
        "decay) move every row they have ever seen, which is why LazyAdam and SparseAdam exist; a tied table gets "
        "a gradient on every row through the output side.",
        "The lesson's first worked example; Kingma & Ba 2015 (Adam's moments); PyTorch's torch.optim.SparseAdam "
        "and TensorFlow Addons' LazyAdam (skip rows whose gradient is zero).",
        "Planted corpus (V = 512, K = 16, Zipf a = 1.5: most tokens absent from any one batch), 2-layer transformer "
        "d = 32, lr 3e-3 (warm-up 30), no weight decay, SGD without momentum, 300 steps; optim.name {sgd, adamw} × "
        "optim.row_updates {dense, lazy} × tied/untied × seeds {0, 1, 2}; emb/untouched_drift and "
        "emb/untouched_moved_frac every 10 steps, eval loss by frequency bucket at step 300.",
        "Each check below, on the per-seed values' mean ± 2 standard errors.",
        "row_updates",
        analyse_row_updates,
        plot_row_updates,
        quick={"steps": 100},
    ),
    Finding(
        "pretrained_start",
        "Pretrained starts",
        "The lesson's three ways to start E: from scratch, from pretrained vectors, or a frozen pretrained table. "
        "A pretrained start converges faster and gives rare tokens a better position early; freezing it is "
        "stable and has fewer trainable parameters but limits adaptation when the fine-tuning data differs; "
        "freezing only the pretrained rows leaves the tokens the source lacks free to learn.",
        "The lesson's comparison table (train from scratch / init from pretrained / freeze pretrained); Kim 2014 "
        "(static vs fine-tuned word2vec, CNN-static vs CNN-non-static); Howard & Ruder 2018 (ULMFiT, §3).",
        "Pretraining: the findings' 2-layer transformer d = 32 on the planted corpus (V = 384, K = 16, Zipf a = 1.1), "
        "1,500 AdamW steps, seed 100 (sweeps/findings/pretrain_source.yaml); its input table is the source. "
        "Fine-tuning: V = 512 with the same classes (the source covers the 384 most frequent tokens by token "
        "string; the 128 rarest are new: N(0, σ²) at the matched rows' σ, embedding.pretrained_missing=init, the same "
        "draw in every seed), a shifted sample (Zipf a = 1.5), 300 steps "
        "from scratch (σ 0.02) or from the source: trainable, frozen (every row), or only the pretrained rows "
        "frozen (the new ones train), and a frozen random table, × seeds {0, 1, 2}; the rest of the model starts "
        "fresh in every arm; eval loss (and by frequency bucket) every 50 steps.",
        "Each check below, on the per-seed values' mean ± 2 standard errors.",
        "pretrained_start",
        analyse_pretrained_start,
        plot_pretrained_start,
        quick={"steps": 100},
        needs="pretrain_source",
        needs_quick={"steps": 300},
        also=("pretrained_rows",),
    ),
    Finding(
        "width_small_data",
        "Bigger d with little data",
        "With little data, a bigger embedding width is not automatically better: past some d the extra parameters "
        "do not lower the loss (the lesson's 'bigger d is not automatically better').",
        "The lesson's width trade-off; Kaplan et al. 2020 (loss against parameters at a fixed, small token budget, "
        "§3.2, Fig. 4 left); Yin & Shen 2018 (On the Dimensionality of Word Embedding, the bias-variance trade-off).",
        "Finding 9's fine-tuning setting from scratch (planted corpus V = 512, Zipf a = 1.5, 300 AdamW steps at lr "
        "3e-3, about 307,000 training tokens), 2-layer transformer, d ∈ {16, 32, 64, 128, 256} × seeds {0, 1, 2}; "
        "final eval loss.",
        "Each check below, on the per-seed values' mean ± 2 standard errors.",
        "width_small_data",
        analyse_width_small_data,
        plot_width_small_data,
        quick={"steps": 100, "parameters": {"model.embed_dim": [32, 128]}},
    ),
]
BY_NAME = {f.name: f for f in FINDINGS}


def evaluate(finding: Finding, runs: list[dict]) -> tuple[str, list[Check], Table]:
    checks, table = finding.analyse(runs)
    return combine([c.verdict for c in checks]), checks, table


def load(sweep_dir: str) -> list[dict]:
    return _load_runs(sweep_dir) if os.path.isdir(sweep_dir) else []


def _protocol_facts(runs: list[dict]) -> str:
    if not runs:
        return "no runs found"
    steps = sorted({int(_get(r["cfg"], "steps")) for r in runs})
    seeds = sorted({int(_get(r["cfg"], "seed") or 0) for r in runs})
    status = defaultdict(int)
    for r in runs:
        status[r["summary"].get("status", "?")] += 1
    return (
        f"{len(runs)} members ({', '.join(f'{n} {k}' for k, n in sorted(status.items()))}), "
        f"steps {', '.join(map(str, steps))}, seeds {seeds}"
    )


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def training_seconds(runs: list[dict]) -> float:
    """The wall time the runs recorded: members trained together (one vmapped group) share their group's
    wall_time_s and compile_s, so each distinct pair counts once."""
    groups = {(r["summary"].get("compile_s"), r["summary"].get("wall_time_s")) for r in runs}
    return float(sum(w for _, w in groups if isinstance(w, (int, float))))


def write_markdown(root: str, results: list[tuple[Finding, str, list[dict]]], header: list[str]) -> str:
    """findings.md (and one PNG per finding with a plot) in root; results: (finding, its sweep dir, its runs)."""
    import matplotlib

    matplotlib.use("Agg")
    lines = ["# Findings", "", *header, "", "| # | finding | verdict |", "|---|---|---|"]
    body: list[str] = []
    for i, (f, sweep_dir, runs) in enumerate(results, 1):
        verdict, checks, (cols, rows) = evaluate(f, runs)
        lines.append(f"| {i} | [{f.title}](#{i}-{f.name.replace('_', '-')}) | **{verdict}** |")
        body += [
            "",
            f"## {i}. {f.name.replace('_', '-')}",
            "",
            f"**{f.title}: {verdict}.**",
            "",
            f"- **Claim.** {f.claim}",
            f"- **Source.** {f.source}",
            f"- **Protocol.** {f.protocol} "
            f"Sweep {', '.join(f'`sweeps/findings/{n}.yaml`' for n in (f.sweep, *f.also))}; "
            f"ran: {_protocol_facts(runs)}; runs in `{sweep_dir}`{' and beside it' if f.also else ''}.",
            *([f"- **Audit.** {AUDITS[f.name]}"] if f.name in AUDITS else []),
            f"- **Pass criterion** (fixed before the run). {f.criterion} A check is reproduced when the band lies "
            "inside its interval, not reproduced when it lies outside, inconclusive when it straddles an edge.",
            "",
            "| check | criterion | mean [mean ± 2 s.e.] | verdict |",
            "|---|---|---|---|",
        ]
        body += [_row([c.claim, c.criterion, c.summary(), c.verdict]) for c in checks]
        body += ["", _row(cols), "|" + "---|" * len(cols)] + [_row(r) for r in rows]
        if f.plot is not None and runs and f.plot(runs, os.path.join(root, f"{f.name}.png")):
            body += ["", f"![{f.title}]({f.name}.png)"]
    path = os.path.join(root, "findings.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines + body) + "\n")
    return path


def log_to_wandb(root: str, results: list[tuple[Finding, str, list[dict]]]) -> None:
    """A report run in each sweep's W&B group: the verdicts (summary) and the findings' plots."""
    from .sinks import WandbSink

    by_sweep: dict[str, list[tuple[Finding, list[dict]]]] = defaultdict(list)
    for f, sweep_dir, runs in results:
        if runs and _get(runs[0]["cfg"], "log.wandb"):
            by_sweep[os.path.basename(sweep_dir)].append((f, runs))
    for group, items in by_sweep.items():
        log = items[0][1][0]["cfg"].get("log", {})
        sink = WandbSink(
            os.path.join(root, group),
            {"findings_for": group},
            project=log.get("project", "embjax"),
            name=f"{group}-findings",
            mode=log.get("mode", "offline"),
            entity=log.get("entity"),
            group=group,
            tags=("findings",),
            init_timeout=float(log.get("init_timeout", 30)),
        )
        sink.log_rich(
            0,
            {
                f"findings/{f.name}": {"kind": "image", "path": os.path.join(root, f"{f.name}.png")}
                for f, _ in items
                if os.path.exists(os.path.join(root, f"{f.name}.png"))
            },
        )
        sink.summary({f"finding/{f.name}": evaluate(f, runs)[0] for f, runs in items})
        sink.close("finished")
