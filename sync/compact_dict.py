"""Preset dictionaries for the deflate-compressed report text in relay packets (docs/RELAY.md).

A preset dictionary primes raw deflate with text the officers are likely to write, so even a 30-byte
report finds back-references: on the shared corpus the text shrinks to about half (plain deflate without a
dictionary makes such short texts *longer*).  ``dict_v1.txt`` was written by hand from the handsets' canned
messages, the category words of edge/data/keywords.toml, TTU's kecamatan, post and village names, and
common Indonesian / Kupang Malay words and officer shorthand — not from any test corpus, so the measured
ratio is not flattered by the corpus it is measured on.  The most frequent words sit at the end of the
file: deflate codes a near back-reference in fewer bits than a far one.

**A shipped dictionary is never changed.**  A packet names its dictionary by number; a post and the center
that disagree on the bytes behind a number would decode each other's texts into garbage (or not at all).
Each dictionary's SHA-256 is pinned below and checked when it is loaded, so an edited file fails loudly
instead.  A better dictionary is a new file with a new number; decoders keep every old one.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

from siaga.errors import ProtocolError

#: Dictionary number (the packet's text-coding field) → (file in sync/data, its SHA-256).
DICTIONARIES: dict[int, tuple[str, str]] = {
    1: ("dict_v1.txt", "ed55a6481e62a04937003edb05f17e1de82f60447dd552af4fea05233f909ccc"),
}


@functools.cache
def load(number: int) -> bytes:
    """The bytes of dictionary ``number``; ProtocolError("dictionary") for an unknown number.

    A file whose hash differs from the pinned one raises RuntimeError: that is a broken installation,
    not bad input, and must not be counted and shrugged off like a hostile packet.
    """
    entry = DICTIONARIES.get(number)
    if entry is None:
        raise ProtocolError("dictionary", f"unknown text dictionary {number}")
    name, sha256 = entry
    data = resources.files("sync").joinpath("data", name).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(f"sync/data/{name} was changed after it shipped (SHA-256 mismatch): restore it")
    return data
