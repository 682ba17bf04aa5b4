"""Airtime of what the post airs: the formula against the reference figures, and every outgoing message
within one packet, receipts within their budget (computed airtime is deterministic: no timing here)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from meshtastic.protobuf import mesh_pb2, portnums_pb2

from edge.receipts import (
    RECEIPT_AIRTIME_MS,
    RECEIPT_MAX_BYTES,
    center_receipt_text,
    post_receipt_text,
    reply_text,
)
from siaga.airtime import (
    DATA_PAYLOAD_LEN,
    LONG_FAST,
    MESH_HEADER_BYTES,
    fits_one_packet,
    max_text_bytes,
    routing_ack_data,
    text_airtime_ms,
    text_data,
    time_on_air_ms,
)
from siaga.report import CATEGORIES
from sync.protocol import MAX_REPLY_TEXT_BYTES as MAX_REPLY_BYTES

# Post names: ordinary, one that fills the 20-character label, one long with accents, the shortest.
NAMES = ("Pos Siaga Oebubun", "Pos Siaga " + "W" * 30, "Pos Siaga Désa Ñamà Yang Sangat Panjang Sekali", "X")
REFS = ("K7Q2", "WWWW")


@pytest.mark.parametrize(
    ("payload", "expected_ms"),
    # ../shared/MESHTASTIC.md: Semtech AN1200.13 on LONG_FAST, payload + the 16-byte header
    [(16, 477), (32, 600), (64, 846), (128, 1337), (200, 1870)],
)
def test_time_on_air_matches_the_reference_figures(payload: int, expected_ms: float) -> None:
    assert time_on_air_ms(payload + MESH_HEADER_BYTES, LONG_FAST) == pytest.approx(expected_ms, abs=0.5)


def test_long_fast_is_the_documented_preset() -> None:
    assert (LONG_FAST.spreading_factor, LONG_FAST.bandwidth_hz, LONG_FAST.coding_rate) == (11, 250_000.0, 5)
    assert LONG_FAST.preamble_symbols == 16 and LONG_FAST.explicit_header and LONG_FAST.crc
    assert not LONG_FAST.low_data_rate_optimize
    assert LONG_FAST.symbol_ms == pytest.approx(8.192)


def test_text_data_is_what_the_firmware_airs() -> None:
    data = mesh_pb2.Data()
    data.ParseFromString(text_data("112 PUSAT TERIMA #K7Q2 14:05"))
    assert data.portnum == portnums_pb2.PortNum.TEXT_MESSAGE_APP
    assert data.payload == b"112 PUSAT TERIMA #K7Q2 14:05"
    assert data.HasField("bitfield")  # firmware 2.5+ sets it on every packet it originates
    # portnum (2) + payload tag and length (2) + bitfield (2) around the text
    assert len(text_data("x" * 38)) == 38 + 6


def test_receipt_budget_is_derived_from_airtime() -> None:
    assert max_text_bytes(RECEIPT_AIRTIME_MS) == RECEIPT_MAX_BYTES
    assert text_airtime_ms("x" * RECEIPT_MAX_BYTES) <= RECEIPT_AIRTIME_MS
    assert text_airtime_ms("x" * (RECEIPT_MAX_BYTES + 1)) > RECEIPT_AIRTIME_MS
    # the old first receipt did not fit
    assert text_airtime_ms("112 POS OEBUBUN TERIMA #K7Q2 KEBAKARAN. Menunggu sinyal ke pusat.") > RECEIPT_AIRTIME_MS


def test_every_post_receipt_fits_its_budget_and_keeps_ref_and_category() -> None:
    for name, ref, category in itertools.product(NAMES, REFS, CATEGORIES):
        text = post_receipt_text(name, ref, category)
        assert text.isascii() and text.startswith("112 POS ")
        assert text.endswith(f"TERIMA #{ref} {category.upper()}"), text
        assert text_airtime_ms(text) <= RECEIPT_AIRTIME_MS, (text, text_airtime_ms(text))
        assert fits_one_packet(text_data(text), pki=True)


def test_every_center_receipt_fits_its_budget() -> None:
    start = datetime(2026, 11, 28, tzinfo=UTC)
    for ref, minutes in itertools.product(REFS, range(0, 24 * 60, 7)):
        text = center_receipt_text(ref, start + timedelta(minutes=minutes), "Asia/Makassar")
        assert text.startswith(f"112 PUSAT TERIMA #{ref} ")
        assert text_airtime_ms(text) <= RECEIPT_AIRTIME_MS
        assert fits_one_packet(text_data(text), pki=True)


@pytest.mark.parametrize("body", ["x" * 1000, "é" * 1000, "🚑" * 1000, "x" * MAX_REPLY_BYTES])
def test_a_staff_reply_at_its_longest_is_one_packet_even_as_a_pki_dm(body: str) -> None:
    text = reply_text(body)
    data = text_data(text)
    assert fits_one_packet(data, pki=True) and len(data) <= DATA_PAYLOAD_LEN
    assert text.startswith("112: ")


def test_the_center_limit_lets_a_reply_through_whole() -> None:
    # the longest reply the center accepts reaches the handset uncut
    body = "a" * MAX_REPLY_BYTES
    assert reply_text(body) == f"112: {body}"


def test_the_radios_ack_is_one_short_packet() -> None:
    data = routing_ack_data()
    assert fits_one_packet(data) and time_on_air_ms(MESH_HEADER_BYTES + len(data)) < RECEIPT_AIRTIME_MS
