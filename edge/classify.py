"""Indonesian report text → category, CAP urgency/severity/certainty and casualty counts.

Officers write in a hurry on a handset keyboard: canned texts in capitals, free text full of shorthand
("tlg sgr 2 org luka"), typos ("kbakaran"), numbers as digits or words ("tiga puluh jiwa"), and now and
then words of Uab Meto or Kupang Malay ("su", "sonde").  All words live in ``edge/data/keywords.toml``;
a regency adds its own file(s) without code changes (see :meth:`Classifier.load`).  Everything is
compiled once into dict lookups, so a classification is a few microseconds of pure Python.
Classification never fails: what it does not understand is ``lainnya`` with Unknown urgency — the raw
text is always kept by the caller.
"""

from __future__ import annotations

import functools
import logging
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from siaga.errors import ConfigError
from siaga.report import CATEGORIES, CERTAINTIES, SEVERITIES, URGENCIES, Casualties

log = logging.getLogger(__name__)

CASUALTY_KINDS: tuple[str, ...] = ("affected", "injured", "dead", "missing")
#: People counted as found or unhurt ("2 selamat, 3 blm ditemukan"): no casualty, but part of a breakdown.
_SAFE = "safe"
#: Casualty states from least to most grave: of two states named back to back the graver one counts.
_GRAVITY: tuple[str, ...] = (_SAFE, "affected", "injured", "missing", "dead")

_WEIGHTS = {"primary": 3.0, "strong": 3.0, "keywords": 2.0, "weak": 1.0}
_STRONG = 3.0
#: A primary need wins a tie with the hazard around it ("ibu melahirkan, jalan putus karena longsor").
_PRIMARY_EDGE = 0.5
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
    _SAFE,
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
#: The subject class of a clause whose subject is one of [casualties] people.
_PEOPLE = "people"
_SUBJECT_NAME_RE = re.compile(r"^[a-z][a-z_]{0,30}$")
#: A phrase word that matches any one word ("sungai * meluap": the river's name sits in between).
_ANY = "*"
#: At most this many filler words ("sudah", "mulai") may sit between the words of a phrase.
_MAX_FILLERS = 2
#: Kupang Malay says "ta-" for "ter-": "tabakar" is "terbakar", "tajepit" is "terjepit",
#: and "ba-" for "ber-": "bagerak" is "bergerak".
_DIALECT_PREFIXES = (("ta", "ter"), ("ba", "ber"))
_SEVERITY_ORDER = ("Unknown", "Minor", "Moderate", "Severe", "Extreme")
#: Meshtastic's Detection Sensor module sends "<sensor name> detected" when its button/pin fires.
_DETECTED_RE = re.compile(r"^\s*\S.{0,47}?\s+detected\s*$", re.IGNORECASE | re.DOTALL)
_TOKEN_RE = re.compile(r"[a-z]+|[0-9]+")
_REDUP_RE = re.compile(r"([a-z]{2,})2(?![0-9])")
_REPEAT_RE = re.compile(r"([a-z])\1+")
_VOWELS = frozenset("aiueo")
_FUZZY_MIN = 5
_WINDOW = 4
#: A count further from its state word than ``_WINDOW`` still takes it when both sit in one clause and
#: at most this many words (besides person words) lie between: "dua org ibu dan anak tertimbun".
_CLAUSE_WINDOW = 6
#: Clause separators: punctuation, except a "." or "," or ":" between two digits ("1.500", "2,5").
_CLAUSE_RE = re.compile(r"[;!?\n()]|(?<!\d)[.,:]|[.,:](?!\d)")
_MAX_TEXT = 4096
_CACHE_MAX = 20_000


@dataclass(frozen=True)
class Classification:
    """What the classifier made of one text.  ``canned`` is true for handset canned texts and buttons."""

    category: str
    urgency: str
    severity: str
    certainty: str
    casualties: Casualties
    event: str
    canned: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "urgency": self.urgency,
            "severity": self.severity,
            "certainty": self.certainty,
            "event": self.event,
            "canned": self.canned,
            "casualties": self.casualties.to_dict(),
        }


@dataclass
class _CategoryInfo:
    event: str
    urgency: str
    severity: str
    certainty: str = "Observed"
    outranks: set[str] = field(default_factory=set)
    final: bool = False
    primary_yields: bool = False


# -- normalisation -----------------------------------------------------------------------------------


def _squash(word: str) -> str:
    """Collapse repeated letters: "tolooong" and "tolong", "kecelakaan" and "kecelakan" meet."""
    return _REPEAT_RE.sub(r"\1", word)


def _raw_tokens(text: str) -> list[str]:
    text = text[:_MAX_TEXT]
    if text.isascii():  # nearly every report and keyword: nothing to decompose
        plain = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    plain = plain.replace("'", "").replace("’", "").replace("`", "")
    plain = _REDUP_RE.sub(r"\1", plain)  # "rumah2" is how "rumah-rumah" is typed
    return [_squash(tok) if tok[0].isalpha() else tok for tok in _TOKEN_RE.findall(plain)]


def _skeleton(word: str) -> str:
    return "".join(ch for ch in word if ch not in _VOWELS)


def _within_one(a: str, b: str) -> bool:
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


def _swapped(a: str, b: str) -> bool:
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    return len(diff) == 2 and diff[1] == diff[0] + 1


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


# -- data file loading and validation --------------------------------------------------------------


def _read_toml(name: str, raw: bytes) -> dict[str, Any]:
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
        if not _raw_tokens(item):
            raise ConfigError(f"{key}[{i}]", item, "must contain at least one letter or digit")
        parts = item.split()
        if _ANY in item and (_ANY in (parts[0], parts[-1]) or any(_ANY in w and w != _ANY for w in parts)):
            raise ConfigError(f"{key}[{i}]", item, f"{_ANY!r} may only stand alone between two words")
        out.append(item)
    return out


