"""Province-scale load: many posts' backlogs at once against one Mosquitto, 1 or more receivers, PostgreSQL.

Run: .venv/bin/python bench/center_load.py [--posts 500] [--procs 4] [--backlog 20] [--receivers 1,3]
     [--pg postgresql://postgres@127.0.0.1:5432/test]

The posts are lightweight clients speaking wire protocol v1 (sync.protocol over sync.mqtt, no store, no
radio), ``--procs`` processes of ``posts / procs`` each: every post connects (persistent session, Last Will,
subscribes to its ``ack`` and the receivers' presence), publishes its retained status, then — all together,
the night the uplinks come back — its backlog of ``--backlog`` reports in uplink-sized batches (≤ 16 KiB, 20
in flight), a heartbeat every 5 s meanwhile, and waits for the center's acks.  The receivers are real
``CenterService`` processes (devkit/harness/center_proc.py) on the shared subscription, on a fresh
PostgreSQL schema.

Measured: reports acknowledged per second (first publish → last ack, over all posts); publish → ack latency
per report (p50, p99; both ends on this machine's CLOCK_MONOTONIC); CPU (utime+stime from /proc) and peak
RSS of the broker, the receivers and the receivers' PostgreSQL backends (found by application_name;
PostgreSQL's shared WAL writer and checkpointer are not counted), each per 100 posts.  The posts' own
processes are the load, not the system under test: their CPU is printed apart.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devkit.harness.mosquitto import Mosquitto  # noqa: E402
from devkit.harness.synctools import make_reports  # noqa: E402
from siaga.config import TlsMqttConfig  # noqa: E402
from siaga.errors import SiagaError  # noqa: E402
from siaga.report import utcnow  # noqa: E402
from sync import protocol  # noqa: E402
from sync.mqtt import BrokerAddress, Message, MqttLink, Will  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
REGENCY = "ntt"
BATCH_MAX_BYTES = 16 * 1024
INFLIGHT = 20
HEARTBEAT_S = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- one simulated post
class SimPost:
    """One post: a link, its backlog, and when each report went out and came back acknowledged."""

    def __init__(self, url: str, post_id: str, backlog: int) -> None:
        self.post_id = post_id
        self.topics = {k: protocol.topic(REGENCY, post_id, k) for k in ("report", "ack", "status")}
        wires = [protocol.WireReport(r, 5.0, "boot") for r in make_reports(backlog, post_id=post_id)]
        self.batches = protocol.encode_report_batches(post_id, wires, sent_at=utcnow(), max_bytes=BATCH_MAX_BYTES)
        self.sent_at: dict[str, float] = {}
        self.acked_at: dict[str, float] = {}
        self.done = threading.Event()
        self._window = threading.Semaphore(INFLIGHT)
        self.link = MqttLink(
            TlsMqttConfig(urls=(url,)),
            BrokerAddress.parse(url),
            client_id=f"siaga-load-{post_id}",
            handler=self,
            will=Will(self.topics["status"], self._status("offline")),
            max_inflight=INFLIGHT,
        )

    def _status(self, state: str) -> bytes:
        body: dict[str, Any] = {"post_id": self.post_id, "state": state, "boot": 1}
        if state == "online":
            pending = len(self.sent_at) - len(self.acked_at)
            body.update(name=f"Pos {self.post_id}", at=protocol.format_time(utcnow()), queue={"sent": pending})
        return protocol.encode_status(body)

    def connect(self) -> None:
        self.link.open(20.0)
        self.link.subscribe_async([(self.topics["ack"], 1), (protocol.CENTER_RECEIVERS_FILTER, 1)], lambda _r: None)
        self.heartbeat()

    def heartbeat(self) -> None:
        self.link.publish(self.topics["status"], self._status("online"), qos=1, retain=True)

    def drain(self) -> None:
        for batch in self.batches:
            self._window.acquire()
            now = time.monotonic()
            for rid in batch.report_ids:
                self.sent_at[rid] = now
            self.link.publish(self.topics["report"], batch.payload, qos=1)

    # LinkHandler (paho's thread)
    def on_message(self, link: MqttLink, message: Message) -> None:
        if message.topic != self.topics["ack"]:
            return
        now = time.monotonic()
        for rid in protocol.decode_ack(message.payload).ids:
            self.acked_at.setdefault(rid, now)
        if len(self.acked_at) >= sum(len(b.report_ids) for b in self.batches):
            self.done.set()

    def on_published(self, link: MqttLink, mid: int, ok: bool, reason: str) -> None:
        self._window.release()

    def on_disconnected(self, link: MqttLink, reason: str) -> None:
        pass


def worker(url: str, first: int, count: int, backlog: int, out: Path, timeout: float) -> None:
    """Run ``count`` posts in this process; wait for "go" on stdin; write what happened to ``out``."""
    posts = [SimPost(url, f"pos-{first + i:04d}", backlog) for i in range(count)]
    for post in posts:
        post.connect()
    print("READY", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    threads = [threading.Thread(target=p.drain, daemon=True) for p in posts]
    for t in threads:
        t.start()
    beat = time.monotonic()
    while not all(p.done.is_set() for p in posts) and time.monotonic() - started < timeout:
        time.sleep(0.1)
        if time.monotonic() - beat >= HEARTBEAT_S:
            beat = time.monotonic()
            for p in posts:
                p.heartbeat()
    latencies = [p.acked_at[rid] - p.sent_at[rid] for p in posts for rid in p.acked_at if rid in p.sent_at]
    result = {
        "first_sent": min(min(p.sent_at.values()) for p in posts if p.sent_at),
        "last_acked": max((max(p.acked_at.values()) for p in posts if p.acked_at), default=None),
        "sent": sum(len(p.sent_at) for p in posts),
        "acked": sum(len(p.acked_at) for p in posts),
        "latencies": latencies,
        "cpu_s": sum(os.times()[:2]),
    }
    out.write_text(json.dumps(result), encoding="utf-8")
    for p in posts:
        p.link.close()


# ---------------------------------------------------------------------------- the orchestra
def _proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of one process, or (0, 0) when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0.0, 0
    return cpu, rss


class Sampler:
    """CPU used and peak RSS per group of processes, sampled every 0.5 s while the load runs."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.start = {g: sum(_proc_stat(p)[0] for p in pids) for g, pids in groups.items()}
        self.cpu = dict(self.start)
        self.peak = {g: 0 for g in groups}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def sample(self) -> None:
        for group, pids in self.groups.items():
            stats = [_proc_stat(p) for p in pids]
            self.cpu[group] = max(self.cpu[group], sum(s[0] for s in stats))
            self.peak[group] = max(self.peak[group], sum(s[1] for s in stats))

    def stop(self) -> dict[str, dict[str, float]]:
        self._stop.set()
        self._thread.join()
        self.sample()
        return {
            g: {"cpu_s": round(self.cpu[g] - self.start[g], 2), "rss_mib": self.peak[g] / 2**20} for g in self.groups
        }


