"""The embedding space over training as one offline page: `python -m experiments.view RUN_OR_SWEEP_DIR`."""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from embjax.cli import view_main

if __name__ == "__main__":
    sys.exit(view_main())
