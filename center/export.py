"""Exports of what staff see: OASIS CAP 1.2 XML per report, GeoJSON and CSV of a filtered set.

CAP for an inbound report follows RFC 8876's use of CAP for non-interactive emergency calls: the report is
an ``Alert`` (``Update``/``Cancel`` for a report that updates or cancels earlier ones, or when the center
corrected it), ``circle`` is the point with its accuracy radius, and the center's acknowledgement is an
``Ack`` referencing the report.  CAP ``scope`` is ``Restricted``: reports carry names and phone numbers.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from center.triage import STATUS_LABEL, ReportView
from siaga.report import CAP_CATEGORY, format_time

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CENTER_SENDER = "112.center@siaga-relay"
RESTRICTION = "Laporan darurat untuk petugas 112 dan instansi penanganan; berisi data pribadi."

_MODE_STATUS = {"actual": "Actual", "exercise": "Exercise", "test": "Test"}
_MSG_TYPE = {"new": "Alert", "update": "Update", "cancel": "Cancel", "ack": "Ack"}
_CATEGORY_EVENT = {
    "kebakaran": "Kebakaran",
    "banjir": "Banjir",
    "longsor": "Tanah longsor",
    "angin": "Angin kencang / puting beliung",
    "gempa": "Gempa bumi",
    "kecelakaan": "Kecelakaan",
    "medis": "Kedaruratan medis",
    "kriminal": "Kriminal / konflik",
    "sar": "Pencarian dan pertolongan",
    "hewan": "Hewan berbahaya",
    "infrastruktur": "Kerusakan infrastruktur",
    "sos": "SOS (tanpa keterangan)",
    "aman": "Situasi aman",
    "lainnya": "Lainnya",
}
# XML 1.0 forbids these even escaped; a LoRa text can carry them
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# CAP: sender and identifier "MUST NOT include spaces, commas or restricted characters (< and &)"
_CAP_ID_BAD = re.compile(r"[\s,<&]")


def event_label(category: str) -> str:
    return _CATEGORY_EVENT.get(category, category)


def cap_time(value: datetime) -> str:
    """CAP's dateTime: no fractional seconds, an explicit offset, never ``Z``."""
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


def _clean(text: str) -> str:
    return _XML_BAD.sub("\ufffd", text)


def _cap_id(text: str) -> str:
    return _CAP_ID_BAD.sub("_", text)


def report_sender(view: ReportView) -> str:
    """Who originated it: the handset (or operator) at its post, e.g. ``!a1b2c3d4@pos-oelbubuk.siaga``."""
    return _cap_id(f"{view.report.origin}@{view.report.post_id}.siaga")


def stored_time(view: ReportView) -> datetime:
    """When the post stored the report, on the center's clock: the post's own clock may be years off
    (no RTC), so the receiver's corrected observed time plus the post's observed→stored lead is used."""
    if view.observed_est is None:
        return view.report.stored_at
    lead = (view.report.stored_at - view.report.observed_at).total_seconds()
    return view.observed_est + timedelta(seconds=min(max(lead, 0.0), 86400.0))


def cap_reference(view: ReportView) -> str:
    """``sender,identifier,sent`` as CAP ``references`` wants it."""
    return f"{report_sender(view)},{_cap_id(view.report_id)},{cap_time(stored_time(view))}"


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        el.text = _clean(text)
    return el


def _param(info: ET.Element, name: str, value: str, tag: str = "parameter") -> None:
    el = _sub(info, tag)
    _sub(el, "valueName", name)
    _sub(el, "value", value)


def path_text(view: ReportView) -> str:
    """``post/hops/snr`` per heard copy, e.g. ``pos-a hops=2 snr=-7.5; pos-b hops=0``."""
    parts = []
    for hop in view.paths:
        bits = [hop.post_id]
        if hop.hops is not None:
            bits.append(f"hops={hop.hops}")
        if hop.snr is not None:
            bits.append(f"snr={hop.snr:g}")
        if hop.rssi is not None:
            bits.append(f"rssi={hop.rssi}")
        if hop.relay:
            bits.append(f"via={hop.relay}")
        parts.append(" ".join(bits))
    return "; ".join(parts)


