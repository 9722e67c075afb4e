"""Case `kinds`: the table, factorized and hashed input layers at the spec, alternating."""

from __future__ import annotations

from .common import alternate

# The rare-token layers at the spec (V = 8,192, d = 256, tied): a factorized table of rank 64 (V·k + k·d =
# 541 k parameters vs the table's 2.1 M) and hash embeddings with 2,048 buckets × 2 hashes (541 k).
KINDS = {
    "table": ["embedding.kind=table"],
    "factorized": ["embedding.kind=factorized", "embedding.rank=64"],
    "hashed": ["embedding.kind=hashed", "embedding.buckets=2048", "embedding.num_hashes=2"],
}


def bench_kinds(steps: int, per_dispatch: int, rounds: int, sets: list[str] = ()) -> list[dict]:
    """Tokens/s of the factorized and hashed input layers against the plain table, side by side."""
    return alternate("kinds", KINDS, steps, per_dispatch, rounds, sets)
