"""The link emulator the chaos tests and the demo stand on: it forwards, goes silent without closing,
resets on 'down', and counts bytes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from devkit.linkproxy import LinkProxy


@pytest.fixture
def echo_server() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        conns = []
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            conns.append(conn)
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()
        for conn in conns:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def _echo(conn: socket.socket) -> None:
    try:
        while data := conn.recv(4096):
            conn.sendall(data)
    except OSError:
        pass


def test_forwards_goes_silent_and_recovers(echo_server: int) -> None:
    with LinkProxy("127.0.0.1", echo_server, delay_s=0.01) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
            client.sendall(b"halo")
            assert client.recv(100) == b"halo"
            proxy.cut()
            client.sendall(b"tolong")
            client.settimeout(0.5)
            with pytest.raises(TimeoutError):
                client.recv(100)  # silent, and not closed (recv would return b"" on close)
            proxy.restore()
            client.settimeout(5)
            assert client.recv(100) == b"tolong"  # held, not lost, like TCP retransmitting
        assert proxy.stats.up_bytes == 10 and proxy.stats.down_bytes == 10


def test_down_resets_connections(echo_server: int) -> None:
    with LinkProxy("127.0.0.1", echo_server) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
            client.sendall(b"a")
            assert client.recv(10) == b"a"
            proxy.down()
            with pytest.raises(OSError):
                client.sendall(b"b" * 100)
                if not client.recv(10):
                    raise ConnectionResetError("closed")
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client, pytest.raises(OSError):
            client.sendall(b"c")
            if not client.recv(10):
                raise ConnectionResetError("closed")


def test_bandwidth_paces_bytes(echo_server: int) -> None:
    """64 kbit/s: 8 KB each way takes about a second; asserted loosely as 'not instant'."""
    import time

    with (
        LinkProxy("127.0.0.1", echo_server, bandwidth_bps=64_000) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client,
    ):
        start = time.monotonic()
        client.sendall(b"x" * 8000)
        got = b""
        while len(got) < 8000:
            got += client.recv(65536)
        elapsed = time.monotonic() - start
    assert got == b"x" * 8000
    assert elapsed > 0.5  # a lower bound only: pacing happened (an upper bound would be a timed test)
