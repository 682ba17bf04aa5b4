"""The simulated mesh (devkit/sim/mesh.py): several simulated devices joined by radio links, each with the
REAL meshtastic library as its client over TCP, as a post daemon would be.

Faults land by construction: a link is cut or set to loss 1.0 before the packet is sent, and what did not
arrive is judged after what did (a later packet on the same path, or the sender's NAK) has arrived.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import meshtastic.tcp_interface
import pytest
from meshtastic.protobuf import mesh_pb2
from pubsub import pub

from devkit.sim.mesh import Mesh, packet_airtime_s
from siaga.airtime import frame_bytes, routing_ack_data, time_on_air_ms

PORT = 300  # the custody protocol's private port (docs/RELAY.md)
SPEED = 20.0


class Inbox:
    """Every packet the library publishes under meshtastic.receive, with the interface that got it."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, dict[str, Any]]] = []
        self.cond = threading.Condition()
        pub.subscribe(self.on_receive, "meshtastic.receive")

    def close(self) -> None:
        pub.unsubscribe(self.on_receive, "meshtastic.receive")

    def on_receive(self, packet: dict[str, Any], interface: Any) -> None:
        with self.cond:
            self.items.append((interface, packet))
            self.cond.notify_all()

    def of(self, iface: Any, pred: Callable[[dict[str, Any]], bool] = lambda p: True) -> list[dict[str, Any]]:
        with self.cond:
            return [p for i, p in self.items if i is iface and pred(p)]

    def wait(self, iface: Any, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [p for i, p in self.items if i is iface and pred(p)]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no matching packet; got {[p.get('decoded') for i, p in self.items if i is iface]}"
                    )
                self.cond.wait(left)


def data_on_port(payload: bytes) -> Callable[[dict[str, Any]], bool]:
    return lambda p: p.get("decoded", {}).get("portnum") == PORT and p["decoded"]["payload"] == payload


def routing_for(packet_id: int) -> Callable[[dict[str, Any]], bool]:
    return lambda p: p.get("decoded", {}).get("requestId") == packet_id and "routing" in p["decoded"]


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = Inbox()
    yield box
    box.close()


@pytest.fixture
def chain() -> Iterator[tuple[Mesh, dict[str, Any]]]:
    """oebubun — bukit-01 — kefa: three devices in a chain, a real TCPInterface on each."""
    mesh = Mesh(seed=7, speed=SPEED)
    for name in ("oebubun", "bukit-01", "kefa"):
        mesh.add_device(name, rate_limit_s=0.0, nak_delay_s=3.0)
    mesh.link("oebubun", "bukit-01", snr=-5.0)
    mesh.link("bukit-01", "kefa", snr=4.0)
    ifaces: dict[str, Any] = {}
    with mesh:
        mesh.wait_for_neighbours()
        try:
            for name, dev in mesh.devices.items():
                ifaces[name] = meshtastic.tcp_interface.TCPInterface("127.0.0.1", portNumber=dev.port, timeout=20)
            yield mesh, ifaces
        finally:
            for iface in ifaces.values():
                iface.close()


def num(mesh: Mesh, name: str) -> int:
    return mesh.device(name).node_num


def test_dm_on_port_300_reaches_the_linked_neighbour_only(chain: tuple[Mesh, dict[str, Any]], inbox: Inbox) -> None:
    mesh, ifaces = chain
    a, b, c = ifaces["oebubun"], ifaces["bukit-01"], ifaces["kefa"]
    payload = b"\x01\x01custody report"
    sent = a.sendData(payload, destinationId=num(mesh, "bukit-01"), portNum=PORT, wantAck=False, hopLimit=0)
    got = inbox.wait(b, data_on_port(payload))
    assert got["from"] == num(mesh, "oebubun") and got["to"] == num(mesh, "bukit-01") and got["id"] == sent.id
    assert got["fromId"] == mesh.device("oebubun").state.user.id  # B's client knows A from its NodeInfo
    assert got["rxSnr"] == -5.0
    assert got.get("hopStart", 0) == 0 and got.get("hopLimit", 0) == 0  # zero-hop, as sent
    # kefa is not linked to oebubun: a later broadcast of bukit-01 reaches kefa, the DM never did.
    marker = b"after"
    b.sendData(marker, portNum=PORT, hopLimit=0)
    inbox.wait(c, data_on_port(marker))
    assert inbox.of(c, data_on_port(payload)) == []
    # the neighbour's node DB, as its client sees it after a handshake: name and public key
    node = b.nodes[mesh.device("oebubun").state.user.id]
    assert node["user"]["longName"] == "oebubun" and node["user"]["publicKey"]


