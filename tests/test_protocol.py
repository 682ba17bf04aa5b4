"""Wire protocol v1: topics, batching within a byte bound, compression, strict validation both ways."""

from __future__ import annotations

import base64
import json
import random
import re
import string
import zlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siaga.errors import ProtocolError
from siaga.report import REPLY_MAX_BYTES, REPLY_PREFIX
from sync import compact, protocol
from sync.protocol import Rejected, WireReport
from tests.carried import carried_wire, packet_of
from tests.reports import make_mesh_report, make_report

SENT = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


def wire(n: int, **kw: object) -> list[WireReport]:
    return [WireReport(make_report(f"KEBAKARAN rumah #{i} " + "x" * 200, **kw), 12.5 + i, "boot") for i in range(n)]


def batch_payload(reports: list[dict[str, object]], **envelope: object) -> bytes:
    message = {"v": 1, "type": "reports", "post_id": "oebubun", "sent_at": "2026-11-28T07:00:00.000Z"}
    message.update(envelope)
    message["reports"] = reports
    return json.dumps(message).encode()


def entry(report_dict: dict[str, object], age: object = 3.0, src: object = "boot") -> dict[str, object]:
    return {"age_s": age, "age_src": src, "report": report_dict}


# ---------------------------------------------------------------------------- topics
def test_topics_round_trip() -> None:
    name = protocol.topic("ttu", "oebubun", "report")
    assert name == "112/v1/ttu/oebubun/report"
    assert protocol.parse_topic(name) == ("ttu", "oebubun", "report")
    assert protocol.center_subscriptions("ttu", "center") == [
        "$share/center/112/v1/ttu/+/report",
        "$share/center/112/v1/ttu/+/event",
        "112/v1/ttu/+/status",
        "112/v1/center/receivers/+",
    ]
    receiver = protocol.center_receiver_topic("siaga-center-a")
    assert receiver == "112/v1/center/receivers/siaga-center-a"
    assert protocol.parse_center_receiver_topic(receiver) == "siaga-center-a"
    assert protocol.parse_center_receiver_topic("112/v1/center/receivers/a/b") is None
    assert protocol.parse_center_receiver_topic(name) is None


@pytest.mark.parametrize(
    "name",
    ["112/v2/ttu/a/report", "112/v1/ttu/a/b/report", "112/v1/TTU/a/report", "112/v1/ttu/a/nope", "x", ""],
)
def test_bad_topics(name: str) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.parse_topic(name)
    assert info.value.reason == "topic"


def test_topic_refuses_wildcards_in_ids() -> None:
    with pytest.raises(ValueError):
        protocol.topic("ttu", "+", "report")


# ---------------------------------------------------------------------------- batches
@pytest.mark.parametrize("compress", [False, True])
def test_batches_round_trip_in_order_within_bound(compress: bool) -> None:
    items = wire(120)
    batches = protocol.encode_report_batches("oebubun", items, sent_at=SENT, max_bytes=8192, compress=compress)
    assert len(batches) > 1
    assert all(len(b.payload) <= 8192 for b in batches)
    assert [rid for b in batches for rid in b.report_ids] == [w.report.report_id for w in items]
    decoded = [protocol.decode_report_batch(b.payload, "oebubun") for b in batches]
    got = [w for d in decoded for w in d.reports]
    assert [w.report for w in got] == [w.report for w in items]
    assert [w.age_s for w in got] == [w.age_s for w in items]
    assert all(d.sent_at == SENT and not d.rejected and d.post_id == "oebubun" for d in decoded)


def test_compression_shrinks_a_batch() -> None:
    items = wire(60)
    plain = protocol.encode_report_batches("oebubun", items, sent_at=SENT, max_bytes=256 * 1024)
    packed = protocol.encode_report_batches("oebubun", items, sent_at=SENT, max_bytes=256 * 1024, compress=True)
    assert len(plain) == len(packed) == 1
    assert packed[0].payload[0] == 0x78
    assert len(packed[0].payload) * 4 < len(plain[0].payload)


def test_a_report_larger_than_the_bound_goes_alone() -> None:
    items = [WireReport(make_report("A" * 4000), 1.0, "boot"), *wire(2)]
    batches = protocol.encode_report_batches("oebubun", items, sent_at=SENT, max_bytes=1024)
    assert [len(b.report_ids) for b in batches] == [1, 1, 1]


