"""Landing a fault by construction: hold the drain, wait for the state the fault is meant to hit, strike.

A fault test that strikes "after a while" tests whatever state the machine happened to reach by then: on a
busy machine the drain may already be over (nothing tested), on a fast one not yet started.  These helpers
make the state a precondition instead of a hope:

* :func:`paused` freezes a process with SIGSTOP (it is known to be stopped when the ``with`` body runs) and
  lets it go with SIGCONT; SIGKILL still kills a stopped process, so a strike can land inside the hold;
* :func:`wait_state` waits for a condition with a deadline that only a real hang reaches, and names what it
  waited for when it fails;
* :func:`center_ids` and :func:`sent_not_at_center` read the center's database and the post's store without
  taking a write lock, to observe "the broker has PUBACKed reports the center has not committed".
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from devkit.harness.wait import wait_until
from edge.store import Store

T = TypeVar("T")

#: How long a hold may wait for its state.  Generous on purpose: it is not a speed requirement, it only turns
#: a hang into a failure with a message instead of a test timeout.
HOLD_DEADLINE_S = 120.0


def wait_state(predicate: Callable[[], T], what: str, timeout: float = HOLD_DEADLINE_S, every: float = 0.02) -> T:
    """Wait until ``predicate()`` is truthy and return its value; fail naming ``what`` after ``timeout``."""
    return wait_until(predicate, timeout, what, every)


def _proc_state(pid: int) -> str | None:
    """The scheduler state letter of ``pid`` (R, S, D, T, Z...), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]  # the command name may contain spaces and parentheses


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGSTOP ``proc`` and return once it is really stopped (the signal is delivered asynchronously)."""
    os.kill(proc.pid, signal.SIGSTOP)
    wait_state(lambda: _proc_state(proc.pid) in ("T", "t", "Z", None), f"process {proc.pid} to stop", 30.0, 0.002)


def cont(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGCONT ``proc`` if it still runs (a stopped process that was SIGKILLed meanwhile is just gone)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)


@contextmanager
def paused(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> Iterator[None]:
    """``with paused(proc):`` — the process is frozen for the body (nothing it holds moves), then resumed."""
    stop(proc)
    try:
        yield
    finally:
        cont(proc)


def _ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)


def center_ids(db: Path) -> set[str]:
    """The wire report ids the center has committed, read without its write lock."""
    conn = _ro(db)
    try:
        return {row[0] for row in conn.execute("SELECT wire_report_id FROM report_copies")}
    finally:
        conn.close()


def sent_ids(store: Store) -> set[str]:
    """Reports the broker PUBACKed to the post that the center has not acknowledged yet."""
    return {r.report_id for r in store.list_reports(state="sent", limit=1_000_000)}


def sent_not_at_center(store: Store, db: Path) -> set[str]:
    """Reports only the broker has: PUBACKed to the post, not committed at the center.  With the center frozen
    nothing can acknowledge them, so a strike made while this is non-empty hits a broker (or a center) with
    reports in flight — whatever the machine's speed."""
    sent = sent_ids(store)
    return sent - center_ids(db) if sent else set()
