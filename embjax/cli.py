"""Command-line front ends shared by experiments/*: parse, call the library, map errors to exit codes."""
from __future__ import annotations

import os
import sys
from typing import Callable

from .config import ConfigError, load_config, parse_value


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def split_args(argv: list[str], flags: tuple[str, ...]) -> tuple[dict, list[str], list[str]]:
    """Pull `--flag=value` / `--flag value` for known flags; the rest are positionals and overrides."""
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


def _as_bool(flag: str, text: str | None) -> bool:
    v = parse_value(text) if text is not None else False
    if not isinstance(v, bool):
        raise ConfigError(f"--{flag}: got {text!r}; allowed: true/false")
    return v


def guarded(main: Callable[[list[str]], int]) -> Callable[[list[str] | None], int]:
    """Bad input -> one line and exit 2, never a traceback."""
    def run(argv: list[str] | None = None) -> int:
        try:
            return main(sys.argv[1:] if argv is None else argv)
        except ConfigError as err:
            return _fail(str(err))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    return run


@guarded
def train_main(argv: list[str]) -> int:
    known, overrides, positional = split_args(argv, ("config", "overwrite"))
    if positional:
        raise ConfigError(f"{positional[0]}: unexpected argument; allowed: --config PATH and --section.key=value")
    cfg = load_config(known.get("config"), overrides)
    from .checkpoint import CheckpointError
    from .loop import train
    try:
        summary = train(cfg, overwrite=_as_bool("overwrite", known.get("overwrite")))
    except CheckpointError as err:
        return _fail(str(err))
    run_dir = summary["run_dir"]
    print(f"\n{summary['status']} at step {summary['step']}/{cfg.steps} in {summary['wall_time_s']:.1f} s "
          f"({summary['tokens_per_s']:,.0f} tokens/s)")
    for key in ("train/loss", "eval/loss", "data/unigram_entropy", "data/entropy_rate", "emb/norm_growth",
                "emb/cos_mean"):
        if isinstance(summary.get(key), float):
            print(f"  {key:22s} {summary[key]:.4f}")
    print(f"run directory: {run_dir}")
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "embeddings.npy", "tokens.tsv", "checkpoints"):
        if os.path.exists(os.path.join(run_dir, name)):
            print(f"  {name}")
    if summary.get("_wandb_sync"):
        print(f"W&B (offline) - upload with:\n  {summary['_wandb_sync']}")
    if summary["status"] == "interrupted":
        return 128 + int(summary.get("_signal") or 2)
    return 0 if summary["status"] in ("finished", "diverged") else 1
