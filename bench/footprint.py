"""The post's footprint: a real ``siaga run`` process against a simulated radio, a broker and a center.

Run: .venv/bin/python bench/footprint.py [--reports 200] [--idle 60] [--dir /var/tmp]

``python -m cli --config X run`` runs as its own process with the radio on devkit/sim/ (TCP),
the uplink on a fresh Mosquitto and a center (devkit/harness/center_proc.py, SQLite) acknowledging, receipts on
(every report gets its two receipts, ACKed by the simulated handset).  Read from /proc/PID of the post only:

* memory: VmRSS and VmHWM (peak) from /proc/PID/status, after the start and after the reports;
* disk: write_bytes from /proc/PID/io across N reports injected through the simulator (from the first
  injection until the last center receipt is ACKed and the daemon is quiet again), divided by N — everything
  the post writes for a report: the report, its send/ack states, both receipts' states, node table, status;
* idle CPU: utime+stime from /proc/PID/stat over an idle window (radio connected, uplink connected,
  nothing to do), as a share of one core; the same window's disk writes and the wakeups of each thread
  (voluntary context switches from /proc/PID/task/TID/status) show what runs while nothing happens.

``--console``: the same with the operator console on (``[console] http``) and nobody looking at it.

Goals: idle CPU ≤ 1 % of one core (posts run on solar), ≤ 32 KiB written per report (SD cards wear).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.radio_ingest import HANDSET, TEXTS  # noqa: E402
from bench.sync_drain import start_center, stop_center  # noqa: E402
from devkit.harness.mosquitto import Mosquitto, free_port  # noqa: E402
from devkit.harness.procs import spawn_siaga_run, stop_process  # noqa: E402
from devkit.sim import SimulatedDevice  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- /proc readers
def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def memory_kib(pid: int) -> dict[str, int]:
    st = proc_status(pid)
    return {key: int(st[key].split()[0]) for key in ("VmRSS", "VmHWM") if key in st}


def cpu_ticks(pid: int, tid: int | None = None) -> int:
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))


def write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/PID/io")


def threads(pid: int) -> dict[int, dict[str, Any]]:
    """Per thread: cpu ticks and voluntary context switches (≈ how often it woke up)."""
    out: dict[int, dict[str, Any]] = {}
    for entry in Path(f"/proc/{pid}/task").iterdir():
        tid = int(entry.name)
        try:
            st = proc_status_path(entry / "status")
            out[tid] = {
                "name": st.get("Name", "?"),
                "ticks": cpu_ticks(pid, tid),
                "wakeups": int(st.get("voluntary_ctxt_switches", "0")),
            }
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def proc_status_path(path: Path) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in path.read_text().splitlines())}


def _own_write_bytes() -> int:
    return write_bytes(os.getpid())


def store_breakdown(workdir: Path, n: int = 30) -> dict[str, int]:
    """What each store commit a report goes through writes (this process, the same file system): the life
    of one report when reports trickle in one by one, as they do between emergencies."""
    from devkit.harness.synctools import make_reports
    from edge.store import Store

    costs: dict[str, list[int]] = {}

    def timed(name: str, call: Callable[[], object]) -> None:
        before = _own_write_bytes()
        call()
        costs.setdefault(name, []).append(_own_write_bytes() - before)

    with Store.open(workdir / "breakdown.db") as store:
        for r in make_reports(20):  # a store that is not empty, past its first pages
            store.put(r)
        seeded = [row.report_id for row in store.claim(100)]
        store.mark_sent(seeded)
        store.ack(seeded)
        for r in make_reports(n):
            timed("put", functools.partial(store.put, r))
            timed("claim", functools.partial(store.claim, 1))
            ids = [row.report_id for row in store.list_reports("pending", limit=1)]
            timed("mark_sent", functools.partial(store.mark_sent, ids))
            timed("ack", functools.partial(store.ack, ids))
            for which in ("post", "center"):
                for state in ("sending", "sent", "acked"):
                    timed(f"receipt {state}", functools.partial(store.set_receipt, ids[0], which, state))
    return {name: round(sum(v) / len(v)) for name, v in costs.items()}


def naive_queue_bytes(workdir: Path, n: int = 30) -> int:
    """The naive alternative, measured the same way: a straightforward SQLite queue (WAL, synchronous=FULL,
    the default 4 KiB pages) that commits every state change of a report on its own — stored, claimed,
    sent, delivered, and both receipts' "sending" and outcome — as a queue does when each step is made
    durable the moment it happens.  Returns bytes written per report."""
    import sqlite3

    from devkit.harness.synctools import make_reports

    conn = sqlite3.connect(workdir / "naive-queue.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE q (id TEXT PRIMARY KEY, state TEXT, priority INT, stored REAL, body TEXT, claim TEXT,"
        " receipt_post TEXT, receipt_center TEXT)"
    )
    conn.execute("CREATE INDEX q_drain ON q (state, priority, stored)")
    steps = [
        "UPDATE q SET claim = 'token' WHERE id = ?",
        "UPDATE q SET state = 'sent', claim = NULL WHERE id = ?",
        "UPDATE q SET state = 'delivered' WHERE id = ?",
        "UPDATE q SET receipt_post = 'sending' WHERE id = ?",
        "UPDATE q SET receipt_post = 'acked' WHERE id = ?",
        "UPDATE q SET receipt_center = 'sending' WHERE id = ?",
        "UPDATE q SET receipt_center = 'acked' WHERE id = ?",
    ]
    reports = make_reports(20 + n)
    for r in reports[:20]:  # not an empty file, as in store_breakdown
        conn.execute("INSERT INTO q VALUES (?, 'delivered', 1, 0, ?, NULL, NULL, NULL)", (r.report_id, "x" * 900))
    before = _own_write_bytes()
    for r in reports[20:]:
        body = json.dumps(r.to_dict(), ensure_ascii=False)
        conn.execute("INSERT INTO q VALUES (?, 'pending', 1, ?, ?, NULL, NULL, NULL)", (r.report_id, time.time(), body))
        for sql in steps:
            conn.execute(sql, (r.report_id,))
    written = _own_write_bytes() - before
    conn.close()
    return round(written / n)


# ---------------------------------------------------------------------------- the setup
def write_config(base: Path, device_port: int, broker_url: str, console_port: int | None = None) -> Path:
    path = base / "siaga.toml"
    console = f'\n[console]\nhttp = "127.0.0.1:{console_port}"\n' if console_port else ""
    path.write_text(
        f"""
