"""A real Mosquitto broker per test: generated config in tmp_path, a free port, kill/restart helpers.

Used by the sync tests and by bench/.  ``mosquitto`` must be installed (install.sh --dev installs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int, timeout: float = 10.0, host: str = "127.0.0.1", alive: Callable[[], bool] = lambda: True
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")


class Mosquitto:
    """One broker process.  ``extra`` is appended to the generated config (listeners, TLS, ACL...)."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        extra: str = "",
        persistence: bool = True,
        config: str | None = None,
    ) -> None:
        """``config``: the whole configuration text instead of the generated one (it must listen on ``port``)."""
        self.directory = directory
        self.config = config
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = extra
        self.persistence = persistence
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "mosquitto.log"
        self.conf_path = directory / "mosquitto.conf"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        # run as root (a container), mosquitto would drop to user "mosquitto", who cannot read tmp_path
        as_root = "\nuser root\n" if os.geteuid() == 0 else "\n"
        if self.config is not None:
            self.conf_path.write_text(self.config + as_root, encoding="utf-8")
            return
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.directory}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
        ]
        if self.extra:
            lines.append(self.extra)
        self.conf_path.write_text("\n".join(lines) + as_root, encoding="utf-8")

    def start(self, timeout: float = 10.0) -> Mosquitto:
        assert self.proc is None, "already running"
        self.write_config()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the process, closed in stop()
        try:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf_path)], stdout=log, stderr=log)
        finally:
            log.close()
        self.starts += 1
        try:
            wait_port(self.port, timeout, alive=lambda: self.proc is not None and self.proc.poll() is None)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start; log:\n{self.log()}") from None
        return self

    def stop(self, *, kill: bool = False, timeout: float = 5.0) -> None:
        """Stop the broker: SIGKILL (a crash, nothing saved) or SIGTERM (clean, persistence saved)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        self.stop(kill=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""
