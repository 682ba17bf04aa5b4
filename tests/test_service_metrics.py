"""`siaga run` and `siaga center run` as systemd runs them: READY=1 on the notify socket, the opt-in
Prometheus endpoint on localhost, STOPPING=1 and exit 0 on SIGTERM.  Real processes, a real broker, the
post's radio a simulated device."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.harness.mosquitto import Mosquitto, free_port
from devkit.sim import SimulatedDevice
from tests.conftest import REPO


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[tuple[Path, socket.socket]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)
    yield path, sock
    sock.close()


def _start(config: Path, args: list[str], notify_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "NOTIFY_SOCKET": str(notify_path),
        "WATCHDOG_USEC": "2000000",
        "WATCHDOG_PID": "",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "--config", str(config), *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _messages_until(sock: socket.socket, wanted: bytes) -> list[bytes]:
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = sock.recv(4096)
        seen.append(message)
        if wanted in message:
            return seen
    raise AssertionError(f"{wanted!r} never came; saw {seen}")


def _documented_metric_types() -> dict[str, dict[str, str]]:
    """The table of docs/METRICS.md: process → name → counter | gauge (the docs and the code agree)."""
    out: dict[str, dict[str, str]] = {"post": {}, "center": {}}
    for line in (REPO / "docs" / "METRICS.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] in out and cells[2] in ("counter", "gauge"):
            out[cells[0]][cells[1].split("{")[0]] = cells[2]
    return out


METRIC_TYPES = _documented_metric_types()


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def _stop(proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    assert code == 0
    _messages_until(sock, b"STOPPING=1")


def test_post_daemon_notifies_pings_and_serves_metrics(
    tmp_path: Path,
    mosquitto: Mosquitto,
    notify: tuple[Path, socket.socket],
) -> None:
    notify_path, sock = notify
    port = free_port()
    with SimulatedDevice(listen=("127.0.0.1", 0), speed=20, seed=3) as device:
        config = tmp_path / "siaga.toml"
        config.write_text(
            f"""[node]
post_id = "oebubun"
data_dir = "{tmp_path / "data"}"

[radio.meshtastic]
host = "127.0.0.1:{device.port}"

[uplink.mqtt]
url = "{mosquitto.url}"

[metrics]
listen = "127.0.0.1:{port}"
"""
        )
        proc = _start(config, ["run"], notify_path)
        try:
            _messages_until(sock, b"READY=1")
            _messages_until(sock, b"WATCHDOG=1")  # healthy: pinged at half the 2 s interval
            device.inject_text("!a1b2c3d4", "KEBAKARAN lumbung padi")
            deadline = time.monotonic() + 20
            # with no center running the broker has it (sent) but nobody acknowledged it (not delivered)
            while 'siaga_post_queue{state="sent"} 1' not in (text := _metrics(port)):
                assert time.monotonic() < deadline, text
                time.sleep(0.2)
            assert "siaga_radio_connected 1" in text
            assert 'siaga_post_events_total{kind="reports.created"} 1' in text
            assert "siaga_post_oldest_pending_age_seconds" in text
            assert 'siaga_uplink_events_total{kind="published_reports"} 1' in text
            # monotonic counts are counters (rate() across restarts), levels are gauges: docs/METRICS.md
            assert len(METRIC_TYPES["post"]) == 6
            # taken by the broker, acknowledged by no center: the wait is measured (no center runs here)
            assert "siaga_uplink_no_center_ack_seconds " in text
            for name, kind in METRIC_TYPES["post"].items():
                assert f"# TYPE {name} {kind}" in text, name
        finally:
            _stop(proc, sock)


def test_center_notifies_and_serves_metrics(
    tmp_path: Path,
    mosquitto: Mosquitto,
    notify: tuple[Path, socket.socket],
) -> None:
    notify_path, sock = notify
    port = free_port()
    config = tmp_path / "center.toml"
    config.write_text(
        f"""[center]
db = "sqlite:///{tmp_path / "center.db"}"
http = "127.0.0.1:{free_port()}"

[center.mqtt]
url = "{mosquitto.url}"

[metrics]
listen = "127.0.0.1:{port}"
"""
    )
    proc = _start(config, ["center", "run"], notify_path)
    try:
        _messages_until(sock, b"READY=1")
        _messages_until(sock, b"WATCHDOG=1")
        text = _metrics(port)
        assert 'siaga_center_reports{kind="reports"} 0' in text
        assert "siaga_center_receiver_connected" in text
        assert 'siaga_center_receiver_events_total{kind="connects"} 1' in text
        assert len(METRIC_TYPES["center"]) == 4
        for name, kind in METRIC_TYPES["center"].items():
            if name != "siaga_center_rejections_total":  # absent until something is rejected
                assert f"# TYPE {name} {kind}" in text, name
    finally:
        _stop(proc, sock)
