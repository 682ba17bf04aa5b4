"""``siaga rehearse TOPOLOGY.toml``: a regency's mesh rehearsed on one machine.

What runs (every process is started here and stopped here, whatever happens — also on Ctrl-C/SIGTERM):

* a Mosquitto broker on a free port (devkit/harness/mosquitto.py);
* the 112 center (``siaga center run``: receiver + dashboard) with the regency relay secret, generated
  into the working directory, so that it verifies reports other posts carry;
* the simulated mesh: one simulated Meshtastic device per post and relay, joined by the topology's links
  (each a real stream endpoint the daemon's meshtastic library connects to);
* one ``siaga run`` per post and relay, its config generated here: an uplink (through a LinkProxy, so that
  ``uplink_down`` can cut it) only for posts with ``uplink = true``, ``[relay]`` everywhere with short
  timers (divided by ``--speed``), each post's own key derived from the secret.

The timeline plays the topology's events: handset texts and detections injected at their devices, links
cut and healed, daemons SIGKILLed and restarted, uplinks cut.  Progress is printed live; the summary
(summary.py) is counted from the real sources.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from devkit.harness.mosquitto import Mosquitto, free_port, wait_port
from devkit.harness.procs import REPO
from devkit.linkproxy import LinkProxy
from devkit.rehearse.summary import CenterRow, Generated, NodeCounts, Receipt, render_table, summarize
from devkit.rehearse.topology import EventSpec, HandsetSpec, Topology
from siaga.errors import SiagaError

log = logging.getLogger(__name__)

SIAGA = [sys.executable, "-m", "cli"]
DASHBOARD_USER = "demo"
DASHBOARD_PASSWORD = "siaga-demo-112"

#: Relay timers at speed 1, divided by ``--speed`` down to the config's floors.  The product's defaults
#: (beacon 600 s, retry 30 s) suit a regency's real channel; a rehearsal wants the route found and a lost
#: packet retried within seconds.
BEACON_S = 10.0  # also the lowest beacon_s the config accepts
RETRY_S = 6.0
RETRY_MIN_S = 1.0
CACK_DELAY_S = 1.0
#: How long the daemons have to connect to their radios before the timeline starts.
READY_TIMEOUT_S = 90.0


@dataclass
class NodeRun:
    """One post or relay: its simulated device, its daemon, its uplink proxy."""

    id: str
    role: str  # "post" | "relay"
    name: str
    uplink: bool
    dir: Path
    config: Path
    data_dir: Path
    record: Path
    log: Path
    node_num: str  # the gateway radio's node id "!xxxxxxxx"
    clock_offset_s: float = 0.0
    device: Any = None
    proc: subprocess.Popen[bytes] | None = None
    proxy: LinkProxy | None = None
    restarts: int = 0
    down: bool = False  # SIGKILLed, waiting for its restart


@dataclass(order=True)
class _Timed:
    at: float  # seconds after t0, already divided by speed
    seq: int
    what: str = field(compare=False)
    action: Callable[[], None] = field(compare=False)


class Rehearsal:
    def __init__(
        self,
        topology: Topology,
        workdir: Path,
        *,
        speed: float = 1.0,
        out: TextIO = sys.stdout,
        mesh_factory: Callable[..., Any] | None = None,
    ) -> None:
        if speed <= 0:
            raise SiagaError(f"--speed must be more than 0 (got {speed})")
        self.topo = topology
        self.dir = workdir
        self.speed = speed
        self.out = out
        self.mesh_factory = mesh_factory
        self.mesh: Any = None
        self.broker: Mosquitto | None = None
        self.center: subprocess.Popen[bytes] | None = None
        self.center_log = workdir / "center.log"
        self.center_db = workdir / "center.db"
        self.http = ""
        self.nodes: dict[str, NodeRun] = {}
        self.stop = threading.Event()
        self.t0 = 0.0
        self.timeline: list[_Timed] = []
        self._seq = 0
        self.generated: list[Generated] = []
        self.cut_links: set[tuple[str, str]] = set()
        self.secret_file = workdir / "relay-secret.hex"

    # ------------------------------------------------------------------------------ set-up
    def start(self) -> None:
        self.broker = Mosquitto(self.dir / "broker", persistence=False).start()
        self._write_keys()
        self._start_center()
        self._start_mesh()
        for node in self.nodes.values():
            self._spawn(node)
        self._wait_ready()
        self.t0 = time.monotonic()
        self._schedule_events()

    def _write_keys(self) -> None:
        from siaga.keyfile import new_secret, write_hex_key
        from sync.compact import derive_post_key

        secret = new_secret()
        write_hex_key(self.secret_file, secret, "center.relay.secret_file")
        for node in self.topo.nodes:
            base = self.dir / node
            base.mkdir(parents=True, exist_ok=True)
            write_hex_key(base / "relay.key", derive_post_key(secret, node, 0), "relay.key_file")

    def _start_center(self) -> None:
        assert self.broker is not None
        http_port = free_port()
        self.http = f"127.0.0.1:{http_port}"
        config = self.dir / "center.toml"
        config.write_text(
            f"""[node]
