"""The custody engine: reports handed hop by hop toward an uplink, each hop committing before it acks.

One thread owns everything here (the neighbour table, the transfers in flight, the acks owed, the airtime
budget); other threads only :meth:`Engine.feed` it packets and :meth:`Engine.wake` it.  The thread's loop is
:meth:`Engine.step` — handle what arrived, fire what is due, return the next deadline — so tests drive
several engines on one fake clock, deterministically, and the daemon runs the same code on a thread.

The contract is docs/RELAY.md, "Custody protocol, version 1".  In short:

* **receive a REPORT** → ``store.relay_receive`` commits it (``synchronous=FULL``) or finds it in the exact
  seen-set → only then a CACK (ACCEPTED / REDUNDANT / REFUSED) is *owed*, and owed CACKs to one neighbour go
  out together after at most ``cack_delay_s`` as id ranges;
* **send a REPORT** → the transfer id is allocated and recorded in the store (one commit) *before* the
  packet leaves; a CACK ACCEPTED/REDUNDANT moves it to ``sent`` (custody passed, a tombstone with its next
  hop); no CACK → again after ``retry_s``, doubling to 15 min, ±10 % jitter; each silence is a miss of that
  neighbour, and 3 in a row skip it so the next best is tried;
* **CENTER_ACK** → the store marks ``delivered`` and, in the same commit, owes a CENTER_ACK to each
  report's previous hop; the origin's own reports go to ``on_delivered`` (the officer's receipt);
* **REPLY** (a staff reply to a report that reached the center only carried) → committed by ``cmd_id`` and
  CACKed, then sent on to the report's previous hop as a CENTER_ACK is; at the origin handed once to
  ``on_reply`` (the daemon DMs the handset "112: ...");
* **BEACON** every ``beacon_s`` ±10 %, and at once when our metric changes;
* everything but CACKs waits while our airtime in the last hour is at ``airtime_cap``; life-safety
  reports first (the store hands them out in priority order).
"""

from __future__ import annotations

import heapq
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from relay.budget import AirtimeBudget, airtime_ms
from relay.routing import Routes
from siaga.errors import ProtocolError, SiagaError
from siaga.report import Report
from sync import compact as codec

log = logging.getLogger(__name__)

#: Retries never wait longer than this (before jitter).
RETRY_MAX_S = 900.0
JITTER = 0.10
#: Transfers in flight to one neighbour at most: a window, not stop-and-wait, but not a burst either.
WINDOW_PER_NEIGHBOUR = 8
#: Reports looked at per drain round.
DRAIN_BATCH = 64
#: With nothing else due, the loop still turns this often (a missed wake costs at most this).
IDLE_S = 5.0
#: A metric change beacons "at once": within this, so several changes in one moment make one beacon.
BEACON_SOON_S = 1.0
#: A beacon the radio could not send (not connected yet, e.g. just after a start) is tried again this soon,
#: not a whole beacon_s later: until it goes out no neighbour routes through us.
BEACON_RETRY_S = 5.0


# ---------------------------------------------------------------------------- what the engine needs
class RadioPort(Protocol):
    """The mesh as the engine uses it (edge/radio.py implements it with the meshtastic library)."""

    def send_relay(self, dest: int | None, payload: bytes) -> None:
        """A port-300 packet to direct neighbour ``dest`` (a PKI DM, hop_limit 0, no want_ack), or a
        broadcast with hop_limit 0 when ``dest`` is None.  Raises SiagaError when it cannot be sent."""


@dataclass(frozen=True, slots=True)
class Outbound:
    """A pending report the engine may forward: a carried one (``packet`` as received) or our own."""

    report_id: str
    priority: int
    body: str
    packet: bytes | None
    prev_node: int | None
    #: seconds this post has held it, and whether that was measured by the wall clock (a reboot since)
    held_s: float
    held_wall: bool
    #: the transfer id of its last send and to whom (a retransmission after a restart reuses it)
    xmit: int | None = None
    xmit_node: int | None = None


@dataclass(frozen=True, slots=True)
class OwedCenterAck:
    """Reports of ``origin`` delivered, whose CENTER_ACK we owe the previous hop ``prev_node``."""

    prev_node: int
    origin: str
    committed_ts: float
    report_ids: tuple[str, ...]
    xmit: int | None


