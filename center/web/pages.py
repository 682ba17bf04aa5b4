"""The dashboard's pages: login and logout, the live queue, a report's detail, the posts view, and the
404 page.  Each page has a fragment twin (``*_rows``, ``report_live``) the page's script reloads when
the live stream says something changed.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from center.auth import AuthError, RateLimited, Session
from center.storage import CenterReport
from center.triage import CORRECTABLE, STATUSES, TRANSITIONS, ReportView, sort_queue
from center.web.context import REPLY_LABEL, Center, Filters, center_of
from center.web.render import render
from center.web.security import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    action,
    client_host,
    random_token,
    safe_next,
    same_origin,
    tokens_equal,
    wants_json,
)


async def login_page(request: Request) -> Response:
    if request.method == "POST":
        return await login_post(request)
    token = request.cookies.get(LOGIN_COOKIE) or random_token()
    response = render(request, "login.html", next=safe_next(request.query_params.get("next")), login_csrf=token)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/login", max_age=3600)
    return response


async def login_post(request: Request) -> Response:
    center = center_of(request)
    if not same_origin(request):
        return PlainTextResponse("asal permintaan ditolak", status_code=403)
    async with request.form(max_files=0, max_fields=10) as form:
        data = {k: v for k, v in form.items() if isinstance(v, str)}
    expected = request.cookies.get(LOGIN_COOKIE)
    next_url = safe_next(data.get("next"))
    if not expected or not tokens_equal(expected, data.get("login_csrf", "")):
        return render(
            request,
            "login.html",
            403,
            error="Sesi formulir habis; coba lagi.",
            next=next_url,
            login_csrf=random_token(),
        )
    try:
        token, _ = await run_in_threadpool(
            center.auth.login, data.get("username", ""), data.get("password", ""), client_host(request)
        )
    except RateLimited as exc:
        response = render(request, "login.html", 429, error=str(exc), next=next_url, login_csrf=expected)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except AuthError as exc:
        return render(request, "login.html", 401, error=str(exc), next=next_url, login_csrf=expected)
    redirect = RedirectResponse(next_url, status_code=303)
    secure = request.url.scheme == "https"
    redirect.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/")
    redirect.delete_cookie(LOGIN_COOKIE, path="/login")
    return redirect


async def _logout(request: Request, session: Session, form: dict[str, str]) -> Response:
    center = center_of(request)
    await run_in_threadpool(center.auth.logout, session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def queue_context(center: Center, request: Request) -> dict[str, Any]:
    flt = Filters.from_request(request, default_status="terbuka")
    views = sort_queue(center.filtered(flt))
    return {
        "views": views,
        "filters": flt,
        "now_ms": int(center.clock() * 1000),
        "posts": [p["post_id"] for p in center.post_rows()],
        "kecamatan_names": [k.name for k in center.kecamatan],
        "summary": center.summary(),
        "kecamatan_of": center.kecamatan_of,
    }


async def queue_page(request: Request) -> Response:
    center = center_of(request)
    ctx = await run_in_threadpool(queue_context, center, request)
    return render(request, "queue.html", **ctx)


async def queue_rows(request: Request) -> Response:
    center = center_of(request)
    ctx = await run_in_threadpool(queue_context, center, request)
    return render(request, "_queue_rows.html", **ctx)


def detail_context(center: Center, report_id: str) -> dict[str, Any] | None:
    found = center.view(report_id)
    if found is None:
        return None
    view, stored = found
    incident = []
    if view.incident_id:
        members = [m for m in center.triage.incident_members(view.incident_id) if m != view.report_id]
        incident = [v for v in center.views(filter(None, (center.storage.get_report(m) for m in members)))]
    return {
        "v": view,
        "stored": stored,
        "kecamatan": center.kecamatan_of(view),
        "notes": center.triage.notes(view.report_id),
        "audit": center.triage.audit(view.report_id),
        "incident": incident,
        "copies": center.storage.copies(view.report_id),
        "allowed": sorted(TRANSITIONS.get(view.status, ()), key=STATUSES.index),
        "can_reply": view.report.origin.startswith("!"),
        "timeline": timeline(view, stored),
        "summary": center.summary(),
        "correctable": CORRECTABLE,
    }


async def report_page(request: Request) -> Response:
    center = center_of(request)
    ctx = await run_in_threadpool(detail_context, center, request.path_params["report_id"])
    if ctx is None:
        return render(request, "error.html", 404, message="Laporan tidak ditemukan.")
    ok = request.query_params.get("ok")
    err = request.query_params.get("galat")
    return render(request, "report.html", ok=FLASH.get(ok or ""), error=None if not err else err[:200], **ctx)


async def report_live(request: Request) -> Response:
    center = center_of(request)
    ctx = await run_in_threadpool(detail_context, center, request.path_params["report_id"])
    if ctx is None:
        return render(request, "error.html", 404, message="Laporan tidak ditemukan.")
    return render(request, "_report_live.html", **ctx)


def posts_context(center: Center) -> dict[str, Any]:
    rows = center.post_rows()
    rows.sort(key=lambda r: (not r["silent"], r["post_id"]))
    routes = center.storage.relay_routes()  # reports carried post to post (docs/RELAY.md)
    return {
        "rows": rows,
        "relay_via": {o: [r for r in routes if r.origin == o] for o in {r.origin for r in routes}},
        "relay_carried": {c: [r for r in routes if r.carrier == c] for c in {r.carrier for r in routes}},
        "silent_after_s": center.cfg.center.silent_after_s,
        # the center's receivers (each its own presence; the center is online to the posts while any is)
        "receivers": [r.to_dict() for r in center.storage.receivers()],
        "summary": center.summary(),
        "now_ms": int(center.clock() * 1000),
    }


async def posts_page(request: Request) -> Response:
    center = center_of(request)
    ctx = await run_in_threadpool(posts_context, center)
    return render(request, "posts.html", **ctx)


async def posts_rows(request: Request) -> Response:
    center = center_of(request)
    ctx = await run_in_threadpool(posts_context, center)
    return render(request, "_posts_rows.html", **ctx)


async def not_found(request: Request, exc: Exception) -> Response:
    if wants_json(request.url.path):
        return JSONResponse({"error": "tidak ditemukan"}, status_code=404)
    return render(request, "error.html", 404, message="Halaman tidak ditemukan.")


FLASH = {
    "status": "Status diperbarui.",
    "instansi": "Instansi ditugaskan.",
    "catatan": "Catatan disimpan.",
    "koreksi": "Koreksi disimpan.",
    "gabung": "Laporan digabung ke satu insiden.",
    "balasan": "Balasan dikirim ke pos.",
}


def timeline(view: ReportView, stored: CenterReport) -> list[dict[str, Any]]:
    """The report's life, oldest first: observed (estimated), stored at post, received, acknowledged, ..."""
    items: list[dict[str, Any]] = [
        {"at": view.observed, "label": "Kejadian dilaporkan (perkiraan)", "kind": "observed"},
        {"at": view.report.stored_at, "label": "Disimpan di pos (jam pos)", "kind": "stored"},
        {"at": view.received_at, "label": "Diterima pusat 112", "kind": "received"},
    ]
    if view.acknowledged_at:
        items.append({"at": view.acknowledged_at, "label": f"Diterima petugas {view.acknowledged_by}", "kind": "ack"})
    for a in view.assignments:
        items.append({"at": a["dispatched_at"], "label": f"Unit {a['agency']} dikirim", "kind": "assign"})
    for r in view.replies:
        if r.created_at:
            items.append({"at": r.created_at, "label": f"Balasan dikirim oleh {r.username}", "kind": "reply"})
        if r.updated_at and r.state != "queued":
            items.append(
                {"at": r.updated_at, "label": f"Balasan: {REPLY_LABEL.get(r.state, r.state)}", "kind": "reply"}
            )
    items.sort(key=lambda i: i["at"])
    return items


# Logout is a POST like every action (CSRF token), but any role may log out.
logout = action(_logout, write=False)
