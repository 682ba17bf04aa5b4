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

Every fault lands mid-drain by construction, not by racing the clock (tests/chaos/_hold.py): the drain is
held — the center frozen with SIGSTOP, the link proxy cut — the test waits for the state the fault must hit
(the broker holding reports it PUBACKed that the center has not committed, reports stored behind a cut),
then strikes.  A busy machine makes these tests slower, never red.

Every test draws its random schedule from one seed, printed; ``SIAGA_CHAOS_SEED=<seed>`` repeats it.
Real parts throughout: a Mosquitto per test, the real Uplink on a real SQLite store, a real center (in this
process, or as a child process that can be frozen and SIGKILLed) on a real SQLite database.
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
from tests.chaos._hold import HOLD_DEADLINE_S, center_ids, paused, sent_not_at_center, stop, wait_state
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


def _undelivered(store: Store) -> int:
    counts = store.counts()
    return counts["pending"] + counts["sent"]


# ------------------------------------------------------------------ 1. the broker killed again and again
@pytest.mark.timeout(900)
def test_broker_sigkilled_and_restarted_again_and_again_mid_drain(
    tmp_path: Path, mosquitto: Mosquitto, budget: Budget
) -> None:
    """Each kill is a crash (SIGKILL: the broker's last second of persisted state is lost with it — queued
    acks, reports it had PUBACKed but not yet passed on), landed mid-drain by construction: once the drain
    has made progress since the previous restart, the center (a child process) is frozen (SIGSTOP) at a
    random moment of its work; nothing can be acknowledged any more, and the post publishes on until the
    broker holds reports it PUBACKed that the frozen center has not committed — only then is the broker
    SIGKILLed (the center resumed right after).  The broker stays down a random 0–1 s (longer while the
    queue is topped up, so that the next drain is long enough to be caught in progress too)."""
    kills = budget.pick(5, 20)
    seed, rng = _seed()
    db = tmp_path / "center.db"
    db_url = f"sqlite:///{db}"
    open_storage(db_url).close()
    log = tmp_path / "center.log"
    post = Post(post_config(tmp_path / "post", [mosquitto.url]))
    center = _center_proc(db_url, mosquitto.url, log)
    t0 = time.monotonic()
    try:
        ids = post.put(make_reports(4000))
        post.start()
        dry = 0  # times the center had every report when it was frozen (more work was put in under the hold)
        only_at_broker: list[int] = []  # reports only the broker held at each kill
        downs: list[float] = []
        for kill in range(kills):
            # the drain resumed after the previous restart (the post reconnected and the center got more)
            target = _count_reports(db) + rng.randint(50, 400)
            wait_state(
                _progress(db, post.store, target),
                f"seed {seed}: progress before kill {kill + 1} ({post.store.counts()}, {post.uplink.state()})",
            )
            time.sleep(rng.uniform(0.0, 0.3))
            with paused(center):
                if _count_reports(db) >= len(ids):
                    # the drain outran this machine's schedule: put more in; the frozen center cannot take it
                    dry += 1
                    ids += post.put(make_reports(500, text=f"BANJIR susulan {kill} {len(ids)}"))
                held = wait_state(
                    lambda: sent_not_at_center(post.store, db),
                    f"seed {seed}: kill {kill + 1}: the broker to hold reports the frozen center has not",
                )
                only_at_broker.append(len(held))
                time.sleep(rng.uniform(0.0, 0.2))  # the post may be publishing, the broker PUBACKing
                mosquitto.kill()
            down_s = rng.uniform(0.0, 1.0)
            down_at = time.monotonic()
            # Nothing drains while the broker is down: top the queue up now, so that the next drain lasts
            # (the drain is faster than putting reports one fsync at a time).
            while kill < kills - 1 and _undelivered(post.store) < 3000:
                ids += post.put(make_reports(1000, text=f"BANJIR gelombang {kill} {len(ids)}"))
            time.sleep(max(0.0, down_at + down_s - time.monotonic()))
            downs.append(time.monotonic() - down_at)
            mosquitto.start()
        killed_at = time.monotonic()
        assert post.wait_delivered(len(ids), 120), f"seed {seed}: {post.store.counts()}, {post.uplink.state()}"
        drained_s = time.monotonic() - killed_at
        assert post.store.counts() == _all_delivered(len(ids))
        center.send_signal(signal.SIGTERM)
        assert center.wait(30) == 0, log.read_text(errors="replace")[-2000:]
        with open_storage(db_url) as storage:
            assert_exactly_once(storage, ids)
        assert mosquitto.starts == kills + 1
        assert post.uplink.counters["disconnects"] >= kills, post.uplink.counters
        assert len(only_at_broker) == kills and min(only_at_broker) > 0
        print(
            f"broker SIGKILLs {kills}, reports {len(ids)}, drained {drained_s:.1f} s after the last restart,"
            f" total {time.monotonic() - t0:.1f} s, post connects {post.uplink.counters['connects']},"
            f" reports published {post.uplink.counters['published_reports']},"
            f" reports only at the broker when it died {min(only_at_broker)}–{max(only_at_broker)},"
            f" center had everything when frozen {dry}×, broker down {min(downs):.2f}–{max(downs):.2f} s"
        )
    finally:
        post.stop()
        _reap(center)


