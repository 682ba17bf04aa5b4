"""``siaga console passwd|list``: the operator accounts of the post's console (edge/console/accounts.py).

The web stack is not imported here: setting a PIN on a Pi needs only the store and scrypt.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from cli.base import EXIT_OK, load_config, open_store
from siaga.errors import ConsoleError


def add_commands(sub: Any) -> None:
    p = sub.add_parser("console", help="the post's operator console: operator accounts")
    csub = p.add_subparsers(dest="console_command", metavar="ACTION")
    csub.required = True
    pw = csub.add_parser(
        "passwd", help="create an operator or set a new password/PIN (min 6 characters; prompted or --password-file)"
    )
    pw.add_argument("name", help="operator name: 2-32 chars of a-z 0-9 . _ -")
    pw.add_argument("--password-file", metavar="PATH", help="read the password/PIN from this file instead of a prompt")
    pw.set_defaults(func=cmd_passwd)
    pl = csub.add_parser("list", help="list the operator accounts")
    pl.set_defaults(func=cmd_list)


def _ask(args: argparse.Namespace) -> str:
    if args.password_file:
        try:
            return Path(args.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConsoleError(f"berkas {args.password_file} tidak dapat dibaca: {exc.strerror}") from None
    if not sys.stdin.isatty():
        # scripted use: the first line of stdin (never an argument: it would show in ps)
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Kata sandi / PIN baru: ")
    if getpass.getpass("Ulangi: ") != first:
        raise ConsoleError("keduanya tidak sama")
    return first


def cmd_passwd(args: argparse.Namespace) -> int:
    from edge.console.accounts import check_name, set_password

    cfg = load_config(args)
    check_name(args.name)  # before the prompt: a wrong name must not cost the officer a PIN twice
    secret = _ask(args)
    with open_store(cfg) as store:
        new = set_password(store, args.name, secret)
    if new:
        print(f"Operator {args.name} dibuat. Masuk di konsol pos ({cfg.console.http or '[console] http belum diisi'}).")
    else:
        print(f"Kata sandi/PIN {args.name} diganti (berlaku untuk masuk berikutnya).")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with open_store(cfg) as store:
        names = store.operators()
    for name in names:
        print(name)
    if not names:
        print("Belum ada operator. Tambahkan dengan: siaga console passwd NAMA")
    return EXIT_OK
