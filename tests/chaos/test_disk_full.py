"""Disk full at the post during ingest: `siaga run` (a real process) with its data_dir on a small tmpfs, fed
texts by the simulated gateway radio over TCP.

Mid-stream the tmpfs is filled with a filler file.  While it is full the daemon must log every failure
loudly (``STORE FAILED``), send no receipt for a report it could not store, keep running, count the
failures in its metrics, and leave the database intact.  With no new packet arriving, deleting the filler
must be enough: the daemon's timer retries the reports it holds in memory and every injected text ends up
in the store exactly once, each with its receipt.

``test_hold_overflow_drops_the_oldest_loudly``: the in-memory hold is bounded (``UNSTORED_MAX``); past it
the oldest report is dropped with an ERROR line and the ``store.dropped`` counter, never silently.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devkit.harness.mosquitto import free_port
from devkit.harness.procs import spawn_siaga_run, stop_process
from devkit.sim import SimulatedDevice
from edge import daemon
from edge.reserve import RESERVE_BYTES, reserve_path
from edge.status import post_status, read_runtime
from siaga import config as config_mod
from siaga.report import report_ref
from tests.conftest import write_post_config
from tests.radio_rig import HANDSET, SPEED, post_and_device, reports, wait_report, wait_until

pytestmark = pytest.mark.chaos

#: Room for the WAL (up to ~4 MiB before a checkpoint) and the database with every report of a --full run.
TMPFS_SIZE = "16m"
#: Between two injected texts (real seconds): a steady stream, not a burst.
STREAM_GAP_S = 0.1
RECEIPT_PREFIX = "112 POS"


@contextmanager
def small_tmpfs(mount: Path) -> Iterator[Path]:
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount)], capture_output=True
    )
    assert mounted.returncode == 0, f"this test needs root to mount a tmpfs: {mounted.stderr!r}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> int:
    """Write ``path`` until the file system refuses even one byte; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    n = os.write(fd, block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
                written += n
                if n < chunk:
                    break
    finally:
        os.close(fd)
    return written


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def read_db(path: Path) -> tuple[bool, list[str]]:
    """integrity_check and the stored texts, read without writing (the disk may be full)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        texts = [row[0] for row in conn.execute("SELECT json_extract(body, '$.text_raw') FROM reports")]
        ids = [row[0] for row in conn.execute("SELECT report_id FROM reports")]
    finally:
        conn.close()
    assert len(ids) == len(set(ids))
    return ok, texts


def radio_state(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "runtime.json").read_text(encoding="utf-8")).get("radio")
    except (OSError, ValueError):
        return None


def receipts(device: SimulatedDevice) -> list[str]:
    return [p.text for p in device.sent if p.text and p.text.startswith(RECEIPT_PREFIX)]


def acked_receipts(device: SimulatedDevice) -> list[str]:
    return [p.text for p in device.sent if p.text and p.text.startswith(RECEIPT_PREFIX) and p.acked is True]


def stream(device: SimulatedDevice, texts: list[str]) -> None:
    for text in texts:
        device.inject_text(HANDSET, text)
        time.sleep(STREAM_GAP_S)


def test_disk_full_during_ingest_holds_reports_and_resumes(tmp_path: Path, budget) -> None:
    before_n, during_n, after_n = budget.pick((8, 20, 8), (30, 300, 30))
    texts = [f"KEBAKARAN rumah warga uji-penuh {i:04d}" for i in range(before_n + during_n + after_n)]
    before, during, after = texts[:before_n], texts[before_n : before_n + during_n], texts[before_n + during_n :]
    metrics_port = free_port()
    with small_tmpfs(tmp_path / "tiny") as mount, SimulatedDevice(listen=("127.0.0.1", 0), speed=SPEED, seed=5) as dev:
        dev.add_node(HANDSET, "Petugas Oebubun 01", "OB01")  # the handset acknowledges its receipts
        config = write_post_config(
            mount,
            extra=f"""
[radio.meshtastic]
host = "127.0.0.1:{dev.port}"
min_send_interval_s = 0.2
ack_timeout_s = 3.0

[metrics]
listen = "127.0.0.1:{metrics_port}"
""",
        )
        cfg = config_mod.load(config)
        db = cfg.store_path
        run_dir = tmp_path / "run"  # the runtime file lives on /run under systemd, not on the full disk
        run_dir.mkdir()
        log_path = tmp_path / "siaga-run.log"
        proc = spawn_siaga_run(config, log_path, env={"RUNTIME_DIRECTORY": str(run_dir)})
        try:
            wait_until(lambda: radio_state(run_dir) == "connected", 60, "the daemon's radio")

            # 1. normal ingest; let every receipt settle so the full disk meets no receipt in flight
            stream(dev, before)
            wait_until(lambda: len(read_db(db)[1]) == before_n, 30, "the first reports in the store")
            wait_until(lambda: len(acked_receipts(dev)) >= before_n, 60, "the receipts of the first reports")
            errors_before = metric(metrics_port, 'siaga_post_events_total{kind="store.errors"}')

            # 2. the disk fills up mid-stream
            filled_at = time.monotonic()
            filler_bytes = fill(mount / "filler")
            stream(dev, during)
            log_text = wait_until(
                lambda: (t := log_path.read_text(errors="replace")).count("STORE FAILED") >= during_n and t,
                60,
                "a STORE FAILED line for every report sent while the disk is full",
            )
            time.sleep(1.5)  # a few of the daemon's retry ticks against the full disk
            assert proc.poll() is None, "the daemon died on a full disk"
            ok, stored = read_db(db)
            assert ok, "integrity_check failed while the disk is full"
            assert sorted(stored) == sorted(before), "something was stored while the disk was full"
            stored_refs = {report_ref(rid) for rid in _report_ids(db)}
            unstored = [text for text in receipts(dev) if text.split("#")[1][:4] not in stored_refs]
            assert not unstored, f"receipts went out for reports that were not stored: {unstored}"
            held = log_text.count("STORE FAILED")
            errors = metric(metrics_port, 'siaga_post_events_total{kind="store.errors"}') - errors_before
            assert errors >= during_n, f"metrics count {errors} store errors for {during_n} failed reports"
            assert "Traceback" not in log_text

            # 3. space again, and no new packet: the retry timer alone must store what the daemon holds
            (mount / "filler").unlink()
            freed_at = time.monotonic()
            wait_until(lambda: len(read_db(db)[1]) == before_n + during_n, 60, "the held reports on retry")
            resumed_s = time.monotonic() - freed_at

            # 4. ingest goes on as usual
            stream(dev, after)
            wait_until(lambda: len(read_db(db)[1]) == len(texts), 30, "the reports sent after the disk emptied")
            ok, stored = read_db(db)
            assert ok
            assert sorted(stored) == sorted(texts), "not every injected text is in the store exactly once"
            refs = {report_ref(rid) for rid in _report_ids(db)}
            wait_until(
                lambda: {ref for ref in refs if any(f"#{ref}" in text for text in acked_receipts(dev))} == refs,
                120,
                "a receipt for every report",
            )
            acked = acked_receipts(dev)
            twice = [ref for ref in refs if sum(f"#{ref}" in text for text in acked) != 1]
            assert not twice, f"reports with more than one acknowledged receipt: {twice}"
            assert metric(metrics_port, 'siaga_post_events_total{kind="store.dropped"}') == 0
            assert proc.poll() is None
        finally:
            stop_process(proc, 30)
        log_text = log_path.read_text(errors="replace")
        assert proc.returncode == 0, log_text[-3000:]
        on_retry = log_text.count("stored on retry")
        assert on_retry == during_n, f"{on_retry} reports stored on retry, {during_n} were held"
        assert "lost at stop" not in log_text
        print(
            f"disk full: filler {filler_bytes} bytes, {held} STORE FAILED lines for {during_n} reports held in"
            f" memory (metrics store.errors +{errors:g}) over {freed_at - filled_at:.1f} s;"
            f" all held reports stored {resumed_s:.2f} s after the filler was deleted"
        )


def _report_ids(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT report_id FROM reports")]
    finally:
        conn.close()


def test_hold_overflow_drops_the_oldest_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Past UNSTORED_MAX held reports the oldest is dropped with an ERROR line and a counter, never silently.

    The bound is lowered for the test (production: 1000); the test calls ``retry_unstored`` itself, as the
    post's ``unstored_retry`` job (edge/jobs.py) does twice a second."""
    monkeypatch.setattr(daemon, "UNSTORED_MAX", 4)
    (tmp_path / "run").mkdir()
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))  # as under systemd: not on the full disk
    caplog.set_level(logging.INFO, logger="edge.daemon")
    texts = [f"BANJIR tahan {i}" for i in range(7)]
    with (
        small_tmpfs(tmp_path / "tiny") as mount,
        post_and_device(mount, "tcp", receipts=False, device_kw={"record_path": tmp_path / "sent.jsonl"}) as (
            post,
            dev,
        ),
    ):
        dev.inject_text(HANDSET, "KEBAKARAN sebelum penuh")
        wait_report(post, "sebelum penuh")
        fill(mount / "filler")
        for text in texts:
            dev.inject_text(HANDSET, text)
        wait_until(lambda: post.counters().get("store.errors") == len(texts), 30, "every text to fail to store")
        post.retry_unstored()  # a retry against the full disk keeps what it holds, in order
        assert post.counters().get("store.dropped") == 3
        assert post.healthy(), "held reports must not stop the watchdog: a restart would lose them"
        status = post_status(post.cfg, post.store)  # type: ignore[arg-type]
        assert status["held_in_memory"] == 4 and "reports_held_in_memory" in status["attention"]
        dropped = [r for r in caplog.records if "DROPPED" in r.getMessage()]
        assert len(dropped) == 3 and all(r.levelno == logging.ERROR for r in dropped)
        (mount / "filler").unlink()

        def retried() -> bool:
            post.retry_unstored()
            return len(reports(post)) == 5

        wait_until(retried, 30, "the held reports on retry")
        assert sorted(r.report.text_raw for r in reports(post)) == sorted(["KEBAKARAN sebelum penuh", *texts[3:]])
        assert read_runtime(post.cfg)["held"] == 0  # type: ignore[index]


