"""Tokenise a text corpus once into a memory-mapped token file + metadata (cached; `experiments.train` calls it
when needed): `python -m experiments.prepare --data.kind=text --data.path=FILES [--data.key=value ...]`."""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from embjax.cli import prepare_main

if __name__ == "__main__":
    sys.exit(prepare_main())
