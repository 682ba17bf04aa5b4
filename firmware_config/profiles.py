"""Meshtastic device profiles (handset, router, gateway): load, check offline, apply to a radio.

The profiles are YAML files for ``meshtastic --configure`` and are read here exactly the way the
``meshtastic`` library 2.7 reads them (``yaml.safe_load``; top-level ``owner``, ``owner_short``,
``channel_url``, ``canned_messages``, ``ringtone``, ``location``, ``config``, ``module_config``; section
and key names in snake_case or camelCase; string values through ``meshtastic.util.fromStr``; enums by
name).  The library silently ignores a key it does not know (it prints and moves on); here every such key
is a :class:`Problem`, because a typo in ``channel_num`` would put a radio on an illegal frequency.

Why the frequency check exists: Indonesia has no Meshtastic region (firmware issue #9782), so the radios
run ``SG_923`` (917–925 MHz) with the slot pinned inside Indonesia's 920–923 MHz band.  The centre
frequency is computed the way the firmware does (``RadioInterface::applyModemConfig``)::

    slot_width = spacing + 2 * padding + bw_kHz / 1000          (MHz; spacing = padding = 0 on SG_923)
    slots      = round((freq_end - freq_start + spacing) / slot_width)
    slot       = channel_num - 1, or djb2(channel name) % slots when channel_num is 0
    centre     = freq_start + bw_kHz / 2000 + padding + slot * slot_width + frequency_offset
    (override_frequency, when set, replaces all of this)

The channel key (PSK) is never in a profile: :func:`apply_profile` takes it from a channel URL or the
regency's key file, or generates 32 random bytes and writes that file (mode 0600) for the operator to keep.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import logging
import os
import secrets
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from google.protobuf.message import Message
from meshtastic.protobuf import (
    admin_pb2,
    apponly_pb2,
    channel_pb2,
    clientonly_pb2,
    config_pb2,
    localonly_pb2,
    portnums_pb2,
)
from meshtastic.util import camel_to_snake, flags_from_list, fromStr

from siaga.errors import ConfigError, RadioError
from siaga.hostport import parse_host_port
from siaga.report import CANNED_MESSAGES

logger = logging.getLogger(__name__)

PROFILE_DIR = Path(__file__).resolve().parent
ROLES = ("handset", "router", "gateway")
#: Device roles each profile may carry (``config.device.role``).
DEVICE_ROLES: Mapping[str, frozenset[str]] = {
    "handset": frozenset({"CLIENT"}),
    "router": frozenset({"ROUTER", "ROUTER_LATE"}),
    "gateway": frozenset({"CLIENT_BASE"}),
}

REQUIRED_REGION = "SG_923"
#: Indonesia's LPWA band; the whole channel (centre ± bandwidth/2) must lie inside it.
BAND_LOW_MHZ = 920.0
BAND_HIGH_MHZ = 923.0
HOP_LIMIT_RANGE = (1, 7)
#: Name of the regency's private primary channel when the key comes from a file (≤ 11 bytes in firmware).
CHANNEL_NAME = "Siaga112"
DEFAULT_PSK_PATH = Path("/var/lib/siaga/channel.psk")
PSK_BYTES = 32
#: Firmware limits for the canned message module.
CANNED_MAX_CHARS = 200
CANNED_MAX_MESSAGES = 50
#: Detection sensor rate limit: 0 means once an hour in firmware (presses in between are lost).
DETECTION_MIN_SECS_RANGE = (5, 60)

# The public default channel key: 1-byte index 1 ("AQ==") expands to this 16-byte AES key in firmware.
_DEFAULT_KEY = base64.b64decode("1PG7OiApB1nwvP+rz05pAQ==")

_TOP_LEVEL_KEYS = {
    "owner": "long_name",
    "owner_short": "short_name",
    "ownerShort": "short_name",
    "channel_url": "channel_url",
    "channelUrl": "channel_url",
    "canned_messages": "canned_messages",
    "ringtone": "ringtone",
    "location": None,
    "config": None,
    "module_config": None,
}
# Keys whose presence in a committed profile leaks a secret or a device identity.
_SECRET_KEYS = {
    "psk",
    "wifi_psk",
    "private_key",
    "admin_key",
    "public_key",
    "password",
    "channel_url",
}
# uint32 bitfields the library accepts as comma-separated flag names (meshtastic.__main__.BITFIELD_ENUMS).
_BITFIELD_ENUMS: Mapping[str, Any] = {
    "network.enabled_protocols": config_pb2.Config.NetworkConfig.ProtocolFlags,
    "position.position_flags": config_pb2.Config.PositionConfig.PositionFlags,
}
# Sections the library's Node.writeConfig can send; any other section would make it sys.exit.
_WRITABLE_SECTIONS = {
    "config": ("device", "position", "power", "network", "display", "lora", "bluetooth", "security"),
    "module_config": (
        "mqtt",
        "serial",
        "external_notification",
        "store_forward",
        "range_test",
        "telemetry",
        "canned_message",
        "audio",
        "remote_hardware",
        "neighbor_info",
        "detection_sensor",
        "ambient_lighting",
        "paxcounter",
        "traffic_management",
    ),
}


# --------------------------------------------------------------------------------------------------
# Frequency math (mirrors firmware src/mesh/RadioInterface.cpp and MeshRadio.h)


@dataclass(frozen=True)
class Region:
    """One row of the firmware's region table (MHz)."""

    name: str
    freq_start: float
    freq_end: float
    spacing: float = 0.0
    padding: float = 0.0
    wide_lora: bool = False


