"""Firmware profiles: offline checks (frequency, keys, roles, keys the library would drop) and
`firmware apply` through the real meshtastic library against the simulated device."""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from meshtastic import __main__ as meshtastic_main
from meshtastic.protobuf import apponly_pb2, channel_pb2, config_pb2

from cli.main import main as siaga
from firmware_config import apply, channel, radio
from firmware_config.check import check_profile, check_result, expected_canned_messages
from firmware_config.frequency import CHANNEL_NAME, Lora, radio_frequency
from firmware_config.load import load_profile, load_shipped
from firmware_config.profile import ROLES, Problem, Profile, get_path, profile_path
from siaga.errors import ConfigError, RadioError

# --------------------------------------------------------------------------------------------- helpers


def variant(tmp_path: Path, role: str, change: Any, name: str = "variant.yaml") -> Profile:
    """A copy of a shipped profile with ``change(raw_dict)`` applied, loaded from a real file."""
    raw = yaml.safe_load(profile_path(role).read_text(encoding="utf-8"))
    raw = copy.deepcopy(raw)
    change(raw)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return load_profile(path, role=role)


def keys(problems: list[Problem]) -> set[str]:
    return {p.key for p in problems}


def lora(**fields: Any) -> Lora:
    return Lora(**{"use_preset": True, "modem_preset": "LONG_FAST", **fields})


SG = "SG_923"
US = "US"


# ------------------------------------------------------------------------------------ shipped profiles


def test_shipped_profiles_pass_every_check() -> None:
    results = [check_result(p) for p in load_shipped()]
    assert [r.profile.name for r in results] == ["handset", "router", "gateway", "relay"]
    for result in results:
        assert result.problems == (), result.problems
        freq = result.frequency
        assert freq is not None and freq.pinned
        assert freq.centre_mhz == pytest.approx(920.875)
        assert (freq.low_mhz, freq.high_mhz) == (pytest.approx(920.75), pytest.approx(921.0))
        assert result.profile.lora.hop_limit == 4


@pytest.mark.parametrize("role", ROLES)
def test_profile_parses_exactly_like_meshtastic_configure(role: str) -> None:
    """Our loader and the library's own --configure parser build the same DeviceProfile protobuf."""
    path = profile_path(role)
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = meshtastic_main._profile_from_yaml(yaml.safe_load(path.read_text(encoding="utf-8")))
    ours = load_profile(role)
    assert ours.parse_problems == ()
    assert radio.device_profile(ours) == theirs


def test_shipped_profiles_carry_no_secret() -> None:
    for role in ROLES:
        text = profile_path(role).read_text(encoding="utf-8")
        assert "meshtastic.org/e/" not in text
        assert "psk" not in yaml.safe_load(text).__repr__().lower()
        dp = radio.device_profile(load_profile(role))
        assert not dp.channel_url
        assert not dp.config.security.private_key and not dp.config.security.admin_key


def test_roles_and_role_specific_settings() -> None:
    role = config_pb2.Config.DeviceConfig.Role
    handset, router, gateway, relay = (radio.device_profile(load_profile(r)) for r in ROLES)
    assert handset.config.device.role == role.CLIENT
    assert router.config.device.role in (role.ROUTER, role.ROUTER_LATE)
    assert gateway.config.device.role == role.CLIENT_BASE
    ds = handset.module_config.detection_sensor
    assert ds.enabled and ds.name == "SOS" and ds.monitor_pin > 0 and ds.minimum_broadcast_secs == 15
    assert handset.config.position.position_broadcast_smart_enabled
    assert not router.config.bluetooth.enabled and router.config.power.is_power_saving
    assert gateway.config.security.serial_enabled and not gateway.config.bluetooth.enabled
    assert relay.config.device.role in (role.ROUTER_LATE, role.CLIENT_BASE)
    rebroadcast = config_pb2.Config.DeviceConfig.RebroadcastMode
    assert relay.config.device.rebroadcast_mode == gateway.config.device.rebroadcast_mode == rebroadcast.ALL
    assert relay.config.security.serial_enabled and not relay.config.power.is_power_saving


def test_handset_canned_messages_equal_the_classifier_set() -> None:
    # siaga.report.CANNED_MESSAGES is the set tests/test_classify.py classifies
    from siaga.report import CANNED_MESSAGES

    assert load_profile("handset").canned_messages == CANNED_MESSAGES


