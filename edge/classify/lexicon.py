"""The compiled lexicon: every word list of :class:`LexiconData` as dict lookups, the word resolver
(shorthand, suffixes, Kupang Malay prefixes, typos) and the phrase matcher the scoring and the
casualty counting share.

Built once per classifier; immutable afterwards but for a bounded cache of resolved words, so one
lexicon may serve several threads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from edge.classify.lexicon_files import PEOPLE, STRONG, CategoryInfo, LexiconData
from edge.classify.text import (
    ANY,
    CLAUSE_RE,
    MAX_TEXT,
    VOWELS,
    deletes,
    raw_tokens,
    skeleton,
    squash,
    swapped,
    within_one,
)
from siaga.report import CATEGORIES

#: At most this many filler words ("sudah", "mulai") may sit between the words of a phrase.
_MAX_FILLERS = 2
#: Kupang Malay says "ta-" for "ter-": "tabakar" is "terbakar", "tajepit" is "terjepit",
#: and "ba-" for "ber-": "bagerak" is "bergerak".
_DIALECT_PREFIXES = (("ta", "ter"), ("ba", "ber"))
_FUZZY_MIN = 5
_CACHE_MAX = 20_000


class Tag(NamedTuple):
    """What a phrase stands for in its index: a category and its weight, or a casualty kind."""

    label: str
    weight: float


class Entry(NamedTuple):
    """A phrase of an index (canonical words, ``*`` for any one or two words) and its tags."""

    phrase: tuple[str, ...]
    tags: tuple[Tag, ...]


class Match(NamedTuple):
    """A phrase found at some position, and the index after its last word."""

    entry: Entry
    end: int


#: first word -> the phrases starting with it, longest first
PhraseIndex = dict[str, list[Entry]]


def _phrase_order(entry: Entry) -> tuple[int, bool]:
    """Longest phrase first, counting its fixed words; of two equally long, the one without "*": "jalan
    rusak berat berlubang" is "jalan rusak" and "berlubang", not "jalan * berlubang" swallowing "rusak"."""
    return -sum(1 for t in entry.phrase if t != ANY), ANY in entry.phrase


