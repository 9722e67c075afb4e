"""Plots + report.md for a run or sweep directory: `python -m experiments.report DIR`."""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from embjax.cli import report_main

if __name__ == "__main__":
    sys.exit(report_main())