regency = "{self.topo.regency}"

[center]
db = "sqlite:///{self.center_db}"
http = "{self.http}"
silent_after_s = 120

[center.mqtt]
url = "{self.broker.url}"
client_id = "siaga-rehearse-center"
regency = "{self.topo.regency}"

[center.relay]
secret_file = "{self.secret_file}"
""",
            encoding="utf-8",
        )
        password = self.dir / "dashboard.password"
        password.write_text(DASHBOARD_PASSWORD + "\n", encoding="utf-8")
        added = subprocess.run(
            [
                *SIAGA,
                "--config",
                str(config),
                "center",
                "user",
                "add",
                DASHBOARD_USER,
                "--password-file",
                str(password),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env=_env(),
        )
        if added.returncode != 0:
            raise SiagaError(f"creating the dashboard login failed: {added.stderr.strip()[-500:]}")
        self.center = _popen([*SIAGA, "--config", str(config), "center", "run"], self.center_log)
        wait_port(http_port, 60, alive=lambda: self.center is not None and self.center.poll() is None)

    def _start_mesh(self) -> None:
        from devkit.sim.mesh import Mesh

        factory = self.mesh_factory or Mesh
        self.mesh = factory(seed=self.topo.seed, speed=self.speed)
        for index, node_id in enumerate(self.topo.nodes, start=1):
            post = self.topo.post(node_id)
            relay = next((r for r in self.topo.relays if r.id == node_id), None)
            base = self.dir / node_id
            base.mkdir(exist_ok=True)
            run = NodeRun(
                id=node_id,
                role="post" if post else "relay",
                name=post.name if post else relay.name if relay else node_id,
                uplink=bool(post and post.uplink),
                dir=base,
                config=base / "siaga.toml",
                data_dir=base / "data",
                record=base / "radio-sent.jsonl",
                log=base / "siaga.log",
                node_num=f"!5a6a{index:04x}",
                clock_offset_s=post.clock_offset_s if post else 0.0,
            )
            run.device = self.mesh.add_device(
                node_id,
                listen=("127.0.0.1", 0),
                node=run.node_num,
                long_name=f"Gateway {run.name}"[:36],
                short_name=node_id[:4].upper(),
                record_path=run.record,
            )
            self.nodes[node_id] = run
        for link in self.topo.links:
            snr = {} if link.snr is None else {"snr": link.snr}
            self.mesh.link(link.a, link.b, loss=link.loss, **snr)
        for handset in self.topo.handsets:
            for near in handset.near:
                self.nodes[near].device.add_node(handset.id, handset.name[:36], handset.id[-4:].upper())
        self.mesh.start()
        for run in self.nodes.values():
            if run.uplink:
                assert self.broker is not None
                run.proxy = LinkProxy("127.0.0.1", self.broker.port).start()
            run.config.write_text(self._node_config(run), encoding="utf-8")

    def _node_config(self, run: NodeRun) -> str:
        post = self.topo.post(run.id)
        lines = [
            "[node]",
            f'post_id = "{run.id}"',
            f'regency = "{self.topo.regency}"',
            f"name = {json.dumps(run.name)}",
            f'data_dir = "{run.data_dir}"',
        ]
        lat = post.lat if post else next(r.lat for r in self.topo.relays if r.id == run.id)
        lon = post.lon if post else next(r.lon for r in self.topo.relays if r.id == run.id)
        if lat is not None and lon is not None:
            lines += [f"lat = {lat}", f"lon = {lon}"]
        lines.append(f'role = "{run.role}"')
        lines += [
            "",
            "[radio.meshtastic]",
            f'host = "127.0.0.1:{self.nodes[run.id].device.port}"',
            "ack_timeout_s = 10",
            f"min_send_interval_s = {max(0.3, 2.5 / self.speed):.2f}",
        ]
        if run.uplink:
            assert run.proxy is not None
            lines += [
                "",
                "[uplink.mqtt]",
                f'url = "mqtt://127.0.0.1:{run.proxy.port}"',
                f'client_id = "siaga-rehearse-{run.id}"',
                "keepalive_s = 5",
                "heartbeat_s = 5",
                "ack_timeout_s = 30",
            ]
        lines += [
            "",
            "[relay]",
            "enabled = true",
            f'key_file = "{run.dir / "relay.key"}"',
            f"beacon_s = {max(BEACON_S, BEACON_S / self.speed):.3f}",
            f"retry_s = {max(RETRY_MIN_S, RETRY_S / self.speed):.3f}",
            f"cack_delay_s = {CACK_DELAY_S / self.speed:.3f}",
        ]
        if run.role == "post":
            for handset in self.topo.handsets:
                if handset.registered:
                    lines += _handset_lines(handset)
        return "\n".join(lines) + "\n"

    def _spawn(self, run: NodeRun) -> None:
        env = {"SIAGA_CLOCK_OFFSET_S": str(run.clock_offset_s)} if run.clock_offset_s else {}
        run.proc = _popen([*SIAGA, "--config", str(run.config), "run"], run.log, env=env)
        run.down = False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.stop.is_set():
            self.check_alive()
            if all(_radio_connected(run) for run in self.nodes.values()):
                return
            if time.monotonic() > deadline:
                waiting = [run.id for run in self.nodes.values() if not _radio_connected(run)]
                raise SiagaError(
                    f"the radios of {', '.join(waiting)} did not connect within {READY_TIMEOUT_S:.0f} s"
                    f" (logs in {self.dir})"
                )
            self.stop.wait(0.3)

    # ------------------------------------------------------------------------------ the timeline
    def _at(self, at: float, what: str, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self.timeline, _Timed(at / self.speed, self._seq, what, action))

    def _schedule_events(self) -> None:
        for event in self.topo.events:
            if event.kind in ("text", "detection"):
                self._at(event.at, f"{event.handset}: {event.text}", partial(self._send, event))
            elif event.kind == "cut":
                a, b = event.link
                self._at(event.at, f"link {a}-{b} putus", partial(self._cut, a, b, event.for_s))
                self._at(event.at + event.for_s, f"link {a}-{b} pulih", partial(self.cut_links.discard, (a, b)))
            elif event.kind == "kill":
                node = self.nodes[event.node]
                self._at(event.at, f"{node.id} dimatikan (SIGKILL)", partial(self._kill, node))
                self._at(event.at + event.restart_s, f"{node.id} hidup lagi", partial(self._restart, node))
            elif event.kind == "uplink_down":
                proxy = self.nodes[event.node].proxy
                assert proxy is not None
                self._at(event.at, f"uplink {event.node} putus", proxy.cut)
                self._at(event.at + event.for_s, f"uplink {event.node} pulih", proxy.restore)

    def play_due(self) -> list[str]:
        """Run every timeline entry that is due; returns what happened (for the progress output)."""
        done = []
        now = self.elapsed()
        while self.timeline and self.timeline[0].at <= now:
            item = heapq.heappop(self.timeline)
            item.action()
            done.append(item.what)
        return done

    @property
    def timeline_done(self) -> bool:
        return not self.timeline

    def _send(self, event: EventSpec) -> None:
        handset: HandsetSpec = self.topo.handset(event.handset)
        packet_id: int | None = None
        sent_wall = time.time()
        for near in handset.near:
            device = self.nodes[near].device
            options = {} if packet_id is None else {"id": packet_id}  # every post hears the same packet
            if event.kind == "text":
                packet_id = device.inject_text(handset.id, event.text, **options)
            else:
                packet_id = device.inject_detection(handset.id, event.text, **options)
        text = event.text if event.kind == "text" else f"{event.text} detected"
        self.generated.append(Generated(handset.id, text, sent_wall, handset.near, event.at))

    def _cut(self, a: str, b: str, seconds: float) -> None:
        self.mesh.cut(a, b, seconds)  # topology seconds: the mesh divides by its speed itself
        self.cut_links.add((a, b))

    def _kill(self, run: NodeRun) -> None:
        if run.proc is not None and run.proc.poll() is None:
            run.proc.send_signal(signal.SIGKILL)
            run.proc.wait(10)
        run.down = True

    def _restart(self, run: NodeRun) -> None:
        self._spawn(run)
        run.restarts += 1

    # ------------------------------------------------------------------------------ watching
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def check_alive(self) -> None:
        procs: list[tuple[str, subprocess.Popen[bytes] | None, Path]] = [("the center", self.center, self.center_log)]
        procs += [(f"{run.role} {run.id}", run.proc, run.log) for run in self.nodes.values() if not run.down]
        if self.broker is not None and not self.broker.running:
            raise SiagaError(f"mosquitto exited; its log ends:\n{self.broker.log()[-1500:]}")
        for what, proc, logfile in procs:
            code = None if proc is None else proc.poll()
            if code is not None:
                tail = logfile.read_text(errors="replace")[-1500:] if logfile.exists() else ""
                raise SiagaError(f"{what} exited with code {code}; its log ({logfile}) ends:\n{tail}")

    def center_rows(self) -> list[CenterRow]:
        if not self.center_db.exists():
            return []
        from center.storage import ReportFilter, open_storage

        with open_storage(f"sqlite:///{self.center_db}") as storage:
            rows = storage.list_reports(ReportFilter(limit=100_000))
        return [
            CenterRow(
                report_id=r.report.report_id,
                origin=r.report.origin,
                text=r.report.text_raw,
                post_id=r.post_id,
                received_wall=r.received_at.timestamp(),
                observed_wall=r.observed_est.timestamp(),
                copies=r.copies,
            )
            for r in rows
        ]

    def receipts(self) -> list[Receipt]:
        handsets = {h.id for h in self.topo.handsets}
        out = []
        for run in self.nodes.values():
            for sent in _read_jsonl(run.record):
                text = sent.get("text") or ""
                if sent.get("to") in handsets and text.startswith("112 "):
                    out.append(Receipt(run.id, sent["to"], text, sent.get("acked") is True))
        return out

    def node_counts(self) -> dict[str, NodeCounts]:
        from edge.store import Store

        airtime = self._airtime_by_node()
        out = {}
        for run in self.nodes.values():
            counts = NodeCounts(role=run.role, restarts=run.restarts, airtime_s=airtime.get(run.id, 0.0))
            db = run.data_dir / "post.db"
            if db.exists():
                with contextlib.suppress(SiagaError):
                    store = Store.open(db, check=False)
                    try:
                        rows = store.list_reports(limit=100_000)
                        state = store.counts()
                    finally:
                        store.close()
                    counts.stored = len(rows)
                    counts.ids = {(r.report.origin, r.report.text_raw): r.report_id for r in rows}
                    counts.held = {
                        (r.report.origin, r.report.text_raw) for r in rows if r.state not in ("delivered", "rejected")
                    }
                    counts.copies_merged = sum(r.copies - 1 for r in rows)
                    counts.pending = state.get("pending", 0)
                    counts.sent = state.get("sent", 0) + state.get("delivered", 0)
                    counts.delivered = state.get("delivered", 0)
            out[run.id] = counts
        return out

    def _airtime_by_node(self) -> dict[str, float]:
        """Each device's time on air so far (simulated seconds: what a real radio would spend)."""
        if self.mesh is None or not self.mesh.started:
            return {}
        return {name: float(self.mesh.stats(name).airtime_s) for name in self.nodes}

    def summary(self) -> dict[str, Any]:
        nodes = self.node_counts()
        airtime = sum(c.airtime_s for c in nodes.values()) if self.mesh is not None and self.mesh.started else None
        return summarize(
            self.generated,
            self.center_rows(),
            self.receipts(),
            nodes,
            airtime_s=airtime,
            extra={
                "topology": self.topo.name,
                "speed": self.speed,
                "elapsed_s": round(self.elapsed(), 1),
                "dashboard": f"http://{self.http}/",
                "workdir": str(self.dir),
            },
        )

    def finished(self, summary: dict[str, Any]) -> bool:
        """The timeline has played, every report is at the center and every handset has both receipts."""
        n = summary["generated"]
        return (
            self.timeline_done
            and n == len(self.topo.reports)
            and summary["delivered"] == n
            and summary["receipts_post"] == n
            and summary["receipts_center"] == n
        )

    def progress_line(self, center: int) -> str:
        parts = [f"t={self.elapsed():5.1f}s"]
        for name, c in self.node_counts().items():
            run = self.nodes[name]
            flags = ""
            if run.down:
                flags += " [MATI]"
            if run.proxy is not None and run.proxy.state != "up":
                flags += " [UPLINK PUTUS]"
            parts.append(f"{name}: simpan {c.stored} kirim {c.sent} sampai {c.delivered}{flags}")
        for a, b in sorted(self.cut_links):
            parts.append(f"link {a}-{b} PUTUS")
        parts.append(f"pusat 112: {center}/{len(self.topo.reports)} laporan")
        return " | ".join(parts)

    # ------------------------------------------------------------------------------ clean-up
    def cleanup(self) -> None:
        for run in self.nodes.values():
            if run.proc is not None and run.proc.poll() is None:
                run.proc.send_signal(signal.SIGTERM)
        for run in self.nodes.values():
            if run.proc is not None:
                _reap(run.proc)
        if self.center is not None:
            if self.center.poll() is None:
                self.center.send_signal(signal.SIGTERM)
            _reap(self.center)
        if self.mesh is not None:
            with contextlib.suppress(Exception):
                self.mesh.stop()
        for run in self.nodes.values():
            if run.proxy is not None:
                run.proxy.stop()
        if self.broker is not None:
            self.broker.stop()


