"""The read-only JSON API under ``/api`` (docs/CENTER_API.md): reports, one report with its whole
story, its audit trail, the posts, the summary counts.  The map's GeoJSON is in :mod:`center.web.maps`,
the live stream in :mod:`center.web.live`.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from center import export
from center.triage import ReportView, sort_queue
from center.web.context import Filters, center_of
from center.web.pages import detail_context
from siaga.report import format_time


async def api_reports(request: Request) -> Response:
    center = center_of(request)
    flt = Filters.from_request(request, default_status="semua")

    def build() -> list[dict[str, Any]]:
        views = (
            sort_queue(center.filtered(flt)) if request.query_params.get("urut") == "antrean" else center.filtered(flt)
        )
        return [dict(export.view_properties(v), kecamatan=center.kecamatan_of(v)) for v in views]

    return JSONResponse({"reports": await run_in_threadpool(build)})


async def api_report(request: Request) -> Response:
    center = center_of(request)

    def build() -> dict[str, Any] | None:
        ctx = detail_context(center, request.path_params["report_id"])
        if ctx is None:
            return None
        view: ReportView = ctx["v"]
        return {
            **export.view_properties(view),
            "kecamatan": ctx["kecamatan"],
            "replies": [
                {
                    "cmd_id": r.cmd_id,
                    "text": r.text,
                    "state": r.state,
                    "created_at": format_time(r.created_at) if r.created_at else None,
                    "state_at": format_time(r.updated_at) if r.updated_at else None,
                    "created_by": r.username,
                }
                for r in view.replies
            ],
            "notes": [{**n, "at": format_time(n["at"])} for n in ctx["notes"]],
            "assignments": [{**a, "dispatched_at": format_time(a["dispatched_at"])} for a in view.assignments],
            "corrections": dict(view.corrections),
            "original": view.report.to_dict(),
            "incident_members": [v.report_id for v in ctx["incident"]],
            "timeline": [{"label": t["label"], "at": format_time(t["at"])} for t in ctx["timeline"]],
            "copies_detail": [
                {
                    "post_id": c.post_id,
                    "wire_report_id": c.wire_report_id,
                    "first_received_at": format_time(c.first_received_at),
                    "receipts": c.receipts,
                    "path": c.path,
                }
                for c in ctx["copies"]
            ],
        }

    data = await run_in_threadpool(build)
    if data is None:
        return JSONResponse({"error": "laporan tidak ditemukan"}, status_code=404)
    return JSONResponse(data)


async def api_audit(request: Request) -> Response:
    center = center_of(request)
    rows = await run_in_threadpool(center.triage.audit, request.path_params["report_id"])
    return JSONResponse({"audit": [{**r, "at": format_time(r["at"])} for r in rows]})


async def api_posts(request: Request) -> Response:
    center = center_of(request)
    rows = await run_in_threadpool(center.post_rows)
    return JSONResponse(
        {"silent_after_s": center.cfg.center.silent_after_s, "posts": [{k: v for k, v in r.items()} for r in rows]}
    )


async def api_summary(request: Request) -> Response:
    center = center_of(request)
    return JSONResponse(await run_in_threadpool(center.summary))
