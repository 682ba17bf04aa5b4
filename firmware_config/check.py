"""The check: every reason a profile must not go onto a radio, and how a radio's configuration differs from
its profile (pure: works on :class:`~firmware_config.profile.Profile` values and a :class:`DeviceState`).

``siaga firmware check`` runs :func:`check_profile` on the profile files; with ``--port``/``--host`` it
also reads the radio and runs :func:`check_device`.  ``siaga firmware apply`` verifies its writes with
:func:`compare`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from firmware_config.channel import ChannelPlan, check_psk
from firmware_config.frequency import (
    BAND_HIGH_MHZ,
    BAND_LOW_MHZ,
    CHANNEL_NAME,
    HOP_LIMIT_RANGE,
    REQUIRED_REGION,
    Frequency,
    Lora,
    radio_frequency,
)
from firmware_config.profile import CUSTODY_ROLES, DEVICE_ROLES, Problem, Profile, get_path
from siaga.errors import ConfigError
from siaga.report import CANNED_MESSAGES

#: Firmware limits for the canned message module.
CANNED_MAX_CHARS = 200
CANNED_MAX_MESSAGES = 50
#: Detection sensor rate limit: 0 means once an hour in firmware (presses in between are lost).
DETECTION_MIN_SECS_RANGE = (5, 60)

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

#: The rebroadcast mode a radio handing our private port to a Pi must run (config.proto RebroadcastMode).
CUSTODY_REBROADCAST_MODE = "ALL"
# Why every other mode fails our custody traffic (PRIVATE_APP, port 300, docs/RELAY.md) or the mesh around it;
# firmware Router.cpp / NodeDB.cpp behaviour, see docs/FIRMWARE.md.
_REBROADCAST_BLOCKS = {
    "CORE_PORTNUMS_ONLY": "paket PRIVATE_APP (port 300) dibuang: tidak sampai ke Pi dan tidak diteruskan "
    "(bawaan peran ROUTER sejak firmware 2.5.9)",
    "KNOWN_ONLY": "paket dari node yang belum ada di NodeDB radio dibuang: pos baru atau yang terhapus dari "
    "NodeDB tidak terdengar",
    "LOCAL_ONLY": "paket yang tidak bisa didekripsi radio ini tidak diteruskan: DM PKI antar node lain "
    "(tanda terima ke handset, DM antar pos) berhenti di sini",
    "NONE": "radio tidak meneruskan apa pun (hanya untuk peran SENSOR/TRACKER)",
    "ALL_SKIP_DECODING": "paket tidak didekode (hanya peran REPEATER): Pi tidak menerima apa-apa",
}


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


def _snake(name: str) -> str:
    # The library's camel_to_snake, for the secret scan (which runs on the raw YAML keys).
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


Report = Callable[[str, str], None]


def check_profile(profile: Profile, channel_name: str = CHANNEL_NAME) -> list[Problem]:
    """Every reason this profile must not go onto a radio; empty when it is fit to apply."""
    name = profile.name
    problems = list(profile.parse_problems)

    def problem(key: str, message: str) -> None:
        problems.append(Problem(name, key, message))

    # Secrets: nothing that is a key, a password or a channel URL may be committed in a profile.
    for key, value in _walk(dict(profile.raw)):
        leaf = _snake(key.rsplit(".", 1)[-1])
        if leaf in _SECRET_KEYS:
            problem(key, "profil tidak boleh memuat kunci/rahasia/URL kanal; kunci kanal dibuat saat apply")
        elif isinstance(value, str) and "meshtastic.org/e/" in value:
            problem(key, "profil tidak boleh memuat URL kanal (berisi PSK)")

    if not profile.has("config.lora"):
        problem("config.lora", "bagian lora wajib ada (region, preset, channel_num, hop_limit)")
    _radio_rules(name, profile.get, profile.has, channel_name, problem)

    if (
        profile.get("config.security.private_key")
        or profile.get("config.security.public_key")
        or len(profile.get("config.security.admin_key"))
    ):
        problem("config.security", "kunci perangkat/admin tidak boleh ada di profil")
    if name in CUSTODY_ROLES and not any(s.key == "config.device.rebroadcast_mode" for s in profile.settings):
        # apply merges onto the radio's section: an unnamed mode keeps whatever the radio had, and a radio
        # that was ever a ROUTER has CORE_PORTNUMS_ONLY.
        problem(
            "config.device.rebroadcast_mode",
            f"harus ditulis eksplisit ({CUSTODY_REBROADCAST_MODE}): tanpa itu radio memakai nilai lamanya "
            "(peran ROUTER memasang CORE_PORTNUMS_ONLY)",
        )
    if name == "handset":
        _check_handset(profile, problem)
    return problems


def _radio_rules(
    name: str,
    get: Callable[[str], Any],
    has: Callable[[str], bool],
    channel_name: str,
    problem: Report,
) -> None:
    """The rules on values a radio runs with: frequency, hops, role; the same for a profile and a device."""
    lora = Lora.from_values(get("config.lora"))
    if lora.region != REQUIRED_REGION:
        problem(
            "config.lora.region",
            f"harus {REQUIRED_REGION} (Indonesia belum punya kode region), bukan {lora.region}",
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

    if name in DEVICE_ROLES:
        allowed = DEVICE_ROLES[name]
        if get("config.device.role") not in allowed or not has("config.device"):
            problem("config.device.role", f"profil {name} harus berperan {' atau '.join(sorted(allowed))}")
    if name == "router":
        if get("config.bluetooth.enabled") or not has("config.bluetooth"):
            problem("config.bluetooth.enabled", "router di bukit: bluetooth harus dimatikan (false)")
    elif name in CUSTODY_ROLES:
        _check_custody_radio(name, get, problem)


def _check_custody_radio(name: str, get: Callable[[str], Any], problem: Report) -> None:
    """A radio on a Pi's USB port that must hand our private port to the daemon (gateway, relay)."""
    where = "radio pos" if name == "gateway" else "radio relay"
    if not (get("config.security.serial_enabled") or get("config.device.serial_enabled")):
        problem("config.security.serial_enabled", f"{where} harus membuka API serial (true)")
    if get("config.bluetooth.enabled"):
        problem("config.bluetooth.enabled", f"{where}: bluetooth harus dimatikan (false)")
    if get("module_config.serial.enabled"):
        problem("module_config.serial.enabled", "modul Serial akan mengambil port USB dari API: harus false")
    if get("config.power.is_power_saving"):
        problem(
            "config.power.is_power_saving",
            f"{where} harus selalu bangun (false): MCU yang tidur memutus API serial dan paket hilang",
        )
    mode = get("config.device.rebroadcast_mode")
    if mode != CUSTODY_REBROADCAST_MODE:
        why = _REBROADCAST_BLOCKS.get(mode, "mode ini tidak dikenal aman untuk port privat kita")
        problem(
            "config.device.rebroadcast_mode",
            f"{mode} tidak meneruskan port privat kita: {why}. Perbaiki: rebroadcast_mode: {CUSTODY_REBROADCAST_MODE}",
        )


