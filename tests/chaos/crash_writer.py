"""A child process for the crash tests: puts reports in a loop and prints each id once put() returned.

``--synchronous NORMAL`` weakens the store's durability on purpose: only the power-cut test's negative
control uses it (to prove its harness can see a loss); the product always runs ``synchronous=FULL``.
"""

from __future__ import annotations

import argparse
import sys

from edge.store import Store
from tests.reports import make_report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("prefix")
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    args = parser.parse_args()
    with Store.open(args.path, check=False) as store:
        if args.synchronous != "FULL":
            store._conn.execute(f"PRAGMA synchronous = {args.synchronous}")
        i = 0
        while True:
            report = make_report(f"laporan {args.prefix} {i} KEBAKARAN rumah warga")
            store.put(report)
            # the report is on disk: only now may anyone be told (the parent reads this line)
            sys.stdout.write(report.report_id + "\n")
            sys.stdout.flush()
            i += 1


if __name__ == "__main__":
    main()
