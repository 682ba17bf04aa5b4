"""The RF model of one device's neighbourhood: virtual nodes (handsets) and how their packets reach it.

A virtual node is heard over ``hops`` relays; one packet may reach the device several times over
different paths (``copies``/``paths``), as posts observe in the field (firmware#8149/#8790).  What crosses
between several simulated devices is devkit/sim/mesh.py's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshtastic.protobuf import config_pb2, mesh_pb2

from devkit.sim.state import (
    BROADCAST_NUM,
    PORT_DETECTION,
    PORT_NODEINFO,
    PORT_POSITION,
    PORT_TEXT,
    node_id,
    parse_node_num,
)

if TYPE_CHECKING:
    from devkit.sim.device import SimulatedDevice


@dataclass(frozen=True)
class Hop:
    """How one copy of a packet reached the device."""

    hops: int
    snr: float
    rssi: int
    relay: int  # relay_node: the low byte of the last transmitter's node number


def add_node(dev: SimulatedDevice, node: dict[str, Any]) -> None:
    """A virtual node (a handset) joins the device's node DB and, unless ``announce`` is false, is heard."""
    num = parse_node_num(node["id"])
    user = mesh_pb2.User(
        id=node_id(num),
        long_name=str(node.get("long_name", f"Meshtastic {node_id(num)[-4:]}")),
        short_name=str(node.get("short_name", node_id(num)[-4:])),
        hw_model=mesh_pb2.HardwareModel.Value(node.get("hw_model", "TBEAM")),
        role=config_pb2.Config.DeviceConfig.Role.Value(node.get("role", "CLIENT")),
    )
    info = dev.state.nodes.get(num) or mesh_pb2.NodeInfo(num=num)
    info.user.CopyFrom(user)
    info.hops_away = int(node.get("hops", 0))
    info.snr = float(node.get("snr", 6.0))
    if dev.has_clock:
        info.last_heard = int(time.time())
    dev.state.nodes[num] = info
    if node.get("announce", True):
        schedule_copies(dev, mesh_packet(dev, num, BROADCAST_NUM, PORT_NODEINFO, user.SerializeToString(), {}), {})


def mesh_packet(
    dev: SimulatedDevice, sender: int, to: int, port: int, payload: bytes, data: dict[str, Any]
) -> mesh_pb2.MeshPacket:
    pkt = mesh_pb2.MeshPacket()
    setattr(pkt, "from", sender)
    pkt.to = to
    pkt.channel = int(data.get("channel", 0))
    pkt.id = int(data["id"]) if "id" in data else dev._new_id()
    pkt.decoded.portnum = port
    pkt.decoded.payload = payload
    pkt.want_ack = bool(data.get("want_ack", to != BROADCAST_NUM and port == PORT_TEXT))
    return pkt


def inject_packet(dev: SimulatedDevice, data: dict[str, Any]) -> None:
    """A text, position or detection from a virtual node, heard over the air (a scenario step)."""
    st = dev.state
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
        pkt = mesh_packet(dev, sender, to, PORT_TEXT, data["text"].encode("utf-8"), data)
    elif "detection" in data:
        # DetectionSensorModule: "<name> detected", broadcast, never want_ack.
        text = f"{data['detection']} detected".encode()
        pkt = mesh_packet(dev, sender, to, PORT_DETECTION, text, {**data, "want_ack": False})
    else:
        p = data["position"]
        pos = mesh_pb2.Position(latitude_i=round(p["lat"] * 1e7), longitude_i=round(p["lon"] * 1e7))
        if "alt" in p:
            pos.altitude = int(p["alt"])
        if "time" in p:
            pos.time = int(p["time"])
        pos.location_source = mesh_pb2.Position.LocSource.LOC_INTERNAL
        pos.precision_bits = 32
        pkt = mesh_packet(dev, sender, to, PORT_POSITION, pos.SerializeToString(), {**data, "want_ack": False})
        info = st.nodes.get(sender)
        if info is not None:
            info.position.CopyFrom(pos)
    schedule_copies(dev, pkt, data)


def copy_paths(pkt: mesh_pb2.MeshPacket, data: dict[str, Any]) -> list[Hop]:
    """The copies of one packet the device hears: explicit ``paths``, or ``copies`` each one hop longer."""
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


def schedule_copies(dev: SimulatedDevice, pkt: mesh_pb2.MeshPacket, data: dict[str, Any]) -> None:
    """Hand the first copy to the client now and the others ``copy_gap`` apart."""
    paths = copy_paths(pkt, data)
    hop_start = int(data.get("hop_start", max(dev.state.hop_limit(), *(p.hops for p in paths))))
    gap = float(data.get("copy_gap", 0.4)) / dev.speed
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
        elif dev.has_clock:
            copy.rx_time = int(time.time())
        if k == 0:
            dev._deliver(copy)
        else:
            dev._pending_deliveries += 1

            def later(c: mesh_pb2.MeshPacket = copy) -> None:
                dev._pending_deliveries -= 1
                if dev.has_clock and "rx_time" not in data:
                    c.rx_time = int(time.time())
                dev._deliver(c)
                dev._check_scenario_done()

            dev._call_later(gap * k, later)
