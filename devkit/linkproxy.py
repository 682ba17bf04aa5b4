"""A userspace link emulator between a post and its broker: delay, bandwidth, and cuts.

``tc netem`` is not available everywhere (not on these CI machines, not inside most containers), so the
tests, the benchmarks and ``siaga demo`` put this TCP proxy on the uplink instead.  Per direction it
adds a one-way delay and serialises bytes at a bandwidth; ``cut()`` makes the link go silent *without
closing anything* (a radio link that died: no FIN, no RST, the endpoints must notice on their own through
keepalives), ``down()`` refuses and resets connections (no route), ``restore()`` brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class LinkStats:
    up_bytes: int = 0  # client → target
    down_bytes: int = 0  # target → client
    connections: int = 0


class LinkProxy:
    """``LinkProxy(target_host, target_port, delay_s=0.3, bandwidth_bps=64_000)`` then ``start()``;
    clients connect to ``127.0.0.1:proxy.port``."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        delay_s: float = 0.0,
        bandwidth_bps: float | None = None,
    ) -> None:
        self.target = (target_host, target_port)
        self._listen = (listen_host, listen_port)
        self.delay_s = delay_s
        self.bandwidth_bps = bandwidth_bps
        self.stats = LinkStats()
        self._state = "up"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="linkproxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing: asyncio.Event | None = None
        self.port = 0

    # ------------------------------------------------------------------ control (any thread)
    def start(self) -> LinkProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def cut(self) -> None:
        """Silence: nothing passes, nothing is closed."""
        self._call(self._set_state, "cut")

    def down(self) -> None:
        """No route: existing connections are reset, new ones refused."""
        self._call(self._set_state, "down")

    def restore(self) -> None:
        self._call(self._set_state, "up")

    @property
    def state(self) -> str:
        return self._state

    def __enter__(self) -> LinkProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, fn: object, *args: object) -> None:
        async def run() -> None:
            fn(*args)  # type: ignore[operator]

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    # ------------------------------------------------------------------ inside the loop
    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, *self._listen)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        tasks = [t for t in asyncio.all_tasks(self._loop) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _set_state(self, state: str) -> None:
        log.info("link %s -> %s", self._state, state)
        self._state = state
        assert self._flowing is not None
        if state == "up":
            self._flowing.set()
        else:
            self._flowing.clear()
        if state == "down":
            for writer in list(self._writers):
                writer.transport.abort()  # RST: the peer learns at once
            self._writers.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        # asyncio logs a cancelled connection handler as an error: stopping the proxy is not one
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve(client_reader, client_writer)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._state == "down":
            client_writer.transport.abort()
            return
        if self._state == "cut":
            # a SYN into a dead link: hold the connection open and silent until the client gives up
            self._writers.add(client_writer)
            assert self._flowing is not None
            await self._flowing.wait()
            if self._state != "up":
                return
        try:
            target_reader, target_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self.stats.connections += 1
        self._writers.update((client_writer, target_writer))
        await asyncio.gather(
            self._pump(client_reader, target_writer, "up_bytes"),
            self._pump(target_reader, client_writer, "down_bytes"),
            return_exceptions=True,
        )
        for writer in (client_writer, target_writer):
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: str) -> None:
        """Forward one direction: hold while cut, then delay and pace each chunk."""
        assert self._flowing is not None
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.create_task(self._deliver(queue, writer, counter))
        try:
            while True:
                await self._flowing.wait()
                chunk = await reader.read(4096)
                if not chunk:
                    break
                await queue.put((time.monotonic() + self.delay_s, chunk))
        finally:
            await queue.put(None)
            await asyncio.gather(sender, return_exceptions=True)

    async def _deliver(
        self, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter, counter: str
    ) -> None:
        assert self._flowing is not None
        line_free = time.monotonic()
        while True:
            item = await queue.get()
            if item is None:
                with contextlib.suppress(Exception):
                    writer.write_eof()
                return
            due, chunk = item
            if self.bandwidth_bps:
                start = max(due, line_free)
                line_free = start + len(chunk) * 8 / self.bandwidth_bps
                due = line_free
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._flowing.wait()
            if self._state == "down":
                return
            # count before writing: a reader woken by these bytes must already see them counted
            setattr(self.stats, counter, getattr(self.stats, counter) + len(chunk))
            writer.write(chunk)
            await writer.drain()
