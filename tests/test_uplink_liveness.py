"""The uplink's liveness does not rest on "session present" (issue 10).

A broker session can exist without our subscriptions — a connection attempt cut between CONNACK and
SUBSCRIBE leaves exactly that, and on a 2G or satellite uplink it happens every day.  These tests build that
state on a real Mosquitto and show the post still learns of every delivery at once; and that a post which
published before any center receiver had ever subscribed re-sends as soon as one does, instead of after
``ack_timeout_s`` (600 s here, so a test that waited for it would fail, not pass slowly).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devkit.harness.mosquitto import Mosquitto
from devkit.harness.synctools import Center, Post, center_report_ids, make_reports, post_config, wait_for
from siaga import config as config_mod
from siaga.config import TlsMqttConfig
from sync import protocol
from sync.mqtt import BrokerAddress, Message, MqttLink
from tests.radio_rig import (
    HANDSET,
    acked_receipts,
    handset_post_config,
    make_device,
    running_post,
    wait_report,
    wait_until,
)

LONG_ACK_TIMEOUT_S = 600.0


class _Silent:
    def on_message(self, link: MqttLink, message: Message) -> None: ...

    def on_published(self, link: MqttLink, mid: int, ok: bool, reason: str) -> None: ...

    def on_disconnected(self, link: MqttLink, reason: str) -> None: ...


def leave_session_without_subscriptions(url: str, client_id: str) -> None:
    """Connect as ``client_id`` with a persistent session, then drop the TCP connection before subscribing:
    what an attempt cut between CONNACK and SUBACK leaves at the broker."""
    link = MqttLink(
        TlsMqttConfig(urls=(url,)),
        BrokerAddress.parse(url),
        client_id=client_id,
        handler=_Silent(),
        session_expiry_s=7 * 86400,
    )
    link.open(timeout=10)
    link.abort()


def test_session_present_without_subscriptions_still_delivers_with_both_receipts(
    tmp_path: Path,
    mosquitto: Mosquitto,
    center: Center,
) -> None:
    leave_session_without_subscriptions(mosquitto.url, "siaga-post-oebubun")
    device = make_device(tmp_path, "tcp")
    device.start()
    try:
        cfg = handset_post_config(tmp_path, device, mosquitto.url, ack_timeout_s=LONG_ACK_TIMEOUT_S)
        with running_post(cfg) as daemon:
            assert daemon.uplink is not None
            wait_until(lambda: daemon.uplink.state()["subscribed"], 20, "the uplink's SUBACK")  # type: ignore[union-attr]
            device.add_node(HANDSET, "Petugas Oebubun 01", "OB01")
            texts = ["KEBAKARAN rumah warga", "BANJIR jalan desa putus", "MEDIS ibu melahirkan"]
            for text in texts:
                device.inject_text(HANDSET, text)
            rows = [wait_report(daemon, text.split()[0]) for text in texts]
            for row in rows:
                ref = row.report.ref
                wait_until(lambda ref=ref: acked_receipts(device, ref), 30, f"post receipt {ref}")
                wait_until(lambda ref=ref: acked_receipts(device, ref, "112 PUSAT TERIMA"), 30, f"center receipt {ref}")
            assert daemon.store is not None
            assert daemon.store.counts()["delivered"] == 3
            assert sorted(center_report_ids(center.storage)) == sorted(r.report_id for r in rows)
            # and the center's replies reach the handset: the cmd subscription is there too
            center.service.send_reply(rows[0].report_id, "Damkar menuju lokasi", "sari")
            wait_until(
                lambda: [p for p in device.sent if p.text == "112: Damkar menuju lokasi" and p.acked is True],
                30,
                "reply",
            )
    finally:
        device.stop()


def test_uplink_resubscribes_on_a_resumed_session(tmp_path: Path, mosquitto: Mosquitto, center: Center) -> None:
    """The bare uplink: stored before the run, session present without subscriptions → delivered, no resend."""
    leave_session_without_subscriptions(mosquitto.url, "siaga-post-oebubun")
    post = Post(post_config(tmp_path / "post", [mosquitto.url], ack_timeout_s=LONG_ACK_TIMEOUT_S))
    try:
        ids = post.put(make_reports(3))
        post.start()
        assert post.wait_delivered(3, 20), post.store.counts()
        assert sorted(post.events.delivered) == sorted(ids)
        assert post.uplink.counters["published_reports"] == 3
    finally:
        post.stop()


def test_reports_published_before_any_receiver_go_again_when_the_first_one_subscribes(
    tmp_path: Path,
    mosquitto: Mosquitto,
) -> None:
    post = Post(post_config(tmp_path / "post", [mosquitto.url], ack_timeout_s=LONG_ACK_TIMEOUT_S))
    try:
        post.put(make_reports(10))
        post.start()
        # the broker took them (PUBACK) and, with no subscriber anywhere, dropped them
        assert wait_for(lambda: post.store.counts()["sent"] == 10, 15), post.store.counts()
        assert post.store.counts()["delivered"] == 0
        center = Center(f"sqlite:///{tmp_path}/center.db", [mosquitto.url]).start()
        try:
            subscribed = time.monotonic()
            assert post.wait_delivered(10, 30), post.store.counts()
            took = time.monotonic() - subscribed
            # a correctness bound, not a speed figure: ack_timeout_s would have been 600 s
            assert took < LONG_ACK_TIMEOUT_S / 10, took
            assert center.storage.counts()["reports"] == 10
            assert post.uplink.counters["published_reports"] == 20  # each exactly once more
        finally:
            center.stop()
    finally:
        post.stop()


def test_a_receiver_whose_session_lacks_its_subscriptions_says_so(
    tmp_path: Path,
    mosquitto: Mosquitto,
) -> None:
    """The receiver side of the same hole: its earlier session (with the probe's retained marker) is taken
    over by an attempt that never subscribes; what posts publish meanwhile is dropped by the broker.  The
    receiver's probe round trip finds the subscriptions missing, so it announces a *new* session and posts
    re-send at once instead of after ack_timeout_s."""
    db = f"sqlite:///{tmp_path}/center.db"
    first = Center(db, [mosquitto.url], client_id="siaga-center-a").start()
    post = Post(post_config(tmp_path / "post", [mosquitto.url], ack_timeout_s=LONG_ACK_TIMEOUT_S))
    try:
        post.start()
        post.put(make_reports(2))
        assert post.wait_delivered(2, 15)
        first.stop()
        # the broker loses the receiver's session; a new one, present but without subscriptions, replaces it
        publish_once_expiring("siaga-center-a", mosquitto.url)
        leave_session_without_subscriptions(mosquitto.url, "siaga-center-a")
        post.put(make_reports(5))
        assert wait_for(lambda: post.store.counts()["sent"] == 5, 15), post.store.counts()
        second = Center(db, [mosquitto.url], client_id="siaga-center-a").start()
        try:
            assert post.wait_delivered(7, 30), post.store.counts()
            assert second.storage.counts()["reports"] == 7
        finally:
            second.stop()
    finally:
        post.stop()


def publish_once_expiring(client_id: str, url: str) -> None:
    """Take ``client_id``'s session over with expiry 0 and leave: the broker forgets it."""
    link = MqttLink(
        TlsMqttConfig(urls=(url,)), BrokerAddress.parse(url), client_id=client_id, handler=_Silent(), session_expiry_s=0
    )
    link.open(timeout=10)
    link.close()


def test_center_state_topic_for_probe_is_per_receiver() -> None:
    assert protocol.center_probe_topic("siaga-center-a") != protocol.center_probe_topic("siaga-center-b")
    assert "+" not in protocol.center_probe_topic("a+b#c/d")


#: Broker ACLs with a mistake about the report topic.  "center cannot read": the broker takes the post's
#: reports (PUBACK) and hands them to nobody — silent.  "post cannot write": Mosquitto 2.0 answers an MQTT 5
#: client "Not authorized" (an MQTT 3.1.1 one it would PUBACK and drop); the post drops the link and retries.
ACLS = {
    "center cannot read": "topic write 112/v1/+/+/report\n",
    "post cannot write": "topic read 112/v1/+/+/report\n",
}
ACL_REST = """\
topic readwrite 112/v1/+/+/status
topic readwrite 112/v1/+/+/event
topic readwrite 112/v1/+/+/ack
topic readwrite 112/v1/+/+/cmd
topic readwrite 112/v1/center/#
"""


@pytest.mark.parametrize("mistake", sorted(ACLS))
def test_a_broker_that_drops_a_posts_reports_is_visible_everywhere(tmp_path: Path, mistake: str) -> None:
    """An ACL mistake: the broker takes the post's reports and passes none on (or refuses them).  The post
    says "no center ack for N minutes while connected" (``siaga status``, its metrics, its heartbeats), and
    the center's posts page shows it connected but not delivering — while the center is online."""
    from center.web.context import post_row
    from edge.status import post_status, render_status
    from siaga.metrics import Registry

    acl = tmp_path / "wrong.acl"
    acl.write_text(ACLS[mistake] + ACL_REST, encoding="utf-8")
    broker = Mosquitto(tmp_path / "broker", extra=f"acl_file {acl}").start()
    center = Center(f"sqlite:///{tmp_path}/center.db", [broker.url]).start()
    try:
        cfg = config_mod.from_dict(
            {
                "node": {"post_id": "oebubun", "name": "Pos Siaga Oebubun", "data_dir": str(tmp_path / "data")},
                "uplink": {"mqtt": {"url": broker.url, "keepalive_s": 5, "ack_timeout_s": 5.0, "heartbeat_s": 5.0}},
            }
        )
        with running_post(cfg, connect=False) as daemon:
            assert daemon.uplink is not None and daemon.store is not None
            daemon.store.put(make_reports(3)[0])
            daemon.uplink.wake()
            # the center is online, yet no ack comes
            assert wait_for(lambda: daemon.uplink.state()["center"] == "online", 15)  # type: ignore[union-attr]
            assert wait_for(daemon.uplink.stalled, 30), daemon.uplink.state()  # type: ignore[union-attr]
            waited = daemon.uplink.no_center_ack_s()
            assert waited is not None and waited > 5.0
            # siaga status (from the daemon's runtime file, as the CLI reads it)
            daemon.refresh_runtime()
            status = post_status(cfg, daemon.store)
            assert "center_not_acking" in status["attention"] and status["no_center_ack_s"] is not None
            text = render_status(status)
            assert "TIDAK mengonfirmasi" in text and "Tanpa konfirmasi pusat walau tersambung" in text
            # the post's metrics
            registry = Registry()
            daemon.register_metrics(registry)
            assert "uplink_no_center_ack_seconds" in registry.render()
            # the center: the post's heartbeats arrive (status is allowed), its reports do not
            assert wait_for(
                lambda: (p := center.storage.get_post("oebubun")) is not None and p.status.get("delivering") is False,
                30,
            ), center.receiver.state()
            presence = center.storage.get_post("oebubun")
            assert presence is not None
            assert presence.state == "online"  # a refused publish does not make the post "offline" (no Last Will)
            row = post_row(presence, time.time(), 900.0, None)
            assert row["not_delivering"] and not row["silent"] and row["no_ack_s"] > 5.0
            assert center.storage.counts()["reports"] == 0
    finally:
        center.stop()
        broker.stop(kill=True)


def test_a_post_on_its_secondary_broker_returns_to_the_primary(tmp_path: Path) -> None:
    """The primary broker is down when the post starts: it delivers through the secondary.  The primary comes
    back: within ``primary_probe_s`` the post looks, leaves the secondary when nothing is in flight (no Last
    Will: it is not going offline; its retained status there is cleared) and delivers through the primary."""
    primary = Mosquitto(tmp_path / "primary")
    secondary = Mosquitto(tmp_path / "secondary").start()
    db = f"sqlite:///{tmp_path}/center.db"
    centers = [Center(db, [secondary.url], client_id="siaga-center-secondary").start()]
    post = Post(
        post_config(
            tmp_path / "post",
            [primary.url, secondary.url],
            ack_timeout_s=LONG_ACK_TIMEOUT_S,
            mqtt_extra={"primary_probe_s": 5},
        )
    )
    try:
        post.put(make_reports(3))
        post.start()
        assert post.wait_delivered(3, 30), post.store.counts()
        assert post.uplink.state()["broker"] == secondary.url
        primary.start()
        centers.append(Center(db, [primary.url], client_id="siaga-center-primary").start())
        assert wait_for(lambda: post.uplink.state()["broker"] == primary.url, 30), post.uplink.state()
        assert post.uplink.counters["primary_returns"] == 1
        post.put(make_reports(2, text="BANJIR jalan putus"))
        assert post.wait_delivered(5, 30), post.store.counts()
        assert centers[1].receiver.counters["reports"] == 2  # through the primary
        assert centers[0].storage.counts()["reports"] == 5
        # the secondary holds no stale status of the post, and it was never marked offline
        presence = centers[0].storage.get_post("oebubun")
        assert presence is not None and presence.state == "online"
        assert centers[0].receiver.counters["status_cleared"] >= 1
    finally:
        post.stop()
        for center in centers:
            center.stop()
        primary.stop(kill=True)
        secondary.stop(kill=True)
