"""Hostile FromRadio traffic into the radio bridge: the post (real meshtastic library inside) must not crash
or hang, and every refusal must be counted under a reason.

An "evil device" — a raw TCP server speaking just enough of the stream API for the library to finish its
handshake — writes what hypothesis makes up.  Two kinds of input:

* raw bytes: bad frame lengths, truncated protobufs, texts that are not UTF-8, protobuf-shaped nonsense, up
  to 10 KB of plain garbage;
* well-formed frames carrying structured ``FromRadio{packet}`` with random field values: every port number
  (and unknown ones), decoded or encrypted, empty and random payloads, protobuf payloads of the port's type,
  32-bit extremes for ids, hops, channels, NaN/inf SNR.

After each example the device writes enough filler to complete any frame the library may be waiting for,
then a sentinel text: the sentinel must be stored (the daemon is alive and still reading).  The counters
the post exposes (``siaga status``, metrics) are the rejection reasons; each test checks that no counter
outside the known set moved and that no handler raised.  For structured input the bookkeeping is exact:
every packet written is accounted for once, by the radio bridge (an event or an ``ignored.*`` reason) or
by the library's own refusal (counted from its log), and every text/SOS packet once more by the daemon (a
report, a copy, or a refusal reason).
"""

from __future__ import annotations

import math
import random
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from meshtastic.protobuf import channel_pb2, config_pb2, mesh_pb2, portnums_pb2, telemetry_pb2

from devkit.stream import Frame, FrameDecoder, encode_frame
from edge.daemon import Post
from edge.radio import RadioTuning
from siaga.report import mesh_report_id
from tests.conftest import Budget
from tests.fuzz.conftest import Reasons
from tests.radio_rig import post_config, report_with_text, running_post, wait_until

pytestmark = pytest.mark.fuzz

EVIL_NUM = 0x5A6A0666
SENDER = 0xA1B2C3D4
BROADCAST = 0xFFFFFFFF
#: Completes any frame the library's reader may be in the middle of (header + at most 512 bytes).
FILLER = b"\x00" * 600 + b"\r\n"
#: The library refuses frames longer than this (MAX_TO_FROM_RADIO_SIZE).
MAX_FRAME = 512
#: One example's worth of waiting, at most (a hang guard; a healthy example takes well under a second).
EXAMPLE_CAP_S = 120.0

# ----------------------------------------------------------------------------------------- reasons
#: Refusals the radio bridge counts for one received packet (edge/radio.py packet_to_event → Ignored).
RADIO_IGNORED = (
    "ignored.bad.from",
    "ignored.encrypted",
    "ignored.undecoded",
    "ignored.own_echo",
    "ignored.bad.nodeinfo",
    "ignored.routing.other",
    "ignored.port.*",
    "ignored.bad.packet_id",
    "ignored.bad.payload",
    "ignored.bad.position",
    "ignored.position.no_fix",
)
#: Refusals counted from what the library only logs, and bytes outside frames.
LIBRARY_REJECTS = ("bad.frame", "bad.fromradio", "bad.packet", "noise.lines", "inbox_full")
#: Refusals by the daemon of a text/SOS message the bridge passed on (edge/daemon.py _on_message).
DAEMON_REJECTS = ("ignored.dm_other", "ignored.channel", "ignored.empty", "bad.utf8", "bad.text", "store.errors")
KNOWN = (*RADIO_IGNORED, *LIBRARY_REJECTS, *DAEMON_REJECTS)
#: Counters that are outcomes, not refusals.  ``bad.utf8_salvaged`` is a text kept with U+FFFD;
#: ``bad.utf8_lib`` is the library's log line about the same payload (the daemon decides its fate).
ACCEPTED = {
    "rx.text",
    "rx.detection",
    "rx.position",
    "rx.nodeinfo",
    "rx.routing",
    "reports.created",
    "reports.copies",
    "reports.verified",
    "reports.unverified",
    "noise.bytes",
    "bad.utf8_salvaged",
    "bad.utf8_lib",
}
#: What a text/SOS message the bridge passed on can become at the daemon: exactly one of these.
MESSAGE_OUTCOMES = ("reports.created", "reports.copies", *DAEMON_REJECTS)