# From RadioInterface.cpp `regions[]` (PROFILE_STD: no spacing, no padding).
REGIONS: Mapping[str, Region] = {
    r.name: r
    for r in (
        Region("US", 902.0, 928.0),
        Region("EU_433", 433.0, 434.0),
        Region("EU_868", 869.4, 869.65),
        Region("CN", 470.0, 510.0),
        Region("JP", 920.5, 923.5),
        Region("ANZ", 915.0, 928.0),
        Region("ANZ_433", 433.05, 434.79),
        Region("RU", 868.7, 869.2),
        Region("KR", 920.0, 923.0),
        Region("TW", 920.0, 925.0),
        Region("IN", 865.0, 867.0),
        Region("NZ_865", 864.0, 868.0),
        Region("TH", 920.0, 925.0),
        Region("UA_433", 433.0, 434.7),
        Region("UA_868", 868.0, 868.6),
        Region("MY_433", 433.0, 435.0),
        Region("MY_919", 919.0, 924.0),
        Region("SG_923", 917.0, 925.0),
        Region("PH_433", 433.0, 434.7),
        Region("PH_868", 868.0, 869.4),
        Region("PH_915", 915.0, 918.0),
        Region("KZ_433", 433.075, 434.775),
        Region("KZ_863", 863.0, 868.0),
        Region("NP_865", 865.0, 868.0),
        Region("BR_902", 902.0, 907.5),
        Region("LORA_24", 2400.0, 2483.5, wide_lora=True),
        Region("UNSET", 902.0, 928.0),
    )
}

# MeshRadio.h modemPresetToParams: bandwidth in kHz (narrow radios, wide LoRa 2.4 GHz radios).
_PRESET_BW_KHZ: Mapping[str, tuple[float, float]] = {
    "SHORT_TURBO": (500.0, 1625.0),
    "SHORT_FAST": (250.0, 812.5),
    "SHORT_SLOW": (250.0, 812.5),
    "MEDIUM_FAST": (250.0, 812.5),
    "MEDIUM_SLOW": (250.0, 812.5),
    "LONG_TURBO": (500.0, 1625.0),
    "LONG_MODERATE": (125.0, 406.25),
    "LONG_SLOW": (125.0, 406.25),
    "LONG_FAST": (250.0, 812.5),
}
# DisplayFormatters::getModemPresetDisplayName: the slot hash uses this name when the channel has none.
_PRESET_DISPLAY_NAME = {
    "SHORT_TURBO": "ShortTurbo",
    "SHORT_FAST": "ShortFast",
    "SHORT_SLOW": "ShortSlow",
    "MEDIUM_FAST": "MediumFast",
    "MEDIUM_SLOW": "MediumSlow",
    "LONG_TURBO": "LongTurbo",
    "LONG_MODERATE": "LongMod",
    "LONG_SLOW": "LongSlow",
    "LONG_FAST": "LongFast",
}
# MeshRadio.h bwCodeToKHz: codes for the bandwidths that are not whole kHz.
_BW_CODES = {31: 31.25, 62: 62.5, 200: 203.125, 400: 406.25, 800: 812.5, 1600: 1625.0}


def djb2(text: str) -> int:
    """The firmware's ``hash()`` (djb2, 32-bit) used to pick the default frequency slot."""
    value = 5381
    for byte in text.encode("utf-8"):
        value = (value * 33 + byte) & 0xFFFFFFFF
    return value


@dataclass(frozen=True)
class Frequency:
    """Where a LoRa config puts the radio."""

    region: str
    centre_mhz: float
    bandwidth_khz: float
    slot: int | None  # 1-based slot (channel_num) actually used; None with override_frequency
    slots: int
    pinned: bool  # False when the slot comes from the channel-name hash (channel_num 0)

    @property
    def low_mhz(self) -> float:
        return self.centre_mhz - self.bandwidth_khz / 2000

    @property
    def high_mhz(self) -> float:
        return self.centre_mhz + self.bandwidth_khz / 2000

    def inside(self, low: float = BAND_LOW_MHZ, high: float = BAND_HIGH_MHZ) -> bool:
        # round() absorbs float noise such as 919.9999999 for an edge that is exactly 920.
        return round(self.low_mhz, 6) >= low and round(self.high_mhz, 6) <= high


def channel_bandwidth_khz(lora: config_pb2.Config.LoRaConfig, wide_lora: bool = False) -> float:
    """Bandwidth the firmware uses: the preset's, or the custom ``bandwidth`` code when use_preset is off."""
    if lora.use_preset:
        preset = config_pb2.Config.LoRaConfig.ModemPreset.Name(lora.modem_preset)
        narrow, wide = _PRESET_BW_KHZ.get(preset, _PRESET_BW_KHZ["LONG_FAST"])
        return wide if wide_lora else narrow
    return _BW_CODES.get(lora.bandwidth, float(lora.bandwidth))


def radio_frequency(lora: config_pb2.Config.LoRaConfig, channel_name: str = CHANNEL_NAME) -> Frequency:
    """Centre frequency the firmware would tune to; raises ConfigError for an unknown region or bandwidth."""
    region_name = config_pb2.Config.LoRaConfig.RegionCode.Name(lora.region)
    region = REGIONS.get(region_name)
    if region is None:
        raise ConfigError("config.lora.region", region_name, "is not in the firmware region table we know")
    bw = channel_bandwidth_khz(lora, region.wide_lora)
    if bw <= 0:
        raise ConfigError("config.lora.bandwidth", lora.bandwidth, "must be set when use_preset is false")
    slot_width = region.spacing + 2 * region.padding + bw / 1000
    slots = round((region.freq_end - region.freq_start + region.spacing) / slot_width)
    if lora.override_frequency:
        centre = lora.override_frequency + lora.frequency_offset
        return Frequency(region_name, centre, bw, None, slots, True)
    if lora.channel_num > slots:
        raise ConfigError("config.lora.channel_num", lora.channel_num, f"exceeds the {slots} slots of {region_name}")
    preset = config_pb2.Config.LoRaConfig.ModemPreset.Name(lora.modem_preset)
    hash_name = channel_name or (_PRESET_DISPLAY_NAME.get(preset, "Custom") if lora.use_preset else "Custom")
    if lora.channel_num == 0:
        slot0, pinned = djb2(hash_name) % slots, False
    else:
        slot0, pinned = lora.channel_num - 1, True
    centre = region.freq_start + bw / 2000 + region.padding + slot0 * slot_width + lora.frequency_offset
    return Frequency(region_name, centre, bw, slot0 + 1, slots, pinned)


# --------------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a profile; ``key`` is the dotted YAML path, ``message`` is for the operator."""

    profile: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.profile}: {self.key}: {self.message}"


