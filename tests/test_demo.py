"""The README's main job: `siaga demo` runs the whole system on this machine and loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


def test_demo_delivers_everything(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--duration", "90", "--json", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["lost"] == 0
    assert summary["delivered"] == summary["generated"] == 11
    # every report once at the center; the packet heard by both posts was merged, not duplicated
    assert summary["duplicates_at_center"] == 0
    assert summary["duplicates_merged_at_center"] >= 1
    # every handset report got both receipts, the Noemuti officer's too (no uplink: via the hilltop relay)
    assert summary["receipts"]["post"] == summary["receipts"]["center"] == 11
    assert summary["receipts_post"] == summary["receipts_center"] == 11
    # the post whose clock is six years wrong still yields correct times at the center
    eban = [r for r in summary["reports"] if r["post_id"] == "eban"]
    assert eban and max(r["observed_error_s"] for r in eban) < 5
    assert summary["nodes"]["bukit-mutis"]["role"] == "relay" and summary["nodes"]["bukit-mutis"]["restarts"] == 1
    assert "PUSAT TERIMA" in (tmp_path / "demo" / "noemuti" / "radio-sent.jsonl").read_text()
    # progress was shown live, and every process was cleaned up
    assert "UPLINK PUTUS" in result.stderr
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", leftovers.stdout
