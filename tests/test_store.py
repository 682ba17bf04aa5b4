"""The post's durable queue: states, dedup, drain order, claims, retention, damage, full disk."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.salvage import table_leaf_records
from edge.store import Store
from siaga.errors import StoreError
from siaga.report import PathHop
from tests.fakes import FakeClock
from tests.reports import make_mesh_report, make_report


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock):
    s = Store.open(tmp_path / "post.db", clock=clock)
    yield s
    s.close()


def test_wal_and_full_sync_are_in_force(store: Store) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert store.integrity_ok()


def test_lifecycle_pending_sent_delivered(store: Store, clock: FakeClock) -> None:
    report = make_report()
    assert store.put(report).created
    assert store.counts() == {"pending": 1, "sent": 0, "delivered": 0, "rejected": 0}
    claimed = store.claim(10)
    assert [c.report_id for c in claimed] == [report.report_id]
    assert store.claim(10) == []  # a claimed report is not handed out twice
    clock.advance(1)
    assert store.mark_sent([report.report_id]) == 1
    assert store.get(report.report_id).state == "sent"  # type: ignore[union-attr]
    assert store.ack([report.report_id]) == [report.report_id]
    assert store.ack([report.report_id]) == []  # acking twice changes nothing
    row = store.get(report.report_id)
    assert row is not None and row.state == "delivered" and row.delivered_ts is not None


def test_ack_may_overtake_puback(store: Store) -> None:
    report = make_report()
    store.put(report)
    store.claim(1)
    assert store.ack([report.report_id]) == [report.report_id]
    assert store.mark_sent([report.report_id]) == 0
    assert store.get(report.report_id).state == "delivered"  # type: ignore[union-attr]


def test_copies_are_counted_not_duplicated(store: Store) -> None:
    report = make_mesh_report(packet_id=77)
    store.put(report)
    other_path = report.with_changes(path=(PathHop("oebubun", hops=3, snr=-2.0, rssi=-118, relay="!0000beef"),))
    result = store.put(other_path)
    assert not result.created and result.copies == 2
    row = store.get(report.report_id)
    assert row is not None and row.copies == 2
    assert [hop.hops for hop in row.report.path] == [1, 3]
    assert store.counts()["pending"] == 1


def test_mesh_packet_heard_after_day_change_is_a_copy(store: Store, clock: FakeClock) -> None:
    report = make_mesh_report(packet_id=99)
    store.put(report)
    clock.advance(3600)
    later_id = report.with_changes(report_id=report.report_id.replace("20261128", "20261129"))
    result = store.put(later_id)
    assert result.report_id == report.report_id and result.copies == 2
    clock.advance(25 * 3600)
    assert store.put(later_id.with_changes(report_id="m-much-later-xyz")).created


def test_drain_order_life_safety_first_then_oldest(store: Store, clock: FakeClock) -> None:
    chatter = make_report("halo tes radio", category="lainnya")
    store.put(chatter)
    clock.advance(1)
    tree = make_report("pohon tumbang", category="infrastruktur")
    store.put(tree)
    clock.advance(1)
    sos = make_report("SOS-OB01 detected", category="sos")
    store.put(sos)
    clock.advance(1)
    fire = make_report("KEBAKARAN", category="kebakaran")
    store.put(fire)
    claimed = store.claim(10)
    assert [c.report_id for c in claimed] == [sos.report_id, fire.report_id, tree.report_id, chatter.report_id]


def test_release_and_stale_claims(store: Store, clock: FakeClock) -> None:
    a, b = make_report(), make_report()
    store.put(a)
    store.put(b)
    first = store.claim(1)
    assert store.release([first[0].report_id]) == 1
    claimed = store.claim(10)
    assert {c.report_id for c in claimed} == {a.report_id, b.report_id}
    clock.advance(10)
    assert store.release_stale(claim_timeout_s=60, sent_timeout_s=60) == (0, 0)
    clock.advance(100)
    assert store.release_stale(claim_timeout_s=60, sent_timeout_s=60) == (2, 0)
    store.claim(10)
    store.mark_sent([a.report_id])
    clock.advance(100)
    _claims, sent = store.release_stale(claim_timeout_s=60, sent_timeout_s=60)
    assert sent == 1 and store.get(a.report_id).state == "pending"  # type: ignore[union-attr]


def test_claims_from_before_a_reboot_are_stale(store: Store, clock: FakeClock) -> None:
    report = make_report()
    store.put(report)
    store.claim(1)
    clock.reboot()
    store.release_stale(claim_timeout_s=3600, sent_timeout_s=3600)
    assert [c.report_id for c in store.claim(1)] == [report.report_id]


def test_retention_never_touches_pending_or_sent(store: Store, clock: FakeClock) -> None:
    pending, sent, delivered = make_report(), make_report(), make_report()
    for r in (pending, sent, delivered):
        store.put(r)
    store.claim(10)
    store.release([pending.report_id])
    store.mark_sent([sent.report_id, delivered.report_id])
    store.ack([delivered.report_id])
    clock.advance(40 * 86400)
    assert store.retention(30) == 1
    assert store.get(delivered.report_id) is None
    assert store.get(pending.report_id) is not None and store.get(sent.report_id) is not None


def test_reject(store: Store) -> None:
    report = make_report()
    store.put(report)
    assert store.reject(report.report_id, "invalid: post_id mismatch")
    row = store.get(report.report_id)
    assert row is not None and row.state == "rejected" and row.reject_reason == "invalid: post_id mismatch"


def test_age_uses_boot_clock_while_not_rebooted(store: Store, clock: FakeClock) -> None:
    report = make_report()
    store.put(report)
    clock.advance(120)
    clock.wall = clock.wall.replace(year=2031)  # someone set the wall clock wildly wrong
    assert store.oldest_pending_age_s() == pytest.approx(120)


def test_threads_share_one_store(store: Store) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                store.put(make_report(f"laporan {n}-{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.counts()["pending"] == 100


def test_two_processes_share_the_file(tmp_path: Path) -> None:
    import multiprocessing

    path = tmp_path / "post.db"
    Store.open(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_put_many, args=(str(path), n, 30)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Store.open(path) as s:
        assert s.counts()["pending"] == 90


def _put_many(path: str, n: int, count: int) -> None:
    with Store.open(path, check=False) as s:
        for i in range(count):
            s.put(make_report(f"proses {n} laporan {i}"))


def test_invalid_report_is_refused_and_nothing_written(store: Store) -> None:
    with pytest.raises(StoreError, match="invalid report"):
        store.put(make_report("x" * 5000))
    with pytest.raises(StoreError, match="UTF-8"):
        store.put(make_report("rumah \udcff terbakar"))
    assert sum(store.counts().values()) == 0


def test_damaged_file_is_salvaged_not_silently_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "post.db"
    with Store.open(path) as s:
        for i in range(300):
            s.put(make_report(f"laporan nomor {i} " + "x" * 200))
    # Damage one leaf page of the table in the middle of the file: its rows are lost, the rest must survive.
    # (A damaged interior page loses every row below it: the salvage walks rowids through the B-tree.)
    data = path.read_bytes()
    page = int.from_bytes(data[16:18], "big")  # the page size, from the file header
    middle = len(data) // 2 // page
    leaf = next(n for n in range(middle, len(data) // page) if data[n * page] == 0x0D)  # a table leaf page
    with open(path, "r+b") as f:
        f.seek(leaf * page)
        f.write(b"\xde\xad" * (page // 2))
    with Store.open(path) as s:
        salvaged = s.counts()["pending"]
        assert s.integrity_ok()
    # one damaged page holds a handful of rows: everything else must be salvaged
    assert 250 <= salvaged < 300
    damaged = list(tmp_path.glob("post.db.damaged-*"))
    assert damaged, "the damaged file must be kept beside the new one"
    assert "STORE DAMAGED" in caplog.text


def test_damaged_interior_page_loses_no_row(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # An interior page holds no rows, only the way to them: SQLite's rowid walk loses every row below it,
    # the page scan (edge/salvage.py) reads the leaves directly and loses none.
    path = tmp_path / "post.db"
    ids = []
    with Store.open(path) as s:
        for i in range(300):
            ids.append(s.put(make_report(f"laporan nomor {i} " + "x" * 200)).report_id)
        s.ack(ids[:100])
    data = path.read_bytes()
    page = int.from_bytes(data[16:18], "big")
    interior = [n for n in range(1, len(data) // page) if data[n * page] == 0x05]  # table interior pages
    assert interior, "the table must be deep enough to have an interior page below its root"
    with open(path, "r+b") as f:
        f.seek(interior[len(interior) // 2] * page)
        f.write(b"\xde\xad" * (page // 2))
    with Store.open(path) as s:
        assert s.integrity_ok()
        assert s.counts() == {"pending": 200, "sent": 0, "delivered": 100, "rejected": 0}
        assert sorted(r.report_id for r in s.list_reports(limit=1000)) == sorted(ids)
    assert "recovered from pages the B-tree no longer reaches" in caplog.text


def test_file_that_is_not_a_database_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "post.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with Store.open(path) as s:
        assert s.counts()["pending"] == 0
    assert list(tmp_path.glob("post.db.damaged-*"))
    assert "STORE DAMAGED" in caplog.text


def test_read_only_store_raises_clearly(tmp_path: Path) -> None:
    path = tmp_path / "post.db"
    with Store.open(path) as s:
        s.put(make_report())
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    ro = Store(path, conn, FakeClock())
    try:
        with pytest.raises(StoreError, match="read-only"):
            ro.put(make_report())
    finally:
        ro.close()
    with Store.open(path) as s:
        assert s.counts()["pending"] == 1


def test_disk_full_raises_and_store_stays_consistent(tmp_path: Path) -> None:
    """A file size limit makes the disk 'full' for this process: the write fails cleanly."""
    path = tmp_path / "post.db"
    with Store.open(path) as s:
        s.put(make_report())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: fill the disk under RLIMIT_FSIZE
        os.close(read)
        code = 0
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            limit = path.stat().st_size + 64 * 1024
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            with Store.open(path, check=False) as s:
                for i in range(10_000):
                    s.put(make_report(f"laporan {i} " + "y" * 3000))
        except StoreError as exc:
            os.write(write, str(exc).encode()[:500])
            code = 3
        except BaseException as exc:  # pragma: no cover - reported to the parent
            os.write(write, repr(exc).encode()[:500])
            code = 4
        os._exit(code)
    os.close(write)
    message = os.read(read, 1000).decode()
    os.close(read)
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3, message
    assert "disk is full" in message
    with Store.open(path) as s:
        assert s.integrity_ok()
        pending = s.counts()["pending"]
        assert pending >= 1
        # every row that is there is whole
        assert len(s.list_reports(limit=100_000)) == pending


@settings(max_examples=40, deadline=None)
@given(damage=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=3000)), max_size=6))
def test_page_scan_never_raises_on_damaged_bytes(tmp_path_factory: pytest.TempPathFactory, damage: list) -> None:
    path = tmp_path_factory.mktemp("scan") / "post.db"
    with Store.open(path) as s:
        for i in range(40):
            s.put(make_report(f"laporan {i} " + "y" * 900))  # overflow chains with 1 KiB pages
    data = bytearray(path.read_bytes())
    for at, chunk in damage:
        at %= len(data)
        data[at : at + len(chunk)] = chunk
    path.write_bytes(bytes(data))
    rows = list(table_leaf_records(path, 21))
    assert all(len(r) == 21 for r in rows)
    assert len(rows) <= 40  # only what was written: the other tables have other column counts


def test_meta_prune_keeps_the_newest_of_one_prefix(store: Store) -> None:
    """Handled reply command ids (sync/uplink.py ``cmd_seen:``) no longer grow forever."""
    for i in range(10):
        store.meta_set(f"cmd_seen:{i:04d}", "2026-11-28T07:00:00.000Z")
    store.meta_set("cmd_seen:0002", "2019-01-01T00:00:00.000Z")  # re-written last: now the newest
    store.meta_set("cmd_seenX", "other")  # '_' is not a wildcard here
    store.meta_set("center_epochs", "{}")
    assert store.meta_prune("cmd_seen:", 3) == 7
    kept = [k for k in (f"cmd_seen:{i:04d}" for i in range(10)) if store.meta_get(k) is not None]
    assert kept == ["cmd_seen:0002", "cmd_seen:0008", "cmd_seen:0009"]
    assert store.meta_get("cmd_seenX") == "other" and store.meta_get("center_epochs") == "{}"
    assert store.meta_prune("cmd_seen:", 3) == 0