[node]
post_id = "oebubun"
regency = "ttu"
name = "Pos Siaga Oebubun"
data_dir = "{base / "data"}"
lat = -9.3853
lon = 124.3544

[radio.meshtastic]
host = "127.0.0.1:{device_port}"
# the simulator runs 1000x faster than real time: keep the post's own pacing from dominating the run
min_send_interval_s = 0.05

[uplink.mqtt]
urls = ["{broker_url}"]

[[handsets]]
id = "{HANDSET}"
officer = "Bench"
village = "Oebubun"
{console}""",
        encoding="utf-8",
    )
    return path


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


def _runtime(data_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((data_dir / "runtime.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _center_receipts(device: SimulatedDevice) -> int:
    return sum(1 for p in device.sent if p.text and p.text.startswith("112 PUSAT") and p.acked is True)


def _inject(device: SimulatedDevice, first: int, count: int, rate: float) -> None:
    start = time.monotonic()
    for n in range(count):
        target = start + n / rate
        while (now := time.monotonic()) < target:
            time.sleep(min(0.01, target - now))
        i = first + n
        device.inject_text(HANDSET, f"{TEXTS[i % len(TEXTS)]} #{i}", id=0x20000000 + i, hops=1)


def measure(
    reports: int = 200,
    idle_s: float = 60.0,
    *,
    rate: float = 20.0,
    workdir: str | None = None,
    say: Callable[[str], None] = lambda line: None,
    console: bool = False,
) -> dict[str, Any]:
    """``console``: with the operator console on (``[console] http``), nobody looking at it."""
    warmup = 3
    with tempfile.TemporaryDirectory(prefix="siaga-bench-footprint-", dir=workdir) as tmp:
        base = Path(tmp)
        broker = Mosquitto(base / "broker").start()
        center = start_center(f"sqlite:///{base}/center.db", broker.url)
        device = SimulatedDevice(listen=("127.0.0.1", 0), speed=1000, seed=1, offline_queue=2000)
        device.start()
        device.add_node(HANDSET, "Bench Handset", "BNCH", announce=False)
        config = write_config(base, device.port, broker.url, free_port() if console else None)
        proc = spawn_siaga_run(config, base / "siaga.log")
        pid = proc.pid
        res: dict[str, Any] = {
            "reports": reports,
            "idle_s": idle_s,
            "data_dir_fs": _fs_type(base),
            "console": console,
        }
        try:
            data_dir = base / "data"
            _wait(lambda: _runtime(data_dir).get("radio") == "connected", 60, "the radio")
            _wait(lambda: bool(_runtime(data_dir).get("uplink")), 60, "the uplink")
            res["memory_after_start_kib"] = memory_kib(pid)
            # warm-up: first-use imports and caches are not what a report costs
            _inject(device, 0, warmup, rate)
            _wait(lambda: _center_receipts(device) >= warmup, 120, "the warm-up receipts")
            time.sleep(2.0)
            say(f"footprint: post pid {pid} up; injecting {reports} reports at {rate:g}/s")
            w0, t0 = write_bytes(pid), time.monotonic()
            _inject(device, warmup, reports, rate)
            _wait(lambda: _center_receipts(device) >= warmup + reports, 120 + reports, "every center receipt")
            time.sleep(2.0)  # the last receipt's "acked" state and the node table flush
            w1 = write_bytes(pid)
            res["report_phase_s"] = round(time.monotonic() - t0, 1)
            res["write_bytes"] = w1 - w0
            res["write_bytes_per_report"] = round((w1 - w0) / reports)
            res["memory_after_reports_kib"] = memory_kib(pid)
            say(f"  {w1 - w0} bytes written for {reports} reports; idle window {idle_s:g} s")
            # the idle window: connected, nothing to do
            time.sleep(min(5.0, idle_s))
            before = threads(pid)
            c0, wb0, i0 = cpu_ticks(pid), write_bytes(pid), time.monotonic()
            events, last = [], wb0
            while (now := time.monotonic()) < i0 + idle_s:
                time.sleep(min(1.0, i0 + idle_s - now))
                current = write_bytes(pid)
                if current != last:  # when the idle post writes, and how much: which timer does it
                    events.append((round(time.monotonic() - i0, 1), current - last))
                    last = current
            c1, wb1, i1 = cpu_ticks(pid), write_bytes(pid), time.monotonic()
            res["idle_write_events"] = events
            after = threads(pid)
            window = i1 - i0
            res["idle_window_s"] = round(window, 1)
            res["idle_cpu_s"] = (c1 - c0) / CLK_TCK
            res["idle_cpu_percent"] = round(100.0 * (c1 - c0) / CLK_TCK / window, 3)
            res["idle_write_bytes_per_hour"] = round((wb1 - wb0) * 3600 / window)
            res["idle_threads"] = sorted(
                (
                    {
                        "tid": tid,
                        "name": t["name"],
                        "cpu_s": (t["ticks"] - before[tid]["ticks"]) / CLK_TCK,
                        "wakeups_per_s": round((t["wakeups"] - before[tid]["wakeups"]) / window, 2),
                    }
                    for tid, t in after.items()
                    if tid in before
                ),
                key=lambda t: -t["wakeups_per_s"],
            )
            res["memory_kib"] = memory_kib(pid)
            res["threads"] = len(after)
            res["store_commit_bytes"] = store_breakdown(base)
            res["naive_queue_bytes_per_report"] = naive_queue_bytes(base)
        finally:
            stop_process(proc, 15)
            res["exit_code"] = proc.returncode
            device.stop()
            stop_center(center)
            broker.stop(kill=True)
    return res


def _fs_type(path: Path) -> str:
    best, fstype = "", "?"
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
            best, fstype = parts[1], parts[2]
    return fstype


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=200, help="reports injected (default 200)")
    parser.add_argument("--idle", type=float, default=60.0, help="idle window in seconds (default 60)")
    parser.add_argument("--rate", type=float, default=20.0, help="reports per second injected (default 20)")
    parser.add_argument("--dir", default=None, help="directory for the post's data (default: a temp dir; not tmpfs)")
    parser.add_argument("--console", action="store_true", help="with the operator console on ([console] http)")
    args = parser.parse_args(argv)
    res = measure(args.reports, args.idle, rate=args.rate, workdir=args.dir, say=print, console=args.console)
    mem = res["memory_kib"]
    print("| measure | value | goal |\n| --- | --- | --- |")
    print(f"| resident memory (VmRSS / VmHWM) | {mem['VmRSS'] / 1024:.1f} / {mem['VmHWM'] / 1024:.1f} MiB | - |")
    print(f"| idle CPU over {res['idle_window_s']:g} s | {res['idle_cpu_percent']:.2f} % of one core | ≤ 1 % |")
    print(f"| disk written per report | {res['write_bytes_per_report'] / 1024:.1f} KiB | ≤ 32 KiB |")
    print(f"| naive queue (every state its own commit) | {res['naive_queue_bytes_per_report'] / 1024:.1f} KiB | - |")
    print(f"| disk written while idle | {res['idle_write_bytes_per_hour'] / 1024:.0f} KiB/hour | - |")
    print(f"idle writes (s into the window, bytes): {res['idle_write_events']}")
    print("bytes written per store commit (one report at a time; receipts: post and center each):")
    for name, value in res["store_commit_bytes"].items():
        print(f"  {name:<16} {value / 1024:5.1f} KiB")
    print("idle wakeups per thread (voluntary context switches/s):")
    for t in res["idle_threads"]:
        print(f"  tid {t['tid']:>7} {t['name']:<16} {t['wakeups_per_s']:7.2f}/s  cpu {t['cpu_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
