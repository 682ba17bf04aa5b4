"""What the uplink needs of the post's durable queue, as a Protocol: ``sync/`` does not import the post.

The post's :class:`edge.store.Store` is the implementation (the daemon hands it to the uplink); the drain's
rules — claim → publish → PUBACK ``mark_sent`` → the center's ack ``ack`` → delivered, and ``release`` of
what did not go out — are documented there and in docs/RELIABILITY.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol


class QueuedReport(Protocol):
    """A claimed report as the uplink sends it: its stored JSON as it is, and when it was stored."""

    @property
    def report_id(self) -> str: ...

    @property
    def body(self) -> str: ...

    @property
    def stored_ts(self) -> float: ...

    @property
    def boot_id(self) -> str: ...

    @property
    def boot_stored(self) -> float: ...


class ReportQueue(Protocol):
    """The post's durable queue, as the uplink drains it."""

    def claim(self, limit: int) -> Sequence[QueuedReport]: ...

    def mark_sent(self, report_ids: Iterable[str]) -> int: ...

    def ack(
        self, report_ids: Iterable[str], *, sent: Iterable[str] = (), committed_at: datetime | None = None
    ) -> list[str]: ...

    def reject(self, report_id: str, reason: str) -> bool: ...

    def release(self, report_ids: Iterable[str]) -> int: ...

    def release_stale(self, claim_timeout_s: float, sent_timeout_s: float) -> tuple[int, int]: ...

    def release_all_claims(self) -> int: ...

    def retention(self, days: float) -> int: ...

    def age_s(self, boot_id: str, boot_stored: float, stored_ts: float) -> float: ...

    def counts(self) -> dict[str, int]: ...

    def oldest_pending_age_s(self) -> float | None: ...

    def meta_get(self, key: str) -> str | None: ...

    def meta_set(self, key: str, value: str) -> None: ...

    def meta_items(self, prefix: str) -> list[tuple[str, str]]:
        """Every (key, value) whose key starts with ``prefix``, oldest written first."""
        ...

    def meta_delete(self, key: str) -> None: ...

    def meta_prune(self, prefix: str, keep: int) -> int:
        """Delete all but the ``keep`` most recently written keys starting with ``prefix``."""
        ...

    def bump_boot_counter(self) -> int: ...
