"""A simulated Meshtastic device speaking the client stream API over TCP and a pseudo-terminal.

It stands in for the post's gateway radio (there are no radios here) and is part of the product: the
demo, officer training and rehearsing a configuration run against it.  It speaks only the Meshtastic
wire protocol (``devkit/stream.py`` framing + the ``meshtastic.protobuf`` messages) and knows nothing of
the post daemon.  What it emulates, and why, is in docs/SIMULATOR.md; the scenario format too.

Threading: one loop thread owns every socket, the pty and all device state.  Public methods called from
other threads only post work to that loop (``_post``) and never touch state directly.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import errno
import functools
import heapq
import itertools
import json
import logging
import os
import random
import selectors
import signal
import socket
import threading
import time
import tty
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from meshtastic.protobuf import (
    admin_pb2,
    channel_pb2,
    config_pb2,
    localonly_pb2,
    mesh_pb2,
    module_config_pb2,
    portnums_pb2,
)

from devkit.stream import MAX_PAYLOAD, START1, START2, Frame, FrameDecoder, encode_frame
from siaga.airtime import MESH_HEADER_BYTES, time_on_air_ms
from siaga.errors import ConfigError
from siaga.hostport import parse_host_port

log = logging.getLogger(__name__)

BROADCAST_NUM = 0xFFFFFFFF
#: want_config_id values the firmware (2.7) treats specially; the library sends 69420 for ``noNodes``.
NONCE_ONLY_CONFIG = 69420
NONCE_ONLY_NODES = 69421
#: The firmware's TX queue length reported in QueueStatus.maxlen.
TX_QUEUE_LEN = 16
#: Firmware rate limit for texts from the client: one per 2 s (PhoneAPI, NAK RATE_LIMIT_EXCEEDED).
TEXT_RATE_LIMIT_S = 2.0
#: Largest Data.payload the firmware sends (DATA_PAYLOAD_LEN).
DATA_PAYLOAD_LEN = 233
#: Firmware reboots this long after a config change outside an edit transaction, or after commit.
CONFIG_REBOOT_S = 7.0
#: How often a closed pty is checked for a client opening it (real seconds; there is no event for it).
PTY_POLL_S = 0.1
#: After a TCP client's FIN, how long its socket stays open (real seconds) before we close it.
TCP_CLOSE_GRACE_S = 0.5
#: A client that does not read this much of what we wrote is dropped (TCP) or loses bytes (pty).
MAX_OUTBUF = 256 * 1024

PORT_TEXT = portnums_pb2.PortNum.TEXT_MESSAGE_APP
PORT_POSITION = portnums_pb2.PortNum.POSITION_APP
PORT_NODEINFO = portnums_pb2.PortNum.NODEINFO_APP
PORT_ROUTING = portnums_pb2.PortNum.ROUTING_APP
PORT_ADMIN = portnums_pb2.PortNum.ADMIN_APP
PORT_DETECTION = portnums_pb2.PortNum.DETECTION_SENSOR_APP

_CONFIG_SECTIONS = ("device", "position", "power", "network", "display", "lora", "bluetooth", "security")
# ModuleConfig's fields are declared in the order of AdminMessage.ModuleConfigType, so the request
# index is the field index.
_MODULE_SECTIONS = tuple(f.name for f in module_config_pb2.ModuleConfig.DESCRIPTOR.fields)
_LOCAL_CONFIG_FIELDS = tuple(f.name for f in config_pb2.Config.DESCRIPTOR.fields)


# ----------------------------------------------------------------------------------------- helpers
def parse_node_num(value: object, key: str = "node") -> int:
    """``"!a1b2c3d4"``, ``"0xa1b2c3d4"`` or an int → node number; ConfigError naming ``key`` otherwise."""
    if isinstance(value, bool):
        raise ConfigError(key, value, "is not a node id like !a1b2c3d4")
    if isinstance(value, int):
        num = value
    elif isinstance(value, str):
        text = value.strip().lower()
        text = text[1:] if text.startswith("!") else text[2:] if text.startswith("0x") else text
        try:
            num = int(text, 16)
        except ValueError:
            raise ConfigError(key, value, "is not a node id like !a1b2c3d4") from None
    else:
        raise ConfigError(key, value, "is not a node id like !a1b2c3d4")
    if not 0 < num < BROADCAST_NUM:
        raise ConfigError(key, value, "is outside 1..0xfffffffe")
    return num


def node_id(num: int) -> str:
    return f"!{num & 0xFFFFFFFF:08x}"


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


# ----------------------------------------------------------------------------------------- records
@dataclass
class SentPacket:
    """A packet the client sent into the mesh, with its outcome.

    ``acked``: True (ACK, or implicit ACK for broadcasts), False (no ACK ever came), ``"nak:REASON"``,
    or None (the packet did not ask for an ACK).
    """

    t: float
    id: int
    to: str
    channel: int
    portnum: str
    want_ack: bool
    hop_limit: int
    payload: bytes = field(repr=False)
    text: str | None = None
    acked: bool | str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "t": round(self.t, 3),
            "id": self.id,
            "to": self.to,
            "channel": self.channel,
            "portnum": self.portnum,
        }
        if self.text is not None:
            out["text"] = self.text
        else:
            out["payload_hex"] = self.payload.hex()
        out["want_ack"] = self.want_ack
        out["acked"] = self.acked
        return out


@dataclass(frozen=True)
class Hop:
    """How one copy of a packet reached the device."""

    hops: int
    snr: float
    rssi: int
    relay: int  # relay_node: the low byte of the last transmitter's node number


# ----------------------------------------------------------------------------------------- state
class DeviceState:
    """The device's identity, channels, config and node DB (protobufs), persisted as JSON with --state."""

    def __init__(self, node_num: int, long_name: str, short_name: str, rng: random.Random) -> None:
        self.node_num = node_num
        self.reboot_count = 0
        self.user = mesh_pb2.User(
            id=node_id(node_num),
            long_name=long_name,
            short_name=short_name,
            hw_model=mesh_pb2.HardwareModel.PORTDUINO,
        )
        self.position = mesh_pb2.Position()
        self.config = localonly_pb2.LocalConfig()
        self.module_config = localonly_pb2.LocalModuleConfig()
        self.channels: list[channel_pb2.Channel] = []
        self.canned_messages = ""
        self.ringtone = ""
        self.nodes: dict[int, mesh_pb2.NodeInfo] = {}
        self._defaults(rng)

    def _defaults(self, rng: random.Random) -> None:
        cfg = self.config
        cfg.device.role = config_pb2.Config.DeviceConfig.Role.CLIENT
        cfg.device.serial_enabled = True
        cfg.position.position_broadcast_secs = 900
        cfg.network.wifi_enabled = True
        cfg.display.screen_on_secs = 60
        lora = cfg.lora
        lora.use_preset = True
        lora.modem_preset = config_pb2.Config.LoRaConfig.ModemPreset.LONG_FAST
        lora.region = config_pb2.Config.LoRaConfig.RegionCode.SG_923
        lora.hop_limit = 3
        lora.tx_enabled = True
        # SG_923 starts at 917.0 MHz; LONG_FAST slots are 250 kHz wide: slot 20 is centred on
        # 921.875 MHz, inside Indonesia's 920-923 MHz band (the name-hashed default is not).
        lora.channel_num = 20
        cfg.bluetooth.enabled = False
        cfg.security.serial_enabled = True
        cfg.version = 24
        mc = self.module_config
        for section in _MODULE_SECTIONS:
            if section in localonly_pb2.LocalModuleConfig.DESCRIPTOR.fields_by_name:
                getattr(mc, section).SetInParent()
        mc.detection_sensor.minimum_broadcast_secs = 15
        mc.version = 24
        self.channels = [channel_pb2.Channel(index=i, role=channel_pb2.Channel.Role.DISABLED) for i in range(8)]
        primary = self.channels[0]
        primary.role = channel_pb2.Channel.Role.PRIMARY
        primary.settings.name = "Siaga"
        # A private random key: the public default key ("AQ==") is never acceptable for this project.
        primary.settings.psk = bytes(rng.getrandbits(8) for _ in range(32))

    def hop_limit(self) -> int:
        return self.config.lora.hop_limit or 3

    def metadata(self) -> mesh_pb2.DeviceMetadata:
        return mesh_pb2.DeviceMetadata(
            firmware_version="2.7.11.sim",
            device_state_version=24,
            canShutdown=True,
            hasWifi=True,
            role=self.config.device.role,
            hw_model=self.user.hw_model,
            hasPKC=False,
        )

    def my_info(self) -> mesh_pb2.MyNodeInfo:
        return mesh_pb2.MyNodeInfo(
            my_node_num=self.node_num,
            reboot_count=self.reboot_count,
            min_app_version=30200,
            pio_env="siaga-sim",
            nodedb_count=len(self.nodes) + 1,
        )

    def own_node_info(self) -> mesh_pb2.NodeInfo:
        info = mesh_pb2.NodeInfo(num=self.node_num, user=self.user)
        if self.position.latitude_i or self.position.longitude_i:
            info.position.CopyFrom(self.position)
        return info

    def to_json(self) -> dict[str, Any]:
        def d(msg: Any) -> dict[str, Any]:
            return json_format.MessageToDict(msg, preserving_proto_field_name=True)

        return {
            "node_num": self.node_num,
            "reboot_count": self.reboot_count,
            "user": d(self.user),
            "position": d(self.position),
            "config": d(self.config),
            "module_config": d(self.module_config),
            "channels": [d(c) for c in self.channels],
            "canned_messages": self.canned_messages,
            "ringtone": self.ringtone,
            "nodes": [d(n) for n in self.nodes.values()],
        }

    def load_json(self, data: dict[str, Any]) -> None:
        self.node_num = int(data.get("node_num", self.node_num))
        self.reboot_count = int(data.get("reboot_count", 0))
        json_format.ParseDict(data.get("user", {}), self.user)
        json_format.ParseDict(data.get("position", {}), self.position)
        self.config.Clear()
        json_format.ParseDict(data.get("config", {}), self.config)
        self.module_config.Clear()
        json_format.ParseDict(data.get("module_config", {}), self.module_config)
        if data.get("channels"):
            self.channels = [json_format.ParseDict(c, channel_pb2.Channel()) for c in data["channels"]]
        self.canned_messages = str(data.get("canned_messages", ""))
        self.ringtone = str(data.get("ringtone", ""))
        self.nodes = {}
        for n in data.get("nodes", []):
            info = json_format.ParseDict(n, mesh_pb2.NodeInfo())
            self.nodes[info.num] = info


