"""The classifier: one report text → :class:`Classification` (category, CAP urgency/severity/certainty,
casualties).  Canned handset texts and Detection Sensor messages are looked up; free text goes through
the lexicon (:mod:`edge.classify.lexicon`), the scoring (:mod:`edge.classify.scoring`) and the
casualty counting (:mod:`edge.classify.casualties`); this module turns the outcome into CAP terms.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.classify.casualties import count_casualties
from edge.classify.lexicon import Lexicon
from edge.classify.lexicon_files import LexiconData, load_lexicon
from edge.classify.scoring import decide, score
from edge.classify.text import canned_key
from siaga.report import Casualties

_SEVERITY_ORDER = ("Unknown", "Minor", "Moderate", "Severe", "Extreme")
#: Meshtastic's Detection Sensor module sends "<sensor name> detected" when its button/pin fires.
_DETECTED_RE = re.compile(r"^\s*\S.{0,47}?\s+detected\s*$", re.IGNORECASE | re.DOTALL)


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


class Classifier:
    """A compiled keyword classifier.  Build it with :meth:`load`; it is immutable and thread-safe."""

    def __init__(self, data: LexiconData) -> None:
        self._lex = Lexicon(data)

    @classmethod
    def load(cls, extra_paths: Sequence[Path] = ()) -> Classifier:
        """The packaged keyword file, then each regency extension file in order.

        Raises :class:`ConfigError` naming the file and key when a file is unreadable or invalid.
        """
        return cls(load_lexicon(extra_paths))

    def tokens(self, text: str) -> list[str]:
        """The canonical words of ``text``: normalised, shorthand expanded, typos corrected."""
        return self._lex.tokens_and_clauses(text)[0]

    def tokens_and_clauses(self, text: str) -> tuple[list[str], list[int]]:
        """The canonical words, and for each the number of the clause (between punctuation) it is in."""
        return self._lex.tokens_and_clauses(text)

    def classify(self, text: str) -> Classification:
        """Classify one report text.  Never raises for any string; unknown text is ``lainnya``."""
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        canned = self._lex.canned.get(canned_key(text))
        if canned is not None:
            return self._result(canned, Casualties(), [], canned=True)
        if _DETECTED_RE.match(text):
            return self._result("sos", Casualties(), [], canned=True)
        toks, clauses = self._lex.tokens_and_clauses(text)
        scores = score(self._lex, toks, clauses)
        category = decide(self._lex, scores)
        casualties = count_casualties(self._lex, toks, clauses)
        if category == "aman" and casualties.missing:
            # "tiga nelayan hilang, dua sudah pulang": while anyone is still missing the search goes on
            category = "sar"
        return self._result(category, casualties, toks, canned=False)

    def _result(self, category: str, casualties: Casualties, toks: Sequence[str], canned: bool) -> Classification:
        lex = self._lex
        info = lex.info[category]
        urgency, severity, certainty = info.urgency, info.severity, info.certainty
        if category not in ("aman", "lainnya"):
            rank = _SEVERITY_ORDER.index(severity) if severity in _SEVERITY_ORDER else 0
            if casualties.dead:
                rank = max(rank, 4)
            elif casualties.missing or (casualties.injured or 0) >= 3 or (casualties.affected or 0) >= 10:
                rank = max(rank, 3)
            elif casualties.injured or casualties.affected:
                rank = max(rank, 2)
            if rank < 3 and lex.any_phrase(lex.intensifiers, toks):
                rank += 1
            severity = _SEVERITY_ORDER[max(rank, 1)]
            if lex.any_phrase(lex.hedges, toks) and certainty == "Observed":
                certainty = "Likely"
            if urgency == "Immediate" and lex.any_phrase(lex.expected, toks):
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


@functools.cache
def default_classifier() -> Classifier:
    """The classifier on the packaged keywords only (cached; build your own to add regency files)."""
    return Classifier.load()


def classify(text: str) -> Classification:
    """Classify with the packaged keywords: a shortcut for ``default_classifier().classify(text)``."""
    return default_classifier().classify(text)
