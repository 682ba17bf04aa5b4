"""What every fuzz target shares: a table of rejection reasons, checked against a known set and printed.

A fuzz target may refuse input — that is its job — but every refusal must carry a reason an operator can
see (a counter, a ConfigError key, a ProtocolError reason).  Each test collects ``reason → count`` in a
:class:`Reasons` table, asserts that every reason belongs to the target's known set, and the tables are
printed at the end of the run (pytest's terminal summary), so CI logs show what the fuzzers threw and
what the product made of it.

Budgets: ``budget.pick(reduced, full)`` (tests/conftest.py) sets the number of examples; the per-test
pytest-timeout below is the hang guard for the whole test (a hung example never returns, so no per-example
check could catch it) and grows with ``--full``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable

import pytest

#: Whole-test hang guard (pytest-timeout) in full runs, where the example counts are 10-40× larger.
FULL_TIMEOUT_S = 3600

_TABLES = pytest.StashKey[list["Reasons"]]()


class Reasons:
    """``reason → count`` for one fuzz test, plus how many examples ran."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.examples = 0
        self.counts: Counter[str] = Counter()
        #: Outcomes that are not refusals (accepted, stored, a copy): shown, not checked against the set.
        self.accepted: Counter[str] = Counter()

    def add(self, reason: str, n: int = 1) -> None:
        if n:
            self.counts[reason] += n

    def accept(self, what: str, n: int = 1) -> None:
        if n:
            self.accepted[what] += n

    def unknown(self, known: Iterable[str]) -> dict[str, int]:
        """Reasons outside ``known`` (an entry ending in ``*`` is a prefix: ``ignored.port.*``)."""
        exact = {k for k in known if not k.endswith("*")}
        prefixes = tuple(k[:-1] for k in known if k.endswith("*"))
        return {r: n for r, n in self.counts.items() if r not in exact and not r.startswith(prefixes)}

    def assert_known(self, known: Iterable[str]) -> None:
        unknown = self.unknown(known)
        assert not unknown, f"{self.target}: rejections with a reason outside the known set: {unknown}\n{self}"

    def render(self) -> str:
        lines = [f"{self.target}: {self.examples} examples"]
        width = max((len(k) for k in [*self.counts, *self.accepted]), default=10)
        for title, table in (("rejected", self.counts), ("accepted", self.accepted)):
            if table:
                lines.append(f"  {title}:")
                lines += [f"    {reason:<{width}}  {n:>7}" for reason, n in sorted(table.items())]
        return "\n".join(lines)

    __str__ = __repr__ = render


@pytest.fixture
def reasons(request: pytest.FixtureRequest) -> Reasons:
    """A fresh table named after the test; printed in the run's summary."""
    table = Reasons(request.node.name)
    request.config.stash.setdefault(_TABLES, []).append(table)
    return table


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    full = bool(config.getoption("--full")) or os.environ.get("SIAGA_FULL") == "1"
    if not full:
        return
    for item in items:
        if "tests/fuzz/" in item.nodeid and item.get_closest_marker("timeout") is not None:
            item.add_marker(pytest.mark.timeout(FULL_TIMEOUT_S), append=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    tables = config.stash.get(_TABLES, [])
    if not tables:
        return
    terminalreporter.section("fuzz: rejection reasons")
    for table in tables:
        terminalreporter.write_line(table.render())
