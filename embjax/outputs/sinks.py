"""Logging back ends, passed into the loop explicitly (no global logger).

A sink takes rows of scalars (`log`), rich objects such as histograms and tables (`log_rich`,
W&B only), a final summary, and `close`. `metrics.jsonl` holds only values that are a pure
function of (config, seed): timings go to the console, W&B and summary.json.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import threading
import time
from typing import Any, Protocol


def _clean(v: Any) -> Any:
    """JSON-safe scalar: non-finite floats become strings 'nan'/'inf' so a row always parses."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def write_atomic(path: str, write: Any, mode: str = "w", fsync: bool = False) -> None:
    """write(f) into a temporary file beside `path`, then rename it into place: a reader never sees half a file,
    a failed write (a full disk) leaves no temporary file behind and says which file it was."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        remove_quietly(tmp)
        raise OSError(err.errno, err.strerror, path) from err
    except BaseException:
        remove_quietly(tmp)
        raise


def write_json_atomic(path: str, obj: Any) -> None:
    write_atomic(path, lambda f: json.dump(obj, f, indent=2, sort_keys=True, default=float), fsync=True)


def remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


class Sink(Protocol):
    def log(self, step: int, row: dict[str, float]) -> None: ...
    def log_rich(self, step: int, items: dict[str, Any]) -> None: ...
    def summary(self, summary: dict[str, Any]) -> None: ...
    def close(self, status: str) -> None: ...


class NullSink:
    def log(self, step, row):
        pass

    def log_rich(self, step, items):
        pass

    def summary(self, summary):
        pass

    def close(self, status):
        pass


class MemorySink(NullSink):
    """Keeps everything in lists: for notebooks and for reading back what a loop logged."""

    def __init__(self):
        self.rows: list[tuple[int, dict]] = []
        self.rich: list[tuple[int | None, dict]] = []
        self.summaries: list[dict] = []
        self.status: str | None = None

    def log(self, step, row):
        self.rows.append((step, dict(row)))

    def log_rich(self, step, items):
        self.rich.append((step, dict(items)))

    def summary(self, summary):
        self.summaries.append(dict(summary))

    def close(self, status):
        self.status = status


class JsonlSink(NullSink):
    """metrics.jsonl (a row per logged step, flushed as written) and summary.json (atomic)."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.summary_path = os.path.join(run_dir, "summary.json")
        self._f = open(self.path, "a", buffering=1)

    def log(self, step, row):
        kept = {k: _clean(v) for k, v in row.items() if not k.startswith("perf/")}
        with self._named():
            self._f.write(json.dumps({"step": step, **kept}, sort_keys=False) + "\n")

    def flush(self):
        with self._named():
            self._f.flush()
            os.fsync(self._f.fileno())

    @contextlib.contextmanager
    def _named(self):
        """A failed write says which file it was."""
        try:
            yield
        except OSError as err:
            raise OSError(err.errno, err.strerror, self.path) from err

    def summary(self, summary):
        write_json_atomic(self.summary_path, summary)

    def close(self, status):
        if not self._f.closed:
            self.flush()
            self._f.close()


