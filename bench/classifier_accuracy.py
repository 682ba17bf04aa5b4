"""Classifier accuracy on the labelled sets, the misses, and classify throughput.

Run: .venv/bin/python bench/classifier_accuracy.py [--heldout]

tests/data/labelled_reports.jsonl has three parts, all written before the keywords they are scored on:
- rows [0, TUNING_SIZE): the tuning part, looked at while writing/tuning the keywords;
- rows [TUNING_SIZE, BLIND_START): the held-out part, written with the tuning part, never tuned on;
- rows [BLIND_START, end): "late-labelled", a batch written after the keywords were frozen; its first-pass
  misses (3 of 46) were then fixed, so it is no longer blind — see the note in the last report.
tests/data/blind_reports.jsonl ("blind-1", 150 rows) was written blind by another colleague; its first run
scored 92.0% category / 97.3% casualties, then the keywords were tuned on its misses (general rules, not
its sentences), so it too is no longer blind.
tests/data/blind2_reports.jsonl ("blind-2 file", 150 rows) was written by someone who never saw the
classifier; its first run scored 90.0% category / 92.7% casualties, then the keywords and casualty rules
were fixed on its misses (general rules, tested on new sentences), so it is no longer blind either.
tests/data/blind3_reports.jsonl ("blind-3 file", 150 rows; 6 rows had been glimpsed by the previous tuner)
scored 94.0% category (95.1% on the 144 unseen rows) / 96.7% casualties on its first run, then the same
treatment: general rules fixed on its misses, tested on new sentences; a regression set now.
tests/data/blind4_reports.jsonl ("blind-4 file", 150 rows) scored 91.3% category / 95.3% casualties on its
first run; this time general mechanisms were fixed rather than phrases added (clause-bounded counts, bare
counts, households and vehicles are not people, drills, warnings, cited past events, missing people
yielding to a named hazard); by the labeller's ruling "N KK" counts households, not people (2 earlier
labelled rows relabelled to no casualties). A regression set now.
tests/data/blind5_reports.jsonl ("blind-5 file", 150 rows) scored 90.7% category / 95.3% casualties on its
first run; general mechanisms were fixed again (a clause's subject decides what "tenggelam", "hilang",
"retak", "hangus" mean; a hazard after "abis/setelah/pasca" is background; a last clause "aman" clears;
a graver state said later upgrades the last count; "N dirawat" after a larger total is part of it; a count
after "<thing> <verb>" counts the thing; signs of life of trapped people are a rescue). One row was
relabelled (a singular person with no number is no count, as in the other sets). A regression set now.
Casualty accuracy counts a row right only when all four counts match exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.classify import Classifier  # noqa: E402

SAMPLE = ROOT / "tests" / "data" / "reports_sample.jsonl"
LABELLED = ROOT / "tests" / "data" / "labelled_reports.jsonl"
BLIND1 = ROOT / "tests" / "data" / "blind_reports.jsonl"
BLIND1_LABEL = "blind-1 (tuned on after first run; first-run accuracy 92.0%/97.3%)"
BLIND2 = ROOT / "tests" / "data" / "blind2_reports.jsonl"
BLIND2_LABEL = "blind-2 file (tuned on after first run; first-run accuracy 90.0%/92.7%)"
BLIND3 = ROOT / "tests" / "data" / "blind3_reports.jsonl"
BLIND3_LABEL = "blind-3 file (tuned on after first run; first-run accuracy 94.0%/96.7%)"
BLIND4 = ROOT / "tests" / "data" / "blind4_reports.jsonl"
BLIND4_LABEL = "blind-4 file (tuned on after first run; first-run accuracy 91.3%/95.3%)"
BLIND5 = ROOT / "tests" / "data" / "blind5_reports.jsonl"
BLIND5_LABEL = "blind-5 file (tuned on after first run; first-run accuracy 90.7%/95.3%)"
TUNING_SIZE = 141
BLIND_START = 211


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate(clf: Classifier, name: str, rows: list[dict], show_misses: bool = True) -> tuple[float, float]:
    cat_ok = cas_ok = 0
    misses = []
    for row in rows:
        got = clf.classify(row["text"])
        good_cat = got.category == row["category"]
        good_cas = got.casualties.to_dict() == row["casualties"]
        cat_ok += good_cat
        cas_ok += good_cas
        if not (good_cat and good_cas):
            misses.append((row, got))
    n = len(rows)
    print(f"{name:10s} n={n:4d}  category {cat_ok / n:6.1%}  casualties {cas_ok / n:6.1%}")
    if show_misses:
        for row, got in misses:
            print(
                f"    MISS {row['text']!r}: want {row['category']} {row['casualties']}"
                f" got {got.category} {got.casualties.to_dict()}"
            )
    return cat_ok / n, cas_ok / n


def throughput(clf: Classifier, texts: list[str], seconds: float = 1.0) -> float:
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for text in texts:
            clf.classify(text)
        count += len(texts)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-heldout", action="store_true", help="do not evaluate the held-out part")
    args = parser.parse_args()
    clf = Classifier.load()
    labelled = load(LABELLED)
    if SAMPLE.exists():
        evaluate(clf, "sample", load(SAMPLE))
    evaluate(clf, "tuning", labelled[:TUNING_SIZE])
    if not args.no_heldout:
        evaluate(clf, "held-out", labelled[TUNING_SIZE:BLIND_START])
        evaluate(clf, "late-labelled (rows 211+)", labelled[BLIND_START:])
        evaluate(clf, "all", labelled, show_misses=False)
    if BLIND1.exists():
        evaluate(clf, BLIND1_LABEL, load(BLIND1))
    if BLIND2.exists():
        evaluate(clf, BLIND2_LABEL, load(BLIND2))
    if BLIND3.exists():
        evaluate(clf, BLIND3_LABEL, load(BLIND3))
    if BLIND4.exists():
        evaluate(clf, BLIND4_LABEL, load(BLIND4))
    if BLIND5.exists():
        evaluate(clf, BLIND5_LABEL, load(BLIND5))
    start = time.perf_counter()
    Classifier.load()
    print(f"load: {(time.perf_counter() - start) * 1000:.1f} ms")
    texts = [row["text"] for row in labelled]
    print(f"throughput (warm cache): {throughput(clf, texts):,.0f} msgs/s")
    cold = [f"{t} x{i}q" for i, t in enumerate(texts * 20)]
    fresh = Classifier.load()
    start = time.perf_counter()
    for text in cold:
        fresh.classify(text)
    print(f"throughput (cold word cache): {len(cold) / (time.perf_counter() - start):,.0f} msgs/s")


if __name__ == "__main__":
    main()