def test_handset_canned_messages_match_the_agreed_set() -> None:
    # The set agreed in the issue; siaga.report.CANNED_MESSAGES must equal it too (test above).
    assert load_profile("handset").canned_messages == (
        "DARURAT MEDIS",
        "KEBAKARAN",
        "BANJIR",
        "LONGSOR",
        "KECELAKAAN",
        "KRIMINAL",
        "BUTUH EVAKUASI",
        "AMAN / SELESAI",
    )


# ----------------------------------------------------------------------------------- frequency math


def test_frequency_math_follows_firmware() -> None:
    # SG_923 917-925 MHz, LONG_FAST 250 kHz: 32 slots, slot N at 917.125 + (N-1) * 0.25.
    assert radio_frequency(lora(region=SG, channel_num=1)).centre_mhz == pytest.approx(917.125)
    assert radio_frequency(lora(region=SG, channel_num=32)).centre_mhz == pytest.approx(924.875)
    assert radio_frequency(lora(region=SG, channel_num=1)).slots == 32
    # Default slot hashes the channel name: the public "LongFast" lands at 917.875 MHz on SG_923, and at the
    # well-known 906.875 MHz on US (slot 20).
    default_sg = radio_frequency(lora(region=SG), channel_name="LongFast")
    assert (default_sg.centre_mhz, default_sg.slot, default_sg.pinned) == (pytest.approx(917.875), 4, False)
    assert radio_frequency(lora(region=US), channel_name="").centre_mhz == pytest.approx(906.875)
    # override_frequency wins over the slot; frequency_offset is added.
    assert radio_frequency(lora(region=SG, channel_num=16, override_frequency=921.5)).centre_mhz == pytest.approx(921.5)
    shifted = radio_frequency(lora(region=SG, channel_num=16, frequency_offset=0.01))
    assert shifted.centre_mhz == pytest.approx(920.885)
    # 125 kHz preset: 64 slots.
    slow = lora(region=SG, channel_num=1, modem_preset="LONG_SLOW")
    assert radio_frequency(slow).centre_mhz == pytest.approx(917.0625)
    with pytest.raises(ConfigError):
        radio_frequency(lora(region=SG, channel_num=33))


def test_only_slots_13_to_24_are_inside_the_indonesian_band() -> None:
    legal = [n for n in range(1, 33) if radio_frequency(lora(region=SG, channel_num=n)).inside()]
    assert legal == list(range(13, 25))


# ---------------------------------------------------------------------------------------- bad input


def test_default_slot_is_reported_with_its_frequency(tmp_path: Path) -> None:
    p = variant(tmp_path, "router", lambda raw: raw["config"]["lora"].update(channel_num=0))
    problems = check_profile(p, channel_name="LongFast")
    assert "config.lora.channel_num" in keys(problems)
    assert any("917.875 MHz" in x.message for x in problems), problems


def test_slot_above_the_band_is_reported(tmp_path: Path) -> None:
    p = variant(tmp_path, "gateway", lambda raw: raw["config"]["lora"].update(channel_num=25))
    problems = check_profile(p)
    assert keys(problems) == {"config.lora.channel_num"}
    assert "923.125 MHz" in problems[0].message


@pytest.mark.parametrize(("freq", "ok"), [(921.5, True), (920.125, True), (920.1, False), (919.0, False)])
def test_override_frequency_must_keep_the_whole_channel_in_band(tmp_path: Path, freq: float, ok: bool) -> None:
    p = variant(tmp_path, "router", lambda raw: raw["config"]["lora"].update(override_frequency=freq))
    assert (check_profile(p) == []) is ok


def test_region_us_is_reported(tmp_path: Path) -> None:
    p = variant(tmp_path, "handset", lambda raw: raw["config"]["lora"].update(region="US"))
    problems = check_profile(p)
    assert "config.lora.region" in keys(problems)
    assert any("SG_923" in x.message for x in problems)


def test_psk_channel_url_and_device_keys_are_reported(tmp_path: Path) -> None:
    url = "https://meshtastic.org/e/#CgMSAQESBggBQANIAQ"

    def add_secrets(raw: dict[str, Any]) -> None:
        raw["channel_url"] = url
        raw["config"]["security"] = {"private_key": "base64:" + base64.b64encode(os.urandom(32)).decode()}
        raw["config"]["network"] = {"wifi_psk": "rahasia123"}

    problems = check_profile(variant(tmp_path, "handset", add_secrets))
    assert {"channel_url", "config.security.private_key", "config.network.wifi_psk"} <= keys(problems)


