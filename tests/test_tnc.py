"""The TNC path without direwolf: KISS framing, AX.25 UI frames, APRS parsing, the touch-tone code table,
the [radio.tnc] config, the bridge's loop against a KISS server of ours (junk, then a good frame), and the
airtime pacing.  The real direwolf runs in tests/test_tnc_direwolf.py."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edge import aprs
from edge.ax25 import Address, Ax25Error, UiFrame, parse_ui
from edge.daemon import Post
from edge.kiss import FEND, KissDecoder, encode
from edge.tnc import TncBridge, TncTuning, frame_airtime_s
from edge.touchtone import Decoded, Unreadable, decode, load_table
from siaga import config as config_mod
from siaga.errors import ConfigError
from tests.radio_rig import wait_until
from tests.test_tnc_direwolf import CODES, STATION, rows, tnc_config

FAST = TncTuning(backoff_first_s=0.1, backoff_max_s=0.2)


# ----------------------------------------------------------------------------------------- KISS
def test_kiss_round_trip_with_escapes_and_any_split() -> None:
    payload = bytes([0xC0, 0xDB, 0x00, 0xDC, 0xDD, 0xC0])
    wire = encode(payload, port=2) + encode(b"second")
    for split in range(len(wire) + 1):
        dec = KissDecoder()
        frames = dec.feed(wire[:split]) + dec.feed(wire[split:])
        assert [(f.port, f.data) for f in frames] == [(2, payload), (0, b"second")]
    assert wire.count(bytes([FEND])) == 4  # nothing escaped leaks a FEND


def test_kiss_skips_and_counts_what_is_not_a_frame() -> None:
    dec = KissDecoder(max_frame=16)
    frames = dec.feed(b"boot banner\xc0\xc0\x00" + b"x" * 40 + b"\xc0\x00\xdb\x41\xc0\x06\x01\xc0\x00ok\xc0")
    assert [f.data for f in frames] == [b"ok"]
    assert dec.counts["kiss.oversized"] == 1 and dec.counts["kiss.bad_escape"] == 1
    assert dec.counts["kiss.not_data"] == 1 and dec.counts["kiss.noise_bytes"] == len(b"boot banner")


# ----------------------------------------------------------------------------------------- AX.25
def test_ax25_round_trip_and_direwolfs_own_bytes() -> None:
    frame = UiFrame(Address("APZSIA"), Address("YB9POS", 10), (Address("WIDE1", 1),), b":YB9ABC   :ack01")
    parsed = parse_ui(frame.encode())
    assert parsed.info == frame.info and parsed.tnc2() == "YB9POS-10>APZSIA,WIDE1-1::YB9ABC   :ack01"
    # what direwolf 1.6 sent a KISS client for gen_packets' "YB9ABC>APRS::SIAGA    :BANJIR...{01"
    heard = bytes.fromhex("82a0a4a64040e0b2847282848 6e103f0".replace(" ", "")) + b":SIAGA    :BANJIR{01"
    ui = parse_ui(heard)
    assert str(ui.source) == "YB9ABC" and str(ui.destination) == "APRS"
    event = aprs.parse(ui)
    assert event == aprs.AprsMessage("YB9ABC", "SIAGA", "BANJIR", "01")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x82" * 13, "truncated"),
        (bytes([ord("a") << 1] * 6 + [0x61]) * 2 + b"\x03\xf0", "bad.address"),
        (Address("A").encode(last=True) + b"\x03\xf0", "bad.address"),
        (Address("A").encode(False) + Address("B").encode(True) + b"\x03", "truncated"),
        (Address("A").encode(False) + Address("B").encode(True) + b"\x13\xf0", "not_ui"),
        (Address("A").encode(False) + Address("B").encode(True) + b"\x03\xf0" + b"x" * 257, "oversized"),
        (b"".join(Address("A").encode(False) for _ in range(11)) + Address("B").encode(True), "bad.path"),
    ],
)
def test_ax25_refusals_name_their_reason(data: bytes, reason: str) -> None:
    with pytest.raises(Ax25Error) as exc:
        parse_ui(data)
    assert exc.value.reason == reason


# ----------------------------------------------------------------------------------------- APRS
def ui(info: bytes, source: str = STATION, dest: str = "APRS") -> UiFrame:
    return UiFrame(Address.parse(dest), Address.parse(source), (), info)


@pytest.mark.parametrize(
    ("info", "dest", "expected"),
    [
        (b":SIAGA    :tolong{3}AB", "APRS", aprs.AprsMessage(STATION, "SIAGA", "tolong", "3")),
        (b":siaga    :no id", "APRS", aprs.AprsMessage(STATION, "SIAGA", "no id", None)),
        (b":SIAGA    :a {brace} text", "APRS", aprs.AprsMessage(STATION, "SIAGA", "a {brace} text", None)),
        (b":YB9POS   :ack12", "APRS", aprs.AprsAck(STATION, "YB9POS", "12", rejected=False)),
        (b":YB9POS   :rej7", "APRS", aprs.AprsAck(STATION, "YB9POS", "7", rejected=True)),
        (b"!0927.07S/12421.13E>", "APRS", aprs.AprsPosition(STATION, -9.451167, 124.352167, 0.0)),
        (b"@092345z0927.  S/12421.  E>", "APRS", aprs.AprsPosition(STATION, -9.45, 124.35, 1852.0)),
        (b"=0927.0 S/12421.1 E>", "APRS", aprs.AprsPosition(STATION, -9.45, 124.351667, 185.0)),
        (b"=/5L!!<*e7>7P[", "APRS", aprs.AprsPosition(STATION, 49.5, -72.750004, 0.0)),  # APRS 1.0.1's example
        (b":SIAGA:short", "APRS", aprs.Unusable("aprs.bad_message", STATION)),
        (b"!9999.99N/12421.13E>", "APRS", aprs.Unusable("aprs.bad_position", STATION)),
        (b"_10090556c220s004g005t077", "APRS", aprs.Unusable("aprs.other", STATION)),
    ],
)
def test_aprs_parse(info: bytes, dest: str, expected: aprs.AprsEvent) -> None:
    assert aprs.parse(ui(info, dest=dest)) == expected


def test_mic_e_position_of_a_handheld() -> None:
    # Mic-E for 9°27.07'S 124°21.13'E: destination digits 092707 (S: 4th char a digit; +100: 5th P-Z; E: 6th
    # digit); longitude d=124 → 124-100+28 = 52 '4', m=21 → 49 '1', h=13 → 41 ')'
    event = aprs.parse(ui(b"`41)l\x1c>/]", dest="0927P7"))
    assert isinstance(event, aprs.AprsPosition)
    assert event.lat == pytest.approx(-9.451167, abs=1e-5) and event.lon == pytest.approx(124.352167, abs=1e-5)


def test_aprs_sending_cleans_and_bounds_the_text() -> None:
    info = aprs.message_info("yb9abc-7", "112 POS {TERIMA} | ~ é" + "x" * 100, "5")
    assert info.startswith(b":YB9ABC-7 :112 POS (TERIMA} / - ?") and info.endswith(b"{5")
    assert len(info) == 11 + aprs.MAX_MESSAGE_CHARS + 2
    assert aprs.ack_info("YB9ABC", "01") == b":YB9ABC   :ack01"


def test_touch_tone_dtmf_frame_from_direwolf() -> None:
    assert aprs.parse(ui(b"t07121#", source="DTMF", dest="APDW16")) == aprs.TouchTone("07121#")


# ----------------------------------------------------------------------------------------- touch-tone table
def test_code_table_decodes_and_names_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "kode.txt"
    path.write_text(CODES)
    table = load_table(path)
    good = decode(table, "07129#")
    assert isinstance(good, Decoded) and good.category == "sos" and good.officer.phone == "+6281234567890"
    assert good.village.lat == pytest.approx(-9.4512)
    for keys, why in (("0712#", "harus 5"), ("07121", "tidak diakhiri"), ("08121#", "desa 08"),
                      ("07131#", "petugas 13"), ("07125#", "kejadian 5"), ("07x21#", "bukan tombol")):  # fmt: skip
        result = decode(table, keys)
        assert isinstance(result, Unreadable) and why in result.reason, (keys, result)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("kota 01 Kefa", "is not a kind"),
        ("desa 1x Oebubun", "1-4 digits"),
        ("desa 123 Oebubun", "must have 2 digits"),
        ("desa 07 Lain", "listed twice"),
        ("kejadian 3 tsunami", "must be one category"),
        ("desa 08 Oelolok -99 124", "latitude"),
        ("petugas 13", "must be: desa|petugas|kejadian"),
    ],
)
def test_a_bad_code_table_line_is_a_config_error_naming_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "kode.txt"
    path.write_text(CODES + line + "\n")
    with pytest.raises(ConfigError) as exc:
        load_table(path)
    assert exc.value.key == f"{path}:{len(CODES.splitlines()) + 1}" and problem in str(exc.value)


def test_a_bad_code_table_stops_the_post_with_exit_78(tmp_path: Path, run_siaga: Any) -> None:
    cfg_path = tmp_path / "siaga.toml"
    codes = tmp_path / "kode.txt"
    codes.write_text(CODES + "kejadian 4 gunung\n")
    cfg_path.write_text(
        f'[node]\npost_id = "oebubun"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[radio.tnc]\nhost = "127.0.0.1:1"\ntouch_tone_file = "{codes}"\n'
    )
    for command in (("config", "check"), ("run",)):
        result = run_siaga(*command, config=cfg_path)
        assert result.returncode == 78, (command, result.stderr)
        assert f"{codes}:{len(CODES.splitlines()) + 1}" in result.stderr


# ----------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("tnc", "key"),
    [
        ({}, "radio.tnc"),
        ({"host": "h:8001", "port": "/dev/ttyUSB0"}, "radio.tnc"),
        ({"host": "h:8001", "transmit": True}, "radio.tnc.transmit"),
        ({"host": "h:8001", "callsign": "yb9pos"}, "radio.tnc.callsign"),
        ({"host": "h:8001", "callsign": "YB9POS-16"}, "radio.tnc.callsign"),
        ({"host": "h:99999"}, "radio.tnc.host"),
        ({"host": "h:8001", "touch_tone_file": "/nonexistent"}, "radio.tnc.touch_tone_file"),
        ({"host": "h:8001", "airtime_share": 0.9}, "radio.tnc.airtime_share"),
        ({"host": "h:8001", "bogus": 1}, "radio.tnc.bogus"),
    ],
)
def test_tnc_config_errors_name_the_key(tnc: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config_mod.from_dict({"node": {"post_id": "p"}, "radio": {"tnc": tnc}})
    assert exc.value.key == key


def test_tnc_config_defaults() -> None:
    cfg = config_mod.from_dict({"node": {"post_id": "p"}, "radio": {"tnc": {"host": "127.0.0.1:8001"}}})
    tnc = cfg.radio.tnc
    assert tnc is not None and tnc.address == "SIAGA" and not tnc.transmit and tnc.callsign is None


# ----------------------------------------------------------------------------------------- the bridge loop
def test_junk_on_the_kiss_link_is_counted_and_the_loop_goes_on(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    post = Post(tnc_config(tmp_path, {"host": f"127.0.0.1:{port}"}), tnc_tuning=FAST)
    post.start()
    try:
        conn, _ = server.accept()
        good = UiFrame(Address("APRS"), Address(STATION), (), b":SIAGA    :BANJIR jembatan putus{5").encode()
        for chunk in (
            b"\xc0\x00\x01\x02\x03\xc0",  # truncated address field
            b"\xc0\x00" + bytes([ord("a") << 1] * 6 + [0x61]) * 2 + b"\x03\xf0x\xc0",  # lower-case callsign
            encode(good + b"x" * 400),  # oversized info
            b"\xc0\x00\xdb\x01\xc0",  # bad escape
            b"noise between frames",
            b"\xc0\x05a command, not data\xc0",
            encode(good[:10]),  # a frame cut short
        ):
            conn.sendall(chunk)
        conn.sendall(encode(good))
        row = wait_until(lambda: rows(post), 20, "the good frame after the junk")[0]
        assert row.report.category == "banjir" and row.report.origin == STATION
        counts = post.counters()
        assert counts["tnc.bad.ax25.truncated"] == 2 and counts["tnc.bad.ax25.bad.address"] == 1
        assert counts["tnc.bad.ax25.oversized"] == 1 and counts["tnc.bad.kiss.bad_escape"] == 1
        # "noise between frames" follows a FEND, so KISS reads it as a frame of type "n": not a data frame
        assert counts["tnc.bad.kiss.not_data"] == 2 and counts["tnc.rx.aprsmessage"] == 1
        conn.close()
        # the server closed the connection: the bridge notices and connects again
        wait_until(lambda: post.counters().get("tnc.link.lost"), 10, "the loss noticed")
        conn, _ = server.accept()
        wait_until(lambda: post.counters().get("tnc.link.connects") == 2, 10, "reconnected")
        conn.close()
    finally:
        post.stop()
        server.close()


class _Sink:
    """A KissLink that keeps what was written (the pacing test needs no TNC)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def read(self) -> bytes:
        import time

        time.sleep(0.05)
        return b""

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        pass


