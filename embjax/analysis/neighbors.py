"""Exact nearest neighbours by cosine among a table's rows, in float64 chunks at any vocabulary size, and the
groups of equal rows (so ties among duplicates go to the lower index by construction)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CHUNK = 8192  # rows per float64 chunk: 8192 × 1024 × 8 B = 64 MiB
KNN_K = 10


def chunks(E: np.ndarray, mu: np.ndarray | None = None, chunk: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(start, float64 rows) of E (minus mu, if given), one chunk (CHUNK rows, read when called) at a time."""
    chunk = chunk or CHUNK
    for i in range(0, E.shape[0], chunk):
        X = np.asarray(E[i : i + chunk], np.float64)
        yield i, (X - mu if mu is not None else X)


def nearest_neighbors(
    E: np.ndarray,
    probe_ids: np.ndarray,
    k: int = KNN_K,
    *,
    mu: np.ndarray | None = None,
    block: int = CHUNK,
    probe_chunk: int = 256,
    extra: int = 22,
) -> tuple[np.ndarray, np.ndarray]:
    """For each probe row, its k nearest other nonzero rows by cosine (ties to the lower row index).

    Returns (ids P×k, cosines P×k), in decreasing cosine; -1 / nan pad where fewer rows exist.
    A zero probe row gets no neighbours. No V×V and no copy of E.

    Fast path: a float32 pass keeps k + `extra` candidates per probe; their cosines are recomputed
    in float64 and the answer is accepted only if the k-th exact cosine beats every non-candidate
    by more than float32's dot-product error bound γ_d (Higham 2002, §3.1). Probes that fail the
    check (near-ties at the boundary, e.g. many duplicate rows) are redone exactly in float64.
    """
    E = np.asarray(E)
    V, D = E.shape
    probe_ids = np.asarray(probe_ids, np.int64)
    dup = duplicate_rows(E, block)
    if mu is not None or V <= k + extra + 1:
        return _nearest_exact(E, probe_ids, k, mu=mu, block=block, probe_chunk=probe_chunk, dup=dup)
    M = k + extra
    err = (D + 4) * 2.0**-23  # ≥ 2·γ_D for unit-norm float32 dot products, plus rounding of the inputs
    out_ids = np.full((len(probe_ids), k), -1, np.int64)
    out_cos = np.full((len(probe_ids), k), np.nan)
    redo = []
    for p0 in range(0, len(probe_ids), probe_chunk):
        pid = probe_ids[p0 : p0 + probe_chunk]
        Q64 = np.asarray(E[pid], np.float64)
        qn = np.linalg.norm(Q64, axis=1)
        Q32 = (Q64 / np.where(qn > 0, qn, 1.0)[:, None]).astype(np.float32)
        cand_val, cand_idx = _float32_candidates(E, pid, Q32, M, block)
        for r in range(len(pid)):
            ok = np.isfinite(cand_val[r])
            if qn[r] == 0:
                continue
            ids = cand_idx[r][ok]
            exact = _candidate_cosines(E, ids, Q64[r] / qn[r], dup)
            order = np.lexsort((ids, -exact))[:k]
            # every non-candidate has float32 cosine ≤ the smallest kept candidate's
            bound = float(cand_val[r][ok].min()) + err if ok.all() else -np.inf
            if len(order) == k and exact[order[-1]] > bound or not ok.all():
                out_ids[p0 + r, : len(order)] = ids[order]
                out_cos[p0 + r, : len(order)] = exact[order]
            else:
                redo.append(p0 + r)
    if redo:
        ids, cos = _nearest_exact(E, probe_ids[redo], k, block=block, probe_chunk=probe_chunk, dup=dup)
        out_ids[redo], out_cos[redo] = ids, cos
    return out_ids, out_cos


def _candidate_cosines(E: np.ndarray, ids: np.ndarray, q: np.ndarray, dup) -> np.ndarray:
    """float64 cosines of rows `ids` with the unit vector q; equal rows get one cosine (their group
    representative's, see duplicate_rows), so a tie between them goes to the lower index."""
    rows = np.asarray(E[ids], np.float64)
    exact = rows @ q / np.linalg.norm(rows, axis=1)
    if dup is not None:
        group, R = dup
        g = group[ids]
        if (g >= 0).any():
            rep = R @ q / np.linalg.norm(R, axis=1)
            exact = np.where(g >= 0, rep[np.maximum(g, 0)], exact)
    return exact


