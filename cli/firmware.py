"""``siaga firmware check|apply`` (firmware_config/, imported when the command runs: it loads meshtastic)."""

from __future__ import annotations

import sys
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 78
ROLES = ("handset", "router", "gateway", "relay")


def _firmware_check(args: Any) -> int:
    """Each profile's frequency and problems; with --port/--host the radio too. 0 ok, 1 problems, 78 bad input."""
    from firmware_config.check import check_result
    from firmware_config.frequency import BAND_HIGH_MHZ, BAND_LOW_MHZ, CHANNEL_NAME
    from firmware_config.load import load_profile, load_shipped
    from siaga.errors import ConfigError

    out = sys.stdout
    paths = list(getattr(args, "profiles", None) or [])
    role = getattr(args, "role", None)
    port, host = getattr(args, "port", None), getattr(args, "host", None)
    if port or host:
        return _check_radio(args, role, paths)
    try:
        loaded = [load_profile(p, role=role) for p in paths] if paths else load_shipped()
        results = [check_result(p, CHANNEL_NAME) for p in loaded]
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


def _check_radio(args: Any, role: str | None, paths: list[str]) -> int:
    """``siaga firmware check --role R --port P|--host H [PROFILE]``: read the radio, write nothing."""
    from firmware_config.apply import check_radio
    from firmware_config.load import load_profile
    from siaga.errors import ConfigError, RadioError

    port, host = getattr(args, "port", None), getattr(args, "host", None)
    device = port or host
    try:
        if role is None:
            raise ConfigError("--role", "", "is required with --port/--host (which profile the radio must match)")
        if len(paths) > 1:
            raise ConfigError("profiles", " ".join(paths), "give at most one profile with --port/--host")
        profile = load_profile(paths[0] if paths else role, role=role)
        problems = check_radio(role, port=port, host=host, profile=profile)
    except ConfigError as exc:
        print(f"KESALAHAN KONFIGURASI: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RadioError as exc:
        print(f"GAGAL: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if not problems:
        print(f"Radio {device} [{role}]: OK — sesuai profil {profile.path.name} dan aturan peran.")
        return EXIT_OK
    print(f"Radio {device} [{role}]: BERMASALAH")
    for problem in problems:
        print(f"  - {problem.key}: {problem.message}")
    print(f"Perbaiki dengan: siaga firmware apply --role {role} --{'port' if port else 'host'} {device}")
    return EXIT_FAILURE


def _firmware_apply(args: Any) -> int:
    """0 applied and verified, 1 radio/verification failure, 78 bad arguments."""
    from firmware_config.apply import apply_profile
    from firmware_config.frequency import CHANNEL_NAME
    from siaga.errors import ConfigError, RadioError

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


def add_commands(sub: Any) -> None:
    """``siaga firmware check|apply`` (firmware_config/)."""
    p = sub.add_parser("firmware", help="Meshtastic radio profiles: check offline or a radio, apply to a radio")
    fsub = p.add_subparsers(dest="firmware_command", metavar="ACTION")
    fsub.required = True
    pc = fsub.add_parser("check", help="check the profiles offline (920-923 MHz, no keys), or a radio's settings")
    pc.add_argument("profiles", nargs="*", help="profile YAML files (default: the shipped profiles)")
    pc.add_argument("--role", choices=ROLES, help="role to check a custom profile file (or a radio) against")
    radio = pc.add_mutually_exclusive_group()
    radio.add_argument("--port", help="check this radio (serial device) against --role; nothing is written")
    radio.add_argument("--host", help="check this radio (TCP host[:4403]) against --role; nothing is written")
    pc.set_defaults(func=_firmware_check)
    pa = fsub.add_parser("apply", help="apply a profile to a radio and read it back to verify")
    pa.add_argument("--role", choices=ROLES, required=True, help="which profile to apply")
    target = pa.add_mutually_exclusive_group(required=True)
    target.add_argument("--port", help="serial device of the radio, e.g. /dev/ttyUSB0")
    target.add_argument("--host", help="TCP address of a Wi-Fi radio, host[:4403]")
    pa.add_argument("--channel-url", help="the regency's private channel URL (else the key file is used)")
    pa.add_argument(
        "--psk-file",
        default="/var/lib/siaga/channel.psk",
        help="regency channel key file: read if present, else created (0600) with a new random key",
    )
    pa.add_argument("--channel-name", default="Siaga112", help="primary channel name used with the key file")
    pa.set_defaults(func=_firmware_apply)
