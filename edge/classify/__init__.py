"""Indonesian report text → category, CAP urgency/severity/certainty and casualty counts.

Officers write in a hurry on a handset keyboard: canned texts in capitals, free text full of shorthand
("tlg sgr 2 org luka"), typos ("kbakaran"), numbers as digits or words ("tiga puluh jiwa"), and now and
then words of Uab Meto or Kupang Malay ("su", "sonde").  All words live in ``edge/data/keywords.toml``;
a regency adds its own file(s) without code changes (see :meth:`Classifier.load`).  Everything is
compiled once into dict lookups, so a classification is a few microseconds of pure Python.
Classification never fails: what it does not understand is ``lainnya`` with Unknown urgency — the raw
text is always kept by the caller.

The stages, one module each: :mod:`~edge.classify.text` (normalisation), :mod:`~edge.classify.lexicon_files`
(reading and validating the keyword files), :mod:`~edge.classify.lexicon` (the compiled lexicon, word
resolver and phrase matcher), :mod:`~edge.classify.scoring` (the category),
:mod:`~edge.classify.casualties` (the counts) and :mod:`~edge.classify.classifier` (CAP terms, the API).
"""

from edge.classify.classifier import Classification, Classifier, classify, default_classifier
from edge.classify.lexicon_files import CASUALTY_KINDS

__all__ = ["CASUALTY_KINDS", "Classification", "Classifier", "classify", "default_classifier"]
