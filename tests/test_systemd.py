"""systemd integration: the units verify, the notify protocol speaks to a real socket, the watchdog is
pinged only while healthy, the udev rule names the radio chips."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from siaga.metrics import MetricsServer, Registry
from siaga.sdnotify import Notifier, Watchdog
from tests.conftest import REPO

UNITS = ("siaga.service", "siaga-center.service")


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify(unit: str, tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze is needed (Debian package systemd)"
    siaga = Path(sys.executable).with_name("siaga")
    assert siaga.exists(), "the package must be installed in the venv (./install.sh --dev)"
    text = (REPO / "systemd" / unit).read_text().replace("/opt/siaga/bin/siaga", str(siaga))
    path = tmp_path / unit
    path.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "siaga" not in result.stderr, result.stderr  # no warnings about our unit


@pytest.mark.parametrize("unit", UNITS)
def test_units_carry_the_required_settings(unit: str) -> None:
    text = (REPO / "systemd" / unit).read_text()
    for setting in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
        "User=siaga",
        "StateDirectory=siaga",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
    ):
        assert re.search(rf"^{re.escape(setting)}", text, flags=re.M), f"{unit} lacks {setting}"
    if unit == "siaga.service":
        assert "DeviceAllow=/dev/meshtastic rw" in text
        assert "AF_NETLINK" in text  # the uplink watches route changes


def test_udev_rule_names_the_common_chips() -> None:
    text = (REPO / "systemd" / "99-meshtastic.rules").read_text()
    for vendor, product in (("10c4", "ea60"), ("1a86", "7523"), ("1a86", "55d4")):
        assert re.search(rf'idVendor}}=="{vendor}", ATTRS{{idProduct}}=="{product}".*SYMLINK\+="meshtastic"', text)
    assert 'ATTRS{idVendor}=="239a"' in text  # nRF52 native USB


@pytest.fixture
def notify_socket(tmp_path: Path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_notifier_speaks_the_protocol(notify_socket) -> None:
    path, sock = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000"})
    assert notifier.watchdog_interval_s == 4.0
    assert notifier.ready("radio connected")
    assert sock.recv(1024) == b"READY=1\nSTATUS=radio connected"
    assert notifier.watchdog()
    assert sock.recv(1024) == b"WATCHDOG=1"


def test_no_socket_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and not notifier.ready() and notifier.watchdog_interval_s is None


def test_watchdog_pings_only_while_healthy(notify_socket) -> None:
    path, sock = notify_socket
    health = {"radio_reader": True, "store": True, "sync": True}
    watchdog = Watchdog(Notifier({"NOTIFY_SOCKET": str(path)}), lambda: health, interval_s=2)
    assert watchdog.tick()
    assert sock.recv(1024) == b"WATCHDOG=1"
    health["radio_reader"] = False
    assert not watchdog.tick()
    assert sock.recv(1024) == b"STATUS=unhealthy: radio_reader"
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(1024)  # no WATCHDOG=1 was sent while unhealthy
    sock.setblocking(True)
    health["radio_reader"] = True
    assert watchdog.tick()
    assert sock.recv(1024) == b"STATUS=running"
    assert sock.recv(1024) == b"WATCHDOG=1"


def test_metrics_endpoint_renders_prometheus_text() -> None:
    registry = Registry()
    registry.counter("radio_packets", "Radio packets by kind", lambda: {"text": 1, "position": 2}, label="kind")
    registry.gauge("queue_reports", "Reports by state", lambda: {"pending": 3.0}, label="state")
    registry.gauge("oldest_pending_age_seconds", "Oldest pending", lambda: 12.5)
    registry.gauge("absent_when_none", "Absent", lambda: None)
    server = MetricsServer(registry, "127.0.0.1:0")
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            body = response.read().decode()
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    finally:
        server.stop()
    # counts are counters (rate() survives a restart), levels gauges
    assert "# TYPE siaga_radio_packets_total counter" in body
    assert 'siaga_radio_packets_total{kind="position"} 2.0' in body
    assert "# TYPE siaga_queue_reports gauge" in body
    assert 'siaga_queue_reports{state="pending"} 3.0' in body
    assert "siaga_oldest_pending_age_seconds 12.5" in body
    assert "siaga_absent_when_none " not in body