def contact_text(view: ReportView) -> str:
    cb = view.report.callback
    bits = []
    if cb is not None:
        bits += [x for x in (cb.officer, cb.village, cb.phone) if x]
        handset = cb.handset or (view.report.origin if view.report.origin.startswith("!") else None)
    else:
        handset = view.report.origin if view.report.origin.startswith("!") else None
    if handset:
        bits.append(f"handset {handset}")
    bits.append(f"pos {view.report.post_id}")
    return ", ".join(bits)


def cap_alert(view: ReportView, *, references: Sequence[ReportView] = ()) -> bytes:
    """The report as a CAP 1.2 ``alert`` (UTF-8 XML with declaration)."""
    report = view.report
    msg_type = _MSG_TYPE.get(report.msg_type, "Alert")
    refs = list(references)
    if view.corrected and msg_type == "Alert":
        # the center changed what the post parsed: this message updates the report as it arrived
        msg_type = "Update"
    root = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(root, "identifier", _cap_id(report.report_id + (".k" if view.corrected else "")))
    _sub(root, "sender", report_sender(view))
    _sub(root, "sent", cap_time(stored_time(view)))
    _sub(root, "status", _MODE_STATUS.get(report.mode, "Actual"))
    _sub(root, "msgType", msg_type)
    _sub(root, "source", f"Siaga Relay pos {report.post_id}")
    _sub(root, "scope", "Restricted")
    _sub(root, "restriction", RESTRICTION)
    _sub(root, "note", f"Status triase: {STATUS_LABEL.get(view.status, view.status)}; ref #{report.ref}")
    ref_texts = [cap_reference(r) for r in refs]
    if view.corrected:
        ref_texts.insert(0, cap_reference(view))
    if ref_texts:
        _sub(root, "references", " ".join(dict.fromkeys(ref_texts)))
    if view.incident_id:
        _sub(root, "incidents", _cap_id(view.incident_id))

    info = _sub(root, "info")
    _sub(info, "language", report.lang if report.lang != "id" else "id-ID")
    _sub(info, "category", CAP_CATEGORY.get(view.category, "Other"))
    _sub(info, "event", report.event or event_label(view.category))
    _sub(info, "urgency", report.urgency)
    _sub(info, "severity", report.severity)
    _sub(info, "certainty", report.certainty)
    _param(info, "kategori", view.category, tag="eventCode")
    _sub(info, "onset", cap_time(view.observed))
    _sub(info, "senderName", f"Pos Siaga {report.post_id}")
    _sub(info, "headline", f"{event_label(view.category)} #{report.ref}")
    _sub(info, "description", report.text_raw)
    _sub(info, "contact", contact_text(view))
    cas = view.casualties
    for key, label in (
        ("affected", "terdampak"),
        ("injured", "luka"),
        ("dead", "meninggal"),
        ("missing", "hilang"),
    ):
        value = getattr(cas, key)
        if value is not None:
            _param(info, f"korban_{label}", str(value))
    _param(info, "ref", report.ref)
    _param(info, "post_id", report.post_id)
    _param(info, "received_at", cap_time(view.received_at))
    _param(info, "copies", str(view.copies))
    _param(info, "verified", "true" if report.verified else "false")
    path = path_text(view)
    if path:
        _param(info, "path", path)
    if view.text_id:
        _param(info, "text_id", view.text_id)
    if view.lat is not None or view.area_desc or view.area_code:
        area = _sub(info, "area")
        _sub(
            area,
            "areaDesc",
            view.area_desc or (report.callback.village if report.callback else None) or "Tidak diketahui",
        )
        if view.lat is not None and view.lon is not None:
            radius_km = (view.accuracy_m or 0.0) / 1000.0
            _sub(area, "circle", f"{view.lat:.6f},{view.lon:.6f} {radius_km:.3f}")
        if view.area_code:
            geocode = _sub(area, "geocode")
            _sub(geocode, "valueName", "KEMENDAGRI")
            _sub(geocode, "value", view.area_code)
    return _serialise(root)


