"""Case `text`: a run on a prepared, memory-mapped text corpus vs the planted corpus, alternating."""

from __future__ import annotations

import os
import tempfile

from .common import SPEC, alternate, generated_text


def bench_text(steps: int, per_dispatch: int, rounds: int, base: str = "default", sets: list[str] = ()) -> list[dict]:
    """A run on a prepared text corpus (generated, 64 MB, the run's V in BPE tokens) vs the planted corpus, side by
    side in separate processes: what streaming windows from the memory map costs per step."""
    from ..config import load_config
    from ..prepare import prepare

    V = 512 if base == "default" else SPEC["data.vocab_size"]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "corpus.txt")
        generated_text(path, 64 << 20)
        text = ["data.kind=text", f"data.path={path}", f"data.vocab_size={V}", f"data.cache_dir={tmp}/cache"]
        prepare(
            load_config(
                None, {"data.kind": "text", "data.path": path, "data.vocab_size": V, "data.cache_dir": f"{tmp}/cache"}
            ).data,
            show=False,
        )
        return alternate("text", {"planted": [], "text": text}, steps, per_dispatch, rounds, sets, base)
