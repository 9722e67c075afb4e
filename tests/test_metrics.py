"""embedding_report against a plain NumPy float64 reference (which may form V×V: the matrices are small)."""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import rankdata as sp_rankdata
from scipy.stats import spearmanr

from embjax.analysis.metrics import default_probes, embedding_report, rankdata, spearman
from embjax.analysis.neighbors import nearest_neighbors

RTOL = 1e-4  # docs/metrics.md: relative 1e-4 against float64
ATOL = 1e-9  # for values that are exactly 0 in theory (e.g. cos_mean of a centred set)


def reference(E, counts=None, labels=None, probe_ids=None):
    E = np.asarray(E, np.float64)
    V = E.shape[0]
    norms = np.linalg.norm(E, axis=1)
    nz = norms > 0
    U = E[nz] / norms[nz, None]
    n = len(U)
    C = U @ U.T
    off = C[~np.eye(n, dtype=bool)]
    s = np.linalg.svd(E, compute_uv=False)
    p = s[s > 0] / s.sum()
    cov = np.cov(E.T, bias=True)
    ev = np.linalg.eigvalsh(cov)
    _, vecs = np.linalg.eigh(E.T @ E)
    logZ = [logsumexp(E @ (sgn * vecs[:, k])) for k in range(E.shape[1]) for sgn in (1, -1)]
    out = {
        "emb/norm_mean": norms.mean(),
        "emb/norm_std": norms.std(),
        "emb/norm_max": norms.max(),
        "emb/norm_p50": np.median(norms),
        "emb/zero_rows": V - n,
        "emb/cos_mean": off.mean(),
        "emb/cos_std": off.std(),
        "emb/eff_rank": np.exp(-(p * np.log(p)).sum()),
        "emb/pc1_var_share": ev[-1] / ev.sum(),
        "emb/isotropy": np.exp(min(logZ) - max(logZ)),
    }
    if counts is not None:
        out["emb/norm_logfreq_spearman"] = spearmanr(norms, np.log1p(counts)).statistic
    if labels is not None:
        lab = labels[nz]
        same = (lab[:, None] == lab[None, :]) & ~np.eye(n, dtype=bool)
        diff = lab[:, None] != lab[None, :]
        out["emb/class_cos_gap"] = C[same].mean() - C[diff].mean()
        probes = default_probes(V) if probe_ids is None else np.asarray(probe_ids)
        rows = np.flatnonzero(nz)
        pos = {r: i for i, r in enumerate(rows)}
        fr = []
        for pr in probes:
            if not nz[pr]:
                continue
            others = np.array([r for r in rows if r != pr])
            cos = C[pos[pr], [pos[o] for o in others]]
            order = np.lexsort((others, -cos))[:10]
            fr.append(np.mean(labels[others[order]] == labels[pr]))
        out["emb/knn_class_purity"] = np.mean(fr)
    return out


def check(E, **kw):
    got = embedding_report(E, **kw)
    want = reference(E, **kw)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=RTOL, abs=ATOL), k
        assert np.isfinite(got[k]), k
    return got


def rng(seed=0):
    return np.random.default_rng(seed)


def test_random():
    check(rng(0).standard_normal((300, 16)).astype(np.float32), counts=rng(1).integers(0, 50, 300))


def test_anisotropic_with_common_direction():
    r = rng(2)
    E = r.standard_normal((400, 24)) * np.linspace(0.1, 3, 24) + 4.0 * r.standard_normal(24)
    got = check(E.astype(np.float32))
    assert got["emb/cos_mean"] > 0.5 and got["emb/isotropy"] < 0.1


def test_low_rank():
    r = rng(3)
    E = (r.standard_normal((500, 3)) @ r.standard_normal((3, 32))).astype(np.float32)
    got = check(E)
    assert got["emb/eff_rank"] < 3.0 + 1e-6