@dataclass(frozen=True, slots=True)
class OwedReply:
    """A staff reply to send on toward ``origin`` via ``next_node`` (the report's previous hop here)."""

    cmd_id: str
    origin: str
    report_id: str
    text: str
    next_node: int
    xmit: int | None


@dataclass(frozen=True, slots=True)
class Received:
    outcome: int  # codec.ACCEPTED | REDUNDANT | REFUSED
    parked: bool = False


class CustodyStore(Protocol):
    """What the engine needs of the post's store (edge/store.py).  Every method commits before it returns."""

    def relay_outbound(self, limit: int, exclude: Collection[str]) -> Sequence[Outbound]:
        """Pending reports to forward, not parked, life-safety first then oldest."""

    def relay_record_send(self, report_id: str, node: int) -> int:
        """The transfer id for sending ``report_id`` to ``node``: the last one if it went to ``node``
        (a retransmission), else a new one from the persisted counter, recorded in the same commit."""

    def relay_receive(
        self, payload: bytes, packet: codec.ReportPacket, prev_node: int, prev_post: str, max_hops: int
    ) -> Received:
        """Commit a carried report (keyed by report id: the exact seen-set) or find it already there."""

    def relay_passed(self, xmits: Sequence[int], node: int) -> list[str]:
        """Custody of these transfers passed to ``node``: reports → ``sent`` (next hop ``node``), owed center
        acks → done.  Returns the report ids that changed."""

    def relay_center_ack(self, report_ids: Sequence[str], committed_at: datetime) -> list[str]:
        """The center committed these: → ``delivered``; a CENTER_ACK owed to each carried one's previous
        hop, in the same commit.  Returns our own (origin) reports that changed now."""

    def relay_owed(self, limit: int) -> Sequence[OwedCenterAck]: ...

    def relay_owed_assign(self, prev_node: int, report_ids: Sequence[str]) -> int:
        """A transfer id for a CENTER_ACK of these reports to ``prev_node`` (recorded in the same commit)."""

    def relay_held_count(self) -> int:
        """Reports held for other posts (carried, not yet passed on or delivered)."""

    def relay_reply_put(self, cmd_id: str, origin: str, report_id: str, text: str, *, own: bool) -> str:
        """Commit a staff reply by ``cmd_id`` (the seen-set); returns its state ('pending', 'failed',
        'arrived' for ours; an existing row's state for a redelivered copy)."""

    def relay_reply_handed(self, cmd_id: str) -> None:
        """Ours, handed to the radio: a redelivered copy is not handed again."""

    def relay_replies_out(self, limit: int) -> Sequence[OwedReply]: ...

    def relay_reply_assign(self, cmd_id: str) -> int:
        """The transfer id of this reply's send (allocated once, in the same commit)."""


@dataclass(frozen=True, slots=True)
class RelaySettings:
    beacon_s: float = 600.0
    retry_s: float = 30.0
    cack_delay_s: float = 2.0
    airtime_cap: float = 0.25
    max_hops: int = 16
    #: a neighbour skipped after 3 misses is tried again after this long at the latest
    skip_s: float = 900.0


@dataclass
class _Flight:
    xmit: int
    kind: str  # "report" | "center_ack" | "reply"
    report_ids: tuple[str, ...]
    node: int
    payload: bytes
    attempts: int = 1
    due: float = 0.0
    life_safety: bool = False
    #: a report's own record and when its packet was stamped: a retransmission is stamped again, so the
    #: time it waited for the retry counts in its age / transit (the center dates the report by them)
    out: Outbound | None = None
    stamped_at: float = 0.0


@dataclass
class _Owed:
    first_at: float
    items: set[tuple[int, int]] = field(default_factory=set)


