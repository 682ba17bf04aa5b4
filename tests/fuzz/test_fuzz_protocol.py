"""Hostile MQTT payloads into the center: the wire protocol's decode/validate path, the center's storage, and
(for a sample) a running receiver behind a real Mosquitto.

Payloads: random bytes, random JSON, and mutations of a valid report batch — a value anywhere replaced by a
value of another type, a key removed or added, huge strings, deep nesting, number literals JSON allows but
floats cannot hold (``1e400``), lone-surrogate escapes, a BOM, trailing junk, 0 or 501 reports — plain or
zlib-compressed (docs/PROTOCOL.md), plus zlib bombs and broken zlib streams.

In process (every example): decoding raises nothing but :class:`ProtocolError`, whose ``reason`` is one of
the documented counter keys; a batch that decodes accounts for every entry (stored, refused with a reason
the post is told, or unreadable); the center can store what was accepted (StorageSink → SQLite, the real
ingest) and answer it (the ack encodes and decodes); at the end the storage holds exactly the accepted
reports and passes its integrity check.

Through the broker (a sample): each payload is published to a running receiver; exactly one of its
counters moves per message (a batch, a status, an event, or a rejection) and the rejection is counted
under the reason the protocol gives; the receiver never drops its connection (a payload that made it fail
would be redelivered forever); a valid report from a real post afterwards is stored and acknowledged.
"""

from __future__ import annotations

import base64
import copy
import json
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from center.relayed import RelayVerifier
from center.service import StorageSink
from center.storage import CenterStorage, open_storage
from devkit.harness.mosquitto import Mosquitto
from devkit.harness.synctools import Center, Post, center_report_ids, make_reports, post_config, wait_for
from siaga.config import TlsMqttConfig
from siaga.errors import ProtocolError
from siaga.report import Callback, Casualties
from sync import protocol
from sync.mqtt import publish_once
from sync.receiver import ReceivedBatch, RelayCheck, check_carried
from tests.carried import SECRET, carried_dict, packet_of, tamper_text
from tests.conftest import Budget
from tests.fuzz.conftest import Reasons
from tests.reports import make_mesh_report, make_report

pytestmark = pytest.mark.fuzz

POST = "oebubun"
REPORT_TOPIC = protocol.topic("ttu", POST, "report")
#: Envelope refusals (docs/PROTOCOL.md "Limits and validation"), and the event topic's own two.
ENVELOPE_REASONS = (
    "too_large",
    "encoding",
    "json",
    "schema",
    "too_deep",
    "version",
    "type",
    "too_many",
    "post_mismatch",
    "topic",
    "unknown_cmd",
)
#: Refusals of single reports inside a good envelope (Receiver.rejects); the relay ones are of reports
#: another post carried (center/relayed.py).
ENTRY_REASONS = ("report_invalid", "report_unreadable", "relay_tag", "relay_report", "relay_unverifiable")
KNOWN = (*ENVELOPE_REASONS, *ENTRY_REASONS)
EXAMPLE_CAP = timedelta(seconds=30)


# ---------------------------------------------------------------------------------- a valid batch
def _base_reports() -> list[dict[str, Any]]:
    full = make_report(
        "KEBAKARAN rumah warga, 2 orang luka",
        origin="!a1b2c3d4",
        lat=-9.3853,
        lon=124.3544,
        accuracy_m=25.0,
        loc_source="gps",
        loc_age_s=30,
        area_desc="Oebubun",
        area_code="53.23.01.2001",
        casualties=Casualties(injured=2),
        callback=Callback(handset="!a1b2c3d4", officer="Yohanes Taek", village="Oebubun", phone="+6281200000000"),
        verified=True,
    )
    return [
        full.to_dict(),
        make_mesh_report().to_dict(),
        make_report("BANJIR", category="banjir").to_dict(),
        _carried_base(),
    ]


def _carried_base() -> dict[str, Any]:
    """A report of post bijaepasu (no uplink) that POST carried: its genuine packet and the relay field."""
    origin = make_mesh_report(from_node=0xB0B0B0B0, post_id="bijaepasu", casualties=Casualties(dead=1))
    return carried_dict(packet_of(origin, age_s=90, hops=1, transit_s=30), prev="bukit-01", hops=1)


BASE = _base_reports()
#: The center's verifier for the in-process test (the broker test's center has no secret: relay_unverifiable).
VERIFIER = RelayVerifier(SECRET)