def test_dm_with_want_ack_is_acked_by_the_neighbours_radio(chain: tuple[Mesh, dict[str, Any]], inbox: Inbox) -> None:
    mesh, ifaces = chain
    sent = ifaces["oebubun"].sendData(b"ack me", destinationId=num(mesh, "bukit-01"), portNum=PORT,
                                      wantAck=True, hopLimit=0)  # fmt: skip
    ack = inbox.wait(ifaces["oebubun"], routing_for(sent.id))
    assert ack["from"] == num(mesh, "bukit-01")
    assert ack["decoded"]["routing"].get("errorReason", "NONE") == "NONE"
    inbox.wait(ifaces["bukit-01"], data_on_port(b"ack me"))
    assert mesh.device("oebubun").wait_for_sent(lambda s: s.id == sent.id).acked is True


def test_broadcast_reaches_every_linked_neighbour(chain: tuple[Mesh, dict[str, Any]], inbox: Inbox) -> None:
    mesh, ifaces = chain
    sent = ifaces["bukit-01"].sendData(b"beacon", portNum=PORT, hopLimit=0)
    for name in ("oebubun", "kefa"):
        got = inbox.wait(ifaces[name], data_on_port(b"beacon"))
        assert got["from"] == num(mesh, "bukit-01") and got["id"] == sent.id
        assert got["to"] == 0xFFFFFFFF
    # hop_limit 1: oebubun's broadcast is rebroadcast by bukit-01 and so reaches kefa, one hop further
    flood = ifaces["oebubun"].sendData(b"flood", portNum=PORT, hopLimit=1)
    far = inbox.wait(ifaces["kefa"], data_on_port(b"flood"))
    assert far["id"] == flood.id and far["from"] == num(mesh, "oebubun")
    assert far["hopStart"] == 1 and far.get("hopLimit", 0) == 0
    assert far["relayNode"] == num(mesh, "bukit-01") & 0xFF
    near = inbox.wait(ifaces["bukit-01"], data_on_port(b"flood"))
    assert near["hopStart"] == 1 and near["hopLimit"] == 1


def test_loss_one_drops_everything_and_the_sender_naks(chain: tuple[Mesh, dict[str, Any]], inbox: Inbox) -> None:
    mesh, ifaces = chain
    mesh.set_loss("oebubun", "bukit-01", 1.0)
    before = mesh.link_stats("oebubun", "bukit-01")
    sent = ifaces["oebubun"].sendData(b"lost", destinationId=num(mesh, "bukit-01"), portNum=PORT,
                                      wantAck=True, hopLimit=0)  # fmt: skip
    nak = inbox.wait(ifaces["oebubun"], routing_for(sent.id))
    assert nak["decoded"]["routing"]["errorReason"] == "MAX_RETRANSMIT"
    after = mesh.link_stats("oebubun", "bukit-01")
    assert after.packets - before.packets == 3 and after.lost - before.lost == 3  # the firmware's 3 tries
    # A packet from kefa that arrived at bukit-01 afterwards proves bukit-01's client was listening.
    ifaces["kefa"].sendData(b"from kefa", destinationId=num(mesh, "bukit-01"), portNum=PORT, hopLimit=0)
    inbox.wait(ifaces["bukit-01"], data_on_port(b"from kefa"))
    assert inbox.of(ifaces["bukit-01"], data_on_port(b"lost")) == []


def test_cut_then_heal(chain: tuple[Mesh, dict[str, Any]], inbox: Inbox) -> None:
    mesh, ifaces = chain
    a, b, c = ifaces["oebubun"], ifaces["bukit-01"], ifaces["kefa"]
    mesh.cut("oebubun", "bukit-01")
    during = a.sendData(b"during", destinationId=num(mesh, "bukit-01"), portNum=PORT, wantAck=True, hopLimit=0)
    assert inbox.wait(a, routing_for(during.id))["decoded"]["routing"]["errorReason"] == "MAX_RETRANSMIT"
    c.sendData(b"kefa ok", destinationId=num(mesh, "bukit-01"), portNum=PORT, hopLimit=0)
    inbox.wait(b, data_on_port(b"kefa ok"))
    assert inbox.of(b, data_on_port(b"during")) == []
    mesh.heal("oebubun", "bukit-01")
    a.sendData(b"healed", destinationId=num(mesh, "bukit-01"), portNum=PORT, hopLimit=0)
    inbox.wait(b, data_on_port(b"healed"))
    # a timed cut heals by itself
    mesh.cut("oebubun", "bukit-01", seconds=2.0)  # 0.1 s real at SPEED 20
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sent = a.sendData(b"retry", destinationId=num(mesh, "bukit-01"), portNum=PORT, wantAck=True, hopLimit=0)
        if inbox.wait(a, routing_for(sent.id))["decoded"]["routing"].get("errorReason", "NONE") == "NONE":
            break
    else:
        raise AssertionError("the timed cut never healed")


