"""The 112 center's persistence: one interface, two implementations (SQLite and PostgreSQL).

Open with :func:`open_storage` (``sqlite:///path/center.db`` or ``postgresql://user@host:5432/db``); always
:meth:`CenterStorage.close`.  Every method is one transaction; :meth:`CenterStorage.ingest` commits a whole
MQTT batch at once, and the receiver acknowledges to the post only after it returned.  Times are UTC epoch
seconds in the database and timezone-aware datetimes in the API.

Tables (the same columns in both databases; ``*_ts`` are epoch seconds, JSON columns are TEXT):

``reports`` — one row per report, however many copies arrived
    report_id TEXT PK (the first id seen), post_id (first post that delivered it; a carried report: its
    origin post), origin, mesh_packet_id,
    category, urgency, severity, mode, msg_type, text_raw, lat, lon, verified (0/1),
    body (the Report JSON, siaga.report.Report.to_dict), observed_post_ts (what the post's clock said),
    stored_post_ts, received_ts (center clock, first copy), observed_est_ts (estimated true observed time,
    see :func:`estimate_observed`), age_s, age_source ("boot" exact | "wall" post rebooted since storing),
    post_sent_ts (post's clock at send), copies (distinct posts that delivered it), status (triage, default
    "baru"; see STATUSES), incident_id, updated_ts.
``report_copies`` — each post's copy: PK (report_id, post_id)
    wire_report_id (the id that post used: differs from report_id when a mesh packet's UTC day differed),
    first_received_ts, last_received_ts, receipts (how often that post sent it: QoS 1 redelivery, resends),
    path (JSON list of PathHop dicts), age_s, observed_est_ts; for a copy the post carried for another one
    (docs/RELAY.md): relay_origin (the origin post), relay_prev (the hop before the carrier), relay_hops —
    NULL for a copy a post delivered itself.
``posts`` — presence, from the retained ``status`` topic
    post_id PK, regency, state ("online" | "offline"), status (last status JSON), status_ts (center clock),
    boot_counter, version, first_seen_ts, last_report_ts.
``replies`` — staff replies to a handset (the ``cmd`` topic) and their delivery state
    cmd_id PK, report_id, post_id (the post it goes through), regency, to_node, text, created_by, created_ts,
    state (see REPLY_STATES), state_ts, detail; relay_origin: the report's origin post when post_id is a carrier
    that sends the reply on over the mesh (the report reached the center only carried), else NULL.
``receivers`` — each center receiver's presence, from its retained topic
    receiver_id PK, state ("online" | "offline"), connected_at (its connection's ``at``), session
    ("new" | "resumed"), beat_ts (its last heartbeat, its clock), status_ts (center clock).
``schema_migrations`` — name PK, applied_ts.  Every table's SQL, for both dialects, is in
    :mod:`center.schema`, applied in the order of its :data:`~center.schema.MIGRATIONS` (the staff's tables
    of :mod:`center.staffdb` too).

Methods: ingest, record_status, posts, get_post, list_reports, get_report, copies, relay_routes, set_status, counts,
create_reply, set_reply_state, get_reply, replies, query/execute (an escape hatch with ``?`` placeholders
for modules that own their own tables), close.

Dedup rules (docs/PROTOCOL.md): the same report_id is one report; a post that sends it again adds a receipt
to its copy; another post adds a copy.  A mesh report's id carries the UTC day the post believed it was, so
a mesh report also matches an existing report of the same (origin, mesh_packet_id) whose estimated observed
time is within ±36 h.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from center.schema import MIGRATIONS
from siaga.errors import CenterError, ProtocolError
from siaga.report import InvalidReport, Report
from sync import compact, protocol

log = logging.getLogger(__name__)

#: Triage states (CENTER.md): baru → diterima → diverifikasi / duplikat / palsu → dikirim → selesai.
STATUSES = ("baru", "diterima", "diverifikasi", "duplikat", "palsu", "dikirim", "selesai")
#: A reply moves only forward through these; ``failed`` may follow any of them.
REPLY_STATES = ("queued", "published", "received", "sent", "delivered", "failed")
#: A mesh report with the same (origin, packet id) within this window of estimated time is the same report.
MESH_MATCH_WINDOW = timedelta(hours=36)
#: The PostgreSQL advisory lock that serialises migrations (any fixed number; "siaga" in ASCII).
MIGRATION_LOCK_KEY = 0x7369616761


# ---------------------------------------------------------------------------- value types
@dataclass(frozen=True, slots=True)
class IncomingReport:
    """One report as the receiver got it off the wire, before it is stored."""

    report: Report
    post_id: str  # from the topic (the receiver has checked it equals report.post_id)
    received_at: datetime
    age_s: float
    age_source: str  # "boot" | "wall"
    post_sent_at: datetime | None = None
    regency: str = ""
    #: set for a report ``post_id`` carried for its origin (``report.post_id``) and the center verified:
    #: the post it came from before the carrier, and the custody hops it made
    relay_prev: str | None = None
    relay_hops: int | None = None

    @property
    def carried(self) -> bool:
        return self.relay_prev is not None


@dataclass(frozen=True, slots=True)
class IngestResult:
    wire_report_id: str  # the id the post used: acknowledge this one
    report_id: str  # the center's id for it (differs for a mesh copy matched by packet id)
    created: bool
    copies: int


@dataclass(frozen=True, slots=True)
class CenterReport:
    report: Report
    post_id: str
    received_at: datetime
    observed_est: datetime
    age_s: float
    age_source: str
    copies: int
    status: str
    incident_id: str | None
    updated_at: datetime

    @property
    def report_id(self) -> str:
        return self.report.report_id

    def to_dict(self) -> dict[str, Any]:
        out = self.report.to_dict()
        out.update(
            ref=self.report.ref,
            received_at=_iso(self.received_at),
            observed_est=_iso(self.observed_est),
            age_s=round(self.age_s, 3),
            age_source=self.age_source,
            copies=self.copies,
            status=self.status,
            incident_id=self.incident_id,
            updated_at=_iso(self.updated_at),
        )
        return out


@dataclass(frozen=True, slots=True)
class ReportCopy:
    report_id: str
    post_id: str
    wire_report_id: str
    first_received_at: datetime
    last_received_at: datetime
    receipts: int
    path: list[dict[str, Any]]
    age_s: float
    observed_est: datetime
    #: a copy ``post_id`` carried for another post: the origin, the hop before the carrier, the custody hops
    relay_origin: str | None = None
    relay_prev: str | None = None
    relay_hops: int | None = None

    @property
    def carried(self) -> bool:
        return self.relay_origin is not None


@dataclass(frozen=True, slots=True)
class RelayRoute:
    """Reports of ``origin`` that ``carrier`` delivered (carried over the mesh), for the posts page."""

    origin: str
    carrier: str
    reports: int
    max_hops: int
    last_received_at: datetime


@dataclass(frozen=True, slots=True)
class PostPresence:
    post_id: str
    regency: str
    state: str
    status: dict[str, Any]
    status_at: datetime | None
    boot_counter: int | None
    version: str | None
    first_seen_at: datetime
    last_report_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "post_id": self.post_id,
            "regency": self.regency,
            "state": self.state,
            "status": self.status,
            "status_at": _iso(self.status_at),
            "boot_counter": self.boot_counter,
            "version": self.version,
            "first_seen_at": _iso(self.first_seen_at),
            "last_report_at": _iso(self.last_report_at),
        }


@dataclass(frozen=True, slots=True)
class ReceiverPresence:
    """A center receiver as its presence topic last said (docs/PROTOCOL.md, ``center_state``)."""

    receiver_id: str
    state: str  # "online" | "offline"
    connected_at: str | None  # its connection's ``at`` (the receiver's clock)
    session: str | None  # "new" | "resumed"
    last_beat_at: datetime | None  # its last heartbeat, by its own clock
    status_at: datetime  # when the center last heard of it

    def to_dict(self) -> dict[str, Any]:
        return {
            "receiver_id": self.receiver_id,
            "state": self.state,
            "connected_at": self.connected_at,
            "session": self.session,
            "last_beat_at": _iso(self.last_beat_at),
            "status_at": _iso(self.status_at),
        }


@dataclass(frozen=True, slots=True)
class Reply:
    cmd_id: str
    report_id: str
    post_id: str
    regency: str
    to_node: str
    text: str
    created_by: str
    created_at: datetime
    state: str
    state_at: datetime
    detail: str | None = None
    #: the origin post the carrier ``post_id`` sends this reply on to over the mesh (None: direct)
    relay_origin: str | None = None

    def command(self) -> dict[str, Any]:
        """The ``cmd`` the post receives (sync.protocol.encode_command builds the envelope around it)."""
        cmd = {
            "cmd_id": self.cmd_id,
            "type": "reply",
            "report_id": self.report_id,
            "to": self.to_node,
            "text": self.text,
        }
        if self.relay_origin is not None:
            cmd["origin"] = self.relay_origin
        return cmd

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.command(),
            "post_id": self.post_id,
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
            "state": self.state,
            "state_at": _iso(self.state_at),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class ReportFilter:
    post_id: str | None = None
    category: str | None = None
    status: str | None = None
    since: datetime | None = None
    limit: int = 100
    offset: int = 0


def estimate_observed(report: Report, received_at: datetime, age_s: float) -> datetime:
    """The true time a report was observed, by the center's clock.

    ``age_s`` is how long before sending the post stored it (exact from the boot clock when the post has not
    rebooted since); observed → stored is taken from the post's own clock, which is consistent over such
    a short span even when it is wrong by years.  Transit time through the broker is not subtracted: it
    makes the estimate late by at most the message's time in flight.
    """
    lead = (report.stored_at - report.observed_at).total_seconds()
    lead = min(max(lead, 0.0), 86400.0)
    return received_at - timedelta(seconds=max(age_s, 0.0) + lead)


# ---------------------------------------------------------------------------- the interface
class CenterStorage(ABC):
    """Everything the center persists.  Thread-safe: one connection behind a lock."""

    dialect: str = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._closed = False
        self._depth = 0  # transactions open on this connection (nested ones join the outermost)
        self._observers: list[Callable[[str], None]] = []

    def add_observer(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(what)`` after each commit that changes reports, posts or replies
        (``what`` is "reports", "posts" or "replies"); e.g. the dashboard's live view."""
        self._observers.append(callback)

    def _notify(self, what: str) -> None:
        for callback in list(self._observers):
            try:
                callback(what)
            except Exception:
                log.exception("storage observer failed")

    # -- dialect hooks
    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _run(self, sql: str, params: Sequence[Any]) -> Any:
        """Execute one statement; return a cursor-like object with fetchall/fetchone/rowcount."""

    @abstractmethod
    def _close(self) -> None: ...

    def _lock_keys(self, keys: list[str]) -> None:  # noqa: B027 - optional hook
        """Serialise concurrent ingests of the same report across receivers until the transaction ends.

        SQLite needs nothing (BEGIN IMMEDIATE serialises writers); PostgreSQL takes advisory locks, in
        sorted order so that two batches never wait on each other in a cycle."""

    def _lock_query(self, keys: list[str]) -> tuple[str, list[Any]] | None:
        """:meth:`_lock_keys` as one query that :meth:`_fetch_all` can send with others, or None."""
        return None

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``, as SQL and its parameters: one parameter whatever the count
        (SQLite: a JSON array read by json_each, which keeps a batch of 32,000 ids under SQLite's limit on
        parameters; PostgreSQL overrides this with ``= ANY(array)``)."""
        return f"{column} IN (SELECT value FROM json_each(?))", [json.dumps(list(values), ensure_ascii=False)]

    def _fetch_all(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[dict[str, Any]]]:
        """Several reads in one go (PostgreSQL sends them in one round trip)."""
        return [self._rows(sql, params) for sql, params in queries]

    def _write_many(self, statements: Sequence[Statement]) -> None:
        """Each statement once per row of parameters (PostgreSQL sends them all in one round trip)."""
        for sql, rows in statements:
            for params in rows:
                self._run(sql, params)

    # -- plumbing
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction; a transaction opened inside another (same thread) joins it, so that a caller
        can group several methods (e.g. :class:`center.staffdb.StaffDB`'s statements) into one commit.
        An error anywhere rolls back the outermost one."""
        with self._lock:
            if self._closed:
                raise CenterError("center storage is closed")
            if self._depth:
                # the lock is re-entrant and held: only this thread can be inside the outer transaction
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._begin()
            self._depth = 1
            try:
                yield
                self._commit()
            except BaseException:
                try:
                    self._rollback()
                except Exception:  # the original error matters more
                    log.debug("rollback failed", exc_info=True)
                raise
            finally:
                self._depth = 0

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self._run(sql, params)
        if cur.description is None:
            return []
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Read rows with ``?`` placeholders (for modules that own their own tables)."""
        with self.transaction():
            return self._rows(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement with ``?`` placeholders in its own transaction; returns rowcount."""
        with self.transaction():
            return int(self._run(sql, params).rowcount or 0)

    def _lock_migrations(self) -> None:  # noqa: B027 - optional hook
        """Serialise schema changes of several centers starting at once, until the transaction ends.

        SQLite needs nothing (BEGIN IMMEDIATE); PostgreSQL's CREATE TABLE is not safe against a
        concurrent one even with IF NOT EXISTS (two fail on ``pg_type_typname_nsp_index``)."""

    def migrate(self) -> None:
        """Apply what :data:`MIGRATIONS` holds and this database lacks; safe when several centers start
        together (each migration re-checks, under the migration lock, whether another applied it)."""
        with self.transaction():
            self._lock_migrations()
            self._run(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY,"
                " applied_ts DOUBLE PRECISION NOT NULL)",
                (),
            )
            done = {r["name"] for r in self._rows("SELECT name FROM schema_migrations")}
        for migration in MIGRATIONS:
            if migration.name in done:
                continue
            sql = migration.postgresql if self.dialect == "postgresql" else migration.sqlite
            with self.transaction():
                self._lock_migrations()
                if self._rows("SELECT name FROM schema_migrations WHERE name = ?", (migration.name,)):
                    continue  # another center applied it meanwhile
                for statement in _statements(sql):
                    self._run(statement, ())
                self._run(
                    "INSERT INTO schema_migrations (name, applied_ts) VALUES (?, ?)",
                    (migration.name, time.time()),
                )
            log.info("center storage: applied migration %s", migration.name)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close()

    def __enter__(self) -> CenterStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reports
    def ingest(self, items: Sequence[IncomingReport]) -> list[IngestResult]:
        """Store a batch of reports idempotently in ONE transaction; returns one result per item.

        Set-based, so that a batch costs a fixed number of round trips whatever its size (PostgreSQL pays
        one per statement): lock every key, read what the database already knows about the batch's ids
        and mesh packets (two reads at most), apply the dedup rules in memory item by item — in order, so
        that a batch that repeats itself dedups exactly as if each item came alone — then write every row
        with one ``executemany`` per statement.  :meth:`ingest_reference` is the same rules one item and
        one statement at a time: the contract tests hold the two to the same results and the same rows.

        Raises :class:`CenterError` with nothing stored when the database fails.
        """
        try:
            prepared = [_Prepared.of(item) for item in items]
            with self.transaction():
                plan = _IngestPlan(self._ingest_state(prepared))
                results = [plan.add(p) for p in prepared]
                self._write_many([*plan.statements(), _touch_posts_statement(items)])
        except CenterError:
            raise
        except Exception as exc:
            raise CenterError(f"storing {len(items)} reports failed: {exc}") from exc
        self._notify("reports")
        return results

    def _ingest_state(self, prepared: list[_Prepared]) -> _KnownState:
        """What the database knows about these reports: by id, by the id a copy used, by mesh packet."""
        state = _KnownState()
        if not prepared:
            return state
        # the locks first, in the same round trip as the reads where the database allows it
        lock = self._lock_query(_lock_keys_of([p.item for p in prepared]))
        if lock is None:
            self._lock_keys(_lock_keys_of([p.item for p in prepared]))
        rids = sorted({p.rid for p in prepared})
        mesh = [p for p in prepared if p.item.report.mesh_packet_id is not None]
        queries = [
            _select("SELECT report_id, copies FROM reports WHERE {}", self._in("report_id", rids)),
            _select(
                "SELECT wire_report_id, report_id FROM report_copies WHERE {} ORDER BY first_received_ts",
                self._in("wire_report_id", rids),
            ),
        ]
        if mesh:
            origins = sorted({p.item.report.origin for p in mesh})
            packets = sorted({int(p.item.report.mesh_packet_id or 0) for p in mesh})
            o_sql, o_params = self._in("origin", origins)
            k_sql, k_params = self._in("mesh_packet_id", packets)
            queries.append(
                (
                    "SELECT report_id, copies, origin, mesh_packet_id, observed_est_ts FROM reports"
                    f" WHERE {o_sql} AND {k_sql}",
                    [*o_params, *k_params],
                )
            )
        found = self._fetch_all([lock, *queries] if lock else queries)[1 if lock else 0 :]
        for r in found[0]:
            state.copies[r["report_id"]] = int(r["copies"])
        for r in found[1]:
            state.wire.setdefault(r["wire_report_id"], r["report_id"])
        for r in found[2] if mesh else []:
            state.copies[r["report_id"]] = int(r["copies"])
            key = (str(r["origin"]), int(r["mesh_packet_id"]))
            state.mesh.setdefault(key, []).append((str(r["report_id"]), float(r["observed_est_ts"])))
        # the copies (and copy counts) of every report this batch may add to
        targets = sorted(set(state.copies) | set(state.wire.values()))
        if targets:
            rows = self._fetch_all(
                [
                    _select("SELECT report_id, post_id FROM report_copies WHERE {}", self._in("report_id", targets)),
                    _select("SELECT report_id, copies FROM reports WHERE {}", self._in("report_id", targets)),
                ]
            )
            state.copy_keys = {(r["report_id"], r["post_id"]) for r in rows[0]}
            for r in rows[1]:
                state.copies[r["report_id"]] = int(r["copies"])
        return state

    def ingest_reference(self, items: Sequence[IncomingReport]) -> list[IngestResult]:
        """:meth:`ingest`'s dedup rules one item and one statement at a time: the executable specification.

        It was the center's ingest until the set-based one replaced it (six round trips per report made
        PostgreSQL the center's slow part); kept because the contract tests compare the two on random
        batches, and bench/center_ingest.py measures it as "before".  Not used by the center.
        """
        results: list[IngestResult] = []
        try:
            with self.transaction():
                self._lock_keys(_lock_keys_of(items))
                for item in items:
                    results.append(self._ingest_one(item))
                # the posts heard: each sender, and the origin of each report it carried (a post with no
                # uplink of its own is known to the center only this way)
                heard: dict[str, tuple[str, float]] = {}
                for item in items:
                    heard[item.post_id] = (item.regency, item.received_at.timestamp())
                    if item.carried:
                        heard[item.report.post_id] = (item.regency, item.received_at.timestamp())
                for post_id, (regency, received) in heard.items():
                    self._touch_post(post_id, regency, received)
        except CenterError:
            raise
        except Exception as exc:
            raise CenterError(f"storing {len(items)} reports failed: {exc}") from exc
        self._notify("reports")
        return results

    def _ingest_one(self, item: IncomingReport) -> IngestResult:
        report = item.report
        rid = report.report_id
        received = item.received_at.timestamp()
        est = estimate_observed(report, item.received_at, item.age_s).timestamp()
        canonical = self._find_canonical(report, est)
        path = json.dumps([hop.to_dict() for hop in report.path], ensure_ascii=False)
        if canonical is None:
            # a carried report belongs to its origin post, not to the carrier that published it
            owner = report.post_id if item.carried else item.post_id
            self._run(
                "INSERT INTO reports (report_id, post_id, origin, mesh_packet_id, category, urgency,"
                " severity, mode, msg_type, text_raw, lat, lon, verified, body, observed_post_ts,"
                " stored_post_ts,"
                " received_ts, observed_est_ts, age_s, age_source, post_sent_ts, copies, status, updated_ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 'baru', ?)",
                (*_report_values(item, owner, received, est), received),
            )
            self._insert_copy(rid, item, path, est)
            return IngestResult(rid, rid, created=True, copies=1)
        copy = self._rows(
            "SELECT receipts FROM report_copies WHERE report_id = ? AND post_id = ?",
            (canonical, item.post_id),
        )
        if copy:
            self._run(
                "UPDATE report_copies SET receipts = receipts + 1, last_received_ts = ?"
                " WHERE report_id = ? AND post_id = ?",
                (received, canonical, item.post_id),
            )
            copies = self._rows("SELECT copies FROM reports WHERE report_id = ?", (canonical,))[0]["copies"]
        else:
            self._insert_copy(canonical, item, path, est)
            self._run(
                "UPDATE reports SET copies = copies + 1, updated_ts = ? WHERE report_id = ?",
                (received, canonical),
            )
            copies = self._rows("SELECT copies FROM reports WHERE report_id = ?", (canonical,))[0]["copies"]
        return IngestResult(rid, canonical, created=False, copies=int(copies))

    def _find_canonical(self, report: Report, est: float) -> str | None:
        rid = report.report_id
        # the report itself, or a copy that a post sent under this id (matched by mesh packet earlier)
        known = self._rows(
            "SELECT report_id FROM reports WHERE report_id = ?"
            " UNION ALL SELECT report_id FROM report_copies WHERE wire_report_id = ? LIMIT 1",
            (rid, rid),
        )
        if known:
            return str(known[0]["report_id"])
        if report.mesh_packet_id is None:
            return None
        window = MESH_MATCH_WINDOW.total_seconds()
        rows = self._rows(
            "SELECT report_id, observed_est_ts FROM reports WHERE origin = ? AND mesh_packet_id = ?"
            " AND observed_est_ts BETWEEN ? AND ?",
            (report.origin, report.mesh_packet_id, est - window, est + window),
        )
        if not rows:
            return None
        rows.sort(key=lambda r: abs(r["observed_est_ts"] - est))
        return str(rows[0]["report_id"])

    def _insert_copy(self, report_id: str, item: IncomingReport, path: str, est: float) -> None:
        received = item.received_at.timestamp()
        self._run(
            "INSERT INTO report_copies (report_id, post_id, wire_report_id, first_received_ts,"
            " last_received_ts, receipts, path, age_s, observed_est_ts, relay_origin, relay_prev, relay_hops)"
            " VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
            (
                report_id,
                item.post_id,
                item.report.report_id,
                received,
                received,
                path,
                item.age_s,
                est,
                item.report.post_id if item.carried else None,
                item.relay_prev,
                item.relay_hops,
            ),
        )

    def _touch_post(self, post_id: str, regency: str, received: float) -> None:
        cur = self._run("UPDATE posts SET last_report_ts = ? WHERE post_id = ?", (received, post_id))
        if not cur.rowcount:
            self._run(
                "INSERT INTO posts (post_id, regency, state, status, first_seen_ts, last_report_ts)"
                " VALUES (?, ?, 'unknown', '{}', ?, ?)",
                (post_id, regency, received, received),
            )

    def list_reports(self, flt: ReportFilter | None = None) -> list[CenterReport]:
        """Reports newest first (by center receipt time)."""
        flt = flt or ReportFilter()
        clause, params = _report_where(flt)
        limit = max(1, min(int(flt.limit), 10_000))
        rows = self.query(
            f"SELECT * FROM reports {clause} ORDER BY received_ts DESC, report_id LIMIT ? OFFSET ?",
            (*params, limit, max(0, int(flt.offset))),
        )
        return [_row_to_report(r) for r in rows]

    def count_reports(self, flt: ReportFilter | None = None) -> int:
        """How many reports match ``flt`` (its limit and offset aside)."""
        clause, params = _report_where(flt or ReportFilter())
        return int(self.query(f"SELECT count(*) AS n FROM reports {clause}", params)[0]["n"])

    def get_report(self, report_id: str) -> CenterReport | None:
        """A report by its id or by the id any post used for its copy."""
        with self.transaction():
            rows = self._rows("SELECT * FROM reports WHERE report_id = ?", (report_id,))
            if not rows:
                rows = self._rows(
                    "SELECT r.* FROM reports r JOIN report_copies c ON c.report_id = r.report_id"
                    " WHERE c.wire_report_id = ? LIMIT 1",
                    (report_id,),
                )
        return _row_to_report(rows[0]) if rows else None

    def copies(self, report_id: str) -> list[ReportCopy]:
        rows = self.query(
            "SELECT * FROM report_copies WHERE report_id = ? ORDER BY first_received_ts, post_id",
            (report_id,),
        )
        return [
            ReportCopy(
                report_id=r["report_id"],
                post_id=r["post_id"],
                wire_report_id=r["wire_report_id"],
                first_received_at=_dt(r["first_received_ts"]),
                last_received_at=_dt(r["last_received_ts"]),
                receipts=int(r["receipts"]),
                path=json.loads(r["path"]),
                age_s=float(r["age_s"]),
                observed_est=_dt(r["observed_est_ts"]),
                relay_origin=r["relay_origin"],
                relay_prev=r["relay_prev"],
                relay_hops=None if r["relay_hops"] is None else int(r["relay_hops"]),
            )
            for r in rows
        ]

    def relay_routes(self) -> list[RelayRoute]:
        """Which carrier delivered how many reports of which origin post (copies carried over the mesh)."""
        rows = self.query(
            "SELECT relay_origin AS origin, post_id AS carrier, count(*) AS n, max(relay_hops) AS max_hops,"
            " max(last_received_ts) AS last_ts FROM report_copies WHERE relay_origin IS NOT NULL"
            " GROUP BY relay_origin, post_id ORDER BY relay_origin, post_id"
        )
        return [
            RelayRoute(r["origin"], r["carrier"], int(r["n"]), int(r["max_hops"] or 0), _dt(r["last_ts"])) for r in rows
        ]

    def set_status(self, report_id: str, status: str, *, incident_id: str | None = None) -> bool:
        if status not in STATUSES:
            raise CenterError(f"status harus salah satu dari {', '.join(STATUSES)}; bukan {status!r}")
        with self.transaction():
            cur = self._run(
                "UPDATE reports SET status = ?, incident_id = COALESCE(?, incident_id), updated_ts = ?"
                " WHERE report_id = ?",
                (status, incident_id, time.time(), report_id),
            )
            return bool(cur.rowcount)

    def counts(self) -> dict[str, int]:
        with self.transaction():
            reports = self._rows("SELECT count(*) AS n, coalesce(sum(copies), 0) AS c FROM reports")[0]
            posts = self._rows("SELECT count(*) AS n FROM posts")[0]
            replies = self._rows("SELECT count(*) AS n FROM replies")[0]
        return {
            "reports": int(reports["n"]),
            "copies": int(reports["c"]),
            "posts": int(posts["n"]),
            "replies": int(replies["n"]),
        }

    # -- presence
    def record_status(
        self,
        post_id: str,
        regency: str,
        status: Mapping[str, Any],
        received_at: datetime,
        *,
        retained: bool = False,
    ) -> None:
        """Record a post's status message (``state`` online/offline).  A retained copy replayed at the
        center's start does not move ``status_ts`` forward: it is old news."""
        self._record_status(post_id, regency, status, received_at, retained)
        self._notify("posts")

    def _record_status(
        self, post_id: str, regency: str, status: Mapping[str, Any], received_at: datetime, retained: bool
    ) -> None:
        state = str(status.get("state", "online"))
        boot = status.get("boot")
        version = status.get("version")
        ts = received_at.timestamp()
        body = json.dumps(dict(status), ensure_ascii=False)
        with self.transaction():
            existing = self._rows("SELECT status_ts FROM posts WHERE post_id = ?", (post_id,))
            # every receiver records every status (a normal subscription): another one may insert the same
            # new post at the same moment, so the insert yields to it and the update below applies instead
            if (
                not existing
                and self._run(
                    "INSERT INTO posts (post_id, regency, state, status, status_ts, boot_counter, version,"
                    " first_seen_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (post_id) DO NOTHING",
                    (
                        post_id,
                        regency,
                        state,
                        body,
                        ts,
                        boot if isinstance(boot, int) else None,
                        version if isinstance(version, str) else None,
                        ts,
                    ),
                ).rowcount
            ):
                return
            if not existing:
                existing = self._rows("SELECT status_ts FROM posts WHERE post_id = ?", (post_id,))
            if retained and existing[0]["status_ts"] is not None:
                return
            self._run(
                "UPDATE posts SET regency = ?, state = ?, status = ?, status_ts = ?,"
                " boot_counter = COALESCE(?, boot_counter), version = COALESCE(?, version) WHERE post_id = ?",
                (
                    regency,
                    state,
                    body,
                    ts,
                    boot if isinstance(boot, int) else None,
                    version if isinstance(version, str) else None,
                    post_id,
                ),
            )

    def record_receiver_state(
        self,
        receiver_id: str,
        state: str,
        received_at: datetime,
        *,
        connected_at: str | None = None,
        session: str | None = None,
        beat: datetime | None = None,
    ) -> None:
        """A center receiver's presence message (its own retained topic; ``offline`` is its Last Will, which
        carries no connection or heartbeat: the last known ones are kept)."""
        ts = received_at.timestamp()
        with self.transaction():
            self._run(
                "INSERT INTO receivers (receiver_id, state, connected_at, session, beat_ts, status_ts)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (receiver_id) DO UPDATE SET state = excluded.state,"
                " connected_at = COALESCE(excluded.connected_at, receivers.connected_at),"
                " session = COALESCE(excluded.session, receivers.session),"
                " beat_ts = COALESCE(excluded.beat_ts, receivers.beat_ts), status_ts = excluded.status_ts",
                (receiver_id, state, connected_at, session, beat.timestamp() if beat else None, ts),
            )
        self._notify("posts")

    def receivers(self) -> list[ReceiverPresence]:
        return [
            ReceiverPresence(
                receiver_id=r["receiver_id"],
                state=r["state"],
                connected_at=r["connected_at"],
                session=r["session"],
                last_beat_at=_dt(r["beat_ts"]) if r["beat_ts"] is not None else None,
                status_at=_dt(r["status_ts"]),
            )
            for r in self.query("SELECT * FROM receivers ORDER BY receiver_id")
        ]

    def posts(self) -> list[PostPresence]:
        return [_row_to_post(r) for r in self.query("SELECT * FROM posts ORDER BY post_id")]

    def get_post(self, post_id: str) -> PostPresence | None:
        rows = self.query("SELECT * FROM posts WHERE post_id = ?", (post_id,))
        return _row_to_post(rows[0]) if rows else None

    # -- replies
    def create_reply(self, report_id: str, text: str, created_by: str) -> Reply:
        """Queue a reply to the handset that sent ``report_id``, via the post that delivered it first."""
        text = text.strip()
        # the wire protocol owns the limit (one LoRa packet at the post): refused here, in words staff read
        if protocol.reply_text_problem(text) is not None:
            raise CenterError(f"teks balasan harus 1-{protocol.MAX_REPLY_TEXT_BYTES} byte (huruf beraksen dihitung 2)")
        found = self.get_report(report_id)
        if found is None:
            raise CenterError(f"laporan {report_id!r} tidak ditemukan")
        origin = found.report.origin
        if not origin.startswith("!"):
            raise CenterError(f"laporan {report_id!r} tidak berasal dari handset (asal {origin}); tidak bisa dibalas")
        via, relay_origin = self._reply_route(found.report_id, found.post_id)
        cmd_id = str(uuid.uuid4())
        if relay_origin is not None:
            try:
                compact.encode_reply(compact.Reply(0, relay_origin, found.report_id, cmd_id, text))
            except ProtocolError:
                raise CenterError(
                    "teks balasan terlalu panjang untuk dikirim lewat relay (satu paket LoRa); persingkat teksnya"
                ) from None
        regency = self._rows_one("SELECT regency FROM posts WHERE post_id = ?", (via,))
        now = time.time()
        reply = Reply(
            cmd_id=cmd_id,
            report_id=found.report_id,
            post_id=via,
            regency=(regency or {}).get("regency") or "",
            to_node=origin,
            text=text,
            created_by=created_by[:64] or "?",
            created_at=_dt(now),
            state="queued",
            state_at=_dt(now),
            relay_origin=relay_origin,
        )
        with self.transaction():
            self._run(
                "INSERT INTO replies (cmd_id, report_id, post_id, regency, to_node, text, created_by,"
                " created_ts, state, state_ts, relay_origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                (
                    reply.cmd_id,
                    reply.report_id,
                    reply.post_id,
                    reply.regency,
                    reply.to_node,
                    reply.text,
                    reply.created_by,
                    now,
                    now,
                    relay_origin,
                ),
            )
        self._notify("replies")
        return reply

    def _reply_route(self, report_id: str, origin: str) -> tuple[str, str | None]:
        """(the post a reply goes through, the origin it is carried to or None).  The origin's own copy wins:
        its uplink hands the reply to the handset directly.  A report that arrived only carried goes back
        through the carrier that delivered it first, which sends it on over the mesh (docs/RELAY.md)."""
        rows = self.query(
            "SELECT post_id, relay_origin FROM report_copies WHERE report_id = ? ORDER BY first_received_ts, post_id",
            (report_id,),
        )
        if not rows or any(r["relay_origin"] is None for r in rows):
            return origin, None
        return rows[0]["post_id"], origin

    def _rows_one(self, sql: str, params: Sequence[Any]) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def set_reply_state(self, cmd_id: str, state: str, *, detail: str | None = None) -> bool:
        """Move a reply forward (never back: a late "sent" after "delivered" changes nothing)."""
        if state not in REPLY_STATES:
            raise CenterError(f"unknown reply state {state!r}")
        with self.transaction():
            rows = self._rows("SELECT state FROM replies WHERE cmd_id = ?", (cmd_id,))
            if not rows:
                return False
            current = rows[0]["state"]
            if current == state or (
                state != "failed" and current != "failed" and REPLY_STATES.index(state) < REPLY_STATES.index(current)
            ):
                return False
            if current in ("delivered", "failed") and state == "failed":
                return False
            self._run(
                "UPDATE replies SET state = ?, state_ts = ?, detail = COALESCE(?, detail) WHERE cmd_id = ?",
                (state, time.time(), detail[:200] if detail else None, cmd_id),
            )
        self._notify("replies")
        return True

    def get_reply(self, cmd_id: str) -> Reply | None:
        rows = self.query("SELECT * FROM replies WHERE cmd_id = ?", (cmd_id,))
        return _row_to_reply(rows[0]) if rows else None

    def replies(self, *, report_id: str | None = None, state: str | None = None, limit: int = 500) -> list[Reply]:
        where, params = [], []
        if report_id is not None:
            where.append("report_id = ?")
            params.append(report_id)
        if state is not None:
            where.append("state = ?")
            params.append(state)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.query(f"SELECT * FROM replies {clause} ORDER BY created_ts LIMIT ?", (*params, int(limit)))
        return [_row_to_reply(r) for r in rows]


