"""The post's durable report queue: SQLite in WAL mode with ``synchronous=FULL``.

Rules this module keeps (docs/RELIABILITY.md explains them):

* A report is committed (fsync'd WAL) before :meth:`Store.put` returns; only then may anyone be told.
* States: ``pending`` → ``sent`` (the broker has it, PUBACK) → ``delivered`` (the center committed it);
  ``rejected`` when the center refuses it.  A report leaves ``pending``/``sent`` only on the center's ack.
* Claims are leases, not deletes: a claimed report stays ``pending`` until it is published, and a claim
  that is never resolved is released after a timeout.
* SD cards wear by the bytes written, and every commit costs at least a few KiB (WAL frames plus the
  fsync'd pages around them).  So only what a crash must not undo is committed at once: a report
  (``put``), ``sent``, ``delivered``, ``rejected``.  Claims live in this process (a new process starts
  with none, as before), and receipt states are written with the next commit, by :meth:`Store.flush`
  or at :meth:`Store.close`: a crash can only forget that a receipt went out, so it is sent again
  (a second "TERIMA" is harmless; a missing one makes the officer send the report again).
  New files use 1 KiB pages: a commit rewrites whole pages, and a report's row and index entries
  fit in fewer bytes of small pages (measured in bench/footprint.py).
* Dedup on ``report_id`` and, for mesh packets, on (origin, packet id) within 24 h: a copy heard over
  another path increments ``copies`` and adds its path, nothing more.
* Retention removes only ``delivered`` (and old ``rejected``) rows, never a pending or sent one.
* A damaged file is moved aside and its readable rows salvaged into a fresh file, with a loud log line.

One :class:`Store` may be shared by threads (one connection behind a lock; the meshtastic library calls
back on its own threads) and several processes may open the same file (the CLI beside the daemon):
writes take ``BEGIN IMMEDIATE`` and wait on the busy timeout.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from edge.salvage import table_leaf_records
from edge.store_schema import migrations
from siaga.clock import Clock, SystemClock
from siaga.errors import ProtocolError, StoreError
from siaga.report import InvalidReport, Report, format_time
from sync import compact

log = logging.getLogger(__name__)

STATES = ("pending", "sent", "delivered", "rejected")
#: The same mesh packet heard again within this window is a copy, not a new report.
MESH_DEDUP_WINDOW = timedelta(hours=24)
#: At most this many paths are kept per report (a packet can echo around a mesh for a long time).
MAX_PATHS = 16
BUSY_TIMEOUT_MS = 10_000
#: Page size of new store files (an existing file keeps its own; SQLite cannot change it in WAL mode).
PAGE_SIZE = 1024

#: Columns of the ``nodes`` table, in order (edge/nodes.py reads and writes rows of these).
NODE_COLUMNS = (
    "num",
    "long_name",
    "short_name",
    "lat",
    "lon",
    "altitude",
    "accuracy_m",
    "pos_ts",
    "pos_boot_id",
    "pos_boot",
    "heard_ts",
)


@dataclass(frozen=True, slots=True)
class PutResult:
    report_id: str
    created: bool
    copies: int


@dataclass(frozen=True)
class StoredReport:
    """A report as the post keeps it: the report and its delivery bookkeeping.

    ``body`` is the report's JSON as stored; ``report`` is parsed from it on first use only, because the
    drain sends ``body`` as it is and never needs the object (parsing dominated the drain's cost).
    """

    report_id: str
    body: str
    state: str
    priority: int
    copies: int
    attempts: int
    stored_ts: float
    boot_id: str
    boot_stored: float
    sent_ts: float | None
    delivered_ts: float | None
    rejected_ts: float | None
    reject_reason: str | None
    claimed: bool
    receipt_post: str | None
    receipt_center: str | None
    #: carried for another post (edge never sends a handset receipt for these)
    carried: bool = False
    #: when the center committed it, by the center's clock (None: not delivered, or an older center)
    center_ts: float | None = None

    @functools.cached_property
    def report(self) -> Report:
        return _report_of(self.body)

    def to_dict(self) -> dict[str, Any]:
        out = self.report.to_dict()
        out.update(
            state=self.state,
            copies=self.copies,
            attempts=self.attempts,
            ref=self.report.ref,
            receipt_post=self.receipt_post,
            receipt_center=self.receipt_center,
        )
        for key in ("sent_ts", "delivered_ts", "rejected_ts"):
            value = getattr(self, key)
            out[key.replace("_ts", "_at")] = format_time(datetime.fromtimestamp(value).astimezone()) if value else None
        if self.reject_reason:
            out["reject_reason"] = self.reject_reason
        return out


# ---------------------------------------------------------------------------- custody relay (relay.engine.CustodyStore)
_RELAY_XMIT_META = "relay_xmit_next"


def _owe_center_acks(conn: sqlite3.Connection, report_ids: Sequence[str], committed_ts: float) -> None:
    for start in range(0, len(report_ids), _ID_CHUNK):
        chunk = list(report_ids[start : start + _ID_CHUNK])
        conn.execute(
            "INSERT OR IGNORE INTO relay_owed (report_id, prev_node, origin, committed_ts)"
            " SELECT report_id, relay_prev_node, json_extract(body, '$.post_id'), ? FROM reports"
            f" WHERE relay_prev_node IS NOT NULL AND report_id IN ({','.join('?' * len(chunk))})",
            (committed_ts, *chunk),
        )


def _another_claim(row: sqlite3.Row, packet: compact.ReportPacket) -> bool:
    """The stored row is a carried report the center refused, and ``packet`` is not the packet refused
    (its signed bytes or tag differ; the mutable header does not count)."""
    if row["state"] != "rejected" or row["relay_prev_node"] is None:
        return False
    try:
        refused = compact.parse_report(bytes(row["relay_packet"] or b""))
    except ProtocolError:
        return True
    return (refused.signed, refused.tag) != (packet.signed, packet.tag)


def _next_xmit(conn: sqlite3.Connection) -> int:
    """The next transfer id from the persisted counter (inside the caller's transaction)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_RELAY_XMIT_META,)).fetchone()
    value = int(row["value"]) if row else 1
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_RELAY_XMIT_META, str((value + 1) & 0xFFFFFFFF))
    )
    return value


