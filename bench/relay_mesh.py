"""The custody relay vs the do-it-yourself way, side by side on one simulated mesh with the same loss.

Run: .venv/bin/python bench/relay_mesh.py [--quick] [--reports N] [--seed S] [--loss 0,0.1,0.3]
     (or .venv/bin/python -m bench --only relay)

**Topology.**  A chain of four nodes, one radio link between each pair of neighbours, the same loss on
every link (0 / 10 / 30 %, drawn per transmission and per receiver, ACKs included):

    desa-a ── desa-b ── desa-c ── kota (the only uplink)

Reports start at desa-c (1 hop to the uplink post), desa-b (2 hops) and desa-a (3 hops), at the same
moments for both methods (a seeded Poisson schedule), texts and categories from the shared corpus.

**Ours**: the real custody engines (relay/engine.py, default RelaySettings: beacons every 600 s, retry 30 s
doubling to 15 min, CACKs batched for 2 s, the 25 % cap) over real Store files (edge/store.py, SQLite,
``synchronous=FULL``) — the code a post runs, driven by :meth:`relay.engine.Engine.step` on a simulated
clock.  Behind kota a fake center claims what kota's store holds, verifies each carried packet's tag with
the origin's key, counts arrivals per report id and acks after ``UPLINK_RTT_S``; the center's ack then walks
back over the mesh to the origin (the officer's "112 PUSAT TERIMA").

**DIY** (what forum recipes do): each post's script forwards the officer's text as a Meshtastic text DM
with want_ack to the next post along the chain; the firmware is all the reliability there is — it
transmits up to 3 times, the next try when no ACK came within 7–17 s (../shared/RELAY.md), the
destination's radio ACKs every copy (the ACK can be lost too) and hands a copy it has already seen
(same sender, same packet id) to nobody; after the 3rd try the sender gets a NAK and the recipe does
nothing more.  kota, with the uplink, counts what arrives.

**The air** (both methods, one model, the same as devkit/sim/mesh.py's): time on air by the Semtech
formula (siaga/airtime.py, LONG_FAST; our port-300 packets as PKI DMs, beacons as broadcasts, DIY texts as
PKI DMs, firmware ACKs as plain routing packets); **one channel** for the connected chain — a node waits
until it is free, so a packet's latency includes queueing behind everyone else's; a packet arrives when
its transmission ends.  What the model leaves out: collisions and hidden terminals beyond that one
serialised channel (and the spatial reuse a real chain would get: desa-a and kota cannot hear each
other); capture effect, SNR-dependent loss, asymmetric links; the Pi's CPU and SQLite time (zero in
simulated time); the MQTT leg (``UPLINK_RTT_S``, the same for both, not in the delivery time).  DIY gets
its best case: its DMs are modelled with hop_limit 0 (a forum script's default hop_limit 3 would also make
every other neighbour rebroadcast each DM — more airtime, no more delivery in a chain), and the texts carry
nothing but the officer's words (no id, category, position, or origin post).

**Measured**, per loss rate: delivery ratio (at kota; ours also to the origin's receipt); airtime per
delivered report, all nodes, by kind (ours: reports + CACKs + center acks + beacons, counted from the first
report to the end of the run; DIY: every DM try and every firmware ACK), also per hop; time from the
report stored at its origin to its arrival at kota, by hop count (median, p95; DIY over what arrived);
duplicates at the end (ours: a report the uplink post offered the center twice; DIY: one text handed to
kota's script twice); ours' largest share of channel time of one node in any hour, against the cap.
"""

from __future__ import annotations

import argparse
import base64
import heapq
import json
import random
import sys
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.store import Store  # noqa: E402
from relay.budget import airtime_ms  # noqa: E402
from relay.engine import Engine, RelaySettings  # noqa: E402
from siaga.airtime import LONG_FAST, frame_bytes, routing_ack_data, text_data, time_on_air_ms  # noqa: E402
from siaga.report import Casualties, Report, mesh_report_id  # noqa: E402
from sync import compact as codec  # noqa: E402

