"""A post upgraded in the field keeps its queue: a store file written by the previous version opens and drains.

``tests/data/store-v0.1-ca9fc9a.sqlite`` was written by the code of commit ca9fc9a (before the package layout
of issue 11) with its own ``edge.store.Store``: three pending reports and a pending mesh report (receipt
``post`` = sent), one sent, one delivered, one rejected; a node row; meta ``regency`` and ``boot_counter``.
The script that wrote it is in the message of the commit that added it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edge.store import Store
from tests.fakes import FakeClock

FIXTURE = Path(__file__).parent / "data" / "store-v0.1-ca9fc9a.sqlite"


def test_previous_version_store_opens_and_drains(tmp_path: Path) -> None:
    path = tmp_path / "post.db"
    shutil.copyfile(FIXTURE, path)  # never write to the committed fixture
    clock = FakeClock()
    clock.advance(3600)
    store = Store.open(path, clock=clock)
    try:
        assert store.integrity_ok()
        assert store.counts() == {"pending": 4, "sent": 1, "delivered": 1, "rejected": 1}
        assert store.meta_get("regency") == "kupang"
        assert store.bump_boot_counter() == 2
        assert [(n["num"], n["short_name"]) for n in store.load_nodes()] == [(0xA1B2C3D4, "BUDI")]
        [old_sent] = store.list_reports("sent")
        assert old_sent.report.category == "banjir"

        claimed = store.claim(10)
        assert len(claimed) == 4
        assert {c.report.text_raw for c in claimed} >= {f"KEBAKARAN rumah warga {i}" for i in range(3)}
        mesh = [c for c in claimed if c.report.mesh_packet_id == 4242]
        assert len(mesh) == 1 and mesh[0].receipt_post == "sent"
        ids = [c.report_id for c in claimed]
        assert store.mark_sent(ids) == 4
        assert store.claim(10) == []
        assert sorted(store.ack([*ids, old_sent.report_id])) == sorted([*ids, old_sent.report_id])
        assert store.counts() == {"pending": 0, "sent": 0, "delivered": 6, "rejected": 1}
    finally:
        store.close()
    reopened = Store.open(path, clock=clock)
    try:
        assert reopened.counts()["delivered"] == 6
    finally:
        reopened.close()


def test_previous_version_store_gains_the_console_tables(tmp_path: Path) -> None:
    """m004 (the operator console) is additive: the old rows keep their state, the center's time is
    unknown for what was delivered before, and messages and operators start empty."""
    path = tmp_path / "post.db"
    shutil.copyfile(FIXTURE, path)
    store = Store.open(path, clock=FakeClock())
    try:
        [delivered] = store.list_reports("delivered")
        assert delivered.center_ts is None
        assert store.messages() == [] and store.operators() == []
        assert store.add_message("cmd-1", delivered.report_id, "!a1b2c3d4", "Tim menuju lokasi")
        [pending, *_] = store.list_reports("pending")
        from datetime import UTC, datetime

        when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert store.ack([pending.report_id], committed_at=when) == [pending.report_id]
        assert store.get(pending.report_id).center_ts == when.timestamp()  # type: ignore[union-attr]
    finally:
        store.close()