# ----------------------------------------------------------------------------------------- links
class _Link:
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


class _TcpLink(_Link):
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


class _PtyLink(_Link):
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


# ----------------------------------------------------------------------------------------- scenario
_ACTION_KEYS = (
    "node",
    "text",
    "position",
    "detection",
    "disconnect",
    "reboot",
    "garbage",
    "unplug",
    "drop_acks",
    "log",
    "clock",
)
_PACKET_KEYS = {
    "at", "from", "to", "text", "position", "detection", "hops", "hop_start", "copies", "copy_gap", "snr",
    "rssi", "channel", "id", "want_ack", "relay", "paths", "rx_time",
}  # fmt: skip
_STEP_KEYS = {
    "node": {"at", "node"},
    "disconnect": {"at", "disconnect", "refuse"},
    "reboot": {"at", "reboot"},
    "garbage": {"at", "garbage"},
    "unplug": {"at", "unplug"},
    "drop_acks": {"at", "drop_acks", "nak"},
    "log": {"at", "log"},
    "clock": {"at", "clock"},
}


@dataclass(frozen=True)
class ScenarioStep:
    at: float
    action: str
    data: dict[str, Any]
    line: int = 0


_ROUTING_ERRORS = frozenset(mesh_pb2.Routing.Error.keys())
_HW_MODELS = frozenset(mesh_pb2.HardwareModel.keys())
_ROLES = frozenset(config_pb2.Config.DeviceConfig.Role.keys())


def parse_step(obj: object, line: int = 0) -> ScenarioStep:
    """Validate one scenario object; ConfigError naming ``scenario:LINE.key`` when it is wrong."""
    where = f"scenario:{line}"
    if not isinstance(obj, dict):
        raise ConfigError(where, obj, "is not a JSON object")
    at = obj.get("at", 0)
    if isinstance(at, bool) or not isinstance(at, int | float) or at < 0:
        raise ConfigError(f"{where}.at", at, "must be a number of seconds >= 0")
    actions = [k for k in _ACTION_KEYS if k in obj]
    if len(actions) != 1:
        raise ConfigError(where, obj, f"needs exactly one of {', '.join(_ACTION_KEYS)}")
    action = actions[0]
    allowed = _PACKET_KEYS if action in ("text", "position", "detection") else _STEP_KEYS[action]
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", obj[unknown[0]], f"is not a known key for a {action} step")
    if action in ("text", "position", "detection"):
        parse_node_num(obj.get("from"), f"{where}.from")
        if action == "text" and not isinstance(obj["text"], str):
            raise ConfigError(f"{where}.text", obj["text"], "must be a string")
        if action == "text" and len(obj["text"].encode()) > DATA_PAYLOAD_LEN:
            raise ConfigError(f"{where}.text", obj["text"], f"is longer than {DATA_PAYLOAD_LEN} bytes")
        if action == "detection" and not isinstance(obj["detection"], str):
            raise ConfigError(f"{where}.detection", obj["detection"], "must be the sensor name")
        if action == "position":
            pos = obj["position"]
            if not isinstance(pos, dict) or not all(isinstance(pos.get(k), int | float) for k in ("lat", "lon")):
                raise ConfigError(f"{where}.position", pos, 'needs numeric "lat" and "lon"')
            if not (-90 <= pos["lat"] <= 90 and -180 <= pos["lon"] <= 180):
                raise ConfigError(f"{where}.position", pos, "is outside the globe")
        for key in ("hops", "copies", "channel", "hop_start"):
            if key in obj and (isinstance(obj[key], bool) or not isinstance(obj[key], int) or obj[key] < 0):
                raise ConfigError(f"{where}.{key}", obj[key], "must be an integer >= 0")
        if obj.get("hops", 0) > 7 or obj.get("hop_start", 0) > 7:
            raise ConfigError(f"{where}.hops", obj.get("hops"), "hop counts are 0-7 in Meshtastic")
        if obj.get("channel", 0) > 7:
            raise ConfigError(f"{where}.channel", obj["channel"], "channel index is 0-7")
        if "id" in obj and (not isinstance(obj["id"], int) or not 0 < obj["id"] <= 0xFFFFFFFF):
            raise ConfigError(f"{where}.id", obj["id"], "must be a packet id 1..0xffffffff")
        if "to" in obj and obj["to"] not in ("post", "^local", "^all"):
            parse_node_num(obj["to"], f"{where}.to")
        if "relay" in obj:
            parse_node_num(obj["relay"], f"{where}.relay")
        if "paths" in obj and (not isinstance(obj["paths"], list) or not obj["paths"]):
            raise ConfigError(f"{where}.paths", obj["paths"], "must be a non-empty list of hop objects")
    elif action == "node":
        node = obj["node"]
        if not isinstance(node, dict):
            raise ConfigError(f"{where}.node", node, "must be an object with id, long_name, short_name")
        parse_node_num(node.get("id"), f"{where}.node.id")
        if "hw_model" in node and node["hw_model"] not in _HW_MODELS:
            raise ConfigError(f"{where}.node.hw_model", node["hw_model"], "is not a Meshtastic HardwareModel")
        if "role" in node and node["role"] not in _ROLES:
            raise ConfigError(f"{where}.node.role", node["role"], "is not a Meshtastic device role")
    elif action in ("disconnect", "unplug", "garbage", "drop_acks"):
        value = obj[action]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{where}.{action}", value, "must be a number >= 0")
        if action == "drop_acks" and obj.get("nak") is not None and obj["nak"] not in _ROUTING_ERRORS:
            raise ConfigError(f"{where}.nak", obj["nak"], "is not a Routing.Error name like MAX_RETRANSMIT")
    elif action == "reboot":
        value = obj["reboot"]
        if not (value is True or (isinstance(value, int | float) and not isinstance(value, bool) and value >= 0)):
            raise ConfigError(f"{where}.reboot", value, "must be true or seconds of downtime")
    return ScenarioStep(at=float(at), action=action, data=dict(obj), line=line)


