"""``siaga firmware check|apply`` (firmware_config/profiles.py, imported when the command runs)."""

from __future__ import annotations

from typing import Any


def _firmware_check(args: Any) -> int:
    from firmware_config.profiles import firmware_check

    return firmware_check(args)


def _firmware_apply(args: Any) -> int:
    from firmware_config.profiles import firmware_apply

    return firmware_apply(args)


def add_commands(sub: Any) -> None:
    """``siaga firmware check|apply`` (firmware_config/profiles.py)."""
    roles = ("handset", "router", "gateway")
    p = sub.add_parser("firmware", help="Meshtastic radio profiles: check offline, apply to a radio")
    fsub = p.add_subparsers(dest="firmware_command", metavar="ACTION")
    fsub.required = True
    pc = fsub.add_parser("check", help="check the profiles offline (920-923 MHz, no keys)")
    pc.add_argument("profiles", nargs="*", help="profile YAML files (default: the shipped three)")
    pc.add_argument("--role", choices=roles, help="role to check a custom profile file against")
    pc.set_defaults(func=_firmware_check)
    pa = fsub.add_parser("apply", help="apply a profile to a radio and read it back to verify")
    pa.add_argument("--role", choices=roles, required=True, help="which profile to apply")
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
