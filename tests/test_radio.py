"""The radio bridge's pieces without a device: packet dicts → events, receipt texts, the outbox's timers,
retries and pacing, the handsets file, the node table.

Packet dicts here are shaped exactly as meshtastic 2.7.11 publishes them (``MessageToDict`` of the
MeshPacket plus ``payload`` bytes, ``text``, decoded sub-protobufs); tests/test_daemon.py runs the real
library against the simulator.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from meshtastic import protocols
from meshtastic.protobuf import mesh_pb2, portnums_pb2

from edge.handsets import load_handsets_file, with_handsets_file
from edge.nodes import FRESH_S, MAX_AGE_S, NodeTable
from edge.radio import (
    Ignored,
    MeshMessage,
    MeshNodeInfo,
    MeshPosition,
    MeshRouting,
    RadioBridge,
    packet_to_event,
)
from edge.receipts import (
    Outbox,
    Outgoing,
    ascii_text,
    center_receipt_text,
    post_label,
    post_receipt_text,
    reply_text,
)
from edge.store import Store
from siaga.errors import ConfigError, RadioError
from tests.fakes import FakeClock
from tests.radio_rig import post_config, wait_until

MY = 0x5A6A0001
HANDSET = 0xA1B2C3D4


def library_dict(pkt: mesh_pb2.MeshPacket) -> dict[str, Any]:
    """What MeshInterface._handlePacketFromRadio publishes for ``pkt`` (same conversion steps)."""
    d: dict[str, Any] = json_format.MessageToDict(pkt)
    d["raw"] = pkt
    if "decoded" in d:
        d["decoded"]["payload"] = pkt.decoded.payload
        handler = protocols.get(pkt.decoded.portnum)
        if handler is not None and handler.protobufFactory is not None:
            pb = handler.protobufFactory()
            pb.ParseFromString(pkt.decoded.payload)
            d["decoded"][handler.name] = json_format.MessageToDict(pb)
        if pkt.decoded.portnum in (portnums_pb2.TEXT_MESSAGE_APP, portnums_pb2.DETECTION_SENSOR_APP):
            try:
                d["decoded"]["text"] = pkt.decoded.payload.decode("utf-8")
            except UnicodeDecodeError:
                pass
    return d


def packet(port: int, payload: bytes, *, sender: int = HANDSET, **fields: Any) -> mesh_pb2.MeshPacket:
    pkt = mesh_pb2.MeshPacket(to=fields.pop("to", 0xFFFFFFFF), id=fields.pop("id", 0x1234), **fields)
    setattr(pkt, "from", sender)
    pkt.decoded.portnum = port
    pkt.decoded.payload = payload
    return pkt


# ------------------------------------------------------------------------------------------ dict → event
def test_text_packet_becomes_a_message_with_its_path() -> None:
    pkt = packet(portnums_pb2.TEXT_MESSAGE_APP, b"KEBAKARAN rumah warga", hop_start=3, hop_limit=1, rx_snr=6.5,
                 rx_rssi=-97, relay_node=0x3F, channel=2)  # fmt: skip
    event = packet_to_event(library_dict(pkt), MY)
    assert event == MeshMessage(
        kind="text",
        from_num=HANDSET,
        to_num=0xFFFFFFFF,
        packet_id=0x1234,
        channel=2,
        payload=b"KEBAKARAN rumah warga",
        text="KEBAKARAN rumah warga",
        hops=2,
        snr=6.5,
        rssi=-97,
        relay_byte=0x3F,
    )


def test_defaults_absent_from_the_dict_are_read_as_the_library_means_them() -> None:
    # channel 0, hop_limit 0 and no hop_start are absent from the dict
    pkt = packet(portnums_pb2.DETECTION_SENSOR_APP, b"SOS-OB01 detected", hop_start=3)
    event = packet_to_event(library_dict(pkt), MY)
    assert isinstance(event, MeshMessage)
    assert (event.kind, event.channel, event.hops, event.relay_byte, event.snr) == ("detection", 0, 3, None, None)
    no_hop_start = packet_to_event(library_dict(packet(portnums_pb2.TEXT_MESSAGE_APP, b"x")), MY)
    assert isinstance(no_hop_start, MeshMessage) and no_hop_start.hops is None


def test_invalid_utf8_keeps_the_bytes_and_no_text() -> None:
    event = packet_to_event(library_dict(packet(portnums_pb2.TEXT_MESSAGE_APP, b"\xff\xfeBANJIR")), MY)
    assert isinstance(event, MeshMessage) and event.text is None and event.payload == b"\xff\xfeBANJIR"


def test_own_packets_echoed_back_are_ignored() -> None:
    event = packet_to_event(library_dict(packet(portnums_pb2.TEXT_MESSAGE_APP, b"112 POS", sender=MY)), MY)
    assert event == Ignored("own_echo", MY)


def test_position_nodeinfo_routing_and_other_ports() -> None:
    pos = mesh_pb2.Position(latitude_i=-94500000, longitude_i=1244800000, altitude=120, precision_bits=32)
    event = packet_to_event(library_dict(packet(portnums_pb2.POSITION_APP, pos.SerializeToString())), MY)
    assert event == MeshPosition(HANDSET, -9.45, 124.48, 120, None)
    coarse = mesh_pb2.Position(latitude_i=-94500000, longitude_i=1244800000, precision_bits=13)
    event = packet_to_event(library_dict(packet(portnums_pb2.POSITION_APP, coarse.SerializeToString())), MY)
    assert isinstance(event, MeshPosition) and event.accuracy_m is not None and 1000 < event.accuracy_m < 5000
    no_fix = mesh_pb2.Position(time=5)
    assert packet_to_event(library_dict(packet(portnums_pb2.POSITION_APP, no_fix.SerializeToString())), MY) == (
        Ignored("position.no_fix", HANDSET)
    )
    user = mesh_pb2.User(id="!a1b2c3d4", long_name="Petugas Oebubun 01", short_name="OB01")
    event = packet_to_event(library_dict(packet(portnums_pb2.NODEINFO_APP, user.SerializeToString())), MY)
    assert event == MeshNodeInfo(HANDSET, "Petugas Oebubun 01", "OB01")
    nak = packet(
        portnums_pb2.ROUTING_APP, mesh_pb2.Routing(error_reason=mesh_pb2.Routing.MAX_RETRANSMIT).SerializeToString()
    )
    nak.decoded.request_id = 777
    assert packet_to_event(library_dict(nak), MY) == MeshRouting(HANDSET, 777, "MAX_RETRANSMIT")
    ack = packet(portnums_pb2.ROUTING_APP, mesh_pb2.Routing().SerializeToString())
    ack.decoded.request_id = 778
    assert packet_to_event(library_dict(ack), MY) == MeshRouting(HANDSET, 778, "NONE")
    local_nak = packet(portnums_pb2.ROUTING_APP, nak.decoded.payload, sender=MY)
    local_nak.decoded.request_id = 779
    assert packet_to_event(library_dict(local_nak), MY) == MeshRouting(MY, 779, "MAX_RETRANSMIT")
    tele = packet(portnums_pb2.TELEMETRY_APP, b"")
    assert packet_to_event(library_dict(tele), MY) == Ignored("port.TELEMETRY_APP", HANDSET)


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"from": "x"},
        {"from": 0},
        {"from": HANDSET},
        {"from": HANDSET, "encrypted": "AAAA"},
        {"from": HANDSET, "decoded": {"portnum": "TEXT_MESSAGE_APP"}},
        {"from": HANDSET, "id": 5, "decoded": {"portnum": "TEXT_MESSAGE_APP", "payload": "not bytes"}},
        {"from": HANDSET, "decoded": {"portnum": "POSITION_APP", "position": {"latitudeI": 10**10, "longitudeI": 1}}},
        {"from": HANDSET, "decoded": {"portnum": "NODEINFO_APP"}},
        {"from": HANDSET, "decoded": {"portnum": 12345}},
    ],
)
def test_malformed_dicts_are_ignored_with_a_reason(bad: dict[str, Any]) -> None:
    event = packet_to_event(bad, MY)
    assert isinstance(event, Ignored) and event.reason


# ------------------------------------------------------------------------------------------ texts
def test_receipt_texts_are_short_ascii_and_name_the_post() -> None:
    text = post_receipt_text("Pos Siaga Oebubun", "K7Q2", "kebakaran")
    assert text == "112 POS OEBUBUN TERIMA #K7Q2 KEBAKARAN"
    # a long name is cut at a word, or left out when too little of it would fit (airtime: tests/test_airtime.py)
    long_name = post_receipt_text("Pos Siaga Désa Ñamà Yang Sangat Panjang Sekali", "K7Q2", "banjir")
    assert long_name == "112 POS DESA NAMA TERIMA #K7Q2 BANJIR"
    no_name = post_receipt_text("Pos Siaga Désa Ñamà Yang Sangat Panjang Sekali", "K7Q2", "infrastruktur")
    assert no_name == "112 POS TERIMA #K7Q2 INFRASTRUKTUR"
    assert post_label("Oebubun") == "OEBUBUN" and post_label("") == "SIAGA"
    when = datetime(2026, 11, 28, 6, 5, tzinfo=UTC)
    assert center_receipt_text("K7Q2", when, "Asia/Makassar") == "112 PUSAT TERIMA #K7Q2 14:05"
    assert reply_text("Tim\nmenuju  lokasi") == "112: Tim menuju lokasi"
    assert len(reply_text("x" * 500).encode()) <= 200
    assert ascii_text("Kéfa\tmenanu") == "Kefa menanu"


# ------------------------------------------------------------------------------------------ outbox
class FakeRadio:
    """The send side of the radio boundary: records sends; the test plays the radio's ACK/NAKs."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, int, int, str]] = []
        self.up = True
        self.fail_next = 0
        self._ids = iter(range(100, 10_000))
        self.lock = threading.Lock()

    def send(self, dest: int, text: str, channel: int) -> int:
        if self.fail_next:
            self.fail_next -= 1
            raise RadioError("radio not connected")
        pid = next(self._ids)
        with self.lock:
            self.sent.append((time.monotonic(), pid, dest, text))
        return pid