def batch(reports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    # a deep copy: mutations must never reach BASE (hypothesis replays examples)
    reports = copy.deepcopy(BASE if reports is None else reports)
    entries = [{"age_s": 12.5, "age_src": "boot", "report": r} for r in reports]
    return {"v": 1, "type": "reports", "post_id": POST, "sent_at": "2026-11-28T07:00:00.000Z", "reports": entries}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every position in a JSON value (dict keys and list indexes), the root excluded."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from paths(item, (*prefix, index))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


# ---------------------------------------------------------------------------------- strategies
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["", "!a1b2c3d4", "oebubun", "2026-11-28T07:00:00.000Z", "2026-02-30T25:61:00Z", "x" * 300]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
#: Number literals JSON parses but the checks may not expect (inf from 1e400, -0, huge ints), and escapes.
RAW_TOKENS = [
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "-0.0",
    "123456789012345678901234567890",
    "9" * 5000,  # over Python's int-from-string digit limit: json.loads raises ValueError
    "[" * 50_000 + "]" * 50_000,  # deeper than json.loads can recurse
    '"\\ud800"',
    '"\\udfff x"',
    '"\\u0000"',
    '"\\u202e"',
    "NaN",
    "Infinity",
    "[]",
    "{}",
]
PLACEHOLDER = "__fuzz_raw__"


@st.composite
def mutated_batches(draw: st.DrawFn) -> bytes:
    """A valid batch with one to three mutations, serialised (and maybe compressed)."""
    doc = batch(draw(st.lists(st.sampled_from(BASE), min_size=1, max_size=3)))
    raw_token: str | None = None
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(doc))))
        parent, key = _parent(doc, where), where[-1]
        op = draw(st.integers(0, 7))
        if op == 0:
            parent[key] = draw(json_values)
        elif op == 1 and isinstance(parent, dict):
            del parent[key]
        elif op == 2 and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
        elif op == 3:
            nested: Any = parent[key]
            for _ in range(draw(st.sampled_from([1, 5, 9, 50, 400]))):
                nested = [nested]
            parent[key] = nested
        elif op == 4:
            parent[key] = draw(st.sampled_from(["é", "x", "🔥"])) * draw(st.sampled_from([129, 4097, 70_000, 300_000]))
        elif op == 5:
            raw_token = draw(st.sampled_from(RAW_TOKENS))
            parent[key] = PLACEHOLDER
        elif op == 6 and isinstance(parent, list):
            parent.extend([parent[key]] * draw(st.sampled_from([1, 499, 500])))
        else:
            parent[key] = None
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    if raw_token is not None:
        text = text.replace(f'"{PLACEHOLDER}"', raw_token)
    data = text.encode("utf-8", "surrogatepass")
    wrap = draw(st.integers(0, 9))
    if wrap == 0:
        data = b"\xef\xbb\xbf" + data  # a UTF-8 BOM
    elif wrap == 1:
        data = data + draw(st.sampled_from([b" ", b"x", b"\x00", b"}", b"\xff"]))
    elif wrap == 2:
        data = data.replace(b"KEBAKARAN", b"KEBAKARAN\xff\xfe", 1)  # invalid UTF-8 inside a string
    elif wrap >= 7:
        data = zlib.compress(data, draw(st.integers(0, 9)))
    return data


zlib_payloads = st.one_of(
    # bombs: a few KB that inflate past the 1 MiB limit
    st.sampled_from([2 * 1024 * 1024, 50 * 1024 * 1024]).map(lambda n: zlib.compress(b"{" + b" " * n + b"}", 9)),
    st.builds(lambda n: zlib.compress(json.dumps(batch()).encode())[:n], st.integers(1, 40)),  # truncated
    st.binary(max_size=200).map(lambda b: b"\x78" + b),  # a zlib header and junk
    st.builds(lambda: zlib.compress(zlib.compress(json.dumps(batch()).encode()))),  # compressed twice
)


