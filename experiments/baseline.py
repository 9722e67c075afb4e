"""The word2vec / fastText baseline on a prepared corpus: `python -m experiments.baseline --method=word2vec` (see
embjax/baseline.py): a run directory beside the LM runs."""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from embjax.cli import baseline_main

if __name__ == "__main__":
    sys.exit(baseline_main())
