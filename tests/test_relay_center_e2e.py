"""Reports carried by another post, end to end: a real Mosquitto, a real center (SQLite) with the regency
relay secret, and carrier posts whose real Store and Uplink publish carried reports on their own topic
(docs/RELAY.md, "To the center").

The carrier side of the relay (custody over the mesh, relay/) is built elsewhere; here a carrier's store is
handed a carried report the way that side will keep it — the report's JSON with the ``relay`` field (the
origin's packet, the previous hop, the hop count) — and its ordinary uplink drains it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from devkit.harness.mosquitto import Mosquitto
from devkit.harness.synctools import Center, Post, post_config, wait_for
from siaga.report import Report, utcnow
from sync import compact
from tests.carried import SECRET, carried_dict, packet_of, tamper_text
from tests.reports import make_mesh_report


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "relay-secret.hex"
    path.write_text(SECRET.hex() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def relay_center(tmp_path: Path, mosquitto: Mosquitto, secret_file: Path) -> Iterator[Center]:
    c = Center(f"sqlite:///{tmp_path}/center.db", [mosquitto.url], relay_secret_file=secret_file).start()
    try:
        yield c
    finally:
        c.stop()


class Carriers:
    """Carrier posts on the test's broker (each a real Store + Uplink), stopped at the end."""

    def __init__(self, tmp_path: Path, mosquitto: Mosquitto) -> None:
        self._tmp = tmp_path
        self._url = mosquitto.url
        self.posts: dict[str, Post] = {}

    def __call__(self, post_id: str) -> Post:
        """The carrier ``post_id``, its uplink not started yet (``hand_over`` starts it)."""
        if post_id not in self.posts:
            cfg = post_config(self._tmp / post_id, [self._url], post_id=post_id, ack_timeout_s=5.0)
            self.posts[post_id] = Post(cfg)
        return self.posts[post_id]

    def stop(self) -> None:
        for post in self.posts.values():
            post.stop()


@pytest.fixture
def carriers(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Carriers]:
    made = Carriers(tmp_path, mosquitto)
    try:
        yield made
    finally:
        made.stop()


def hand_over(carrier: Post, packet: bytes, *, prev: str, hops: int) -> str:
    """The carrier takes custody of ``packet`` and queues it for the center, as relay/ will: the decoded
    report's JSON with the ``relay`` field, in its store (the uplink sends the stored JSON as it is).
    Its uplink starts only then, so it never sees the row before the relay field is in."""
    body = carried_dict(packet, prev=prev, hops=hops)
    report = Report.from_dict({k: v for k, v in body.items() if k != "relay"})
    rid = carrier.store.put(report).report_id
    with sqlite3.connect(carrier.cfg.store_path) as conn:
        conn.execute("UPDATE reports SET body = ? WHERE report_id = ?", (json.dumps(body), rid))
    carrier.start()
    return rid


def state_at(post: Post, report_id: str) -> tuple[str, str | None]:
    stored = post.store.get(report_id)
    assert stored is not None
    return stored.state, stored.reject_reason


def observed_origin(text: str = "KEBAKARAN rumah warga dusun 3, 2 orang luka") -> Report:
    """A handset report at post oebubun, which has no uplink of its own."""
    return make_mesh_report(post_id="oebubun", text_raw=text, observed_at=utcnow(), stored_at=utcnow())


def test_carried_report_is_stored_under_its_origin_with_the_true_time(relay_center: Center, carriers: Carriers) -> None:
    report = observed_origin()
    # observed 300 s before the origin sent it; carriers before the last one held it 120 s
    packet = packet_of(report, age_s=300, hops=2, transit_s=120)
    napan = carriers("napan")
    rid = hand_over(napan, packet, prev="bukit-01", hops=2)
    assert napan.wait_delivered(1, 20), relay_center.receiver.state()
    found = relay_center.storage.get_report(rid)
    assert found is not None and found.post_id == "oebubun"
    assert found.report.text_raw == report.text_raw and found.report.origin == report.origin
    # received_at − wire age (the carrier's hold, ~0) − transit 120 − origin age 300
    expected = found.received_at - timedelta(seconds=420)
    assert abs((found.observed_est - expected).total_seconds()) < 2.0, (found.observed_est, expected)
    assert found.age_source == "boot"
    [copy] = relay_center.storage.copies(rid)
    assert (copy.post_id, copy.relay_origin, copy.relay_prev, copy.relay_hops) == ("napan", "oebubun", "bukit-01", 2)
    assert {p.post_id for p in relay_center.storage.posts()} >= {"napan", "oebubun"}
    assert relay_center.receiver.rejects == {}