def test_siaga_run_starts_and_reads_the_radio_on_a_completely_full_disk(tmp_path: Path) -> None:
    """Found in the notes: a post whose disk filled up completely while it was stopped died at start (the
    store would not open: ``disk I/O error``) and read no radio.  The disk reserve (edge/reserve.py) the
    first run made is released, the post starts, reads the radio and stores; once there is room again the
    reserve comes back."""
    texts = [f"BANJIR jalan desa putus uji-awal-penuh {i}" for i in range(5)]
    with small_tmpfs(tmp_path / "tiny") as mount, SimulatedDevice(listen=("127.0.0.1", 0), speed=SPEED, seed=7) as dev:
        dev.add_node(HANDSET, "Petugas Oebubun 01", "OB01")
        config = write_post_config(
            mount,
            extra=f"""
[radio.meshtastic]
host = "127.0.0.1:{dev.port}"
min_send_interval_s = 0.2
ack_timeout_s = 3.0
""",
        )
        cfg = config_mod.load(config)
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        log_path = tmp_path / "siaga-run.log"
        # a first run made the store and the reserve; it stopped; then the disk filled up to the last byte
        first = spawn_siaga_run(config, log_path, env={"RUNTIME_DIRECTORY": str(run_dir)})
        try:
            wait_until(lambda: radio_state(run_dir) == "connected", 60, "the first run's radio")
        finally:
            stop_process(first)
        reserve = reserve_path(cfg.node.data_dir)
        assert cfg.store_path.exists() and reserve.stat().st_size == RESERVE_BYTES
        fill(mount / "filler")
        (run_dir / "runtime.json").unlink()
        proc = spawn_siaga_run(config, log_path, env={"RUNTIME_DIRECTORY": str(run_dir)})
        try:
            wait_until(
                lambda: proc.poll() is not None or radio_state(run_dir) == "connected", 60, "the radio, on a full disk"
            )
            assert proc.poll() is None, f"siaga run died on a full disk: {log_path.read_text(errors='replace')[-2000:]}"
            assert "DISK FULL at start" in log_path.read_text(errors="replace")
            assert not reserve.exists()  # released, and not made again: the disk has not room for it twice
            stream(dev, texts)
            wait_until(lambda: sorted(read_db(cfg.store_path)[1]) == sorted(texts), 60, "the reports, stored")
            assert read_db(cfg.store_path)[0]
        finally:
            stop_process(proc)
        # room again: the next start makes the reserve again
        (mount / "filler").unlink()
        proc = spawn_siaga_run(config, log_path, env={"RUNTIME_DIRECTORY": str(run_dir)})
        try:
            wait_until(lambda: reserve.exists() and reserve.stat().st_size == RESERVE_BYTES, 60, "the reserve, again")
        finally:
            stop_process(proc)
