"""Custody engines (relay/engine.py) with real Store files, joined by an in-memory mesh (tests/relay_mesh.py)
on one fake clock: chain, diamond, duplicates, loss, a restart at every custody step, the hop limit, the
airtime cap.  Deterministic: faults land by construction (a hook drops the packet or restarts the node at
that step), and time only moves when every engine has handled everything in front of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.engine import RelaySettings
from siaga.errors import RadioError
from sync import compact as codec
from tests.carried import tamper_text
from tests.relay_mesh import SECRET, Mesh
from tests.reports import make_mesh_report


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(tmp_path)
    yield m
    m.close()


def chain(mesh: Mesh, loss: float = 0.0) -> None:
    mesh.add("a")
    mesh.add("b")
    mesh.add("c", uplink=True)
    mesh.link("a", "b", loss)
    mesh.link("b", "c", loss)


def put_reports(mesh: Mesh, post: str, n: int, start: int = 1) -> list[str]:
    ids = []
    for i in range(start, start + n):
        report = make_mesh_report(packet_id=i, post_id=post, text_raw=f"KEBAKARAN rumah warga dusun {i}")
        mesh.nodes[post].store.put(report)
        ids.append(report.report_id)
    mesh.nodes[post].engine.wake()
    return ids


def all_home(mesh: Mesh, origin: str, ids: list[str]) -> bool:
    """Every report at the center, and the center's ack back at the origin (delivered there)."""
    store = mesh.nodes[origin].store
    settled = all(n.engine.idle() and n.store.relay_summary()["center_acks_owed"] == 0 for n in mesh.nodes.values())
    return (
        settled
        and all(mesh.center_arrivals[i] >= 1 for i in ids)
        and all((r := store.get(i)) is not None and r.state == "delivered" for i in ids)
    )


def test_a_chain_of_three_delivers_every_report_once_and_the_center_ack_walks_back(mesh: Mesh) -> None:
    chain(mesh)
    ids = put_reports(mesh, "a", 12)
    assert mesh.run_until(lambda: all_home(mesh, "a", ids), 3600)
    assert all(mesh.center_arrivals[i] == 1 for i in ids), mesh.center_arrivals
    assert sorted(mesh.nodes["a"].delivered) == sorted(ids)  # the origin's receipts
    b = mesh.nodes["b"].store
    assert all(b.get(i).state == "delivered" and b.get(i).carried for i in ids)  # type: ignore[union-attr]
    assert mesh.nodes["b"].delivered == []  # a carrier never gets receipts for others' reports
    # the carried body is the report plus where it came from; the center verified the origin's tag
    row = mesh.nodes["c"].store.get(ids[0])
    assert row is not None and row.report.post_id == "a"
    # CACKs are batched: fewer CACK packets than reports sent
    by_type = {t: sum(1 for s in mesh.sent if s[3] == t) for t in (1, 2, 4)}
    assert by_type[2] < by_type[1], by_type
    assert mesh.run_until(
        lambda: all(n.store.relay_summary()["center_acks_owed"] == 0 for n in mesh.nodes.values()), 600
    )


def test_a_lossy_chain_still_delivers_everything_exactly_once(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path, seed=7)
    try:
        chain(mesh, loss=0.3)
        ids = put_reports(mesh, "a", 10)
        assert mesh.run_until(lambda: all_home(mesh, "a", ids), 6 * 3600)
        assert all(mesh.center_arrivals[i] == 1 for i in ids), mesh.center_arrivals
        assert sum(1 for s in mesh.sent if s[3] == 1) > 20  # retries happened: the loss landed
    finally:
        mesh.close()