class EvilDevice:
    """One TCP client at a time; answers want_config and heartbeats, and writes whatever it is told."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._client: socket.socket | None = None
        self._lock = threading.Lock()
        self._stopping = False
        #: A link that silently stopped working (python#765/#727): nothing answered, no close either.
        self.silent = False
        self.handshakes = 0
        self._thread = threading.Thread(target=self._serve, name="evil-device", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                old, self._client = self._client, conn
            if old is not None:
                old.close()
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        decoder = FrameDecoder()
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            for item in decoder.feed(data):
                if not isinstance(item, Frame) or self.silent:
                    continue
                msg = mesh_pb2.ToRadio()
                try:
                    msg.ParseFromString(item.payload)
                except Exception:
                    continue
                if msg.HasField("want_config_id"):
                    self._handshake(conn, msg.want_config_id)
                elif msg.HasField("heartbeat"):
                    self._frame(conn, mesh_pb2.FromRadio(queueStatus=mesh_pb2.QueueStatus(free=16, maxlen=16)))

    def _handshake(self, conn: socket.socket, nonce: int) -> None:
        user = mesh_pb2.User(id=f"!{EVIL_NUM:08x}", long_name="Evil Device", short_name="EVIL")
        channel = channel_pb2.Channel(index=0, role=channel_pb2.Channel.Role.PRIMARY)
        lora = config_pb2.Config(lora=config_pb2.Config.LoRaConfig(hop_limit=3))
        for msg in (
            mesh_pb2.FromRadio(my_info=mesh_pb2.MyNodeInfo(my_node_num=EVIL_NUM)),
            mesh_pb2.FromRadio(node_info=mesh_pb2.NodeInfo(num=EVIL_NUM, user=user)),
            mesh_pb2.FromRadio(channel=channel),
            mesh_pb2.FromRadio(config=lora),
            mesh_pb2.FromRadio(config_complete_id=nonce),
        ):
            self._frame(conn, msg)
        self.handshakes += 1

    def _frame(self, conn: socket.socket, msg: mesh_pb2.FromRadio) -> None:
        try:
            conn.sendall(encode_frame(msg.SerializeToString()))
        except OSError:
            pass

    def write(self, data: bytes) -> None:
        with self._lock:
            conn = self._client
        if conn is not None:
            try:
                conn.sendall(data)
            except OSError:
                pass

    def stop(self) -> None:
        self._stopping = True
        self._listener.close()
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        self._thread.join(2)


# ------------------------------------------------------------------------------------------ raw bytes
def frame_raw(payload: bytes) -> bytes:
    """A frame whose header says exactly len(payload) (payload cut to the 512-byte maximum)."""
    return encode_frame(payload[:MAX_FRAME])


def text_packet(text: bytes, packet_id: int, port: int = portnums_pb2.TEXT_MESSAGE_APP) -> bytes:
    pkt = mesh_pb2.MeshPacket(to=BROADCAST, id=packet_id, hop_start=3, hop_limit=2)
    setattr(pkt, "from", SENDER)
    pkt.decoded.portnum = port
    pkt.decoded.payload = text
    return mesh_pb2.FromRadio(packet=pkt).SerializeToString()


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


PORTS = [
    portnums_pb2.TEXT_MESSAGE_APP,
    portnums_pb2.POSITION_APP,
    portnums_pb2.NODEINFO_APP,
    portnums_pb2.ROUTING_APP,
    portnums_pb2.TELEMETRY_APP,
    portnums_pb2.DETECTION_SENSOR_APP,
    999,
]

garbage = st.binary(min_size=1, max_size=10_240)
bad_length = st.builds(
    lambda n, body: bytes((0x94, 0xC3, n >> 8, n & 0xFF)) + body, st.integers(0, 0xFFFF), st.binary(max_size=600)
)
truncated = st.builds(
    lambda pkt, cut: frame_raw(pkt[: max(0, len(pkt) - cut)]),
    st.builds(text_packet, st.binary(max_size=200), st.integers(1, 2**32 - 1), st.sampled_from(PORTS)),
    st.integers(1, 60),
)
invalid_utf8 = st.builds(
    lambda body, pid: frame_raw(text_packet(body, pid)),
    st.binary(min_size=1, max_size=200).filter(_not_utf8),
    st.integers(1, 2**31),
)
random_protobuf = st.binary(max_size=MAX_FRAME).map(frame_raw)
random_port_payload = st.builds(
    lambda body, pid, port: frame_raw(text_packet(body, pid, port)),
    st.binary(max_size=200),
    st.integers(1, 2**31),
    st.sampled_from(PORTS),
)
junk = st.lists(
    st.one_of(garbage, bad_length, truncated, invalid_utf8, random_protobuf, random_port_payload),
    min_size=1,
    max_size=4,
).map(b"".join)


# ------------------------------------------------------------------------------------------ structured
u32 = st.one_of(
    st.sampled_from([0, 1, 7, 8, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, BROADCAST, SENDER, EVIL_NUM]),
    st.integers(0, 2**32 - 1),
)
i32 = st.one_of(st.sampled_from([-(2**31), -1, 0, 1, 2**31 - 1]), st.integers(-(2**31), 2**31 - 1))
floats32 = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e30, -1e30]),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
)
unicode_text = st.text(max_size=80).map(lambda s: s.encode("utf-8", "surrogatepass")[:233])


def _position(lat: int, lon: int, alt: int, bits: int) -> bytes:
    return mesh_pb2.Position(latitude_i=lat, longitude_i=lon, altitude=alt, precision_bits=bits).SerializeToString()


def _user(uid: str, long_name: str, short_name: str) -> bytes:
    return mesh_pb2.User(id=uid, long_name=long_name, short_name=short_name).SerializeToString()


def _routing(reason: int) -> bytes:
    routing = mesh_pb2.Routing()
    routing.error_reason = reason
    return routing.SerializeToString()


payloads = st.one_of(
    st.just(b""),
    st.binary(max_size=233),
    unicode_text,
    st.binary(min_size=1, max_size=120).filter(_not_utf8),
    st.builds(_position, i32, i32, i32, st.integers(0, 2**32 - 1)),
    st.builds(_user, st.text(max_size=20), st.text(max_size=40), st.text(max_size=6)),
    st.builds(_routing, st.one_of(st.sampled_from([0, 1, 3, 5, 33]), i32)),
    st.builds(
        lambda v: telemetry_pb2.Telemetry(time=v).SerializeToString(),
        st.integers(0, 2**32 - 1),
    ),
)


#: Ports the post reads, and the rest of the enum (the library knows some, the post ignores all of them).
READ_PORTS = [portnums_pb2.POSITION_APP, portnums_pb2.NODEINFO_APP, portnums_pb2.ROUTING_APP]
OTHER_PORTS = sorted(set(portnums_pb2.PortNum.values()) - {portnums_pb2.TEXT_MESSAGE_APP, *READ_PORTS})
report_texts = st.one_of(
    unicode_text,
    st.sampled_from(["KEBAKARAN", "tlg 2 org luka", "BANJIR dusun 3", "  ", "\x00\x00", "DARURAT MEDIS"]).map(
        str.encode
    ),
)


@st.composite
def mesh_packets(draw: st.DrawFn) -> bytes:
    """One FromRadio{packet} frame with random field values.  Integer draws pick the branch so that about
    half the packets are texts/SOS (the path to a report), the rest every other kind."""
    pkt = mesh_pb2.MeshPacket()
    setattr(
        pkt,
        "from",
        draw(st.sampled_from([SENDER, SENDER, SENDER, 0xB0B0B0B0, EVIL_NUM])) if draw(st.integers(0, 3)) else draw(u32),
    )
    pkt.to = [BROADCAST, BROADCAST, EVIL_NUM, draw(u32)][draw(st.integers(0, 3))]
    pkt.id = draw(u32) if draw(st.integers(0, 3)) == 0 else draw(st.integers(1, 2**32 - 1))
    pkt.channel = [0, 0, draw(st.integers(1, 7)), draw(u32)][draw(st.integers(0, 3))]
    pkt.hop_limit = draw(st.one_of(st.integers(0, 7), u32))
    pkt.hop_start = draw(st.one_of(st.integers(0, 7), u32))
    pkt.rx_snr = draw(floats32)
    pkt.rx_rssi = draw(i32)
    pkt.rx_time = draw(u32)
    pkt.relay_node = draw(u32)
    pkt.via_mqtt = draw(st.booleans())
    pkt.want_ack = draw(st.booleans())
    kind = draw(st.integers(0, 9))
    if kind <= 1:
        pkt.encrypted = draw(st.binary(max_size=233))
    else:
        pkt.decoded.SetInParent()  # an empty Data too: the library then says portnum UNKNOWN_APP
        if kind <= 5:
            pkt.decoded.portnum = draw(
                st.sampled_from([portnums_pb2.TEXT_MESSAGE_APP, portnums_pb2.DETECTION_SENSOR_APP])
            )
            pkt.decoded.payload = draw(st.one_of(report_texts, payloads))
        else:
            if kind == 6:
                pkt.decoded.portnum = draw(st.sampled_from(READ_PORTS))
            elif kind == 7:
                pkt.decoded.portnum = draw(st.sampled_from(OTHER_PORTS))
            elif kind == 8:
                # unknown to the library (proto3 enums are open); kind 9 leaves it unset
                pkt.decoded.portnum = draw(st.sampled_from([-1, 5000, 2**31 - 1]))
            pkt.decoded.payload = draw(payloads)
        if draw(st.integers(0, 3)) == 0:
            pkt.decoded.request_id = draw(u32)
            pkt.decoded.want_response = draw(st.booleans())
            pkt.decoded.emoji = draw(u32)
    data = mesh_pb2.FromRadio(id=draw(u32), packet=pkt).SerializeToString()
    assert len(data) <= MAX_FRAME, len(data)  # payloads are bounded so a frame always fits
    return encode_frame(data)


structured = st.lists(mesh_packets(), min_size=1, max_size=5)


# ------------------------------------------------------------------------------------------ harness
@pytest.fixture
def evil_post(tmp_path: Path) -> Iterator[tuple[Post, EvilDevice]]:
    device = EvilDevice()
    try:
        cfg = post_config(tmp_path, radio={"host": f"127.0.0.1:{device.port}"}, receipts=False)
        with running_post(cfg) as post:
            yield post, device
    finally:
        device.stop()


class Sentinels:
    """Writes a sentinel text after each example and waits for it in the store (by its report id)."""

    def __init__(self, post: Post, device: EvilDevice) -> None:
        self.post = post
        self.device = device
        self.n = 0
        #: Filler lines written (each makes one noise line that is ours, not the fuzzer's).
        self.sends = 0

    def _send(self, pid: int) -> None:
        self.sends += 1
        self.device.write(FILLER + frame_raw(text_packet(f"KEBAKARAN penanda {pid:x} selesai".encode(), pid)))

    def _stored(self, pid: int) -> bool:
        assert self.post.store is not None
        now = self.post.clock.now()
        for when in (now, now - timedelta(minutes=5)):  # a sentinel sent just before UTC midnight
            row = self.post.store.get(mesh_report_id(SENDER, pid, when))
            if row is not None and f"penanda {pid:x} selesai" in row.report.text_raw:
                return True
        return False

    def after(self, data: bytes) -> None:
        """Write ``data``, then a sentinel; return once the sentinel is stored."""
        self.n += 1
        pid = 0x70000000 + self.n
        self.device.write(data)
        self._send(pid)
        for _ in range(4):
            # junk that happened to be a valid `rebooted` makes the post reconnect: send the sentinel again
            try:
                wait_until(lambda: self._stored(pid), 5, f"sentinel {self.n}")
                return
            except AssertionError:
                assert self.post.radio is not None
                assert self.post.radio.wait_connected(20), "the post never came back to the device"
                self._send(pid)
        raise AssertionError(f"sentinel {self.n} never arrived: the daemon hung or dropped the stream")


def split_counters(post: Post) -> tuple[Counter[str], Counter[str]]:
    """(radio bridge's counters, the daemon's own): both use ``ignored.*`` keys, so keep them apart."""
    assert post.radio is not None
    radio = Counter(post.radio.counters())
    merged = Counter(post.counters())
    daemon = Counter({k: v - radio.get(k, 0) for k, v in merged.items() if not k.startswith("outbox.")})
    return radio, +daemon


def message_balance(daemon: Counter[str], radio: Counter[str]) -> int:
    """Texts/SOS messages the bridge passed on minus what the daemon made of them (0 when all are settled)."""
    return radio["rx.text"] + radio["rx.detection"] - sum(daemon[k] for k in MESSAGE_OUTCOMES)


def settle(post: Post) -> tuple[Counter[str], Counter[str]]:
    """Counters once every message handed to the daemon has an outcome (the sentinel's count lands just
    after its row: the store is polled, the counter follows the commit)."""
    both: list[tuple[Counter[str], Counter[str]]] = []

    def balanced() -> bool:
        both[:] = [split_counters(post)]
        radio, daemon = both[0]
        return message_balance(daemon, radio) == 0

    try:
        wait_until(balanced, 10, "every text message to have an outcome")
    except AssertionError:
        radio, daemon = both[0]
        raise AssertionError(
            f"text messages without an outcome: {message_balance(daemon, radio)}; radio {dict(radio)}, "
            f"daemon {dict(daemon)}"
        ) from None
    return both[0]


def record_delta(reasons: Reasons, before: Counter[str], after: Counter[str], filler_lines: int) -> Counter[str]:
    """Sort one example's counter changes into refusals (reasons) and outcomes; unknown keys fail later."""
    delta = after - before
    assert not delta.get("handler_errors"), f"a radio event handler raised: {dict(delta)}"
    delta["noise.lines"] = max(0, delta["noise.lines"] - filler_lines)
    for key, n in delta.items():
        if key in ACCEPTED or key.startswith("link."):
            reasons.accept(key, n)
        else:
            reasons.add(key, n)
    return delta


