"""Hostile bytes on the FromRadio stream: the post (real meshtastic library inside) must not crash or hang.

An "evil device" — a raw TCP server speaking just enough of the stream API for the library to finish its
handshake — writes what hypothesis makes up: bad frame lengths, truncated protobufs, texts that are not
UTF-8, protobuf-shaped nonsense, up to 10 KB of plain garbage.  After each example it writes enough
filler to complete any frame the library may be waiting for, then a sentinel text: the sentinel must
become a report (the daemon is alive and still reading), and the junk must show up in the counters.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from meshtastic.protobuf import channel_pb2, config_pb2, mesh_pb2, portnums_pb2

from edge.daemon import Post
from edge.radio import RadioTuning
from edge.stream import Frame, FrameDecoder, encode_frame
from tests.radio_rig import post_config, report_with_text, running_post, wait_until

EVIL_NUM = 0x5A6A0666
SENDER = 0xA1B2C3D4
#: Completes any frame the library's reader may be in the middle of (header + at most 512 bytes).
FILLER = b"\x00" * 600 + b"\r\n"


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


# ------------------------------------------------------------------------------------------ strategies
def frame_raw(payload: bytes) -> bytes:
    """A frame whose header says exactly len(payload) (payload cut to the 512-byte maximum)."""
    return encode_frame(payload[:512])


def text_packet(text: bytes, packet_id: int, port: int = portnums_pb2.TEXT_MESSAGE_APP) -> bytes:
    pkt = mesh_pb2.MeshPacket(to=0xFFFFFFFF, id=packet_id, hop_start=3, hop_limit=2)
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
random_protobuf = st.binary(max_size=512).map(frame_raw)
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


@pytest.fixture
def evil_post(tmp_path: Path) -> Iterator[tuple[Post, EvilDevice]]:
    device = EvilDevice()
    try:
        cfg = post_config(tmp_path, radio={"host": f"127.0.0.1:{device.port}"}, receipts=False)
        with running_post(cfg) as post:
            yield post, device
    finally:
        device.stop()


def test_hostile_fromradio_stream_is_survived_counted_and_logged(evil_post: tuple[Post, EvilDevice]) -> None:
    post, device = evil_post
    assert post.radio is not None
    sentinel = iter(range(1, 1_000_000))

    def send_sentinel(n: int) -> None:
        device.write(FILLER + frame_raw(text_packet(f"KEBAKARAN penanda {n} selesai".encode(), 0x70000000 + n)))

    def survives(data: bytes) -> None:
        n = next(sentinel)
        device.write(data)
        send_sentinel(n)
        marker = f"penanda {n} selesai"
        for _ in range(4):
            # junk that happened to be a valid `rebooted` makes the post reconnect: send the sentinel again
            try:
                wait_until(lambda: report_with_text(post, marker), 5, f"sentinel {n}")
                return
            except AssertionError:
                assert post.radio is not None
                assert post.radio.wait_connected(20), "the post never came back to the device"
                send_sentinel(n)
        raise AssertionError(f"sentinel {n} never arrived: the daemon hung or dropped the stream")

    rng = random.Random(1)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(junk)
    @example(bytes(rng.getrandbits(8) for _ in range(10_240)))  # 10 KB of garbage
    @example(bytes((0x94, 0xC3, 0xFF, 0xFF)) + b"x" * 100)  # a length far over 512
    @example(bytes((0x94, 0xC3, 0x01, 0xF4)) + b"short")  # a frame that never completes (until the filler)
    @example(frame_raw(text_packet(b"KEBAKARAN rumah", 0x1234)[:-5]))  # truncated protobuf
    @example(frame_raw(text_packet(b"\xff\xfe\xfd\xfc", 0x1235)))  # a text that is not UTF-8
    @example(frame_raw(text_packet(b"BANJIR \xff di desa", 0x1236)))  # mostly readable: kept
    @example(frame_raw(text_packet(b"\x8a\x8b", 0x1237, portnums_pb2.POSITION_APP)))  # not a Position
    def check(data: bytes) -> None:
        survives(data)

    check()
    counts = post.counters()
    assert post.healthy() and post.radio.connected
    assert counts["reports.created"] >= 150
    assert counts["noise.lines"] >= 1, counts
    assert counts["bad.frame"] >= 1, counts
    assert counts.get("bad.utf8", 0) >= 1 and counts.get("bad.utf8_salvaged", 0) >= 1, counts
    assert counts.get("handler_errors", 0) == 0, counts


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
