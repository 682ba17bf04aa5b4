"""The center storage contract, run against SQLite and PostgreSQL (both real)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from center import storage as storage_mod
from center.storage import CenterStorage, IncomingReport, ReportFilter, estimate_observed, open_storage
from devkit.harness.pg import fresh_schema, pg_dsn
from siaga.errors import CenterError
from siaga.report import PathHop, Report, mesh_report_id
from tests.reports import make_mesh_report, make_report

NOW = datetime(2026, 11, 28, 6, 30, tzinfo=UTC)


def incoming(report: Report, post_id: str = "oebubun", *, age_s: float = 60.0, at: datetime = NOW) -> IncomingReport:
    return IncomingReport(
        report=report.with_changes(post_id=post_id) if report.post_id != post_id else report,
        post_id=post_id,
        received_at=at,
        age_s=age_s,
        age_source="boot",
        post_sent_at=at,
        regency="ttu",
    )


def carried(
    report: Report, carrier: str, *, prev: str, hops: int, age_s: float = 60.0, at: datetime = NOW
) -> IncomingReport:
    """A report of ``report.post_id`` that ``carrier`` delivered (the center has verified its packet)."""
    return IncomingReport(
        report=report,
        post_id=carrier,
        received_at=at,
        age_s=age_s,
        age_source="boot",
        post_sent_at=at,
        regency="ttu",
        relay_prev=prev,
        relay_hops=hops,
    )


class StorageContract:
    """Every implementation must pass these.  Subclasses provide the ``storage`` fixture."""

    def test_ingest_new_report(self, storage: CenterStorage) -> None:
        report = make_report("BANJIR di dusun 2", category="banjir")
        [result] = storage.ingest([incoming(report)])
        assert result.created and result.copies == 1 and result.report_id == report.report_id
        found = storage.get_report(report.report_id)
        assert found is not None
        assert found.report == report
        assert found.post_id == "oebubun" and found.copies == 1 and found.status == "baru"
        assert found.received_at == NOW
        assert storage.counts()["reports"] == 1

    def test_resend_is_stored_once_with_receipts_counted(self, storage: CenterStorage) -> None:
        report = make_report()
        storage.ingest([incoming(report)])
        [again] = storage.ingest([incoming(report, at=NOW + timedelta(seconds=30))])
        assert not again.created and again.copies == 1
        assert storage.counts()["reports"] == 1
        [copy] = storage.copies(report.report_id)
        assert copy.receipts == 2 and copy.post_id == "oebubun"
        assert copy.last_received_at == NOW + timedelta(seconds=30)

    def test_second_post_adds_a_copy_with_its_path(self, storage: CenterStorage) -> None:
        report = make_mesh_report(packet_id=77)
        storage.ingest([incoming(report, "oebubun")])
        other = report.with_changes(post_id="napan", path=(PathHop("napan", hops=2, snr=-3.5, rssi=-110),))
        [result] = storage.ingest([incoming(other, "napan", at=NOW + timedelta(seconds=1))])
        assert not result.created and result.copies == 2
        copies = storage.copies(report.report_id)
        assert [c.post_id for c in copies] == ["oebubun", "napan"]
        assert copies[1].path == [{"post_id": "napan", "hops": 2, "snr": -3.5, "rssi": -110}]
        assert storage.get_report(report.report_id).copies == 2  # type: ignore[union-attr]

    def test_mesh_packet_matched_across_a_wrong_day(self, storage: CenterStorage) -> None:
        """Two posts disagree about the UTC day (one clock is wrong): same (origin, packet id) within 36 h."""
        report = make_mesh_report(packet_id=4242)
        storage.ingest([incoming(report, "oebubun")])
        day_off = report.with_changes(
            post_id="napan",
            report_id=mesh_report_id(0xA1B2C3D4, 4242, datetime(2026, 11, 29, 1, 0, tzinfo=UTC)),
        )
        assert day_off.report_id != report.report_id
        [result] = storage.ingest([incoming(day_off, "napan")])
        assert not result.created
        assert result.report_id == report.report_id and result.wire_report_id == day_off.report_id
        assert storage.counts()["reports"] == 1
        # the id the second post used finds the same report (its ack and replies refer to it)
        assert storage.get_report(day_off.report_id).report_id == report.report_id  # type: ignore[union-attr]
        # resent later under the post's id: still one report
        storage.ingest([incoming(day_off, "napan")])
        assert storage.counts()["reports"] == 1

    def test_packet_id_reused_days_later_is_a_new_report(self, storage: CenterStorage) -> None:
        report = make_mesh_report(packet_id=9)
        storage.ingest([incoming(report)])
        later = report.with_changes(
            report_id=mesh_report_id(0xA1B2C3D4, 9, datetime(2026, 12, 3, tzinfo=UTC)), text_raw="LONGSOR"
        )
        [result] = storage.ingest([incoming(later, at=NOW + timedelta(days=5))])
        assert result.created
        assert storage.counts()["reports"] == 2

    def test_estimated_observed_time_with_post_clock_years_off(self, storage: CenterStorage) -> None:
        wrong = datetime(2019, 3, 1, 12, 0, tzinfo=UTC)  # a Pi that booted with an old saved clock
        report = make_report(when=wrong).with_changes(stored_at=wrong + timedelta(seconds=3))
        [result] = storage.ingest([incoming(report, age_s=600.0)])
        found = storage.get_report(result.report_id)
        assert found is not None
        assert found.observed_est == NOW - timedelta(seconds=603)
        assert found.report.observed_at == wrong  # what the post believed is kept too
        assert estimate_observed(report, NOW, 600.0) == found.observed_est

    def test_batch_is_atomic(self, storage: CenterStorage) -> None:
        good = make_report()
        bad = incoming(make_report())
        bad = IncomingReport(bad.report, "oebubun", NOW, float("nan"), "boot", None, "ttu")  # NaN → time overflow
        with pytest.raises(CenterError):
            storage.ingest([incoming(good), bad])
        assert storage.counts()["reports"] == 0
        storage.ingest([incoming(good)])
        assert storage.counts()["reports"] == 1

    def test_list_reports_filters_and_order(self, storage: CenterStorage) -> None:
        a = make_report("BANJIR", category="banjir")
        b = make_report("API", category="kebakaran")
        storage.ingest([incoming(a, at=NOW)])
        storage.ingest([incoming(b, "napan", at=NOW + timedelta(minutes=1))])
        assert [r.report_id for r in storage.list_reports()] == [b.report_id, a.report_id]
        assert [r.report_id for r in storage.list_reports(ReportFilter(category="banjir"))] == [a.report_id]
        assert [r.report_id for r in storage.list_reports(ReportFilter(post_id="napan"))] == [b.report_id]
        assert storage.list_reports(ReportFilter(since=NOW + timedelta(seconds=30)))[0].report_id == b.report_id
        assert storage.set_status(a.report_id, "diterima")
        assert [r.report_id for r in storage.list_reports(ReportFilter(status="diterima"))] == [a.report_id]
        with pytest.raises(CenterError):
            storage.set_status(a.report_id, "hilang")

    def test_presence_from_status(self, storage: CenterStorage) -> None:
        storage.record_status(
            "oebubun", "ttu", {"state": "online", "boot": 7, "version": "0.1.0", "queue": {"pending": 2}}, NOW
        )
        post = storage.get_post("oebubun")
        assert post is not None and post.state == "online" and post.boot_counter == 7
        assert post.status["queue"] == {"pending": 2}
        # a retained status replayed at the center's start is old news: does not move status_at
        storage.record_status("oebubun", "ttu", {"state": "online", "boot": 7}, NOW + timedelta(hours=1), retained=True)
        assert storage.get_post("oebubun").status_at == NOW  # type: ignore[union-attr]
        storage.record_status("oebubun", "ttu", {"state": "offline", "boot": 7}, NOW + timedelta(minutes=5))
        post = storage.get_post("oebubun")
        assert post is not None and post.state == "offline" and post.status_at == NOW + timedelta(minutes=5)
        assert [p.post_id for p in storage.posts()] == ["oebubun"]

    def test_report_creates_post_row(self, storage: CenterStorage) -> None:
        storage.ingest([incoming(make_report(), "napan")])
        post = storage.get_post("napan")
        assert post is not None and post.regency == "ttu" and post.last_report_at == NOW

    def test_carried_report_is_stored_under_its_origin_with_a_copy_via_the_carrier(
        self, storage: CenterStorage
    ) -> None:
        report = make_report("KEBAKARAN rumah warga", category="kebakaran").with_changes(post_id="oebubun")
        [result] = storage.ingest([carried(report, "kefa-kota", prev="bukit-01", hops=2, age_s=600)])
        assert result.created and result.wire_report_id == report.report_id
        found = storage.get_report(report.report_id)
        assert found is not None and found.post_id == "oebubun" and found.report == report
        assert found.observed_est == NOW - timedelta(seconds=600)
        [copy] = storage.copies(report.report_id)
        assert (copy.post_id, copy.relay_origin, copy.relay_prev, copy.relay_hops) == (
            "kefa-kota",
            "oebubun",
            "bukit-01",
            2,
        )
        assert copy.carried
        # both posts are known: the carrier was heard, the origin (no uplink of its own) through it
        assert {p.post_id for p in storage.posts()} == {"kefa-kota", "oebubun"}
        assert storage.get_post("oebubun").last_report_at == NOW  # type: ignore[union-attr]
        assert storage.list_reports(ReportFilter(post_id="oebubun"))[0].report_id == report.report_id

    def test_same_report_via_two_carriers_and_direct_is_one_report(self, storage: CenterStorage) -> None:
        report = make_report().with_changes(post_id="oebubun")
        storage.ingest([carried(report, "kefa-kota", prev="bukit-01", hops=2)])
        storage.ingest([carried(report, "napan", prev="oebubun", hops=1, at=NOW + timedelta(seconds=5))])
        storage.ingest([carried(report, "napan", prev="oebubun", hops=1, at=NOW + timedelta(seconds=9))])
        [direct] = storage.ingest([incoming(report, "oebubun", at=NOW + timedelta(seconds=20))])
        assert not direct.created and direct.copies == 3
        assert storage.counts()["reports"] == 1
        copies = {c.post_id: c for c in storage.copies(report.report_id)}
        assert set(copies) == {"kefa-kota", "napan", "oebubun"}
        assert copies["napan"].receipts == 2 and copies["napan"].relay_prev == "oebubun"
        assert not copies["oebubun"].carried
        assert storage.get_report(report.report_id).post_id == "oebubun"  # type: ignore[union-attr]
        routes = storage.relay_routes()
        assert [(r.origin, r.carrier, r.reports, r.max_hops) for r in routes] == [
            ("oebubun", "kefa-kota", 1, 2),
            ("oebubun", "napan", 1, 1),
        ]
        assert routes[1].last_received_at == NOW + timedelta(seconds=9)

    def test_relay_routes_count_reports_per_origin_and_carrier(self, storage: CenterStorage) -> None:
        items = [
            carried(make_report(f"laporan {i}").with_changes(post_id="oebubun"), "napan", prev="oebubun", hops=1)
            for i in range(3)
        ]
        items.append(carried(make_report("lain").with_changes(post_id="bijaepasu"), "napan", prev="oebubun", hops=2))
        storage.ingest(items)
        assert [(r.origin, r.carrier, r.reports) for r in storage.relay_routes()] == [
            ("bijaepasu", "napan", 1),
            ("oebubun", "napan", 3),
        ]

    def test_relay_columns_added_to_an_older_database(self, storage_url: str) -> None:
        """A center database written before carried reports existed gains the copy columns; its rows read
        as copies their posts delivered themselves."""
        from center import schema

        older = schema.MIGRATIONS[:2]
        old = make_report()
        body = json.dumps(old.to_dict())
        original = storage_mod.MIGRATIONS
        storage_mod.MIGRATIONS = older  # the migrations an older release shipped
        try:
            with open_storage(storage_url) as first:
                # what an older center wrote (its own INSERTs: today's would name the new columns)
                first.execute(
                    "INSERT INTO reports (report_id, post_id, origin, category, urgency, severity, mode, msg_type,"
                    " text_raw, body, observed_post_ts, stored_post_ts, received_ts, observed_est_ts, age_s,"
                    " age_source, updated_ts) VALUES (?, 'oebubun', ?, 'lainnya', 'Unknown', 'Unknown', 'actual',"
                    " 'new', ?, ?, ?, ?, ?, ?, 60, 'boot', ?)",
                    (old.report_id, old.origin, old.text_raw, body, *[NOW.timestamp()] * 5),
                )
                first.execute(
                    "INSERT INTO report_copies (report_id, post_id, wire_report_id, first_received_ts,"
                    " last_received_ts, age_s, observed_est_ts) VALUES (?, 'oebubun', ?, ?, ?, 60, ?)",
                    (old.report_id, old.report_id, *[NOW.timestamp()] * 3),
                )
                assert "relay_origin" not in first.query("SELECT * FROM report_copies")[0]
        finally:
            storage_mod.MIGRATIONS = original
        with open_storage(storage_url) as second:
            [report] = second.list_reports()
            [copy] = second.copies(report.report_id)
            assert not copy.carried and copy.relay_prev is None and copy.relay_hops is None
            assert second.relay_routes() == []

    def test_replies_lifecycle(self, storage: CenterStorage) -> None:
        report = make_mesh_report(packet_id=5)
        storage.ingest([incoming(report)])
        reply = storage.create_reply(report.report_id, "Ambulans berangkat 14:05", "sari")
        assert reply.to_node == "!a1b2c3d4" and reply.post_id == "oebubun" and reply.regency == "ttu"
        assert reply.state == "queued"
        assert reply.command() == {
            "cmd_id": reply.cmd_id,
            "type": "reply",
            "report_id": report.report_id,
            "to": "!a1b2c3d4",
            "text": "Ambulans berangkat 14:05",
        }
        assert storage.set_reply_state(reply.cmd_id, "published")
        assert storage.set_reply_state(reply.cmd_id, "delivered")
        assert not storage.set_reply_state(reply.cmd_id, "sent")  # late, out of order: ignored
        assert storage.get_reply(reply.cmd_id).state == "delivered"  # type: ignore[union-attr]
        assert [r.cmd_id for r in storage.replies(report_id=report.report_id)] == [reply.cmd_id]
        assert not storage.set_reply_state("no-such-cmd-id", "sent")

    def test_reply_to_a_carried_report_goes_through_its_carrier(self, storage: CenterStorage) -> None:
        """docs/RELAY.md, "Staff replies over the mesh": no direct copy → the first carrier's cmd topic, with
        the origin post in the command; once the origin's own copy arrives, replies go to it directly."""
        report = make_mesh_report(packet_id=7)  # post oebubun, handset !a1b2c3d4
        storage.ingest([carried(report, "kefa-kota", prev="bukit-01", hops=2)])
        storage.ingest([carried(report, "napan", prev="oebubun", hops=1, at=NOW + timedelta(seconds=5))])
        reply = storage.create_reply(report.report_id, "Ambulans berangkat", "sari")
        assert (reply.post_id, reply.relay_origin, reply.to_node) == ("kefa-kota", "oebubun", "!a1b2c3d4")
        assert reply.command()["origin"] == "oebubun"
        assert storage.get_reply(reply.cmd_id) == reply
        # a text that fits the direct reply limit but not one REPLY packet is refused in words staff read
        long_id = make_report(origin="!a1b2c3d4").with_changes(report_id="t" * 64)
        storage.ingest([carried(long_id, "kefa-kota", prev="bukit-01", hops=2)])
        noise = "".join(chr(0x61 + (i * 7919) % 26) + chr(0x30 + (i * 31) % 10) for i in range(97))
        with pytest.raises(CenterError, match="relay"):
            storage.create_reply("t" * 64, noise, "sari")
        storage.ingest([incoming(report)])  # the origin's own copy, through its own uplink
        direct = storage.create_reply(report.report_id, "ok", "sari")
        assert (direct.post_id, direct.relay_origin) == ("oebubun", None) and "origin" not in direct.command()

    def test_reply_needs_a_handset_report_and_sane_text(self, storage: CenterStorage) -> None:
        typed = make_report(origin="operator:budi")
        storage.ingest([incoming(typed)])
        with pytest.raises(CenterError, match="handset"):
            storage.create_reply(typed.report_id, "ok", "sari")
        mesh = make_mesh_report(packet_id=6)
        storage.ingest([incoming(mesh)])
        with pytest.raises(CenterError, match="195 byte"):
            storage.create_reply(mesh.report_id, "é" * 98, "sari")  # 98 characters, 196 bytes: one packet is 195
        with pytest.raises(CenterError):
            storage.create_reply("tidak-ada-laporan", "ok", "sari")

    def test_observer_called_after_commit(self, storage: CenterStorage) -> None:
        seen: list[str] = []
        storage.add_observer(seen.append)
        storage.ingest([incoming(make_report())])
        storage.record_status("oebubun", "ttu", {"state": "online"}, NOW)
        assert seen == ["reports", "posts"]

    @pytest.mark.parametrize("seed", range(6))
    def test_batched_ingest_matches_the_reference_rules(
        self, storage: CenterStorage, other_storage: CenterStorage, seed: int
    ) -> None:
        """The set-based ingest against :meth:`CenterStorage.ingest_reference` (the rules one item at a time)
        on random batches full of what dedup decides on: resends within a batch and across batches, mesh
        packets under another day's id inside and outside the 36 h window, copies from other posts, carried
        copies.  Same results, same rows in every table."""
        for batch in _random_batches(random.Random(seed)):
            assert storage.ingest(batch) == other_storage.ingest_reference(batch)
        for table, order in (
            ("reports", "report_id"),
            ("report_copies", "report_id, post_id"),
            ("posts", "post_id"),
        ):
            sql = f"SELECT * FROM {table} ORDER BY {order}"
            assert storage.query(sql) == other_storage.query(sql), table
        assert storage.counts()["reports"] > 10  # the workload did create reports, and copies
        assert storage.counts()["copies"] > storage.counts()["reports"]

    def test_concurrent_ingest_of_one_report_from_two_posts(self, storage: CenterStorage, storage_url: str) -> None:
        """Two receivers (two connections) commit copies of one mesh packet at once: one report, two copies."""
        others = [open_storage(storage_url) for _ in range(2)]
        try:
            for round_ in range(10):
                report = make_mesh_report(packet_id=1000 + round_)
                barrier = threading.Barrier(2)
                errors: list[BaseException] = []

                def ingest(
                    store: CenterStorage,
                    post: str,
                    report: Report = report,
                    barrier: threading.Barrier = barrier,
                    errors: list[BaseException] = errors,
                ) -> None:
                    try:
                        barrier.wait()
                        store.ingest([incoming(report.with_changes(post_id=post), post)])
                    except BaseException as exc:
                        errors.append(exc)

                threads = [
                    threading.Thread(target=ingest, args=(s, p)) for s, p in zip(others, ("a", "b"), strict=True)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                assert not errors, errors
                assert storage.get_report(report.report_id).copies == 2  # type: ignore[union-attr]
            assert storage.counts()["reports"] == 10
        finally:
            for s in others:
                s.close()


class TestSqliteStorage(StorageContract):
    @pytest.fixture
    def storage_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/center.db"

    @pytest.fixture
    def storage(self, storage_url: str) -> Iterator[CenterStorage]:
        with open_storage(storage_url) as storage:
            yield storage

    @pytest.fixture
    def other_storage(self, tmp_path: Path) -> Iterator[CenterStorage]:
        with open_storage(f"sqlite:///{tmp_path}/other.db") as storage:
            yield storage

    def test_wal_and_full_sync(self, storage: CenterStorage) -> None:
        assert storage.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"
        assert storage.query("PRAGMA synchronous")[0]["synchronous"] == 2

    def test_reopen_keeps_data_and_migrates_once(self, storage_url: str) -> None:
        with open_storage(storage_url) as first:
            first.ingest([incoming(make_report())])
        with open_storage(storage_url) as second:
            assert second.counts()["reports"] == 1
            names = [r["name"] for r in second.query("SELECT name FROM schema_migrations ORDER BY name")]
            assert names == sorted(m.name for m in storage_mod.MIGRATIONS)
            assert names == [
                "c001_core",
                "c002_relay_copies",
                "c003_receivers",
                "c004_reply_origin",
                "s001_staff",
                "s002_login_failures",
            ]


@pytest.mark.postgres
class TestPostgresStorage(StorageContract):
    @pytest.fixture
    def storage_url(self, pg_url: str) -> str:
        return pg_url

    @pytest.fixture
    def storage(self, storage_url: str) -> Iterator[CenterStorage]:
        with open_storage(storage_url) as storage:
            yield storage

    @pytest.fixture
    def other_storage(self) -> Iterator[CenterStorage]:
        import psycopg

        with (
            fresh_schema(psycopg.connect(pg_dsn(), autocommit=True), pg_dsn(), "t") as url,
            open_storage(url) as storage,
        ):
            yield storage

    def test_two_receivers_record_a_new_posts_first_status_at_once(
        self, storage: CenterStorage, storage_url: str
    ) -> None:
        """Every receiver records every post status (a normal subscription).  Found with three receivers:
        two inserting the same new post collided on its key and one dropped its connection.  Built here by
        construction: the second insert waits on the first's uncommitted row, then finds it."""
        other = open_storage(storage_url)
        errors: list[BaseException] = []

        def second() -> None:
            try:
                other.record_status("napan", "ttu", {"state": "online", "boot": 2}, NOW + timedelta(seconds=1))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=second)
        try:
            with storage.transaction():
                storage.record_status("napan", "ttu", {"state": "online", "boot": 1}, NOW)
                thread.start()
                pid = other._conn.info.backend_pid  # type: ignore[attr-defined]
                waiting = "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = ? AND wait_event_type = 'Lock'"
                with open_storage(storage_url) as watcher:
                    deadline = time.monotonic() + 20
                    while not watcher.query(waiting, (pid,))[0]["n"]:
                        assert time.monotonic() < deadline, "the second insert never waited on the first"
                        time.sleep(0.01)
            thread.join(20)
        finally:
            other.close()
        assert not errors, errors
        post = storage.get_post("napan")
        assert post is not None and post.boot_counter == 2 and post.status_at == NOW + timedelta(seconds=1)

    def test_three_centers_starting_together_on_a_fresh_database(self, storage_url: str) -> None:
        """Found when tried: three ``siaga center run`` on one fresh database, started together — two crashed
        in the migration (``pg_type_typname_nsp_index``).  By construction: the migration lock is held while
        all three reach it, then released; all three start, and each migration is applied once."""
        import psycopg

        holder = psycopg.connect(pg_dsn(), autocommit=True)
        holder.execute("SELECT pg_advisory_lock(%s)", (storage_mod.MIGRATION_LOCK_KEY,))
        opened: list[CenterStorage] = []
        errors: list[BaseException] = []

        def start() -> None:
            try:
                opened.append(open_storage(storage_url))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(3)]
        try:
            for t in threads:
                t.start()
            waiting = (
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory'"
                " AND query LIKE 'SELECT pg_advisory_xact_lock(%%'"
            )
            deadline = time.monotonic() + 20
            while holder.execute(waiting).fetchone()[0] < 3:  # type: ignore[index]
                assert time.monotonic() < deadline, "the centers did not wait for the migration lock"
                time.sleep(0.01)
            holder.execute("SELECT pg_advisory_unlock(%s)", (storage_mod.MIGRATION_LOCK_KEY,))
            for t in threads:
                t.join(30)
        finally:
            holder.close()
            for s in opened:
                s.close()
        assert not errors, errors
        assert len(opened) == 3
        with open_storage(storage_url) as storage:
            names = [r["name"] for r in storage.query("SELECT name FROM schema_migrations ORDER BY name")]
        assert names == sorted(m.name for m in storage_mod.MIGRATIONS)

    def test_password_not_in_connection_error(self) -> None:
        with pytest.raises(CenterError) as info:
            open_storage("postgresql://siaga:rahasia-sekali@127.0.0.1:1/none?connect_timeout=1")
        assert "rahasia-sekali" not in str(info.value)


