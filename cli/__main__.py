"""``python -m cli`` = the ``siaga`` console script (tests and the demo start subprocesses this way)."""

import sys

from cli.main import main

sys.exit(main())
