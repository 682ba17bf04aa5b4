"""Retry delays: exponential with a cap and optional jitter, the one implementation every retry loop uses.

The radio's reconnect (edge/radio.py), the receipt retries (edge/receipts.py), the uplink's and the
receiver's reconnect (sync/uplink.py, sync/receiver.py) differ only in their numbers, so each owns a
:class:`Backoff` policy and asks it for the delay of attempt *n*.  Jitter spreads the reconnects of many
posts after a broker restart; the random source is injectable (``random.Random(seed)``) so a test gets the
same delays every run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

#: Past this many doublings the cap has long been reached (and 2.0 ** n would overflow later on).
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class Backoff:
    """Attempt ``n`` (1-based) waits ``min(max_s, first_s * factor ** (n - 1))``, shortened by jitter.

    ``jitter`` is the share that may be taken off at random: 0.5 gives a delay in ``[d/2, d]``, so the cap
    is never exceeded and attempts from many clients spread out.  ``max_s`` may be ``math.inf`` when the
    number of attempts is bounded elsewhere (the receipts' retries).
    """

    first_s: float
    max_s: float
    factor: float = 2.0
    jitter: float = 0.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.first_s > 0 or not self.max_s >= self.first_s or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid backoff {self!r}")

    def delay(self, attempt: int) -> float:
        """The wait before attempt ``attempt`` is retried (``attempt`` ≥ 1 is the one that just failed)."""
        exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
        base = min(self.max_s, self.first_s * self.factor**exponent)
        if self.jitter and math.isfinite(base):
            base *= self.rng.uniform(1.0 - self.jitter, 1.0)
        return base


class Attempts:
    """A reconnect loop's failures in a row under a :class:`Backoff`: :meth:`next_delay` after a failure,
    :meth:`reset` after a success."""

    def __init__(self, policy: Backoff) -> None:
        self.policy = policy
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return self.policy.delay(self.failures)

    def reset(self) -> None:
        self.failures = 0
