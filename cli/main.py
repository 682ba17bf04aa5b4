"""The ``siaga`` command line: the parser, every subcommand listed here, and the dispatch.

Each area's module adds its subcommands and imports the module that does the work only when the command
runs, so that ``siaga report`` on a Pi does not pay for importing the web app or the simulator.
Exit codes: 0 ok, 1 failure, 2 usage, 78 configuration error (EX_CONFIG; systemd does not restart on it).
Human output is in Bahasa Indonesia for officers and operators; ``--help`` texts are in English.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli import center, console, dev, firmware, post, relay
from cli.base import EXIT_CONFIG, EXIT_FAILURE
from siaga import config as config_mod
from siaga.errors import ConfigError, SiagaError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siaga",
        description="Siaga Relay: emergency reports from village posts to the regency 112 center.",
    )
    parser.add_argument(
        "--config", metavar="PATH", help=f"config file (default: ${config_mod.ENV_VAR} or {config_mod.DEFAULT_PATH})"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    post.add_commands(sub)  # run, config, classify, report, queue, status
    console.add_commands(sub)  # console passwd|list
    firmware.add_commands(sub)  # firmware check|apply
    dev.add_simulate(sub)  # simulate
    center.add_commands(sub)  # center run|reports|reply|user|relay-secret
    relay.add_commands(sub)  # relay key
    dev.add_rehearse(sub)  # rehearse
    dev.add_demo(sub)  # demo
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SiagaError as exc:
        print(f"galat: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
