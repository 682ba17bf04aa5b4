"""Report factories for tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from siaga.report import PathHop, Report, mesh_report_id, new_report_id

_counter = itertools.count(1)


def make_report(
    text: str = "KEBAKARAN rumah warga",
    *,
    category: str = "kebakaran",
    report_id: str | None = None,
    post_id: str = "oebubun",
    origin: str = "operator:budi",
    when: datetime | None = None,
    **changes: object,
) -> Report:
    when = when or datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    report = Report(
        report_id=report_id or new_report_id(),
        post_id=post_id,
        origin=origin,
        source="manual",
        text_raw=text,
        observed_at=when,
        stored_at=when,
        category=category,
    )
    return report.with_changes(**changes) if changes else report


def make_mesh_report(from_node: int = 0xA1B2C3D4, packet_id: int | None = None, **changes: object) -> Report:
    packet_id = packet_id if packet_id is not None else next(_counter)
    when = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    base = make_report(
        report_id=mesh_report_id(from_node, packet_id, when),
        origin=f"!{from_node:08x}",
        when=when,
        source="meshtastic",
        mesh_packet_id=packet_id,
        path=(PathHop("oebubun", hops=1, snr=5.0, rssi=-90),),
    )
    return base.with_changes(**changes) if changes else base
