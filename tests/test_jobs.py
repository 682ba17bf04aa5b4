"""edge/jobs.py: the post's one table of periodic work and its one scheduler thread."""

from __future__ import annotations

import threading
from pathlib import Path

from edge.jobs import JOBS, UPLINK_JOBS, Job, JobScheduler
from siaga import config as config_mod
from siaga.config import Config


def _cfg(tmp_path: Path, *, mqtt: bool) -> Config:
    data: dict = {"node": {"post_id": "oebubun", "data_dir": str(tmp_path)}}
    if mqtt:
        data["uplink"] = {"mqtt": {"url": "mqtt://127.0.0.1:1", "ack_timeout_s": 8.0, "heartbeat_s": 45}}
    return config_mod.from_dict(data)


def test_every_periodic_job_of_the_post_is_in_the_one_table_once() -> None:
    names = [job.name for job in JOBS]
    assert len(names) == len(set(names))
    for wanted in ("heartbeat", "release_stale", "retention", "receipt_flush", "node_flush", "unstored_retry"):
        assert names.count(wanted) == 1, wanted  # retention used to run twice (uplink and daemon tick)
    assert {job.name for job in UPLINK_JOBS} <= set(names)


def test_intervals_come_from_the_config_and_uplink_jobs_need_an_uplink(tmp_path: Path) -> None:
    with_mqtt = {job.name: job.every_s(_cfg(tmp_path, mqtt=True)) for job in JOBS}
    assert with_mqtt["heartbeat"] == 45 and with_mqtt["release_stale"] == 2.0  # a quarter of the ack timeout
    without = JobScheduler(_cfg(tmp_path, mqtt=False), object(), JOBS)  # type: ignore[arg-type]
    assert "heartbeat" not in without.names and "release_stale" not in without.names
    assert "retention" in without.names


class _Owner:
    def __init__(self) -> None:
        self.threads: list[str] = []
        self.failures = 0
        self.done = threading.Event()

    def work(self) -> None:
        self.threads.append(threading.current_thread().name)
        self._check()

    def fail(self) -> None:
        self.threads.append(threading.current_thread().name)
        self.failures += 1
        self._check()
        raise RuntimeError("a bug in a job")

    def _check(self) -> None:
        if len(self.threads) >= 6 and self.failures >= 2:
            self.done.set()


def test_jobs_run_on_one_named_thread_and_a_failing_job_runs_again(tmp_path: Path) -> None:
    owner = _Owner()
    jobs: tuple[Job[_Owner], ...] = (
        Job("work", lambda cfg: 0.05, _Owner.work, first_s=0.0),
        Job("fail", lambda cfg: 0.05, _Owner.fail, first_s=0.0),
    )
    scheduler = JobScheduler(_cfg(tmp_path, mqtt=False), owner, jobs)
    scheduler.start()
    try:
        assert owner.done.wait(30)
    finally:
        scheduler.stop()
    # the failing job was logged and ran again at its next time
    assert len(set(owner.threads)) == 1 and owner.threads[0].startswith("siaga-jobs")
    scheduler.stop()  # twice is harmless
