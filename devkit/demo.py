"""``siaga demo``: the whole system on one machine, playing a realistic TTU scenario.

What runs (every process is started here and cleaned up here, whatever happens):

* a Mosquitto broker on a free port (the system ``mosquitto``);
* the 112 center (``siaga center run``: receiver + dashboard) with a demo login;
* post **oebubun**: its radio is a simulated device on a pseudo-terminal (like USB serial); its uplink
  goes through a link emulator that is cut, silently, for 20 s in the middle of the scenario;
* post **eban**: its radio is a simulated device on TCP (like a Wi-Fi board); its wall clock is wrong by
  six years (a Pi without RTC that never got NTP);
* handsets and a hilltop relay playing the scenario below: canned and free-text reports in Indonesian,
  the same packet heard by both posts, copies over two paths, SOS button presses, an unknown radio.

Progress is shown live; at the end a summary table (``--json``: a JSON summary) says how many reports
were generated, stored, delivered, merged, how many receipts reached the handsets, how many were lost
(always 0) and how long delivery took.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from devkit.linkproxy import LinkProxy
from edge.store import Store
from siaga.errors import SiagaError

log = logging.getLogger(__name__)

DEMO_USER = "demo"
DEMO_PASSWORD = "siaga-demo-112"
#: The eban post's wall clock: six years behind (a Pi that booted to an old saved time).
WRONG_CLOCK_S = -6 * 365 * 86400
OUTAGE_AT_S = 14.0
OUTAGE_S = 20.0

SIAGA = [sys.executable, "-m", "cli"]


@dataclass(frozen=True)
class Handset:
    node: str
    long_name: str
    short: str
    officer: str
    village: str


OB01 = Handset("!a1b2c3d4", "Petugas Oebubun 01", "OB01", "Yohanes Taek", "Oebubun")
OB02 = Handset("!a1b2c3d5", "Petugas Oebubun 02", "OB02", "Maria Kolo", "Oebubun")
EB01 = Handset("!b2c3d4e5", "Petugas Eban 01", "EB01", "Agustinus Sanam", "Eban")
NM01 = Handset("!d00d0001", "Petugas Noemuti 01", "NM01", "Fransiska Abi", "Noemuti")
RELAY = "!7e1a7001"  # the hilltop router on Gunung Mutis
UNKNOWN = "!c0ffee01"  # a radio nobody registered: stored unverified, never dropped
SHARED_PACKET_ID = 0x51A6A001


@dataclass(frozen=True)
class Post:
    post_id: str
    name: str
    lat: float
    lon: float
    handsets: tuple[Handset, ...]
    radio: str  # "pty" or "tcp"
    outage: bool = False
    clock_offset_s: float = 0.0


POSTS = (
    Post("oebubun", "Oebubun", -9.3853, 124.3544, (OB01, OB02, NM01), "pty", outage=True),
    Post("eban", "Eban", -9.4870, 124.2870, (EB01, NM01), "tcp", clock_offset_s=WRONG_CLOCK_S),
)


def scenario(post: Post) -> list[dict[str, Any]]:
    """The scenario lines one post's radio hears.  Texts are unique: they identify reports in the summary."""
    lines: list[dict[str, Any]] = [
        {"at": 0, "node": {"id": RELAY, "long_name": "Relay Bukit Mutis", "short_name": "RMTS"}}
    ]
    for h in post.handsets:
        lines.append({"at": 0, "node": {"id": h.node, "long_name": h.long_name, "short_name": h.short, "hops": 1}})
    # the same packet from a handset between both villages, heard by both posts
    shared = {
        "at": 11,
        "from": NM01.node,
        "id": SHARED_PACKET_ID,
        "text": "BANJIR air sungai Noemuti masuk rumah warga",
    }
    if post.post_id == "oebubun":
        lines += [
            {"at": 1, "from": OB01.node, "position": {"lat": -9.3791, "lon": 124.3612}},
            {"at": 2, "from": OB01.node, "text": "KEBAKARAN rumah bapak Yohanes di dusun 2", "copies": 2, "hops": 1},
            {
                "at": 5,
                "from": OB02.node,
                "text": "tlg 3 org luka kecelakaan motor di jln ke Kefa",
                "hops": 2,
                "relay": RELAY,
            },
            {"at": 8, "from": OB01.node, "detection": "SOS-OB01"},
            {**shared, "hops": 2, "relay": RELAY},
            {"at": 17, "from": OB02.node, "text": "pohon besar tumbang tutup jalan desa", "hops": 1},
            {"at": 23, "from": OB01.node, "text": "DARURAT MEDIS ibu bersalin pendarahan", "copies": 2},
            {"at": 29, "from": OB01.node, "text": "AMAN / SELESAI api rumah sudah padam", "hops": 1},
        ]
    else:
        lines += [
            {"at": 1, "from": EB01.node, "position": {"lat": -9.4921, "lon": 124.2799}},
            {"at": 3, "from": EB01.node, "text": "LONGSOR tebing menimpa 2 rumah di Eban", "hops": 1},
            {**shared, "hops": 1},
            {
                "at": 15,
                "from": UNKNOWN,
                "text": "ada org hilang di hutan Mutis sejak kemarin",
                "hops": 3,
                "relay": RELAY,
            },
            {"at": 21, "from": EB01.node, "text": "angin kencang cabut atap sekolah", "hops": 1},
            {"at": 26, "from": EB01.node, "detection": "SOS-EB01"},
        ]
    return lines


