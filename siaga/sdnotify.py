"""systemd's notify protocol (sd_notify(3)) without libsystemd: READY, STATUS, STOPPING, WATCHDOG.

The watchdog is pinged only while every health check passes: a radio reader that stopped reading, a
store that cannot write or a sync loop that hangs makes the pings stop, and systemd restarts the daemon
after WatchdogSec.  Outside systemd (no $NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Mapping[str, bool]]


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self._address: str | None = None
        if address.startswith("@"):
            self._address = "\0" + address[1:]  # abstract namespace socket
        elif address.startswith("/"):
            self._address = address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_interval_s: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval_s = int(usec) / 1_000_000

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        if self._address is None:
            return False
        message = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self._address)
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")


class Watchdog:
    """Pings the systemd watchdog at half its interval, but only while ``check()`` says all is healthy."""

    def __init__(self, notifier: Notifier, check: HealthCheck, *, interval_s: float | None = None) -> None:
        self._notifier = notifier
        self._check = check
        base = interval_s if interval_s is not None else notifier.watchdog_interval_s
        self.period_s = base / 2 if base else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_unhealthy: list[str] = []

    def start(self) -> None:
        if self.period_s is None or not self._notifier.enabled:
            return
        self._thread = threading.Thread(target=self._run, name="siaga-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def tick(self) -> bool:
        """One check-and-ping; True when it pinged."""
        try:
            results = dict(self._check())
        except Exception:
            log.exception("health check failed")
            results = {"health_check": False}
        unhealthy = sorted(name for name, ok in results.items() if not ok)
        if unhealthy:
            if unhealthy != self.last_unhealthy:
                log.error("unhealthy: %s; not pinging the watchdog", ", ".join(unhealthy))
                self._notifier.status("unhealthy: " + ", ".join(unhealthy))
            self.last_unhealthy = unhealthy
            return False
        if self.last_unhealthy:
            log.info("healthy again")
            self._notifier.status("running")
        self.last_unhealthy = []
        return self._notifier.watchdog()

    def _run(self) -> None:
        assert self.period_s is not None
        while not self._stop.wait(self.period_s):
            self.tick()