class Lexicon:
    """The compiled word lists, the word resolver and the phrase matcher."""

    def __init__(self, data: LexiconData) -> None:
        self.info = {cat: data.categories.get(cat) or CategoryInfo(cat, "Unknown", "Unknown") for cat in CATEGORIES}
        self.order = {cat: i for i, cat in enumerate(CATEGORIES)}
        self.canned = dict(data.canned)
        self.synonyms: dict[str, tuple[str, ...]] = {}
        for word, meaning in data.synonyms.items():
            self.synonyms[raw_tokens(word)[0]] = tuple(raw_tokens(meaning))
        self.numbers = {raw_tokens(w)[0]: v for w, v in data.number_words.items()}
        self.multipliers = {raw_tokens(w)[0]: v for w, v in data.multipliers.items()}
        self.vague = {self.canon_phrase(w)[0] for w in data.vague}
        self.negations = {self.canon_phrase(w)[0] for w in data.words["negations"]}
        self.hedges = self.phrase_set(data.words["hedges"])
        self.intensifiers = self.phrase_set(data.words["intensifiers"])
        self.expected = self.phrase_set(data.words["expected"])
        self.skip_after = {self.canon_phrase(w)[0] for w in data.skip_after}
        self.fillers = {self.canon_phrase(w)[0] for w in data.words["fillers"]}
        self.person_units = self.phrase_index((w, "unit", 0.0) for w in data.person_units)
        self.other_units = self.phrase_set(data.other_units)
        self.count_words = {self.canon_phrase(w)[0] for w in data.count_words}
        self.drills = self.phrase_set(data.words["drills"])
        self.risks = self.phrase_set(data.words["risks"])
        self.history = self.phrase_set(data.words["history"])
        self.people = {self.canon_phrase(w)[0] for w in data.people}
        self.person_only = {self.canon_phrase(w) for w in data.person_only}
        self.things = {self.canon_phrase(w)[0] for w in data.things}
        self.update_words = self.phrase_set(data.update_words)
        self.aboard = self.phrase_set(data.aboard)
        self.found_words = {t for w in data.found_words for t in self.canon_phrase(w)}
        self.subset = self.phrase_set(data.subset)
        self.after = self.phrase_set(data.words["after"])
        self.prepositions = {self.canon_phrase(w)[0] for w in data.words["prepositions"]}
        # noun -> subject class; people last, so that a regency's own class wins a shared word
        self.subject_of: dict[str, str] = {}
        for name, nouns in data.subjects.items():
            for noun in nouns:
                self.subject_of.setdefault(self.canon_phrase(noun)[0], name)
        for noun in self.people:
            self.subject_of.setdefault(noun, PEOPLE)
        # phrases whose meaning depends on what they are said of: phrase -> ((subject class, category), ...)
        said_of: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        for phrase, name, cat in data.said_of:
            said_of.setdefault(self.canon_phrase(phrase), []).append((name, cat))
        self.said_of = {toks: tuple(pairs) for toks, pairs in said_of.items()}
        self.said_of_index = self.phrase_set(phrase for phrase, _, _ in data.said_of)

        # keyword phrases: first token -> [(tokens, ((category, weight), ...))], longest first
        merged: dict[tuple[str, ...], dict[str, float]] = {}
        for phrase, cat, weight in data.keywords:
            toks = self.canon_phrase(phrase)
            slot = merged.setdefault(toks, {})
            slot[cat] = max(weight, slot.get(cat, 0.0))
        self.keywords: PhraseIndex = {}
        for toks, cats in merged.items():
            self.keywords.setdefault(toks[0], []).append(Entry(toks, tuple(Tag(c, w) for c, w in cats.items())))
        for entries in self.keywords.values():
            entries.sort(key=_phrase_order)
        # "*" never stands for a word that is a strong keyword on its own: "air banjir masuk" is a flood
        # named outright, not "air * masuk"
        self.wild_stop = {toks[0] for toks, cats in merged.items() if len(toks) == 1 and max(cats.values()) >= STRONG}
        self.casualty = self.phrase_index(
            (phrase, kind, 0.0) for kind, phrases in data.casualties.items() for phrase in phrases
        )
        self.hurt_verbs = self.phrase_index((w, "injured", 0.0) for w in data.hurt_verbs)
        self.primary: dict[tuple[str, ...], set[str]] = {}
        for phrase, cat in data.primary:
            self.primary.setdefault(self.canon_phrase(phrase), set()).add(cat)
        self.clears: dict[tuple[str, ...], set[str]] = {}
        for phrase, cat in data.clears:
            self.clears.setdefault(self.canon_phrase(phrase), set()).add(cat)

        # The vocabulary typos are corrected towards: words of keyword and casualty phrases.
        vocab: set[str] = set()
        for toks in merged:
            vocab.update(toks)
        for index in (self.casualty, self.hurt_verbs, self.said_of_index, self.subset):
            for entries in index.values():
                for toks, _ in entries:
                    vocab.update(toks)
        vocab.discard(ANY)
        self.known = (
            vocab
            | set(self.synonyms)
            | set(self.numbers)
            | set(self.multipliers)
            | self.vague
            | self.negations
            | {t for w in data.words["protect"] for t in raw_tokens(w)}
            | set(self.other_units)
            | self.count_words
            | {t for key in ("drills", "risks", "history") for w in data.words[key] for t in self.canon_phrase(w)}
            | self.skip_after
            | set(self.person_units)
            | set(self.subject_of)
            | self.prepositions
            | {t for w in data.words["after"] for t in self.canon_phrase(w)}
        )
        self.fuzzy: dict[str, list[str]] = {}
        skeletons: dict[str, set[str]] = {}
        for word in vocab:
            if len(word) >= _FUZZY_MIN and word.isalpha():
                for variant in {word} | deletes(word):
                    self.fuzzy.setdefault(variant, []).append(word)
            if len(word) >= 4 and word.isalpha():
                skeletons.setdefault(skeleton(word), set()).add(word)
        # A vowel-less token ("bnjr", "kbkrn") is taken for the one keyword with that consonant skeleton.
        self.skeletons = {sk: next(iter(ws)) for sk, ws in skeletons.items() if len(ws) == 1 and len(sk) >= 3}
        self._word_cache: dict[str, tuple[str, ...]] = {}

    # -- construction helpers -----------------------------------------------------------------
    def canon_phrase(self, phrase: str) -> tuple[str, ...]:
        out: list[str] = []
        parts = phrase.split(f" {ANY} ") if ANY in phrase else (phrase,)
        for k, part in enumerate(parts):
            if k:
                out.append(ANY)
            for tok in raw_tokens(part):
                out.extend(self.synonyms.get(tok, (tok,)))
        return tuple(out) or ("",)

    def phrase_set(self, phrases: Iterable[str]) -> PhraseIndex:
        return self.phrase_index((w, "x", 0.0) for w in phrases)

    def phrase_index(self, items: Iterable[tuple[str, str, float]]) -> PhraseIndex:
        index: PhraseIndex = {}
        for phrase, tag, weight in items:
            toks = self.canon_phrase(phrase)
            index.setdefault(toks[0], []).append(Entry(toks, (Tag(tag, weight),)))
        for entries in index.values():
            entries.sort(key=_phrase_order)
        return index

    # -- words -----------------------------------------------------------------------------------
    def canon_word(self, tok: str) -> tuple[str, ...]:
        cached = self._word_cache.get(tok)
        if cached is not None:
            return cached
        result = self.resolve(tok)
        if len(self._word_cache) < _CACHE_MAX:
            self._word_cache[tok] = result
        return result

    def resolve(self, tok: str) -> tuple[str, ...]:
        if tok in self.synonyms:
            return self.synonyms[tok]
        if tok in self.known or not tok.isalpha():
            return (tok,)
        for suffix in ("nya", "lah", "kah", "pun"):
            stem = tok[: -len(suffix)]
            if tok.endswith(suffix) and len(stem) >= 3 and stem in self.known:
                return (*self.resolve(stem), suffix) if suffix == "kah" else self.resolve(stem)
        for dialect, standard in _DIALECT_PREFIXES:
            # only onto a known word as it is: a typo guess on top of a dialect guess is too loose
            word = squash(standard + tok[len(dialect) :])
            if tok.startswith(dialect) and len(tok) >= 5 and word in self.known:
                return self.resolve(word)
        if len(tok) >= _FUZZY_MIN - 1:
            candidates: set[str] = set(self.fuzzy.get(tok, ()))
            if len(tok) >= _FUZZY_MIN:
                for variant in deletes(tok):
                    candidates.update(self.fuzzy.get(variant, ()))
            # A 4-letter token only as a 5+-letter keyword with an inner letter dropped ("gmpa", but
            # "saja" is not "sajam"); a wrong
            # letter only in words of 6+ ("sejak" is not "sesak", "lepas" is not "lemas").
            close = sorted(
                c
                for c in candidates
                if within_one(tok, c)
                and (len(c) != len(tok) or len(c) >= 6 or swapped(tok, c))
                and (len(tok) >= _FUZZY_MIN or (c[0] == tok[0] and c[-1] == tok[-1]))
            )
            if len(close) == 1:
                return (close[0],)
            if close:
                # Two keywords equally close: prefer the one sharing the first and last letter.
                same_ends = [c for c in close if c[0] == tok[0] and c[-1] == tok[-1]]
                if len(same_ends) == 1:
                    return (same_ends[0],)
        if len(tok) >= 3 and not VOWELS.intersection(tok):
            hit = self.skeletons.get(tok)
            if hit is not None:
                return (hit,)
        return (tok,)

    def tokens(self, text: str) -> list[str]:
        """The canonical words of ``text``: normalised, shorthand expanded, typos corrected."""
        return self.tokens_and_clauses(text)[0]

    def tokens_and_clauses(self, text: str) -> tuple[list[str], list[int]]:
        """The canonical words, and for each the number of the clause (between punctuation) it is in."""
        out: list[str] = []
        clauses: list[int] = []
        for clause, part in enumerate(CLAUSE_RE.split(text[:MAX_TEXT])):
            for tok in raw_tokens(part):
                for word in self.canon_word(tok):
                    if not out or out[-1] != word or word.isdigit():  # "luka-luka", "tolong tolong"
                        out.append(word)
                        clauses.append(clause)
        return out, clauses

    # -- phrases ---------------------------------------------------------------------------------
    def match(
        self,
        index: Mapping[str, list[Entry]],
        toks: Sequence[str],
        i: int,
    ) -> Match | None:
        """The longest phrase of ``index`` starting at ``toks[i]`` and the index after it, or None."""
        for entry in index.get(toks[i], ()):
            end = self.phrase_end(entry.phrase, toks, i)
            if end:
                return Match(entry, end)
        return None

    def phrase_end(self, phrase: tuple[str, ...], toks: Sequence[str], i: int) -> int:
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
            while j < n and toks[j] != word and word != ANY and toks[j] in self.fillers:
                if skipped == _MAX_FILLERS:
                    return 0
                skipped += 1
                j += 1
            if j >= n:
                return 0
            # "*" never stands for a negation: "jalan tidak rusak" is not "jalan * rusak"
            if toks[j] != word and (word != ANY or toks[j] in self.negations or toks[j] in self.wild_stop):
                return 0
            j += 1
            if word == ANY and j < n and toks[j] != phrase[k + 1]:
                # a second word when the next one is neither the phrase's next word nor an aspect word
                # (which the next step skips): only then can a two-word "*" be the one that matches
                if toks[j] in self.fillers or toks[j] in self.negations or toks[j] in self.wild_stop:
                    continue
                j += 1
        return j

    def any_in(
        self,
        index: Mapping[str, list[Entry]],
        toks: Sequence[str],
        start: int,
        end: int,
    ) -> bool:
        return any(self.match(index, toks, k) is not None for k in range(start, min(end, len(toks))))

    def any_phrase(
        self,
        index: Mapping[str, list[Entry]],
        toks: Sequence[str],
    ) -> bool:
        return any(self.match(index, toks, i) is not None for i in range(len(toks)))
