"""KISS framing (the TNC's byte stream ↔ AX.25 frames): pure, no I/O, shared by the TCP and serial links.

KISS (K9NG/KA9Q, 1987): a frame is ``FEND type data FEND``; inside, FEND (0xC0) is sent as ``FESC TFEND`` and
FESC (0xDB) as ``FESC TFESC``.  The type byte's high nibble is the TNC port (radio channel), the low nibble
the command: 0 = a data frame, the only one a TNC sends to us.  The other commands (TXDELAY, persistence…)
go from host to TNC; we never send them, because direwolf and hardware TNCs keep those settings themselves.

The decoder is fed whatever a read returned (part of a frame, many frames, line noise) and never raises:
what cannot be a frame is counted under a named reason and skipped, and the stream resynchronises at the
next FEND.  Frame length is bounded (:data:`MAX_FRAME_BYTES`) so a TNC that never sends FEND cannot grow
the buffer without limit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

FEND = 0xC0
FESC = 0xDB
TFEND = 0xDC
TFESC = 0xDD
CMD_DATA = 0x00
#: AX.25 allows 256 bytes of info + 2 + 8 addresses × 7 bytes; direwolf accepts up to 2048.  Anything
#: longer between two FENDs is noise (or a TNC that lost framing), not a frame.
MAX_FRAME_BYTES = 2048


@dataclass(frozen=True, slots=True)
class KissFrame:
    port: int
    command: int
    data: bytes


def escape(data: bytes) -> bytes:
    return data.replace(bytes([FESC]), bytes([FESC, TFESC])).replace(bytes([FEND]), bytes([FESC, TFEND]))


def encode(data: bytes, port: int = 0, command: int = CMD_DATA) -> bytes:
    """One KISS frame; a leading FEND too, so a TNC that got line noise before it starts afresh."""
    if not 0 <= port <= 15 or not 0 <= command <= 15:
        raise ValueError(f"KISS port and command are 0-15, not {port}/{command}")
    # the type byte is escaped too: port 12's data frame type is 0xC0, a FEND
    return bytes([FEND]) + escape(bytes([port << 4 | command]) + data) + bytes([FEND])


class KissDecoder:
    """Bytes in (any split), :class:`KissFrame` out.  ``counts`` says what was skipped and why."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.max_frame = max_frame
        self.counts: Counter[str] = Counter()
        self._buf = bytearray()
        self._in_frame = False
        self._escaped = False
        self._overflow = False
        self._bad_escape = False

    def feed(self, chunk: bytes) -> list[KissFrame]:
        frames: list[KissFrame] = []
        for byte in chunk:
            if byte == FEND:
                if self._in_frame:
                    frame = self._finish()
                    if frame is not None:
                        frames.append(frame)
                self._in_frame = True
                self._reset()
                continue
            if not self._in_frame:
                # bytes between frames: a TNC's boot banner, line noise; KISS says ignore them
                self.counts["kiss.noise_bytes"] += 1
                continue
            if self._escaped:
                self._escaped = False
                if byte == TFEND:
                    byte = FEND
                elif byte == TFESC:
                    byte = FESC
                else:
                    self._bad_escape = True
            elif byte == FESC:
                self._escaped = True
                continue
            if len(self._buf) >= self.max_frame:
                self._overflow = True
                continue
            self._buf.append(byte)
        return frames

    def _reset(self) -> None:
        self._buf.clear()
        self._escaped = False
        self._overflow = False
        self._bad_escape = False

    def _finish(self) -> KissFrame | None:
        if not self._buf:
            return None  # FEND FEND: an empty frame is how TNCs pad and resync, not an error
        if self._overflow:
            self.counts["kiss.oversized"] += 1
            return None
        if self._bad_escape or self._escaped:
            # a damaged escape means a damaged frame: AX.25 has no CRC left to catch it (the TNC checked it)
            self.counts["kiss.bad_escape"] += 1
            return None
        type_byte = self._buf[0]
        command = type_byte & 0x0F
        if command != CMD_DATA:
            self.counts["kiss.not_data"] += 1
            return None
        if len(self._buf) < 2:
            self.counts["kiss.empty"] += 1
            return None
        self.counts["kiss.frames"] += 1
        return KissFrame(type_byte >> 4, command, bytes(self._buf[1:]))