def load_scenario(path: str | Path) -> list[ScenarioStep]:
    """Read a JSON-lines scenario; blank lines and lines starting with ``#`` or ``//`` are skipped."""
    steps: list[ScenarioStep] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("scenario", str(path), f"cannot be read: {exc.strerror}") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "//")):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"scenario:{number}", line[:60], f"is not JSON: {exc.msg}") from None
        steps.append(parse_step(obj, number))
    return steps


# ----------------------------------------------------------------------------------------- device
class SimulatedDevice:
    """A Meshtastic device on TCP (``listen``) and/or a pty (``pty_path``), run in a background thread.

    ``speed`` compresses simulated time (airtime, ACK delays, the 2 s rate limit, scenario times,
    downtime of disturbances).  Use as a context manager or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        *,
        listen: tuple[str, int] | None = None,
        pty_path: str | Path | None = None,
        node: str | int = "!5a6a0001",
        long_name: str = "Pos Siaga (simulasi)",
        short_name: str = "SIM1",
        speed: float = 1.0,
        record_path: str | Path | None = None,
        state_path: str | Path | None = None,
        has_clock: bool = False,
        offline_queue: int = 30,
        rate_limit_s: float | None = None,
        nak_delay_s: float = 12.0,
        reboot_on_config: bool = True,
        seed: int | None = None,
    ) -> None:
        if listen is None and pty_path is None:
            raise ConfigError("simulate", None, "needs --listen HOST:PORT and/or --pty PATH")
        if speed <= 0:
            raise ConfigError("simulate.speed", speed, "must be > 0")
        self.speed = float(speed)
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.state = DeviceState(parse_node_num(node, "simulate.node"), long_name, short_name, self._rng)
        self.state_path = Path(state_path) if state_path else None
        if self.state_path and self.state_path.exists():
            try:
                self.state.load_json(json.loads(self.state_path.read_text(encoding="utf-8")))
            except (ValueError, json_format.ParseError) as exc:
                raise ConfigError("simulate.state", str(self.state_path), f"is not a simulator state: {exc}") from None
        self.has_clock = has_clock
        self.rate_limit_s = TEXT_RATE_LIMIT_S / self.speed if rate_limit_s is None else rate_limit_s
        self.nak_delay_s = nak_delay_s
        self.reboot_on_config = reboot_on_config
        self._listen_addr = listen
        self.pty_path = Path(pty_path) if pty_path else None
        self.record_path = Path(record_path) if record_path else None

        self._sel: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._listen_port = 0
        self._tcp: _TcpLink | None = None
        self._pty: _PtyLink | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._record_file: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._started = threading.Event()
        self._start_error: BaseException | None = None

        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._posted: collections.deque[Callable[[], None]] = collections.deque()
        self._posted_lock = threading.Lock()
        self._fromradio_id = itertools.count(1)

        self._offline: collections.deque[mesh_pb2.MeshPacket] = collections.deque(maxlen=max(1, offline_queue))
        self._inflight = 0
        self._pending_acks: dict[int, SentPacket] = {}
        self._passkey = b""
        self._last_text_at: float | None = None
        self._drop_acks = 0
        self._drop_nak: str | None = None
        self._edit_transaction = False
        self._tcp_down_until = 0.0
        self._pty_generation = 0
        self._pending_deliveries = 0
        self._scenario_left = 0

        self._cond = threading.Condition()
        self._sent: list[SentPacket] = []
        self.handshakes = 0
        self.scenario_done = threading.Event()
        self.stats: collections.Counter[str] = collections.Counter()
        #: Ids of the packets the offline queue dropped (oldest first), so a test can tell them from other losses.
        self.offline_dropped_ids: list[int] = []

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> SimulatedDevice:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def node_num(self) -> int:
        return self.state.node_num

    @property
    def port(self) -> int:
        """The TCP port actually listened on (useful with port 0)."""
        return self._listen_port

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="siaga-simulator", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("simulator did not start")
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._stopping = True
        self._wake()
        self._thread.join(timeout)
        self._thread = None

    # ------------------------------------------------------------------ public API (any thread)
    @property
    def sent(self) -> list[SentPacket]:
        """Packets the client sent into the mesh whose outcome is known, oldest first (a copy)."""
        with self._cond:
            return list(self._sent)

    def wait_for_sent(self, predicate: Callable[[SentPacket], bool], timeout: float = 10.0) -> SentPacket:
        """The first (oldest) sent packet matching ``predicate``; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for pkt in self._sent:
                    if predicate(pkt):
                        return pkt
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no matching packet was sent")
                self._cond.wait(left)

    def wait_for_in_flight(self, packet_id: int, timeout: float = 10.0) -> None:
        """Block until the device has taken packet ``packet_id`` from the client and awaits its ACK.

        A client's write returns before the device has read the frame; a test that reboots or cuts the
        device "while a packet is in flight" must wait for this first, or the fault may come first.
        """
        deadline = time.monotonic() + timeout
        seen: list[bool] = []
        while True:
            seen.clear()
            self._post(lambda: seen.append(packet_id in self._pending_acks))
            if seen and seen[0]:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"packet {packet_id} never reached the device's TX queue")
            time.sleep(0.02)

    def wait_for_handshake(self, count: int = 1, timeout: float = 10.0) -> None:
        """Block until ``count`` want_config handshakes have completed since start."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.handshakes < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.handshakes} handshakes, wanted {count}")
                self._cond.wait(left)

    @property
    def client_connected(self) -> bool:
        return any(link is not None and link.configured for link in (self._tcp, self._pty))

    def add_node(
        self,
        node: str | int,
        long_name: str,
        short_name: str,
        *,
        announce: bool = True,
        hops: int = 0,
        hw_model: str = "TBEAM",
        role: str = "CLIENT",
    ) -> None:
        """Add a handset to the node DB; with ``announce`` it also broadcasts its NodeInfo."""
        self.run_step(
            {
                "node": {
                    "id": node_id(parse_node_num(node)),
                    "long_name": long_name,
                    "short_name": short_name,
                    "announce": announce,
                    "hops": hops,
                    "hw_model": hw_model,
                    "role": role,
                }
            }
        )

    def inject_text(self, sender: str | int, text: str, **options: Any) -> int:
        """Deliver a text as if heard over the air; returns its packet id.  Options as in a scenario line."""
        return self._inject({"from": sender, "text": text, **options})

    def inject_position(self, sender: str | int, lat: float, lon: float, **options: Any) -> int:
        alt = options.pop("alt", None)
        pos: dict[str, Any] = {"lat": lat, "lon": lon}
        if alt is not None:
            pos["alt"] = alt
        return self._inject({"from": sender, "position": pos, **options})

    def inject_detection(self, sender: str | int, name: str, **options: Any) -> int:
        return self._inject({"from": sender, "detection": name, **options})

    def inject_garbage(self, n: int = 200) -> None:
        self.run_step({"garbage": n})

    def disconnect(self, seconds: float, refuse: bool = True) -> None:
        self.run_step({"disconnect": seconds, "refuse": refuse})

    def reboot(self, seconds: float | bool = True) -> None:
        self.run_step({"reboot": seconds})

    def unplug(self, seconds: float) -> None:
        self.run_step({"unplug": seconds})

    def drop_acks(self, count: int, nak: str | None = None) -> None:
        self.run_step({"drop_acks": count, "nak": nak})

    def run_step(self, obj: dict[str, Any]) -> None:
        """Run one scenario step now (validated like a scenario line)."""
        step = parse_step(obj)
        self._post(lambda: self._apply(step))

    def play(self, steps: Iterable[ScenarioStep]) -> None:
        """Schedule scenario steps relative to now; :attr:`scenario_done` is set after the last one."""
        steps = list(steps)
        self.scenario_done.clear()

        def schedule() -> None:
            self._scenario_left += len(steps)
            for step in steps:
                self._call_later(step.at / self.speed, functools.partial(self._scenario_step, step))
            self._check_scenario_done()

        self._post(schedule)

    def _inject(self, obj: dict[str, Any]) -> int:
        if "id" not in obj:
            obj["id"] = self._new_id()
        step = parse_step(obj)
        self._post(lambda: self._apply(step))
        return int(obj["id"])

    # ------------------------------------------------------------------ loop plumbing
    def _new_id(self) -> int:
        with self._rng_lock:
            return self._rng.randint(1, 0xFFFFFFFF)

    def _post(self, fn: Callable[[], None], wait: bool = True) -> None:
        """Run ``fn`` on the loop thread; by default return once it has run (or the device stopped)."""
        if threading.current_thread() is self._thread or self._thread is None:
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
        self._wake()
        if wait:
            while not done.wait(0.1):
                if self._thread is None or not self._thread.is_alive():
                    return

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")

    def _call_later(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + max(0.0, delay), next(self._seq), fn))

    def _run(self) -> None:
        try:
            self._open()
        except BaseException as exc:
            self._start_error = exc
            self._close_all()
            self._started.set()
            return
        self._started.set()
        assert self._sel is not None
        try:
            while not self._stopping:
                timeout = None
                if self._timers:
                    timeout = max(0.0, self._timers[0][0] - time.monotonic())
                events = self._sel.select(timeout)
                with self._posted_lock:
                    requests = len(self._posted)
                # Client bytes before requests: requests are synchronous, so a request posted now was
                # made after whatever is already readable; one made after select() waits a round.
                for key, mask in events:
                    self._guard(functools.partial(key.data, mask), "I/O handler")
                for _ in range(requests):
                    if self._stopping:
                        break
                    with self._posted_lock:
                        fn = self._posted.popleft()
                    self._guard(fn, "request")
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now and not self._stopping:
                    _, _, fn = heapq.heappop(self._timers)
                    self._guard(fn, "timer")
        finally:
            self._close_all()

    def _guard(self, fn: Callable[[], None], what: str) -> None:
        # A bug or a hostile input in one handler must not stop the device.
        try:
            fn()
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("simulator: %s failed; continuing", what)

    def _open(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        if self.record_path is not None:
            self._record_file = open(self.record_path, "a", encoding="utf-8")  # noqa: SIM115
        if self._listen_addr is not None:
            try:
                self._open_listener()
            except OSError as exc:
                host, port = self._listen_addr
                raise ConfigError("simulate.listen", f"{host}:{port}", f"cannot listen: {exc.strerror}") from None
        if self.pty_path is not None:
            try:
                self._open_pty()
            except OSError as exc:
                raise ConfigError("simulate.pty", str(self.pty_path), f"cannot create: {exc.strerror}") from None
        log.info(
            "simulated device %s (%s) up: tcp=%s pty=%s speed=%s",
            node_id(self.node_num),
            self.state.user.long_name,
            f"{self._listen_addr[0]}:{self._listen_port}" if self._listen_addr else "-",
            self.pty_path or "-",
            self.speed,
        )

    def _close_all(self) -> None:
        self._drop_tcp_client("simulator stopping")
        self._close_listener()
        self._close_pty()
        if self._sel is not None:
            self._sel.close()
            self._sel = None
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = self._wake_w = None
        if self._record_file is not None:
            self._record_file.close()
            self._record_file = None
        self._save_state()

    def _on_wake(self, mask: int) -> None:
        assert self._wake_r is not None
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)

    # ------------------------------------------------------------------ TCP transport
    def _open_listener(self) -> None:
        assert self._listen_addr is not None and self._sel is not None
        host, port = self._listen_addr
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port or self._listen_port))
            sock.listen(4)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._listener = sock
        self._listen_port = sock.getsockname()[1]
        self._sel.register(sock, selectors.EVENT_READ, self._on_accept)

    def _close_listener(self) -> None:
        if self._listener is not None:
            if self._sel is not None:
                self._sel.unregister(self._listener)
            self._listener.close()
            self._listener = None

    def _on_accept(self, mask: int) -> None:
        assert self._listener is not None and self._sel is not None
        try:
            sock, addr = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        peer = f"{addr[0]}:{addr[1]}"
        old = self._tcp
        while old is not None and old is self._tcp:
            # Firmware reads a client's bytes as they arrive.  Here the accept can come first in a select
            # round while the old client's last frames (written just before it closed) are still unread:
            # take them first, or a write-then-close client (siaga firmware apply) would lose its commit.
            data = old.recv()
            if not data:  # None: nothing more now; b"": end of stream
                break
            self._on_bytes(old, data)
        if self._tcp is not None:
            # Firmware (APIServerPort) force-closes the previous TCP client when a new one connects.
            log.info("tcp client %s replaces %s (one client at a time, like firmware)", peer, self._tcp.peer)
            self._drop_tcp_client("replaced by a new client")
        link = _TcpLink(sock, peer)
        self._tcp = link
        self._sel.register(sock, selectors.EVENT_READ, lambda m, lk=link: self._on_link_io(lk, m))
        self.stats["tcp_accepts"] += 1
        log.info("tcp client %s connected", peer)

    def _drop_tcp_client(self, why: str) -> None:
        link = self._tcp
        if link is None:
            return
        self._tcp = None
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
        link = _PtyLink(master, slave_name)
        self._pty = link
        self._pty_generation += 1
        tmp = self.pty_path.with_name(f".{self.pty_path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(slave_name, tmp)
        os.replace(tmp, self.pty_path)  # atomic: a client never sees the path missing half-way
        self._check_pty(link)
        log.info("pty %s -> %s ready", self.pty_path, slave_name)

    def _close_pty(self, remove_link: bool = True) -> None:
        link = self._pty
        if link is None:
            return
        self._pty = None
        self._unregister_pty(link)
        link.close()
        if remove_link and self.pty_path is not None and self.pty_path.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                if os.readlink(self.pty_path) == link.slave_name:
                    self.pty_path.unlink()

    def _unregister_pty(self, link: _PtyLink) -> None:
        if link.open and self._sel is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(link.fd)
        link.open = False

    def _check_pty(self, link: _PtyLink) -> None:
        # A closed slave makes the master report POLLHUP continuously, so it cannot sit in the selector
        # until a client opens the slave; look every PTY_POLL_S instead.
        if link is not self._pty or link.closed or link.open:
            return
        if link.slave_is_open():
            assert self._sel is not None
            link.open = True
            self._sel.register(link.fd, selectors.EVENT_READ, lambda m, lk=link: self._on_link_io(lk, m))
            log.info("pty %s opened by a client", self.pty_path)
        else:
            self._call_later(PTY_POLL_S, lambda: self._check_pty(link))

    def _pty_closed_by_client(self, link: _PtyLink) -> None:
        self._unregister_pty(link)
        link.configured = False
        dropped = link.decoder.reset()
        link.out.clear()
        log.info(
            "pty %s closed by the client%s",
            self.pty_path,
            f" ({dropped} bytes of a frame lost)" if dropped else "",
        )
        self._call_later(PTY_POLL_S, lambda: self._check_pty(link))

    # ------------------------------------------------------------------ link I/O
    def _on_link_io(self, link: _Link, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            data = link.recv()
            if data is None:
                return
            if not data:
                self._link_lost(link, "closed by the client")
                return
            self._on_bytes(link, data)
        if mask & selectors.EVENT_WRITE and self._is_current(link):
            self._flush(link)

    def _is_current(self, link: _Link) -> bool:
        return link is self._tcp or (link is self._pty and isinstance(link, _PtyLink) and link.open)

    def _link_lost(self, link: _Link, why: str) -> None:
        if isinstance(link, _PtyLink):
            if link is self._pty:
                self._pty_closed_by_client(link)
        elif link is self._tcp and self._sel is not None:
            # The library half-closes (FIN) and may still write a heartbeat from its reader thread;
            # closing at once would answer that with a reset and a BrokenPipeError in the client.
            # Stop reading (EOF stays readable) and close shortly after.
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(link.fd)
            link.configured = False

            def drop(lk: _Link = link) -> None:
                if lk is self._tcp:
                    self._drop_tcp_client(why)

            self._call_later(TCP_CLOSE_GRACE_S, drop)

    def _write(self, link: _Link, data: bytes) -> None:
        if not self._is_current(link):
            return
        if len(link.out) + len(data) > MAX_OUTBUF:
            self.stats["outbuf_overflows"] += 1
            log.warning("%s client is not reading; %d bytes pending", link.kind, len(link.out))
            if isinstance(link, _TcpLink):
                self._drop_tcp_client("not reading")
                return
            link.out.clear()  # a serial line simply loses what nobody reads
        link.out += data
        self._flush(link)

    def _flush(self, link: _Link) -> None:
        while link.out:
            try:
                n = link.send(bytes(link.out[:4096]))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if isinstance(link, _TcpLink):
                    self._drop_tcp_client(f"write failed: {exc.strerror or exc}")
                elif exc.errno == errno.EIO and isinstance(link, _PtyLink):
                    self._pty_closed_by_client(link)
                return
            del link.out[:n]
        if self._sel is not None and self._is_current(link):
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if link.out else 0)
            try:
                key = self._sel.get_key(link.fd)
            except KeyError:
                return  # a TCP client that half-closed: no longer watched, closed shortly
            if key.events != events:
                self._sel.modify(link.fd, events, key.data)

    def _send_fromradio(self, link: _Link, msg: mesh_pb2.FromRadio) -> None:
        msg.id = next(self._fromradio_id)
        payload = msg.SerializeToString()
        if len(payload) > MAX_PAYLOAD:
            log.error("FromRadio of %d bytes does not fit a frame; not sent", len(payload))
            return
        self._write(link, encode_frame(payload))

    def _links(self) -> Iterator[_Link]:
        for link in (self._tcp, self._pty):
            if link is not None and self._is_current(link):
                yield link

    # ------------------------------------------------------------------ client → device
    def _on_bytes(self, link: _Link, data: bytes) -> None:
        for item in link.decoder.feed(data):
            if isinstance(item, Frame):
                self._on_frame(link, item.payload)
            else:
                # The library wakes a device with 32 × 0xC3 before every handshake: noise, not an attack.
                self.stats["noise_bytes"] += len(item.data)
                log.debug("%s: %d bytes outside frames", link.kind, len(item.data))

    def _on_frame(self, link: _Link, payload: bytes) -> None:
        msg = mesh_pb2.ToRadio()
        try:
            msg.ParseFromString(payload)
        except Exception as exc:  # protobuf raises DecodeError, but be generous with hostile input
            self.stats["bad_frames"] += 1
            log.warning("%s: undecodable ToRadio (%d bytes): %s", link.kind, len(payload), exc)
            return
        variant = msg.WhichOneof("payload_variant")
        self.stats[f"toradio_{variant}"] += 1
        if variant == "want_config_id":
            self._handshake(link, msg.want_config_id)
        elif variant == "packet":
            self._on_client_packet(link, msg.packet)
        elif variant == "heartbeat":
            self._send_queue_status(link, 0)
        elif variant == "disconnect":
            link.configured = False
            log.info("%s client said disconnect", link.kind)
            if isinstance(link, _TcpLink):
                self._drop_tcp_client("client disconnect")
        else:
            log.debug("%s: ignoring ToRadio %s", link.kind, variant)

    def _handshake(self, link: _Link, nonce: int) -> None:
        st = self.state
        link.configured = False
        only_config = nonce == NONCE_ONLY_CONFIG
        only_nodes = nonce == NONCE_ONLY_NODES
        send = self._send_fromradio
        send(link, mesh_pb2.FromRadio(my_info=st.my_info()))
        send(link, mesh_pb2.FromRadio(node_info=st.own_node_info()))
        if not only_nodes:
            send(link, mesh_pb2.FromRadio(metadata=st.metadata()))
            for ch in st.channels:
                send(link, mesh_pb2.FromRadio(channel=ch))
            for section in _CONFIG_SECTIONS:
                msg = mesh_pb2.FromRadio()
                getattr(msg.config, section).CopyFrom(getattr(st.config, section))
                send(link, msg)
            for section in _MODULE_SECTIONS:
                if section not in localonly_pb2.LocalModuleConfig.DESCRIPTOR.fields_by_name:
                    continue
                msg = mesh_pb2.FromRadio()
                getattr(msg.moduleConfig, section).CopyFrom(getattr(st.module_config, section))
                send(link, msg)
        if not only_config:
            for info in st.nodes.values():
                send(link, mesh_pb2.FromRadio(node_info=info))
        send(link, mesh_pb2.FromRadio(config_complete_id=nonce))
        if not self._is_current(link):
            return
        link.configured = True
        with self._cond:
            self.handshakes += 1
            self._cond.notify_all()
        log.info(
            "%s handshake %d done (config id %d), %d queued packets follow",
            link.kind,
            self.handshakes,
            nonce,
            len(self._offline),
        )
        while self._offline and link.configured and self._is_current(link):
            self._send_fromradio(link, mesh_pb2.FromRadio(packet=self._offline.popleft()))

    def _free(self) -> int:
        return max(0, TX_QUEUE_LEN - self._inflight)

    def _send_queue_status(self, link: _Link, packet_id: int) -> None:
        qs = mesh_pb2.QueueStatus(res=0, free=self._free(), maxlen=TX_QUEUE_LEN, mesh_packet_id=packet_id)
        self._send_fromradio(link, mesh_pb2.FromRadio(queueStatus=qs))

    def _on_client_packet(self, link: _Link, pkt: mesh_pb2.MeshPacket) -> None:
        st = self.state
        self._send_queue_status(link, pkt.id)
        portnum = pkt.decoded.portnum if pkt.HasField("decoded") else portnums_pb2.PortNum.UNKNOWN_APP
        if pkt.to == st.node_num and portnum == PORT_ADMIN:
            self._on_admin(link, pkt)
            return
        try:
            port_name = portnums_pb2.PortNum.Name(portnum)
        except ValueError:
            port_name = str(portnum)
        text: str | None = None
        if portnum == PORT_TEXT:
            text = pkt.decoded.payload.decode("utf-8", errors="replace")
        sent = SentPacket(
            t=time.time(),
            id=pkt.id,
            to=node_id(pkt.to),
            channel=pkt.channel,
            portnum=port_name,
            want_ack=pkt.want_ack,
            hop_limit=pkt.hop_limit,
            payload=bytes(pkt.decoded.payload),
            text=text,
        )
        log.debug("client sent %s to %s id=%08x want_ack=%s", port_name, sent.to, pkt.id, pkt.want_ack)
        now = time.monotonic()
        if portnum == PORT_TEXT:
            if self._last_text_at is not None and now - self._last_text_at < self.rate_limit_s:
                # Firmware answers before queueing and does not count the refused text.
                self.stats["rate_limited"] += 1
                self._routing_reply(pkt.id, "RATE_LIMIT_EXCEEDED", st.node_num)
                self._finish(sent, "nak:RATE_LIMIT_EXCEEDED")
                return
            self._last_text_at = now
        if not pkt.want_ack:
            self._finish(sent, None)
            return
        air = time_on_air_ms(len(pkt.decoded.payload) + MESH_HEADER_BYTES) / 1000 / self.speed
        ack_air = time_on_air_ms(2 + MESH_HEADER_BYTES) / 1000 / self.speed
        self._inflight += 1
        generation = self.state.reboot_count
        dest = st.nodes.get(pkt.to)

        def complete(outcome: bool | str, reply: tuple[str, int] | None) -> None:
            if self.state.reboot_count != generation:
                return  # the device rebooted meanwhile: its TX queue was lost and recorded as not acked
            self._inflight -= 1
            if reply is not None:
                self._routing_reply(
                    pkt.id, reply[0], reply[1], hops=dest.hops_away if dest and reply[1] == pkt.to else 0
                )
            self._finish(sent, outcome)
            if self._free() == 1:  # the queue was full; the library waits for news of free space
                for lk in self._links():
                    if lk.configured:
                        self._send_queue_status(lk, 0)

        self._pending_acks[pkt.id] = sent
        if self._drop_acks > 0:
            self._drop_acks -= 1
            nak = self._drop_nak
            if nak:
                self._call_later(self.nak_delay_s / self.speed, lambda: complete(f"nak:{nak}", (nak, st.node_num)))
            else:
                self._call_later(self.nak_delay_s / self.speed, lambda: complete(False, None))
        elif pkt.to == BROADCAST_NUM:
            # Implicit ACK: the device heard a neighbour rebroadcast it.
            self._call_later(air * 2, lambda: complete(True, ("NONE", st.node_num)))
        elif dest is not None:
            hops = dest.hops_away + 1
            self._call_later((air + ack_air) * hops, lambda: complete(True, ("NONE", pkt.to)))
        elif pkt.to == st.node_num:
            self._call_later(0, lambda: complete(True, ("NONE", st.node_num)))
        else:
            self._call_later(
                self.nak_delay_s / self.speed,
                lambda: complete("nak:MAX_RETRANSMIT", ("MAX_RETRANSMIT", st.node_num)),
            )

    def _finish(self, sent: SentPacket, outcome: bool | str | None) -> None:
        self._pending_acks.pop(sent.id, None)
        sent.acked = outcome
        if self._record_file is not None:
            self._record_file.write(json.dumps(sent.to_dict(), ensure_ascii=False) + "\n")
            self._record_file.flush()
        with self._cond:
            self._sent.append(sent)
            self._cond.notify_all()

    def _routing_reply(self, request_id: int, error: str, sender: int, hops: int = 0) -> None:
        st = self.state
        routing = mesh_pb2.Routing(error_reason=mesh_pb2.Routing.Error.Value(error))
        pkt = mesh_pb2.MeshPacket()
        setattr(pkt, "from", sender)
        pkt.to = st.node_num
        pkt.id = self._new_id()
        pkt.priority = mesh_pb2.MeshPacket.Priority.ACK
        pkt.decoded.portnum = PORT_ROUTING
        pkt.decoded.payload = routing.SerializeToString()
        pkt.decoded.request_id = request_id
        if sender != st.node_num:
            pkt.hop_start = st.hop_limit()
            pkt.hop_limit = max(0, pkt.hop_start - hops)
            pkt.rx_snr = 7.0
            pkt.rx_rssi = -95
            pkt.relay_node = sender & 0xFF
            if self.has_clock:
                pkt.rx_time = int(time.time())
        self._deliver(pkt)

    # ------------------------------------------------------------------ admin (client → local node)
    def _on_admin(self, link: _Link, pkt: mesh_pb2.MeshPacket) -> None:
        st = self.state
        req = admin_pb2.AdminMessage()
        try:
            req.ParseFromString(pkt.decoded.payload)
        except Exception as exc:
            self.stats["bad_admin"] += 1
            log.warning("undecodable admin message: %s", exc)
            self._routing_reply(pkt.id, "BAD_REQUEST", st.node_num)
            return
        variant = req.WhichOneof("payload_variant")
        self.stats[f"admin_{variant}"] += 1
        log.info("admin %s", variant)
        resp: admin_pb2.AdminMessage | None = None
        changed = False
        reboot = False
        if variant == "get_config_request":
            resp = admin_pb2.AdminMessage()
            index = req.get_config_request
            name = _LOCAL_CONFIG_FIELDS[index] if index < len(_LOCAL_CONFIG_FIELDS) else ""
            if name in _CONFIG_SECTIONS:
                getattr(resp.get_config_response, name).CopyFrom(getattr(st.config, name))
            elif name:
                getattr(resp.get_config_response, name).SetInParent()
        elif variant == "set_config":
            name = req.set_config.WhichOneof("payload_variant")
            if name in _CONFIG_SECTIONS:
                getattr(st.config, name).CopyFrom(getattr(req.set_config, name))
                changed = reboot = True
        elif variant == "get_module_config_request":
            resp = admin_pb2.AdminMessage()
            index = req.get_module_config_request
            if index < len(_MODULE_SECTIONS):
                name = _MODULE_SECTIONS[index]
                src = getattr(st.module_config, name, None)
                if src is not None:
                    getattr(resp.get_module_config_response, name).CopyFrom(src)
                else:
                    getattr(resp.get_module_config_response, name).SetInParent()
        elif variant == "set_module_config":
            name = req.set_module_config.WhichOneof("payload_variant")
            if name and hasattr(st.module_config, name):
                getattr(st.module_config, name).CopyFrom(getattr(req.set_module_config, name))
                changed = reboot = True
        elif variant == "get_channel_request":
            index = req.get_channel_request - 1
            if 0 <= index < len(st.channels):
                resp = admin_pb2.AdminMessage()
                resp.get_channel_response.CopyFrom(st.channels[index])
            else:
                self._routing_reply(pkt.id, "BAD_REQUEST", st.node_num)
                return
        elif variant == "set_channel":
            ch = req.set_channel
            if 0 <= ch.index < len(st.channels):
                st.channels[ch.index].CopyFrom(ch)
                changed = True
        elif variant == "get_owner_request":
            resp = admin_pb2.AdminMessage()
            resp.get_owner_response.CopyFrom(st.user)
        elif variant == "set_owner":
            owner = req.set_owner
            if owner.long_name:
                st.user.long_name = owner.long_name
            if owner.short_name:
                st.user.short_name = owner.short_name
            st.user.is_licensed = owner.is_licensed
            if owner.HasField("is_unmessagable"):
                st.user.is_unmessagable = owner.is_unmessagable
            changed = True
        elif variant == "begin_edit_settings":
            self._edit_transaction = True
        elif variant == "commit_edit_settings":
            self._edit_transaction = False
            changed = reboot = True
        elif variant == "set_canned_message_module_messages":
            st.canned_messages = req.set_canned_message_module_messages
            changed = True
        elif variant == "get_canned_message_module_messages_request":
            resp = admin_pb2.AdminMessage(get_canned_message_module_messages_response=st.canned_messages)
        elif variant == "set_ringtone_message":
            st.ringtone = req.set_ringtone_message
            changed = True
        elif variant == "get_ringtone_request":
            resp = admin_pb2.AdminMessage(get_ringtone_response=st.ringtone)
        elif variant == "get_device_metadata_request":
            resp = admin_pb2.AdminMessage()
            resp.get_device_metadata_response.CopyFrom(st.metadata())
        elif variant == "set_fixed_position":
            st.position.CopyFrom(req.set_fixed_position)
            st.config.position.fixed_position = True
            changed = True
        elif variant == "remove_fixed_position":
            st.position.Clear()
            st.config.position.fixed_position = False
            changed = True
        elif variant == "set_time_only":
            self.has_clock = True
        elif variant in ("reboot_seconds", "shutdown_seconds"):
            secs = max(0, getattr(req, variant))
            self._call_later(secs / self.speed, lambda: self._reboot(2.0))
        elif variant == "nodedb_reset":
            st.nodes.clear()
            changed = True
        elif variant == "remove_by_nodenum":
            st.nodes.pop(req.remove_by_nodenum, None)
            changed = True
        elif variant in ("factory_reset_config", "factory_reset_device"):
            fresh = DeviceState(st.node_num, st.user.long_name, st.user.short_name, self._rng)
            fresh.reboot_count = st.reboot_count
            self.state = fresh
            changed = reboot = True
        else:
            log.info("admin %s is not simulated; acknowledged and ignored", variant)
        if resp is not None:
            resp.session_passkey = self._session_passkey()
            out = mesh_pb2.MeshPacket()
            setattr(out, "from", st.node_num)
            out.to = st.node_num
            out.id = self._new_id()
            out.channel = pkt.channel
            out.decoded.portnum = PORT_ADMIN
            out.decoded.payload = resp.SerializeToString()
            out.decoded.request_id = pkt.id
            self._send_fromradio(link, mesh_pb2.FromRadio(packet=out))
        elif pkt.want_ack:
            self._routing_reply(pkt.id, "NONE", st.node_num)
        if changed:
            self._save_state()
        if reboot and self.reboot_on_config and not self._edit_transaction:
            # Firmware saves and reboots a few seconds after a config change (or a commit).
            self._call_later(CONFIG_REBOOT_S / self.speed, lambda: self._reboot(2.0))

    def _session_passkey(self) -> bytes:
        if not self._passkey:
            self._passkey = bytes(self._rng.getrandbits(8) for _ in range(8))
        return self._passkey

    def _save_state(self) -> None:
        if self.state_path is None:
            return
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.state.to_json(), indent=1), encoding="utf-8")
            os.replace(tmp, self.state_path)
        except OSError as exc:
            log.warning("cannot save simulator state to %s: %s", self.state_path, exc)

    # ------------------------------------------------------------------ device → client
    def _deliver(self, pkt: mesh_pb2.MeshPacket) -> None:
        """Hand a packet from the mesh to the client, or keep it while no client is connected."""
        delivered = False
        for link in self._links():
            if link.configured:
                self._send_fromradio(link, mesh_pb2.FromRadio(packet=pkt))
                delivered = True
        if not delivered:
            if len(self._offline) == self._offline.maxlen:
                self.stats["offline_dropped"] += 1
                self.offline_dropped_ids.append(self._offline[0].id)
                log.warning("no client: offline queue full, oldest packet %d dropped", self._offline[0].id)
            self._offline.append(pkt)
            self.stats["offline_queued"] += 1

    # ------------------------------------------------------------------ scenario actions (loop thread)
    def _scenario_step(self, step: ScenarioStep) -> None:
        try:
            self._apply(step)
        finally:
            self._scenario_left -= 1
            self._check_scenario_done()

    def _check_scenario_done(self) -> None:
        if self._scenario_left <= 0 and self._pending_deliveries <= 0:
            self.scenario_done.set()

    def _apply(self, step: ScenarioStep) -> None:
        data = step.data
        action = step.action
        log.info("step %s%s", action, f" (scenario line {step.line})" if step.line else "")
        if action in ("text", "position", "detection"):
            self._inject_packet(data)
        elif action == "node":
            self._add_node(data["node"])
        elif action == "disconnect":
            self._disconnect(float(data["disconnect"]), refuse=bool(data.get("refuse", True)))
        elif action == "unplug":
            self._unplug(float(data["unplug"]))
        elif action == "reboot":
            self._reboot(2.0 if data["reboot"] is True else float(data["reboot"]))
        elif action == "garbage":
            with self._rng_lock:
                noise = garbage_bytes(int(data["garbage"]), self._rng)
            for link in self._links():
                self._write(link, noise)
            self.stats["garbage_bytes"] += len(noise)
        elif action == "drop_acks":
            self._drop_acks = int(data["drop_acks"])
            self._drop_nak = data.get("nak")
        elif action == "log":
            for link in self._links():
                self._write(link, str(data["log"]).encode("utf-8", errors="replace") + b"\r\n")
        elif action == "clock":
            self.has_clock = bool(data["clock"])

    def _add_node(self, node: dict[str, Any]) -> None:
        num = parse_node_num(node["id"])
        user = mesh_pb2.User(
            id=node_id(num),
            long_name=str(node.get("long_name", f"Meshtastic {node_id(num)[-4:]}")),
            short_name=str(node.get("short_name", node_id(num)[-4:])),
            hw_model=mesh_pb2.HardwareModel.Value(node.get("hw_model", "TBEAM")),
            role=config_pb2.Config.DeviceConfig.Role.Value(node.get("role", "CLIENT")),
        )
        info = self.state.nodes.get(num) or mesh_pb2.NodeInfo(num=num)
        info.user.CopyFrom(user)
        info.hops_away = int(node.get("hops", 0))
        info.snr = float(node.get("snr", 6.0))
        if self.has_clock:
            info.last_heard = int(time.time())
        self.state.nodes[num] = info
        if node.get("announce", True):
            self._schedule_copies(
                self._mesh_packet(num, BROADCAST_NUM, PORT_NODEINFO, user.SerializeToString(), {}), {}
            )

    def _mesh_packet(
        self, sender: int, to: int, port: int, payload: bytes, data: dict[str, Any]
    ) -> mesh_pb2.MeshPacket:
        pkt = mesh_pb2.MeshPacket()
        setattr(pkt, "from", sender)
        pkt.to = to
        pkt.channel = int(data.get("channel", 0))
        pkt.id = int(data["id"]) if "id" in data else self._new_id()
        pkt.decoded.portnum = port
        pkt.decoded.payload = payload
        pkt.want_ack = bool(data.get("want_ack", to != BROADCAST_NUM and port == PORT_TEXT))
        return pkt

    def _inject_packet(self, data: dict[str, Any]) -> None:
        st = self.state
        sender = parse_node_num(data["from"])
        to_value = data.get("to", "^all")
        to = (
            st.node_num
            if to_value in ("post", "^local")
            else BROADCAST_NUM
            if to_value == "^all"
            else parse_node_num(to_value)
        )
        if "text" in data:
            pkt = self._mesh_packet(sender, to, PORT_TEXT, data["text"].encode("utf-8"), data)
        elif "detection" in data:
            # DetectionSensorModule: "<name> detected", broadcast, never want_ack.
            text = f"{data['detection']} detected".encode()
            pkt = self._mesh_packet(sender, to, PORT_DETECTION, text, {**data, "want_ack": False})
        else:
            p = data["position"]
            pos = mesh_pb2.Position(latitude_i=round(p["lat"] * 1e7), longitude_i=round(p["lon"] * 1e7))
            if "alt" in p:
                pos.altitude = int(p["alt"])
            if "time" in p:
                pos.time = int(p["time"])
            pos.location_source = mesh_pb2.Position.LocSource.LOC_INTERNAL
            pos.precision_bits = 32
            pkt = self._mesh_packet(sender, to, PORT_POSITION, pos.SerializeToString(), {**data, "want_ack": False})
            info = st.nodes.get(sender)
            if info is not None:
                info.position.CopyFrom(pos)
        self._schedule_copies(pkt, data)

    def _paths(self, pkt: mesh_pb2.MeshPacket, data: dict[str, Any]) -> list[Hop]:
        sender = getattr(pkt, "from")
        if "paths" in data:
            hops = []
            for i, p in enumerate(data["paths"]):
                relay = parse_node_num(p["relay"]) & 0xFF if "relay" in p else (sender + 37 * i) & 0xFF
                hops.append(Hop(int(p.get("hops", 0)), float(p.get("snr", 6.0)), int(p.get("rssi", -90)), relay))
            return hops
        base_hops = int(data.get("hops", 0))
        copies = max(1, int(data.get("copies", 1)))
        snr = float(data.get("snr", 6.0))
        rssi = int(data.get("rssi", -90))
        first_relay = parse_node_num(data["relay"]) & 0xFF if "relay" in data else None
        out = []
        for k in range(copies):
            h = min(7, base_hops + k)
            if k == 0 and first_relay is not None:
                relay = first_relay
            elif h == 0:
                relay = sender & 0xFF
            else:
                relay = (sender * 31 + 97 * (k + 1) + h) & 0xFF
            out.append(Hop(h, snr - 3.5 * k, rssi - 6 * k, relay))
        return out

    def _schedule_copies(self, pkt: mesh_pb2.MeshPacket, data: dict[str, Any]) -> None:
        paths = self._paths(pkt, data)
        hop_start = int(data.get("hop_start", max(self.state.hop_limit(), *(p.hops for p in paths))))
        gap = float(data.get("copy_gap", 0.4)) / self.speed
        for k, path in enumerate(paths):
            copy = mesh_pb2.MeshPacket()
            copy.CopyFrom(pkt)
            copy.hop_start = hop_start
            copy.hop_limit = max(0, hop_start - path.hops)
            copy.rx_snr = path.snr
            copy.rx_rssi = path.rssi
            copy.relay_node = path.relay
            if "rx_time" in data:
                copy.rx_time = int(data["rx_time"])
            elif self.has_clock:
                copy.rx_time = int(time.time())
            if k == 0:
                self._deliver(copy)
            else:
                self._pending_deliveries += 1

                def later(c: mesh_pb2.MeshPacket = copy) -> None:
                    self._pending_deliveries -= 1
                    if self.has_clock and "rx_time" not in data:
                        c.rx_time = int(time.time())
                    self._deliver(c)
                    self._check_scenario_done()

                self._call_later(gap * k, later)

    # ------------------------------------------------------------------ disturbances
    def _disconnect(self, seconds: float, refuse: bool = True) -> None:
        down = seconds / self.speed
        if self._tcp is not None:
            self._drop_tcp_client(f"link down for {seconds:g} s (scenario)")
        if self._listener is not None and refuse and down > 0:
            self._close_listener()
            self.stats["tcp_refusing"] += 1
            self._call_later(down, self._reopen_listener)
        if self.pty_path is not None and self._pty is not None:
            self._unplug(seconds)

    def _reopen_listener(self) -> None:
        if self._listener is None and not self._stopping and self._listen_addr is not None:
            self._open_listener()
            log.info("tcp listening again on port %d", self._listen_port)

    def _unplug(self, seconds: float) -> None:
        if self.pty_path is None:
            self._disconnect(seconds)
            return
        log.info("pty %s unplugged for %g s", self.pty_path, seconds)
        self._close_pty()
        self.stats["unplugs"] += 1
        self._call_later(seconds / self.speed, self._replug)

    def _replug(self) -> None:
        if self._pty is None and not self._stopping:
            self._open_pty()

    def _reboot(self, downtime: float) -> None:
        """FromRadio.rebooted, then RAM is lost: handshake state, TX queue, packets kept for the client."""
        log.info("device reboots (down %g s)", downtime)
        for link in list(self._links()):
            self._send_fromradio(link, mesh_pb2.FromRadio(rebooted=True))
            link.configured = False
        lost = list(self._pending_acks.values())
        self._pending_acks.clear()
        self._inflight = 0
        self.state.reboot_count += 1
        for sent in lost:
            self._finish(sent, False)
        self._offline.clear()
        self._last_text_at = None
        self._drop_acks = 0
        self._edit_transaction = False
        self.stats["reboots"] += 1
        if self._tcp is not None:
            self._drop_tcp_client("device rebooting")
        if self._listener is not None and downtime > 0:
            self._close_listener()
            self._call_later(downtime / self.speed, self._reopen_listener)
        for link in self._links():
            # Over serial the client sees the boot log before it asks for the config again.
            self._write(
                link,
                b"\r\nINFO  | ??:??:?? 0 \r\nINFO  | Booted, wake cause 0 (boot count %d)\r\n"
                % self.state.reboot_count,
            )
        self._save_state()


# ----------------------------------------------------------------------------------------- CLI
def parse_listen(value: str) -> tuple[str, int]:
    return parse_host_port(value, "simulate.listen", default_host="0.0.0.0", port_zero=True)


def main_simulate(args: argparse.Namespace) -> int:
    """Run the simulated device until SIGTERM/SIGINT (or the scenario ends with --exit-after-scenario)."""
    steps = load_scenario(args.scenario) if args.scenario else []
    device = SimulatedDevice(
        listen=parse_listen(args.listen) if args.listen else None,
        pty_path=args.pty,
        node=args.node,
        long_name=args.long_name,
        short_name=args.short_name,
        speed=args.speed,
        record_path=args.record,
        state_path=args.state,
        has_clock=args.clock,
        offline_queue=args.offline_queue,
        reboot_on_config=not args.no_config_reboot,
        seed=args.seed,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        device.start()
        if device.port:
            # Tests and scripts started with port 0 read the real port from this line.
            print(f"listening on {parse_listen(args.listen)[0]}:{device.port}", flush=True)
        if device.pty_path:
            print(f"pty {device.pty_path}", flush=True)
        if steps:
            if args.wait_client:
                while not stop.is_set() and device.handshakes == 0:
                    stop.wait(0.1)
            device.play(steps)
        while not stop.is_set():
            if args.exit_after_scenario and (not steps or device.scenario_done.is_set()):
                stop.wait(args.linger)
                break
            stop.wait(0.2)
    finally:
        device.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("simulator stopped: %s", dict(device.stats))
    return 0
