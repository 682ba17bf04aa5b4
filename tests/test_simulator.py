"""The simulated Meshtastic device against the REAL meshtastic library and command-line client.

Every test here runs the library's own reader, handshake and pubsub code over a real TCP socket or a
real pseudo-terminal; nothing of the library is patched.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import meshtastic.serial_interface
import meshtastic.tcp_interface
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from meshtastic.protobuf import mesh_pb2
from pubsub import pub

from devkit.sim import SimulatedDevice, garbage_bytes, load_scenario, parse_step
from devkit.stream import MAX_PAYLOAD, START1, START2, Frame, FrameDecoder, Noise, encode_frame
from siaga.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
HANDSET = "!a1b2c3d4"
HANDSET_NUM = 0xA1B2C3D4


# ------------------------------------------------------------------------------------------ framing
def frames_of(items: list[Frame | Noise]) -> list[bytes]:
    return [i.payload for i in items if isinstance(i, Frame)]


def test_frame_roundtrip_and_size_limit() -> None:
    payload = mesh_pb2.ToRadio(want_config_id=1234).SerializeToString()
    wire = encode_frame(payload)
    assert wire[:2] == bytes((START1, START2)) and wire[2:4] == len(payload).to_bytes(2, "big")
    dec = FrameDecoder()
    assert frames_of(dec.feed(wire)) == [payload]
    assert len(encode_frame(b"x" * MAX_PAYLOAD)) == MAX_PAYLOAD + 4
    with pytest.raises(ValueError):
        encode_frame(b"x" * (MAX_PAYLOAD + 1))


def test_decoder_byte_by_byte_and_log_text() -> None:
    wire = b"INFO boot\r\n" + encode_frame(b"abc") + b"log" + encode_frame(b"") + encode_frame(b"z" * 300)
    dec = FrameDecoder()
    items: list[Frame | Noise] = []
    for b in wire:
        items += dec.feed(bytes([b]))
    assert frames_of(items) == [b"abc", b"", b"z" * 300]
    assert b"".join(i.data for i in items if isinstance(i, Noise)) == b"INFO boot\r\nlog"
    assert dec.pending == 0


def test_decoder_resyncs_after_broken_headers() -> None:
    good = encode_frame(b"payload")
    # 0x94 not followed by 0xC3, a header with length 0xFFFF, the library's wake-up 0xC3 bytes, a lone
    # 0x94 directly before a real frame: the frame must still come out.
    wire = bytes([0x94, 0x00, 0x94, 0xC3, 0xFF, 0xFF]) + bytes([0xC3] * 32) + bytes([0x94]) + good
    dec = FrameDecoder()
    assert frames_of(dec.feed(wire)) == [b"payload"]
    assert dec.bad_headers == 3
    # A partial frame is held back until the rest arrives, and reset() forgets it.
    assert dec.feed(good[:5]) == [] and dec.pending == 5
    assert dec.reset() == 5 and dec.pending == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.binary(max_size=MAX_PAYLOAD), max_size=5), st.integers(1, 64))
def test_decoder_recovers_every_frame_after_noise(noise: bytes, payloads: list[bytes], chunk: int) -> None:
    # Noise without 0x94 can never open a frame, so every frame behind it must be recovered.
    noise = noise.replace(bytes([START1]), b"")
    wire = b"".join(noise + encode_frame(p) for p in payloads) + noise
    dec = FrameDecoder()
    items: list[Frame | Noise] = []
    for i in range(0, len(wire), chunk):
        items += dec.feed(wire[i : i + chunk])
    assert frames_of(items) == payloads


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4000))
def test_decoder_never_raises_and_accounts_for_every_byte(data: bytes) -> None:
    dec = FrameDecoder()
    items = dec.feed(data)
    consumed = sum(len(i.data) if isinstance(i, Noise) else len(i.payload) + 4 for i in items)
    assert consumed + dec.pending == len(data)


def test_garbage_never_contains_a_plausible_header() -> None:
    rng = random.Random(7)
    data = garbage_bytes(5000, rng)
    dec = FrameDecoder()
    assert frames_of(dec.feed(data)) == [] and dec.pending == 0
    assert dec.bad_headers > 10  # it does contain frame starts with impossible lengths


# ------------------------------------------------------------------------------------------ scenario
def test_scenario_validation_names_the_line_and_key(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(
        "# a comment\n"
        '{"at": 0, "node": {"id": "!a1b2c3d4", "long_name": "Petugas Oebubun 01", "short_name": "OB01"}}\n'
        "\n"
        '{"at": 1.5, "from": "!a1b2c3d4", "text": "KEBAKARAN", "hops": 2, "copies": 2, "snr": 6.5, "rssi": -97}\n'
        '{"at": 2, "from": "!a1b2c3d4", "position": {"lat": -9.45, "lon": 124.48}}\n'
        '{"at": 3, "from": "!a1b2c3d4", "detection": "SOS-OB01"}\n'
        '{"at": 4, "garbage": 200}\n{"at": 5, "disconnect": 3}\n{"at": 9, "reboot": true}\n'
        '{"at": 10, "drop_acks": 2, "nak": "MAX_RETRANSMIT"}\n',
        encoding="utf-8",
    )
    steps = load_scenario(good)
    assert [s.action for s in steps] == [
        "node", "text", "position", "detection", "garbage", "disconnect", "reboot", "drop_acks",
    ]  # fmt: skip
    assert steps[1].line == 4
    bad_cases = {
        '{"at": 1, "from": "!a1b2c3d4", "txt": "x"}': "scenario:1",
        '{"at": -1, "reboot": true}': "scenario:1.at",
        '{"at": 1, "from": "nobody", "text": "x"}': "scenario:1.from",
        '{"at": 1, "from": "!a1b2c3d4", "text": "x", "colour": 1}': "scenario:1.colour",
        '{"at": 1, "drop_acks": 1, "nak": "SOMETIMES"}': "scenario:1.nak",
        '{"at": 1, "from": "!a1b2c3d4", "position": {"lat": 99, "lon": 0}}': "scenario:1.position",
        "not json": "scenario:1",
    }
    for line, key in bad_cases.items():
        path = tmp_path / "bad.jsonl"
        path.write_text(line + "\n", encoding="utf-8")
        with pytest.raises(ConfigError) as err:
            load_scenario(path)
        assert err.value.key == key, line
    with pytest.raises(ConfigError):
        parse_step({"from": HANDSET, "text": "x" * 234})


# ------------------------------------------------------------------------------------------ helpers
class Heard:
    """Collects pubsub messages.  pypubsub keeps listeners weakly: the test holds this object."""

    PACKET_TOPICS = (
        "meshtastic.receive.text",
        "meshtastic.receive.position",
        "meshtastic.receive.user",
        "meshtastic.receive.routing",
        "meshtastic.receive.detectionsensor",
    )

    def __init__(self) -> None:
        self.packets: list[tuple[str, dict[str, Any], Any]] = []
        self.events: list[tuple[str, Any]] = []
        self.cond = threading.Condition()
        for topic in self.PACKET_TOPICS:
            pub.subscribe(self.on_packet, topic)
        pub.subscribe(self.on_lost, "meshtastic.connection.lost")
        pub.subscribe(self.on_established, "meshtastic.connection.established")

    def close(self) -> None:
        for topic in self.PACKET_TOPICS:
            pub.unsubscribe(self.on_packet, topic)
        pub.unsubscribe(self.on_lost, "meshtastic.connection.lost")
        pub.unsubscribe(self.on_established, "meshtastic.connection.established")

    def on_packet(self, packet: dict[str, Any], interface: Any, topic: Any = pub.AUTO_TOPIC) -> None:
        with self.cond:
            self.packets.append((topic.getName().rsplit(".", 1)[-1], packet, interface))
            self.cond.notify_all()

    def on_lost(self, interface: Any) -> None:
        with self.cond:
            self.events.append(("lost", interface))
            self.cond.notify_all()

    def on_established(self, interface: Any) -> None:
        with self.cond:
            self.events.append(("established", interface))
            self.cond.notify_all()

    def wait(self, kind: str, pred: Callable[[dict[str, Any]], bool] = lambda p: True, n: int = 1,
             timeout: float = 10.0) -> list[dict[str, Any]]:  # fmt: skip
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [p for k, p, _ in self.packets if k == kind and pred(p)]
                if len(found) >= n:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"wanted {n} {kind} packets, got {found}")
                self.cond.wait(left)

    def wait_event(self, name: str, iface: Any, n: int = 1, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while sum(1 for e, i in self.events if e == name and i is iface) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {name} event (events: {[e for e, _ in self.events]})")
                self.cond.wait(left)


@pytest.fixture
def heard() -> Iterator[Heard]:
    h = Heard()
    yield h
    h.close()


@pytest.fixture
def open_iface() -> Iterator[Callable[..., Any]]:
    """Open library interfaces; every one is closed at the end (its heartbeat timer is non-daemon)."""
    opened: list[Any] = []

    def open_(device: SimulatedDevice, kind: str = "tcp", **kw: Any) -> Any:
        if kind == "tcp":
            iface = meshtastic.tcp_interface.TCPInterface("127.0.0.1", portNumber=device.port, timeout=20, **kw)
        else:
            iface = meshtastic.serial_interface.SerialInterface(devPath=str(device.pty_path), timeout=20, **kw)
        opened.append(iface)
        return iface

    yield open_
    for iface in opened:
        try:
            iface.close()
        except Exception:
            # SerialInterface.close() flushes first and raises EIO when the pty (or a USB radio) has
            # already gone and the reader has not noticed yet; the rest of close() must still run.
            iface.stream = None
            iface.close()


def make_device(tmp_path: Path, **kw: Any) -> SimulatedDevice:
    kw.setdefault("listen", ("127.0.0.1", 0))
    kw.setdefault("speed", 20.0)
    kw.setdefault("seed", 1)
    kw.setdefault("record_path", tmp_path / "record.jsonl")
    kw.setdefault("rate_limit_s", 0.0)
    kw.setdefault("nak_delay_s", 4.0)
    return SimulatedDevice(**kw)


@pytest.fixture
def device(tmp_path: Path) -> Iterator[SimulatedDevice]:
    with make_device(tmp_path) as dev:
        dev.add_node(HANDSET, "Petugas Oebubun 01", "OB01", announce=False)
        yield dev


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------------------ handshake
def test_tcp_handshake_gives_the_library_a_complete_device(device: SimulatedDevice, open_iface: Any) -> None:
    iface = open_iface(device)
    assert iface.myInfo.my_node_num == device.node_num == 0x5A6A0001
    assert set(iface.nodes) == {"!5a6a0001", HANDSET}
    assert iface.nodes[HANDSET]["user"]["longName"] == "Petugas Oebubun 01"
    assert iface.getLongName() == "Pos Siaga (simulasi)"
    assert iface.metadata.firmware_version.startswith("2.7")
    lora = iface.localNode.localConfig.lora
    assert lora.region == lora.RegionCode.SG_923 and lora.modem_preset == lora.ModemPreset.LONG_FAST
    assert lora.hop_limit == 3
    # 917.0 MHz + 125 kHz + (channel_num - 1) * 250 kHz must lie inside Indonesia's 920-923 MHz band.
    centre = 917.0 + 0.125 + (lora.channel_num - 1) * 0.25
    assert 920.125 <= centre <= 922.875
    channels = iface.localNode.channels
    assert len(channels) == 8 and channels[0].role == channels[0].Role.PRIMARY
    assert channels[0].settings.name == "Siaga" and len(channels[0].settings.psk) == 32
    assert all(c.role == c.Role.DISABLED for c in channels[1:])
    assert iface.localNode.moduleConfig.detection_sensor.minimum_broadcast_secs == 15
    assert device.handshakes == 1


def test_no_nodes_handshake_skips_other_nodes(device: SimulatedDevice, open_iface: Any) -> None:
    iface = open_iface(device, noNodes=True)  # the library sends the special config id 69420
    assert set(iface.nodes) == {"!5a6a0001"}
    assert iface.localNode.localConfig.lora.hop_limit == 3


def test_pty_handshake_with_serial_interface(tmp_path: Path, open_iface: Any) -> None:
    link = tmp_path / "ttySIM"
    with make_device(tmp_path, listen=None, pty_path=link) as dev:
        assert os.readlink(link).startswith("/dev/pts/")
        iface = open_iface(dev, "serial")
        assert iface.myInfo.my_node_num == dev.node_num
        assert iface.localNode.localConfig.lora.hop_limit == 3
    assert not link.exists()  # stop() removes the symlink


def test_second_tcp_client_replaces_the_first(device: SimulatedDevice, open_iface: Any) -> None:
    import socket

    # Firmware force-closes the older TCP connection when a new client connects.  (Two library
    # interfaces would then fight forever, each silently reconnecting and replacing the other.)
    with socket.create_connection(("127.0.0.1", device.port)) as first:
        first.sendall(encode_frame(mesh_pb2.ToRadio(want_config_id=42).SerializeToString()))
        device.wait_for_handshake(1)
        iface = open_iface(device)
        assert iface.myInfo is not None and device.handshakes == 2
        first.settimeout(10)
        while chunk := first.recv(65536):  # the handshake bytes, then EOF: we were dropped
            assert chunk


# ------------------------------------------------------------------------------------------ packets in
def test_scenario_packets_arrive_with_their_radio_fields(
    device: SimulatedDevice, open_iface: Any, heard: Heard
) -> None:
    iface = open_iface(device)
    device.play(
        [
            parse_step({"at": 0, "node": {"id": "!b0b0b0b0", "long_name": "Petugas Oebubun 02", "short_name": "OB02"}}),
            parse_step(
                {
                    "at": 0.1,
                    "from": HANDSET,
                    "text": "KEBAKARAN rumah warga",
                    "hops": 2,
                    "copies": 2,
                    "snr": 6.5,
                    "rssi": -97,
                    "channel": 0,
                    "id": 1234,
                }
            ),
            parse_step({"at": 0.2, "from": HANDSET, "position": {"lat": -9.45, "lon": 124.48, "alt": 120}}),
            parse_step({"at": 0.3, "from": HANDSET, "detection": "SOS-OB01"}),
            parse_step({"at": 0.4, "from": HANDSET, "to": "post", "text": "tolong"}),
        ]
    )
    assert device.scenario_done.wait(10)
    texts = heard.wait("text", lambda p: p["decoded"]["text"] == "KEBAKARAN rumah warga", n=2)
    first, second = texts
    assert first["id"] == second["id"] == 1234
    assert first["from"] == HANDSET_NUM and first["fromId"] == HANDSET
    assert first["to"] == 0xFFFFFFFF and first["toId"] == "^all"
    assert (first["hopStart"] - first["hopLimit"], second["hopStart"] - second.get("hopLimit", 0)) == (2, 3)
    assert first["rxSnr"] == 6.5 and first["rxRssi"] == -97
    assert second["rxSnr"] < first["rxSnr"] and first["relayNode"] != second["relayNode"]
    assert "rxTime" not in first  # the device has no clock
    assert "channel" not in first and "wantAck" not in first  # default values are absent in the dict
    pos = heard.wait("position", lambda p: p["from"] == HANDSET_NUM)[0]["decoded"]["position"]
    assert pos["latitude"] == pytest.approx(-9.45) and pos["longitude"] == pytest.approx(124.48)
    assert pos["altitude"] == 120
    det = heard.wait("detectionsensor")[0]
    assert det["decoded"]["text"] == "SOS-OB01 detected" and det["decoded"]["portnum"] == "DETECTION_SENSOR_APP"
    assert "wantAck" not in det
    dm = heard.wait("text", lambda p: p["decoded"]["text"] == "tolong")[0]
    assert dm["to"] == device.node_num and dm["wantAck"] is True
    user = heard.wait("user", lambda p: p["from"] == 0xB0B0B0B0)[0]
    assert user["decoded"]["user"]["shortName"] == "OB02"
    assert iface.nodes["!b0b0b0b0"]["user"]["longName"] == "Petugas Oebubun 02"


def test_clock_gives_rx_time(tmp_path: Path, open_iface: Any, heard: Heard) -> None:
    with make_device(tmp_path, has_clock=True) as dev:
        open_iface(dev)
        before = int(time.time())
        pid = dev.inject_text(HANDSET, "jam ada")
        pkt = heard.wait("text", lambda p: p["id"] == pid)[0]
        assert pkt["rxTime"] >= before


def test_packets_wait_in_a_bounded_queue_while_no_client(tmp_path: Path, open_iface: Any, heard: Heard) -> None:
    with make_device(tmp_path, offline_queue=3) as dev:
        ids = [dev.inject_text(HANDSET, f"pesan {i}") for i in range(5)]
        open_iface(dev)
        got = heard.wait("text", lambda p: p["id"] in ids, n=3)
        assert [p["decoded"]["text"] for p in got] == ["pesan 2", "pesan 3", "pesan 4"]
        assert dev.stats["offline_dropped"] == 2


def test_two_devices_deliver_the_same_packet_id(tmp_path: Path, open_iface: Any, heard: Heard) -> None:
    with make_device(tmp_path, node="!00000a01") as a, make_device(tmp_path, node="!00000b02") as b:
        ia, ib = open_iface(a), open_iface(b)
        a.inject_text(HANDSET, "BANJIR", id=777, hops=1)
        b.inject_text(HANDSET, "BANJIR", id=777, hops=3)
        got = heard.wait("text", lambda p: p["id"] == 777, n=2)
        assert {id(i) for k, p, i in heard.packets if k == "text" and p["id"] == 777} == {id(ia), id(ib)}
        assert sorted(p["hopStart"] - p.get("hopLimit", 0) for p in got) == [1, 3]  # 0 is absent


# ------------------------------------------------------------------------------------------ packets out
def test_send_text_dm_gets_ack_from_destination_and_is_recorded(
    device: SimulatedDevice, open_iface: Any, heard: Heard, tmp_path: Path
) -> None:
    iface = open_iface(device)
    sent = iface.sendText("112 POS OEBUBUN TERIMA #K7Q2", destinationId=HANDSET, wantAck=True)
    ack = heard.wait("routing", lambda p: p["decoded"]["requestId"] == sent.id)[0]
    assert ack["from"] == HANDSET_NUM  # a real ACK, from the destination
    assert ack["decoded"]["routing"].get("errorReason", "NONE") == "NONE"
    rec = device.wait_for_sent(lambda s: s.id == sent.id)
    assert rec.acked is True and rec.to == HANDSET and rec.text == sent.decoded.payload.decode()
    line = records(tmp_path / "record.jsonl")[-1]
    assert line["id"] == sent.id and line["acked"] is True and line["want_ack"] is True
    assert line["to"] == HANDSET and line["text"] == "112 POS OEBUBUN TERIMA #K7Q2" and line["channel"] == 0


def test_broadcast_gets_implicit_ack_and_unknown_dest_a_nak(
    device: SimulatedDevice, open_iface: Any, heard: Heard
) -> None:
    iface = open_iface(device)
    bc = iface.sendText("info umum", wantAck=True)
    implicit = heard.wait("routing", lambda p: p["decoded"]["requestId"] == bc.id)[0]
    assert implicit["from"] == device.node_num
    lost = iface.sendText("ke siapa?", destinationId="!0badbeef", wantAck=True)
    nak = heard.wait("routing", lambda p: p["decoded"]["requestId"] == lost.id)[0]
    assert nak["decoded"]["routing"]["errorReason"] == "MAX_RETRANSMIT"
    assert device.wait_for_sent(lambda s: s.id == lost.id).acked == "nak:MAX_RETRANSMIT"
    plain = iface.sendText("tanpa ack", destinationId=HANDSET, wantAck=False)
    assert device.wait_for_sent(lambda s: s.id == plain.id).acked is None


def test_rate_limit_naks_a_second_text_within_the_window(tmp_path: Path, open_iface: Any, heard: Heard) -> None:
    # A 60 s window stands in for the firmware's 2 s so the test does not depend on machine speed.
    with make_device(tmp_path, rate_limit_s=60.0) as dev:
        dev.add_node(HANDSET, "Petugas", "OB01", announce=False)
        iface = open_iface(dev)
        one = iface.sendText("satu", destinationId=HANDSET, wantAck=True)
        two = iface.sendText("dua", destinationId=HANDSET, wantAck=True)
        nak = heard.wait("routing", lambda p: p["decoded"]["requestId"] == two.id)[0]
        assert nak["decoded"]["routing"]["errorReason"] == "RATE_LIMIT_EXCEEDED"
        assert nak["from"] == dev.node_num
        assert dev.wait_for_sent(lambda s: s.id == one.id).acked is True
        assert dev.wait_for_sent(lambda s: s.id == two.id).acked == "nak:RATE_LIMIT_EXCEEDED"
        # Non-text packets are not rate limited.
        pos = iface.sendPosition(-9.4, 124.4, wantAck=False)
        assert dev.wait_for_sent(lambda s: s.id == pos.id).portnum == "POSITION_APP"


def test_dropped_acks_and_scripted_naks_for_retry_tests(
    device: SimulatedDevice, open_iface: Any, heard: Heard, tmp_path: Path
) -> None:
    iface = open_iface(device)
    device.drop_acks(1)
    silent = iface.sendText("tidak sampai", destinationId=HANDSET, wantAck=True)
    assert device.wait_for_sent(lambda s: s.id == silent.id).acked is False
    device.drop_acks(1, nak="MAX_RETRANSMIT")
    naked = iface.sendText("gagal", destinationId=HANDSET, wantAck=True)
    nak = heard.wait("routing", lambda p: p["decoded"]["requestId"] == naked.id)[0]
    assert nak["decoded"]["routing"]["errorReason"] == "MAX_RETRANSMIT"
    retry = iface.sendText("coba lagi", destinationId=HANDSET, wantAck=True)
    assert device.wait_for_sent(lambda s: s.id == retry.id).acked is True
    assert not any(p["decoded"]["requestId"] == silent.id for k, p, _ in heard.packets if k == "routing")
    acked = [(r["text"], r["acked"]) for r in records(tmp_path / "record.jsonl")]
    assert acked == [("tidak sampai", False), ("gagal", "nak:MAX_RETRANSMIT"), ("coba lagi", True)]


# ------------------------------------------------------------------------------------------ disturbances
def test_garbage_on_the_wire_does_not_break_the_client(device: SimulatedDevice, open_iface: Any, heard: Heard) -> None:
    open_iface(device)
    ids = []
    for n in range(3):
        device.inject_garbage(500)
        ids.append(device.inject_text(HANDSET, f"setelah sampah {n}"))
        heard.wait("text", lambda p: p["id"] in ids, n=len(ids))
    assert device.stats["garbage_bytes"] >= 1500


def test_garbage_from_the_client_does_not_break_the_device(device: SimulatedDevice, open_iface: Any) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", device.port)) as raw:
        raw.sendall(bytes(random.Random(3).getrandbits(8) for _ in range(5000)))
        raw.sendall(bytes((START1, START2, 0x00, 0x05)) + b"\xff\xff\xff\xff\xff")  # undecodable ToRadio
        raw.sendall(bytes((START1, START2, 0x01, 0x00)) + b"half a frame")  # then hang up mid-frame
    iface = open_iface(device)  # the next client is served normally
    assert iface.myInfo.my_node_num == device.node_num


def test_tcp_disconnect_with_refusal_loses_the_library_connection(
    tmp_path: Path, open_iface: Any, heard: Heard
) -> None:
    with make_device(tmp_path, speed=1.0) as dev:
        iface = open_iface(dev)
        dev.disconnect(3)  # the library reconnects after 1 s and is refused
        heard.wait_event("lost", iface)
        pid = dev.inject_text(HANDSET, "selama putus")  # kept for the next client
        dev.wait_for_handshake(1)
        deadline = time.monotonic() + 10
        while True:  # the listener comes back after 3 s; poll like a bridge's reconnect loop would
            try:
                fresh = open_iface(dev)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.3)
        heard.wait("text", lambda p: p["id"] == pid)
        assert fresh.myInfo is not None and dev.handshakes == 2


def test_tcp_disconnect_without_refusal_reconnects_silently(
    device: SimulatedDevice, open_iface: Any, heard: Heard
) -> None:
    iface = open_iface(device)
    device.disconnect(0, refuse=False)
    device.wait_for_handshake(2, timeout=10)  # the library reconnected by itself
    pid = device.inject_text(HANDSET, "tersambung lagi")
    pkt = heard.wait("text", lambda p: p["id"] == pid)[0]
    assert pkt["decoded"]["text"] == "tersambung lagi"
    assert iface.isConnected.is_set()


def test_reboot_over_pty_drops_and_redoes_the_handshake(tmp_path: Path, open_iface: Any, heard: Heard) -> None:
    with make_device(tmp_path, listen=None, pty_path=tmp_path / "tty0") as dev:
        dev.add_node(HANDSET, "Petugas", "OB01", announce=False)
        iface = open_iface(dev, "serial")
        heard.wait_event("established", iface)
        dev.reboot()
        heard.wait_event("lost", iface)
        heard.wait_event("established", iface, n=2)
        assert dev.handshakes == 2 and iface.myInfo.reboot_count == 1
        pid = dev.inject_text(HANDSET, "setelah reboot")
        heard.wait("text", lambda p: p["id"] == pid)


def test_reboot_over_tcp_loses_unacked_packets(tmp_path: Path, open_iface: Any, heard: Heard) -> None:
    with make_device(tmp_path, nak_delay_s=1000.0) as dev:
        iface = open_iface(dev)
        pending = iface.sendText("belum terkirim", destinationId="!0badbeef", wantAck=True)
        dev.wait_for_in_flight(pending.id)  # sendText returns before the device has read the frame
        dev.reboot(0)
        assert dev.wait_for_sent(lambda s: s.id == pending.id).acked is False
        heard.wait_event("lost", iface)
        dev.wait_for_handshake(2, timeout=10)  # the library reconnects to the rebooted device


def test_pty_unplug_and_replug(tmp_path: Path, open_iface: Any, heard: Heard) -> None:
    link = tmp_path / "ttyUSB-sim"
    with make_device(tmp_path, listen=None, pty_path=link, speed=1.0) as dev:
        iface = open_iface(dev, "serial")
        dev.unplug(1.0)
        heard.wait_event("lost", iface)
        pid = dev.inject_text(HANDSET, "selama dicabut")
        deadline = time.monotonic() + 10
        while not link.exists():
            assert time.monotonic() < deadline, "the pty never came back"
            time.sleep(0.05)
        again = open_iface(dev, "serial")  # no auto-reconnect for serial: a new interface
        heard.wait("text", lambda p: p["id"] == pid)
        sent = again.sendText("sesudah colok", destinationId="!0badbeef", wantAck=False)
        assert dev.wait_for_sent(lambda s: s.id == sent.id).text == "sesudah colok"


# ------------------------------------------------------------------------------------------ admin
def test_admin_config_roundtrip_and_state_file(tmp_path: Path, open_iface: Any) -> None:
    state = tmp_path / "state.json"
    with make_device(tmp_path, state_path=state, reboot_on_config=False) as dev:
        iface = open_iface(dev)
        node = iface.localNode
        node.beginSettingsTransaction()
        node.setOwner(long_name="Pos Oebubun", short_name="POB1")
        node.localConfig.lora.hop_limit = 5
        node.writeConfig("lora")
        node.moduleConfig.detection_sensor.enabled = True
        node.writeConfig("detection_sensor")
        node.set_canned_message("KEBAKARAN|BANJIR|SOS")
        node.commitSettingsTransaction()
        assert node.get_canned_message() == "KEBAKARAN|BANJIR|SOS"  # a get request answered by the device
        iface.close()
        fresh = open_iface(dev)
        assert fresh.getLongName() == "Pos Oebubun" and fresh.getShortName() == "POB1"
        assert fresh.localNode.localConfig.lora.hop_limit == 5
        assert fresh.localNode.moduleConfig.detection_sensor.enabled
    with make_device(tmp_path, state_path=state) as again:  # the state file survives a restart
        assert again.state.user.long_name == "Pos Oebubun" and again.state.config.lora.hop_limit == 5
        assert again.state.canned_messages == "KEBAKARAN|BANJIR|SOS"


def test_config_change_outside_a_transaction_reboots_like_firmware(
    tmp_path: Path, open_iface: Any, heard: Heard
) -> None:
    with make_device(tmp_path, speed=50.0) as dev:
        iface = open_iface(dev)
        iface.localNode.localConfig.device.role = iface.localNode.localConfig.device.Role.CLIENT_BASE
        iface.localNode.writeConfig("device")
        heard.wait_event("lost", iface)
        dev.wait_for_handshake(2, timeout=10)
        assert dev.stats["reboots"] == 1


# ------------------------------------------------------------------------------------------ CLI
def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _meshtastic(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshtastic", *args], capture_output=True, text=True, timeout=90, env=_env()
    )


@pytest.mark.slow
def test_real_meshtastic_cli_against_siaga_simulate(tmp_path: Path) -> None:
    scenario = tmp_path / "s.jsonl"
    scenario.write_text(
        '{"at": 0, "node": {"id": "!a1b2c3d4", "long_name": "Petugas Oebubun 01", "short_name": "OB01"}}\n',
        encoding="utf-8",
    )
    record = tmp_path / "rec.jsonl"
    argv = [sys.executable, "-m", "cli", "simulate", "--listen", "127.0.0.1:0", "--scenario", str(scenario),
            "--record", str(record), "--speed", "10"]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("listening on 127.0.0.1:"), first
            host = first.split()[-1]
            info = _meshtastic("--host", host, "--info")
            assert info.returncode == 0, info.stderr
            assert "Owner: Pos Siaga (simulasi) (SIM1)" in info.stdout
            assert '"myNodeNum": 1516896257' in info.stdout and "Petugas Oebubun 01" in info.stdout
            assert '"region": "SG_923"' in info.stdout
            sent = _meshtastic("--host", host, "--sendtext", "halo", "--dest", HANDSET, "--ack")
            assert sent.returncode == 0, sent.stderr
            assert "Received an ACK." in sent.stdout
            line = records(record)[-1]
            assert line["text"] == "halo" and line["to"] == HANDSET and line["acked"] is True
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    assert proc.returncode == 0


@pytest.mark.slow
def test_meshtastic_configure_then_read_back(tmp_path: Path, open_iface: Any) -> None:
    profile = tmp_path / "gateway.yaml"
    profile.write_text(
        "owner: Pos Oebubun\nowner_short: POB1\ncanned_messages: KEBAKARAN|BANJIR|SOS\n"
        "config:\n  device:\n    role: CLIENT_BASE\n  lora:\n    region: SG_923\n    hopLimit: 5\n    channelNum: 20\n"
        "module_config:\n  detectionSensor:\n    enabled: true\n    minimumBroadcastSecs: 15\n",
        encoding="utf-8",
    )
    with make_device(tmp_path, speed=1.0) as dev:
        out = _meshtastic("--host", f"127.0.0.1:{dev.port}", "--configure", str(profile))
        assert out.returncode == 0, out.stderr
        assert "Writing modified configuration to device" in out.stdout
        st = dev.state
        assert st.user.long_name == "Pos Oebubun" and st.config.device.role == st.config.device.Role.CLIENT_BASE
        assert st.config.lora.hop_limit == 5 and st.module_config.detection_sensor.enabled
        assert st.canned_messages == "KEBAKARAN|BANJIR|SOS"
        iface = open_iface(dev)
        assert iface.localNode.localConfig.lora.hop_limit == 5
        assert iface.localNode.get_canned_message() == "KEBAKARAN|BANJIR|SOS"


def test_siaga_simulate_exits_after_scenario_and_rejects_bad_scenarios(tmp_path: Path) -> None:
    scenario = tmp_path / "s.jsonl"
    scenario.write_text('{"at": 0.5, "from": "!a1b2c3d4", "text": "x"}\n', encoding="utf-8")
    base = [sys.executable, "-m", "cli", "simulate", "--listen", "127.0.0.1:0", "--speed", "10"]
    done = subprocess.run(
        [*base, "--scenario", str(scenario), "--exit-after-scenario", "--linger", "0"],
        capture_output=True, text=True, timeout=30, env=_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    scenario.write_text('{"at": 0, "from": "!a1b2c3d4", "txt": "x"}\n', encoding="utf-8")
    bad = subprocess.run([*base, "--scenario", str(scenario)], capture_output=True, text=True, timeout=30, env=_env())
    assert bad.returncode == 78 and "scenario:1" in bad.stderr