def truncate_jsonl(path: str, last_step: int) -> None:
    """Keep the rows with step ≤ last_step (and drop a torn last line): what a resume recomputes goes."""
    if not os.path.exists(path):
        return
    kept = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            if row.get("step", -1) <= last_step:
                kept.append(line if line.endswith("\n") else line + "\n")
    write_atomic(path, lambda f: f.writelines(kept))


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class ConsoleSink(NullSink):
    """A tqdm progress bar with loss and tokens/s; the bar moves every logged step."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool = True):
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="step",
            disable=not enabled,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        self.step = initial

    def log(self, step, row):
        self.bar.update(max(0, step - self.step))
        self.step = step
        post = {}
        for key, short in (("train/loss", "loss"), ("eval/loss", "eval"), ("perf/tokens_per_s", "tok/s")):
            if key in row and row[key] is not None:
                post[short] = f"{row[key]:.4g}" if short != "tok/s" else f"{row[key]:,.0f}"
        if post:
            self.bar.set_postfix(post, refresh=False)

    def close(self, status):
        self.bar.close()


def _start_wandb(wandb: Any, kwargs: dict, init_timeout: float) -> dict[str, Any]:
    """wandb.init(**kwargs) in a thread waited for init_timeout + 5 s: {"run": run}, {"error": err} or {} (no
    answer). A start that failed at once (not one that waited) is tried once more, a second later."""
    result: dict[str, Any] = {}
    # W&B logs to files in the run directory from its own threads; on a full disk Python's logging would print a
    # traceback per failed record. A log record that cannot be written is dropped instead (the run says what matters)
    logging.raiseExceptions = False

    def start():
        try:
            result["run"] = wandb.init(**kwargs)
        except BaseException as err:  # noqa: BLE001 - any failure means: go on without W&B
            result["error"] = err

    for attempt in range(2):
        result.clear()
        t0 = time.monotonic()
        t = threading.Thread(target=start, daemon=True)
        t.start()
        t.join(init_timeout + 5.0)
        if "error" not in result or time.monotonic() - t0 > min(5.0, init_timeout / 2):
            break
        if attempt == 0:
            time.sleep(1.0)
    return result


class WandbSink(NullSink):
    """One W&B run (offline unless log.mode=online). Start-up is bounded: past `init_timeout`
    seconds or on any error the run goes on without W&B and says so in one warning. A start that fails at
    once (a transient failure, such as W&B's service starting on a busy machine) is tried once more."""

    def __init__(
        self,
        run_dir: str,
        config: dict,
        *,
        project: str,
        name: str,
        mode: str,
        entity: str | None = None,
        group: str | None = None,
        tags: tuple = (),
        init_timeout: float = 30.0,
        resume_id: str | None = None,
    ):
        self.run = None
        self.run_dir = run_dir
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            import wandb
        except ImportError:
            print("warning: wandb is not installed; logging to local files only", file=sys.stderr)
            return
        self._wandb = wandb
        mode = os.environ.get("WANDB_MODE", mode)
        kwargs = dict(
            project=project,
            entity=entity,
            group=group,
            tags=list(tags) or None,
            name=name,
            config=config,
            dir=run_dir,
            mode=mode,
            id=resume_id,
            resume="allow" if resume_id else None,
            reinit="create_new",
            settings=wandb.Settings(init_timeout=init_timeout, console="off", x_disable_stats=True, silent=True),
        )
        result = _start_wandb(wandb, kwargs, init_timeout)
        if "run" in result:
            self.run = result["run"]
        else:
            why = result.get("error", f"no answer within {init_timeout:.0f} s")
            why = str(why).splitlines()[0] if str(why) else type(why).__name__
            print(f"warning: W&B did not start ({why}); continuing with local files only", file=sys.stderr)

    @property
    def run_id(self) -> str | None:
        return self.run.id if self.run is not None else None

    def log(self, step, row):
        if self.run is not None:
            self.run.log({k: v for k, v in row.items() if v is not None}, step=step)

    def log_rich(self, step, items):
        if self.run is None:
            return
        wandb, out = self._wandb, {}
        for key, obj in items.items():
            kind = obj.get("kind")
            if kind == "histogram":
                out[key] = wandb.Histogram(np_histogram=obj["np_histogram"])
            elif kind == "table":
                # column types given (when the caller knows them) spare W&B inferring a union type value by value
                # (4x faster for the 10,000-row projector table); they are checked as the rows go in
                typed = {"dtype": obj["dtype"], "optional": False} if obj.get("dtype") else {}
                out[key] = wandb.Table(columns=obj["columns"], data=obj["data"], **typed)
            elif kind == "image":
                out[key] = wandb.Image(obj["path"])
            elif kind == "html":  # a self-contained page (its own styles): logged as it is
                out[key] = wandb.Html(obj["path"], inject=False)
        if out:
            self.run.log(out, step=step)

    def summary(self, summary):
        if self.run is not None:
            for k, v in summary.items():
                if isinstance(v, (int, float, str, bool)):
                    self.run.summary[k] = v

    def close(self, status):
        if self.run is not None:
            self.run.finish(exit_code=0 if status in ("finished", "diverged") else 1)
            self.run = None

    def sync_hint(self) -> str | None:
        """The `wandb sync` command that would upload an offline run."""
        if self.run_dir is None:
            return None
        base = os.path.join(self.run_dir, "wandb")
        if not os.path.isdir(base):
            return None
        runs = sorted(
            (d for d in os.listdir(base) if d.startswith("offline-run-")),
            key=lambda d: os.path.getmtime(os.path.join(base, d)),
        )
        return f"wandb sync {os.path.join(base, runs[-1])}" if runs else None


class CompositeSink(NullSink):
    def __init__(self, sinks: list):
        self.sinks = [s for s in sinks if s is not None]

    def log(self, step, row):
        for s in self.sinks:
            s.log(step, row)

    def log_rich(self, step, items):
        for s in self.sinks:
            s.log_rich(step, items)

    def summary(self, summary):
        for s in self.sinks:
            s.summary(summary)

    def close(self, status):
        for s in self.sinks:
            try:
                s.close(status)
            except Exception as err:  # noqa: BLE001 - one back end failing must not lose the others' files
                print(f"warning: closing {type(s).__name__} failed: {err}", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# Reading back what an offline W&B run recorded (its .wandb transaction log)

_BLOCK, _HEADER = 32768, 7


def read_wandb_records(path: str):
    """Yield the protobuf Records of a `.wandb` file (W&B's LevelDB-style log: a 7-byte file header,
    then 32 KiB blocks of chunks, each with a 7-byte header: crc32 (4), length (2), type (1))."""
    from wandb.proto import wandb_internal_pb2 as pb

    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == 0 and length == 0:
            pos += _BLOCK - pos % _BLOCK if pos % _BLOCK else 0
            continue
        if kind == 1:  # FULL
            pending = chunk
        elif kind == 2:  # FIRST
            pending = chunk
            continue
        elif kind == 3:  # MIDDLE
            pending += chunk
            continue
        elif kind == 4:  # LAST
            pending += chunk
        rec = pb.Record()
        rec.ParseFromString(pending)
        yield rec
        pending = b""


def read_wandb_history(path: str) -> list[dict[str, Any]]:
    """The history rows (`run.log` calls) of a `.wandb` file as dicts, `_step` included."""
    rows = []
    for rec in read_wandb_records(path):
        if rec.WhichOneof("record_type") == "history":
            row = {}
            for item in rec.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            rows.append(row)
    return rows
