"""Intervals over seeds and benchmark pairs: a two-level bootstrap of Spearman's ρ, its noise split, design power.

A benchmark check's runs (K seeds) are scored on one shared sample of N human-judged pairs, so the check's number
has two sources of noise: the seeds (training) and the pairs (the benchmark's sample of judgments, which no number
of seeds averages out). Each bootstrap draw resamples the seeds with replacement and, once per draw, the pairs
with replacement (seeds and pairs are crossed: every drawn seed is scored on the same drawn pairs), then
recomputes the statistic: the mean over the drawn seeds of ρ, or of a paired difference of ρs (both sides on the
same drawn pairs, and on the same drawn seeds when paired by seed). The interval is the draws' 2.5th-97.5th
percentiles (Dror et al. 2018, "The Hitchhiker's Guide to Testing Statistical Significance in NLP"); the draws
come from a fixed numpy Generator seed, so a rerun gives the same numbers.

Vectorised: a draw is a count per pair (how often it was drawn) and a count per seed, and a pair's rank within a
draw is its average rank among the drawn copies, read off cumulative counts over the pair values' sorted tie
groups, so no draw sorts anything and there is no Python loop per draw.

Dimensions: B draws, K seeds, N pairs, G distinct values (tie groups) of one column. Pure NumPy; no file I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .verdict import INCONCLUSIVE, interval_rule

DRAWS = 2000  # bootstrap draws (>= 2,000: the percentile interval's ends settle to about ±0.005 in ρ)
SEED = 0  # the Generator seed every bootstrap uses unless told otherwise
LEVEL = (2.5, 97.5)  # percentile interval
CHUNK = 250  # draws computed together (fixed: the draws a seed gives depend on it)
MODES = ("both", "seeds", "pairs")  # what a draw resamples: the two-level bootstrap, seeds alone, pairs alone


def pair_counts(rng: np.random.Generator, B: int, N: int) -> np.ndarray:
    """(B, N) float64: how often each of N items is drawn in each of B resamples of N with replacement."""
    idx_BxN = rng.integers(0, N, (B, N))
    flat = (idx_BxN + N * np.arange(B)[:, None]).ravel()
    return np.bincount(flat, minlength=B * N).reshape(B, N).astype(np.float64)


def resample_ranks(v_N: np.ndarray, W_BxN: np.ndarray) -> np.ndarray:
    """(B, N): each item's average rank (1-based, ties averaged, as scipy's rankdata) within each resample that
    holds item j W[b, j] times; an item drawn 0 times gets the rank it would have (its weight makes it count 0)."""
    _, g_N = np.unique(np.asarray(v_N, np.float64), return_inverse=True)
    order = np.argsort(g_N, kind="stable")
    count_BxG = np.take(W_BxN, order, axis=1)  # drawn copies per tie group, in value order
    G = int(g_N.max()) + 1
    if G < g_N.size:
        count_BxG = np.add.reduceat(count_BxG, np.searchsorted(g_N[order], np.arange(G)), axis=1)
    avg_BxG = np.cumsum(count_BxG, axis=1)  # copies with a value <= the group's ...
    avg_BxG -= (count_BxG - 1.0) / 2.0  # ... less half the group's own: the group's average rank
    return np.take(avg_BxG, g_N, axis=1)


def seed_rhos(cos_KxN: np.ndarray, human_N: np.ndarray, W_BxN: np.ndarray) -> np.ndarray:
    """(K, B): each seed's Spearman ρ(cos, human) on each resample of the pairs (W: the pairs' counts per draw):
    the Pearson correlation of the drawn copies' average ranks, whose mean is (n + 1)/2 in every resample of n
    (nan when a side ties throughout)."""
    n = W_BxN.sum(axis=1)
    m2 = ((n + 1.0) / 2.0) ** 2
    ry_BxN = resample_ranks(human_N, W_BxN)
    Wry_BxN = W_BxN * ry_BxN
    vy_B = np.einsum("bn,bn->b", Wry_BxN, ry_BxN) / n - m2
    out = np.empty((len(cos_KxN), W_BxN.shape[0]))
    for k, c_N in enumerate(cos_KxN):  # K is a handful of seeds
        rx_BxN = resample_ranks(c_N, W_BxN)
        cov_B = np.einsum("bn,bn->b", Wry_BxN, rx_BxN) / n - m2
        vx_B = np.einsum("bn,bn->b", W_BxN * rx_BxN, rx_BxN) / n - m2
        with np.errstate(invalid="ignore", divide="ignore"):
            out[k] = np.where((vx_B > 0) & (vy_B > 0), cov_B / np.sqrt(vx_B * vy_B), np.nan)
    return out


@dataclass(frozen=True)
class Bootstrap:
    """A bootstrap's reading of one statistic: the point estimate (all seeds, all pairs), the percentile interval
    [lo, hi] and standard error of the two-level bootstrap, and the variance from seeds alone and pairs alone."""

    estimate: float
    lo: float
    hi: float
    se: float
    var_seeds: float
    var_pairs: float
    seeds: int
    pairs: int
    draws: int

    @property
    def dominant(self) -> str:
        """Which noise is larger: "pairs" or "seeds"."""
        return "pairs" if self.var_pairs >= self.var_seeds else "seeds"

    @property
    def resolvable(self) -> float:
        """The smallest distance from a threshold this design resolves: 2 x the bootstrap standard error."""
        return 2.0 * self.se

    def summary(self) -> str:
        share = self.var_pairs / (self.var_pairs + self.var_seeds) if self.var_pairs + self.var_seeds > 0 else 0
        return (
            f"{self.estimate:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}] (seeds × pairs bootstrap, {self.seeds} seeds × "
            f"{self.pairs} pairs, {self.draws} draws; pairs {100 * share:.0f} % of the variance)"
        )


def _draw(terms: list[tuple[np.ndarray, float, int]], human: np.ndarray, mode: str, draws: int, seed: int):
    """(B,) the statistic Σ sign × mean over drawn seeds of ρ, each term (cos_KxN, sign, seed group): terms of one
    group share the seed draws (paired by seed); every term shares the pair draws. Draws go CHUNK at a time (small
    arrays stay in cache); the chunk size is fixed, so the numbers depend only on the seed."""
    rng = np.random.default_rng([seed, MODES.index(mode)])
    N, stats = human.size, []
    for start in range(0, draws, CHUNK):
        B = min(CHUNK, draws - start)
        W_BxN = pair_counts(rng, B, N) if mode != "seeds" else np.ones((1, N))
        seed_counts: dict[int, np.ndarray] = {}
        stat_B = np.zeros(B)
        for cos_KxN, sign, group in terms:
            K = cos_KxN.shape[0]
            if group not in seed_counts:
                seed_counts[group] = pair_counts(rng, B, K) if mode != "pairs" else np.ones((1, K))
            C_BxK = seed_counts[group]
            if C_BxK.shape[1] != K:
                raise ValueError(f"paired sides: got {C_BxK.shape[1]} and {K} seeds; allowed: the same seeds")
            rho_KxB = seed_rhos(cos_KxN, human, W_BxN)
            stat_B += sign * (C_BxK * rho_KxB.T).sum(axis=1) / K  # (B, K) by broadcasting in every mode
        stats.append(stat_B)
    return np.concatenate(stats)


def bootstrap(terms: list[tuple[Any, float, int]], human: Any, *, draws: int = DRAWS, seed: int = SEED) -> Bootstrap:
    """The two-level bootstrap of Σ sign × (mean over seeds of ρ(cos, human)) over terms (cos_KxN, sign, seed
    group), with its seeds-only and pairs-only variances (see the module docstring)."""
    human = np.asarray(human, np.float64)
    terms = [(np.atleast_2d(np.asarray(c, np.float64)), float(s), g) for c, s, g in terms]
    for cos_KxN, _, _ in terms:
        if cos_KxN.shape[1] != human.size:
            raise ValueError(f"pairs: got {cos_KxN.shape[1]} cosines per seed and {human.size} human scores")
    W1 = np.ones((1, human.size))
    estimate = float(sum(s * np.mean(seed_rhos(c, human, W1)) for c, s, _ in terms))
    both, by_seeds, by_pairs = (_draw(terms, human, m, draws, seed) for m in MODES)
    lo, hi = np.nanpercentile(both, LEVEL)
    K = max(c.shape[0] for c, _, _ in terms)
    return Bootstrap(
        estimate,
        float(lo),
        float(hi),
        float(np.nanstd(both, ddof=1)),
        float(np.nanvar(by_seeds, ddof=1)),
        float(np.nanvar(by_pairs, ddof=1)),
        K,
        human.size,
        draws,
    )


def bootstrap_rho(cos_KxN: Any, human_N: Any, *, draws: int = DRAWS, seed: int = SEED) -> Bootstrap:
    """One table's ρ: the mean over K seeds of Spearman's ρ between the seeds' cosines and the human scores."""
    return bootstrap([(cos_KxN, 1.0, 0)], human_N, draws=draws, seed=seed)


