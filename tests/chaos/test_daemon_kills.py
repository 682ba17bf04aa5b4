"""The post daemon SIGKILLed again and again during a radio stream: every report at the center exactly once.

Issue 7: ``siaga run`` (a real subprocess: the real meshtastic library, the real SQLite store, the real uplink
to a real Mosquitto and a real center) is killed with SIGKILL at random moments while a simulated gateway
radio (devkit/sim/ over TCP) streams texts from three registered handsets, and started again each
time.  CI runs a reduced schedule; ``pytest --full`` runs the issue's 50 kills during 2,000 reports.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from meshtastic.tcp_interface import TCPInterface

from devkit.harness.mosquitto import Mosquitto
from devkit.harness.procs import spawn_siaga_run, stop_process
from devkit.harness.synctools import Center, center_report_ids, wait_for
from devkit.sim import SimulatedDevice
from edge.store import Store
from tests.chaos._hold import wait_state
from tests.conftest import Budget
from tests.radio_rig import post_config, radio_of, running_post

pytestmark = pytest.mark.chaos

HANDSETS = (
    ("!a1b2c3d4", "Yohanes Taek", "Oebubun"),
    ("!a1b2c3d5", "Maria Kolo", "Oelolok"),
    ("!a1b2c3d6", "Petrus Sanam", "Noemuti"),
)
TEXTS = (
    "KEBAKARAN rumah warga dekat pasar",
    "BANJIR air sungai naik ke jalan desa",
    "warga sakit keras perlu ambulans",
    "pohon tumbang menutup jalan ke kecamatan",
    "TANAH LONGSOR di kebun belakang sekolah",
    "kecelakaan motor di tikungan, korban luka",
)
#: Packets a device keeps for its client while none is connected: firmware MAX_RX_TOPHONE on nRF52 and
#: ESP32-S3 boards (32; classic ESP32 keeps only 8).
TO_PHONE_QUEUE = 32


#: A text lost in a kill must have reached a connected daemon at most this long before the kill.  A healthy
#: post stores a packet within milliseconds; after a handshake it first reads ~100 configuration frames.
LOSS_GRACE_S = 2.0
#: A text written by the device after a kill but before it noticed the closed socket is lost too.
EOF_NOTICE_S = 0.2


class HandshakeWatcher:
    """Records when each radio handshake (a daemon connecting) completed at the device."""

    def __init__(self, device: SimulatedDevice) -> None:
        self.device = device
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="handshakes", daemon=True)

    def start(self) -> HandshakeWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        seen = self.device.handshakes
        while not self._stop.is_set():
            try:
                self.device.wait_for_handshake(seen + 1, 0.2)
            except TimeoutError:
                continue
            seen = self.device.handshakes
            self.times.append(time.monotonic())


def _exposure(injected: float, kills: list[float], handshakes: list[float]) -> float | None:
    """How long a lost text had been in the hands of a connected daemon when that daemon was killed.

    A text reaches the daemon connected when it is sent, or (none connected) is kept by the device and handed
    over at the next handshake; it is lost only by the first kill after that.  0 for a text written into a
    socket whose process had just died; None if no kill can explain the loss.
    """
    if any(kill <= injected <= kill + EOF_NOTICE_S for kill in kills):
        return 0.0
    before = [h for h in handshakes if h <= injected]
    if before and not any(before[-1] < kill <= injected for kill in kills):
        handed = injected  # a daemon was connected: the device wrote it to its socket at once
    else:
        later = [h for h in handshakes if h > injected]
        if not later:
            return None
        handed = later[0]  # kept in the device's to-phone queue until the next daemon connected
    kill = next((k for k in kills if k > handed), None)
    return None if kill is None else kill - handed


@dataclass
class Stream:
    """The simulated handsets' traffic, paced so that it lasts until just after the last kill."""

    device: SimulatedDevice
    total: int
    kills_planned: int
    cycle_estimate_s: float
    seed: int
    kills_done: int = 0
    sent: list[str] = field(default_factory=list)  # every text, in order; each one unique
    sent_at: list[float] = field(default_factory=list)  # monotonic time of each injection
    packet_ids: list[int] = field(default_factory=list)  # the mesh packet id of each first sending
    finished: threading.Event = field(default_factory=threading.Event)
    #: set by the test after its last kill: the last text waits for it, so every kill lands during the stream
    #: by construction (a machine slow to restart the daemon would otherwise see the stream end first)
    kills_over: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def text(self, i: int) -> str:
        # The sequence number makes each text unique; the officer's resend repeats it word for word.
        return f"{TEXTS[i % len(TEXTS)]} (laporan {i + 1:04d})"

    def sender(self, i: int) -> str:
        return HANDSETS[i % len(HANDSETS)][0]

    def run(self) -> None:
        rng = random.Random(self.seed)
        started = time.monotonic()
        try:
            for i in range(self.total):
                if self._stop.is_set():
                    return
                # Spread what is left over the kills still to come (plus half a cycle after the last one),
                # measured cycles replacing the first estimate: the stream must outlast the kill schedule.
                elapsed = time.monotonic() - started
                cycle = elapsed / self.kills_done if self.kills_done else self.cycle_estimate_s
                left_s = (self.kills_planned - self.kills_done + 0.5) * cycle
                interval = min(1.0, max(0.05, left_s / (self.total - i)))
                time.sleep(interval * rng.uniform(0.5, 1.5))
                while i == self.total - 1 and not self.kills_over.wait(0.05):
                    if self._stop.is_set():
                        return
                text = self.text(i)
                # half broadcasts on the post's channel, half direct messages to the post (want_ack)
                to = {"to": "post"} if i % 2 else {}
                packet_id = self.device.inject_text(self.sender(i), text, hops=rng.randint(0, 3), **to)
                self.sent_at.append(time.monotonic())
                self.packet_ids.append(packet_id)
                self.sent.append(text)
        finally:
            self.finished.set()

    def stop(self) -> None:
        self._stop.set()


