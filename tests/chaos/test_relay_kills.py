"""A post SIGKILLed at each custody step of the relay (issue 12, "Must show"): 0 lost, 0 duplicates at the
center, everything delivered at the origin.

A chain oebubun (A, the officer's post, no uplink) — bukit (B, no uplink) — kefa (C, the uplink) on the
simulated mesh (tests/relay_rig.py); the post killed is a real ``siaga run`` subprocess, the others run in
this process.  Each fault lands by construction, never by racing a clock:

* **before the carrier's commit**: B is SIGSTOPped, A's REPORTs reach B's radio (nothing of them left on air
  toward B: ``Mesh.on_air_to``) and sit unread in B's socket; SIGKILL B, restart it.
* **after the commit, before its CACK**: B owes its CACKs for 30 s; once its store (read by a read-only
  connection) has every report, SIGKILL B; restart it (with the ordinary CACK delay).
* **after the CACK, before the sender forgets**: B's CACKs to A are held at B's radio port (a gate at the
  engine's RadioPort boundary); once B has committed everything, A is SIGSTOPped, the gate opens, the CACK
  reaches A's radio and its socket; SIGKILL A, restart it.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.harness.mosquitto import Mosquitto
from sync import compact as codec
from tests.relay_rig import Rig, elapsed, rig_context

pytestmark = pytest.mark.chaos

TEXTS = [
    "KEBAKARAN rumah warga dusun 3 dekat pasar",
    "BANJIR air sungai naik ke jalan desa Oebubun",
    "warga sakit keras perlu ambulans segera",
]
#: Retries at 5, 15, 35 s: a restarted carrier is back well before its sender would skip it (3 misses).
RETRY_S = 5.0


@pytest.fixture
def rig(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Rig]:
    yield from rig_context(tmp_path, mosquitto)


def chain(rig: Rig, **bukit: Any) -> None:
    rig.add("oebubun", handset=True, retry_s=RETRY_S)
    rig.add("bukit", retry_s=RETRY_S, **bukit)
    rig.add("kefa", uplink=True, retry_s=RETRY_S)
    rig.link("oebubun", "bukit")
    rig.link("bukit", "kefa")


def all_held(rig: Rig, name: str) -> bool:
    return all(rig.holds(name, t) for t in TEXTS)


def assert_exactly_once_and_home(rig: Rig) -> dict[str, float]:
    """Every report at the center once under its origin, delivered at the origin, its center receipt ACKed
    by the handset.  Returns the times it took (from the call)."""
    t0 = time.monotonic()
    rig.wait(lambda: rig.all_at_center(TEXTS), "every report at the center")
    t_center = elapsed(t0)
    rig.wait(lambda: all(rig.origin_state("oebubun", t) == "delivered" for t in TEXTS), "delivered at the origin")

    def refs() -> set[str]:
        return {m.group(1) for r in rig.receipts("oebubun", "112 PUSAT TERIMA") if (m := re.search(r"#(\S+)", r))}

    rig.wait(lambda: len(refs()) == len(TEXTS), "a center receipt for every report, ACKed by the handset")
    t_home = elapsed(t0)
    found = rig.at_center(TEXTS)
    assert all(len(rows) == 1 and rows[0]["post_id"] == "oebubun" for rows in found.values()), found
    assert len(rig.center_reports()) == len(TEXTS), rig.center_reports()  # 0 duplicates, nothing else
    copies = rig.center_copies()
    assert sorted((c["post_id"], c["relay_prev"]) for c in copies) == [("kefa", "bukit")] * len(TEXTS), copies
    assert rig.center is not None and dict(rig.center.receiver.rejects) == {}
    assert rig.sent_to_handset("bukit") == [] and rig.sent_to_handset("kefa") == []
    return {"center_s": t_center, "home_s": t_home}


def test_a_carrier_killed_before_its_commit_loses_nothing(rig: Rig) -> None:
    chain(rig)
    rig.start(subprocess_for=("bukit",))
    rig.wait(lambda: rig.metric("oebubun") == 2, "A's route through B")
    rig.signal("bukit", signal.SIGSTOP)
    t0 = time.monotonic()
    for text in TEXTS:
        rig.text("oebubun", text)
    rig.wait(
        lambda: len(rig.relay_sent("oebubun", codec.TYPE_REPORT, to="bukit")) >= len(TEXTS) and rig.reached("bukit"),
        "A's REPORTs at B's radio",
    )
    assert rig.store_rows("bukit") == []  # B has not run since: nothing committed
    rig.kill("bukit")
    rig.spawn("bukit")
    times = assert_exactly_once_and_home(rig)
    print(f"TIMING kill before commit: {times}, total {elapsed(t0)} s")


def test_a_carrier_killed_after_its_commit_before_its_cack_loses_nothing(rig: Rig) -> None:
    chain(rig, cack_delay_s=30.0)
    rig.start(subprocess_for=("bukit",))
    rig.wait(lambda: rig.metric("oebubun") == 2, "A's route through B")
    t0 = time.monotonic()
    for text in TEXTS:
        rig.text("oebubun", text)
    rig.wait(lambda: all_held(rig, "bukit"), "every report committed at B")
    rig.kill("bukit")
    assert rig.relay_sent("bukit", codec.TYPE_CUSTODY_ACK, to="oebubun") == []  # its CACK never left
    assert all(rig.origin_state("oebubun", t) == "pending" for t in TEXTS)  # so A still holds them
    rig.stations["bukit"].relay["cack_delay_s"] = 0.2
    rig.spawn("bukit")
    times = assert_exactly_once_and_home(rig)
    print(f"TIMING kill after commit: {times}, total {elapsed(t0)} s")


class CackGate:
    """B's radio port (relay.engine.RadioPort) holding the CACKs to one node until :meth:`release`."""

    def __init__(self, inner: Any, dest: int) -> None:
        self.inner = inner
        self.dest = dest
        self.held: list[bytes] = []
        self._open = False
        self._lock = threading.Lock()

    def send_relay(self, dest: int | None, payload: bytes) -> None:
        with self._lock:
            if not self._open and dest == self.dest and codec.message_type(payload) == codec.TYPE_CUSTODY_ACK:
                self.held.append(payload)
                return
        self.inner.send_relay(dest, payload)

    def accepted(self) -> int:
        """Transfers the held CACKs accept."""
        with self._lock:
            held = list(self.held)
        return sum(len(list(r.ids())) for p in held for r in codec.decode_cack(p) if r.outcome == codec.ACCEPTED)

    def release(self) -> None:
        with self._lock:
            self._open = True
            held, self.held = self.held, []
        for payload in held:
            self.inner.send_relay(self.dest, payload)