def cap_ack(view: ReportView) -> bytes:
    """The center's acknowledgement of a report as a CAP 1.2 ``Ack`` (requires an acknowledged report)."""
    if view.acknowledged_at is None:
        raise ValueError("report has not been acknowledged")
    root = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(root, "identifier", _cap_id(f"{view.report_id}.ack"))
    _sub(root, "sender", CENTER_SENDER)
    _sub(root, "sent", cap_time(view.acknowledged_at))
    _sub(root, "status", _MODE_STATUS.get(view.report.mode, "Actual"))
    _sub(root, "msgType", "Ack")
    _sub(root, "scope", "Restricted")
    _sub(root, "restriction", RESTRICTION)
    _sub(root, "note", f"Diterima oleh {view.acknowledged_by or 'petugas'} di pusat 112")
    _sub(root, "references", cap_reference(view))
    if view.incident_id:
        _sub(root, "incidents", _cap_id(view.incident_id))
    return _serialise(root)


def _serialise(root: ET.Element) -> bytes:
    ET.register_namespace("", CAP_NS)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


# ---------------------------------------------------------------------------------------- GeoJSON / CSV
def view_properties(view: ReportView) -> dict[str, Any]:
    """The flat record used by GeoJSON properties, CSV rows and the JSON API list."""
    r = view.report
    return {
        "report_id": r.report_id,
        "ref": r.ref,
        "incident_id": view.incident_id,
        "status": view.status,
        "category": view.category,
        "cap_category": CAP_CATEGORY.get(view.category, "Other"),
        "life_safety": view.life_safety,
        "urgency": r.urgency,
        "severity": r.severity,
        "certainty": r.certainty,
        "mode": r.mode,
        "msg_type": r.msg_type,
        "post_id": r.post_id,
        "origin": r.origin,
        "officer": r.callback.officer if r.callback else None,
        "text_raw": r.text_raw,
        "text_id": view.text_id,
        "lang": r.lang,
        "observed_at": format_time(view.observed),
        "observed_at_post": format_time(r.observed_at),
        "stored_at": format_time(r.stored_at),
        "received_at": format_time(view.received_at),
        "acknowledged_at": format_time(view.acknowledged_at) if view.acknowledged_at else None,
        "acknowledged_by": view.acknowledged_by,
        "lat": view.lat,
        "lon": view.lon,
        "accuracy_m": view.accuracy_m,
        "loc_source": r.loc_source,
        "area_code": view.area_code,
        "area_desc": view.area_desc,
        "casualties": view.casualties.to_dict(),
        "copies": view.copies,
        "path": [hop.to_dict() for hop in view.paths],
        "verified": r.verified,
        "agencies": [a["agency"] for a in view.assignments],
        "corrected": view.corrected,
    }


def geojson(views: Iterable[ReportView]) -> dict[str, Any]:
    features = []
    for view in views:
        geometry = (
            {"type": "Point", "coordinates": [view.lon, view.lat]}
            if view.lat is not None and view.lon is not None
            else None
        )
        features.append(
            {
                "type": "Feature",
                "id": view.report_id,
                "geometry": geometry,
                "properties": view_properties(view),
            }
        )
    return {"type": "FeatureCollection", "features": features}


CSV_COLUMNS = (
    "report_id",
    "ref",
    "incident_id",
    "status",
    "category",
    "cap_category",
    "urgency",
    "severity",
    "post_id",
    "origin",
    "officer",
    "observed_at",
    "received_at",
    "acknowledged_at",
    "acknowledged_by",
    "lat",
    "lon",
    "accuracy_m",
    "area_code",
    "area_desc",
    "affected",
    "injured",
    "dead",
    "missing",
    "copies",
    "agencies",
    "text_raw",
    "text_id",
)


def _csv_safe(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    # a text starting with = + - @ is run as a formula by spreadsheet programs (CSV injection)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def csv_text(views: Iterable[ReportView]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for view in views:
        props = view_properties(view)
        cas = props.pop("casualties")
        props.update({k: cas.get(k) for k in ("affected", "injured", "dead", "missing")})
        props["agencies"] = " ".join(props["agencies"])
        row = []
        for col in CSV_COLUMNS:
            value = props.get(col)
            # numbers stay numbers (a negative latitude is not a formula)
            row.append("" if value is None else str(value) if isinstance(value, int | float) else _csv_safe(value))
        writer.writerow(row)
    return out.getvalue()
