"""The center staff's own tables — accounts, sessions, triage overlay, incidents, assignments, notes, edits
and the audit log — in the receiver's database, through :mod:`center.storage`'s connection.

The tables are added as one more :class:`center.storage.Migration` (same SQL on SQLite and PostgreSQL),
so they are created by the same mechanism, in the same database, and staff actions commit in the same
transaction as the report's ``status``/``incident_id`` columns that the receiver's tables carry.  Times
follow storage's convention: UTC epoch seconds in ``*_ts`` columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from center import storage as storage_mod
from center.storage import CenterStorage, Migration

_STAFF_SQL = """
CREATE TABLE staff_users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_ts DOUBLE PRECISION NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE staff_sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES staff_users (username),
    csrf TEXT NOT NULL,
    created_ts DOUBLE PRECISION NOT NULL,
    expires_ts DOUBLE PRECISION NOT NULL,
    last_seen_ts DOUBLE PRECISION NOT NULL
);
CREATE TABLE triage (
    report_id TEXT PRIMARY KEY REFERENCES reports (report_id),
    acknowledged_ts DOUBLE PRECISION,
    acknowledged_by TEXT,
    corrections TEXT NOT NULL DEFAULT '{}',
    updated_ts DOUBLE PRECISION NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE TABLE incidents (
    incident_id TEXT PRIMARY KEY,
    primary_report_id TEXT NOT NULL,
    created_ts DOUBLE PRECISION NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE assignments (
    id {serial},
    report_id TEXT NOT NULL,
    agency TEXT NOT NULL,
    dispatched_ts DOUBLE PRECISION NOT NULL,
    assigned_by TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX assignments_report ON assignments (report_id);
CREATE TABLE notes (
    id {serial},
    report_id TEXT NOT NULL,
    at_ts DOUBLE PRECISION NOT NULL,
    username TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX notes_report ON notes (report_id);
CREATE TABLE edits (
    id {serial},
    report_id TEXT NOT NULL,
    at_ts DOUBLE PRECISION NOT NULL,
    username TEXT NOT NULL,
    field TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT
);
CREATE INDEX edits_report ON edits (report_id);
CREATE TABLE audit (
    id {serial},
    at_ts DOUBLE PRECISION NOT NULL,
    username TEXT NOT NULL,
    action TEXT NOT NULL,
    report_id TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_report ON audit (report_id)
"""

STAFF_MIGRATION = Migration(
    "s001_staff",
    _STAFF_SQL.replace("{serial}", "INTEGER PRIMARY KEY AUTOINCREMENT"),
    _STAFF_SQL.replace("{serial}", "BIGSERIAL PRIMARY KEY"),
)


def register_migrations() -> None:
    """Add the staff tables to storage's migration list (idempotent)."""
    if all(m.name != STAFF_MIGRATION.name for m in storage_mod.MIGRATIONS):
        storage_mod.MIGRATIONS.append(STAFF_MIGRATION)


register_migrations()


class StaffDB:
    """Rows as dicts with ``?`` placeholders; :meth:`atomic` groups statements into one transaction
    (nested calls join it) on the receiver's storage connection."""

    def __init__(self, storage: CenterStorage) -> None:
        self.storage = storage
        self.dialect = storage.dialect
        self._depth = 0
        register_migrations()
        storage.migrate()

    @contextmanager
    def atomic(self) -> Iterator[StaffDB]:
        # storage's lock is re-entrant: the depth counter is only touched while it is held
        with self.storage._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            with self.storage.transaction():
                self._depth = 1
                try:
                    yield self
                finally:
                    self._depth = 0

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.atomic():
            return self.storage._rows(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.atomic():
            return int(self.storage._run(sql, params).rowcount or 0)

    def insert(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.execute(sql, params)
