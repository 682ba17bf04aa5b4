"""Meshtastic stream framing: ``0x94 0xC3 LEN_HI LEN_LO`` + protobuf, as on USB serial and TCP port 4403.

Pure functions and a push decoder, no I/O.  Bytes outside frames are the device's log text (or line
noise); the decoder hands them back as :class:`Noise` so a caller can log them.  Unlike the reader in
the meshtastic library, the decoder re-examines every byte after a broken header, so a frame that
directly follows garbage is not lost.
"""

from __future__ import annotations

from dataclasses import dataclass

START1 = 0x94
START2 = 0xC3
HEADER_LEN = 4
#: Largest protobuf the firmware accepts or sends in one frame (``MAX_TO_FROM_RADIO_SIZE``).
MAX_PAYLOAD = 512


def encode_frame(payload: bytes) -> bytes:
    """Wrap one serialised ToRadio/FromRadio in a stream frame."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return bytes((START1, START2, len(payload) >> 8, len(payload) & 0xFF)) + payload


@dataclass(frozen=True)
class Frame:
    """One complete frame's payload (a serialised protobuf, not yet parsed)."""

    payload: bytes


@dataclass(frozen=True)
class Noise:
    """A run of bytes found outside any frame: device log text or garbage."""

    data: bytes


class FrameDecoder:
    """Incremental decoder: :meth:`feed` bytes as they arrive, get frames and noise back in order.

    Counters: ``frames`` decoded, ``bad_headers`` (a start byte not followed by a valid header: wrong
    second byte or a length above 512), ``noise_bytes`` handed back as :class:`Noise`.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.frames = 0
        self.bad_headers = 0
        self.noise_bytes = 0

    @property
    def pending(self) -> int:
        """Bytes held back because they may be the start of a frame."""
        return len(self._buf)

    def reset(self) -> int:
        """Forget a partial frame (the link dropped mid-frame); return how many bytes were dropped."""
        dropped = len(self._buf)
        self._buf.clear()
        return dropped

    def feed(self, data: bytes) -> list[Frame | Noise]:
        self._buf += data
        out: list[Frame | Noise] = []
        noise = bytearray()
        buf = self._buf
        pos = 0
        while pos < len(buf):
            start = buf.find(START1, pos)
            if start < 0:
                noise += buf[pos:]
                pos = len(buf)
                break
            noise += buf[pos:start]
            pos = start
            if len(buf) - pos < 2:
                break  # a lone START1 at the end: wait for more
            if buf[pos + 1] != START2:
                self.bad_headers += 1
                noise.append(buf[pos])
                pos += 1  # the next byte may itself be START1
                continue
            if len(buf) - pos < HEADER_LEN:
                break
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            if length > MAX_PAYLOAD:
                self.bad_headers += 1
                noise.append(buf[pos])
                pos += 1
                continue
            end = pos + HEADER_LEN + length
            if end > len(buf):
                break  # incomplete frame: keep it
            if noise:
                out.append(Noise(bytes(noise)))
                self.noise_bytes += len(noise)
                noise.clear()
            out.append(Frame(bytes(buf[pos + HEADER_LEN : end])))
            self.frames += 1
            pos = end
        if noise:
            out.append(Noise(bytes(noise)))
            self.noise_bytes += len(noise)
        del buf[:pos]
        return out
