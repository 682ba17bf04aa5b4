"""The radio bridge: the post's gateway radio through the ``meshtastic`` library, over USB serial or TCP.

This is the only module that imports ``meshtastic`` or ``pubsub``.  Library dicts become our own small
frozen values here (:class:`MeshMessage`, :class:`MeshPosition`, :class:`MeshNodeInfo`,
:class:`MeshRouting`); nothing beyond this module sees a packet dict.

Threads and why (../shared/MESHTASTIC.md lists the library traps this design avoids):

* the library's *reader* thread parses frames and queues pubsub work; the library's global *publishing*
  thread runs every subscriber in turn.  Our listeners only copy the packet dict into a queue: they never
  block, never send and never raise (an exception in one subscriber stops delivery to the others).
* ``radio-in`` (ours) turns queued dicts into events and calls the handler (the daemon stores the report:
  the SQLite commit happens here, off the library's threads).
* ``radio-link`` (ours) opens the interface, watches it and reopens it: serial unplug/replug, TCP
  refusal, device reboot, and a link that went quiet without ``connection.lost`` (python#765/#727: it
  sends a heartbeat, which the firmware answers with ``queueStatus``, and gives up on silence).  Backoff
  1, 2, 4, 8, 10, 10 ... s with one log line per attempt.
* sends come from one thread only (the outbox in edge/receipts.py) through :meth:`RadioBridge.send_text`,
  serialised with heartbeats by a lock, because the library's sends are synchronous and unlocked.

Never a ``sys.exit``: the library calls it for a ``None`` destination, an unknown short name or port
number, so destinations are validated to integers here and ``SystemExit`` raised inside a library call
is caught and turned into :class:`RadioError`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from meshtastic.mesh_interface import MeshInterface
from meshtastic.serial_interface import SerialInterface
from meshtastic.tcp_interface import TCPInterface
from pubsub import pub

from siaga.backoff import Attempts, Backoff
from siaga.config import MeshtasticConfig
from siaga.errors import RadioError
from siaga.hostport import parse_host_port

log = logging.getLogger(__name__)

BROADCAST_NUM = 0xFFFFFFFF
#: Keep what we send well below DATA_PAYLOAD_LEN (233 B): PKI-encrypted DMs cost 12 B more.
MAX_SEND_BYTES = 200
#: A relay packet's limit (sync/compact.py MAX_PACKET_BYTES: a PKI DM on our port, firmware-exact).
RELAY_MAX_BYTES = 219
#: The library's ``hop_limit`` is 0-7; anything else in a packet is corrupt and not used.
MAX_HOPS = 7
#: Packets waiting for the ``radio-in`` thread; beyond this the oldest work is the library's problem
#: (the publishing thread blocks), never silently ours.
INBOX_MAX = 10_000
#: A TCP radio that does not accept within this is down (the library itself would wait minutes).
PROBE_TIMEOUT_S = 5.0
#: Packets waiting while ``radio-in`` has not finished one for this long: it is stuck (systemd watchdog).
STUCK_AFTER_S = 60.0


# ----------------------------------------------------------------------------------------- our values
@dataclass(frozen=True, slots=True)
class MeshMessage:
    """A text (TEXT_MESSAGE_APP) or a Detection Sensor event (DETECTION_SENSOR_APP) heard by the radio.

    ``text`` is None when the payload is not valid UTF-8 (``payload`` keeps the bytes).
    """

    kind: str  # "text" | "detection"
    from_num: int
    to_num: int
    packet_id: int
    channel: int
    payload: bytes
    text: str | None
    hops: int | None
    snr: float | None
    rssi: int | None
    relay_byte: int | None
    via_mqtt: bool = False


@dataclass(frozen=True, slots=True)
class MeshPosition:
    from_num: int
    lat: float
    lon: float
    altitude: int | None
    accuracy_m: float | None


@dataclass(frozen=True, slots=True)
class MeshNodeInfo:
    from_num: int
    long_name: str
    short_name: str


@dataclass(frozen=True, slots=True)
class MeshRouting:
    """An ACK (``error == "NONE"``) or NAK for the packet ``request_id`` we sent, as seen from ``from_num``."""

    from_num: int
    request_id: int
    error: str


@dataclass(frozen=True, slots=True)
class MeshRelayPacket:
    """A packet on our private relay port (:data:`RELAY_PORT`) heard from a direct neighbour: handed to the
    custody engine (relay/engine.py) as it is."""

    from_num: int
    to_num: int
    payload: bytes
    snr: float | None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A packet that becomes nothing: ``reason`` is the counter key (e.g. ``port.TELEMETRY_APP``)."""

    reason: str
    from_num: int | None = None


