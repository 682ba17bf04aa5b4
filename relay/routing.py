"""Routing: neighbours from beacons, our metric, and the next hop for a report.

* ``metric = 0`` with a connected uplink, else ``1 + min(metric of live neighbours)``; 255 (no route) if
  there is none or the sum would reach the hop limit (a hop count that high is a loop counting itself up
  after an uplink went away, not a route: capping it ends the count at once).
* A report goes only to a live neighbour whose metric is **strictly lower** than ours and never to the node
  it came from; among those the lowest metric, then the best SNR, then the fewest recent misses.  With none
  the report is held.  Strictly lower makes every hop a step down a finite ladder: no report can circle.
* Split horizon with poisoned reverse: a neighbour whose beacon says it routes through us (``via`` = our
  tag) does not count for our metric nor as a next hop.  Without it, two posts that lost their uplink
  counted each other's metric up (2 → 4 → 6 …) and handed reports back down the chain, where the
  never-back rule then stranded them (found by bench/relay_mesh.py at 30 % loss).
* A neighbour not heard for 3 × ``beacon_s`` is gone (any packet from it counts as heard); one that missed 3
  custody acks in a row is passed over for other candidates until it acknowledges something again or
  ``skip_s`` passes (when it is the only way out, reports keep trying it).
"""

from __future__ import annotations

from dataclasses import dataclass

from sync.compact import METRIC_NONE, Beacon

EXPIRE_BEACONS = 3
MISSES_TO_SKIP = 3
#: Below this SNR (dB) a link counts one hop more: a report over it is likely to need retries.
WEAK_SNR_DB = -10.0


@dataclass
class Neighbour:
    node: int
    post_id: str
    metric: int
    relay: bool
    held: int
    battery: int
    snr: float | None
    heard_at: float
    route_seq: int
    via: int = 0
    misses: int = 0
    skip_until: float = 0.0

    def link_metric(self) -> int:
        """What reaching the uplink through this neighbour costs us."""
        if self.metric == METRIC_NONE:
            return METRIC_NONE
        return self.metric + 1 + (1 if self.snr is not None and self.snr < WEAK_SNR_DB else 0)


class Routes:
    """The neighbour table.  Times are the engine's monotonic seconds; not thread-safe (the engine owns it)."""

    def __init__(self, *, beacon_s: float, max_hops: int, skip_s: float = 900.0, own_tag: int = 0) -> None:
        self.own_tag = own_tag
        self.beacon_s = beacon_s
        self.max_hops = max_hops
        self.skip_s = skip_s
        self.neighbours: dict[int, Neighbour] = {}

    def heard(self, node: int, beacon: Beacon, snr: float | None, now: float) -> None:
        known = self.neighbours.get(node)
        if known is None:
            self.neighbours[node] = Neighbour(
                node, beacon.post_id, beacon.metric, beacon.relay, beacon.held, beacon.battery, snr, now,
                beacon.route_seq, beacon.via,
            )  # fmt: skip
            return
        known.post_id, known.metric, known.relay = beacon.post_id, beacon.metric, beacon.relay
        known.held, known.battery, known.snr, known.heard_at = beacon.held, beacon.battery, snr, now
        known.route_seq, known.via = beacon.route_seq, beacon.via

    def touch(self, node: int, now: float) -> None:
        """Any packet from a neighbour proves it is there (a lossy link may lose beacons, not only them)."""
        known = self.neighbours.get(node)
        if known is not None:
            known.heard_at = max(known.heard_at, now)

    def _usable(self, n: Neighbour) -> bool:
        return not (self.own_tag and n.via == self.own_tag)

    def expire(self, now: float) -> list[Neighbour]:
        gone = [n for n in self.neighbours.values() if now - n.heard_at > EXPIRE_BEACONS * self.beacon_s]
        for n in gone:
            del self.neighbours[n.node]
        return gone

    def next_expiry(self) -> float | None:
        if not self.neighbours:
            return None
        return min(n.heard_at for n in self.neighbours.values()) + EXPIRE_BEACONS * self.beacon_s

    def metric(self, uplink_connected: bool) -> int:
        if uplink_connected:
            return 0
        best = self.best()
        metric = best.link_metric() if best is not None else METRIC_NONE
        return metric if metric < self.max_hops else METRIC_NONE

    def best(self) -> Neighbour | None:
        """The neighbour our metric comes through (None: no route)."""
        usable = [n for n in self.neighbours.values() if self._usable(n) and n.link_metric() != METRIC_NONE]
        return min(usable, key=lambda n: (n.link_metric(), n.post_id), default=None)

    def next_hop(self, my_metric: int, *, exclude: set[int], now: float) -> Neighbour | None:
        """The neighbour a report goes to now, or None (hold it)."""
        candidates = [
            n
            for n in self.neighbours.values()
            if n.node not in exclude and self._usable(n) and n.metric < my_metric and n.metric != METRIC_NONE
        ]
        # a neighbour that missed its acks is passed over for a better-answering one, but when it is the only
        # way out the report keeps trying it: held for skip_s on a lossy link it only arrived later
        awake = [n for n in candidates if n.skip_until <= now]
        if awake:
            candidates = awake
        if not candidates:
            return None
        return min(candidates, key=lambda n: (n.link_metric(), -(n.snr if n.snr is not None else -99.0), n.misses))

    def missed(self, node: int, now: float) -> None:
        n = self.neighbours.get(node)
        if n is None:
            return
        n.misses += 1
        if n.misses >= MISSES_TO_SKIP:
            n.skip_until = now + self.skip_s

    def answered(self, node: int) -> None:
        n = self.neighbours.get(node)
        if n is not None:
            n.misses = 0
            n.skip_until = 0.0

    def by_post(self, node: int) -> str | None:
        n = self.neighbours.get(node)
        return n.post_id if n else None