def bootstrap_diff(
    cos_a: Any, cos_b: Any, human_N: Any, *, paired: bool = True, draws: int = DRAWS, seed: int = SEED
) -> Bootstrap:
    """mean ρ(a) − mean ρ(b) on the same pairs (the same drawn pairs for both sides). paired: row k of a and of b
    are the same seed (two tables of the same runs, e.g. ρ_out − ρ_in, or two arms sharing seeds), so both sides
    take the same drawn seeds; else each side's seeds are drawn on their own (arms without shared seeds)."""
    return bootstrap([(cos_a, 1.0, 0), (cos_b, -1.0, 0 if paired else 1)], human_N, draws=draws, seed=seed)


def rho_se(rho: float, n: int, spearman: bool = True) -> float:
    """The sampling standard error of a correlation over n pairs from Fisher's z: (1 − ρ²)/√(n − 3), with Bonett &
    Wright's (2000) factor √(1 + ρ²/2) for Spearman's ρ."""
    return (1.0 - rho * rho) * math.sqrt((1.0 + rho * rho / 2.0 if spearman else 1.0) / (n - 3))


def resolvable_effect(
    n_pairs: int,
    k_seeds: int,
    seed_sd: float,
    rho: float = 0.0,
    *,
    difference: bool = False,
    pair_corr: float = 0.0,
    z: float = 2.0,
) -> float:
    """The smallest distance from a threshold that a design (n pairs, k seeds) can resolve: z × √(SE_pairs² +
    seed_sd²/k), seed_sd the per-seed standard deviation of the statistic (from a pilot), SE_pairs `rho_se`; for a
    difference of two ρs on the same pairs SE_pairs = rho_se × √(2(1 − pair_corr)), pair_corr the correlation of
    the two sides' pair noise (0: independent; the same pairs make it positive, the difference's noise smaller)."""
    se_pairs = rho_se(rho, n_pairs)
    if difference:
        se_pairs *= math.sqrt(2.0 * (1.0 - pair_corr))
    return z * math.sqrt(se_pairs**2 + seed_sd**2 / k_seeds)