def test_mesh_report_fields_survive() -> None:
    report = make_mesh_report(packet_id=31337)
    [batch] = protocol.encode_report_batches("oebubun", [WireReport(report, 0.0, "wall")], sent_at=SENT, max_bytes=4096)
    [got] = protocol.decode_report_batch(batch.payload, "oebubun").reports
    assert got.report == report and got.age_source == "wall"


# ---------------------------------------------------------------------------- hostile payloads
def _reason(payload: bytes, post: str = "oebubun") -> str:
    with pytest.raises(ProtocolError) as info:
        protocol.decode_report_batch(payload, post)
    return info.value.reason


def test_bad_json() -> None:
    assert _reason(b"{not json") == "json"
    assert _reason(b"") == "json"
    assert _reason(b"\xff\xfe{") == "encoding"
    assert _reason(b'{"v": NaN}') == "json"


def test_ten_megabytes() -> None:
    assert _reason(b"{" + b" " * (10 * 1024 * 1024) + b"}") == "too_large"


def test_zlib_bomb() -> None:
    bomb = zlib.compress(b'{"v":1,"type":"reports","pad":"' + b"0" * (20 * 1024 * 1024) + b'"}', 9)
    assert len(bomb) < protocol.MAX_MESSAGE_BYTES
    assert _reason(bomb) == "too_large"


def test_bad_zlib() -> None:
    assert _reason(b"\x78\x9c garbage") == "encoding"
    assert _reason(zlib.compress(b'{"v":1}')[:-3]) == "encoding"


def test_deep_nesting() -> None:
    assert _reason(b"[" * 100_000 + b"]" * 100_000) == "too_deep"
    nested: object = "x"
    for _ in range(20):
        nested = {"a": nested}
    assert _reason(batch_payload([entry(make_report().to_dict())], extra=nested)) == "too_deep"


def test_unknown_version_and_type() -> None:
    assert _reason(batch_payload([], v=2)) == "version"
    assert _reason(batch_payload([], v=True)) == "version"
    assert _reason(batch_payload([], type="stuff")) == "type"
    assert _reason(b"[1, 2]") == "schema"


def test_wrong_types_in_envelope() -> None:
    assert _reason(batch_payload([], post_id=5)) == "schema"
    assert _reason(batch_payload("nope")) == "schema"  # type: ignore[arg-type]
    assert _reason(batch_payload([])) == "schema"
    assert _reason(batch_payload([entry(make_report().to_dict())], sent_at="yesterday")) == "schema"
    too_many = [{"age_s": 0}] * (protocol.MAX_REPORTS_PER_BATCH + 1)
    assert _reason(batch_payload(too_many)) == "too_many"


def test_post_id_must_match_topic() -> None:
    payload = batch_payload([entry(make_report().to_dict())])
    assert _reason(payload, post="napan") == "post_mismatch"


def test_bad_reports_inside_a_good_envelope_are_rejected_by_id() -> None:
    good = make_report()
    bad_category = make_report().to_dict() | {"category": "alien"}
    other_post = make_report(post_id="napan").to_dict()
    bad_age = make_report().to_dict()
    payload = batch_payload(
        [
            entry(good.to_dict()),
            entry(bad_category),
            entry(other_post),
            entry(bad_age, age=-5),
            entry(make_report().to_dict(), src="sundial"),
            "not an object",
            entry({"report_id": 1}),
        ]
    )
    batch = protocol.decode_report_batch(payload, "oebubun")
    assert [w.report for w in batch.reports] == [good]
    assert [r.report_id for r in batch.rejected] == [
        bad_category["report_id"],
        other_post["report_id"],
        bad_age["report_id"],
        batch.rejected[3].report_id,
    ]
    assert "category" in batch.rejected[0].reason
    assert batch.unreadable == 2


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_only_ever_raise_protocol_error(data: bytes) -> None:
    for decode in (
        lambda: protocol.decode_report_batch(data, "oebubun"),
        lambda: protocol.decode_ack(data),
        lambda: protocol.decode_command(data),
        lambda: protocol.decode_status(data, "oebubun"),
        lambda: protocol.decode_event(data),
    ):
        try:
            decode()
        except ProtocolError:
            pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values, json_values)
