"""The radios this post has heard: their names and last known position, for reports that carry none.

A handset broadcasts its position every few minutes (POSITION_APP) and its names now and then
(NODEINFO_APP).  A text report carries neither, so a report takes its sender's last position with the
position's age: "gps" when fresh, "handset-last-fixed" when older, else (Intake) the post's own location.

The table lives in memory (read on every report, so no SQL on the hot path) and is written to the store's
``nodes`` table in batches — every :data:`NODE_FLUSH_S` (the ``node_flush`` job, edge/jobs.py) and at stop —
because an SD card wears out and a lost position is not a lost report.  Ages are measured on the boot clock
while the post has not rebooted (the wall clock of a Pi without RTC may jump), else on the wall clock.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from typing import Any

from edge.intake import Location
from edge.store import NODE_COLUMNS, Store
from siaga.clock import Clock
from siaga.errors import StoreError
from siaga.report import node_id

log = logging.getLogger(__name__)

#: A position heard less than this long ago is as good as a GPS fix taken with the report.
FRESH_S = 300
#: Older positions are not used at all (a handset may have moved villages).
MAX_AGE_S = 7 * 86400
#: The table is written to the store this often (a crash loses at most this much of positions and names).
NODE_FLUSH_S = 60.0


@dataclass
class Node:
    num: int
    long_name: str | None = None
    short_name: str | None = None
    lat: float | None = None
    lon: float | None = None
    altitude: int | None = None
    accuracy_m: float | None = None
    pos_ts: float | None = None
    pos_boot_id: str | None = None
    pos_boot: float | None = None
    heard_ts: float | None = None

    @property
    def id(self) -> str:
        return node_id(self.num)


class NodeTable:
    """Names and positions by node number; thread-safe; persisted in batches to the store."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._nodes: dict[int, Node] = {}
        self._dirty: set[int] = set()

    def load(self) -> int:
        rows = self._store.load_nodes()
        with self._lock:
            for row in rows:
                data: dict[str, Any] = {k: row.get(k) for k in NODE_COLUMNS}
                node = Node(**data)
                self._nodes[node.num] = node
        return len(rows)

    # ------------------------------------------------------------------ updates (radio-in thread)
    def heard(self, num: int) -> None:
        with self._lock:
            node = self._nodes.setdefault(num, Node(num))
            node.heard_ts = self._clock.now().timestamp()
            self._dirty.add(num)

    def update_user(self, num: int, long_name: str, short_name: str) -> None:
        with self._lock:
            node = self._nodes.setdefault(num, Node(num))
            if long_name:
                node.long_name = long_name
            if short_name:
                node.short_name = short_name
            node.heard_ts = self._clock.now().timestamp()
            self._dirty.add(num)

    def update_position(
        self, num: int, lat: float, lon: float, altitude: int | None = None, accuracy_m: float | None = None
    ) -> None:
        with self._lock:
            node = self._nodes.setdefault(num, Node(num))
            node.lat, node.lon, node.altitude, node.accuracy_m = lat, lon, altitude, accuracy_m
            node.pos_ts = node.heard_ts = self._clock.now().timestamp()
            node.pos_boot_id = self._clock.boot_id()
            node.pos_boot = self._clock.boottime()
            self._dirty.add(num)

    def seed_names(self, names: dict[int, tuple[str, str]]) -> None:
        """Names from the radio's own node DB after a handshake (never overwrites a position)."""
        with self._lock:
            for num, (long_name, short_name) in names.items():
                node = self._nodes.get(num)
                if node is None:
                    node = self._nodes[num] = Node(num)
                elif node.long_name == long_name and node.short_name == short_name:
                    continue
                node.long_name = long_name or node.long_name
                node.short_name = short_name or node.short_name
                self._dirty.add(num)

    # ------------------------------------------------------------------ reads
    def get(self, num: int) -> Node | None:
        with self._lock:
            node = self._nodes.get(num)
            return Node(**asdict(node)) if node is not None else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._nodes)

    def position_age_s(self, node: Node) -> float | None:
        if node.pos_ts is None:
            return None
        if node.pos_boot_id == self._clock.boot_id() and node.pos_boot is not None:
            return max(0.0, self._clock.boottime() - node.pos_boot)
        return max(0.0, self._clock.now().timestamp() - node.pos_ts)

    def location(self, num: int) -> Location | None:
        """The sender's last position as a report location, or None (then the post's own is used)."""
        node = self.get(num)
        if node is None or node.lat is None or node.lon is None:
            return None
        age = self.position_age_s(node)
        if age is None or age > MAX_AGE_S:
            return None
        source = "gps" if age <= FRESH_S else "handset-last-fixed"
        return Location(node.lat, node.lon, source, accuracy_m=node.accuracy_m, age_s=int(age))

    def relay_name(self, relay_byte: int) -> str:
        """``relay_node`` is only the last byte of the relaying radio: name it if exactly one node fits."""
        with self._lock:
            matches = [num for num in self._nodes if num & 0xFF == relay_byte]
        if len(matches) == 1:
            return node_id(matches[0])
        return f"~{relay_byte:02x}"

    # ------------------------------------------------------------------ persistence
    def flush(self) -> int:
        with self._lock:
            rows = [asdict(self._nodes[n]) for n in self._dirty if n in self._nodes]
            self._dirty.clear()
        try:
            return self._store.save_nodes(rows)
        except StoreError as exc:
            log.warning("nodes: %d node rows not saved (will try again): %s", len(rows), exc)
            with self._lock:
                self._dirty.update(row["num"] for row in rows)
            return 0

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(n) for n in self._nodes.values()]
