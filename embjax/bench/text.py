"""Case `text`: a run on a prepared, memory-mapped text corpus vs the planted corpus, alternating; and the real-
language figures: builtin:wiki_sample's word-level prepare time, word2vec's time and words/s on it, and a word-level
training run's tokens/s beside the planted corpus's at the same shape."""

from __future__ import annotations

import os
import tempfile
import time

from .common import SPEC, alternate, generated_text

WIKI = ["data.kind=text", "data.path=builtin:wiki_sample", "data.tokenizer=word", "data.vocab_size=8192"]


def bench_text(steps: int, per_dispatch: int, rounds: int, base: str = "default", sets: list[str] = ()) -> list[dict]:
    """A run on a prepared text corpus (generated, 64 MB, the run's V in BPE tokens) vs the planted corpus, side by
    side in separate processes: what streaming windows from the memory map costs per step; then bench_real_text."""
    from ..config import load_config
    from ..data.prepare import prepare

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
        rows = alternate("text", {"planted": [], "text": text}, steps, per_dispatch, rounds, sets, base)
    return rows + bench_real_text(steps, per_dispatch, rounds, base, sets)


def bench_real_text(steps: int, per_dispatch: int, rounds: int, base: str, sets: list[str] = ()) -> list[dict]:
    """builtin:wiki_sample word-level (V = 8,192) prepared in a fresh cache (seconds), gensim's word2vec (skip-gram,
    d = 100, 5 epochs, one worker) on its training stream (seconds, words/s), and the `base` model on it vs on the
    planted corpus at the same V, alternating (tokens/s and their ratio)."""
    from ..config import load_config
    from ..data.corpus import make_corpus
    from ..train.baseline import Spec, fit

    with tempfile.TemporaryDirectory() as tmp:
        cache = [f"data.cache_dir={tmp}/cache"]
        cfg = load_config(None, [f"--{o}" for o in WIKI + cache])
        t = time.perf_counter()
        corpus = make_corpus(cfg)
        prepare_s = time.perf_counter() - t
        spec = Spec(sg=True)
        _, _, fit_s = fit(corpus, spec, seed=0)
        words = len(corpus.train) * spec.epochs
        rows = [
            {
                "case": "text_wiki_prepare",
                "prepare_s": prepare_s,
                "train_tokens": int(corpus.train.size),
                "eval_tokens": int(corpus.held_out.size),
                "documents": int(corpus.info["data/documents"]),
            },
            {"case": "text_word2vec", "fit_s": fit_s, "words": words, "words_per_s": words / fit_s, "dim": spec.dim},
        ]
        shape = ["data.vocab_size=8192"]
        sides = {"planted": shape, "wiki_word": WIKI + cache}
        return rows + alternate("text_wiki_train", sides, steps, per_dispatch, rounds, sets, base)