def test_transmissions_stay_within_the_airtime_share_and_acks_go_first() -> None:
    cfg = config_mod.from_dict(
        {
            "node": {"post_id": "p"},
            "radio": {"tnc": {"host": "h:1", "callsign": "YB9POS", "transmit": True, "airtime_share": 0.01}},
        }
    ).radio.tnc
    assert cfg is not None
    sink = _Sink()
    bridge = TncBridge(cfg, lambda event: None, tuning=FAST, link_factory=lambda c: sink)
    # 1 % of 10 minutes = 6 s: a receipt costs ~0.9 s, an ack ~0.6 s
    for n in range(10):
        bridge.send_aprs(aprs.message_info(STATION, f"112 POS TERIMA #{n:04d} BANJIR"), "receipt", 2)
    bridge.send_aprs(aprs.ack_info(STATION, "1"), "ack", 0)
    bridge.start()
    try:
        wait_until(lambda: bridge.counters().get("tnc.tx.paced"), 10, "the budget to hold frames back")
        sent = list(sink.written)
        spent = sum(frame_airtime_s(len(f) - 3, cfg.air_baud, cfg.txdelay_s) for f in sent)
        assert spent <= 6.0 and 0 < len(sent) < 11 and bridge.queued() == 11 - len(sent)
        assert b"ack1" in sent[0]  # queued last, sent first
    finally:
        bridge.stop()