def test_a_psk_anywhere_is_reported(tmp_path: Path) -> None:
    p = variant(tmp_path, "router", lambda raw: raw["config"]["lora"].update(psk="AQ=="))
    assert "config.lora.psk" in keys(check_profile(p))


def test_unknown_key_section_and_enum_are_reported(tmp_path: Path) -> None:
    def typos(raw: dict[str, Any]) -> None:
        raw["config"]["lora"]["chanel_num"] = 16  # typo: the library would print and ignore it
        raw["config"]["lorra"] = {"hop_limit": 3}
        raw["config"]["device"]["role"] = "BOSS"
        raw["module_config"]["detectionSensor"]["monitorPin"] = "tiga"
        raw["extra"] = True

    problems = check_profile(variant(tmp_path, "handset", typos))
    assert {
        "config.lora.chanel_num",
        "config.lorra",
        "config.device.role",
        "module_config.detection_sensor.monitor_pin",
        "extra",
    } <= keys(problems)


def test_camel_case_keys_are_accepted_like_the_library(tmp_path: Path) -> None:
    def camel(raw: dict[str, Any]) -> None:
        lo = raw["config"].pop("lora")
        raw["config"]["lora"] = {"channelNum" if k == "channel_num" else k: v for k, v in lo.items()}

    p = variant(tmp_path, "router", camel)
    assert check_profile(p) == []
    assert p.lora.channel_num == 16


@pytest.mark.parametrize("hops", [0, 8])
def test_hop_limit_out_of_range_is_reported(tmp_path: Path, hops: int) -> None:
    p = variant(tmp_path, "handset", lambda raw: raw["config"]["lora"].update(hop_limit=hops))
    assert keys(check_profile(p)) == {"config.lora.hop_limit"}


def test_handset_sos_and_canned_rules(tmp_path: Path) -> None:
    def weaken(raw: dict[str, Any]) -> None:
        raw["module_config"]["detectionSensor"].update(minimum_broadcast_secs=0, monitor_pin=0)
        raw["canned_messages"] = "KEBAKARAN|BANJIR"

    assert {
        "module_config.detection_sensor.minimum_broadcast_secs",
        "module_config.detection_sensor.monitor_pin",
        "canned_messages",
    } <= keys(check_profile(variant(tmp_path, "handset", weaken)))


def test_wrong_role_for_profile_is_reported(tmp_path: Path) -> None:
    p = variant(tmp_path, "router", lambda raw: raw["config"]["device"].update(role="CLIENT"))
    assert keys(check_profile(p)) == {"config.device.role"}