def test_random_json_in_a_batch_only_ever_raises_protocol_error(reports: object, extra: object) -> None:
    payload = json.dumps({"v": 1, "type": "reports", "post_id": "oebubun", "reports": reports, "x": extra}).encode()
    try:
        batch = protocol.decode_report_batch(payload, "oebubun")
    except ProtocolError:
        return
    assert len(batch.reports) + len(batch.rejected) + batch.unreadable == len(reports)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- ack, status, cmd, event, center
def test_ack_round_trip_and_validation() -> None:
    payload = protocol.encode_ack(["r-00000001", "r-00000002"], [Rejected("r-00000003", "category: alien")])
    ack = protocol.decode_ack(payload)
    assert ack.ids == ["r-00000001", "r-00000002"]
    assert ack.rejected == [Rejected("r-00000003", "category: alien")]
    with pytest.raises(ProtocolError):
        protocol.decode_ack(b'{"v":1,"type":"ack","ids":[1]}')
    with pytest.raises(ProtocolError):
        protocol.decode_ack(b'{"v":1,"type":"ack","ids":["../../etc"]}')
    with pytest.raises(ProtocolError):
        protocol.decode_ack(b'{"v":1,"type":"ack","ids":[],"rejected":[{"report_id":"r-00000001"}]}')


def test_status_validation() -> None:
    status = {
        "post_id": "oebubun",
        "state": "online",
        "boot": 3,
        "queue": {"pending": 1, "sent": 0},
        "oldest_pending_age_s": 12.5,
        "battery": {"voltage": 12.6},
        "future_field": "ignored",
    }
    got = protocol.decode_status(protocol.encode_status(status), "oebubun")
    assert got["boot"] == 3 and got["queue"] == {"pending": 1, "sent": 0} and "future_field" not in got
    with pytest.raises(ProtocolError) as info:
        protocol.decode_status(protocol.encode_status(status), "napan")
    assert info.value.reason == "post_mismatch"
    with pytest.raises(ProtocolError):
        protocol.decode_status(protocol.encode_status({**status, "boot": "three"}), "oebubun")
    with pytest.raises(ProtocolError):
        protocol.decode_status(protocol.encode_status({**status, "state": "asleep"}), "oebubun")
    with pytest.raises(ProtocolError):
        protocol.decode_status(protocol.encode_status({**status, "queue": {"pending": "many"}}), "oebubun")
    # the relay summary: counts and a route, validated, unknown keys dropped
    relay = {"metric": 2, "route": "bukit-01", "neighbours": 3, "held": 4, "parked": 1, "center_acks_owed": 0}
    got = protocol.decode_status(protocol.encode_status({**status, "relay": {**relay, "x": 1}}), "oebubun")
    assert got["relay"] == relay
    for bad in ({"parked": -1}, {"held": True}, {"metric": "2"}, {"route": "x" * 41}, {"neighbours": 10**12}):
        with pytest.raises(ProtocolError):
            protocol.decode_status(protocol.encode_status({**status, "relay": bad}), "oebubun")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.none(), st.text(max_size=40), st.integers(), st.lists(st.text(max_size=5), max_size=2)),
    st.integers(0, 400),
    st.integers(0, 7),
)
def test_a_command_with_any_origin_is_refused_or_names_a_post(origin: object, at: int, bit: int) -> None:
    """The additive ``origin`` (a reply carried over the mesh): any value, and every bit flip of a command
    that has one, decodes to a valid command or raises ProtocolError — nothing else."""
    cmd = {
        "cmd_id": "0c6f6b9e-1f2a-4c1b-9a70-3b8d2f1e0a11",
        "type": "reply",
        "report_id": "ma1b2c3d4-00000001-20261128",
        "to": "!a1b2c3d4",
        "text": "Ambulans berangkat 14:05",
        "origin": origin,
    }
    payload = bytearray(protocol.encode({"v": 1, **cmd}))
    payload[at % len(payload)] ^= 1 << bit
    for data in (protocol.encode({"v": 1, **cmd}), bytes(payload)):
        try:
            got = protocol.decode_command(data)
        except ProtocolError:
            continue
        assert set(got) <= {"cmd_id", "type", "report_id", "to", "text", "origin"}
        assert "origin" not in got or re.fullmatch(r"[a-z0-9-]{1,32}", got["origin"])


