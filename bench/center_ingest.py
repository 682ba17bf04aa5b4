"""Center ingest throughput: reports committed per second by CenterStorage.ingest, SQLite and PostgreSQL.

Run: .venv/bin/python bench/center_ingest.py [--n 3000] [--pg postgresql://postgres@127.0.0.1:5432/test | --no-pg]

The reports arrive as the receiver commits them: each post message (a batch ≤ 16 KiB, as sync.uplink packs
it) is decoded by sync.protocol and handed to the receiver's sink (center.service.StorageSink), which
stores it in ONE transaction — the light-load case; under load the receiver also groups up to 64 messages
per commit, which is faster still.  Side by side, the naive alternative: one transaction (one fsync) per
report.  Only the storage calls are timed (decoding is done before the clock starts).

SQLite: WAL, synchronous=FULL, a file in a temporary directory on disk (``--dir``).  PostgreSQL: a fresh
schema in the given database (dropped afterwards), over TCP on loopback.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from center.service import StorageSink  # noqa: E402
from center.storage import open_storage  # noqa: E402
from devkit.harness.pg import fresh_schema  # noqa: E402
from devkit.harness.synctools import make_reports  # noqa: E402
from siaga.errors import CenterError  # noqa: E402
from siaga.report import utcnow  # noqa: E402
from sync import protocol  # noqa: E402
from sync.receiver import ReceivedBatch  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
BATCH_MAX_BYTES = 16 * 1024  # the uplink's default batch_max_bytes


def received_batches(n: int, post_id: str) -> list[ReceivedBatch]:
    """``n`` reports as the receiver gets them off the wire: uplink-sized messages, decoded and validated."""
    wires = [protocol.WireReport(r, 5.0, "boot") for r in make_reports(n, post_id=post_id)]
    messages = protocol.encode_report_batches(post_id, wires, sent_at=utcnow(), max_bytes=BATCH_MAX_BYTES)
    now = datetime.now(UTC)
    return [ReceivedBatch("ttu", post_id, protocol.decode_report_batch(m.payload, post_id), now) for m in messages]


@contextmanager
def pg_schema(dsn: str) -> Iterator[str]:
    """A DSN whose search_path is a fresh schema, dropped afterwards."""
    import psycopg

    with fresh_schema(psycopg.connect(dsn, autocommit=True, connect_timeout=3), dsn, "bench") as url:
        yield url


def _run(url: str, n: int) -> dict[str, Any]:
    batched = received_batches(n, "bench-batch")
    single = received_batches(n, "bench-naive")
    with open_storage(url) as storage:
        sink = StorageSink(storage)
        t0 = time.perf_counter()
        for item in batched:
            sink.store_reports([item])
        t_batched = time.perf_counter() - t0
        # the naive alternative: every report its own transaction
        t0 = time.perf_counter()
        for item in single:
            for wire in item.batch.reports:
                one = protocol.ReportBatch(item.post_id, item.batch.sent_at, [wire], [], 0)
                sink.store_reports([ReceivedBatch(item.regency, item.post_id, one, item.received_at)])
        t_naive = time.perf_counter() - t0
        stored = storage.counts()["reports"]
    return {
        "reports": n,
        "messages": len(batched),
        "reports_per_message": round(n / max(1, len(batched)), 1),
        "stored": stored,  # both pipelines: 2 × reports
        "batched_s": round(t_batched, 3),
        "batched_rps": round(n / t_batched, 1),
        "naive_s": round(t_naive, 3),
        "naive_rps": round(n / t_naive, 1),
        "speedup": round(t_naive / t_batched, 1),
    }


def measure(n: int = 3000, *, pg_dsn: str | None = DEFAULT_PG, workdir: str | None = None) -> dict[str, Any]:
    """Both backends (PostgreSQL only when ``pg_dsn`` is given and reachable); one dict per backend."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="siaga-bench-center-", dir=workdir) as tmp:
        out["sqlite"] = _run(f"sqlite:///{tmp}/center.db", n)
    if pg_dsn:
        try:
            with pg_schema(pg_dsn) as url:
                out["postgresql"] = _run(url, n)
        except (CenterError, OSError, ImportError) as exc:
            out["postgresql"] = {"error": str(exc)[:200]}
        except Exception as exc:  # psycopg.OperationalError: the server is not reachable
            out["postgresql"] = {"error": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="reports per pipeline (default 3000)")
    parser.add_argument("--pg", default=DEFAULT_PG, help=f"PostgreSQL DSN (default {DEFAULT_PG})")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--dir", default=None, help="directory for the SQLite file (default: a temp dir)")
    args = parser.parse_args(argv)
    res = measure(args.n, pg_dsn=None if args.no_pg else args.pg, workdir=args.dir)
    print(f"center ingest: {args.n} reports per pipeline")
    print("| backend | batched: reports/msg | batched reports/s | naive (1 tx/report) reports/s | speedup |")
    print("| --- | --- | --- | --- | --- |")
    for backend, r in res.items():
        if "error" in r:
            print(f"| {backend} | error: {r['error']} | | | |")
        else:
            print(
                f"| {backend} | {r['reports_per_message']} | {r['batched_rps']:.0f} | {r['naive_rps']:.0f} "
                f"| {r['speedup']:.1f}x |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