def _pg_backends(dsn: str, names: list[str]) -> list[int]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = ANY(%s)", (names,)).fetchall()
    return [int(r[0]) for r in rows]


def run_once(posts: int, procs: int, backlog: int, receivers: int, pg: str, workdir: Path) -> dict[str, Any]:
    import psycopg

    from devkit.harness.pg import fresh_schema

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with fresh_schema(psycopg.connect(pg, autocommit=True), pg, "load") as url:
        broker = Mosquitto(workdir / f"broker-{receivers}", persistence=False, extra="max_connections -1").start()
        centers: list[subprocess.Popen[str]] = []
        workers: list[subprocess.Popen[str]] = []
        try:
            names = [f"siaga-load-r{i}" for i in range(receivers)]
            for name in names:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "devkit.harness.center_proc", f"{url}&application_name={quote(name)}",
                     broker.url, "--client-id", name],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env,
                )  # fmt: skip
                centers.append(proc)
                assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
            outs = [workdir / f"worker-{receivers}-{i}.json" for i in range(procs)]
            per = posts // procs
            for i, out in enumerate(outs):
                proc = subprocess.Popen(
                    [sys.executable, __file__, "--worker", broker.url, str(i * per), str(per), str(backlog), str(out)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                )  # fmt: skip
                workers.append(proc)
            for proc in workers:
                assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
            assert broker.proc is not None
            sampler = Sampler(
                {
                    "broker": [broker.proc.pid],
                    "receivers": [p.pid for p in centers],
                    "postgresql": _pg_backends(pg, names),
                }
            )
            for proc in workers:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            for proc in workers:
                proc.wait(900)
            usage = sampler.stop()
            results = [json.loads(out.read_text(encoding="utf-8")) for out in outs]
        finally:
            for proc in workers + centers:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(20)
                for stream in (proc.stdin, proc.stdout):
                    if stream is not None:
                        stream.close()
            broker.stop()
    sent = sum(r["sent"] for r in results)
    acked = sum(r["acked"] for r in results)
    latencies = sorted(x for r in results for x in r["latencies"])
    last = [r["last_acked"] for r in results if r["last_acked"] is not None]
    span = (max(last) - min(r["first_sent"] for r in results)) if last else float("nan")
    per100 = {g: {"cpu_s": round(u["cpu_s"] * 100 / posts, 2), "rss_mib": round(u["rss_mib"] * 100 / posts, 1)}
              for g, u in usage.items()}  # fmt: skip
    return {
        "posts": posts,
        "receivers": receivers,
        "reports": posts * backlog,
        "sent": sent,
        "acked": acked,
        "span_s": round(span, 2),
        "acked_per_s": round(acked / span, 1) if last else 0.0,
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
        "usage": usage,
        "per_100_posts": per100,
        "load_cpu_s": round(sum(r["cpu_s"] for r in results), 1),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        url, first, count, backlog, out = argv[1:6]
        worker(url, int(first), int(count), int(backlog), Path(out), timeout=600.0)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=500)
    parser.add_argument("--procs", type=int, default=4, help="processes the posts run in")
    parser.add_argument("--backlog", type=int, default=20, help="reports queued at each post")
    parser.add_argument("--receivers", default="1,3", help="receiver counts to run, comma-separated")
    parser.add_argument("--pg", default=DEFAULT_PG)
    args = parser.parse_args(argv)
    rows = []
    print(f"center load: {args.posts} posts × {args.backlog} reports; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="siaga-bench-load-") as tmp:
        for receivers in (int(x) for x in args.receivers.split(",")):
            try:
                rows.append(run_once(args.posts, args.procs, args.backlog, receivers, args.pg, Path(tmp)))
            except (SiagaError, OSError, AssertionError) as exc:
                print(f"{receivers} receivers: failed: {exc!r}")
    print(f"load average after {os.getloadavg()[0]:.2f}")
    print(
        "| receivers | acked / sent | reports/s acked | p50 ms | p99 ms | CPU s per 100 posts: broker / receivers /"
        " PostgreSQL | peak RSS MiB: broker / receivers / PostgreSQL |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        u, p = r["usage"], r["per_100_posts"]
        print(
            f"| {r['receivers']} | {r['acked']:,} / {r['sent']:,} | {r['acked_per_s']:,.0f} | {r['p50_ms']} |"
            f" {r['p99_ms']} | {p['broker']['cpu_s']} / {p['receivers']['cpu_s']} / {p['postgresql']['cpu_s']} |"
            f" {u['broker']['rss_mib']:.0f} / {u['receivers']['rss_mib']:.0f} / {u['postgresql']['rss_mib']:.0f} |"
        )
    print(json.dumps(rows, indent=1))
    return 0 if rows and all(r["acked"] == r["reports"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
