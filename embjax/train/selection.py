"""How long a run trains and which of its states it reports: epochs -> steps, the best eval checkpoint, early stop.

`epochs` on a text corpus sets steps = ceil(epochs × training tokens / (batch_size × seq_len)): a step reads
batch_size windows of seq_len predicted tokens, drawn at random starts, so an epoch is as many predicted tokens as
the training stream holds (`resolve_epochs`, before any run directory is opened; the stored config holds both).

`Selection` follows each member's eval losses after step 0 (the initial state is no candidate). With
`checkpoint.keep_best` a member whose eval loss is strictly the lowest so far saves that state as its best
checkpoint, beside the latest (which resume uses); with `log.patience` > 0 a member stops after that many evals
without a lower loss (status `finished`, `stopped_early` in its summary). On resume it replays the eval losses the
run logged up to the restored step, so an interrupted run decides what the uninterrupted one does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .. import config as C
from ..config import Config, ConfigError
from ..data.corpus import make_corpus
from ..runtime.mesh import to_host

BENCHMARK_PREFIXES = ("word_sim/", "word_sim_out/", "analogy/", "analogy_out/")


def steps_for_epochs(epochs: int, train_tokens: int, batch_size: int, seq_len: int) -> int:
    """ceil(epochs · tokens / (B · T)), at least 1."""
    return max(1, math.ceil(epochs * train_tokens / (batch_size * seq_len)))


def resolve_epochs(cfgs: list[Config]) -> list[Config]:
    """Each config with `epochs` given its derived steps (the corpus is prepared or read once per data setting);
    a steps given beside epochs that differs is refused in one line."""
    tokens: dict[Any, int] = {}
    out = []
    for cfg in cfgs:
        if cfg.epochs is None:
            out.append(cfg)
            continue
        if cfg.data not in tokens:
            tokens[cfg.data] = int(make_corpus(cfg, show=cfg.log.progress).info["data/train_tokens"])
        n, d = tokens[cfg.data], cfg.data
        steps = steps_for_epochs(cfg.epochs, n, d.batch_size, d.seq_len)
        if cfg.steps not in (0, steps):
            raise ConfigError(
                f"steps: got {cfg.steps} with epochs={cfg.epochs}, which is {steps} steps on this corpus "
                f"(ceil({cfg.epochs} × {n:,} training tokens / ({d.batch_size} × {d.seq_len}))); allowed: no steps "
                f"(epochs derives it), steps={steps}, or no epochs"
            )
        out.append(C.replace(cfg, steps=steps))
    return out


def perplexity(loss: float) -> float:
    """exp(loss); inf past float64's range."""
    return math.exp(loss) if loss < 700 else math.inf


class Selection:
    """Each member's best eval loss, its step and the evals since; see the module docstring."""

    def __init__(self, cfg: Config, history: list[list[tuple[int, float]]]):
        self.keep, self.patience = cfg.checkpoint.keep_best, cfg.log.patience
        self.every, self.total = cfg.log.eval_every, cfg.steps
        self.on = self.keep or self.patience > 0
        self.best: list[tuple[int | None, float]] = [(None, math.inf)] * len(history)
        self.since = [0] * len(history)
        for i, evals in enumerate(history):
            for s, loss in evals:
                self._see(i, s, loss)

    def _see(self, i: int, s: int, loss: float) -> bool:
        """Count member i's eval at step s; whether it is a new best."""
        if s <= 0:
            return False
        if loss < self.best[i][1]:
            self.best[i], self.since[i] = (s, loss), 0
            return True
        self.since[i] += 1
        return False

    def due(self, s: int) -> bool:
        """Whether step s evaluates and a decision hangs on it (the loop then fetches it at once)."""
        return self.on and s > 0 and (s == self.total or (self.every > 0 and s % self.every == 0))

    def exhausted(self) -> list[int]:
        """The members whose patience has run out."""
        return [i for i, n in enumerate(self.since) if self.patience > 0 and n >= self.patience]

    def update(self, s: int, runs: list, rows: list[dict], fresh: list[bool], members: Callable[[], list]) -> dict:
        """After step s's rows are logged: members with a new best save it (keep_best); returns {member: state} of
        the members to stop now. fresh[i]: member i is running and logged step s."""
        states: list | None = None
        stop = {}
        for i, run in enumerate(runs):
            if not fresh[i] or "eval/loss" not in rows[i]:
                continue
            if self._see(i, s, rows[i]["eval/loss"]) and self.keep:
                states = states or members()
                run.save_best(s, states[i])
            if i in self.exhausted():
                states = states or members()
                stop[i] = states[i]
        return stop

    def summary(self, i: int, run: Any, P: Any, geometry: Any, stopped: bool) -> dict[str, Any]:
        """best/step, best/eval/loss, best/eval/ppl, stopped_early, and (keep_best) the best checkpoint's tables
        (run.best_tables: best_embeddings.npy, ...) and every benchmark key of them as best/<key>."""
        if not self.on:
            return {}
        step, loss = self.best[i]
        out: dict[str, Any] = {"stopped_early": stopped}
        if step is None:
            return out
        out.update({"best/step": step, "best/eval/loss": loss, "best/eval/ppl": perplexity(loss)})
        state = run.restore_best(step, P.abstract_state, P.state_shardings) if self.keep else None
        if state is not None:
            E, E_out = to_host(P.table(state["params"])), P.output_table(state["params"])
            E_out = None if E_out is None else to_host(E_out)
            run.best_tables(E, E_out)
            if geometry.benchmarks:
                scores = geometry.benchmarks.scores(E)
                if E_out is not None:
                    scores.update(geometry.benchmarks.scores(E_out, "_out"))
                out.update({f"best/{k}": v for k, v in scores.items() if k.startswith(BENCHMARK_PREFIXES)})
        return out
