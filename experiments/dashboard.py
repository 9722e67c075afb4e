"""A sweep's W&B workspace as code: `python -m experiments.dashboard SWEEP_DIR` (see
embjax/dashboard.py): written offline, saved when a W&B server is reachable."""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from embjax.cli import dashboard_main

if __name__ == "__main__":
    sys.exit(dashboard_main())
