"""A post (edge.daemon.Post, the real meshtastic library inside) wired to a simulated device, for tests.

Used by tests/test_daemon.py and tests/fuzz/test_fuzz_radio.py.  Nothing is patched: the post talks to the
device over a real TCP socket or a real pseudo-terminal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from devkit.harness.wait import wait_until
from devkit.sim import SimulatedDevice
from edge.daemon import Post
from edge.radio import RadioTuning
from edge.store import StoredReport
from siaga import config as config_mod
from siaga.config import Config

HANDSET = "!a1b2c3d4"  # registered: officer Yohanes Taek
STRANGER = "!b0b0b0b0"  # a radio nobody registered
POST_LAT, POST_LON = -9.3853, 124.3544
SPEED = 20.0
#: Short timers so a lost link is noticed quickly in tests (production: 30 s / 20 s).
FAST = RadioTuning(backoff_first_s=0.5, backoff_max_s=2.0, heartbeat_s=5.0, dead_after_s=5.0, reconfig_grace_s=10.0)

T = TypeVar("T")


def post_config(tmp_path: Path, *, radio: dict[str, Any] | None = None, **mesh: Any) -> Config:
    """A post config whose radio is ``radio`` (``{"host": ...}`` or ``{"port": ...}``) plus ``mesh`` keys."""
    meshtastic = {"min_send_interval_s": 0.2, "ack_timeout_s": 3.0, "receipt_retries": 3, **(radio or {}), **mesh}
    return config_mod.from_dict(
        {
            "node": {
                "post_id": "oebubun",
                "name": "Pos Siaga Oebubun",
                "data_dir": str(tmp_path / "data"),
                "lat": POST_LAT,
                "lon": POST_LON,
            },
            "radio": {"meshtastic": meshtastic},
            "handsets": [{"id": HANDSET, "officer": "Yohanes Taek", "village": "Oebubun"}],
        }
    )


def handset_post_config(tmp_path: Path, device: SimulatedDevice, uplink_url: str, **mqtt: Any) -> Config:
    """The post of the whole-chain tests: radio over TCP to ``device``, uplink to ``uplink_url`` (``mqtt``:
    more ``[uplink.mqtt]`` keys, e.g. ``ack_timeout_s``), the registered handset."""
    return config_mod.from_dict(
        {
            "node": {"post_id": "oebubun", "name": "Pos Siaga Oebubun", "data_dir": str(tmp_path / "data")},
            "radio": {
                "meshtastic": {
                    **radio_of(device, "tcp"),
                    "min_send_interval_s": 0.2,
                    "ack_timeout_s": 3.0,
                    "receipt_retries": 3,
                }
            },
            "uplink": {"mqtt": {"url": uplink_url, "keepalive_s": 5, "ack_timeout_s": 5.0, **mqtt}},
            "handsets": [{"id": HANDSET, "officer": "Yohanes Taek", "village": "Oebubun"}],
        }
    )


def make_device(tmp_path: Path, transport: str, **kw: Any) -> SimulatedDevice:
    kw.setdefault("speed", SPEED)
    kw.setdefault("seed", 7)
    kw.setdefault("record_path", tmp_path / "sent.jsonl")
    if transport == "tcp":
        return SimulatedDevice(listen=("127.0.0.1", 0), **kw)
    return SimulatedDevice(pty_path=tmp_path / "ttySIM", **kw)


def radio_of(device: SimulatedDevice, transport: str) -> dict[str, Any]:
    if transport == "tcp":
        return {"host": f"127.0.0.1:{device.port}"}
    assert device.pty_path is not None
    return {"port": str(device.pty_path)}


@contextmanager
def running_post(cfg: Config, *, tuning: RadioTuning = FAST, connect: bool = True) -> Iterator[Post]:
    post = Post(cfg, radio_tuning=tuning)
    post.start()
    try:
        if connect:
            assert post.radio is not None
            assert post.radio.wait_connected(20), "the post never connected to the simulated device"
        yield post
    finally:
        post.stop()


@contextmanager
def post_and_device(
    tmp_path: Path, transport: str = "tcp", *, device_kw: dict[str, Any] | None = None, **mesh: Any
) -> Iterator[tuple[Post, SimulatedDevice]]:
    device = make_device(tmp_path, transport, **(device_kw or {}))
    device.start()
    try:
        cfg = post_config(tmp_path, radio=radio_of(device, transport), **mesh)
        with running_post(cfg) as post:
            yield post, device
    finally:
        device.stop()


def reports(post: Post) -> list[StoredReport]:
    assert post.store is not None
    return post.store.list_reports(limit=10_000)


def report_with_text(post: Post, fragment: str) -> StoredReport | None:
    for row in reports(post):
        if fragment in row.report.text_raw:
            return row
    return None


def wait_report(post: Post, fragment: str, timeout: float = 15.0) -> StoredReport:
    found = wait_until(lambda: report_with_text(post, fragment), timeout, f"a report containing {fragment!r}")
    assert found is not None
    return found


def receipts_settled(post: Post) -> bool:
    """Every first receipt reached a final state and nothing is left in the outbox."""
    rows = reports(post)
    finals = ("acked", "relayed", "failed")
    return all(r.receipt_post in finals for r in rows) and (post.outbox is None or post.outbox.idle())


def acked_receipts(device: SimulatedDevice, ref: str, prefix: str = "112 POS") -> list[Any]:
    return [p for p in device.sent if p.text and p.text.startswith(prefix) and f"#{ref}" in p.text and p.acked is True]
