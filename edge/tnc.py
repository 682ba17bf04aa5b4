"""The TNC bridge: ordinary two-way radios through a KISS TNC — direwolf over TCP or a hardware TNC on a
serial port — heard as APRS events, answered (when licensed) with paced frames.

This is the only module that imports ``serial`` (pyserial) for the TNC; framing is edge/kiss.py, frames
edge/ax25.py, meaning edge/aprs.py, all pure.  Both transports are a :class:`KissLink` (read a chunk, write
bytes, close): the bridge above does not know which one it has.

Threads and why:

* ``tnc-link`` opens the link, reads, decodes and calls ``handler`` for each event **on this thread**, in
  order, then reads again; on EOF or an error it marks itself disconnected and reopens with the post's one
  backoff policy (siaga/backoff.py).  Frames read before a link died are handled before it reconnects: what
  the TNC delivered is never dropped by a reconnect.  A garbage frame, a bad address, an oversized info
  field is counted under its reason and skipped (the loop goes on).
* ``tnc-tx`` sends what the post queued (acks first, then Morse replies, then receipts), one frame at a time,
  only while connected and only within ``airtime_share`` of a sliding 10 minutes (relay/budget.py counts
  it).  Nothing is queued at all unless ``transmit = true`` with a callsign: receiving needs no licence,
  sending does (docs/RADIO.md).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import serial

from edge import aprs
from edge.ax25 import Address, Ax25Error, UiFrame, parse_ui
from edge.kiss import KissDecoder, encode
from relay.budget import AirtimeBudget
from siaga.backoff import Attempts, Backoff
from siaga.config import TncConfig
from siaga.errors import RadioError
from siaga.hostport import parse_host_port

log = logging.getLogger(__name__)

KISS_TCP_PORT = 8001
READ_TIMEOUT_S = 0.5
CONNECT_TIMEOUT_S = 5.0
#: The airtime share is measured over this window: long enough for a burst of acks, short enough that a
#: busy post cannot take the channel for an hour.
AIRTIME_WINDOW_S = 600.0
#: Frames waiting to go out; beyond this the lowest-priority, oldest one is dropped (counted).
TX_QUEUE_MAX = 200
#: What one Morse letter at 20 wpm costs on air, rounded up (key-up delay included).
MORSE_S = 1.0

PRIORITY_ACK = 0
PRIORITY_MORSE = 1
PRIORITY_RECEIPT = 2


class KissLink(Protocol):
    """A byte stream to a KISS TNC."""

    def read(self) -> bytes:
        """Up to a few KB; ``b""`` after :data:`READ_TIMEOUT_S` without data; raises on a lost link."""
        ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class TcpLink:
    """direwolf's KISS TCP port (or any KISS-over-TCP TNC)."""

    def __init__(self, host: str, port: int) -> None:
        self._sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
        self._sock.settimeout(READ_TIMEOUT_S)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def read(self) -> bytes:
        try:
            data = self._sock.recv(4096)
        except TimeoutError:
            return b""
        if not data:
            raise ConnectionError("the TNC closed the connection")
        return data

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass


class SerialLink:
    """A hardware TNC in KISS mode on a serial port (Mobilinkd, NinoTNC, TNC-Pi) or direwolf's ``-p`` pty."""

    def __init__(self, port: str, baud: int) -> None:
        try:
            self._port = serial.Serial(port, baud, timeout=READ_TIMEOUT_S, write_timeout=CONNECT_TIMEOUT_S)
        except (serial.SerialException, ValueError) as exc:
            raise RadioError(f"cannot open {port}: {exc}") from None

    def read(self) -> bytes:
        try:
            return bytes(self._port.read(max(1, min(self._port.in_waiting, 4096))))
        except (serial.SerialException, OSError) as exc:
            raise RadioError(f"serial read failed: {exc}") from None

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
            self._port.flush()
        except (serial.SerialException, OSError) as exc:
            raise RadioError(f"serial write failed: {exc}") from None

    def close(self) -> None:
        try:
            self._port.close()
        except (serial.SerialException, OSError):
            pass


def open_link(cfg: TncConfig) -> KissLink:
    if cfg.port:
        return SerialLink(cfg.port, cfg.baud)
    host, port = parse_host_port(cfg.host or "", "radio.tnc.host", default_port=KISS_TCP_PORT)
    return TcpLink(host, port)


def frame_airtime_s(frame_len: int, air_baud: int, txdelay_s: float) -> float:
    """Time on air of one AX.25 frame: key-up delay, flags, FCS, ~5 % bit stuffing, a short tail."""
    bits = (frame_len + 2 + 2) * 8 * 1.05
    return txdelay_s + bits / air_baud + 0.01


