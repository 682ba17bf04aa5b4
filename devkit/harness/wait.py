"""Waiting for a state, the one way the tests and the harness do it.

A fault test lands its fault by waiting for the state it needs (never by sleeping and hoping), so this is
used everywhere; the deadline only turns a real hang into a failure that names what was awaited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition", every: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; AssertionError naming ``what``
    once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
