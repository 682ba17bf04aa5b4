"""Fakes at our own boundaries (never deep patches): an injectable clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass
class FakeClock:
    """A wall clock and a boot clock that move only when told to; ``reboot()`` changes the boot id."""

    wall: datetime = field(default_factory=lambda: datetime(2026, 11, 28, 6, 0, tzinfo=UTC))
    boot: float = 1000.0
    boot_number: int = 1
    clock_source: str = "ntp"

    def now(self) -> datetime:
        return self.wall

    def boottime(self) -> float:
        return self.boot

    def boot_id(self) -> str:
        return f"boot-{self.boot_number}"

    def source(self) -> str:
        return self.clock_source

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.boot += seconds

    def reboot(self, wall_jump_s: float = 0.0) -> None:
        self.boot_number += 1
        self.boot = 5.0
        self.wall += timedelta(seconds=wall_jump_s)
