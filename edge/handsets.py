"""The handset registry file: which radios belong to which officer (``radio.meshtastic.handsets_file``).

Reports from a registered handset are marked ``verified`` and carry the officer's callback details;
reports from any other radio are stored too, unverified (never dropped).  Small posts list their handsets
in the config (``[[handsets]]``); a regency with hundreds keeps them in one CSV file, edited in a
spreadsheet and copied to every post::

    # Siaga Relay handsets, Kabupaten TTU
    id,officer,village,phone,area_code
    !a1b2c3d4,Yohanes Taek,Oebubun,+6281234567890,5302012001

UTF-8 (a spreadsheet's BOM is accepted), one header line naming the columns (``id`` required; the others
optional, in any order), lines starting with ``#`` and blank lines ignored.  The whole file is validated
when the daemon starts: any bad line is a :class:`ConfigError` naming the line and column (exit 78).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Iterable
from pathlib import Path

from edge.config import Config, HandsetConfig
from edge.errors import ConfigError

KEY = "radio.meshtastic.handsets_file"
COLUMNS = tuple(f.name for f in dataclasses.fields(HandsetConfig))
_NODE_ID_RE = re.compile(r"^![0-9a-f]{8}$")
MAX_ROWS = 10_000


def load_handsets_file(path: Path, known: Iterable[str] = ()) -> tuple[HandsetConfig, ...]:
    """Parse and validate a handsets CSV; ``known`` ids (from the config) must not be repeated."""
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(KEY, where, f"cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(KEY, where, f"is not UTF-8 (byte {exc.start})") from None
    lines = [
        (n, line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        return ()
    header_no, header_line = lines[0]
    header = [h.strip().lower() for h in next(csv.reader([header_line]))]
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
    seen = set(known)
    out: list[HandsetConfig] = []
    for number, line in lines[1:]:
        cells = next(csv.reader(io.StringIO(line)))
        if len(cells) != len(header):
            raise ConfigError(f"{where}:{number}", line[:60], f"has {len(cells)} fields; the header has {len(header)}")
        row = {name: cell.strip() for name, cell in zip(header, cells, strict=True)}
        ident = row["id"].lower()
        if not _NODE_ID_RE.match(ident):
            raise ConfigError(f"{where}:{number}.id", row["id"], "must be '!' and 8 hex digits (e.g. !a1b2c3d4)")
        if ident in seen:
            raise ConfigError(f"{where}:{number}.id", ident, "is listed twice (in this file or in the config)")
        for name, value in row.items():
            if len(value) > 128 or any(ord(ch) < 32 for ch in value):
                raise ConfigError(f"{where}:{number}.{name}", value[:60], "must be at most 128 printable characters")
        seen.add(ident)
        row["id"] = ident
        out.append(HandsetConfig(**row))
    return tuple(out)


def with_handsets_file(cfg: Config) -> Config:
    """``cfg`` with the handsets file (if configured) added to ``cfg.handsets``."""
    mesh = cfg.radio.meshtastic
    if mesh is None or mesh.handsets_file is None:
        return cfg
    extra = load_handsets_file(mesh.handsets_file, (h.id for h in cfg.handsets))
    return dataclasses.replace(cfg, handsets=cfg.handsets + extra)