@dataclass(frozen=True)
class Setting:
    """One leaf a profile sets: ``kind`` is "config" or "module_config", ``path`` its snake_case path."""

    kind: str
    path: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    """A parsed profile: the library's ``DeviceProfile`` plus what we need to check and verify it."""

    name: str  # the role the profile is for: handset, router, gateway (or the file stem)
    path: Path
    raw: Mapping[str, Any]
    device_profile: clientonly_pb2.DeviceProfile
    settings: tuple[Setting, ...]
    parse_problems: tuple[Problem, ...]
    canned_messages: tuple[str, ...] = field(default=())

    @property
    def lora(self) -> config_pb2.Config.LoRaConfig:
        return self.device_profile.config.lora

    def sections(self, kind: str) -> list[str]:
        """Snake-case sections of ``kind`` the profile sets, in file order."""
        seen: list[str] = []
        for s in self.settings:
            if s.kind == kind and s.path[0] not in seen:
                seen.append(s.path[0])
        return seen


def profile_path(role: str) -> Path:
    if role not in ROLES:
        raise ConfigError("role", role, f"must be one of {', '.join(ROLES)}")
    return PROFILE_DIR / f"{role}.yaml"


def load_profile(role_or_path: str | os.PathLike[str], role: str | None = None) -> Profile:
    """Parse a profile by role name (``handset``) or path, the way ``meshtastic --configure`` does.

    Unknown keys, bad enum names and wrong value types do not raise: they are collected as
    ``parse_problems`` so that :func:`check_profile` reports all of them at once.  An unreadable file,
    invalid YAML or a document that is not a mapping raises :class:`ConfigError`.
    """
    if isinstance(role_or_path, str) and role_or_path in ROLES:
        path = profile_path(role_or_path)
        role = role or role_or_path
    else:
        path = Path(role_or_path)
    name = role or path.stem
    try:
        text = path.read_bytes().decode("utf-8")
        raw = yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError("profile", str(path), f"cannot be read: {exc.strerror or exc}")
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError("profile", str(path), f"is not valid UTF-8 YAML: {exc}")
    if not isinstance(raw, dict):
        raise ConfigError("profile", str(path), "must be a YAML mapping (owner, config, module_config, ...)")

    problems: list[Problem] = []
    settings: list[Setting] = []
    dp = clientonly_pb2.DeviceProfile()

    for key, value in raw.items():
        if key not in _TOP_LEVEL_KEYS:
            problems.append(Problem(name, str(key), "kunci tingkat atas tidak dikenal (diabaikan oleh meshtastic)"))
            continue
        target = _TOP_LEVEL_KEYS[key]
        # meshtastic's _set_if_populated: str(value).strip(), empty means unset
        if target is not None and value is not None and str(value).strip():
            setattr(dp, target, str(value).strip())
    if raw.get("location"):
        loc = raw["location"]
        if not isinstance(loc, dict):
            problems.append(Problem(name, "location", "harus berupa mapping lat/lon/alt"))
        else:
            try:
                dp.fixed_position.latitude_i = round(float(loc.get("lat", 0) or 0) * 1e7)
                dp.fixed_position.longitude_i = round(float(loc.get("lon", 0) or 0) * 1e7)
                dp.fixed_position.altitude = int(loc.get("alt", 0) or 0)
            except (TypeError, ValueError):
                problems.append(Problem(name, "location", "lat/lon/alt harus berupa angka"))

    for kind, root in (("config", dp.config), ("module_config", dp.module_config)):
        sections = raw.get(kind)
        if sections is None:
            continue
        if not isinstance(sections, dict):
            problems.append(Problem(name, kind, "harus berupa mapping bagian → pengaturan"))
            continue
        for section, body in sections.items():
            snake = camel_to_snake(str(section))
            fd = root.DESCRIPTOR.fields_by_name.get(snake)
            if fd is None or fd.message_type is None:
                problems.append(Problem(name, f"{kind}.{section}", "bagian tidak dikenal di protobuf meshtastic"))
                continue
            if snake not in _WRITABLE_SECTIONS[kind]:
                problems.append(Problem(name, f"{kind}.{section}", "bagian ini tidak bisa ditulis oleh pustaka"))
                continue
            if not isinstance(body, dict):
                problems.append(Problem(name, f"{kind}.{section}", "harus berupa mapping kunci → nilai"))
                continue
            section_msg = getattr(root, snake)
            section_msg.SetInParent()
            for key, value in body.items():
                _assign(section_msg, str(key), value, (snake,), kind, name, problems, settings)

    canned = tuple(dp.canned_messages.split("|")) if dp.canned_messages else ()
    return Profile(name, path, raw, dp, tuple(settings), tuple(problems), canned)


def _is_repeated(fd: Any) -> bool:
    # protobuf ≥ 6.31 has is_repeated; older versions only the label (as meshtastic's _is_repeated_field).
    if hasattr(fd, "is_repeated"):
        return bool(fd.is_repeated)
    return bool(fd.label == fd.LABEL_REPEATED)


