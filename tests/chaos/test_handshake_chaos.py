"""Connections cut at every point of the MQTT handshake, many times, on a real Mosquitto (issue 10).

The post's uplink reaches the broker through :class:`~tests.chaos.mqtt_cutter.MqttCutter`, which cuts each
new connection at a planned packet: after CONNECT, after CONNACK (a session at the broker without our
subscriptions), after SUBSCRIBE, before SUBACK, after the first PUBLISH, before the first PUBACK.  The first
cut is after CONNACK on a new session, so the next attempt always finds a session *present without
subscriptions* — the state that left reports ``sent`` forever.  Reports arrive from the handset while the
cuts land.  Every cut lands by construction (each is bound to a packet every connection sends), never by
timing.  Then: every report at the center exactly once, both receipts at the handset, and the time from the
last cut to the last delivery bounded by the reconnect backoff — ack_timeout_s is 600 s here.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from devkit.harness.mosquitto import Mosquitto
from devkit.harness.synctools import Center, center_report_ids
from tests.chaos.mqtt_cutter import (
    AFTER_CONNACK,
    AFTER_FIRST_PUBLISH,
    BEFORE_FIRST_PUBACK,
    HANDSHAKE,
    Cut,
    MqttCutter,
)
from tests.conftest import Budget
from tests.radio_rig import (
    HANDSET,
    acked_receipts,
    handset_post_config,
    make_device,
    running_post,
    wait_until,
)

ACK_TIMEOUT_S = 600.0
#: Generous: only a real hang exceeds it.  The bound the issue asks for is the reconnect backoff (≤ 2 s per
#: attempt); ack_timeout_s would be 600 s.
SETTLE_S = 90.0


def test_cuts_at_every_handshake_point_lose_nothing_and_never_wait_for_ack_timeout(
    tmp_path: Path,
    mosquitto: Mosquitto,
    center: Center,
    budget: Budget,
) -> None:
    cuts = budget.pick(24, 120)
    rng = random.Random(10)
    points: list[Cut] = [*HANDSHAKE, AFTER_FIRST_PUBLISH, BEFORE_FIRST_PUBACK]
    plan = [AFTER_CONNACK] + [rng.choice(points) for _ in range(cuts - 1)]
    n_reports = 8
    cutter = MqttCutter(mosquitto.port, plan).start()
    device = make_device(tmp_path, "tcp")
    device.start()
    try:
        cfg = handset_post_config(tmp_path, device, cutter.url, ack_timeout_s=ACK_TIMEOUT_S)
        with running_post(cfg) as daemon:
            assert daemon.store is not None
            store = daemon.store
            device.add_node(HANDSET, "Petugas Oebubun 01", "OB01")
            step = max(1, cuts // n_reports)
            for i in range(n_reports):
                # reports arrive while the cuts land: report i after i*step cuts
                wait_until(lambda i=i: len(cutter.landed) >= i * step, SETTLE_S, f"{i * step} cuts")
                device.inject_text(HANDSET, f"KEBAKARAN rumah warga nomor {i}")
                wait_until(lambda i=i: sum(store.counts().values()) >= i + 1, 30, f"report {i} stored")
            assert cutter.wait_all_landed(SETTLE_S * 3), f"{len(cutter.landed)} of {cuts} cuts landed"
            last_cut = time.monotonic()
            wait_until(lambda: store.counts()["delivered"] == n_reports, SETTLE_S, "every report delivered")
            settle = time.monotonic() - last_cut
            print(
                f"handshake chaos: {len(cutter.landed)} cuts landed, {cutter.connections} connections, "
                f"last delivery {settle:.2f} s after the last cut"
            )
            # bounded by the reconnect backoff, never by ack_timeout_s
            assert settle < ACK_TIMEOUT_S / 10, settle
            rows = store.list_reports(limit=100)
            assert len(rows) == n_reports
            ids = sorted(r.report_id for r in rows)
            assert sorted(center_report_ids(center.storage)) == ids  # each once: no duplicate at the center
            assert center.storage.counts()["reports"] == n_reports
            for row in rows:
                ref = row.report.ref
                wait_until(lambda ref=ref: acked_receipts(device, ref), 60, f"post receipt {ref}")
                wait_until(lambda ref=ref: acked_receipts(device, ref, "112 PUSAT TERIMA"), 60, f"center receipt {ref}")
            center_receipts = [p for p in device.sent if p.text and p.text.startswith("112 PUSAT TERIMA")]
            assert len(center_receipts) == n_reports  # one each, never twice
            assert {c.name for c in cutter.landed} >= {c.name for c in HANDSHAKE} or cuts < 24
    finally:
        device.stop()
        cutter.stop()