def _write_config(path: Path, data_dir: Path, radio_port: int, broker_url: str) -> None:
    handsets = "".join(
        f'\n[[handsets]]\nid = "{node}"\nofficer = "{officer}"\nvillage = "{village}"\n'
        for node, officer, village in HANDSETS
    )
    path.write_text(
        f"""[node]
post_id = "oebubun"
regency = "ttu"
name = "Oebubun"
data_dir = "{data_dir}"
lat = -9.3853
lon = 124.3544

[radio.meshtastic]
host = "127.0.0.1:{radio_port}"
receipts = false

[uplink.mqtt]
url = "{broker_url}"
keepalive_s = 5
ack_timeout_s = 5
{handsets}""",
        encoding="utf-8",
    )


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def _post_rows(store: Store) -> dict[str, tuple[str, str]]:
    """report id → (text, state) of every report in the post's store."""
    return {r.report_id: (r.report.text_raw, r.state) for r in store.list_reports(limit=100_000)}


@pytest.mark.timeout(1200)  # the --full run takes 4-5 minutes here; the reduced one under a minute
def test_post_daemon_sigkilled_during_a_radio_stream(
    tmp_path: Path, mosquitto: Mosquitto, center: Center, budget: Budget
) -> None:
    """Kills at random moments, the uplink on → every text at the center exactly once, all ``delivered``.

    What a kill may lose, and why the test resends: a packet the meshtastic library already read off the
    socket (or that still sat in the dead process's socket buffer), but that the store had not committed,
    is gone with the process — firmware does not resend what it handed to its client.  The product's
    answer is the receipt protocol: an officer whose text got no "112 POS ... TERIMA" receipt sends it
    again.  Receipts are paced at one per 2.5 s (the firmware's rate limit), so 2,000 of them would take
    83 minutes: the daemon runs with ``receipts = false`` and the post's store stands in for them.  That is
    exact, because a receipt is queued only after the commit: a text is in the store if and only if its
    officer would get a receipt.  (Receipts across restarts: tests/test_daemon.py.)  After the stream,
    every text that never reached the store is sent again as the officer would — a NEW packet id, the same
    words — and counted.  The count is printed, split into texts the device's to-phone queue dropped while
    no daemon was connected (firmware keeps 32) and texts lost at kills.  Rather than an arbitrary ceiling,
    each text lost at a kill must be explained by that kill: it had reached a connected daemon (directly,
    or handed over at its handshake) at most LOSS_GRACE_S before the kill, or the device wrote it into the
    socket of a process that had just died.  A text a live daemon failed to store would fail that.

    Asserted too: the kills were all made, each on a live daemon and during the stream; the device queued
    packets for its client while none was connected; every daemon came back (radio handshake); nothing the
    post had stored before a kill was lost; at the end each text is in the post's store once and at the
    center once (report ids unique, the center's ids = the post's ids), and every row is ``delivered``.
    """
    kills_planned, total = budget.pick((8, 300), (50, 2000))
    # seconds after the daemon's radio handshake at which it is killed (and the chance of a kill before it)
    kill_after_s = budget.pick((0.5, 4.0), (1.0, 8.0))
    early_kill_share = 0.2
    # CI replays one schedule (a landing must not depend on luck); developers' runs draw a new one each time
    seed = int(os.environ.get("SIAGA_CHAOS_SEED") or (7 if os.environ.get("CI") else random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"\nseed {seed} (SIAGA_CHAOS_SEED={seed} repeats the kill schedule)")

    data_dir = tmp_path / "post"
    config = tmp_path / "siaga.toml"
    log = tmp_path / "daemon.log"
    t0 = time.monotonic()
    with SimulatedDevice(
        listen=("127.0.0.1", 0), seed=seed, offline_queue=TO_PHONE_QUEUE, record_path=tmp_path / "sent.jsonl"
    ) as device:
        for node, officer, _village in HANDSETS:
            device.add_node(node, officer, node[-4:].upper(), announce=False)
        _write_config(config, data_dir, device.port, mosquitto.url)
        Store.open(data_dir / "post.db").close()  # created here so the test can read it from the first kill on

        watcher = HandshakeWatcher(device).start()
        store = Store.open(data_dir / "post.db", check=False)
        stream: Stream | None = None
        daemon = spawn_siaga_run(config, log)
        try:

            def come_back(handshakes_before: int, after: str) -> None:
                try:
                    device.wait_for_handshake(handshakes_before + 1, 60)
                except TimeoutError:
                    pytest.fail(f"the daemon did not connect to its radio {after}:\n{_tail(log)}")

            started = time.monotonic()
            come_back(0, "at the first start")
            start_s = time.monotonic() - started
            stream = Stream(
                device, total, kills_planned, cycle_estimate_s=start_s + sum(kill_after_s) / 2 + 0.3, seed=seed
            )
            threading.Thread(target=stream.run, name="handsets", daemon=True).start()
            stored_before_kills: set[str] = set()
            early_kills = 0
            kill_times: list[float] = []
            handshakes_at_spawn = 0
            for kill in range(kills_planned):
                if kill > 0 and rng.random() < early_kill_share:
                    # killed while starting: before, during or just after its radio handshake
                    early_kills += 1
                    time.sleep(rng.uniform(0.1, start_s))
                else:
                    if kill > 0:
                        come_back(handshakes_at_spawn, f"after kill {kill}")
                    time.sleep(rng.uniform(*kill_after_s))
                assert daemon.poll() is None, f"the daemon exited by itself ({daemon.returncode}):\n{_tail(log)}"
                stored_before_kills |= set(_post_rows(store))
                daemon.send_signal(signal.SIGKILL)
                kill_times.append(time.monotonic())
                assert daemon.wait(10) == -signal.SIGKILL
                stream.kills_done += 1
                assert not stream.finished.is_set(), f"the stream ended before kill {kill + 1}: not during it"
                if kill == 0:
                    # no daemon now: hold the restart until the device has kept a text for its absent client
                    # (asserted below), rather than hoping the stream sends one while the daemon restarts
                    wait_state(
                        lambda: device.stats["offline_queued"] > 0, "the device to keep a text while no daemon runs"
                    )
                handshakes_at_spawn = device.handshakes
                daemon = spawn_siaga_run(config, log)
            stream.kills_over.set()
            come_back(handshakes_at_spawn, "after the last kill")
            assert stream.finished.wait(600), "the stream did not finish"
            assert len(stream.sent) == total

            # Quiet: the device has a client again and the store stopped growing.  Whatever is not in the
            # store now never will be: its officer got no receipt and sends it again.
            last = {"n": -1, "at": time.monotonic()}

            def settled() -> bool:
                n = len(_post_rows(store))
                if n != last["n"]:
                    last.update(n=n, at=time.monotonic())
                return device.client_connected and time.monotonic() - last["at"] > 3.0

            assert wait_for(settled, 60, every=0.2), f"the store never settled:\n{_tail(log)}"
            stored_texts = {text for text, _ in _post_rows(store).values()}
            missing = [(i, text) for i, text in enumerate(stream.sent) if text not in stored_texts]
            for i, text in missing:
                device.inject_text(stream.sender(i), text)  # a new packet id: a new message to the mesh

            assert wait_for(lambda: store.counts()["delivered"] >= total, 120), (
                f"{store.counts()} of {total}:\n{_tail(log)}"
            )
            rows = _post_rows(store)
            counts = store.counts()
        finally:
            if stream is not None:
                stream.stop()
            watcher.stop()
            stop_process(daemon)
            store.close()
        offline = dict(device.stats)
        device_dropped_ids = list(device.offline_dropped_ids)
    duration_s = time.monotonic() - t0

    texts_at_post = [text for text, _ in rows.values()]
    center_rows = center.storage.query("SELECT report_id, text_raw FROM reports")
    center_texts = [r["text_raw"] for r in center_rows]
    center_ids = [r["report_id"] for r in center_rows]
    wire_ids = center_report_ids(center.storage)
    resends = len(missing)
    # the device's to-phone queue overflowed while no daemon was connected: lost before any post saw them
    dropped_ids = set(device_dropped_ids)
    queue_drops = [(i, text) for i, text in missing if stream.packet_ids[i] in dropped_ids]
    lost_at_kills = [(i, text) for i, text in missing if stream.packet_ids[i] not in dropped_ids]
    exposures = [_exposure(stream.sent_at[i], kill_times, watcher.times) for i, _ in lost_at_kills]
    unexplained = [
        (i, text, e) for (i, text), e in zip(lost_at_kills, exposures, strict=True) if e is None or e > LOSS_GRACE_S
    ]
    if exposures:
        shown = ", ".join("?" if e is None else f"{e:.2f}" for e in exposures)
        print(f"texts lost at kills had been at a connected daemon for (s): {shown}")
    print(
        f"kills {stream.kills_done} ({early_kills} while starting), reports {total}, "
        f"officer resends {resends} ({len(lost_at_kills)} lost at kills, {len(queue_drops)} dropped by the device), "
        f"to-phone queue: {offline.get('offline_queued', 0)} held, {offline.get('offline_dropped', 0)} dropped; "
        f"radio handshakes {offline.get('toradio_want_config_id', 0)}; "
        f"first start {start_s:.1f} s; {duration_s:.0f} s in all"
    )

    assert stream.kills_done == kills_planned
    assert offline.get("offline_queued", 0) > 0, "the device never held packets for its absent client"
    # at the post: each text once, all delivered, nothing stored before a kill lost
    assert sorted(texts_at_post) == sorted(stream.sent), "a text is missing or stored twice at the post"
    assert counts == {"pending": 0, "sent": 0, "delivered": total, "rejected": 0}
    assert stored_before_kills <= set(rows), f"{len(stored_before_kills - set(rows))} stored reports lost"
    # at the center: each text once, report ids unique and the post's own
    assert len(center_texts) == len(set(center_texts)) == total, "a text is missing or twice at the center"
    assert set(center_texts) == set(stream.sent)
    assert len(set(center_ids)) == len(center_ids) == total
    assert len(wire_ids) == len(set(wire_ids)) and set(wire_ids) == set(rows)
    # every resend is explained by a kill: the text had reached a connected daemon only moments before it
    # died (a healthy post commits within milliseconds), or it was written into the dead process's socket
    for i, text, exposure in unexplained:
        pytest.fail(
            f"{text!r} (packet {stream.packet_ids[i]:08x}) was lost without a kill to explain it: injected at "
            f"{stream.sent_at[i] - t0:.2f} s, at a connected daemon for {exposure} s before the next kill"
        )


def test_dms_the_device_kept_are_stored_when_the_radio_thread_is_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the kill test: after a restart the device hands over what it kept right after the handshake.
    If the ``radio-link`` thread had not yet learnt the post's node number (it does when waitForConfig
    returns), direct messages to the post were taken for messages to another node and dropped.  A loaded
    Pi makes that thread late; here it is made late on purpose."""
    wait_for_config = TCPInterface.waitForConfig

    def late(self: TCPInterface) -> None:
        wait_for_config(self)
        time.sleep(0.5)  # the thread descheduled right after the handshake

    monkeypatch.setattr(TCPInterface, "waitForConfig", late)
    with SimulatedDevice(listen=("127.0.0.1", 0), seed=3, offline_queue=TO_PHONE_QUEUE) as device:
        node = HANDSETS[0][0]
        device.add_node(node, HANDSETS[0][1], "YT01", announce=False)
        texts = [f"tolong kirim bantuan ke rumah nomor {i}" for i in range(10)]
        for i, text in enumerate(texts):
            device.inject_text(node, text, **({"to": "post"} if i % 2 else {}))
        cfg = post_config(tmp_path, radio=radio_of(device, "tcp"), receipts=False)
        with running_post(cfg) as post:
            assert post.store is not None
            store = post.store
            assert wait_for(lambda: len(store.list_reports()) >= len(texts), 15), post.counters()
            assert sorted(r.report.text_raw for r in store.list_reports()) == sorted(texts)
            assert post.counters().get("ignored.dm_other", 0) == 0
