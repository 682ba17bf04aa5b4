"""A TCP proxy that reads MQTT packet boundaries and cuts a connection at a chosen packet.

The byte-level link proxy cuts "somewhere"; to land a fault *between CONNACK and SUBACK* by construction, the
cut has to know where packets begin and end.  Each new connection takes the next :class:`Cut` from a plan
(when the plan is used up, connections pass untouched).  A cut resets both sides (RST): the broker and the
client learn at once, as when a cellular link drops mid-handshake.

MQTT framing only (fixed header: type in the high nibble of byte 0, then the variable-length "remaining
length"); payloads are forwarded unread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
NAMES = {CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK", SUBSCRIBE: "SUBSCRIBE"}
NAMES[SUBACK] = "SUBACK"


@dataclass(frozen=True)
class Cut:
    """Cut when ``packet`` goes ``direction`` ("up": client → broker, "down": broker → client); ``forward``:
    let that packet through first (cut *after* it) or drop it (cut *before* it arrives)."""

    direction: str
    packet: int
    forward: bool

    @property
    def name(self) -> str:
        return f"{'after' if self.forward else 'before'} {NAMES[self.packet]} ({self.direction})"


AFTER_CONNECT = Cut("up", CONNECT, True)
AFTER_CONNACK = Cut("down", CONNACK, True)
AFTER_SUBSCRIBE = Cut("up", SUBSCRIBE, True)
BEFORE_SUBACK = Cut("down", SUBACK, False)
AFTER_FIRST_PUBLISH = Cut("up", PUBLISH, True)
BEFORE_FIRST_PUBACK = Cut("down", PUBACK, False)
HANDSHAKE = (AFTER_CONNECT, AFTER_CONNACK, AFTER_SUBSCRIBE, BEFORE_SUBACK)


class MqttCutter:
    def __init__(self, target_port: int, plan: list[Cut]) -> None:
        self._target = ("127.0.0.1", target_port)
        self._plan: deque[Cut] = deque(plan)
        self.landed: list[Cut] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._all_landed = threading.Event()
        if not plan:
            self._all_landed.set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mqtt-cutter", daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    def start(self) -> MqttCutter:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def wait_all_landed(self, timeout: float) -> bool:
        return self._all_landed.wait(timeout)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            with self._lock:
                cut = self._plan.popleft() if self._plan else None
                self.connections += 1
            try:
                b_reader, b_writer = await asyncio.open_connection(*self._target)
            except OSError:
                _reset(c_writer)
                return
            done = asyncio.Event()
            writers = (c_writer, b_writer)
            pumps = [
                asyncio.create_task(self._pump(c_reader, b_writer, "up", cut, writers, done)),
                asyncio.create_task(self._pump(b_reader, c_writer, "down", cut, writers, done)),
            ]
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in writers:
                with contextlib.suppress(Exception):
                    writer.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
        cut: Cut | None,
        writers: tuple[asyncio.StreamWriter, ...],
        done: asyncio.Event,
    ) -> None:
        try:
            while not done.is_set():
                packet = await _read_packet(reader)
                if packet is None or done.is_set():
                    break
                strike = cut is not None and cut.direction == direction and packet[0] >> 4 == cut.packet
                if strike and cut is not None and cut.forward:
                    writer.write(packet)
                    await writer.drain()
                if strike and cut is not None:
                    done.set()
                    for w in writers:
                        _reset(w)
                    self._landed(cut)
                    return
                writer.write(packet)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        done.set()
        with contextlib.suppress(Exception):
            writer.write_eof()

    def _landed(self, cut: Cut) -> None:
        with self._lock:
            self.landed.append(cut)
            if not self._plan:
                self._all_landed.set()


async def _read_packet(reader: asyncio.StreamReader) -> bytes | None:
    first = await reader.read(1)
    if not first:
        return None
    length_bytes = bytearray()
    length, shift = 0, 0
    while True:
        b = await reader.readexactly(1)
        length_bytes += b
        length |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            break
        shift += 7
        if shift > 21:
            raise ConnectionError("malformed remaining length")
    body = await reader.readexactly(length) if length else b""
    return first + bytes(length_bytes) + body


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort with RST (SO_LINGER 0), not FIN: a dropped radio link, not a polite close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
