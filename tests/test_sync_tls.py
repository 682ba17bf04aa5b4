"""The shipped broker config (systemd/mosquitto/): TLS with CA verification, per-post passwords, ACL.

Certificates come from the ``openssl`` command line, made fresh for the test module.  The broker runs
systemd/mosquitto/siaga.conf and siaga.acl with only paths and the port changed.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.harness.mosquitto import Mosquitto, free_port
from devkit.harness.synctools import Center, Post, make_reports, post_config, wait_for
from siaga.config import TlsMqttConfig
from siaga.errors import SyncError
from siaga.report import utcnow
from sync import protocol
from sync.mqtt import BrokerAddress, Message, MqttLink, publish_once
from tests.conftest import REPO

SHIPPED = REPO / "systemd" / "mosquitto"
PASSWORDS = {"center": "pusat-rahasia-1", "oebubun": "oebubun-rahasia-2", "napan": "napan-rahasia-3"}


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", f"/CN={name}", cwd=directory
    )
    _openssl("req", *ec, "-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=localhost", cwd=directory)
    (directory / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "broker.crt", "-days", "2", "-extfile", "san.cnf", cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("pki")
    _make_ca(base / "regency", "Siaga TTU test CA")
    _make_ca(base / "stranger", "Some other CA")
    passwd = base / "siaga.passwd"
    passwd.touch()
    for user, password in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True, capture_output=True)
    for user, password in PASSWORDS.items():
        (base / f"{user}.pw").write_text(password + "\n")
    return base


def _render(pki: Path, port: int, state: Path) -> str:
    ca = pki / "regency"
    text = (SHIPPED / "siaga.conf").read_text()
    for old, new in (
        ("listener 8883", f"listener {port} 127.0.0.1"),
        ("/etc/mosquitto/certs/ca.crt", str(ca / "ca.crt")),
        ("/etc/mosquitto/certs/broker.crt", str(ca / "broker.crt")),
        ("/etc/mosquitto/certs/broker.key", str(ca / "broker.key")),
        ("/etc/mosquitto/siaga.passwd", str(pki / "siaga.passwd")),
        ("/etc/mosquitto/siaga.acl", str(SHIPPED / "siaga.acl")),
        ("/var/lib/mosquitto/", f"{state}/"),
    ):
        assert old in text, f"the shipped config no longer has {old!r}"
        text = text.replace(old, new)
    return text + "\nlog_dest stderr\n"


@pytest.fixture
def broker(pki: Path, tmp_path: Path) -> Iterator[Mosquitto]:
    port = free_port()
    b = Mosquitto(tmp_path / "broker", port=port, config=_render(pki, port, tmp_path / "broker"))
    b.start()
    try:
        yield b
    finally:
        b.stop(kill=True)


def _creds(pki: Path, user: str, ca: str = "regency") -> dict[str, str]:
    return {"username": user, "password_file": str(pki / f"{user}.pw"), "ca_file": str(pki / ca / "ca.crt")}


def _url(broker: Mosquitto) -> str:
    return f"mqtts://localhost:{broker.port}"


@pytest.fixture
def center(pki: Path, broker: Mosquitto, tmp_path: Path) -> Iterator[Center]:
    c = Center(f"sqlite:///{tmp_path}/center.db", [_url(broker)], mqtt_extra=_creds(pki, "center")).start()
    try:
        yield c
    finally:
        c.stop()


def test_posts_deliver_over_tls_and_cannot_act_as_another_post(
    pki: Path, broker: Mosquitto, center: Center, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    post = Post(post_config(tmp_path / "post", [_url(broker)], mqtt_extra=_creds(pki, "oebubun")))
    try:
        ids = post.put(make_reports(20))
        post.start()
        assert post.wait_delivered(20, 15), (post.uplink.state(), broker.log())
        assert sorted(
            r["wire_report_id"] for r in center.storage.query("SELECT wire_report_id FROM report_copies")
        ) == sorted(ids)

        # oebubun's credentials, napan's topic and a well-formed napan batch: the broker drops it (Mosquitto
        # 2.0.11 still answers PUBACK "success", so only the center's side can show it never arrived)
        oebubun = TlsMqttConfig(
            urls=(_url(broker),),
            username="oebubun",
            password_file=pki / "oebubun.pw",
            ca_file=pki / "regency" / "ca.crt",
        )
        forged = make_reports(1, post_id="napan")[0]
        payload = protocol.encode_report_batches(
            "napan", [protocol.WireReport(forged, 1.0, "boot")], sent_at=utcnow(), max_bytes=4096
        )[0].payload
        try:
            publish_once(oebubun, protocol.topic("ttu", "napan", "report"), payload, client_id="oebubun-forger")
        except SyncError as exc:  # a broker that says so (MQTT v5 reason 0x87) is fine too
            assert "Not authorized" in str(exc)
        # ... nor read napan's replies: the subscription is granted, but nothing of napan's is delivered
        snoop = _Recorder()
        link = MqttLink(
            oebubun, BrokerAddress.parse(_url(broker)), client_id="oebubun-snoop", handler=snoop, session_expiry_s=0
        )
        link.open(10)
        try:
            link.subscribe([(protocol.topic("ttu", "napan", "cmd"), 1), (protocol.topic("ttu", "oebubun", "cmd"), 1)])
            center_creds = TlsMqttConfig(
                urls=(_url(broker),),
                username="center",
                password_file=pki / "center.pw",
                ca_file=pki / "regency" / "ca.crt",
            )
            for post_id in ("napan", "oebubun"):  # in this order: oebubun's arriving proves napan's would have
                command = {
                    "cmd_id": f"cmd-for-{post_id}",
                    "type": "reply",
                    "report_id": ids[0],
                    "to": "!a1b2c3d4",
                    "text": "x",
                }
                publish_once(
                    center_creds,
                    protocol.topic("ttu", post_id, "cmd"),
                    protocol.encode_command(command, sent_at=utcnow()),
                    client_id="center-cli",
                )
            assert wait_for(lambda: bool(snoop.topics), 10)
            assert snoop.topics == [protocol.topic("ttu", "oebubun", "cmd")]
        finally:
            link.close()
        # a later legitimate report arrives; the forged one never did
        [marker] = post.put(make_reports(1))
        assert post.wait_delivered(21, 10)
        assert center.storage.get_report(marker) is not None
        assert center.storage.get_report(forged.report_id) is None
        assert center.storage.get_post("napan") is None
    finally:
        post.stop()
    for password in PASSWORDS.values():
        assert password not in caplog.text


class _Recorder:
    def __init__(self) -> None:
        self.topics: list[str] = []

    def on_message(self, link: MqttLink, message: Message) -> None:
        self.topics.append(message.topic)

    def on_published(self, link: MqttLink, mid: int, ok: bool, reason: str) -> None: ...

    def on_disconnected(self, link: MqttLink, reason: str) -> None: ...


def test_broker_certificate_from_another_ca_is_refused(pki: Path, broker: Mosquitto, tmp_path: Path) -> None:
    post = Post(post_config(tmp_path / "post", [_url(broker)], mqtt_extra=_creds(pki, "oebubun", ca="stranger")))
    try:
        post.put(make_reports(1))
        post.start()
        assert wait_for(lambda: "certificate" in (post.uplink.state()["last_error"] or ""), 10)
        assert post.store.counts()["pending"] == 1
    finally:
        post.stop()


def test_wrong_password_is_refused_and_never_logged(
    pki: Path, broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("salah-sandi-99\n")
    creds = {**_creds(pki, "oebubun"), "password_file": str(wrong)}
    post = Post(post_config(tmp_path / "post", [_url(broker)], mqtt_extra=creds))
    try:
        post.put(make_reports(1))
        post.start()
        assert wait_for(lambda: "refused" in (post.uplink.state()["last_error"] or ""), 10), post.uplink.state()
        assert post.store.counts()["pending"] == 1
    finally:
        post.stop()
    assert "salah-sandi-99" not in caplog.text and PASSWORDS["oebubun"] not in caplog.text


def test_password_from_environment(
    pki: Path, broker: Mosquitto, center: Center, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIAGA_MQTT_PASSWORD", PASSWORDS["oebubun"])
    creds = {"username": "oebubun", "ca_file": str(pki / "regency" / "ca.crt")}
    post = Post(post_config(tmp_path / "post", [_url(broker)], mqtt_extra=creds))
    try:
        post.put(make_reports(2))
        post.start()
        assert post.wait_delivered(2, 10), post.uplink.state()
    finally:
        post.stop()
