"""One training run: `python -m experiments.train [--config PATH] [--section.key=value ...]`."""

import os
import sys

if __package__ in (None, ""):  # run as a file (`python experiments/train.py`, as W&B agents do)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from embjax.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
