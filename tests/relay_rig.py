"""Posts relaying over a simulated mesh, end to end, for tests: each post a real daemon (edge.daemon.Post in this
process, or ``siaga run`` as a subprocess) with the real meshtastic library, its own device in a
devkit.sim.Mesh, a real SQLite store; the uplink posts publish to a real Mosquitto and a real center
(SQLite) that holds the regency relay secret.  Used by tests/test_relay_e2e.py and
tests/chaos/test_relay_kills.py.  Nothing is patched: what a test alters, it alters at a protocol boundary.

Timers are short (beacon 10 s, the configuration's floor; retry 2 s; CACK batching 0.2 s) and the mesh runs
at ``SPEED`` × real time, so a test of several hops takes seconds; every wait is for a state, with a deadline
that only a hang reaches.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devkit.harness.mosquitto import Mosquitto
from devkit.harness.procs import spawn_siaga_run, stop_process
from devkit.harness.synctools import Center
from devkit.sim import SimulatedDevice
from devkit.sim.mesh import Mesh
from devkit.sim.state import SentPacket, node_id
from edge.daemon import Post
from edge.store import StoredReport
from siaga import config as config_mod
from tests.carried import SECRET, post_key
from tests.radio_rig import FAST, wait_until

HANDSET = "!a1b2c3d4"  # officer Yohanes Taek, registered at the origin post
SPEED = 20.0
#: Relay timers of the tests (docs/RELAY.md defaults: beacon 600 s, retry 30 s, CACK delay 2 s).
RELAY_FAST: dict[str, Any] = {"beacon_s": 10.0, "retry_s": 2.0, "cack_delay_s": 0.2}
#: A deadline only a hang reaches: every wait below is for a state, never for time to pass.
HANG_S = 120.0


def to_toml(cfg: dict[str, Any]) -> str:
    """The subset of TOML our configs use: tables of scalars and string lists, one array of tables."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"no TOML for {v!r}")

    def table(name: str, body: dict[str, Any], out: list[str], header: str | None = None) -> None:
        out.append(header or f"[{name}]")
        subs = []
        for k, v in body.items():
            if isinstance(v, dict):
                subs.append((k, v))
            else:
                out.append(f"{k} = {value(v)}")
        out.append("")
        for k, v in subs:
            table(f"{name}.{k}", v, out)

    out: list[str] = []
    for name, body in cfg.items():
        if isinstance(body, list):
            for item in body:
                table(name, item, out, header=f"[[{name}]]")
        else:
            table(name, body, out)
    return "\n".join(out)


@dataclass
class Station:
    """A post or relay of the rig: its simulated device, its configuration, and its daemon while it runs."""

    name: str
    uplink: bool
    role: str
    directory: Path
    device: SimulatedDevice
    relay: dict[str, Any]
    handsets: list[dict[str, str]] = field(default_factory=list)
    post: Post | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def store_path(self) -> Path:
        return self.directory / "data" / "post.db"

    @property
    def config_path(self) -> Path:
        return self.directory / "siaga.toml"

    @property
    def log_path(self) -> Path:
        return self.directory / "siaga.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""