SHARED_CORPUS = ROOT.parent / "shared" / "corpus" / "reports_sample.jsonl"
REPO_CORPUS = ROOT / "tests" / "data" / "reports_sample.jsonl"
SECRET = b"bench-regency-relay-secret-32-by"
EPOCH_WALL = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
CHAIN = ("desa-a", "desa-b", "desa-c", "kota")
#: origin → custody hops to the uplink post
HOPS = {"desa-c": 1, "desa-b": 2, "desa-a": 3}
#: the MQTT leg kota ↔ center (publish → center commit → ack back), the same for both methods
UPLINK_RTT_S = 2.0
#: before the first report the network is in its steady state: every node has heard the beacons that give
#: it its route (at 30 % loss that can take several beacon periods), and at least this long has passed
WARMUP_S = 120.0
WARMUP_MAX_S = 12 * 3600.0
#: firmware want_ack: transmissions, and the wait for an ACK before the next (../shared/RELAY.md)
WANT_ACK_TRIES = 3
RETRY_S = (7.0, 17.0)
#: SNR every link reports (no weak-link penalty in the routing metric)
SNR_DB = 6.0
KIND_NAMES = {
    codec.TYPE_REPORT: "report",
    codec.TYPE_CUSTODY_ACK: "cack",
    codec.TYPE_BEACON: "beacon",
    codec.TYPE_CENTER_ACK: "center_ack",
}


# ---------------------------------------------------------------------------- the air (both methods)
class Air:
    """Discrete events on one shared channel.  ``t`` is simulated seconds; nothing here sleeps."""

    def __init__(self, loss: float, seed: int) -> None:
        self.t = 0.0
        self.loss = loss
        self.rng = random.Random(seed)
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.busy_until = 0.0
        #: every transmission: (start, node, kind, airtime s)
        self.log: list[tuple[float, str, str, float]] = []

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (max(when, self.t), self._seq, fn))

    def transmit(self, node: str, kind: str, air_s: float, receivers: list[str], arrive: Callable[[str], None]) -> None:
        """``node`` sends when the channel is free; each receiver hears it at the end unless the link loses it."""
        start = max(self.t, self.busy_until)
        end = start + air_s
        self.busy_until = end
        self.log.append((start, node, kind, air_s))
        for other in receivers:
            if self.rng.random() < self.loss:
                continue
            self.at(end, lambda other=other: arrive(other))  # type: ignore[misc]

    def run(self, until: float, done: Callable[[], bool] = lambda: False) -> None:
        while self._heap and self._heap[0][0] <= until:
            when, _seq, fn = heapq.heappop(self._heap)
            self.t = when
            fn()
            if done():
                return
        if until != float("inf"):
            self.t = max(self.t, until)

    def empty(self) -> bool:
        return not self._heap


def neighbours(name: str) -> list[str]:
    i = CHAIN.index(name)
    return [CHAIN[j] for j in (i - 1, i + 1) if 0 <= j < len(CHAIN)]


# ---------------------------------------------------------------------------- the workload
@dataclass(frozen=True)
class Job:
    n: int
    at: float
    origin: str
    text: str
    category: str
    casualties: dict[str, int]


def _corpus() -> list[dict[str, Any]]:
    path = SHARED_CORPUS if SHARED_CORPUS.exists() else REPO_CORPUS
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def workload(per_origin: int, rate_per_h: float, seed: int) -> list[Job]:
    """``per_origin`` reports at each origin, Poisson arrivals at ``rate_per_h`` over the three together."""
    rng = random.Random(seed)
    corpus = _corpus()
    origins = [o for o in HOPS for _ in range(per_origin)]
    rng.shuffle(origins)
    jobs, t = [], 0.0
    for n, origin in enumerate(origins):
        row = corpus[n % len(corpus)]
        jobs.append(Job(n, t, origin, row["text"], row["category"], row.get("casualties") or {}))
        t += rng.expovariate(rate_per_h / 3600.0)
    return jobs


def handset(origin: str) -> int:
    return 0xA1000000 | (zlib.crc32(origin.encode()) & 0xFFFFFF)


def make_report(job: Job, when: datetime) -> Report:
    node = handset(job.origin)
    return Report(
        report_id=mesh_report_id(node, 0x5EED0000 + job.n, when),
        post_id=job.origin,
        origin=f"!{node:08x}",
        source="meshtastic",
        text_raw=job.text,
        observed_at=when,
        stored_at=when,
        category=job.category,
        urgency="Immediate",
        severity="Moderate",
        certainty="Observed",
        lat=-9.3853 + job.n * 0.0011,
        lon=124.3544 - job.n * 0.0007,
        accuracy_m=6.0,
        loc_source="handset-last-fixed",
        casualties=Casualties.from_dict(job.casualties),
        mesh_packet_id=0x5EED0000 + job.n,
    ).validate()


