"""The simulator's event loop: one thread owns every socket, pty and all device state.

Other threads never touch that state; they hand work to the loop with :meth:`EventLoop.post` (which by
default returns once it has run, so a test's ``dev.drop_acks(1)`` is applied before its next line).  Several
simulated devices may share one loop (devkit/sim/mesh.py does): packets between them are then ordered by one
timer heap, which keeps a seeded mesh deterministic.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class EventLoop:
    """A selector, a timer heap and a queue of posted calls, run by one thread.

    ``stats`` (a Counter) gets ``handler_errors`` when a handler raises: a bug or a hostile input in one
    handler must not stop the device, so it is logged and the loop continues.
    """

    def __init__(self, name: str = "siaga-simulator", stats: collections.Counter[str] | None = None) -> None:
        self.name = name
        self.stats: collections.Counter[str] = stats if stats is not None else collections.Counter()
        self.sel: selectors.BaseSelector | None = None
        self.thread: threading.Thread | None = None
        self.stopping = False
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._posted: collections.deque[Callable[[], None]] = collections.deque()
        self._posted_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def start(
        self,
        on_open: Callable[[], None] | None = None,
        on_close: Callable[[], None] | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Start the thread; ``on_open`` runs on it first (its exception is re-raised here), ``on_close`` last."""
        self.stopping = False
        self._started.clear()
        self._start_error = None
        self.thread = threading.Thread(target=self._run, args=(on_open, on_close), name=self.name, daemon=True)
        self.thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("simulator did not start")
        if self._start_error is not None:
            self.thread.join()
            self.thread = None
            raise self._start_error

    def stop(self, timeout: float = 10.0) -> None:
        if self.thread is None:
            return
        self.stopping = True
        self.wake()
        self.thread.join(timeout)
        self.thread = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    # ------------------------------------------------------------------ any thread
    def post(self, fn: Callable[[], None], wait: bool = True) -> None:
        """Run ``fn`` on the loop thread; by default return once it has run (or the loop stopped)."""
        if threading.current_thread() is self.thread or self.thread is None:
            fn()  # before start() (state set-up) or from the loop itself
            return
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        with self._posted_lock:
            self._posted.append(run)
        self.wake()
        if wait:
            while not done.wait(0.1):
                if self.thread is None or not self.thread.is_alive():
                    return

    def wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")

    # ------------------------------------------------------------------ loop thread
    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + max(0.0, delay), next(self._seq), fn))

    def _run(self, on_open: Callable[[], None] | None, on_close: Callable[[], None] | None) -> None:
        self.sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        try:
            if on_open is not None:
                on_open()
        except BaseException as exc:
            self._start_error = exc
            self._close(on_close)
            self._started.set()
            return
        self._started.set()
        try:
            while not self.stopping:
                timeout = None
                if self._timers:
                    timeout = max(0.0, self._timers[0][0] - time.monotonic())
                with self._posted_lock:
                    if self._posted:
                        # A request posted after the last round counted its requests may have had its wake
                        # byte drained by that round's _on_wake: never block while one is waiting.
                        timeout = 0.0
                events = self.sel.select(timeout)
                with self._posted_lock:
                    requests = len(self._posted)
                # Client bytes before requests: requests are synchronous, so a request posted now was
                # made after whatever is already readable; one made after select() waits a round.
                for key, mask in events:
                    self._guard(functools.partial(key.data, mask), "I/O handler")
                for _ in range(requests):
                    if self.stopping:
                        break
                    with self._posted_lock:
                        fn = self._posted.popleft()
                    self._guard(fn, "request")
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now and not self.stopping:
                    _, _, fn = heapq.heappop(self._timers)
                    self._guard(fn, "timer")
        finally:
            self._close(on_close)

    def _close(self, on_close: Callable[[], None] | None) -> None:
        try:
            if on_close is not None:
                on_close()
        finally:
            if self.sel is not None:
                self.sel.close()
                self.sel = None
            for sock in (self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            self._wake_r = self._wake_w = None
            self._timers.clear()
            with self._posted_lock:
                self._posted.clear()  # their callers see the thread end and return

    def _guard(self, fn: Callable[[], None], what: str) -> None:
        try:
            fn()
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("simulator: %s failed; continuing", what)

    def _on_wake(self, mask: int) -> None:
        assert self._wake_r is not None
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)
