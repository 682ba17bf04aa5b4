"""The handset registry file: which radios belong to which officer (``radio.meshtastic.handsets_file``).

Reports from a registered handset are marked ``verified`` and carry the officer's callback details;
reports from any other radio are stored too, unverified (never dropped).  Small posts list their handsets
in the config (``[[handsets]]``); a regency with hundreds keeps them in one CSV file, edited in a
spreadsheet and copied to every post::

    # Siaga Relay handsets, Kabupaten TTU
    id,officer,village,phone,area_code
    !a1b2c3d4,Yohanes Taek,Oebubun,+6281234567890,5302012001

UTF-8 (a spreadsheet's BOM is accepted), one header line naming the columns (``id`` required; the others
optional, in any order), lines starting with ``#`` and blank lines ignored.  A file ending in ``.toml``
holds ``[[handsets]]`` tables exactly as in the config instead.  The whole file is validated at start and
by ``siaga config check``: any bad line is a :class:`ConfigError` naming the line and column (exit 78).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

from siaga.config import Config, HandsetConfig
from siaga.errors import ConfigError

KEY = "radio.meshtastic.handsets_file"
COLUMNS = tuple(f.name for f in dataclasses.fields(HandsetConfig))
_NODE_ID_RE = re.compile(r"^![0-9a-f]{8}$")
MAX_ROWS = 10_000


def load_handsets_file(path: Path, known: Iterable[str] = ()) -> tuple[HandsetConfig, ...]:
    """Parse and validate a handsets file (``.toml``, else CSV); ``known`` ids (from the config) must not
    be repeated."""
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(KEY, where, f"cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(KEY, where, f"is not UTF-8 (byte {exc.start})") from None
    seen = set(known)
    if path.suffix.lower() == ".toml":
        return _from_toml(text, where, seen)
    return _from_csv(text, where, seen)


def _from_csv(text: str, where: str, seen: set[str]) -> tuple[HandsetConfig, ...]:
    lines = [
        (n, line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        return ()
    header_no, header_line = lines[0]
    header = [h.strip().lower() for h in _cells(header_line, f"{where}:{header_no}")]
    if "id" not in header:
        raise ConfigError(
            f"{where}:{header_no}",
            header_line[:60],
            f"header must name the columns, at least id ({', '.join(COLUMNS)})",
        )
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise ConfigError(f"{where}:{header_no}", unknown[0], f"is not a known column ({', '.join(COLUMNS)})")
    if len(set(header)) != len(header):
        raise ConfigError(f"{where}:{header_no}", header_line[:60], "names a column twice")
    if len(lines) - 1 > MAX_ROWS:
        raise ConfigError(KEY, where, f"has more than {MAX_ROWS} handsets")
    out: list[HandsetConfig] = []
    for number, line in lines[1:]:
        cells = _cells(line, f"{where}:{number}")
        if len(cells) != len(header):
            raise ConfigError(f"{where}:{number}", line[:60], f"has {len(cells)} fields; the header has {len(header)}")
        row = {name: cell.strip() for name, cell in zip(header, cells, strict=True)}
        out.append(_handset(row, f"{where}:{number}", seen))
    return tuple(out)


def _cells(line: str, at: str) -> list[str]:
    try:
        return next(csv.reader(io.StringIO(line)))
    except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit
        raise ConfigError(at, line[:60], f"is not valid CSV: {exc}") from None


def _from_toml(text: str, where: str, seen: set[str]) -> tuple[HandsetConfig, ...]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(KEY, where, f"is not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per nesting level of arrays and inline tables
        raise ConfigError(KEY, where, "is not valid TOML: nested too deeply") from None
    extra = sorted(set(data) - {"handsets"})
    if extra:
        raise ConfigError(f"{where}:{extra[0]}", data[extra[0]], "is not a known key (only [[handsets]] tables)")
    items = data.get("handsets", [])
    if not isinstance(items, list) or len(items) > MAX_ROWS:
        raise ConfigError(f"{where}:handsets", "...", f"must be at most {MAX_ROWS} [[handsets]] tables")
    out: list[HandsetConfig] = []
    for index, item in enumerate(items):
        at = f"{where}:handsets[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(at, item, "must be a table with id, officer, village, phone")
        unknown = [k for k in item if k not in COLUMNS]
        if unknown:
            raise ConfigError(f"{at}.{unknown[0]}", item[unknown[0]], f"is not a known key ({', '.join(COLUMNS)})")
        for key, value in item.items():
            if not isinstance(value, str):
                raise ConfigError(f"{at}.{key}", value, "must be a string")
        out.append(_handset({k: v.strip() for k, v in item.items()}, at, seen))
    return tuple(out)


def _handset(row: dict[str, str], at: str, seen: set[str]) -> HandsetConfig:
    ident = row.get("id", "").lower()
    if not _NODE_ID_RE.match(ident):
        raise ConfigError(f"{at}.id", row.get("id", ""), "must be '!' and 8 hex digits (e.g. !a1b2c3d4)")
    if ident in seen:
        raise ConfigError(f"{at}.id", ident, "is listed twice (in this file or in the config)")
    for name, value in row.items():
        if len(value) > 128 or any(ord(ch) < 32 for ch in value):
            raise ConfigError(f"{at}.{name}", value[:60], "must be at most 128 printable characters")
    seen.add(ident)
    return HandsetConfig(**{**row, "id": ident})


def with_handsets_file(cfg: Config) -> Config:
    """``cfg`` with the handsets file (if configured) added to ``cfg.handsets``."""
    mesh = cfg.radio.meshtastic
    if mesh is None or mesh.handsets_file is None:
        return cfg
    extra = load_handsets_file(mesh.handsets_file, (h.id for h in cfg.handsets))
    return dataclasses.replace(cfg, handsets=cfg.handsets + extra)
