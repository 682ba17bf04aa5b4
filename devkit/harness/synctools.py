"""Helpers for the sync tests and benches: configs, a post (Store + Uplink) and a center harness.

Everything here is real: a Store file in tmp_path, the real Uplink and Receiver against a real broker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from center.service import CenterService
from center.storage import CenterStorage, open_storage
from edge.jobs import UPLINK_JOBS, JobScheduler
from edge.store import Store
from siaga import config as config_mod
from siaga.clock import Clock, SystemClock
from siaga.config import Config
from siaga.report import Report, new_report_id, utcnow
from sync.uplink import Uplink


def post_config(
    data_dir: Path,
    urls: Iterable[str],
    *,
    post_id: str = "oebubun",
    regency: str = "ttu",
    keepalive_s: int = 5,
    ack_timeout_s: float = 5.0,
    inflight: int = 20,
    batch_max_bytes: int = 16 * 1024,
    compress: bool = False,
    heartbeat_s: float = 60.0,
    mqtt_extra: dict[str, Any] | None = None,
) -> Config:
    return config_mod.from_dict(
        {
            "node": {"post_id": post_id, "regency": regency, "name": f"Pos {post_id}", "data_dir": str(data_dir)},
            "uplink": {
                "mqtt": {
                    "urls": list(urls),
                    "keepalive_s": keepalive_s,
                    "ack_timeout_s": ack_timeout_s,
                    "inflight": inflight,
                    "batch_max_bytes": batch_max_bytes,
                    "compress": compress,
                    "heartbeat_s": heartbeat_s,
                    **(mqtt_extra or {}),
                }
            },
        }
    )


def center_config(
    db_url: str,
    urls: Iterable[str],
    *,
    mqtt_extra: dict[str, Any] | None = None,
    relay_secret_file: Path | None = None,
) -> Config:
    """``relay_secret_file``: the regency relay secret (hex, mode 0600) that verifies carried reports."""
    center: dict[str, Any] = {
        "db": db_url,
        "mqtt": {"urls": list(urls), "keepalive_s": 5, "regency": "+", **(mqtt_extra or {})},
    }
    if relay_secret_file is not None:
        center["relay"] = {"secret_file": str(relay_secret_file)}
    return config_mod.from_dict({"center": center}, require_post=False)


def make_reports(n: int, post_id: str = "oebubun", *, text: str = "KEBAKARAN rumah warga dekat pasar") -> list[Report]:
    now = utcnow()
    out = []
    for i in range(n):
        out.append(
            Report(
                report_id=new_report_id(),
                post_id=post_id,
                origin=f"!{0xA1000000 + i % 50:08x}",
                source="manual",
                text_raw=f"{text} #{i}",
                observed_at=now,
                stored_at=now,
                category="kebakaran" if i % 3 else "medis",
            )
        )
    return out


class RecordingEvents:
    """UplinkEvents that remember what arrived (thread-safe)."""

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.commands: list[dict[str, Any]] = []
        self._cv = threading.Condition()

    def on_delivered(self, report_ids: list[str], committed_at: datetime | None = None) -> None:
        with self._cv:
            self.delivered.extend(report_ids)
            self._cv.notify_all()

    def on_command(self, command: dict[str, Any]) -> None:
        with self._cv:
            self.commands.append(command)
            self._cv.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._cv:
            return self._cv.wait_for(predicate, timeout)


class Post:
    """A post without radio: a Store file, the Uplink, and the uplink's jobs of the post's table."""

    def __init__(self, cfg: Config, *, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.store = Store.open(cfg.store_path, clock=self.clock)
        self.events = RecordingEvents()
        self.uplink = Uplink(cfg, self.store, clock=self.clock, events=self.events)
        self._jobs = JobScheduler(cfg, self, UPLINK_JOBS)

    def put(self, reports: Iterable[Report]) -> list[str]:
        ids = [self.store.put(r).report_id for r in reports]
        self.uplink.wake()
        return ids

    def start(self) -> Post:
        self.store.bump_boot_counter()  # as the daemon does at each start
        self.uplink.start()
        self._jobs.start()
        return self

    def stop(self) -> None:
        self._jobs.stop()
        self.uplink.stop()
        self.store.close()

    def wait_delivered(self, n: int, timeout: float) -> bool:
        return wait_for(lambda: self.store.counts()["delivered"] >= n, timeout)


class Center:
    """A center in this process: storage + CenterService (receiver + outbox)."""

    def __init__(self, db_url: str, urls: Iterable[str], *, client_id: str = "siaga-center-test", **kw: Any) -> None:
        self.cfg = center_config(db_url, urls, **kw)
        self.storage: CenterStorage = open_storage(db_url)
        self.service = CenterService(self.cfg, storage=self.storage, client_id=client_id)

    def start(self, wait: bool = True) -> Center:
        self.service.start()
        assert self.service.receiver is not None
        if wait:
            assert self.service.receiver.wait_connected(10), self.service.receiver.state()
        return self

    def stop(self) -> None:
        self.service.stop()
        self.storage.close()

    @property
    def receiver(self) -> Any:
        return self.service.receiver


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())


def center_report_ids(storage: CenterStorage) -> list[str]:
    """Every wire report id the center holds a copy of (one per report and post)."""
    return [r["wire_report_id"] for r in storage.query("SELECT wire_report_id FROM report_copies")]
