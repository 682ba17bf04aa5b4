"""Exports under ``/ekspor``: the filtered reports as CSV (Excel-friendly BOM) and GeoJSON, and one
report as a CAP 1.2 alert (or, with ``?jenis=ack``, the acknowledgement).
"""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from center import export
from center.triage import ReportView
from center.web.context import Filters, center_of


async def export_csv(request: Request) -> Response:
    center = center_of(request)
    flt = Filters.from_request(request, default_status="semua")
    text = await run_in_threadpool(lambda: export.csv_text(center.filtered(flt)))
    return Response(
        text.encode("utf-8-sig"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="laporan-siaga.csv"'},
    )


async def export_geojson(request: Request) -> Response:
    center = center_of(request)
    flt = Filters.from_request(request, default_status="semua")
    data = await run_in_threadpool(lambda: export.geojson(center.filtered(flt)))
    return Response(
        json.dumps(data, ensure_ascii=False).encode("utf-8"),
        media_type="application/geo+json",
        headers={"Content-Disposition": 'attachment; filename="laporan-siaga.geojson"'},
    )


async def export_cap(request: Request) -> Response:
    center = center_of(request)

    def build() -> bytes | None:
        found = center.view(request.path_params["report_id"])
        if found is None:
            return None
        view, _ = found
        if request.query_params.get("jenis") == "ack":
            if view.acknowledged_at is None:
                return b""
            return export.cap_ack(view)
        refs: list[ReportView] = []
        if view.incident_id and view.report.msg_type in ("update", "cancel"):
            members = center.triage.incident_members(view.incident_id)
            earlier = [r for m in members if m != view.report_id and (r := center.storage.get_report(m)) is not None]
            refs = [x for x in center.views(earlier) if x.received_at <= view.received_at]
        return export.cap_alert(view, references=refs)

    body = await run_in_threadpool(build)
    if body is None:
        return JSONResponse({"error": "laporan tidak ditemukan"}, status_code=404)
    if body == b"":
        return JSONResponse({"error": "laporan belum diterima petugas"}, status_code=409)
    return Response(body, media_type="application/cap+xml")