class RelayStoreMixin:
    """The custody side of the post store (relay.engine.CustodyStore); mixed into :class:`Store`."""

    _clock: Clock
    _lock: threading.RLock

    # Store's own (the mixin only keeps the custody methods together, apart from the MQTT drain's)
    def _write(self) -> Any:
        raise NotImplementedError

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    def age_s(self, boot_id: str, boot_stored: float, stored_ts: float) -> float:
        raise NotImplementedError

    def relay_receive(
        self, payload: bytes, packet: compact.ReportPacket, prev_node: int, prev_post: str, max_hops: int
    ) -> Any:
        """Commit a carried report (``synchronous=FULL``) or find it in the seen-set (any state): REDUNDANT.

        The stored body is the decoded report's JSON plus ``"relay": {"packet", "prev", "hops"}``, so the
        MQTT uplink publishes it unchanged on this post's own topic and the center verifies the packet.
        """
        from relay.engine import Received  # the value type only; relay imports nothing of edge

        try:
            report = compact.to_report(packet)
        except ProtocolError as exc:
            raise StoreError(f"carried report not valid: {exc}") from None
        hops = packet.hops + 1
        body = report.to_dict()
        body["relay"] = {"packet": base64.b64encode(payload).decode("ascii"), "prev": prev_post, "hops": hops}
        now = self._clock.now()
        parked = hops >= max_hops
        with self._write() as conn:
            row = conn.execute(
                "SELECT state, relay_packet, relay_prev_node FROM reports WHERE report_id = ?", (report.report_id,)
            ).fetchone()
            if row is not None and _another_claim(row, packet):
                # The center refused the packet we carried (an altered or forged copy: its tag is not the
                # origin's), so this id is not "seen": a different packet of it may be the genuine one, and
                # answering REDUNDANT would make its sender forget it while nobody holds it.  The refused
                # copy is replaced and this one goes to the center in its turn.
                conn.execute(
                    "UPDATE reports SET state = 'pending', priority = ?, category = ?, origin = ?, body = ?,"
                    " copies = copies + 1, stored_ts = ?, boot_id = ?, boot_stored = ?, sent_ts = NULL,"
                    " sent_boot = NULL, rejected_ts = NULL, reject_reason = NULL, attempts = 0, relay_packet = ?,"
                    " relay_prev_node = ?, relay_prev_post = ?, relay_hops = ?, relay_parked = ?,"
                    " relay_next_node = NULL, relay_xmit = NULL, relay_xmit_node = NULL WHERE report_id = ?",
                    (
                        report.priority,
                        report.category,
                        report.origin,
                        json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                        now.timestamp(),
                        self._clock.boot_id(),
                        self._clock.boottime(),
                        payload,
                        prev_node,
                        prev_post,
                        hops,
                        1 if parked else 0,
                        report.report_id,
                    ),
                )
                return Received(compact.ACCEPTED, parked)
            if row is not None:
                conn.execute("UPDATE reports SET copies = copies + 1 WHERE report_id = ?", (report.report_id,))
                if row["state"] == "delivered":
                    # it reached the center already: this sender gets the center's ack too
                    conn.execute(
                        "INSERT OR IGNORE INTO relay_owed (report_id, prev_node, origin, committed_ts)"
                        " VALUES (?, ?, ?, coalesce((SELECT delivered_ts FROM reports WHERE report_id = ?), ?))",
                        (report.report_id, prev_node, report.post_id, report.report_id, now.timestamp()),
                    )
                return Received(compact.REDUNDANT)
            conn.execute(
                "INSERT INTO reports (report_id, priority, category, origin, mesh_packet_id, body, stored_ts,"
                " boot_id, boot_stored, relay_packet, relay_prev_node, relay_prev_post, relay_hops, relay_parked)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    report.report_id,
                    report.priority,
                    report.category,
                    report.origin,
                    # the mesh dedup window is for what this post's own radio hears, not carried reports
                    None,
                    json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                    now.timestamp(),
                    self._clock.boot_id(),
                    self._clock.boottime(),
                    payload,
                    prev_node,
                    prev_post,
                    hops,
                    1 if parked else 0,
                ),
            )
        return Received(compact.ACCEPTED, parked)

    def relay_outbound(self, limit: int, exclude: Collection[str]) -> list[Any]:
        from relay.engine import Outbound

        skip = set(exclude)
        rows = self._read(
            "SELECT report_id, priority, body, relay_packet, relay_prev_node, stored_ts, boot_id, boot_stored,"
            " relay_xmit, relay_xmit_node FROM reports WHERE state = 'pending' AND relay_parked = 0"
            " ORDER BY priority, stored_ts, report_id LIMIT ?",
            (limit + len(skip),),
        )
        boot_id = self._clock.boot_id()
        out = []
        for row in rows:
            if row["report_id"] in skip:
                continue
            out.append(
                Outbound(
                    report_id=row["report_id"],
                    priority=row["priority"],
                    body=row["body"],
                    packet=row["relay_packet"],
                    prev_node=row["relay_prev_node"],
                    held_s=self.age_s(row["boot_id"], row["boot_stored"], row["stored_ts"]),
                    held_wall=row["boot_id"] != boot_id,
                    xmit=row["relay_xmit"],
                    xmit_node=row["relay_xmit_node"],
                )
            )
            if len(out) == limit:
                break
        return out

    def relay_record_send(self, report_id: str, node: int) -> int:
        with self._write() as conn:
            row = conn.execute(
                "SELECT relay_xmit, relay_xmit_node FROM reports WHERE report_id = ?", (report_id,)
            ).fetchone()
            if row is not None and row["relay_xmit"] is not None and row["relay_xmit_node"] == node:
                return int(row["relay_xmit"])
            xmit = _next_xmit(conn)
            conn.execute(
                "UPDATE reports SET relay_xmit = ?, relay_xmit_node = ? WHERE report_id = ?", (xmit, node, report_id)
            )
            conn.execute(
                "INSERT OR REPLACE INTO relay_xmit (xmit, kind, node, report_id, sent_ts)"
                " VALUES (?, 'report', ?, ?, ?)",
                (xmit, node, report_id, self._clock.now().timestamp()),
            )
        return xmit

    def relay_passed(self, xmits: Sequence[int], node: int) -> list[str]:
        now = self._clock.now().timestamp()
        boot = self._clock.boottime()
        changed: list[str] = []
        with self._write() as conn:
            for start in range(0, len(xmits), _ID_CHUNK):
                chunk = list(xmits[start : start + _ID_CHUNK])
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT xmit, kind, report_id FROM relay_xmit WHERE node = ? AND xmit IN ({marks})",
                    (node, *chunk),
                ).fetchall()
                for row in rows:
                    if row["kind"] == "report":
                        cur = conn.execute(
                            "UPDATE reports SET state = 'sent', sent_ts = ?, sent_boot = ?, attempts = attempts + 1,"
                            " relay_next_node = ? WHERE report_id = ? AND state = 'pending' RETURNING report_id",
                            (now, boot, node, row["report_id"]),
                        ).fetchall()
                        changed.extend(r[0] for r in cur)
                    else:
                        conn.execute("DELETE FROM relay_owed WHERE xmit = ? AND prev_node = ?", (row["xmit"], node))
                conn.execute(f"DELETE FROM relay_xmit WHERE node = ? AND xmit IN ({marks})", (node, *chunk))
                # a staff reply's transfer id lives on its own row (relay_replies.xmit)
                conn.execute(
                    f"UPDATE relay_replies SET state = 'passed' WHERE state = 'pending' AND next_node = ?"
                    f" AND xmit IN ({marks})",
                    (node, *chunk),
                )
        return changed

    def relay_center_ack(self, report_ids: Sequence[str], committed_at: datetime) -> list[str]:
        ids = list(dict.fromkeys(report_ids))
        committed = committed_at.timestamp()
        now = self._clock.now().timestamp()
        mine: list[str] = []
        with self._write() as conn:
            changed = _update_ids(
                conn,
                "UPDATE reports SET state = 'delivered', delivered_ts = ?, center_ts = ?"
                " WHERE state IN ('pending', 'sent') AND report_id IN ({ids}) RETURNING report_id",
                (now, committed),
                ids,
            )
            _owe_center_acks(conn, changed, committed)
            if changed:
                marks = ",".join("?" * len(changed))
                mine = [
                    r[0]
                    for r in conn.execute(
                        f"SELECT report_id FROM reports WHERE relay_prev_node IS NULL AND report_id IN ({marks})",
                        changed,
                    )
                ]
        return mine

    def relay_owed(self, limit: int) -> list[Any]:
        from relay.engine import OwedCenterAck

        rows = self._read(
            "SELECT report_id, prev_node, origin, committed_ts, xmit FROM relay_owed"
            " ORDER BY prev_node, origin, xmit, committed_ts LIMIT ?",
            (limit,),
        )
        groups: dict[tuple[int, str, int | None], list[sqlite3.Row]] = {}
        for row in rows:
            groups.setdefault((row["prev_node"], row["origin"], row["xmit"]), []).append(row)
        return [
            OwedCenterAck(
                node, origin, max(r["committed_ts"] for r in group), tuple(r["report_id"] for r in group), xmit
            )
            for (node, origin, xmit), group in groups.items()
        ]

    def relay_owed_assign(self, prev_node: int, report_ids: Sequence[str]) -> int:
        with self._write() as conn:
            xmit = _next_xmit(conn)
            marks = ",".join("?" * len(report_ids))
            conn.execute(
                f"UPDATE relay_owed SET xmit = ? WHERE prev_node = ? AND report_id IN ({marks})",
                (xmit, prev_node, *report_ids),
            )
            conn.execute(
                "INSERT OR REPLACE INTO relay_xmit (xmit, kind, node, report_id, sent_ts)"
                " VALUES (?, 'center_ack', ?, NULL, ?)",
                (xmit, prev_node, self._clock.now().timestamp()),
            )
        return xmit

    def relay_reply_put(self, cmd_id: str, origin: str, report_id: str, text: str, *, own: bool) -> str:
        """Commit a staff reply this post must pass toward ``origin`` (or, ``own``, hand to its handset), keyed
        by ``cmd_id``.  Returns the row's state: 'pending' (to send to the report's previous hop), 'failed'
        (this post does not hold the report: no way back), 'arrived' (ours, not yet handed to the radio),
        or the state it already had ('passed', 'handed', ...): a redelivered copy changes nothing."""
        with self._write() as conn:
            row = conn.execute("SELECT state FROM relay_replies WHERE cmd_id = ?", (cmd_id,)).fetchone()
            if row is not None:
                return str(row["state"])
            prev = conn.execute("SELECT relay_prev_node FROM reports WHERE report_id = ?", (report_id,)).fetchone()
            next_node = prev["relay_prev_node"] if prev is not None else None
            state = "arrived" if own else ("pending" if next_node is not None else "failed")
            conn.execute(
                "INSERT INTO relay_replies (cmd_id, origin, report_id, text, state, next_node, received_ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (cmd_id, origin, report_id, text, state, None if own else next_node, self._clock.now().timestamp()),
            )
        return state

    def relay_reply_handed(self, cmd_id: str) -> None:
        """The origin handed this reply to its radio: a redelivered copy is not handed again."""
        with self._write() as conn:
            conn.execute("UPDATE relay_replies SET state = 'handed' WHERE cmd_id = ? AND state = 'arrived'", (cmd_id,))

    def relay_replies_out(self, limit: int) -> list[Any]:
        from relay.engine import OwedReply

        rows = self._read(
            "SELECT cmd_id, origin, report_id, text, next_node, xmit FROM relay_replies WHERE state = 'pending'"
            " ORDER BY received_ts, cmd_id LIMIT ?",
            (limit,),
        )
        return [
            OwedReply(r["cmd_id"], r["origin"], r["report_id"], r["text"], int(r["next_node"]), r["xmit"]) for r in rows
        ]

    def relay_reply_assign(self, cmd_id: str) -> int:
        """A transfer id for sending this reply on (recorded in the same commit; a resend reuses it)."""
        with self._write() as conn:
            row = conn.execute("SELECT xmit FROM relay_replies WHERE cmd_id = ?", (cmd_id,)).fetchone()
            if row is not None and row["xmit"] is not None:
                return int(row["xmit"])
            xmit = _next_xmit(conn)
            conn.execute("UPDATE relay_replies SET xmit = ? WHERE cmd_id = ?", (xmit, cmd_id))
        return xmit

    def relay_held_count(self) -> int:
        rows = self._read("SELECT count(*) FROM reports WHERE relay_prev_node IS NOT NULL AND state = 'pending'")
        return int(rows[0][0])

    def relay_summary(self) -> dict[str, int]:
        """For `siaga status`: carried reports by state, parked ones, center acks owed."""
        rows = self._read(
            "SELECT sum(relay_prev_node IS NOT NULL AND state = 'pending') AS held,"
            " sum(relay_prev_node IS NOT NULL AND state = 'sent') AS passed,"
            " sum(relay_prev_node IS NOT NULL AND state = 'delivered') AS delivered,"
            " sum(relay_parked = 1 AND state = 'pending') AS parked,"
            " sum(relay_prev_node IS NULL AND relay_next_node IS NOT NULL AND state = 'sent') AS own_passed"
            " FROM reports"
        )
        owed = self._read("SELECT count(*) FROM relay_owed")
        replies = self._read("SELECT count(*) FROM relay_replies WHERE state = 'pending'")
        out = {k: int(rows[0][k] or 0) for k in ("held", "passed", "delivered", "parked", "own_passed")}
        out["center_acks_owed"] = int(owed[0][0])
        out["replies_owed"] = int(replies[0][0])
        return out


