"""The console's Starlette app: the route table, the session middleware and the handlers.

Every path but the login form and the static files needs a session; every POST goes through
:func:`_action` (same origin, the session's CSRF token).  Text from reports and from 112 is only ever
rendered through Jinja's autoescaping; a strict Content-Security-Policy (siaga/web.py) allows nothing
from anywhere but the post.  Store calls (SQLite, fsync) run in the worker threads, never on the loop.

Live without a reload: the queue, the status and the messages are server-rendered fragments the page's
script fetches again every few seconds while the page is visible; a phone in a pocket or a closed tab
asks nothing, so the console costs no CPU when nobody looks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from edge.console.accounts import Accounts, RateLimited, Session
from edge.intake import Intake, Location
from edge.status import post_status, post_title, render_status
from edge.store import PutResult, Store, StoredReport
from siaga.config import Config
from siaga.errors import ConsoleError, ReportError, StoreError
from siaga.report import CATEGORIES, Callback, Casualties, Report
from siaga.web import client_host, random_token, safe_next, same_origin, tokens_equal, with_security_headers

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "siaga_pos_sesi"
LOGIN_COOKIE = "siaga_pos_masuk"
PUBLIC_PATHS = frozenset({"/masuk"})
PUBLIC_PREFIXES = ("/static/",)
STATE_LABEL = {"pending": "menunggu", "sent": "terkirim", "delivered": "diterima 112", "rejected": "ditolak"}
HOW = {"radio": "radio suara", "langsung": "datang langsung", "telepon": "telepon"}
QUEUE_LIMIT = 200
MAX_FORM_FIELDS = 20


class PostPort(Protocol):
    """What the console needs of the running post (edge.daemon.Post)."""

    store: Store | None
    intake: Intake | None

    def submit(self, report: Report) -> PutResult: ...


class Console:
    """The app state: config, the post, accounts, templates, time zone."""

    def __init__(self, cfg: Config, post: PostPort, accounts: Accounts) -> None:
        self.cfg = cfg
        self.post = post
        self.accounts = accounts
        try:
            self.tz = ZoneInfo(cfg.node.timezone)
        except (KeyError, ValueError):
            self.tz = ZoneInfo("Asia/Makassar")
        self.title = post_title(cfg.node.name, cfg.node.post_id)
        self.villages = tuple(dict.fromkeys([*cfg.console.villages, *(h.village for h in cfg.handsets if h.village)]))
        self.env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"]))
        self.env.filters["jam"] = self.clock_text
        self.env.globals.update(CATEGORIES=CATEGORIES, STATE_LABEL=STATE_LABEL, HOW=HOW, title=self.title)

    @property
    def store(self) -> Store:
        store = self.post.store
        if store is None:
            raise StoreError("the post is not running")
        return store

    def clock_text(self, ts: float | None, fmt: str = "%d-%m %H:%M") -> str:
        if ts is None:
            return "-"
        suffix = " WITA" if self.tz.key == "Asia/Makassar" else ""
        return datetime.fromtimestamp(ts, self.tz).strftime(fmt) + suffix

    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        session = request.scope.get("state", {}).get("session")
        html = self.env.get_template(name).render(
            session=session, csrf=session.csrf if session else "", path=request.url.path, **context
        )
        return HTMLResponse(html, status_code=status_code)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def session_of(request: Request) -> Session:
    session = request.scope.get("state", {}).get("session")
    assert session is not None  # the middleware let the request through
    return session


class SessionMiddleware:
    """Resolves the session cookie; refuses every non-public path without one; adds the security headers."""

    def __init__(self, app: ASGIApp, console: Console) -> None:
        self.app = app
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        session = self.console.accounts.session(request.cookies.get(SESSION_COOKIE))
        scope.setdefault("state", {})["session"] = session
        send = with_security_headers(send)
        path: str = scope["path"]
        if session is None and not (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)):
            response: Response
            if scope["method"] not in ("GET", "HEAD") or request.headers.get("x-requested-with") == "fetch":
                response = JSONResponse({"error": "login diperlukan"}, status_code=401)
            else:
                response = RedirectResponse("/masuk?" + urlencode({"next": path}), status_code=303)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


Handler = Callable[[Request, Session, dict[str, str]], Awaitable[Response]]


def _action(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a POST: same origin, a url-encoded form of a bounded size, the session's CSRF token."""

    async def endpoint(request: Request) -> Response:
        session = session_of(request)
        if not same_origin(request):
            return PlainTextResponse("asal permintaan ditolak", status_code=403)
        form: dict[str, str] = {}
        if request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/")):
            async with request.form(max_files=0, max_fields=MAX_FORM_FIELDS) as data:
                form = {k: v for k, v in data.items() if isinstance(v, str)}
        presented = request.headers.get("x-csrf-token") or form.get("csrf")
        if not Accounts.csrf_ok(session, presented):
            log.warning("console: CSRF token missing or wrong for %s by %s", request.url.path, session.name)
            return PlainTextResponse("token CSRF tidak sah; muat ulang halaman", status_code=403)
        return await handler(request, session, form)

    return endpoint


