"""Any embedding table through a run's lens: `python -m experiments.inspect SOURCE [--out=DIR]` (see
embjax/inspector.py): the geometry report, the embedding-space page and the projector files."""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from embjax.cli import inspect_main

if __name__ == "__main__":
    sys.exit(inspect_main())
