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


def test_sigkill_store_writer_many_times(tmp_path: Path) -> None:
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
        deadline = time.monotonic() + rng.uniform(0.3, 1.0)
        buffer = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.05)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buffer += chunk
        proc.send_signal(signal.SIGKILL)
        buffer += proc.stdout.read()
        proc.stdout.close()
        proc.wait()
        # only whole lines: a line cut by the kill was never fully announced
        acknowledged.extend(line.decode() for line in buffer.split(b"\n")[:-1])
        _check(path, acknowledged)
    assert len(acknowledged) > 100  # the writers did real work between kills


def test_sigkill_siaga_report_cli(tmp_path: Path) -> None:
    config = write_post_config(tmp_path)
    rng = random.Random(112)
    acknowledged: list[str] = []
    killed = 0
    for i in range(25):
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "--config", str(config), "report", "--json", f"BANJIR dusun {i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_env(),
            cwd=REPO,
        )
        try:
            out, _ = proc.communicate(timeout=rng.uniform(0.05, 1.2))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            killed += 1
        if proc.returncode == 0:
            acknowledged.append(json.loads(out)["report_id"])
        _check(tmp_path / "data" / "post.db", acknowledged)
    assert acknowledged and killed, (len(acknowledged), killed)