def expected_reports() -> dict[tuple[str, str], float]:
    """(origin, text) of every distinct report the scenario generates → its scenario time."""
    out: dict[tuple[str, str], float] = {}
    for post in POSTS:
        for line in scenario(post):
            if "text" in line:
                out[(line["from"], line["text"])] = line["at"]
            elif "detection" in line:
                out[(line["from"], f"{line['detection']} detected")] = line["at"]
    return out


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class PostRun:
    post: Post
    config: Path
    data_dir: Path
    record: Path
    proxy: LinkProxy | None = None
    store: Store | None = None
    stats: dict[str, int] = field(default_factory=dict)


class Demo:
    def __init__(self, workdir: Path, *, speed: float, out: TextIO) -> None:
        self.dir = workdir
        self.speed = speed
        self.out = out
        self.procs: list[Proc] = []
        self.posts: list[PostRun] = []
        self.stop = threading.Event()
        self.broker_port = 0
        self.http = ""
        self.center_config = workdir / "center.toml"
        self.t0 = 0.0
        self.started_wall = datetime.now(UTC)
        self.outage_state = "belum"

    # ------------------------------------------------------------------ processes
    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        logfile = self.dir / f"{name}.log"
        handle = logfile.open("ab")
        popen = subprocess.Popen(
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=self.dir,
            start_new_session=True,
        )
        handle.close()
        proc = Proc(name, popen, logfile)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for run in self.posts:
            if run.store is not None:
                run.store.close()
                run.store = None
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 8
        for proc in self.procs:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(timeout=5)
        for run in self.posts:
            if run.proxy is not None:
                run.proxy.stop()
                run.proxy = None

    def check_alive(self) -> None:
        for proc in self.procs:
            code = proc.popen.poll()
            if code is not None:
                tail = proc.log.read_text(errors="replace")[-1500:]
                raise SiagaError(f"{proc.name} exited with code {code}; its log ({proc.log}) ends:\n{tail}")

    # ------------------------------------------------------------------ set-up
    def start(self) -> None:
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(mosquitto).exists():
            raise SiagaError("mosquitto is not installed: run ./install.sh --dev (it installs Debian's mosquitto)")
        self.broker_port = free_port()
        conf = self.dir / "mosquitto.conf"
        conf.write_text(f"listener {self.broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.spawn("mosquitto", [mosquitto, "-c", str(conf)])
        wait_port(self.broker_port, 10, "mosquitto")

        http_port = free_port()
        self.http = f"127.0.0.1:{http_port}"
        self.center_config.write_text(
            f"""[node]
regency = "ttu"

[center]
db = "sqlite:///{self.dir / "center.db"}"
http = "{self.http}"
silent_after_s = 120

[center.mqtt]
url = "mqtt://127.0.0.1:{self.broker_port}"
client_id = "siaga-demo-center"
regency = "ttu"
"""
        )
        password_file = self.dir / "demo.password"
        password_file.write_text(DEMO_PASSWORD + "\n")
        added = subprocess.run(
            [
                *SIAGA,
                "--config",
                str(self.center_config),
                "center",
                "user",
                "add",
                DEMO_USER,
                "--password-file",
                str(password_file),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.dir,
        )
        if added.returncode != 0:
            raise SiagaError(f"creating the demo login failed: {added.stderr.strip()}")
        self.spawn("center", [*SIAGA, "--config", str(self.center_config), "center", "run"])
        wait_port(http_port, 30, "the center's dashboard")

        for post in POSTS:
            self.posts.append(self.start_post(post))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.stop.is_set():
            self.check_alive()
            if all(radio_connected(run) for run in self.posts):
                break
            time.sleep(0.3)
        else:
            if not self.stop.is_set():
                raise SiagaError(f"the posts' radios did not connect within 60 s (see the logs in {self.dir})")
        for run in self.posts:
            run.store = Store.open(run.data_dir / "post.db", check=False)
        self.t0 = time.monotonic()
        self.started_wall = datetime.now(UTC)

    def start_post(self, post: Post) -> PostRun:
        base = self.dir / post.post_id
        base.mkdir(exist_ok=True)
        scenario_file = base / "scenario.jsonl"
        scenario_file.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in scenario(post)))
        record = base / "radio-sent.jsonl"
        sim = [
            *SIAGA,
            "simulate",
            "--scenario",
            str(scenario_file),
            "--speed",
            str(self.speed),
            "--record",
            str(record),
            "--node",
            "!5a6a00" + ("01" if post.radio == "pty" else "02"),
            "--long-name",
            f"Gateway {post.name}",
            "--short-name",
            post.name[:4].upper(),
            "--wait-client",
            "--seed",
            str(len(post.post_id)),
        ]
        if post.radio == "pty":
            radio_path = base / "ttyMESH"
            self.spawn(f"radio-{post.post_id}", [*sim, "--pty", str(radio_path)])
            wait_path(radio_path, 20, f"the {post.post_id} radio's pty")
            radio_line = f'port = "{radio_path}"'
        else:
            port = free_port()
            self.spawn(f"radio-{post.post_id}", [*sim, "--listen", f"127.0.0.1:{port}"])
            wait_port(port, 20, f"the {post.post_id} radio")
            radio_line = f'host = "127.0.0.1:{port}"'
        proxy = None
        broker_port = self.broker_port
        if post.outage:
            proxy = LinkProxy("127.0.0.1", self.broker_port).start()
            broker_port = proxy.port
        handsets = "".join(
            f'\n[[handsets]]\nid = "{h.node}"\nofficer = "{h.officer}"\nvillage = "{h.village}"\n'
            for h in post.handsets
        )
        config = base / "siaga.toml"
        config.write_text(
            f"""[node]
post_id = "{post.post_id}"
regency = "ttu"
name = "{post.name}"
data_dir = "{base / "data"}"
lat = {post.lat}
lon = {post.lon}

[radio.meshtastic]
{radio_line}
ack_timeout_s = 10
min_send_interval_s = {max(0.3, 2.5 / self.speed):.2f}

[uplink.mqtt]
url = "mqtt://127.0.0.1:{broker_port}"
client_id = "siaga-demo-{post.post_id}"
keepalive_s = 5
heartbeat_s = 5
ack_timeout_s = 60
{handsets}"""
        )
        env = {"SIAGA_CLOCK_OFFSET_S": str(post.clock_offset_s)} if post.clock_offset_s else {}
        self.spawn(f"post-{post.post_id}", [*SIAGA, "--config", str(config), "run"], env=env)
        return PostRun(post, config, base / "data", record, proxy=proxy)

    # ------------------------------------------------------------------ the run
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def drive_outage(self) -> None:
        """Cut the oebubun uplink silently for OUTAGE_S seconds in the middle of the scenario."""
        t = self.elapsed()
        for run in self.posts:
            if run.proxy is None:
                continue
            if self.outage_state == "belum" and t >= OUTAGE_AT_S / self.speed:
                run.proxy.cut()
                self.outage_state = "putus"
            elif self.outage_state == "putus" and t >= OUTAGE_AT_S / self.speed + OUTAGE_S:
                run.proxy.restore()
                self.outage_state = "pulih"

    def snapshot(self) -> dict[str, Any]:
        posts = {}
        for run in self.posts:
            assert run.store is not None
            rows = run.store.list_reports(limit=100_000)
            counts = run.store.counts()
            posts[run.post.post_id] = {
                "received": sum(r.copies for r in rows),
                "stored": len(rows),
                "sent": counts["sent"] + counts["delivered"],
                "delivered": counts["delivered"],
                "uplink": run.proxy.state if run.proxy else "up",
            }
        center = self.center_reports()
        broker_up = self.procs[0].popen.poll() is None
        return {"t": self.elapsed(), "posts": posts, "center": len(center), "broker": broker_up}

    def center_reports(self) -> list[dict[str, Any]]:
        from center.storage import ReportFilter, open_storage

        with open_storage(f"sqlite:///{self.dir / 'center.db'}") as storage:
            rows = storage.list_reports(ReportFilter(limit=10_000))
            return [
                {
                    "origin": r.report.origin,
                    "text": r.report.text_raw,
                    "post_id": r.post_id,
                    "received_at": r.received_at,
                    "observed_est": r.observed_est,
                    "copies": r.copies,
                }
                for r in rows
            ]

    def progress_line(self, snap: dict[str, Any]) -> str:
        parts = [f"t={snap['t']:5.1f}s broker {'NAIK' if snap['broker'] else 'MATI'}"]
        for post_id, p in snap["posts"].items():
            link = {"up": "", "cut": " [UPLINK PUTUS]", "down": " [UPLINK MATI]"}[p["uplink"]]
            parts.append(
                f"{post_id}: terima {p['received']} simpan {p['stored']} kirim {p['sent']}"
                f" sampai {p['delivered']}{link}"
            )
        parts.append(f"pusat 112: {snap['center']} laporan")
        return " | ".join(parts)

    def all_delivered(self) -> bool:
        expected = expected_reports()
        got = {(r["origin"], r["text"]) for r in self.center_reports()}
        if not set(expected) <= got:
            return False
        if self.outage_state != "pulih":
            return False
        for run in self.posts:
            assert run.store is not None
            counts = run.store.counts()
            if counts["pending"] or counts["sent"]:
                return False
        # every handset report has had its second receipt attempt
        return all(self.receipts(run)["center"] >= self.handset_reports(run) for run in self.posts)

    def handset_reports(self, run: PostRun) -> int:
        assert run.store is not None
        return sum(1 for r in run.store.list_reports(limit=100_000) if r.report.origin.startswith("!"))

    @staticmethod
    def receipts(run: PostRun) -> dict[str, int]:
        counts = {"post": 0, "center": 0}
        if not run.record.exists():
            return counts
        for line in run.record.read_text(encoding="utf-8").splitlines():
            try:
                sent = json.loads(line)
            except ValueError:
                continue
            text = sent.get("text") or ""
            if sent.get("acked") is not True:
                continue
            if "PUSAT TERIMA" in text:
                counts["center"] += 1
            elif "TERIMA" in text:
                counts["post"] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        expected = expected_reports()
        center = self.center_reports()
        by_key = {(r["origin"], r["text"]): r for r in center}
        delivered = [k for k in expected if k in by_key]
        # When each report truly reached a post: the post's stored time less its (known) clock error.
        first_stored: dict[tuple[str, str], float] = {}
        for run in self.posts:
            assert run.store is not None
            for stored_row in run.store.list_reports(limit=100_000):
                key = (stored_row.report.origin, stored_row.report.text_raw)
                true_ts = stored_row.stored_ts - run.post.clock_offset_s
                first_stored[key] = min(true_ts, first_stored.get(key, true_ts))
        latencies = []
        clock_errors = []
        for key in delivered:
            row = by_key[key]
            if key not in first_stored:
                continue
            latencies.append(max(0.0, row["received_at"].timestamp() - first_stored[key]))
            # the center's estimate of when the post heard it, against the truth: shows the boot-clock
            # age correcting the eban post's six-years-wrong clock
            clock_errors.append(abs(row["observed_est"].timestamp() - first_stored[key]))
        stored = 0
        merged_at_posts = 0
        receipts = {"post": 0, "center": 0}
        per_post = {}
        for run in self.posts:
            assert run.store is not None
            rows = run.store.list_reports(limit=100_000)
            counts = run.store.counts()
            stored += len(rows)
            merged = sum(r.copies - 1 for r in rows)
            merged_at_posts += merged
            got = self.receipts(run)
            receipts["post"] += got["post"]
            receipts["center"] += got["center"]
            per_post[run.post.post_id] = {
                "stored": len(rows),
                "copies_merged": merged,
                "pending": counts["pending"],
                "sent": counts["sent"],
                "delivered": counts["delivered"],
                "receipts_post": got["post"],
                "receipts_center": got["center"],
            }
        # reports the center received from both posts, merged into one
        merged_at_center = stored - len(center)
        return {
            "generated": len(expected),
            "stored": stored,
            "delivered": len(delivered),
            "duplicates_merged": merged_at_posts + merged_at_center,
            "duplicates_merged_at_posts": merged_at_posts,
            "duplicates_merged_at_center": merged_at_center,
            "receipts_sent": receipts["post"] + receipts["center"],
            "receipts": receipts,
            "lost": len(expected) - len(delivered),
            "latency_s": percentiles(latencies),
            "observed_time_error_s": percentiles(clock_errors),
            "uplink_outage_s": OUTAGE_S,
            "wrong_clock_post": {"post_id": "eban", "offset_s": WRONG_CLOCK_S},
            "posts": per_post,
            "dashboard": f"http://{self.http}/",
            "workdir": str(self.dir),
        }


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))], 3)

    return {"p50": pick(0.5), "p95": pick(0.95), "max": round(ordered[-1], 3)}


