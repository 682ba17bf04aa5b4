"""A simulated mesh: several simulated devices joined by radio links, on one machine (docs/SIMULATOR.md).

Each device stays a real stream endpoint (a ``siaga run`` or the ``meshtastic`` library connects to it);
what its client sends into the mesh — a broadcast, or a DM to another device's node number — goes on air
to its linked neighbours, each link with its own loss probability and SNR, and reaches the neighbour's
client as a received packet, exactly as a real radio hands it over.  What the model keeps of RF:

* **Time on air** with the Semtech formula (siaga/airtime.py, LONG_FAST): a packet arrives when its
  transmission ends; ``speed`` compresses it like the rest of the simulator.
* **One channel per connected component** of the links that are up: a device waits until the channel is
  free before it transmits (firmware listens before talking), so a busy neighbourhood queues.
* **Loss** drawn per receiver and per transmission from one seeded RNG on one loop thread: the same seed
  and the same client traffic give the same losses.
* **Firmware ACKs**: a want_ack DM is ACKed by the destination's radio over the reverse link (which may be
  lost too); the sender retransmits up to 3 times, then NAKs MAX_RETRANSMIT.  A duplicate is not handed
  to the client again but is ACKed again.
* **Flooding**: a packet with hop_limit > 0 is rebroadcast by every device that hears it first, with
  hop_limit − 1 (every role, every port — rebroadcast_mode ALL).  Hop_limit 0 reaches direct neighbours
  only (the custody protocol's transport, docs/RELAY.md).
* **NodeInfo**: every device broadcasts its NodeInfo (names and a public key) at start and when a link
  is made, so neighbours know each other's keys; a PKI DM to a node whose key a device has not heard is
  refused (PKI_UNKNOWN_PUBKEY, devkit/sim/device.py).
"""

from __future__ import annotations

import functools
import logging
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshtastic.protobuf import mesh_pb2

from devkit.sim.device import SimulatedDevice
from devkit.sim.loop import EventLoop
from devkit.sim.state import BROADCAST_NUM, PORT_NODEINFO, node_id
from siaga.airtime import LONG_FAST, Modem, frame_bytes, routing_ack_data, time_on_air_ms
from siaga.errors import ConfigError

log = logging.getLogger(__name__)

#: Transmissions of a want_ack packet before the firmware gives up (ReliableRouter: 3 tries).
WANT_ACK_TRIES = 3


def on_air_data(pkt: mesh_pb2.MeshPacket) -> bytes:
    """The encoded ``Data`` the firmware airs for a client's packet (it sets ``bitfield`` on what it originates)."""
    data = mesh_pb2.Data()
    data.CopyFrom(pkt.decoded)
    if not data.HasField("bitfield"):
        data.bitfield = 0
    return data.SerializeToString()


def packet_airtime_s(pkt: mesh_pb2.MeshPacket, modem: Modem = LONG_FAST) -> tuple[int, float]:
    """Bytes on air and time on air (simulated seconds) of one transmission of ``pkt``."""
    size = frame_bytes(on_air_data(pkt), pki=pkt.pki_encrypted)
    return size, time_on_air_ms(size, modem) / 1000.0


@dataclass
class RadioStats:
    """What went on air (``packets``, ``bytes``, ``airtime_s`` in simulated seconds) and what was lost.

    For a device: its transmissions (a broadcast counts once), ``received`` packets handed to it,
    ``lost`` receptions that did not happen.  For one direction of a link: every transmission over it.
    """

    packets: int = 0
    bytes: int = 0
    airtime_s: float = 0.0
    received: int = 0
    lost: int = 0
    duplicates: int = 0

    def count_tx(self, size: int, air_s: float) -> None:
        self.packets += 1
        self.bytes += size
        self.airtime_s += air_s


@dataclass
class RadioLink:
    """A radio link between two devices (symmetric loss and SNR); ``up`` is False while it is cut."""

    a: str
    b: str
    loss: float
    snr: float
    rssi: int
    up: bool = True
    #: bumped by every cut/heal so that a pending heal of an older cut does nothing
    generation: int = 0
    #: per direction, keyed by the sending device's name
    stats: dict[str, RadioStats] = field(default_factory=dict)

    def other(self, name: str) -> str:
        return self.b if name == self.a else self.a