# ---------------------------------------------------------------------------- ours: real engines, real stores
class SimClock:
    """The store's clock on simulated time (one boot: nothing restarts in this benchmark)."""

    def __init__(self, air: Air) -> None:
        self.air = air

    def now(self) -> datetime:
        return EPOCH_WALL + timedelta(seconds=self.air.t)

    def boottime(self) -> float:
        return 100.0 + self.air.t

    def boot_id(self) -> str:
        return "boot-1"

    def source(self) -> str:
        return "ntp"


@dataclass
class _Post:
    name: str
    num: int
    store: Store
    engine: Engine
    wake_at: float | None = None


class Ours:
    def __init__(self, air: Air, workdir: Path, settings: RelaySettings, seed: int) -> None:
        self.air = air
        self.settings = settings
        self.posts: dict[str, _Post] = {}
        self.by_num: dict[int, str] = {}
        #: report id → when it was stored at its origin / arrived at kota / its receipt reached the origin
        self.generated: dict[str, tuple[float, str]] = {}
        self.arrived: dict[str, float] = {}
        self.receipt: dict[str, float] = {}
        self.center_arrivals: Counter[str] = Counter()
        self.center_rejected = 0
        for i, name in enumerate(CHAIN):
            num = 0x20000000 + i + 1
            store = Store.open(workdir / f"{name}.db", clock=SimClock(air))
            engine = Engine(
                post_id=name,
                store=store,
                radio=_Port(self, name),
                settings=settings,
                key=codec.derive_post_key(SECRET, name),
                forward=name != "kota",
                uplink_connected=(lambda: True) if name == "kota" else (lambda: False),
                on_delivered=self._receipt(name),
                on_accepted=self._arrival if name == "kota" else None,
                clock=lambda: air.t,
                rng=random.Random(seed * 31 + i),
            )
            self.posts[name] = _Post(name, num, store, engine)
            self.by_num[num] = name
            self.wake(name, 0.0)

    def _receipt(self, name: str) -> Callable[[list[str], datetime], None]:
        def record(ids: list[str], _at: datetime) -> None:
            for rid in ids:
                self.receipt.setdefault(rid, self.air.t)

        return record

    def _arrival(self, ids: list[str]) -> None:
        for rid in ids:
            self.arrived.setdefault(rid, self.air.t)

    def close(self) -> None:
        for post in self.posts.values():
            post.store.close()

    # ---------------------------------------------------------------- driving the engines
    def wake(self, name: str, when: float) -> None:
        post = self.posts[name]
        when = max(when, self.air.t)
        if post.wake_at is not None and post.wake_at <= when:
            return
        post.wake_at = when
        self.air.at(when, lambda: self._step(name, when))

    def _step(self, name: str, scheduled: float) -> None:
        post = self.posts[name]
        if post.wake_at != scheduled:
            return  # superseded by an earlier wake
        post.wake_at = None
        deadline = post.engine.step(self.air.t)
        if name == "kota":
            self._center_claim()
        self.wake(name, max(deadline, self.air.t + 0.001))

    def send(self, src: str, dest: int | None, payload: bytes) -> None:
        kind = KIND_NAMES.get(payload[1], f"type{payload[1]}")
        air_s = airtime_ms(len(payload), pki=dest is not None) / 1000.0
        if dest is None:
            receivers = neighbours(src)
        else:
            to = self.by_num[dest]
            receivers = [to] if to in neighbours(src) else []
        src_num = self.posts[src].num

        def arrive(to: str) -> None:
            self.posts[to].engine.feed(src_num, payload, SNR_DB)
            self.wake(to, self.air.t)

        self.air.transmit(src, kind, air_s, receivers, arrive)

    # ---------------------------------------------------------------- the fake center behind kota
    def _center_claim(self) -> None:
        store = self.posts["kota"].store
        rows = store.claim(100)
        if not rows:
            return
        ids = []
        for row in rows:
            carried = json.loads(row.body).get("relay")
            if carried is not None:
                try:
                    codec.decode_report(
                        base64.b64decode(carried["packet"]),
                        lambda post, epoch: codec.derive_post_key(SECRET, post, epoch),
                    )
                except Exception:  # any refusal is a rejection here, as at the real center
                    self.center_rejected += 1
                    store.reject(row.report_id, "relay_tag")
                    continue
            self.center_arrivals[row.report_id] += 1
            ids.append(row.report_id)

        def ack() -> None:
            store.ack(ids, sent=ids)
            self.posts["kota"].engine.wake()
            self.wake("kota", self.air.t)

        if ids:
            self.air.at(self.air.t + UPLINK_RTT_S, ack)

    # ---------------------------------------------------------------- the workload
    def put(self, job: Job) -> None:
        post = self.posts[job.origin]
        report = make_report(job, SimClock(self.air).now())
        post.store.put(report)
        self.generated[report.report_id] = (self.air.t, job.origin)
        post.engine.wake()
        self.wake(job.origin, self.air.t)

    def settled(self) -> bool:
        if len(self.receipt) < len(self.generated) or len(self.arrived) < len(self.generated):
            return False
        return all(p.engine.idle() and p.store.relay_summary()["center_acks_owed"] == 0 for p in self.posts.values())