@pytest.fixture
def radio() -> FakeRadio:
    return FakeRadio()


def make_outbox(radio: FakeRadio, **kw: Any) -> Outbox:
    args: dict[str, Any] = {"min_interval_s": 0.05, "ack_timeout_s": 0.3, "retries": 2, "backoff_s": 0.05, **kw}
    box = Outbox(radio.send, ready=lambda: radio.up, **args)
    box.start()
    return box


def item(key: str, states: list[str], dest: int = HANDSET) -> Outgoing:
    return Outgoing(key=key, dest=dest, text=f"112 {key}", on_state=states.append)


def test_ack_from_the_destination_finishes_a_message(radio: FakeRadio) -> None:
    box = make_outbox(radio)
    try:
        states: list[str] = []
        assert box.submit(item("a", states))
        assert not box.submit(item("a", [])), "the same key is queued once"
        wait_until(lambda: radio.sent, 5, "a send")
        pid = radio.sent[0][1]
        box.on_routing(MY, pid, "NONE", MY)  # implicit ACK from our own radio: not the handset's
        assert states == ["sending", "sent"]
        box.on_routing(HANDSET, pid, "NONE", MY)
        wait_until(lambda: states[-1:] == ["acked"], 5, "acked")
        assert len(radio.sent) == 1 and box.idle()
    finally:
        box.stop()


