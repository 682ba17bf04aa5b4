"""Chaos on the uplink (issue 7): faults mid-drain, each ending in 0 lost, 0 duplicates at the center and every
report ``delivered`` at the post.

* the broker SIGKILLed and restarted again and again during a drain (20× with ``--full``);
* the center SIGKILLed again and again (10× with ``--full``), alternating kills at random moments with kills
  right after a storage commit and before its ack, restarted each time on the same database;
* the uplink flapping — down and up every 1–10 s, silently (a blackhole: nothing passes, nothing closes) or
  refused (connections reset) — for 3 minutes with ``--full`` while reports keep arriving at the post; after
  the last recovery everything is delivered within 10 s;
* a link that resets connections during the MQTT handshake, retried within the reconnect backoff;
* the post daemon (``siaga run``) SIGKILLed mid-drain and started again;
* the TCP path silenced without a close, noticed by the keepalive;
* a reconnect over a slow link behind a full broker session.

Every test draws its random schedule from one seed, printed; ``SIAGA_CHAOS_SEED=<seed>`` repeats it.
Real parts throughout: a Mosquitto per test, the real Uplink on a real SQLite store, a real center (in this
process, or as a child process that can be SIGKILLed) on a real SQLite database.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from center.storage import CenterStorage, open_storage
from devkit.harness.mosquitto import Mosquitto
from devkit.harness.procs import spawn_siaga_run, stop_process
from devkit.harness.synctools import (
    Center,
    Post,
    center_report_ids,
    make_reports,
    post_config,
    wait_for,
)
from devkit.linkproxy import LinkProxy
from edge.store import Store
from siaga.config import TlsMqttConfig
from sync import protocol
from sync.mqtt import BrokerAddress, Message, MqttLink
from sync.uplink import CONNECT_TIMEOUT_S
from tests.conftest import REPO, Budget

pytestmark = pytest.mark.chaos

#: The bound issue 7 sets on recovery: after the link's last return, the post's whole queue is delivered
#: within this time.  A functional requirement (a report must not linger after the link is back), not a speed
#: figure: it is asserted, and the measured value is printed and named in the failure.
DRAIN_AFTER_RECOVERY_S = 10.0


def _seed() -> tuple[int, random.Random]:
    seed = int(os.environ.get("SIAGA_CHAOS_SEED", random.randrange(1 << 30)))
    print(f"\nseed {seed} (SIAGA_CHAOS_SEED={seed} repeats the schedule)")
    return seed, random.Random(seed)


def assert_exactly_once(storage: CenterStorage, ids: list[str]) -> None:
    got = center_report_ids(storage)
    assert len(got) == len(set(got)), f"{len(got) - len(set(got))} reports stored twice at the center"
    assert sorted(got) == sorted(ids), f"missing {len(set(ids) - set(got))}, unexpected {len(set(got) - set(ids))}"
    assert storage.counts()["reports"] == len(ids)


def _all_delivered(n: int) -> dict[str, int]:
    return {"pending": 0, "sent": 0, "delivered": n, "rejected": 0}


def _at_least(count: Callable[[], int], target: int) -> Callable[[], bool]:
    return lambda: count() >= target


def _undelivered(store: Store) -> int:
    counts = store.counts()
    return counts["pending"] + counts["sent"]


# ------------------------------------------------------------------ 1. the broker killed again and again
@pytest.mark.timeout(900)
def test_broker_sigkilled_and_restarted_again_and_again_mid_drain(
    tmp_path: Path, mosquitto: Mosquitto, center: Center, budget: Budget
) -> None:
    """Each kill is a crash (SIGKILL: the broker's last second of persisted state is lost with it — queued
    acks, reports it had PUBACKed but not yet passed on), made at a random moment after the drain made
    progress since the previous restart, with the broker down for a random 0–1 s (longer when the queue is
    topped up meanwhile, so that the next kill lands mid-drain too)."""
    kills = budget.pick(5, 20)
    seed, rng = _seed()
    post = Post(post_config(tmp_path / "post", [mosquitto.url]))
    t0 = time.monotonic()
    try:
        ids = post.put(make_reports(4000))
        post.start()
        dry = 0  # times the drain emptied the queue before the kill could land (more work was put in)
        downs: list[float] = []
        for kill in range(kills):
            for _attempt in range(5):
                # the drain resumed after the previous restart (the post reconnected and the center got more)
                target = center.storage.counts()["reports"] + rng.randint(50, 400)

                def moved_on(target: int = target) -> bool:
                    return center.storage.counts()["reports"] >= target or _undelivered(post.store) == 0

                assert wait_for(moved_on, 60, every=0.1), (
                    f"seed {seed}: no progress before kill {kill + 1}: {post.store.counts()}, {post.uplink.state()}"
                )
                time.sleep(rng.uniform(0.0, 0.3))
                if _undelivered(post.store) > 0:
                    break
                # the drain outran this machine's schedule: more work, and wait for the drain again
                dry += 1
                ids += post.put(make_reports(2000, text=f"BANJIR susulan {kill} {len(ids)}"))
            else:
                pytest.fail(f"seed {seed}: the drain always finished before kill {kill + 1} could land")
            down_s = rng.uniform(0.0, 1.0)
            mosquitto.kill()
            down_at = time.monotonic()
            # Nothing drains while the broker is down: top the queue up now, so that the next kill lands mid-drain
            # too (the drain is faster than putting reports one fsync at a time).
            while kill < kills - 1 and _undelivered(post.store) < 3000:
                ids += post.put(make_reports(1000, text=f"BANJIR gelombang {kill} {len(ids)}"))
            time.sleep(max(0.0, down_at + down_s - time.monotonic()))
            downs.append(time.monotonic() - down_at)
            mosquitto.start()
        killed_at = time.monotonic()
        assert post.wait_delivered(len(ids), 120), f"seed {seed}: {post.store.counts()}, {post.uplink.state()}"
        drained_s = time.monotonic() - killed_at
        assert_exactly_once(center.storage, ids)
        assert post.store.counts() == _all_delivered(len(ids))
        assert mosquitto.starts == kills + 1
        assert post.uplink.counters["disconnects"] >= kills, post.uplink.counters
        print(
            f"broker SIGKILLs {kills}, reports {len(ids)}, drained {drained_s:.1f} s after the last restart,"
            f" total {time.monotonic() - t0:.1f} s, post connects {post.uplink.counters['connects']},"
            f" reports published {post.uplink.counters['published_reports']}, queue ran dry {dry}×,"
            f" broker down {min(downs):.2f}–{max(downs):.2f} s"
        )
    finally:
        post.stop()


# ------------------------------------------------------------------ 2. the center killed again and again
def _center_proc(db_url: str, broker_url: str, log: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devkit.harness.center_proc", db_url, broker_url, *extra],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=REPO,
            env=env,
        )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY", log.read_text(errors="replace")[-2000:]
    return proc


def _reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _count_reports(db: Path) -> int:
    """Reports committed at the center, read without taking its write lock (its storage's reads would)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return int(conn.execute("SELECT count(*) FROM reports").fetchone()[0])


def _count_receipts(db: Path) -> int:
    """Every copy the center committed, first or again: grows with each commit, even one of repeats only."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return int(conn.execute("SELECT coalesce(sum(receipts), 0) FROM report_copies").fetchone()[0])


@pytest.mark.timeout(900)
def test_center_sigkilled_again_and_again_some_between_commit_and_ack(
    tmp_path: Path, mosquitto: Mosquitto, budget: Budget
) -> None:
    """Kills alternate: a plain SIGKILL at a random moment of an active drain, then one the center deals itself
    right after its Nth storage commit, before that batch's ack is published (tests/center_proc.py).  The
    reports of such a commit are at the center but ``sent`` at the post: they must be stored once although
    they arrive again (the broker redelivers the unacknowledged message, the post resends)."""
    kills = budget.pick(3, 10)
    seed, rng = _seed()
    db = tmp_path / "center.db"
    db_url = f"sqlite:///{db}"
    open_storage(db_url).close()
    log = tmp_path / "center.log"
    post = Post(post_config(tmp_path / "post", [mosquitto.url], ack_timeout_s=5.0))
    procs: list[subprocess.Popen[str]] = []
    commit_kills = 0
    t0 = time.monotonic()
    try:
        ids = post.put(make_reports(5000))
        post.start()
        for kill in range(kills):
            # No center runs now, so the drain waits: top the queue up so that this center cannot finish it.  One
            # commit holds up to 64 batches (~1,600 reports); a plain kill comes within ~1 s of drain.
            while _undelivered(post.store) < 5000:
                ids += post.put(make_reports(1000, text=f"TANAH LONGSOR gelombang {kill} {len(ids)}"))
            before, receipts_before = _count_reports(db), _count_receipts(db)
            if kill % 2:
                # dies by itself after its Nth commit, before the ack: the window between commit and ack
                proc = _center_proc(db_url, mosquitto.url, log, str(rng.randint(1, 3)))
                procs.append(proc)
                try:
                    code = proc.wait(60)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"seed {seed}: the center never reached its commit-then-die point")
                assert code == -signal.SIGKILL, f"the center exited {code}: {log.read_text()[-2000:]}"
                commit_kills += 1
                # (its commits may hold only reports it already had: messages the broker redelivers come first)
                assert _count_receipts(db) > receipts_before, "the center died before committing: nothing tested"
            else:
                proc = _center_proc(db_url, mosquitto.url, log)
                procs.append(proc)
                target = before + rng.randint(1, 500)
                assert wait_for(_at_least(lambda: _count_reports(db), target), 60, every=0.1), (
                    f"seed {seed}: no progress before kill {kill + 1}: {post.store.counts()}"
                )
                time.sleep(rng.uniform(0.0, 1.0))
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(10) == -signal.SIGKILL
            assert _undelivered(post.store) > 0, f"kill {kill + 1} was not mid-drain"
            _reap(proc)
        killed_at = time.monotonic()
        survivor = _center_proc(db_url, mosquitto.url, log)
        procs.append(survivor)
        try:
            assert post.wait_delivered(len(ids), 120), f"seed {seed}: {post.store.counts()}, {post.uplink.state()}"
            drained_s = time.monotonic() - killed_at
        finally:
            survivor.send_signal(signal.SIGTERM)
            survivor.wait(10)
        assert post.store.counts() == _all_delivered(len(ids))
        with open_storage(db_url) as storage:
            assert_exactly_once(storage, ids)
            # what was committed before a commit-then-die kill came again (no ack had gone out) and was stored once
            resent = storage.query("SELECT count(*) AS n FROM report_copies WHERE receipts > 1")[0]["n"]
        assert resent >= 1
        print(
            f"center SIGKILLs {kills} ({commit_kills} between commit and ack), reports {len(ids)},"
            f" received more than once {resent}, drained {drained_s:.1f} s after the last restart,"
            f" total {time.monotonic() - t0:.1f} s"
        )
    finally:
        post.stop()
        for proc in procs:
            _reap(proc)


# ------------------------------------------------------------------ 3. the uplink flapping
class _Trickle:
    """Reports arriving at the post at a steady, slightly random pace (1–5 every 0.05–0.5 s)."""

    def __init__(self, post: Post, rng: random.Random) -> None:
        self.post = post
        self.rng = random.Random(rng.random())  # its own stream: the link schedule stays repeatable
        self.ids: list[str] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trickle", daemon=True)
        self._round = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def put(self, n: int) -> None:
        self._round += 1
        self.ids += self.post.put(make_reports(n, text=f"pohon tumbang menutup jalan {self._round}"))

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.rng.uniform(0.05, 0.5)):
                self.put(self.rng.randint(1, 5))
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc


@pytest.mark.timeout(900)
def test_uplink_flapping_then_drained_within_10_s_of_the_last_recovery(
    tmp_path: Path, mosquitto: Mosquitto, center: Center, budget: Budget
) -> None:
    """The link between post and broker goes down and up every 1–10 s (random), alternating the two kinds of
    down: a silent blackhole (``LinkProxy.cut``: no FIN, no RST; only the keepalive can tell) and a refused
    link (``LinkProxy.down``: connections reset, new ones refused).  Reports arrive throughout: a backlog at
    the start and a steady trickle.  After the last recovery the post must have delivered everything within
    :data:`DRAIN_AFTER_RECOVERY_S`, exactly once."""
    flap_for_s = budget.pick(40.0, 180.0)
    seed, rng = _seed()
    with LinkProxy("127.0.0.1", mosquitto.port) as proxy:
        # the shortest keepalive the config allows, so that the longer silent cuts are noticed (paho gives up
        # ≈ 2 keepalives after the last packet in, the broker after 1.5); the shorter ones just pause the link
        cfg = post_config(tmp_path / "post", [f"mqtt://127.0.0.1:{proxy.port}"], keepalive_s=5, ack_timeout_s=5.0)
        post = Post(cfg)
        trickle = _Trickle(post, rng)
        downs = {"cut": 0, "down": 0}
        kind = rng.choice(("cut", "down"))
        try:
            backlog = post.put(make_reports(2000))
            post.start()
            trickle.start()
            t0 = time.monotonic()
            while True:
                time.sleep(rng.uniform(1.0, 10.0))  # up
                if kind == "cut":
                    proxy.cut()
                else:
                    proxy.down()
                downs[kind] += 1
                down_for = rng.uniform(1.0, 10.0)
                last = time.monotonic() + down_for - t0 >= flap_for_s
                if last:
                    # the trickle ends while the link is down, its last report stored just before the recovery:
                    # the measured drain then always includes work that waited for the link
                    time.sleep(max(0.0, down_for - 0.5))
                    trickle.stop()
                    trickle.put(1)
                    time.sleep(0.5)
                    delivered_before = len(post.events.delivered)
                else:
                    time.sleep(down_for)
                proxy.restore()
                if last:
                    break
                kind = "down" if kind == "cut" else "cut"
            recovered_at = time.monotonic()
            flapped_s = recovered_at - t0
            assert trickle.error is None, trickle.error
            ids = backlog + trickle.ids
            assert delivered_before < len(ids), "everything was delivered before the last recovery: nothing measured"

            # the timeout only bounds how long a failure takes to report; the bound itself is asserted below
            drained = post.events.wait(lambda: len(post.events.delivered) >= len(ids), 120)
            drain_s = time.monotonic() - recovered_at
            print(
                f"flapped {flapped_s:.1f} s: {downs['cut']} silent cuts, {downs['down']} refusals;"
                f" reports {len(ids)} ({len(backlog)} backlog + {len(trickle.ids)} trickled), "
                f"{len(ids) - delivered_before} waiting at the last recovery, all delivered {drain_s:.2f} s after it;"
                f" post connects {post.uplink.counters['connects']}, disconnects {post.uplink.counters['disconnects']},"
                f" connect failures {post.uplink.counters['connect_failures']},"
                f" reports published {post.uplink.counters['published_reports']}"
            )
            assert drained, f"seed {seed}: not drained {drain_s:.1f} s after the last recovery: {post.store.counts()}"
            assert drain_s <= DRAIN_AFTER_RECOVERY_S, (
                f"seed {seed}: drained {drain_s:.2f} s after the last recovery (bound {DRAIN_AFTER_RECOVERY_S:g} s)"
            )
            assert downs["cut"] >= 1 and downs["down"] >= 1
            assert sorted(post.events.delivered) == sorted(ids), "a report delivered twice, or one never"
            assert post.store.counts() == _all_delivered(len(ids))
            assert_exactly_once(center.storage, ids)
            # the link really went down under the post (a refusal resets an open connection) and came back
            assert post.uplink.counters["disconnects"] >= 1, post.uplink.counters
            assert post.uplink.counters["connects"] >= 2, post.uplink.counters
        finally:
            trickle.stop()
            post.stop()


# ------------------------------------------------------------------ a link that refuses is retried at once
def test_a_link_that_resets_during_the_handshake_is_retried_within_the_backoff(
    tmp_path: Path, mosquitto: Mosquitto, center: Center
) -> None:
    """A link that accepts the TCP connection and then resets it (``LinkProxy.down``: a NAT or a modem with no
    route) fails the connect at once, so the post tries again after its backoff (≤ 2 s: RECONNECT) — not after
    waiting out CONNECT_TIMEOUT_S (8 s) for a CONNACK that can no longer come: that would miss short uplink
    windows, and after a refusal eat most of the flapping test's 10 s recovery bound."""
    with LinkProxy("127.0.0.1", mosquitto.port) as proxy:
        proxy.down()
        post = Post(post_config(tmp_path / "post", [f"mqtt://127.0.0.1:{proxy.port}"]))
        try:
            [rid] = post.put(make_reports(1))
            post.start()

            def failures() -> int:
                return post.uplink.counters["connect_failures"]

            # three attempts in less time than one CONNACK timeout: none of them waited for it
            assert wait_for(lambda: failures() >= 3, CONNECT_TIMEOUT_S * 0.9), (
                f"{failures()} failed connects in {CONNECT_TIMEOUT_S * 0.9:g} s: {post.uplink.state()['last_error']}"
            )
            proxy.restore()
            assert post.wait_delivered(1, 30), post.uplink.state()
            assert center.storage.get_report(rid) is not None
        finally:
            post.stop()


# ------------------------------------------------------------------ the post daemon killed mid-drain
def test_post_daemon_sigkilled_mid_drain(tmp_path: Path, mosquitto: Mosquitto, center: Center) -> None:
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
    daemon = spawn_siaga_run(config, log)
    try:
        assert wait_for(lambda: center.storage.counts()["reports"] >= 800, 20), log.read_text()[-2000:]
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(5)
        assert center.storage.counts()["reports"] < 6000, "the drain finished before the kill: nothing tested"
        # the broker saw the socket close without DISCONNECT: the Last Will says offline
        assert wait_for(lambda: (p := center.storage.get_post("oebubun")) is not None and p.state == "offline", 10)
        daemon = spawn_siaga_run(config, log)
        with Store.open(data / "post.db", check=False) as store:
            assert wait_for(lambda: store.counts()["delivered"] == 6000, 30), store.counts()
            assert store.counts() == _all_delivered(6000)
        assert_exactly_once(center.storage, ids)
        assert wait_for(lambda: center.storage.get_post("oebubun").state == "online", 10)  # type: ignore[union-attr]
        assert center.storage.get_post("oebubun").boot_counter == 2  # type: ignore[union-attr]
    finally:
        stop_process(daemon)


# ------------------------------------------------------------------ a silent cut, noticed by the keepalive
def test_tcp_path_cut_without_close(tmp_path: Path, mosquitto: Mosquitto, center: Center) -> None:
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


# ------------------------------------------------------------------ a slow link behind a full session
class _Sink:
    def __init__(self) -> None:
        self.pubacks = 0

    def on_message(self, link: MqttLink, message: Message) -> None: ...

    def on_published(self, link: MqttLink, mid: int, ok: bool, reason: str) -> None:
        self.pubacks += 1

    def on_disconnected(self, link: MqttLink, reason: str) -> None: ...


@pytest.mark.slow
def test_reconnect_over_a_slow_link_with_a_full_session(tmp_path: Path, mosquitto: Mosquitto, center: Center) -> None:
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
