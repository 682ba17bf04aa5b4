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

import pytest

from devkit.harness.mosquitto import Mosquitto
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