def test_pki_dm_to_an_unknown_key_is_refused(chain: tuple[Mesh, dict[str, Any]], inbox: Inbox) -> None:
    mesh, ifaces = chain
    a = ifaces["oebubun"]
    assert not mesh.knows("oebubun", "kefa") and mesh.knows("oebubun", "bukit-01")
    refused = a.sendData(b"secret", destinationId=num(mesh, "kefa"), portNum=PORT, hopLimit=0, pkiEncrypted=True)
    err = inbox.wait(a, routing_for(refused.id))
    assert err["decoded"]["routing"]["errorReason"] == "PKI_UNKNOWN_PUBKEY" and err["from"] == num(mesh, "oebubun")
    assert mesh.device("oebubun").wait_for_sent(lambda s: s.id == refused.id).acked == "nak:PKI_UNKNOWN_PUBKEY"
    ok = a.sendData(b"secret", destinationId=num(mesh, "bukit-01"), portNum=PORT, hopLimit=0, pkiEncrypted=True)
    got = inbox.wait(ifaces["bukit-01"], data_on_port(b"secret"))
    assert got["id"] == ok.id and got.get("pkiEncrypted") is True


def test_airtime_accounting_is_the_semtech_formula(chain: tuple[Mesh, dict[str, Any]], inbox: Inbox) -> None:
    mesh, ifaces = chain
    payload = bytes(range(120))
    sender0 = mesh.stats("oebubun")
    link0 = mesh.link_stats("oebubun", "bukit-01")
    back0 = mesh.link_stats("bukit-01", "oebubun")
    ifaces["oebubun"].sendData(payload, destinationId=num(mesh, "bukit-01"), portNum=PORT, wantAck=True, hopLimit=0,
                               pkiEncrypted=True)  # fmt: skip
    inbox.wait(ifaces["bukit-01"], data_on_port(payload))
    data = mesh_pb2.Data(portnum=PORT, payload=payload, bitfield=0).SerializeToString()
    size = frame_bytes(data, pki=True)
    expected = time_on_air_ms(size) / 1000
    sender1 = mesh.stats("oebubun")
    link1 = mesh.link_stats("oebubun", "bukit-01")
    assert sender1.packets - sender0.packets == 1 and sender1.bytes - sender0.bytes == size
    assert sender1.airtime_s - sender0.airtime_s == pytest.approx(expected)
    assert link1.airtime_s - link0.airtime_s == pytest.approx(expected) and link1.lost == link0.lost
    assert 1.0 < expected < 2.0  # ~1.4 s on LONG_FAST: the figure is seconds of channel, not real time
    # the ACK bukit-01's radio sent back is counted on the reverse direction
    deadline = time.monotonic() + 10
    while mesh.link_stats("bukit-01", "oebubun").packets == back0.packets and time.monotonic() < deadline:
        time.sleep(0.02)
    back1 = mesh.link_stats("bukit-01", "oebubun")
    assert back1.airtime_s - back0.airtime_s == pytest.approx(time_on_air_ms(frame_bytes(routing_ack_data())) / 1000)
    probe = mesh_pb2.MeshPacket(pki_encrypted=True)
    probe.decoded.portnum = PORT
    probe.decoded.payload = payload
    assert packet_airtime_s(probe) == (size, pytest.approx(expected))


def test_losses_are_repeatable_with_a_seed() -> None:
    def run() -> list[int]:
        mesh = Mesh(seed=42, speed=1000.0)
        for name in ("a", "b", "c"):
            mesh.add_device(name, rate_limit_s=0.0)
        mesh.link("a", "b", loss=0.3)
        mesh.link("a", "c", loss=0.6)
        with mesh:
            for _ in range(50):  # each announce is one broadcast with a loss draw per neighbour
                mesh.announce("a")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                s = mesh.stats("b"), mesh.stats("c")
                if all(x.received + x.lost >= 51 for x in s):
                    break
                time.sleep(0.02)
            return [mesh.link_stats("a", "b").lost, mesh.link_stats("a", "c").lost]

    first = run()
    assert first == run()
    assert 0 < first[0] < first[1] < 51