def test_altered_text_is_refused_and_the_genuine_report_still_gets_in(relay_center: Center, carriers: Carriers) -> None:
    report = observed_origin("SOS longsor tutup jalan, 3 rumah tertimbun")
    genuine = packet_of(report, age_s=60, hops=1)
    forged = tamper_text(genuine, "AMAN semua baik, tidak perlu bantuan")
    assert compact.parse_report(forged).report.report_id == report.report_id
    napan = carriers("napan")
    rid = hand_over(napan, forged, prev="oebubun", hops=1)
    assert wait_for(lambda: state_at(napan, rid)[0] == "rejected", 20), relay_center.receiver.state()
    assert "relay_tag" in (state_at(napan, rid)[1] or "")
    receiver = relay_center.receiver
    assert receiver.rejects["relay_tag"] == 1 and receiver.state()["rejected_by_reason"]["relay_tag"] == 1
    assert relay_center.storage.get_report(rid) is None
    # the genuine packet by another carrier: nothing held against the report id
    kefa = carriers("kefa-kota")
    assert hand_over(kefa, genuine, prev="bukit-01", hops=2) == rid
    assert kefa.wait_delivered(1, 20), receiver.state()
    found = relay_center.storage.get_report(rid)
    assert found is not None and found.report.text_raw == report.text_raw and found.post_id == "oebubun"
    assert [c.post_id for c in relay_center.storage.copies(rid)] == ["kefa-kota"]


def test_the_same_report_via_two_carriers_is_one_report_with_two_copies(
    relay_center: Center, carriers: Carriers
) -> None:
    report = observed_origin()
    packet = packet_of(report, age_s=10)
    napan, kefa = carriers("napan"), carriers("kefa-kota")
    rid = hand_over(napan, packet, prev="oebubun", hops=0)
    assert napan.wait_delivered(1, 20)
    assert hand_over(kefa, compact.forward_report(packet, held_s=40), prev="bukit-01", hops=1) == rid
    assert kefa.wait_delivered(1, 20)
    storage = relay_center.storage
    assert storage.counts()["reports"] == 1
    found = storage.get_report(rid)
    assert found is not None and found.copies == 2 and found.post_id == "oebubun"
    assert {(c.post_id, c.relay_prev, c.relay_hops) for c in storage.copies(rid)} == {
        ("napan", "oebubun", 0),
        ("kefa-kota", "bukit-01", 1),
    }
    assert [(r.origin, r.carrier, r.reports) for r in storage.relay_routes()] == [
        ("oebubun", "kefa-kota", 1),
        ("oebubun", "napan", 1),
    ]


def test_without_the_secret_carried_reports_wait_at_the_carrier(
    tmp_path: Path, mosquitto: Mosquitto, carriers: Carriers, secret_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    blind = Center(f"sqlite:///{tmp_path}/center.db", [mosquitto.url]).start()
    report = observed_origin()
    napan = carriers("napan")
    try:
        rid = hand_over(napan, packet_of(report), prev="oebubun", hops=0)
        assert wait_for(lambda: blind.receiver.rejects["relay_unverifiable"] >= 1, 20), blind.receiver.state()
        assert blind.storage.get_report(rid) is None
        # not refused for good: the carrier keeps it (a center's configuration must never lose a report)
        assert state_at(napan, rid)[0] in ("pending", "sent")
        assert "secret_file" in caplog.text and "relay_unverifiable" in caplog.text
    finally:
        blind.stop()
    # the same center database, now with the secret: the carrier's resend gets in
    seeing = Center(f"sqlite:///{tmp_path}/center.db", [mosquitto.url], relay_secret_file=secret_file).start()
    try:
        assert napan.wait_delivered(1, 30), seeing.receiver.state()
        assert seeing.storage.get_report(rid) is not None
    finally:
        seeing.stop()


def test_a_post_still_cannot_publish_another_posts_report_without_its_packet(
    relay_center: Center, carriers: Carriers
) -> None:
    napan = carriers("napan")
    other = observed_origin()  # oebubun's report, sent by napan as if its own, with no relay field
    rid = napan.put([other])[0]
    napan.start()
    assert wait_for(lambda: state_at(napan, rid)[0] == "rejected", 20)
    assert "post_mismatch" in (state_at(napan, rid)[1] or "")
    assert relay_center.storage.get_report(rid) is None
