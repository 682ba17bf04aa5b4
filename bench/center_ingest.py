"""Center ingest throughput: reports committed per second by CenterStorage.ingest, SQLite and PostgreSQL.

Run: .venv/bin/python bench/center_ingest.py [--n 3000] [--pg postgresql://postgres@127.0.0.1:5432/test | --no-pg]

The reports arrive as the receiver commits them: each post message (a batch ≤ 16 KiB, as sync.uplink packs
it) is decoded by sync.protocol, turned into what the storage takes by the receiver's sink
(center.service.StorageSink.incoming) and stored in ONE transaction — the light-load case; under load the
receiver also groups up to 64 messages per commit, which is faster still.  Side by side, one transaction
(one fsync) per report.  Only the storage calls are timed (decoding is done before the clock starts).

Paths, each on a fresh database:

* ``after`` — ``CenterStorage.ingest`` as the center runs it (set-based: a fixed number of statements per
  batch; on PostgreSQL the reads in one pipeline, the writes in another);
* ``before`` — ``CenterStorage.ingest_reference``, the ingest the center ran until then (one item and one
  statement at a time: on PostgreSQL ~6 round trips per report);
* PostgreSQL only, the candidates measured to choose ``after``: the set-based rules with one round trip per
  statement (``set, 1 rt/stmt``), with psycopg's ``executemany`` per statement but no shared pipeline
  (``set, executemany``), and with the new rows COPYed into a temporary staging table and moved by one
  ``INSERT … SELECT … ON CONFLICT DO NOTHING`` per table (``set, COPY``).

Each path also measures the receiver's group commit: every message waiting, up to 64, in one transaction
(a backlog after an outage).

SQLite: WAL, synchronous=FULL, a file in a temporary directory on disk (``--dir``).  PostgreSQL: a fresh
schema per path in the given database (dropped afterwards), over TCP on loopback.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from center.service import StorageSink  # noqa: E402
from center.storage import (  # noqa: E402
    CenterStorage,
    IncomingReport,
    PostgresStorage,
    Statement,
    open_storage,
)
from devkit.harness.pg import fresh_schema  # noqa: E402
from devkit.harness.synctools import make_reports  # noqa: E402
from siaga.errors import CenterError  # noqa: E402
from siaga.report import utcnow  # noqa: E402
from sync import protocol  # noqa: E402
from sync.receiver import GROUP_COMMIT_MAX, ReceivedBatch  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
BATCH_MAX_BYTES = 16 * 1024  # the uplink's default batch_max_bytes
PG_GOAL_RPS = 5000  # issue 14: PostgreSQL at SQLite's speed, committed and acknowledged, batched


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


# ---------------------------------------------------------------------------- the PostgreSQL candidates
class _OneRoundTripPerStatement(PostgresStorage):
    """The set-based rules, every statement (and every row) its own round trip."""

    def _fetch_all(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[dict[str, Any]]]:
        return CenterStorage._fetch_all(self, queries)

    def _write_many(self, statements: Sequence[Statement]) -> None:
        CenterStorage._write_many(self, statements)


class _ExecutemanyOnly(PostgresStorage):
    """The set-based rules; psycopg's executemany for each write, reads one by one, nothing shared."""

    def _fetch_all(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[dict[str, Any]]]:
        return CenterStorage._fetch_all(self, queries)

    def _write_many(self, statements: Sequence[Statement]) -> None:
        from center.storage import _pg_sql

        for sql, rows in statements:
            if rows:
                with self._conn.cursor() as cur:
                    cur.executemany(_pg_sql(sql), [tuple(r) for r in rows])


class _CopyStaging(PostgresStorage):
    """The set-based rules; new rows COPYed into temporary tables and moved by one INSERT … SELECT each."""

    _staged = False

    def _write_many(self, statements: Sequence[Statement]) -> None:
        from center.storage import _INSERT_COPY, _INSERT_REPORT

        inserts = {_INSERT_REPORT: "reports", _INSERT_COPY: "report_copies"}
        rest = []
        if not self._staged:
            for table in inserts.values():
                self._run(f"CREATE TEMP TABLE stage_{table} (LIKE {table}) ON COMMIT DELETE ROWS", ())
            self._staged = True
        for sql, rows in statements:
            table = inserts.get(sql)
            if table is None or not rows:
                rest.append((sql, rows))
                continue
            columns = sql[sql.index("(") + 1 : sql.index(")")]
            with self._conn.cursor() as cur:
                with cur.copy(f"COPY stage_{table} ({columns}) FROM STDIN") as copy:
                    for r in rows:
                        copy.write_row(r)
                cur.execute(
                    f"INSERT INTO {table} ({columns}) SELECT {columns} FROM stage_{table} ON CONFLICT DO NOTHING"
                )
        super()._write_many(rest)


def _open(url: str, kind: type[CenterStorage] | None) -> CenterStorage:
    if kind is None:
        return open_storage(url)
    storage = kind(url)  # type: ignore[call-arg]
    storage.migrate()
    return storage


