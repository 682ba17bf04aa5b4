"""The systemd watchdog is pinged only while the post is healthy: a radio reader stuck behind a store
that cannot write stops the pings (systemd would restart the daemon), and they resume — with nothing
lost — once the store can write again.  Real parts throughout: a real notify socket, the real meshtastic
library against the simulated device, a real SQLite lock held by another connection."""

from __future__ import annotations

import dataclasses
import socket
import sqlite3
import time
from pathlib import Path

from siaga.sdnotify import Notifier, Watchdog
from tests.radio_rig import FAST, HANDSET, make_device, post_config, radio_of, reports, running_post, wait_until


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096))
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
    return out


def test_stuck_radio_reader_stops_the_pings(tmp_path: Path) -> None:
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    device = make_device(tmp_path, "tcp")
    device.start()
    tuning = dataclasses.replace(FAST, stuck_after_s=1.0)
    try:
        cfg = post_config(tmp_path, radio=radio_of(device, "tcp"), receipts=False)
        with running_post(cfg, tuning=tuning) as post:
            device.add_node(HANDSET, "Petugas Oebubun 01", "OB01")
            watchdog = Watchdog(Notifier({"NOTIFY_SOCKET": str(notify_path)}), post.health_checks, interval_s=0.6)
            watchdog.start()
            try:
                wait_until(lambda: b"WATCHDOG=1" in _drain(sock), 5, "a first watchdog ping while healthy")

                # another process holds the store's write lock: every put() waits, the reader stalls
                locker = sqlite3.connect(cfg.store_path, isolation_level=None, timeout=1)
                locker.execute("BEGIN EXCLUSIVE")
                try:
                    for i in range(3):
                        device.inject_text(HANDSET, f"KEBAKARAN gudang nomor {i}")
                    status = wait_until(
                        lambda: [m for m in _drain(sock) if m.startswith(b"STATUS=unhealthy")],
                        15,
                        "the watchdog to report the post unhealthy",
                    )
                    assert b"radio" in status[0] or b"store" in status[0], status
                    time.sleep(1.5)  # more than two ping periods
                    assert b"WATCHDOG=1" not in _drain(sock), "pinged while the radio reader was stuck"
                finally:
                    locker.execute("ROLLBACK")
                    locker.close()

                wait_until(lambda: b"WATCHDOG=1" in b"".join(_drain(sock)), 30, "pings to resume once healthy")
                texts = wait_until(
                    lambda: len(reports(post)) == 3 and sorted(r.report.text_raw for r in reports(post)),
                    30,
                    "all three reports stored after the stall",
                )
                assert texts == [f"KEBAKARAN gudang nomor {i}" for i in range(3)]
            finally:
                watchdog.stop()
    finally:
        device.stop()
        sock.close()