# ---------------------------------------------------------------------------- login / logout
async def login(request: Request) -> Response:
    console = console_of(request)
    if request.method == "GET":
        token = request.cookies.get(LOGIN_COOKIE) or random_token()
        response = console.render(request, "login.html", next=safe_next(request.query_params.get("next")), lc=token)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/masuk", max_age=3600)
        return response
    if not same_origin(request):
        return PlainTextResponse("asal permintaan ditolak", status_code=403)
    async with request.form(max_files=0, max_fields=10) as form:
        data = {k: v for k, v in form.items() if isinstance(v, str)}
    expected = request.cookies.get(LOGIN_COOKIE)
    next_url = safe_next(data.get("next"))
    if not expected or not tokens_equal(expected, data.get("lc", "")):
        return console.render(
            request, "login.html", 403, error="Formulir kedaluwarsa; coba lagi.", next=next_url, lc=random_token()
        )
    try:
        token, _ = await run_in_threadpool(
            console.accounts.login, data.get("nama", ""), data.get("sandi", ""), client_host(request)
        )
    except RateLimited as exc:
        refused = console.render(request, "login.html", 429, error=str(exc), next=next_url, lc=expected)
        refused.headers["Retry-After"] = str(exc.retry_after_s)
        return refused
    except (ConsoleError, StoreError) as exc:
        return console.render(request, "login.html", 401, error=str(exc), next=next_url, lc=expected)
    redirect = RedirectResponse(next_url, status_code=303)
    redirect.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
    )
    redirect.delete_cookie(LOGIN_COOKIE, path="/masuk")
    return redirect


