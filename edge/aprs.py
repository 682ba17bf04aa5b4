"""APRS (APRS 1.0.1 + the 1.1 reply-ack addendum) for what a post needs, both ways, no I/O.

Heard: messages (``:ADDRESSEE:text{id``), their acks and rejects, a station's position (uncompressed,
compressed, Mic-E — what handhelds with GPS send), and direwolf's touch-tone frames (``DTMF>APDWxx:t…#``).
Sent: a message, an ack.  Everything else (weather, objects, telemetry, third-party) is named and ignored.

:func:`parse` never raises: a packet is an event or :class:`Unusable` with the counter key, so one odd
station cannot stop the read loop.  Libraries exist (aprslib is GPLv2; ../shared/RADIO_TNC.md) but these
few formats are small enough to own and test both ways.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge.ax25 import UiFrame

#: APRS 1.0.1: a message text is at most 67 characters, an id 1-5 alphanumerics.
MAX_MESSAGE_CHARS = 67
_MSG_ID_RE = re.compile(r"^[A-Za-z0-9]{1,5}$")
#: What may follow the last "{" of a message: the id, and (reply-ack, APRS 1.1) "}" and the ack it carries.
_ID_TAIL_RE = re.compile(r"^([A-Za-z0-9]{1,5})(\}[A-Za-z0-9]{0,5})?\s*$")
_ADDRESSEE_RE = re.compile(r"^[A-Za-z0-9-]{1,9}$")
#: Characters a message text may not carry (``{`` starts the id; ``|`` and ``~`` are TNC-reserved).
_FORBIDDEN = str.maketrans({"{": "(", "|": "/", "~": "-"})
_LAT_RE = re.compile(r"^(\d{2})([\d ]{2})\.([\d ]{2})([NS])$")
_LON_RE = re.compile(r"^(\d{3})([\d ]{2})\.([\d ]{2})([EW])$")
#: direwolf's source call for touch-tone frames; the info field starts with ``t``.
DTMF_SOURCE = "DTMF"


@dataclass(frozen=True, slots=True)
class AprsMessage:
    source: str
    addressee: str
    text: str
    msg_id: str | None


@dataclass(frozen=True, slots=True)
class AprsAck:
    source: str
    addressee: str
    msg_id: str
    rejected: bool


@dataclass(frozen=True, slots=True)
class AprsPosition:
    source: str
    lat: float
    lon: float
    #: metres of position ambiguity the sender chose (spaces for digits), 0 when exact to the hundredth
    ambiguity_m: float


@dataclass(frozen=True, slots=True)
class TouchTone:
    """Keys a handheld's DTMF pad sent, as direwolf decoded them (``#`` ends a code)."""

    keys: str


@dataclass(frozen=True, slots=True)
class Unusable:
    reason: str
    source: str | None = None


AprsEvent = AprsMessage | AprsAck | AprsPosition | TouchTone | Unusable


def parse(frame: UiFrame) -> AprsEvent:
    """One UI frame → what it means to the post.  Never raises."""
    source = str(frame.source)
    info = frame.info
    if not info:
        return Unusable("aprs.empty", source)
    if frame.source.call == DTMF_SOURCE and info[:1] == b"t":
        keys = info[1:].decode("ascii", errors="replace").strip()
        return TouchTone(keys)
    kind = info[:1]
    try:
        if kind == b":":
            return _message(source, info)
        if kind in (b"!", b"="):
            return _position(source, info[1:])
        if kind in (b"/", b"@"):
            return _position(source, info[8:])  # 7 characters of time stamp first
        if kind in (b"`", b"'"):
            return _mic_e(source, frame.destination.call, info)
    except (ValueError, IndexError):
        return Unusable("aprs.bad_position" if kind != b":" else "aprs.bad_message", source)
    return Unusable("aprs.other", source)


def _message(source: str, info: bytes) -> AprsEvent:
    if len(info) < 11 or info[10:11] != b":":
        return Unusable("aprs.bad_message", source)
    addressee = info[1:10].decode("ascii", errors="replace").strip()
    if not _ADDRESSEE_RE.match(addressee):
        return Unusable("aprs.bad_message", source)
    body = info[11:].decode("utf-8", errors="replace").rstrip("\r\n")
    if body.startswith(("ack", "rej")) and "{" not in body:
        acked = body[3:].split("}")[0].strip()
        if _MSG_ID_RE.match(acked):
            return AprsAck(source, addressee.upper(), acked, rejected=body.startswith("rej"))
    text, brace, tail = body.rpartition("{")
    msg_id: str | None = None
    if brace:
        # reply-ack (APRS 1.1): "{MM}AA"; the id to ack is MM
        found = _ID_TAIL_RE.match(tail)
        if found:
            msg_id = found.group(1)
        else:
            text = body  # a "{" that starts no id is part of the text
    else:
        text = body
    return AprsMessage(source, addressee.upper(), text.strip(), msg_id)