# ---------------------------------------------------------------------------- one path
def _run(url: str, n: int, *, before: bool = False, kind: type[CenterStorage] | None = None) -> dict[str, Any]:
    batched = [StorageSink.incoming([b]) for b in received_batches(n, "bench-batch")]
    # under load the receiver commits every message waiting, up to GROUP_COMMIT_MAX (64) at once
    waiting = received_batches(n, "bench-group")
    grouped = [
        StorageSink.incoming(waiting[i : i + GROUP_COMMIT_MAX]) for i in range(0, len(waiting), GROUP_COMMIT_MAX)
    ]
    single = [
        [item] for items in (StorageSink.incoming([b]) for b in received_batches(n, "bench-naive")) for item in items
    ]
    with _open(url, kind) as storage:
        ingest: Callable[[Sequence[IncomingReport]], Any] = storage.ingest_reference if before else storage.ingest
        t0 = time.perf_counter()
        for items in batched:
            ingest(items)
        t_batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        for items in single:  # one transaction per report
            ingest(items)
        t_naive = time.perf_counter() - t0
        t0 = time.perf_counter()
        for items in grouped:
            ingest(items)
        t_grouped = time.perf_counter() - t0
        stored = storage.counts()["reports"]
    return {
        "reports": n,
        "messages": len(batched),
        "reports_per_message": round(n / max(1, len(batched)), 1),
        "stored": stored,  # the three pipelines: 3 × reports
        "grouped_commits": len(grouped),
        "grouped_rps": round(n / t_grouped, 1),
        "batched_s": round(t_batched, 3),
        "batched_rps": round(n / t_batched, 1),
        "naive_s": round(t_naive, 3),
        "naive_rps": round(n / t_naive, 1),
        "speedup": round(t_naive / t_batched, 1),
    }


PG_CANDIDATES: dict[str, type[CenterStorage]] = {
    "set, 1 rt/stmt": _OneRoundTripPerStatement,
    "set, executemany": _ExecutemanyOnly,
    "set, COPY": _CopyStaging,
}


def measure(
    n: int = 3000, *, pg_dsn: str | None = DEFAULT_PG, workdir: str | None = None, candidates: bool = True
) -> dict[str, Any]:
    """Both backends (PostgreSQL only when ``pg_dsn`` is given and reachable).  Each backend's dict is the
    ``after`` path's figures, with every path's under ``paths``."""
    out: dict[str, Any] = {"loadavg_before": os.getloadavg()[0]}
    paths: dict[str, dict[str, Any]] = {}
    for before in (True, False):
        with tempfile.TemporaryDirectory(prefix="siaga-bench-center-", dir=workdir) as tmp:
            paths["before" if before else "after"] = _run(f"sqlite:///{tmp}/center.db", n, before=before)
    out["sqlite"] = {**paths["after"], "paths": paths}
    if pg_dsn:
        try:
            paths = {}
            for name, before, kind in (
                ("before", True, None),
                ("after", False, None),
                *((name, False, kind) for name, kind in (PG_CANDIDATES.items() if candidates else ())),
            ):
                with pg_schema(pg_dsn) as url:
                    paths[name] = _run(url, n, before=before, kind=kind)
            out["postgresql"] = {**paths["after"], "paths": paths}
        except (CenterError, OSError, ImportError) as exc:
            out["postgresql"] = {"error": str(exc)[:200]}
        except Exception as exc:  # psycopg.OperationalError: the server is not reachable
            out["postgresql"] = {"error": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}
    out["loadavg_after"] = os.getloadavg()[0]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="reports per pipeline (default 3000)")
    parser.add_argument("--pg", default=DEFAULT_PG, help=f"PostgreSQL DSN (default {DEFAULT_PG})")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--no-candidates", action="store_true", help="PostgreSQL: before and after only")
    parser.add_argument("--dir", default=None, help="directory for the SQLite file (default: a temp dir)")
    args = parser.parse_args(argv)
    res = measure(args.n, pg_dsn=None if args.no_pg else args.pg, workdir=args.dir, candidates=not args.no_candidates)
    print(
        f"center ingest: {args.n} reports per pipeline; load average {res['loadavg_before']:.2f} → "
        f"{res['loadavg_after']:.2f}"
    )
    print(
        "| backend | path | batched: reports/commit | batched reports/s | 1 tx/report: reports/s | speedup"
        f" | group commit (≤ {GROUP_COMMIT_MAX} messages) reports/s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for backend in ("sqlite", "postgresql"):
        r = res.get(backend)
        if r is None:
            continue
        if "error" in r:
            print(f"| {backend} | error: {r['error']} | | | | |")
            continue
        for path, p in r["paths"].items():
            print(
                f"| {backend} | {path} | {p['reports_per_message']} | {p['batched_rps']:.0f} | {p['naive_rps']:.0f} "
                f"| {p['speedup']:.1f}x | {p['grouped_rps']:.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