async def _logout(request: Request, session: Session, form: dict[str, str]) -> Response:
    console_of(request).accounts.logout(session)
    response = RedirectResponse("/masuk", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# ---------------------------------------------------------------------------- new report
async def report_form(request: Request) -> Response:
    console = console_of(request)
    return console.render(request, "report.html", villages=console.villages, form={}, unread=await _unread(console))


async def suggest(request: Request) -> Response:
    """The classifier's category for the text typed so far (GET: reads nothing, changes nothing)."""
    console = console_of(request)
    text = request.query_params.get("teks", "")[:4096]
    intake = console.post.intake
    category = intake.suggest(text) if intake is not None and text.strip() else "lainnya"
    return JSONResponse({"category": category})


def _count(form: dict[str, str], key: str) -> int | None:
    raw = form.get(key, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) > 100_000:
        raise ReportError("jumlah korban harus bilangan bulat 0-100000")
    return int(raw)


def _coordinate(form: dict[str, str]) -> Location | None:
    lat_raw, lon_raw = form.get("lat", "").strip(), form.get("lon", "").strip()
    if not lat_raw and not lon_raw:
        return None
    try:
        lat, lon = float(lat_raw.replace(",", ".")), float(lon_raw.replace(",", "."))
    except ValueError:
        raise ReportError("koordinat: lintang dan bujur berupa angka, mis. -9.43 dan 124.50") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ReportError("koordinat di luar jangkauan")
    return Location(lat, lon, "operator")


def build_report(console: Console, session: Session, form: dict[str, str]) -> Report:
    """The report of the form, as the officer confirmed it (their category wins over the suggestion)."""
    intake = console.post.intake
    if intake is None:
        raise StoreError("the post is not running")
    location = _coordinate(form)
    report = intake.build(form.get("teks", ""), origin=f"operator:{session.name}", source="manual", location=location)
    category = form.get("kategori", "")
    desa = form.get("desa", "").strip()[:64]
    if desa and desa not in console.villages:
        raise ReportError("desa tidak dikenal di pos ini")
    place = ", ".join(p for p in (form.get("tempat", "").strip()[:120], desa) if p)
    who = form.get("pelapor", "").strip()[:80]
    how = HOW.get(form.get("cara", ""), "")
    channel = form.get("kanal", "").strip()[:20]
    if how == HOW["radio"] and channel:
        how = f"{how} kanal {channel}"
    phone = form.get("telepon", "").strip()[:32] or None
    casualties = Casualties(
        injured=_count(form, "luka"), dead=_count(form, "meninggal"), missing=_count(form, "hilang")
    )
    changes: dict[str, Any] = {"verified": True}  # typed in by the post's own officer: a known person
    if category in CATEGORIES and category != report.category:
        changes["category"] = category
    if casualties.to_dict():
        changes["casualties"] = casualties
    if place:
        changes["area_desc"] = place
    if who or how or phone or desa:
        officer = " — ".join(p for p in (who, how) if p) or None
        changes["callback"] = Callback(officer=officer, village=desa or None, phone=phone)
    try:
        return report.with_changes(**changes).validate()
    except ValueError as exc:
        raise ReportError(str(exc)) from None


async def _submit(request: Request, session: Session, form: dict[str, str]) -> Response:
    console = console_of(request)
    try:
        report = build_report(console, session, form)
        # on disk (committed, fsync'd) before the page may say "tersimpan"
        result = await run_in_threadpool(console.post.submit, report)
    except (ReportError, StoreError) as exc:
        log.warning("console: report by %s not stored: %s", session.name, exc)
        return console.render(
            request, "report.html", 400, villages=console.villages, form=form, error=str(exc), unread=0
        )
    log.info("console: report #%s stored by operator %s", report.ref, session.name)
    return RedirectResponse("/antrean?" + urlencode({"tersimpan": result.report_id}), status_code=303)


# ---------------------------------------------------------------------------- queue
def queue_rows(console: Console) -> list[dict[str, Any]]:
    store = console.store
    rows = store.list_reports(limit=5000)
    waiting = sorted((r for r in rows if r.state in ("pending", "sent")), key=lambda r: r.stored_ts)
    done = sorted((r for r in rows if r.state not in ("pending", "sent")), key=lambda r: -r.stored_ts)
    return [_row(console, store, r) for r in [*waiting, *done][:QUEUE_LIMIT]]


def _row(console: Console, store: Store, row: StoredReport) -> dict[str, Any]:
    report = row.report
    if row.carried:
        origin = f"titipan pos {report.post_id}"
    elif report.origin.startswith("operator:"):
        origin = f"operator {report.origin.split(':', 1)[1]}"
    else:
        handset = console.post.intake.handset(report.origin) if console.post.intake else None
        origin = f"handset {handset.officer}" if handset and handset.officer else f"handset {report.origin}"
    return {
        "id": row.report_id,
        "ref": report.ref,
        "state": row.state,
        "category": report.category,
        "text": report.text_raw,
        "origin": origin,
        "age_s": store.age_s(row.boot_id, row.boot_stored, row.stored_ts),
        "center_ts": row.center_ts if row.center_ts is not None else row.delivered_ts,
        "center_clock": row.center_ts is not None,
        "reason": row.reject_reason,
    }


async def queue_page(request: Request) -> Response:
    console = console_of(request)
    rows = await run_in_threadpool(queue_rows, console)
    stored = request.query_params.get("tersimpan", "")
    saved = next((r for r in rows if r["id"] == stored), None)
    return console.render(request, "queue.html", rows=rows, saved=saved, unread=await _unread(console))


async def queue_fragment(request: Request) -> Response:
    console = console_of(request)
    rows = await run_in_threadpool(queue_rows, console)
    return console.render(request, "_queue_rows.html", rows=rows)


# ---------------------------------------------------------------------------- status
def status_view(console: Console) -> dict[str, Any]:
    status = post_status(console.cfg, console.store)
    lines = render_status(status).splitlines()
    return {"status": status, "lines": lines[1:], "ok": not status["attention"]}


async def status_page(request: Request) -> Response:
    console = console_of(request)
    view = await run_in_threadpool(status_view, console)
    return console.render(request, "status.html", **view, unread=await _unread(console))


async def status_fragment(request: Request) -> Response:
    console = console_of(request)
    return console.render(request, "_status.html", **await run_in_threadpool(status_view, console))


# ---------------------------------------------------------------------------- messages from 112
async def _unread(console: Console) -> int:
    try:
        return await run_in_threadpool(console.store.unread_messages)
    except StoreError:
        return 0


async def messages_page(request: Request) -> Response:
    console = console_of(request)
    messages = await run_in_threadpool(console.store.messages)
    return console.render(request, "messages.html", messages=messages, unread=await _unread(console))


async def messages_fragment(request: Request) -> Response:
    console = console_of(request)
    messages = await run_in_threadpool(console.store.messages)
    return console.render(request, "_messages.html", messages=messages)


async def unread_count(request: Request) -> Response:
    return JSONResponse({"unread": await _unread(console_of(request))})


async def _mark_read(request: Request, session: Session, form: dict[str, str]) -> Response:
    console = console_of(request)
    await run_in_threadpool(console.store.mark_read, request.path_params["cmd_id"], session.name)
    if request.headers.get("x-requested-with") == "fetch":
        return JSONResponse({"ok": True})
    return RedirectResponse("/pesan", status_code=303)


async def not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("tidak ditemukan", status_code=404)


_POST = ["POST"]
ROUTES = (
    Route("/masuk", login, methods=["GET", "POST"]),
    Route("/keluar", _action(_logout), methods=_POST),
    Route("/", report_form),
    Route("/lapor", _action(_submit), methods=_POST),
    Route("/saran", suggest),
    Route("/antrean", queue_page),
    Route("/antrean/baris", queue_fragment),
    Route("/status", status_page),
    Route("/status/isi", status_fragment),
    Route("/pesan", messages_page),
    Route("/pesan/daftar", messages_fragment),
    Route("/pesan/belum-dibaca", unread_count),
    Route("/pesan/{cmd_id}/dibaca", _action(_mark_read), methods=_POST),
    Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
)


def create_app(cfg: Config, post: PostPort, *, accounts: Accounts | None = None) -> Starlette:
    """The console over a running post (its store and intake)."""
    if accounts is None:
        assert post.store is not None
        accounts = Accounts(post.store, idle_timeout_s=cfg.console.idle_timeout_s)
    console = Console(cfg, post, accounts)
    app = Starlette(routes=list(ROUTES), exception_handlers={404: not_found})
    app.state.console = console
    app.add_middleware(SessionMiddleware, console=console)
    return app