# ---------------------------------------------------------------------------- set-based ingest
_REPORT_COLUMNS = (
    "report_id, post_id, origin, mesh_packet_id, category, urgency, severity, mode, msg_type, text_raw, lat, lon,"
    " verified, body, observed_post_ts, stored_post_ts, received_ts, observed_est_ts, age_s, age_source,"
    " post_sent_ts, copies, status, updated_ts"
)
_INSERT_REPORT = f"INSERT INTO reports ({_REPORT_COLUMNS}) VALUES ({', '.join(['?'] * 24)})"
_R_COPIES, _R_UPDATED = 21, 23  # indexes in an _INSERT_REPORT row
_INSERT_COPY = (
    "INSERT INTO report_copies (report_id, post_id, wire_report_id, first_received_ts, last_received_ts, receipts,"
    " path, age_s, observed_est_ts, relay_origin, relay_prev, relay_hops) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_C_LAST, _C_RECEIPTS = 4, 5  # indexes in an _INSERT_COPY row
_BUMP_RECEIPTS = (
    "UPDATE report_copies SET receipts = receipts + ?, last_received_ts = ? WHERE report_id = ? AND post_id = ?"
)
_BUMP_COPIES = "UPDATE reports SET copies = copies + ?, updated_ts = ? WHERE report_id = ?"
#: the posts a batch was heard from: each sender, and the origin of each report it carried (a post with no
#: uplink of its own is known to the center only this way)
_TOUCH_POST = (
    "INSERT INTO posts (post_id, regency, state, status, first_seen_ts, last_report_ts)"
    " VALUES (?, ?, 'unknown', '{}', ?, ?) ON CONFLICT (post_id) DO UPDATE SET last_report_ts = excluded.last_report_ts"
)

Statement = tuple[str, list[Sequence[Any]]]


@dataclass(frozen=True, slots=True)
class _Prepared:
    """An incoming report with what every rule needs computed once (and a bad value refused before any
    statement runs)."""

    item: IncomingReport
    rid: str
    received: float
    est: float

    @classmethod
    def of(cls, item: IncomingReport) -> _Prepared:
        return cls(
            item,
            item.report.report_id,
            item.received_at.timestamp(),
            estimate_observed(item.report, item.received_at, item.age_s).timestamp(),
        )


@dataclass(slots=True)
class _KnownState:
    """The database's view of one batch's keys, kept current as the batch's items are applied."""

    copies: dict[str, int] = dataclasses.field(default_factory=dict)  # report_id → copies
    wire: dict[str, str] = dataclasses.field(default_factory=dict)  # the id a copy used → report_id
    mesh: dict[tuple[str, int], list[tuple[str, float]]] = dataclasses.field(default_factory=dict)
    copy_keys: set[tuple[str, str]] = dataclasses.field(default_factory=set)  # (report_id, post_id)

    def canonical(self, p: _Prepared) -> str | None:
        """The report ``p`` is a copy of: the same id, an id a copy used, or the same (origin, packet id)
        within :data:`MESH_MATCH_WINDOW` (the nearest in estimated time)."""
        if p.rid in self.copies:
            return p.rid
        if p.rid in self.wire:
            return self.wire[p.rid]
        packet = p.item.report.mesh_packet_id
        if packet is None:
            return None
        window = MESH_MATCH_WINDOW.total_seconds()
        near = [
            (rid, est)
            for rid, est in self.mesh.get((p.item.report.origin, packet), [])
            if p.est - window <= est <= p.est + window
        ]
        if not near:
            return None
        near.sort(key=lambda r: abs(r[1] - p.est))
        return near[0][0]


class _IngestPlan:
    """The rows one batch writes, built item by item with the reference's rules (``_ingest_one``); a row
    inserted by this batch absorbs its later receipts and copies instead of being updated."""

    def __init__(self, state: _KnownState) -> None:
        self._s = state
        self._reports: dict[str, list[Any]] = {}
        self._copies: dict[tuple[str, str], list[Any]] = {}
        self._receipts: dict[tuple[str, str], list[float]] = {}  # key → [added receipts, last received]
        self._more_copies: dict[str, list[float]] = {}  # report_id → [added copies, updated]

    def add(self, p: _Prepared) -> IngestResult:
        s, item = self._s, p.item
        report = item.report
        canonical = s.canonical(p)
        if canonical is None:
            # a carried report belongs to its origin post, not to the carrier that published it
            owner = report.post_id if item.carried else item.post_id
            self._reports[p.rid] = [*_report_values(item, owner, p.received, p.est), 1, "baru", p.received]
            s.copies[p.rid] = 1
            if report.mesh_packet_id is not None:
                s.mesh.setdefault((report.origin, report.mesh_packet_id), []).append((p.rid, p.est))
            self._add_copy(p.rid, p)
            return IngestResult(p.rid, p.rid, created=True, copies=1)
        key = (canonical, item.post_id)
        if key in s.copy_keys:
            if key in self._copies:
                row = self._copies[key]
                row[_C_RECEIPTS] += 1
                row[_C_LAST] = p.received
            else:
                bump = self._receipts.setdefault(key, [0, 0.0])
                bump[0] += 1
                bump[1] = p.received
        else:
            self._add_copy(canonical, p)
            s.copies[canonical] += 1
            if canonical in self._reports:
                self._reports[canonical][_R_COPIES] = s.copies[canonical]
                self._reports[canonical][_R_UPDATED] = p.received
            else:
                more = self._more_copies.setdefault(canonical, [0, 0.0])
                more[0] += 1
                more[1] = p.received
        return IngestResult(p.rid, canonical, created=False, copies=s.copies[canonical])

    def _add_copy(self, report_id: str, p: _Prepared) -> None:
        item = p.item
        self._copies[(report_id, item.post_id)] = [
            report_id,
            item.post_id,
            p.rid,
            p.received,
            p.received,
            1,
            json.dumps([hop.to_dict() for hop in item.report.path], ensure_ascii=False),
            item.age_s,
            p.est,
            item.report.post_id if item.carried else None,
            item.relay_prev,
            item.relay_hops,
        ]
        self._s.copy_keys.add((report_id, item.post_id))
        self._s.wire.setdefault(p.rid, report_id)

    def statements(self) -> list[Statement]:
        # updates in key order: two receivers updating the same rows take their row locks in one order
        return [
            (_INSERT_REPORT, list(self._reports.values())),
            (_INSERT_COPY, list(self._copies.values())),
            (_BUMP_RECEIPTS, [(n, last, rid, post) for (rid, post), (n, last) in sorted(self._receipts.items())]),
            (_BUMP_COPIES, [(n, updated, rid) for rid, (n, updated) in sorted(self._more_copies.items())]),
        ]


def _report_where(flt: ReportFilter) -> tuple[str, list[Any]]:
    where, params = [], []
    for column in ("post_id", "category", "status"):
        value = getattr(flt, column)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if flt.since is not None:
        where.append("received_ts >= ?")
        params.append(flt.since.timestamp())
    return (f"WHERE {' AND '.join(where)}" if where else ""), params


def _lock_keys_of(items: Sequence[IncomingReport]) -> list[str]:
    keys = set()
    for item in items:
        keys.add(item.report.report_id)
        if item.report.mesh_packet_id is not None:
            keys.add(f"{item.report.origin}/{item.report.mesh_packet_id}")
    return sorted(keys)


def _touch_posts_statement(items: Sequence[IncomingReport]) -> Statement:
    heard: dict[str, tuple[str, float]] = {}
    for item in items:
        heard[item.post_id] = (item.regency, item.received_at.timestamp())
        if item.carried:
            heard[item.report.post_id] = (item.regency, item.received_at.timestamp())
    return (_TOUCH_POST, [(post, regency, ts, ts) for post, (regency, ts) in sorted(heard.items())])


def _select(template: str, where: tuple[str, list[Any]]) -> tuple[str, list[Any]]:
    return template.format(where[0]), where[1]


# ---------------------------------------------------------------------------- SQLite
class SqliteStorage(CenterStorage):
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        except (OSError, sqlite3.Error) as exc:
            raise CenterError(f"cannot open center database {path}: {exc}") from None
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise CenterError(f"center database {path}: journal_mode is {mode!r}, WAL did not take")
            # the ack to the post promises the report is on disk: fsync every commit
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 10000")
        except sqlite3.Error as exc:
            conn.close()
            raise CenterError(f"cannot open center database {path}: {exc}") from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        self._conn.execute("ROLLBACK")

    def _run(self, sql: str, params: Sequence[Any]) -> Any:
        try:
            return self._conn.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise CenterError(f"database: {exc}") from None

    def _write_many(self, statements: Sequence[Statement]) -> None:
        try:
            for sql, rows in statements:
                if rows:
                    self._conn.executemany(sql, [tuple(r) for r in rows])
        except sqlite3.Error as exc:
            raise CenterError(f"database: {exc}") from None

    def _close(self) -> None:
        self._conn.close()


# ---------------------------------------------------------------------------- PostgreSQL
class PostgresStorage(CenterStorage):
    dialect = "postgresql"

    def __init__(self, dsn: str) -> None:
        super().__init__()
        import psycopg

        self._psycopg = psycopg
        try:
            self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise CenterError(f"cannot connect to PostgreSQL {_safe_dsn(dsn)}: {_first_line(exc)}") from None

    def _begin(self) -> None:
        self._run("BEGIN", ())

    def _commit(self) -> None:
        self._run("COMMIT", ())

    def _rollback(self) -> None:
        self._run("ROLLBACK", ())

    def _run(self, sql: str, params: Sequence[Any]) -> Any:
        try:
            return self._conn.execute(_pg_sql(sql), tuple(params), prepare=False)
        except self._psycopg.Error as exc:
            raise CenterError(f"database: {_first_line(exc)}") from None

    def _lock_keys(self, keys: list[str]) -> None:
        sql, params = self._lock_query(keys)
        self._run(sql, params)

    def _lock_migrations(self) -> None:
        self._run("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK_KEY,))

    def _lock_query(self, keys: list[str]) -> tuple[str, list[Any]]:
        # one statement; in hash order (the lock is on the hash), so two batches never wait in a cycle
        return (
            "SELECT count(pg_advisory_xact_lock(h)) AS locked FROM"
            " (SELECT DISTINCT hashtext(k) AS h FROM unnest(?::text[]) AS k ORDER BY h) AS keys",
            [keys],
        )

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)]

    def _fetch_all(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[dict[str, Any]]]:
        try:
            with self._conn.pipeline():
                cursors = [self._conn.execute(_pg_sql(sql), tuple(params), prepare=False) for sql, params in queries]
                out = []
                for cur in cursors:
                    rows = cur.fetchall()  # in a pipeline, the description comes with the results
                    names = [d[0] for d in cur.description or ()]
                    out.append([dict(zip(names, row, strict=True)) for row in rows])
            return out
        except self._psycopg.Error as exc:
            raise CenterError(f"database: {_first_line(exc)}") from None

    def _write_many(self, statements: Sequence[Statement]) -> None:
        try:
            with self._conn.pipeline(), self._conn.cursor() as cur:
                for sql, rows in statements:
                    if rows:
                        cur.executemany(_pg_sql(sql), [tuple(r) for r in rows])
        except self._psycopg.Error as exc:
            raise CenterError(f"database: {_first_line(exc)}") from None

    def _close(self) -> None:
        self._conn.close()


