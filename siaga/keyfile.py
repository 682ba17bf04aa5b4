"""Key files: the regency relay secret at the center and each post's own relay key (docs/RELAY.md, "Keys").

A key file holds the key as hex on one line, mode 0600.  Readers refuse a file that other users can read
(a copied secret lets its holder forge any post's reports) and a key shorter than asked; every refusal is
a :class:`ConfigError` naming the config key, so a daemon exits 78 instead of running without its key.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from siaga.errors import ConfigError

#: The regency relay secret: 32 random bytes (HKDF's input keying material for every post's key).
SECRET_BYTES = 32


def read_hex_key(path: Path, key: str, *, min_bytes: int = SECRET_BYTES) -> bytes:
    """The key in ``path`` (hex text); ``key`` is the config key named in errors."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, str(path), f"cannot be read: {exc}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(key, str(path), "is not a regular file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(key, str(path), "is readable by other users: chmod 600 it")
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(key, str(path), "must hold the key as hex digits on one line") from None
    if len(value) < min_bytes:
        raise ConfigError(key, str(path), f"holds {len(value)} bytes; at least {min_bytes} random bytes are needed")
    return value


def write_hex_key(path: Path, value: bytes, key: str) -> None:
    """Create ``path`` (mode 0600) holding ``value`` as hex; an existing file is never overwritten."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(key, str(path), "already exists: a key file is never overwritten") from None
    except OSError as exc:
        raise ConfigError(key, str(path), f"cannot be created: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value.hex() + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)
