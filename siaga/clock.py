"""Time at a post without RTC: the wall clock may be wrong by years, the boot clock never is.

A Raspberry Pi has no battery-backed clock: after a power cut it starts at the last saved time (or 1970)
until NTP or GPS corrects it, which may be never.  So besides the wall-clock time every stored report
keeps the kernel's boot id and CLOCK_BOOTTIME reading (which keeps counting through suspend).  While the
post has not rebooted, ``age = boottime_now - boottime_stored`` is exact, and the center, whose clock is
right, computes the true time as ``received_at - age`` (see docs/PROTOCOL.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

_BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
# Before this the post's wall clock is certainly not set (the project did not exist yet).
_EARLIEST_PLAUSIBLE = datetime(2025, 1, 1, tzinfo=UTC)


class Clock(Protocol):
    def now(self) -> datetime: ...

    def boottime(self) -> float: ...

    def boot_id(self) -> str: ...

    def source(self) -> str: ...


@dataclass
class SystemClock:
    """The real clocks of this machine."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def boottime(self) -> float:
        return time.clock_gettime(time.CLOCK_BOOTTIME)

    def boot_id(self) -> str:
        return _boot_id()

    def source(self) -> str:
        """``ntp`` when the kernel says the clock is synchronised, else ``unsynced``."""
        if self.now() < _EARLIEST_PLAUSIBLE:
            return "unsynced"
        return "ntp" if _kernel_clock_synced() else "unsynced"


@dataclass
class OffsetClock(SystemClock):
    """A wall clock off by ``offset_s`` (for tests and the demo's post with a wrong clock)."""

    offset_s: float = 0.0

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self.offset_s, UTC)

    def source(self) -> str:
        return "unsynced" if self.offset_s else super().source()


@functools.cache
def _boot_id() -> str:
    # fixed for the life of the process (a reboot ends it); read once, not per report drained
    try:
        return _BOOT_ID_FILE.read_text().strip()
    except OSError:
        return "unknown"


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>: only the first fields matter, the rest is padding
    _fields_ = [("modes", ctypes.c_uint), ("rest", ctypes.c_byte * 256)]


def _kernel_clock_synced() -> bool:
    """adjtimex() returns TIME_ERROR (5) while the kernel clock is not synchronised."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        state = libc.adjtimex(ctypes.byref(_Timex()))
    except (OSError, AttributeError):
        return False
    return bool(0 <= state < 5)
