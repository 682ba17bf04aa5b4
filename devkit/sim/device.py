"""The simulated device: what a Meshtastic radio does with its client's stream (docs/SIMULATOR.md).

It stands in for the post's gateway radio (there are no radios here) and is part of the product: the
demo, officer training and rehearsing a configuration run against it.  It speaks only the Meshtastic
wire protocol (``devkit/stream.py`` framing + the ``meshtastic.protobuf`` messages) and knows nothing of
the post daemon.

The parts: devkit/sim/loop.py (one loop thread owns every socket, the pty and all device state; public
methods called from other threads only post work to it), links.py (TCP and pty), scenario.py (the scenario
format), admin.py (config get/set, edit transactions, reboot), rf.py (virtual nodes and the paths their
packets take), mesh.py (several devices joined by radio links).  This module holds the public API, the
handshake, what happens to a packet the client sends (queue status, rate limit, ACK/NAK), and reboots.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from google.protobuf import json_format
from meshtastic.protobuf import localonly_pb2, mesh_pb2, portnums_pb2

from devkit.sim import rf
from devkit.sim.admin import handle_admin
from devkit.sim.links import Link, TcpLink, Transports, garbage_bytes
from devkit.sim.loop import EventLoop
from devkit.sim.scenario import ScenarioStep, parse_step
from devkit.sim.state import (
    BROADCAST_NUM,
    CONFIG_SECTIONS,
    MODULE_SECTIONS,
    NONCE_ONLY_CONFIG,
    NONCE_ONLY_NODES,
    PORT_ADMIN,
    PORT_NODEINFO,
    PORT_ROUTING,
    PORT_TEXT,
    TEXT_RATE_LIMIT_S,
    TX_QUEUE_LEN,
    DeviceState,
    SentPacket,
    node_id,
    parse_node_num,
)
from devkit.stream import MAX_PAYLOAD, Frame, encode_frame
from siaga.airtime import MESH_HEADER_BYTES, time_on_air_ms
from siaga.errors import ConfigError

log = logging.getLogger(__name__)


class Air(Protocol):
    """The radio beyond the device: what carries a client's packet to other simulated devices (a Mesh)."""

    def carries(self, pkt: mesh_pb2.MeshPacket) -> bool:
        """Whether ``pkt`` goes on air to other devices (a broadcast, or a DM to another device's node)."""
        ...

    def transmit(
        self, device: SimulatedDevice, pkt: mesh_pb2.MeshPacket, on_ack: Callable[[bool], None] | None
    ) -> None:
        """Send ``pkt`` (loop thread); ``on_ack(acked)`` once the firmware's ACK came or its retries ran out."""
        ...