# ------------------------------------------------------------------ 2. the center killed again and again
def _center_proc(db_url: str, broker_url: str, log: Path, *extra: str) -> subprocess.Popen[str]:
    """A center as a child process (tests/chaos/center_child.py), READY once connected to the broker."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.center_child", db_url, broker_url, *extra],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=REPO,
            env=env,
        )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "READY":
        # A commit-then-die center may reach its commit point before READY: the receiver takes the broker's
        # backlog while it proves its subscriptions (sync/receiver.py), and READY waits for that proof.
        died_at_commit_point = bool(extra) and proc.wait(HOLD_DEADLINE_S) == -signal.SIGKILL
        assert died_at_commit_point, log.read_text(errors="replace")[-2000:]
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


def _progress(db: Path, store: Store, target: int) -> Callable[[], bool]:
    """The center has ``target`` reports, or the post has nothing left to deliver."""
    return lambda: _count_reports(db) >= target or _undelivered(store) == 0


def _undelivered_ids(store: Store) -> set[str]:
    return {r.report_id for state in ("pending", "sent") for r in store.list_reports(state=state, limit=1_000_000)}


@pytest.mark.timeout(900)
def test_center_sigkilled_again_and_again_some_between_commit_and_ack(
    tmp_path: Path, mosquitto: Mosquitto, budget: Budget
) -> None:
    """Kills alternate, each landed mid-drain by construction:

    * a plain SIGKILL: once the center has made progress, it is frozen (SIGSTOP) at a random moment of its
      work; the post publishes on until the broker holds reports it PUBACKed that the frozen center has not
      committed — reports on their way to it — and the frozen center is killed;
    * one the center deals itself right after the Nth storage commit that stored a report new to it, before
      that batch's ack is published (tests/chaos/center_child.py).  Such reports are at the center but not
      ``delivered`` at the post (checked after each of these kills): they must be stored once although they
      arrive again (the broker redelivers the unacknowledged message, the post resends)."""
    kills = budget.pick(3, 10)
    seed, rng = _seed()
    db = tmp_path / "center.db"
    db_url = f"sqlite:///{db}"
    open_storage(db_url).close()
    log = tmp_path / "center.log"
    post = Post(post_config(tmp_path / "post", [mosquitto.url], ack_timeout_s=5.0))
    procs: list[subprocess.Popen[str]] = []
    commit_kills = 0
    dry = 0  # plain kills whose center had every report when frozen (more work was put in under the hold)
    in_flight_at_kill: list[int] = []  # plain kills: reports on their way to the center when it died
    committed_unacked: list[int] = []  # commit kills: reports committed, not acknowledged, when it died
    t0 = time.monotonic()
    try:
        ids = post.put(make_reports(5000))
        post.start()
        for kill in range(kills):
            # No center runs now, so the drain waits: top the queue up so that this center has work for a while.
            while _undelivered(post.store) < 5000:
                ids += post.put(make_reports(1000, text=f"TANAH LONGSOR gelombang {kill} {len(ids)}"))
            before, receipts_before = _count_reports(db), _count_receipts(db)
            if kill % 2:
                # dies by itself after its Nth commit of something new, before the ack: between commit and ack
                proc = _center_proc(db_url, mosquitto.url, log, str(rng.randint(1, 3)))
                procs.append(proc)
                try:
                    code = proc.wait(HOLD_DEADLINE_S)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"seed {seed}: the center never reached its commit-then-die point")
                assert code == -signal.SIGKILL, f"the center exited {code}: {log.read_text()[-2000:]}"
                commit_kills += 1
                assert _count_receipts(db) > receipts_before, "the center died before committing: nothing tested"
                # its last commit stored reports it never acknowledged (and nobody else can now)
                unacked = center_ids(db) & _undelivered_ids(post.store)
                assert unacked, f"seed {seed}: kill {kill + 1}: nothing committed-but-unacknowledged at the center"
                committed_unacked.append(len(unacked))
            else:
                proc = _center_proc(db_url, mosquitto.url, log)
                procs.append(proc)
                target = before + rng.randint(1, 500)
                wait_state(
                    _progress(db, post.store, target),
                    f"seed {seed}: progress before kill {kill + 1} ({post.store.counts()})",
                )
                time.sleep(rng.uniform(0.0, 1.0))
                stop(proc)  # frozen wherever it was: receiving, committing, acknowledging
                if _count_reports(db) >= len(ids):
                    dry += 1  # it had everything: put more in, on its way to the frozen center
                    ids += post.put(make_reports(500, text=f"TANAH LONGSOR susulan {kill} {len(ids)}"))
                held = wait_state(
                    lambda: sent_not_at_center(post.store, db),
                    f"seed {seed}: kill {kill + 1}: the broker to hold reports the frozen center has not",
                )
                in_flight_at_kill.append(len(held))
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
        assert commit_kills == kills // 2 and len(in_flight_at_kill) == kills - kills // 2
        print(
            f"center SIGKILLs {kills} ({commit_kills} between commit and ack: {committed_unacked} reports"
            f" committed unacknowledged; plain: {in_flight_at_kill} reports on their way, center had everything"
            f" {dry}×), reports {len(ids)}, received more than once {resent},"
            f" drained {drained_s:.1f} s after the last restart, total {time.monotonic() - t0:.1f} s"
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
                if downs[kind] == 0:
                    # the first strike of each kind lands on a live connection (asserted below: the link really
                    # went down under the post), whatever the machine's speed; the later ones at random
                    wait_state(lambda: post.uplink.state()["connected"], f"seed {seed}: the post connected")
                if kind == "cut":
                    proxy.cut()
                else:
                    proxy.down()
                downs[kind] += 1
                down_for = rng.uniform(1.0, 10.0)
                last = time.monotonic() + down_for - t0 >= flap_for_s and min(downs.values()) >= 1
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
def _post_row(db: Path) -> tuple[str, int | None] | None:
    """The center's view of the post (state, boot counter), read without its write lock."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        row = conn.execute("SELECT state, boot_counter FROM posts WHERE post_id = 'oebubun'").fetchone()
    return None if row is None else (str(row[0]), row[1])


