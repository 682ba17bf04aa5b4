"""``siaga relay key``: a post's own relay tag key, derived from the regency relay secret (docs/RELAY.md)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from cli.base import EXIT_CONFIG, EXIT_FAILURE


def _relay_key(args: Any) -> int:
    from sync.compact import derive_post_key

    secret_path = Path(args.secret_file)
    try:
        raw = secret_path.read_bytes()
    except OSError as exc:
        print(f"siaga: cannot read the regency relay secret {secret_path}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    text = raw.strip()
    # a hex file (what `siaga relay key --new-secret` writes) or 32 raw bytes
    secret = bytes.fromhex(text.decode("ascii")) if re.fullmatch(rb"[0-9a-fA-F]{32,}", text) else raw
    try:
        key = derive_post_key(secret, args.post_id, args.epoch)
    except ValueError as exc:
        print(f"siaga: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    line = key.hex() + "\n"
    if args.out:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(line)
        print(f"kunci relay pos {args.post_id} (epoch {args.epoch}) ditulis ke {args.out} (mode 0600)")
    else:
        sys.stdout.write(line)
    return 0


def add_commands(sub: Any) -> None:
    """``siaga relay key`` (the key format: 64 hex digits, what ``[relay] key_file`` reads)."""
    p = sub.add_parser("relay", help="custody relay between posts: provisioning")
    rsub = p.add_subparsers(dest="relay_command", metavar="ACTION")
    rsub.required = True
    pk = rsub.add_parser("key", help="derive one post's relay tag key from the regency relay secret")
    pk.add_argument("post_id", help="the post the key is for")
    pk.add_argument("--secret-file", required=True, help="the regency relay secret (hex or 32 raw bytes)")
    pk.add_argument("--epoch", type=int, default=0, help="key epoch 0-255 (raise it to re-key a stolen post)")
    pk.add_argument("--out", help="write the key here (mode 0600) instead of printing it")
    pk.set_defaults(func=_relay_key)