RadioEvent = MeshMessage | MeshPosition | MeshNodeInfo | MeshRouting | MeshRelayPacket | Ignored

#: Our private port for custody relay (docs/RELAY.md): 256-511 are private; 257 is ATAK's.
RELAY_PORT = 300


# ----------------------------------------------------------------------------------------- dict → value
def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _float(value: object, lo: float, hi: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if lo <= value <= hi else None


def packet_to_event(packet: Mapping[str, Any], my_num: int | None) -> RadioEvent:
    """One received packet dict (as the library publishes it) → our event.  Never raises.

    Field facts: ``from`` is an int (``fromId`` is None until NodeInfo was heard); fields at their
    default value are absent (``channel`` 0, ``hopLimit`` 0); ``decoded.payload`` is bytes.
    """
    from_num = _int(packet.get("from"))
    if from_num is None or not 0 < from_num < BROADCAST_NUM:
        return Ignored("bad.from")
    decoded = packet.get("decoded")
    if not isinstance(decoded, Mapping):
        return Ignored("encrypted" if "encrypted" in packet else "undecoded", from_num)
    port = decoded.get("portnum")
    if port in ("TEXT_MESSAGE_APP", "DETECTION_SENSOR_APP"):
        if my_num is not None and from_num == my_num:
            # our own packets echoed back by the mesh, sometimes 20-30 min later (firmware#8790); routing
            # packets from our own node are real (implicit ACKs, local NAKs) and pass
            return Ignored("own_echo", from_num)
        return _message(packet, decoded, from_num, "text" if port == "TEXT_MESSAGE_APP" else "detection")
    if port == RELAY_PORT or port == str(RELAY_PORT):
        # the library names known ports and leaves ours a number (topic meshtastic.receive.data.300)
        if my_num is not None and from_num == my_num:
            return Ignored("own_echo", from_num)
        payload = decoded.get("payload")
        if not isinstance(payload, bytes | bytearray):
            return Ignored("bad.payload", from_num)
        to_num = _int(packet.get("to"))
        return MeshRelayPacket(
            from_num,
            BROADCAST_NUM if to_num is None else to_num,
            bytes(payload),
            _float(packet.get("rxSnr"), -50, 50),
        )
    if port == "POSITION_APP":
        return _position(decoded, from_num)
    if port == "NODEINFO_APP":
        user = decoded.get("user")
        if not isinstance(user, Mapping):
            return Ignored("bad.nodeinfo", from_num)
        long_name = user.get("longName")
        short_name = user.get("shortName")
        return MeshNodeInfo(
            from_num,
            long_name[:40] if isinstance(long_name, str) else "",
            short_name[:8] if isinstance(short_name, str) else "",
        )
    if port == "ROUTING_APP":
        request_id = _int(decoded.get("requestId"))
        routing = decoded.get("routing")
        if request_id is None or not isinstance(routing, Mapping):
            return Ignored("routing.other", from_num)
        error = routing.get("errorReason", "NONE")
        return MeshRouting(from_num, request_id, error if isinstance(error, str) else "UNKNOWN")
    return Ignored(f"port.{port if isinstance(port, str) else 'UNKNOWN'}", from_num)


def _message(packet: Mapping[str, Any], decoded: Mapping[str, Any], from_num: int, kind: str) -> RadioEvent:
    packet_id = _int(packet.get("id"))
    if packet_id is None or not 0 < packet_id <= 0xFFFFFFFF:
        return Ignored("bad.packet_id", from_num)
    payload = decoded.get("payload")
    if not isinstance(payload, bytes | bytearray):
        return Ignored("bad.payload", from_num)
    try:
        text: str | None = bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        text = None
    channel = _int(packet.get("channel")) or 0
    to_num = _int(packet.get("to"))
    hop_start = _int(packet.get("hopStart"))
    hop_limit = _int(packet.get("hopLimit")) or 0
    hops = None
    if hop_start is not None and 0 <= hop_limit <= hop_start <= MAX_HOPS:
        hops = hop_start - hop_limit
    rssi_f = _float(packet.get("rxRssi"), -200, 50)
    relay = _int(packet.get("relayNode"))
    return MeshMessage(
        kind=kind,
        from_num=from_num,
        to_num=BROADCAST_NUM if to_num is None else to_num,
        packet_id=packet_id,
        channel=channel if 0 <= channel <= 7 else -1,
        payload=bytes(payload),
        text=text,
        hops=hops,
        snr=_float(packet.get("rxSnr"), -50, 50),
        rssi=int(rssi_f) if rssi_f is not None else None,
        # relay_node carries only the low byte of the last transmitter (firmware 2.6+); 0 = unknown
        relay_byte=relay & 0xFF if relay else None,
        via_mqtt=packet.get("viaMqtt") is True,
    )


def _position(decoded: Mapping[str, Any], from_num: int) -> RadioEvent:
    pos = decoded.get("position")
    if not isinstance(pos, Mapping):
        return Ignored("bad.position", from_num)
    lat_i = _int(pos.get("latitudeI"))
    lon_i = _int(pos.get("longitudeI"))
    if lat_i is None or lon_i is None or (lat_i == 0 and lon_i == 0):
        # 0/0 (or absent) is how a handset without a fix reports "no position"
        return Ignored("position.no_fix", from_num)
    lat, lon = lat_i * 1e-7, lon_i * 1e-7
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return Ignored("bad.position", from_num)
    bits = _int(pos.get("precisionBits"))
    accuracy = None
    if bits is not None and 0 < bits < 32:
        # the firmware truncates coordinates to `bits` significant bits: the cell is 2^(32-bits) * 1e-7 deg
        accuracy = round(0.5 * (1 << (32 - bits)) * 1e-7 * 111_320, 1)
    return MeshPosition(from_num, round(lat, 7), round(lon, 7), _int(pos.get("altitude")), accuracy)


# ----------------------------------------------------------------------------------------- the bridge
@dataclass(frozen=True, slots=True)
class RadioTuning:
    """Timing knobs that are not operator settings (tests shorten them)."""

    backoff_first_s: float = 1.0
    backoff_max_s: float = 10.0
    #: A heartbeat is sent after this much silence; the firmware answers it with queueStatus.
    heartbeat_s: float = 30.0
    #: No byte of answer this long after a heartbeat: the link is dead even without connection.lost.
    dead_after_s: float = 20.0
    #: A library that lost its handshake (reboot) and did not get it back within this is reopened.
    reconfig_grace_s: float = 40.0
    #: Packets waiting while ``radio-in`` has not finished one for this long: it is stuck (watchdog).
    stuck_after_s: float = STUCK_AFTER_S


class _LibraryLogCounter(logging.Handler):
    """Counts what the library only logs: frames it could not parse (and then dropped)."""

    def __init__(self, count: Callable[[str], None]) -> None:
        super().__init__(level=logging.WARNING)
        self._count = count

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # a broken record must not break the library's reader
            return
        if msg.startswith("Error while handling message from radio"):
            # every frame the library dropped; one it could not even parse also counts bad.fromradio
            self._count("bad.frame")
        elif msg.startswith("Error while parsing FromRadio"):
            self._count("bad.fromradio")
        elif msg.startswith("Malformatted utf8"):
            self._count("bad.utf8_lib")
        elif msg.startswith("Device returned a packet we sent"):
            # a packet with `from` 0: the library drops it before we see it; same reason as our own check
            self._count("ignored.bad.from")
        elif "terminating meshtastic reader" in msg:
            self._count("link.reader_died")


#: The library's loggers are all children of "meshtastic" and propagate to it: one handler there sees each
#: record once (one on a child as well counted its records twice).
_LIBRARY_LOGGERS = ("meshtastic",)


class RadioBridge:
    """The gateway radio: connect, reconnect, deliver events to ``handler``, send texts.

    ``handler`` runs on the ``radio-in`` thread, one event at a time, in arrival order; an exception in
    it is logged and counted, never fatal.  ``on_state(connected)`` runs on the ``radio-link`` thread.
    """

    def __init__(
        self,
        mesh: MeshtasticConfig,
        handler: Callable[[RadioEvent], None],
        *,
        on_state: Callable[[bool], None] | None = None,
        tuning: RadioTuning | None = None,
    ) -> None:
        self._cfg = mesh
        self._handler = handler
        self._on_state = on_state
        self._tuning = tuning or RadioTuning()
        self._iface: MeshInterface | None = None
        self._connecting: MeshInterface | None = None
        self._my_num: int | None = None
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._send_lock = threading.Lock()
        self._inbox: queue.Queue[tuple[float, Mapping[str, Any], int | None] | None] = queue.Queue(INBOX_MAX)
        self._counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self._last_rx = 0.0
        self._last_handled = time.monotonic()
        self._last_qs: object = None
        self._threads: list[threading.Thread] = []
        self.connects = 0
        self.connected_since: float | None = None
        self.last_connect_s: float | None = None
        # pypubsub holds listeners weakly: these attributes are the strong references that keep them.
        self._listeners: dict[str, Callable[..., None]] = {
            "meshtastic.receive": self._listen_receive,
            "meshtastic.connection.lost": self._listen_lost,
            "meshtastic.connection.established": self._listen_established,
            "meshtastic.log.line": self._listen_log_line,
        }
        self._log_counter = _LibraryLogCounter(self.count)

    # ------------------------------------------------------------------ lifecycle
    @property
    def target(self) -> str:
        return self._cfg.port or self._cfg.host or "?"

    def start(self) -> None:
        for topic, listener in self._listeners.items():
            pub.subscribe(listener, topic)
        for name in _LIBRARY_LOGGERS:
            logging.getLogger(name).addHandler(self._log_counter)
        for name, target in (("radio-in", self._run_inbox), ("radio-link", self._run_link)):
            # daemon threads: a library call stuck in a dead serial port must not keep the process alive
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 3.0) -> None:
        """Close the interface and stop our threads; returns within about ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._lost.set()
        connecting = self._connecting
        if connecting is not None:
            _abort_connect(connecting)
        # The link first (no new packets), then the inbox: what the radio already handed us is in RAM
        # only and is still stored before we return.
        threads = {t.name: t for t in self._threads}
        link = threads.get("radio-link")
        if link is not None:
            link.join(max(0.05, deadline - time.monotonic()))
        with contextlib.suppress(queue.Full):
            self._inbox.put(None, timeout=max(0.05, deadline - time.monotonic()))
        for thread in self._threads:
            thread.join(max(0.05, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("radio: thread %s did not stop within %.1f s", thread.name, timeout)
        self._threads.clear()
        for topic, listener in self._listeners.items():
            with contextlib.suppress(Exception):
                pub.unsubscribe(listener, topic)
        for name in _LIBRARY_LOGGERS:
            logging.getLogger(name).removeHandler(self._log_counter)

    # ------------------------------------------------------------------ state
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def my_node_num(self) -> int | None:
        return self._my_num

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def count(self, key: str, n: int = 1) -> None:
        with self._count_lock:
            self._counts[key] += n

    def counters(self) -> dict[str, int]:
        with self._count_lock:
            return dict(self._counts)

    def healthy(self) -> bool:
        """Our threads are alive and ``radio-in`` keeps up (a disconnected radio is a state, not ill health:
        a restart does not plug a cable back in)."""
        alive = bool(self._threads) and all(t.is_alive() for t in self._threads)
        stuck = self._inbox.qsize() > 0 and time.monotonic() - self._last_handled > self._tuning.stuck_after_s
        return alive and not stuck

    def known_nodes(self) -> dict[int, tuple[str, str]]:
        """Names from the radio's own node DB (num → (long, short)), read after a handshake."""
        iface = self._iface
        out: dict[int, tuple[str, str]] = {}
        if iface is None:
            return out
        try:
            nodes = list((iface.nodesByNum or {}).items())
        except RuntimeError:  # the reader thread changed the dict while we copied it
            return out
        for num, node in nodes:
            user = node.get("user") if isinstance(node, dict) else None
            if isinstance(num, int) and isinstance(user, dict):
                out[num] = (str(user.get("longName", ""))[:40], str(user.get("shortName", ""))[:8])
        return out

    # ------------------------------------------------------------------ sending (the outbox thread only)
    def send_text(self, dest_num: int, text: str, channel: int = 0) -> int:
        """Send a direct message with want_ack; return the packet id ACK/NAKs will refer to.

        Raises :class:`RadioError` when disconnected or when the library fails; never blocks on a
        link that is known to be down (the library would wait ~30 s and raise).
        """
        if not 0 < dest_num < BROADCAST_NUM or dest_num == self._my_num:
            raise RadioError(f"invalid destination {dest_num!r} for a direct message")
        if not 0 <= channel <= 7:
            raise RadioError(f"invalid channel index {channel!r}")
        data = text.encode("utf-8")
        if not data or len(data) > MAX_SEND_BYTES:
            raise RadioError(f"text of {len(data)} bytes; 1-{MAX_SEND_BYTES} bytes can be sent")
        with self._send_lock:
            iface = self._iface
            if iface is None or not self._connected.is_set():
                raise RadioError("radio not connected")
            try:
                packet = iface.sendText(text, destinationId=dest_num, wantAck=True, channelIndex=channel)
            except SystemExit as exc:  # the library's our_exit(): never let it end the daemon
                raise RadioError(f"library refused to send: exit {exc.code}") from None
            except Exception as exc:
                raise RadioError(f"send failed: {type(exc).__name__}: {exc}") from None
        packet_id = getattr(packet, "id", None)
        if not isinstance(packet_id, int) or packet_id == 0:
            raise RadioError("library returned no packet id")
        self.count("tx.text")
        return packet_id

    def send_relay(self, dest: int | None, payload: bytes) -> None:
        """A custody packet on :data:`RELAY_PORT` (relay.engine.RadioPort): to direct neighbour ``dest`` as a
        PKI-encrypted DM, or (``dest`` None) a broadcast; ``hop_limit`` 0 and no want_ack either way (our
        CACK is the acknowledgement; a firmware ACK proves only that the neighbour's radio heard it).
        Raises :class:`RadioError`; the relay engine calls it from its own thread, serialised here with
        the outbox's sends and the heartbeats by the send lock."""
        if dest is not None and (not 0 < dest < BROADCAST_NUM or dest == self._my_num):
            raise RadioError(f"invalid relay destination {dest!r}")
        if not payload or len(payload) > RELAY_MAX_BYTES:
            raise RadioError(f"relay packet of {len(payload)} bytes; 1-{RELAY_MAX_BYTES} can be sent")
        with self._send_lock:
            iface = self._iface
            if iface is None or not self._connected.is_set():
                raise RadioError("radio not connected")
            try:
                iface.sendData(
                    payload,
                    destinationId=BROADCAST_NUM if dest is None else dest,
                    portNum=RELAY_PORT,  # a private port the enum does not name
                    wantAck=False,
                    hopLimit=0,
                    # PKI only for DMs: the firmware refuses one to a node whose key it has not heard
                    pkiEncrypted=dest is not None,
                )
            except SystemExit as exc:
                raise RadioError(f"library refused to send: exit {exc.code}") from None
            except Exception as exc:
                raise RadioError(f"relay send failed: {type(exc).__name__}: {exc}") from None
        self.count("tx.relay")

    # ------------------------------------------------------------------ pubsub listeners (publishing thread)
    def _listen_receive(self, packet: Any, interface: Any) -> None:
        try:
            iface = self._iface
            if iface is None or interface is not iface or not isinstance(packet, Mapping):
                return
            self._last_rx = time.monotonic()
            my_info = iface.myInfo
            my_num = int(my_info.my_node_num) if my_info is not None else self._my_num
            self._inbox.put((time.perf_counter(), packet, my_num), timeout=1.0)
        except queue.Full:
            self.count("inbox_full")
        except Exception:
            log.exception("radio: receive listener failed")

    def _listen_lost(self, interface: Any) -> None:
        try:
            if interface is self._iface:
                self._lost.set()
        except Exception:
            log.exception("radio: connection.lost listener failed")

    def _listen_established(self, interface: Any) -> None:
        try:
            if interface is self._iface:
                self._last_rx = time.monotonic()
        except Exception:
            log.exception("radio: connection.established listener failed")

    def _listen_log_line(self, line: Any, interface: Any) -> None:
        # Bytes outside frames: device log text over serial, or line noise.
        try:
            if interface is self._iface or interface is self._connecting:
                self.count("noise.lines")
                self.count("noise.bytes", len(line) if isinstance(line, str) else 0)
                log.debug("radio log: %.120r", line)
        except Exception:
            log.exception("radio: log listener failed")

    # ------------------------------------------------------------------ radio-in thread
    def _run_inbox(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            self._last_handled = time.monotonic()
            _t0, packet, my_num = item
            if my_num is not None and my_num != self._my_num:
                # my_info is the handshake's first frame, but radio-link learns it only when waitForConfig
                # returns; what the device kept for us follows config_complete at once and can be handled
                # first.  Without this a DM to the post would be taken for a DM to another node and dropped.
                self._my_num = my_num
            try:
                event = packet_to_event(packet, my_num)
            except Exception:
                self.count("bad.packet")
                log.exception("radio: could not read a packet dict")
                continue
            self.count(_event_key(event))
            try:
                self._handler(event)
            except Exception:
                self.count("handler_errors")
                log.exception("radio: handling %s failed; continuing", type(event).__name__)

    # ------------------------------------------------------------------ radio-link thread
    def _run_link(self) -> None:
        failures = Attempts(Backoff(self._tuning.backoff_first_s, self._tuning.backoff_max_s))
        while not self._stop.is_set():
            started = time.monotonic()
            iface = self._open(failures.failures + 1)
            if iface is None:
                self._stop.wait(failures.next_delay())
                continue
            self.last_connect_s = time.monotonic() - started
            failures.reset()
            try:
                self._watch(iface)
            finally:
                self._set_connected(False)
                self._iface = None
                self._close(iface)

    def _open(self, attempt: int) -> MeshInterface | None:
        """One connection attempt; one log line whatever happens."""
        timeout = int(self._cfg.connect_timeout_s)
        iface: MeshInterface | None = None
        try:
            if self._cfg.port:
                iface = SerialInterface(devPath=self._cfg.port, connectNow=False, timeout=timeout)
            else:
                host, port = parse_host_port(self._cfg.host or "", "radio.meshtastic.host", default_port=4403)
                # The library connects without a timeout: a board that vanished from Wi-Fi (no RST)
                # would hold this thread for the kernel's minutes-long SYN timeout.  Probe first.
                with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
                    pass
                iface = TCPInterface(host, portNumber=port, connectNow=False, timeout=timeout)
            self._lost.clear()
            self._connecting = iface
            self._iface = iface  # listeners accept events of the interface being opened
            iface.connect()
            iface.waitForConfig()
            if self._stop.is_set():
                raise RadioError("stopping")
            my_info = iface.myInfo
            self._my_num = int(my_info.my_node_num) if my_info is not None else None
        except (Exception, SystemExit) as exc:
            self._iface = None
            self._connecting = None
            if iface is not None:
                self._close(iface)
            if not self._stop.is_set():
                log.warning(
                    "radio: connecting to %s failed (attempt %d): %s: %s",
                    self.target,
                    attempt,
                    type(exc).__name__,
                    str(exc)[:160] or "-",
                )
                self.count("link.connect_failed")
            return None
        self._connecting = None
        self.connects += 1
        self.count("link.connects")
        log.info(
            "radio: connected to %s (attempt %d), our node %s",
            self.target,
            attempt,
            f"!{self._my_num:08x}" if self._my_num is not None else "?",
        )
        self._last_rx = time.monotonic()
        self._last_qs = iface.queueStatus
        self._set_connected(True)
        return iface

    def _watch(self, iface: MeshInterface) -> None:
        """Return when the link is gone (lost, dead, stopping)."""
        tuning = self._tuning
        heartbeat_at: float | None = None
        unconfigured_since: float | None = None
        step = min(1.0, tuning.heartbeat_s / 4, tuning.dead_after_s / 4)
        while not self._stop.is_set():
            if self._lost.wait(step):
                if not self._stop.is_set():
                    log.warning("radio: connection to %s lost", self.target)
                    self.count("link.lost")
                return
            now = time.monotonic()
            # A reboot makes the library re-handshake on the same port: not connected meanwhile.
            if not iface.isConnected.is_set():
                unconfigured_since = unconfigured_since or now
                self._set_connected(False)
                if now - unconfigured_since > tuning.reconfig_grace_s:
                    log.warning("radio: %s did not finish its handshake; reopening", self.target)
                    self.count("link.handshake_stuck")
                    return
                continue
            if unconfigured_since is not None:
                unconfigured_since = None
                self._last_rx = now
                self._set_connected(True)
            if iface.queueStatus is not self._last_qs:
                self._last_qs = iface.queueStatus
                self._last_rx = now
            if heartbeat_at is not None and self._last_rx >= heartbeat_at:
                heartbeat_at = None
            if heartbeat_at is not None and now - heartbeat_at > tuning.dead_after_s:
                log.warning(
                    "radio: no answer from %s for %.0f s after a heartbeat; reopening", self.target, tuning.dead_after_s
                )
                self.count("link.dead")
                return
            if heartbeat_at is None and now - self._last_rx > tuning.heartbeat_s:
                heartbeat_at = now
                try:
                    with self._send_lock:
                        iface.sendHeartbeat()
                except (Exception, SystemExit) as exc:
                    log.warning("radio: heartbeat to %s failed (%s); reopening", self.target, exc)
                    self.count("link.write_failed")
                    return

    def _set_connected(self, value: bool) -> None:
        if value == self._connected.is_set():
            return
        if value:
            self._connected.set()
            self.connected_since = time.monotonic()
        else:
            self._connected.clear()
            self.connected_since = None
        if self._on_state is not None:
            try:
                self._on_state(value)
            except Exception:
                log.exception("radio: state callback failed")

    def _close(self, iface: MeshInterface) -> None:
        # close() stops the library's non-daemon heartbeat timer: without it the process cannot exit.
        # Not under the send lock: a send stuck in the library (it waits ~30 s for a lost link) must
        # not delay closing.
        try:
            iface.close()
        except (Exception, SystemExit) as exc:
            log.debug("radio: close: %s", exc)


def _abort_connect(iface: MeshInterface) -> None:
    """Make a connect() in progress give up now instead of waiting out the library's 30 s."""
    # _waitConnected() waits on isConnected and then raises `failure` if set.
    iface.failure = RadioError("stopping")
    iface.isConnected.set()
    with contextlib.suppress(Exception, SystemExit):
        iface.close()


def _event_key(event: RadioEvent) -> str:
    if isinstance(event, MeshMessage):
        return f"rx.{event.kind}"
    if isinstance(event, MeshPosition):
        return "rx.position"
    if isinstance(event, MeshNodeInfo):
        return "rx.nodeinfo"
    if isinstance(event, MeshRouting):
        return "rx.routing"
    if isinstance(event, MeshRelayPacket):
        return "rx.relay"
    return f"ignored.{event.reason}"