def test_zero_rows_left_out_of_cosines_and_counted():
    r = rng(4)
    E = r.standard_normal((200, 8)).astype(np.float32)
    E[[0, 5, 77]] = 0.0
    labels = r.integers(0, 4, 200)
    got = check(E, labels=labels, counts=r.integers(0, 9, 200))
    assert got["emb/zero_rows"] == 3
    all_zero = embedding_report(np.zeros((10, 4), np.float32), labels=np.arange(10) % 2, counts=np.arange(10))
    assert all(np.isfinite(v) for k, v in all_zero.items() if k != "emb/norm_logfreq_spearman")


def test_duplicate_rows_ties_to_lower_index():
    r = rng(5)
    base = r.standard_normal((40, 6))
    E = np.concatenate([base, base, base[:10]]).astype(np.float32)
    labels = np.r_[np.arange(40) % 3, (np.arange(40) + 1) % 3, np.arange(10) % 2]
    check(E, labels=labels)
    ids, cos = nearest_neighbors(E, np.array([0]), k=3)
    assert ids[0, 0] == 40 and cos[0, 0] == pytest.approx(1.0)  # its duplicate first
    assert ids[0, 1] == 80  # and the second duplicate next


def test_planted_classes_and_probe_sample():
    r = rng(6)
    K, V, D = 8, 2500, 12
    labels = np.arange(V) % K
    centers = r.standard_normal((K, D)) * 3
    E = (centers[labels] + r.standard_normal((V, D))).astype(np.float32)
    got = check(E, labels=labels, counts=r.zipf(1.5, V).astype(float))
    assert got["emb/knn_class_purity"] > 0.8 and got["emb/class_cos_gap"] > 0.3
    assert len(default_probes(V)) == 2048 and np.all(np.diff(default_probes(V)) > 0)


def test_explicit_probes_and_centered_view():
    r = rng(7)
    E = (r.standard_normal((150, 10)) + 2).astype(np.float32)
    labels = r.integers(0, 3, 150)
    check(E, labels=labels, probe_ids=np.array([1, 5, 9, 140]))
    centred = embedding_report(E, center=True, prefix="c/")
    ref = reference(E.astype(np.float64) - E.astype(np.float64).mean(0))
    for k in ("cos_mean", "cos_std", "eff_rank", "isotropy", "pc1_var_share"):
        assert centred["c/" + k] == pytest.approx(ref["emb/" + k], rel=RTOL, abs=1e-7), k


def test_chunking_does_not_change_results(monkeypatch):
    import embjax.analysis.neighbors as N

    E = rng(8).standard_normal((1000, 8)).astype(np.float32)
    labels = np.arange(1000) % 5
    whole = embedding_report(E, labels=labels, counts=np.arange(1000))
    monkeypatch.setattr(N, "CHUNK", 97)  # read by chunks() when called (it was bound at import before: no effect)
    chunked = embedding_report(E, labels=labels, counts=np.arange(1000))
    for k in whole:
        assert chunked[k] == pytest.approx(whole[k], rel=1e-9, abs=1e-12), k
    assert len(list(N.chunks(E))) == 11  # so the report above read E in 11 chunks of at most 97 rows


def test_spearman_and_ranks_match_scipy_with_ties():
    a = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5])
    b = np.array([2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4])
    np.testing.assert_allclose(rankdata(a), sp_rankdata(a))
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, rel=1e-12)
    assert np.isnan(spearman(np.ones(5), np.arange(5)))  # constant input, as scipy


def test_report_keys_are_the_contract():
    E = rng(9).standard_normal((50, 4)).astype(np.float32)
    keys = set(embedding_report(E, counts=np.arange(50), labels=np.arange(50) % 2))
    for k in (
        "norm_mean",
        "norm_std",
        "norm_max",
        "norm_p50",
        "cos_mean",
        "cos_std",
        "eff_rank",
        "pc1_var_share",
        "isotropy",
        "norm_logfreq_spearman",
        "class_cos_gap",
        "knn_class_purity",
        "zero_rows",
    ):
        assert "emb/" + k in keys