def test_post_daemon_sigkilled_mid_drain(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """``siaga run`` SIGKILLed mid-drain, landed by construction: after the center (a child process) has 800
    reports it is frozen (SIGSTOP), so nothing more can be acknowledged; the daemon publishes on until the
    broker holds reports it PUBACKed that the center has not committed — ``sent`` at the post, awaiting an
    ack — and the daemon is SIGKILLed then.  Started again, it sends them again: each at the center once."""
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
    db = tmp_path / "center.db"
    db_url = f"sqlite:///{db}"
    open_storage(db_url).close()
    center_log = tmp_path / "center.log"
    center = _center_proc(db_url, mosquitto.url, center_log)
    log = tmp_path / "daemon.log"
    daemon = spawn_siaga_run(config, log)
    store = Store.open(data / "post.db", check=False)
    try:
        wait_state(lambda: _count_reports(db) >= 800, f"800 reports at the center: {log.read_text()[-2000:]}")
        with paused(center):
            dry = _count_reports(db) >= len(ids)
            if dry:  # the drain outran the freeze: more work, which the frozen center cannot take
                ids += [store.put(r).report_id for r in make_reports(500, text="BANJIR susulan")]
            held = wait_state(
                lambda: sent_not_at_center(store, db), "the broker to hold reports the frozen center has not"
            )
            daemon.send_signal(signal.SIGKILL)
            assert daemon.wait(10) == -signal.SIGKILL
        assert _count_reports(db) < len(ids) and store.counts()["delivered"] < len(ids)
        # the broker saw the socket close without DISCONNECT: the Last Will says offline
        wait_state(lambda: (row := _post_row(db)) is not None and row[0] == "offline", "the Last Will at the center")
        daemon = spawn_siaga_run(config, log)
        wait_state(lambda: store.counts()["delivered"] == len(ids), f"every report delivered: {store.counts()}")
        assert store.counts() == _all_delivered(len(ids))
        wait_state(lambda: (row := _post_row(db)) is not None and row[0] == "online", "the post online again")
        center.send_signal(signal.SIGTERM)
        assert center.wait(30) == 0, center_log.read_text(errors="replace")[-2000:]
        with open_storage(db_url) as storage:
            assert_exactly_once(storage, ids)
            assert storage.get_post("oebubun").boot_counter == 2  # type: ignore[union-attr]
        print(
            f"daemon SIGKILLed with {len(held)} reports PUBACKed by the broker and not at the center"
            + (" (the center had every report when frozen: 500 more were put in)" if dry else "")
        )
    finally:
        store.close()
        stop_process(daemon)
        _reap(center)


# ------------------------------------------------------------------ a silent cut, noticed by the keepalive
def test_tcp_path_cut_without_close(tmp_path: Path, mosquitto: Mosquitto, center: Center) -> None:
    """The link goes silent mid-drain: once the center has 300 reports, the link is cut and more reports are
    stored behind the cut, so the post has work it cannot deliver however far the drain got (by construction,
    not by the machine's speed)."""
    with LinkProxy("127.0.0.1", mosquitto.port) as proxy:
        post = Post(post_config(tmp_path / "post", [f"mqtt://127.0.0.1:{proxy.port}"], keepalive_s=5))
        try:
            ids = post.put(make_reports(3000))
            post.start()
            wait_state(lambda: center.storage.counts()["reports"] >= 300, "300 reports at the center")
            proxy.cut()
            cut_at = time.monotonic()
            # stored behind the cut: whatever the drain reached before the cut took effect, these cannot be
            # delivered until the link is back (only acks already past the cut can still arrive)
            ids += post.put(make_reports(100, text="BANJIR di belakang potongan"))
            # nothing closed the socket: only the keepalive can tell the post its link is dead
            assert wait_for(lambda: not post.uplink.state()["connected"], 15), "the dead link was never noticed"
            noticed_s = time.monotonic() - cut_at
            assert post.store.counts()["delivered"] < len(ids)
            proxy.restore()
            assert post.wait_delivered(len(ids), HOLD_DEADLINE_S), post.store.counts()
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
