"""``siaga center reports`` and ``siaga center reply``: thin command handlers over the center storage."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime

from center.storage import ReportFilter, open_storage
from edge.cli import EXIT_FAILURE, EXIT_OK, load_config
from edge.errors import SyncError
from sync import protocol
from sync.mqtt import publish_once


def center_reports(args: argparse.Namespace) -> int:
    cfg = load_config(args, require_post=False)
    with open_storage(cfg.center.db) as storage:
        rows = storage.list_reports(ReportFilter(post_id=args.post, category=args.category, limit=max(1, args.limit)))
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


def center_reply(args: argparse.Namespace) -> int:
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
