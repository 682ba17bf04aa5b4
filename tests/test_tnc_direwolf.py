"""The TNC path end to end with the real direwolf (no mock TNC): audio → direwolf → KISS → the post daemon →
store → Mosquitto → center, and the post's answers back out of direwolf as audio decoded by atest.

Every wait is for a state (a row stored, a line in direwolf's log, a packet decoded from its audio), never
for a fixed time.  direwolf is killed and restarted the hard way (SIGKILL) with the post waiting for its
own disconnected and reconnected states in between.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.harness import direwolf as dw
from devkit.harness.direwolf import Direwolf
from devkit.harness.mosquitto import Mosquitto
from devkit.harness.synctools import Center, center_report_ids
from edge.daemon import Post
from edge.store import StoredReport
from edge.tnc import TncTuning
from siaga import config as config_mod
from siaga.config import Config
from tests.radio_rig import POST_LAT, POST_LON, wait_until

pytestmark = pytest.mark.timeout(180)

STATION = "YB9ABC"
FAST = TncTuning(backoff_first_s=0.2, backoff_max_s=0.5)
CODES = """\
# Kode nada sentuh Pos Siaga Oebubun.  Bentuk: DESA(2) PETUGAS(2) KEJADIAN(1) lalu #
desa      07  Oebubun          -9.4512  124.3521
petugas   12  Yohanes Taek     +6281234567890
kejadian  1   banjir
kejadian  2   kebakaran
kejadian  9   sos
"""


@pytest.fixture(autouse=True)
def _tools() -> None:
    missing = dw.available()
    if missing:
        pytest.fail(missing)  # never a skip counted as a pass: ./install.sh --dev installs them


def tnc_config(tmp_path: Path, tnc: dict[str, Any], mqtt_url: str | None = None) -> Config:
    codes = tmp_path / "kode.txt"
    codes.write_text(CODES)
    data: dict[str, Any] = {
        "node": {
            "post_id": "oebubun",
            "name": "Pos Siaga Oebubun",
            "data_dir": str(tmp_path / "data"),
            "lat": POST_LAT,
            "lon": POST_LON,
        },
        "radio": {"tnc": {"touch_tone_file": str(codes), **tnc}},
    }
    if mqtt_url:
        data["uplink"] = {"mqtt": {"url": mqtt_url, "keepalive_s": 5, "ack_timeout_s": 5.0}}
    return config_mod.from_dict(data)


@pytest.fixture
def direwolf(tmp_path: Path) -> Iterator[Direwolf]:
    tnc = Direwolf(tmp_path / "direwolf").start()
    try:
        yield tnc
    finally:
        tnc.stop()


def running(cfg: Config) -> Post:
    post = Post(cfg, tnc_tuning=FAST)
    post.start()
    assert post.tnc is not None
    assert post.tnc.wait_connected(20), "the post never connected to direwolf"
    return post


def rows(post: Post) -> list[StoredReport]:
    assert post.store is not None
    return post.store.list_reports(limit=1000)


def message(text: str, msg_id: str | None = "01", source: str = STATION) -> str:
    return f"{source}>APRS,WIDE1-1::{'SIAGA':<9}:{text}" + (f"{{{msg_id}" if msg_id else "")


def acks_heard(tnc: Direwolf, msg_id: str, to: str = STATION) -> int:
    return sum(1 for line in tnc.transmitted() if line.endswith(f"::{to:<9}:ack{msg_id}"))


def test_aprs_message_reaches_the_center_and_every_copy_is_acked(
    tmp_path: Path, direwolf: Direwolf, mosquitto: Mosquitto, center: Center
) -> None:
    cfg = tnc_config(tmp_path, {"host": direwolf.host, "callsign": "YB9POS-10", "transmit": True}, mosquitto.url)
    post = running(cfg)
    try:
        # the station's position first (an uncompressed APRS position): the report is placed there
        direwolf.send_packet(f"{STATION}>APRS:!0927.07S/12421.13E>Kefa")
        for copy in range(1, 4):
            direwolf.send_packet(message("BANJIR desa Oebubun 3 rumah terendam"))
            found = wait_until(lambda c=copy: acks_heard(direwolf, "01") >= c, 30, f"ack #{copy} decoded by atest")
            assert found
        stored = rows(post)
        assert len(stored) == 1, [r.report.text_raw for r in stored]
        row = stored[0]
        report = row.report
        assert report.origin == STATION and report.source == "serial" and report.category == "banjir"
        assert row.copies == 3
        assert report.loc_source == "handset-last-fixed"
        assert report.lat == pytest.approx(-9.4512, abs=1e-3) and report.lon == pytest.approx(124.3522, abs=1e-3)
        assert acks_heard(direwolf, "01") == 3
        # synced: the center has it, and the post knows (delivered)
        assert wait_until(lambda: report.report_id in center_report_ids(center.storage), 30, "the center has it")
        wait_until(lambda: rows(post)[0].state == "delivered", 30, "delivered at the post")

        # the two receipts as APRS messages to the station: post stored it; 112 has it
        def receipts() -> list[str]:
            return [ln for ln in direwolf.transmitted() if f"::{STATION:<9}:112 " in ln]

        got = wait_until(lambda: len(receipts()) >= 2 and receipts(), 30, "both receipts on air")
        assert any("TERIMA #" in ln and "BANJIR" in ln for ln in got)
        assert any("112 PUSAT TERIMA" in ln for ln in got)
        assert all(ln.startswith("YB9POS-10>APZSIA,WIDE1-1:") for ln in direwolf.transmitted())
    finally:
        post.stop()


def test_without_transmit_nothing_goes_on_air(tmp_path: Path, direwolf: Direwolf, caplog: Any) -> None:
    caplog.set_level("WARNING", logger="edge.daemon")
    post = running(tnc_config(tmp_path, {"host": direwolf.host}))
    try:
        assert "transmit OFF" in caplog.text
        direwolf.send_packet(message("KEBAKARAN rumah warga", "7"))
        wait_until(lambda: rows(post), 20, "the report stored")
        direwolf.send_packet(message("KEBAKARAN rumah warga", "8"))  # a second one proves the first was handled
        wait_until(lambda: len(rows(post)) == 2, 20, "the second report stored")
        assert post.counters().get("tnc.acks_queued", 0) == 0
        assert not direwolf.transmitted()
        assert not direwolf.tx_raw.exists() or direwolf.tx_raw.stat().st_size == 0
    finally:
        post.stop()


def test_touch_tone_codes_become_reports_and_bad_ones_are_kept(tmp_path: Path, direwolf: Direwolf) -> None:
    cfg = tnc_config(tmp_path, {"host": direwolf.host, "callsign": "YB9POS", "transmit": True})
    post = running(cfg)
    try:
        mark = direwolf.log_path.stat().st_size
        direwolf.key_dtmf("07122#")  # village 07, officer 12, event 2 = kebakaran
        row = wait_until(lambda: rows(post), 20, "the touch-tone report")[0]
        report = row.report
        assert report.category == "kebakaran" and report.origin == "dtmf:07122#"
        assert report.callback is not None and report.callback.officer == "Yohanes Taek"
        assert report.area_desc == "Oebubun" and report.lat == pytest.approx(-9.4512)
        assert direwolf.wait_log(r'\[0\.morse\] "R"', 20, since=mark), direwolf.log_tail()

        mark = direwolf.log_path.stat().st_size
        direwolf.key_dtmf("0799#")  # too short, unknown: kept all the same
        wait_until(lambda: len(rows(post)) == 2, 20, "the unreadable code kept as a report")
        bad = next(r.report for r in rows(post) if r.report.report_id != report.report_id)
        assert bad.category == "lainnya" and "TIDAK TERBACA" in bad.text_raw and "0799#" in bad.text_raw
        assert post.counters()["tt.unreadable"] == 1
        assert direwolf.wait_log(r'\[0\.morse\] "\?"', 20, since=mark), direwolf.log_tail()
    finally:
        post.stop()


def test_direwolf_killed_and_restarted_mid_stream(tmp_path: Path, direwolf: Direwolf) -> None:
    post = running(tnc_config(tmp_path, {"host": direwolf.host}))
    assert post.tnc is not None
    try:
        for n in range(3):
            direwolf.send_packet(message(f"LONGSOR jalan desa nomor {n}", str(n)))
        wait_until(lambda: len(rows(post)) == 3, 30, "three reports before the kill")
        direwolf.kill()
        wait_until(lambda: not post.tnc.connected, 20, "the post noticing direwolf gone")  # type: ignore[union-attr]
        direwolf.start()
        wait_until(lambda: post.tnc.connected, 20, "the post reconnected")  # type: ignore[union-attr]
        assert post.counters()["tnc.link.connects"] >= 2
        for n in range(3, 6):
            direwolf.send_packet(message(f"LONGSOR jalan desa nomor {n}", str(n)))
        wait_until(lambda: len(rows(post)) == 6, 30, "three more after the restart")
        texts = sorted(r.report.text_raw for r in rows(post))
        assert texts == sorted(f"LONGSOR jalan desa nomor {n}" for n in range(6))
    finally:
        post.stop()


def test_serial_path_through_direwolf_pty(tmp_path: Path) -> None:
    tnc = Direwolf(tmp_path / "direwolf", serial=True).start()
    try:
        assert tnc.pty is not None
        cfg = tnc_config(tmp_path, {"port": tnc.pty, "baud": 9600, "callsign": "YB9POS", "transmit": True})
        post = running(cfg)
        try:
            tnc.send_packet(message("KECELAKAAN motor di jalan raya", "42"))
            row = wait_until(lambda: rows(post), 20, "the report over the pty")[0]
            assert row.report.category == "kecelakaan" and row.report.origin == STATION
            assert wait_until(lambda: acks_heard(tnc, "42"), 30, "the ack keyed through the pty")
        finally:
            post.stop()
    finally:
        tnc.stop()
