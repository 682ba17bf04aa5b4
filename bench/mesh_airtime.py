"""Airtime on LONG_FAST of every kind of message the post sends into the mesh (computed, Semtech AN1200.13).

Run: .venv/bin/python bench/mesh_airtime.py

On-air size = the 16-byte Meshtastic header + the encoded ``Data`` protobuf as the firmware airs it
(portnum, payload, bitfield); "+PKI" adds the 12 bytes of a PKI-encrypted direct message (firmware 2.5+,
when both radios know each other's key).  Worst cases: every category × post names up to the longest label,
a staff reply at its longest (ASCII, and multi-byte text cut by the post).  Goals: every message one packet
(encoded Data ≤ 233 B), receipts ≤ 700 ms.
"""

from __future__ import annotations

import itertools
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.receipts import RECEIPT_AIRTIME_MS, center_receipt_text, post_receipt_text, reply_text  # noqa: E402
from siaga.airtime import (  # noqa: E402
    DATA_PAYLOAD_LEN,
    LONG_FAST,
    PKI_OVERHEAD_BYTES,
    fits_one_packet,
    frame_bytes,
    routing_ack_data,
    text_data,
    time_on_air_ms,
)
from siaga.report import CATEGORIES  # noqa: E402

OLD_RECEIPT = "112 POS OEBUBUN TERIMA #K7Q2 KEBAKARAN. Menunggu sinyal ke pusat."
NAMES = ("Pos Siaga Oebubun", "Pos Siaga " + "W" * 30, "Pos Siaga Désa Ñamà Yang Sangat Panjang Sekali")


def _row(kind: str, data: bytes, text: str | None, goal_ms: float | None) -> dict[str, Any]:
    airtime = time_on_air_ms(frame_bytes(data), LONG_FAST)
    airtime_pki = time_on_air_ms(frame_bytes(data, pki=True), LONG_FAST)
    single = fits_one_packet(data, pki=True)
    ok = single and (goal_ms is None or airtime <= goal_ms)
    return {
        "kind": kind,
        "text": text,
        "text_bytes": len(text.encode("utf-8")) if text is not None else None,
        "data_bytes": len(data),
        "frame_bytes": frame_bytes(data),
        "airtime_ms": round(airtime, 1),
        "airtime_pki_ms": round(airtime_pki, 1),
        "one_packet": single,
        "goal_ms": goal_ms,
        "ok": ok,
    }


def _longest(texts: list[str]) -> str:
    return max(texts, key=lambda t: (len(text_data(t)), t))


def measure() -> dict[str, Any]:
    post = [post_receipt_text(n, "K7Q2", c) for n, c in itertools.product(NAMES, CATEGORIES)]
    start = datetime(2026, 11, 28, tzinfo=UTC)
    center = [center_receipt_text("K7Q2", start + timedelta(minutes=m), "Asia/Makassar") for m in range(0, 1440, 59)]
    reply_ascii = reply_text("Ambulans berangkat ke lokasi, tunggu di jalan utama. " * 10)
    reply_multi = reply_text("Évakuasi ke gereja 🚑 " * 40)
    rows = [
        _row("post receipt (typical)", text_data(post[0]), post[0], RECEIPT_AIRTIME_MS),
        _row("post receipt (worst case)", text_data(_longest(post)), _longest(post), RECEIPT_AIRTIME_MS),
        _row("center receipt", text_data(_longest(center)), _longest(center), RECEIPT_AIRTIME_MS),
        _row("staff reply, longest (ASCII)", text_data(reply_ascii), reply_ascii, None),
        _row("staff reply, longest (multi-byte)", text_data(reply_multi), reply_multi, None),
        _row("radio ACK to a handset's report (firmware)", routing_ack_data(), None, None),
    ]
    old = _row("old post receipt (before this change)", text_data(OLD_RECEIPT), OLD_RECEIPT, RECEIPT_AIRTIME_MS)
    return {
        "modem": {
            "preset": LONG_FAST.name,
            "sf": LONG_FAST.spreading_factor,
            "bw_hz": LONG_FAST.bandwidth_hz,
            "cr": f"4/{LONG_FAST.coding_rate}",
            "preamble": LONG_FAST.preamble_symbols,
        },
        "data_payload_len": DATA_PAYLOAD_LEN,
        "pki_overhead_bytes": PKI_OVERHEAD_BYTES,
        "messages": rows,
        "old_receipt": old,
        "all_ok": all(r["ok"] for r in rows),
    }


def main() -> int:
    res = measure()
    print("airtime on LONG_FAST (SF11, 250 kHz, 4/5, 16-symbol preamble, explicit header, CRC)")
    print("| message | text B | Data B | on air B | airtime ms | +PKI ms | one packet | goal |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in [*res["messages"], res["old_receipt"]]:
        goal = f"≤ {r['goal_ms']:.0f} ms" if r["goal_ms"] else "one packet"
        print(
            f"| {r['kind']} | {r['text_bytes'] if r['text_bytes'] is not None else '-'} | {r['data_bytes']} "
            f"| {r['frame_bytes']} | {r['airtime_ms']:.0f} | {r['airtime_pki_ms']:.0f} | {r['one_packet']} "
            f"| {goal} {'ok' if r['ok'] else 'MISSED'} |"
        )
    for r in res["messages"][:3]:
        print(f"  {r['kind']}: {r['text']!r}")
    return 0 if res["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
