"""End to end over a real Mosquitto: post store → broker → center → commit → ack → post delivered.

Also: time correction for a post whose clock is years off, replies and their delivery state, presence
(status, Last Will), hostile payloads, broker URL order, kernel network-change wake-ups, and the whole chain
with the post daemon and the simulated Meshtastic device (both receipts at the handset).
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devkit.harness.mosquitto import Mosquitto, free_port
from devkit.harness.synctools import (
    Center,
    Post,
    center_report_ids,
    make_reports,
    post_config,
    wait_for,
)
from edge.store import Store
from siaga.clock import OffsetClock, SystemClock
from siaga.config import TlsMqttConfig
from siaga.report import Report, new_report_id, utcnow
from sync import protocol
from sync.mqtt import publish_once
from sync.netwatch import NetWatcher
from tests.radio_rig import (
    HANDSET,
    acked_receipts,
    handset_post_config,
    make_device,
    running_post,
    wait_report,
    wait_until,
)

YEARS = 6 * 365 * 86400


@pytest.fixture
def post(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Post]:
    p = Post(post_config(tmp_path / "post", [mosquitto.url]))
    try:
        yield p
    finally:
        p.stop()


def test_drain_delivers_every_report_exactly_once(post: Post, center: Center) -> None:
    ids = post.put(make_reports(300))
    post.start()
    assert post.wait_delivered(300, 15), post.store.counts()
    assert post.store.counts() == {"pending": 0, "sent": 0, "delivered": 300, "rejected": 0}
    assert sorted(center_report_ids(center.storage)) == sorted(ids)
    assert center.storage.counts()["reports"] == 300
    assert post.events.wait(lambda: len(post.events.delivered) == 300, 5)
    assert sorted(post.events.delivered) == sorted(ids)
    # batched and pipelined: far fewer messages than reports
    assert post.uplink.counters["published_batches"] < 60
    # a report stored while connected goes at once
    [late] = post.put(make_reports(1))
    assert post.wait_delivered(301, 5)
    assert center.storage.get_report(late) is not None


def test_life_safety_reports_drain_first(post: Post, center: Center) -> None:
    now = utcnow()

    def report(category: str, i: int) -> Report:
        return Report(
            new_report_id(), "oebubun", "operator:budi", "manual", f"{category} {i}", now, now, category=category
        )

    chatter = post.put(report("lainnya", i) for i in range(100))
    sos = post.put([report("sos", 0)])
    post.start()
    assert post.wait_delivered(101, 15)
    order = post.events.delivered
    assert order.index(sos[0]) < order.index(chatter[0])


def test_status_presence_and_last_will(post: Post, center: Center) -> None:
    post.uplink.set_post_state(radio="connected", battery={"voltage": 12.4})
    post.start()
    assert wait_for(lambda: (p := center.storage.get_post("oebubun")) is not None and p.state == "online", 10)
    presence = center.storage.get_post("oebubun")
    assert presence is not None
    assert presence.boot_counter == 1 and presence.regency == "ttu"
    assert presence.status["radio"] == "connected" and presence.status["battery"] == {"voltage": 12.4}
    assert presence.status["queue"]["pending"] == 0 and presence.status["center"] in ("online", None)
    post.uplink.stop()  # a clean stop publishes the Last Will: offline
    assert wait_for(lambda: center.storage.get_post("oebubun").state == "offline", 10)  # type: ignore[union-attr]


def test_post_clock_off_by_years_gets_true_time(tmp_path: Path, mosquitto: Mosquitto, center: Center) -> None:
    clock = OffsetClock(offset_s=-YEARS)
    post = Post(post_config(tmp_path / "post", [mosquitto.url]), clock=clock)
    try:
        wrong_now = clock.now()
        report = Report(new_report_id(), "oebubun", "!a1b2c3d4", "manual", "BANJIR", wrong_now, wrong_now)
        post.put([report])
        true_now = datetime.now(UTC)
        post.start()
        assert post.wait_delivered(1, 10)
        found = center.storage.get_report(report.report_id)
        assert found is not None
        assert found.report.observed_at.year <= true_now.year - 5  # what the post believed
        assert found.age_source == "boot"
        assert abs((found.observed_est - true_now).total_seconds()) < 5
    finally:
        post.stop()


class _EarlierBoot(SystemClock):
    """The post ten minutes ago, before a reboot (another boot id)."""

    def now(self) -> datetime:
        return datetime.now(UTC) - timedelta(minutes=10)

    def boot_id(self) -> str:
        return "an-earlier-boot"


def test_report_stored_before_a_reboot_uses_wall_age(tmp_path: Path, mosquitto: Mosquitto, center: Center) -> None:
    cfg = post_config(tmp_path / "post", [mosquitto.url])
    earlier = _EarlierBoot()
    stored_at = earlier.now()
    with Store.open(cfg.store_path, clock=earlier) as before:
        report = Report(new_report_id(), "oebubun", "!a1b2c3d4", "manual", "LONGSOR", stored_at, stored_at)
        before.put(report)
    post = Post(cfg).start()
    try:
        assert post.wait_delivered(1, 10)
        found = center.storage.get_report(report.report_id)
        assert found is not None and found.age_source == "wall"
        assert abs((found.observed_est - stored_at).total_seconds()) < 5
    finally:
        post.stop()


def test_reply_reaches_the_post_and_its_state_comes_back(post: Post, center: Center) -> None:
    [rid] = post.put(make_reports(1))
    post.start()
    assert post.wait_delivered(1, 10)
    reply = center.service.send_reply(rid, "Ambulans berangkat 14:05", "sari")
    assert post.events.wait(lambda: len(post.events.commands) == 1, 10)
    assert post.events.commands[0] == reply.command()
    assert wait_for(lambda: center.storage.get_reply(reply.cmd_id).state == "received", 10)  # type: ignore[union-attr]
    post.uplink.publish_reply_state(reply.cmd_id, rid, "sent")
    post.uplink.publish_reply_state(reply.cmd_id, rid, "delivered")
    assert wait_for(lambda: center.storage.get_reply(reply.cmd_id).state == "delivered", 10)  # type: ignore[union-attr]


def test_reply_published_while_post_offline_arrives_later(post: Post, center: Center) -> None:
    [rid] = post.put(make_reports(1))
    post.start()
    assert post.wait_delivered(1, 10)
    post.uplink.stop()
    reply = center.service.send_reply(rid, "Tim SAR menuju lokasi", "sari")
    assert wait_for(lambda: center.storage.get_reply(reply.cmd_id).state == "published", 10)  # type: ignore[union-attr]
    # the post comes back: its persistent session at the broker held the command
    post.uplink = type(post.uplink)(post.cfg, post.store, clock=post.clock, events=post.events)
    post.start()
    assert post.events.wait(lambda: len(post.events.commands) == 1, 10)


def test_cli_reports_and_reply(tmp_path: Path, post: Post, center: Center, mosquitto: Mosquitto, run_siaga) -> None:
    [rid] = post.put(make_reports(1))
    post.start()
    assert post.wait_delivered(1, 10)
    conf = tmp_path / "center.toml"
    conf.write_text(
        f'[center]\ndb = "sqlite:///{tmp_path}/center.db"\n[center.mqtt]\nurl = "{mosquitto.url}"\n', encoding="utf-8"
    )
    listed = run_siaga("center", "reports", "--json", config=conf)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["report_id"] == rid and row["post_id"] == "oebubun" and row["copies"] == 1
    assert {"origin", "category", "text_raw", "received_at", "observed_est", "status"} <= set(row)
    sent = run_siaga("center", "reply", rid, "Ambulans berangkat", "--by", "sari", config=conf)
    assert sent.returncode == 0, sent.stderr
    assert "terkirim" in sent.stdout
    assert post.events.wait(lambda: len(post.events.commands) == 1, 10)
    assert post.events.commands[0]["text"] == "Ambulans berangkat"
    missing = run_siaga("center", "reply", "tidak-ada-laporan", "halo", config=conf)
    assert missing.returncode == 1 and "tidak ditemukan" in missing.stderr


def test_hostile_payloads_are_counted_and_the_receiver_keeps_going(
    post: Post,
    center: Center,
    mosquitto: Mosquitto,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = TlsMqttConfig(urls=(mosquitto.url,))
    report_topic = protocol.topic("ttu", "oebubun", "report")
    good_report = make_reports(1, post_id="napan")[0]
    spoofed = protocol.encode_report_batches(
        "napan", [protocol.WireReport(good_report, 1.0, "boot")], sent_at=utcnow(), max_bytes=4096
    )[0].payload
    hostile = [
        b"{not json",
        b"{" + b" " * (10 * 1024 * 1024) + b"}",
        b"[" * 50_000 + b"]" * 50_000,
        json.dumps({"v": 99, "type": "reports"}).encode(),
        json.dumps({"v": 1, "type": "reports", "post_id": 5, "reports": "x"}).encode(),
        spoofed,  # napan's report published on oebubun's topic
    ]
    caplog.set_level(logging.WARNING, logger="sync.receiver")
    for payload in hostile:
        publish_once(settings, report_topic, payload, client_id="attacker")
    publish_once(settings, "112/v1/ttu/oebubun/status", b"\xff\xfe", client_id="attacker")
    assert wait_for(lambda: center.receiver.counters["rejected"] >= 7, 10), center.receiver.state()
    assert center.receiver.rejects == {
        "json": 1,
        "too_large": 1,
        "too_deep": 1,
        "version": 1,
        "schema": 1,
        "post_mismatch": 1,
        "encoding": 1,
    }
    assert center.storage.counts()["reports"] == 0
    assert "post_mismatch" in caplog.text
    # and it still works
    post.put(make_reports(5))
    post.start()
    assert post.wait_delivered(5, 10)


def test_a_decoder_bug_refuses_one_message_and_never_stalls_the_receiver(
    post: Post,
    center: Center,
    mosquitto: Mosquitto,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A bug, not bad input: the decoder raises something other than ProtocolError for one payload.  Left
    # unacknowledged, the broker would hand that message back first at every reconnect (a poison message).
    real = protocol.decode_report_batch

    def buggy(payload: bytes, post_id: str) -> protocol.ReportBatch:
        if payload == b"poison":
            raise KeyError("a bug in decoding")
        return real(payload, post_id)

    monkeypatch.setattr(protocol, "decode_report_batch", buggy)
    settings = TlsMqttConfig(urls=(mosquitto.url,))
    publish_once(settings, protocol.topic("ttu", "oebubun", "report"), b"poison", client_id="buggy-post")
    assert wait_for(lambda: center.receiver.rejects["decoder_bug"] == 1, 10), center.receiver.state()
    post.put(make_reports(5))
    post.start()
    assert post.wait_delivered(5, 15)
    assert center.receiver.counters["disconnects"] == 0 and center.receiver.rejects["decoder_bug"] == 1


def test_report_refused_by_the_center_is_marked_rejected_at_the_post(post: Post, center: Center) -> None:
    # the center refuses a report whose post_id is not the topic's: the post must stop resending it
    [foreign] = post.put(make_reports(1, post_id="napan"))
    good = post.put(make_reports(2))
    post.start()
    assert post.wait_delivered(2, 10)
    assert wait_for(lambda: post.store.counts()["rejected"] == 1, 10)
    row = post.store.get(foreign)
    assert row is not None and row.state == "rejected" and "napan" in (row.reject_reason or "")
    assert center.storage.get_report(foreign) is None
    assert all(center.storage.get_report(rid) is not None for rid in good)
    assert center.receiver.rejects["report_invalid"] == 1


def test_broker_urls_are_tried_in_order(tmp_path: Path, mosquitto: Mosquitto, center: Center) -> None:
    dead = f"mqtt://127.0.0.1:{free_port()}"
    post = Post(post_config(tmp_path / "post", [dead, mosquitto.url]))
    try:
        post.put(make_reports(3))
        post.start()
        assert post.wait_delivered(3, 10)
        assert post.uplink.state()["broker"] == mosquitto.url
    finally:
        post.stop()


def _ip(*args: str) -> bool:
    try:
        return subprocess.run(["ip", *args], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_kernel_network_change_is_noticed() -> None:
    address = "127.0.0.77/8"
    seen: list[str] = []
    watcher = NetWatcher(seen.append, settle_s=0.05)
    if not watcher.start():
        pytest.skip("netlink not available here")
    try:
        if not _ip("addr", "add", address, "dev", "lo"):
            pytest.skip("cannot add an address to lo (needs CAP_NET_ADMIN)")
        try:
            assert wait_for(lambda: bool(seen), 5)
            assert seen[0] in ("address", "route")
        finally:
            _ip("addr", "del", address, "dev", "lo")
    finally:
        watcher.stop()


def test_network_change_while_connected_probes_the_link(post: Post, center: Center) -> None:
    post.start()
    assert wait_for(lambda: post.uplink.state()["connected"], 10)
    if not _ip("addr", "add", "127.0.0.78/8", "dev", "lo"):
        pytest.skip("cannot add an address to lo (needs CAP_NET_ADMIN)")
    try:
        assert wait_for(lambda: post.uplink.counters["net_changes"] >= 1, 5)
    finally:
        _ip("addr", "del", "127.0.0.78/8", "dev", "lo")
    # the probe (a status publish) was answered: still connected on the same link, nothing dropped
    post.put(make_reports(2))
    assert post.wait_delivered(2, 10)
    assert post.uplink.counters["disconnects"] == 0


# ------------------------------------------------------------------------- the whole chain, with the radio
def test_handset_to_center_and_back(tmp_path: Path, mosquitto: Mosquitto, center: Center) -> None:
    """Simulated handset → simulated radio → post daemon → broker → center → ack → both receipts and a reply."""
    device = make_device(tmp_path, "tcp")
    device.start()
    try:
        cfg = handset_post_config(tmp_path, device, mosquitto.url, ack_timeout_s=5.0)
        with running_post(cfg) as daemon:
            device.add_node(HANDSET, "Petugas Oebubun 01", "OB01")
            texts = ["KEBAKARAN rumah warga", "BANJIR jalan desa putus", "MEDIS ibu melahirkan"]
            for text in texts:
                device.inject_text(HANDSET, text)
            rows = [wait_report(daemon, text.split()[0]) for text in texts]
            for row in rows:
                ref = row.report.ref
                wait_until(lambda ref=ref: acked_receipts(device, ref), 30, f"post receipt {ref}")
                wait_until(lambda ref=ref: acked_receipts(device, ref, "112 PUSAT TERIMA"), 30, f"center receipt {ref}")
            assert sorted(center_report_ids(center.storage)) == sorted(r.report_id for r in rows)
            assert center.storage.counts()["reports"] == 3
            reply = center.service.send_reply(rows[0].report_id, "Damkar menuju lokasi", "sari")
            wait_until(
                lambda: [p for p in device.sent if p.text == "112: Damkar menuju lokasi" and p.acked is True],
                30,
                "reply",
            )
            wait_until(lambda: center.storage.get_reply(reply.cmd_id).state == "delivered", 10, "reply state")  # type: ignore[union-attr]
            center_receipts = [p for p in device.sent if p.text and p.text.startswith("112 PUSAT TERIMA")]
            assert len(center_receipts) == 3  # one each, never twice
    finally:
        device.stop()


@pytest.mark.parametrize("kept", [True, False], ids=["session-kept", "session-lost"])
def test_a_center_back_with_its_session_gets_what_was_kept_and_nothing_is_resent(
    tmp_path: Path,
    mosquitto: Mosquitto,
    kept: bool,
) -> None:
    """The center away while the post publishes.  Back with its session, the broker hands it what it kept and
    the post resends nothing; if the broker lost that session, the post resends at once (not after
    ack_timeout_s, which is long here)."""
    db = f"sqlite:///{tmp_path}/center.db"
    first = Center(db, [mosquitto.url], client_id="siaga-center-a").start()
    post = Post(post_config(tmp_path / "post", [mosquitto.url], ack_timeout_s=600))
    try:
        post.put(make_reports(5))
        post.start()
        assert post.wait_delivered(5, 10)
        first.stop()
        post.put(make_reports(20))
        assert wait_for(lambda: post.store.counts()["sent"] == 20, 10), post.store.counts()  # the broker has them
        if not kept:
            # the broker loses the center's session and what it held (as one restarted without persistence
            # does): a client with the center's id takes the session over with expiry 0 and leaves
            publish_once(TlsMqttConfig(urls=(mosquitto.url,)), "112/v1/ttu/x/noise", b"-", client_id="siaga-center-a")
        second = Center(db, [mosquitto.url], client_id="siaga-center-a").start()
        try:
            assert post.wait_delivered(25, 20), post.store.counts()
            assert post.uplink.counters["published_reports"] == (25 if kept else 45)
            assert second.storage.counts()["reports"] == 25
        finally:
            second.stop()
    finally:
        post.stop()


def test_handled_command_ids_are_pruned_and_the_newest_still_stop_a_redelivery(
    post: Post, center: Center, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sync import uplink as uplink_mod

    monkeypatch.setattr(uplink_mod, "CMD_SEEN_KEEP", 5)
    for i in range(8):
        post.store.meta_set(f"cmd_seen:old-{i}", "2026-11-28T07:00:00.000Z")
    [rid] = post.put(make_reports(1))
    post.start()  # prunes at start: 5 of the 8 stay
    assert post.wait_delivered(1, 10)
    assert sum(post.store.meta_get(f"cmd_seen:old-{i}") is not None for i in range(8)) == 5
    reply = center.service.send_reply(rid, "Ambulans berangkat", "sari")
    assert post.events.wait(lambda: len(post.events.commands) == 1, 10)
    assert wait_for(lambda: post.store.meta_get(f"cmd_seen:{reply.cmd_id}") is not None, 10)
    uplink_mod.prune_handled_commands(post.store)  # what the post's retention job runs
    assert post.store.meta_get(f"cmd_seen:{reply.cmd_id}") is not None  # the newest is kept
    assert sum(post.store.meta_get(f"cmd_seen:old-{i}") is not None for i in range(8)) == 4


def test_reply_states_waiting_for_a_connection_survive_a_post_restart(
    tmp_path: Path, mosquitto: Mosquitto, center: Center
) -> None:
    """The post hands a reply to the handset while its uplink is down, then restarts before it reconnects:
    the reply's states were kept in the post's store (not in memory) and reach the center afterwards."""
    cfg = post_config(tmp_path / "post", [mosquitto.url])
    first = Post(cfg)
    try:
        [rid] = first.put(make_reports(1))
        first.start()
        assert first.wait_delivered(1, 10)
        reply = center.service.send_reply(rid, "Ambulans berangkat", "sari")
        assert first.events.wait(lambda: len(first.events.commands) == 1, 10)
        assert wait_for(lambda: center.storage.get_reply(reply.cmd_id).state == "received", 10)  # type: ignore[union-attr]
        mosquitto.stop()  # clean stop: the broker keeps its sessions
        assert wait_for(lambda: not first.uplink.state()["connected"], 10)
        first.uplink.publish_reply_state(reply.cmd_id, rid, "sent")
        first.uplink.publish_reply_state(reply.cmd_id, rid, "delivered")
        waiting = [key for key, _ in first.store.meta_items("reply_state:")]
        assert waiting == [f"reply_state:{reply.cmd_id}:sent", f"reply_state:{reply.cmd_id}:delivered"]
    finally:
        first.stop()
    mosquitto.start()
    # the center first: an event published while no receiver is subscribed is dropped by the broker (reply
    # states are not resent when a receiver subscribes afresh, unlike reports — a known limit)
    assert center.receiver.wait_connected(20)
    second = Post(cfg)
    try:
        second.start()
        assert wait_for(lambda: center.storage.get_reply(reply.cmd_id).state == "delivered", 20), (  # type: ignore[union-attr]
            center.storage.get_reply(reply.cmd_id),
            second.uplink.state(),
            second.store.meta_items("reply_state:"),
            center.receiver.state(),
        )
        # PUBACKed: gone from the store
        assert wait_for(lambda: second.store.meta_items("reply_state:") == [], 10)
    finally:
        second.stop()
