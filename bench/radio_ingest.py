"""Radio ingest latency: a packet leaves the simulated device → the report is committed in SQLite.

Run: .venv/bin/python bench/radio_ingest.py [--count 500] [--rate 50] [--dir /var/tmp]

Three pipelines get the same burst (``--count`` texts at ``--rate`` per second, over TCP, the real
meshtastic library reading them):

* ``library only``   — a pubsub listener that only notes the time: the floor (simulator + socket +
  the library's reader, which reads one byte per recv(), and its publishing thread);
* ``naive``          — what a first script does: the listener itself opens SQLite (WAL,
  synchronous=FULL), inserts the packet, commits and closes, on the library's publishing thread;
* ``siaga``          — edge.daemon.Post: the listener queues the dict, the ``radio-in`` thread builds a
  classified Report (Intake, node table, path) and ``Store.put`` commits it (dedup, WAL, FULL).

t0 is taken just before the device is told to send; t1 just after the commit returned (``Post.stored_hook``
for siaga).  Receipts are off so that only ingest is measured (with receipts on, sends are paced at one
per ``min_send_interval_s`` on another thread and do not touch the ingest path).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meshtastic.tcp_interface import TCPInterface  # noqa: E402
from pubsub import pub  # noqa: E402

from devkit.sim import SimulatedDevice  # noqa: E402
from edge.daemon import Post  # noqa: E402
from siaga import config as config_mod  # noqa: E402

HANDSET = "!a1b2c3d4"
TEXTS = [
    "KEBAKARAN rumah warga di RT 03",
    "BANJIR jalan ke desa putus",
    "DARURAT MEDIS ibu melahirkan perlu ambulans",
    "kecelakaan motor 2 orang luka berat",
    "LONGSOR tutup jalan Oebubun",
]


class Timings:
    def __init__(self) -> None:
        self.t0: dict[int, float] = {}
        self.t1: dict[int, float] = {}
        self.done = threading.Event()
        self.expected = 0
        self.lock = threading.Lock()

    def stop_clock(self, packet_id: int) -> None:
        now = time.perf_counter()
        with self.lock:
            self.t1.setdefault(packet_id, now)
            if len(self.t1) >= self.expected:
                self.done.set()

    def latencies_ms(self) -> list[float]:
        return [(self.t1[k] - self.t0[k]) * 1000 for k in self.t0 if k in self.t1]


def burst(device: SimulatedDevice, timings: Timings, count: int, rate: float) -> float:
    timings.expected = count
    interval = 1.0 / rate
    start = time.perf_counter()
    for n in range(count):
        target = start + n * interval
        while (now := time.perf_counter()) < target:
            time.sleep(min(0.002, target - now))
        packet_id = 0x10000000 + n
        timings.t0[packet_id] = time.perf_counter()
        device.inject_text(HANDSET, f"{TEXTS[n % len(TEXTS)]} #{n}", id=packet_id, hops=1)
    timings.done.wait(60 + count / rate)
    return time.perf_counter() - start


def run_library(device: SimulatedDevice, workdir: Path, count: int, rate: float, naive: bool) -> Timings:
    timings = Timings()
    db_path = workdir / "naive.db"

    def on_text(packet: dict[str, Any], interface: Any) -> None:
        packet_id = packet.get("id", 0)
        if packet_id not in timings.t0:
            return
        if naive:
            conn = sqlite3.connect(db_path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS reports (id INTEGER, origin TEXT, text TEXT, ts REAL, UNIQUE(origin, id))"
            )
            conn.execute(
                "INSERT OR IGNORE INTO reports VALUES (?, ?, ?, ?)",
                (
                    packet_id,
                    packet.get("fromId") or str(packet.get("from")),
                    packet["decoded"].get("text"),
                    time.time(),
                ),
            )
            conn.commit()
            conn.close()
        timings.stop_clock(packet_id)

    listener: Callable[..., None] = on_text  # strong reference: pypubsub holds listeners weakly
    pub.subscribe(listener, "meshtastic.receive.text")
    iface = TCPInterface("127.0.0.1", portNumber=device.port)
    try:
        burst(device, timings, count, rate)
    finally:
        iface.close()
        pub.unsubscribe(listener, "meshtastic.receive.text")
    return timings


def run_siaga(device: SimulatedDevice, workdir: Path, count: int, rate: float) -> Timings:
    timings = Timings()
    cfg = config_mod.from_dict(
        {
            "node": {
                "post_id": "bench",
                "name": "Bench",
                "data_dir": str(workdir / "siaga"),
                "lat": -9.38,
                "lon": 124.35,
            },
            "radio": {"meshtastic": {"host": f"127.0.0.1:{device.port}", "receipts": False}},
            "handsets": [{"id": HANDSET, "officer": "Bench"}],
        }
    )
    post = Post(cfg, with_uplink=False)
    post.stored_hook = lambda result, report: timings.stop_clock(report.mesh_packet_id or 0)
    post.start()
    try:
        assert post.radio is not None and post.radio.wait_connected(20)
        burst(device, timings, count, rate)
        assert post.store is not None
        stored = post.store.counts()["pending"]
        if stored != count:
            print(f"  !! siaga stored {stored} of {count}", file=sys.stderr)
    finally:
        post.stop()
    return timings


def stats(name: str, timings: Timings, count: int) -> dict[str, Any]:
    lat = sorted(timings.latencies_ms())
    row: dict[str, Any] = {"pipeline": name, "count": count, "committed": len(lat)}
    if lat:
        q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [lat[0]] * 99
        row.update(p50_ms=round(q[49], 2), p99_ms=round(q[98], 2), max_ms=round(lat[-1], 2))
    else:
        row.update(p50_ms=None, p99_ms=None, max_ms=None)
    return row


def measure(count: int = 500, rate: float = 50.0, workdir: str | None = None) -> dict[str, Any]:
    """The three pipelines on the same burst; one row each (latency in ms from injection to commit)."""
    base = Path(tempfile.mkdtemp(prefix="siaga-bench-", dir=workdir))
    rows = []
    try:
        for name in ("library only", "naive", "siaga"):
            with SimulatedDevice(listen=("127.0.0.1", 0), speed=1000, seed=1, offline_queue=2000) as device:
                device.add_node(HANDSET, "Bench Handset", "BNCH", announce=False)
                if name == "siaga":
                    timings = run_siaga(device, base, count, rate)
                else:
                    timings = run_library(device, base, count, rate, naive=name == "naive")
            rows.append(stats(name, timings, count))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"count": count, "rate": rate, "pipelines": rows}


def row_text(r: dict[str, Any]) -> str:
    if not r["committed"]:
        return f"| {r['pipeline']} | 0/{r['count']} | - | - | - |"
    done = f"{r['committed']}/{r['count']}"
    return f"| {r['pipeline']} | {done} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="packets per burst (default 500)")
    parser.add_argument("--rate", type=float, default=50.0, help="packets per second (default 50)")
    parser.add_argument("--dir", default=None, help="directory for the SQLite files (default: a temp dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    res = measure(args.count, args.rate, args.dir)
    print(
        f"radio ingest: {args.count} texts at {args.rate:g}/s over TCP, SQLite in {args.dir or tempfile.gettempdir()}"
    )
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print("| pipeline | committed | p50 ms | p99 ms | max ms |")
    print("| --- | --- | --- | --- | --- |")
    for row in res["pipelines"]:
        print(row_text(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