def test_timeouts_retry_with_backoff_then_fail_or_relayed(radio: FakeRadio) -> None:
    box = make_outbox(radio)
    try:
        states: list[str] = []
        box.submit(item("t", states))
        wait_until(lambda: states[-1:] == ["failed"], 10, "failed after retries")
        assert len(radio.sent) == 3, "one send and two retries"
        relayed: list[str] = []
        box.submit(item("r", relayed))
        wait_until(lambda: len(radio.sent) == 4, 5)
        box.on_routing(MY, radio.sent[-1][1], "NONE", MY)
        wait_until(lambda: relayed[-1:] == ["relayed"], 10, "relayed")
        assert box.counts["timeouts"] >= 5 and box.counts["retries"] >= 4
    finally:
        box.stop()


def test_naks_retry_final_naks_fail_and_rate_limit_costs_no_attempt(radio: FakeRadio) -> None:
    box = make_outbox(radio, ack_timeout_s=30.0)
    try:
        states: list[str] = []
        box.submit(item("n", states))
        for reason in ("RATE_LIMIT_EXCEEDED", "RATE_LIMIT_EXCEEDED", "MAX_RETRANSMIT", "NO_RESPONSE"):
            n = len(radio.sent)
            wait_until(lambda: len(radio.sent) == n + 1, 5, f"a send before {reason}")  # noqa: B023
            box.on_routing(MY, radio.sent[-1][1], reason, MY)
        wait_until(lambda: len(radio.sent) == 5, 5, "the last attempt")
        box.on_routing(HANDSET, radio.sent[-1][1], "NONE", MY)
        wait_until(lambda: states[-1:] == ["acked"], 5)
        final: list[str] = []
        box.submit(item("f", final))
        wait_until(lambda: len(radio.sent) == 6, 5)
        box.on_routing(MY, radio.sent[-1][1], "TOO_LARGE", MY)
        wait_until(lambda: final[-1:] == ["failed"], 5)
        assert len(radio.sent) == 6, "a final NAK is not retried"
    finally:
        box.stop()