class Engine:
    """One post's custody engine (see the module docstring)."""

    def __init__(
        self,
        *,
        post_id: str,
        store: CustodyStore,
        radio: RadioPort,
        settings: RelaySettings,
        key: bytes,
        key_epoch: int = 0,
        forward: bool = True,
        relay_role: bool = False,
        uplink_connected: Callable[[], bool] = lambda: False,
        on_delivered: Callable[[list[str], datetime], None] | None = None,
        on_accepted: Callable[[list[str]], None] | None = None,
        on_reply: Callable[[codec.Reply], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.post_id = post_id
        self.store = store
        self.radio = radio
        self.settings = settings
        self._key = key
        self._key_epoch = key_epoch
        #: False at a post with an uplink of its own: its store drains over MQTT, never over the mesh
        self.forward = forward
        self.relay_role = relay_role
        self._uplink_connected = uplink_connected
        self._on_delivered = on_delivered
        self._on_accepted = on_accepted
        self._on_reply = on_reply
        self.clock = clock
        self.rng = rng or random.Random()
        self.routes = Routes(
            beacon_s=settings.beacon_s,
            max_hops=settings.max_hops,
            skip_s=settings.skip_s,
            own_tag=codec.post_tag(post_id),
        )
        self._via = 0
        self.budget = AirtimeBudget(settings.airtime_cap)
        self._inbox: queue.Queue[tuple[int, bytes, float | None] | None] = queue.Queue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flights: dict[int, _Flight] = {}
        self._heap: list[tuple[float, int]] = []
        self._owed: dict[int, _Owed] = {}
        self._metric: int | None = None
        self._route_seq = 0
        self._beacon_at: float | None = None
        self._drain_at = 0.0
        self._held = 0
        self.counters: dict[str, int] = {}
        self._snapshot: dict[str, Any] = {}
        self._snapshot_lock = threading.Lock()

    # ------------------------------------------------------------------ any thread
    def feed(self, from_node: int, payload: bytes, snr: float | None = None) -> None:
        """A port-300 packet heard by the radio: queued, handled on the engine's thread (never blocks)."""
        self._inbox.put((from_node, bytes(payload), snr))
        self._wake.set()

    def wake(self) -> None:
        """Something changed (a report stored, the uplink came or went): look again now."""
        self._drain_at = 0.0
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def idle(self) -> bool:
        """Nothing in flight, no CACK owed, nothing queued (tests wait for this)."""
        return not self._flights and not self._owed and self._inbox.empty()

    def snapshot(self) -> dict[str, Any]:
        """For `siaga status` and the heartbeat: neighbours, route, held, parked, airtime (a copy)."""
        with self._snapshot_lock:
            return dict(self._snapshot)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.clock()
            try:
                deadline = self.step(now)
            except Exception:
                self._count("errors")
                log.exception("relay: step failed; continuing")
                deadline = now + 1.0
            self._wake.wait(max(0.0, min(deadline - self.clock(), IDLE_S)))
            self._wake.clear()

    # ------------------------------------------------------------------ the engine's thread
    def step(self, now: float) -> float:
        """Handle what arrived, do what is due at ``now``; return when something is due next."""
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._handle(now, *item)
        for gone in self.routes.expire(now):
            log.info(
                "relay: neighbour %s (!%08x) not heard for %.0f s: gone", gone.post_id, gone.node, now - gone.heard_at
            )
        self._check_metric(now)
        self._retry_due(now)
        self._flush_cacks(now, force=False)
        if self._beacon_at is not None and now >= self._beacon_at:
            self._send_beacon(now)
        if now >= self._drain_at:
            self._drain_at = now + IDLE_S
            self._send_owed_center_acks(now)
            self._send_replies(now)
            if self.forward:
                self._drain(now)
        self._update_snapshot(now)
        return self._next_deadline(now)

    def _next_deadline(self, now: float) -> float:
        times = [now + IDLE_S, self._drain_at]
        if self._beacon_at is not None:
            times.append(self._beacon_at)
        if self._heap:
            times.append(self._heap[0][0])
        times.extend(o.first_at + self.settings.cack_delay_s for o in self._owed.values())
        expiry = self.routes.next_expiry()
        if expiry is not None:
            times.append(expiry + 0.001)
        return min(times)

    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def _jitter(self, seconds: float) -> float:
        return seconds * self.rng.uniform(1 - JITTER, 1 + JITTER)

    # ------------------------------------------------------------------ inbound
    def _handle(self, now: float, from_node: int, payload: bytes, snr: float | None) -> None:
        try:
            kind = codec.message_type(payload)
            if kind != codec.TYPE_BEACON:
                self.routes.touch(from_node, now)
            if kind == codec.TYPE_REPORT:
                self._on_report(now, from_node, payload)
            elif kind == codec.TYPE_CUSTODY_ACK:
                self._on_cack(now, from_node, codec.decode_cack(payload))
            elif kind == codec.TYPE_BEACON:
                beacon = codec.decode_beacon(payload)
                if beacon.post_id == self.post_id:
                    self._count("rx.own_beacon")  # another node configured with our id, or an echo
                    return
                self.routes.heard(from_node, beacon, snr, now)
                self._count("rx.beacon")
            elif kind == codec.TYPE_CENTER_ACK:
                self._on_center_ack(now, from_node, codec.decode_center_ack(payload))
            elif kind == codec.TYPE_REPLY:
                self._on_reply_packet(now, from_node, codec.decode_reply(payload))
        except ProtocolError as exc:
            self._count(f"rx.bad.{exc.reason}")
            log.warning("relay: packet from !%08x refused (%s): %s", from_node, exc.reason, str(exc)[:120])

    def _on_report(self, now: float, from_node: int, payload: bytes) -> None:
        packet = codec.parse_report(payload)
        origin = packet.report.post_id
        prev_post = origin if packet.hops == 0 else self.routes.by_post(from_node) or f"!{from_node:08x}"
        try:
            got = self.store.relay_receive(payload, packet, from_node, prev_post, self.settings.max_hops)
        except SiagaError as exc:
            log.error("relay: cannot store report %s from %s (%s): REFUSED", packet.report.report_id, prev_post, exc)
            got = Received(codec.REFUSED)
        self._owe(now, from_node, packet.xmit, got.outcome)
        self._count(f"rx.report.{codec.OUTCOMES[got.outcome]}")
        if got.outcome == codec.ACCEPTED:
            log.info(
                "relay: took custody of %s (origin %s, via %s, hop %d)",
                packet.report.report_id,
                origin,
                prev_post,
                packet.hops + 1,
            )
            if got.parked:
                self._count("parked")
                log.error(
                    "RELAY ALARM: report %s of %s has made %d custody hops (limit %d): parked here, not sent on",
                    packet.report.report_id,
                    origin,
                    packet.hops + 1,
                    self.settings.max_hops,
                )
            if self._on_accepted is not None:
                self._on_accepted([packet.report.report_id])
            self._drain_at = now

    def _owe(self, now: float, node: int, xmit: int, outcome: int) -> None:
        owed = self._owed.get(node)
        if owed is None:
            owed = self._owed[node] = _Owed(now)
        owed.items.add((xmit, outcome))
        if len(owed.items) >= codec.CACK_MAX_RANGES:
            self._flush_cacks(now, force=True)

    def _flush_cacks(self, now: float, *, force: bool) -> None:
        for node, owed in list(self._owed.items()):
            if not force and now < owed.first_at + self.settings.cack_delay_s:
                continue
            del self._owed[node]
            # CACKs are never held back by the airtime cap: they are what lets the neighbour stop sending
            for payload in codec.encode_cacks(codec.cack_ranges(owed.items)):
                self._transmit(now, node, payload, "cack")

    def _on_cack(self, now: float, from_node: int, ranges: Sequence[codec.CackRange]) -> None:
        passed: list[int] = []
        refused: list[int] = []
        for r in ranges:
            ids = list(r.ids())
            (refused if r.outcome == codec.REFUSED else passed).extend(ids)
        self.routes.answered(from_node)
        if passed:
            changed = self.store.relay_passed(passed, from_node)
            self._count("custody.passed", len(changed))
            if changed:
                log.info("relay: custody of %d reports passed to !%08x", len(changed), from_node)
        for xmit in passed + refused:
            flight = self._flights.get(xmit)
            if flight is not None and flight.node == from_node:
                del self._flights[xmit]
        if refused:
            self._count("custody.refused", len(refused))
            n = self.routes.neighbours.get(from_node)
            if n is not None:
                n.skip_until = now + self.settings.skip_s
            self._drain_at = now

    def _on_center_ack(self, now: float, from_node: int, ack: codec.CenterAck) -> None:
        try:
            mine = self.store.relay_center_ack(ack.report_ids, ack.committed_at)
        except SiagaError as exc:
            log.error("relay: cannot record the center's ack of %d reports (%s)", len(ack.report_ids), exc)
            return  # no CACK: the neighbour sends it again
        self._owe(now, from_node, ack.xmit, codec.ACCEPTED)
        self._count("rx.center_ack")
        done = set(ack.report_ids)
        for xmit, flight in list(self._flights.items()):
            if flight.kind == "report" and done.issuperset(flight.report_ids):
                del self._flights[xmit]  # the center has it: no point sending it again
        if mine:
            log.info("relay: the center has %d of our reports (ack walked back via !%08x)", len(mine), from_node)
            if self._on_delivered is not None:
                self._on_delivered(mine, ack.committed_at)
        self._drain_at = now

    def _on_reply_packet(self, now: float, from_node: int, reply: codec.Reply) -> None:
        own = reply.origin == self.post_id
        try:
            state = self.store.relay_reply_put(reply.cmd_id, reply.origin, reply.report_id, reply.text, own=own)
        except SiagaError as exc:
            log.error("relay: cannot store staff reply %s (%s): REFUSED", reply.cmd_id, exc)
            self._owe(now, from_node, reply.xmit, codec.REFUSED)
            return
        self._count(f"rx.reply.{state}")
        if state == "arrived":
            # ours, not yet handed (new, or a crash came between the commit and the hand-over): hand it now,
            # then record that, and only then CACK — at least once to the radio, never twice for a copy
            log.info("relay: staff reply %s for report %s arrived via !%08x", reply.cmd_id, reply.report_id, from_node)
            if self._on_reply is not None:
                try:
                    self._on_reply(reply)
                except Exception:
                    log.exception("relay: handing staff reply %s to the radio failed", reply.cmd_id)
            try:
                self.store.relay_reply_handed(reply.cmd_id)
            except SiagaError as exc:
                log.error("relay: cannot record staff reply %s as handed (%s)", reply.cmd_id, exc)
                return  # no CACK: the neighbour sends it again
            self._owe(now, from_node, reply.xmit, codec.ACCEPTED)
            return
        if state == "failed":
            log.error(
                "relay: staff reply %s for %s: report %s is not held here, no way back to the origin",
                reply.cmd_id,
                reply.origin,
                reply.report_id,
            )
        self._owe(now, from_node, reply.xmit, codec.ACCEPTED if state == "pending" else codec.REDUNDANT)
        self._drain_at = now

    # ------------------------------------------------------------------ outbound
    def _transmit(self, now: float, dest: int | None, payload: bytes, what: str) -> bool:
        ms = airtime_ms(len(payload), pki=dest is not None)
        try:
            self.radio.send_relay(dest, payload)
        except SiagaError as exc:
            self._count(f"tx.failed.{what}")
            log.warning("relay: %s to %s not sent: %s", what, "all" if dest is None else f"!{dest:08x}", exc)
            return False
        self.budget.spend(now, ms)
        self._count(f"tx.{what}")
        return True

    def _check_metric(self, now: float) -> None:
        connected = self._uplink_connected()
        # a post that drains over MQTT only must not draw reports while its uplink is down: it would hold
        # them without passing them on, so it advertises no route until the uplink is back
        metric = self.routes.metric(connected) if self.forward or connected else codec.METRIC_NONE
        best = self.routes.best() if 0 < metric < codec.METRIC_NONE else None
        via = codec.post_tag(best.post_id) if best is not None else 0
        if via != self._via and metric == self._metric:
            # same metric through another neighbour: say so soon (split horizon depends on it)
            self._via = via
            soon = now + self.rng.uniform(0, BEACON_SOON_S)
            self._beacon_at = soon if self._beacon_at is None else min(self._beacon_at, soon)
        self._via = via
        if metric != self._metric:
            if self._metric is not None:
                log.info("relay: our metric %s → %s", self._metric, metric)
            self._metric = metric
            self._route_seq = (self._route_seq + 1) & 0xFFFF
            soon = now + self.rng.uniform(0, BEACON_SOON_S)
            self._beacon_at = soon if self._beacon_at is None else min(self._beacon_at, soon)
            self._drain_at = now

    def _send_beacon(self, now: float) -> None:
        assert self._metric is not None
        beacon = codec.Beacon(
            post_id=self.post_id,
            metric=self._metric,
            uplink=self._metric == 0,
            relay=self.relay_role,
            route_seq=self._route_seq,
            held=self._held,
            via=self._via,
        )
        payload = codec.encode_beacon(beacon)
        if not self.budget.allows(now, airtime_ms(len(payload), pki=False)):
            self._count("tx.beacon_over_cap")
            self._beacon_at = self.budget.next_room_at(now, airtime_ms(len(payload), pki=False))
            return
        if not self._transmit(now, None, payload, "beacon"):
            self._beacon_at = now + min(BEACON_RETRY_S, self.settings.beacon_s)
            return
        self._beacon_at = now + self._jitter(self.settings.beacon_s)

    def _retry_due(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _due, xmit = heapq.heappop(self._heap)
            flight = self._flights.get(xmit)
            if flight is None or flight.due > now:
                continue  # answered, or rescheduled
            self.routes.missed(flight.node, now)
            neighbour = self.routes.neighbours.get(flight.node)
            skipped = neighbour is not None and neighbour.skip_until > now
            if flight.kind == "report" and (skipped or neighbour is None):
                # give it back: the next drain picks the next best neighbour
                del self._flights[xmit]
                self._count("tx.gave_up")
                self._drain_at = now
                continue
            ms = airtime_ms(len(flight.payload), pki=True)
            if not self.budget.allows(now, ms):
                self._schedule(flight, self.budget.next_room_at(now, ms))
                continue
            flight.attempts += 1
            self._count("tx.retry")
            if flight.out is not None:
                waited = now - flight.stamped_at
                try:
                    fresh = self._packet(replace(flight.out, held_s=flight.out.held_s + waited))
                    flight.payload = codec.with_xmit(fresh, flight.xmit)
                except ProtocolError as exc:  # the first stamp encoded; keep it rather than stall
                    log.warning(
                        "relay: could not restamp report %s (%s); resent as first sent", flight.out.report_id, exc
                    )
            self._transmit(now, flight.node, flight.payload, flight.kind)
            self._schedule(flight, now + self._retry_delay(flight.attempts))

    def _retry_delay(self, attempts: int) -> float:
        return self._jitter(min(self.settings.retry_s * 2 ** (attempts - 1), RETRY_MAX_S))

    def _schedule(self, flight: _Flight, due: float) -> None:
        flight.due = due
        heapq.heappush(self._heap, (due, flight.xmit))

    def _in_flight_to(self, node: int) -> int:
        return sum(1 for f in self._flights.values() if f.node == node)

    def _drain(self, now: float) -> None:
        metric = self._metric if self._metric is not None else codec.METRIC_NONE
        busy = {rid for f in self._flights.values() if f.kind == "report" for rid in f.report_ids}
        for out in self.store.relay_outbound(DRAIN_BATCH, busy):
            exclude = {out.prev_node} if out.prev_node is not None else set()
            hop = self.routes.next_hop(metric, exclude=exclude, now=now)
            if hop is None:
                continue  # held: no neighbour is strictly closer to an uplink
            if self._in_flight_to(hop.node) >= WINDOW_PER_NEIGHBOUR:
                continue
            try:
                payload = self._packet(out)
            except ProtocolError as exc:
                self._count("tx.unencodable")
                log.error("relay: report %s cannot be encoded (%s); it stays here", out.report_id, exc)
                continue
            ms = airtime_ms(len(payload), pki=True)
            if not self.budget.allows(now, ms):
                self._count("tx.over_cap")
                self._drain_at = self.budget.next_room_at(now, ms)
                return
            xmit = self.store.relay_record_send(out.report_id, hop.node)
            payload = codec.with_xmit(payload, xmit)
            if not self._transmit(now, hop.node, payload, "report"):
                self._drain_at = now + self.settings.retry_s
                return
            flight = _Flight(
                xmit,
                "report",
                (out.report_id,),
                hop.node,
                payload,
                life_safety=out.priority <= 1,
                out=out,
                stamped_at=now,
            )
            self._flights[xmit] = flight
            self._schedule(flight, now + self._retry_delay(1))

    def _packet(self, out: Outbound) -> bytes:
        # The packet reaches the neighbour one time on air after it leaves: counted here (the size does not
        # depend on the stamp), so the center's date of a carried report does not drift by ~1 s per hop.
        if out.packet is not None:
            on_air = airtime_ms(len(out.packet), pki=True) / 1000.0
            return codec.forward_report(out.packet, held_s=out.held_s + on_air, wall=out.held_wall, xmit=0)
        report = Report.from_dict(json.loads(out.body))
        first = self._encode_own(report, out.held_s, out.held_wall)
        on_air = airtime_ms(len(first), pki=True) / 1000.0
        return self._encode_own(report, out.held_s + on_air, out.held_wall)

    def _encode_own(self, report: Report, held_s: float, wall: bool) -> bytes:
        age = codec.observation_age(report, held_s)
        relay_report = codec.from_report(report, age_s=age, age_wall=wall)
        return codec.encode_report(relay_report, self._key, key_epoch=self._key_epoch)

    def _send_owed_center_acks(self, now: float) -> None:
        busy = {f.xmit for f in self._flights.values() if f.kind == "center_ack"}
        for owed in self.store.relay_owed(256):
            if owed.xmit is not None and owed.xmit in busy:
                continue
            committed = datetime.fromtimestamp(owed.committed_ts, UTC)
            if owed.xmit is not None:
                chunks = [(owed.xmit, owed.report_ids)]
            else:
                chunks = []
                for _p, ids in codec.encode_center_acks(iter(range(1 << 30)), owed.origin, committed, owed.report_ids):
                    chunks.append((self.store.relay_owed_assign(owed.prev_node, ids), ids))
            for xmit, ids in chunks:
                payload = codec.encode_center_ack(codec.CenterAck(xmit, owed.origin, committed, tuple(ids)))
                if not self.budget.allows(now, airtime_ms(len(payload), pki=True)):
                    self._count("tx.over_cap")
                    return
                self._transmit(now, owed.prev_node, payload, "center_ack")
                flight = _Flight(xmit, "center_ack", tuple(ids), owed.prev_node, payload)
                self._flights[xmit] = flight
                busy.add(xmit)
                self._schedule(flight, now + self._retry_delay(1))

    def _send_replies(self, now: float) -> None:
        """Staff replies walk back as center acks do: to the report's previous hop, custody per hop."""
        busy = {f.xmit for f in self._flights.values() if f.kind == "reply"}
        for owed in self.store.relay_replies_out(64):
            if owed.xmit is not None and owed.xmit in busy:
                continue
            try:
                payload = codec.encode_reply(codec.Reply(0, owed.origin, owed.report_id, owed.cmd_id, owed.text))
            except ProtocolError as exc:  # the center checks the size before it queues one: a bug, loudly
                self._count("tx.unencodable")
                log.error("relay: staff reply %s cannot be encoded (%s); it stays here", owed.cmd_id, exc)
                continue
            if not self.budget.allows(now, airtime_ms(len(payload), pki=True)):
                self._count("tx.over_cap")
                return
            xmit = owed.xmit if owed.xmit is not None else self.store.relay_reply_assign(owed.cmd_id)
            payload = codec.encode_reply(codec.Reply(xmit, owed.origin, owed.report_id, owed.cmd_id, owed.text))
            self._transmit(now, owed.next_node, payload, "reply")
            flight = _Flight(xmit, "reply", (owed.cmd_id,), owed.next_node, payload)
            self._flights[xmit] = flight
            busy.add(xmit)
            self._schedule(flight, now + self._retry_delay(1))

    # ------------------------------------------------------------------ status
    def _update_snapshot(self, now: float) -> None:
        try:
            self._held = self.store.relay_held_count()
        except SiagaError:
            pass
        best = self.routes.next_hop(self._metric or codec.METRIC_NONE, exclude=set(), now=now)
        snap = {
            "metric": self._metric,
            "route": None
            if self._metric in (None, codec.METRIC_NONE)
            else ("uplink" if self._metric == 0 else (best.post_id if best else None)),
            "neighbours": [
                {
                    "post_id": n.post_id,
                    "node": f"!{n.node:08x}",
                    "metric": n.metric,
                    "relay": n.relay,
                    "heard_s_ago": round(now - n.heard_at, 1),
                    "snr": n.snr,
                    "misses": n.misses,
                    "skipped": n.skip_until > now,
                }
                for n in sorted(self.routes.neighbours.values(), key=lambda n: (n.metric, n.post_id))
            ],
            "held_for_others": self._held,
            "in_flight": len(self._flights),
            "airtime_share": round(self.budget.share(now), 4),
            "airtime_cap": self.settings.airtime_cap,
            "counters": dict(self.counters),
        }
        with self._snapshot_lock:
            self._snapshot = snap
