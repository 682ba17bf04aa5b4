"""Touch-tone (DTMF) codes from handhelds that have only a keypad: the code table and the decoding.

An officer keys ``DESA PETUGAS KEJADIAN #`` — e.g. ``07 12 1 #`` = village 07, officer 12, event 1 (banjir)
— and direwolf hands us the keys (edge/aprs.py :class:`~edge.aprs.TouchTone`).  The meaning of each number
is the post's code table (``radio.tnc.touch_tone_file``), printed as a card for the officers
(docs/RADIO.md)::

    # Kode nada sentuh, Pos Siaga Oebubun.  Bentuk: DESA PETUGAS KEJADIAN lalu #
    desa      07  Oebubun          -9.4512  124.3521
    petugas   12  Yohanes Taek     +6281234567890
    kejadian  1   banjir

One entry a line: the kind (``desa`` village, with an optional position; ``petugas`` officer, the rest of
the line is the name, a trailing ``+62…`` number is the phone; ``kejadian`` event, a category of
siaga/report.py), its code (digits; all codes of a kind have the same length), the meaning.  ``#`` starts
a comment.  The whole file is validated at start and by ``siaga config check``: a bad line is a
:class:`ConfigError` naming the file and line (exit 78).

A code that does not fit the table is never dropped: it becomes an unreadable report with the keys as they
came (the center can still call the village) and is counted (``tt.unreadable``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from siaga.errors import ConfigError
from siaga.report import CATEGORIES

KEY = "radio.tnc.touch_tone_file"
KINDS = ("desa", "petugas", "kejadian")
MAX_ENTRIES = 10_000
_CODE_RE = re.compile(r"^[0-9]{1,4}$")
_PHONE_RE = re.compile(r"^\+?[0-9]{6,16}$")
#: What a handheld's keypad can send; anything else in direwolf's frame is a decoding error.
_KEYS_RE = re.compile(r"^[0-9A-D*#]*$")
MAX_KEYS = 32


@dataclass(frozen=True, slots=True)
class Village:
    name: str
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True, slots=True)
class Officer:
    name: str
    phone: str = ""


@dataclass(frozen=True, slots=True)
class CodeTable:
    villages: dict[str, Village]
    officers: dict[str, Officer]
    events: dict[str, str]

    def widths(self) -> tuple[int, int, int]:
        def width(codes: Mapping[str, object]) -> int:
            return len(next(iter(codes))) if codes else 0

        return width(self.villages), width(self.officers), width(self.events)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A code that fits the table."""

    keys: str
    village_code: str
    village: Village
    officer_code: str
    officer: Officer
    category: str


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Keys that do not make a code: kept as a report all the same."""

    keys: str
    reason: str


def clean_keys(keys: str) -> str:
    """The keys as they may appear in an origin (edge/daemon.py): keypad characters only, bounded."""
    kept = "".join(ch for ch in keys.upper() if ch in "0123456789ABCD*#")[:MAX_KEYS]
    return kept or "#"


def decode(table: CodeTable, keys: str) -> Decoded | Unreadable:
    """Keys as direwolf sent them (``07121#``) → the code's meaning, or why it has none."""
    raw = keys.strip().upper()
    if not raw or len(raw) > MAX_KEYS or not _KEYS_RE.match(raw):
        return Unreadable(clean_keys(raw), "bukan tombol keypad")
    digits = raw[:-1] if raw.endswith("#") else raw
    if not raw.endswith("#"):
        return Unreadable(raw, "tidak diakhiri #")
    wv, wo, we = table.widths()
    if not digits.isdigit() or len(digits) != wv + wo + we:
        return Unreadable(raw, f"harus {wv + wo + we} angka lalu #")
    v, o, e = digits[:wv], digits[wv : wv + wo], digits[wv + wo :]
    if v not in table.villages:
        return Unreadable(raw, f"desa {v} tidak ada di tabel")
    if o not in table.officers:
        return Unreadable(raw, f"petugas {o} tidak ada di tabel")
    if e not in table.events:
        return Unreadable(raw, f"kejadian {e} tidak ada di tabel")
    return Decoded(raw, v, table.villages[v], o, table.officers[o], table.events[e])


def load_table(path: Path) -> CodeTable:
    """Read and validate the code table; raises :class:`ConfigError` naming ``file:line``."""
    where = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ConfigError(KEY, where, f"cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(KEY, where, f"is not UTF-8 (byte {exc.start})") from None
    tables: dict[str, dict[str, object]] = {kind: {} for kind in KINDS}
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.split("#", 1)[0].strip()
        if not line:
            continue
        at = f"{where}:{number}"
        parts = line.split()
        if len(parts) < 3:
            raise ConfigError(at, line, "must be: desa|petugas|kejadian CODE MEANING")
        kind, code, rest = parts[0].lower(), parts[1], parts[2:]
        if kind not in KINDS:
            raise ConfigError(at, parts[0], f"is not a kind (one of {', '.join(KINDS)})")
        if not _CODE_RE.match(code):
            raise ConfigError(at, code, "a code is 1-4 digits")
        codes = tables[kind]
        if codes and len(next(iter(codes))) != len(code):
            raise ConfigError(at, code, f"every {kind} code must have {len(next(iter(codes)))} digits")
        if code in codes:
            raise ConfigError(at, code, f"{kind} code listed twice")
        if sum(len(t) for t in tables.values()) >= MAX_ENTRIES:
            raise ConfigError(KEY, where, f"has more than {MAX_ENTRIES} entries")
        codes[code] = _entry(kind, rest, at)
    for kind in KINDS:
        if not tables[kind]:
            raise ConfigError(KEY, where, f"has no {kind} line (every kind needs at least one)")
    return CodeTable(
        villages={k: v for k, v in tables["desa"].items() if isinstance(v, Village)},
        officers={k: v for k, v in tables["petugas"].items() if isinstance(v, Officer)},
        events={k: v for k, v in tables["kejadian"].items() if isinstance(v, str)},
    )


def _entry(kind: str, rest: list[str], at: str) -> Village | Officer | str:
    if kind == "kejadian":
        if len(rest) != 1 or rest[0].lower() not in CATEGORIES:
            raise ConfigError(at, " ".join(rest), f"must be one category ({', '.join(CATEGORIES)})")
        return rest[0].lower()
    if kind == "petugas":
        phone = rest[-1] if len(rest) > 1 and _PHONE_RE.match(rest[-1]) else ""
        name = " ".join(rest[:-1] if phone else rest)
        if len(name) > 64:
            raise ConfigError(at, name, "an officer's name is at most 64 characters")
        return Officer(name, phone)
    lat = lon = None
    if len(rest) >= 3:
        try:
            lat, lon = float(rest[-2]), float(rest[-1])
        except ValueError:
            lat = lon = None
        else:
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ConfigError(at, f"{rest[-2]} {rest[-1]}", "must be a latitude and a longitude")
            rest = rest[:-2]
    name = " ".join(rest)
    if len(name) > 64:
        raise ConfigError(at, name, "a village name is at most 64 characters")
    return Village(name, lat, lon)
