"""Our own airtime budget: what the relay sends, counted with the Semtech formula in a sliding hour.

SG_923 has no duty-cycle limit (../shared/RELAY.md), so nothing but this keeps a busy post from taking the
village's channel.  Above the cap only custody acks go out: a CACK is what lets a neighbour forget a report,
and withholding it would make that neighbour send the report again — more airtime, not less.
"""

from __future__ import annotations

from collections import deque

from siaga.airtime import LONG_FAST, MESH_HEADER_BYTES, PKI_OVERHEAD_BYTES, Modem, time_on_air_ms

WINDOW_S = 3600.0


def data_overhead(payload_len: int) -> int:
    """Bytes ``Data`` wraps a port-300 payload in: portnum (tag + 2-byte varint), payload (tag + length:
    one byte below 128, two from 128), bitfield (tag + 1) — as sync/compact.py counts them."""
    return 3 + 1 + (1 if payload_len < 128 else 2) + 2


def airtime_ms(payload_len: int, *, pki: bool, modem: Modem = LONG_FAST) -> float:
    """Time on air of one port-300 packet with ``payload_len`` bytes of ours (a DM is PKI-encrypted)."""
    frame = MESH_HEADER_BYTES + payload_len + data_overhead(payload_len) + (PKI_OVERHEAD_BYTES if pki else 0)
    return time_on_air_ms(frame, modem)


class AirtimeBudget:
    """Milliseconds sent in the last hour against ``cap`` (a share of the hour).  Not thread-safe: the
    engine's thread owns it."""

    def __init__(self, cap: float, *, window_s: float = WINDOW_S) -> None:
        self.cap = cap
        self.window_s = window_s
        self._sent: deque[tuple[float, float]] = deque()
        self._total_ms = 0.0
        self.spent_ms_all = 0.0

    def _trim(self, now: float) -> None:
        while self._sent and self._sent[0][0] <= now - self.window_s:
            self._total_ms -= self._sent.popleft()[1]

    def used_ms(self, now: float) -> float:
        self._trim(now)
        return max(self._total_ms, 0.0)

    def share(self, now: float) -> float:
        return self.used_ms(now) / (self.window_s * 1000.0)

    def allows(self, now: float, ms: float) -> bool:
        """Would sending ``ms`` more keep us under the cap?"""
        return self.used_ms(now) + ms <= self.cap * self.window_s * 1000.0

    def next_room_at(self, now: float, ms: float) -> float:
        """When enough of the window will have slid out for ``ms`` more (``now`` if already)."""
        self._trim(now)
        limit = self.cap * self.window_s * 1000.0
        excess = self._total_ms + ms - limit
        if excess <= 0:
            return now
        for at, spent in self._sent:
            excess -= spent
            if excess <= 0:
                return at + self.window_s
        return now + self.window_s

    def spend(self, now: float, ms: float) -> None:
        self._trim(now)
        self._sent.append((now, ms))
        self._total_ms += ms
        self.spent_ms_all += ms