def _check_handset(profile: Profile, problem: Report) -> None:
    canned = profile.canned_messages
    expected = expected_canned_messages()
    if canned != expected:
        problem("canned_messages", f"harus persis {'|'.join(expected)!r} (himpunan pesan klasifikasi)")
    if len(profile.canned_text) > CANNED_MAX_CHARS or len(canned) > CANNED_MAX_MESSAGES:
        problem(
            "canned_messages",
            f"melebihi batas firmware ({CANNED_MAX_MESSAGES} pesan, {CANNED_MAX_CHARS} karakter)",
        )
    get = profile.get
    if not get("module_config.canned_message.enabled"):
        problem("module_config.canned_message.enabled", "modul pesan siap pakai harus aktif (true)")
    key = "module_config.detection_sensor"
    if not get(f"{key}.enabled"):
        problem(f"{key}.enabled", "sensor deteksi (tombol SOS) harus aktif (true)")
    if get(f"{key}.monitor_pin") <= 0:
        problem(f"{key}.monitor_pin", "pin GPIO tombol SOS harus diisi (> 0)")
    if not get(f"{key}.name").strip():
        problem(f"{key}.name", "nama sensor harus diisi (mis. SOS)")
    lo, hi = DETECTION_MIN_SECS_RANGE
    if not lo <= get(f"{key}.minimum_broadcast_secs") <= hi:
        problem(
            f"{key}.minimum_broadcast_secs",
            f"harus {lo}–{hi} detik (0 berarti sekali per jam: tekanan tombol di antaranya hilang)",
        )
    if not get("config.position.position_broadcast_smart_enabled"):
        problem("config.position.position_broadcast_smart_enabled", "handset harus menyiarkan posisi (smart)")


@dataclass(frozen=True)
class CheckResult:
    profile: Profile
    problems: tuple[Problem, ...]
    frequency: Frequency | None


