"""The relay end to end (issue 12, "Must show"): real post daemons (edge.daemon.Post, the real meshtastic
library) on a simulated mesh (devkit/sim/mesh.py, one device per post), real SQLite stores, a real Mosquitto
and the real center verifying the origin's tag (tests/relay_rig.py).  The SIGKILL cases are in
tests/chaos/test_relay_kills.py.

Every wait is for a state (a report at the center, a receipt ACKed by the handset, a link's statistics);
deadlines are generous and only a hang reaches them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.harness.mosquitto import Mosquitto
from sync import compact as codec
from tests.carried import tamper_text
from tests.relay_rig import HANDSET, Rig, elapsed, rig_context

log = logging.getLogger(__name__)

TEXTS = [
    "KEBAKARAN rumah warga dusun 3 dekat pasar",
    "BANJIR air sungai naik ke jalan desa Oebubun",
    "warga sakit keras perlu ambulans segera",
]


@pytest.fixture
def rig(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Rig]:
    yield from rig_context(tmp_path, mosquitto)


def test_a_chain_of_three_posts_delivers_every_report_once_with_both_receipts(rig: Rig) -> None:
    rig.add("oebubun", handset=True)  # A: no uplink, the officer's post
    rig.add("bukit")  # B: no uplink
    rig.add("kefa", uplink=True)  # C: the uplink
    rig.link("oebubun", "bukit")
    rig.link("bukit", "kefa")
    rig.start()
    t0 = time.monotonic()
    for text in TEXTS:
        rig.text("oebubun", text)
    rig.wait(lambda: rig.all_at_center(TEXTS), "every report at the center")
    t_center = elapsed(t0)
    rig.wait(lambda: len(rig.receipts("oebubun", "112 PUSAT TERIMA")) == len(TEXTS), "the center receipts")
    t_receipt = elapsed(t0)

    found = rig.at_center(TEXTS)
    assert all(len(rows) == 1 for rows in found.values()), found
    for rows in found.values():
        (row,) = rows
        assert row["post_id"] == "oebubun" and row["copies"] == 1, row
    copies = rig.center_copies()
    assert len(copies) == len(TEXTS), copies
    assert {(c["post_id"], c["relay_origin"], c["relay_prev"], c["relay_hops"]) for c in copies} == {
        ("kefa", "oebubun", "bukit", 2)
    }, copies
    assert rig.center is not None and dict(rig.center.receiver.rejects) == {}

    # both receipts at the origin's handset, ACKed by it, one each per report
    assert len(rig.receipts("oebubun", "112 POS")) == len(TEXTS)
    assert len(rig.receipts("oebubun", "112 PUSAT TERIMA")) == len(TEXTS)
    assert all(r["state"] == "delivered" for r in rig.store_rows("oebubun")), rig.store_rows("oebubun")
    # the carriers never sent the handset anything
    assert rig.sent_to_handset("bukit") == [] and rig.sent_to_handset("kefa") == []
    for name in ("bukit", "kefa"):
        assert all(p.to != HANDSET for p in rig.mesh.device(name).sent)
    log.info("chain: all at center after %.2f s, all center receipts after %.2f s", t_center, t_receipt)
    print(f"TIMING chain: center {t_center} s, center receipts {t_receipt} s")


def test_a_staff_reply_walks_back_over_the_mesh_to_the_origin_handset(rig: Rig) -> None:
    """The report reached the center only carried (A has no uplink): the staff reply goes to C's cmd topic
    with the origin, C commits it and sends a REPLY back along the report's previous hops (C → B → A), and A's
    radio DMs the handset "112: ..." once (docs/RELAY.md, "Staff replies over the mesh")."""
    rig.add("oebubun", handset=True)
    rig.add("bukit")
    rig.add("kefa", uplink=True)
    rig.link("oebubun", "bukit")
    rig.link("bukit", "kefa")
    rig.start()
    text = TEXTS[2]
    rig.text("oebubun", text)
    rig.wait(lambda: rig.receipts("oebubun", "112 PUSAT TERIMA"), "the report at the center, its ack back at A")
    ((row,),) = rig.at_center([text]).values()
    assert rig.center is not None
    t0 = time.monotonic()
    reply = rig.center.service.send_reply(row["report_id"], "Ambulans berangkat 14:05, tunggu di jalan", "sari")
    assert (reply.post_id, reply.relay_origin, reply.to_node) == ("kefa", "oebubun", HANDSET)
    storage = rig.center.storage
    rig.wait(lambda: storage.get_reply(reply.cmd_id).state == "received", "the carrier has the reply")  # type: ignore[union-attr]
    rig.wait(lambda: rig.receipts("oebubun", "112: Ambulans"), "the reply ACKed by the handset at A")
    t_handset = elapsed(t0)
    assert rig.receipts("oebubun", "112: Ambulans") == ["112: Ambulans berangkat 14:05, tunggu di jalan"]
    # walked back hop by hop along the report's previous hops, each CACKed
    assert len(rig.relay_sent("kefa", codec.TYPE_REPLY, to="bukit")) >= 1
    assert len(rig.relay_sent("bukit", codec.TYPE_REPLY, to="oebubun")) >= 1
    rig.wait(lambda: rig.relay("kefa")["counters"].get("tx.reply", 0) >= 1 and rig.relay("kefa")["in_flight"] == 0,
             "C's custody of the reply passed")  # fmt: skip
    # the carriers never sent the handset anything; the center saw what the carrier can tell it
    assert rig.sent_to_handset("bukit") == [] and rig.sent_to_handset("kefa") == []
    assert storage.get_reply(reply.cmd_id).state == "received"  # type: ignore[union-attr]
    assert len(rig.sent_to_handset("oebubun")) == 3  # 112 POS, 112 PUSAT TERIMA, the reply: once
    print(f"TIMING reply: handset ACKed the reply {t_handset} s after staff sent it")


def diamond(rig: Rig, **b1: Any) -> None:
    """A — B1 (bukit), B2 (napan) — C (kefa, the uplink); A hears B1 better, so B1 is its first choice."""
    rig.add("oebubun", handset=True)
    rig.add("bukit", **b1)
    rig.add("napan")
    rig.add("kefa", uplink=True)
    rig.link("oebubun", "bukit", snr=9.0)
    rig.link("oebubun", "napan", snr=3.0)
    rig.link("bukit", "kefa")
    rig.link("napan", "kefa")


def test_a_diamond_gives_one_report_at_the_center_even_when_both_carriers_carry_it(rig: Rig) -> None:
    # B1 owes its CACK for 30 s: a cut made once B1 has committed the report loses that CACK by construction,
    # so A, which never hears it, tries again, gives B1 up after 3 silences, and hands the report to B2 too.
    diamond(rig, cack_delay_s=30.0)
    rig.start()
    rig.wait(lambda: rig.neighbour_metrics("oebubun") == {"bukit": 1, "napan": 1}, "A hears both carriers")
    t0 = time.monotonic()
    text = TEXTS[0]
    rig.text("oebubun", text)
    rig.wait(lambda: rig.holds("bukit", text), "B1 has committed the report")
    rig.mesh.cut("oebubun", "bukit")
    rig.wait(lambda: rig.all_at_center([text]), "the report at the center (via B1)")
    t_center = elapsed(t0)
    rig.wait(lambda: rig.holds("napan", text), "B2 carries it too (A never heard B1's CACK)")
    rig.wait(lambda: rig.receipts("oebubun", "112 PUSAT TERIMA"), "the center's ack at the origin via B2")
    t_receipt = elapsed(t0)
    rig.wait(lambda: rig.relay("kefa")["counters"].get("rx.report.redundant", 0) >= 1, "C saw the second copy")

    (rows,) = rig.at_center([text]).values()
    assert len(rows) == 1 and rows[0]["post_id"] == "oebubun", rows
    copies = rig.center_copies()
    # the uplink post is the one carrier the center hears; its exact seen-set kept the second copy from it
    assert len(copies) == 1 and copies[0]["post_id"] == "kefa" and copies[0]["relay_prev"] == "bukit", copies
    assert rig.holds("oebubun", text, "delivered") and rig.holds("napan", text, "delivered")
    assert len(rig.receipts("oebubun", "112 PUSAT TERIMA")) == 1  # two acks came back, one receipt
    assert len(rig.receipts("oebubun", "112 POS")) == 1
    rig.mesh.heal("oebubun", "bukit")
    print(f"TIMING diamond: center {t_center} s, receipt via the second path {t_receipt} s")


def test_a_link_cut_for_longer_than_the_neighbour_timeout_delivers_once_healed(rig: Rig) -> None:
    rig.add("oebubun", handset=True)
    rig.add("bukit")
    rig.add("kefa", uplink=True)
    rig.link("oebubun", "bukit")
    rig.link("bukit", "kefa")
    rig.start()
    rig.wait(lambda: rig.metric("oebubun") == 2, "A's route to the uplink")
    t0 = time.monotonic()
    rig.mesh.cut("bukit", "kefa")
    first, second = TEXTS[0], TEXTS[1]
    rig.text("oebubun", first)  # B still believes in C: it takes custody and holds it when C never answers
    rig.wait(lambda: rig.holds("bukit", first, "pending"), "B holds the first report")
    # 3 × beacon_s without a beacon from C: B drops it, its metric and then A's go to "no route"
    rig.wait(lambda: rig.metric("bukit") == 255 and rig.metric("oebubun") == 255, "the route gone")
    t_gone = elapsed(t0)
    rig.text("oebubun", second)
    rig.wait(lambda: rig.holds("oebubun", second, "pending"), "A holds the second report")
    assert rig.center_reports() == []
    assert len(rig.receipts("oebubun", "112 POS")) == 2 or rig.wait(
        lambda: len(rig.receipts("oebubun", "112 POS")) == 2, "the post's receipts while cut off"
    )
    t_heal = time.monotonic()
    rig.mesh.heal("bukit", "kefa")
    rig.wait(lambda: rig.all_at_center([first, second]), "both reports at the center after the heal")
    t_center = elapsed(t_heal)
    rig.wait(lambda: len(rig.receipts("oebubun", "112 PUSAT TERIMA")) == 2, "both center receipts")
    t_receipts = elapsed(t_heal)
    found = rig.at_center([first, second])
    assert all(len(rows) == 1 and rows[0]["post_id"] == "oebubun" for rows in found.values()), found
    assert len(rig.center_copies()) == 2
    print(
        f"TIMING cut: route gone {t_gone} s after the cut, cut lasted {round(t_heal - t0, 2)} s;"
        f" after the heal: center {t_center} s, receipts {t_receipts} s"
    )


class AlteringPort:
    """A dishonest carrier's radio (relay.engine.RadioPort): every report it passes on carries another
    text under the origin's tag.  Wrapped around the carrier's real port, at the engine's boundary."""

    def __init__(self, inner: Any, text: str) -> None:
        self.inner = inner
        self.text = text
        self.altered = 0

    def send_relay(self, dest: int | None, payload: bytes) -> None:
        if dest is not None and codec.message_type(payload) == codec.TYPE_REPORT:
            xmit = codec.parse_report(payload).xmit
            payload = codec.with_xmit(tamper_text(payload, self.text), xmit)
            self.altered += 1
        self.inner.send_relay(dest, payload)