def _assign(
    msg: Message,
    key: str,
    raw: Any,
    parent: tuple[str, ...],
    kind: str,
    name: str,
    problems: list[Problem],
    settings: list[Setting],
) -> None:
    """Set one YAML key on a protobuf message as meshtastic's setPref would, reporting what it would drop."""
    snake = camel_to_snake(key)
    path = (*parent, snake)
    dotted = f"{kind}." + ".".join(path)
    fd = msg.DESCRIPTOR.fields_by_name.get(snake)
    if fd is None:
        problems.append(Problem(name, dotted, "kunci tidak dikenal di protobuf meshtastic (akan diabaikan)"))
        return
    if fd.message_type is not None:
        if not isinstance(raw, dict):
            problems.append(Problem(name, dotted, "harus berupa mapping"))
            return
        sub = getattr(msg, snake)
        sub.SetInParent()
        for k, v in raw.items():
            _assign(sub, str(k), v, path, kind, name, problems, settings)
        return

    value = fromStr(raw) if isinstance(raw, str) else raw
    bitfield = _BITFIELD_ENUMS.get(".".join(path[-2:]))
    if bitfield is not None and isinstance(value, str):
        try:
            value = flags_from_list(bitfield, [p.strip() for p in value.split(",") if p.strip()])
        except ValueError as exc:
            problems.append(Problem(name, dotted, f"flag tidak dikenal: {exc}"))
            return
    if fd.enum_type is not None and not isinstance(value, list):
        if isinstance(value, str):
            ev = fd.enum_type.values_by_name.get(value)
            if ev is None:
                choices = ", ".join(sorted(fd.enum_type.values_by_name))
                problems.append(Problem(name, dotted, f"nilai enum {value!r} tidak ada (pilihan: {choices})"))
                return
            value = ev.number
        elif isinstance(value, bool) or not isinstance(value, int) or value not in fd.enum_type.values_by_number:
            problems.append(Problem(name, dotted, f"nilai enum {value!r} tidak ada"))
            return
    try:
        if _is_repeated(fd):
            items = value if isinstance(value, list) else [value]
            getattr(msg, snake)[:] = [fromStr(x) if isinstance(x, str) else x for x in items]
        else:
            if isinstance(value, float) and value.is_integer() and fd.cpp_type != fd.CPPTYPE_FLOAT:
                value = int(value)
            setattr(msg, snake, value)
    except (TypeError, ValueError) as exc:
        problems.append(Problem(name, dotted, f"tipe nilai salah ({type(raw).__name__}): {exc}"))
        return
    settings.append(Setting(kind, path))


# --------------------------------------------------------------------------------------------------
# Checking


def expected_canned_messages() -> tuple[str, ...]:
    """The classifier's canned set: the handset offers exactly the texts the classifier knows as canned."""
    return tuple(CANNED_MESSAGES)


