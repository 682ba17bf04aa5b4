"""Rows read straight from the pages of a damaged SQLite file, without its B-tree.

The store's first salvage pass asks SQLite for rows by rowid, which walks the table's B-tree from its root:
one damaged *interior* page hides every row below it (with 1 KiB pages, about a hundred reports).  This
pass reads every table-leaf page of the file on its own, follows overflow chains, and decodes the records
(the file format: https://www.sqlite.org/fileformat2.html), so a damaged page costs only its own rows.

It reads the main file only: what is still in the WAL is left to SQLite's pass.  Records from free pages
(rows deleted or rewritten since) come back too; the caller decides which version of a row to keep.
Nothing here trusts the bytes: any inconsistency skips that cell or page, never raises.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_HEADER = b"SQLite format 3\x00"
_LEAF_TABLE = 0x0D
#: A chain longer than this is a loop in damaged pages (a report is a few KiB).
_MAX_OVERFLOW_PAGES = 4096


def table_leaf_records(path: Path, columns: int) -> Iterator[list[Any]]:
    """Every decodable record with exactly ``columns`` values on the table-leaf pages of ``path``."""
    try:
        data = path.read_bytes()
    except OSError:
        return
    if len(data) < 512 or not data.startswith(_HEADER):
        return
    page_size = int.from_bytes(data[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return
    usable = page_size - data[20]
    pages = len(data) // page_size
    for number in range(1, pages + 1):
        start = (number - 1) * page_size
        header = start + (100 if number == 1 else 0)
        if data[header] != _LEAF_TABLE:
            continue
        cells = int.from_bytes(data[header + 3 : header + 5], "big")
        for i in range(min(cells, page_size // 4)):
            pointer = header + 8 + 2 * i
            offset = start + int.from_bytes(data[pointer : pointer + 2], "big")
            if not start < offset < start + usable:
                continue
            try:
                payload = _cell_payload(data, offset, start + usable, usable, page_size, pages)
                values = _record(payload) if payload is not None else None
            except (IndexError, ValueError, struct.error):
                continue
            if values is not None and len(values) == columns:
                yield values


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        byte = data[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    return (value << 8) | data[pos + 8], pos + 9


def _cell_payload(data: bytes, offset: int, page_end: int, usable: int, page_size: int, pages: int) -> bytes | None:
    size, pos = _varint(data, offset)
    _rowid, pos = _varint(data, pos)
    most_local = usable - 35
    if size <= most_local:
        local = size
    else:
        least = (usable - 12) * 32 // 255 - 23
        local = least + (size - least) % (usable - 4)
        if local > most_local:
            local = least
    if pos + local > page_end:
        return None
    payload = bytearray(data[pos : pos + local])
    if local < size:
        if pos + local + 4 > page_end:
            return None
        page = int.from_bytes(data[pos + local : pos + local + 4], "big")
        for _ in range(_MAX_OVERFLOW_PAGES):
            if len(payload) >= size or not 1 <= page <= pages:
                break
            start = (page - 1) * page_size
            page = int.from_bytes(data[start : start + 4], "big")
            payload += data[start + 4 : start + usable]
        if len(payload) < size:
            return None
    return bytes(payload[:size])


def _record(payload: bytes) -> list[Any] | None:
    header_size, pos = _varint(payload, 0)
    if not 1 <= header_size <= len(payload):
        return None
    types = []
    while pos < header_size:
        serial, pos = _varint(payload, pos)
        types.append(serial)
    body = header_size
    values: list[Any] = []
    for serial in types:
        if serial == 0:
            values.append(None)
        elif 1 <= serial <= 6:
            width = (1, 2, 3, 4, 6, 8)[serial - 1]
            values.append(int.from_bytes(payload[body : body + width], "big", signed=True))
            body += width
        elif serial == 7:
            values.append(struct.unpack(">d", payload[body : body + 8])[0])
            body += 8
        elif serial in (8, 9):
            values.append(serial - 8)
        elif serial >= 12:
            length = (serial - 12) // 2
            chunk = payload[body : body + length]
            values.append(chunk.decode("utf-8") if serial % 2 else bytes(chunk))
            body += length
        else:
            return None  # 10 and 11 are reserved
        if body > len(payload):
            return None
    return values
