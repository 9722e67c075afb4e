"""Published findings about token embeddings, reproduced with computed verdicts:
`python -m experiments.findings [NAME ...] [--quick] [--out_dir DIR] [--key=value ...]` (see docs/findings.md)."""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from embjax.cli import findings_main

if __name__ == "__main__":
    sys.exit(findings_main())