def test_an_ack_faster_than_send_returning_is_not_lost(radio: FakeRadio) -> None:
    box = make_outbox(radio, ack_timeout_s=30.0)
    try:
        # The library sleeps after writing, so the ACK can be handled before send() returns its id.
        box.on_routing(HANDSET, 100, "NONE", MY)
        states: list[str] = []
        box.submit(item("early", states))
        wait_until(lambda: states[-1:] == ["acked"], 5)
        assert len(radio.sent) == 1
    finally:
        box.stop()


def test_sends_are_paced_and_wait_for_the_radio(radio: FakeRadio) -> None:
    radio.up = False
    box = make_outbox(radio, min_interval_s=0.15, ack_timeout_s=30.0)
    try:
        states: dict[str, list[str]] = {k: [] for k in "abcd"}
        for key, st in states.items():
            box.submit(item(key, st))
        time.sleep(0.3)
        assert radio.sent == [], "nothing is sent while the radio is down"
        radio.up = True
        radio.fail_next = 1  # a link that drops right at the send: retried, not counted as an attempt
        wait_until(lambda: len(radio.sent) == 4, 10, "four sends")
        times = [t for t, *_ in radio.sent]
        assert all(b - a >= 0.15 for a, b in itertools.pairwise(times))
        assert box.counts["send_errors"] == 1
    finally:
        box.stop()


