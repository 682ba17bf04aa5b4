"""``siaga relay key``: provisioning a post for the relay (docs/RELAY.md, "Keys").

The regency relay secret stays at the center (``siaga center relay-secret``); each post is given only its
own key, derived from it, so a post — or a stolen Pi — can tag its own reports and no other post's.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from cli.base import EXIT_OK

_POST_ID = re.compile(r"^[a-z0-9-]{1,32}$")


def _post_id(value: str) -> str:
    if not _POST_ID.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a post id (1-32 chars of a-z 0-9 -)")
    return value


def _epoch(value: str) -> int:
    try:
        epoch = int(value)
    except ValueError:
        epoch = -1
    if not 0 <= epoch <= 255:
        raise argparse.ArgumentTypeError(f"{value!r} is not a key epoch 0-255")
    return epoch


def add_commands(sub: Any) -> None:
    """``siaga relay key`` (sync/compact.py derive_post_key)."""
    p = sub.add_parser("relay", help="reports carried post to post over the mesh: provisioning")
    rsub = p.add_subparsers(dest="relay_command", metavar="ACTION")
    rsub.required = True
    pk = rsub.add_parser("key", help="derive one post's relay key from the regency secret (for its [relay] key_file)")
    pk.add_argument("--secret-file", required=True, type=Path, help="the regency relay secret (hex, mode 0600)")
    pk.add_argument("--post", required=True, type=_post_id, help="the post id the key is for")
    pk.add_argument(
        "--epoch", type=_epoch, default=0, help="key epoch 0-255 (default 0; the next one re-keys a stolen post)"
    )
    pk.add_argument("--out", type=Path, help="write the key to this file (mode 0600, never overwritten) instead")
    pk.set_defaults(func=_relay_key)


def _relay_key(args: argparse.Namespace) -> int:
    from siaga.keyfile import read_hex_key, write_hex_key
    from sync.compact import derive_post_key

    secret = read_hex_key(args.secret_file, "--secret-file")
    key = derive_post_key(secret, args.post, args.epoch)
    if args.out is None:
        print(key.hex())
    else:
        write_hex_key(args.out, key, "--out")
        print(f"Kunci relay pos {args.post} (epoch {args.epoch}) ditulis ke {args.out}.", file=sys.stderr)
    return EXIT_OK