class Store(RelayStoreMixin):
    """The durable queue.  Open with :meth:`open`; always :meth:`close`."""

    def __init__(self, path: Path, conn: sqlite3.Connection, clock: Clock) -> None:
        self.path = path
        self._conn = conn
        self._db = sqlite_utils.Database(conn)
        self._clock = clock
        self._lock = threading.RLock()
        self._closed = False
        # Soft state (see the module docstring): leases held by this process, report_id → CLOCK_BOOTTIME at
        # claim, and receipt states not yet on disk, (report_id, column) → state.
        self._claims: dict[str, float] = {}
        self._unwritten_receipts: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, clock: Clock | None = None, check: bool = True) -> Store:
        """Open (creating if needed) the store at ``path``.

        ``check`` runs ``PRAGMA integrity_check``; a damaged file is moved aside and salvaged.
        """
        path = Path(path)
        clock = clock or SystemClock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create data directory {path.parent}: {exc.strerror}") from None
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise StoreError(f"data directory {path.parent} is not writable by this user")
        try:
            conn = _connect(path)
        except sqlite3.OperationalError as exc:
            # I/O, locking, permissions, full disk: the file may be fine; never "salvage" it
            raise _store_error(f"open {path}", exc) from None
        except sqlite3.DatabaseError as exc:
            if not check:
                raise StoreError(f"cannot open store {path}: {exc}") from None
            log.error("STORE DAMAGED: %s cannot be opened (%s); salvaging", path, exc)
            _salvage(path, str(exc))
            conn = _connect(path)
        store = cls(path, conn, clock)
        if check:
            problem = store._integrity_problem()
            if problem is not None:
                store.close()
                log.error("STORE DAMAGED: %s failed integrity_check (%s); salvaging", path, problem)
                _salvage(path, problem)
                store = cls(path, _connect(path), clock)
        try:
            store._migrate()
        except BaseException:
            store.close()
            raise
        return store

    def _integrity_problem(self) -> str | None:
        try:
            rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return str(exc)
        result = "; ".join(str(r[0]) for r in rows[:5])
        return None if result == "ok" else result

    def integrity_ok(self) -> bool:
        with self._lock:
            return self._integrity_problem() is None

    def _migrate(self) -> None:
        with self._write():
            migrations.apply(self._db)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                try:
                    self.flush()
                except StoreError as exc:
                    log.warning("receipt states not written at close (they will be sent again): %s", exc)
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed (fsync'd) on exit, rolled back on any error."""
        with self._lock:
            if self._closed:
                raise StoreError("store is closed")
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _store_error("begin", exc) from None
            receipts = self._unwritten_receipts
            try:
                # receipt states ride along: their rows' pages are usually in this commit already
                for (report_id, column), state in receipts.items():
                    conn.execute(f"UPDATE reports SET {column} = ? WHERE report_id = ?", (state, report_id))
                yield conn
                conn.execute("COMMIT")
                self._unwritten_receipts = {}
            except BaseException as exc:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # a failed COMMIT may already have rolled back
                if isinstance(exc, sqlite3.Error):
                    raise _store_error("write", exc) from None
                raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            if self._closed:
                raise StoreError("store is closed")
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _store_error("read", exc) from None

    # ------------------------------------------------------------------ putting reports in
    def put(self, report: Report) -> PutResult:
        """Store ``report`` durably, or count it as a copy of one already stored.

        Returns only after the commit reached the disk.  Raises :class:`StoreError` (disk full,
        read-only, invalid report) with nothing written.
        """
        try:
            report.validate()
        except InvalidReport as exc:
            raise StoreError(f"invalid report: {exc}") from None
        now = self._clock.now()
        boot = self._clock.boottime()
        with self._write() as conn:
            existing = conn.execute(
                "SELECT report_id, body, copies FROM reports WHERE report_id = ?", (report.report_id,)
            ).fetchone()
            if existing is None and report.mesh_packet_id is not None:
                # The same packet heard again on another day boundary or after the id's day changed:
                # (origin, packet id) within the dedup window is the same report.
                cutoff = (now - MESH_DEDUP_WINDOW).timestamp()
                existing = conn.execute(
                    "SELECT report_id, body, copies FROM reports WHERE origin = ? AND mesh_packet_id = ?"
                    " AND stored_ts >= ? ORDER BY stored_ts DESC LIMIT 1",
                    (report.origin, report.mesh_packet_id, cutoff),
                ).fetchone()
            if existing is not None:
                copies = existing["copies"] + 1
                body = json.loads(existing["body"])
                paths = body.get("path", [])
                if report.path and len(paths) < MAX_PATHS:
                    paths.extend(hop.to_dict() for hop in report.path[: MAX_PATHS - len(paths)])
                    body["path"] = paths
                conn.execute(
                    "UPDATE reports SET copies = ?, body = ? WHERE report_id = ?",
                    (copies, json.dumps(body, ensure_ascii=False, separators=(",", ":")), existing["report_id"]),
                )
                return PutResult(existing["report_id"], created=False, copies=copies)
            conn.execute(
                "INSERT INTO reports (report_id, priority, category, origin, mesh_packet_id, body,"
                " stored_ts, boot_id, boot_stored) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    report.report_id,
                    report.priority,
                    report.category,
                    report.origin,
                    report.mesh_packet_id,
                    json.dumps(report.to_dict(), ensure_ascii=False, separators=(",", ":")),
                    now.timestamp(),
                    self._clock.boot_id(),
                    boot,
                ),
            )
        return PutResult(report.report_id, created=True, copies=1)

    # ------------------------------------------------------------------ the drain: claim / sent / ack / release
    def claim(self, limit: int) -> list[StoredReport]:
        """Lease up to ``limit`` pending, unclaimed reports in drain order.

        Drain order: life-safety categories first, then oldest.  The claim is resolved by
        :meth:`mark_sent`, :meth:`ack` or :meth:`release`, or expires after the timeout given to
        :meth:`release_stale`.
        """
        boot = self._clock.boottime()
        with self._lock:
            skip = set(self._claims)
            picked: list[str] = []
            if limit > 0:
                for row in self._read(
                    "SELECT report_id FROM reports WHERE state = 'pending' ORDER BY priority, stored_ts, report_id"
                    " LIMIT ?",
                    (limit + len(skip),),
                ):
                    if row[0] not in skip:
                        picked.append(row[0])
                        if len(picked) == limit:
                            break
            for report_id in picked:
                self._claims[report_id] = boot
            return self.get_many(picked)

    def mark_sent(self, report_ids: Iterable[str]) -> int:
        """The broker has these (PUBACK): ``pending`` → ``sent``.  Returns how many changed."""
        with self._write() as conn:
            return self._mark_sent(conn, list(report_ids))

    def _mark_sent(self, conn: sqlite3.Connection, ids: list[str]) -> int:
        changed = _update_ids(
            conn,
            "UPDATE reports SET state = 'sent', sent_ts = ?, sent_boot = ?, attempts = attempts + 1"
            " WHERE +state = 'pending' AND report_id IN ({ids}) RETURNING report_id",
            (self._clock.now().timestamp(), self._clock.boottime()),
            ids,
        )
        self._unclaim(ids)
        return len(changed)

    def ack(
        self, report_ids: Iterable[str], *, sent: Iterable[str] = (), committed_at: datetime | None = None
    ) -> list[str]:
        """The center committed these: → ``delivered``.  Returns the ids that changed state now.

        An ack may overtake the PUBACK (the center can be faster than our callback), so it is
        accepted from ``pending`` as well as ``sent``.  ``sent``: PUBACKs of the same moment, marked as
        :meth:`mark_sent` does but in this one commit (a commit costs an fsync and SD-card writes).
        ``committed_at``: the center's commit time from its ack, kept as ``center_ts`` (the console shows it).
        """
        now = self._clock.now().timestamp()
        center_ts = committed_at.timestamp() if committed_at is not None else None
        ids = list(dict.fromkeys(report_ids))
        sent_ids = list(sent)
        with self._write() as conn:
            if sent_ids:
                self._mark_sent(conn, sent_ids)
            changed = set(
                _update_ids(
                    conn,
                    "UPDATE reports SET state = 'delivered', delivered_ts = ?, center_ts = ?"
                    " WHERE state IN ('pending', 'sent') AND report_id IN ({ids}) RETURNING report_id",
                    (now, center_ts),
                    ids,
                )
            )
            # the center's ack walks back to the origin of each carried report: owed in this same commit,
            # so a crash between the two can never leave an origin waiting forever
            _owe_center_acks(conn, sorted(changed), now)
            self._unclaim(ids)
        return [rid for rid in ids if rid in changed]

    def reject(self, report_id: str, reason: str) -> bool:
        """The center refused this report for good (invalid): → ``rejected`` with the reason."""
        now = self._clock.now().timestamp()
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE reports SET state = 'rejected', rejected_ts = ?, reject_reason = ?"
                " WHERE report_id = ? AND state IN ('pending', 'sent')",
                (now, reason[:500], report_id),
            )
            self._unclaim([report_id])
        return bool(cur.rowcount)

    def release(self, report_ids: Iterable[str]) -> int:
        """Give claimed reports back to the queue (publishing failed); they stay ``pending``."""
        with self._lock:
            return self._unclaim(report_ids)

    def _unclaim(self, report_ids: Iterable[str]) -> int:
        return sum(self._claims.pop(rid, None) is not None for rid in report_ids)

    def release_stale(self, claim_timeout_s: float, sent_timeout_s: float) -> tuple[int, int]:
        """Release claims older than ``claim_timeout_s``; return ``sent`` reports unacked for longer
        than ``sent_timeout_s`` to ``pending``.  Returns (claims released, sent returned)."""
        boot = self._clock.boottime()
        with self._lock:
            # A claim from before a reboot (the boot clock went back) is stale whatever its age.
            stale = [rid for rid, at in self._claims.items() if at < boot - claim_timeout_s or at > boot]
            claims = self._unclaim(stale)
        with self._write() as conn:
            sent = conn.execute(
                "UPDATE reports SET state = 'pending', sent_ts = NULL, sent_boot = NULL"
                " WHERE state = 'sent' AND relay_next_node IS NULL"  # custody passed over the mesh: final
                " AND (sent_boot IS NULL OR sent_boot < ? OR sent_boot > ?)",
                (boot - sent_timeout_s, boot),
            ).rowcount
        if claims or sent:
            log.info("released %d stale claims, %d unacknowledged sent reports back to pending", claims, sent)
        return claims, sent

    def release_all_claims(self) -> int:
        """Forget every claim (the uplink starts over).  Claims never outlive the process that made them;
        the ``claim_token``/``claim_boot`` columns an old file may still fill are never read."""
        with self._lock:
            n = len(self._claims)
            self._claims.clear()
        return n

    def set_receipt(self, report_id: str, which: str, state: str) -> None:
        """Note the receipt state to the handset (``post`` or ``center``); written with the next commit.

        Never fails for a full disk: the state waits in memory (see the module docstring)."""
        column = {"post": "receipt_post", "center": "receipt_center"}[which]
        with self._lock:
            self._unwritten_receipts[(report_id, column)] = state[:64]

    def flush(self) -> None:
        """Write receipt states noted since the last commit (the daemon calls this now and then)."""
        with self._lock:
            if self._unwritten_receipts and not self._closed:
                with self._write():
                    pass

    # ------------------------------------------------------------------ retention
    def retention(self, days: float) -> int:
        """Delete delivered and rejected reports older than ``days``; never a pending or sent one."""
        cutoff = (self._clock.now() - timedelta(days=days)).timestamp()
        with self._write() as conn:
            deleted = conn.execute(
                "DELETE FROM reports WHERE (state = 'delivered' AND delivered_ts < ?)"
                " OR (state = 'rejected' AND rejected_ts < ?)",
                (cutoff, cutoff),
            ).rowcount
        if deleted:
            log.info("retention: removed %d delivered reports older than %g days", deleted, days)
        return deleted

    # ------------------------------------------------------------------ reading
    def get(self, report_id: str) -> StoredReport | None:
        found = self.get_many([report_id])
        return found[0] if found else None

    def get_many(self, report_ids: Sequence[str]) -> list[StoredReport]:
        if not report_ids:
            return []
        out: dict[str, StoredReport] = {}
        for start in range(0, len(report_ids), 500):
            chunk = list(report_ids[start : start + 500])
            rows = self._read(f"SELECT * FROM reports WHERE report_id IN ({','.join('?' * len(chunk))})", chunk)
            for row in rows:
                out[row["report_id"]] = self._stored(row)
        return [out[rid] for rid in report_ids if rid in out]

    def _stored(self, row: sqlite3.Row) -> StoredReport:
        """A row as this process sees it: with its claims and the receipt states not yet written."""
        rid = row["report_id"]
        with self._lock:
            receipt_post = self._unwritten_receipts.get((rid, "receipt_post"), row["receipt_post"])
            receipt_center = self._unwritten_receipts.get((rid, "receipt_center"), row["receipt_center"])
            claimed = rid in self._claims
        return _row_to_stored(row, claimed, receipt_post, receipt_center)

    def list_reports(self, state: str | None = None, limit: int = 1000) -> list[StoredReport]:
        """Reports in drain order (pending first by priority), newest delivered last."""
        if state is not None and state not in STATES:
            raise StoreError(f"unknown state {state!r}; one of {', '.join(STATES)}")
        where = "WHERE state = ?" if state else ""
        params: list[Any] = [state] if state else []
        rows = self._read(
            f"SELECT * FROM reports {where} ORDER BY CASE state WHEN 'pending' THEN 0 WHEN 'sent' THEN 1"
            " ELSE 2 END, priority, stored_ts LIMIT ?",
            [*params, limit],
        )
        return [self._stored(r) for r in rows]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for row in self._read("SELECT state, count(*) AS n FROM reports GROUP BY state"):
            counts[row["state"]] = row["n"]
        return counts

    def oldest_pending_age_s(self) -> float | None:
        """Age of the oldest report not yet delivered (pending or sent), by the boot clock when possible."""
        rows = self._read(
            "SELECT stored_ts, boot_id, boot_stored FROM reports WHERE state IN ('pending', 'sent')"
            " ORDER BY stored_ts LIMIT 1"
        )
        if not rows:
            return None
        return self.age_s(rows[0]["boot_id"], rows[0]["boot_stored"], rows[0]["stored_ts"])

    def age_s(self, boot_id: str, boot_stored: float, stored_ts: float) -> float:
        """Seconds since a report was stored: exact while the post has not rebooted."""
        if boot_id == self._clock.boot_id():
            return max(0.0, self._clock.boottime() - boot_stored)
        return max(0.0, self._clock.now().timestamp() - stored_ts)

    def last_delivered_ts(self) -> float | None:
        rows = self._read("SELECT max(delivered_ts) AS t FROM reports WHERE state = 'delivered'")
        return rows[0]["t"] if rows and rows[0]["t"] is not None else None

    def meta_get(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def meta_set(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def meta_items(self, prefix: str) -> list[tuple[str, str]]:
        """Every (key, value) whose key starts with ``prefix``, oldest written first."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._read("SELECT key, value FROM meta WHERE key LIKE ? ESCAPE '\\' ORDER BY rowid", (pattern,))
        return [(row["key"], row["value"]) for row in rows]

    def meta_delete(self, key: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    def meta_prune(self, prefix: str, keep: int) -> int:
        """Delete all but the ``keep`` newest meta keys starting with ``prefix`` (newest = last written:
        by rowid, not by a time the post's clock may have wrong).  Returns how many went."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._write() as conn:
            cur = conn.execute(
                "DELETE FROM meta WHERE key LIKE ? ESCAPE '\\' AND rowid NOT IN"
                " (SELECT rowid FROM meta WHERE key LIKE ? ESCAPE '\\' ORDER BY rowid DESC LIMIT ?)",
                (pattern, pattern, max(0, keep)),
            )
            return int(cur.rowcount)

    # ------------------------------------------------------------------ console: messages from 112, operators
    def add_message(self, cmd_id: str, report_id: str | None, to_node: str | None, text: str) -> bool:
        """Keep a staff reply from 112 for the console (committed: it survives a restart).  False: a repeat."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO messages (cmd_id, report_id, to_node, text, received_ts) VALUES (?, ?, ?, ?, ?)",
                (cmd_id, report_id, to_node, text, self._clock.now().timestamp()),
            )
        return bool(cur.rowcount)

    def messages(self, limit: int = 200) -> list[dict[str, Any]]:
        """Replies from 112, unread first, newest first."""
        rows = self._read(
            "SELECT cmd_id, report_id, to_node, text, received_ts, read_ts, read_by FROM messages"
            " ORDER BY read_ts IS NOT NULL, received_ts DESC LIMIT ?",
            (limit,),
        )
        return [dict(r) for r in rows]

    def unread_messages(self) -> int:
        return int(self._read("SELECT count(*) AS n FROM messages WHERE read_ts IS NULL")[0]["n"])

    def mark_read(self, cmd_id: str, by: str) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE messages SET read_ts = ?, read_by = ? WHERE cmd_id = ? AND read_ts IS NULL",
                (self._clock.now().timestamp(), by, cmd_id),
            )
        return bool(cur.rowcount)

    def set_operator(self, name: str, password_hash: str) -> bool:
        """Create or replace an operator's password hash; True when the account is new."""
        now = time.time()
        with self._write() as conn:
            new = not conn.execute("SELECT 1 FROM operators WHERE name = ?", (name,)).fetchone()
            conn.execute(
                "INSERT INTO operators (name, password_hash, created_ts, changed_ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash,"
                " changed_ts = excluded.changed_ts",
                (name, password_hash, now, now),
            )
        return new

    def operator(self, name: str) -> dict[str, Any] | None:
        rows = self._read("SELECT name, password_hash, created_ts, changed_ts FROM operators WHERE name = ?", (name,))
        return dict(rows[0]) if rows else None

    def operators(self) -> list[str]:
        return [r["name"] for r in self._read("SELECT name FROM operators ORDER BY name")]

    def load_nodes(self) -> list[dict[str, Any]]:
        """Every radio in the node table (edge/nodes.py), as dicts of :data:`NODE_COLUMNS`."""
        return [dict(row) for row in self._read(f"SELECT {', '.join(NODE_COLUMNS)} FROM nodes")]

    def save_nodes(self, rows: Iterable[dict[str, Any]]) -> int:
        """Insert or replace node rows in one transaction (batched by the caller: few SD writes)."""
        values = [tuple(row.get(c) for c in NODE_COLUMNS) for row in rows]
        if not values:
            return 0
        with self._write() as conn:
            conn.executemany(
                f"INSERT OR REPLACE INTO nodes ({', '.join(NODE_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(NODE_COLUMNS))})",
                values,
            )
        return len(values)

    def bump_boot_counter(self) -> int:
        """Count daemon starts (sent in every status so the center sees restarts)."""
        with self._write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'boot_counter'").fetchone()
            value = int(row["value"]) + 1 if row else 1
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('boot_counter', ?)", (str(value),))
        return value


#: Ids per statement in bulk updates (SQLite allows 32766 host parameters; stay well below).
_ID_CHUNK = 500


def _update_ids(conn: sqlite3.Connection, sql: str, params: Sequence[Any], report_ids: Iterable[str]) -> list[str]:
    """Run ``sql`` (with an ``{ids}`` placeholder list and RETURNING report_id) over ids in chunks.

    Write the state test as ``+state``: a plain ``state = ?`` lets SQLite pick the drain index and scan
    every pending row for each update (measured: the drain's main cost with a 20,000-report backlog).
    """
    ids = list(report_ids)
    changed: list[str] = []
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        rows = conn.execute(sql.format(ids=",".join("?" * len(chunk))), (*params, *chunk)).fetchall()
        changed.extend(row[0] for row in rows)
    return changed


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # takes effect only while the file is still empty
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"store {path}: journal_mode is {mode!r}, WAL did not take (file system?)")
        conn.execute("PRAGMA synchronous = FULL")
        if conn.execute("PRAGMA synchronous").fetchone()[0] != 2:
            raise StoreError(f"store {path}: synchronous=FULL did not take")
        conn.execute("PRAGMA foreign_keys = ON")
        # the schema probe: fails with DatabaseError on a file that is not a database
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


def _row_to_stored(
    row: sqlite3.Row, claimed: bool, receipt_post: str | None, receipt_center: str | None
) -> StoredReport:
    return StoredReport(
        report_id=row["report_id"],
        body=row["body"],
        state=row["state"],
        priority=row["priority"],
        copies=row["copies"],
        attempts=row["attempts"],
        stored_ts=row["stored_ts"],
        boot_id=row["boot_id"],
        boot_stored=row["boot_stored"],
        sent_ts=row["sent_ts"],
        delivered_ts=row["delivered_ts"],
        rejected_ts=row["rejected_ts"],
        reject_reason=row["reject_reason"],
        claimed=claimed,
        receipt_post=receipt_post,
        receipt_center=receipt_center,
        carried=row["relay_prev_node"] is not None,
        center_ts=row["center_ts"],
    )


_DISK_FULL = "the disk is full or failing"


def is_disk_full(exc: StoreError) -> bool:
    """Whether the store refused for lack of room (or a failing disk: SQLite cannot tell them apart)."""
    return _DISK_FULL in str(exc)


def _store_error(action: str, exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    if "disk is full" in text or "disk I/O" in text:
        return StoreError(f"{action} failed: {_DISK_FULL} ({text}); nothing was changed")
    if "readonly" in text or "read-only" in text:
        return StoreError(f"{action} failed: the store is read-only ({text}); nothing was changed")
    if "locked" in text or "busy" in text:
        return StoreError(f"{action} failed: the store stayed locked by another process ({text})")
    return StoreError(f"{action} failed: {text}")


def _salvage(path: Path, reason: str) -> int:
    """Move a damaged store aside and copy every readable report into a fresh file.

    Never starts silently clean: the damaged file is kept beside the new one for forensics.
    """
    stamp = time.strftime("%Y%m%dT%H%M%S")
    damaged = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(damaged) + suffix))
    rows = _readable_rows(damaged)
    fresh = Store(path, _connect(path), SystemClock())
    try:
        fresh._migrate()
        names = [r["name"] for r in fresh._read("PRAGMA table_info(reports)")]
        rows += _rows_from_pages(damaged, names, {row["report_id"] for row in rows})
        with fresh._write() as conn:
            for row in rows:
                columns = [c for c in row if c in _REPORT_COLUMNS]
                conn.execute(
                    f"INSERT OR IGNORE INTO reports ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                    [row[c] for c in columns],
                )
    finally:
        fresh.close()
    log.error(
        "STORE DAMAGED (%s): moved to %s, salvaged %d readable reports into a fresh %s",
        reason,
        damaged,
        len(rows),
        path,
    )
    return len(rows)


_REPORT_COLUMNS = frozenset(
    (
        "report_id",
        "state",
        "priority",
        "category",
        "origin",
        "mesh_packet_id",
        "body",
        "copies",
        "stored_ts",
        "boot_id",
        "boot_stored",
        "sent_ts",
        "sent_boot",
        "delivered_ts",
        "rejected_ts",
        "reject_reason",
        "attempts",
        "receipt_post",
        "receipt_center",
        "center_ts",
    )
)


def _readable_rows(path: Path) -> list[dict[str, Any]]:
    """Every report row that can still be read, walking rowids so one bad page loses only its rows."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    conn.row_factory = sqlite3.Row
    out: list[dict[str, Any]] = []
    try:
        try:
            top = conn.execute("SELECT max(rowid) FROM reports").fetchone()[0] or 0
        except sqlite3.Error:
            top = 0
        rowid = 0
        while rowid < top:
            try:
                rows = conn.execute(
                    "SELECT rowid AS _rowid, * FROM reports WHERE rowid > ? ORDER BY rowid LIMIT 200", (rowid,)
                ).fetchall()
            except sqlite3.Error:
                # a bad page somewhere in this window: read the window row by row, skipping the bad ones
                rows = []
                for single in range(rowid + 1, min(rowid + 200, top) + 1):
                    try:
                        rows.extend(conn.execute("SELECT rowid AS _rowid, * FROM reports WHERE rowid = ?", (single,)))
                    except sqlite3.Error:
                        continue
                rowid = min(rowid + 200, top)
            if not rows and rowid >= top:
                break
            for row in rows:
                data = dict(row)
                rowid = max(rowid, data.pop("_rowid"))
                if _row_is_sound(data):
                    out.append(data)
            if not rows:
                rowid += 200
    finally:
        conn.close()
    return out


#: When the page scan finds several versions of one row (free pages keep old ones), the furthest along wins.
_STATE_RANK = {"pending": 0, "sent": 1, "delivered": 2, "rejected": 2}


def _rows_from_pages(path: Path, names: list[str], have: set[str]) -> list[dict[str, Any]]:
    """Report rows SQLite could not reach through the B-tree (a damaged interior page), from the raw pages."""
    best: dict[str, dict[str, Any]] = {}
    for values in table_leaf_records(path, len(names)):
        data = dict(zip(names, values, strict=True))
        rid = data.get("report_id")
        if not isinstance(rid, str) or rid in have or not _row_is_sound(data):
            continue
        known = best.get(rid)
        if known is None or _STATE_RANK[data["state"]] > _STATE_RANK[known["state"]]:
            best[rid] = data
    if best:
        log.warning("store salvage: %d reports recovered from pages the B-tree no longer reaches", len(best))
    return list(best.values())


def _report_of(body: str) -> Report:
    """The report in a stored body (a carried report's body also names its relay packet and hops)."""
    data = json.loads(body)
    if isinstance(data, dict):
        data.pop("relay", None)
    return Report.from_dict(data)


def _row_is_sound(data: dict[str, Any]) -> bool:
    try:
        _report_of(data["body"])
    except (InvalidReport, ValueError, TypeError, KeyError):
        return False
    return data.get("state") in STATES