def duplicate_rows(E: np.ndarray, block: int = CHUNK) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows equal bit for bit to another row: (group, R), group[i] the index in R (one float64 row per group) of
    row i's group, -1 for a row no other equals; None when every row is distinct. Found by a 64-bit hash of each
    row's bits (chunked: no copy of E), then checked exactly."""
    V, D = E.shape
    mult = np.random.default_rng(0).integers(1, 2**63 - 1, D, dtype=np.uint64) | np.uint64(1)
    h = np.empty(V, np.uint64)
    for b0 in range(0, V, block):
        X = np.ascontiguousarray(np.asarray(E[b0 : b0 + block], np.float64) + 0.0).view(np.uint64)  # (−0 is 0)
        with np.errstate(over="ignore"):
            h[b0 : b0 + len(X)] = (X * mult).sum(axis=1)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    starts = np.flatnonzero(np.r_[True, hs[1:] != hs[:-1]])
    sizes = np.diff(np.r_[starts, V])
    if (sizes < 2).all():
        return None
    group, reps = np.full(V, -1, np.int64), []
    for s, n in zip(starts[sizes > 1], sizes[sizes > 1]):
        ids = order[s : s + n]  # equal hashes, in index order; split into runs of truly equal rows
        rows = np.asarray(E[ids], np.float64)
        left = np.ones(n, bool)
        while left.any():
            first = np.flatnonzero(left)[0]
            same = left & (rows == rows[first]).all(axis=1)
            if same.sum() > 1:
                group[ids[same]] = len(reps)
                reps.append(rows[first])
            left &= ~same
    return (group, np.asarray(reps, np.float64).reshape(-1, D)) if reps else None


def _float32_candidates(
    E: np.ndarray, pid: np.ndarray, Q32: np.ndarray, M: int, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """The M best float32 cosines (and their rows) of each unit probe row Q32 against E, itself and zero rows
    left out."""
    cand_val = np.full((len(pid), M), -np.inf, np.float32)
    cand_idx = np.zeros((len(pid), M), np.int64)
    for b0 in range(0, E.shape[0], block):
        X = np.asarray(E[b0 : b0 + block], np.float32)
        xn = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64)).astype(np.float32)
        sims = (Q32 @ X.T) / np.where(xn > 0, xn, 1.0)[None, :]
        sims[:, xn == 0] = -np.inf
        cols = np.arange(b0, b0 + len(X))
        sims[pid[:, None] == cols[None, :]] = -np.inf
        vals = np.concatenate([cand_val, sims], axis=1)
        idx = np.concatenate([cand_idx, np.broadcast_to(cols, sims.shape)], axis=1)
        top = np.argpartition(-vals, M - 1, axis=1)[:, :M]
        cand_val = np.take_along_axis(vals, top, 1)
        cand_idx = np.take_along_axis(idx, top, 1)
    return cand_val, cand_idx


def _nearest_exact(
    E: np.ndarray,
    probe_ids: np.ndarray,
    k: int,
    *,
    mu: np.ndarray | None = None,
    block: int = CHUNK,
    probe_chunk: int = 256,
    dup: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """nearest_neighbors entirely in float64 (exact tie handling by (cosine desc, index asc)); `dup`
    (duplicate_rows): equal rows get one cosine, computed once for their group."""
    probe_ids = np.asarray(probe_ids, np.int64)
    P = len(probe_ids)
    out_ids = np.full((P, k), -1, np.int64)
    out_cos = np.full((P, k), np.nan)
    for p0 in range(0, P, probe_chunk):
        pid = probe_ids[p0 : p0 + probe_chunk]
        Q = np.asarray(E[pid], np.float64) - (mu if mu is not None else 0.0)
        qn = np.linalg.norm(Q, axis=1)
        Q = np.where(qn[:, None] > 0, Q / np.where(qn > 0, qn, 1.0)[:, None], 0.0)
        best_val = np.full((len(pid), k), -np.inf)
        best_idx = np.full((len(pid), k), np.iinfo(np.int64).max)
        if dup is not None:  # each duplicate group's cosine, once: its members share it exactly
            R = dup[1] - (mu if mu is not None else 0.0)
            rn = np.sqrt(np.einsum("ij,ij->i", R, R))
            group_sims = Q @ R.T / np.where(rn > 0, rn, 1.0)[None, :]
        for b0, X in chunks(E, mu, block):
            xn = np.sqrt(np.einsum("ij,ij->i", X, X))
            sims = Q @ X.T / np.where(xn > 0, xn, 1.0)[None, :]
            cols = np.arange(b0, b0 + len(X))
            if dup is not None and (g := dup[0][cols]).max() >= 0:
                sims[:, g >= 0] = group_sims[:, g[g >= 0]]
            sims[:, xn == 0] = -np.inf  # zero rows are nobody's neighbour
            sims[pid[:, None] == cols[None, :]] = -np.inf  # nor their own
            vals = np.concatenate([best_val, sims], axis=1)
            idx = np.concatenate([best_idx, np.broadcast_to(cols, sims.shape)], axis=1)
            kth = -np.partition(-vals, k - 1, axis=1)[:, k - 1]
            r, c = np.nonzero(vals >= kth[:, None])
            order = np.lexsort((idx[r, c], -vals[r, c], r))  # by probe, then cosine desc, then lower id
            r, c = r[order], c[order]
            start = np.searchsorted(r, np.arange(len(pid)))
            rank = np.arange(len(r)) - start[r]
            keep = rank < k
            best_val = np.full((len(pid), k), -np.inf)
            best_idx = np.full((len(pid), k), np.iinfo(np.int64).max)
            best_val[r[keep], rank[keep]] = vals[r[keep], c[keep]]
            best_idx[r[keep], rank[keep]] = idx[r[keep], c[keep]]
        found = np.isfinite(best_val) & (qn[:, None] > 0)
        out_ids[p0 : p0 + len(pid)] = np.where(found, best_idx, -1)
        out_cos[p0 : p0 + len(pid)] = np.where(found, best_val, np.nan)
    return out_ids, out_cos
