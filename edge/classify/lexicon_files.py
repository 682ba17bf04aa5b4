"""Reading the classifier's words: ``edge/data/keywords.toml`` and a regency's extension files, merged
and validated into one :class:`LexiconData` (:func:`load_lexicon`).

A file that is unreadable, not TOML, or names an unknown key or category raises :class:`ConfigError`
naming the file and the key, so a regency's typo stops the post at start, not at the first report.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from edge.classify.text import ANY, canned_key, raw_tokens
from siaga.errors import ConfigError
from siaga.report import CATEGORIES, CERTAINTIES, SEVERITIES, URGENCIES

log = logging.getLogger(__name__)

CASUALTY_KINDS: tuple[str, ...] = ("affected", "injured", "dead", "missing")
#: People counted as found or unhurt ("2 selamat, 3 blm ditemukan"): no casualty, but part of a breakdown.
SAFE = "safe"
WEIGHTS = {"primary": 3.0, "strong": 3.0, "keywords": 2.0, "weak": 1.0}
STRONG = 3.0
#: The subject class of a clause whose subject is one of [casualties] people.
PEOPLE = "people"
PACKAGED = "edge/data/keywords.toml"
_TOP_KEYS = ("version", "categories", "synonyms", "numbers", "casualties", "canned", "words", "subjects")
_CATEGORY_KEYS = (
    "event",
    "urgency",
    "severity",
    "certainty",
    "outranks",
    "final",
    "primary",
    "strong",
    "keywords",
    "weak",
    "cleared_by",
    "primary_yields",
    "said_of",
)
_NUMBER_KEYS = ("vague", "words", "multipliers")
_CASUALTY_KEYS = (
    *CASUALTY_KINDS,
    SAFE,
    "hurt_verbs",
    "people",
    "person_units",
    "other_units",
    "skip_after",
    "person_only",
    "things",
    "update_words",
    "aboard",
    "found_words",
    "count_words",
    "subset",
)
_WORD_KEYS = (
    "negations",
    "hedges",
    "intensifiers",
    "expected",
    "protect",
    "fillers",
    "drills",
    "risks",
    "history",
    "after",
    "prepositions",
)
_SUBJECT_NAME_RE = re.compile(r"^[a-z][a-z_]{0,30}$")


class Keyword(NamedTuple):
    phrase: str
    category: str
    weight: float


class PhraseOf(NamedTuple):
    """A phrase that belongs to one category (a primary need, or the all-clear of one hazard)."""

    phrase: str
    category: str


class SaidOf(NamedTuple):
    """A phrase that means ``category`` when said of a clause whose subject is of class ``subject``."""

    phrase: str
    subject: str
    category: str


@dataclass
class CategoryInfo:
    """What a category says in CAP terms, and how it ranks against the others."""

    event: str
    urgency: str
    severity: str
    certainty: str = "Observed"
    outranks: set[str] = field(default_factory=set)
    final: bool = False
    primary_yields: bool = False


def read_toml(name: str, raw: bytes) -> dict[str, Any]:
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(name, raw[:20], f"is not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, "", f"is not valid TOML: {exc}") from None


def _check_table(value: object, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "must be a table")
    return value


def _check_keys(table: Mapping[str, Any], key: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    for name in table:
        if name not in allowed:
            where = f"{key}{name}" if key.endswith(": ") else f"{key}.{name}"
            raise ConfigError(where, name, f"is not a known key; allowed: {', '.join(allowed)}")


def _check_words(value: object, key: str) -> list[str]:
    if not isinstance(value, list):
        raise ConfigError(key, value, "must be a list of words or phrases")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError(f"{key}[{i}]", item, "must be a string (a word or phrase)")
        if not raw_tokens(item):
            raise ConfigError(f"{key}[{i}]", item, "must contain at least one letter or digit")
        parts = item.split()
        if ANY in item and (ANY in (parts[0], parts[-1]) or any(ANY in w and w != ANY for w in parts)):
            raise ConfigError(f"{key}[{i}]", item, f"{ANY!r} may only stand alone between two words")
        out.append(item)
    return out


def _check_choice(value: object, key: str, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(key, value, f"must be one of {', '.join(allowed)}")
    return value


class LexiconData:
    """The merged, validated content of the packaged file plus the regency's extension files."""

    def __init__(self) -> None:
        self.categories: dict[str, CategoryInfo] = {}
        self.keywords: list[Keyword] = []
        self.synonyms: dict[str, str] = {}
        self.number_words: dict[str, int] = {}
        self.multipliers: dict[str, int] = {}
        self.vague: list[str] = []
        self.casualties: dict[str, list[str]] = {kind: [] for kind in (*CASUALTY_KINDS, SAFE)}
        self.hurt_verbs: list[str] = []
        self.primary: list[PhraseOf] = []  # primary needs
        self.clears: list[PhraseOf] = []  # all-clears of one hazard
        self.people: list[str] = []
        self.person_units: list[str] = []
        self.other_units: list[str] = []
        self.person_only: list[str] = []
        self.things: list[str] = []
        self.update_words: list[str] = []
        self.aboard: list[str] = []
        self.found_words: list[str] = []
        self.count_words: list[str] = []
        self.subset: list[str] = []
        self.subjects: dict[str, list[str]] = {}
        self.said_of: list[SaidOf] = []
        self.skip_after: list[str] = []
        self.canned: dict[str, str] = {}
        self.words: dict[str, list[str]] = {name: [] for name in _WORD_KEYS}

    def merge(self, name: str, doc: Mapping[str, Any]) -> None:
        p = f"{name}: "
        _check_keys(doc, p, _TOP_KEYS)
        if "version" in doc and (isinstance(doc["version"], bool) or doc["version"] != 1):
            raise ConfigError(f"{p}version", doc["version"], "must be 1")
        # subjects before categories: a category's said_of names subject classes
        subjects = _check_table(doc.get("subjects", {}), f"{p}subjects")
        for name, nouns in subjects.items():
            key = f"{p}subjects.{name}"
            if not _SUBJECT_NAME_RE.match(name):
                raise ConfigError(key, name, "must be a lower-case name (letters and _)")
            for i, noun in enumerate(_check_words(nouns, key)):
                if len(raw_tokens(noun)) != 1:
                    raise ConfigError(f"{key}[{i}]", noun, "must be a single word")
                self.subjects.setdefault(name, []).append(noun)
        cats = _check_table(doc.get("categories", {}), f"{p}categories")
        for cat, body in cats.items():
            self._merge_category(p, cat, body)
        syn = _check_table(doc.get("synonyms", {}), f"{p}synonyms")
        for word, meaning in syn.items():
            key = f"{p}synonyms.{word}"
            if len(raw_tokens(word)) != 1:
                raise ConfigError(key, word, "must be a single word (letters/digits, no spaces)")
            if not isinstance(meaning, str) or not raw_tokens(meaning):
                raise ConfigError(key, meaning, "must be a non-empty string (the word(s) it stands for)")
            self.synonyms[word] = meaning
        self._merge_numbers(p, _check_table(doc.get("numbers", {}), f"{p}numbers"))
        cas = _check_table(doc.get("casualties", {}), f"{p}casualties")
        _check_keys(cas, f"{p}casualties", _CASUALTY_KEYS)
        for kind in (*CASUALTY_KINDS, SAFE):
            self.casualties[kind] += _check_words(cas.get(kind, []), f"{p}casualties.{kind}")
        self.hurt_verbs += _check_words(cas.get("hurt_verbs", []), f"{p}casualties.hurt_verbs")
        # people are person units too ("3 pemuda luka"); they are kept apart for the reader
        people = _check_words(cas.get("people", []), f"{p}casualties.people")
        self.people += people
        self.person_units += people
        self.person_units += _check_words(cas.get("person_units", []), f"{p}casualties.person_units")
        self.person_only += _check_words(cas.get("person_only", []), f"{p}casualties.person_only")
        self.things += _check_words(cas.get("things", []), f"{p}casualties.things")
        self.update_words += _check_words(cas.get("update_words", []), f"{p}casualties.update_words")
        self.aboard += _check_words(cas.get("aboard", []), f"{p}casualties.aboard")
        self.found_words += _check_words(cas.get("found_words", []), f"{p}casualties.found_words")
        self.count_words += _check_words(cas.get("count_words", []), f"{p}casualties.count_words")
        self.subset += _check_words(cas.get("subset", []), f"{p}casualties.subset")
        self.other_units += _check_words(cas.get("other_units", []), f"{p}casualties.other_units")
        self.skip_after += _check_words(cas.get("skip_after", []), f"{p}casualties.skip_after")
        canned = _check_table(doc.get("canned", {}), f"{p}canned")
        for text, cat in canned.items():
            if not text.strip():
                raise ConfigError(f"{p}canned", text, "canned text must not be empty")
            self.canned[canned_key(text)] = _check_choice(cat, f"{p}canned.{text!r}", CATEGORIES)
        words = _check_table(doc.get("words", {}), f"{p}words")
        _check_keys(words, f"{p}words", _WORD_KEYS)
        for kind in _WORD_KEYS:
            self.words[kind] += _check_words(words.get(kind, []), f"{p}words.{kind}")

    def _merge_category(self, p: str, cat: str, body: object) -> None:
        key = f"{p}categories.{cat}"
        if cat not in CATEGORIES:
            raise ConfigError(key, cat, f"is not a category; allowed: {', '.join(CATEGORIES)}")
        table = _check_table(body, key)
        _check_keys(table, key, _CATEGORY_KEYS)
        info = self.categories.get(cat)
        if info is None:
            info = self.categories[cat] = CategoryInfo(event=cat.capitalize(), urgency="Unknown", severity="Unknown")
        if "event" in table:
            event = table["event"]
            if not isinstance(event, str) or not 0 < len(event) <= 200:
                raise ConfigError(f"{key}.event", event, "must be a string of 1-200 characters")
            info.event = event
        if "urgency" in table:
            info.urgency = _check_choice(table["urgency"], f"{key}.urgency", URGENCIES)
        if "severity" in table:
            info.severity = _check_choice(table["severity"], f"{key}.severity", SEVERITIES)
        if "certainty" in table:
            info.certainty = _check_choice(table["certainty"], f"{key}.certainty", CERTAINTIES)
        for i, other in enumerate(_check_words(table.get("outranks", []), f"{key}.outranks")):
            info.outranks.add(_check_choice(other, f"{key}.outranks[{i}]", CATEGORIES))
        for flag in ("final", "primary_yields"):
            if flag in table:
                if not isinstance(table[flag], bool):
                    raise ConfigError(f"{key}.{flag}", table[flag], "must be true or false")
                setattr(info, flag, table[flag])
        for weight_key, weight in WEIGHTS.items():
            for phrase in _check_words(table.get(weight_key, []), f"{key}.{weight_key}"):
                self.keywords.append(Keyword(phrase, cat, weight))
                if weight_key == "primary":
                    self.primary.append(PhraseOf(phrase, cat))
        said_of = _check_table(table.get("said_of", {}), f"{key}.said_of")
        for name, phrases in said_of.items():
            if name != PEOPLE and name not in self.subjects:
                known = ", ".join([PEOPLE, *self.subjects])
                raise ConfigError(f"{key}.said_of.{name}", name, f"is not a subject class; known: {known}")
            for phrase in _check_words(phrases, f"{key}.said_of.{name}"):
                self.said_of.append(SaidOf(phrase, name, cat))
        if "cleared_by" in table and cat in ("aman", "lainnya"):
            raise ConfigError(f"{key}.cleared_by", table["cleared_by"], "only a hazard category can be cleared")
        for phrase in _check_words(table.get("cleared_by", []), f"{key}.cleared_by"):
            # an all-clear of this hazard alone ("api sudah padam"): a strong "aman" hit
            self.keywords.append(Keyword(phrase, "aman", STRONG))
            self.clears.append(PhraseOf(phrase, cat))

    def _merge_numbers(self, p: str, table: Mapping[str, Any]) -> None:
        _check_keys(table, f"{p}numbers", _NUMBER_KEYS)
        self.vague += _check_words(table.get("vague", []), f"{p}numbers.vague")
        for sub, target in (("words", self.number_words), ("multipliers", self.multipliers)):
            for word, value in _check_table(table.get(sub, {}), f"{p}numbers.{sub}").items():
                key = f"{p}numbers.{sub}.{word}"
                if len(raw_tokens(word)) != 1 or not word[:1].isalpha():
                    raise ConfigError(key, word, "must be a single word")
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000:
                    raise ConfigError(key, value, "must be an integer 0-100000")
                target[word] = value


def load_lexicon(extra_paths: Sequence[Path] = ()) -> LexiconData:
    """The packaged keyword file, then each regency extension file in order.

    Raises :class:`ConfigError` naming the file and key when a file is unreadable or invalid.
    """
    data = LexiconData()
    packaged = resources.files("edge") / "data" / "keywords.toml"
    data.merge(PACKAGED, read_toml(PACKAGED, packaged.read_bytes()))
    for path in extra_paths:
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(str(path), str(path), f"cannot be read: {exc.strerror or exc}") from None
        data.merge(str(path), read_toml(str(path), raw))
        log.info("classifier keywords extended from %s", path)
    return data