def test_a_carrier_that_alters_a_report_is_refused_and_the_original_still_gets_through(rig: Rig) -> None:
    # B1 alters what it carries; its CACK to A waits 30 s and a cut loses it, so A keeps the report (held)
    # and, once B2 has a route (its link to C is made only after the forgery was refused), sends it that way.
    rig.add("oebubun", handset=True)
    rig.add("bukit", cack_delay_s=30.0)
    rig.add("napan")
    rig.add("kefa", uplink=True)
    rig.link("oebubun", "bukit")
    rig.link("oebubun", "napan")
    rig.link("bukit", "kefa")
    rig.start()
    b1 = rig.stations["bukit"].post
    assert b1 is not None and b1.relay is not None
    liar = AlteringPort(b1.relay.radio, "AMAN semua baik, tidak perlu bantuan")
    b1.relay.radio = liar
    rig.wait(
        lambda: (
            rig.metric("oebubun") == 2
            and rig.neighbour_metrics("oebubun").get("bukit") == 1
            and rig.neighbour_metrics("oebubun").get("napan", 255) >= 2
        ),
        "A's only route is B1",
    )
    t0 = time.monotonic()
    text = "SOS longsor tutup jalan, 3 rumah tertimbun"
    rig.text("oebubun", text)
    rig.wait(lambda: rig.holds("bukit", text), "B1 has committed the genuine report")
    rig.mesh.cut("oebubun", "bukit")
    assert rig.center is not None
    receiver = rig.center.receiver
    rig.wait(lambda: receiver.rejects["relay_tag"] >= 1, "the center refuses the altered report")
    t_refused = elapsed(t0)
    assert liar.altered >= 1 and rig.center_reports() == []
    assert receiver.state()["rejected_by_reason"]["relay_tag"] >= 1
    # held at the origin: A never heard B1's CACK, gave B1 up, and has no other route yet
    rig.wait(
        lambda: rig.relay("oebubun")["counters"].get("tx.gave_up", 0) >= 1 and rig.holds("oebubun", text, "pending"),
        "the origin holds the genuine report",
    )
    rig.link("napan", "kefa")
    rig.wait(lambda: rig.all_at_center([text]), "the genuine report at the center via B2")
    t_center = elapsed(t0)
    rig.wait(lambda: rig.receipts("oebubun", "112 PUSAT TERIMA"), "the center receipt at the origin")
    (rows,) = rig.at_center([text]).values()
    assert len(rows) == 1 and rows[0]["post_id"] == "oebubun", rows
    copies = rig.center_copies()
    assert [(c["post_id"], c["relay_prev"]) for c in copies] == [("kefa", "napan")], copies
    assert not [r for r in rig.center_reports() if "AMAN" in r["text_raw"]]
    assert receiver.rejects["relay_tag"] >= 1
    print(f"TIMING altered: refused {t_refused} s, genuine at the center {t_center} s")
