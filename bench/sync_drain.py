"""Sync benchmarks: drain throughput side by side, the same over an emulated slow link, and recovery time.

Run: .venv/bin/python bench/sync_drain.py [--n 10000] [--slow-n 1000] [--naive-n 1000] [--skip-slow]

Every run starts its own Mosquitto on a free port (devkit/harness/mosquitto.py), a center in its own process (as on
its own machine: devkit/harness/center_proc.py, CenterService with SQLite, synchronous=FULL) and a post store in a
temporary directory, and queues the same reports first.

1. Drain of N queued reports on loopback, "reports/s acknowledged":
   (a) ours: sync.uplink.Uplink — claim, batches ≤ 16 KiB, 20 batches in flight, delivered on the center's ack;
   (b) naive: one report per message, publish, wait for the center's ack, mark delivered, next (stop-and-wait,
       through the same broker and the same center);
   (c) raw paho (through sync.mqtt, nothing else): the same report JSON, one per message, QoS 1 with the same
       20-message window, no store, no center — counted at PUBACK (the per-message upper reference).
2. The same through devkit.linkproxy at ~64 kbit/s each way and 300 ms one way (≈ 600 ms RTT), with a 5 s
   silent cut in the middle of ours: reports/s and bytes on the wire per report (MQTT bytes through the
   proxy, both directions; TCP/IP headers not counted).
3. Recovery: the broker is killed, stays down D seconds, comes back; time from "listening again" to the first
   center ack at the post.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devkit.harness.mosquitto import Mosquitto  # noqa: E402
from devkit.harness.synctools import Post, make_reports, post_config, wait_for  # noqa: E402
from devkit.linkproxy import LinkProxy  # noqa: E402
from edge.store import Store  # noqa: E402
from siaga.config import TlsMqttConfig  # noqa: E402
from siaga.report import utcnow  # noqa: E402
from sync import protocol  # noqa: E402
from sync.mqtt import BrokerAddress, Message, MqttLink  # noqa: E402


# ---------------------------------------------------------------------------- (a) ours
def run_ours(
    base: Path,
    broker_url: str,
    n: int,
    *,
    post_id: str,
    compress: bool = False,
    cut: LinkProxy | None = None,
    timeout: float = 900,
) -> dict[str, float]:
    post = Post(post_config(base, [broker_url], post_id=post_id, compress=compress, ack_timeout_s=300, keepalive_s=10))
    post.put(make_reports(n, post_id=post_id))
    t0 = time.monotonic()
    post.start()
    try:
        if cut is not None:
            wait_for(lambda: post.store.counts()["delivered"] >= n // 3, timeout)
            cut.cut()
            time.sleep(5)
            cut.restore()
        ok = post.wait_delivered(n, timeout)
        elapsed = time.monotonic() - t0
        assert ok, post.store.counts()
        return {
            "n": n,
            "s": elapsed,
            "rps": n / elapsed,
            "batches": post.uplink.counters["published_batches"],
            "reconnects": post.uplink.counters["connects"] - 1,
        }
    finally:
        post.stop()


# ---------------------------------------------------------------------------- (b) naive stop-and-wait
class _Waiter:
    def __init__(self) -> None:
        self.acked: set[str] = set()
        self.pubacks: set[int] = set()
        self.cv = threading.Condition()

    def on_message(self, link: MqttLink, message: Message) -> None:
        ack = protocol.decode_ack(message.payload)
        with self.cv:
            self.acked.update(ack.ids)
            self.cv.notify_all()

    def on_published(self, link: MqttLink, mid: int, ok: bool, reason: str) -> None:
        with self.cv:
            self.pubacks.add(mid)
            self.cv.notify_all()

    def on_disconnected(self, link: MqttLink, reason: str) -> None:
        pass


def run_naive(base: Path, broker_url: str, n: int, *, post_id: str) -> dict[str, float]:
    cfg = post_config(base, [broker_url], post_id=post_id)
    store = Store.open(cfg.store_path)
    for r in make_reports(n, post_id=post_id):
        store.put(r)
    waiter = _Waiter()
    link = MqttLink(
        TlsMqttConfig(urls=(broker_url,)),
        BrokerAddress.parse(broker_url),
        client_id="naive-post",
        handler=waiter,
        session_expiry_s=0,
    )
    link.open(10)
    link.subscribe([(protocol.topic("ttu", post_id, "ack"), 1)])
    topic = protocol.topic("ttu", post_id, "report")
    t0 = time.monotonic()
    done = 0
    try:
        while True:
            claimed = store.claim(1)
            if not claimed:
                break
            sr = claimed[0]
            wire = protocol.WireReport(sr.report, store.age_s(sr.boot_id, sr.boot_stored, sr.stored_ts), "boot")
            [batch] = protocol.encode_report_batches(post_id, [wire], sent_at=utcnow(), max_bytes=65536)
            link.publish(topic, batch.payload, qos=1)
            with waiter.cv:
                assert waiter.cv.wait_for(functools.partial(waiter.acked.__contains__, sr.report_id), 60)
            store.ack([sr.report_id])
            done += 1
        elapsed = time.monotonic() - t0
        return {"n": done, "s": elapsed, "rps": done / elapsed, "batches": done}
    finally:
        link.close()
        store.close()


# ---------------------------------------------------------------------------- (c) raw pipelined QoS 1
def run_raw(broker_url: str, n: int, window: int = 20) -> dict[str, float]:
    payloads = [
        protocol.encode_report_batches(
            "rawpost", [protocol.WireReport(r, 1.0, "boot")], sent_at=utcnow(), max_bytes=65536
        )[0].payload
        for r in make_reports(n, post_id="rawpost")
    ]
    waiter = _Waiter()
    link = MqttLink(
        TlsMqttConfig(urls=(broker_url,)),
        BrokerAddress.parse(broker_url),
        client_id="raw-post",
        handler=waiter,
        session_expiry_s=0,
        max_inflight=window,
    )
    link.open(10)
    topic = protocol.topic("ttu", "rawpost", "report")  # the center drops rawpost's (post_id mismatch): no store
    t0 = time.monotonic()
    try:
        for p in payloads:
            link.publish(topic, p, qos=1)
        with waiter.cv:
            assert waiter.cv.wait_for(lambda: len(waiter.pubacks) >= n, 300)
        elapsed = time.monotonic() - t0
        return {"n": n, "s": elapsed, "rps": n / elapsed, "batches": n}
    finally:
        link.close()


# ---------------------------------------------------------------------------- recovery
def start_center(db_url: str, broker_url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "devkit.harness.center_proc", db_url, broker_url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
    return proc


def stop_center(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def run_recovery(base: Path, down_s: float) -> float:
    broker = Mosquitto(base / "broker").start()
    center = start_center(f"sqlite:///{base}/center.db", broker.url)
    post = Post(post_config(base / "post", [broker.url], ack_timeout_s=300))
    try:
        post.start()
        wait_for(lambda: post.uplink.state()["connected"], 10)
        broker.kill()
        wait_for(lambda: not post.uplink.state()["connected"], 10)
        post.put(make_reports(50))
        time.sleep(down_s)
        broker.start()
        t0 = time.monotonic()
        assert post.events.wait(lambda: bool(post.events.delivered), 60)
        return time.monotonic() - t0
    finally:
        post.stop()
        stop_center(center)
        broker.stop(kill=True)


def fmt(name: str, r: dict[str, float], wire: float | None = None) -> str:
    extra = f"  {wire:7.0f} B/report on the wire" if wire is not None else ""
    return f"  {name:<44} {r['n']:>6} reports {r['s']:8.2f} s {r['rps']:9.1f} reports/s  ({r['batches']} msgs){extra}"


def measure(
    n: int = 10_000,
    naive_n: int = 2000,
    slow_n: int = 1000,
    slow_naive_n: int = 30,
    *,
    skip_slow: bool = False,
    recovery: tuple[float, ...] = (1.0, 5.0, 15.0),
    repeats: int = 3,
    workdir: str | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Run the three parts; return their figures (``say`` gets the progress lines main() prints)."""
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        base = Path(tmp)
        broker = Mosquitto(base / "broker").start()
        center = start_center(f"sqlite:///{base}/center.db", broker.url)
        try:
            say(f"1. Drain on loopback (Mosquitto {broker.url}, center SQLite synchronous=FULL)")
            a = run_ours(base / "a", broker.url, n, post_id="pos-a")
            say(fmt("(a) ours: batches, window 20, center ack", a))
            b = run_naive(base / "b", broker.url, naive_n, post_id="pos-b")
            say(fmt("(b) naive stop-and-wait, 1 report/message", b))
            c = run_raw(broker.url, n)
            say(fmt("(c) raw paho QoS1 pipelined, no center", c))
            say(f"  ratios: (a)/(b) = {a['rps'] / b['rps']:.1f}   (a)/(c) = {a['rps'] / c['rps']:.2f}")
            res["loopback"] = {
                "ours": a,
                "naive": b,
                "raw_paho": c,
                "ours_over_naive": a["rps"] / b["rps"],
                "ours_over_raw": a["rps"] / c["rps"],
            }
            if not skip_slow:
                say("2. Slow link: ~64 kbit/s each way, 300 ms one way (RTT ~600 ms)")
                slow: dict[str, Any] = {}
                for key, name, kw in (
                    ("ours_zlib_cut", "(a) ours, zlib on, 5 s silent cut", {"compress": True, "cut": True}),
                    ("ours_plain", "(a) ours, zlib off", {"compress": False}),
                ):
                    with LinkProxy("127.0.0.1", broker.port, delay_s=0.3, bandwidth_bps=64_000) as proxy:
                        url = f"mqtt://127.0.0.1:{proxy.port}"
                        pid = f"slow-{'z' if kw['compress'] else 'p'}"
                        r = run_ours(
                            base / pid,
                            url,
                            slow_n,
                            post_id=pid,
                            compress=bool(kw["compress"]),
                            cut=proxy if kw.get("cut") else None,
                        )
                        wire = (proxy.stats.up_bytes + proxy.stats.down_bytes) / r["n"]
                    say(fmt(name, r, wire))
                    slow[key] = {**r, "wire_bytes_per_report": wire}
                with LinkProxy("127.0.0.1", broker.port, delay_s=0.3, bandwidth_bps=64_000) as proxy:
                    r = run_naive(
                        base / "slow-naive", f"mqtt://127.0.0.1:{proxy.port}", slow_naive_n, post_id="slow-naive"
                    )
                    wire = (proxy.stats.up_bytes + proxy.stats.down_bytes) / r["n"]
                say(fmt("(b) naive stop-and-wait", r, wire))
                slow["naive"] = {**r, "wire_bytes_per_report": wire}
                slow["ours_over_naive"] = slow["ours_zlib_cut"]["rps"] / r["rps"]
                say(f"  ratio ours (zlib, with the cut) / naive = {slow['ours_over_naive']:.1f}")
                res["slow_link"] = slow
        finally:
            stop_center(center)
            broker.stop(kill=True)
        say("3. Recovery: broker back -> first center ack at the post")
        rec = []
        for down in recovery:
            times = [run_recovery(base / f"rec-{down}-{i}", down) for i in range(repeats)]
            rec.append({"down_s": down, "min_s": min(times), "median_s": statistics.median(times), "max_s": max(times)})
            say(
                f"  broker down {down:4.0f} s: first ack after {min(times):.2f} / {statistics.median(times):.2f} / "
                f"{max(times):.2f} s (min / median / max of {repeats})"
            )
        res["recovery"] = rec
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="reports for the loopback drain (default 10000)")
    parser.add_argument("--naive-n", type=int, default=2000, help="reports for the naive loopback run (default 2000)")
    parser.add_argument("--slow-n", type=int, default=1000, help="reports for ours over the slow link (default 1000)")
    parser.add_argument("--slow-naive-n", type=int, default=30, help="reports for naive over the slow link")
    parser.add_argument("--skip-slow", action="store_true", help="skip the slow-link runs")
    parser.add_argument("--recovery", type=str, default="1,5,15", help="broker down times to test, seconds")
    parser.add_argument("--dir", default=None, help="working directory (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(relativeCreated)d %(name)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    measure(
        args.n,
        args.naive_n,
        args.slow_n,
        args.slow_naive_n,
        skip_slow=args.skip_slow,
        recovery=tuple(float(x) for x in args.recovery.split(",") if x),
        workdir=args.dir,
        say=print,
    )


if __name__ == "__main__":
    main()
