"""The training-speed benchmark as a script: the same as ``dalab bench`` (same flags).

Usage::

    python bench/run.py --data-root /work/shared/datasets --repeats 3 --json-out bench.json
"""

from __future__ import annotations

import sys

from dalab.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
