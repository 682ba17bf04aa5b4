"""The report model: one frozen type used by the post, the wire protocol and the center.

Field names follow ../shared/CENTER.md so that they map onto CAP 1.2 and NENA EIDO later.  This module
imports nothing of ours: everything else builds on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

CATEGORIES: tuple[str, ...] = (
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

#: CAP 1.2 <category> for each local category (CENTER.md).
CAP_CATEGORY: dict[str, str] = {
    "kebakaran": "Fire",
    "banjir": "Met",
    "longsor": "Geo",
    "angin": "Met",
    "gempa": "Geo",
    "kecelakaan": "Transport",
    "medis": "Health",
    "kriminal": "Security",
    "sar": "Rescue",
    "hewan": "Safety",
    "infrastruktur": "Infra",
    "sos": "Other",
    "aman": "Other",
    "lainnya": "Other",
}

#: Categories where a life may be at stake: drained first, alerted with sound at the center.
LIFE_SAFETY: frozenset[str] = frozenset(
    {"sos", "medis", "kebakaran", "sar", "kecelakaan", "banjir", "longsor", "gempa", "kriminal"}
)

#: Lower number = drained earlier.  Life-safety first; "aman" (all clear) and chatter last.
PRIORITY: dict[str, int] = {
    "sos": 0,
    "medis": 0,
    "sar": 0,
    "kebakaran": 0,
    "kecelakaan": 1,
    "banjir": 1,
    "longsor": 1,
    "gempa": 1,
    "kriminal": 1,
    "angin": 2,
    "hewan": 2,
    "infrastruktur": 2,
    "aman": 3,
    "lainnya": 3,
}

URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")
SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
CERTAINTIES = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
SOURCES = ("meshtastic", "manual", "serial", "relay")
MODES = ("actual", "exercise", "test")
MSG_TYPES = ("new", "update", "cancel", "ack")
LOC_SOURCES = ("gps", "handset-last-fixed", "post", "operator", "none")
CLOCK_SOURCES = ("gps", "ntp", "rtc", "unsynced")

Source = Literal["meshtastic", "manual", "serial", "relay"]

#: The handset's canned messages (the firmware handset profile offers exactly these).
CANNED_MESSAGES: tuple[str, ...] = (
    "DARURAT MEDIS",
    "KEBAKARAN",
    "BANJIR",
    "LONGSOR",
    "KECELAKAAN",
    "KRIMINAL",
    "BUTUH EVAKUASI",
    "AMAN / SELESAI",
)

#: A staff reply may use the whole safe payload (one packet even as a PKI DM; tests/test_airtime.py).
REPLY_MAX_BYTES = 200
#: What the post puts in front of a staff reply.
REPLY_PREFIX = "112: "

#: A report's text may not exceed this many bytes of UTF-8 (a LoRa frame holds ~200; a typed report more).
MAX_TEXT_BYTES = 4096

#: Who sent a report: a Meshtastic node, an operator at the post, an AX.25 station heard through a TNC
#: (its callsign, APRS messages), or a handheld's touch-tone code (``dtmf:`` and the keys).  Reports from a
#: TNC use source "serial"; the compact relay codec (sync/compact.py v1) carries only the first two forms.
_ORIGIN_RE = re.compile(
    r"^(![0-9a-f]{8}|operator:[^\x00-\x1f]{1,64}|[A-Z0-9]{1,6}(-([0-9]|1[0-5]))?|dtmf:[0-9A-D*#]{1,32})$"
)
_POST_ID_RE = re.compile(r"^[a-z0-9-]{1,32}$")
# A reference an officer can read out over voice radio: no 0/O, 1/I/L.
_REF_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


class InvalidReport(ValueError):
    """A report field is invalid.  Raised by :func:`Report.validate` and :func:`Report.from_dict`."""


@dataclass(frozen=True, slots=True)
class Casualties:
    """People affected; ``None`` means "not said", which is not the same as zero."""

    affected: int | None = None
    injured: int | None = None
    dead: int | None = None
    missing: int | None = None

    def to_dict(self) -> dict[str, int]:
        # explicit rather than dataclasses.asdict: this runs for every report the center ingests
        out = {}
        for key in ("affected", "injured", "dead", "missing"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Casualties:
        if not isinstance(data, Mapping):
            raise InvalidReport(f"casualties must be an object, not {type(data).__name__}")
        unknown = set(data) - {"affected", "injured", "dead", "missing"}
        if unknown:
            raise InvalidReport(f"casualties: unknown keys {sorted(unknown)}")
        values: dict[str, int | None] = {}
        for key in ("affected", "injured", "dead", "missing"):
            value = data.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000
            ):
                raise InvalidReport(f"casualties.{key} must be an integer 0-100000, not {value!r}")
            values[key] = value
        return cls(**values)

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.affected, self.injured, self.dead, self.missing))


@dataclass(frozen=True, slots=True)
class PathHop:
    """How one copy of a report reached a post: over how many hops, how strong, via which relay."""

    post_id: str
    hops: int | None = None
    snr: float | None = None
    rssi: int | None = None
    relay: str | None = None
    heard_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"post_id": self.post_id}
        for key in ("hops", "snr", "rssi", "relay"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.heard_at is not None:
            out["heard_at"] = format_time(self.heard_at)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PathHop:
        if not isinstance(data, Mapping):
            raise InvalidReport("path entries must be objects")
        post_id = data.get("post_id")
        if not isinstance(post_id, str) or not post_id or len(post_id) > 64:
            raise InvalidReport(f"path.post_id must be a short string, not {post_id!r}")
        hops = _opt_int(data, "hops", 0, 15)
        rssi = _opt_int(data, "rssi", -200, 50)
        snr = _opt_float(data, "snr", -50.0, 50.0)
        relay = data.get("relay")
        if relay is not None and (not isinstance(relay, str) or len(relay) > 32):
            raise InvalidReport(f"path.relay must be a short string, not {relay!r}")
        heard = data.get("heard_at")
        return cls(
            post_id=post_id,
            hops=hops,
            snr=snr,
            rssi=rssi,
            relay=relay,
            heard_at=parse_time(heard, "path.heard_at") if heard is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Callback:
    """Who to call back: the officer holding the handset, where, and a phone number if any."""

    handset: str | None = None
    officer: str | None = None
    village: str | None = None
    phone: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {}
        for key in ("handset", "officer", "village", "phone"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Callback:
        if not isinstance(data, Mapping):
            raise InvalidReport("callback must be an object")
        values: dict[str, str | None] = {}
        for key in ("handset", "officer", "village", "phone"):
            value = data.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > 128):
                raise InvalidReport(f"callback.{key} must be a string of at most 128 chars")
            values[key] = value
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Report:
    """One emergency report, fixed where it first entered the system.

    ``report_id`` is the idempotency key for the whole system (see :func:`mesh_report_id`).  Times are
    timezone-aware UTC datetimes; ``observed_at`` is what the post believed when it heard the report and
    ``clock_source`` says how far to trust it (the wire protocol carries a monotonic age besides, so the
    center can correct a post whose clock is wrong).
    """

    report_id: str
    post_id: str
    origin: str
    source: str
    text_raw: str
    observed_at: datetime
    stored_at: datetime
    category: str = "lainnya"
    event: str = ""
    urgency: str = "Unknown"
    severity: str = "Unknown"
    certainty: str = "Unknown"
    lang: str = "id"
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    loc_source: str = "none"
    loc_age_s: int | None = None
    area_code: str | None = None
    area_desc: str | None = None
    casualties: Casualties = field(default_factory=Casualties)
    clock_source: str = "unsynced"
    path: tuple[PathHop, ...] = ()
    verified: bool = False
    mode: str = "actual"
    msg_type: str = "new"
    callback: Callback | None = None
    mesh_packet_id: int | None = None
    channel: int | None = None

    @property
    def ref(self) -> str:
        """A 4-character reference for receipts and voice radio (e.g. ``K7Q2``)."""
        return report_ref(self.report_id)

    @property
    def life_safety(self) -> bool:
        return self.category in LIFE_SAFETY

    @property
    def priority(self) -> int:
        return PRIORITY.get(self.category, 3)

    def validate(self) -> Report:
        """Raise :class:`InvalidReport` naming the first bad field; return self when valid."""
        if not isinstance(self.report_id, str) or not 8 <= len(self.report_id) <= 64:
            raise InvalidReport(f"report_id must be 8-64 chars, not {self.report_id!r}")
        if not re.fullmatch(r"[A-Za-z0-9._:-]+", self.report_id):
            raise InvalidReport(f"report_id has invalid characters: {self.report_id!r}")
        if not isinstance(self.post_id, str) or not _POST_ID_RE.match(self.post_id):
            raise InvalidReport(f"post_id must be 1-32 chars of a-z 0-9 -, not {self.post_id!r}")
        if not isinstance(self.origin, str) or not _ORIGIN_RE.match(self.origin):
            raise InvalidReport(
                f"origin must be '!xxxxxxxx', 'operator:<name>', a callsign or 'dtmf:<keys>', not {self.origin!r}"
            )
        _choice("source", self.source, SOURCES)
        _choice("category", self.category, CATEGORIES)
        _choice("urgency", self.urgency, URGENCIES)
        _choice("severity", self.severity, SEVERITIES)
        _choice("certainty", self.certainty, CERTAINTIES)
        _choice("mode", self.mode, MODES)
        _choice("msg_type", self.msg_type, MSG_TYPES)
        _choice("loc_source", self.loc_source, LOC_SOURCES)
        _choice("clock_source", self.clock_source, CLOCK_SOURCES)
        check_text(self.text_raw)
        if (self.lat is None) != (self.lon is None):
            raise InvalidReport("lat and lon must be given together")
        if self.lat is not None and not -90.0 <= self.lat <= 90.0:
            raise InvalidReport(f"lat must be within -90..90, not {self.lat!r}")
        if self.lon is not None and not -180.0 <= self.lon <= 180.0:
            raise InvalidReport(f"lon must be within -180..180, not {self.lon!r}")
        if self.accuracy_m is not None and not 0 <= self.accuracy_m <= 1_000_000:
            raise InvalidReport(f"accuracy_m must be 0-1000000, not {self.accuracy_m!r}")
        for name in ("observed_at", "stored_at"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise InvalidReport(f"{name} must be a timezone-aware datetime")
        if not isinstance(self.lang, str) or not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{1,8})?", self.lang):
            raise InvalidReport(f"lang must be a language tag such as 'id' or 'aoz', not {self.lang!r}")
        if len(self.event) > 200:
            raise InvalidReport("event must be at most 200 chars")
        if len(self.path) > 32:
            raise InvalidReport("path has more than 32 entries")
        return self

    # -- serialisation: the one JSON shape used by the store, the wire protocol and the center --
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "report_id": self.report_id,
            "post_id": self.post_id,
            "origin": self.origin,
            "source": self.source,
            "text_raw": self.text_raw,
            "lang": self.lang,
            "category": self.category,
            "event": self.event,
            "urgency": self.urgency,
            "severity": self.severity,
            "certainty": self.certainty,
            "observed_at": format_time(self.observed_at),
            "clock_source": self.clock_source,
            "stored_at": format_time(self.stored_at),
            "loc_source": self.loc_source,
            "casualties": self.casualties.to_dict(),
            "path": [hop.to_dict() for hop in self.path],
            "verified": self.verified,
            "mode": self.mode,
            "msg_type": self.msg_type,
        }
        for key in (
            "lat",
            "lon",
            "accuracy_m",
            "loc_age_s",
            "area_code",
            "area_desc",
            "mesh_packet_id",
            "channel",
        ):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.callback is not None:
            out["callback"] = self.callback.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Build and validate a report from its JSON shape; unknown keys are rejected."""
        if not isinstance(data, Mapping):
            raise InvalidReport(f"a report must be an object, not {type(data).__name__}")
        unknown = set(data) - _FIELD_NAMES
        if unknown:
            raise InvalidReport(f"unknown report fields {sorted(unknown)[:5]}")
        for key in ("report_id", "post_id", "origin", "source", "text_raw", "observed_at", "stored_at"):
            # null counts as missing: a required field left out of kwargs would be a TypeError, not a reason
            if data.get(key) is None:
                raise InvalidReport(f"missing field {key!r}")
        kwargs: dict[str, Any] = {}
        for key in (
            "report_id",
            "post_id",
            "origin",
            "source",
            "text_raw",
            "category",
            "event",
            "urgency",
            "severity",
            "certainty",
            "lang",
            "loc_source",
            "clock_source",
            "mode",
            "msg_type",
            "area_code",
            "area_desc",
        ):
            if key in data:
                value = data[key]
                if value is not None and not isinstance(value, str):
                    raise InvalidReport(f"{key} must be a string, not {type(value).__name__}")
                if key in ("area_code", "area_desc") and value is not None and len(value) > 200:
                    raise InvalidReport(f"{key} must be at most 200 chars")
                if value is not None:
                    kwargs[key] = value
        kwargs["observed_at"] = parse_time(data["observed_at"], "observed_at")
        kwargs["stored_at"] = parse_time(data["stored_at"], "stored_at")
        for key, lo, hi in (("lat", -90.0, 90.0), ("lon", -180.0, 180.0), ("accuracy_m", 0.0, 1e6)):
            kwargs[key] = _opt_float(data, key, lo, hi)
        kwargs["loc_age_s"] = _opt_int(data, "loc_age_s", 0, 10**10)
        kwargs["mesh_packet_id"] = _opt_int(data, "mesh_packet_id", 0, 2**32 - 1)
        kwargs["channel"] = _opt_int(data, "channel", 0, 7)
        verified = data.get("verified", False)
        if not isinstance(verified, bool):
            raise InvalidReport("verified must be true or false")
        kwargs["verified"] = verified
        kwargs["casualties"] = Casualties.from_dict(data.get("casualties") or {})
        path = data.get("path") or []
        if not isinstance(path, list) or len(path) > 32:
            raise InvalidReport("path must be a list of at most 32 entries")
        kwargs["path"] = tuple(PathHop.from_dict(p) for p in path)
        if data.get("callback") is not None:
            kwargs["callback"] = Callback.from_dict(data["callback"])
        return cls(**kwargs).validate()

    def with_changes(self, **changes: Any) -> Report:
        return dataclasses.replace(self, **changes)


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Report))


