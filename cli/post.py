"""The post's commands: ``siaga run``, ``config check``, ``classify``, ``report``, ``queue``, ``status``.

Human output is in Bahasa Indonesia for officers and operators; ``--help`` texts are in English.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli.base import EXIT_FAILURE, EXIT_OK, check_data_dir, load_config, open_store, print_json, setup_logging
from siaga import config as config_mod
from siaga.errors import ConfigError

log = logging.getLogger(__name__)

STATE_LABEL = {"pending": "menunggu", "sent": "terkirim", "delivered": "diterima 112", "rejected": "ditolak"}


def cmd_config_check(args: argparse.Namespace) -> int:
    from edge.handsets import with_handsets_file

    cfg = load_config(args, require_post=not args.center)
    tnc = cfg.radio.tnc
    if not args.center:
        check_data_dir(cfg)
        cfg = with_handsets_file(cfg)  # radio.meshtastic.handsets_file: every line validated now
        if tnc is not None and tnc.touch_tone_file is not None:
            from edge.touchtone import load_table

            load_table(tnc.touch_tone_file)  # radio.tnc.touch_tone_file: every line validated now
    print(f"Konfigurasi benar: {cfg.path}")
    print(f"  pos: {cfg.node.post_id or '-'} ({cfg.node.name}), kabupaten: {cfg.node.regency}")
    mesh = cfg.radio.meshtastic
    radio = "tidak ada" if mesh is None else (mesh.port or mesh.host)
    print(f"  radio: {radio}")
    if tnc is not None:
        on_air = f"kirim sebagai {tnc.callsign}" if tnc.transmit else "tidak memancar (transmit = false)"
        print(f"  TNC: {tnc.port or tnc.host}, alamat {tnc.address}, {on_air}")
    uplink = cfg.uplink.mqtt
    print(f"  uplink: {', '.join(uplink.broker_urls) if uplink else 'tidak ada (laporan hanya diantrekan)'}")
    print(f"  handset terdaftar: {len(cfg.handsets)}")
    return EXIT_OK


def cmd_config_direwolf(args: argparse.Namespace) -> int:
    from edge.tnc import direwolf_config

    cfg = load_config(args)
    tnc = cfg.radio.tnc
    if tnc is None or tnc.host is None:
        raise ConfigError("radio.tnc.host", "", "is needed: a direwolf config is for a TNC reached over KISS TCP")
    print(direwolf_config(tnc, args.adevice), end="")
    return EXIT_OK


def cmd_classify(args: argparse.Namespace) -> int:
    from edge.classify import Classifier

    extra: Sequence[Path] = ()
    if args.config or os.environ.get(config_mod.ENV_VAR):
        extra = load_config(args, require_post=False).classifier.extra_keywords
    result = Classifier.load(extra).classify(args.text)
    data = result.to_dict()
    if args.json:
        print_json(data)
    else:
        cas = ", ".join(f"{k} {v}" for k, v in data["casualties"].items()) or "-"
        print(f"Kategori: {data['category']}  Urgensi: {data['urgency']}  Keparahan: {data['severity']}")
        print(f"Korban: {cas}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from edge.classify import Classifier
    from edge.intake import Intake, Location
    from siaga.clock import SystemClock
    from siaga.errors import ReportError

    cfg = load_config(args)
    text = args.text
    if text == "-":
        raw = sys.stdin.buffer.read(64 * 1024)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ReportError("teks bukan UTF-8 yang sah (text is not valid UTF-8)") from None
    if (args.lat is None) != (args.lon is None):
        raise ReportError("--lat dan --lon harus diberikan bersama (give --lat and --lon together)")
    origin = args.origin or f"operator:{os.environ.get('SUDO_USER') or os.environ.get('USER') or 'pos'}"
    if not origin.startswith(("!", "operator:")):
        origin = f"operator:{origin}"
    location = Location(args.lat, args.lon, "operator") if args.lat is not None else None
    intake = Intake(cfg, Classifier.load(cfg.classifier.extra_keywords), SystemClock())
    report = intake.build(text, origin=origin, source="manual", location=location)
    if not origin.startswith("!"):
        # typed in by the post's own operator: a known person at the post
        report = report.with_changes(verified=True)
    with open_store(cfg) as store:
        result = store.put(report)
    if args.json:
        print_json({"report_id": result.report_id, "ref": report.ref, "category": report.category})
    else:
        print(f"Laporan tersimpan #{report.ref} ({report.category.upper()}). Menunggu sinyal ke pusat 112.")
        print(f"  id: {result.report_id}")
    return EXIT_OK


def cmd_queue(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with open_store(cfg) as store:
        rows = store.list_reports(state=args.state, limit=args.limit)
    if args.json:
        print_json([row.to_dict() for row in rows])
        return EXIT_OK
    if not rows:
        print("Antrean kosong.")
        return EXIT_OK
    for row in rows:
        r = row.report
        when = r.observed_at.astimezone().strftime("%d-%m %H:%M")
        copies = f" x{row.copies}" if row.copies > 1 else ""
        print(
            f"#{r.ref} {STATE_LABEL[row.state]:<13} {r.category.upper():<13} {when} {r.origin}{copies}: "
            f"{r.text_raw[:60]}"
        )
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from edge.status import post_status, render_status

    cfg = load_config(args)
    with open_store(cfg) as store:
        status = post_status(cfg, store)
    if args.json:
        print_json(status)
    else:
        print(render_status(status))
    return EXIT_OK if not status["attention"] else EXIT_FAILURE


def cmd_run(args: argparse.Namespace) -> int:
    from edge.daemon import run_daemon
    from siaga.clock import OffsetClock

    cfg = load_config(args)
    setup_logging(cfg.log.level)
    check_data_dir(cfg)
    # Rehearsal only (the demo's post with a wrong clock): shift this daemon's wall clock.
    offset = os.environ.get("SIAGA_CLOCK_OFFSET_S")
    if offset:
        try:
            clock = OffsetClock(offset_s=float(offset))
        except ValueError:
            raise ConfigError("$SIAGA_CLOCK_OFFSET_S", offset, "must be a number of seconds") from None
        log.warning("wall clock shifted by %s s ($SIAGA_CLOCK_OFFSET_S): for rehearsals only", offset)
        return run_daemon(cfg, clock=clock)
    return run_daemon(cfg)


def add_commands(sub: Any) -> None:
    """The post's subcommands, in the order ``siaga --help`` lists them."""
    p = sub.add_parser("run", help="run the post daemon in the foreground (systemd runs this)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("config", help="configuration commands")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    pc = csub.add_parser("check", help="validate the config file; exit 78 naming the bad key")
    pc.add_argument("--center", action="store_true", help="check as a center config (no post identity needed)")
    pc.set_defaults(func=cmd_config_check)
    pd = csub.add_parser("direwolf", help="print a direwolf.conf for [radio.tnc] (install.sh writes it once)")
    pd.add_argument("--adevice", default="plughw:1,0", help="the USB soundcard's ALSA device (arecord -l)")
    pd.set_defaults(func=cmd_config_direwolf)

    p = sub.add_parser("classify", help="classify a report text (category, urgency, severity, casualties)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("text", help="the report text")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("report", help="store a report typed in by the post operator (e.g. heard over voice radio)")
    p.add_argument("--json", action="store_true", help="print {report_id} as JSON")
    p.add_argument("--origin", metavar="ID", help="handset !xxxxxxxx or operator name (default: operator:$USER)")
    p.add_argument("--lat", type=float, help="latitude of the incident")
    p.add_argument("--lon", type=float, help="longitude of the incident")
    p.add_argument("text", help="the report text ('-' reads UTF-8 from stdin)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("queue", help="list the post's reports")
    p.add_argument("--state", choices=("pending", "sent", "delivered", "rejected"), help="only this state")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    p.set_defaults(func=cmd_queue)

    p = sub.add_parser("status", help="the post's state for the officer; non-zero exit when something needs attention")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)