def merged(radio: Counter[str], daemon: Counter[str]) -> Counter[str]:
    return radio + daemon


def _examples(budget: Budget, reduced: int, full: int) -> settings:
    return settings(
        max_examples=budget.pick(reduced, full),
        deadline=timedelta(seconds=EXAMPLE_CAP_S),
        suppress_health_check=list(HealthCheck),
        database=None,
    )


# ------------------------------------------------------------------------------------------ tests
@pytest.mark.timeout(300)
def test_hostile_fromradio_stream_is_survived_and_every_refusal_counted(
    evil_post: tuple[Post, EvilDevice], budget: Budget, reasons: Reasons
) -> None:
    post, device = evil_post
    assert post.radio is not None
    sentinels = Sentinels(post, device)
    rng = random.Random(1)

    def check(data: bytes) -> None:
        reasons.examples += 1
        radio, daemon = settle(post)
        before, sends = merged(radio, daemon), sentinels.sends
        sentinels.after(data)
        radio, daemon = settle(post)
        record_delta(reasons, before, merged(radio, daemon), sentinels.sends - sends)

    run = _examples(budget, 150, 2000)(given(junk)(check))
    for extra in (
        bytes(rng.getrandbits(8) for _ in range(10_240)),  # 10 KB of garbage
        bytes((0x94, 0xC3, 0xFF, 0xFF)) + b"x" * 100,  # a length far over 512
        bytes((0x94, 0xC3, 0x01, 0xF4)) + b"short",  # a frame that never completes (until the filler)
        frame_raw(text_packet(b"KEBAKARAN rumah", 0x1234)[:-5]),  # truncated protobuf
        frame_raw(text_packet(b"\xff\xfe\xfd\xfc", 0x1235)),  # a text that is not UTF-8
        frame_raw(text_packet(b"BANJIR \xff di desa", 0x1236)),  # mostly readable: kept
        frame_raw(text_packet(b"\x8a\x8b", 0x1237, portnums_pb2.POSITION_APP)),  # not a Position
    ):
        run = example(extra)(run)
    run()

    print(reasons)
    reasons.assert_known(KNOWN)
    counts = post.counters()
    assert post.healthy() and post.radio.connected
    assert counts["reports.created"] >= sentinels.n
    for must in ("noise.lines", "bad.frame", "bad.utf8"):
        assert reasons.counts[must] >= 1, reasons
    assert reasons.accepted["bad.utf8_salvaged"] >= 1, reasons