def test_command_round_trip_and_validation() -> None:
    cmd = {
        "cmd_id": "0c6f6b9e-1f2a-4c1b-9a70-3b8d2f1e0a11",
        "type": "reply",
        "report_id": "m a1b2c3d4-00000001-20261128".replace(" ", ""),
        "to": "!a1b2c3d4",
        "text": "Ambulans berangkat 14:05",
    }
    assert protocol.decode_command(protocol.encode_command(cmd, sent_at=SENT)) == cmd
    for bad in ({"to": "broadcast"}, {"text": ""}, {"text": "x" * 201}, {"type": "reboot"}, {"cmd_id": 5}):
        with pytest.raises(ProtocolError):
            protocol.decode_command(protocol.encode({"v": 1, **cmd, **bad}))
    # a reply for another post, to be carried over the mesh (docs/RELAY.md): origin is additive and validated
    carried = {**cmd, "origin": "desa-a"}
    assert protocol.decode_command(protocol.encode_command(carried, sent_at=SENT)) == carried
    for origin in ("", "Desa A", "x" * 33, 5, ["desa-a"], {"p": 1}):
        with pytest.raises(ProtocolError):
            protocol.decode_command(protocol.encode({"v": 1, **cmd, "origin": origin}))


def test_the_reply_limit_is_195_bytes_of_utf8_the_one_packet_budget() -> None:
    # "112: " + text must fit the post's one-packet budget (tests/test_airtime.py checks that budget on air)
    assert protocol.MAX_REPLY_TEXT_BYTES == REPLY_MAX_BYTES - len(REPLY_PREFIX) == 195
    assert protocol.reply_text_problem("a" * 195) is None
    assert protocol.reply_text_problem("é" * 97) is None  # 194 bytes
    for bad in ("a" * 196, "é" * 98, "🚑" * 49, "", "   ", "a\x00b", None, 5):
        assert protocol.reply_text_problem(bad) is not None, bad
    cmd = {"cmd_id": "cmd-00000001", "type": "reply", "report_id": "r-00000001", "to": "!a1b2c3d4"}
    assert protocol.check_command({**cmd, "text": "é" * 97})["text"] == "é" * 97
    with pytest.raises(ProtocolError, match="195 bytes"):
        protocol.check_command({**cmd, "text": "é" * 98})  # 98 characters, 196 bytes


def test_event_round_trip() -> None:
    payload = protocol.encode_reply_state("cmd-00000001", "r-00000001", "delivered", at=SENT)
    assert protocol.decode_event(payload) == {"cmd_id": "cmd-00000001", "report_id": "r-00000001", "state": "delivered"}
    with pytest.raises(ProtocolError):
        protocol.decode_event(
            protocol.encode(
                {"v": 1, "type": "reply_state", "cmd_id": "cmd-00000001", "report_id": "r-00000001", "state": "eaten"}
            )
        )


def test_center_state() -> None:
    assert protocol.decode_center_state(protocol.encode_center_state("online", at=SENT)) == protocol.CenterState(
        "online", "2026-11-28T07:00:00.000Z", resumed=False
    )
    resumed = protocol.decode_center_state(protocol.encode_center_state("online", at=SENT, resumed=True))
    assert resumed.resumed is True
    assert protocol.decode_center_state(protocol.encode_center_state("offline")) == protocol.CenterState("offline")
    beat = protocol.decode_center_state(protocol.encode_center_state("online", at=SENT, beat=SENT))
    assert beat.beat == "2026-11-28T07:00:00.000Z"
    with pytest.raises(ProtocolError):
        protocol.decode_center_state(protocol.encode({"v": 1, "type": "center_state", "state": "online", "beat": "x"}))
    # an older center sends no "session": nothing is assumed kept
    old = protocol.encode({"v": 1, "type": "center_state", "state": "online", "at": "2026-11-28T07:00:00.000Z"})
    assert protocol.decode_center_state(old).resumed is False
    with pytest.raises(ProtocolError):
        protocol.decode_center_state(
            protocol.encode({"v": 1, "type": "center_state", "state": "online", "at": "x", "session": 1})
        )
    with pytest.raises(ProtocolError):
        protocol.decode_center_state(protocol.encode({"v": 1, "type": "center_state", "state": "maybe"}))


