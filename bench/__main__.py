"""``python -m bench``: every benchmark, one table, one JSON file (see bench/run_all.py)."""

import sys

from bench.run_all import main

sys.exit(main())
