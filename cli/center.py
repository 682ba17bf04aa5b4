"""``siaga center run|reports|reply|user|relay-secret``: the center's commands, thin handlers over center/ and sync/
(imported when a command runs: ``siaga report`` on a post never loads the web app)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli.base import EXIT_FAILURE, EXIT_OK, load_config, setup_logging
from sync.protocol import MAX_REPLY_TEXT_BYTES


def add_commands(sub: Any) -> None:
    """``siaga center run|reports|reply|user`` (center/service.py, center/storage.py, center/auth.py)."""
    p = sub.add_parser("center", help="the 112 center: receiver, reports, replies")
    csub = p.add_subparsers(dest="center_command", metavar="ACTION")
    csub.required = True
    pr = csub.add_parser("run", help="run the center (MQTT receiver, storage, reply outbox) in the foreground")
    pr.set_defaults(func=_center_run)
    pl = csub.add_parser("reports", help="list received reports, newest first")
    pl.add_argument("--json", action="store_true", help="print a JSON array")
    pl.add_argument(
        "--limit",
        type=int,
        default=50,
        help="at most this many, newest first (default 50; 0 = all); how many were left out goes to stderr",
    )
    pl.add_argument("--post", metavar="POST_ID", help="only reports from this post")
    pl.add_argument("--category", help="only this category")
    pl.set_defaults(func=_center_reports)
    pp = csub.add_parser("reply", help="send a reply to the handset that sent a report (via its post)")
    pp.add_argument("report_id", help="the report id (or the id a post used for its copy)")
    pp.add_argument(
        "text",
        help=f"reply text, at most {MAX_REPLY_TEXT_BYTES} bytes of UTF-8 (an accented letter counts 2;"
        " sent as '112: <text>' in one LoRa packet)",
    )
    pp.add_argument("--by", metavar="NAME", help="staff name recorded with the reply (default: $USER)")
    pp.add_argument("--json", action="store_true", help="print the reply as JSON")
    pp.set_defaults(func=_center_reply)
    _add_user(csub)
    ps = csub.add_parser("relay-secret", help="create the regency relay secret (verifies reports carried by posts)")
    ps.add_argument("--out", required=True, type=Path, help="the new secret file (mode 0600; never overwritten)")
    ps.set_defaults(func=_relay_secret)


def _add_user(csub: Any) -> None:
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
    pa.set_defaults(func=_user_command)
    pw = usub.add_parser("passwd", help="set a new password for an account (ends its sessions)")
    pw.add_argument("name", help="login name")
    pw.add_argument("--password-file", metavar="PATH", help="read the password from this file instead of a prompt")
    pw.set_defaults(func=_user_command)
    pl = usub.add_parser("list", help="list staff accounts")
    pl.add_argument("--json", action="store_true", help="print a JSON array")
    pl.set_defaults(func=_user_command)


def _center_run(args: Any) -> int:
    cfg = load_config(args, require_post=False)
    setup_logging(cfg.log.level)
    from center.service import run_center
    from center.web import web_component

    # The center process is assembled here: the receiver and outbox (center/service.py) and, beside
    # them, the dashboard's web server.
    return run_center(cfg, components=(web_component,))


def _center_reports(args: argparse.Namespace) -> int:
    from center.storage import CenterReport, ReportFilter, open_storage
    from sync import protocol

    cfg = load_config(args, require_post=False)
    flt = ReportFilter(post_id=args.post, category=args.category)
    with open_storage(cfg.center.db) as storage:
        total = storage.count_reports(flt)
        rows: list[CenterReport] = []
        wanted = total if args.limit <= 0 else min(args.limit, total)
        while len(rows) < wanted:  # list_reports pages at most 10,000 at a time
            page = storage.list_reports(replace(flt, limit=min(10_000, wanted - len(rows)), offset=len(rows)))
            if not page:
                break
            rows += page
    if total > len(rows):
        # said on stderr, so that a script counting the JSON array is not misled and stdout stays JSON
        print(
            f"{total - len(rows)} laporan lain tidak ditampilkan ({len(rows)} dari {total}); --limit 0 untuk semua",
            file=sys.stderr,
        )
    if args.json:
        out = [
            {
                "report_id": r.report_id,
                "ref": r.report.ref,
                "post_id": r.post_id,
                "origin": r.report.origin,
                "category": r.report.category,
                "text_raw": r.report.text_raw,
                "received_at": protocol.format_time(r.received_at),
                "observed_est": protocol.format_time(r.observed_est),
                "observed_at_post": protocol.format_time(r.report.observed_at),
                "age_source": r.age_source,
                "copies": r.copies,
                "status": r.status,
            }
            for r in rows
        ]
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return EXIT_OK
    if not rows:
        print("Belum ada laporan.")
        return EXIT_OK
    for r in rows:
        when = r.observed_est.astimezone().strftime("%d-%m %H:%M")
        copies = f" x{r.copies}" if r.copies > 1 else ""
        print(
            f"#{r.report.ref} {r.status:<12} {r.report.category.upper():<13} {when} {r.post_id}/{r.report.origin}"
            f"{copies}: {r.report.text_raw[:60]}"
        )
    return EXIT_OK


def _center_reply(args: argparse.Namespace) -> int:
    from center.storage import open_storage
    from siaga.errors import SyncError
    from sync import protocol
    from sync.mqtt import publish_once

    cfg = load_config(args, require_post=False)
    by = args.by or os.environ.get("SUDO_USER") or os.environ.get("USER") or "pusat"
    with open_storage(cfg.center.db) as storage:
        reply = storage.create_reply(args.report_id, args.text, by)
        published = False
        problem = None
        mqtt = cfg.center.mqtt
        if mqtt is not None and reply.regency:
            payload = protocol.encode_command(reply.command(), sent_at=datetime.now(UTC))
            try:
                publish_once(
                    mqtt,
                    protocol.topic(reply.regency, reply.post_id, "cmd"),
                    payload,
                    client_id=f"siaga-center-cli-{os.getpid()}",
                    section="center.mqtt",
                )
                storage.set_reply_state(reply.cmd_id, "published")
                published = True
            except SyncError as exc:
                problem = str(exc)
        final = storage.get_reply(reply.cmd_id) or reply
    if args.json:
        print(json.dumps(final.to_dict(), ensure_ascii=False, indent=2))
    elif published:
        print(f"Balasan terkirim ke pos {reply.post_id} untuk {reply.to_node} (id {reply.cmd_id}).")
    else:
        print(f"Balasan diantrekan (id {reply.cmd_id}); layanan pusat akan mengirimnya saat broker terhubung.")
        if problem:
            print(f"  broker: {problem}", file=sys.stderr)
    return EXIT_OK if published or mqtt is None else EXIT_FAILURE


def _relay_secret(args: argparse.Namespace) -> int:
    from siaga.errors import ConfigError
    from siaga.keyfile import new_secret, write_hex_key

    try:
        write_hex_key(args.out, new_secret(), "--out")
    except ConfigError as exc:
        print(f"galat: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(
        f"Rahasia relay kabupaten ditulis ke {args.out} (mode 0600). Pasang di [center.relay] secret_file;\n"
        f"tiap pos mendapat kuncinya sendiri: siaga relay key --secret-file {args.out} --post POS"
    )
    return EXIT_OK


def _ask_password(args: Any) -> str:
    from center.auth import AuthError, read_password_file

    if args.password_file:
        return read_password_file(Path(args.password_file))
    if not sys.stdin.isatty():
        # scripted use: the first line of stdin (never a command-line argument: it would show in ps)
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Kata sandi baru: ")
    if getpass.getpass("Ulangi kata sandi: ") != first:
        raise AuthError("kedua kata sandi tidak sama")
    return first


def _user_command(args: Any) -> int:
    """``siaga center user add|passwd|list``."""
    from center.auth import Auth
    from center.staffdb import StaffDB
    from center.storage import open_storage

    cfg = load_config(args, require_post=False)
    with open_storage(cfg.center.db) as storage:
        auth = Auth(StaffDB(storage))
        if args.user_command == "list":
            users = auth.users()
            if getattr(args, "json", False):
                print(json.dumps(users, ensure_ascii=False, indent=2))
            else:
                for user in users:
                    state = " (nonaktif)" if user["disabled"] else ""
                    print(f"{user['username']:<24} {user['role']}{state}")
                if not users:
                    print("Belum ada akun. Tambahkan dengan: siaga center user add NAMA")
            return 0
        password = _ask_password(args)
        if args.user_command == "add":
            auth.add_user(args.name, password, args.role)
            print(f"Akun {args.name} ({args.role}) dibuat.")
        else:
            auth.set_password(args.name, password)
            print(f"Kata sandi {args.name} diganti; sesi lamanya diakhiri.")
    return 0