# ----------------------------------------------------------------------------------------- system install
def test_generated_direwolf_config_is_what_direwolf_runs(tmp_path: Path, run_siaga: Any) -> None:
    from devkit.harness.direwolf import kiss_port

    port = kiss_port()
    cfg_path = tmp_path / "siaga.toml"
    cfg_path.write_text(
        f'[node]\npost_id = "oebubun"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[radio.tnc]\nhost = "127.0.0.1:{port}"\ncallsign = "YB9POS-10"\ntransmit = true\n'
    )
    result = run_siaga("config", "direwolf", "--adevice", "stdin null", config=cfg_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for line in ("AGWPORT 0", f"KISSPORT {port}", "MYCALL YB9POS-10", "DTMF", "PTT CM108"):
        assert f"\n{line}\n" in text, line
    conf = tmp_path / "direwolf.conf"
    conf.write_text(text.replace("PTT CM108", ""))  # no CM108 on this machine
    proc = subprocess.Popen(
        ["direwolf", "-t", "0", "-c", str(conf), "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "Ready to accept KISS TCP" in line or len(seen) > 50:
                break
        assert any(f"port {port}" in ln for ln in seen), "".join(seen)
        assert any("Disabled AGW" in ln for ln in seen), "".join(seen)
    finally:
        proc.kill()
        proc.communicate()  # closes both pipes
    # listening only: no callsign on air, no PTT; a post without host gets no direwolf config
    cfg_path.write_text(cfg_path.read_text().replace("transmit = true", "transmit = false"))
    text = run_siaga("config", "direwolf", config=cfg_path).stdout
    assert "MYCALL NOCALL" in text and "PTT" not in text.replace("no PTT", "")
    cfg_path.write_text(cfg_path.read_text().replace(f'host = "127.0.0.1:{port}"', 'port = "/dev/ttyUSB0"'))
    assert run_siaga("config", "direwolf", config=cfg_path).returncode == 78


def test_direwolf_unit_verifies(tmp_path: Path) -> None:
    unit = tmp_path / "siaga-direwolf.service"
    unit.write_text((Path(__file__).parent.parent / "systemd" / "siaga-direwolf.service").read_text())
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "siaga-direwolf" not in result.stderr, result.stderr
    assert "Before=siaga.service" in unit.read_text()
