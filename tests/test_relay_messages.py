"""The custody messages of sync/compact.py (docs/RELAY.md, "Custody protocol, version 1"): the transfer id of
a report, CACK ranges, BEACON, CENTER_ACK, REPLY — exact round trips, and hostile input (garbage, every truncation,
every bit flip) refused with a ProtocolError only."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siaga.errors import ProtocolError
from siaga.report import mesh_report_id, new_report_id
from sync import compact as codec
from sync.compact import Beacon, CackRange, CenterAck, Reply
from tests.conftest import Budget
from tests.test_relay_codec import DECODE_REASONS, KEY, keys, sample

WHEN = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
DECODERS: dict[int, Callable[[bytes], object]] = {
    codec.TYPE_CUSTODY_ACK: codec.decode_cack,
    codec.TYPE_BEACON: codec.decode_beacon,
    codec.TYPE_CENTER_ACK: codec.decode_center_ack,
    codec.TYPE_REPLY: codec.decode_reply,
    codec.TYPE_REPORT: lambda p: codec.decode_report(p, keys),
}


def decode_any(payload: bytes) -> object:
    """What a node does with any port-300 payload: dispatch on byte 1, decode."""
    return DECODERS[codec.message_type(payload)](payload)


def outcome(payload: bytes) -> str:
    try:
        decode_any(payload)
    except ProtocolError as exc:
        assert exc.reason in DECODE_REASONS, exc
        assert str(exc)
        return exc.reason
    return "ok"


def samples() -> list[bytes]:
    acks = codec.encode_cacks(codec.cack_ranges([(7, 0), (8, 0), (9, 0), (10, 1), (2**32 - 1, 2)]))
    beacon = codec.encode_beacon(Beacon("bukit-01", 2, relay=True, route_seq=513, held=17, free_mib=900, battery=81))
    center = codec.encode_center_ack(
        CenterAck(99, "oebubun", WHEN, (mesh_report_id(0x1A2B3C4D, 5, WHEN), new_report_id(), "legacy:report.01"))
    )
    reply = codec.encode_reply(
        Reply(77, "oebubun", mesh_report_id(0x1A2B3C4D, 5, WHEN), CMD_ID, "Ambulans berangkat, tunggu di jalan")
    )
    plain = codec.encode_reply(Reply(78, "o", new_report_id(), "cmd-00000001", "ok"))
    return [*acks, beacon, center, reply, plain]


CMD_ID = "0c6f6b9e-1f2a-4c1b-9a70-3b8d2f1e0a11"


# ---------------------------------------------------------------------------- the report's transfer id
def test_a_report_carries_its_transfer_id_outside_the_tag() -> None:
    payload = codec.encode_report(sample(), KEY, xmit=0xDEADBEEF)
    assert payload[codec.HEADER_BYTES : codec.SIGNED_START] == bytes.fromhex("deadbeef")
    got = codec.decode_report(payload, keys)
    assert got.verified and got.xmit == 0xDEADBEEF
    # each hop rewrites it; the signed bytes and the tag stay the origin's
    moved = codec.forward_report(payload, held_s=5, xmit=12)
    again = codec.with_xmit(moved, 13)
    for p in (moved, again):
        assert codec.decode_report(p, keys).verified
        assert p[codec.SIGNED_START :] == payload[codec.SIGNED_START :]
    assert (codec.parse_report(moved).xmit, codec.parse_report(again).xmit) == (12, 13)
    assert codec.parse_report(codec.forward_report(payload, held_s=1)).xmit == 0xDEADBEEF
    for bad in (-1, 2**32):
        with pytest.raises(ProtocolError):
            codec.encode_report(sample(), KEY, xmit=bad)


# ---------------------------------------------------------------------------- CACK
def test_cack_ranges_fold_consecutive_ids_of_one_outcome() -> None:
    ranges = codec.cack_ranges([(5, 0), (3, 0), (4, 0), (6, 1), (7, 1), (9, 0), (4, 0)])
    assert ranges == [CackRange(3, 2, 0), CackRange(6, 1, 1), CackRange(9, 0, 0)]
    (packet,) = codec.encode_cacks(ranges)
    assert len(packet) == 3 + 3 * 6
    assert codec.decode_cack(packet) == tuple(ranges)
    assert [list(r.ids()) for r in ranges] == [[3, 4, 5], [6, 7], [9]]
    # 300 consecutive ids: two ranges (a run is at most 256 ids); 100 scattered ones: 3 packets of <= 36
    assert len(codec.cack_ranges((i, 0) for i in range(300))) == 2
    scattered = codec.cack_ranges((i * 2, 0) for i in range(100))
    packets = codec.encode_cacks(scattered)
    assert [len(codec.decode_cack(p)) for p in packets] == [36, 36, 28]
    assert all(len(p) <= codec.MAX_PACKET_BYTES for p in packets)
    assert len(packets[0]) == codec.MAX_PACKET_BYTES


def test_cack_refuses_what_v1_does_not_allow() -> None:
    good = codec.encode_cacks([CackRange(1, 0, 0)])[0]
    for bad in (
        good[:2] + b"\x00",  # no range
        good[:2] + bytes([37]) + good[3:] * 37,  # too many
        good[:-1] + b"\x03",  # unknown outcome
        good + b"\x00",  # stray bytes
        bytes([1, 2, 1]) + (2**32 - 1).to_bytes(4, "big") + b"\x01\x00",  # wraps
    ):
        assert outcome(bad) in {"schema", "short", "too_large"}, bad.hex()
    with pytest.raises(ProtocolError):
        codec.encode_cacks([CackRange(2**32 - 1, 1, 0)])
    with pytest.raises(ProtocolError):
        codec.cack_ranges([(1, 3)])


# ---------------------------------------------------------------------------- BEACON
def test_beacon_round_trip_and_limits() -> None:
    b = Beacon("bukit-01", 2, relay=True, route_seq=513, held=17, free_mib=900, battery=81)
    payload = codec.encode_beacon(b)
    up = Beacon("kefa-kota", 0, uplink=True)
    assert codec.decode_beacon(codec.encode_beacon(up)) == up
    assert len(payload) == 14 + len("bukit-01")
    assert codec.decode_beacon(payload) == b
    # via: the tag of the neighbour this node routes through; none for an uplink or for no route
    routed = Beacon("bukit-01", 2, via=codec.post_tag("kefa"))
    assert codec.decode_beacon(codec.encode_beacon(routed)).via == codec.post_tag("kefa") != 0
    for no_hop in (Beacon("a", 0, uplink=True, via=7), Beacon("a", codec.METRIC_NONE, via=7)):
        with pytest.raises(ProtocolError):
            codec.encode_beacon(no_hop)
    forged = bytearray(codec.encode_beacon(up))
    forged[12:14] = (7).to_bytes(2, "big")  # an uplink beacon naming a next hop
    assert outcome(bytes(forged)) == "schema"
    # counts saturate; a metric of 0 without the uplink flag (or the other way round) is refused
    assert codec.decode_beacon(codec.encode_beacon(Beacon("a", 3, held=10**6))).held == 0xFFFF
    assert outcome(codec.encode_beacon(Beacon("a", 0))) == "schema"
    assert outcome(codec.encode_beacon(Beacon("a", 1, uplink=True))) == "schema"
    for bad in (Beacon("A", 1), Beacon("a", 256), Beacon("a", 1, battery=150), Beacon("a", 1, route_seq=70000)):
        with pytest.raises(ProtocolError):
            codec.encode_beacon(bad)


# ---------------------------------------------------------------------------- CENTER_ACK
def test_center_ack_round_trip_and_packing() -> None:
    ids = (mesh_report_id(0x1A2B3C4D, 5, WHEN), new_report_id(), "legacy:report.01")
    ack = CenterAck(99, "oebubun", WHEN, ids)
    got = codec.decode_center_ack(codec.encode_center_ack(ack))
    assert got == ack
    many = [mesh_report_id(0x1A2B3C4D, i, WHEN) for i in range(40)]
    packets = codec.encode_center_acks(iter(range(1000, 2000)), "oebubun", WHEN, many)
    assert len(packets) == 3 and [len(ids) for _p, ids in packets] == [18, 18, 4]
    back = [codec.decode_center_ack(p) for p, _ids in packets]
    assert [b.xmit for b in back] == [1000, 1001, 1002]
    assert [rid for b in back for rid in b.report_ids] == many
    assert all(len(p) <= codec.MAX_PACKET_BYTES for p, _ids in packets)
    moved = codec.with_center_ack_xmit(packets[0][0], 7)
    assert codec.decode_center_ack(moved).xmit == 7
    with pytest.raises(ProtocolError):
        codec.encode_center_acks(iter([1]), "oebubun", WHEN, [])
    # a mesh id in the origin-handset form (0) cannot be read without the handset: refused
    one = codec.encode_center_ack(CenterAck(1, "o", WHEN, (new_report_id(),)))
    assert outcome(one[:-17] + b"\x00" + one[-16:-10]) in {"schema", "short"}


# ---------------------------------------------------------------------------- REPLY
def test_reply_round_trip_deflate_and_limits() -> None:
    for text in ("ok", "Ambulans berangkat 14:05, tunggu di jalan utama desa", "é" * 97, "x" * 195):
        reply = Reply(2**32 - 1, "oebubun", mesh_report_id(0x1A2B3C4D, 5, WHEN), CMD_ID, text)
        payload = codec.encode_reply(reply)
        assert codec.decode_reply(payload) == reply
        assert len(payload) <= codec.MAX_PACKET_BYTES
    # the dictionary makes a wordy Indonesian reply shorter than its UTF-8
    text = "Tim SAR sudah berangkat ke lokasi, mohon tunggu di tempat aman dan jauhi sungai. " * 2
    payload = codec.encode_reply(Reply(1, "oebubun", new_report_id(), CMD_ID, text.strip()))
    assert payload[2 + 4 + 8 + 17 + 17] == codec.CURRENT_TEXT_DICT
    assert len(payload) < 2 + 4 + 8 + 17 + 17 + 2 + len(text.strip())
    for bad in ("", "  ", "a\x00b", "x" * 196, "é" * 98):
        with pytest.raises(ProtocolError):
            codec.encode_reply(Reply(1, "oebubun", new_report_id(), CMD_ID, bad))
    with pytest.raises(ProtocolError):
        codec.encode_reply(Reply(1, "Not A Post", new_report_id(), CMD_ID, "ok"))
    # the longest ids and post id leave less room than the reply limit: too_large, never a cut text
    rnd = random.Random(3)
    noise = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789 .,") for _ in range(195))
    with pytest.raises(ProtocolError) as exc:
        codec.encode_reply(Reply(1, "p" * 32, "t" * 64, "c" * 64, noise))
    assert exc.value.reason == "too_large"


# ---------------------------------------------------------------------------- hostile input
def test_dispatch_refuses_unknown_versions_and_types() -> None:
    for payload in samples():
        assert outcome(bytes([2]) + payload[1:]) == "version"
        assert outcome(payload[:1] + b"\x09" + payload[2:]) == "type"
        other = codec.TYPE_BEACON if payload[1] != codec.TYPE_BEACON else codec.TYPE_CUSTODY_ACK
        with pytest.raises(ProtocolError):
            DECODERS[other](payload)
    assert outcome(b"") == "short"
    assert outcome(samples()[0] + b"\x00" * 300) == "too_large"


def test_every_truncation_and_bit_flip_is_refused_or_decodes() -> None:
    seen: Counter[str] = Counter()
    for payload in samples():
        for n in range(len(payload)):
            got = outcome(payload[:n])
            assert got != "ok", (payload.hex(), n)
            seen[got] += 1
        for bit in range(len(payload) * 8):
            flipped = bytearray(payload)
            flipped[bit // 8] ^= 1 << (bit % 8)
            seen[outcome(bytes(flipped))] += 1
    # no tag on these: a flip in a value field decodes to another value (the LoRa CRC and PKI's AES-CCM
    # guard the radio hop); what matters is that nothing but ProtocolError ever escapes
    assert {"short", "schema", "version", "type"} <= set(seen), seen


@pytest.mark.fuzz
def test_random_and_mutated_messages_never_raise_anything_else(budget: Budget) -> None:
    base = samples()
    seen: Counter[str] = Counter()

    def check(data: bytes, which: int, edits: list[tuple[int, int]], cut: int) -> None:
        seen[outcome(data)] += 1
        for prefix_type in (2, 3, 4, 5):
            seen[outcome(bytes([1, prefix_type]) + data)] += 1
        payload = bytearray(base[which % len(base)])
        for offset, value in edits:
            payload[offset % len(payload)] = value
        seen[outcome(bytes(payload[:cut]))] += 1

    run = settings(
        max_examples=budget.pick(2000, 30_000), deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )(
        given(
            st.binary(max_size=240),
            st.integers(0, 10),
            st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), max_size=4),
            st.integers(0, 240),
        )(check)
    )
    run()
    assert seen["ok"] > 0 and seen["short"] > 0, seen


def test_random_cack_sets_round_trip() -> None:
    rng = random.Random(5)
    for _ in range(200):
        pairs = {(rng.randrange(0, 2**32), rng.randrange(3)) for _ in range(rng.randrange(1, 80))}
        pairs |= {(x + 1, o) for x, o in list(pairs)[:10] if x + 1 < 2**32}
        ranges = codec.cack_ranges(pairs)
        back = [r for p in codec.encode_cacks(ranges) for r in codec.decode_cack(p)]
        covered = {(x, r.outcome) for r in back for x in r.ids()}
        firsts = {x for x, _o in pairs}
        assert {x for x, _o in covered} == firsts


def test_the_radio_turns_port_300_packets_into_relay_events() -> None:
    """What the meshtastic library publishes for our private port (decoded.portnum stays the int 300,
    topic meshtastic.receive.data.300) becomes a MeshRelayPacket; our own echo is ignored."""
    from edge.radio import BROADCAST_NUM, Ignored, MeshRelayPacket, packet_to_event

    payload = samples()[0]
    packet = {
        "from": 0x10000002,
        "to": 0x10000001,
        "id": 5,
        "rxSnr": -3.5,
        "decoded": {"portnum": 300, "payload": payload},
    }
    event = packet_to_event(packet, 0x10000001)
    assert event == MeshRelayPacket(0x10000002, 0x10000001, payload, -3.5)
    broadcast = packet_to_event({**packet, "to": BROADCAST_NUM}, 0x10000001)
    assert isinstance(broadcast, MeshRelayPacket) and broadcast.to_num == BROADCAST_NUM
    assert isinstance(packet_to_event(packet, 0x10000002), Ignored)