_PLACEHOLDER = re.compile(r"\?")


def _pg_sql(sql: str) -> str:
    # our SQL never contains a literal '?' or '%': placeholders translate one to one
    return _PLACEHOLDER.sub("%s", sql)


def open_storage(url: str) -> CenterStorage:
    """Open (and migrate) the storage named by ``url``.  Raises :class:`CenterError`."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        storage: CenterStorage = SqliteStorage(Path(url[len("sqlite:///") - 1 :]))
    elif url.startswith(("postgresql://", "postgres://")):
        storage = PostgresStorage(url)
    else:
        raise CenterError(f"unknown database URL {_safe_dsn(url)!r}: use sqlite:///PATH or postgresql://...")
    try:
        storage.migrate()
    except BaseException:
        storage.close()
        raise
    return storage


# ---------------------------------------------------------------------------- helpers
def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


def _dt(ts: float | None) -> datetime:
    return datetime.fromtimestamp(float(ts or 0.0), UTC)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _safe_dsn(dsn: str) -> str:
    """A DSN without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", re.sub(r"password=\S+", "password=***", dsn))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _row_to_report(r: Mapping[str, Any]) -> CenterReport:
    try:
        report = Report.from_dict(json.loads(r["body"]))
    except (InvalidReport, ValueError) as exc:
        raise CenterError(f"stored report {r['report_id']} is unreadable: {exc}") from None
    return CenterReport(
        report=report,
        post_id=r["post_id"],
        received_at=_dt(r["received_ts"]),
        observed_est=_dt(r["observed_est_ts"]),
        age_s=float(r["age_s"]),
        age_source=r["age_source"],
        copies=int(r["copies"]),
        status=r["status"],
        incident_id=r["incident_id"],
        updated_at=_dt(r["updated_ts"]),
    )