def render_table(summary: dict[str, Any]) -> str:
    lines = [
        "",
        "Ringkasan demo Siaga Relay",
        f"  laporan dibuat (generated)        : {summary['generated']}",
        f"  tersimpan di pos (stored)         : {summary['stored']}",
        f"  sampai di pusat 112 (delivered)   : {summary['delivered']}",
        f"  duplikat digabung                 : {summary['duplicates_merged']}"
        f" (di pos {summary['duplicates_merged_at_posts']}, di pusat {summary['duplicates_merged_at_center']})",
        f"  tanda terima ke handset           : {summary['receipts_sent']}"
        f" (TERIMA {summary['receipts']['post']}, PUSAT TERIMA {summary['receipts']['center']})",
        f"  HILANG (lost)                     : {summary['lost']}",
        f"  pos -> pusat (detik) p50/p95/max  : {fmt(summary['latency_s'])}",
        f"  galat waktu kejadian di pusat (s) : {fmt(summary['observed_time_error_s'])}"
        "  (pos eban jamnya salah 6 tahun)",
        "",
        f"  {'pos':<10}{'simpan':>8}{'gabung':>8}{'menunggu':>10}{'terkirim':>10}{'sampai':>8}"
        f"{'TERIMA':>8}{'PUSAT':>7}",
    ]
    for post_id, p in summary["posts"].items():
        lines.append(
            f"  {post_id:<10}{p['stored']:>8}{p['copies_merged']:>8}{p['pending']:>10}{p['sent']:>10}"
            f"{p['delivered']:>8}{p['receipts_post']:>8}{p['receipts_center']:>7}"
        )
    return "\n".join(lines)