def _check_choice(value: object, key: str, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(key, value, f"must be one of {', '.join(allowed)}")
    return value


class _Data:
    """The merged, validated content of the packaged file plus the regency's extension files."""

    def __init__(self) -> None:
        self.categories: dict[str, _CategoryInfo] = {}
        self.keywords: list[tuple[str, str, float]] = []  # (phrase, category, weight)
        self.synonyms: dict[str, str] = {}
        self.number_words: dict[str, int] = {}
        self.multipliers: dict[str, int] = {}
        self.vague: list[str] = []
        self.casualties: dict[str, list[str]] = {kind: [] for kind in (*CASUALTY_KINDS, _SAFE)}
        self.hurt_verbs: list[str] = []
        self.primary: list[tuple[str, str]] = []  # (phrase, category)
        self.clears: list[tuple[str, str]] = []  # (all-clear phrase, the one category it clears)
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
        self.said_of: list[tuple[str, str, str]] = []  # (phrase, subject class, category)
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
                if len(_raw_tokens(noun)) != 1:
                    raise ConfigError(f"{key}[{i}]", noun, "must be a single word")
                self.subjects.setdefault(name, []).append(noun)
        cats = _check_table(doc.get("categories", {}), f"{p}categories")
        for cat, body in cats.items():
            self._merge_category(p, cat, body)
        syn = _check_table(doc.get("synonyms", {}), f"{p}synonyms")
        for word, meaning in syn.items():
            key = f"{p}synonyms.{word}"
            if len(_raw_tokens(word)) != 1:
                raise ConfigError(key, word, "must be a single word (letters/digits, no spaces)")
            if not isinstance(meaning, str) or not _raw_tokens(meaning):
                raise ConfigError(key, meaning, "must be a non-empty string (the word(s) it stands for)")
            self.synonyms[word] = meaning
        self._merge_numbers(p, _check_table(doc.get("numbers", {}), f"{p}numbers"))
        cas = _check_table(doc.get("casualties", {}), f"{p}casualties")
        _check_keys(cas, f"{p}casualties", _CASUALTY_KEYS)
        for kind in (*CASUALTY_KINDS, _SAFE):
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
            self.canned[_canned_key(text)] = _check_choice(cat, f"{p}canned.{text!r}", CATEGORIES)
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
            info = self.categories[cat] = _CategoryInfo(event=cat.capitalize(), urgency="Unknown", severity="Unknown")
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
        for weight_key, weight in _WEIGHTS.items():
            for phrase in _check_words(table.get(weight_key, []), f"{key}.{weight_key}"):
                self.keywords.append((phrase, cat, weight))
                if weight_key == "primary":
                    self.primary.append((phrase, cat))
        said_of = _check_table(table.get("said_of", {}), f"{key}.said_of")
        for name, phrases in said_of.items():
            if name != _PEOPLE and name not in self.subjects:
                known = ", ".join([_PEOPLE, *self.subjects])
                raise ConfigError(f"{key}.said_of.{name}", name, f"is not a subject class; known: {known}")
            for phrase in _check_words(phrases, f"{key}.said_of.{name}"):
                self.said_of.append((phrase, name, cat))
        if "cleared_by" in table and cat in ("aman", "lainnya"):
            raise ConfigError(f"{key}.cleared_by", table["cleared_by"], "only a hazard category can be cleared")
        for phrase in _check_words(table.get("cleared_by", []), f"{key}.cleared_by"):
            # an all-clear of this hazard alone ("api sudah padam"): a strong "aman" hit
            self.keywords.append((phrase, "aman", _STRONG))
            self.clears.append((phrase, cat))

    def _merge_numbers(self, p: str, table: Mapping[str, Any]) -> None:
        _check_keys(table, f"{p}numbers", _NUMBER_KEYS)
        self.vague += _check_words(table.get("vague", []), f"{p}numbers.vague")
        for sub, target in (("words", self.number_words), ("multipliers", self.multipliers)):
            for word, value in _check_table(table.get(sub, {}), f"{p}numbers.{sub}").items():
                key = f"{p}numbers.{sub}.{word}"
                if len(_raw_tokens(word)) != 1 or not word[:1].isalpha():
                    raise ConfigError(key, word, "must be a single word")
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000:
                    raise ConfigError(key, value, "must be an integer 0-100000")
                target[word] = value


def _phrase_order(entry: tuple[tuple[str, ...], Any]) -> tuple[int, bool]:
    """Longest phrase first, counting its fixed words; of two equally long, the one without "*": "jalan
    rusak berat berlubang" is "jalan rusak" and "berlubang", not "jalan * berlubang" swallowing "rusak"."""
    return -sum(1 for t in entry[0] if t != _ANY), _ANY in entry[0]


def _canned_key(text: str) -> str:
    return " ".join(text.split())


# -- the classifier --------------------------------------------------------------------------------


class Classifier:
    """A compiled keyword classifier.  Build it with :meth:`load`; it is immutable and thread-safe."""

    def __init__(self, data: _Data) -> None:
        self._info = {cat: data.categories.get(cat) or _CategoryInfo(cat, "Unknown", "Unknown") for cat in CATEGORIES}
        self._order = {cat: i for i, cat in enumerate(CATEGORIES)}
        self._canned = dict(data.canned)
        self._synonyms: dict[str, tuple[str, ...]] = {}
        for word, meaning in data.synonyms.items():
            self._synonyms[_raw_tokens(word)[0]] = tuple(_raw_tokens(meaning))
        self._numbers = {_raw_tokens(w)[0]: v for w, v in data.number_words.items()}
        self._multipliers = {_raw_tokens(w)[0]: v for w, v in data.multipliers.items()}
        self._vague = {self._canon_phrase(w)[0] for w in data.vague}
        self._negations = {self._canon_phrase(w)[0] for w in data.words["negations"]}
        self._hedges = self._phrase_set(data.words["hedges"])
        self._intensifiers = self._phrase_set(data.words["intensifiers"])
        self._expected = self._phrase_set(data.words["expected"])
        self._skip_after = {self._canon_phrase(w)[0] for w in data.skip_after}
        self._fillers = {self._canon_phrase(w)[0] for w in data.words["fillers"]}
        self._person_units = self._phrase_index((w, "unit", 0.0) for w in data.person_units)
        self._other_units = self._phrase_set(data.other_units)
        self._count_words = {self._canon_phrase(w)[0] for w in data.count_words}
        self._drills = self._phrase_set(data.words["drills"])
        self._risks = self._phrase_set(data.words["risks"])
        self._history = self._phrase_set(data.words["history"])
        self._people = {self._canon_phrase(w)[0] for w in data.people}
        self._person_only = {self._canon_phrase(w) for w in data.person_only}
        self._things = {self._canon_phrase(w)[0] for w in data.things}
        self._update_words = self._phrase_set(data.update_words)
        self._aboard = self._phrase_set(data.aboard)
        self._found_words = {t for w in data.found_words for t in self._canon_phrase(w)}
        self._subset = self._phrase_set(data.subset)
        self._after = self._phrase_set(data.words["after"])
        self._prepositions = {self._canon_phrase(w)[0] for w in data.words["prepositions"]}
        # noun -> subject class; people last, so that a regency's own class wins a shared word
        self._subject_of: dict[str, str] = {}
        for name, nouns in data.subjects.items():
            for noun in nouns:
                self._subject_of.setdefault(self._canon_phrase(noun)[0], name)
        for noun in self._people:
            self._subject_of.setdefault(noun, _PEOPLE)
        # phrases whose meaning depends on what they are said of: phrase -> ((subject class, category), ...)
        said_of: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        for phrase, name, cat in data.said_of:
            said_of.setdefault(self._canon_phrase(phrase), []).append((name, cat))
        self._said_of = {toks: tuple(pairs) for toks, pairs in said_of.items()}
        self._said_of_index = self._phrase_set(phrase for phrase, _, _ in data.said_of)

        # keyword phrases: first token -> [(tokens, ((category, weight), ...))], longest first
        merged: dict[tuple[str, ...], dict[str, float]] = {}
        for phrase, cat, weight in data.keywords:
            toks = self._canon_phrase(phrase)
            slot = merged.setdefault(toks, {})
            slot[cat] = max(weight, slot.get(cat, 0.0))
        self._keywords: dict[str, list[tuple[tuple[str, ...], tuple[tuple[str, float], ...]]]] = {}
        for toks, cats in merged.items():
            self._keywords.setdefault(toks[0], []).append((toks, tuple(cats.items())))
        for entries in self._keywords.values():
            entries.sort(key=_phrase_order)
        # "*" never stands for a word that is a strong keyword on its own: "air banjir masuk" is a flood
        # named outright, not "air * masuk"
        self._wild_stop = {toks[0] for toks, cats in merged.items() if len(toks) == 1 and max(cats.values()) >= _STRONG}
        self._casualty = self._phrase_index(
            (phrase, kind, 0.0) for kind, phrases in data.casualties.items() for phrase in phrases
        )
        self._hurt_verbs = self._phrase_index((w, "injured", 0.0) for w in data.hurt_verbs)
        self._primary: dict[tuple[str, ...], set[str]] = {}
        for phrase, cat in data.primary:
            self._primary.setdefault(self._canon_phrase(phrase), set()).add(cat)
        self._clears: dict[tuple[str, ...], set[str]] = {}
        for phrase, cat in data.clears:
            self._clears.setdefault(self._canon_phrase(phrase), set()).add(cat)

        # The vocabulary typos are corrected towards: words of keyword and casualty phrases.
        vocab: set[str] = set()
        for toks in merged:
            vocab.update(toks)
        for index in (self._casualty, self._hurt_verbs, self._said_of_index, self._subset):
            for entries in index.values():
                for toks, _ in entries:
                    vocab.update(toks)
        vocab.discard(_ANY)
        self._known = (
            vocab
            | set(self._synonyms)
            | set(self._numbers)
            | set(self._multipliers)
            | self._vague
            | self._negations
            | {t for w in data.words["protect"] for t in _raw_tokens(w)}
            | set(self._other_units)
            | self._count_words
            | {t for key in ("drills", "risks", "history") for w in data.words[key] for t in self._canon_phrase(w)}
            | self._skip_after
            | set(self._person_units)
            | set(self._subject_of)
            | self._prepositions
            | {t for w in data.words["after"] for t in self._canon_phrase(w)}
        )
        self._fuzzy: dict[str, list[str]] = {}
        skeletons: dict[str, set[str]] = {}
        for word in vocab:
            if len(word) >= _FUZZY_MIN and word.isalpha():
                for variant in {word} | _deletes(word):
                    self._fuzzy.setdefault(variant, []).append(word)
            if len(word) >= 4 and word.isalpha():
                skeletons.setdefault(_skeleton(word), set()).add(word)
        # A vowel-less token ("bnjr", "kbkrn") is taken for the one keyword with that consonant skeleton.
        self._skeletons = {sk: next(iter(ws)) for sk, ws in skeletons.items() if len(ws) == 1 and len(sk) >= 3}
        self._word_cache: dict[str, tuple[str, ...]] = {}

    # -- construction helpers --
    def _canon_phrase(self, phrase: str) -> tuple[str, ...]:
        out: list[str] = []
        parts = phrase.split(f" {_ANY} ") if _ANY in phrase else (phrase,)
        for k, part in enumerate(parts):
            if k:
                out.append(_ANY)
            for tok in _raw_tokens(part):
                out.extend(self._synonyms.get(tok, (tok,)))
        return tuple(out) or ("",)

    def _phrase_set(
        self, phrases: Iterable[str]
    ) -> dict[str, list[tuple[tuple[str, ...], tuple[tuple[str, float], ...]]]]:
        return self._phrase_index((w, "x", 0.0) for w in phrases)

    def _phrase_index(
        self, items: Iterable[tuple[str, str, float]]
    ) -> dict[str, list[tuple[tuple[str, ...], tuple[tuple[str, float], ...]]]]:
        index: dict[str, list[tuple[tuple[str, ...], tuple[tuple[str, float], ...]]]] = {}
        for phrase, tag, weight in items:
            toks = self._canon_phrase(phrase)
            index.setdefault(toks[0], []).append((toks, ((tag, weight),)))
        for entries in index.values():
            entries.sort(key=_phrase_order)
        return index

    @classmethod
    def load(cls, extra_paths: Sequence[Path] = ()) -> Classifier:
        """The packaged keyword file, then each regency extension file in order.

        Raises :class:`ConfigError` naming the file and key when a file is unreadable or invalid.
        """
        data = _Data()
        packaged = resources.files("edge") / "data" / "keywords.toml"
        data.merge("edge/data/keywords.toml", _read_toml("edge/data/keywords.toml", packaged.read_bytes()))
        for path in extra_paths:
            path = Path(path)
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise ConfigError(str(path), str(path), f"cannot be read: {exc.strerror or exc}") from None
            data.merge(str(path), _read_toml(str(path), raw))
            log.info("classifier keywords extended from %s", path)
        return cls(data)

    # -- classification --
    def _canon_word(self, tok: str) -> tuple[str, ...]:
        cached = self._word_cache.get(tok)
        if cached is not None:
            return cached
        result = self._resolve(tok)
        if len(self._word_cache) < _CACHE_MAX:
            self._word_cache[tok] = result
        return result

    def _resolve(self, tok: str) -> tuple[str, ...]:
        if tok in self._synonyms:
            return self._synonyms[tok]
        if tok in self._known or not tok.isalpha():
            return (tok,)
        for suffix in ("nya", "lah", "kah", "pun"):
            stem = tok[: -len(suffix)]
            if tok.endswith(suffix) and len(stem) >= 3 and stem in self._known:
                return (*self._resolve(stem), suffix) if suffix == "kah" else self._resolve(stem)
        for dialect, standard in _DIALECT_PREFIXES:
            # only onto a known word as it is: a typo guess on top of a dialect guess is too loose
            word = _squash(standard + tok[len(dialect) :])
            if tok.startswith(dialect) and len(tok) >= 5 and word in self._known:
                return self._resolve(word)
        if len(tok) >= _FUZZY_MIN - 1:
            candidates: set[str] = set(self._fuzzy.get(tok, ()))
            if len(tok) >= _FUZZY_MIN:
                for variant in _deletes(tok):
                    candidates.update(self._fuzzy.get(variant, ()))
            # A 4-letter token only as a 5+-letter keyword with an inner letter dropped ("gmpa", but
            # "saja" is not "sajam"); a wrong
            # letter only in words of 6+ ("sejak" is not "sesak", "lepas" is not "lemas").
            close = sorted(
                c
                for c in candidates
                if _within_one(tok, c)
                and (len(c) != len(tok) or len(c) >= 6 or _swapped(tok, c))
                and (len(tok) >= _FUZZY_MIN or (c[0] == tok[0] and c[-1] == tok[-1]))
            )
            if len(close) == 1:
                return (close[0],)
            if close:
                # Two keywords equally close: prefer the one sharing the first and last letter.
                same_ends = [c for c in close if c[0] == tok[0] and c[-1] == tok[-1]]
                if len(same_ends) == 1:
                    return (same_ends[0],)
        if len(tok) >= 3 and not _VOWELS.intersection(tok):
            hit = self._skeletons.get(tok)
            if hit is not None:
                return (hit,)
        return (tok,)

    def tokens(self, text: str) -> list[str]:
        """The canonical words of ``text``: normalised, shorthand expanded, typos corrected."""
        return self._tokens_and_clauses(text)[0]

    def _tokens_and_clauses(self, text: str) -> tuple[list[str], list[int]]:
        """The canonical words, and for each the number of the clause (between punctuation) it is in."""
        out: list[str] = []
        clauses: list[int] = []
        for clause, part in enumerate(_CLAUSE_RE.split(text[:_MAX_TEXT])):
            for tok in _raw_tokens(part):
                for word in self._canon_word(tok):
                    if not out or out[-1] != word or word.isdigit():  # "luka-luka", "tolong tolong"
                        out.append(word)
                        clauses.append(clause)
        return out, clauses

    def classify(self, text: str) -> Classification:
        """Classify one report text.  Never raises for any string; unknown text is ``lainnya``."""
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        canned = self._canned.get(_canned_key(text))
        if canned is not None:
            return self._result(canned, Casualties(), [], canned=True)
        if _DETECTED_RE.match(text):
            return self._result("sos", Casualties(), [], canned=True)
        toks, clauses = self._tokens_and_clauses(text)
        scores = self._score(toks, clauses)
        category = self._decide(scores)
        casualties = self._casualties(toks, clauses)
        if category == "aman" and casualties.missing:
            # "tiga nelayan hilang, dua sudah pulang": while anyone is still missing the search goes on
            category = "sar"
        return self._result(category, casualties, toks, canned=False)

    def _match(
        self,
        index: Mapping[str, list[tuple[tuple[str, ...], tuple[tuple[str, float], ...]]]],
        toks: Sequence[str],
        i: int,
    ) -> tuple[tuple[tuple[str, ...], tuple[tuple[str, float], ...]], int] | None:
        """The longest phrase of ``index`` starting at ``toks[i]`` and the index after it, or None."""
        for entry in index.get(toks[i], ()):
            end = self._phrase_end(entry[0], toks, i)
            if end:
                return entry, end
        return None

    def _phrase_end(self, phrase: tuple[str, ...], toks: Sequence[str], i: int) -> int:
        """Where ``phrase`` ends when it starts at ``toks[i]`` (0 when it does not match there).

        Aspect words may sit inside a phrase ("air sudah masuk rumah" is "air masuk rumah"), and ``*``
        stands for one or two words ("sungai Benenain naik", "tanah di kampung turun").
        """
        n = len(toks)
        if len(phrase) == 1:
            return i + 1
        j = i + 1
        skipped = 0
        for k in range(1, len(phrase)):
            word = phrase[k]
            while j < n and toks[j] != word and word != _ANY and toks[j] in self._fillers:
                if skipped == _MAX_FILLERS:
                    return 0
                skipped += 1
                j += 1
            if j >= n:
                return 0
            # "*" never stands for a negation: "jalan tidak rusak" is not "jalan * rusak"
            if toks[j] != word and (word != _ANY or toks[j] in self._negations or toks[j] in self._wild_stop):
                return 0
            j += 1
            if word == _ANY and j < n and toks[j] != phrase[k + 1]:
                # a second word when the next one is neither the phrase's next word nor an aspect word
                # (which the next step skips): only then can a two-word "*" be the one that matches
                if toks[j] in self._fillers or toks[j] in self._negations or toks[j] in self._wild_stop:
                    continue
                j += 1
        return j

    def _score(self, toks: Sequence[str], clauses: Sequence[int]) -> dict[str, float]:
        scores: dict[str, float] = {}
        strong: set[str] = set()
        primary: set[str] = set()
        plain_strong: set[str] = set()  # categories with a strong hit that is not a primary phrase
        last_strong: dict[str, int] = {}  # category -> position of its last strong hit
        cleared: set[str] = set()  # hazards named by an all-clear of that hazard alone
        general_clear = False  # an all-clear of everything ("aman", "selesai", "batal")
        negated_until = -1
        drilled = -1  # where the keyword a drill word is about starts
        risked = -1  # where the keyword a warning word is about starts
        # "sdh 2 motor jatuh minggu ini" cites past events to make a point about something else (the
        # road): in a clause with such a time span every keyword counts as a weak one
        past = {clauses[k] for k in range(len(toks)) if self._match(self._history, toks, k) is not None}
        subjects = self._clause_subjects(toks, clauses) if self._said_of and toks else []
        # "kambing hilang": the goat is what went missing, not an animal danger, so the subject noun
        # of a said_of hit is no keyword of its own
        nouns_said_of = {
            subjects[clauses[k]][1]
            for k in range(len(toks))
            if subjects and self._said_of_hit(toks, k, subjects[clauses[k]][0]) is not None
        }
        # the last clause, when it is an all-clear word alone ("anjing rabies su ditangkap, aman"),
        # clears the whole message: the officer's final word on it
        tail = len(toks)
        while tail > 0 and clauses[tail - 1] == clauses[-1]:
            tail -= 1
        i = 0
        while i < len(toks):
            tok = toks[i]
            drill = self._match(self._drills, toks, i)
            if drill is not None:
                # "simulasi gempa", "latihan evakuasi": the hazard right after a drill word is not happening
                drilled = self._next_word(toks, clauses, drill[1])
            risk = self._match(self._risks, toks, i)
            if risk is not None:
                risked = self._next_word(toks, clauses, risk[1])
            if (i == 0 or clauses[i - 1] != clauses[i]) and (after := self._match(self._after, toks, i)) is not None:
                # "abis angin ribut, ada org jarah toko": a hazard opening the message as what came
                # before is the background of the need that follows, so it counts as a weak word
                risked = self._next_word(toks, clauses, after[1])
            found = self._match(self._keywords, toks, i)
            said = self._said_of_hit(toks, i, subjects[clauses[i]][0]) if subjects else None
            if said is not None and (found is None or said[1] >= found[1]):
                # "sawah ... tenggelam" is a flood, "kambing ... hilang" a lost goat, not a drowned or
                # missing person: the clause's subject decides what the word means
                # (no phrase key: a said_of hit is neither a hazard's all-clear nor a primary need)
                found = (((), ((said[0], _WEIGHTS["keywords"]),)), said[1])
            if found is not None and i in nouns_said_of and found[1] == i + 1:
                found = None
            if found is None:
                if tok in self._negations:
                    # "tidak ada korban", "belum aman": the next keyword (after an optional "ada") is void
                    negated_until = i + (3 if i + 1 < len(toks) and toks[i + 1] == "ada" else 2)
                # "pukul 3" is a time of day, "jam 3" too: only their keyword use counts
                i += 1
                continue
            (phrase, cats), end = found
            timed = tok in self._skip_after and i + 1 < len(toks) and toks[i + 1].isdigit()
            if i >= negated_until and not timed and i != drilled:
                for cat, weight in cats:
                    if clauses[i] in past or i == risked:
                        weight = min(weight, _WEIGHTS["weak"])
                    if (
                        cat == "aman"
                        and 0 < tail <= i
                        and all(t in self._fillers for t in toks[tail:i])
                        and all(t in self._fillers for t in toks[end:])
                    ):
                        weight = _STRONG
                    scores[cat] = scores.get(cat, 0.0) + weight
                    if cat == "aman":
                        if phrase in self._clears:
                            cleared |= self._clears[phrase]
                        else:
                            general_clear = True
                    if weight >= _STRONG:
                        strong.add(cat)
                        last_strong[cat] = i
                        if cat in self._primary.get(phrase, ()):
                            primary.add(cat)
                        else:
                            plain_strong.add(cat)
            i = end
        for cat in list(primary):
            # "longsor, 3 meninggal, 1 masih hilang": someone missing in a named hazard is that hazard's
            # consequence, unless the category names its own cause too ("terseret arus", "perahu terbalik")
            info = self._info[cat]
            named = any(other != cat and other not in info.outranks for other in strong)
            if info.primary_yields and cat not in plain_strong and named:
                primary.discard(cat)
        if "aman" in strong and not general_clear:
            # Only some hazards were cleared ("api kecil sdh padam, listrik mati sekampung"): a hazard
            # the message names strongly and did not clear, or names again after its all-clear
            # ("1 sdh ditemukan, 1 blm ketemu"), is still on; the cleared ones are over.
            done = last_strong["aman"]
            remaining = {cat for cat in strong if cat != "aman" and (cat not in cleared or last_strong[cat] > done)}
            if remaining:
                strong.discard("aman")
                scores.pop("aman", None)
                for cat in cleared - remaining:
                    scores.pop(cat, None)
                    strong.discard(cat)
        for cat in strong:
            info = self._info[cat]
            for other in info.outranks:
                # two strong categories that outrank each other are left to their scores, and so is
                # a primary need (a birth, a search) against the hazard around it, but not an all-clear
                if (
                    other != cat
                    and (other not in strong or cat not in self._info[other].outranks)
                    and (other not in primary or info.final)
                ):
                    scores.pop(other, None)
        for cat in primary:
            if cat in scores:
                scores[cat] += _PRIMARY_EDGE
        return scores

    def _clause_subjects(self, toks: Sequence[str], clauses: Sequence[int]) -> list[tuple[str | None, int]]:
        """The subject class of each clause: that of its nouns ("sawah", "kambing", "badan"), or None
        when nouns of two classes compete.  A noun right after another noun, or two words after it with
        no event word between, is its owner or its kind ("kambing bpk lukas", "kebun jagung warga");
        one within two words after a preposition is a place ("di belakang rumah"), and so are the
        nouns chained to it ("di pinggir kebun kopi bapak Yosef"): none of them is a subject.  A
        clause without a noun of its own goes on about the subject of the clause before it ("sapi
        lepas, su cari 2 hari").  Each clause gets (class, position of its first subject noun)."""
        count = clauses[-1] + 1
        found: list[set[str]] = [set() for _ in range(count)]
        first: list[int] = [-1] * count
        modifier_until = -1  # nouns up to here belong to a place or an owner
        for k, tok in enumerate(toks):
            if tok in self._prepositions:
                modifier_until = k + 2
                continue
            name = self._subject_of.get(tok)
            if name is None:
                continue
            same = k > 0 and clauses[k - 1] == clauses[k]
            owner = same and (
                toks[k - 1] in self._subject_of
                or (
                    k > 1
                    and clauses[k - 2] == clauses[k]
                    and toks[k - 2] in self._subject_of
                    and not self._event_word(toks, k - 1)
                )
            )
            if owner or (k <= modifier_until and same):
                modifier_until = k + 2
                continue
            found[clauses[k]].add(name)
            if first[clauses[k]] < 0:
                first[clauses[k]] = k
        out: list[tuple[str | None, int]] = []
        current: tuple[str | None, int] = (None, -1)
        for names, at in zip(found, first, strict=True):
            if names:
                current = (next(iter(names)) if len(names) == 1 else None, at)
            out.append(current)
        return out

    def _event_word(self, toks: Sequence[str], k: int) -> bool:
        """Whether ``toks[k]`` starts a keyword, casualty or hurt-verb phrase (a verb, not a noun)."""
        return any(
            self._match(index, toks, k) is not None
            for index in (self._keywords, self._casualty, self._hurt_verbs, self._said_of_index)
        )

    def _said_of_hit(self, toks: Sequence[str], i: int, subject: str | None) -> tuple[str, int] | None:
        """(category, end) when a said_of phrase starts at ``toks[i]`` and is said of its clause's subject."""
        if subject is None:
            return None
        hit = self._match(self._said_of_index, toks, i)
        if hit is None:
            return None
        for name, cat in self._said_of[hit[0][0]]:
            if name == subject:
                return cat, hit[1]
        return None

    def _next_word(self, toks: Sequence[str], clauses: Sequence[int], k: int) -> int:
        """The first word from ``toks[k]`` on that is not an aspect word, if in the clause of ``toks[k-1]``."""
        start = k
        while k < len(toks) and toks[k] in self._fillers:
            k += 1
        return k if k < len(toks) and clauses[k] == clauses[start - 1] else -1

    def _decide(self, scores: Mapping[str, float]) -> str:
        best = [(score, -self._order[cat], cat) for cat, score in scores.items() if score > 0]
        if not best:
            return "lainnya"
        return max(best)[2]

    def _casualties(self, toks: Sequence[str], clauses: Sequence[int]) -> Casualties:
        # (position of number, kind, value, only "korban", a new total of an earlier count, found dead)
        found: list[tuple[int, str, int, bool, bool, bool]] = []
        used_keywords: set[int] = set()
        # (position of number, value, a person word counted, index after the count and its units)
        pending: list[tuple[int, int, bool, int]] = []
        # counts whose state is part of a group counted before ("9 anak sakit, 2 dirawat")
        subset: set[int] = set()
        i = 0
        n = len(toks)
        while i < n:
            start = i
            value, i = self._number_at(toks, i)
            if i == start:
                i += 1
                continue
            if start > 0 and toks[start - 1] in self._skip_after:
                continue
            if i < n and self._match(self._other_units, toks, i) is not None:
                continue  # "2 rumah", "40 KK" (households), "1 pick up": not a count of people
            if self._counts_thing_before(toks, clauses, start, i):
                continue  # "rumah dibakar 2, ada yg luka": the 2 are houses
            j = i
            saw_unit = False
            saw_korban = False
            kind = None
            found_dead = False
            limit = min(n, i + _WINDOW)
            while j < limit:
                cas = self._match(self._casualty, toks, j)
                if cas is not None and cas[0][0] in self._person_only and self._about_thing(toks, j, cas[1]):
                    j = cas[1]  # "2 sapi mati": the count is of cattle
                    continue
                # "1 korban kritis": "korban" alone says nothing of the state when one follows
                if cas is not None and cas[0][0] != ("korban",):
                    kind, end = self._gravest_state(toks, j, used_keywords)
                    found_dead = kind == "dead" and any(t in self._found_words for t in toks[j:end])
                    if self._any_in(self._subset, toks, j, end):
                        subset.add(start)
                    break
                unit = self._match(self._person_units, toks, j)
                if unit is not None:
                    saw_unit = True
                    saw_korban = saw_korban or toks[j] == "korban"
                    j = unit[1]
                    continue
                if self._number_at(toks, j)[1] != j:
                    break
                j += 1
            generic = kind is None and saw_korban
            if generic:
                kind = "affected"
            if kind is not None:
                if value is not None:
                    found.append((start, kind, value, generic, False, found_dead))
            elif saw_unit or i == start + 1:
                after = i
                while after < n and (unit := self._match(self._person_units, toks, after)) is not None:
                    after = unit[1]
                person = any(t in self._people for t in toks[i:after])
                pending.append((start, -1 if value is None else value, person, after))
        # "korban meninggal 2 orang", "luka-luka 2 org": the casualty word before the number; and
        # "anjing gigit 2 anak": a hurt verb before the number (after it, the number counts attackers);
        # aspect words may sit between ("gigitan anjing lagi, sudah 4 org"), and so may an update
        # ("keracunan su jadi 18 org": the new total).
        missing_named: bool | None = None
        bare: list[tuple[int, int]] = []  # "..., 8 org, ...": a count standing alone in its clause
        for pos, value, person, after in pending:
            linked = False
            for back in range(pos - 1, pos - 7, -1):
                if back < 0:
                    break
                cas = self._match(self._casualty, toks, back) or self._match(self._hurt_verbs, toks, back)
                if cas is None:
                    continue
                # an update may restate a state already counted ("3 org keracunan, su jadi 7 org")
                update = self._is_update(toks[cas[1] : pos])
                if back in used_keywords and not update:
                    continue
                if not (cas[1] >= pos - 1 or all(t in self._fillers for t in toks[cas[1] : pos]) or update):
                    continue
                if cas[0][0] in self._person_only and (
                    self._about_thing(toks, back, cas[1]) or not (person or self._person_before(toks, back))
                ):
                    continue  # "listrik mati satu kampung" is no death
                used_keywords.add(back)
                if value >= 0:
                    kind = cas[0][1][0][0]
                    found_dead = kind == "dead" and any(t in self._found_words for t in toks[back : cas[1]])
                    found.append((pos, kind, value, cas[0][0] == ("korban",), update, found_dead))
                    if self._any_in(self._subset, toks, back, cas[1]):
                        subset.add(pos)
                linked = True
                break
            if not linked and person and value >= 0:
                # "dua org ibu dan anak tertimbun", "11 org termasuk balita butuh evakuasi": the one state
                # word further on in the count's own clause
                state = self._clause_state(toks, clauses, pos, after, used_keywords)
                if state is not None:
                    found.append((pos, state[0], value, False, False, False))
                    used_keywords.add(state[1])
                    if self._any_in(self._subset, toks, state[1], state[1] + 1):
                        subset.add(pos)
                    linked = True
                elif self._bare_count(toks, clauses, pos):
                    bare.append((pos, value))
                    continue
            if not linked and person and value >= 0 and after < n and self._match(self._aboard, toks, after):
                # "perahu blm pulang 2 hari, 3 org di atas": the people aboard are as missing as the boat
                if missing_named is None:
                    missing_named = self._names_missing(toks)
                if missing_named:
                    found.append((pos, "missing", value, False, False, False))
        if bare:
            # "anak2 pingsan waktu upacara, 8 org, panas sekali": with one state word in the whole
            # message, not taken by a count of its own, a count standing alone is of that state
            states = [k for k in range(n) if self._state_at(toks, k) is not None]
            if len(states) == 1 and states[0] not in used_keywords:
                state = self._state_at(toks, states[0])
                assert state is not None
                found += [(pos, state[0], value, False, False, False) for pos, value in bare]
        found.sort()
        if found:
            # "tertimbun 2 org ibu, su dikeluarkan tp meninggal": a graver state said later, in clauses
            # with no count and no person of their own, is what became of the people counted last
            pos, kind, value, generic, update, found_dead = found[-1]
            became = self._later_state(toks, clauses, pos, used_keywords)
            if became is not None and _GRAVITY.index(became) > _GRAVITY.index(kind):
                found[-1] = (pos, became, value, generic, update, found_dead)
        counts: dict[str, int] = {}
        for k, (pos, kind, value, generic, update, _found) in enumerate(found):
            if pos in subset and any(e[1] == kind and e[2] >= value for e in found[:k] if e[0] not in subset):
                continue  # "9 anak sakit, 2 dirawat di pkm": the 2 treated are among the 9
            # "anak 2 org tenggelam, 1 ditemukan meninggal, 1 blm ketemu": a total followed by its
            # breakdown is counted once, in the breakdown
            later = found[k + 1 :]
            if len(later) >= 2 and sum(e[2] for e in later) == value and (generic or kind in {e[1] for e in later}):
                continue
            if kind == "missing" and not any(e[1] == "missing" for e in later):
                # "tiga nelayan hilang, dua sudah pulang": those back, or found dead, are no longer missing
                value -= min(value, sum(e[2] for e in later if e[1] == _SAFE or e[5]))
                if not value:
                    continue
            if kind == _SAFE:
                continue
            if update and generic and len(counts) == 1:
                # "4 org luka, korban bertambah jadi 6": the victims of the one state counted so far
                kind = next(iter(counts))
            # "3 org keracunan ... su jadi 18 org": a new total replaces the count it updates
            counts[kind] = value if update else counts.get(kind, 0) + value
        return Casualties(**{k: min(v, 100_000) for k, v in counts.items()})

    def _later_state(self, toks: Sequence[str], clauses: Sequence[int], pos: int, used: set[int]) -> str | None:
        """The gravest state said after the clause of the count at ``pos`` in clauses that have no
        count and name no person (up to the first that does), not taken by a count."""
        gravest: str | None = None
        k = pos
        while k < len(toks) and clauses[k] == clauses[pos]:
            k += 1
        while k < len(toks):
            clause = clauses[k]
            end = k
            while end < len(toks) and clauses[end] == clause:
                end += 1
            if any(self._number_at(toks, m)[1] != m or toks[m] in self._people for m in range(k, end)):
                break  # the clause is about people of its own
            for m in range(k, end):
                state = self._state_at(toks, m) if m not in used else None
                if state is not None and (gravest is None or _GRAVITY.index(state[0]) > _GRAVITY.index(gravest)):
                    gravest = state[0]
            k = end
        return gravest

    def _counts_thing_before(self, toks: Sequence[str], clauses: Sequence[int], start: int, after: int) -> bool:
        """Whether the count at ``toks[start:after]`` follows "<thing> <verb>" in its clause ("rumah dibakar
        2"), with no person unit after it: then it counts the thing."""
        if start < 2 or clauses[start - 2] != clauses[start]:
            return False
        noun, verb = toks[start - 2], toks[start - 1]
        if noun not in self._things and self._match(self._other_units, toks, start - 2) is None:
            return False
        if verb in self._subject_of or verb in self._fillers or self._number_at(toks, start - 1)[1] != start - 1:
            return False
        if self._match(self._casualty, toks, start - 1) or self._match(self._hurt_verbs, toks, start - 1):
            return False
        return after >= len(toks) or self._match(self._person_units, toks, after) is None

    def _any_in(
        self,
        index: Mapping[str, list[tuple[tuple[str, ...], tuple[tuple[str, float], ...]]]],
        toks: Sequence[str],
        start: int,
        end: int,
    ) -> bool:
        return any(self._match(index, toks, k) is not None for k in range(start, min(end, len(toks))))

    def _state_at(self, toks: Sequence[str], k: int) -> tuple[str, int] | None:
        """The casualty state said of people at ``toks[k]`` (the gravest of a run), and where it ends."""
        cas = self._match(self._casualty, toks, k)
        if cas is None or cas[0][0] == ("korban",):
            return None
        if k > 0 and (
            toks[k - 1] in self._negations or (k > 1 and toks[k - 1] == "ada" and toks[k - 2] in self._negations)
        ):
            return None
        if cas[0][0] in self._person_only and (self._about_thing(toks, k, cas[1]) or not self._person_before(toks, k)):
            return None
        if k > 0 and self._match(self._casualty, toks, k - 1) is not None:
            return None  # inside a run ("tertimbun blm ditemukan") that starts earlier
        return self._gravest_state(toks, k, set())

    def _clause_state(
        self, toks: Sequence[str], clauses: Sequence[int], pos: int, after: int, used: set[int]
    ) -> tuple[str, int] | None:
        """The one state word after the count at ``pos`` (its units end at ``after``) in the count's
        clause, not taken by another count: (kind, index)."""
        clause = clauses[pos]
        hit: tuple[str, int] | None = None
        k = after
        words = 0
        while k < len(toks) and clauses[k] == clause and words <= _CLAUSE_WINDOW:
            end = self._number_at(toks, k)[1]
            if end != k:
                if end < len(toks) and self._match(self._other_units, toks, end) is not None:
                    words += 1  # "11 jiwa dari 3 KK mengungsi": a count of households is about them
                    k = end
                    continue
                break  # the next count of people has states of its own
            state = self._state_at(toks, k)
            if state is not None:
                if hit is not None or k in used:
                    return None  # two states, or one taken: not ours to guess
                hit = (state[0], k)
                k = state[1]
                continue
            unit = self._match(self._person_units, toks, k)
            if unit is not None and toks[k] in self._people:
                k = unit[1]  # "ibu dan anak": more about who, not a word of distance
                continue
            words += 1
            k += 1
        return hit

    def _bare_count(self, toks: Sequence[str], clauses: Sequence[int], pos: int) -> bool:
        """Whether the count at ``pos`` is alone in its clause but for person words ("8 org")."""
        clause = clauses[pos]
        k = pos - 1
        while k >= 0 and clauses[k] == clause:
            if toks[k] not in self._count_words and toks[k] not in self._fillers:
                return False
            k -= 1
        k = self._number_at(toks, pos)[1]
        while k < len(toks) and clauses[k] == clause:
            unit = self._match(self._person_units, toks, k)
            if unit is None:
                if toks[k] not in self._count_words:
                    return False
                k += 1
            else:
                k = unit[1]
        return True

    def _about_thing(self, toks: Sequence[str], start: int, end: int) -> bool:
        """Whether the state word at ``toks[start:end]`` is said of a thing or an animal ("lampu mati")."""
        if end < len(toks) and toks[end] in self._things:
            return True
        k = start - 1
        while k >= 0 and toks[k] in self._fillers:
            k -= 1
        return k >= 0 and toks[k] in self._things

    def _person_before(self, toks: Sequence[str], start: int) -> bool:
        k = start - 1
        while k >= 0 and toks[k] in self._fillers:
            k -= 1
        return k >= 0 and toks[k] in self._people

    def _is_update(self, between: Sequence[str]) -> bool:
        """Whether ``between`` is aspect words around an update word ("sudah jadi", "bertambah jadi")."""
        k = 0
        seen = False
        while k < len(between):
            hit = self._match(self._update_words, between, k)
            if hit is not None:
                seen = True
                k = hit[1]
            elif between[k] in self._fillers:
                k += 1
            else:
                return False
        return seen

    def _names_missing(self, toks: Sequence[str]) -> bool:
        """Whether the message says someone or something is missing ("belum pulang", "hilang")."""
        for k in range(len(toks)):
            cas = self._match(self._casualty, toks, k)
            if cas is not None and cas[0][1][0][0] == "missing" and (k == 0 or toks[k - 1] not in self._negations):
                return True
        return False

    def _gravest_state(self, toks: Sequence[str], j: int, used: set[int]) -> tuple[str, int]:
        """The casualty state at ``toks[j]``, or a graver one right after it ("tertimbun blm ditemukan"),
        and the index after the state words."""
        kind = ""
        while j < len(toks):
            cas = self._match(self._casualty, toks, j)
            if cas is None:
                break
            used.add(j)
            state = cas[0][1][0][0]
            if not kind or _GRAVITY.index(state) > _GRAVITY.index(kind):
                kind = state
            j = cas[1]
        return kind, j

    def _number_at(self, toks: Sequence[str], i: int) -> tuple[int | None, int]:
        """Parse a number starting at ``toks[i]``: (value or None when vague, index after it)."""
        tok = toks[i]
        if tok.isdigit():
            return (int(tok) if len(tok) <= 6 else None), i + 1
        if tok in self._vague:
            return None, i + 1
        total = current = 0
        j = i
        while j < len(toks):
            word = toks[j]
            if word in self._numbers and not (
                word == "se" and j + 1 < len(toks) and toks[j + 1] not in self._multipliers
            ):
                value = self._numbers[word]
                if value >= 10:
                    total += value
                else:
                    current += value
            elif word == "belas" and j > i:
                total += current + 10
                current = 0
            elif word in self._multipliers and j > i:
                factor = self._multipliers[word]
                if factor >= 1000:
                    total = (total + (current or 1)) * factor
                else:
                    total += (current or 1) * factor
                current = 0
            else:
                break
            j += 1
        if j == i:
            return None, i
        return total + current, j

    def _result(self, category: str, casualties: Casualties, toks: Sequence[str], canned: bool) -> Classification:
        info = self._info[category]
        urgency, severity, certainty = info.urgency, info.severity, info.certainty
        if category not in ("aman", "lainnya"):
            rank = _SEVERITY_ORDER.index(severity) if severity in _SEVERITY_ORDER else 0
            if casualties.dead:
                rank = max(rank, 4)
            elif casualties.missing or (casualties.injured or 0) >= 3 or (casualties.affected or 0) >= 10:
                rank = max(rank, 3)
            elif casualties.injured or casualties.affected:
                rank = max(rank, 2)
            if rank < 3 and self._any_phrase(self._intensifiers, toks):
                rank += 1
            severity = _SEVERITY_ORDER[max(rank, 1)]
            if self._any_phrase(self._hedges, toks) and certainty == "Observed":
                certainty = "Likely"
            if urgency == "Immediate" and self._any_phrase(self._expected, toks):
                urgency = "Expected"
        return Classification(
            category=category,
            urgency=urgency,
            severity=severity,
            certainty=certainty,
            casualties=casualties,
            event=info.event,
            canned=canned,
        )

    def _any_phrase(
        self,
        index: Mapping[str, list[tuple[tuple[str, ...], tuple[tuple[str, float], ...]]]],
        toks: Sequence[str],
    ) -> bool:
        return any(self._match(index, toks, i) is not None for i in range(len(toks)))


@functools.cache
def default_classifier() -> Classifier:
    """The classifier on the packaged keywords only (cached; build your own to add regency files)."""
    return Classifier.load()


def classify(text: str) -> Classification:
    """Classify with the packaged keywords: a shortcut for ``default_classifier().classify(text)``."""
    return default_classifier().classify(text)