def check_text(text: object) -> str:
    """Return ``text`` if it is acceptable report text, else raise :class:`InvalidReport`."""
    if not isinstance(text, str):
        raise InvalidReport(f"text must be a string, not {type(text).__name__}")
    if not text.strip():
        raise InvalidReport("text is empty")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        # lone surrogates: what Python makes of invalid UTF-8 read with surrogateescape
        raise InvalidReport("text is not valid UTF-8") from None
    if size > MAX_TEXT_BYTES:
        raise InvalidReport(f"text is {size} bytes; at most {MAX_TEXT_BYTES} bytes are allowed")
    if "\x00" in text:
        raise InvalidReport("text contains a NUL character")
    return text


def mesh_report_id(from_node: int, packet_id: int, when: datetime) -> str:
    """The report id of a mesh packet: the same at every post that hears the packet.

    Meshtastic packet ids are 32-bit and per-sender, so (sender, id) identifies a packet; the UTC day
    keeps a packet id reused months later from colliding.  The center also matches (origin, packet id)
    across neighbouring days, for a post whose clock is wrong.
    """
    if not 0 <= from_node <= 0xFFFFFFFF or not 0 <= packet_id <= 0xFFFFFFFF:
        raise InvalidReport("node number and packet id must be 32-bit unsigned")
    day = when.astimezone(UTC).strftime("%Y%m%d")
    return f"m{from_node:08x}-{packet_id:08x}-{day}"