def test_handsets_file_is_read_and_merged(tmp_path: Path) -> None:
    path = tmp_path / "handsets.csv"
    path.write_text(
        "\ufeff# TTU handsets\nid,officer,village,phone\n!0000beef,Maria Kefi,Oelolok,+628123\n\n"
        '!0000cafe,"Taek, Yohanes",Oebubun,\n',
        encoding="utf-8",
    )
    rows = load_handsets_file(path)
    assert [(h.id, h.officer, h.village) for h in rows] == [
        ("!0000beef", "Maria Kefi", "Oelolok"),
        ("!0000cafe", "Taek, Yohanes", "Oebubun"),
    ]
    cfg = post_config(tmp_path, radio={"host": "127.0.0.1:1", "handsets_file": str(path)})
    merged = with_handsets_file(cfg)
    assert {h.id for h in merged.handsets} == {"!a1b2c3d4", "!0000beef", "!0000cafe"}
    toml = tmp_path / "handsets.toml"
    toml.write_text('[[handsets]]\nid = "!0000BEEF"\nofficer = "Maria Kefi"\n\n[[handsets]]\nid = "!0000cafe"\n')
    assert [h.id for h in load_handsets_file(toml)] == ["!0000beef", "!0000cafe"]
    toml.write_text('[[handsets]]\nid = "!0000beef"\nrank = "x"\n')
    with pytest.raises(ConfigError) as err:
        load_handsets_file(toml)
    assert err.value.key.endswith("handsets[0].rank")


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("officer,village\nA,B\n", ":1"),
        ("id,rank\n!0000beef,x\n", ":1"),
        ("id,officer\n0000beef,x\n", ":2.id"),
        ("id,officer\n!0000beef,x\n!0000beef,y\n", ":3.id"),
        ("id,officer\n!a1b2c3d4,x\n", ":2.id"),  # already in the config
        ("id,officer\n!0000beef\n", ":2"),
        ("id,officer\n!0000beef,x\x07\n", ":2.officer"),
    ],
)
def test_bad_handsets_file_names_line_and_column(tmp_path: Path, content: str, where: str) -> None:
    path = tmp_path / "h.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_handsets_file(path, ["!a1b2c3d4"])
    assert err.value.key.endswith(where), err.value.key
    path.write_bytes(b"id\n\xff\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_handsets_file(path)


# ------------------------------------------------------------------------------------------ node table
def test_node_table_ages_positions_on_the_boot_clock_and_persists(tmp_path: Path) -> None:
    clock = FakeClock()
    store = Store.open(tmp_path / "post.db", clock=clock)
    try:
        nodes = NodeTable(store, clock)
        assert nodes.location(HANDSET) is None
        nodes.update_user(HANDSET, "Petugas Oebubun 01", "OB01")
        nodes.update_position(HANDSET, -9.45, 124.48, 120, None)
        loc = nodes.location(HANDSET)
        assert loc is not None and (loc.source, loc.age_s, loc.lat) == ("gps", 0, -9.45)
        assert store.load_nodes() == []  # in memory until the node_flush job (edge/jobs.py): few SD writes
        clock.advance(FRESH_S + 1)
        loc = nodes.location(HANDSET)
        assert loc is not None and (loc.source, loc.age_s) == ("handset-last-fixed", FRESH_S + 1)
        assert nodes.relay_name(0xD4) == "!a1b2c3d4" and nodes.relay_name(0x11) == "~11"
        assert nodes.flush() == 1
        assert len(store.load_nodes()) == 1
        # The post reboots and its wall clock jumps: the age is taken from the wall clock then.
        clock.reboot(wall_jump_s=100)
        again = NodeTable(store, clock)
        assert again.load() == 1
        loc = again.location(HANDSET)
        assert loc is not None and loc.age_s == FRESH_S + 1 + 100
        assert again.get(HANDSET) is not None and again.get(HANDSET).short_name == "OB01"  # type: ignore[union-attr]
        clock.advance(MAX_AGE_S)
        assert again.location(HANDSET) is None, "a week-old position is not used"
    finally:
        store.close()


# ------------------------------------------------------------------------------------------ the bridge's guards
def test_send_text_refuses_what_would_make_the_library_exit_or_fail(tmp_path: Path) -> None:
    """Bad destinations never reach the library (it calls sys.exit for some); nothing is started here."""
    cfg = post_config(tmp_path, radio={"host": "127.0.0.1:9"})
    assert cfg.radio.meshtastic is not None
    bridge = RadioBridge(cfg.radio.meshtastic, lambda event: None)
    for dest in (0, 0xFFFFFFFF, -5, 2**40):
        with pytest.raises(RadioError, match="destination"):
            bridge.send_text(dest, "112 POS")
    with pytest.raises(RadioError, match="bytes"):
        bridge.send_text(HANDSET, "x" * 201)
    with pytest.raises(RadioError, match="channel"):
        bridge.send_text(HANDSET, "ok", channel=9)
    with pytest.raises(RadioError, match="not connected"):
        bridge.send_text(HANDSET, "112 POS OEBUBUN TERIMA")


def test_config_check_validates_the_handsets_file(tmp_path: Path, run_siaga: Any) -> None:
    from tests.conftest import write_post_config

    bad = tmp_path / "handsets.csv"
    bad.write_text("id,officer\n!0000beef,ok\n!zz,bad\n", encoding="utf-8")
    path = write_post_config(tmp_path, extra=f'\n[radio.meshtastic]\nport = "/dev/ttyACM0"\nhandsets_file = "{bad}"\n')
    result = run_siaga("config", "check", config=path)
    assert result.returncode == 78 and "handsets.csv:3.id" in result.stderr