def _walk(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            yield key, v
            yield from _walk(v, key)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{prefix}[{i}]")


def check_profile(profile: Profile, channel_name: str = CHANNEL_NAME) -> list[Problem]:
    """Every reason this profile must not go onto a radio; empty when it is fit to apply."""
    name = profile.name
    problems = list(profile.parse_problems)

    def problem(key: str, message: str) -> None:
        problems.append(Problem(name, key, message))

    # Secrets: nothing that is a key, a password or a channel URL may be committed in a profile.
    for key, value in _walk(profile.raw):
        leaf = camel_to_snake(key.rsplit(".", 1)[-1])
        if leaf in _SECRET_KEYS or leaf == "channel_url":
            problem(key, "profil tidak boleh memuat kunci/rahasia/URL kanal; kunci kanal dibuat saat apply")
        elif isinstance(value, str) and "meshtastic.org/e/" in value:
            problem(key, "profil tidak boleh memuat URL kanal (berisi PSK)")

    cfg = profile.device_profile.config
    lora = cfg.lora
    if not cfg.HasField("lora"):
        problem("config.lora", "bagian lora wajib ada (region, preset, channel_num, hop_limit)")
    region = config_pb2.Config.LoRaConfig.RegionCode.Name(lora.region)
    if region != REQUIRED_REGION:
        problem(
            "config.lora.region",
            f"harus {REQUIRED_REGION} (Indonesia belum punya kode region), bukan {region}",
        )
    if not lora.use_preset:
        problem("config.lora.use_preset", "harus true: semua radio satu jaringan memakai preset yang sama")
    if not lora.override_frequency and lora.channel_num == 0:
        problem(
            "config.lora.channel_num",
            "frekuensi tidak dipatok: slot bawaan dihitung dari nama kanal, bisa di luar 920–923 MHz",
        )
    try:
        freq = radio_frequency(lora, channel_name)
    except ConfigError as exc:
        problem(exc.key, f"frekuensi tidak dapat dihitung: {exc.reason}")
    else:
        if not freq.inside():
            problem(
                "config.lora.channel_num" if not lora.override_frequency else "config.lora.override_frequency",
                f"frekuensi tengah {freq.centre_mhz:.3f} MHz ({freq.low_mhz:.3f}–{freq.high_mhz:.3f} MHz) "
                f"di luar pita Indonesia {BAND_LOW_MHZ:g}–{BAND_HIGH_MHZ:g} MHz",
            )
    lo, hi = HOP_LIMIT_RANGE
    if not lo <= lora.hop_limit <= hi:
        problem("config.lora.hop_limit", f"harus {lo}–{hi} dan ditulis eksplisit (0 = bawaan firmware 3)")

    sec = cfg.security
    if sec.private_key or sec.public_key or len(sec.admin_key):
        problem("config.security", "kunci perangkat/admin tidak boleh ada di profil")

    if profile.name in DEVICE_ROLES:
        role = config_pb2.Config.DeviceConfig.Role.Name(cfg.device.role)
        allowed = DEVICE_ROLES[profile.name]
        if role not in allowed or not cfg.HasField("device"):
            problem("config.device.role", f"profil {profile.name} harus berperan {' atau '.join(sorted(allowed))}")
    if profile.name == "handset":
        _check_handset(profile, problem)
    elif profile.name == "router":
        if cfg.bluetooth.enabled or not cfg.HasField("bluetooth"):
            problem("config.bluetooth.enabled", "router di bukit: bluetooth harus dimatikan (false)")
    elif profile.name == "gateway":
        if not (sec.serial_enabled or cfg.device.serial_enabled):
            problem("config.security.serial_enabled", "radio pos harus membuka API serial (true)")
        if cfg.bluetooth.enabled:
            problem("config.bluetooth.enabled", "radio pos: bluetooth harus dimatikan (false)")
        if profile.device_profile.module_config.serial.enabled:
            problem("module_config.serial.enabled", "modul Serial akan mengambil port USB dari API: harus false")
    return problems


def _check_handset(profile: Profile, problem: Callable[[str, str], None]) -> None:
    canned = profile.canned_messages
    expected = expected_canned_messages()
    if canned != expected:
        problem("canned_messages", f"harus persis {'|'.join(expected)!r} (himpunan pesan klasifikasi)")
    if len(profile.device_profile.canned_messages) > CANNED_MAX_CHARS or len(canned) > CANNED_MAX_MESSAGES:
        problem(
            "canned_messages",
            f"melebihi batas firmware ({CANNED_MAX_MESSAGES} pesan, {CANNED_MAX_CHARS} karakter)",
        )
    modules = profile.device_profile.module_config
    if not modules.canned_message.enabled:
        problem("module_config.canned_message.enabled", "modul pesan siap pakai harus aktif (true)")
    ds = modules.detection_sensor
    key = "module_config.detection_sensor"
    if not ds.enabled:
        problem(f"{key}.enabled", "sensor deteksi (tombol SOS) harus aktif (true)")
    if ds.monitor_pin <= 0:
        problem(f"{key}.monitor_pin", "pin GPIO tombol SOS harus diisi (> 0)")
    if not ds.name.strip():
        problem(f"{key}.name", "nama sensor harus diisi (mis. SOS)")
    lo, hi = DETECTION_MIN_SECS_RANGE
    if not lo <= ds.minimum_broadcast_secs <= hi:
        problem(
            f"{key}.minimum_broadcast_secs",
            f"harus {lo}–{hi} detik (0 berarti sekali per jam: tekanan tombol di antaranya hilang)",
        )
    if not profile.device_profile.config.position.position_broadcast_smart_enabled:
        problem("config.position.position_broadcast_smart_enabled", "handset harus menyiarkan posisi (smart)")


@dataclass(frozen=True)
class CheckResult:
    profile: Profile
    problems: tuple[Problem, ...]
    frequency: Frequency | None


def check_all(channel_name: str = CHANNEL_NAME) -> list[CheckResult]:
    """Check the three shipped profiles (raises ConfigError only if a file cannot be parsed at all)."""
    results = []
    for role in ROLES:
        profile = load_profile(role)
        results.append(_check_result(profile, channel_name))
    return results


def _check_result(profile: Profile, channel_name: str) -> CheckResult:
    try:
        freq: Frequency | None = radio_frequency(profile.lora, channel_name)
    except ConfigError:
        freq = None
    return CheckResult(profile, tuple(check_profile(profile, channel_name)), freq)


# --------------------------------------------------------------------------------------------------
# Channel key


@dataclass(frozen=True)
class ChannelPlan:
    """The channels apply writes: index 0 is PRIMARY; ``source`` says where the key came from."""

    settings: tuple[channel_pb2.ChannelSettings, ...]
    source: str  # "url", "file" or "generated"
    psk_path: Path | None


def _check_psk(psk: bytes, where: str) -> None:
    if len(psk) <= 1 or psk == _DEFAULT_KEY:
        raise ConfigError(where, "<psk>", "is empty or the public default key (AQ==): use a private random key")
    if len(psk) not in (16, 32):
        raise ConfigError(where, f"<{len(psk)} bytes>", "must be a 16- or 32-byte AES key")


def parse_channel_url(url: str) -> apponly_pb2.ChannelSet:
    """Decode a ``https://meshtastic.org/e/#...`` URL the way Node.setURL does (without its sys.exit)."""
    parts = url.split("/#")
    if len(parts) < 2 or not parts[-1]:
        raise ConfigError("channel_url", url[:40], "is not a Meshtastic channel URL (https://meshtastic.org/e/#...)")
    b64 = parts[-1]
    b64 += "=" * (-len(b64) % 4)
    channel_set = apponly_pb2.ChannelSet()
    try:
        channel_set.ParseFromString(base64.urlsafe_b64decode(b64))
    except (binascii.Error, ValueError, Exception) as exc:  # protobuf raises DecodeError (an Exception)
        raise ConfigError("channel_url", url[:40], f"cannot be decoded: {exc}")
    if not channel_set.settings:
        raise ConfigError("channel_url", url[:40], "holds no channel settings")
    return channel_set


def read_psk_file(path: Path) -> bytes:
    """Read a key file written by :func:`write_psk_file` (base64 text); refuse one others can read."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("psk_file", str(path), f"cannot be read: {exc}")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError("psk_file", str(path), "is readable by other users: chmod 600 it")
    text = text.removeprefix("base64:")
    try:
        psk = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("psk_file", str(path), "must hold the key in base64")
    _check_psk(psk, "psk_file")
    return psk


def write_psk_file(path: Path, psk: bytes) -> None:
    """Create the regency key file, mode 0600, refusing to overwrite an existing key."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError("psk_file", str(path), "already exists: it is read, never overwritten")
    except OSError as exc:
        raise ConfigError("psk_file", str(path), f"cannot be created: {exc.strerror or exc}")
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(base64.b64encode(psk).decode("ascii") + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def plan_channels(
    channel_url: str | None = None,
    psk_file: str | os.PathLike[str] | None = None,
    channel_name: str = CHANNEL_NAME,
) -> ChannelPlan:
    """The private channel: from the URL, else the regency's key file, else a new key written to that file."""
    if channel_url:
        channel_set = parse_channel_url(channel_url)
        for i, s in enumerate(channel_set.settings):
            _check_psk(bytes(s.psk), f"channel_url.settings[{i}].psk")
        return ChannelPlan(tuple(_with_position(s) for s in channel_set.settings), "url", None)
    if not channel_name or len(channel_name.encode("utf-8")) > 11:
        raise ConfigError("channel_name", channel_name, "must be 1-11 bytes (firmware limit)")
    path = Path(psk_file) if psk_file else DEFAULT_PSK_PATH
    if path.exists():
        psk, source = read_psk_file(path), "file"
    else:
        psk, source = secrets.token_bytes(PSK_BYTES), "generated"
        write_psk_file(path, psk)
        logger.info("generated a new %d-byte channel key in %s", PSK_BYTES, path)
    settings = channel_pb2.ChannelSettings(name=channel_name, psk=psk)
    return ChannelPlan((_with_position(settings),), source, path)


def _with_position(settings: channel_pb2.ChannelSettings) -> channel_pb2.ChannelSettings:
    # position_precision 0 on a channel means "never share position" (firmware 2.5+): the post needs the
    # handset's position on our private channel, and the key keeps it private.
    out = channel_pb2.ChannelSettings()
    out.CopyFrom(settings)
    if out.module_settings.position_precision == 0:
        out.module_settings.position_precision = 32
    return out


# --------------------------------------------------------------------------------------------------
# Applying through the meshtastic library


@dataclass(frozen=True)
class ApplyResult:
    role: str
    device: str
    frequency: Frequency
    channel_source: str
    psk_path: Path | None
    verified: int  # number of values read back and found equal


def _open_interface(port: str | None, host: str | None, timeout: int) -> Any:
    """Open the library's interface, turning every failure (including its sys.exit) into RadioError."""
    import meshtastic.mesh_interface
    import meshtastic.serial_interface
    import meshtastic.tcp_interface

    target = port or host or ""
    iface: Any
    try:
        if port:
            iface = meshtastic.serial_interface.SerialInterface(devPath=port, timeout=timeout)
        else:
            assert host is not None
            hostname, tcp_port = parse_host_port(host, "--host", default_port=4403)
            iface = meshtastic.tcp_interface.TCPInterface(hostname=hostname, portNumber=tcp_port, timeout=timeout)
        # The constructor can return before the reader thread has run _connected() (which sends the first
        # heartbeat); closing in that window makes the library log a BrokenPipe traceback. Let it finish.
        iface.isConnected.wait(5.0)
        time.sleep(0.1)
        return iface
    except SystemExit as exc:
        raise RadioError(f"pustaka meshtastic berhenti saat membuka {target}: {exc}")
    except (OSError, meshtastic.mesh_interface.MeshInterface.MeshInterfaceError) as exc:
        raise RadioError(f"tidak dapat terhubung ke radio di {target}: {exc}")
    except Exception as exc:  # serial/protobuf errors the library lets through
        raise RadioError(f"tidak dapat terhubung ke radio di {target}: {exc!r}")


def _close(iface: Any) -> None:
    try:
        iface.close()
    except Exception as exc:  # closing a broken link must not hide the real error
        logger.debug("closing the interface failed: %r", exc)


def _library(call: Callable[[], Any], what: str) -> Any:
    try:
        return call()
    except SystemExit as exc:
        raise RadioError(f"pustaka meshtastic berhenti saat {what}: {exc}")
    except Exception as exc:
        raise RadioError(f"gagal {what}: {exc!r}")


def apply_profile(
    role: str,
    port: str | None = None,
    host: str | None = None,
    channel_url: str | None = None,
    psk_file: str | os.PathLike[str] | None = None,
    *,
    channel_name: str = CHANNEL_NAME,
    profile: Profile | None = None,
    pause: float = 0.5,
    connect_timeout: int = 60,
    reconnect_timeout: float = 90.0,
    read_timeout: float = 10.0,
    settle: float = 12.0,
) -> ApplyResult:
    """Write a profile and the private channel to a radio, then reconnect and verify every value.

    Exactly one of ``port`` (USB serial) or ``host`` (TCP, ``host[:port]``) is required.  The writes are
    one begin/commit edit-settings transaction, as ``meshtastic --configure`` does.  ``pause`` spaces the
    admin messages (the CLI does the same, 0.5 s) so a slow board is not overrun.  After the commit the
    firmware reboots within a few seconds: we disconnect, wait ``settle`` seconds, then verify over a
    new connection, retrying until ``reconnect_timeout``.
    Raises ConfigError (bad arguments, profile or key) or RadioError (link or verification failed).
    """
    if bool(port) == bool(host):
        raise ConfigError("port/host", port or host or "", "give exactly one of --port (serial) or --host (TCP)")
    if port and not os.path.exists(port):
        raise RadioError(f"port serial {port} tidak ada (radio tercolok?)")
    if host:
        parse_host_port(host, "--host", default_port=4403)  # a typo is a usage error (78), not a radio fault
    profile = profile or load_profile(role)
    problems = check_profile(profile, channel_name)
    if problems:
        raise ConfigError(f"profile {profile.name}", str(profile.path), "; ".join(str(p) for p in problems))
    if profile.canned_messages and len(profile.device_profile.canned_messages) > CANNED_MAX_CHARS:
        raise ConfigError("canned_messages", profile.device_profile.canned_messages, "exceeds 200 characters")
    plan = plan_channels(channel_url, psk_file, channel_name)
    freq = radio_frequency(profile.lora, plan.settings[0].name)
    device = port or host or ""

    iface = _open_interface(port, host, connect_timeout)
    try:
        _write(iface, profile, plan, pause)
    finally:
        _close(iface)
    # The firmware reboots a few seconds after the commit. We are disconnected by then (a TCP interface
    # left open would reconnect on its own thread and race our close), and verify only afterwards, so
    # the reboot cannot cut the read-back half way.
    time.sleep(settle)
    verified = _verify(profile, plan, port, host, connect_timeout, reconnect_timeout, read_timeout)
    logger.info("applied profile %s to %s and verified %d values", profile.name, device, verified)
    return ApplyResult(profile.name, device, freq, plan.source, plan.psk_path, verified)


def _write(iface: Any, profile: Profile, plan: ChannelPlan, pause: float) -> None:
    node = iface.localNode
    dp = profile.device_profile

    def step(call: Callable[[], Any], what: str) -> None:
        _library(call, what)
        if pause:
            time.sleep(pause)

    if node.channels is None or not node.localConfig.ListFields():
        raise RadioError("radio tidak mengirim konfigurasi/kanal saat terhubung")
    step(node.beginSettingsTransaction, "membuka transaksi pengaturan")
    if dp.long_name or dp.short_name:
        step(
            lambda: node.setOwner(long_name=dp.long_name or None, short_name=dp.short_name or None),
            "menulis pemilik",
        )
    if dp.canned_messages:
        step(lambda: node.set_canned_message(dp.canned_messages), "menulis pesan siap pakai")
    if dp.ringtone:
        step(lambda: node.set_ringtone(dp.ringtone), "menulis nada dering")

    for index in range(8):
        ch = channel_pb2.Channel(index=index)
        if index < len(plan.settings):
            ch.role = channel_pb2.Channel.Role.PRIMARY if index == 0 else channel_pb2.Channel.Role.SECONDARY
            ch.settings.CopyFrom(plan.settings[index])
        else:
            # Leftover channels (often the public LongFast) are disabled: the device serves one private mesh.
            ch.role = channel_pb2.Channel.Role.DISABLED
        current = node.channels[index] if index < len(node.channels) else None
        if current is not None and current.SerializeToString() == ch.SerializeToString():
            continue
        while len(node.channels) <= index:
            node.channels.append(channel_pb2.Channel(index=len(node.channels)))
        node.channels[index] = ch
        step(functools.partial(node.writeChannel, index), f"menulis kanal {index}")

    for kind, local in (("config", node.localConfig), ("module_config", node.moduleConfig)):
        source = dp.config if kind == "config" else dp.module_config
        for section in profile.sections(kind):
            # Like --configure with its seed: the device's current section, then our values on top, so
            # settings the profile does not mention (and the device's own keys) are kept.
            merged = getattr(local, section)
            merged.MergeFrom(getattr(source, section))
            _overwrite_scalars(merged, getattr(source, section), profile, kind, section)
            step(functools.partial(node.writeConfig, section), f"menulis {kind}.{section}")

    if dp.HasField("fixed_position") and dp.config.position.fixed_position:
        pos = dp.fixed_position
        step(
            lambda: node.setFixedPosition(pos.latitude_i / 1e7, pos.longitude_i / 1e7, pos.altitude),
            "menulis posisi tetap",
        )
    step(node.commitSettingsTransaction, "menyimpan transaksi pengaturan")


def _overwrite_scalars(target: Message, source: Message, profile: Profile, kind: str, section: str) -> None:
    # MergeFrom skips proto3 scalars at their default (false, 0): a profile saying `enabled: false` must
    # still switch the device's value off, so every leaf the YAML names is copied explicitly.
    for setting in profile.settings:
        if setting.kind != kind or setting.path[0] != section:
            continue
        dst, src = target, source
        for part in setting.path[1:-1]:
            dst, src = getattr(dst, part), getattr(src, part)
        leaf = setting.path[-1]
        value = getattr(src, leaf)
        if _is_repeated(dst.DESCRIPTOR.fields_by_name[leaf]):
            getattr(dst, leaf)[:] = list(value)
        else:
            setattr(dst, leaf, value)


def _connect_with_retry(port: str | None, host: str | None, timeout: int, deadline: float) -> Any:
    # Real firmware reboots after committing lora/device changes: the port vanishes or refuses for a while.
    last: RadioError | None = None
    while True:
        try:
            return _open_interface(port, host, timeout)
        except RadioError as exc:
            last = exc
            if time.monotonic() >= deadline:
                raise RadioError(f"radio tidak kembali setelah menyimpan pengaturan: {last}")
            logger.info("radio not back yet (%s); retrying", exc)
            time.sleep(1.0)


def _admin_get(iface: Any, request: admin_pb2.AdminMessage, timeout: float) -> admin_pb2.AdminMessage | None:
    """Send one admin get request to the local node and wait for its response with our own timeout."""
    done = threading.Event()
    box: list[admin_pb2.AdminMessage] = []

    def on_response(packet: dict[str, Any]) -> None:
        # Runs on the library's reader thread: store and signal only.
        raw = packet.get("decoded", {}).get("admin", {}).get("raw")
        if isinstance(raw, admin_pb2.AdminMessage):
            box.append(raw)
        done.set()

    _library(
        lambda: iface.sendData(
            request,
            iface.localNode.nodeNum,
            portNum=portnums_pb2.PortNum.ADMIN_APP,
            wantAck=True,
            wantResponse=True,
            onResponse=on_response,
        ),
        "meminta konfigurasi",
    )
    done.wait(timeout)
    return box[0] if box else None


@dataclass
class _Snapshot:
    """What the device reports after the change, read over a fresh connection."""

    config: localonly_pb2.LocalConfig
    module_config: localonly_pb2.LocalModuleConfig
    channels: list[channel_pb2.Channel]
    canned_messages: str | None
    long_name: str | None


def _read_back(iface: Any, profile: Profile, read_timeout: float) -> _Snapshot:
    node = iface.localNode
    config = localonly_pb2.LocalConfig()
    config.CopyFrom(node.localConfig)
    modules = localonly_pb2.LocalModuleConfig()
    modules.CopyFrom(node.moduleConfig)
    for kind, local in (("config", config), ("module_config", modules)):
        for section in profile.sections(kind):
            if not local.HasField(section):
                _fetch_section(iface, kind, section, local, read_timeout)
    canned = None
    if profile.device_profile.canned_messages:
        request = admin_pb2.AdminMessage(get_canned_message_module_messages_request=True)
        response = _admin_get(iface, request, read_timeout)
        if response is None:
            raise RadioError("perangkat tidak menjawab permintaan pesan siap pakai")
        canned = response.get_canned_message_module_messages_response
    channels = []
    for ch in node.channels or []:
        copy = channel_pb2.Channel()
        copy.CopyFrom(ch)
        channels.append(copy)
    return _Snapshot(config, modules, channels, canned, iface.getLongName())


def _verify(
    profile: Profile,
    plan: ChannelPlan,
    port: str | None,
    host: str | None,
    connect_timeout: int,
    reconnect_timeout: float,
    read_timeout: float,
) -> int:
    """Read the configuration back over a fresh connection and compare every value the profile sets."""
    deadline = time.monotonic() + reconnect_timeout
    while True:
        iface = _connect_with_retry(port, host, connect_timeout, deadline)
        try:
            snapshot = _read_back(iface, profile, read_timeout)
            break
        except RadioError as exc:
            # A reboot that lands in the middle of the read drops the link: read again from scratch.
            if time.monotonic() >= deadline:
                raise
            logger.info("reading the configuration back failed (%s); retrying", exc)
        finally:
            _close(iface)
    mismatches, checked = _compare(profile, plan, snapshot)
    if mismatches:
        raise RadioError("verifikasi gagal: " + "; ".join(mismatches))
    return checked


def _compare(profile: Profile, plan: ChannelPlan, snap: _Snapshot) -> tuple[list[str], int]:
    mismatches: list[str] = []
    checked = 0
    dp = profile.device_profile
    for setting in profile.settings:
        local: Message = snap.config if setting.kind == "config" else snap.module_config
        expected_root: Message = dp.config if setting.kind == "config" else dp.module_config
        got, want = _get_path(local, setting.path), _get_path(expected_root, setting.path)
        checked += 1
        if _normalise(got) != _normalise(want):
            mismatches.append(f"{setting.kind}.{'.'.join(setting.path)}: perangkat {got!r}, profil {want!r}")

    for index in range(8):
        ch = snap.channels[index] if index < len(snap.channels) else None
        checked += 1
        if index < len(plan.settings):
            want_role = channel_pb2.Channel.Role.PRIMARY if index == 0 else channel_pb2.Channel.Role.SECONDARY
            if ch is None or ch.role != want_role:
                mismatches.append(f"kanal {index}: peran tidak sesuai")
            elif bytes(ch.settings.psk) != bytes(plan.settings[index].psk):
                mismatches.append(f"kanal {index}: kunci (PSK) berbeda")
            elif ch.settings.name != plan.settings[index].name:
                mismatches.append(f"kanal {index}: nama {ch.settings.name!r}, harus {plan.settings[index].name!r}")
        elif ch is not None and ch.role != channel_pb2.Channel.Role.DISABLED:
            mismatches.append(f"kanal {index}: masih aktif ({ch.settings.name!r}), harus dinonaktifkan")

    if dp.canned_messages:
        checked += 1
        if snap.canned_messages != dp.canned_messages:
            mismatches.append(f"canned_messages: perangkat {snap.canned_messages!r}, profil {dp.canned_messages!r}")
    if dp.long_name:
        checked += 1
        if snap.long_name != dp.long_name:
            mismatches.append(f"owner: perangkat {snap.long_name!r}, profil {dp.long_name!r}")
    return mismatches, checked


def _fetch_section(iface: Any, kind: str, section: str, local: Message, timeout: float) -> None:
    request = admin_pb2.AdminMessage()
    if kind == "config":
        request.get_config_request = admin_pb2.AdminMessage.ConfigType.Value(section.upper() + "_CONFIG")
        response = _admin_get(iface, request, timeout)
        if response is not None and response.get_config_response.HasField(section):
            getattr(local, section).CopyFrom(getattr(response.get_config_response, section))
            return
    else:
        request.get_module_config_request = localonly_pb2.LocalModuleConfig.DESCRIPTOR.fields_by_name[section].index
        response = _admin_get(iface, request, timeout)
        if response is not None and response.get_module_config_response.HasField(section):
            getattr(local, section).CopyFrom(getattr(response.get_module_config_response, section))
            return
    raise RadioError(f"perangkat tidak mengirim {kind}.{section} untuk diverifikasi")


def _get_path(msg: Message, path: tuple[str, ...]) -> Any:
    value: Any = msg
    for part in path:
        value = getattr(value, part)
    return value


def _normalise(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)  # float32 on the wire
    if hasattr(value, "__iter__") and not isinstance(value, str | bytes):
        return list(value)
    return value


# --------------------------------------------------------------------------------------------------
# CLI entry points (cli/firmware.py parses the arguments and calls these)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 78


def firmware_check(args: argparse.Namespace) -> int:
    """``siaga firmware check``: each profile's frequency and problems; 0 ok, 1 problems, 78 unreadable."""
    out = sys.stdout
    paths = list(getattr(args, "profiles", None) or [])
    role = getattr(args, "role", None)
    try:
        loaded = [load_profile(p, role=role) for p in paths]
        results = [_check_result(p, CHANNEL_NAME) for p in loaded] if paths else check_all()
    except ConfigError as exc:
        print(f"KESALAHAN KONFIGURASI: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    failed = False
    for result in results:
        p = result.profile
        freq = result.frequency
        where = (
            f"{freq.centre_mhz:.3f} MHz ({freq.low_mhz:.3f}–{freq.high_mhz:.3f} MHz, "
            f"{freq.region} slot {freq.slot}/{freq.slots})"
            if freq
            else "frekuensi tidak dapat dihitung"
        )
        status = "OK" if not result.problems else "BERMASALAH"
        print(f"{p.path.name} [{p.name}]: {status} — {where}, hop_limit {p.lora.hop_limit}", file=out)
        for problem in result.problems:
            print(f"  - {problem.key}: {problem.message}", file=out)
        failed = failed or bool(result.problems)
    if failed:
        print("Profil bermasalah: perbaiki sebelum dipasang ke radio.", file=out)
        return EXIT_FAILURE
    print(
        f"Semua profil lolos: frekuensi di dalam {BAND_LOW_MHZ:g}–{BAND_HIGH_MHZ:g} MHz, tanpa kunci.",
        file=out,
    )
    return EXIT_OK


def firmware_apply(args: argparse.Namespace) -> int:
    """``siaga firmware apply``: 0 applied and verified, 1 radio/verification failure, 78 bad arguments."""
    try:
        result = apply_profile(
            args.role,
            port=getattr(args, "port", None),
            host=getattr(args, "host", None),
            channel_url=getattr(args, "channel_url", None),
            psk_file=getattr(args, "psk_file", None),
            channel_name=getattr(args, "channel_name", None) or CHANNEL_NAME,
        )
    except ConfigError as exc:
        print(f"KESALAHAN KONFIGURASI: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RadioError as exc:
        print(f"GAGAL: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    f = result.frequency
    print(f"Profil {result.role} terpasang di {result.device} dan terverifikasi ({result.verified} nilai).")
    print(f"Frekuensi: {f.centre_mhz:.3f} MHz ({f.low_mhz:.3f}–{f.high_mhz:.3f} MHz), region {f.region}.")
    if result.channel_source == "generated":
        print(f"Kunci kanal BARU dibuat di {result.psk_path} (mode 0600). Simpan dan salin file ini untuk")
        print("semua radio kabupaten yang sama; jangan pernah di-commit atau dikirim lewat chat.")
    elif result.channel_source == "file":
        print(f"Kunci kanal diambil dari {result.psk_path}.")
    else:
        print("Kunci kanal diambil dari URL kanal yang diberikan.")
    return EXIT_OK
