"""How many people a report says are affected, injured, dead or missing.

A count ("2 org", "tiga puluh jiwa", "40 KK") is tied to the state word after it ("2 org luka"), before
it ("korban meninggal 2 orang"), or further on in its clause ("dua org ibu dan anak tertimbun"); counts
of things and households are no people.  Then the counts are reconciled: a total followed by its
breakdown counts once, an update replaces what it updates, those found are no longer missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from edge.classify.lexicon import Lexicon
from edge.classify.lexicon_files import SAFE
from siaga.report import Casualties

#: Casualty states from least to most grave: of two states named back to back the graver one counts.
_GRAVITY: tuple[str, ...] = (SAFE, "affected", "injured", "missing", "dead")
_WINDOW = 4
#: A count further from its state word than ``_WINDOW`` still takes it when both sit in one clause and
#: at most this many words (besides person words) lie between: "dua org ibu dan anak tertimbun".
_CLAUSE_WINDOW = 6


class Count(NamedTuple):
    """A count tied to a state."""

    pos: int  # where the number is
    kind: str  # a casualty kind, or SAFE
    value: int
    generic: bool  # only "korban" said what they are
    update: bool  # a new total of an earlier count
    found_dead: bool


class Pending(NamedTuple):
    """A count of people with no state after it (yet): its state may stand before it."""

    pos: int
    value: int  # -1 when vague ("beberapa")
    person: bool  # a person word was counted ("org", "anak")
    after: int  # the index after the count and its units


class Number(NamedTuple):
    value: int | None  # None when vague
    end: int


class State(NamedTuple):
    """A casualty state (the gravest of a run of state words) and the index after the run."""

    kind: str
    end: int


class StateWord(NamedTuple):
    kind: str
    at: int


def count_casualties(lex: Lexicon, toks: Sequence[str], clauses: Sequence[int]) -> Casualties:
    found: list[Count] = []
    used_keywords: set[int] = set()
    pending: list[Pending] = []
    # counts whose state is part of a group counted before ("9 anak sakit, 2 dirawat")
    subset: set[int] = set()
    i = 0
    n = len(toks)
    while i < n:
        start = i
        value, i = _number_at(lex, toks, i)
        if i == start:
            i += 1
            continue
        if start > 0 and toks[start - 1] in lex.skip_after:
            continue
        if i < n and lex.match(lex.other_units, toks, i) is not None:
            continue  # "2 rumah", "40 KK" (households), "1 pick up": not a count of people
        if _counts_thing_before(lex, toks, clauses, start, i):
            continue  # "rumah dibakar 2, ada yg luka": the 2 are houses
        j = i
        saw_unit = False
        saw_korban = False
        kind = None
        found_dead = False
        limit = min(n, i + _WINDOW)
        while j < limit:
            cas = lex.match(lex.casualty, toks, j)
            if cas is not None and cas.entry.phrase in lex.person_only and _about_thing(lex, toks, j, cas.end):
                j = cas.end  # "2 sapi mati": the count is of cattle
                continue
            # "1 korban kritis": "korban" alone says nothing of the state when one follows
            if cas is not None and cas.entry.phrase != ("korban",):
                kind, end = _gravest_state(lex, toks, j, used_keywords)
                found_dead = kind == "dead" and any(t in lex.found_words for t in toks[j:end])
                if lex.any_in(lex.subset, toks, j, end):
                    subset.add(start)
                break
            unit = lex.match(lex.person_units, toks, j)
            if unit is not None:
                saw_unit = True
                saw_korban = saw_korban or toks[j] == "korban"
                j = unit.end
                continue
            if _number_at(lex, toks, j).end != j:
                break
            j += 1
        generic = kind is None and saw_korban
        if generic:
            kind = "affected"
        if kind is not None:
            if value is not None:
                found.append(Count(start, kind, value, generic, False, found_dead))
        elif saw_unit or i == start + 1:
            after = i
            while after < n and (unit := lex.match(lex.person_units, toks, after)) is not None:
                after = unit.end
            person = any(t in lex.people for t in toks[i:after])
            pending.append(Pending(start, -1 if value is None else value, person, after))
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
            cas = lex.match(lex.casualty, toks, back) or lex.match(lex.hurt_verbs, toks, back)
            if cas is None:
                continue
            # an update may restate a state already counted ("3 org keracunan, su jadi 7 org")
            update = _is_update(lex, toks[cas.end : pos])
            if back in used_keywords and not update:
                continue
            if not (cas.end >= pos - 1 or all(t in lex.fillers for t in toks[cas.end : pos]) or update):
                continue
            if cas.entry.phrase in lex.person_only and (
                _about_thing(lex, toks, back, cas.end) or not (person or _person_before(lex, toks, back))
            ):
                continue  # "listrik mati satu kampung" is no death
            used_keywords.add(back)
            if value >= 0:
                kind = cas.entry.tags[0].label
                found_dead = kind == "dead" and any(t in lex.found_words for t in toks[back : cas.end])
                found.append(Count(pos, kind, value, cas.entry.phrase == ("korban",), update, found_dead))
                if lex.any_in(lex.subset, toks, back, cas.end):
                    subset.add(pos)
            linked = True
            break
        if not linked and person and value >= 0:
            # "dua org ibu dan anak tertimbun", "11 org termasuk balita butuh evakuasi": the one state
            # word further on in the count's own clause
            word = _clause_state(lex, toks, clauses, pos, after, used_keywords)
            if word is not None:
                found.append(Count(pos, word.kind, value, False, False, False))
                used_keywords.add(word.at)
                if lex.any_in(lex.subset, toks, word.at, word.at + 1):
                    subset.add(pos)
                linked = True
            elif _bare_count(lex, toks, clauses, pos):
                bare.append((pos, value))
                continue
        if not linked and person and value >= 0 and after < n and lex.match(lex.aboard, toks, after):
            # "perahu blm pulang 2 hari, 3 org di atas": the people aboard are as missing as the boat
            if missing_named is None:
                missing_named = _names_missing(lex, toks)
            if missing_named:
                found.append(Count(pos, "missing", value, False, False, False))
    if bare:
        # "anak2 pingsan waktu upacara, 8 org, panas sekali": with one state word in the whole
        # message, not taken by a count of its own, a count standing alone is of that state
        states = [k for k in range(n) if _state_at(lex, toks, k) is not None]
        if len(states) == 1 and states[0] not in used_keywords:
            only = _state_at(lex, toks, states[0])
            assert only is not None
            found += [Count(pos, only.kind, value, False, False, False) for pos, value in bare]
    found.sort()
    if found:
        # "tertimbun 2 org ibu, su dikeluarkan tp meninggal": a graver state said later, in clauses
        # with no count and no person of their own, is what became of the people counted last
        last = found[-1]
        became = _later_state(lex, toks, clauses, last.pos, used_keywords)
        if became is not None and _GRAVITY.index(became) > _GRAVITY.index(last.kind):
            found[-1] = last._replace(kind=became)
    counts: dict[str, int] = {}
    for k, (pos, kind, value, generic, update, _found) in enumerate(found):
        if pos in subset and any(e.kind == kind and e.value >= value for e in found[:k] if e.pos not in subset):
            continue  # "9 anak sakit, 2 dirawat di pkm": the 2 treated are among the 9
        # "anak 2 org tenggelam, 1 ditemukan meninggal, 1 blm ketemu": a total followed by its
        # breakdown is counted once, in the breakdown
        later = found[k + 1 :]
        if len(later) >= 2 and sum(e.value for e in later) == value and (generic or kind in {e.kind for e in later}):
            continue
        if kind == "missing" and not any(e.kind == "missing" for e in later):
            # "tiga nelayan hilang, dua sudah pulang": those back, or found dead, are no longer missing
            value -= min(value, sum(e.value for e in later if e.kind == SAFE or e.found_dead))
            if not value:
                continue
        if kind == SAFE:
            continue
        if update and generic and len(counts) == 1:
            # "4 org luka, korban bertambah jadi 6": the victims of the one state counted so far
            kind = next(iter(counts))
        # "3 org keracunan ... su jadi 18 org": a new total replaces the count it updates
        counts[kind] = value if update else counts.get(kind, 0) + value
    return Casualties(**{k: min(v, 100_000) for k, v in counts.items()})


def _later_state(lex: Lexicon, toks: Sequence[str], clauses: Sequence[int], pos: int, used: set[int]) -> str | None:
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
        if any(_number_at(lex, toks, m).end != m or toks[m] in lex.people for m in range(k, end)):
            break  # the clause is about people of its own
        for m in range(k, end):
            state = _state_at(lex, toks, m) if m not in used else None
            if state is not None and (gravest is None or _GRAVITY.index(state.kind) > _GRAVITY.index(gravest)):
                gravest = state.kind
        k = end
    return gravest


def _counts_thing_before(lex: Lexicon, toks: Sequence[str], clauses: Sequence[int], start: int, after: int) -> bool:
    """Whether the count at ``toks[start:after]`` follows "<thing> <verb>" in its clause ("rumah dibakar
    2"), with no person unit after it: then it counts the thing."""
    if start < 2 or clauses[start - 2] != clauses[start]:
        return False
    noun, verb = toks[start - 2], toks[start - 1]
    if noun not in lex.things and lex.match(lex.other_units, toks, start - 2) is None:
        return False
    if verb in lex.subject_of or verb in lex.fillers or _number_at(lex, toks, start - 1).end != start - 1:
        return False
    if lex.match(lex.casualty, toks, start - 1) or lex.match(lex.hurt_verbs, toks, start - 1):
        return False
    return after >= len(toks) or lex.match(lex.person_units, toks, after) is None


def _state_at(lex: Lexicon, toks: Sequence[str], k: int) -> State | None:
    """The casualty state said of people at ``toks[k]`` (the gravest of a run), and where it ends."""
    cas = lex.match(lex.casualty, toks, k)
    if cas is None or cas.entry.phrase == ("korban",):
        return None
    if k > 0 and (toks[k - 1] in lex.negations or (k > 1 and toks[k - 1] == "ada" and toks[k - 2] in lex.negations)):
        return None
    if cas.entry.phrase in lex.person_only and (
        _about_thing(lex, toks, k, cas.end) or not _person_before(lex, toks, k)
    ):
        return None
    if k > 0 and lex.match(lex.casualty, toks, k - 1) is not None:
        return None  # inside a run ("tertimbun blm ditemukan") that starts earlier
    return _gravest_state(lex, toks, k, set())


def _clause_state(
    lex: Lexicon, toks: Sequence[str], clauses: Sequence[int], pos: int, after: int, used: set[int]
) -> StateWord | None:
    """The one state word after the count at ``pos`` (its units end at ``after``) in the count's
    clause, not taken by another count."""
    clause = clauses[pos]
    hit: StateWord | None = None
    k = after
    words = 0
    while k < len(toks) and clauses[k] == clause and words <= _CLAUSE_WINDOW:
        end = _number_at(lex, toks, k).end
        if end != k:
            if end < len(toks) and lex.match(lex.other_units, toks, end) is not None:
                words += 1  # "11 jiwa dari 3 KK mengungsi": a count of households is about them
                k = end
                continue
            break  # the next count of people has states of its own
        state = _state_at(lex, toks, k)
        if state is not None:
            if hit is not None or k in used:
                return None  # two states, or one taken: not ours to guess
            hit = StateWord(state.kind, k)
            k = state.end
            continue
        unit = lex.match(lex.person_units, toks, k)
        if unit is not None and toks[k] in lex.people:
            k = unit.end  # "ibu dan anak": more about who, not a word of distance
            continue
        words += 1
        k += 1
    return hit


def _bare_count(lex: Lexicon, toks: Sequence[str], clauses: Sequence[int], pos: int) -> bool:
    """Whether the count at ``pos`` is alone in its clause but for person words ("8 org")."""
    clause = clauses[pos]
    k = pos - 1
    while k >= 0 and clauses[k] == clause:
        if toks[k] not in lex.count_words and toks[k] not in lex.fillers:
            return False
        k -= 1
    k = _number_at(lex, toks, pos).end
    while k < len(toks) and clauses[k] == clause:
        unit = lex.match(lex.person_units, toks, k)
        if unit is None:
            if toks[k] not in lex.count_words:
                return False
            k += 1
        else:
            k = unit.end
    return True


def _about_thing(lex: Lexicon, toks: Sequence[str], start: int, end: int) -> bool:
    """Whether the state word at ``toks[start:end]`` is said of a thing or an animal ("lampu mati")."""
    if end < len(toks) and toks[end] in lex.things:
        return True
    k = start - 1
    while k >= 0 and toks[k] in lex.fillers:
        k -= 1
    return k >= 0 and toks[k] in lex.things


def _person_before(lex: Lexicon, toks: Sequence[str], start: int) -> bool:
    k = start - 1
    while k >= 0 and toks[k] in lex.fillers:
        k -= 1
    return k >= 0 and toks[k] in lex.people


def _is_update(lex: Lexicon, between: Sequence[str]) -> bool:
    """Whether ``between`` is aspect words around an update word ("sudah jadi", "bertambah jadi")."""
    k = 0
    seen = False
    while k < len(between):
        hit = lex.match(lex.update_words, between, k)
        if hit is not None:
            seen = True
            k = hit.end
        elif between[k] in lex.fillers:
            k += 1
        else:
            return False
    return seen


def _names_missing(lex: Lexicon, toks: Sequence[str]) -> bool:
    """Whether the message says someone or something is missing ("belum pulang", "hilang")."""
    for k in range(len(toks)):
        cas = lex.match(lex.casualty, toks, k)
        if cas is not None and cas.entry.tags[0].label == "missing" and (k == 0 or toks[k - 1] not in lex.negations):
            return True
    return False


def _gravest_state(lex: Lexicon, toks: Sequence[str], j: int, used: set[int]) -> State:
    """The casualty state at ``toks[j]``, or a graver one right after it ("tertimbun blm ditemukan"),
    and the index after the state words."""
    kind = ""
    while j < len(toks):
        cas = lex.match(lex.casualty, toks, j)
        if cas is None:
            break
        used.add(j)
        state = cas.entry.tags[0].label
        if not kind or _GRAVITY.index(state) > _GRAVITY.index(kind):
            kind = state
        j = cas.end
    return State(kind, j)


def _number_at(lex: Lexicon, toks: Sequence[str], i: int) -> Number:
    """Parse a number starting at ``toks[i]``: (value or None when vague, index after it)."""
    tok = toks[i]
    if tok.isdigit():
        return Number(int(tok) if len(tok) <= 6 else None, i + 1)
    if tok in lex.vague:
        return Number(None, i + 1)
    total = current = 0
    j = i
    while j < len(toks):
        word = toks[j]
        if word in lex.numbers and not (word == "se" and j + 1 < len(toks) and toks[j + 1] not in lex.multipliers):
            value = lex.numbers[word]
            if value >= 10:
                total += value
            else:
                current += value
        elif word == "belas" and j > i:
            total += current + 10
            current = 0
        elif word in lex.multipliers and j > i:
            factor = lex.multipliers[word]
            if factor >= 1000:
                total = (total + (current or 1)) * factor
            else:
                total += (current or 1) * factor
            current = 0
        else:
            break
        j += 1
    if j == i:
        return Number(None, i)
    return Number(total + current, j)