def design_resolvable(pilot: Bootstrap, k_seeds: int, n_pairs: int | None = None, z: float = 2.0) -> float:
    """A pilot's bootstrap scaled to a design of k seeds and n pairs: z × √(var_seeds × k₀/(k₀ − 1) × k₀/k +
    var_pairs × n₀/n) (the seeds-only bootstrap's variance is (k₀ − 1)/k₀ of the unbiased s²/k₀)."""
    k0, n0 = pilot.seeds, pilot.pairs
    seeds = pilot.var_seeds * (k0 / (k0 - 1) if k0 > 1 else 1.0) * k0 / k_seeds
    return z * math.sqrt(seeds + pilot.var_pairs * n0 / (n_pairs or n0))


class Verdict(NamedTuple):
    verdict: str  # reproduced / not reproduced / inconclusive
    noise: str | None  # when inconclusive with a known split: "seeds" or "pairs", the larger noise


def bootstrap_verdict(
    interval: Bootstrap | tuple[float, float],
    claim_lo: float = -math.inf,
    claim_hi: float = math.inf,
    noise: tuple[float, float] | None = None,
) -> Verdict:
    """The verdict of 'the statistic lies in [claim_lo, claim_hi]' from a bootstrap interval (a `Bootstrap` or
    (lo, hi)): reproduced when the interval lies inside, not reproduced when it lies outside, else inconclusive,
    naming the dominant noise (a Bootstrap's, or noise=(var_seeds, var_pairs))."""
    if isinstance(interval, Bootstrap):
        lo, hi, noise = interval.lo, interval.hi, (interval.var_seeds, interval.var_pairs)
    else:
        lo, hi = interval
    verdict = interval_rule(lo, hi, claim_lo, claim_hi)
    if verdict != INCONCLUSIVE or noise is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return Verdict(verdict, None)
    return Verdict(INCONCLUSIVE, "pairs" if noise[1] >= noise[0] else "seeds")