def _random_batches(rng: random.Random) -> list[list[IncomingReport]]:
    """Batches drawn with repetition from a small pool, so that every dedup rule fires often."""
    posts = ["oebubun", "napan", "kefa-kota"]
    pool: list[Report] = [make_report(f"laporan {i}", post_id="oebubun") for i in range(4)]
    for node in (0xA1B2C3D4, 0x0BADCAFE):
        for packet in (7, 8, 9):
            base = make_mesh_report(node, packet)
            pool.append(base)
            for day in (27, 29):  # a post whose clock put it on another UTC day
                when = datetime(2026, 11, day, 12, 0, tzinfo=UTC)
                pool.append(base.with_changes(report_id=mesh_report_id(node, packet, when)))
    batches = []
    for _ in range(25):
        batch = []
        for _ in range(rng.randint(1, 8)):
            report = rng.choice(pool)
            # hours apart: inside or outside the 36 h window; odd seconds: no two candidates equally near
            at = NOW + timedelta(hours=rng.choice((0, 2, 20, 40, 60, 80)), seconds=rng.randint(0, 3600))
            age_s = rng.choice((5.0, 600.0, 7200.0)) + rng.random()
            if rng.random() < 0.2:
                origin = report.with_changes(post_id=rng.choice(posts))
                carrier = rng.choice([p for p in posts if p != origin.post_id])
                batch.append(carried(origin, carrier, prev=origin.post_id, hops=rng.randint(1, 3), at=at, age_s=age_s))
            else:
                batch.append(incoming(report, rng.choice(posts), at=at, age_s=age_s))
        batches.append(batch)
    return batches


def test_unknown_database_url() -> None:
    with pytest.raises(CenterError, match="sqlite"):
        open_storage("mysql://x")
