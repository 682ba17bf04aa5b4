"""Which category a report is: keyword phrases score their categories, in the light of what is around
them (negations, drills, warnings, past events, all-clears, the clause's subject), then the strongest
category wins (:func:`decide`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from edge.classify.lexicon import Entry, Lexicon, Match, Tag
from edge.classify.lexicon_files import STRONG, WEIGHTS

#: A primary need wins a tie with the hazard around it ("ibu melahirkan, jalan putus karena longsor").
_PRIMARY_EDGE = 0.5


class Subject(NamedTuple):
    """A clause's subject class (None when nouns of two classes compete) and where its noun is."""

    name: str | None
    at: int


class SaidOfHit(NamedTuple):
    category: str
    end: int


def score(lex: Lexicon, toks: Sequence[str], clauses: Sequence[int]) -> dict[str, float]:
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
    past = {clauses[k] for k in range(len(toks)) if lex.match(lex.history, toks, k) is not None}
    subjects = clause_subjects(lex, toks, clauses) if lex.said_of and toks else []
    # "kambing hilang": the goat is what went missing, not an animal danger, so the subject noun
    # of a said_of hit is no keyword of its own
    nouns_said_of = {
        subjects[clauses[k]].at
        for k in range(len(toks))
        if subjects and _said_of_hit(lex, toks, k, subjects[clauses[k]].name) is not None
    }
    # the last clause, when it is an all-clear word alone ("anjing rabies su ditangkap, aman"),
    # clears the whole message: the officer's final word on it
    tail = len(toks)
    while tail > 0 and clauses[tail - 1] == clauses[-1]:
        tail -= 1
    i = 0
    while i < len(toks):
        tok = toks[i]
        drill = lex.match(lex.drills, toks, i)
        if drill is not None:
            # "simulasi gempa", "latihan evakuasi": the hazard right after a drill word is not happening
            drilled = _next_word(lex, toks, clauses, drill.end)
        risk = lex.match(lex.risks, toks, i)
        if risk is not None:
            risked = _next_word(lex, toks, clauses, risk.end)
        if (i == 0 or clauses[i - 1] != clauses[i]) and (after := lex.match(lex.after, toks, i)) is not None:
            # "abis angin ribut, ada org jarah toko": a hazard opening the message as what came
            # before is the background of the need that follows, so it counts as a weak word
            risked = _next_word(lex, toks, clauses, after.end)
        found = lex.match(lex.keywords, toks, i)
        said = _said_of_hit(lex, toks, i, subjects[clauses[i]].name) if subjects else None
        if said is not None and (found is None or said.end >= found.end):
            # "sawah ... tenggelam" is a flood, "kambing ... hilang" a lost goat, not a drowned or
            # missing person: the clause's subject decides what the word means
            # (no phrase key: a said_of hit is neither a hazard's all-clear nor a primary need)
            found = Match(Entry((), (Tag(said.category, WEIGHTS["keywords"]),)), said.end)
        if found is not None and i in nouns_said_of and found.end == i + 1:
            found = None
        if found is None:
            if tok in lex.negations:
                # "tidak ada korban", "belum aman": the next keyword (after an optional "ada") is void
                negated_until = i + (3 if i + 1 < len(toks) and toks[i + 1] == "ada" else 2)
            # "pukul 3" is a time of day, "jam 3" too: only their keyword use counts
            i += 1
            continue
        (phrase, cats), end = found
        timed = tok in lex.skip_after and i + 1 < len(toks) and toks[i + 1].isdigit()
        if i >= negated_until and not timed and i != drilled:
            for cat, weight in cats:
                if clauses[i] in past or i == risked:
                    weight = min(weight, WEIGHTS["weak"])
                if (
                    cat == "aman"
                    and 0 < tail <= i
                    and all(t in lex.fillers for t in toks[tail:i])
                    and all(t in lex.fillers for t in toks[end:])
                ):
                    weight = STRONG
                scores[cat] = scores.get(cat, 0.0) + weight
                if cat == "aman":
                    if phrase in lex.clears:
                        cleared |= lex.clears[phrase]
                    else:
                        general_clear = True
                if weight >= STRONG:
                    strong.add(cat)
                    last_strong[cat] = i
                    if cat in lex.primary.get(phrase, ()):
                        primary.add(cat)
                    else:
                        plain_strong.add(cat)
        i = end
    for cat in list(primary):
        # "longsor, 3 meninggal, 1 masih hilang": someone missing in a named hazard is that hazard's
        # consequence, unless the category names its own cause too ("terseret arus", "perahu terbalik")
        info = lex.info[cat]
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
        info = lex.info[cat]
        for other in info.outranks:
            # two strong categories that outrank each other are left to their scores, and so is
            # a primary need (a birth, a search) against the hazard around it, but not an all-clear
            if (
                other != cat
                and (other not in strong or cat not in lex.info[other].outranks)
                and (other not in primary or info.final)
            ):
                scores.pop(other, None)
    for cat in primary:
        if cat in scores:
            scores[cat] += _PRIMARY_EDGE
    return scores


def clause_subjects(lex: Lexicon, toks: Sequence[str], clauses: Sequence[int]) -> list[Subject]:
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
        if tok in lex.prepositions:
            modifier_until = k + 2
            continue
        name = lex.subject_of.get(tok)
        if name is None:
            continue
        same = k > 0 and clauses[k - 1] == clauses[k]
        owner = same and (
            toks[k - 1] in lex.subject_of
            or (
                k > 1
                and clauses[k - 2] == clauses[k]
                and toks[k - 2] in lex.subject_of
                and not _event_word(lex, toks, k - 1)
            )
        )
        if owner or (k <= modifier_until and same):
            modifier_until = k + 2
            continue
        found[clauses[k]].add(name)
        if first[clauses[k]] < 0:
            first[clauses[k]] = k
    out: list[Subject] = []
    current = Subject(None, -1)
    for names, at in zip(found, first, strict=True):
        if names:
            current = Subject(next(iter(names)) if len(names) == 1 else None, at)
        out.append(current)
    return out


def _event_word(lex: Lexicon, toks: Sequence[str], k: int) -> bool:
    """Whether ``toks[k]`` starts a keyword, casualty or hurt-verb phrase (a verb, not a noun)."""
    return any(
        lex.match(index, toks, k) is not None
        for index in (lex.keywords, lex.casualty, lex.hurt_verbs, lex.said_of_index)
    )


def _said_of_hit(lex: Lexicon, toks: Sequence[str], i: int, subject: str | None) -> SaidOfHit | None:
    """(category, end) when a said_of phrase starts at ``toks[i]`` and is said of its clause's subject."""
    if subject is None:
        return None
    hit = lex.match(lex.said_of_index, toks, i)
    if hit is None:
        return None
    for name, cat in lex.said_of[hit.entry.phrase]:
        if name == subject:
            return SaidOfHit(cat, hit.end)
    return None


def _next_word(lex: Lexicon, toks: Sequence[str], clauses: Sequence[int], k: int) -> int:
    """The first word from ``toks[k]`` on that is not an aspect word, if in the clause of ``toks[k-1]``."""
    start = k
    while k < len(toks) and toks[k] in lex.fillers:
        k += 1
    return k if k < len(toks) and clauses[k] == clauses[start - 1] else -1


def decide(lex: Lexicon, scores: Mapping[str, float]) -> str:
    best = [(score, -lex.order[cat], cat) for cat, score in scores.items() if score > 0]
    if not best:
        return "lainnya"
    return max(best)[2]
