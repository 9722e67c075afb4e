"""The `embjax` console script (installed by `pip install .`): `embjax COMMAND [ARGS ...]` is
`python -m experiments.COMMAND [ARGS ...]` in a checkout, for every command."""

from __future__ import annotations

import sys

from . import bench, cli

COMMANDS = {
    "train": cli.train_main,
    "sweep": cli.sweep_main,
    "prepare": cli.prepare_main,
    "findings": cli.findings_main,
    "report": cli.report_main,
    "view": cli.view_main,
    "inspect": cli.inspect_main,
    "baseline": cli.baseline_main,
    "dashboard": cli.dashboard_main,
    "bench": bench.main,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: embjax {" + ",".join(COMMANDS) + "} [ARGS ...]\n"
            "  each command is `python -m experiments.COMMAND ARGS ...` of a checkout; --help after one shows its own"
        )
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: command: got {name!r}; allowed: {' | '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return COMMANDS[name](rest)