class _Port:
    def __init__(self, ours: Ours, name: str) -> None:
        self.ours = ours
        self.name = name

    def send_relay(self, dest: int | None, payload: bytes) -> None:
        self.ours.send(self.name, dest, payload)


# ---------------------------------------------------------------------------- DIY: text DMs with want_ack
ACK_AIR_S = time_on_air_ms(frame_bytes(routing_ack_data()), LONG_FAST) / 1000.0


class Diy:
    def __init__(self, air: Air, rng: random.Random) -> None:
        self.air = air
        self.rng = rng
        self._ids = 0
        self.seen: dict[str, set[tuple[str, int]]] = {n: set() for n in CHAIN}
        self.acked: set[tuple[str, int]] = set()
        self.generated: dict[int, tuple[float, str]] = {}
        self.arrivals: Counter[int] = Counter()
        self.arrived: dict[int, float] = {}
        self.naks = 0

    def put(self, job: Job) -> None:
        self.generated[job.n] = (self.air.t, job.origin)
        self._dm(job.origin, job.n, job.text)

    def _dm(self, src: str, n: int, text: str) -> None:
        """The post's script: sendText(text, destinationId=next post, wantAck=True)."""
        self._ids += 1
        pid = self._ids
        dest = CHAIN[CHAIN.index(src) + 1]
        air_s = time_on_air_ms(frame_bytes(text_data(text), pki=True), LONG_FAST) / 1000.0

        def attempt(k: int) -> None:
            if (src, pid) in self.acked:
                return
            if k == WANT_ACK_TRIES:
                self.naks += 1  # MAX_RETRANSMIT: the recipe has nothing more to do
                return
            self.air.transmit(src, "dm", air_s, [dest], lambda to: self._heard(to, src, pid, n, text))
            end = self.air.busy_until
            self.air.at(end + self.rng.uniform(*RETRY_S), lambda: attempt(k + 1))

        attempt(0)

    def _heard(self, at: str, src: str, pid: int, n: int, text: str) -> None:
        # the destination's radio ACKs every copy, a duplicate too, over the same lossy link
        self.air.transmit(at, "ack", ACK_AIR_S, [src], lambda _to: self.acked.add((src, pid)))
        if (src, pid) in self.seen[at]:
            return  # the firmware has seen this (sender, packet id): not handed to the script again
        self.seen[at].add((src, pid))
        if at == CHAIN[-1]:
            self.arrivals[n] += 1
            self.arrived.setdefault(n, self.air.t)
        else:
            self._dm(at, n, text)


# ---------------------------------------------------------------------------- one loss rate, both methods
def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return round(values[lo] + (values[hi] - values[lo]) * (k - lo), 1)


