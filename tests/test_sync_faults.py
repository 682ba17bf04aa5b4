"""Faults mid-drain, each ending in: 0 lost, 0 duplicates at the center, every report ``delivered`` at the post.

* the broker killed (SIGKILL) and restarted several times;
* the post daemon (``siaga run``) killed with SIGKILL and started again;
* the center killed right after its commit, before its ack;
* the TCP path going silent without a close (a proxy that stops forwarding), then coming back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from center.storage import CenterStorage, open_storage
from edge.config import TlsMqttConfig
from edge.store import Store
from sync import protocol
from sync.linkproxy import LinkProxy
from sync.mqtt import BrokerAddress, Message, MqttLink
from tests.conftest import REPO
from tests.mosquitto import Mosquitto, mosquitto  # noqa: F401 - fixture
from tests.synctools import (
    Center,
    Post,
    center_report_ids,
    make_reports,
    post_config,
    wait_for,
)

pytestmark = pytest.mark.chaos


def assert_exactly_once(storage: CenterStorage, ids: list[str]) -> None:
    got = center_report_ids(storage)
    assert len(got) == len(set(got)), "a report is stored twice at the center"
    assert sorted(got) == sorted(ids), f"missing {len(set(ids) - set(got))}, unexpected {len(set(got) - set(ids))}"
    assert storage.counts()["reports"] == len(ids)


def test_broker_killed_and_restarted_mid_drain(tmp_path: Path, mosquitto: Mosquitto, center: Center) -> None:  # noqa: F811
    post = Post(post_config(tmp_path / "post", [mosquitto.url]))
    try:
        ids = post.put(make_reports(10000))
        post.start()
        for round_ in range(3):
            target = 1500 * (round_ + 1)
            assert wait_for(lambda target=target: center.storage.counts()["reports"] >= target, 15)
            assert post.store.counts()["delivered"] < 10000, "the drain finished before the kill: not mid-drain"
            mosquitto.restart(kill=True, down_s=0.3)
        assert post.wait_delivered(10000, 60), post.store.counts()
        assert_exactly_once(center.storage, ids)
        assert post.uplink.counters["disconnects"] >= 3
        assert post.store.counts() == {"pending": 0, "sent": 0, "delivered": 10000, "rejected": 0}
    finally:
        post.stop()


def _siaga_run(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SIAGA_CONFIG", None)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "--config", str(config), "run"],
            stdout=out,
            stderr=out,
            cwd=REPO,
            env=env,
        )


def test_post_daemon_sigkilled_mid_drain(tmp_path: Path, mosquitto: Mosquitto, center: Center) -> None:  # noqa: F811
    data = tmp_path / "post"
    config = tmp_path / "siaga.toml"
    config.write_text(
        f"""
[node]
post_id = "oebubun"
regency = "ttu"
data_dir = "{data}"

