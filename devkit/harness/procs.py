"""``siaga run`` as a real process, for the chaos tests and the footprint bench: its log in a file, the
environment of a service (no inherited config path, no systemd variables unless given)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def spawn_siaga_run(config: Path, log: Path, *, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``siaga run`` on ``config``, appending stdout and stderr to ``log``; ``env`` adds variables."""
    full = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in ("SIAGA_CONFIG", "RUNTIME_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
        full.pop(key, None)
    full.update(env or {})
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "--config", str(config), "run"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=full,
        )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