def _latency(generated: dict[Any, tuple[float, str]], arrived: dict[Any, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for origin, hops in sorted(HOPS.items(), key=lambda kv: kv[1]):
        lat = [arrived[k] - t0 for k, (t0, o) in generated.items() if o == origin and k in arrived]
        sent = sum(1 for _t, o in generated.values() if o == origin)
        out[str(hops)] = {
            "delivered": len(lat),
            "of": sent,
            "p50_s": _pct(lat, 0.5),
            "p95_s": _pct(lat, 0.95),
            "max_s": round(max(lat), 1) if lat else None,
        }
    return out


def _airtime(log: list[tuple[float, str, str, float]], since: float, until: float = float("inf")) -> dict[str, float]:
    by: Counter[str] = Counter()
    for start, _node, kind, air_s in log:
        if since <= start <= until:
            by[kind] += air_s
    return {k: round(v, 1) for k, v in sorted(by.items())}


def _max_hour_share(log: list[tuple[float, str, str, float]], kinds_exempt: set[str]) -> dict[str, float]:
    """Per node, the largest share of any one-hour window (starting at one of its sends) it spent on air."""
    out = {}
    for node in CHAIN:
        sends = [(s, a) for s, n, k, a in log if n == node and k not in kinds_exempt]
        best, j, total = 0.0, 0, 0.0
        for start, air_s in sends:
            while j < len(sends) and sends[j][0] < start + 3600.0:
                total += sends[j][1]
                j += 1
            best = max(best, total)
            total -= air_s
        out[node] = round(best / 3600.0, 4)
    return out


def _hops_delivered(generated: dict[Any, tuple[float, str]], arrived: dict[Any, float]) -> int:
    return sum(HOPS[o] for k, (_t, o) in generated.items() if k in arrived)


def run_ours(jobs: list[Job], loss: float, seed: int, horizon_s: float, workdir: Path) -> dict[str, Any]:
    air = Air(loss, seed)
    settings = RelaySettings()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        ours = Ours(air, Path(tmp), settings, seed)
        try:
            want = {name: HOPS.get(name, 0) for name in CHAIN}
            while air.t < WARMUP_S or any(ours.posts[n].engine.snapshot().get("metric") != m for n, m in want.items()):
                if air.t > WARMUP_MAX_S:
                    raise RuntimeError(f"no steady routes after {WARMUP_MAX_S:.0f} s of warm-up")
                air.run(air.t + 10.0)
            first = air.t
            for job in jobs:
                air.at(first + job.at, lambda job=job: ours.put(job))
            end = first + jobs[-1].at + horizon_s
            while air.t < end and not (air.t > first + jobs[-1].at and ours.settled()):
                air.run(min(air.t + 60.0, end))
            settled = ours.settled()
            # where each report that never reached kota is: (origin, the post that holds it pending)
            stuck = []
            for rid, (_t0, origin) in ours.generated.items():
                if rid not in ours.arrived:
                    holders = [n for n, p in ours.posts.items() if (row := p.store.get(rid)) and row.state == "pending"]
                    stuck.append({"origin": origin, "held_at": holders})
            counters: Counter[str] = Counter()
            for post in ours.posts.values():
                counters.update(post.engine.counters)
        finally:
            ours.close()
    n = len(jobs)
    delivered = len(ours.arrived)
    # counted from the first report to the last thing delivered (a receipt at an origin, or an arrival at
    # kota): a run that ends at the horizon with reports stranded does not charge the idle hours' beacons
    last = max([*ours.receipt.values(), *ours.arrived.values()], default=first)
    by_kind = _airtime(air.log, first, last)
    total = sum(by_kind.values())
    hops = _hops_delivered(ours.generated, ours.arrived)
    beacons_per_h = _airtime(air.log, 0.0).get("beacon", 0.0) / (air.t / 3600.0)
    return {
        "reports": n,
        "delivered": delivered,
        "delivery_ratio": round(delivered / n, 4),
        "receipts_at_origin": len(ours.receipt),
        "receipt_ratio": round(len(ours.receipt) / n, 4),
        "duplicates_at_center": sum(c - 1 for c in ours.center_arrivals.values() if c > 1),
        "center_rejected": ours.center_rejected,
        "undelivered": stuck,
        "redundant_absorbed": counters.get("rx.report.redundant", 0),
        "airtime_s": by_kind,
        "airtime_s_per_report": round(total / delivered, 2) if delivered else None,
        "airtime_s_per_report_hop": round(total / hops, 2) if hops else None,
        "airtime_s_per_report_hop_no_beacons": round((total - by_kind.get("beacon", 0.0)) / hops, 2) if hops else None,
        "beacon_airtime_s_per_h": round(beacons_per_h, 1),
        "latency_s": _latency(ours.generated, ours.arrived),
        "receipt_latency_s": _latency(ours.generated, ours.receipt),
        "max_hour_share": _max_hour_share(air.log, {"cack"}),
        "max_hour_share_all": _max_hour_share(air.log, set()),
        "airtime_cap": settings.airtime_cap,
        "counters": {k: v for k, v in sorted(counters.items()) if k.startswith(("tx.", "rx.report", "custody"))},
        "warmup_s": round(first, 1),
        "counted_s": round(last - first, 1),
        "simulated_s": round(air.t - first, 1),
        "settled": settled,
    }


def run_diy(jobs: list[Job], loss: float, seed: int) -> dict[str, Any]:
    air = Air(loss, seed)
    diy = Diy(air, random.Random(seed + 1))
    for job in jobs:
        air.at(job.at, lambda job=job: diy.put(job))
    air.run(float("inf"))
    n = len(jobs)
    delivered = len(diy.arrived)
    by_kind = _airtime(air.log, 0.0)
    total = sum(by_kind.values())
    hops = _hops_delivered(diy.generated, diy.arrived)
    return {
        "reports": n,
        "delivered": delivered,
        "delivery_ratio": round(delivered / n, 4),
        "duplicates_at_end": sum(c - 1 for c in diy.arrivals.values() if c > 1),
        "naks": diy.naks,
        "airtime_s": by_kind,
        "airtime_s_per_report": round(total / delivered, 2) if delivered else None,
        "airtime_s_per_report_hop": round(total / hops, 2) if hops else None,
        "latency_s": _latency(diy.generated, diy.arrived),
        "max_hour_share_all": _max_hour_share(air.log, set()),
        "simulated_s": round(air.t - jobs[0].at, 1),
    }


def measure(
    *,
    per_origin: int = 100,
    rate_per_h: float = 60.0,
    losses: tuple[float, ...] = (0.0, 0.1, 0.3),
    seed: int = 12,
    horizon_s: float = 48 * 3600.0,
    workdir: str | None = None,
) -> dict[str, Any]:
    jobs = workload(per_origin, rate_per_h, seed)
    base = Path(workdir) if workdir else Path(tempfile.gettempdir())
    runs = []
    for loss in losses:
        runs.append(
            {
                "loss": loss,
                "ours": run_ours(jobs, loss, seed, horizon_s, base),
                "diy": run_diy(jobs, loss, seed),
            }
        )
    return {
        "topology": " - ".join(CHAIN),
        "reports_per_origin": per_origin,
        "reports": len(jobs),
        "rate_per_h": rate_per_h,
        "workload_s": round(jobs[-1].at - jobs[0].at, 1),
        "seed": seed,
        "uplink_rtt_s": UPLINK_RTT_S,
        "diy_retry_s": list(RETRY_S),
        "goals": {"delivery": 1.0, "duplicates": 0, "airtime_s_per_report_hop": 1.2, "channel_share": 0.25},
        "runs": runs,
    }


# ---------------------------------------------------------------------------- printing
def _lat(r: dict[str, Any], hops: str) -> str:
    x = r["latency_s"][hops]
    if x["p50_s"] is None:
        return "-"
    return f"{x['p50_s']:g} / {x['p95_s']:g}"


def render(res: dict[str, Any]) -> str:
    lines = [
        f"chain {res['topology']}; {res['reports']} reports ({res['reports_per_origin']} per origin at 1/2/3 hops), "
        f"{res['rate_per_h']:g}/h; same loss on every link, same schedule for both",
        "| loss | method | delivered | dupl. | airtime s/report (per hop) | time to kota s, p50 / p95: 1 hop | 2 hops "
        "| 3 hops | max node share/h |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in res["runs"]:
        o, d = run["ours"], run["diy"]
        loss = f"{run['loss']:.0%}"
        lines.append(
            f"| {loss} | ours | {o['delivered']}/{o['reports']} (receipts {o['receipts_at_origin']}) "
            f"| {o['duplicates_at_center']} | {o['airtime_s_per_report']} ({o['airtime_s_per_report_hop']}) "
            f"| {_lat(o, '1')} | {_lat(o, '2')} | {_lat(o, '3')} | {max(o['max_hour_share'].values()):.1%} |"
        )
        lines.append(
            f"| {loss} | DIY | {d['delivered']}/{d['reports']} | {d['duplicates_at_end']} "
            f"| {d['airtime_s_per_report']} ({d['airtime_s_per_report_hop']}) "
            f"| {_lat(d, '1')} | {_lat(d, '2')} | {_lat(d, '3')} | {max(d['max_hour_share_all'].values()):.1%} |"
        )
    for run in res["runs"]:
        lines.append(f"ours at {run['loss']:.0%}, airtime by kind (s): {run['ours']['airtime_s']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 reports per origin")
    parser.add_argument("--reports", type=int, default=None, help="reports per origin (default 100)")
    parser.add_argument("--rate", type=float, default=60.0, help="reports per hour, all origins together")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--loss", default="0,0.1,0.3", help="comma-separated loss rates per link")
    parser.add_argument("--dir", default=None, help="where the store files go")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    per_origin = args.reports or (8 if args.quick else 100)
    res = measure(
        per_origin=per_origin,
        rate_per_h=args.rate,
        losses=tuple(float(x) for x in args.loss.split(",")),
        seed=args.seed,
        workdir=args.dir,
    )
    print(render(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
