"""The center staff's own tables — accounts, sessions, triage overlay, incidents, assignments, notes, edits
and the audit log — in the receiver's database, through :mod:`center.storage`'s connection.

The tables are one more migration in :mod:`center.schema` (same SQL on SQLite and PostgreSQL), so they
are created by the same mechanism, in the same database, and staff actions commit in the same transaction
as the report's ``status``/``incident_id`` columns that the receiver's tables carry.  Times
follow storage's convention: UTC epoch seconds in ``*_ts`` columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from center.storage import CenterStorage


class StaffDB:
    """Rows as dicts with ``?`` placeholders; :meth:`atomic` groups statements into one transaction
    (nested calls join it: :meth:`CenterStorage.transaction` is re-entrant) on the receiver's storage."""

    def __init__(self, storage: CenterStorage) -> None:
        self.storage = storage
        self.dialect = storage.dialect

    @contextmanager
    def atomic(self) -> Iterator[StaffDB]:
        with self.storage.transaction():
            yield self

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self.storage.query(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.storage.execute(sql, params)

    def insert(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.execute(sql, params)
