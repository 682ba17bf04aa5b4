"""siaga/backoff.py: the one retry-delay policy (radio, receipts, uplink, receiver)."""

from __future__ import annotations

import math
import random

import pytest

from siaga.backoff import Attempts, Backoff


def test_doubles_from_first_to_the_cap() -> None:
    policy = Backoff(0.25, 2.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert policy.delay(10_000) == 2.0  # no overflow however long the outage


def test_no_cap_when_the_attempts_are_bounded_elsewhere() -> None:
    policy = Backoff(3.0, math.inf)
    assert [policy.delay(n) for n in (1, 2, 3)] == [3.0, 6.0, 12.0]


def test_jitter_stays_within_its_share_and_is_deterministic_under_a_seed() -> None:
    def delays(seed: int) -> list[float]:
        policy = Backoff(0.25, 2.0, jitter=0.5, rng=random.Random(seed))
        return [policy.delay(n) for n in range(1, 50)]

    first = delays(7)
    assert first == delays(7)
    assert first != delays(8)
    for n, value in enumerate(first, start=1):
        full = min(2.0, 0.25 * 2 ** (n - 1))
        assert full / 2 <= value <= full


def test_attempts_count_failures_in_a_row_and_reset() -> None:
    attempts = Attempts(Backoff(1.0, 10.0))
    assert [attempts.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    attempts.reset()
    assert attempts.next_delay() == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [{"first_s": 0, "max_s": 1}, {"first_s": 2, "max_s": 1}, {"first_s": 1, "max_s": 2, "jitter": 1.5}],
)
def test_nonsense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
