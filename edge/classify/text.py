"""Text normalisation: a report or keyword as lower-case ASCII words, and the string tests typo
correction is built on.

Officers type on a handset keyboard: accents, apostrophes, "rumah2" for "rumah-rumah", "tolooong" for
"tolong".  Keywords go through the same :func:`raw_tokens`, so a keyword and a report meet in one form.
"""

from __future__ import annotations

import re
import unicodedata

#: A phrase word that matches any one word ("sungai * meluap": the river's name sits in between).
ANY = "*"
#: Clause separators: punctuation, except a "." or "," or ":" between two digits ("1.500", "2,5").
CLAUSE_RE = re.compile(r"[;!?\n()]|(?<!\d)[.,:]|[.,:](?!\d)")
MAX_TEXT = 4096
VOWELS = frozenset("aiueo")
_TOKEN_RE = re.compile(r"[a-z]+|[0-9]+")
_REDUP_RE = re.compile(r"([a-z]{2,})2(?![0-9])")
_REPEAT_RE = re.compile(r"([a-z])\1+")


def squash(word: str) -> str:
    """Collapse repeated letters: "tolooong" and "tolong", "kecelakaan" and "kecelakan" meet."""
    return _REPEAT_RE.sub(r"\1", word)


def raw_tokens(text: str) -> list[str]:
    text = text[:MAX_TEXT]
    if text.isascii():  # nearly every report and keyword: nothing to decompose
        plain = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    plain = plain.replace("'", "").replace("’", "").replace("`", "")
    plain = _REDUP_RE.sub(r"\1", plain)  # "rumah2" is how "rumah-rumah" is typed
    return [squash(tok) if tok[0].isalpha() else tok for tok in _TOKEN_RE.findall(plain)]


def skeleton(word: str) -> str:
    return "".join(ch for ch in word if ch not in VOWELS)


def within_one(a: str, b: str) -> bool:
    """Optimal-string-alignment distance ≤ 1 (one letter missing, extra, wrong, or two swapped)."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    if la > lb:
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


def swapped(a: str, b: str) -> bool:
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    return len(diff) == 2 and diff[1] == diff[0] + 1


def deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def canned_key(text: str) -> str:
    """A canned text as the handset may send it: runs of white space are one space."""
    return " ".join(text.split())
