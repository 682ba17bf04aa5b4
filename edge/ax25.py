"""AX.25 UI frames (the only kind APRS uses): addresses and info field, both ways, no I/O.

A frame from the TNC is ``destination, source, digipeaters… (7 bytes each), control 0x03, PID 0xF0, info``;
the TNC has checked and removed the FCS.  Each address is six characters shifted left one bit, space padded,
then an SSID byte ``CRRSSID E`` (C = command/has-been-repeated, E = last address).  Parsing is strict about
what would make the sender unidentifiable (bad characters, no end of addresses, an SSID outside 0-15 cannot
occur, but a lower-case or punctuation callsign can) and raises :class:`Ax25Error` with a reason the caller
counts; it is lenient about what does not matter (reserved bits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from siaga.errors import RadioError

CONTROL_UI = 0x03
PID_NO_LAYER3 = 0xF0
#: AX.25 2.0's default maximum info length; direwolf passes longer ones, APRS never needs them.
MAX_INFO_BYTES = 256
MAX_DIGIPEATERS = 8
_CALL_RE = re.compile(r"^[A-Z0-9]{1,6}$")


class Ax25Error(RadioError):
    """A frame that is not a usable AX.25 UI frame; ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Address:
    call: str
    ssid: int = 0
    #: in a digipeater field: "has been repeated" (the ``*`` of TNC2 text); in dest/source: the C bit
    flag: bool = False

    def __str__(self) -> str:
        return self.call if self.ssid == 0 else f"{self.call}-{self.ssid}"

    @classmethod
    def parse(cls, text: str) -> Address:
        """``YB9ABC-7`` → Address; raises :class:`Ax25Error` (``bad.address``)."""
        call, sep, ssid = text.strip().upper().partition("-")
        if not _CALL_RE.match(call) or (sep and not (ssid.isdigit() and 0 <= int(ssid) <= 15 and len(ssid) <= 2)):
            raise Ax25Error("bad.address", repr(text[:20]))
        return cls(call, int(ssid) if sep else 0)

    def encode(self, last: bool, flag: bool = False) -> bytes:
        if not _CALL_RE.match(self.call) or not 0 <= self.ssid <= 15:
            raise Ax25Error("bad.address", repr(str(self)))
        shifted = bytes(ord(ch) << 1 for ch in self.call.ljust(6))
        return shifted + bytes([(0x80 if flag else 0) | 0x60 | self.ssid << 1 | (1 if last else 0)])


@dataclass(frozen=True, slots=True)
class UiFrame:
    destination: Address
    source: Address
    digipeaters: tuple[Address, ...]
    info: bytes

    def encode(self) -> bytes:
        addresses = (self.destination, self.source, *self.digipeaters)
        if len(self.digipeaters) > MAX_DIGIPEATERS:
            raise Ax25Error("bad.path", f"{len(self.digipeaters)} digipeaters")
        if len(self.info) > MAX_INFO_BYTES:
            raise Ax25Error("oversized", f"info of {len(self.info)} bytes")
        out = bytearray()
        for index, address in enumerate(addresses):
            # a frame we originate is a command: C set in the destination, clear in the source (AX.25 2.0)
            out += address.encode(last=index == len(addresses) - 1, flag=index == 0)
        out += bytes([CONTROL_UI, PID_NO_LAYER3])
        return bytes(out + self.info)

    def tnc2(self) -> str:
        """The monitor line as TNC2 / direwolf print it (for logs)."""
        path = "".join(f",{d}{'*' if d.flag else ''}" for d in self.digipeaters)
        return f"{self.source}>{self.destination}{path}:{self.info.decode('latin-1')}"


def _address(raw: bytes) -> Address:
    chars = []
    for byte in raw[:6]:
        if byte & 0x01:
            raise Ax25Error("bad.address", "extension bit inside a callsign")
        chars.append(chr(byte >> 1))
    call = "".join(chars).rstrip(" ")
    if not _CALL_RE.match(call):
        raise Ax25Error("bad.address", repr(call))
    ssid_byte = raw[6]
    return Address(call, ssid_byte >> 1 & 0x0F, bool(ssid_byte & 0x80))


def parse_ui(frame: bytes) -> UiFrame:
    """A frame as the TNC delivered it → :class:`UiFrame`; raises :class:`Ax25Error` naming the reason."""
    addresses: list[Address] = []
    offset = 0
    while True:
        if offset + 7 > len(frame):
            raise Ax25Error("truncated", f"{len(frame)} bytes, addresses not ended")
        addresses.append(_address(frame[offset : offset + 7]))
        last = frame[offset + 6] & 0x01
        offset += 7
        if last:
            break
        if len(addresses) >= 2 + MAX_DIGIPEATERS:
            raise Ax25Error("bad.path", "more than 8 digipeaters")
    if len(addresses) < 2:
        raise Ax25Error("bad.address", "one address only")
    if offset + 2 > len(frame):
        raise Ax25Error("truncated", "no control and PID")
    if frame[offset] != CONTROL_UI:
        raise Ax25Error("not_ui", f"control 0x{frame[offset]:02x}")
    if frame[offset + 1] != PID_NO_LAYER3:
        raise Ax25Error("not_ui", f"PID 0x{frame[offset + 1]:02x}")
    info = frame[offset + 2 :]
    if len(info) > MAX_INFO_BYTES:
        raise Ax25Error("oversized", f"info of {len(info)} bytes")
    return UiFrame(addresses[0], addresses[1], tuple(addresses[2:]), info)
