"""What every command shares: its arguments split into flags, config overrides and positionals, --help, and errors
mapped to one line and an exit status (`guarded`): 2 for bad input, 1 for an output that could not be written
or memory that ran out, 130 for an interrupt."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

from .config import ConfigError, OutputError, parse_value


def fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


class HelpRequested(Exception):
    """--help or -h: `guarded` prints the command's usage and its flags, and exits 0."""


def split_args(argv: list[str], flags: tuple[str, ...]) -> tuple[dict, list[str], list[str]]:
    """Pull `--flag=value` / `--flag value` for known flags; the rest are positionals and overrides."""
    if "--help" in argv or "-h" in argv:
        raise HelpRequested(flags)
    known, overrides, positional = {}, [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if name in flags:
            if "=" in arg:
                known[name] = arg.split("=", 1)[1]
            elif i + 1 < len(argv):
                known[name] = argv[i + 1]
                i += 1
            else:
                raise ConfigError(f"--{name}: got no value")
        elif arg.startswith("--") or "=" in arg:
            overrides.append(arg)
        else:
            positional.append(arg)
        i += 1
    return known, overrides, positional


def baseline_dir(known: dict) -> str | None:
    """--baseline=RUN_DIR (a run of experiments.baseline, drawn beside a sweep in its report), checked."""
    if known.get("baseline") and not os.path.isfile(os.path.join(known["baseline"], "summary.json")):
        raise ConfigError(
            f"--baseline: got {known['baseline']!r}, which holds no summary.json; allowed: a finished run directory "
            "of python -m experiments.baseline"
        )
    return known.get("baseline")


def as_bool(flag: str, text: str | None) -> bool:
    v = parse_value(text) if text is not None else False
    if not isinstance(v, bool):
        raise ConfigError(f"--{flag}: got {text!r}; allowed: true/false")
    return v


def as_count(flag: str, text: str) -> int:
    """A whole number ≥ 1 (e.g. --jobs)."""
    v = parse_value(text)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"--{flag}: got {text!r}; allowed: a whole number ≥ 1")
    return v


def guarded(main: Callable[[list[str]], int]) -> Callable[[list[str] | None], int]:
    """Bad input -> one line and exit 2, never a traceback."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        try:
            return main(sys.argv[1:] if argv is None else argv)
        except HelpRequested as req:
            print(usage(main, req.args[0]))
            return 0
        except ConfigError as err:
            return fail(str(err))
        except OutputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Exception as err:
            if not out_of_memory(err):
                raise
            first = next((line for line in str(err).splitlines() if "memory" in line.lower()), str(err)[:200])
            print(
                f"error: out of memory ({type(err).__name__}: {first.strip()[:300]}); allowed: a smaller model, "
                "batch or vocabulary, fewer members at once (--vectorize=off), or a device with more memory",
                file=sys.stderr,
            )
            return 1

    return run


USAGE = {  # the commands whose docstring does not say it
    "train": "`python -m experiments.train [--config=PATH] [--overwrite=true] [--section.key=value ...]`: one run "
    "(the same command again resumes it)",
    "sweep": "`python -m experiments.sweep SWEEP.yaml [--out_dir=DIR] [--vectorize=auto|on|off] [--progress=BOOL] "
    "[--overwrite=BOOL] [--baseline=RUN_DIR] [--section.key=value ...]`: every member of a W&B sweep file, then "
    "summary.csv and report.md (with a baseline run's reference line and row)",
    "prepare": "`python -m experiments.prepare [--config=PATH] --data.kind=text --data.path=SOURCE "
    "[--data.key=value ...]`: tokenise a text corpus once into the cache",
    "findings": "`python -m experiments.findings [NAME ...] [--quick] [--out_dir=DIR] [--progress=BOOL] "
    "[--overwrite=BOOL] [--wandb-report] [--jobs=N] [--section.key=value ...]`: the findings, with computed verdicts "
    "(--jobs: sweeps run N at a time, in N worker processes)",
}


def usage(main: Callable, flags: tuple[str, ...]) -> str:
    """A command's usage line (its docstring's, or USAGE's) and its flags."""
    name = main.__name__.removesuffix("_main")
    text = " ".join((main.__doc__ or USAGE.get(name, f"`python -m experiments.{name}`")).split())
    return f"usage: {text}\nflags: {' '.join(f'--{f}' for f in flags)}"


def out_of_memory(err: BaseException) -> bool:
    """An allocation the device or host could not make (XLA's RESOURCE_EXHAUSTED, NumPy's MemoryError), anywhere
    in the exception's chain."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = str(err)
        if isinstance(err, MemoryError) or ("RESOURCE_EXHAUSTED" in text and "memory" in text.lower()):
            return True
        err = err.__cause__ or err.__context__
    return False