# ---------------------------------------------------------------------------------------------- helpers
def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in ("SIAGA_CONFIG", "RUNTIME_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
        env.pop(key, None)
    env.update(extra or {})
    return env


def _popen(argv: list[str], logfile: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with logfile.open("ab") as handle:
        return subprocess.Popen(
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env=_env(env),
            start_new_session=True,  # Ctrl-C in the terminal reaches us only; we stop them in order
        )


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _handset_lines(handset: HandsetSpec) -> list[str]:
    return [
        "",
        "[[handsets]]",
        f'id = "{handset.id}"',
        f"officer = {json.dumps(handset.officer)}",
        f"village = {json.dumps(handset.village)}",
    ]


def _radio_connected(run: NodeRun) -> bool:
    try:
        state = json.loads((run.data_dir / "runtime.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(state.get("radio") == "connected")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict):
                out.append(item)
    return out


@contextlib.contextmanager
def _signals_set(event: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM end the run through the normal path, so that every process is stopped."""

    def handler(signum: int, _frame: object) -> None:
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_rehearsal(
    topology: Topology,
    *,
    duration: float | None,
    as_json: bool,
    speed: float = 1.0,
    workdir: Path | None = None,
    keep: bool = False,
    linger: bool = False,
    title: str = "Ringkasan gladi Siaga Relay",
    mesh_factory: Callable[..., Any] | None = None,
) -> int:
    """Run a rehearsal; exit code 0 when every report reached the center.

    Without ``duration`` it ends once the timeline has played and every report is delivered with both
    receipts — or, with ``linger`` (the demo), keeps the dashboard up until Ctrl-C.  With ``duration`` it
    stops after that many seconds at the latest.
    """
    out = sys.stderr if as_json else sys.stdout
    made = workdir is None
    directory = Path(tempfile.mkdtemp(prefix="siaga-rehearse-")) if workdir is None else workdir
    directory.mkdir(parents=True, exist_ok=True)
    rehearsal = Rehearsal(topology, directory, speed=speed, out=out, mesh_factory=mesh_factory)
    summary: dict[str, Any] | None = None
    with _signals_set(rehearsal.stop):
        try:
            label = topology.name or "topologi"
            print(f"Memulai gladi {label} di {directory} ...", file=out, flush=True)
            rehearsal.start()
            print(
                f"Dasbor pusat 112: http://{rehearsal.http}/  (masuk: {DASHBOARD_USER} / {DASHBOARD_PASSWORD})",
                file=out,
                flush=True,
            )
            finished_at: float | None = None
            last = ""
            while not rehearsal.stop.is_set():
                rehearsal.check_alive()
                for what in rehearsal.play_due():
                    print(f"t={rehearsal.elapsed():5.1f}s >> {what}", file=out, flush=True)
                summary = rehearsal.summary()
                line = rehearsal.progress_line(summary["delivered"])
                if line.split(" | ", 1)[1:] != last.split(" | ", 1)[1:]:
                    print(line, file=out, flush=True)
                    last = line
                if finished_at is None and rehearsal.finished(summary):
                    finished_at = rehearsal.elapsed()
                    print(render_table(summary, title), file=out, flush=True)
                    if not linger:
                        break
                    if duration is None:
                        print(
                            f"\nSemua laporan sampai. Dasbor tetap berjalan: http://{rehearsal.http}/"
                            " — Ctrl-C untuk berhenti.",
                            file=out,
                            flush=True,
                        )
                if duration is not None and rehearsal.elapsed() >= duration:
                    break
                rehearsal.stop.wait(min(0.5, 0.5 / speed) if rehearsal.timeline else 1.0)
            if rehearsal.t0:
                summary = rehearsal.summary()
                if finished_at is None:
                    print(render_table(summary, title), file=out, flush=True)
        finally:
            rehearsal.cleanup()
            if made and not keep:
                shutil.rmtree(directory, ignore_errors=True)
    if as_json and summary is not None:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    # success: everything arrived (a run stopped early with reports still held is not one)
    return 0 if summary is not None and summary["delivered"] == summary["generated"] else 1