def direwolf_config(cfg: TncConfig, adevice: str = "plughw:1,0") -> str:
    """A direwolf.conf for this post (install.sh writes it once to /etc/siaga/direwolf.conf, never over an
    operator's edits): AGW off, KISS on the configured port, DTMF on, PTT only when transmitting."""
    _host, port = parse_host_port(cfg.host or "", "radio.tnc.host", default_port=KISS_TCP_PORT)
    if port > 49151:
        # direwolf 1.6 silently replaces a KISSPORT above 49151 with 8001
        raise RadioError(f"radio.tnc.host port {port} is above 49151, which direwolf does not accept")
    mycall = cfg.callsign if cfg.transmit and cfg.callsign else "NOCALL"
    lines = [
        "# direwolf for Siaga Relay, written by install.sh from [radio.tnc] (siaga config direwolf).",
        "# Edit freely: install.sh never overwrites this file.  docs/RADIO.md explains each line.",
        f"ADEVICE {adevice}",
        "CHANNEL 0",
        f"MYCALL {mycall}",
        "MODEM 1200",
        "# touch-tone codes from keypad-only radios",
        "DTMF",
        "# AGW off; KISS listens on every interface (direwolf cannot bind it): firewall this port from the LAN",
        "AGWPORT 0",
        f"KISSPORT {port}",
    ]
    if cfg.transmit and cfg.callsign:
        lines += ["# the USB soundcard's GPIO keys the radio (CM108); use VOX otherwise", "PTT CM108"]
    else:
        lines += ["# transmit = false in [radio.tnc]: no PTT, the post only listens"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class TncTuning:
    """Timing knobs that are not operator settings (tests shorten them)."""

    backoff_first_s: float = 1.0
    backoff_max_s: float = 10.0


@dataclass(order=True)
class _Outgoing:
    priority: int
    seq: int
    kind: str
    data: bytes
    airtime_s: float


class TncBridge:
    """Connect, reconnect, deliver :mod:`edge.aprs` events to ``handler``, send paced frames."""

    def __init__(
        self,
        cfg: TncConfig,
        handler: Callable[[aprs.AprsEvent], None],
        *,
        on_state: Callable[[bool], None] | None = None,
        tuning: TncTuning | None = None,
        link_factory: Callable[[TncConfig], KissLink] = open_link,
    ) -> None:
        self.cfg = cfg
        self._handler = handler
        self._on_state = on_state
        self._tuning = tuning or TncTuning()
        self._link_factory = link_factory
        self._link: KissLink | None = None
        self._link_lock = threading.Lock()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self._tx: list[_Outgoing] = []
        self._tx_cond = threading.Condition()
        self._seq = itertools.count()
        self._budget = AirtimeBudget(cfg.airtime_share, window_s=AIRTIME_WINDOW_S)
        self._threads: list[threading.Thread] = []
        self.connects = 0
        self.transmit = bool(cfg.transmit and cfg.callsign)
        self._my_calls = {cfg.address} | ({cfg.callsign} if cfg.callsign else set())

    @property
    def target(self) -> str:
        return self.cfg.port or self.cfg.host or "?"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def addressed_to_us(self, addressee: str) -> bool:
        return addressee.upper() in self._my_calls

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._run_link, name="tnc-link", daemon=True),
            threading.Thread(target=self._run_tx, name="tnc-tx", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Both threads end within about :data:`READ_TIMEOUT_S`."""
        self._stop.set()
        with self._tx_cond:
            self._tx_cond.notify_all()
        # not closed from here: pyserial's read fails oddly on a port closed under it; reads return within
        # READ_TIMEOUT_S and the link thread closes the link itself
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.05, deadline - time.monotonic()))
        self._threads = []

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def count(self, key: str, n: int = 1) -> None:
        with self._count_lock:
            self._counts[key] += n

    def counters(self) -> dict[str, int]:
        with self._count_lock:
            return {f"tnc.{k}": v for k, v in self._counts.items()}

    def healthy(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    # ------------------------------------------------------------------ sending (any thread)
    def send_aprs(self, info: bytes, kind: str, priority: int) -> bool:
        """Queue an APRS frame from our callsign; False (and nothing queued) when transmitting is off."""
        if not self.transmit or self.cfg.callsign is None:
            return False
        frame = UiFrame(
            Address.parse(self.cfg.tocall),
            Address.parse(self.cfg.callsign),
            tuple(Address.parse(p) for p in self.cfg.path),
            info,
        ).encode()
        self._queue(kind, frame, priority, frame_airtime_s(len(frame), self.cfg.air_baud, self.cfg.txdelay_s))
        return True

    def send_morse(self, text: str) -> bool:
        """A Morse reply through direwolf (a frame to ``MORSE-10`` is keyed as Morse, not as a packet)."""
        if not self.transmit or self.cfg.callsign is None:
            return False
        frame = UiFrame(Address("MORSE", 10), Address.parse(self.cfg.callsign), (), text.encode("ascii")).encode()
        self._queue("morse", frame, PRIORITY_MORSE, MORSE_S * max(1, len(text)) + self.cfg.txdelay_s)
        return True

    def _queue(self, kind: str, frame: bytes, priority: int, airtime_s: float) -> None:
        item = _Outgoing(priority, next(self._seq), kind, encode(frame, self.cfg.kiss_port), airtime_s)
        with self._tx_cond:
            heapq.heappush(self._tx, item)
            if len(self._tx) > TX_QUEUE_MAX:
                dropped = max(self._tx)  # lowest priority, newest of it: the oldest keep their place
                self._tx.remove(dropped)
                heapq.heapify(self._tx)
                self.count(f"tx.dropped.{dropped.kind}")
                log.warning("tnc: send queue full; a %s was dropped", dropped.kind)
            self._tx_cond.notify()

    def queued(self) -> int:
        with self._tx_cond:
            return len(self._tx)

    def _run_tx(self) -> None:
        while not self._stop.is_set():
            with self._tx_cond:
                while not self._tx and not self._stop.is_set():
                    self._tx_cond.wait(1.0)
                if self._stop.is_set():
                    return
                item = self._tx[0]
                now = time.monotonic()
                ms = item.airtime_s * 1000
                if not self._budget.allows(now, ms):
                    wait = self._budget.next_room_at(now, ms) - now
                    self.count("tx.paced")
                    self._tx_cond.wait(min(max(wait, 0.05), 5.0))
                    continue
                if not self._connected.is_set():
                    self._tx_cond.wait(0.2)
                    continue
                heapq.heappop(self._tx)
            with self._link_lock:
                link = self._link
            try:
                if link is None:
                    raise RadioError("not connected")
                link.write(item.data)
            except (OSError, RadioError) as exc:
                # the link thread notices the loss and reconnects; the frame waits for it
                log.warning("tnc: sending a %s failed (%s); kept for the next connection", item.kind, exc)
                self.count("tx.write_failed")
                with self._tx_cond:
                    heapq.heappush(self._tx, item)
                self._stop.wait(0.5)
                continue
            self._budget.spend(time.monotonic(), ms)
            self.count(f"tx.{item.kind}")

    # ------------------------------------------------------------------ tnc-link thread
    def _run_link(self) -> None:
        failures = Attempts(Backoff(self._tuning.backoff_first_s, self._tuning.backoff_max_s))
        while not self._stop.is_set():
            try:
                link = self._link_factory(self.cfg)
            except (OSError, RadioError) as exc:
                if not self._stop.is_set():
                    self.count("link.connect_failed")
                    log.warning(
                        "tnc: connecting to %s failed (attempt %d): %s", self.target, failures.failures + 1, exc
                    )
                self._stop.wait(failures.next_delay())
                continue
            failures.reset()
            with self._link_lock:
                self._link = link
            self.connects += 1
            self.count("link.connects")
            log.info("tnc: connected to %s", self.target)
            self._set_connected(True)
            try:
                self._read(link)
            finally:
                self._set_connected(False)
                with self._link_lock:
                    self._link = None
                link.close()

    def _read(self, link: KissLink) -> None:
        decoder = KissDecoder()
        while not self._stop.is_set():
            try:
                chunk = link.read()
            except (OSError, RadioError) as exc:
                if not self._stop.is_set():
                    log.warning("tnc: connection to %s lost (%s)", self.target, exc)
                    self.count("link.lost")
                return
            if not chunk:
                continue
            before = Counter(decoder.counts)
            for frame in decoder.feed(chunk):
                if frame.port != self.cfg.kiss_port:
                    self.count("ignored.other_port")
                    continue
                self._frame(frame.data)
            for key, value in (decoder.counts - before).items():
                if key != "kiss.frames":
                    self.count(f"bad.{key}", value)

    def _frame(self, data: bytes) -> None:
        try:
            ui = parse_ui(data)
        except Ax25Error as exc:
            self.count(f"bad.ax25.{exc.reason}")
            log.warning("tnc: frame refused (%s): %.60r", exc, data)
            return
        event = aprs.parse(ui)
        self.count(f"rx.{type(event).__name__.lower()}")
        log.debug("tnc: heard %s", ui.tnc2()[:200])
        try:
            self._handler(event)
        except Exception:
            self.count("handler_errors")
            log.exception("tnc: handling %s failed; continuing", type(event).__name__)

    def _set_connected(self, value: bool) -> None:
        if value == self._connected.is_set():
            return
        if value:
            self._connected.set()
        else:
            self._connected.clear()
        with self._tx_cond:
            self._tx_cond.notify_all()
        if self._on_state is not None:
            try:
                self._on_state(value)
            except Exception:
                log.exception("tnc: state callback failed")
