"""The compact relay codec: one report in one LoRa packet (docs/RELAY.md is the prose version).

A post with no uplink hands its reports to a neighbour over the mesh, as the payload of a Meshtastic
PRIVATE_APP direct message.  Everything a 112 center needs of a report goes in one packet of at most
:data:`MAX_PACKET_BYTES`: ids, category, casualties, position, the observation time as an *age* by the
origin post's boot clock, the handset, and the raw text, deflated with a versioned preset dictionary.  An
HMAC tag with the origin post's own key ends the packet, so a carrier can read a report and pass it on, but
cannot alter it or make one up in another post's name.

Layout v1 (big-endian; uvarint = unsigned LEB128, shortest form only)::

    0   version      u8     1
    1   type         u8     1 = report (2 custody ack, 3 beacon, 4 center ack: reserved)
    2   hops         u8     MUTABLE  bits 0-6 custody hops so far; bit 7 = some carrier timed its hold by
                                     its wall clock (it rebooted while holding the report)
    3   transit_s    u24    MUTABLE  seconds carriers held the report after the origin sent it (saturates)
    6   xmit         u32    MUTABLE  the sender's transfer id (custody acks name it); each hop rewrites it
    --- signed: the tag covers bytes 0-1 and everything from here to the tag ---
    10  key_epoch    u8     which of the origin post's keys made the tag
    11  flags        u8     see FLAG_*; bit 7 must be 0
    12  kinds        u8     bits 7-4 report-id form (ID_*), bits 3-0 text coding (0 UTF-8, n = deflate + dict n)
    13  report_id    6 | 10 | 16 | 1+8..64 B by its form
        post_id      u8 len 1..32 + ASCII [a-z0-9-]
        origin       u32 handset node number, or (FLAG_OPERATOR) u8 len 1..48 + UTF-8 operator name
        category     u8     index into CATEGORY_TABLE_V1
        enums        u8     mode(2) msg_type(2) source(2) clock_source(2), high bits first
        cap          u16    urgency(3) severity(3) certainty(3) loc_source(3) reserved(4) = 0
        age_s        uvarint seconds from observation to the origin's send (≤ MAX_AGE_S)
        observed     u32    the origin's wall-clock observation time, Unix seconds (its claim)
        casualties   (FLAG_CASUALTIES) u8 mask affected/injured/dead/missing + uvarint each (≤ 100000)
        position     (FLAG_POSITION) lat u24, lon u24 (see quantise_lat / quantise_lon)
        accuracy_m   (FLAG_ACCURACY) uvarint metres, rounded up (≤ 1000000)
        lang         (FLAG_LANG) u8 len + ASCII tag; absent = "id"
        full_text    (FLAG_TRUNCATED) uvarint UTF-8 bytes of the whole text + 4 B of its SHA-256
        text         the rest up to the tag, in the text coding
    -8  tag          8 B    HMAC-SHA256(post key, signed bytes)[:8]

The custody messages (CACK, BEACON, CENTER_ACK) share bytes 0-1; their layouts are with their encoders
below and in docs/RELAY.md ("Custody protocol, version 1").

The mutable fields let a carrier count the hop and add the time it held the report without the origin's
key; they are the only bytes a carrier can change, and the worst it can do with them is misstate transit
time (the origin's signed wall-clock claim and its clock source stay beside it) or trip the hop alarm early.

Nothing here does I/O or keeps state.  Every decoding failure is a :class:`ProtocolError` whose ``reason`` is
a short counter key; nothing else escapes, whatever the bytes (tests/test_relay_codec.py fuzzes that).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from siaga.errors import ProtocolError
from siaga.report import MAX_TEXT_BYTES, REPLY_MAX_BYTES, REPLY_PREFIX, Casualties, InvalidReport, Report
from sync import compact_dict as dictionary

VERSION = 1

#: Message types (byte 1): one dispatcher (:func:`message_type`) reads it and picks the decoder.
TYPE_REPORT = 1
TYPE_CUSTODY_ACK = 2
TYPE_BEACON = 3
TYPE_CENTER_ACK = 4
TYPE_REPLY = 5

#: The largest payload of one Meshtastic packet as we send it: a PKI-encrypted direct message on a private
#: port.  Firmware Router::perhapsEncode accepts an encoded ``Data`` only when it + the 16-byte radio header
#: + 12 bytes of PKI (8-byte AES-CCM tag, 4-byte extra nonce) ≤ 255 (MAX_LORA_PAYLOAD_LEN), i.e. ≤ 227 B.
#: ``Data`` wraps our bytes in 8 B: portnum 300 (tag + 2-byte varint), payload (tag + 2-byte length) and
#: the bitfield the firmware sets (tag + 1).  227 - 8 = 219 (tests check it against the real protobuf).
#: Firmware 2.8's 66-byte XEdDSA signature goes only on non-PKI broadcasts, not on these DMs.
MAX_PACKET_BYTES = 219
#: Mutable header (version, type, hops, transit) and the tag.
HEADER_BYTES = 6
#: The transfer id after the header, outside the tag: the sending hop's own number for this transmission.
XMIT_BYTES = 4
#: Where the signed part starts (the tag covers bytes 0-1 and SIGNED_START .. the tag).
SIGNED_START = HEADER_BYTES + XMIT_BYTES
MAX_XMIT = 0xFFFFFFFF
TAG_BYTES = 8
MAX_HOPS = 0x7F
MAX_TRANSIT_S = 0xFFFFFF  # 194 days; beyond, "at least that"
MAX_AGE_S = 20 * 365 * 86400  # as sync/protocol.py MAX_AGE_S
MAX_CASUALTY = 100_000
MAX_ACCURACY_M = 1_000_000
MAX_OBSERVED = 0xFFFFFFFF
#: An operator name's UTF-8 bytes.  With it, every report the model allows fits one packet, whatever its
#: other fields (the text is then cut, and flagged): docs/RELAY.md works the worst case out.
MAX_OPERATOR_BYTES = 44
#: The report text limit of the report model; a longer one cannot exist, so none is encoded either.
MAX_FULL_TEXT_BYTES = MAX_TEXT_BYTES
#: Deflate text: the dictionary number written by the encoder (decoders know every number in DICTIONARIES).
TEXT_UTF8 = 0
TEXT_DICT_V1 = 1
CURRENT_TEXT_DICT = TEXT_DICT_V1

FLAG_POSITION = 0x01
FLAG_ACCURACY = 0x02
FLAG_AGE_WALL = 0x04  # age_s is by the origin's wall clock: it rebooted after storing the report
FLAG_TRUNCATED = 0x08  # the text is a prefix; full_text says how long the whole one was
FLAG_LANG = 0x10
FLAG_CASUALTIES = 0x20
FLAG_OPERATOR = 0x40  # origin is "operator:<name>", not a handset
_FLAGS_KNOWN = 0x7F

ID_MESH = 0  # m{origin node}-{packet id}-{YYYYMMDD}: packet id u32 + day u16 (days since 1970-01-01)
ID_MESH_NODE = 1  # the same with a node other than the origin's: node u32 + packet id u32 + day u16
ID_UUID = 2  # a canonical lower-case UUID (UUIDv7 from siaga.report.new_report_id): 16 bytes
ID_TEXT = 3  # any other valid id: u8 length + ASCII

#: Frozen tables: the index on the wire is the position here.  They are copies, not siaga.report's tuples,
#: so that reordering or extending those cannot silently change what v1 bytes mean (a test compares them).
CATEGORY_TABLE_V1: tuple[str, ...] = (
    "kebakaran",
    "banjir",
    "longsor",
    "angin",
    "gempa",
    "kecelakaan",
    "medis",
    "kriminal",
    "sar",
    "hewan",
    "infrastruktur",
    "sos",
    "aman",
    "lainnya",
)
MODES_V1 = ("actual", "exercise", "test")
MSG_TYPES_V1 = ("new", "update", "cancel", "ack")
SOURCES_V1 = ("meshtastic", "manual", "serial", "relay")
CLOCK_SOURCES_V1 = ("gps", "ntp", "rtc", "unsynced")
URGENCIES_V1 = ("Immediate", "Expected", "Future", "Past", "Unknown")
SEVERITIES_V1 = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
CERTAINTIES_V1 = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
LOC_SOURCES_V1 = ("gps", "handset-last-fixed", "post", "operator", "none")
CASUALTY_KINDS = ("affected", "injured", "dead", "missing")

#: Position grid: 2^24 - 1 steps over each axis.  Latitude steps 180°/16777215 = 1.07e-5° (1.19 m),
#: longitude 2.15e-5° (2.39 m at the equator, 2.36 m in TTU): the worst error is half a step, well inside a
#: handset GPS fix (±3-5 m) — 6 bytes where two int32 at 1e-5° would take 8.
_GRID = (1 << 24) - 1

_POST_ID_RE = re.compile(r"^[a-z0-9-]{1,32}$")
_NODE_RE = re.compile(r"^!([0-9a-f]{8})$")
_OPERATOR_RE = re.compile(r"^operator:([^\x00-\x1f]{1,64})$")
_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
_MESH_ID_RE = re.compile(r"^m([0-9a-f]{8})-([0-9a-f]{8})-([0-9]{8})$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_LANG_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})?$")
_EPOCH_DAY = date(1970, 1, 1)
_MAX_LEVEL = 9


# ---------------------------------------------------------------------------- the carried report
@dataclass(frozen=True, slots=True)
class RelayReport:
    """What a relay packet carries of a report (see :func:`from_report` / :func:`to_report`).

    ``age_s`` is seconds from the observation to the origin's send, by its boot clock (``age_wall`` false)
    or, if the post rebooted since storing the report, by its wall clock.  ``observed_at`` is the origin's
    wall-clock claim (whole seconds), worth as much as ``clock_source`` says.
    """

    report_id: str
    post_id: str
    origin: str
    text: str
    observed_at: datetime
    age_s: int = 0
    age_wall: bool = False
    category: str = "lainnya"
    mode: str = "actual"
    msg_type: str = "new"
    source: str = "meshtastic"
    clock_source: str = "unsynced"
    urgency: str = "Unknown"
    severity: str = "Unknown"
    certainty: str = "Unknown"
    loc_source: str = "none"
    lat: float | None = None
    lon: float | None = None
    accuracy_m: int | None = None
    lang: str = "id"
    casualties: Casualties = field(default_factory=Casualties)


@dataclass(frozen=True, slots=True)
class ReportPacket:
    """A parsed report packet.  ``verified`` is true only after :func:`verify_report` checked the tag."""

    report: RelayReport
    hops: int
    transit_s: int
    transit_wall: bool
    key_epoch: int
    #: the sending hop's transfer id (custody acks name it); not under the tag
    xmit: int
    #: the text is only the start of the report's text: the origin post keeps all of it
    truncated: bool
    #: UTF-8 bytes of the whole text (== len(report.text) in bytes when not truncated)
    full_text_bytes: int
    #: the first 4 bytes of the whole text's SHA-256 when truncated (to match the whole text later)
    full_text_sha256: bytes | None
    text_coding: int
    size: int
    signed: bytes
    tag: bytes
    verified: bool = False


KeyLookup = Callable[[str, int], "bytes | None"]


# ---------------------------------------------------------------------------- keys
def derive_post_key(regency_secret: bytes, post_id: str, epoch: int = 0) -> bytes:
    """A post's 32-byte tag key: HKDF-SHA256 (RFC 5869) of the regency's relay secret, per post and epoch.

    Only the center (and the tool that provisions posts) holds the regency secret; each post is given
    its own derived key.  So the center can verify any post without a key table, while a post — or a
    stolen Pi — can make tags for itself alone.  A new epoch re-keys one post (after a theft, say).
    """
    if len(regency_secret) < 16:
        raise ValueError("the regency relay secret must be at least 16 bytes (32 random bytes recommended)")
    if not _POST_ID_RE.match(post_id) or not 0 <= epoch <= 255:
        raise ValueError(f"bad post id or key epoch: {post_id!r} {epoch!r}")
    prk = hmac.new(b"siaga-relay/v1", regency_secret, hashlib.sha256).digest()
    info = b"report-tag\x00" + post_id.encode("ascii") + b"\x00" + bytes([epoch])
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # one HKDF-Expand block = 32 bytes


def _tag(key: bytes, signed: bytes) -> bytes:
    return hmac.new(key, signed, hashlib.sha256).digest()[:TAG_BYTES]


# ---------------------------------------------------------------------------- position and time helpers
def quantise_lat(lat: float) -> int:
    return round((lat + 90.0) * _GRID / 180.0)


def quantise_lon(lon: float) -> int:
    return round((lon + 180.0) * _GRID / 360.0)


def grid_lat(q: int) -> float:
    return q * 180.0 / _GRID - 90.0


def grid_lon(q: int) -> float:
    return q * 360.0 / _GRID - 180.0


def observation_age(report: Report, stored_age_s: float) -> float:
    """Seconds since ``report`` was observed, from the seconds since it was stored (the store's boot-clock
    age): plus the span from observation to storing by the post's own clock, clamped to 0-24 h exactly as
    the center does for MQTT reports (docs/PROTOCOL.md, "Time without a real-time clock")."""
    span = (report.stored_at - report.observed_at).total_seconds()
    return max(stored_age_s, 0.0) + min(max(span, 0.0), 86400.0)


def total_age(packet: ReportPacket, held_s: float = 0.0) -> tuple[float, str]:
    """(seconds since observation, "boot" | "wall") for a report that a post has held ``held_s`` seconds
    since it received ``packet``: what the uplink post sends as ``age_s`` / ``age_src`` over MQTT."""
    age = packet.report.age_s + packet.transit_s + max(held_s, 0.0)
    wall = packet.report.age_wall or packet.transit_wall
    return age, "wall" if wall else "boot"


# ---------------------------------------------------------------------------- from / to the report model
def from_report(report: Report, *, age_s: float, age_wall: bool = False) -> RelayReport:
    """The relay form of a stored report.  ``age_s``: seconds since observation (see :func:`observation_age`).

    Not carried (the center has them from elsewhere or makes them itself): ``event`` (from the category),
    ``area_code``/``area_desc`` (the post's registry entry), ``callback`` (the post's handset list),
    ``path`` (each carrier adds its own hop), ``loc_age_s``, ``channel``, ``verified``, ``stored_at``.
    An operator name over :data:`MAX_OPERATOR_BYTES` is shortened (:func:`short_origin`).
    """
    accuracy = None if report.accuracy_m is None else min(math.ceil(report.accuracy_m), MAX_ACCURACY_M)
    return RelayReport(
        report_id=report.report_id,
        post_id=report.post_id,
        origin=short_origin(report.origin),
        text=report.text_raw,
        observed_at=report.observed_at,
        age_s=min(max(math.ceil(age_s), 0), MAX_AGE_S),
        age_wall=age_wall,
        category=report.category,
        mode=report.mode,
        msg_type=report.msg_type,
        source=report.source,
        clock_source=report.clock_source,
        urgency=report.urgency,
        severity=report.severity,
        certainty=report.certainty,
        loc_source=report.loc_source,
        lat=report.lat,
        lon=report.lon,
        accuracy_m=accuracy,
        lang=report.lang,
        casualties=report.casualties,
    )


def short_origin(origin: str) -> str:
    """``origin`` with an operator name longer than :data:`MAX_OPERATOR_BYTES` cut to fit, ending in "~" (a
    name is who to call back, which the origin post's own records keep in full; the text is never cut
    this way)."""
    m = _OPERATOR_RE.match(origin)
    if not m or len(m.group(1).encode("utf-8")) <= MAX_OPERATOR_BYTES:
        return origin
    name = m.group(1)
    while len((name + "~").encode("utf-8")) > MAX_OPERATOR_BYTES:
        name = name[:-1]
    return f"operator:{name}~"


def truncation_note(packet: ReportPacket) -> str:
    shown = len(packet.report.text.encode("utf-8"))
    return (
        f" [TERPOTONG di jalur relay: {shown} dari {packet.full_text_bytes} byte; "
        f"teks lengkap ada di pos {packet.report.post_id}]"
    )


def to_report(packet: ReportPacket) -> Report:
    """The report model for a parsed packet, as the center stores it.

    A truncated text gets :func:`truncation_note` appended, so every screen and export that shows the text
    shows that it is cut — a center that knows nothing of relay flags included.  ProtocolError("report")
    when the packet is well formed but not a valid report (an empty text, say).
    """
    r = packet.report
    text = r.text + truncation_note(packet) if packet.truncated else r.text
    mesh = _MESH_ID_RE.match(r.report_id)
    try:
        return Report(
            report_id=r.report_id,
            post_id=r.post_id,
            origin=r.origin,
            source=r.source,
            text_raw=text,
            observed_at=r.observed_at,
            stored_at=r.observed_at,
            category=r.category,
            urgency=r.urgency,
            severity=r.severity,
            certainty=r.certainty,
            lang=r.lang,
            lat=r.lat,
            lon=r.lon,
            accuracy_m=None if r.accuracy_m is None else float(r.accuracy_m),
            loc_source=r.loc_source,
            casualties=r.casualties,
            clock_source=r.clock_source,
            mode=r.mode,
            msg_type=r.msg_type,
            mesh_packet_id=int(mesh.group(2), 16) if mesh else None,
        ).validate()
    except InvalidReport as exc:
        raise ProtocolError("report", str(exc)) from None


# ---------------------------------------------------------------------------- encoding
def encode_report(
    report: RelayReport,
    key: bytes,
    *,
    key_epoch: int = 0,
    hops: int = 0,
    transit_s: int = 0,
    transit_wall: bool = False,
    xmit: int = 0,
) -> bytes:
    """One packet of at most :data:`MAX_PACKET_BYTES` for ``report``, tagged with the origin post's ``key``.

    A text too long for the packet is cut at a character to the longest start that fits, and the packet
    says so (FLAG_TRUNCATED, the whole text's length and hash): never silently.  ProtocolError("field")
    for a value outside its documented limit, ("too_large") when even an empty text would not fit.
    """
    if not 0 <= key_epoch <= 255:
        raise ProtocolError("field", f"key_epoch must be 0-255, not {key_epoch!r}")
    text_bytes = _check_text(report.text, "field")
    head = _header(hops, transit_s, transit_wall) + _int_in(xmit, 0, MAX_XMIT, "xmit").to_bytes(XMIT_BYTES, "big")
    fixed, flags, kinds_hi = _fields(report)

    def build(coding: int, coded: bytes, truncated_of: bytes | None) -> bytes:
        f = flags
        tail = b""
        if truncated_of is not None:
            f |= FLAG_TRUNCATED
            tail = _uvarint(len(truncated_of)) + hashlib.sha256(truncated_of).digest()[:4]
        signed_body = bytes([key_epoch, f, kinds_hi << 4 | coding]) + fixed + tail + coded
        return head + signed_body

    def best(raw: bytes) -> tuple[int, bytes]:
        if raw:
            packed = _deflate(raw, CURRENT_TEXT_DICT)
            if len(packed) < len(raw):
                return CURRENT_TEXT_DICT, packed
        return TEXT_UTF8, raw

    coding, coded = best(text_bytes)
    body = build(coding, coded, None)
    if len(body) + TAG_BYTES > MAX_PACKET_BYTES:
        # the longest start of the text (in characters) that fits, with the truncation trailer
        lo, hi = 0, len(report.text)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            c, p = best(report.text[:mid].encode("utf-8"))
            if len(build(c, p, text_bytes)) + TAG_BYTES <= MAX_PACKET_BYTES:
                lo = mid
            else:
                hi = mid - 1
        coding, coded = best(report.text[:lo].encode("utf-8"))
        body = build(coding, coded, text_bytes)
        if len(body) + TAG_BYTES > MAX_PACKET_BYTES:
            raise ProtocolError("too_large", f"the report's fields alone take {len(body) + TAG_BYTES} bytes")
    signed = body[:2] + body[SIGNED_START:]
    return body + _tag(key, signed)


def forward_report(payload: bytes, *, held_s: float, wall: bool = False, xmit: int | None = None) -> bytes:
    """The packet a carrier passes on: one hop more, ``held_s`` more transit time (``wall``: timed by the
    wall clock, the carrier rebooted while holding it), and its own transfer id ``xmit`` (None keeps the
    one it came with).  The signed bytes and the tag are untouched, and the size does not change.
    ProtocolError("hops") past :data:`MAX_HOPS`."""
    packet = parse_report(payload)
    if packet.hops >= MAX_HOPS:
        raise ProtocolError("hops", f"the report has already made {packet.hops} hops")
    transit = min(packet.transit_s + max(math.ceil(held_s), 0), MAX_TRANSIT_S)
    head = _header(packet.hops + 1, transit, packet.transit_wall or wall)
    new_xmit = packet.xmit if xmit is None else _int_in(xmit, 0, MAX_XMIT, "xmit")
    return head + new_xmit.to_bytes(XMIT_BYTES, "big") + bytes(payload[SIGNED_START:])


def with_xmit(payload: bytes, xmit: int) -> bytes:
    """The same report packet under another transfer id (a retransmission keeps its id; a new send to
    another neighbour may not).  Nothing else changes; ProtocolError for a packet that is not a report."""
    parse_report(payload)
    return (
        bytes(payload[:HEADER_BYTES])
        + _int_in(xmit, 0, MAX_XMIT, "xmit").to_bytes(4, "big")
        + bytes(payload[SIGNED_START:])
    )


def _header(hops: int, transit_s: int, transit_wall: bool) -> bytes:
    if not 0 <= hops <= MAX_HOPS:
        raise ProtocolError("field", f"hops must be 0-{MAX_HOPS}, not {hops!r}")
    transit = min(max(int(transit_s), 0), MAX_TRANSIT_S)
    return bytes([VERSION, TYPE_REPORT, hops | (0x80 if transit_wall else 0)]) + transit.to_bytes(3, "big")


def _fields(r: RelayReport) -> tuple[bytes, int, int]:
    """The signed fields between ``kinds`` and the truncation trailer; the flags and the id form."""
    flags = 0
    out = bytearray()
    id_kind, id_bytes = _encode_id(r.report_id, r.origin)
    out += id_bytes
    if not isinstance(r.post_id, str) or not _POST_ID_RE.match(r.post_id):
        raise ProtocolError("field", f"post_id must be 1-32 chars of a-z 0-9 -, not {r.post_id!r}")
    out += bytes([len(r.post_id)]) + r.post_id.encode("ascii")
    node = _NODE_RE.match(r.origin) if isinstance(r.origin, str) else None
    operator = _OPERATOR_RE.match(r.origin) if isinstance(r.origin, str) else None
    if node:
        out += bytes.fromhex(node.group(1))
    elif operator:
        flags |= FLAG_OPERATOR
        name = _utf8(operator.group(1), "field")
        if len(name) > MAX_OPERATOR_BYTES:
            raise ProtocolError("field", f"operator name is {len(name)} bytes > {MAX_OPERATOR_BYTES}")
        out += bytes([len(name)]) + name
    else:
        raise ProtocolError("field", f"origin must be '!xxxxxxxx' or 'operator:<name>', not {r.origin!r}")
    out.append(_index(CATEGORY_TABLE_V1, r.category, "category"))
    out.append(
        _index(MODES_V1, r.mode, "mode") << 6
        | _index(MSG_TYPES_V1, r.msg_type, "msg_type") << 4
        | _index(SOURCES_V1, r.source, "source") << 2
        | _index(CLOCK_SOURCES_V1, r.clock_source, "clock_source")
    )
    cap = (
        _index(URGENCIES_V1, r.urgency, "urgency") << 13
        | _index(SEVERITIES_V1, r.severity, "severity") << 10
        | _index(CERTAINTIES_V1, r.certainty, "certainty") << 7
        | _index(LOC_SOURCES_V1, r.loc_source, "loc_source") << 4
    )
    out += cap.to_bytes(2, "big")
    out += _uvarint(_int_in(r.age_s, 0, MAX_AGE_S, "age_s"))
    if r.age_wall:
        flags |= FLAG_AGE_WALL
    if not isinstance(r.observed_at, datetime) or r.observed_at.tzinfo is None:
        raise ProtocolError("field", "observed_at must be a timezone-aware datetime")
    observed = math.floor(r.observed_at.timestamp())
    out += _int_in(observed, 0, MAX_OBSERVED, "observed_at (Unix seconds)").to_bytes(4, "big")
    if r.casualties:
        flags |= FLAG_CASUALTIES
        mask = 0
        counts = bytearray()
        for bit, kind in enumerate(CASUALTY_KINDS):
            value = getattr(r.casualties, kind)
            if value is not None:
                mask |= 1 << bit
                counts += _uvarint(_int_in(value, 0, MAX_CASUALTY, f"casualties.{kind}"))
        out += bytes([mask]) + counts
    if (r.lat is None) != (r.lon is None):
        raise ProtocolError("field", "lat and lon must be given together")
    if r.lat is not None and r.lon is not None:
        if not (isinstance(r.lat, int | float) and -90.0 <= r.lat <= 90.0):
            raise ProtocolError("field", f"lat must be within -90..90, not {r.lat!r}")
        if not (isinstance(r.lon, int | float) and -180.0 <= r.lon <= 180.0):
            raise ProtocolError("field", f"lon must be within -180..180, not {r.lon!r}")
        flags |= FLAG_POSITION
        out += quantise_lat(r.lat).to_bytes(3, "big") + quantise_lon(r.lon).to_bytes(3, "big")
    if r.accuracy_m is not None:
        flags |= FLAG_ACCURACY
        out += _uvarint(_int_in(r.accuracy_m, 0, MAX_ACCURACY_M, "accuracy_m"))
    if r.lang != "id":
        if not isinstance(r.lang, str) or not _LANG_RE.match(r.lang):
            raise ProtocolError("field", f"lang must be a language tag such as 'id' or 'aoz', not {r.lang!r}")
        flags |= FLAG_LANG
        out += bytes([len(r.lang)]) + r.lang.encode("ascii")
    return bytes(out), flags, id_kind


def _encode_id(report_id: str, origin: str) -> tuple[int, bytes]:
    if not isinstance(report_id, str) or not _ID_RE.match(report_id):
        raise ProtocolError("field", f"report_id must be 8-64 chars of A-Z a-z 0-9 . _ : -, not {report_id!r}")
    kind = _id_kind(report_id, origin)
    if kind == ID_UUID:
        return kind, uuid.UUID(report_id).bytes
    if kind in (ID_MESH, ID_MESH_NODE):
        m = _MESH_ID_RE.match(report_id)
        assert m is not None  # _id_kind matched it
        day = (datetime.strptime(m.group(3), "%Y%m%d").date() - _EPOCH_DAY).days
        packet = bytes.fromhex(m.group(2)) + day.to_bytes(2, "big")
        return kind, packet if kind == ID_MESH else bytes.fromhex(m.group(1)) + packet
    return kind, bytes([len(report_id)]) + report_id.encode("ascii")


def _id_kind(report_id: str, origin: str) -> int:
    """The compact form of an id: the one form whose decoding gives back exactly this string."""
    if _UUID_RE.match(report_id):
        return ID_UUID
    m = _MESH_ID_RE.match(report_id)
    if m:
        try:
            day = (datetime.strptime(m.group(3), "%Y%m%d").date() - _EPOCH_DAY).days
        except ValueError:
            day = -1
        if 0 <= day <= 0xFFFF and (_EPOCH_DAY + timedelta(days=day)).strftime("%Y%m%d") == m.group(3):
            return ID_MESH if origin == f"!{m.group(1)}" else ID_MESH_NODE
    return ID_TEXT


def _deflate(raw: bytes, number: int) -> bytes:
    packer = zlib.compressobj(_MAX_LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, dictionary.load(number))
    return packer.compress(raw) + packer.flush()


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _index(table: tuple[str, ...], value: str, name: str) -> int:
    try:
        return table.index(value)
    except ValueError:
        raise ProtocolError("field", f"{name} must be one of {', '.join(table)}; not {value!r}") from None


def _int_in(value: object, lo: int, hi: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProtocolError("field", f"{name} must be an integer {lo}..{hi}, not {value!r}")
    return value


def _utf8(text: str, reason: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(reason, "text is not valid UTF-8 (lone surrogate)") from None


def _check_text(text: object, reason: str) -> bytes:
    if not isinstance(text, str):
        raise ProtocolError(reason, f"text must be a string, not {type(text).__name__}")
    raw = _utf8(text, reason)
    if len(raw) > MAX_FULL_TEXT_BYTES:
        raise ProtocolError(reason, f"text is {len(raw)} bytes > {MAX_FULL_TEXT_BYTES}")
    if "\x00" in text:
        raise ProtocolError(reason, "text contains a NUL character")
    return raw


# ---------------------------------------------------------------------------- decoding
class _Reader:
    """Bounds-checked reads over the signed part; running off the end is ProtocolError("short")."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data = data
        self.pos = start
        self.end = end

    def take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise ProtocolError("short", f"packet ends inside a field (needs {n} bytes at offset {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def uvarint(self, limit: int, name: str) -> int:
        value = shift = 0
        for i in range(5):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    raise ProtocolError("schema", f"{name}: varint not in its shortest form")
                if value > limit:
                    raise ProtocolError("schema", f"{name} {value} > {limit}")
                return value
        raise ProtocolError("schema", f"{name}: varint longer than 5 bytes")

    def ascii(self, n: int, pattern: re.Pattern[str], name: str) -> str:
        raw = self.take(n)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError("schema", f"{name} is not ASCII") from None
        if not pattern.match(text):
            raise ProtocolError("schema", f"{name} is not valid: {text[:40]!r}")
        return text


def parse_report(payload: bytes) -> ReportPacket:
    """Check and decode a report packet *without* its key (what a carrier can do): size, version, type,
    every field's range, the text.  The tag is read, not checked: see :func:`verify_report`."""
    if not isinstance(payload, bytes | bytearray):
        raise ProtocolError("encoding", f"payload is {type(payload).__name__}, not bytes")
    data = bytes(payload)
    if len(data) < 2:
        raise ProtocolError("short", f"{len(data)} bytes: no version and type")
    if data[0] != VERSION:
        raise ProtocolError("version", f"unsupported relay packet version {data[0]} (this decoder knows {VERSION})")
    if data[1] != TYPE_REPORT:
        raise ProtocolError("type", f"message type {data[1]} is not a report ({TYPE_REPORT})")
    if len(data) > MAX_PACKET_BYTES:
        raise ProtocolError("too_large", f"{len(data)} bytes > {MAX_PACKET_BYTES}")
    if len(data) < SIGNED_START + 3 + TAG_BYTES:
        raise ProtocolError("short", f"{len(data)} bytes is shorter than the smallest report")
    hops_byte = data[2]
    transit = int.from_bytes(data[3:6], "big")
    xmit = int.from_bytes(data[HEADER_BYTES:SIGNED_START], "big")
    end = len(data) - TAG_BYTES
    rd = _Reader(data, SIGNED_START, end)
    key_epoch = rd.u8()
    flags = rd.u8()
    if flags & ~_FLAGS_KNOWN:
        raise ProtocolError("schema", f"unknown flags 0x{flags:02x}")
    kinds = rd.u8()
    id_kind, coding = kinds >> 4, kinds & 0x0F
    id_raw = _read_id(rd, id_kind)
    post_id = rd.ascii(rd.u8(), _POST_ID_RE, "post_id")
    if flags & FLAG_OPERATOR:
        size = rd.u8()
        if size > MAX_OPERATOR_BYTES:
            raise ProtocolError("schema", f"operator name of {size} bytes > {MAX_OPERATOR_BYTES}")
        raw_name = rd.take(size)
        try:
            origin = "operator:" + raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("schema", "operator name is not UTF-8") from None
        if not _OPERATOR_RE.match(origin):
            raise ProtocolError("schema", f"origin is not valid: {origin[:40]!r}")
    else:
        origin = f"!{rd.uint(4):08x}"
    report_id = _id_string(id_kind, id_raw, origin)
    if _id_kind(report_id, origin) != id_kind:
        raise ProtocolError("schema", f"report id {report_id!r} is not in its compact form")
    category = _entry(CATEGORY_TABLE_V1, rd.u8(), "category")
    enums = rd.u8()
    cap = rd.uint(2)
    if cap & 0x0F:
        raise ProtocolError("schema", "reserved bits of the cap field are set")
    age_s = rd.uvarint(MAX_AGE_S, "age_s")
    observed_at = datetime.fromtimestamp(rd.uint(4), UTC)
    casualties = Casualties()
    if flags & FLAG_CASUALTIES:
        mask = rd.u8()
        if not mask or mask & 0xF0:
            raise ProtocolError("schema", f"casualty mask 0x{mask:02x} is not valid")
        counts = {
            kind: rd.uvarint(MAX_CASUALTY, f"casualties.{kind}")
            for bit, kind in enumerate(CASUALTY_KINDS)
            if mask & (1 << bit)
        }
        casualties = Casualties(**counts)
    lat = lon = None
    if flags & FLAG_POSITION:
        qlat, qlon = rd.uint(3), rd.uint(3)
        if qlat > _GRID or qlon > _GRID:
            raise ProtocolError("schema", "position outside the grid")
        lat, lon = grid_lat(qlat), grid_lon(qlon)
    accuracy = rd.uvarint(MAX_ACCURACY_M, "accuracy_m") if flags & FLAG_ACCURACY else None
    lang = "id"
    if flags & FLAG_LANG:
        lang = rd.ascii(rd.u8(), _LANG_RE, "lang")
        if lang == "id":
            raise ProtocolError("schema", "lang 'id' is the default and is not written")
    full_bytes: int | None = None
    full_sha: bytes | None = None
    if flags & FLAG_TRUNCATED:
        full_bytes = rd.uvarint(MAX_FULL_TEXT_BYTES, "full_text")
        full_sha = rd.take(4)
    text = _decode_text(coding, rd.take(end - rd.pos))
    text_len = len(text.encode("utf-8"))
    if full_bytes is not None and text_len >= full_bytes:
        raise ProtocolError("schema", f"truncated text of {text_len} bytes, whole text {full_bytes}")
    report = RelayReport(
        report_id=report_id,
        post_id=post_id,
        origin=origin,
        text=text,
        observed_at=observed_at,
        age_s=age_s,
        age_wall=bool(flags & FLAG_AGE_WALL),
        category=category,
        mode=_entry(MODES_V1, enums >> 6, "mode"),
        msg_type=_entry(MSG_TYPES_V1, enums >> 4 & 3, "msg_type"),
        source=_entry(SOURCES_V1, enums >> 2 & 3, "source"),
        clock_source=_entry(CLOCK_SOURCES_V1, enums & 3, "clock_source"),
        urgency=_entry(URGENCIES_V1, cap >> 13, "urgency"),
        severity=_entry(SEVERITIES_V1, cap >> 10 & 7, "severity"),
        certainty=_entry(CERTAINTIES_V1, cap >> 7 & 7, "certainty"),
        loc_source=_entry(LOC_SOURCES_V1, cap >> 4 & 7, "loc_source"),
        lat=lat,
        lon=lon,
        accuracy_m=accuracy,
        lang=lang,
        casualties=casualties,
    )
    return ReportPacket(
        report=report,
        hops=hops_byte & MAX_HOPS,
        transit_s=transit,
        transit_wall=bool(hops_byte & 0x80),
        key_epoch=key_epoch,
        xmit=xmit,
        truncated=full_bytes is not None,
        full_text_bytes=text_len if full_bytes is None else full_bytes,
        full_text_sha256=full_sha,
        text_coding=coding,
        size=len(data),
        signed=data[:2] + data[SIGNED_START:end],
        tag=data[end:],
    )


def verify_report(packet: ReportPacket, key: bytes) -> ReportPacket:
    """The packet marked verified when its tag is the origin's; ProtocolError("tag") otherwise."""
    if not hmac.compare_digest(_tag(key, packet.signed), packet.tag):
        raise ProtocolError("tag", f"integrity tag does not match post {packet.report.post_id!r}'s key")
    return replace(packet, verified=True)


def decode_report(payload: bytes, key_for: KeyLookup) -> ReportPacket:
    """Parse and verify (the center): ``key_for(post_id, key_epoch)`` gives the origin post's key, or None
    for a post or epoch it does not know (ProtocolError("unknown_key"))."""
    packet = parse_report(payload)
    key = key_for(packet.report.post_id, packet.key_epoch)
    if key is None:
        raise ProtocolError("unknown_key", f"no key for post {packet.report.post_id!r} epoch {packet.key_epoch}")
    return verify_report(packet, key)


def _read_id(rd: _Reader, kind: int) -> bytes:
    if kind == ID_MESH:
        return rd.take(6)
    if kind == ID_MESH_NODE:
        return rd.take(10)
    if kind == ID_UUID:
        return rd.take(16)
    if kind == ID_TEXT:
        return rd.take(rd.u8())
    raise ProtocolError("schema", f"unknown report id form {kind}")


def _id_string(kind: int, raw: bytes, origin: str) -> str:
    if kind == ID_UUID:
        return str(uuid.UUID(bytes=raw))
    if kind in (ID_MESH, ID_MESH_NODE):
        node = origin[1:] if kind == ID_MESH else raw[:4].hex()
        if kind == ID_MESH and not origin.startswith("!"):
            raise ProtocolError("schema", "a mesh id of the origin's node needs a handset origin")
        rest = raw[-6:]
        day = _EPOCH_DAY + timedelta(days=int.from_bytes(rest[4:], "big"))
        return f"m{node}-{rest[:4].hex()}-{day.strftime('%Y%m%d')}"
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("schema", "report id is not ASCII") from None
    if not _ID_RE.match(text):
        raise ProtocolError("schema", f"report id is not valid: {text[:40]!r}")
    return text


def _entry(table: tuple[str, ...], index: int, name: str) -> str:
    if index >= len(table):
        raise ProtocolError("schema", f"{name} index {index} is not in the v1 table")
    return table[index]


def _decode_text(coding: int, coded: bytes) -> str:
    if coding == TEXT_UTF8:
        raw = coded
    else:
        if coding not in dictionary.DICTIONARIES:
            raise ProtocolError("dictionary", f"unknown text coding {coding}")
        inflater = zlib.decompressobj(-15, zdict=dictionary.load(coding))
        try:
            raw = inflater.decompress(coded, MAX_FULL_TEXT_BYTES + 1)
        except zlib.error as exc:
            raise ProtocolError("text", f"bad deflate data: {exc}") from None
        if len(raw) > MAX_FULL_TEXT_BYTES or inflater.unconsumed_tail:
            raise ProtocolError("too_large", f"text inflates to more than {MAX_FULL_TEXT_BYTES} bytes")
        if not inflater.eof or inflater.unused_data:
            raise ProtocolError("text", "deflate stream is cut short or followed by stray bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("text", "text is not valid UTF-8") from None
    if "\x00" in text:
        raise ProtocolError("text", "text contains a NUL character")
    return text


# ---------------------------------------------------------------------------- custody messages (v1)
#: CACK outcomes (docs/RELAY.md, "Custody protocol, version 1").
ACCEPTED = 0  # committed now: custody passed
REDUNDANT = 1  # already held or already seen (the exact seen-set): custody passed all the same
REFUSED = 2  # store full or unreadable: the sender keeps the report and tries another neighbour
OUTCOMES = ("accepted", "redundant", "refused")
#: CACK: 3-byte head + 6 bytes per range; 36 ranges fill a packet exactly (3 + 216 = 219).
CACK_MAX_RANGES = 36
BEACON_UPLINK = 0x01  # this node has a connected uplink
BEACON_RELAY = 0x02  # role relay (a hilltop Pi: no handsets, no uplink)
METRIC_NONE = 255  # no route to an uplink
BATTERY_UNKNOWN = 255


@dataclass(frozen=True, slots=True)
class CackRange:
    """Transfer ids ``first`` .. ``first + run`` (inclusive: a single id is run 0), all with ``outcome``."""

    first: int
    run: int
    outcome: int

    def ids(self) -> range:
        return range(self.first, self.first + self.run + 1)


@dataclass(frozen=True, slots=True)
class Beacon:
    post_id: str
    metric: int
    uplink: bool = False
    relay: bool = False
    route_seq: int = 0
    held: int = 0
    free_mib: int = 0
    battery: int = BATTERY_UNKNOWN
    #: :func:`post_tag` of the neighbour this node routes through (0: none — it has the uplink, or no
    #: route).  A neighbour that sees its own tag here ignores this node's metric (split horizon with
    #: poisoned reverse): two posts can no longer count each other's metric up after an uplink is lost.
    via: int = 0


@dataclass(frozen=True, slots=True)
class CenterAck:
    """The center committed ``report_ids`` (all of ``origin``'s) at ``committed_at``; walks back hop by hop."""

    xmit: int
    origin: str
    committed_at: datetime
    report_ids: tuple[str, ...]


def message_type(payload: bytes) -> int:
    """Byte 1 of a relay message of a version this decoder knows; ProtocolError otherwise (the dispatcher)."""
    if not isinstance(payload, bytes | bytearray):
        raise ProtocolError("encoding", f"payload is {type(payload).__name__}, not bytes")
    if len(payload) < 2:
        raise ProtocolError("short", f"{len(payload)} bytes: no version and type")
    if payload[0] != VERSION:
        raise ProtocolError("version", f"unsupported relay packet version {payload[0]} (this decoder knows {VERSION})")
    if payload[1] not in (TYPE_REPORT, TYPE_CUSTODY_ACK, TYPE_BEACON, TYPE_CENTER_ACK, TYPE_REPLY):
        raise ProtocolError("type", f"unknown relay message type {payload[1]}")
    if len(payload) > MAX_PACKET_BYTES:
        raise ProtocolError("too_large", f"{len(payload)} bytes > {MAX_PACKET_BYTES}")
    return payload[1]


def _message(payload: bytes, kind: int, name: str) -> bytes:
    if message_type(payload) != kind:
        raise ProtocolError("type", f"message type {payload[1]} is not a {name} ({kind})")
    return bytes(payload)


def _done(rd: _Reader, name: str) -> None:
    if rd.pos != rd.end:
        raise ProtocolError("schema", f"{rd.end - rd.pos} stray bytes after the {name}")


# CACK: 1 | 2 | n u8 (1..36) | n x (first_xmit u32, run u8, outcome u8)
def cack_ranges(outcomes: Iterable[tuple[int, int]]) -> list[CackRange]:
    """(xmit, outcome) pairs → the fewest ranges: consecutive ids of one outcome share a range (≤ 256 ids)."""
    out: list[CackRange] = []
    for xmit, outcome in sorted(set(outcomes)):
        _int_in(xmit, 0, MAX_XMIT, "xmit")
        _int_in(outcome, 0, len(OUTCOMES) - 1, "outcome")
        last = out[-1] if out else None
        if last and last.outcome == outcome and xmit == last.first + last.run + 1 and last.run < 255:
            out[-1] = CackRange(last.first, last.run + 1, outcome)
        elif not (last and last.first <= xmit <= last.first + last.run):
            out.append(CackRange(xmit, 0, outcome))
    return out


def encode_cacks(ranges: Sequence[CackRange]) -> list[bytes]:
    """One packet per :data:`CACK_MAX_RANGES` ranges (one packet in every case but a storm)."""
    packets = []
    for start in range(0, len(ranges), CACK_MAX_RANGES):
        chunk = ranges[start : start + CACK_MAX_RANGES]
        body = bytearray([VERSION, TYPE_CUSTODY_ACK, len(chunk)])
        for r in chunk:
            _int_in(r.run, 0, 255, "run")
            _int_in(r.outcome, 0, len(OUTCOMES) - 1, "outcome")
            if _int_in(r.first, 0, MAX_XMIT, "first") + r.run > MAX_XMIT:
                raise ProtocolError("field", "a CACK range may not wrap past 2^32 - 1")
            body += r.first.to_bytes(4, "big") + bytes([r.run, r.outcome])
        packets.append(bytes(body))
    return packets


def decode_cack(payload: bytes) -> tuple[CackRange, ...]:
    data = _message(payload, TYPE_CUSTODY_ACK, "custody ack")
    rd = _Reader(data, 2, len(data))
    n = rd.u8()
    if not 1 <= n <= CACK_MAX_RANGES:
        raise ProtocolError("schema", f"a CACK names 1-{CACK_MAX_RANGES} ranges, not {n}")
    out = []
    for _ in range(n):
        first, run, outcome = rd.uint(4), rd.u8(), rd.u8()
        if outcome >= len(OUTCOMES):
            raise ProtocolError("schema", f"unknown CACK outcome {outcome}")
        if first + run > MAX_XMIT:
            raise ProtocolError("schema", "a CACK range wraps past 2^32 - 1")
        out.append(CackRange(first, run, outcome))
    _done(rd, "CACK")
    return tuple(out)


def post_tag(post_id: str) -> int:
    """A post's 16-bit tag in beacons (``Beacon.via``): the first two bytes of SHA-256 of its id, never 0.
    A collision (1 in 65,536 per pair of neighbours) only makes a node ignore one neighbour's route."""
    tag = int.from_bytes(hashlib.sha256(post_id.encode("ascii")).digest()[:2], "big")
    return tag or 1


# BEACON: 1 | 3 | flags u8 | metric u8 | route_seq u16 | held u16 | free_mib u16 | battery u8 | via u16 | post_id
def encode_beacon(b: Beacon) -> bytes:
    if not isinstance(b.post_id, str) or not _POST_ID_RE.match(b.post_id):
        raise ProtocolError("field", f"post_id must be 1-32 chars of a-z 0-9 -, not {b.post_id!r}")
    battery = _int_in(b.battery, 0, 255, "battery")
    if 100 < battery < BATTERY_UNKNOWN:
        raise ProtocolError("field", f"battery must be 0-100 % or {BATTERY_UNKNOWN} (unknown), not {battery}")
    flags = (BEACON_UPLINK if b.uplink else 0) | (BEACON_RELAY if b.relay else 0)
    return (
        bytes([VERSION, TYPE_BEACON, flags, _int_in(b.metric, 0, 255, "metric")])
        + _int_in(b.route_seq, 0, 0xFFFF, "route_seq").to_bytes(2, "big")
        + min(_int_in(b.held, 0, 10**9, "held"), 0xFFFF).to_bytes(2, "big")
        + min(_int_in(b.free_mib, 0, 10**12, "free_mib"), 0xFFFF).to_bytes(2, "big")
        + bytes([battery])
        + _beacon_via(b.metric, b.via).to_bytes(2, "big")
        + bytes([len(b.post_id)])
        + b.post_id.encode("ascii")
    )


def decode_beacon(payload: bytes) -> Beacon:
    data = _message(payload, TYPE_BEACON, "beacon")
    rd = _Reader(data, 2, len(data))
    flags, metric = rd.u8(), rd.u8()
    if flags & ~(BEACON_UPLINK | BEACON_RELAY):
        raise ProtocolError("schema", f"unknown beacon flags 0x{flags:02x}")
    if bool(flags & BEACON_UPLINK) != (metric == 0):
        raise ProtocolError("schema", f"beacon metric {metric} disagrees with its uplink flag")
    route_seq, held, free_mib, battery = rd.uint(2), rd.uint(2), rd.uint(2), rd.u8()
    if 100 < battery < BATTERY_UNKNOWN:
        raise ProtocolError("schema", f"battery {battery} is not 0-100 or {BATTERY_UNKNOWN}")
    via = rd.uint(2)
    if via and metric in (0, METRIC_NONE):
        raise ProtocolError("schema", f"beacon with metric {metric} names a next hop")
    post_id = rd.ascii(rd.u8(), _POST_ID_RE, "post_id")
    _done(rd, "beacon")
    return Beacon(post_id, metric, bool(flags & BEACON_UPLINK), bool(flags & BEACON_RELAY), route_seq, held,
                  free_mib, battery, via)  # fmt: skip


def _beacon_via(metric: int, via: int) -> int:
    via = _int_in(via, 0, 0xFFFF, "via")
    if via and metric in (0, METRIC_NONE):
        raise ProtocolError("field", f"a beacon with metric {metric} has no next hop (via must be 0)")
    return via


# CENTER_ACK: 1 | 4 | xmit u32 | origin post_id u8 len + ASCII | committed_at u32 | n u8 | n x (form u8 + id)
# An id here is its compact form byte (ID_MESH_NODE, ID_UUID or ID_TEXT: no origin handset to lean on)
# followed by the form's bytes, exactly as in a report.
def _center_ack_head(xmit: int, origin: str, committed_at: datetime) -> bytes:
    if not isinstance(origin, str) or not _POST_ID_RE.match(origin):
        raise ProtocolError("field", f"origin post_id must be 1-32 chars of a-z 0-9 -, not {origin!r}")
    if not isinstance(committed_at, datetime) or committed_at.tzinfo is None:
        raise ProtocolError("field", "committed_at must be a timezone-aware datetime")
    at = _int_in(math.floor(committed_at.timestamp()), 0, MAX_OBSERVED, "committed_at")
    return (
        bytes([VERSION, TYPE_CENTER_ACK])
        + _int_in(xmit, 0, MAX_XMIT, "xmit").to_bytes(4, "big")
        + bytes([len(origin)])
        + origin.encode("ascii")
        + at.to_bytes(4, "big")
    )


def _center_ack_id(report_id: str) -> bytes:
    kind, raw = _encode_id(report_id, "")
    return bytes([kind]) + raw


def encode_center_acks(
    xmits: Iterable[int], origin: str, committed_at: datetime, report_ids: Sequence[str]
) -> list[tuple[bytes, tuple[str, ...]]]:
    """As few CENTER_ACK packets as fit ``report_ids``, each with the next id of ``xmits``: [(packet, ids)]."""
    ids = list(dict.fromkeys(report_ids))
    if not ids:
        raise ProtocolError("field", "a center ack names at least one report")
    numbers = iter(xmits)
    out: list[tuple[bytes, tuple[str, ...]]] = []
    while ids:
        head = _center_ack_head(next(numbers), origin, committed_at)
        body = b""
        taken: list[str] = []
        for rid in ids:
            one = _center_ack_id(rid)
            if len(head) + 1 + len(body) + len(one) > MAX_PACKET_BYTES or len(taken) == 255:
                break
            body += one
            taken.append(rid)
        out.append((head + bytes([len(taken)]) + body, tuple(taken)))
        ids = ids[len(taken) :]
    return out


def encode_center_ack(ack: CenterAck) -> bytes:
    """One CENTER_ACK packet for ``ack`` (ProtocolError("too_large") when its ids do not fit one)."""
    packets = encode_center_acks(iter([ack.xmit]), ack.origin, ack.committed_at, ack.report_ids)
    if len(packets) != 1 or len(packets[0][1]) != len(ack.report_ids):
        raise ProtocolError("too_large", f"{len(ack.report_ids)} report ids do not fit one center ack")
    return packets[0][0]


def with_center_ack_xmit(payload: bytes, xmit: int) -> bytes:
    """A CENTER_ACK passed on by this hop under its own transfer id."""
    decode_center_ack(payload)
    return bytes(payload[:2]) + _int_in(xmit, 0, MAX_XMIT, "xmit").to_bytes(4, "big") + bytes(payload[6:])


def decode_center_ack(payload: bytes) -> CenterAck:
    data = _message(payload, TYPE_CENTER_ACK, "center ack")
    rd = _Reader(data, 2, len(data))
    xmit = rd.uint(4)
    origin = rd.ascii(rd.u8(), _POST_ID_RE, "origin")
    committed_at = datetime.fromtimestamp(rd.uint(4), UTC)
    n = rd.u8()
    if n == 0:
        raise ProtocolError("schema", "a center ack names no report")
    ids = []
    for _ in range(n):
        kind = rd.u8()
        if kind == ID_MESH:
            raise ProtocolError("schema", "a center ack cannot use the origin-handset id form")
        rid = _id_string(kind, _read_id(rd, kind), "")
        if _id_kind(rid, "") != kind:
            raise ProtocolError("schema", f"report id {rid!r} is not in its compact form")
        ids.append(rid)
    _done(rd, "center ack")
    if len(set(ids)) != len(ids):
        raise ProtocolError("schema", "a center ack names a report twice")
    return CenterAck(xmit, origin, committed_at, tuple(ids))


# REPLY: 1 | 5 | xmit u32 | origin post_id u8 len + ASCII | report id (form u8 + id) | cmd_id (form u8 + id)
#        | coding u8 | n u8 | text (n bytes, to the end)
# A staff reply walking back to the origin post of a report that reached the center only carried
# (docs/RELAY.md, "Staff replies over the mesh").  Ids as in a CENTER_ACK (no origin-handset form); the text
# is UTF-8 or deflate with a preset dictionary as in a report, whichever is shorter, and at most the reply
# limit once decoded; its length is sent so that a cut packet is refused, never shown as a shorter text.
# No tag: as with the CENTER_ACK, v1 trusts the carriers with what walks back.
#: A staff reply's text, in UTF-8 bytes (as sync.protocol.MAX_REPLY_TEXT_BYTES: "112: " + text in one packet).
MAX_REPLY_TEXT_BYTES = REPLY_MAX_BYTES - len(REPLY_PREFIX)


@dataclass(frozen=True, slots=True)
class Reply:
    """Staff reply ``cmd_id`` to the handset that sent ``report_id`` at post ``origin``."""

    xmit: int
    origin: str
    report_id: str
    cmd_id: str
    text: str


def _reply_text_bytes(text: object) -> bytes:
    if not isinstance(text, str) or not text.strip():
        raise ProtocolError("field", "a reply's text must not be empty")
    raw = _utf8(text, "field")
    if b"\x00" in raw:
        raise ProtocolError("field", "a reply's text must not contain NUL")
    if len(raw) > MAX_REPLY_TEXT_BYTES:
        raise ProtocolError("field", f"a reply's text is {len(raw)} bytes > {MAX_REPLY_TEXT_BYTES}")
    return raw


def encode_reply(reply: Reply) -> bytes:
    """One REPLY packet; ProtocolError("too_large") when it does not fit one even deflated (the center
    checks this before it queues a reply that must go over the mesh)."""
    if not isinstance(reply.origin, str) or not _POST_ID_RE.match(reply.origin):
        raise ProtocolError("field", f"origin post_id must be 1-32 chars of a-z 0-9 -, not {reply.origin!r}")
    raw = _reply_text_bytes(reply.text)
    packed = _deflate(raw, CURRENT_TEXT_DICT)
    coding, coded = (CURRENT_TEXT_DICT, packed) if len(packed) < len(raw) else (TEXT_UTF8, raw)
    out = (
        bytes([VERSION, TYPE_REPLY])
        + _int_in(reply.xmit, 0, MAX_XMIT, "xmit").to_bytes(4, "big")
        + bytes([len(reply.origin)])
        + reply.origin.encode("ascii")
        + _center_ack_id(reply.report_id)
        + _center_ack_id(reply.cmd_id)
        + bytes([coding, len(coded) if len(coded) <= 0xFF else 0])
        + coded
    )
    if len(out) > MAX_PACKET_BYTES:
        raise ProtocolError("too_large", f"reply packet of {len(out)} bytes > {MAX_PACKET_BYTES}")
    return out


def decode_reply(payload: bytes) -> Reply:
    data = _message(payload, TYPE_REPLY, "reply")
    rd = _Reader(data, 2, len(data))
    xmit = rd.uint(4)
    origin = rd.ascii(rd.u8(), _POST_ID_RE, "origin")
    ids = []
    for name in ("report id", "cmd_id"):
        kind = rd.u8()
        if kind == ID_MESH:
            raise ProtocolError("schema", f"a reply's {name} cannot use the origin-handset id form")
        rid = _id_string(kind, _read_id(rd, kind), "")
        if _id_kind(rid, "") != kind:
            raise ProtocolError("schema", f"{name} {rid!r} is not in its compact form")
        ids.append(rid)
    coding, size = rd.u8(), rd.u8()
    coded = rd.take(size)
    _done(rd, "reply")
    if coding != TEXT_UTF8 and coding not in dictionary.DICTIONARIES:
        raise ProtocolError("dictionary", f"unknown text coding {coding}")
    text = _decode_text(coding, coded)
    try:
        _reply_text_bytes(text)
    except ProtocolError as exc:
        raise ProtocolError("text", exc.detail) from None
    return Reply(xmit, origin, ids[0], ids[1], text)