def fmt(p: dict[str, float | None]) -> str:
    return " / ".join("-" if v is None else f"{v:.1f}" for v in (p["p50"], p["p95"], p["max"]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise SiagaError(f"{what} did not start listening on port {port} within {timeout:.0f} s")


def wait_path(path: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        time.sleep(0.1)
    raise SiagaError(f"{what} did not appear at {path} within {timeout:.0f} s")


def radio_connected(run: PostRun) -> bool:
    try:
        state = json.loads((run.data_dir / "runtime.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(state.get("radio") == "connected")


@contextlib.contextmanager
def _signals_set(event: threading.Event) -> Iterator[None]:
    def handler(signum: int, _frame: object) -> None:
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_demo(*, duration: float | None, as_json: bool, speed: float, workdir: Path | None, keep: bool) -> int:
    out = sys.stderr if as_json else sys.stdout
    made = workdir is None
    directory = Path(tempfile.mkdtemp(prefix="siaga-demo-")) if workdir is None else workdir
    directory.mkdir(parents=True, exist_ok=True)
    demo = Demo(directory, speed=speed, out=out)
    summary: dict[str, Any] | None = None
    with _signals_set(demo.stop):
        try:
            print(f"Memulai demo di {directory} ...", file=out, flush=True)
            demo.start()
            print(
                f"Dasbor pusat 112: http://{demo.http}/  (masuk: {DEMO_USER} / {DEMO_PASSWORD})",
                file=out,
                flush=True,
            )
            finished_at: float | None = None
            last_line = ""
            while not demo.stop.is_set():
                demo.check_alive()
                demo.drive_outage()
                snap = demo.snapshot()
                line = demo.progress_line(snap)
                if line != last_line:
                    print(line, file=out, flush=True)
                    last_line = line
                if finished_at is None and demo.all_delivered():
                    finished_at = demo.elapsed()
                    summary = demo.summary()
                    print(render_table(summary), file=out, flush=True)
                    if duration is None:
                        print(
                            f"\nSemua laporan sampai. Dasbor tetap berjalan: http://{demo.http}/"
                            " — Ctrl-C untuk berhenti.",
                            file=out,
                            flush=True,
                        )
                if duration is not None and demo.elapsed() >= duration:
                    break
                demo.stop.wait(1.0)
            summary = demo.summary()
            if finished_at is None:
                print(render_table(summary), file=out, flush=True)
        finally:
            demo.cleanup()
            if made and not keep:
                shutil.rmtree(directory, ignore_errors=True)
    if as_json and summary is not None:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0 if summary is not None and summary["lost"] == 0 else 1