def check_result(profile: Profile, channel_name: str = CHANNEL_NAME) -> CheckResult:
    try:
        freq: Frequency | None = radio_frequency(profile.lora, channel_name)
    except ConfigError:
        freq = None
    return CheckResult(profile, tuple(check_profile(profile, channel_name)), freq)


# --------------------------------------------------------------------------------------------------
# A radio's configuration against its profile


@dataclass(frozen=True)
class DeviceChannel:
    index: int
    role: str  # PRIMARY, SECONDARY, DISABLED
    name: str
    psk: bytes


@dataclass(frozen=True)
class DeviceState:
    """What a radio reports, as plain data (read by :func:`firmware_config.radio.read_device`)."""

    values: Mapping[str, Mapping[str, Any]]  # same shape as Profile.values
    channels: tuple[DeviceChannel, ...]
    canned_messages: str | None  # None when not asked for
    long_name: str | None

    def get(self, key: str) -> Any:
        return get_path(self.values, key.split("."))


def _normalise(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)  # float32 on the wire
    if isinstance(value, list | tuple):
        return list(value)
    return value


def compare(profile: Profile, plan: ChannelPlan | None, state: DeviceState) -> tuple[list[str], int]:
    """(mismatches, values compared): every value the profile sets, the channels, canned messages, owner.

    Without a ``plan`` (a radio checked, not just written) the channels are not compared with a key; use
    :func:`check_device` for the rules a radio must meet.
    """
    mismatches: list[str] = []
    checked = 0
    for setting in profile.settings:
        got, want = state.get(setting.key), profile.get(setting.key)
        checked += 1
        if _normalise(got) != _normalise(want):
            mismatches.append(f"{setting.key}: perangkat {got!r}, profil {want!r}")

    if plan is not None:
        for index in range(8):
            ch = state.channels[index] if index < len(state.channels) else None
            checked += 1
            if index < len(plan.settings):
                want_role = "PRIMARY" if index == 0 else "SECONDARY"
                if ch is None or ch.role != want_role:
                    mismatches.append(f"kanal {index}: peran tidak sesuai")
                elif ch.psk != plan.settings[index].psk:
                    mismatches.append(f"kanal {index}: kunci (PSK) berbeda")
                elif ch.name != plan.settings[index].name:
                    mismatches.append(f"kanal {index}: nama {ch.name!r}, harus {plan.settings[index].name!r}")
            elif ch is not None and ch.role != "DISABLED":
                mismatches.append(f"kanal {index}: masih aktif ({ch.name!r}), harus dinonaktifkan")

    if profile.canned_text and state.canned_messages is not None:
        checked += 1
        if state.canned_messages != profile.canned_text:
            mismatches.append(f"canned_messages: perangkat {state.canned_messages!r}, profil {profile.canned_text!r}")
    if profile.long_name and state.long_name is not None:
        checked += 1
        if state.long_name != profile.long_name:
            mismatches.append(f"owner: perangkat {state.long_name!r}, profil {profile.long_name!r}")
    return mismatches, checked


def check_device(profile: Profile, state: DeviceState) -> list[Problem]:
    """Why this radio is not fit for its role: the role's rules on its values, then each value its profile
    sets that differs, then a primary channel without a private key or a public channel left on."""
    problems: list[Problem] = []

    def problem(key: str, message: str) -> None:
        problems.append(Problem(profile.name, key, message))

    primary = next((c for c in state.channels if c.role == "PRIMARY"), None)
    _radio_rules(profile.name, state.get, lambda _section: True, primary.name if primary else "", problem)
    flagged = {p.key for p in problems}
    for setting in profile.settings:
        got, want = state.get(setting.key), profile.get(setting.key)
        if setting.key not in flagged and _normalise(got) != _normalise(want):
            problem(setting.key, f"perangkat {got!r}, profil {want!r}")
    if primary is None:
        problem("kanal 0", "radio tidak punya kanal utama")
    else:
        try:
            check_psk(primary.psk, "psk")
        except ConfigError:
            problem("kanal 0", "kunci kanal utama kosong atau kunci publik bawaan (AQ==): pasang kunci kabupaten")
    for ch in state.channels:
        if ch.role == "SECONDARY":
            problem(f"kanal {ch.index}", f"masih aktif ({ch.name!r}), harus dinonaktifkan")
    if profile.canned_text and state.canned_messages is not None and state.canned_messages != profile.canned_text:
        problem("canned_messages", f"perangkat {state.canned_messages!r}, profil {profile.canned_text!r}")
    return problems
