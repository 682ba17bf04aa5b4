"""Hostile texts into the classifier (edge/classify.py) and the intake (edge/intake.py).

Arbitrary unicode, texts up to and past the product's 4 KiB limit, mixed scripts, control characters, lone
surrogates (what invalid UTF-8 read with surrogateescape becomes), and the classifier's own words — number
words, digits, casualty words — in odd places and odd numbers.  For every text:

* the classifier returns a category, urgency, severity and certainty from the known sets and casualty
  counts that are None or an int 0-100000 — it never raises;
* it is deterministic: the same text gives the same result twice, and from a second, separately loaded
  classifier (no shared cache);
* the intake either builds a report or refuses with :class:`ReportError`; every refusal is mapped to a
  reason from a known set, and the reason is the one the text's own properties predict (empty, not valid
  UTF-8, over 4096 bytes, NUL);
* a report the intake accepts also passes the center's wire check (``Report.from_dict`` of its JSON):
  nothing a post stores can be refused at the center later.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge.classify import Classifier
from edge.intake import Intake
from siaga import config as config_mod
from siaga.clock import SystemClock
from siaga.errors import ReportError
from siaga.report import CATEGORIES, CERTAINTIES, MAX_TEXT_BYTES, SEVERITIES, URGENCIES, Report
from tests.conftest import Budget
from tests.fuzz.conftest import Reasons

pytestmark = pytest.mark.fuzz

#: Casualty counts the report model allows (siaga/report.py Casualties.from_dict).
MAX_CASUALTIES = 100_000
#: A classification is microseconds; a pathological text that takes seconds is a defect, a hang is caught
#: by pytest-timeout.
EXAMPLE_CAP = timedelta(seconds=10)

#: ReportError messages of the intake (siaga/report.py check_text) → reason.
INTAKE_REASONS = {
    "text is empty": "empty",
    "text is not valid UTF-8": "not_utf8",
    "text contains a NUL character": "nul",
    "text must be a string": "not_string",
}
KNOWN = ("empty", "not_utf8", "too_long", "nul", "not_string")


def intake_reason(exc: ReportError) -> str:
    message = str(exc)
    for prefix, reason in INTAKE_REASONS.items():
        if message.startswith(prefix):
            return reason
    if message.startswith("text is ") and f"at most {MAX_TEXT_BYTES} bytes" in message:
        return "too_long"
    return f"unexplained: {message[:80]}"


def expected_reason(text: str) -> str | None:
    """What the text's own properties say the intake must do (checked in the intake's order)."""
    if not text.strip():
        return "empty"
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return "not_utf8"
    if size > MAX_TEXT_BYTES:
        return "too_long"
    if "\x00" in text:
        return "nul"
    return None


# ---------------------------------------------------------------------------------- strategies
def _vocabulary() -> list[str]:
    """Every word and phrase of the packaged keyword file: the classifier's own language."""
    doc = tomllib.loads(resources.files("edge").joinpath("data/keywords.toml").read_text(encoding="utf-8"))
    words: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if value and len(value) < 40:
                words.add(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and len(key) < 40:
                    words.add(key)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(doc)
    return sorted(words)


VOCABULARY = _vocabulary()
NUMBERS = [
    "0",
    "2",
    "12",
    "007",
    "999999",
    "1000000",
    "99999999999999999999",
    "1.500",
    "2,5",
    "-3",
    "+62",
    "٣",  # Arabic-Indic three
    "३",  # Devanagari three
    "１２",  # fullwidth digits
    "²",  # a superscript: isdigit() but not int()
    "½",
    "Ⅻ",
]
SCRIPTS = [
    "kebakaran",
    "حريق",  # Arabic (right to left)
    "пожар",  # Cyrillic
    "火事",  # CJK
    "आग",  # Devanagari
    "ไฟไหม้",  # Thai
    "🔥🚒",  # emoji
    "e\u0301",  # combining mark
    "\u200b\u200c\u200d",  # zero-width space/joiners
    "\u202e",  # right-to-left override
    "\ufeff",  # BOM
    "ﬁ",  # a ligature NFKC expands
    "İ",  # lowercases to two code points
    "ß",
]
CONTROLS = ["\x00", "\x01", "\x07", "\x1b[31m", "\t", "\n", "\r\n", "\x7f", "\x85", "\u2028", "\u2029", "\x0b"]
SEPARATORS = [" ", "  ", ".", ",", ":", ";", "!", "?", "-", "/", "(", ")", "\n", "", "...", "#", "@"]

token = st.one_of(
    st.sampled_from(VOCABULARY),
    st.sampled_from(VOCABULARY).map(str.upper),
    st.sampled_from(NUMBERS),
    st.sampled_from(SCRIPTS),
    st.sampled_from(CONTROLS),
    st.text(max_size=8),
)
sentences = st.lists(st.tuples(token, st.sampled_from(SEPARATORS)), max_size=40).map(
    lambda parts: "".join(t + s for t, s in parts)
)
surrogates = st.characters(categories=["Cs"])
near_limit = st.builds(
    lambda fragment, target: fragment * (target // max(1, len(fragment.encode("utf-8", "surrogatepass"))) + 1),
    st.one_of(st.sampled_from(["KEBAKARAN ", "dua puluh tiga orang luka ", "🔥", "é", "x"]), sentences),
    st.sampled_from([MAX_TEXT_BYTES - 1, MAX_TEXT_BYTES, MAX_TEXT_BYTES + 1, 2 * MAX_TEXT_BYTES, 64 * 1024]),
).map(lambda text: text[: 64 * 1024])
exact_limit = st.builds(
    lambda n, pad: "banjir " + pad * (n - 7),
    st.sampled_from([MAX_TEXT_BYTES - 1, MAX_TEXT_BYTES, MAX_TEXT_BYTES + 1]),
    st.just("a"),
)
_TEXT_KINDS = [
    *[st.text()] * 4,
    st.text(alphabet=st.characters(codec="utf-8")),
    *[sentences] * 8,
    st.builds(lambda a, s, b: a + s + b, sentences, surrogates, sentences),
    near_limit,
    near_limit,
    exact_limit,
    st.text(alphabet=st.sampled_from(" \t\n\r\x0b\x0c\x85\u00a0\u2000\u3000\u200b"), max_size=20),
]
#: Weighted by repetition and drawn by index: hypothesis' own one_of favoured the surrogate branch.
texts = st.integers(0, len(_TEXT_KINDS) - 1).flatmap(lambda i: _TEXT_KINDS[i])


# ---------------------------------------------------------------------------------- harness
@pytest.fixture(scope="module")
def classifiers() -> tuple[Classifier, Classifier]:
    """Two classifiers loaded separately: determinism must not come from a shared cache."""
    return Classifier.load(), Classifier.load()


@pytest.fixture
def intake(tmp_path: Path, classifiers: tuple[Classifier, Classifier]) -> Iterator[Intake]:
    cfg = config_mod.from_dict(
        {"node": {"post_id": "oebubun", "data_dir": str(tmp_path / "data"), "lat": -9.3853, "lon": 124.3544}}
    )
    yield Intake(cfg, classifiers[0], SystemClock())


def check_classification(result: Any) -> None:
    assert result.category in CATEGORIES, result
    assert result.urgency in URGENCIES, result
    assert result.severity in SEVERITIES, result
    assert result.certainty in CERTAINTIES, result
    for kind in ("affected", "injured", "dead", "missing"):
        value = getattr(result.casualties, kind)
        assert value is None or (type(value) is int and 0 <= value <= MAX_CASUALTIES), (kind, value)
    json.dumps(result.to_dict())  # what `siaga classify --json` prints


@pytest.mark.timeout(240)
def test_any_text_gets_a_valid_deterministic_class_and_every_refusal_a_reason(
    classifiers: tuple[Classifier, Classifier], intake: Intake, budget: Budget, reasons: Reasons
) -> None:
    first, second = classifiers

    def check(text: str) -> None:
        reasons.examples += 1
        result = first.classify(text)
        check_classification(result)
        assert first.classify(text) == result, "the same text classified twice differently"
        assert second.classify(text) == result, "a second classifier disagrees"
        try:
            report = intake.build(text, origin="operator:fuzz", source="manual")
        except ReportError as exc:
            reason = intake_reason(exc)
            reasons.add(reason)
            assert reason == expected_reason(text), (reason, expected_reason(text), str(exc)[:200])
            return
        assert expected_reason(text) is None, f"accepted a text that is {expected_reason(text)}"
        reasons.accept(f"category.{report.category}")
        for kind, value in result.casualties.to_dict().items():
            reasons.accept(f"casualties.{kind}", 1 if value is not None else 0)
        assert report.category in (result.category, "sos") and report.text_raw == text
        # what the post accepted, the center's wire check accepts too (JSON round trip, unknown fields refused)
        wire = json.loads(json.dumps(report.to_dict(), ensure_ascii=False, allow_nan=False))
        back = Report.from_dict(wire)  # (times travel with millisecond precision)
        assert back.to_dict() == wire and back.text_raw == text and back.category == report.category

    run = settings(
        max_examples=budget.pick(600, 20_000),
        deadline=EXAMPLE_CAP,
        suppress_health_check=list(HealthCheck),
        database=None,
    )(given(texts)(check))
    for text in (
        "",
        " \t\n",
        "a" * MAX_TEXT_BYTES,
        "a" * (MAX_TEXT_BYTES + 1),
        "é" * (MAX_TEXT_BYTES // 2 + 1),  # 4098 bytes in 2049 characters
        "BANJIR \x00 dusun",
        "KEBAKARAN \udcff rumah",  # a lone surrogate: invalid UTF-8 read with surrogateescape
        "seribu juta juta juta orang meninggal",
        "99999999999999999999 orang luka",
        "dua puluh dua puluh dua puluh orang hilang",
        "² orang luka ٣ meninggal",
        "\u202eNARAKABEK\u202c 3 org luka",
        "kebakaran " * 400,
    ):
        run = example(text)(run)
    run()

    print(reasons)
    reasons.assert_known(KNOWN)
    for must in ("empty", "not_utf8", "too_long", "nul"):
        assert reasons.counts[must] >= 1, reasons
    assert len(reasons.accepted) >= 5, f"the texts reached too few categories: {reasons}"
