"""An in-memory mesh for custody engines (relay/engine.py) at the protocol boundary: real engines, real
Store files, one fake clock.  ``RadioPort`` here delivers a packet straight into the neighbour engine's
inbox, over links with loss (a seeded RNG), cuts, and a hook that may drop a packet or restart a node —
so a fault lands exactly where a test puts it, never by racing a clock.

The uplink post's "uplink" is a fake center: it claims what the store holds, verifies carried reports'
tags with the origin's key, counts arrivals per report id, and acks (store.ack → delivered, owed center
acks back) — what the MQTT uplink and the real center do, without a broker.
"""

from __future__ import annotations

import base64
import json
import random
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.store import Store
from relay.budget import airtime_ms
from relay.engine import Engine, RelaySettings
from siaga.errors import RadioError
from sync import compact as codec

SECRET = b"ttu-regency-relay-secret-32bytes"
EPOCH_WALL = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


class MeshClock:
    """Store clock that follows the mesh's time; a restart gives the node a new boot."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.boot_number = 1
        self.boot_offset = 0.0

    def now(self) -> datetime:
        return EPOCH_WALL + timedelta(seconds=self.mesh.t)

    def boottime(self) -> float:
        return 100.0 + self.mesh.t - self.boot_offset

    def boot_id(self) -> str:
        return f"boot-{self.boot_number}"

    def source(self) -> str:
        return "ntp"


@dataclass
class Node:
    name: str
    num: int
    uplink: bool
    path: Path
    clock: MeshClock
    store: Store
    engine: Engine
    delivered: list[str] = field(default_factory=list)
    #: staff replies handed to this post's radio (on_reply), in order: (cmd_id, report_id, text)
    replies: list[tuple[str, str, str]] = field(default_factory=list)
    restarts: int = 0


class Port:
    def __init__(self, mesh: Mesh, name: str) -> None:
        self.mesh = mesh
        self.name = name

    def send_relay(self, dest: int | None, payload: bytes) -> None:
        self.mesh.transmit(self.name, dest, payload)


class Mesh:
    def __init__(self, tmp: Path, *, settings: RelaySettings | None = None, seed: int = 1) -> None:
        self.tmp = tmp
        self.t = 0.0
        self.settings = settings or RelaySettings(beacon_s=60.0, retry_s=10.0, cack_delay_s=2.0)
        self.rng = random.Random(seed)
        self.nodes: dict[str, Node] = {}
        self.links: dict[frozenset[str], float] = {}
        self.cut: set[frozenset[str]] = set()
        #: (src, dst, payload) → False to drop it (a test's fault)
        self.hook: Callable[[str, str, bytes], bool] | None = None
        self.restart_after_step: set[str] = set()
        self.center_arrivals: Counter[str] = Counter()
        self.center_rejected: Counter[str] = Counter()
        #: every packet sent: (t, src, dest or None, type, airtime ms)
        self.sent: list[tuple[float, str, str | None, int, float]] = []

    # ------------------------------------------------------------------ topology
    def add(self, name: str, *, uplink: bool = False, settings: RelaySettings | None = None) -> Node:
        num = 0x10000000 + len(self.nodes) + 1
        path = self.tmp / f"{name}.db"
        clock = MeshClock(self)
        store = Store.open(path, clock=clock)
        node = Node(name, num, uplink, path, clock, store, self._engine(name, store, uplink, settings))
        self.nodes[name] = node
        return node

    def _engine(self, name: str, store: Store, uplink: bool, settings: RelaySettings | None = None) -> Engine:
        def on_delivered(ids: list[str], _at: datetime) -> None:
            self.nodes[name].delivered.extend(ids)

        def on_reply(reply: codec.Reply) -> None:
            self.nodes[name].replies.append((reply.cmd_id, reply.report_id, reply.text))

        return Engine(
            post_id=name,
            store=store,
            radio=Port(self, name),
            settings=settings or self.settings,
            key=codec.derive_post_key(SECRET, name),
            forward=not uplink,
            uplink_connected=lambda: uplink,
            on_delivered=on_delivered,
            on_reply=on_reply,
            clock=lambda: self.t,
            rng=random.Random(zlib.crc32(name.encode())),  # stable across runs (str hash is salted)
        )

    def link(self, a: str, b: str, loss: float = 0.0) -> None:
        self.links[frozenset((a, b))] = loss

    def restart(self, name: str) -> None:
        """Kill a node (its memory: flights, owed CACKs, neighbours) and start it again on its store file."""
        node = self.nodes[name]
        node.store.close()
        node.clock.boot_number += 1
        node.clock.boot_offset = self.t
        node.store = Store.open(node.path, clock=node.clock)
        node.engine = self._engine(name, node.store, node.uplink, node.engine.settings)
        node.restarts += 1

    def close(self) -> None:
        for node in self.nodes.values():
            node.store.close()

    # ------------------------------------------------------------------ the air
    def by_num(self, num: int) -> str | None:
        return next((n.name for n in self.nodes.values() if n.num == num), None)

    def transmit(self, src: str, dest: int | None, payload: bytes) -> None:
        to = None if dest is None else self.by_num(dest)
        self.sent.append((self.t, src, to, payload[1], airtime_ms(len(payload), pki=dest is not None)))
        targets = [n for n in self.nodes if n != src and frozenset((src, n)) in self.links] if dest is None else [to]
        for target in targets:
            if target is None:
                raise RadioError("unknown node")
            key = frozenset((src, target))
            if key not in self.links or key in self.cut:
                continue
            if self.rng.random() < self.links[key]:
                continue
            if self.hook is not None and not self.hook(src, target, payload):
                continue
            self.nodes[target].engine.feed(self.nodes[src].num, payload, 5.0)

    # ------------------------------------------------------------------ the fake center behind uplink posts
    def center_drain(self) -> bool:
        worked = False
        for node in self.nodes.values():
            if not node.uplink:
                continue
            rows = node.store.claim(100)
            if not rows:
                continue
            ids = []
            for row in rows:
                body = json.loads(row.body)
                carried = body.get("relay")
                if carried is not None:
                    try:
                        codec.decode_report(
                            base64.b64decode(carried["packet"]),
                            lambda post, epoch: codec.derive_post_key(SECRET, post, epoch),
                        )
                    except Exception:
                        self.center_rejected[row.report_id] += 1
                        node.store.reject(row.report_id, "relay_tag")
                        continue
                self.center_arrivals[row.report_id] += 1
                ids.append(row.report_id)
            worked = True
            if ids:
                node.store.ack(ids, sent=ids)
                node.engine.wake()
        return worked

    # ------------------------------------------------------------------ time
    def run_until(self, done: Callable[[], bool], limit_s: float) -> bool:
        """Step every engine at the mesh time until nothing is left to handle, then jump to the earliest
        deadline; stop when ``done()`` or past ``limit_s``."""
        end = self.t + limit_s
        while self.t <= end:
            deadlines: list[float] = []
            for _round in range(50):
                deadlines = []
                for name in list(self.nodes):
                    deadlines.append(self.nodes[name].engine.step(self.t))
                    if name in self.restart_after_step:
                        self.restart_after_step.discard(name)
                        self.restart(name)
                worked = self.center_drain()
                if not worked and all(n.engine._inbox.empty() for n in self.nodes.values()):
                    break
            if done():
                return True
            self.t = max(min(deadlines), self.t + 0.001)
        return done()
