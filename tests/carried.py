"""Reports carried by another post, as a carrier with an uplink publishes them (docs/RELAY.md, "To the
center"): the origin's relay packet (sync/compact.py, tagged with the origin's derived key) and the JSON
body the carrier decoded from it, with the ``relay`` field beside the report's own."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from siaga.report import Report
from sync import compact, protocol

#: The regency relay secret of the tests (32 bytes; the center's [center.relay] secret_file holds its hex).
SECRET = bytes(range(1, 33))


def post_key(post_id: str, epoch: int = 0, secret: bytes = SECRET) -> bytes:
    return compact.derive_post_key(secret, post_id, epoch)


def packet_of(
    report: Report,
    *,
    age_s: float = 0.0,
    epoch: int = 0,
    hops: int = 0,
    transit_s: int = 0,
    key: bytes | None = None,
) -> bytes:
    """The origin's packet for ``report`` (its ``post_id`` is the origin), ``age_s`` after observing it."""
    relay_report = compact.from_report(report, age_s=age_s)
    return compact.encode_report(
        relay_report,
        key if key is not None else post_key(report.post_id, epoch),
        key_epoch=epoch,
        hops=hops,
        transit_s=transit_s,
    )


def carried_dict(packet: bytes, *, prev: str, hops: int, body: Report | None = None) -> dict[str, Any]:
    """The report body a carrier publishes: the report decoded from ``packet`` (or ``body``) plus ``relay``."""
    report = body if body is not None else compact.to_report(compact.parse_report(packet))
    return {**report.to_dict(), "relay": protocol.encode_relay(packet, prev, hops)}


def carried_wire(
    packet: bytes, *, prev: str, hops: int, held_s: float = 0.0, body: Report | None = None
) -> protocol.StoredWireReport:
    """One entry of a carrier's ``reports`` batch (``held_s``: how long the carrier held it)."""
    data = carried_dict(packet, prev=prev, hops=hops, body=body)
    return protocol.StoredWireReport(data["report_id"], json.dumps(data, ensure_ascii=False), held_s, "boot")


def tamper_text(packet: bytes, text: str) -> bytes:
    """What a dishonest carrier makes of ``packet``: the same report with another text, the tag kept."""
    parsed = compact.parse_report(packet)
    forged = compact.encode_report(
        replace(parsed.report, text=text),
        b"\x00" * 32,
        key_epoch=parsed.key_epoch,
        hops=parsed.hops,
        transit_s=parsed.transit_s,
    )
    return forged[: -compact.TAG_BYTES] + parsed.tag
