"""A child process for the crash test: puts reports in a loop and prints each id once put() returned."""

from __future__ import annotations

import sys

from edge.store import Store
from tests.reports import make_report


def main() -> None:
    path, prefix = sys.argv[1], sys.argv[2]
    with Store.open(path, check=False) as store:
        i = 0
        while True:
            report = make_report(f"laporan {prefix} {i} KEBAKARAN rumah warga")
            store.put(report)
            # the report is on disk: only now may anyone be told (the parent reads this line)
            sys.stdout.write(report.report_id + "\n")
            sys.stdout.flush()
            i += 1


if __name__ == "__main__":
    main()
