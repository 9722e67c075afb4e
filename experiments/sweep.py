"""A whole sweep locally:
`python -m experiments.sweep SWEEP.yaml [--out_dir DIR] [--vectorize=auto|on|off] [--key=value ...]`."""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from embjax.cli import sweep_main

if __name__ == "__main__":
    sys.exit(sweep_main())
