"""``siaga rehearse``: a topology rehearsed end to end — real broker, center, one ``siaga run`` per post
and relay, the simulated mesh — and its JSON summary counted from the real sources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow]


def rehearse(topology: str, workdir: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "rehearse", topology, "--json", "--dir", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_chain_of_three_delivers_every_report_once_with_both_receipts(tmp_path: Path) -> None:
    """pos-1 -> pos-2 -> pos-3 (only pos-3 has an uplink): custody over two hops, the ack back."""
    workdir = tmp_path / "chain3"
    result = rehearse("chain3.toml", workdir, "--duration", "240")
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout)
    assert summary["generated"] == 3
    assert summary["delivered"] == 3 and summary["lost"] == 0
    assert summary["duplicates_at_center"] == 0
    # both receipts reached the origin's handset, acknowledged: "112 POS ... TERIMA" and "112 PUSAT TERIMA"
    assert summary["receipts_post"] == summary["receipts_center"] == 3
    latency = summary["latency_s"]
    assert latency["p50"] is not None and latency["p50"] <= latency["p95"] <= latency["max"]
    # the reports went over the air: the simulated mesh counted their airtime
    assert summary["airtime_s_per_report"] is not None and summary["airtime_s_per_report"] > 0
    assert set(summary["nodes"]) == {"pos-1", "pos-2", "pos-3"}
    # progress was shown live; every process it started is gone
    assert "pusat 112:" in result.stderr
    leftovers = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout
