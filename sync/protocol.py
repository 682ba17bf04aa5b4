"""Wire protocol v1 between posts and the 112 center (docs/PROTOCOL.md is the prose version).

Topics (``{regency}`` and ``{post_id}`` are slugs ``[a-z0-9-]{1,32}``):

=======================================  ==========  =====================================================
``112/v1/{regency}/{post_id}/report``    post→center QoS 1: a batch of reports
``112/v1/{regency}/{post_id}/ack``       center→post QoS 1: report ids committed (and ids refused for good)
``112/v1/{regency}/{post_id}/status``    post→center QoS 1 retained: heartbeat; Last Will ``offline``
``112/v1/{regency}/{post_id}/cmd``       center→post QoS 1: a staff reply to a handset
``112/v1/{regency}/{post_id}/event``     post→center QoS 1: delivery state of a reply
``112/v1/center/receivers/{id}``         center      QoS 1 retained: ``online``/``offline`` (Last Will), per receiver
=======================================  ==========  =====================================================

Every payload is a JSON object ``{"v": 1, "type": ..., ...}`` in UTF-8, or that JSON compressed with
zlib (the payload then starts with byte 0x78 instead of ``{``).  Both ends check size, nesting depth,
version, types and ranges, and raise :class:`ProtocolError` with a short ``reason`` that callers count.
Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from siaga.errors import ProtocolError
from siaga.report import REPLY_MAX_BYTES, REPLY_PREFIX, InvalidReport, Report, format_time, parse_time
from sync import compact

VERSION = 1
PREFIX = "112/v1"
#: Retired (one receiver's Last Will there marked the whole center offline while others ran): each receiver
#: now has its own presence topic, :func:`center_receiver_topic`.  Nothing publishes or reads it.
CENTER_STATE_TOPIC = f"{PREFIX}/center/state"
#: Every receiver's presence (retained, Last Will ``offline``): the center is online while any one is.
CENTER_RECEIVERS_FILTER = f"{PREFIX}/center/receivers/+"
KINDS = ("report", "ack", "status", "cmd", "event")

#: Largest MQTT payload either end accepts (also the broker's message_size_limit in the example config).
MAX_MESSAGE_BYTES = 256 * 1024
#: Largest JSON after decompression: bounds a zlib bomb.
MAX_JSON_BYTES = 1024 * 1024
MAX_DEPTH = 8
MAX_REPORTS_PER_BATCH = 500
MAX_ACK_IDS = 2000
MAX_AGE_S = 20 * 365 * 86400.0
AGE_SOURCES = ("boot", "wall")
REPLY_STATES = ("received", "sent", "delivered", "failed")
#: A staff reply's text, in UTF-8 bytes: the post sends ``112: <text>`` in one LoRa packet of at most
#: REPLY_MAX_BYTES (siaga/report.py, checked against the packet budget in tests/test_airtime.py), so 195.
#: Bytes, not characters: an accented letter takes two, an emoji four, and a longer text would arrive cut.
MAX_REPLY_TEXT_BYTES = REPLY_MAX_BYTES - len(REPLY_PREFIX)
#: Reasons a post may be told a report is refused for good (so it stops resending it).
REASON_MAX = 200
#: A carried report's ``relay.packet``: base64 of one relay packet (sync/compact.py), at most 219 bytes.
MAX_RELAY_PACKET_B64 = 4 * math.ceil(compact.MAX_PACKET_BYTES / 3)
RELAY_KEYS = frozenset({"packet", "prev", "hops"})

_SLUG = re.compile(r"^[a-z0-9-]{1,32}$")
_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
_NODE = re.compile(r"^![0-9a-f]{8}$")
_ZLIB_FIRST = 0x78


# ---------------------------------------------------------------------------- topics
def topic(regency: str, post_id: str, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown topic kind {kind!r}")
    if not _SLUG.match(regency) or not _SLUG.match(post_id):
        raise ValueError(f"regency and post_id must be slugs: {regency!r} {post_id!r}")
    return f"{PREFIX}/{regency}/{post_id}/{kind}"


def parse_topic(name: str) -> tuple[str, str, str]:
    """``112/v1/{regency}/{post_id}/{kind}`` → (regency, post_id, kind), or ProtocolError("topic")."""
    parts = name.split("/")
    if (
        len(parts) != 5
        or f"{parts[0]}/{parts[1]}" != PREFIX
        or not _SLUG.match(parts[2])
        or not _SLUG.match(parts[3])
        or parts[4] not in KINDS
    ):
        raise ProtocolError("topic", f"not a v1 post topic: {name[:120]!r}")
    return parts[2], parts[3], parts[4]


def _topic_safe(client_id: str) -> str:
    return "".join("_" if c in "+#/" else c for c in client_id)


def center_probe_topic(client_id: str) -> str:
    """A receiver's own topic, for proving its subscriptions by a round trip (sync/receiver.py)."""
    return f"{PREFIX}/center/probe/{_topic_safe(client_id)}"