[uplink.mqtt]
url = "{mosquitto.url}"
keepalive_s = 5
ack_timeout_s = 5
""",
        encoding="utf-8",
    )
    with Store.open(data / "post.db") as store:
        ids = [store.put(r).report_id for r in make_reports(6000)]
    log = tmp_path / "daemon.log"
    daemon = _siaga_run(config, log)
    try:
        assert wait_for(lambda: center.storage.counts()["reports"] >= 800, 20), log.read_text()[-2000:]
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(5)
        assert center.storage.counts()["reports"] < 6000, "the drain finished before the kill: nothing tested"
        # the broker saw the socket close without DISCONNECT: the Last Will says offline
        assert wait_for(lambda: (p := center.storage.get_post("oebubun")) is not None and p.state == "offline", 10)
        daemon = _siaga_run(config, log)
        with Store.open(data / "post.db", check=False) as store:
            assert wait_for(lambda: store.counts()["delivered"] == 6000, 30), store.counts()
            assert store.counts() == {"pending": 0, "sent": 0, "delivered": 6000, "rejected": 0}
        assert_exactly_once(center.storage, ids)
        assert wait_for(lambda: center.storage.get_post("oebubun").state == "online", 10)  # type: ignore[union-attr]
        assert center.storage.get_post("oebubun").boot_counter == 2  # type: ignore[union-attr]
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


def _center_proc(db_url: str, broker_url: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.center_proc", db_url, broker_url, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    return proc


def test_center_killed_between_commit_and_ack(tmp_path: Path, mosquitto: Mosquitto) -> None:  # noqa: F811
    db_url = f"sqlite:///{tmp_path}/center.db"
    open_storage(db_url).close()
    post = Post(post_config(tmp_path / "post", [mosquitto.url], ack_timeout_s=5.0))
    # the center commits every waiting batch in one transaction, so the first commit already holds many
    doomed = _center_proc(db_url, mosquitto.url, "1")
    try:
        ids = post.put(make_reports(500))
        post.start()
        assert doomed.wait(15) == -signal.SIGKILL
        with open_storage(db_url) as storage:
            committed = storage.counts()["reports"]
        assert committed > 0, "the center died before committing anything: nothing tested"
        assert post.store.counts()["delivered"] < 500
        center = _center_proc(db_url, mosquitto.url)
        try:
            assert post.wait_delivered(500, 30), post.store.counts()
        finally:
            center.send_signal(signal.SIGTERM)
            center.wait(10)
            for pipe in (center.stdout, doomed.stdout):
                if pipe is not None:
                    pipe.close()
        with open_storage(db_url) as storage:
            assert_exactly_once(storage, ids)
            # the reports committed before the kill were sent again (no ack came) and stored once
            resent = storage.query("SELECT count(*) AS n FROM report_copies WHERE receipts > 1")[0]["n"]
            assert resent >= 1
    finally:
        post.stop()
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait()
        if doomed.stdout is not None:
            doomed.stdout.close()


def test_tcp_path_cut_without_close(tmp_path: Path, mosquitto: Mosquitto, center: Center) -> None:  # noqa: F811
    with LinkProxy("127.0.0.1", mosquitto.port) as proxy:
        post = Post(post_config(tmp_path / "post", [f"mqtt://127.0.0.1:{proxy.port}"], keepalive_s=5))
        try:
            ids = post.put(make_reports(3000))
            post.start()
            assert wait_for(lambda: center.storage.counts()["reports"] >= 300, 15)
            proxy.cut()
            cut_at = time.monotonic()
            # nothing closed the socket: only the keepalive can tell the post its link is dead
            assert wait_for(lambda: not post.uplink.state()["connected"], 15), "the dead link was never noticed"
            noticed_s = time.monotonic() - cut_at
            assert post.store.counts()["delivered"] < 3000
            proxy.restore()
            assert post.wait_delivered(3000, 30), post.store.counts()
            assert_exactly_once(center.storage, ids)
            assert noticed_s > 1  # sanity: it really was the keepalive, not a close
        finally:
            post.stop()


class _Sink:
    def __init__(self) -> None:
        self.pubacks = 0

    def on_message(self, link: MqttLink, message: Message) -> None: ...

    def on_published(self, link: MqttLink, mid: int, ok: bool, reason: str) -> None:
        self.pubacks += 1

    def on_disconnected(self, link: MqttLink, reason: str) -> None: ...


@pytest.mark.slow
def test_reconnect_over_a_slow_link_with_a_full_session(tmp_path: Path, mosquitto: Mosquitto, center: Center) -> None:  # noqa: F811
    """While the post was away its broker session filled up (acks, replies); over 32 kbit/s they take longer to
    arrive than any SUBACK timeout.  The post must not re-subscribe and drop the link in a loop."""
    cfg = post_config(tmp_path / "post", [mosquitto.url])
    first = Post(cfg).start()
    assert wait_for(lambda: first.uplink.state()["connected"], 10)
    first.stop()  # the session (and its subscriptions) stays at the broker
    backlog = MqttLink(
        TlsMqttConfig(urls=(mosquitto.url,)),
        BrokerAddress.parse(mosquitto.url),
        client_id="backlog",
        handler=(sink := _Sink()),
        session_expiry_s=0,
    )
    backlog.open(10)
    try:
        stale = protocol.encode_ack([f"stale-report-{i:06d}" for i in range(40)])
        for _ in range(60):  # ~60 KB queued for the post: ~15 s at 32 kbit/s
            backlog.publish(protocol.topic("ttu", "oebubun", "ack"), stale)
        assert wait_for(lambda: sink.pubacks == 60, 10)
    finally:
        backlog.close()
    with LinkProxy("127.0.0.1", mosquitto.port, delay_s=0.1, bandwidth_bps=32_000) as proxy:
        slow = post_config(tmp_path / "post", [f"mqtt://127.0.0.1:{proxy.port}"], keepalive_s=30)
        post = Post(slow)
        try:
            [rid] = post.put(make_reports(1))
            post.start()
            assert post.wait_delivered(1, 45), post.uplink.state()
            assert post.uplink.counters["connect_failures"] == 0 and post.uplink.counters["connects"] == 1
            assert center.storage.get_report(rid) is not None
        finally:
            post.stop()