def test_ack_carries_the_center_commit_time() -> None:
    at = datetime(2026, 11, 28, 6, 2, 11, 204000, tzinfo=UTC)
    ack = protocol.decode_ack(protocol.encode_ack(["ma1b2c3d4-0000002a-20261128"], at=at))
    assert ack.at == at and ack.ids == ["ma1b2c3d4-0000002a-20261128"]
    assert protocol.decode_ack(protocol.encode_ack(["ma1b2c3d4-0000002a-20261128"])).at is None
    with pytest.raises(ProtocolError):
        protocol.decode_ack(b'{"v": 1, "type": "ack", "ids": [], "rejected": [], "at": "yesterday"}')


# ---------------------------------------------------------------------------- carried reports (relay)
def _carried_payload(relay: object, *, body: dict[str, object] | None = None, carrier: str = "napan") -> bytes:
    report = body if body is not None else make_report(post_id="oebubun").to_dict()
    return batch_payload([entry({**report, "relay": relay})], post_id=carrier)


def test_a_carried_report_round_trips_with_its_packet() -> None:
    report = make_mesh_report(post_id="oebubun")
    packet = packet_of(report, age_s=30, hops=2, transit_s=100)
    wire_entry = carried_wire(packet, prev="bukit-01", hops=2, held_s=7.5)
    [sealed] = protocol.encode_report_batches("napan", [wire_entry], sent_at=SENT, max_bytes=16 * 1024)
    batch = protocol.decode_report_batch(sealed.payload, "napan")
    assert batch.rejected == [] and len(batch.reports) == 1
    [got] = batch.reports
    assert got.report.post_id == "oebubun" and got.report_id == report.report_id and got.age_s == 7.5
    assert got.relay is not None
    assert (got.relay.packet, got.relay.prev, got.relay.hops) == (packet, "bukit-01", 2)
    assert got.relay.parsed.report.report_id == report.report_id and not got.relay.parsed.verified


def test_a_carried_report_whose_previous_hop_is_known_only_by_its_node_id_is_accepted() -> None:
    # a carrier that took custody before hearing the sender's beacon names it by node id (docs/RELAY.md)
    report = make_mesh_report(post_id="oebubun")
    wire_entry = carried_wire(packet_of(report, hops=1), prev="!5fe4c294", hops=2)
    [sealed] = protocol.encode_report_batches("napan", [wire_entry], sent_at=SENT, max_bytes=16 * 1024)
    batch = protocol.decode_report_batch(sealed.payload, "napan")
    assert batch.rejected == [] and batch.reports[0].relay is not None
    assert batch.reports[0].relay.prev == "!5fe4c294"


def test_without_a_relay_field_another_posts_report_is_still_refused() -> None:
    other = make_report(post_id="oebubun").to_dict()
    batch = protocol.decode_report_batch(batch_payload([entry(other)], post_id="napan"), "napan")
    assert batch.reports == [] and "post_mismatch" in batch.rejected[0].reason


def test_the_largest_packet_fits_the_relay_field_bound() -> None:
    assert protocol.MAX_RELAY_PACKET_B64 == 292
    noise = random.Random(12).choices(string.ascii_letters + string.digits + string.punctuation, k=4000)
    packet = packet_of(make_report("".join(noise), post_id="oebubun"))  # cut to fit: about the largest
    assert compact.MAX_PACKET_BYTES - 4 <= len(packet) <= compact.MAX_PACKET_BYTES
    assert len(protocol.encode_relay(packet, "napan", 0)["packet"]) <= protocol.MAX_RELAY_PACKET_B64
    biggest = packet + b"\x00" * (compact.MAX_PACKET_BYTES - len(packet))
    assert len(base64.b64encode(biggest)) == protocol.MAX_RELAY_PACKET_B64


def _good_packet() -> tuple[dict[str, object], bytes]:
    report = make_report(post_id="oebubun")
    return report.to_dict(), packet_of(report)