def center_receiver_topic(client_id: str) -> str:
    """A receiver's presence topic (retained ``center_state``; its Last Will says ``offline``)."""
    return f"{PREFIX}/center/receivers/{_topic_safe(client_id)}"


def parse_center_receiver_topic(name: str) -> str | None:
    """The receiver a presence topic belongs to, or None when ``name`` is not one."""
    head = f"{PREFIX}/center/receivers/"
    rest = name[len(head) :] if name.startswith(head) else ""
    return rest if rest and "/" not in rest and len(rest) <= 64 else None


def center_subscriptions(regency: str, share_group: str) -> list[str]:
    """What a center receiver subscribes to.  Reports and events are split between receivers with a shared
    subscription; status is a normal one because Mosquitto sends no retained messages to shared ones."""
    base = f"{PREFIX}/{regency}/+"
    return [
        f"$share/{share_group}/{base}/report",
        f"$share/{share_group}/{base}/event",
        f"{base}/status",
        CENTER_RECEIVERS_FILTER,
    ]


# ---------------------------------------------------------------------------- payload encoding
def encode(message: Mapping[str, Any], *, compress: bool = False) -> bytes:
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return zlib.compress(body, 6) if compress else body


def decode(payload: bytes, *, expect: str | Sequence[str]) -> dict[str, Any]:
    """Check size, encoding, nesting, version and type; return the message object."""
    if not isinstance(payload, bytes | bytearray):
        raise ProtocolError("encoding", f"payload is {type(payload).__name__}, not bytes")
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"{len(payload)} bytes > {MAX_MESSAGE_BYTES}")
    if not payload:
        raise ProtocolError("json", "empty payload")
    raw = bytes(payload)
    if raw[0] == _ZLIB_FIRST:
        raw = _inflate(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("encoding", "payload is not UTF-8") from None
    try:
        message = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ProtocolError("too_deep", "JSON nested too deeply") from None
    except ValueError as exc:
        raise ProtocolError("json", f"invalid JSON: {str(exc)[:80]}") from None
    if not isinstance(message, dict):
        raise ProtocolError("schema", f"message must be a JSON object, not {type(message).__name__}")
    _check_depth(message)
    version = message.get("v")
    if version != VERSION or isinstance(version, bool):
        raise ProtocolError("version", f"unsupported protocol version {_short(version)}")
    kinds = (expect,) if isinstance(expect, str) else tuple(expect)
    if message.get("type") not in kinds:
        raise ProtocolError("type", f"expected type {'/'.join(kinds)}, got {_short(message.get('type'))}")
    return message


def _inflate(raw: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(raw, MAX_JSON_BYTES + 1)
    except zlib.error as exc:
        raise ProtocolError("encoding", f"bad zlib data: {exc}") from None
    if len(out) > MAX_JSON_BYTES or inflater.unconsumed_tail:
        raise ProtocolError("too_large", f"decompresses to more than {MAX_JSON_BYTES} bytes")
    if not inflater.eof:
        raise ProtocolError("encoding", "truncated zlib data")
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _check_depth(message: Any) -> None:
    # Only containers go on the stack: a report batch is mostly scalars, and this runs for every message.
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(message, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if children and depth >= MAX_DEPTH:  # its children, scalars too, would be deeper than MAX_DEPTH
            raise ProtocolError("too_deep", f"nested deeper than {MAX_DEPTH}")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------- reports (post → center)
@dataclass(frozen=True, slots=True)
class RelayCarry:
    """What a carrier adds to a report it carried for another post (docs/PROTOCOL.md, "Carried reports").

    ``packet`` is the relay packet exactly as the carrier received it, ``parsed`` is it parsed by
    :func:`sync.compact.parse_report` — its tag is NOT checked here (only the center holds the keys)."""

    packet: bytes
    prev: str  # the post (or relay) the carrier received it from
    hops: int  # custody hops the report made, as the carrier says
    parsed: compact.ReportPacket


@dataclass(frozen=True, slots=True)
class WireReport:
    """A report as it travels: ``age_s`` = seconds since the post stored it, when it sent it.

    ``relay`` is set for a report the sending post carried for another one: then ``report.post_id`` is the
    origin's, not the sender's, and the center takes the report from ``relay.packet`` once its tag is
    verified."""

    report: Report
    age_s: float
    age_source: str  # "boot": exact (no reboot since stored) | "wall": from the post's wall clock
    relay: RelayCarry | None = None

    @property
    def report_id(self) -> str:
        return self.report.report_id


@dataclass(frozen=True, slots=True)
class StoredWireReport:
    """The post's side of a :class:`WireReport`: the report's JSON exactly as the store keeps it (validated
    when it was stored), sent without parsing and re-serialising it — that dominated the drain's cost."""

    report_id: str
    body: str
    age_s: float
    age_source: str


@dataclass(frozen=True, slots=True)
class Batch:
    payload: bytes
    report_ids: tuple[str, ...]
    json_bytes: int  # before compression


@dataclass(frozen=True, slots=True)
class Rejected:
    report_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReportBatch:
    post_id: str
    sent_at: datetime | None
    reports: list[WireReport]
    rejected: list[Rejected]  # reports in this batch refused for good (invalid), by id
    unreadable: int  # entries without even a usable id


def _item(wire: WireReport | StoredWireReport) -> str:
    age = round(min(max(wire.age_s, 0.0), MAX_AGE_S), 3)
    if isinstance(wire, StoredWireReport):
        return f'{{"age_s":{age!r},"age_src":{json.dumps(wire.age_source)},"report":{wire.body}}}'
    return json.dumps(
        {"age_s": age, "age_src": wire.age_source, "report": wire.report.to_dict()},
        ensure_ascii=False,
        separators=(",", ":"),
        allow_nan=False,
    )


def encode_report_batches(
    post_id: str,
    reports: Sequence[WireReport | StoredWireReport],
    *,
    sent_at: datetime,
    max_bytes: int,
    compress: bool = False,
) -> list[Batch]:
    """Pack reports, in order, into as few messages as fit ``max_bytes`` each (after compression when on).

    A single report larger than ``max_bytes`` still goes alone (the report model bounds it far below
    :data:`MAX_MESSAGE_BYTES`).
    """
    head = (
        f'{{"v":{VERSION},"type":"reports","post_id":{json.dumps(post_id)},'
        f'"sent_at":"{format_time(sent_at)}","reports":['
    )
    items = [(w.report_id, _item(w).encode("utf-8")) for w in reports]
    # with compression, pack by the uncompressed size a typical ratio allows, then split if it overshoots
    budget = min(max_bytes * 4, MAX_JSON_BYTES // 2) if compress else max_bytes
    batches: list[Batch] = []
    start = 0
    while start < len(items):
        size = len(head) + 2
        end = start
        while end < len(items) and (end == start or size + len(items[end][1]) + 1 <= budget):
            size += len(items[end][1]) + 1
            end += 1
        end = min(end, start + MAX_REPORTS_PER_BATCH)
        batches.extend(_seal(head, items[start:end], max_bytes, compress))
        start = end
    return batches


def _seal(head: str, items: list[tuple[str, bytes]], max_bytes: int, compress: bool) -> list[Batch]:
    body = head.encode("utf-8") + b",".join(data for _, data in items) + b"]}"
    payload = zlib.compress(body, 6) if compress else body
    if len(payload) > max_bytes and len(items) > 1:
        half = len(items) // 2
        return _seal(head, items[:half], max_bytes, compress) + _seal(head, items[half:], max_bytes, compress)
    return [Batch(payload, tuple(rid for rid, _ in items), len(body))]


def decode_report_batch(payload: bytes, topic_post_id: str) -> ReportBatch:
    """Validate a report batch.  Envelope problems raise ProtocolError; a bad report inside a good envelope
    is returned in ``rejected`` (with its id, so the center can tell the post to stop resending it)."""
    message = decode(payload, expect="reports")
    post_id = message.get("post_id")
    if not isinstance(post_id, str) or not _SLUG.match(post_id):
        raise ProtocolError("schema", f"post_id must be a slug, not {_short(post_id)}")
    if post_id != topic_post_id:
        raise ProtocolError("post_mismatch", f"payload post_id {post_id!r} on topic of {topic_post_id!r}")
    sent_at = None
    if message.get("sent_at") is not None:
        try:
            sent_at = parse_time(message["sent_at"], "sent_at")
        except InvalidReport as exc:
            raise ProtocolError("schema", str(exc)) from None
    entries = message.get("reports")
    if not isinstance(entries, list) or not entries:
        raise ProtocolError("schema", "reports must be a non-empty list")
    if len(entries) > MAX_REPORTS_PER_BATCH:
        raise ProtocolError("too_many", f"{len(entries)} reports > {MAX_REPORTS_PER_BATCH}")
    good: list[WireReport] = []
    rejected: list[Rejected] = []
    unreadable = 0
    for entry in entries:
        rid = _entry_id(entry)
        try:
            good.append(_wire_report(entry, post_id))
        except (ProtocolError, InvalidReport) as exc:
            if rid is None:
                unreadable += 1
            else:
                rejected.append(Rejected(rid, str(exc)[:REASON_MAX]))
    return ReportBatch(post_id, sent_at, good, rejected, unreadable)


def _entry_id(entry: Any) -> str | None:
    if isinstance(entry, dict) and isinstance(entry.get("report"), dict):
        rid = entry["report"].get("report_id")
        if isinstance(rid, str) and _ID.match(rid):
            return rid
    return None


def _wire_report(entry: Any, post_id: str) -> WireReport:
    if not isinstance(entry, dict):
        raise ProtocolError("schema", "a reports entry must be an object")
    age = entry.get("age_s")
    if isinstance(age, bool) or not isinstance(age, int | float) or not 0 <= age <= MAX_AGE_S:
        raise ProtocolError("schema", f"age_s must be a number 0..{MAX_AGE_S:g}, not {_short(age)}")
    source = entry.get("age_src")
    if source not in AGE_SOURCES:
        raise ProtocolError("schema", f"age_src must be boot or wall, not {_short(source)}")
    body = entry.get("report")
    relay = None
    if isinstance(body, dict) and "relay" in body:
        body = dict(body)
        relay = decode_relay(body.pop("relay"))
    report = Report.from_dict(body)  # type: ignore[arg-type]
    if relay is None:
        # no post publishes another post's report, except one it carried (and then with the origin's packet)
        if report.post_id != post_id:
            raise ProtocolError("post_mismatch", f"report post_id {report.post_id!r} in a batch of {post_id!r}")
    else:
        carried = relay.parsed.report
        if report.post_id != carried.post_id or report.report_id != carried.report_id:
            raise ProtocolError(
                "relay_mismatch",
                f"carried report {report.report_id!r} of {report.post_id!r} but its packet is "
                f"{carried.report_id!r} of {carried.post_id!r}",
            )
    return WireReport(report, float(age), str(source), relay)


def encode_relay(packet: bytes, prev: str, hops: int) -> dict[str, Any]:
    """The ``relay`` object a carrier puts in the body of a report it carried (checked as the center will)."""
    out = {"packet": base64.b64encode(bytes(packet)).decode("ascii"), "prev": prev, "hops": hops}
    decode_relay(out)
    return out


def decode_relay(value: Any) -> RelayCarry:
    """Validate a carried report's ``relay`` object; the packet is parsed (its tag is not checked here)."""
    if not isinstance(value, dict):
        raise ProtocolError("schema", "relay must be an object")
    unknown = sorted(set(value) - RELAY_KEYS)
    if unknown:
        raise ProtocolError("schema", f"relay has an unknown field {_short(unknown[0])}")
    prev = value.get("prev")
    # A carrier that took custody before it heard the previous hop's beacon knows only its node number
    # (docs/RELAY.md); the field is informational, so refusing it would lose the report for good.
    if not isinstance(prev, str) or not (_SLUG.match(prev) or _NODE.match(prev)):
        raise ProtocolError("schema", f"relay.prev must be a post id slug or a node id !xxxxxxxx, not {_short(prev)}")
    hops = value.get("hops")
    if isinstance(hops, bool) or not isinstance(hops, int) or not 0 <= hops <= compact.MAX_HOPS:
        raise ProtocolError("schema", f"relay.hops must be an integer 0..{compact.MAX_HOPS}, not {_short(hops)}")
    text = value.get("packet")
    if not isinstance(text, str) or not 0 < len(text) <= MAX_RELAY_PACKET_B64:
        raise ProtocolError("schema", f"relay.packet must be base64 of at most {compact.MAX_PACKET_BYTES} bytes")
    try:
        packet = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise ProtocolError("schema", "relay.packet is not valid base64") from None
    try:
        parsed = compact.parse_report(packet)
    except ProtocolError as exc:
        raise ProtocolError("relay_packet", f"relay.packet refused ({exc.reason}): {exc.detail}") from None
    return RelayCarry(packet, prev, hops, parsed)


# ---------------------------------------------------------------------------- ack (center → post)
@dataclass(frozen=True, slots=True)
class Ack:
    ids: list[str]
    rejected: list[Rejected]
    #: when the center committed them, by the center's clock (a post's own clock may be years off)
    at: datetime | None = None


def encode_ack(ids: Iterable[str], rejected: Iterable[Rejected] = (), *, at: datetime | None = None) -> bytes:
    message: dict[str, Any] = {
        "v": VERSION,
        "type": "ack",
        "ids": list(ids),
        "rejected": [{"report_id": r.report_id, "reason": r.reason[:REASON_MAX]} for r in rejected],
    }
    if at is not None:
        message["at"] = format_time(at)
    return encode(message)


def decode_ack(payload: bytes) -> Ack:
    message = decode(payload, expect="ack")
    ids = message.get("ids", [])
    if not isinstance(ids, list) or len(ids) > MAX_ACK_IDS or not all(_is_id(i) for i in ids):
        raise ProtocolError("schema", "ids must be a list of report ids")
    raw = message.get("rejected", [])
    if not isinstance(raw, list) or len(raw) > MAX_ACK_IDS:
        raise ProtocolError("schema", "rejected must be a list")
    rejected = []
    for item in raw:
        if not isinstance(item, dict) or not _is_id(item.get("report_id")) or not isinstance(item.get("reason"), str):
            raise ProtocolError("schema", "rejected entries need report_id and reason")
        rejected.append(Rejected(item["report_id"], item["reason"][:REASON_MAX]))
    at = None
    if message.get("at") is not None:
        try:
            at = parse_time(message["at"], "at")
        except InvalidReport as exc:
            raise ProtocolError("schema", str(exc)) from None
    return Ack(list(ids), rejected, at)


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_ID.match(value))


# ---------------------------------------------------------------------------- status (post → center)
_STATUS_FIELDS: dict[str, tuple[type, ...]] = {
    "post_id": (str,),
    "state": (str,),
    "at": (str,),
    "boot": (int,),
    "version": (str,),
    "queue": (dict,),
    "oldest_pending_age_s": (int, float, type(None)),
    "radio": (str, type(None)),
    "uplink": (str, type(None)),
    "battery": (dict, type(None)),
    "uptime_s": (int, float),
    "center": (str, type(None)),
    "name": (str,),
    "no_ack_s": (int, float, type(None)),
    "delivering": (bool,),
    "relay": (dict, type(None)),
}
#: The heartbeat's ``relay`` summary (docs/PROTOCOL.md): counts, the metric and the next hop's post id.
_RELAY_STATUS_INTS = ("metric", "neighbours", "held", "parked", "center_acks_owed")


def encode_status(status: Mapping[str, Any]) -> bytes:
    return encode({"v": VERSION, "type": "status", **status})


def decode_status(payload: bytes, topic_post_id: str) -> dict[str, Any]:
    """A post's heartbeat or its Last Will.  Unknown keys are dropped (newer posts may send more)."""
    message = decode(payload, expect="status")
    if message.get("post_id") != topic_post_id:
        raise ProtocolError("post_mismatch", f"status of {_short(message.get('post_id'))} on {topic_post_id!r}")
    if message.get("state") not in ("online", "offline"):
        raise ProtocolError("schema", f"state must be online or offline, not {_short(message.get('state'))}")
    out: dict[str, Any] = {}
    for key, types in _STATUS_FIELDS.items():
        if key not in message:
            continue
        value = message[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise ProtocolError("schema", f"status.{key} has the wrong type")
        if isinstance(value, str) and len(value) > 200:
            raise ProtocolError("schema", f"status.{key} is too long")
        if isinstance(value, float) and not math.isfinite(value):
            raise ProtocolError("schema", f"status.{key} is not finite")
        out[key] = value
    queue = out.get("queue")
    if queue is not None and not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in queue.items()
    ):
        raise ProtocolError("schema", "status.queue must map states to counts")
    relay = out.get("relay")
    if relay is not None:
        out["relay"] = _relay_status(relay)
    return out


def _relay_status(relay: Mapping[str, Any]) -> dict[str, Any]:
    """The relay summary of a heartbeat, validated; unknown keys dropped like the heartbeat's own."""
    out: dict[str, Any] = {}
    for key in _RELAY_STATUS_INTS:
        value = relay.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
            raise ProtocolError("schema", f"status.relay.{key} must be a count")
        out[key] = value
    route = relay.get("route")
    if route is not None:
        if not isinstance(route, str) or len(route) > 40:
            raise ProtocolError("schema", "status.relay.route must be a short string")
        out["route"] = route
    return out


# ---------------------------------------------------------------------------- cmd (center → post)
def encode_command(command: Mapping[str, Any], *, sent_at: datetime) -> bytes:
    check_command(command)
    return encode({"v": VERSION, **command, "at": format_time(sent_at)})


def check_command(command: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a reply command; return exactly the fields UplinkEvents.on_command receives (``origin``
    only when the center set it: the reply is for another post, to be carried over the mesh)."""
    if command.get("type") != "reply":
        raise ProtocolError("type", f"unknown command type {_short(command.get('type'))}")
    cmd_id = command.get("cmd_id")
    if not _is_id(cmd_id):
        raise ProtocolError("schema", "cmd_id must be an id")
    if not _is_id(command.get("report_id")):
        raise ProtocolError("schema", "report_id must be an id")
    to = command.get("to")
    if not isinstance(to, str) or not _NODE.match(to):
        raise ProtocolError("schema", f"to must be a handset id '!xxxxxxxx', not {_short(to)}")
    text = command.get("text")
    problem = reply_text_problem(text)
    if problem is not None or not isinstance(text, str):
        raise ProtocolError("schema", f"text {problem}")
    out = {"cmd_id": cmd_id, "type": "reply", "report_id": command["report_id"], "to": to, "text": text}
    # Additive (docs/RELAY.md, "Staff replies over the mesh"): the report reached the center only carried,
    # so the reply goes to the carrier, which sends it on over the mesh to this origin post.
    origin = command.get("origin")
    if origin is not None:
        if not isinstance(origin, str) or not _SLUG.match(origin):
            raise ProtocolError("schema", f"origin must be a post id, not {_short(origin)}")
        out["origin"] = origin
    return out


def reply_text_problem(text: object) -> str | None:
    """Why ``text`` cannot be a staff reply (None when it can): the one rule, used by the center when staff
    type a reply (center/storage.py), by the CLI's help, and by both ends of ``cmd``."""
    if not isinstance(text, str) or not text.strip():
        return "must not be empty"
    if "\x00" in text:
        return "must not contain NUL"
    if len(text.encode("utf-8")) > MAX_REPLY_TEXT_BYTES:
        return f"must be at most {MAX_REPLY_TEXT_BYTES} bytes of UTF-8 (an accented letter counts 2)"
    return None


def decode_command(payload: bytes) -> dict[str, Any]:
    return check_command(decode(payload, expect="reply"))


# ---------------------------------------------------------------------------- event (post → center)
def encode_reply_state(cmd_id: str, report_id: str, state: str, *, at: datetime) -> bytes:
    if state not in REPLY_STATES:
        raise ValueError(f"reply state must be one of {REPLY_STATES}")
    return encode(
        {
            "v": VERSION,
            "type": "reply_state",
            "cmd_id": cmd_id,
            "report_id": report_id,
            "state": state,
            "at": format_time(at),
        }
    )


def decode_event(payload: bytes) -> dict[str, Any]:
    message = decode(payload, expect="reply_state")
    if not _is_id(message.get("cmd_id")) or not _is_id(message.get("report_id")):
        raise ProtocolError("schema", "cmd_id and report_id must be ids")
    if message.get("state") not in REPLY_STATES:
        raise ProtocolError("schema", f"state must be one of {', '.join(REPLY_STATES)}")
    return {k: message[k] for k in ("cmd_id", "report_id", "state")}


# ---------------------------------------------------------------------------- center state
@dataclass(frozen=True, slots=True)
class CenterState:
    """One receiver's presence.  ``at`` marks one receiver connection: a new value means that receiver
    (re)subscribed.  ``resumed``: the broker kept that receiver's session, so it also kept what was
    published for it meanwhile.  ``beat``: the receiver's clock at its last heartbeat (re-published every
    :data:`RECEIVER_HEARTBEAT_S` while it runs)."""

    state: str
    at: str | None = None
    resumed: bool = False
    beat: str | None = None


#: A receiver re-publishes its presence this often (the dashboard shows the last one).
RECEIVER_HEARTBEAT_S = 30.0


def encode_center_state(
    state: str, *, at: datetime | None = None, resumed: bool = False, beat: datetime | None = None
) -> bytes:
    message: dict[str, Any] = {"v": VERSION, "type": "center_state", "state": state}
    if at is not None:
        message["at"] = format_time(at)
        message["session"] = "resumed" if resumed else "new"
    if beat is not None:
        message["beat"] = format_time(beat)
    return encode(message)


def decode_center_state(payload: bytes) -> CenterState:
    message = decode(payload, expect="center_state")
    state = message.get("state")
    if state not in ("online", "offline"):
        raise ProtocolError("schema", "center state must be online or offline")
    at, beat = message.get("at"), message.get("beat")
    for name, value in (("at", at), ("beat", beat)):
        if value is not None and (not isinstance(value, str) or len(value) > 40):
            raise ProtocolError("schema", f"center state {name!r} must be a time string")
    if beat is not None:
        try:
            parse_time(beat, "beat")
        except InvalidReport as exc:
            raise ProtocolError("schema", f"center state: {exc}") from None
    session = message.get("session", "new")  # absent (an older center): assume nothing was kept
    if session not in ("new", "resumed"):
        raise ProtocolError("schema", "center state 'session' must be new or resumed")
    return CenterState(str(state), at, session == "resumed", beat)