def _position(source: str, body: bytes) -> AprsEvent:
    text = body.decode("ascii", errors="replace")
    if len(text) >= 19 and text[0].isdigit():
        lat_m = _LAT_RE.match(text[0:8])
        lon_m = _LON_RE.match(text[9:18])
        if lat_m is None or lon_m is None:
            return Unusable("aprs.bad_position", source)
        blanks = text[0:8].count(" ")
        lat = _degrees(lat_m.group(1), lat_m.group(2), lat_m.group(3), lat_m.group(4) == "S")
        lon = _degrees(lon_m.group(1), lon_m.group(2), lon_m.group(3), lon_m.group(4) == "W")
        # blanked digits from the right: to 1/10 minute, 1 minute, 10 minutes, 1 degree (APRS 1.0.1 ch. 6)
        ambiguity = (0.0, 185.0, 1852.0, 18520.0, 111_000.0)[min(blanks, 4)]
        return _checked(source, lat, lon, ambiguity)
    if len(text) >= 10:
        # compressed: symbol table, 4 base-91 lat, 4 base-91 lon, symbol code
        lat = 90 - _base91(body[1:5]) / 380926
        lon = -180 + _base91(body[5:9]) / 190463
        return _checked(source, lat, lon, 0.0)
    return Unusable("aprs.bad_position", source)


def _degrees(deg: str, minutes: str, hundredths: str, negative: bool) -> float:
    value = int(deg) + float(f"{minutes.replace(' ', '0')}.{hundredths.replace(' ', '0')}") / 60
    return -value if negative else value


def _base91(chars: bytes) -> int:
    value = 0
    for ch in chars:
        if not 33 <= ch <= 124:
            raise ValueError("not base 91")
        value = value * 91 + ch - 33
    return value


def _mic_e(source: str, destination: str, info: bytes) -> AprsEvent:
    """Mic-E (Kenwood, Yaesu handhelds): latitude in the destination call, longitude in the info."""
    if len(destination) != 6 or len(info) < 9:
        return Unusable("aprs.bad_position", source)
    digits = []
    for ch in destination:
        if ch.isdigit():
            digits.append(ch)
        elif "A" <= ch <= "J":
            digits.append(str(ord(ch) - ord("A")))
        elif "P" <= ch <= "Y":
            digits.append(str(ord(ch) - ord("P")))
        elif ch in "KLZ":
            digits.append("0")  # position ambiguity
        else:
            return Unusable("aprs.bad_position", source)
    north = "P" <= destination[3] <= "Z"
    offset = 100 if "P" <= destination[4] <= "Z" else 0
    west = "P" <= destination[5] <= "Z"
    lat = int("".join(digits[0:2])) + (int("".join(digits[2:4])) + int("".join(digits[4:6])) / 100) / 60
    d = info[1] - 28 + offset
    if 180 <= d <= 189:
        d -= 80
    elif 190 <= d <= 199:
        d -= 190
    m = info[2] - 28
    if m >= 60:
        m -= 60
    lon = d + (m + (info[3] - 28) / 100) / 60
    return _checked(source, lat if north else -lat, -lon if west else lon, 0.0)


def _checked(source: str, lat: float, lon: float, ambiguity_m: float) -> AprsEvent:
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        return Unusable("aprs.bad_position", source)
    return AprsPosition(source, round(lat, 6), round(lon, 6), ambiguity_m)


# ----------------------------------------------------------------------------------------- sending
def message_info(addressee: str, text: str, msg_id: str | None = None) -> bytes:
    """The info field of a message to ``addressee``: text cleaned of the reserved characters and cut to the
    67 characters APRS radios display."""
    clean = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text.translate(_FORBIDDEN))[:MAX_MESSAGE_CHARS]
    suffix = f"{{{msg_id}" if msg_id else ""
    return f":{addressee.upper():<9}:{clean}{suffix}".encode("ascii")


def ack_info(addressee: str, msg_id: str) -> bytes:
    return f":{addressee.upper():<9}:ack{msg_id}".encode("ascii")
