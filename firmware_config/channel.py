"""The regency's private channel: where its key (PSK) comes from, and the key file's rules (pure).

The channel key is never in a profile.  :func:`plan_channels` takes it from a channel URL (decoded by the
boundary, :func:`firmware_config.radio.decode_channel_url`), or the regency's key file, or generates 32
random bytes and writes that file (mode 0600) for the operator to keep.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from firmware_config.frequency import CHANNEL_NAME
from siaga.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_PSK_PATH = Path("/var/lib/siaga/channel.psk")
PSK_BYTES = 32
#: The firmware's channel name limit (bytes).
CHANNEL_NAME_MAX = 11
# The public default channel key: 1-byte index 1 ("AQ==") expands to this 16-byte AES key in firmware.
_DEFAULT_KEY = base64.b64decode("1PG7OiApB1nwvP+rz05pAQ==")
# position_precision 32 = full precision (firmware 2.5+: 0 means "never share position on this channel").
FULL_POSITION_PRECISION = 32


@dataclass(frozen=True)
class ChannelSpec:
    """One channel to write: name, key, position precision; ``encoded`` keeps a URL channel's other fields."""

    name: str
    psk: bytes
    position_precision: int = 0
    encoded: bytes = b""  # the ChannelSettings bytes from a channel URL (empty for a key-file channel)


@dataclass(frozen=True)
class ChannelPlan:
    """The channels apply writes: index 0 is PRIMARY; ``source`` says where the key came from."""

    settings: tuple[ChannelSpec, ...]
    source: str  # "url", "file" or "generated"
    psk_path: Path | None


def check_psk(psk: bytes, where: str) -> None:
    if len(psk) <= 1 or psk == _DEFAULT_KEY:
        raise ConfigError(where, "<psk>", "is empty or the public default key (AQ==): use a private random key")
    if len(psk) not in (16, 32):
        raise ConfigError(where, f"<{len(psk)} bytes>", "must be a 16- or 32-byte AES key")


def read_psk_file(path: Path) -> bytes:
    """Read a key file written by :func:`write_psk_file` (base64 text); refuse one others can read."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("psk_file", str(path), f"cannot be read: {exc}")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError("psk_file", str(path), "is readable by other users: chmod 600 it")
    text = text.removeprefix("base64:")
    try:
        psk = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("psk_file", str(path), "must hold the key in base64")
    check_psk(psk, "psk_file")
    return psk


def write_psk_file(path: Path, psk: bytes) -> None:
    """Create the regency key file, mode 0600, refusing to overwrite an existing key."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError("psk_file", str(path), "already exists: it is read, never overwritten")
    except OSError as exc:
        raise ConfigError("psk_file", str(path), f"cannot be created: {exc.strerror or exc}")
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(base64.b64encode(psk).decode("ascii") + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def plan_channels(
    url_channels: Sequence[ChannelSpec] | None = None,
    psk_file: str | os.PathLike[str] | None = None,
    channel_name: str = CHANNEL_NAME,
) -> ChannelPlan:
    """The private channel: the URL's (already decoded), else the regency's key file, else a new key there."""
    if url_channels:
        for i, spec in enumerate(url_channels):
            check_psk(spec.psk, f"channel_url.settings[{i}].psk")
        return ChannelPlan(tuple(_with_position(s) for s in url_channels), "url", None)
    if not channel_name or len(channel_name.encode("utf-8")) > CHANNEL_NAME_MAX:
        raise ConfigError("channel_name", channel_name, f"must be 1-{CHANNEL_NAME_MAX} bytes (firmware limit)")
    path = Path(psk_file) if psk_file else DEFAULT_PSK_PATH
    if path.exists():
        psk, source = read_psk_file(path), "file"
    else:
        psk, source = secrets.token_bytes(PSK_BYTES), "generated"
        write_psk_file(path, psk)
        logger.info("generated a new %d-byte channel key in %s", PSK_BYTES, path)
    return ChannelPlan((_with_position(ChannelSpec(channel_name, psk)),), source, path)


def _with_position(spec: ChannelSpec) -> ChannelSpec:
    # position_precision 0 on a channel means "never share position" (firmware 2.5+): the post needs the
    # handset's position on our private channel, and the key keeps it private.
    if spec.position_precision == 0:
        return replace(spec, position_precision=FULL_POSITION_PRECISION)
    return spec
