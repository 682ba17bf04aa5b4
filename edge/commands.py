"""Subcommands whose work lives in other modules: each registrar adds its parser and imports its module
lazily, so that ``siaga report`` on a Pi does not pay for importing the web app or the simulator.
Owners add a registrar here and append it to REGISTRARS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REGISTRARS: list[Callable[[Any], None]] = []


def _firmware_check(args: Any) -> int:
    from firmware_config.profiles import firmware_check

    return firmware_check(args)


def _firmware_apply(args: Any) -> int:
    from firmware_config.profiles import firmware_apply

    return firmware_apply(args)


def register_firmware(sub: Any) -> None:
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


REGISTRARS.append(register_firmware)


def _simulate(args: Any) -> int:
    from edge.cli import setup_logging
    from edge.simulator import main_simulate

    setup_logging(args.log_level)  # no config file: the simulator is not a post
    return main_simulate(args)


def register_simulate(sub: Any) -> None:
    """``siaga simulate`` (edge/simulator.py): a simulated Meshtastic device on TCP and/or a pty."""
    p = sub.add_parser("simulate", help="run a simulated Meshtastic device (TCP and/or pty), play a scenario")
    p.add_argument("--listen", metavar="HOST:PORT", help="serve the TCP stream API (firmware uses port 4403)")
    p.add_argument("--pty", metavar="PATH", help="create a pseudo-terminal and make PATH a symlink to it")
    p.add_argument("--scenario", metavar="FILE", help="JSON-lines scenario to play (docs/SIMULATOR.md)")
    p.add_argument("--speed", type=float, default=1.0, help="time compression factor (default 1)")
    p.add_argument("--record", metavar="FILE", help="append every packet the client sends as JSON lines")
    p.add_argument("--state", metavar="FILE", help="keep the device config in this JSON file")
    p.add_argument("--node", default="!5a6a0001", help="this device's node id (default !5a6a0001)")
    p.add_argument("--long-name", default="Pos Siaga (simulasi)", help="this device's long name")
    p.add_argument("--short-name", default="SIM1", help="this device's short name (max 4 characters)")
    p.add_argument("--clock", action="store_true", help="the device has a clock: packets carry rx_time")
    p.add_argument("--offline-queue", type=int, default=30, help="packets kept while no client (default 30)")
    p.add_argument("--seed", type=int, help="random seed (packet ids, channel key, garbage)")
    p.add_argument("--wait-client", action="store_true", help="start the scenario at the first handshake")
    p.add_argument("--exit-after-scenario", action="store_true", help="exit once the scenario has played")
    p.add_argument("--linger", type=float, default=1.0, help="stay up after the scenario (default 1 s)")
    p.add_argument("--no-config-reboot", action="store_true", help="no reboot after config changes")
    p.add_argument("--log-level", default="INFO", help="DEBUG shows every packet (default INFO)")
    p.set_defaults(func=_simulate)


REGISTRARS.append(register_simulate)


def _center_run(args: Any) -> int:
    from edge.cli import load_config, setup_logging

    cfg = load_config(args, require_post=False)
    setup_logging(cfg.log.level)
    from center.service import run_center

    return run_center(cfg)


def _center_reports(args: Any) -> int:
    from center.commands import center_reports

    return center_reports(args)


def _center_reply(args: Any) -> int:
    from center.commands import center_reply

    return center_reply(args)


#: Actions under ``siaga center`` owned by other modules (the dashboard adds ``user``): each gets the
#: ``center`` subparsers object.
CENTER_ACTIONS: list[Callable[[Any], None]] = []


def register_center(sub: Any) -> None:
    """``siaga center run|reports|reply`` (center/service.py, center/commands.py)."""
    p = sub.add_parser("center", help="the 112 center: receiver, reports, replies")
    csub = p.add_subparsers(dest="center_command", metavar="ACTION")
    csub.required = True
    pr = csub.add_parser("run", help="run the center (MQTT receiver, storage, reply outbox) in the foreground")
    pr.set_defaults(func=_center_run)
    pl = csub.add_parser("reports", help="list received reports, newest first")
    pl.add_argument("--json", action="store_true", help="print a JSON array")
    pl.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    pl.add_argument("--post", metavar="POST_ID", help="only reports from this post")
    pl.add_argument("--category", help="only this category")
    pl.set_defaults(func=_center_reports)
    pp = csub.add_parser("reply", help="send a reply to the handset that sent a report (via its post)")
    pp.add_argument("report_id", help="the report id (or the id a post used for its copy)")
    pp.add_argument("text", help="reply text, at most 200 characters (sent as '112: <text>')")
    pp.add_argument("--by", metavar="NAME", help="staff name recorded with the reply (default: $USER)")
    pp.add_argument("--json", action="store_true", help="print the reply as JSON")
    pp.set_defaults(func=_center_reply)
    for action in CENTER_ACTIONS:
        action(csub)


def _center_user(args: Any) -> int:
    from center.auth import user_command

    return user_command(args)


def register_center_user(csub: Any) -> None:
    """``siaga center user add|list|passwd`` (center/auth.py): dashboard staff accounts."""
    p = csub.add_parser("user", help="dashboard staff accounts: add, list, passwd")
    usub = p.add_subparsers(dest="user_command", metavar="ACTION")
    usub.required = True
    pa = usub.add_parser("add", help="add a staff account (password prompted, or --password-file)")
    pa.add_argument("name", help="login name: 2-32 chars of a-z 0-9 . _ -")
    pa.add_argument(
        "--role",
        choices=("petugas", "supervisor", "pengamat"),
        default="petugas",
        help="petugas (call-taker, default), supervisor, or pengamat (read-only observer)",
    )
    pa.add_argument("--password-file", metavar="PATH", help="read the password from this file instead of a prompt")
    pa.set_defaults(func=_center_user)
    pw = usub.add_parser("passwd", help="set a new password for an account (ends its sessions)")
    pw.add_argument("name", help="login name")
    pw.add_argument("--password-file", metavar="PATH", help="read the password from this file instead of a prompt")
    pw.set_defaults(func=_center_user)
    pl = usub.add_parser("list", help="list staff accounts")
    pl.add_argument("--json", action="store_true", help="print a JSON array")
    pl.set_defaults(func=_center_user)


CENTER_ACTIONS.append(register_center_user)
REGISTRARS.append(register_center)


def _demo(args: Any) -> int:
    from edge.cli import setup_logging
    from edge.demo import run_demo

    setup_logging("WARNING")
    return run_demo(
        duration=args.duration,
        as_json=args.json,
        speed=args.speed,
        workdir=args.dir,
        keep=args.keep,
    )


def register_demo(sub: Any) -> None:
    """``siaga demo`` (edge/demo.py): broker, center and two simulated posts on this machine."""
    from pathlib import Path

    p = sub.add_parser("demo", help="run the whole system on this machine with a realistic TTU scenario")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout (progress on stderr)")
    p.add_argument("--speed", type=float, default=1.0, help="compress the scenario's time by this factor")
    p.add_argument("--dir", type=Path, metavar="DIR", help="working directory (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp working directory (logs, databases)")
    p.set_defaults(func=_demo)


REGISTRARS.append(register_demo)