def test_a_sender_killed_after_the_cack_before_it_forgets_loses_nothing(rig: Rig) -> None:
    chain(rig)
    rig.start(subprocess_for=("oebubun",))
    b = rig.stations["bukit"].post
    assert b is not None and b.relay is not None
    gate = CackGate(b.relay.radio, rig.stations["oebubun"].device.node_num)
    b.relay.radio = gate
    rig.wait(lambda: rig.neighbour_metrics("bukit") == {"oebubun": 2, "kefa": 0}, "A routes through B")
    t0 = time.monotonic()
    for text in TEXTS:
        rig.text("oebubun", text)
    rig.wait(lambda: all_held(rig, "bukit") and gate.accepted() >= len(TEXTS), "B committed all, its CACKs held")
    rig.signal("oebubun", signal.SIGSTOP)
    gate.release()
    rig.wait(
        lambda: rig.relay_sent("bukit", codec.TYPE_CUSTODY_ACK, to="oebubun") and rig.reached("oebubun"),
        "B's CACK at A's radio",
    )
    assert all(rig.origin_state("oebubun", t) == "pending" for t in TEXTS)  # A has not heard it
    rig.kill("oebubun")
    rig.spawn("oebubun")
    times = assert_exactly_once_and_home(rig)
    print(f"TIMING kill after CACK: {times}, total {elapsed(t0)} s")
