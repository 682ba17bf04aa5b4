"""Property test: any interleaving of put / copy / claim / sent / ack / release / stale release /
retention / reopen / reboot never loses a pending report and never duplicates one."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge.store import Store
from siaga.report import CATEGORIES
from tests.fakes import FakeClock
from tests.reports import make_mesh_report, make_report


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="siaga-prop-"))
        self.clock = FakeClock()
        self.store = Store.open(self.dir / "post.db", clock=self.clock)
        # the model: report_id -> expected state; deleted ids are remembered to check retention
        self.model: dict[str, str] = {}
        self.delivered_at: dict[str, float] = {}
        self.copies: dict[str, int] = {}
        self.reports: dict[str, object] = {}
        self.claimed: set[str] = set()
        self.deleted: set[str] = set()

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(category=st.sampled_from(CATEGORIES), mesh=st.booleans())
    def put_new(self, category: str, mesh: bool) -> None:
        report = make_mesh_report(category=category) if mesh else make_report(category=category)
        result = self.store.put(report)
        assert result.created
        self.model[report.report_id] = "pending"
        self.copies[report.report_id] = 1
        self.reports[report.report_id] = report

    @precondition(lambda self: any(rid not in self.deleted for rid in self.model))
    @rule(data=st.data())
    def put_copy(self, data: st.DataObject) -> None:
        live = sorted(rid for rid in self.model if rid not in self.deleted)
        rid = data.draw(st.sampled_from(live))
        result = self.store.put(self.reports[rid])  # type: ignore[arg-type]
        assert not result.created and result.report_id == rid
        self.copies[rid] += 1

    @rule(limit=st.integers(1, 5))
    def claim(self, limit: int) -> None:
        rows = self.store.claim(limit)
        for row in rows:
            assert self.model[row.report_id] == "pending"
            assert row.report_id not in self.claimed, "a report was claimed twice"
            self.claimed.add(row.report_id)
        # nothing pending and unclaimed was skipped while a later one was given
        if len(rows) < limit:
            unclaimed = {r for r, s in self.model.items() if s == "pending"} - self.claimed
            assert not unclaimed

    @precondition(lambda self: bool(self.claimed))
    @rule(data=st.data())
    def mark_sent(self, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from(sorted(self.claimed)), min_size=1, unique=True))
        self.store.mark_sent(ids)
        for rid in ids:
            self.model[rid] = "sent"
            self.claimed.discard(rid)

    @precondition(lambda self: bool(self.claimed))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from(sorted(self.claimed)), min_size=1, unique=True))
        self.store.release(ids)
        self.claimed.difference_update(ids)

    @precondition(lambda self: any(s in ("pending", "sent") for s in self.model.values()))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        candidates = sorted(r for r, s in self.model.items() if s in ("pending", "sent"))
        ids = data.draw(st.lists(st.sampled_from(candidates), min_size=1, unique=True))
        # PUBACKs of the same turn ride in the ack's commit (sync/uplink.py): some of the claimed ones
        sent = data.draw(st.lists(st.sampled_from(sorted(self.claimed)), unique=True)) if self.claimed else []
        changed = self.store.ack(ids, sent=sent)
        assert sorted(changed) == sorted(ids)
        for rid in sent:
            if rid not in ids:
                self.model[rid] = "sent"
            self.claimed.discard(rid)
        for rid in ids:
            self.model[rid] = "delivered"
            self.delivered_at[rid] = self.clock.now().timestamp()
            self.claimed.discard(rid)

    @rule(seconds=st.sampled_from([1, 30, 600, 4000, 40 * 86400]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def release_stale(self) -> None:
        self.store.release_stale(claim_timeout_s=300, sent_timeout_s=3600)
        # what the store released, the model releases: recompute from the store itself
        for rid in list(self.claimed):
            row = self.store.get(rid)
            assert row is not None
            if not row.claimed:
                self.claimed.discard(rid)
        for rid, state in self.model.items():
            if state == "sent":
                row = self.store.get(rid)
                assert row is not None and row.state in ("sent", "pending")
                self.model[rid] = row.state

    @rule()
    def retention(self) -> None:
        self.store.retention(30)
        cutoff = self.clock.now().timestamp() - 30 * 86400
        for rid, state in self.model.items():
            if state == "delivered" and self.delivered_at[rid] < cutoff:
                self.deleted.add(rid)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = Store.open(self.dir / "post.db", clock=self.clock)
        self.claimed.clear()  # claims belong to the process that made them (a new one starts with none)

    @rule()
    def reboot(self) -> None:
        self.clock.reboot()

    @invariant()
    def nothing_lost_nothing_duplicated(self) -> None:
        rows = self.store.list_reports(limit=100_000)
        ids = [r.report_id for r in rows]
        assert len(ids) == len(set(ids)), "a report is stored twice"
        stored = {r.report_id: r for r in rows}
        for rid, state in self.model.items():
            if rid in self.deleted:
                assert rid not in stored
                continue
            assert rid in stored, f"report {rid} ({state}) was lost"
            assert stored[rid].state == state
            assert stored[rid].copies == self.copies[rid]
        assert set(stored) <= set(self.model)


StoreMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestStoreProperties = StoreMachine.TestCase