def test_unreadable_or_non_mapping_yaml_raises_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("config: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_profile(bad)
    bad.write_text("- just a list\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_profile(bad)
    with pytest.raises(ConfigError):
        load_profile(tmp_path / "missing.yaml")


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_firmware_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert siaga(["firmware", "check"]) == 0
    out = capsys.readouterr().out
    assert out.count("920.875 MHz") == len(ROLES) == 4 and "Semua profil lolos" in out

    bad = variant(tmp_path, "handset", lambda raw: raw["config"]["lora"].update(channel_num=0)).path
    assert siaga(["firmware", "check", "--role", "handset", str(bad)]) == 1
    assert "config.lora.channel_num" in capsys.readouterr().out

    broken = tmp_path / "broken.yaml"
    broken.write_text("config: [\n", encoding="utf-8")
    assert siaga(["firmware", "check", str(broken)]) == 78


def test_cli_firmware_apply_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    psk = tmp_path / "k.psk"
    # A serial port that does not exist is a radio failure (exit 1), before any key is generated.
    assert (
        siaga(
            [
                "firmware",
                "apply",
                "--role",
                "router",
                "--port",
                str(tmp_path / "ttyX"),
                "--psk-file",
                str(psk),
            ]
        )
        == 1
    )
    assert not psk.exists()
    # The public default key is refused as a configuration error (exit 78).
    default_url = _channel_url(b"\x01")
    assert siaga(["firmware", "apply", "--role", "router", "--host", "127.0.0.1:9", "--channel-url", default_url]) == 78
    assert "AQ==" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- channel key


def _channel_url(psk: bytes, name: str = "TTU112") -> str:
    cs = apponly_pb2.ChannelSet()
    cs.settings.append(channel_pb2.ChannelSettings(name=name, psk=psk))
    cs.lora_config.region = (
        config_pb2.Config.LoRaConfig.US
    )  # must be ignored: the profile's lora config is what gets written
    b64 = base64.urlsafe_b64encode(cs.SerializeToString()).decode().rstrip("=")
    return f"https://meshtastic.org/e/#{b64}"


def test_psk_is_generated_once_per_regency_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "siaga" / "channel.psk"
    first = apply.channel_plan(psk_file=path)
    assert first.source == "generated" and first.psk_path == path
    psk = first.settings[0].psk
    assert len(psk) == 32 and psk != channel._DEFAULT_KEY
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.b64decode(path.read_text().strip()) == psk
    assert first.settings[0].name == CHANNEL_NAME
    assert first.settings[0].position_precision == 32
    second = apply.channel_plan(psk_file=path)
    assert second.source == "file" and bytes(second.settings[0].psk) == psk


def test_psk_file_readable_by_others_or_default_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "channel.psk"
    path.write_text(base64.b64encode(os.urandom(32)).decode())
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        apply.channel_plan(psk_file=path)
    path.chmod(0o600)
    path.write_text("AQ==\n")
    with pytest.raises(ConfigError, match="default"):
        apply.channel_plan(psk_file=path)
    for psk in (b"", b"\x01", channel._DEFAULT_KEY):
        with pytest.raises(ConfigError):
            apply.channel_plan(channel_url=_channel_url(psk))
    with pytest.raises(ConfigError):
        apply.channel_plan(channel_url="https://example.org/not-a-channel")


def test_channel_url_key_is_used_as_given(tmp_path: Path) -> None:
    key = os.urandom(32)
    plan = apply.channel_plan(channel_url=_channel_url(key), psk_file=tmp_path / "unused.psk")
    assert plan.source == "url" and bytes(plan.settings[0].psk) == key and plan.settings[0].name == "TTU112"
    assert not (tmp_path / "unused.psk").exists()


# ------------------------------------------------------------------- apply against the simulated device

simulator = pytest.importorskip("devkit.sim", reason="devkit/sim/ not written yet")

# Simulated time runs 20x: the post-commit reboot comes after 0.35 s instead of 7 s.
SPEED = 20.0
FAST = {"pause": 0.0, "settle": 1.0, "connect_timeout": 20, "reconnect_timeout": 30.0, "read_timeout": 5.0}


def _device_leaves(profile: Profile, state: Any) -> list[tuple[str, Any, Any]]:
    device = {"config": radio.to_values(state.config), "module_config": radio.to_values(state.module_config)}
    return [(s.key, get_path(device, s.key.split(".")), profile.get(s.key)) for s in profile.settings]


def test_apply_handset_over_tcp_writes_reads_back_and_keeps_the_key(tmp_path: Path) -> None:
    psk_path = tmp_path / "ttu" / "channel.psk"
    with simulator.SimulatedDevice(listen=("127.0.0.1", 0), speed=SPEED, seed=7) as dev:
        # The simulated device starts with bluetooth off and wifi on: the profile must change them.
        assert dev.state.module_config.canned_message.enabled is False
        result = apply.apply_profile("handset", host=f"127.0.0.1:{dev.port}", psk_file=psk_path, **FAST)
        state = dev.state

        assert result.channel_source == "generated" and result.psk_path == psk_path
        assert result.frequency.centre_mhz == pytest.approx(920.875)
        profile = load_profile("handset")
        assert result.verified == len(profile.settings) + 8 + 1  # settings, 8 channels, canned messages
        for path, got, want in _device_leaves(profile, state):
            assert got == want, path
        assert state.config.lora.channel_num == 16 and state.config.lora.hop_limit == 4
        assert state.module_config.detection_sensor.name == "SOS"
        assert state.canned_messages == "|".join(expected_canned_messages())
        key = base64.b64decode(psk_path.read_text())
        assert len(key) == 32 and bytes(state.channels[0].settings.psk) == key
        assert state.channels[0].settings.name == CHANNEL_NAME
        assert state.channels[0].role == channel_pb2.Channel.Role.PRIMARY
        assert all(ch.role == channel_pb2.Channel.Role.DISABLED for ch in state.channels[1:])
        # One begin/commit transaction; the device rebooted after the commit and we reconnected.
        assert dev.stats["admin_begin_edit_settings"] == 1 and dev.stats["admin_commit_edit_settings"] == 1
        assert dev.stats["reboots"] >= 1 and dev.handshakes >= 2
        # Unmentioned settings survive (merged onto the device's section, as --configure does).
        assert state.config.security.serial_enabled is True


def test_apply_router_over_pty_reuses_the_regency_key(tmp_path: Path) -> None:
    psk_path = tmp_path / "channel.psk"
    key = os.urandom(32)
    psk_path.write_text(base64.b64encode(key).decode() + "\n")
    psk_path.chmod(0o600)
    tty = tmp_path / "ttySIM0"
    with simulator.SimulatedDevice(pty_path=tty, speed=SPEED, seed=8) as dev:
        result = apply.apply_profile("router", port=str(tty), psk_file=psk_path, **FAST)
        assert result.channel_source == "file"
        assert bytes(dev.state.channels[0].settings.psk) == key
        role = config_pb2.Config.DeviceConfig.Role
        assert dev.state.config.device.role == role.ROUTER
        assert dev.state.config.bluetooth.enabled is False
        assert dev.state.config.power.is_power_saving is True


def test_apply_with_channel_url_ignores_its_lora_config(tmp_path: Path) -> None:
    key = os.urandom(32)
    with simulator.SimulatedDevice(listen=("127.0.0.1", 0), speed=SPEED, seed=9) as dev:
        result = apply.apply_profile(
            "gateway",
            host=f"127.0.0.1:{dev.port}",
            channel_url=_channel_url(key),
            psk_file=tmp_path / "x",
            **FAST,
        )
        assert result.channel_source == "url" and not (tmp_path / "x").exists()
        assert dev.state.channels[0].settings.name == "TTU112"
        # The URL carried region US: the profile's SG_923 slot 16 is what the device got.
        assert (
            dev.state.config.lora.region == config_pb2.Config.LoRaConfig.SG_923
            and dev.state.config.lora.channel_num == 16
        )


def test_verification_reports_a_value_the_device_did_not_keep(tmp_path: Path) -> None:
    plan = apply.channel_plan(psk_file=tmp_path / "channel.psk")
    with simulator.SimulatedDevice(listen=("127.0.0.1", 0), speed=SPEED, seed=10) as dev:
        host = f"127.0.0.1:{dev.port}"
        apply.apply_profile("gateway", host=host, psk_file=tmp_path / "channel.psk", **FAST)
        # As if the firmware had clamped the slot and someone re-enabled a public channel.
        dev.state.config.lora.channel_num = 20
        dev.state.channels[1].role = channel_pb2.Channel.Role.SECONDARY
        dev.state.channels[1].settings.name = "LongFast"
        with pytest.raises(RadioError) as err:
            apply.verify(load_profile("gateway"), plan, None, host, 20, 30.0, 5.0)
        assert "config.lora.channel_num" in str(err.value) and "kanal 1" in str(err.value)


def test_apply_refuses_a_bad_profile_before_touching_the_radio(tmp_path: Path) -> None:
    bad = variant(tmp_path, "handset", lambda raw: raw["config"]["lora"].update(channel_num=0))
    with simulator.SimulatedDevice(listen=("127.0.0.1", 0), speed=SPEED, seed=11) as dev:
        with pytest.raises(ConfigError):
            apply.apply_profile("handset", host=f"127.0.0.1:{dev.port}", profile=bad, psk_file=tmp_path / "k", **FAST)
        assert dev.handshakes == 0 and not (tmp_path / "k").exists()


# ------------------------------------------------------------- relay profile and the custody rebroadcast rule

BLOCKING_MODES = ["CORE_PORTNUMS_ONLY", "KNOWN_ONLY", "LOCAL_ONLY", "NONE", "ALL_SKIP_DECODING"]


@pytest.mark.parametrize("role", ["gateway", "relay"])
@pytest.mark.parametrize("mode", BLOCKING_MODES)
def test_rebroadcast_mode_that_drops_our_private_port_is_reported(tmp_path: Path, role: str, mode: str) -> None:
    p = variant(tmp_path, role, lambda raw: raw["config"]["device"].update(rebroadcast_mode=mode))
    problems = check_profile(p)
    assert keys(problems) == {"config.device.rebroadcast_mode"}
    assert mode in problems[0].message and "rebroadcast_mode: ALL" in problems[0].message


@pytest.mark.parametrize("role", ["gateway", "relay"])
def test_rebroadcast_mode_must_be_written_in_custody_profiles(tmp_path: Path, role: str) -> None:
    # An unnamed mode would leave whatever the radio had (CORE_PORTNUMS_ONLY on an ex-ROUTER).
    p = variant(tmp_path, role, lambda raw: raw["config"]["device"].pop("rebroadcast_mode"))
    assert keys(check_profile(p)) == {"config.device.rebroadcast_mode"}


def test_router_keeps_its_own_rebroadcast_rule(tmp_path: Path) -> None:
    # The router is not a custody radio (no Pi): LOCAL_ONLY stays its choice (router.yaml says why).
    assert check_profile(load_profile("router")) == []


def test_relay_role_and_pi_link_rules(tmp_path: Path) -> None:
    def router_like(raw: dict[str, Any]) -> None:
        raw["config"]["device"]["role"] = "ROUTER"
        raw["config"]["power"]["is_power_saving"] = True
        raw["config"]["security"]["serial_enabled"] = False

    assert keys(check_profile(variant(tmp_path, "relay", router_like))) == {
        "config.device.role",
        "config.power.is_power_saving",
        "config.security.serial_enabled",
    }
    client_base = variant(tmp_path, "relay", lambda raw: raw["config"]["device"].update(role="CLIENT_BASE"))
    assert check_profile(client_base) == []


def test_cli_firmware_check_names_rebroadcast_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = variant(tmp_path, "relay", lambda raw: raw["config"]["device"].update(rebroadcast_mode="CORE_PORTNUMS_ONLY"))
    assert siaga(["firmware", "check", "--role", "relay", str(bad.path)]) == 1
    out = capsys.readouterr().out
    assert "config.device.rebroadcast_mode: CORE_PORTNUMS_ONLY" in out and "rebroadcast_mode: ALL" in out


def test_apply_relay_then_check_the_radio_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    psk_path = tmp_path / "channel.psk"
    tty = tmp_path / "ttySIM1"
    with simulator.SimulatedDevice(pty_path=tty, speed=SPEED, seed=12) as dev:
        # A radio that was a ROUTER before: the firmware left CORE_PORTNUMS_ONLY behind.
        mode = config_pb2.Config.DeviceConfig.RebroadcastMode
        dev.state.config.device.role = config_pb2.Config.DeviceConfig.Role.ROUTER
        dev.state.config.device.rebroadcast_mode = mode.CORE_PORTNUMS_ONLY
        assert apply.check_radio("relay", port=str(tty), connect_timeout=20, read_timeout=5.0)  # not fit yet

        result = apply.apply_profile("relay", port=str(tty), psk_file=psk_path, **FAST)
        assert result.role == "relay" and result.frequency.centre_mhz == pytest.approx(920.875)
        assert dev.state.config.device.role == config_pb2.Config.DeviceConfig.Role.ROUTER_LATE
        assert dev.state.config.device.rebroadcast_mode == mode.ALL
        assert dev.state.config.power.is_power_saving is False

        # siaga firmware check against the radio: passes now ...
        assert siaga(["firmware", "check", "--role", "relay", "--port", str(tty)]) == 0
        assert "OK" in capsys.readouterr().out
        # ... and names rebroadcast_mode (and the fix) once the radio drops our port again.
        dev.state.config.device.rebroadcast_mode = mode.KNOWN_ONLY
        assert siaga(["firmware", "check", "--role", "relay", "--port", str(tty)]) == 1
        out = capsys.readouterr().out
        assert "config.device.rebroadcast_mode: KNOWN_ONLY" in out and "rebroadcast_mode: ALL" in out
        assert "siaga firmware apply --role relay" in out


def test_check_gateway_radio_over_tcp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with simulator.SimulatedDevice(listen=("127.0.0.1", 0), speed=SPEED, seed=13) as dev:
        host = f"127.0.0.1:{dev.port}"
        apply.apply_profile("gateway", host=host, psk_file=tmp_path / "channel.psk", **FAST)
        assert siaga(["firmware", "check", "--role", "gateway", "--host", host]) == 0
        dev.state.config.device.rebroadcast_mode = config_pb2.Config.DeviceConfig.RebroadcastMode.CORE_PORTNUMS_ONLY
        problems = apply.check_radio("gateway", host=host, connect_timeout=20, read_timeout=5.0)
        assert [p.key for p in problems] == ["config.device.rebroadcast_mode"]
        assert "PRIVATE_APP" in problems[0].message
    assert siaga(["firmware", "check", "--host", "127.0.0.1:9"]) == 78  # --role is required with a radio