@pytest.mark.parametrize(
    ("relay", "why"),
    [
        ("not an object", "relay must be an object"),
        ({"packet": "AAAA", "prev": "oebubun", "hops": 1, "sig": "x"}, "unknown field"),
        ({"packet": "AAAA", "hops": 1}, "relay.prev"),
        ({"packet": "AAAA", "prev": "Oebubun!", "hops": 1}, "relay.prev"),
        ({"packet": "AAAA", "prev": "x" * 33, "hops": 1}, "relay.prev"),
        ({"packet": "AAAA", "prev": "!5FE4C294", "hops": 1}, "relay.prev"),
        ({"packet": "AAAA", "prev": "oebubun", "hops": -1}, "relay.hops"),
        ({"packet": "AAAA", "prev": "oebubun", "hops": 128}, "relay.hops"),
        ({"packet": "AAAA", "prev": "oebubun", "hops": True}, "relay.hops"),
        ({"packet": "AAAA", "prev": "oebubun", "hops": 1.0}, "relay.hops"),
        ({"packet": "AAAA", "prev": "oebubun", "hops": "1"}, "relay.hops"),
        ({"prev": "oebubun", "hops": 1}, "relay.packet"),
        ({"packet": 12, "prev": "oebubun", "hops": 1}, "relay.packet"),
        ({"packet": "", "prev": "oebubun", "hops": 1}, "relay.packet"),
        ({"packet": "A" * 296, "prev": "oebubun", "hops": 1}, "relay.packet must be base64 of at most 219"),
        ({"packet": "AAA*", "prev": "oebubun", "hops": 1}, "not valid base64"),
        ({"packet": "AAA", "prev": "oebubun", "hops": 1}, "not valid base64"),
        ({"packet": "ÄÄÄÄ", "prev": "oebubun", "hops": 1}, "not valid base64"),
        ({"packet": "AAAA", "prev": "oebubun", "hops": 1}, "relay_packet"),  # 3 zero bytes: no packet
        ({"packet": "AQE" + "A" * 289, "prev": "oebubun", "hops": 1}, "relay_packet"),  # garbage after the header
    ],
)
def test_hostile_relay_fields_are_refused_by_id(relay: object, why: str) -> None:
    body, _packet = _good_packet()
    batch = protocol.decode_report_batch(_carried_payload(relay, body=body), "napan")
    assert batch.reports == []
    [refused] = batch.rejected
    assert refused.report_id == body["report_id"] and why in refused.reason, refused.reason


def test_a_packet_of_another_report_or_post_is_a_mismatch() -> None:
    body, packet = _good_packet()
    other_report = packet_of(make_report("BANJIR", post_id="oebubun"))
    other_post = packet_of(make_report(report_id=str(body["report_id"]), post_id="bijaepasu"))
    for wrong in (other_report, other_post):
        relay = protocol.encode_relay(wrong, "oebubun", 1)
        batch = protocol.decode_report_batch(_carried_payload(relay, body=body), "napan")
        assert batch.reports == [] and "relay_mismatch" in batch.rejected[0].reason
    # the carrier's own name on another's packet is no way round the check either
    batch = protocol.decode_report_batch(
        _carried_payload(protocol.encode_relay(packet, "oebubun", 1), body={**body, "post_id": "napan"}), "napan"
    )
    assert batch.reports == [] and "relay_mismatch" in batch.rejected[0].reason


def test_oversized_and_other_version_packets_are_refused() -> None:
    _body, packet = _good_packet()
    for bad, reason in (
        (packet + b"\x00" * (compact.MAX_PACKET_BYTES + 1 - len(packet)), "schema"),  # 220 bytes: 296 chars
        (b"\x02" + packet[1:], "relay_packet"),  # a codec version this center does not know
        (packet[:-1], "relay_packet"),  # cut short
    ):
        relay = {"packet": base64.b64encode(bad).decode(), "prev": "oebubun", "hops": 0}
        with pytest.raises(ProtocolError) as info:
            protocol.decode_relay(relay)
        assert info.value.reason == reason
    with pytest.raises(ProtocolError):
        protocol.encode_relay(packet, "Not A Slug", 0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=240), st.integers(-2, 130), st.text(max_size=40))
def test_random_relay_fields_only_ever_refuse_the_entry(packet: bytes, hops: int, prev: str) -> None:
    body, _ = _good_packet()
    relay = {"packet": base64.b64encode(packet).decode(), "prev": prev, "hops": hops}
    batch = protocol.decode_report_batch(_carried_payload(relay, body=body), "napan")
    assert len(batch.reports) + len(batch.rejected) == 1