def test_a_diamond_carries_one_copy(mesh: Mesh) -> None:
    for name in ("a", "b", "c"):
        mesh.add(name)
    mesh.add("d", uplink=True)
    for x, y in (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")):
        mesh.link(x, y)
    ids = put_reports(mesh, "a", 8)
    assert mesh.run_until(lambda: all_home(mesh, "a", ids), 3600)
    assert all(mesh.center_arrivals[i] == 1 for i in ids)
    held = [n for n in ("b", "c") for i in ids if mesh.nodes[n].store.get(i) is not None]
    assert len(held) == len(ids), "each report went through one carrier only"


def test_a_duplicate_is_redundant_and_stored_once(mesh: Mesh) -> None:
    chain(mesh)
    mesh.run_until(lambda: "b" in {n.post_id for n in mesh.nodes["a"].engine.routes.neighbours.values()}, 300)
    report = make_mesh_report(packet_id=99, post_id="a")
    packet = codec.encode_report(codec.from_report(report, age_s=3), codec.derive_post_key(SECRET, "a"), xmit=41)
    b = mesh.nodes["b"]
    b.engine.feed(mesh.nodes["a"].num, packet)
    b.engine.feed(mesh.nodes["a"].num, codec.with_xmit(packet, 42))
    b.engine.step(mesh.t)
    assert b.engine.counters["rx.report.accepted"] == 1 and b.engine.counters["rx.report.redundant"] == 1
    stored = b.store.get(report.report_id)
    assert stored is not None and stored.copies == 2 and b.store.counts()["pending"] + b.store.counts()["sent"] == 1


def test_a_report_the_center_refused_is_not_seen_for_another_packet_of_it(mesh: Mesh) -> None:
    """An altered copy refused at the center (relay_tag) must not make the genuine one REDUNDANT: its
    sender would forget it while nobody holds it.  The same refused bytes again stay REDUNDANT."""
    chain(mesh)
    report = make_mesh_report(packet_id=77, post_id="a", text_raw="SOS longsor tutup jalan")
    genuine = codec.encode_report(codec.from_report(report, age_s=3), codec.derive_post_key(SECRET, "a"))
    forged = codec.with_xmit(tamper_text(genuine, "AMAN semua baik"), 5)
    c = mesh.nodes["c"].store
    b_num = mesh.nodes["b"].num

    def receive(payload: bytes) -> int:
        return c.relay_receive(payload, codec.parse_report(payload), b_num, "b", 16).outcome

    assert receive(forged) == codec.ACCEPTED
    assert c.reject(report.report_id, "relay_tag: not tagged by post 'a'")
    assert receive(codec.with_xmit(forged, 6)) == codec.REDUNDANT  # the refused packet: refused again
    assert receive(codec.with_xmit(genuine, 7)) == codec.ACCEPTED
    row = c.get(report.report_id)
    assert row is not None and row.state == "pending" and row.report.text_raw == "SOS longsor tutup jalan"
    assert row.reject_reason is None and row.carried
    assert receive(codec.with_xmit(genuine, 8)) == codec.REDUNDANT
    assert c.counts()["pending"] == 1


def test_a_beacon_the_radio_could_not_send_is_tried_again_soon(tmp_path: Path) -> None:
    """At a start the engine runs before the radio has connected: its first beacon fails, and the next must
    not wait a whole beacon_s (10 min by default), or no neighbour routes through the post meanwhile."""
    mesh = Mesh(tmp_path, settings=RelaySettings(beacon_s=600.0, retry_s=10.0, cack_delay_s=2.0))
    try:
        chain(mesh)
        c = mesh.nodes["c"].engine
        real = c.radio
        failed: list[bytes] = []

        class NotConnectedYet:
            def send_relay(self, dest: int | None, payload: bytes) -> None:
                if not failed:
                    failed.append(payload)
                    raise RadioError("radio not connected")
                real.send_relay(dest, payload)

        c.radio = NotConnectedYet()
        assert mesh.run_until(lambda: mesh.nodes["b"].engine.routes.by_post(mesh.nodes["c"].num) == "c", 60)
        assert failed and codec.message_type(failed[0]) == codec.TYPE_BEACON
    finally:
        mesh.close()


@pytest.mark.parametrize("step", ["before_commit", "after_commit_before_cack", "after_cack_before_sender_records"])
def test_a_restart_at_each_custody_step_loses_nothing_and_duplicates_nothing(mesh: Mesh, step: str) -> None:
    chain(mesh)
    ids = put_reports(mesh, "a", 5)
    fired: list[str] = []

    def hook(src: str, dst: str, payload: bytes) -> bool:
        if fired:
            return True
        if step == "before_commit" and payload[1] == codec.TYPE_REPORT and dst == "b":
            fired.append(step)
            mesh.restart_after_step.add("b")
            return False  # the carrier died with the packet in its radio's queue: nothing committed
        if step == "after_commit_before_cack" and payload[1] == codec.TYPE_REPORT and dst == "b":
            fired.append(step)
            mesh.restart_after_step.add("b")  # handled (committed), then killed before its CACK went out
            return True
        if step == "after_cack_before_sender_records" and payload[1] == codec.TYPE_CUSTODY_ACK and dst == "a":
            fired.append(step)
            mesh.restart_after_step.add("a")  # the CACK arrives as the sender dies
            return False
        return True

    mesh.hook = hook
    assert mesh.run_until(lambda: all_home(mesh, "a", ids), 4 * 3600)
    assert fired == [step]
    assert sum(n.restarts for n in mesh.nodes.values()) == 1
    assert all(mesh.center_arrivals[i] == 1 for i in ids), mesh.center_arrivals
    for name in ("b", "c"):
        assert sum(mesh.nodes[name].store.get(i) is not None for i in ids) == len(ids)


# ---------------------------------------------------------------------------- staff replies walking back
CMD_ID = "0c6f6b9e-1f2a-4c1b-9a70-3b8d2f1e0a11"
REPLY_TEXT = "Ambulans berangkat, tunggu di jalan utama"


def reply_home(mesh: Mesh) -> bool:
    settled = all(n.engine.idle() and n.store.relay_summary()["replies_owed"] == 0 for n in mesh.nodes.values())
    return settled and len(mesh.nodes["a"].replies) >= 1


def reply_state(mesh: Mesh, name: str) -> str | None:
    rows = mesh.nodes[name].store._read("SELECT state FROM relay_replies WHERE cmd_id = ?", (CMD_ID,))
    return rows[0]["state"] if rows else None


def send_reply_from_carrier(mesh: Mesh) -> str:
    """A report of a carried to c's uplink, then the center's reply handed to c (what the daemon does with
    a cmd naming another origin)."""
    chain(mesh)
    [rid] = put_reports(mesh, "a", 1)
    assert mesh.run_until(lambda: all_home(mesh, "a", [rid]), 3600)
    assert mesh.nodes["c"].store.relay_reply_put(CMD_ID, "a", rid, REPLY_TEXT, own=False) == "pending"
    mesh.nodes["c"].engine.wake()
    return rid


def test_a_staff_reply_walks_back_a_chain_of_three_to_the_origin_once(mesh: Mesh) -> None:
    rid = send_reply_from_carrier(mesh)
    assert mesh.run_until(lambda: reply_home(mesh), 3600)
    assert mesh.nodes["a"].replies == [(CMD_ID, rid, REPLY_TEXT)]
    assert [reply_state(mesh, n) for n in ("a", "b", "c")] == ["handed", "passed", "passed"]
    assert [s[1:4] for s in mesh.sent if s[3] == codec.TYPE_REPLY] == [("c", "b", 5), ("b", "a", 5)]
    # the center's cmd redelivered to the carrier: the row is there, nothing is sent again
    assert mesh.nodes["c"].store.relay_reply_put(CMD_ID, "a", rid, REPLY_TEXT, own=False) == "passed"
    # a copy of the REPLY heard again at the origin: REDUNDANT, never a second DM to the handset
    again = codec.encode_reply(codec.Reply(4242, "a", rid, CMD_ID, REPLY_TEXT))
    mesh.nodes["a"].engine.feed(mesh.nodes["b"].num, again)
    assert mesh.run_until(lambda: mesh.nodes["a"].engine.idle(), 60)
    assert mesh.nodes["a"].replies == [(CMD_ID, rid, REPLY_TEXT)]
    assert mesh.nodes["a"].engine.counters.get("rx.reply.handed") == 1


def test_a_reply_for_a_report_not_held_fails_loudly_at_that_hop(mesh: Mesh) -> None:
    chain(mesh)
    assert mesh.nodes["c"].store.relay_reply_put(CMD_ID, "a", "m10000001-00000001-20261128", "ok", own=False) == (
        "failed"
    )
    assert mesh.nodes["c"].store.relay_summary()["replies_owed"] == 0


@pytest.mark.parametrize(
    "step", ["hop_before_commit", "hop_after_commit_before_cack", "carrier_cack_lost", "origin_after_hand_before_cack"]
)
def test_a_reply_survives_a_restart_at_each_step(mesh: Mesh, step: str) -> None:
    rid = send_reply_from_carrier(mesh)
    fired: list[str] = []

    def hook(src: str, dst: str, payload: bytes) -> bool:
        if fired:
            return True
        if step == "hop_before_commit" and payload[1] == codec.TYPE_REPLY and dst == "b":
            fired.append(step)
            mesh.restart_after_step.add("b")
            return False  # b died with the packet in its radio: nothing committed
        if step == "hop_after_commit_before_cack" and payload[1] == codec.TYPE_REPLY and dst == "b":
            fired.append(step)
            mesh.restart_after_step.add("b")  # committed, then killed before its CACK went out
            return True
        if step == "carrier_cack_lost" and payload[1] == codec.TYPE_CUSTODY_ACK and (src, dst) == ("b", "c"):
            fired.append(step)
            mesh.restart_after_step.add("c")  # the CACK arrives as the carrier dies
            return False
        if step == "origin_after_hand_before_cack" and payload[1] == codec.TYPE_REPLY and dst == "a":
            fired.append(step)
            mesh.restart_after_step.add("a")  # handed to the radio and recorded, killed before its CACK
            return True
        return True

    mesh.hook = hook
    assert mesh.run_until(lambda: reply_home(mesh), 4 * 3600)
    assert fired == [step]
    assert sum(n.restarts for n in mesh.nodes.values()) == 1
    assert mesh.nodes["a"].replies == [(CMD_ID, rid, REPLY_TEXT)]  # once, whatever was resent
    assert [reply_state(mesh, n) for n in ("a", "b", "c")] == ["handed", "passed", "passed"]


def test_the_hop_limit_parks_the_report_and_raises_the_alarm(mesh: Mesh, caplog: pytest.LogCaptureFixture) -> None:
    chain(mesh)
    mesh.run_until(lambda: len(mesh.nodes["b"].engine.routes.neighbours) == 2, 300)
    report = make_mesh_report(packet_id=7, post_id="z")
    packet = codec.encode_report(
        codec.from_report(report, age_s=3), codec.derive_post_key(SECRET, "z"), hops=15, xmit=5
    )
    b = mesh.nodes["b"]
    b.engine.feed(mesh.nodes["a"].num, packet)
    mesh.run_until(lambda: False, 600)
    assert "RELAY ALARM" in caplog.text
    assert b.store.relay_summary()["parked"] == 1 and b.engine.counters["parked"] == 1
    assert b.store.get(report.report_id).state == "pending"  # type: ignore[union-attr]
    assert mesh.center_arrivals[report.report_id] == 0  # never sent on although c is right there


def test_a_report_is_held_without_a_strictly_better_neighbour_and_moves_when_one_appears(mesh: Mesh) -> None:
    mesh.add("a")
    mesh.add("b")
    mesh.add("c", uplink=True)
    mesh.link("a", "b")
    ids = put_reports(mesh, "a", 3)
    mesh.run_until(lambda: False, 600)
    assert mesh.nodes["a"].store.counts()["pending"] == 3  # b has no route either: held, nothing sent
    assert not any(s[3] == codec.TYPE_REPORT for s in mesh.sent)
    mesh.link("b", "c")  # the hill relay comes up
    assert mesh.run_until(lambda: all_home(mesh, "a", ids), 3600)


def test_a_cut_link_heals_and_neighbours_expire(mesh: Mesh) -> None:
    chain(mesh)
    mesh.run_until(lambda: mesh.nodes["a"].engine.routes.metric(False) == 2, 300)
    mesh.cut.add(frozenset(("b", "c")))
    ids = put_reports(mesh, "a", 4)
    mesh.run_until(lambda: False, 4 * mesh.settings.beacon_s)
    assert not mesh.nodes["b"].engine.routes.neighbours.get(mesh.nodes["c"].num)  # c expired at b
    assert all(mesh.center_arrivals[i] == 0 for i in ids)
    mesh.cut.clear()
    assert mesh.run_until(lambda: all_home(mesh, "a", ids), 3600)
    assert all(mesh.center_arrivals[i] == 1 for i in ids)


def test_a_lost_uplink_does_not_count_metrics_up_nor_send_reports_back_down_the_chain(mesh: Mesh) -> None:
    """Split horizon with poisoned reverse (relay/routing.py): when b loses c, a's beacon says it routes
    through b, so b does not take a's metric as a way out; both go to "no route" at once instead of counting
    each other up (2, 4, 6 …), and b keeps its reports instead of handing them back to a, where the
    never-back rule would strand them once c returns (seen by bench/relay_mesh.py at 30 % loss)."""
    chain(mesh)
    mesh.run_until(lambda: mesh.nodes["a"].engine.routes.metric(False) == 2, 300)
    mesh.cut.add(frozenset(("b", "c")))
    ids = put_reports(mesh, "b", 5)
    seen: set[int] = set()

    def metrics_settled() -> bool:
        a = mesh.nodes["a"].engine.routes.metric(False)
        b = mesh.nodes["b"].engine.routes.metric(False)
        seen.update((a, b))
        return a == b == codec.METRIC_NONE

    assert mesh.run_until(metrics_settled, 6 * mesh.settings.beacon_s)
    assert seen <= {1, 2, codec.METRIC_NONE}, f"metrics counted up: {sorted(seen)}"
    mesh.run_until(lambda: False, 2 * mesh.settings.beacon_s)
    assert mesh.nodes["a"].store.counts()["pending"] == 0  # nothing was handed back down to a
    assert mesh.nodes["b"].store.counts()["pending"] == 5
    mesh.cut.clear()
    assert mesh.run_until(lambda: all_home(mesh, "b", ids), 3600)
    assert all(mesh.center_arrivals[i] == 1 for i in ids)


def test_the_airtime_cap_is_kept_and_everything_still_arrives(tmp_path: Path) -> None:
    cap = 0.004  # 14.4 s of airtime per hour: about a dozen reports
    mesh = Mesh(tmp_path, settings=RelaySettings(beacon_s=600.0, retry_s=10.0, cack_delay_s=2.0, airtime_cap=cap))
    try:
        chain(mesh)
        ids = put_reports(mesh, "a", 30)
        assert mesh.run_until(lambda: all_home(mesh, "a", ids), 12 * 3600)
        limit_ms = cap * 3600 * 1000
        for name in ("a", "b"):
            sends = [(t, ms) for t, src, _d, kind, ms in mesh.sent if src == name and kind != codec.TYPE_CUSTODY_ACK]
            for t0, _ms in sends:
                window = sum(ms for t, ms in sends if t0 <= t < t0 + 3600)
                assert window <= limit_ms + 1e-6, (name, t0, window)
        assert mesh.t > 3600, "the cap made it take more than an hour"
    finally:
        mesh.close()


def test_status_shows_neighbours_route_held_and_parked(mesh: Mesh, tmp_path: Path) -> None:
    from edge.status import post_status, render_status
    from siaga import config

    chain(mesh)
    assert mesh.run_until(lambda: mesh.nodes["a"].engine.routes.metric(False) == 2, 300)
    mesh.cut.add(frozenset(("b", "c")))
    put_reports(mesh, "a", 2)
    assert mesh.run_until(lambda: mesh.nodes["b"].store.relay_summary()["held"] == 2, 600)
    key = tmp_path / "b.key"
    key.write_text("00" * 32)
    key.chmod(0o600)
    cfg = config.from_dict(
        {"node": {"post_id": "b", "data_dir": str(tmp_path / "rt")}, "relay": {"enabled": True, "key_file": str(key)}}
    )
    (tmp_path / "rt").mkdir()
    from edge.status import write_runtime

    write_runtime(cfg, {"radio": "connected", "relay": mesh.nodes["b"].engine.snapshot()})
    status = post_status(cfg, mesh.nodes["b"].store)
    text = render_status(status)
    assert status["relay"]["held"] == 2
    assert "Laporan pos lain dititipkan di sini: 2" in text, text
    assert status["relay"]["live"]["neighbours"] and "Tetangga: " in text and "lompatan" in text, text
    assert "relay_no_route" in status["attention"] or "lewat" in text
