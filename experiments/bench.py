"""Benchmarks: `python -m experiments.bench [--case NAME] [--steps N] [--json]` (see embjax/bench.py)."""

import sys

from embjax.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
