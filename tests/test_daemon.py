"""The post daemon against the simulated device: the REAL meshtastic library over TCP and over a pty.

Each test checks what ends up in the store (category, verified, location and its source, path, copies)
and what the device recorded of our sends (exactly one acknowledged receipt per report).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devkit.sim import SimulatedDevice
from edge.daemon import Post, run_daemon
from edge.radio import MeshMessage
from edge.status import read_runtime
from edge.store import Store
from siaga import config as config_mod
from siaga.errors import ConfigError
from siaga.report import mesh_report_id
from tests.conftest import REPO, write_post_config
from tests.radio_rig import (
    HANDSET,
    POST_LAT,
    POST_LON,
    SPEED,
    STRANGER,
    acked_receipts,
    make_device,
    post_and_device,
    post_config,
    radio_of,
    receipts_settled,
    report_with_text,
    reports,
    running_post,
    wait_report,
    wait_until,
)
from tests.reports import make_mesh_report

log = logging.getLogger(__name__)


class RecordingUplink:
    """The uplink side of the contract in team BRIEF (sync/uplink.Uplink), recording what the post calls."""

    def __init__(self) -> None:
        self.woken = 0
        self.post_state: dict[str, Any] = {}
        self.reply_states: list[tuple[str, str, str]] = []

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...

    def wake(self) -> None:
        self.woken += 1

    def healthy(self) -> bool:
        return True

    def state(self) -> dict[str, Any]:
        return {"connected": True, "broker": "mqtts://broker.test:8883"}

    def set_post_state(self, **fields: Any) -> None:
        self.post_state.update(fields)

    def publish_reply_state(self, cmd_id: str, report_id: str, state: str) -> None:
        self.reply_states.append((cmd_id, report_id, state))


# ------------------------------------------------------------------------------------------ the scenario
@pytest.mark.parametrize("transport", ["tcp", "pty"])
def test_scenario_gives_exactly_the_expected_reports_and_receipts(tmp_path: Path, transport: str) -> None:
    with post_and_device(tmp_path, transport, ack_timeout_s=4.0) as (post, dev):
        dev.add_node(HANDSET, "Petugas Oebubun 01", "OB01", hops=1)
        dev.add_node(STRANGER, "Warga Baru", "WB01", hops=2)
        nodes = post.nodes
        assert nodes is not None
        wait_until(lambda: (n := nodes.get(0xA1B2C3D4)) and n.short_name == "OB01", 10, "node info")
        dev.inject_position(HANDSET, -9.45, 124.48)
        wait_until(lambda: nodes.location(0xA1B2C3D4), 10, "the handset's position")

        # 1. a canned text heard over two relays: one report, two paths, one receipt
        dev.inject_text(HANDSET, "KEBAKARAN rumah warga", hops=2, copies=2, snr=6.5, rssi=-97)
        fire = wait_report(post, "KEBAKARAN")
        wait_until(lambda: reports(post)[0].copies == 2, 10, "the second copy")
        # 2. an unregistered radio, no position known: unverified, the post's own location
        dev.inject_text(STRANGER, "banjir di jalan desa", hops=1)
        # 3. the SOS button (Detection Sensor, no want_ack)
        dev.inject_detection(HANDSET, "SOS-OB01")
        # 4. our own packet echoed back and a text on a channel that is not ours: nothing
        dev.inject_text(dev.node_num, "112 POS OEBUBUN TERIMA #XXXX KEBAKARAN")
        dev.inject_text(HANDSET, "obrolan di kanal lain", channel=3)
        wait_report(post, "banjir")
        wait_report(post, "SOS-OB01")
        wait_until(lambda: receipts_settled(post), 20, "receipts before the disturbances")

        # 5. the link goes down (TCP refused / pty unplugged); a report sent meanwhile waits in the device
        connects = post.radio.connects  # type: ignore[union-attr]
        dev.disconnect(3 * SPEED)  # 3 s
        wait_until(lambda: not post.radio.connected, 10, "the post to notice the disconnect")  # type: ignore[union-attr]
        dev.inject_text(HANDSET, "LONGSOR tutup jalan ke Oebubun")
        wait_report(post, "LONGSOR", timeout=30)
        assert post.radio.connects > connects  # type: ignore[union-attr]
        wait_until(lambda: receipts_settled(post), 20, "receipts after the disconnect")

        # 6. the device reboots
        connects = post.radio.connects  # type: ignore[union-attr]
        dev.reboot(2 * SPEED)
        wait_until(lambda: post.radio.connects > connects and post.radio.connected, 30, "reconnect after reboot")  # type: ignore[union-attr]
        dev.inject_text(STRANGER, "kecelakaan motor 2 orang luka")
        wait_report(post, "kecelakaan")

        # 7. line noise on the wire, then a report
        dev.inject_garbage(600)
        dev.inject_text(HANDSET, "DARURAT MEDIS ibu melahirkan")
        wait_report(post, "MEDIS")
        wait_until(lambda: receipts_settled(post), 30, "all receipts")
        time.sleep(0.5)  # a stray late copy or echo would show up now

        rows = {r.report.text_raw: r for r in reports(post)}
        assert len(rows) == 6, sorted(rows)
        expect = {
            "KEBAKARAN rumah warga": ("kebakaran", True, "gps", 2),
            "banjir di jalan desa": ("banjir", False, "post", 1),
            "SOS-OB01 detected": ("sos", True, "gps", 1),
            "LONGSOR tutup jalan ke Oebubun": ("longsor", True, "gps", 1),
            "kecelakaan motor 2 orang luka": ("kecelakaan", False, "post", 1),
            "DARURAT MEDIS ibu melahirkan": ("medis", True, "gps", 1),
        }
        for text, (category, verified, loc_source, copies) in expect.items():
            row = rows[text]
            r = row.report
            assert (r.category, r.verified, r.loc_source, row.copies) == (category, verified, loc_source, copies), text
            assert r.source == "meshtastic" and r.post_id == "oebubun" and r.mesh_packet_id is not None
            if loc_source == "gps":
                assert (r.lat, r.lon) == (-9.45, 124.48) and r.loc_age_s is not None
            else:
                assert (r.lat, r.lon) == (POST_LAT, POST_LON) and r.loc_age_s is None
            assert len(r.path) == copies and all(h.post_id == "oebubun" for h in r.path)
            assert row.receipt_post == "acked", (text, row.receipt_post)
            assert len(acked_receipts(dev, r.ref)) == 1, f"exactly one acknowledged receipt for #{r.ref}"
        fire_paths = rows["KEBAKARAN rumah warga"].report.path
        assert [(h.hops, h.snr, h.rssi) for h in fire_paths] == [(2, 6.5, -97), (3, 3.0, -103)]
        assert fire.report.callback is not None and fire.report.callback.officer == "Yohanes Taek"
        assert rows["kecelakaan motor 2 orang luka"].report.callback is None
        receipts = [p for p in dev.sent if p.text and p.text.startswith("112 POS")]
        assert {p.to for p in receipts} == {HANDSET, STRANGER}
        assert all(p.want_ack and len(p.text.encode()) <= 100 for p in receipts)  # type: ignore[union-attr]
        counts = post.counters()
        assert counts["ignored.own_echo"] >= 1 and counts["ignored.channel"] == 1
        assert counts["reports.created"] == 6 and counts["reports.copies"] == 1
        assert counts["rx.position"] >= 1 and counts["rx.nodeinfo"] >= 2 and counts["rx.detection"] == 1
        assert counts["link.lost"] >= 2 and counts["noise.lines"] >= 1
        recorded = [json.loads(line) for line in (tmp_path / "sent.jsonl").read_text().splitlines()]
        assert sum(1 for r in recorded if r.get("text", "").startswith("112 POS") and r["acked"] is True) == 6


def test_serial_unplug_and_replug_reconnects_and_loses_nothing(tmp_path: Path, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="edge.radio")
    with post_and_device(tmp_path, "pty") as (post, dev):
        radio = post.radio
        assert radio is not None and dev.pty_path is not None
        dev.add_node(HANDSET, "Petugas Oebubun 01", "OB01")
        dev.inject_text(HANDSET, "KEBAKARAN sebelum cabut")
        wait_report(post, "sebelum")
        dev.unplug(4 * SPEED)  # the USB cable is out for 4 s
        wait_until(lambda: not dev.pty_path.exists(), 5, "the pty to disappear")  # type: ignore[union-attr]
        wait_until(lambda: not radio.connected, 10, "the post to notice the unplug")
        dev.inject_text(HANDSET, "BANJIR saat kabel lepas")  # heard by the radio while unplugged
        wait_until(lambda: dev.pty_path.exists(), 15, "the pty to come back")  # type: ignore[union-attr]
        replugged = time.monotonic()
        wait_until(lambda: radio.connected, 30, "the post to reconnect")
        took = time.monotonic() - replugged
        log.info("serial reconnect took %.2f s after replug", took)
        print(f"serial reconnect took {took:.2f} s after replug")
        assert took < 30
        dev.inject_text(HANDSET, "LONGSOR setelah colok")
        wait_report(post, "setelah")
        wait_report(post, "saat kabel lepas")
        assert radio.connects == 2 and post.counters()["link.lost"] == 1
        attempts = [r.getMessage() for r in caplog.records if "connecting to" in r.getMessage()]
        assert attempts, "every failed attempt is logged"
        assert all("failed (attempt" in a for a in attempts)
        wait_until(lambda: receipts_settled(post), 20)
        assert all(row.receipt_post == "acked" for row in reports(post))


def test_tcp_refused_at_start_is_retried_with_backoff(tmp_path: Path) -> None:
    dev = make_device(tmp_path, "tcp")
    dev.start()
    port = dev.port
    dev.stop()  # nothing listens on the port now
    cfg = post_config(tmp_path, radio={"host": f"127.0.0.1:{port}"})
    with running_post(cfg, connect=False) as post:
        wait_until(lambda: post.counters().get("link.connect_failed", 0) >= 2, 10, "two refused attempts")
        assert not post.radio.connected  # type: ignore[union-attr]
        dev2 = SimulatedDevice(listen=("127.0.0.1", port), speed=SPEED)  # the device comes up at last
        dev2.start()
        try:
            assert post.radio.wait_connected(20)  # type: ignore[union-attr]
            dev2.inject_text(HANDSET, "KEBAKARAN gudang")
            wait_report(post, "gudang")
        finally:
            post.stop()
            dev2.stop()


def test_invalid_utf8_is_counted_and_a_mostly_readable_text_kept(tmp_path: Path) -> None:
    with post_and_device(tmp_path, "tcp", receipts=False) as (post, dev):
        # The simulator only sends valid UTF-8 (test_fuzz_stream.py sends raw bytes through the library);
        # here the post's rule is fed our own event type directly.
        def msg(payload: bytes, pid: int) -> MeshMessage:
            return MeshMessage("text", 0xA1B2C3D4, 0xFFFFFFFF, pid, 0, payload, None, 1, 5.0, -90, None)

        post.handle_radio(msg(b"BANJIR di desa \xff\xfe", 11))
        post.handle_radio(msg(bytes(range(128, 200)), 12))
        counts = post.counters()
        assert counts["bad.utf8_salvaged"] == 1 and counts["bad.utf8"] == 1
        row = report_with_text(post, "BANJIR")
        assert row is not None and "\ufffd" in row.report.text_raw and row.report.category == "banjir"
        assert len(reports(post)) == 1
        dev.inject_text(HANDSET, "masih jalan")
        wait_report(post, "masih jalan")


# ------------------------------------------------------------------------------------------ receipts
def test_receipt_retried_after_a_lost_ack_and_after_a_nak(tmp_path: Path) -> None:
    with post_and_device(tmp_path, "tcp", ack_timeout_s=1.0) as (post, dev):
        dev.add_node(HANDSET, "Petugas Oebubun 01", "OB01")
        dev.drop_acks(1)  # the first receipt's ACK never comes
        dev.inject_text(HANDSET, "KEBAKARAN satu")
        one = wait_report(post, "satu")
        wait_until(lambda: receipts_settled(post), 20)
        dev.drop_acks(1, nak="MAX_RETRANSMIT")
        dev.inject_text(HANDSET, "KEBAKARAN dua")
        two = wait_report(post, "dua")
        wait_until(lambda: receipts_settled(post), 20)
        for row in (one, two):
            sent = [p for p in dev.sent if p.text and f"#{row.report.ref}" in p.text]
            assert [p.acked for p in sent][-1] is True and len(sent) == 2, sent
            assert post.store.get(row.report_id).receipt_post == "acked"  # type: ignore[union-attr]
        assert [p.acked for p in dev.sent if p.text and "dua" not in p.text][:1] == [False]
        counts = post.counters()
        assert counts["outbox.naks"] == 1 and counts["outbox.timeouts"] >= 1


def test_receipts_respect_the_firmware_rate_limit(tmp_path: Path) -> None:
    # our interval is shorter than the device's limit on purpose: its NAKs are retried, nothing lost
    with post_and_device(tmp_path, "tcp", min_send_interval_s=0.05, device_kw={"rate_limit_s": 1.0}) as (post, dev):
        dev.add_node(HANDSET, "Petugas Oebubun 01", "OB01")
        for n in range(3):
            dev.inject_text(HANDSET, f"KEBAKARAN rumah {n}", id=1000 + n)
        wait_until(lambda: len(reports(post)) == 3 and receipts_settled(post), 30, "three receipts")
        assert all(r.receipt_post == "acked" for r in reports(post))
        assert dev.stats["rate_limited"] >= 1
        for row in reports(post):
            assert len(acked_receipts(dev, row.report.ref)) == 1


def test_unknown_destination_fails_after_retries(tmp_path: Path) -> None:
    # the device does not know the stranger: the firmware NAKs MAX_RETRANSMIT every time
    with post_and_device(tmp_path, "tcp", receipt_retries=1, device_kw={"nak_delay_s": 2.0}) as (post, dev):
        dev.inject_text(STRANGER, "tolong ada kebakaran")
        row = wait_report(post, "tolong")
        wait_until(lambda: receipts_settled(post), 20)
        assert post.store.get(row.report_id).receipt_post == "failed"  # type: ignore[union-attr]
        assert [p.acked for p in dev.sent] == ["nak:MAX_RETRANSMIT"] * 2


def test_second_receipt_and_staff_reply_from_the_uplink(tmp_path: Path) -> None:
    with post_and_device(tmp_path, "tcp") as (post, dev):
        uplink = RecordingUplink()
        post.uplink = uplink
        dev.add_node(HANDSET, "Petugas Oebubun 01", "OB01")
        dev.inject_text(HANDSET, "KEBAKARAN rumah warga")
        row = wait_report(post, "KEBAKARAN")
        wait_until(lambda: receipts_settled(post), 20)
        assert uplink.woken == 1
        assert post.store is not None
        post.store.ack([row.report_id])
        # the time shown is the center's commit time (05:07 UTC = 13:07 WITA), not the post's clock
        committed = datetime(2026, 11, 28, 5, 7, 30, tzinfo=UTC)
        post.on_delivered([row.report_id], committed)
        post.on_delivered([row.report_id], committed)  # twice: still one second receipt
        ref = row.report.ref
        receipts = wait_until(lambda: acked_receipts(dev, ref, "112 PUSAT TERIMA"), 10, "the center receipt")
        assert receipts[0].text == f"112 PUSAT TERIMA #{ref} 13:07"
        wait_until(lambda: post.store.get(row.report_id).receipt_center == "acked", 10)  # type: ignore[union-attr]
        command = {
            "cmd_id": "c-1",
            "type": "reply",
            "report_id": row.report_id,
            "to": HANDSET,
            "text": "Tim pemadam\nmenuju lokasi",
        }
        post.on_command(command)
        post.on_command(command)  # redelivered: sent once
        wait_until(lambda: ("c-1", row.report_id, "delivered") in uplink.reply_states, 10, "reply delivered")
        replies = [p for p in dev.sent if p.text and p.text.startswith("112: ")]
        assert [p.text for p in replies] == ["112: Tim pemadam menuju lokasi"] and replies[0].acked is True
        assert uplink.reply_states == [("c-1", row.report_id, "sent"), ("c-1", row.report_id, "delivered")]
        post.on_command({"cmd_id": "c-2", "type": "reply", "report_id": "", "to": "nobody", "text": "x"})
        assert uplink.reply_states[-1] == ("c-2", "", "failed")
        center = [p for p in dev.sent if p.text and p.text.startswith("112 PUSAT TERIMA")]
        assert len(center) == 1 and len(center[0].text) == len("112 PUSAT TERIMA #K7Q2 14:05")  # type: ignore[arg-type]
        assert uplink.post_state.get("radio") in (None, "connected")


def test_restart_never_sends_a_receipt_twice_but_sends_one_never_sent(tmp_path: Path) -> None:
    dev = make_device(tmp_path, "tcp")
    dev.start()
    try:
        dev.add_node(HANDSET, "Petugas Oebubun 01", "OB01")
        cfg = post_config(tmp_path, radio=radio_of(dev, "tcp"))
        with running_post(cfg) as post:
            dev.inject_text(HANDSET, "KEBAKARAN rumah warga")
            wait_report(post, "KEBAKARAN")
            wait_until(lambda: receipts_settled(post), 20)
        # A report stored just before a crash, its receipt never attempted:
        store = Store.open(cfg.store_path)
        pending = make_mesh_report(0xA1B2C3D4, 4242, text_raw="BANJIR masuk rumah", category="banjir")
        store.put(pending)
        store.close()
        with running_post(cfg) as post:
            wait_until(lambda: receipts_settled(post), 20, "the resumed receipt")
            time.sleep(0.5)
        receipts = [p for p in dev.sent if p.text and p.text.startswith("112 POS")]
        assert len(receipts) == 2
        assert f"#{pending.ref}" in receipts[1].text  # type: ignore[operator]
    finally:
        dev.stop()


# ------------------------------------------------------------------------------------------ the process
def test_sigterm_to_siaga_run_exits_0_within_5_s(tmp_path: Path) -> None:
    dev = make_device(tmp_path, "tcp")
    dev.start()
    try:
        path = write_post_config(
            tmp_path,
            extra=f'\n[radio.meshtastic]\nhost = "127.0.0.1:{dev.port}"\nmin_send_interval_s = 0.2\n',
        )
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("SIAGA_CONFIG", None)
        env.pop("RUNTIME_DIRECTORY", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "--config", str(path), "run"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            cfg = config_mod.load(path)
            wait_until(lambda: (read_runtime(cfg) or {}).get("radio") == "connected", 20, "the daemon's radio")
            dev.inject_text(HANDSET, "KEBAKARAN di pasar")
            with Store.open(cfg.store_path) as store:
                wait_until(lambda: store.counts()["pending"] == 1, 10, "the report in the store")
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=15)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        print(f"siaga run stopped {took:.2f} s after SIGTERM")
        assert proc.returncode == 0, err[-2000:]
        assert took < 5.0, f"took {took:.2f} s"
        assert "stopping" in err and "Traceback" not in err
        wait_until(lambda: not dev.client_connected, 5, "the device to see the client go")
    finally:
        dev.stop()


def test_run_daemon_without_radio_queues_and_stops_on_its_event(tmp_path: Path) -> None:
    cfg = config_mod.from_dict(
        {"node": {"post_id": "oebubun", "data_dir": str(tmp_path / "data")}}  # no radio: typed reports only
    )
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    try:
        assert run_daemon(cfg, stop_event=stop) == 0
    finally:
        timer.cancel()
    assert (tmp_path / "data" / "runtime.json").exists()


def test_bad_handsets_file_stops_the_start_with_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "h.csv"
    bad.write_text("id,officer\n!nothex00,x\n", encoding="utf-8")
    cfg = post_config(tmp_path, radio={"host": "127.0.0.1:9", "handsets_file": str(bad)})
    with pytest.raises(ConfigError, match=r"h\.csv:2\.id"):
        Post(cfg)


def test_report_id_is_the_mesh_id(tmp_path: Path) -> None:
    with post_and_device(tmp_path, "tcp", receipts=False) as (post, dev):
        pid = dev.inject_text(HANDSET, "KEBAKARAN cek id", id=0x00C0FFEE)
        row = wait_report(post, "cek id")
        assert row.report.mesh_packet_id == pid == 0x00C0FFEE
        assert row.report_id == mesh_report_id(0xA1B2C3D4, pid, row.report.observed_at)


def test_run_daemon_tells_systemd_ready_and_serves_metrics(tmp_path: Path, monkeypatch: Any) -> None:
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(20)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_path))
    dev = make_device(tmp_path, "tcp")
    dev.start()
    stop = threading.Event()
    try:
        cfg = config_mod.from_dict(
            {
                "node": {"post_id": "oebubun", "data_dir": str(tmp_path / "data")},
                "radio": {"meshtastic": {"host": f"127.0.0.1:{dev.port}"}},
                "metrics": {"listen": f"127.0.0.1:{port}"},
            }
        )
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(run_daemon(cfg, stop_event=stop)))
        thread.start()
        try:
            assert sock.recv(1024).startswith(b"READY=1")
            dev.inject_text(HANDSET, "KEBAKARAN ukur")
            wait_until(lambda: (read_runtime(cfg) or {}).get("radio") == "connected", 20, "radio connected")

            def scrape() -> str:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    return str(response.read().decode())

            text = wait_until(lambda: 'siaga_post_events_total{kind="reports.created"} 1' in (t := scrape()) and t, 20)
            assert "siaga_radio_connected 1" in text and 'siaga_post_queue{state="pending"} 1' in text
        finally:
            stop.set()
            thread.join(15)
        assert result == [0]
        assert sock.recv(1024) == b"STOPPING=1"
    finally:
        sock.close()
        dev.stop()