@st.composite
def tampered_carried(draw: st.DrawFn) -> bytes:
    """The carried report with its packet altered by a carrier: bits flipped anywhere (the tag, the signed
    fields, the mutable header), the body left as it was."""
    doc = batch([BASE[3]])
    relay = doc["reports"][0]["report"]["relay"]
    packet = bytearray(base64.b64decode(relay["packet"]))
    for _ in range(draw(st.integers(1, 3))):
        bit = draw(st.integers(0, len(packet) * 8 - 1))
        packet[bit // 8] ^= 1 << (bit % 8)
    relay["packet"] = base64.b64encode(bytes(packet)).decode()
    return json.dumps(doc).encode()


_TOO_MANY = {**batch([]), "reports": [{"age_s": 1, "age_src": "boot", "report": {}}] * 501}
_PAYLOAD_KINDS = [
    st.binary(max_size=4096),
    st.binary(max_size=4096),
    json_values.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    *[mutated_batches()] * 10,
    tampered_carried(),
    tampered_carried(),
    zlib_payloads,
    zlib_payloads,
    st.just(json.dumps(_TOO_MANY).encode()),  # one report over the per-message limit
    st.just(b"{" + b" " * (protocol.MAX_MESSAGE_BYTES + 1) + b"}"),
]
#: Weighted by repetition and drawn by index (hypothesis' one_of strongly favoured the first branches).
payloads = st.integers(0, len(_PAYLOAD_KINDS) - 1).flatmap(lambda i: _PAYLOAD_KINDS[i])
topics = st.one_of(
    st.just(REPORT_TOPIC),
    st.just(REPORT_TOPIC),
    st.just(REPORT_TOPIC),
    st.just(protocol.topic("ttu", POST, "status")),
    st.just(protocol.topic("ttu", POST, "event")),
    st.just(protocol.topic("ttu", "napan", "report")),  # someone else's topic: post_mismatch
)


# ---------------------------------------------------------------------------------- the decode path
def decode(topic: str, payload: bytes) -> tuple[str, Any]:
    """What the receiver does with one message, minus I/O: ("batch", ReportBatch) / ("status", dict) /
    ("event", dict), or raises ProtocolError (sync/receiver.py Receiver._handle)."""
    _regency, post_id, kind = protocol.parse_topic(topic)
    if kind == "report":
        return "batch", protocol.decode_report_batch(payload, post_id)
    if kind == "status":
        if not payload:  # an empty (retained) status clears the post's status: not a refusal
            return "status_cleared", None
        return "status", protocol.decode_status(payload, post_id)
    if kind == "event":
        return "event", protocol.decode_event(payload)
    raise ProtocolError("topic", topic)


def entry_count(payload: bytes) -> int | None:
    try:
        raw = zlib.decompress(payload) if payload[:1] == b"\x78" else payload
        entries = json.loads(raw)["reports"]
    except Exception:
        return None
    return len(entries) if isinstance(entries, list) else None


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[CenterStorage]:
    store = open_storage(f"sqlite:///{tmp_path}/center.db")
    try:
        yield store
    finally:
        store.close()


@pytest.mark.timeout(300)
def test_payloads_decode_to_a_reason_or_a_batch_the_center_can_store(
    storage: CenterStorage, budget: Budget, reasons: Reasons
) -> None:
    sink = StorageSink(storage)
    accepted_ids: set[str] = set()

    def check(topic: str, payload: bytes) -> None:
        reasons.examples += 1
        try:
            kind, result = decode(topic, payload)
        except ProtocolError as exc:
            reasons.add(exc.reason)
            assert exc.detail, "a refusal without a detail for the log"
            return
        received = datetime.now(UTC)
        if kind == "status_cleared":
            reasons.accept(kind)
            return
        if kind == "status":
            reasons.accept("status")
            sink.store_status("ttu", POST, result, received, False)
            return
        if kind == "event":
            try:
                sink.store_reply_state("ttu", POST, result, received)  # no such reply: unknown_cmd
            except ProtocolError as exc:
                reasons.add(exc.reason)
                return
            reasons.accept("event")
            return
        decoded: protocol.ReportBatch = result
        entries = entry_count(payload)
        assert entries is None or len(decoded.reports) + len(decoded.rejected) + decoded.unreadable == entries
        # reports carried for another post: verified by the center before anything is stored
        item, relay_reasons, held = check_carried(ReceivedBatch("ttu", decoded.post_id, decoded, received), VERIFIER)
        got = item.batch
        assert held == 0 and sum(relay_reasons.values()) == len(item.relay_rejected)
        assert len(got.reports) + len(item.relay_rejected) == len(decoded.reports)
        reasons.accept("batch")
        reasons.accept("report", len(got.reports))
        reasons.add("report_invalid", len(got.rejected))
        reasons.add("report_unreadable", got.unreadable)
        for key, n in relay_reasons.items():
            reasons.add(key, n)
        refused = [*got.rejected, *item.relay_rejected]
        assert all(r.reason for r in refused), "a report refused without telling the post why"
        for wire in got.reports:
            if wire.relay is not None:  # stored from its verified packet, never from the carrier's JSON
                assert wire.report.report_id == wire.relay.parsed.report.report_id
                assert wire.report.text_raw.startswith(wire.relay.parsed.report.text)
        if got.reports:
            sink.store_reports([item])
            accepted_ids.update(w.report_id for w in got.reports)
        # the ack the receiver publishes next must encode, and the post must be able to read it
        ack = protocol.decode_ack(protocol.encode_ack([w.report_id for w in got.reports], refused, at=received))
        assert ack.ids == [w.report_id for w in got.reports]

    run = settings(
        max_examples=budget.pick(1000, 10_000),
        deadline=EXAMPLE_CAP,
        suppress_health_check=list(HealthCheck),
        database=None,
    )(given(topics, payloads)(check))
    # once a TypeError out of Report.from_dict (poison for the receiver: never acked, redelivered forever)
    null_id = batch()
    null_id["reports"][0]["report"]["report_id"] = None
    run = example(REPORT_TOPIC, json.dumps(null_id).encode())(run)
    # once a carrier that rewrote a carried report's text and kept the origin's tag (relay_tag, always)
    forged = batch([BASE[3]])
    relay = forged["reports"][0]["report"]["relay"]
    relay["packet"] = base64.b64encode(tamper_text(base64.b64decode(relay["packet"]), "AMAN")).decode()
    run = example(REPORT_TOPIC, json.dumps(forged).encode())(run)
    run()

    print(reasons)
    reasons.assert_known(KNOWN)
    stored = set(center_report_ids(storage))
    assert stored == accepted_ids, (sorted(stored ^ accepted_ids)[:5], len(stored), len(accepted_ids))
    assert storage.query("PRAGMA integrity_check")[0]["integrity_check"] == "ok"
    for must in ("json", "schema", "too_large", "too_deep", "encoding", "report_invalid", "too_many", "relay_tag"):
        assert reasons.counts[must] >= 1, reasons
    assert reasons.accepted["report"] >= 1, reasons


# ---------------------------------------------------------------------------------- through a broker
@pytest.mark.timeout(300)
def test_a_running_receiver_counts_every_hostile_message_and_keeps_storing(
    tmp_path: Path, mosquitto: Mosquitto, center: Center, budget: Budget, reasons: Reasons
) -> None:
    receiver = center.receiver
    attacker = TlsMqttConfig(urls=(mosquitto.url,))
    accepted_ids: set[str] = set()
    outcome_keys = ("rejected", "batches", "status", "status_cleared", "events")

    def snapshot() -> Counter[str]:
        return Counter({k: receiver.counters[k] for k in outcome_keys}) + Counter(dict(receiver.rejects))

    def check(topic: str, payload: bytes) -> None:
        reasons.examples += 1
        try:
            kind, expected = decode(topic, payload)
            reason = None
        except ProtocolError as exc:
            kind, expected, reason = "rejected", None, exc.reason
        if kind == "event":
            kind, reason = "rejected", "unknown_cmd"  # the center never sent a reply with that cmd_id
        if kind == "rejected":
            expected_delta = Counter({"rejected": 1, str(reason): 1})
        elif kind == "batch":
            invalid, unreadable = len(expected.rejected), expected.unreadable
            # this center has no relay secret: every carried report is held (relay_unverifiable)
            no_secret: RelayCheck | None = None
            item, relay_reasons, _held = check_carried(
                ReceivedBatch("ttu", POST, expected, datetime.now(UTC)), no_secret
            )
            expected_delta = +(
                Counter({"batches": 1, "report_invalid": invalid, "report_unreadable": unreadable}) + relay_reasons
            )
            accepted_ids.update(w.report_id for w in item.batch.reports)
            reasons.accept("report", len(item.batch.reports))
        else:
            expected_delta = Counter({kind: 1})
        before = snapshot()
        publish_once(attacker, topic, payload, client_id="attacker")
        # the receiver bumps the outcome and the reason one after the other: wait for the whole change
        wait_for(lambda: snapshot() - before == expected_delta, 20)
        delta = snapshot() - before
        assert delta == expected_delta, (kind, dict(delta), dict(expected_delta), receiver.state())
        for key, n in delta.items():
            if key in outcome_keys:
                reasons.accept("rejected message" if key == "rejected" else key, n)
            else:
                reasons.add(key, n)
        # a payload that made the receiver fail would be redelivered forever: it must never drop the link
        assert receiver.counters["disconnects"] == 0 and receiver.counters["handle_failures"] == 0, receiver.state()

    run = settings(
        max_examples=budget.pick(100, 1000),
        deadline=EXAMPLE_CAP,
        suppress_health_check=list(HealthCheck),
        database=None,
    )(given(topics, payloads.filter(lambda p: len(p) <= protocol.MAX_MESSAGE_BYTES))(check))
    run()

    # and it still works: a real post's report is stored and acknowledged
    post = Post(post_config(tmp_path / "post", [mosquitto.url]))
    try:
        [valid] = post.put(make_reports(1))
        post.start()
        assert post.wait_delivered(1, 20), receiver.state()
    finally:
        post.stop()
    print(reasons)
    reasons.assert_known(KNOWN)
    assert dict(receiver.rejects) == {k: v for k, v in reasons.counts.items() if v}, (receiver.rejects, reasons)
    assert set(center_report_ids(center.storage)) == accepted_ids | {valid}
    assert center.storage.query("PRAGMA integrity_check")[0]["integrity_check"] == "ok"
    assert receiver.healthy() and receiver.counters["connects"] == 1, receiver.state()