def new_report_id(now_ms: int | None = None) -> str:
    """A UUIDv7 (time-ordered, RFC 9562) for reports that do not come from a mesh packet."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand >> 68) << 64 & (0xFFF << 64)
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def report_ref(report_id: str) -> str:
    digest = hashlib.sha256(report_id.encode("utf-8")).digest()
    number = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(4):
        number, index = divmod(number, len(_REF_ALPHABET))
        chars.append(_REF_ALPHABET[index])
    return "".join(chars)


def node_id(num: int) -> str:
    """Meshtastic's printable node id for a node number: ``!`` and 8 lower-case hex digits."""
    return f"!{num & 0xFFFFFFFF:08x}"


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: object, name: str = "time") -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidReport(f"{name} must carry a timezone")
        return value
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidReport(f"{name} must be an ISO 8601 time, not {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidReport(f"{name} must be an ISO 8601 time, not {value!r}") from None
    if parsed.tzinfo is None:
        raise InvalidReport(f"{name} must carry a timezone (e.g. Z)")
    return parsed.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidReport(f"{name} must be one of {', '.join(allowed)}; not {value!r}")


def _opt_int(data: Mapping[str, Any], key: str, lo: int, hi: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidReport(f"{key} must be an integer {lo}..{hi}, not {value!r}")
    return value


def _opt_float(data: Mapping[str, Any], key: str, lo: float, hi: float) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise InvalidReport(f"{key} must be a number {lo}..{hi}, not {value!r}")
    return float(value)