def _row_to_post(r: Mapping[str, Any]) -> PostPresence:
    try:
        status = json.loads(r["status"] or "{}")
    except ValueError:
        status = {}
    return PostPresence(
        post_id=r["post_id"],
        regency=r["regency"],
        state=r["state"],
        status=status if isinstance(status, dict) else {},
        status_at=_dt(r["status_ts"]) if r["status_ts"] is not None else None,
        boot_counter=r["boot_counter"],
        version=r["version"],
        first_seen_at=_dt(r["first_seen_ts"]),
        last_report_at=_dt(r["last_report_ts"]) if r["last_report_ts"] is not None else None,
    )


def _row_to_reply(r: Mapping[str, Any]) -> Reply:
    return Reply(
        cmd_id=r["cmd_id"],
        report_id=r["report_id"],
        post_id=r["post_id"],
        regency=r["regency"],
        to_node=r["to_node"],
        text=r["text"],
        created_by=r["created_by"],
        created_at=_dt(r["created_ts"]),
        state=r["state"],
        state_at=_dt(r["state_ts"]),
        detail=r["detail"],
        relay_origin=r.get("relay_origin"),
    )


def _report_values(item: IncomingReport, owner: str, received: float, est: float) -> list[Any]:
    """A new report's row from ``report_id`` to ``post_sent_ts`` (the reports table's column order), shared by
    the batched ingest and the per-report reference path so the two can never store different rows."""
    report = item.report
    return [
        report.report_id,
        owner,
        report.origin,
        report.mesh_packet_id,
        report.category,
        report.urgency,
        report.severity,
        report.mode,
        report.msg_type,
        report.text_raw,
        report.lat,
        report.lon,
        int(report.verified),
        json.dumps(report.to_dict(), ensure_ascii=False),
        report.observed_at.timestamp(),
        report.stored_at.timestamp(),
        received,
        est,
        item.age_s,
        item.age_source,
        item.post_sent_at.timestamp() if item.post_sent_at else None,
    ]