class Rig:
    """A broker's center plus posts on a simulated mesh.  ``add`` stations, ``link`` them, ``start``."""

    def __init__(self, tmp_path: Path, mosquitto: Mosquitto, *, seed: int = 7, speed: float = SPEED) -> None:
        self.tmp = tmp_path
        self.mosquitto = mosquitto
        self.mesh = Mesh(seed=seed, speed=speed)
        self.stations: dict[str, Station] = {}
        secret = tmp_path / "relay-secret.hex"
        secret.write_text(SECRET.hex() + "\n")
        secret.chmod(0o600)
        self.secret_file = secret
        self.center: Center | None = None

    # ------------------------------------------------------------------ set-up
    def add(
        self, name: str, *, uplink: bool = False, role: str = "post", handset: bool = False, **relay: Any
    ) -> Station:
        """A station named ``name`` (its post id); ``handset``: the officer's handset is registered here and
        heard by its device; ``relay`` overrides the [relay] timers of :data:`RELAY_FAST`."""
        directory = self.tmp / name
        directory.mkdir(parents=True)
        key_file = directory / "relay.key"
        key_file.write_text(post_key(name).hex() + "\n")
        key_file.chmod(0o600)
        device = self.mesh.add_device(name)
        station = Station(
            name=name,
            uplink=uplink,
            role=role,
            directory=directory,
            device=device,
            relay={"enabled": True, "key_file": str(key_file), **RELAY_FAST, **relay},
        )
        if handset:
            station.handsets.append({"id": HANDSET, "officer": "Yohanes Taek", "village": "Oebubun"})
            # known to the device, so that a receipt to it is ACKed by the handset (a real officer's radio)
            device.add_node(HANDSET, "Yohanes Taek", "YT01", announce=False)
        self.stations[name] = station
        return station

    def link(self, a: str, b: str, **kw: Any) -> None:
        self.mesh.link(a, b, **kw)

    def config(self, station: Station) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "node": {
                "post_id": station.name,
                "regency": "ttu",
                "name": f"Pos {station.name.capitalize()}",
                "role": station.role,
                "data_dir": str(station.directory / "data"),
                "lat": -9.3853,
                "lon": 124.3544,
            },
            "radio": {
                "meshtastic": {
                    "host": f"127.0.0.1:{station.device.port}",
                    "min_send_interval_s": 0.2,
                    "ack_timeout_s": 3.0,
                    "receipt_retries": 3,
                }
            },
            "relay": dict(station.relay),
        }
        if station.uplink:
            cfg["uplink"] = {"mqtt": {"urls": [self.mosquitto.url], "keepalive_s": 5, "ack_timeout_s": 5.0}}
        if station.handsets:
            cfg["handsets"] = list(station.handsets)
        return cfg

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, subprocess_for: tuple[str, ...] = ()) -> Rig:
        """Mesh (NodeInfo exchanged), center, then every daemon: in this process, or ``siaga run`` for the
        names in ``subprocess_for``."""
        self.mesh.start()
        self.mesh.wait_for_neighbours()
        self.center = Center(
            f"sqlite:///{self.tmp}/center.db", [self.mosquitto.url], relay_secret_file=self.secret_file
        ).start()
        for name in self.stations:
            if name in subprocess_for:
                self.spawn(name)
            else:
                self.start_post(name)
        return self

    def start_post(self, name: str) -> Post:
        """The station's daemon in this process (edge.daemon.Post, FAST radio tuning), connected."""
        station = self.stations[name]
        cfg = config_mod.from_dict(self.config(station))
        post = Post(cfg, radio_tuning=FAST)
        station.post = post
        post.start()
        assert post.radio is not None and post.radio.wait_connected(20), f"{name} never connected to its device"
        station.starts += 1
        return post

    def stop_post(self, name: str) -> None:
        station = self.stations[name]
        if station.post is not None:
            station.post.stop()
            station.post = None

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        """``siaga run`` for the station (its TOML written from the same dict); returns once its radio
        handshake with the device completed."""
        station = self.stations[name]
        station.config_path.write_text(to_toml(self.config(station)), encoding="utf-8")
        handshakes = station.device.handshakes
        station.proc = spawn_siaga_run(station.config_path, station.log_path)
        station.starts += 1
        try:
            station.device.wait_for_handshake(handshakes + 1, 60)
        except TimeoutError:
            raise AssertionError(f"{name} (pid {station.proc.pid}) never connected:\n{station.log()}") from None
        return station.proc

    def stop(self) -> None:
        for station in self.stations.values():
            if station.proc is not None:
                if station.proc.poll() is None:
                    station.proc.send_signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
                stop_process(station.proc)
                station.proc = None
            if station.post is not None:
                station.post.stop()
                station.post = None
        if self.center is not None:
            self.center.stop()
            self.center = None
        self.mesh.stop()

    def signal(self, name: str, signum: int) -> None:
        proc = self.stations[name].proc
        assert proc is not None and proc.poll() is None, f"{name} runs no process"
        os.kill(proc.pid, signum)

    def kill(self, name: str) -> None:
        """SIGKILL the station's ``siaga run`` and reap it: nothing of it runs after this returns."""
        station = self.stations[name]
        assert station.proc is not None
        station.proc.kill()
        station.proc.wait(30)
        station.proc = None

    # ------------------------------------------------------------------ on air
    def node(self, name: str) -> str:
        return node_id(self.stations[name].device.node_num)

    def relay_sent(self, name: str, kind: int, to: str | None = None) -> list[SentPacket]:
        """Relay packets of type ``kind`` (sync.compact TYPE_*) the station's client handed its device."""
        dest = None if to is None else self.node(to)
        return [
            p
            for p in self.mesh.device(name).sent
            if p.portnum == "300" and p.payload[:2] == bytes([1, kind]) and (dest is None or p.to == dest)
        ]

    def reached(self, name: str) -> bool:
        """Everything transmitted toward ``name`` so far has reached its radio (or was lost): nothing on air."""
        return self.mesh.on_air_to(name) == 0

    # ------------------------------------------------------------------ the officer
    def text(self, at: str, text: str) -> int:
        """The officer's handset sends ``text`` as a DM to the post ``at``; returns the mesh packet id."""
        return self.mesh.device(at).inject_text(HANDSET, text, to="post")

    # ------------------------------------------------------------------ what happened
    def center_reports(self) -> list[dict[str, Any]]:
        assert self.center is not None
        return self.center.storage.query("SELECT report_id, post_id, text_raw, copies FROM reports")

    def center_copies(self) -> list[dict[str, Any]]:
        assert self.center is not None
        return self.center.storage.query(
            "SELECT report_id, post_id, relay_origin, relay_prev, relay_hops FROM report_copies"
        )

    def at_center(self, texts: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The center's report rows for each text (a text appears in one row if all is well)."""
        rows = self.center_reports()
        return {t: [r for r in rows if r["text_raw"] == t] for t in texts}

    def all_at_center(self, texts: list[str]) -> bool:
        return all(self.at_center(texts).values())

    def rows(self, name: str) -> list[StoredReport]:
        """The station's store: from its in-process daemon, else read-only from the file (a subprocess's)."""
        post = self.stations[name].post
        if post is not None and post.store is not None:
            return post.store.list_reports(limit=10_000)
        return []

    def store_rows(self, name: str) -> list[dict[str, Any]]:
        """The station's reports table read by a read-only connection (any daemon, running or not)."""
        path = self.stations[name].store_path
        if not path.exists():
            return []
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        conn.row_factory = sqlite3.Row
        try:
            return [
                dict(r)
                for r in conn.execute(
                    "SELECT report_id, state, json_extract(body, '$.text_raw') AS text, json_extract(body,"
                    " '$.post_id') AS post_id, relay_prev_node, relay_next_node, receipt_post, receipt_center"
                    " FROM reports"
                )
            ]
        finally:
            conn.close()

    def relay(self, name: str) -> dict[str, Any]:
        """The station's custody engine as `siaga status` shows it (an in-process daemon's)."""
        post = self.stations[name].post
        assert post is not None and post.relay is not None, f"{name} runs no relay in this process"
        return post.relay.snapshot()

    def metric(self, name: str) -> int | None:
        return self.relay(name).get("metric")

    def neighbour_metrics(self, name: str) -> dict[str, int]:
        return {n["post_id"]: n["metric"] for n in self.relay(name).get("neighbours", [])}

    def holds(self, name: str, text: str, state: str | None = None) -> bool:
        """The station's store has the report of ``text`` (committed), in ``state`` if given."""
        return any(r["text"] == text and (state is None or r["state"] == state) for r in self.store_rows(name))

    def origin_state(self, name: str, text: str) -> str | None:
        for row in self.store_rows(name):
            if row["text"] == text:
                return str(row["state"])
        return None

    def receipts(self, at: str, prefix: str) -> list[str]:
        """Texts the station's device sent to the handset starting with ``prefix`` that the handset ACKed."""
        return [
            p.text
            for p in self.mesh.device(at).sent
            if p.to == HANDSET and p.text and p.text.startswith(prefix) and p.acked is True
        ]

    def sent_to_handset(self, at: str) -> list[str]:
        return [p.text or "" for p in self.mesh.device(at).sent if p.to == HANDSET]

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = HANG_S) -> Any:
        try:
            return wait_until(predicate, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}") from None

    def describe(self) -> str:
        """Where things stand (a failed wait prints it): every store, the center, the links."""
        lines = []
        for name in self.stations:
            lines.append(f"{name}: {[(r['text'], r['state'], r['relay_next_node']) for r in self.store_rows(name)]}")
            post = self.stations[name].post
            if post is not None and post.relay is not None:
                snap = post.relay.snapshot()
                lines.append(f"  relay: metric {snap.get('metric')} counters {snap.get('counters')}")
        lines.append(f"center: {[(r['text_raw'], r['post_id']) for r in self.center_reports()]}")
        if self.center is not None:
            lines.append(f"center rejects: {dict(self.center.receiver.rejects)}")
        return "\n".join(lines)


def rig_context(tmp_path: Path, mosquitto: Mosquitto, **kw: Any) -> Iterator[Rig]:
    rig = Rig(tmp_path, mosquitto, **kw)
    try:
        yield rig
    finally:
        rig.stop()


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 2)