@pytest.mark.timeout(300)
def test_structured_fromradio_packets_are_each_accounted_for(
    evil_post: tuple[Post, EvilDevice], budget: Budget, reasons: Reasons
) -> None:
    post, device = evil_post
    assert post.radio is not None
    sentinels = Sentinels(post, device)
    totals = {"packets": 0, "accounted": 0}

    def check(frames: list[bytes]) -> None:
        reasons.examples += 1
        radio0, daemon0 = settle(post)
        sends = sentinels.sends
        sentinels.after(b"".join(frames))
        radio1, daemon1 = settle(post)
        delta = record_delta(reasons, merged(radio0, daemon0), merged(radio1, daemon1), sentinels.sends - sends)
        if delta.get("link.connects"):
            return  # a reconnect in between: the library may have dropped what it was reading
        # Each packet (and the sentinel) ends up exactly once as: an event of the bridge, a refusal of the
        # bridge (ignored.*), or a refusal by the library (a handler that raised: bad.frame; a `from` of 0).
        rd = radio1 - radio0
        events = sum(n for k, n in rd.items() if k.startswith(("rx.", "ignored.")))
        refused_by_library = rd["bad.frame"] + rd["bad.packet"]
        accounted = events + refused_by_library
        sentinel_packets = sentinels.sends - sends  # more than one when a slow machine made us resend it
        totals["packets"] += len(frames)
        totals["accounted"] += accounted - sentinel_packets
        assert accounted == len(frames) + sentinel_packets, (
            f"{len(frames)} packets + {sentinel_packets} sentinel, but {events} events/refusals by the bridge "
            f"and {refused_by_library} by the library: {dict(rd)}"
        )

    run = _examples(budget, 200, 3000)(given(structured)(check))
    zero = mesh_pb2.MeshPacket(to=BROADCAST, id=7, encrypted=b"")  # `from` 0: dropped inside the library
    position = mesh_pb2.MeshPacket(to=BROADCAST, id=8)
    setattr(position, "from", SENDER)
    position.decoded.portnum = portnums_pb2.POSITION_APP
    position.decoded.payload = b"\x8a\x8b"  # not a Position: the library's handler raises
    for packets in ([zero], [position], [zero, position, zero]):
        run = example([encode_frame(mesh_pb2.FromRadio(packet=p).SerializeToString()) for p in packets])(run)
    run()

    print(reasons)
    reasons.assert_known(KNOWN)
    assert totals["packets"] == totals["accounted"] and totals["packets"] >= reasons.examples
    assert post.healthy() and post.radio.connected
    # the generator reaches the interesting refusals (a change that stops producing them would go unseen)
    for must in ("ignored.encrypted", "ignored.bad.from", "ignored.channel"):
        assert reasons.counts[must] >= 1, reasons
    assert any(k.startswith("ignored.port.") for k in reasons.counts), reasons
    assert reasons.accepted["reports.created"] > sentinels.n, "no fuzzed text ever became a report"


@pytest.mark.timeout(120)
def test_a_link_that_goes_quiet_without_connection_lost_is_reopened(tmp_path: Path) -> None:
    """python#765/#727: a broken pipe the library never notices.  The heartbeat goes unanswered: reopen."""
    device = EvilDevice()
    tuning = RadioTuning(backoff_first_s=0.2, backoff_max_s=1.0, heartbeat_s=1.0, dead_after_s=1.5)
    try:
        cfg = post_config(tmp_path, radio={"host": f"127.0.0.1:{device.port}"}, receipts=False)
        with running_post(cfg, tuning=tuning) as post:
            assert post.radio is not None
            device.silent = True
            wait_until(lambda: post.counters().get("link.dead", 0) >= 1, 15, "the watchdog to give up on the link")
            device.silent = False
            wait_until(lambda: post.radio is not None and post.radio.connects >= 2 and post.radio.connected, 15)
            device.write(frame_raw(text_packet(b"KEBAKARAN setelah sunyi", 0x5151)))
            wait_until(lambda: report_with_text(post, "setelah sunyi"), 10, "a report on the new link")
            assert post.counters().get("link.lost", 0) == 0, "the library never said the link was lost"
    finally:
        device.stop()
