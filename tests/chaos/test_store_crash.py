"""Crash test: writers killed with SIGKILL at random moments, many times.  After each kill every report
whose writer said "stored" (or whose `siaga report` exited 0) is there exactly once and integrity_check
is ok."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.store import Store
from tests.chaos._hold import HOLD_DEADLINE_S
from tests.conftest import REPO, write_post_config

pytestmark = pytest.mark.chaos


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _check(path: Path, acknowledged: list[str]) -> None:
    with Store.open(path) as store:
        assert store.integrity_ok()
        rows = store.list_reports(limit=1_000_000)
    ids = [r.report_id for r in rows]
    assert len(ids) == len(set(ids)), "a report is stored twice"
    missing = set(acknowledged) - set(ids)
    assert not missing, f"{len(missing)} acknowledged reports lost after SIGKILL"


def _read_lines(proc: subprocess.Popen[bytes], until: float, *, first_line: bool = False) -> bytes:
    """What ``proc`` writes to stdout until the monotonic time ``until``, its end of output, or (``first_line``)
    its first whole line."""
    assert proc.stdout is not None
    buffer = b""
    while time.monotonic() < until:
        ready, _, _ = select.select([proc.stdout], [], [], 0.01)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
            if first_line and b"\n" in buffer:
                return buffer
    return buffer


def test_sigkill_store_writer_many_times(tmp_path: Path) -> None:
    """Each kill lands mid-write by construction: the writer is struck 0-0.7 s after its first
    acknowledgement (it is then in its put loop, and stays there until killed), not at a time after its start
    that a busy machine may spend importing Python."""
    path = tmp_path / "post.db"
    Store.open(path).close()
    rng = random.Random(20261128)
    acknowledged: list[str] = []
    for round_no in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.crash_writer", str(path), f"r{round_no}"],
            stdout=subprocess.PIPE,
            env=_env(),
            cwd=REPO,
        )
        assert proc.stdout is not None
        buffer = _read_lines(proc, time.monotonic() + HOLD_DEADLINE_S, first_line=True)
        assert b"\n" in buffer, f"round {round_no}: the writer acknowledged nothing within {HOLD_DEADLINE_S:g} s"
        buffer += _read_lines(proc, time.monotonic() + rng.uniform(0.0, 0.7))
        assert proc.poll() is None, f"round {round_no}: the writer exited by itself ({proc.returncode})"
        proc.send_signal(signal.SIGKILL)
        buffer += proc.stdout.read()
        proc.stdout.close()
        assert proc.wait() == -signal.SIGKILL
        # only whole lines: a line cut by the kill was never fully announced
        acknowledged.extend(line.decode() for line in buffer.split(b"\n")[:-1])
        _check(path, acknowledged)
    assert len(acknowledged) > 100  # the writers did real work between kills


def test_sigkill_siaga_report_cli(tmp_path: Path) -> None:
    """`siaga report` runs to completion (its report must then be stored) or is SIGKILLed at a random moment
    of its life, alternately.  The kill lands while it runs by construction: at a random fraction of the
    shortest uninterrupted run measured on this machine, and should this run outpace that, the round is
    played again with half the fraction until a kill lands on a live process."""
    config = write_post_config(tmp_path)
    rng = random.Random(112)
    acknowledged: list[str] = []
    killed = 0
    lifetimes: list[float] = []  # seconds an uninterrupted `siaga report` took here
    runs = 0

    def run(timeout: float) -> bool:
        """One `siaga report`; True if it was killed while alive."""
        nonlocal runs
        runs += 1
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "--config", str(config), "report", "--json", f"BANJIR dusun {runs}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_env(),
            cwd=REPO,
        )
        struck = False
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            struck = proc.returncode == -signal.SIGKILL
        else:
            lifetimes.append(time.monotonic() - started)
        if proc.returncode == 0:
            acknowledged.append(json.loads(out)["report_id"])
        else:
            assert struck, f"siaga report failed by itself (exit {proc.returncode})"
        _check(tmp_path / "data" / "post.db", acknowledged)
        return struck

    for i in range(25):
        if i % 2 == 0:
            assert not run(HOLD_DEADLINE_S), f"siaga report took more than {HOLD_DEADLINE_S:g} s"
            continue
        fraction = rng.uniform(0.05, 0.95)
        while not run(fraction * min(lifetimes)):
            fraction /= 2
        killed += 1
    assert len(acknowledged) >= 13 and killed == 12, (len(acknowledged), killed)
