"""The byte pipes to the client: the TCP stream API (one client at a time) and the pseudo-terminal.

:class:`Transports` owns the listener, the current TCP client and the pty master; it hands the bytes it
reads to the device (``on_bytes``) and writes what the device sends.  Everything runs on the loop thread.
Firmware behaviours that a client can observe at this level (a second TCP client replaces the first; a
closed pty is noticed by POLLHUP; a half-closed socket lingers) are here and explained where they happen.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import random
import selectors
import socket
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

from devkit.sim.loop import EventLoop
from devkit.stream import START1, START2, FrameDecoder
from siaga.errors import ConfigError

log = logging.getLogger(__name__)

#: How often a closed pty is checked for a client opening it (real seconds; there is no event for it).
PTY_POLL_S = 0.1
#: After a TCP client's FIN, how long its socket stays open (real seconds) before we close it.
TCP_CLOSE_GRACE_S = 0.5
#: A client that does not read this much of what we wrote is dropped (TCP) or loses bytes (pty).
MAX_OUTBUF = 256 * 1024


def garbage_bytes(n: int, rng: random.Random) -> bytes:
    """About ``n`` bytes of line noise, including frame starts with impossible lengths.

    Never a lone 0x94 and never a header with a length ≤ 512: the meshtastic library's reader does not
    re-examine the byte after a broken start, so such garbage would swallow the next real frame — which a
    real device's log output never does either.  Ends with CRLF so the client's log line is flushed.
    """
    out = bytearray()
    plain = [b for b in range(256) if b != START1]
    while len(out) < n:
        roll = rng.random()
        if roll < 0.08:
            hi = rng.randint(2, 255)
            lo = rng.randint(1 if hi == 2 else 0, 255)
            out += bytes((START1, START2, hi, lo))
        elif roll < 0.12:
            out += bytes((START1, rng.choice([b for b in plain if b != START2])))
        else:
            out.append(rng.choice(plain))
    return bytes(out) + b"\r\n"


class Link:
    """The byte pipe to the current client: a TCP connection or the pty master."""

    kind = "?"

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.out = bytearray()
        self.decoder = FrameDecoder()
        self.configured = False  # the client completed a want_config handshake on this link

    def fileno(self) -> int:
        return self.fd

    def recv(self) -> bytes | None:
        """Bytes read; b"" means the other side went away, None that nothing is there yet."""
        raise NotImplementedError

    def send(self, data: bytes) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class TcpLink(Link):
    kind = "tcp"

    def __init__(self, sock: socket.socket, peer: str) -> None:
        sock.setblocking(False)
        super().__init__(sock.fileno())
        self.sock = sock
        self.peer = peer

    def recv(self) -> bytes | None:
        try:
            return self.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def send(self, data: bytes) -> int:
        return self.sock.send(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class PtyLink(Link):
    """The pty master.  ``open`` is whether a client has the slave open (no POLLHUP on the master)."""

    kind = "pty"

    def __init__(self, master: int, slave_name: str) -> None:
        super().__init__(master)
        self.slave_name = slave_name
        self.open = False
        self.closed = False

    def slave_is_open(self) -> bool:
        import select

        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        return not any(ev & select.POLLHUP for _, ev in poller.poll(0))

    def recv(self) -> bytes | None:
        try:
            return os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:  # EIO: the last slave fd was closed
            return b""

    def send(self, data: bytes) -> int:
        return os.write(self.fd, data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


class Transports:
    """The listener, the current TCP client and the pty of one device (loop thread only).

    ``on_bytes(link, data)`` gets what a client wrote.  ``is_stopping()`` tells whether the device is going
    down (then a listener or pty is not reopened by a pending timer).
    """

    def __init__(
        self,
        loop: EventLoop,
        *,
        listen: tuple[str, int] | None,
        pty_path: Path | None,
        stats: collections.Counter[str],
        on_bytes: Callable[[Link, bytes], None],
        is_stopping: Callable[[], bool],
    ) -> None:
        self._loop = loop
        self.listen_addr = listen
        self.pty_path = pty_path
        self.stats = stats
        self._on_bytes = on_bytes
        self._is_stopping = is_stopping
        self.listener: socket.socket | None = None
        self.listen_port = 0
        self.tcp: TcpLink | None = None
        self.pty: PtyLink | None = None
        self._pty_generation = 0

    @property
    def _sel(self) -> selectors.BaseSelector | None:
        return self._loop.sel

    def open(self) -> None:
        if self.listen_addr is not None:
            try:
                self._open_listener()
            except OSError as exc:
                host, port = self.listen_addr
                raise ConfigError("simulate.listen", f"{host}:{port}", f"cannot listen: {exc.strerror}") from None
        if self.pty_path is not None:
            try:
                self._open_pty()
            except OSError as exc:
                raise ConfigError("simulate.pty", str(self.pty_path), f"cannot create: {exc.strerror}") from None

    def close_all(self) -> None:
        self.drop_tcp_client("simulator stopping")
        self.close_listener()
        self._close_pty()

    # ------------------------------------------------------------------ TCP transport
    def _open_listener(self) -> None:
        assert self.listen_addr is not None and self._sel is not None
        host, port = self.listen_addr
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port or self.listen_port))
            sock.listen(4)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.listener = sock
        self.listen_port = sock.getsockname()[1]
        self._sel.register(sock, selectors.EVENT_READ, self._on_accept)

    def close_listener(self) -> None:
        if self.listener is not None:
            if self._sel is not None:
                self._sel.unregister(self.listener)
            self.listener.close()
            self.listener = None

    def refuse_for(self, seconds: float) -> bool:
        """Close the listener and open it again after ``seconds`` (real); False if there was none."""
        if self.listener is None or seconds <= 0:
            return False
        self.close_listener()
        self._loop.call_later(seconds, self._reopen_listener)
        return True

    def _reopen_listener(self) -> None:
        if self.listener is None and not self._is_stopping() and self.listen_addr is not None:
            self._open_listener()
            log.info("tcp listening again on port %d", self.listen_port)

    def _on_accept(self, mask: int) -> None:
        assert self.listener is not None and self._sel is not None
        try:
            sock, addr = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        peer = f"{addr[0]}:{addr[1]}"
        old = self.tcp
        while old is not None and old is self.tcp:
            # Firmware reads a client's bytes as they arrive.  Here the accept can come first in a select
            # round while the old client's last frames (written just before it closed) are still unread:
            # take them first, or a write-then-close client (siaga firmware apply) would lose its commit.
            data = old.recv()
            if not data:  # None: nothing more now; b"": end of stream
                break
            self._on_bytes(old, data)
        if self.tcp is not None:
            # Firmware (APIServerPort) force-closes the previous TCP client when a new one connects.
            log.info("tcp client %s replaces %s (one client at a time, like firmware)", peer, self.tcp.peer)
            self.drop_tcp_client("replaced by a new client")
        link = TcpLink(sock, peer)
        self.tcp = link
        self._sel.register(sock, selectors.EVENT_READ, lambda m, lk=link: self._on_link_io(lk, m))
        self.stats["tcp_accepts"] += 1
        log.info("tcp client %s connected", peer)

    def drop_tcp_client(self, why: str) -> None:
        link = self.tcp
        if link is None:
            return
        self.tcp = None
        if self._sel is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(link.sock)
        link.close()
        dropped = link.decoder.reset()
        log.info(
            "tcp client %s disconnected: %s%s",
            link.peer,
            why,
            f" ({dropped} bytes of a frame lost)" if dropped else "",
        )

    # ------------------------------------------------------------------ pty transport
    def _open_pty(self) -> None:
        assert self.pty_path is not None
        master, slave = os.openpty()
        try:
            # Raw mode on the slave: no echo of our frames back to us, no CR/LF translation.  pyserial
            # sets raw mode again when the client opens it; the library's baud/DTR calls are harmless.
            tty.setraw(slave)
            slave_name = os.ttyname(slave)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        link = PtyLink(master, slave_name)
        self.pty = link
        self._pty_generation += 1
        tmp = self.pty_path.with_name(f".{self.pty_path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(slave_name, tmp)
        os.replace(tmp, self.pty_path)  # atomic: a client never sees the path missing half-way
        self._check_pty(link)
        log.info("pty %s -> %s ready", self.pty_path, slave_name)

    def _close_pty(self, remove_link: bool = True) -> None:
        link = self.pty
        if link is None:
            return
        self.pty = None
        self._unregister_pty(link)
        link.close()
        if remove_link and self.pty_path is not None and self.pty_path.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                if os.readlink(self.pty_path) == link.slave_name:
                    self.pty_path.unlink()

    def _unregister_pty(self, link: PtyLink) -> None:
        if link.open and self._sel is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(link.fd)
        link.open = False

    def _check_pty(self, link: PtyLink) -> None:
        # A closed slave makes the master report POLLHUP continuously, so it cannot sit in the selector
        # until a client opens the slave; look every PTY_POLL_S instead.
        if link is not self.pty or link.closed or link.open:
            return
        if link.slave_is_open():
            assert self._sel is not None
            link.open = True
            self._sel.register(link.fd, selectors.EVENT_READ, lambda m, lk=link: self._on_link_io(lk, m))
            log.info("pty %s opened by a client", self.pty_path)
        else:
            self._loop.call_later(PTY_POLL_S, lambda: self._check_pty(link))

    def _pty_closed_by_client(self, link: PtyLink) -> None:
        self._unregister_pty(link)
        link.configured = False
        dropped = link.decoder.reset()
        link.out.clear()
        log.info(
            "pty %s closed by the client%s",
            self.pty_path,
            f" ({dropped} bytes of a frame lost)" if dropped else "",
        )
        self._loop.call_later(PTY_POLL_S, lambda: self._check_pty(link))

    # ------------------------------------------------------------------ disturbances
    def disconnect(self, seconds: float, speed: float, refuse: bool = True) -> None:
        down = seconds / speed
        if self.tcp is not None:
            self.drop_tcp_client(f"link down for {seconds:g} s (scenario)")
        if refuse and self.refuse_for(down):
            self.stats["tcp_refusing"] += 1
        if self.pty_path is not None and self.pty is not None:
            self.unplug(seconds, speed)

    def unplug(self, seconds: float, speed: float) -> None:
        if self.pty_path is None:
            self.disconnect(seconds, speed)
            return
        log.info("pty %s unplugged for %g s", self.pty_path, seconds)
        self._close_pty()
        self.stats["unplugs"] += 1
        self._loop.call_later(seconds / speed, self._replug)

    def _replug(self) -> None:
        if self.pty is None and not self._is_stopping():
            self._open_pty()

    # ------------------------------------------------------------------ link I/O
    def _on_link_io(self, link: Link, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            data = link.recv()
            if data is None:
                return
            if not data:
                self._link_lost(link, "closed by the client")
                return
            self._on_bytes(link, data)
        if mask & selectors.EVENT_WRITE and self.is_current(link):
            self._flush(link)

    def is_current(self, link: Link) -> bool:
        return link is self.tcp or (link is self.pty and isinstance(link, PtyLink) and link.open)

    def _link_lost(self, link: Link, why: str) -> None:
        if isinstance(link, PtyLink):
            if link is self.pty:
                self._pty_closed_by_client(link)
        elif link is self.tcp and self._sel is not None:
            # The library half-closes (FIN) and may still write a heartbeat from its reader thread;
            # closing at once would answer that with a reset and a BrokenPipeError in the client.
            # Stop reading (EOF stays readable) and close shortly after.
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(link.fd)
            link.configured = False

            def drop(lk: Link = link) -> None:
                if lk is self.tcp:
                    self.drop_tcp_client(why)

            self._loop.call_later(TCP_CLOSE_GRACE_S, drop)

    def write(self, link: Link, data: bytes) -> None:
        if not self.is_current(link):
            return
        if len(link.out) + len(data) > MAX_OUTBUF:
            self.stats["outbuf_overflows"] += 1
            log.warning("%s client is not reading; %d bytes pending", link.kind, len(link.out))
            if isinstance(link, TcpLink):
                self.drop_tcp_client("not reading")
                return
            link.out.clear()  # a serial line simply loses what nobody reads
        link.out += data
        self._flush(link)

    def _flush(self, link: Link) -> None:
        while link.out:
            try:
                n = link.send(bytes(link.out[:4096]))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if isinstance(link, TcpLink):
                    self.drop_tcp_client(f"write failed: {exc.strerror or exc}")
                elif exc.errno == errno.EIO and isinstance(link, PtyLink):
                    self._pty_closed_by_client(link)
                return
            del link.out[:n]
        if self._sel is not None and self.is_current(link):
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if link.out else 0)
            try:
                key = self._sel.get_key(link.fd)
            except KeyError:
                return  # a TCP client that half-closed: no longer watched, closed shortly
            if key.events != events:
                self._sel.modify(link.fd, events, key.data)

    def links(self) -> Iterator[Link]:
        for link in (self.tcp, self.pty):
            if link is not None and self.is_current(link):
                yield link
