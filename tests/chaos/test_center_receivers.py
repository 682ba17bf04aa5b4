"""Several center receivers on the shared subscription against one PostgreSQL (issue 14).

Three receivers (separate processes, devkit/harness/center_proc.py) split the posts' reports.  One is
killed mid-stream by construction — it SIGSTOPs itself as a storage commit begins, holding that commit's
messages received but neither stored nor acknowledged, and the test SIGKILLs it there — and restarted;
then every receiver is restarted one by one (SIGTERM, start again).  Every report is stored exactly once
and acknowledged at its post, and the center is online to the posts throughout: each receiver's Last Will
marks only that receiver offline (112/v1/center/receivers/{id}), and a post counts the center online
while any receiver is.  The presence topics are watched by mosquitto_sub, which prints every message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from center.storage import open_storage
from devkit.harness.mosquitto import Mosquitto
from devkit.harness.synctools import Post, make_reports, post_config, wait_for
from sync import protocol
from tests.chaos.test_uplink_chaos import assert_exactly_once

REPO = Path(__file__).resolve().parent.parent.parent
RECEIVERS = ("siaga-center-r1", "siaga-center-r2", "siaga-center-r3")
POSTS = ("oebubun", "napan", "kefa-kota")

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]


class PresenceWatch:
    """Every receiver presence message the broker routes, in order; remembers whether, once a receiver had
    been online, a moment came when none was."""

    def __init__(self, mosquitto: Mosquitto) -> None:
        self.states: dict[str, protocol.CenterState] = {}
        self.log: list[tuple[str, str]] = []
        self.gaps: list[dict[str, str]] = []
        self._cond = threading.Condition()
        self._proc = subprocess.Popen(
            [
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                str(mosquitto.port),
                "-q",
                "1",
                "-v",
                "-t",
                protocol.CENTER_RECEIVERS_FILTER,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            topic, _, payload = line.rstrip("\n").partition(" ")
            receiver = protocol.parse_center_receiver_topic(topic)
            if receiver is None or not payload:
                continue
            state = protocol.decode_center_state(payload.encode())
            with self._cond:
                was_online = any(s.state == "online" for s in self.states.values())
                self.states[receiver] = state
                self.log.append((receiver, state.state))
                print(f"{time.monotonic():.2f} presence {receiver} {state.state} at={state.at} beat={state.beat}")
                if was_online and not self.online():
                    self.gaps.append({r: s.state for r, s in self.states.items()})
                self._cond.notify_all()

    def online(self) -> list[str]:
        return sorted(r for r, s in self.states.items() if s.state == "online")

    def wait(self, predicate: object, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():  # type: ignore[operator]
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def at(self, receiver: str) -> str | None:
        with self._cond:
            state = self.states.get(receiver)
            return state.at if state else None

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def _start(db_url: str, broker_url: str, client_id: str, log: Path, *extra: str) -> subprocess.Popen[str]:
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devkit.harness.center_proc", db_url, broker_url, "--client-id", client_id, *extra],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY", log.read_text(errors="replace")[-2000:]
    return proc


def _close(proc: subprocess.Popen[str]) -> None:
    if proc.stdout is not None:
        proc.stdout.close()


def _stopped(proc: subprocess.Popen[str]) -> bool:
    """The process is stopped (SIGSTOP): state T in /proc/PID/stat."""
    stat = Path(f"/proc/{proc.pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] in "Tt"


def _undelivered(posts: list[Post]) -> int:
    return sum(p.store.counts()["pending"] + p.store.counts()["sent"] for p in posts)


@pytest.mark.timeout(600)
def test_three_receivers_one_killed_mid_stream_then_a_rolling_restart(
    tmp_path: Path, mosquitto: Mosquitto, pg_url: str
) -> None:
    open_storage(pg_url).close()  # the schema, before three processes start
    log = tmp_path / "receivers.log"
    watch = PresenceWatch(mosquitto)
    posts = [Post(post_config(tmp_path / p, [mosquitto.url], post_id=p, ack_timeout_s=10.0)) for p in POSTS]
    procs: dict[str, subprocess.Popen[str]] = {}
    ids: list[str] = []
    try:
        procs["siaga-center-r1"] = _start(pg_url, mosquitto.url, "siaga-center-r1", log)
        # r2 stops itself as its 3rd commit begins: mid-stream, holding that commit's messages
        procs["siaga-center-r2"] = _start(pg_url, mosquitto.url, "siaga-center-r2", log, "--stop-before-commit", "3")
        procs["siaga-center-r3"] = _start(pg_url, mosquitto.url, "siaga-center-r3", log)
        assert watch.wait(lambda: watch.online() == list(RECEIVERS), 30), watch.log
        for post in posts:
            ids += post.put(make_reports(1500, post_id=post.cfg.node.post_id))
            post.start()
        for post in posts:
            assert wait_for(lambda post=post: post.uplink.state()["center"] == "online", 20)

        # 1. r2 killed mid-stream, by construction
        r2 = procs["siaga-center-r2"]
        assert wait_for(lambda: _stopped(r2), 60), "r2 never reached its 3rd commit"
        assert _undelivered(posts) > 0, "the stream was over before the kill"
        r2.send_signal(signal.SIGKILL)
        assert r2.wait(10) == -signal.SIGKILL
        _close(r2)
        assert watch.wait(lambda: "siaga-center-r2" not in watch.online(), 20), watch.log  # its Last Will
        assert watch.online() == ["siaga-center-r1", "siaga-center-r3"]
        assert all(p.uplink.state()["center"] == "online" for p in posts)
        procs["siaga-center-r2"] = _start(pg_url, mosquitto.url, "siaga-center-r2", log)
        assert watch.wait(lambda: watch.online() == list(RECEIVERS), 30), watch.log

        # 2. a rolling restart, with reports still flowing
        for n, receiver in enumerate(RECEIVERS):
            for post in posts:
                ids += post.put(make_reports(300, post_id=post.cfg.node.post_id, text=f"BANJIR gelombang {n}"))
            before = watch.at(receiver)
            procs[receiver].send_signal(signal.SIGTERM)
            assert procs[receiver].wait(20) == 0, log.read_text(errors="replace")[-2000:]
            _close(procs[receiver])
            assert watch.wait(lambda receiver=receiver: receiver not in watch.online(), 20), watch.log
            assert len(watch.online()) == 2 and all(p.uplink.state()["center"] == "online" for p in posts)
            procs[receiver] = _start(pg_url, mosquitto.url, receiver, log)
            assert watch.wait(
                lambda receiver=receiver, before=before: receiver in watch.online() and watch.at(receiver) != before, 30
            ), watch.log

        for post in posts:
            assert post.wait_delivered(len(ids) // len(posts), 180), post.store.counts()
        with open_storage(pg_url) as storage:
            assert_exactly_once(storage, ids)
            receivers = {r.receiver_id: r for r in storage.receivers()}
        assert set(receivers) == set(RECEIVERS) and all(r.state == "online" for r in receivers.values())
        assert all(r.last_beat_at is not None for r in receivers.values())
        # the center was online to the posts from the first receiver's start to the end
        assert watch.gaps == [], watch.gaps
        assert all(p.uplink.state()["center"] == "online" for p in posts)
        offline = [r for r, s in watch.log if s == "offline"]
        assert offline.count("siaga-center-r2") == 2 and offline.count("siaga-center-r1") == 1, watch.log
    finally:
        for post in posts:
            post.stop()
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            _close(proc)
        watch.stop()
