"""Embedding geometry, exact at any vocabulary size: every statistic streams over row chunks.

Dimensions: V rows (tokens), D width, n nonzero rows, P probes. Nothing V×V is ever formed: the
cosine statistics come from sums and D×D Gram matrices of unit rows accumulated in float64 one
chunk at a time; nearest neighbours are found block by block. Extra memory is O(D² + chunk·D + V).
Statistics are population statistics (ddof = 0). Zero rows are left out of the cosine statistics
and counted in emb/zero_rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import ConfigError
from .evals import Benchmarks, Lexicon
from .neighbors import KNN_K, chunks, nearest_neighbors
from .stats import rankdata, spearman  # noqa: F401 (part of this module's API)

MAX_PROBES = 2048


def _moments(
    E: np.ndarray, mu: np.ndarray | None, labels: np.ndarray | None, frequent: np.ndarray | None = None
) -> dict[str, Any]:
    """One pass: row norms, Σ eᵢ, EᵀE, Σ ûᵢ, ÛᵀÛ, Σ ûᵢ² per coordinate, per-class Σ ûᵢ, and (given a (V,) bool
    `frequent`) Σ ûᵢ and the count of nonzero rows inside the frequent group and inside the rest."""
    V, D = E.shape
    norms = np.empty(V, np.float64)
    sum_e = np.zeros(D)
    gram = np.zeros((D, D))
    sum_u = np.zeros(D)
    gram_u = np.zeros((D, D))
    classes = None if labels is None else np.unique(labels)
    class_sum = None if labels is None else np.zeros((len(classes), D))
    group_sum, group_n = np.zeros((2, D)), np.zeros(2, np.int64)  # [frequent, rest]
    for i, X in chunks(E, mu):
        nrm = np.sqrt(np.einsum("ij,ij->i", X, X))
        norms[i : i + len(X)] = nrm
        sum_e += X.sum(0)
        gram += X.T @ X
        nz = nrm > 0
        U = X[nz] / nrm[nz, None]
        sum_u += U.sum(0)
        gram_u += U.T @ U
        if frequent is not None:
            f = frequent[i : i + len(X)][nz]
            group_sum += np.stack([U[f].sum(0), U[~f].sum(0)])
            group_n += [int(f.sum()), int((~f).sum())]
        if labels is not None:
            idx = np.searchsorted(classes, labels[i : i + len(X)][nz])
            if len(classes) <= 1024:  # a one-hot matmul beats np.add.at by far
                class_sum += (idx[None, :] == np.arange(len(classes))[:, None]).astype(np.float64) @ U
            else:
                np.add.at(class_sum, idx, U)
    return dict(
        norms=norms,
        sum_e=sum_e,
        gram=gram,
        sum_u=sum_u,
        gram_u=gram_u,
        classes=classes,
        class_sum=class_sum,
        group_sum=group_sum,
        group_n=group_n,
    )


def _isotropy(E: np.ndarray, mu: np.ndarray | None, vecs: np.ndarray) -> float:
    """Mu & Viswanath 2018: min_a Z(a) / max_a Z(a), Z(a) = Σᵢ exp(aᵀeᵢ), a ∈ {±u} for eigenvectors u of EᵀE.

    Streams a running log-sum-exp per direction, so it holds in log space for any norms."""
    D = vecs.shape[1]
    m = np.full(2 * D, -np.inf)
    s = np.zeros(2 * D)
    for _, X in chunks(E, mu):
        P = X @ vecs  # (chunk, D); the -u directions are -P
        cm = np.concatenate([P.max(0), -P.min(0)])
        new_m = np.maximum(m, cm)
        s = s * np.exp(m - new_m)
        s[:D] += np.exp(P - new_m[:D]).sum(0)
        s[D:] += np.exp(-P - new_m[D:]).sum(0)
        m = new_m
    logZ = m + np.log(s)
    return float(np.exp(logZ.min() - logZ.max()))


def default_probes(V: int, seed: int = 0) -> np.ndarray:
    """Every row when V ≤ 2,048, else a seeded sample of 2,048 rows (sorted)."""
    if V <= MAX_PROBES:
        return np.arange(V)
    return np.sort(np.random.default_rng(seed).choice(V, MAX_PROBES, replace=False))


def embedding_report(
    E: Any, *, counts: Any = None, labels: Any = None, probe_ids: Any = None, center: bool = False, prefix: str = "emb/"
) -> dict[str, float]:
    """The geometry of E (V×d) as `emb/...` scalars; each key's formula is in the helpers below and in docs/metrics.md.

    center=True computes everything for E minus its mean row (the "all-but-the-top" view of
    Mu & Viswanath 2018), without copying E.
    """
    E = np.asarray(E)
    if E.ndim != 2:
        raise ValueError(f"embedding_report: got an array of shape {E.shape}; allowed: a V×d matrix")
    V, D = E.shape
    labels = None if labels is None else np.asarray(labels)
    mu = sum(X.sum(0) for _, X in chunks(E)) / V if center else None
    counts = None if counts is None else np.asarray(counts, np.float64)
    mom = _moments(E, mu, labels, None if counts is None else _frequent(counts))
    norms = mom["norms"]
    nz = norms > 0
    n = int(nz.sum())
    out: dict[str, float] = {
        "norm_mean": norms.mean(),
        "norm_std": norms.std(),
        "norm_max": norms.max(),
        "norm_p50": np.median(norms),
        "zero_rows": float(V - n),
    }
    out.update(_cosine_stats(mom, n))
    evecs = _spectrum(mom, V, out)
    out["isotropy"] = _isotropy(E, mu, evecs)
    if counts is not None:
        out["norm_logfreq_spearman"] = spearman(norms, np.log1p(counts))
        out.update(_frequency_buckets(norms, counts))
        out.update(_frequency_cosines(mom))
    if labels is not None:
        out.update(_class_stats(E, mom, labels, nz, probe_ids, mu))
    return {prefix + k: float(v) for k, v in out.items()}


def _cosine_stats(mom: dict[str, Any], n: int) -> dict[str, float]:
    """cos_mean, cos_std and rogue_dim_share over ordered pairs i ≠ j of the n nonzero rows."""
    pairs = n * (n - 1)
    if pairs == 0:
        return dict(cos_mean=0.0, cos_std=0.0, rogue_dim_share=0.0)
    cos_mean = (mom["sum_u"] @ mom["sum_u"] - n) / pairs  # Σ_{i≠j} ûᵢ·ûⱼ = ‖Σ ûᵢ‖² − n
    cos_sq = (np.sum(mom["gram_u"] ** 2) - n) / pairs  # Σ_{i≠j} (ûᵢ·ûⱼ)² = ‖ÛᵀÛ‖_F² − n
    # Timkey & van Schijndel 2021: coordinate k's share of the expected cosine
    per_dim = (mom["sum_u"] ** 2 - np.diag(mom["gram_u"])) / pairs
    return {
        "cos_mean": cos_mean,
        "cos_std": np.sqrt(max(cos_sq - cos_mean**2, 0.0)),
        "rogue_dim_share": float(np.max(np.abs(per_dim)) / max(np.sum(np.abs(per_dim)), 1e-300)),
    }


def _spectrum(mom: dict[str, Any], V: int, out: dict[str, float]) -> np.ndarray:
    """eff_rank and pc1_var_share into `out`; returns the eigenvectors of EᵀE (for isotropy)."""
    evals, evecs = np.linalg.eigh(mom["gram"])
    s = np.sqrt(np.clip(evals, 0.0, None))  # singular values of E (Roy & Vetterli 2007 effective rank)
    if s.sum() > 0:
        p = s[s > 0] / s.sum()
        out["eff_rank"] = float(np.exp(-(p * np.log(p)).sum()))
    else:
        out["eff_rank"] = 0.0
    mean_row = mom["sum_e"] / V
    cev = np.linalg.eigvalsh(mom["gram"] / V - np.outer(mean_row, mean_row))
    out["pc1_var_share"] = float(cev[-1] / cev.sum()) if cev.sum() > 0 else 0.0
    out["isoscore"] = isoscore_from_variances(cev)
    return evecs


def isoscore_from_variances(variances: Any) -> float:
    """IsoScore (Rudman et al. 2022) from the variances along the principal components (the eigenvalues of
    the rows' covariance): 1 when every direction carries the same variance, 0 when one direction carries
    it all; unchanged by a shift of every row (unlike mean cosine) and by a global scale.
    Steps 3-6 of the paper's algorithm: Σ̂ = √n Σ/‖Σ‖, δ = ‖Σ̂ − 1‖/√(2(n − √n)), φ = (n − δ²(n − √n))²/n²,
    ι = (nφ − 1)/(n − 1), n the dimension."""
    lam = np.clip(np.asarray(variances, np.float64), 0.0, None)
    n = lam.size
    if n < 2 or not np.any(lam > 0):
        return 0.0
    sig = np.sqrt(n) * lam / np.linalg.norm(lam)
    delta2 = np.sum((sig - 1.0) ** 2) / (2.0 * (n - np.sqrt(n)))
    phi = (n - delta2 * (n - np.sqrt(n))) ** 2 / n**2
    return float((n * phi - 1.0) / (n - 1.0))


def _class_stats(
    E: np.ndarray, mom: dict[str, Any], labels: np.ndarray, nz: np.ndarray, probe_ids: Any, mu: np.ndarray | None
) -> dict[str, float]:
    """class_cos_gap and knn_class_purity of the nonzero rows."""
    n = int(nz.sum())
    pairs = n * (n - 1)
    cs, cl = mom["class_sum"], mom["classes"]
    n_c = np.bincount(np.searchsorted(cl, labels[nz]), minlength=len(cl)).astype(np.float64)
    same_pairs = float(np.sum(n_c * (n_c - 1)))
    same_sum = float(np.sum(cs * cs) - n)
    diff_pairs = pairs - same_pairs
    diff_sum = (mom["sum_u"] @ mom["sum_u"] - n) - same_sum
    same = same_sum / same_pairs if same_pairs > 0 else 0.0
    diff = diff_sum / diff_pairs if diff_pairs > 0 else 0.0
    out = {"class_cos_gap": same - diff, "knn_class_purity": 0.0}
    probes = default_probes(E.shape[0]) if probe_ids is None else np.asarray(probe_ids)
    probes = probes[nz[probes]]
    if len(probes) and n > 1:
        ids, _ = nearest_neighbors(E, probes, min(KNN_K, n - 1), mu=mu)
        valid = ids >= 0
        same_cls = (labels[np.where(valid, ids, 0)] == labels[probes][:, None]) & valid
        out["knn_class_purity"] = float(np.mean(same_cls.sum(1) / np.maximum(valid.sum(1), 1)))
    return out


# Frequency buckets of token types, by the corpus's counts: the 1 % most frequent types, the next 9 %,
# the rest; "unseen" (count 0) overrides them. Eval loss per bucket and norms per bucket share them.
FREQ_BUCKETS = ("top1", "top1_10", "rest", "unseen")


def _bucket_bounds(V: int) -> tuple[int, int]:
    return max(1, int(round(0.01 * V))), max(1, int(round(0.10 * V)))


def frequency_bucket_of(counts: Any) -> np.ndarray:
    """Each token's bucket index into FREQ_BUCKETS by its count's rank (ties by id); 3 where the count is 0."""
    counts = np.asarray(counts, np.float64)
    order = np.argsort(-counts, kind="mergesort")
    a, b = _bucket_bounds(len(counts))
    out = np.full(len(counts), 2, np.int32)
    out[order[:a]], out[order[a:b]] = 0, 1
    out[counts == 0] = 3
    return out


def _frequency_buckets(norms: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    """Mean row norm of the top 1 % most frequent tokens, the next 9 %, the rest, and unseen ones."""
    V = len(norms)
    order = np.argsort(-counts, kind="mergesort")
    a, b = _bucket_bounds(V)
    out = {"norm_mean_top1pct": norms[order[:a]].mean()}
    if b > a:  # an empty bucket (tiny V) is left out rather than reported as nan
        out["norm_mean_top1to10pct"] = norms[order[a:b]].mean()
    if V > b:
        out["norm_mean_rest"] = norms[order[b:]].mean()
    unseen = counts == 0
    out["unseen_tokens"] = float(unseen.sum())
    if unseen.any():
        out["norm_mean_unseen"] = norms[unseen].mean()
    return out


def _frequent(counts: np.ndarray) -> np.ndarray:
    """(V,) bool: the 10 % most frequent types (by count's rank, ties by id)."""
    frequent = np.zeros(len(counts), bool)
    frequent[np.argsort(-counts, kind="mergesort")[: _bucket_bounds(len(counts))[1]]] = True
    return frequent


def _frequency_cosines(mom: dict[str, Any]) -> dict[str, float]:
    """Mean cosine over pairs i ≠ j inside the 10 % most frequent types (cos_mean_top10pct) and inside the
    rest (cos_mean_rest): do rare rows drift together more than frequent ones? Zero rows left out."""
    out = {}
    for s, n, key in zip(mom["group_sum"], mom["group_n"], ("cos_mean_top10pct", "cos_mean_rest")):
        if n > 1:
            out[key] = (s @ s - n) / (n * (n - 1))
    return out


def cosine_sample(E: np.ndarray, n_pairs: int = 4096, seed: int = 0) -> np.ndarray:
    """Cosines of a fixed, seeded sample of row pairs i ≠ j (for histograms)."""
    V = E.shape[0]
    rng = np.random.default_rng(seed)
    i = rng.integers(0, V, n_pairs)
    j = (i + rng.integers(1, max(V, 2), n_pairs)) % V
    A, B = np.asarray(E[i], np.float64), np.asarray(E[j], np.float64)
    na, nb = np.linalg.norm(A, axis=1), np.linalg.norm(B, axis=1)
    ok = (na > 0) & (nb > 0)
    return np.einsum("ij,ij->i", A[ok], B[ok]) / (na[ok] * nb[ok])


def neighbour_probes(counts: Any, n: int = 8) -> np.ndarray:
    """The rows whose nearest neighbours the loop logs, ascending: the n // 2 most frequent and n // 2 more
    spread evenly over the frequency ranks from n to V - 1 (ties by id), at most n in all; every row when
    V ≤ n."""
    counts = np.asarray(counts, np.float64)
    V = len(counts)
    if V <= n:
        return np.arange(V)
    by_freq = np.argsort(-counts, kind="mergesort")
    picks = np.unique(np.r_[by_freq[: n // 2], by_freq[np.linspace(n, V - 1, n // 2).astype(int)]])
    return picks[:n]


class TrainingGeometry:
    """What the loop logs every log.metrics_every steps: the report's scalars, the centred view,
    histograms of row norms and of sampled cosines, and the probe tokens' nearest neighbours."""

    def __init__(self, cfg, corpus, n_probe_tokens: int = 8):
        self.corpus = corpus
        self.counts = corpus.counts
        self.labels = corpus.labels
        self.probe_tokens = neighbour_probes(corpus.counts, n_probe_tokens)
        # word-level vocabularies (the planted corpus's token strings, data.tokenizer=word): a word is one row
        words = getattr(corpus, "unk_id", None) is not None or corpus.labels is not None
        lex = Lexicon(corpus.encode, corpus.vocab_size, words=words, unk=getattr(corpus, "unk_id", None))
        try:
            self.benchmarks = Benchmarks(cfg.log, lex)  # read once
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def __call__(
        self, E: np.ndarray, step: int, E_out: np.ndarray | None = None
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """The scalars and rich values of step `step`; E_out: an untied output head, scored on the benchmarks."""
        scalars = embedding_report(E, counts=self.counts, labels=self.labels)
        if self.benchmarks:
            scalars.update(self.benchmarks.scores(E))
            if E_out is not None:
                scalars.update(self.benchmarks.scores(E_out, "_out"))
        centred = embedding_report(E, center=True, prefix="emb_centered/")
        scalars.update(
            {
                k: v
                for k, v in centred.items()
                if k.split("/")[1]
                in ("cos_mean", "cos_std", "isotropy", "pc1_var_share", "eff_rank", "rogue_dim_share")
            }
        )
        norms = np.linalg.norm(np.asarray(E, np.float64), axis=1)
        ids, cos = nearest_neighbors(E, self.probe_tokens, k=5)
        toks = self.corpus.tokens
        rows = []
        for p, nb, cs in zip(self.probe_tokens, ids, cos):
            cls = (lambda i: int(self.labels[i])) if self.labels is not None else (lambda i: -1)
            rows.append(
                [
                    step,
                    toks[p],
                    cls(p),
                    ", ".join(toks[i] for i in nb if i >= 0),
                    ", ".join(str(cls(i)) for i in nb if i >= 0),
                    float(np.nanmean(cs)) if np.isfinite(cs).any() else 0.0,
                ]
            )
        rich = {
            "hist/row_norm": {"kind": "histogram", "np_histogram": np.histogram(norms, bins=64)},
            "hist/pair_cosine": {
                "kind": "histogram",
                "np_histogram": np.histogram(cosine_sample(E), bins=64, range=(-1, 1)),
            },
            "tables/nearest_neighbors": {
                "kind": "table",
                "data": rows,
                "columns": ["step", "token", "class", "neighbours", "neighbour classes", "mean cosine"],
            },
        }
        return scalars, rich
