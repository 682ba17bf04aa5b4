"""The triage actions on a report (POST, through :func:`center.web.security.action`): acknowledge,
status, assign an agency, note, correct, merge into one incident, reply to the post.  Each ``do_*``
does the work in a worker thread and returns the flash key the report page shows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from center.auth import Session
from center.storage import CenterReport, ReportFilter
from center.triage import TriageError
from center.web.context import MAX_LIST, Center, center_of
from center.web.security import Handler, action
from siaga.errors import CenterError

StaffAction = Callable[[Center, str, Session, dict[str, str]], str]


def back(report_id: str, ok: str = "", error: str = "") -> RedirectResponse:
    query = urlencode({"ok": ok} if ok else {"galat": error} if error else {})
    return RedirectResponse(f"/laporan/{report_id}" + (f"?{query}" if query else ""), status_code=303)


def staff_action(fn: StaffAction) -> Handler:
    """A triage step on the report of the path: run ``fn``, wake the live views, answer with the flash
    key (JSON) or a redirect back to the report with it."""

    async def handler(request: Request, session: Session, form: dict[str, str]) -> Response:
        center = center_of(request)
        report_id = request.path_params["report_id"]
        try:
            ok = await run_in_threadpool(fn, center, report_id, session, form)
        except (TriageError, CenterError) as exc:
            if request.headers.get("accept", "").startswith("application/json"):
                return JSONResponse({"error": str(exc)}, status_code=400)
            return back(report_id, error=str(exc))
        center.hub.notify()
        if request.headers.get("accept", "").startswith("application/json"):
            return JSONResponse({"ok": ok})
        return back(report_id, ok=ok)

    return handler


def do_status(center: Center, report_id: str, session: Session, form: dict[str, str]) -> str:
    center.triage.set_status(report_id, form.get("status", ""), session.username, note=form.get("catatan", ""))
    return "status"


def do_ack(center: Center, report_id: str, session: Session, form: dict[str, str]) -> str:
    center.triage.acknowledge(report_id, session.username)
    return "status"


def do_assign(center: Center, report_id: str, session: Session, form: dict[str, str]) -> str:
    when = None
    if form.get("waktu"):
        try:
            local_dt = datetime.fromisoformat(form["waktu"])
        except ValueError:
            raise TriageError("waktu pengiriman tidak sah") from None
        when = local_dt.replace(tzinfo=center.tz) if local_dt.tzinfo is None else local_dt
    center.triage.assign(
        report_id, form.get("instansi", ""), session.username, dispatched_at=when, note=form.get("catatan", "")
    )
    return "instansi"


def do_note(center: Center, report_id: str, session: Session, form: dict[str, str]) -> str:
    center.triage.add_note(report_id, form.get("teks", ""), session.username)
    return "catatan"


def do_correct(center: Center, report_id: str, session: Session, form: dict[str, str]) -> str:
    changes: dict[str, Any] = {}
    if "kategori" in form:
        changes["category"] = form["kategori"]
    cas: dict[str, int] = {}
    for key in ("affected", "injured", "dead", "missing"):
        raw = form.get(f"korban_{key}", "").strip()
        if raw:
            if not raw.isdigit():
                raise TriageError("jumlah korban harus bilangan bulat")
            cas[key] = int(raw)
    if any(f"korban_{k}" in form for k in ("affected", "injured", "dead", "missing")):
        changes["casualties"] = cas or None
    if "lat" in form or "lon" in form:
        changes["lat"] = form.get("lat", "").strip() or None
        changes["lon"] = form.get("lon", "").strip() or None
    for key in ("area_desc", "area_code", "text_id", "accuracy_m"):
        if key in form:
            changes[key] = form[key].strip() or None
    # only what differs from the report as received becomes a correction
    found = center.storage.get_report(report_id)
    if found is None:
        raise TriageError("laporan tidak ditemukan")
    original = found.report
    state = center.triage.state([report_id]).get(report_id, {})
    current = dict(state.get("corrections") or {})
    baseline = {
        "category": original.category,
        "casualties": original.casualties.to_dict() or None,
        "lat": original.lat,
        "lon": original.lon,
        "accuracy_m": original.accuracy_m,
        "area_desc": original.area_desc,
        "area_code": original.area_code,
        "text_id": None,
    }
    effective: dict[str, Any] = {}
    for key, value in changes.items():
        if key in ("lat", "lon", "accuracy_m") and value is not None:
            try:
                value = float(value)
            except ValueError:
                raise TriageError(f"{key} harus berupa angka") from None
        if value == baseline.get(key) and key not in current:
            continue
        effective[key] = None if value == baseline.get(key) else value
    if ("lat" in effective) != ("lon" in effective):
        effective.setdefault("lat", changes.get("lat"))
        effective.setdefault("lon", changes.get("lon"))
    if effective:
        center.triage.correct(report_id, effective, session.username)
    return "koreksi"


def do_merge(center: Center, report_id: str, session: Session, form: dict[str, str]) -> str:
    others = [x.strip() for x in form.get("laporan", "").replace(",", " ").split() if x.strip()]
    resolved = []
    for other in others:
        found = center.storage.get_report(other) or by_ref(center, other)
        if found is None:
            raise TriageError(f"laporan {other[:64]} tidak ditemukan")
        resolved.append(found.report_id)
    center.triage.merge(report_id, resolved, session.username)
    return "gabung"


def do_reply(center: Center, report_id: str, session: Session, form: dict[str, str]) -> str:
    text = form.get("teks", "").strip()
    reply = center.send_reply(report_id, text, session.username)
    center.triage.record(session.username, "reply", report_id, {"cmd_id": reply.cmd_id, "text": reply.text})
    return "balasan"


def by_ref(center: Center, ref: str) -> CenterReport | None:
    """A report by its 4-character reference (what staff read off a receipt), among recent reports."""
    ref = ref.strip().lstrip("#").upper()
    if len(ref) != 4:
        return None
    for r in center.storage.list_reports(ReportFilter(limit=MAX_LIST)):
        if r.report.ref == ref:
            return r
    return None


# The endpoints the routes name (see center.web.app).
ack = action(staff_action(do_ack))
set_status = action(staff_action(do_status))
assign = action(staff_action(do_assign))
note = action(staff_action(do_note))
correct = action(staff_action(do_correct))
merge = action(staff_action(do_merge))
reply = action(staff_action(do_reply))