# The pilot a real-text finding's design is sized from (not its final runs): the findings' LSTM
# (experiments/configs/findings/text.yaml) tied and untied at seeds 7, 8, 9, read at the best checkpoint (2026-12-07,
# docs/findings_guide.md). The seed spread of one table's ρ was 0.02–0.05 and of a difference of two tables' ρ
# (ρ_out − ρ_in, tied − untied input) 0.03–0.08 on SimLex-999 and WordSim-353: 0.08, rounded up. The correlation of
# two tables' pair noise was 0.15–0.34 (from the pairs-only bootstrap variances: r = (v_a + v_b − v_diff) /
# 2√(v_a v_b)): 0.3. Until then these were 0.06 (the earlier d = 32 transformer runs) and 0.96 (word2vec's two
# tables), which made a difference look about twice as easy to resolve as it is for an LSTM's tables. And the
# benchmark pairs whose words are all in builtin:wiki_sample's word vocabulary of 8,192.
PILOT_SEED_SD = 0.08
PILOT_PAIR_CORR = 0.3
PILOT_PAIRS = {"SimLex-999": 462, "WordSim-353": 228}


def design_statement(k_seeds: int = 3, rho: float = 0.1, pairs: dict[str, int] | None = None) -> str:
    """The smallest effect a design of k seeds resolves on each benchmark (2 standard errors, `resolvable_effect`
    with the pilots' seed spread and pair correlation), for one table's ρ and for a difference of two tables' ρ."""
    pairs = pairs or PILOT_PAIRS
    one = " / ".join(
        f"±{resolvable_effect(n, k_seeds, PILOT_SEED_SD, rho):.2f} ({b}, {n} pairs)" for b, n in pairs.items()
    )
    two = " / ".join(
        f"±{resolvable_effect(n, k_seeds, PILOT_SEED_SD, rho, difference=True, pair_corr=PILOT_PAIR_CORR):.2f}"
        f"–{resolvable_effect(n, k_seeds, PILOT_SEED_SD, rho, difference=True):.2f} ({b})"
        for b, n in pairs.items()
    )
    return (
        f"with {k_seeds} seeds, one table's ρ (near {rho}) is resolved to {one}; a difference of two tables' ρ on "
        f"the same pairs to {two} (the two sides' pair noise correlated {PILOT_PAIR_CORR} as the LSTM pilot's two "
        "tables – or independent; the run's own seeds × pairs bootstrap measures it: its 'resolves ±'). "
        "Each is 2 × √(SE_pairs² + s²/k): SE_pairs = (1 − ρ²)√((1 + ρ²/2)/(n − 3)) (Fisher z, Bonett & Wright's "
        f"factor for Spearman's ρ), × √(2(1 − r)) for a difference; s = {PILOT_SEED_SD}, the pilot's seed spread "
        "(the findings' LSTM at seeds 7–9, not findings seeds; rounded up). That pilot ran after the final runs: "
        "before it, with s = 0.06 and r = 0.96 (word2vec's two tables), this statement said a difference resolves to "
        "±0.07–0.15 (SimLex-999) / ±0.08–0.20 (WordSim-353); the LSTM's two tables share far less pair noise"
    )