class Mesh:
    """Several :class:`SimulatedDevice` joined by radio links; all of them run on one event loop.

    Methods may be called from any thread; each returns once the mesh has applied it.  ``speed`` compresses
    time like ``SimulatedDevice(speed=...)``; ``seed`` makes losses, packet ids and keys repeatable.
    """

    def __init__(self, *, seed: int | None = None, speed: float = 1.0, modem: Modem = LONG_FAST) -> None:
        if speed <= 0:
            raise ConfigError("mesh.speed", speed, "must be > 0")
        self.seed = seed
        self.speed = float(speed)
        self.modem = modem
        self._rng = random.Random(seed)
        self._loop = EventLoop(name="siaga-mesh")
        self._devices: dict[str, SimulatedDevice] = {}
        self._by_num: dict[int, str] = {}
        self._links: dict[frozenset[str], RadioLink] = {}
        self._stats: dict[str, RadioStats] = {}
        self._seen: dict[str, set[tuple[int, int]]] = {}
        #: per device: when (monotonic) the channel it shares with its component is free again
        self._busy_until: dict[str, float] = {}
        self._pending_acks: dict[tuple[str, int], Callable[[bool], None]] = {}
        #: per device: transmissions toward it still on air (scheduled to arrive, not arrived yet)
        self._on_air_to: dict[str, int] = {}
        self.started = False

    # ------------------------------------------------------------------ set-up
    def add_device(
        self,
        name: str,
        *,
        listen: tuple[str, int] | None = ("127.0.0.1", 0),
        pty_path: str | Path | None = None,
        node: str | int | None = None,
        long_name: str | None = None,
        short_name: str | None = None,
        **options: Any,
    ) -> SimulatedDevice:
        """A device named ``name`` (a post or relay id); its node number is derived from the name unless given.

        ``options`` go to :class:`SimulatedDevice` (``record_path``, ``has_clock``, ``rate_limit_s``, ...).
        """
        if not name or name in self._devices:
            raise ConfigError("mesh.device", name, "must be a new, non-empty name")
        if node is None:
            # Stable across runs, so a rehearsal's node ids do not change with the seed.
            node = (zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF) | 0x01000000
        seed = None if self.seed is None else self.seed * 1009 + len(self._devices) + 1
        dev = SimulatedDevice(
            listen=listen,
            pty_path=pty_path,
            node=node,
            long_name=long_name or name,
            short_name=short_name or name[:4].upper(),
            speed=self.speed,
            seed=seed,
            loop=self._loop,
            **options,
        )
        if dev.node_num in self._by_num:
            raise ConfigError(
                "mesh.device", name, f"node {node_id(dev.node_num)} is taken by {self._by_num[dev.node_num]}"
            )
        # Firmware 2.5+ has a Curve25519 key pair; only the public half matters to the mesh.
        if not dev.state.user.public_key:
            dev.state.user.public_key = self._rng.randbytes(32)
        dev.air = _DeviceAir(self, name)
        self._devices[name] = dev
        self._by_num[dev.node_num] = name
        self._stats[name] = RadioStats()
        self._seen[name] = set()
        if self.started:
            dev.start()
            self.announce(name)
        return dev

    def device(self, name: str) -> SimulatedDevice:
        return self._devices[name]

    @property
    def devices(self) -> dict[str, SimulatedDevice]:
        return dict(self._devices)

    def link(self, a: str, b: str, *, loss: float = 0.0, snr: float = 6.0, rssi: int = -95) -> None:
        """Join ``a`` and ``b`` (or change an existing link); a new link makes both announce their NodeInfo."""
        for name in (a, b):
            if name not in self._devices:
                raise ConfigError("mesh.link", name, "is not a device of this mesh")
        if a == b:
            raise ConfigError("mesh.link", a, "cannot be linked to itself")
        if not 0.0 <= loss <= 1.0:
            raise ConfigError("mesh.link.loss", loss, "must be between 0 and 1")

        def apply() -> None:
            key = frozenset((a, b))
            existing = self._links.get(key)
            if existing is not None:
                existing.loss, existing.snr, existing.rssi = loss, snr, rssi
                return
            self._links[key] = RadioLink(a, b, loss, snr, rssi, stats={a: RadioStats(), b: RadioStats()})
            if self.started:
                self._announce(a)
                self._announce(b)

        self._loop.post(apply)

    def set_loss(self, a: str, b: str, loss: float) -> None:
        if not 0.0 <= loss <= 1.0:
            raise ConfigError("mesh.link.loss", loss, "must be between 0 and 1")
        link = self._link(a, b)
        self._loop.post(lambda: setattr(link, "loss", loss))

    def cut(self, a: str, b: str, seconds: float | None = None) -> None:
        """Take the link down now; up again after ``seconds`` (simulated, ÷ speed) or at :meth:`heal`."""
        link = self._link(a, b)

        def apply() -> None:
            link.up = False
            link.generation += 1
            generation = link.generation
            log.info("mesh: link %s-%s cut%s", a, b, f" for {seconds:g} s" if seconds is not None else "")
            if seconds is not None:
                self._loop.call_later(
                    seconds / self.speed, lambda: self._heal(link) if link.generation == generation else None
                )

        self._loop.post(apply)

    def heal(self, a: str, b: str) -> None:
        link = self._link(a, b)
        self._loop.post(lambda: self._heal(link))

    def _heal(self, link: RadioLink) -> None:
        if link.up:
            return
        link.up = True
        link.generation += 1
        log.info("mesh: link %s-%s up again", link.a, link.b)
        # Keys are kept across an outage; announce only where one is still missing (a lost exchange).
        for name in (link.a, link.b):
            other = self._devices[link.other(name)]
            known = other.state.nodes.get(self._devices[name].node_num)
            if self.started and (known is None or not known.user.public_key):
                self._announce(name)

    def _link(self, a: str, b: str) -> RadioLink:
        try:
            return self._links[frozenset((a, b))]
        except KeyError:
            raise ConfigError("mesh.link", f"{a}-{b}", "no such link") from None

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 10.0) -> None:
        self._loop.start(timeout=timeout)
        started: list[SimulatedDevice] = []
        try:
            for dev in self._devices.values():
                dev.start(timeout)
                started.append(dev)
        except BaseException:
            for dev in started:
                dev.stop()
            self._loop.stop()
            raise
        self.started = True

        def announce_all() -> None:
            for name in sorted(self._devices):
                self._announce(name)

        self._loop.post(announce_all)

    def stop(self, timeout: float = 10.0) -> None:
        for dev in self._devices.values():
            dev.stop(timeout)
        self._loop.stop(timeout)
        self.started = False

    def __enter__(self) -> Mesh:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def announce(self, name: str) -> None:
        """Device ``name`` broadcasts its NodeInfo now (as firmware does at boot and every few hours)."""
        if name not in self._devices:
            raise ConfigError("mesh.device", name, "is not a device of this mesh")
        self._loop.post(lambda: self._announce(name))

    # ------------------------------------------------------------------ queries (any thread)
    def knows(self, name: str, other: str) -> bool:
        """Whether device ``name`` has heard ``other``'s NodeInfo with its public key (PKI DMs to it work)."""
        num = self._devices[other].node_num
        out: list[bool] = []

        def look() -> None:
            info = self._devices[name].state.nodes.get(num)
            out.append(info is not None and bool(info.user.public_key))

        self._loop.post(look)
        return out[0]

    def wait_for_neighbours(self, timeout: float = 10.0) -> None:
        """Block until every device knows every neighbour over a link that is up (NodeInfo exchanged)."""
        deadline = time.monotonic() + timeout
        while True:
            ups = [lk for lk in list(self._links.values()) if lk.up]
            pairs = [(lk.a, lk.b) for lk in ups] + [(lk.b, lk.a) for lk in ups]
            missing = [(a, b) for a, b in pairs if not self.knows(a, b)]
            if not missing:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"NodeInfo not exchanged: {missing}")
            time.sleep(0.02)

    # ------------------------------------------------------------------ stats (any thread)
    def stats(self, name: str) -> RadioStats:
        """A copy of device ``name``'s radio statistics."""
        out: list[RadioStats] = []
        self._loop.post(lambda: out.append(RadioStats(**vars(self._stats[name]))))
        return out[0]

    def on_air_to(self, name: str) -> int:
        """Transmissions toward device ``name`` still on air.  A test that saw a packet leave its sender
        (the sender's ``sent`` list) and then reads 0 here knows the packet has reached ``name``'s radio,
        or was lost: the arrival is settled, whatever the receiving client does with it."""
        if name not in self._devices:
            raise ConfigError("mesh.device", name, "is not a device of this mesh")
        out: list[int] = []
        self._loop.post(lambda: out.append(self._on_air_to.get(name, 0)))
        return out[0]

    def link_stats(self, sender: str, receiver: str) -> RadioStats:
        """A copy of the statistics of the link's direction ``sender`` → ``receiver``."""
        link = self._link(sender, receiver)
        out: list[RadioStats] = []
        self._loop.post(lambda: out.append(RadioStats(**vars(link.stats[sender]))))
        return out[0]

    # ------------------------------------------------------------------ on air (loop thread)
    def _neighbours(self, name: str) -> list[tuple[str, RadioLink]]:
        # Sorted, so the order of loss draws depends on the topology only.
        return sorted(
            ((lk.other(name), lk) for lk in self._links.values() if name in (lk.a, lk.b) and lk.up),
            key=lambda pair: pair[0],
        )

    def _component(self, name: str) -> set[str]:
        seen = {name}
        todo = [name]
        while todo:
            for other, _ in self._neighbours(todo.pop()):
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
        return seen

    def _take_channel(self, name: str, air_s: float) -> float:
        """Reserve the component's channel for ``air_s`` (simulated); the real delay until the transmission ends."""
        now = time.monotonic()
        component = self._component(name)
        start = max([now, *(self._busy_until.get(n, 0.0) for n in component)])
        end = start + air_s / self.speed
        for n in component:
            self._busy_until[n] = end
        return end - now

    def _announce(self, name: str) -> None:
        dev = self._devices[name]
        pkt = mesh_pb2.MeshPacket()
        setattr(pkt, "from", dev.node_num)
        pkt.to = BROADCAST_NUM
        pkt.id = self._rng.randint(1, 0xFFFFFFFF)
        pkt.decoded.portnum = PORT_NODEINFO
        pkt.decoded.payload = dev.state.user.SerializeToString()
        pkt.hop_limit = 0
        self._send(name, pkt)

    def _send(self, name: str, pkt: mesh_pb2.MeshPacket, on_ack: Callable[[bool], None] | None = None) -> None:
        """A packet originated by device ``name`` (its client's, or its own NodeInfo) goes on air."""
        sent = mesh_pb2.MeshPacket()
        sent.CopyFrom(pkt)
        sent.hop_start = pkt.hop_limit
        if not getattr(sent, "from"):
            # Firmware fills in its own node number; the client leaves it 0.
            setattr(sent, "from", self._devices[name].node_num)
        self._seen[name].add((getattr(sent, "from"), sent.id))
        if on_ack is None or sent.to == BROADCAST_NUM:
            self._transmit(name, sent)
            return
        key = (name, sent.id)
        dev = self._devices[name]
        # Firmware waits at least the packet's and its ACK's airtime twice over before it retransmits
        # (RadioInterface::getRetransmissionMsec); the device's nak_delay_s spreads over the tries.
        ack_air_s = time_on_air_ms(frame_bytes(routing_ack_data()), self.modem) / 1000.0
        floor_s = 2 * (packet_airtime_s(sent, self.modem)[1] + ack_air_s) + 0.5
        retry_s = max(dev.nak_delay_s / WANT_ACK_TRIES, floor_s) / self.speed

        def attempt(k: int) -> None:
            if key not in self._pending_acks:
                return  # ACKed meanwhile
            if k == WANT_ACK_TRIES:
                self._pending_acks.pop(key)(False)
                return
            self._transmit(name, sent)
            self._loop.call_later(retry_s, lambda: attempt(k + 1))

        self._pending_acks[key] = on_ack
        attempt(0)

    def _transmit(self, name: str, pkt: mesh_pb2.MeshPacket) -> None:
        """One transmission by ``name`` of ``pkt`` (its own or one it relays): every linked neighbour may hear it."""
        size, air_s = packet_airtime_s(pkt, self.modem)
        delay = self._take_channel(name, air_s)
        self._stats[name].count_tx(size, air_s)
        transmitter = self._devices[name].node_num
        for other, link in self._neighbours(name):
            link.stats[name].count_tx(size, air_s)
            if self._rng.random() < link.loss:
                link.stats[name].lost += 1
                self._stats[other].lost += 1
                continue
            self._on_air_to[other] = self._on_air_to.get(other, 0) + 1
            self._loop.call_later(delay, functools.partial(self._arrive, other, link, pkt, transmitter))

    def _arrive(self, name: str, link: RadioLink, pkt: mesh_pb2.MeshPacket, transmitter: int) -> None:
        self._on_air_to[name] -= 1
        if not link.up:  # cut while the packet was on air
            link.stats[link.other(name)].lost += 1
            self._stats[name].lost += 1
            return
        dev = self._devices[name]
        sender = getattr(pkt, "from")
        for_me = pkt.to == dev.node_num
        if for_me and pkt.want_ack:
            # Firmware ACKs every copy of a want_ack DM addressed to it, duplicates included.
            self._ack(name, link, pkt)
        if (sender, pkt.id) in self._seen[name]:
            self._stats[name].duplicates += 1
            return
        self._seen[name].add((sender, pkt.id))
        self._stats[name].received += 1
        heard = mesh_pb2.MeshPacket()
        heard.CopyFrom(pkt)
        heard.rx_snr = link.snr
        heard.rx_rssi = link.rssi
        heard.relay_node = transmitter & 0xFF
        if for_me or pkt.to == BROADCAST_NUM:
            dev.receive_from_air(heard)
        if pkt.hop_limit > 0 and not for_me:
            relayed = mesh_pb2.MeshPacket()
            relayed.CopyFrom(pkt)
            relayed.hop_limit = pkt.hop_limit - 1
            self._transmit(name, relayed)

    def _ack(self, name: str, link: RadioLink, pkt: mesh_pb2.MeshPacket) -> None:
        """The destination's radio ACKs over the link the packet came by; the ACK may be lost too."""
        size = frame_bytes(routing_ack_data())
        air_s = time_on_air_ms(size, self.modem) / 1000.0
        delay = self._take_channel(name, air_s)
        self._stats[name].count_tx(size, air_s)
        link.stats[name].count_tx(size, air_s)
        back = link.other(name)
        if self._rng.random() < link.loss:
            link.stats[name].lost += 1
            self._stats[back].lost += 1
            return
        origin = self._by_num.get(getattr(pkt, "from"))

        def arrive() -> None:
            if not link.up:
                link.stats[name].lost += 1
                return
            # Over more than one hop the ACK is handed to the originator once its last hop made it.
            callback = self._pending_acks.pop((origin, pkt.id), None) if origin is not None else None
            if callback is not None:
                callback(True)

        self._loop.call_later(delay, arrive)


class _DeviceAir:
    """What a device in a Mesh sees of it (the ``Air`` protocol of devkit/sim/device.py)."""

    def __init__(self, mesh: Mesh, name: str) -> None:
        self._mesh = mesh
        self._name = name

    def carries(self, pkt: mesh_pb2.MeshPacket) -> bool:
        return pkt.to == BROADCAST_NUM or (pkt.to in self._mesh._by_num and self._mesh._by_num[pkt.to] != self._name)

    def transmit(
        self, device: SimulatedDevice, pkt: mesh_pb2.MeshPacket, on_ack: Callable[[bool], None] | None
    ) -> None:
        self._mesh._send(self._name, pkt, on_ack)


__all__ = ["Mesh", "RadioLink", "RadioStats", "on_air_data", "packet_airtime_s"]
