"""What every command module uses: exit codes, config loading, logging set-up, the post's store, JSON output.

Exit codes: 0 ok, 1 failure, 2 usage, 78 configuration error (EX_CONFIG; systemd does not restart on it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from siaga import config as config_mod
from siaga.errors import ConfigError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr; without timestamps under systemd, whose journal adds its own."""
    under_journal = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    fmt = "%(levelname)s %(name)s: %(message)s" if under_journal else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=fmt, stream=sys.stderr)


def load_config(args: argparse.Namespace, *, require_post: bool = True) -> config_mod.Config:
    return config_mod.load(args.config, require_post=require_post)


def check_data_dir(cfg: config_mod.Config) -> None:
    """An unusable data_dir is an installation/config problem: name the key (exit 78)."""
    data_dir = cfg.node.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("node.data_dir", str(data_dir), f"cannot be created: {exc.strerror}") from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise ConfigError("node.data_dir", str(data_dir), "is not writable by this user")


def open_store(cfg: config_mod.Config, *, check: bool = False) -> Any:
    from edge.store import Store

    check_data_dir(cfg)
    return Store.open(cfg.store_path, check=check)


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