class SimulatedDevice:
    """A Meshtastic device on TCP (``listen``) and/or a pty (``pty_path``), run in a background thread.

    ``speed`` compresses simulated time (airtime, ACK delays, the 2 s rate limit, scenario times,
    downtime of disturbances).  Use as a context manager or call :meth:`start` / :meth:`stop`.  ``loop``:
    run on an :class:`EventLoop` shared with other devices (a Mesh starts and stops it); by default the
    device has its own.
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
        loop: EventLoop | None = None,
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
        self.pty_path = Path(pty_path) if pty_path else None
        self.record_path = Path(record_path) if record_path else None

        self._stopping = False
        self.stats: collections.Counter[str] = collections.Counter()
        self._owns_loop = loop is None
        self._loop = loop if loop is not None else EventLoop(stats=self.stats)
        self._io = Transports(
            self._loop,
            listen=listen,
            pty_path=self.pty_path,
            stats=self.stats,
            on_bytes=self._on_bytes,
            is_stopping=lambda: self._stopping or self._loop.stopping,
        )
        self._record_file: Any = None
        #: The radio links to other simulated devices when this device is part of a Mesh (set by
        #: devkit/sim/mesh.py); None: the device hears only its virtual nodes.
        self.air: Air | None = None
        self._fromradio_id = itertools.count(1)

        self._offline: collections.deque[mesh_pb2.MeshPacket] = collections.deque(maxlen=max(1, offline_queue))
        self._inflight = 0
        self._pending_acks: dict[int, SentPacket] = {}
        self._passkey = b""
        self._last_text_at: float | None = None
        self._drop_acks = 0
        self._drop_nak: str | None = None
        self._edit_transaction = False
        self._pending_deliveries = 0
        self._scenario_left = 0

        self._cond = threading.Condition()
        self._sent: list[SentPacket] = []
        self.handshakes = 0
        self.scenario_done = threading.Event()
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
        return self._io.listen_port

    def start(self, timeout: float = 10.0) -> None:
        self._stopping = False
        if self._owns_loop:
            self._loop.start(self._open, self._close_all, timeout)
            return
        # A loop shared with other devices (a Mesh): open on it, and undo if that fails.
        errors: list[BaseException] = []

        def open_() -> None:
            try:
                self._open()
            except BaseException as exc:
                errors.append(exc)
                self._close_all()

        self._loop.post(open_)
        if errors:
            raise errors[0]

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        if self._owns_loop:
            self._loop.stop(timeout)
        elif self._loop.running:
            self._loop.post(self._close_all)

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
        return any(link is not None and link.configured for link in (self._io.tcp, self._io.pty))

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
        self._loop.post(fn, wait)

    def _call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self._loop.call_later(delay, fn)

    def _open(self) -> None:
        if self.record_path is not None:
            self._record_file = open(self.record_path, "a", encoding="utf-8")  # noqa: SIM115
        self._io.open()
        log.info(
            "simulated device %s (%s) up: tcp=%s pty=%s speed=%s",
            node_id(self.node_num),
            self.state.user.long_name,
            f"{self._io.listen_addr[0]}:{self._io.listen_port}" if self._io.listen_addr else "-",
            self.pty_path or "-",
            self.speed,
        )

    def _close_all(self) -> None:
        self._io.close_all()
        if self._record_file is not None:
            self._record_file.close()
            self._record_file = None
        self._save_state()

    def _links(self) -> Iterator[Link]:
        return self._io.links()

    def _write(self, link: Link, data: bytes) -> None:
        self._io.write(link, data)

    def _send_fromradio(self, link: Link, msg: mesh_pb2.FromRadio) -> None:
        msg.id = next(self._fromradio_id)
        payload = msg.SerializeToString()
        if len(payload) > MAX_PAYLOAD:
            log.error("FromRadio of %d bytes does not fit a frame; not sent", len(payload))
            return
        self._write(link, encode_frame(payload))

    # ------------------------------------------------------------------ client → device
    def _on_bytes(self, link: Link, data: bytes) -> None:
        for item in link.decoder.feed(data):
            if isinstance(item, Frame):
                self._on_frame(link, item.payload)
            else:
                # The library wakes a device with 32 × 0xC3 before every handshake: noise, not an attack.
                self.stats["noise_bytes"] += len(item.data)
                log.debug("%s: %d bytes outside frames", link.kind, len(item.data))

    def _on_frame(self, link: Link, payload: bytes) -> None:
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
            if isinstance(link, TcpLink):
                self._io.drop_tcp_client("client disconnect")
        else:
            log.debug("%s: ignoring ToRadio %s", link.kind, variant)

    def _handshake(self, link: Link, nonce: int) -> None:
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
            for section in CONFIG_SECTIONS:
                msg = mesh_pb2.FromRadio()
                getattr(msg.config, section).CopyFrom(getattr(st.config, section))
                send(link, msg)
            for section in MODULE_SECTIONS:
                if section not in localonly_pb2.LocalModuleConfig.DESCRIPTOR.fields_by_name:
                    continue
                msg = mesh_pb2.FromRadio()
                getattr(msg.moduleConfig, section).CopyFrom(getattr(st.module_config, section))
                send(link, msg)
        if not only_config:
            for info in st.nodes.values():
                send(link, mesh_pb2.FromRadio(node_info=info))
        send(link, mesh_pb2.FromRadio(config_complete_id=nonce))
        if not self._io.is_current(link):
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
        while self._offline and link.configured and self._io.is_current(link):
            self._send_fromradio(link, mesh_pb2.FromRadio(packet=self._offline.popleft()))

    def _free(self) -> int:
        return max(0, TX_QUEUE_LEN - self._inflight)

    def _send_queue_status(self, link: Link, packet_id: int) -> None:
        qs = mesh_pb2.QueueStatus(res=0, free=self._free(), maxlen=TX_QUEUE_LEN, mesh_packet_id=packet_id)
        self._send_fromradio(link, mesh_pb2.FromRadio(queueStatus=qs))

    def _on_client_packet(self, link: Link, pkt: mesh_pb2.MeshPacket) -> None:
        st = self.state
        self._send_queue_status(link, pkt.id)
        portnum = pkt.decoded.portnum if pkt.HasField("decoded") else portnums_pb2.PortNum.UNKNOWN_APP
        if pkt.to == st.node_num and portnum == PORT_ADMIN:
            handle_admin(self, link, pkt)
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
        if pkt.pki_encrypted and pkt.to != BROADCAST_NUM and pkt.to != st.node_num:
            known = st.nodes.get(pkt.to)
            if known is None or not known.user.public_key:
                # Firmware >= 2.7.19 (PR #9485) refuses a PKI DM to a node whose key it has not heard,
                # and tells the client whatever want_ack says.
                self.stats["pki_refused"] += 1
                self._routing_reply(pkt.id, "PKI_UNKNOWN_PUBKEY", st.node_num)
                self._finish(sent, "nak:PKI_UNKNOWN_PUBKEY")
                return
        air_link = self.air if self.air is not None and self.air.carries(pkt) else None
        if not pkt.want_ack:
            self._finish(sent, None)
            if air_link is not None:
                air_link.transmit(self, pkt, None)
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
        if air_link is not None and (pkt.to == BROADCAST_NUM or self._drop_acks > 0):
            air_link.transmit(self, pkt, None)
        if self._drop_acks > 0:
            self._drop_acks -= 1
            nak = self._drop_nak
            if nak:
                self._call_later(self.nak_delay_s / self.speed, lambda: complete(f"nak:{nak}", (nak, st.node_num)))
            else:
                self._call_later(self.nak_delay_s / self.speed, lambda: complete(False, None))
        elif air_link is not None and pkt.to != BROADCAST_NUM:
            # Another simulated device: the ACK comes from its radio over the link, or never.
            def acked(ok: bool) -> None:
                if ok:
                    complete(True, ("NONE", pkt.to))
                else:
                    complete("nak:MAX_RETRANSMIT", ("MAX_RETRANSMIT", st.node_num))

            air_link.transmit(self, pkt, acked)
            return
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
    def receive_from_air(self, pkt: mesh_pb2.MeshPacket) -> None:
        """A packet another simulated device transmitted reached this radio (loop thread; devkit/sim/mesh.py).

        A NodeInfo teaches the node DB the sender's name and public key, as firmware's NodeInfoModule does.
        """
        sender = getattr(pkt, "from")
        if pkt.decoded.portnum == PORT_NODEINFO:
            user = mesh_pb2.User()
            try:
                user.ParseFromString(pkt.decoded.payload)
            except Exception:
                user = None
            if user is not None:
                info = self.state.nodes.get(sender) or mesh_pb2.NodeInfo(num=sender)
                info.user.CopyFrom(user)
                info.snr = pkt.rx_snr
                info.hops_away = max(0, pkt.hop_start - pkt.hop_limit)
                if self.has_clock:
                    info.last_heard = int(time.time())
                self.state.nodes[sender] = info
        elif sender in self.state.nodes:
            self.state.nodes[sender].snr = pkt.rx_snr
        if self.has_clock and not pkt.rx_time:
            pkt.rx_time = int(time.time())
        self.stats["air_received"] += 1
        self._deliver(pkt)

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
            rf.inject_packet(self, data)
        elif action == "node":
            rf.add_node(self, data["node"])
        elif action == "disconnect":
            self._io.disconnect(float(data["disconnect"]), self.speed, refuse=bool(data.get("refuse", True)))
        elif action == "unplug":
            self._io.unplug(float(data["unplug"]), self.speed)
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
        self._io.drop_tcp_client("device rebooting")
        self._io.refuse_for(downtime / self.speed)
        for link in self._links():
            # Over serial the client sees the boot log before it asks for the config again.
            self._write(
                link,
                b"\r\nINFO  | ??:??:?? 0 \r\nINFO  | Booted, wake cause 0 (boot count %d)\r\n"
                % self.state.reboot_count,
            )
        self._save_state()
