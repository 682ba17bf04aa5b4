"""Hostile bytes from a TNC: KISS framing, AX.25 frames and APRS packets made up by hypothesis.

The pure layers (edge/kiss.py, edge/ax25.py, edge/aprs.py, edge/touchtone.py) must never raise anything but
their own named refusal, whatever arrives; encode → decode must give back what was encoded at any split of
the byte stream; and the TNC bridge's loop, fed the same junk over a real socket, must count it and still
store the good frame sent after it.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge import aprs
from edge.ax25 import Address, Ax25Error, UiFrame, parse_ui
from edge.daemon import Post
from edge.kiss import KissDecoder, encode
from edge.tnc import TncTuning
from edge.touchtone import Decoded, Unreadable, decode, load_table
from tests.conftest import Budget
from tests.fuzz.conftest import Reasons
from tests.radio_rig import wait_until
from tests.test_tnc_direwolf import CODES, STATION, rows, tnc_config

pytestmark = pytest.mark.fuzz

KISS_REASONS = ("kiss.noise_bytes", "kiss.oversized", "kiss.bad_escape", "kiss.not_data", "kiss.empty")
AX25_REASONS = ("truncated", "bad.address", "bad.path", "not_ui", "oversized")
APRS_REASONS = ("aprs.empty", "aprs.bad_message", "aprs.bad_position", "aprs.other")

calls = st.from_regex(r"[A-Z0-9]{1,6}", fullmatch=True)
addresses = st.builds(Address, calls, st.integers(0, 15))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000), cut=st.integers(0, 3000))
def test_kiss_decoder_never_raises(data: bytes, cut: int, reasons: Reasons) -> None:
    dec = KissDecoder()
    for frame in dec.feed(data[:cut]) + dec.feed(data[cut:]):
        assert frame.command == 0 and 0 < len(frame.data) <= 2048
        reasons.accept("frame")
    reasons.examples += 1
    for key, n in dec.counts.items():
        if key != "kiss.frames":
            reasons.add(key, n)
    reasons.assert_known(KISS_REASONS)


@given(frames=st.lists(st.tuples(st.integers(0, 15), st.binary(min_size=1, max_size=600)), max_size=8),
       cuts=st.lists(st.integers(0, 6000), max_size=5))  # fmt: skip
def test_kiss_round_trip_at_any_split(frames: list[tuple[int, bytes]], cuts: list[int]) -> None:
    wire = b"".join(encode(data, port) for port, data in frames)
    dec = KissDecoder()
    out = []
    last = 0
    for cut in [*sorted(c for c in cuts if c <= len(wire)), len(wire)]:
        out += dec.feed(wire[last:cut])
        last = cut
    assert [(f.port, f.data) for f in out] == frames


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_ax25_and_aprs_never_raise_on_junk(data: bytes, reasons: Reasons) -> None:
    reasons.examples += 1
    try:
        frame = parse_ui(data)
    except Ax25Error as exc:
        reasons.add(exc.reason)
        return
    event = aprs.parse(frame)
    if isinstance(event, aprs.Unusable):
        reasons.add(event.reason)
    else:
        reasons.accept(type(event).__name__)
    reasons.assert_known(AX25_REASONS + APRS_REASONS)


@given(dest=addresses, source=addresses, path=st.lists(addresses, max_size=8), info=st.binary(max_size=256))
def test_ax25_round_trip(dest: Address, source: Address, path: list[Address], info: bytes) -> None:
    frame = UiFrame(dest, source, tuple(path), info)
    parsed = parse_ui(frame.encode())
    assert (str(parsed.destination), str(parsed.source), parsed.info) == (str(dest), str(source), info)
    assert [str(p) for p in parsed.digipeaters] == [str(p) for p in path]


@given(
    addressee=st.from_regex(r"[A-Z0-9]{1,6}(-[0-9]{1,2})?", fullmatch=True),
    text=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
    msg_id=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9]{1,5}", fullmatch=True)),
)
def test_aprs_message_round_trip(addressee: str, text: str, msg_id: str | None) -> None:
    info = aprs.message_info(addressee, text, msg_id)
    event = aprs.parse(UiFrame(Address("APZSIA"), Address("YB9POS"), (), info))
    if isinstance(event, aprs.AprsAck):
        assert text.startswith(("ack", "rej"))  # a text that reads as an ack is one: APRS has no escape
        return
    assert isinstance(event, aprs.AprsMessage)
    assert event.addressee == addressee and event.msg_id == msg_id
    assert len(event.text) <= aprs.MAX_MESSAGE_CHARS


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.text(max_size=40))
def test_touch_tone_decode_never_raises(tmp_path_factory: pytest.TempPathFactory, keys: str) -> None:
    path = tmp_path_factory.mktemp("codes") / "kode.txt"
    path.write_text(CODES)
    result = decode(load_table(path), keys)
    assert isinstance(result, Decoded | Unreadable)
    if isinstance(result, Unreadable):
        assert 1 <= len(result.keys) <= 32


def test_the_bridge_loop_survives_junk_and_stores_the_next_good_frame(
    tmp_path: Path, budget: Budget, reasons: Reasons
) -> None:
    """One post, one KISS server of ours: each example writes junk and then a good message with a fresh id;
    the message must be stored (the loop is alive) and every refusal counted under a known reason."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    post = Post(
        tnc_config(tmp_path, {"host": f"127.0.0.1:{server.getsockname()[1]}"}),
        tnc_tuning=TncTuning(backoff_first_s=0.05, backoff_max_s=0.1),
    )
    post.start()
    conn, _ = server.accept()
    seq = [0]

    @settings(max_examples=budget.pick(60, 1500), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
    @given(junk=st.one_of(st.binary(max_size=600), st.builds(encode, st.binary(max_size=600))))
    def one(junk: bytes) -> None:
        seq[0] += 1
        n = seq[0]
        good = UiFrame(Address("APRS"), Address(STATION), (), f":SIAGA    :BANJIR nomor {n}{{{n % 99999}".encode())
        # a FEND first: whatever half-frame the junk left open is closed before the good frame starts
        conn.sendall(junk + b"\xc0" + encode(good.encode()))
        wait_until(lambda: len(rows(post)) >= n, 20, f"good frame {n} stored after the junk")
        reasons.examples += 1

    try:
        one()
    finally:
        counts = post.counters()
        post.stop()
        conn.close()
        server.close()
    for key, value in counts.items():
        if key.startswith("tnc.bad."):
            reasons.add(key.removeprefix("tnc.bad.").removeprefix("ax25."), value)
        elif key.startswith("tnc.rx."):
            reasons.accept(key)
    assert counts.get("tnc.handler_errors", 0) == 0 and counts.get("tnc.link.lost", 0) == 0
    reasons.assert_known(KISS_REASONS + AX25_REASONS)
