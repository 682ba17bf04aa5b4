"""The 112 center dashboard: a Starlette app, server-rendered (Jinja2, Bahasa Indonesia) with a little JS.

Views: live queue (``/``), report detail (``/laporan/{id}``), map (``/peta``), posts (``/pos``); a read-only
JSON API under ``/api`` (docs/CENTER_API.md); exports under ``/ekspor``; live updates by SSE
(``/api/events``); optional basemap tiles from a local MBTiles file (``/tiles``).

Security: every route but ``/login`` and ``/static`` needs a session (:mod:`center.auth`); every POST goes
through :func:`_action`, which checks the session's CSRF token and the role; report text is only ever
rendered through Jinja's autoescaping or ``textContent``; a strict Content-Security-Policy allows scripts,
styles, images and connections from this origin only (there is no CDN and no public tile server).

Live updates: the receiver calls :meth:`LiveHub.notify` after each commit (same process), and each SSE
connection also polls a cheap "version" of the database every :data:`POLL_S` seconds, so a second
receiver process writing to the same database shows up too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from center import export
from center.auth import Auth, AuthError, RateLimited, Session
from center.staffdb import StaffDB
from center.storage import CenterReport, CenterStorage, PostPresence, ReportFilter
from center.storage import Reply as StoredReply
from center.triage import (
    AGENCIES,
    CORRECTABLE,
    STATUS_LABEL,
    STATUSES,
    TRANSITIONS,
    Reply,
    ReportView,
    Triage,
    TriageError,
    apply_state,
    sort_queue,
)
from siaga.config import Config
from siaga.errors import CenterError
from siaga.hostport import parse_host_port
from siaga.report import CATEGORIES, LIFE_SAFETY, format_time
from sync.protocol import MAX_REPLY_TEXT_BYTES

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
KECAMATAN_FILE = STATIC / "map" / "ttu-kecamatan.geojson"
POSTS_FILE = STATIC / "map" / "ttu-posts.geojson"

SESSION_COOKIE = "siaga_sesi"
LOGIN_COOKIE = "siaga_login"
POLL_S = 2.0
#: An SSE stream ends after this long; EventSource reconnects by itself (bounds stale connections).
SSE_MAX_S = 300.0
MAX_LIST = 2000

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; media-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# Only these paths are reachable without a session: the login form and the static assets it needs.
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = frozenset({"/login"})

CATEGORY_LABEL = {c: export.event_label(c) for c in CATEGORIES}
CATEGORY_COLOR = {
    "kebakaran": "#d7301f",
    "banjir": "#2171b5",
    "longsor": "#8c510a",
    "angin": "#6a51a3",
    "gempa": "#b15928",
    "kecelakaan": "#e6550d",
    "medis": "#e7298a",
    "kriminal": "#252525",
    "sar": "#f16913",
    "hewan": "#66a61e",
    "infrastruktur": "#737373",
    "sos": "#cb181d",
    "aman": "#41ab5d",
    "lainnya": "#969696",
}
REPLY_LABEL = {
    "queued": "antre di pusat",
    "published": "dikirim ke pos",
    "received": "diterima pos",
    "sent": "dikirim ke handset",
    "delivered": "sampai di handset",
    "failed": "gagal",
}
ReplySender = Callable[[str, str, str], StoredReply]


# ---------------------------------------------------------------------------------------- live updates
class LiveHub:
    """Wakes every open SSE stream.  :meth:`notify` may be called from any thread (the receiver's)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: set[asyncio.Event] = set()
        self._lock = threading.Lock()
        self.notified = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self, *_: object) -> None:
        self.notified += 1
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # loop shutting down
            pass

    def _wake(self) -> None:
        with self._lock:
            events = list(self._events)
        for event in events:
            event.set()

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        with self._lock:
            self._events.add(event)
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        with self._lock:
            self._events.discard(event)


# ---------------------------------------------------------------------------------------- kecamatan
@dataclass(frozen=True)
class Kecamatan:
    name: str
    rings: tuple[tuple[tuple[float, float], ...], ...]

    def contains(self, lon: float, lat: float) -> bool:
        return any(_in_ring(lon, lat, ring) for ring in self.rings)


def _in_ring(x: float, y: float, ring: tuple[tuple[float, float], ...]) -> bool:
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def load_kecamatan(path: Path = KECAMATAN_FILE) -> list[Kecamatan]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("kecamatan layer %s unreadable; kecamatan filter disabled", path)
        return []
    out = []
    for feature in data.get("features", []):
        geom = feature.get("geometry") or {}
        polys = [geom["coordinates"]] if geom.get("type") == "Polygon" else geom.get("coordinates", [])
        rings = tuple(tuple((float(x), float(y)) for x, y in poly[0]) for poly in polys)
        out.append(Kecamatan(str(feature["properties"]["name"]), rings))
    return out


# ---------------------------------------------------------------------------------------- MBTiles
class MBTiles:
    """Raster tiles from a local MBTiles file (TMS row order inside, XYZ outside)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            meta = dict(self._conn.execute("SELECT name, value FROM metadata").fetchall())
        except sqlite3.Error as exc:
            raise CenterError(f"MBTiles file {path} cannot be read: {exc}") from None
        self.format = str(meta.get("format", "png"))
        self.attribution = str(meta.get("attribution", "© OpenStreetMap contributors (ODbL)"))
        self.minzoom = int(meta.get("minzoom", 0))
        self.maxzoom = int(meta.get("maxzoom", 18))

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        tms_y = (1 << z) - 1 - y
        with self._lock:
            row = self._conn.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?", (z, x, tms_y)
            ).fetchone()
        return bytes(row[0]) if row else None

    def close(self) -> None:
        self._conn.close()


# ---------------------------------------------------------------------------------------- the app state
@dataclass
class Center:
    """Everything the handlers need; built by :func:`create_app`."""

    cfg: Config
    storage: CenterStorage
    staff: StaffDB
    auth: Auth
    triage: Triage
    hub: LiveHub
    send_reply: ReplySender
    tz: ZoneInfo
    kecamatan: list[Kecamatan]
    post_sites: dict[str, dict[str, Any]]
    mbtiles: MBTiles | None = None
    clock: Callable[[], float] = time.time
    env: Environment = field(init=False)

    # -- reading ---------------------------------------------------------------------------------
    def views(self, reports: Iterable[CenterReport], *, with_replies: bool = False) -> list[ReportView]:
        reports = list(reports)
        states = self.triage.state(r.report_id for r in reports)
        out = []
        for r in reports:
            replies: tuple[Reply, ...] = ()
            if with_replies:
                replies = tuple(
                    Reply(x.cmd_id, x.text, x.state, x.created_at, x.state_at, x.created_by)
                    for x in self.storage.replies(report_id=r.report_id)
                )
            out.append(
                apply_state(
                    r.report,
                    received_at=r.received_at,
                    status=r.status,
                    incident_id=r.incident_id,
                    state=states.get(r.report_id),
                    observed_est=r.observed_est,
                    copies=r.copies,
                    replies=replies,
                )
            )
        return out

    def view(self, report_id: str) -> tuple[ReportView, CenterReport] | None:
        found = self.storage.get_report(report_id)
        if found is None:
            return None
        view = self.views([found], with_replies=True)[0]
        paths = []
        for copy in self.storage.copies(found.report_id):
            for hop in copy.path:
                paths.append(hop)
        if paths:
            from siaga.report import PathHop

            view = _replace(view, paths=tuple(PathHop.from_dict(p) for p in paths))
        return view, found

    def kecamatan_of(self, view: ReportView) -> str | None:
        if view.lat is None or view.lon is None:
            return None
        for kec in self.kecamatan:
            if kec.contains(view.lon, view.lat):
                return kec.name
        return None

    def filtered(self, flt: Filters) -> list[ReportView]:
        since = None
        if flt.hours:
            since = datetime.fromtimestamp(self.clock(), UTC) - timedelta(hours=flt.hours)
        reports = self.storage.list_reports(
            ReportFilter(
                post_id=flt.post or None,
                category=flt.category or None,
                status=flt.status if flt.status in STATUSES else None,
                since=since,
                limit=MAX_LIST,
            )
        )
        views = self.views(reports)
        if flt.status == "terbuka":
            views = [v for v in views if v.is_open]
        if flt.kecamatan:
            views = [v for v in views if self.kecamatan_of(v) == flt.kecamatan]
        if flt.desa:
            needle = flt.desa.casefold()
            views = [
                v
                for v in views
                if needle in (v.area_desc or "").casefold()
                or (v.report.callback is not None and needle in (v.report.callback.village or "").casefold())
            ]
        if flt.category and flt.category in CATEGORIES:
            # a corrected category wins over the stored one
            views = [v for v in views if v.category == flt.category]
        return views

    def post_rows(self) -> list[dict[str, Any]]:
        now = self.clock()
        rows = []
        for p in self.storage.posts():
            rows.append(post_row(p, now, self.cfg.center.silent_after_s, self.post_sites.get(p.post_id)))
        return rows

    def version(self) -> str:
        """A cheap fingerprint of everything the views show; changes when anything they show changes."""
        row = self.staff.one(
            "SELECT (SELECT COUNT(*) FROM reports) AS n, (SELECT MAX(updated_ts) FROM reports) AS u,"
            " (SELECT MAX(status_ts) FROM posts) AS p, (SELECT MAX(last_report_ts) FROM posts) AS pr,"
            " (SELECT COUNT(*) FROM posts) AS pn,"
            " (SELECT MAX(state_ts) FROM replies) AS r, (SELECT COUNT(*) FROM replies) AS rn,"
            " (SELECT MAX(id) FROM audit) AS a"
        )
        silent = sum(1 for p in self.post_rows() if p["silent"])
        return json.dumps([row, silent], default=str)

    def summary(self) -> dict[str, Any]:
        unack = self.staff.one("SELECT COUNT(*) AS n FROM reports WHERE status = 'baru'")
        posts = self.post_rows()
        return {
            "unacknowledged": int(unack["n"]) if unack else 0,
            "posts": len(posts),
            "posts_silent": sum(1 for p in posts if p["silent"]),
        }

    def new_reports(self, since_ts: float) -> list[dict[str, Any]]:
        rows = self.staff.query(
            "SELECT report_id, category, received_ts, status FROM reports WHERE received_ts > ?"
            " ORDER BY received_ts LIMIT 200",
            (since_ts,),
        )
        return [
            {
                "report_id": r["report_id"],
                "category": r["category"],
                "life_safety": r["category"] in LIFE_SAFETY,
                "received_ts": r["received_ts"],
                "status": r["status"],
            }
            for r in rows
        ]


def _replace(view: ReportView, **changes: Any) -> ReportView:
    import dataclasses

    return dataclasses.replace(view, **changes)


def post_row(p: PostPresence, now: float, silent_after_s: float, site: dict[str, Any] | None) -> dict[str, Any]:
    """One post as the posts view and the API show it, with the silent-post flag."""
    status = p.status
    heard = [t.timestamp() for t in (p.status_at, p.last_report_at) if t is not None]
    last_heard = max(heard) if heard else None
    silent_for = None if last_heard is None else max(0.0, now - last_heard)
    offline = p.state == "offline"
    silent = offline or silent_for is None or silent_for > silent_after_s
    queue: dict[str, Any] = status["queue"] if isinstance(status.get("queue"), dict) else {}
    battery = status.get("battery") if isinstance(status.get("battery"), dict) else None
    lat = status.get("lat", (site or {}).get("lat"))
    lon = status.get("lon", (site or {}).get("lon"))
    return {
        "post_id": p.post_id,
        "name": status.get("name") or (site or {}).get("name") or p.post_id,
        "regency": p.regency,
        "state": p.state,
        "online": p.state == "online" and not silent,
        "silent": silent,
        "silent_for_s": silent_for,
        "last_heartbeat_at": format_time(p.status_at) if p.status_at else None,
        "last_report_at": format_time(p.last_report_at) if p.last_report_at else None,
        "last_heard_ts": last_heard,
        "pending": int(queue.get("pending", 0) or 0) + int(queue.get("sent", 0) or 0),
        "queue": queue,
        "oldest_pending_age_s": status.get("oldest_pending_age_s"),
        "radio": status.get("radio"),
        "uplink": status.get("uplink"),
        "battery": battery,
        "battery_text": battery_text(battery),
        "version": p.version,
        "boot": p.boot_counter,
        "lat": lat if isinstance(lat, int | float) else None,
        "lon": lon if isinstance(lon, int | float) else None,
    }


def battery_text(battery: dict[str, Any] | None) -> str:
    if not battery:
        return "-"
    bits = []
    for key, fmt in (("percent", "{:.0f}%"), ("level", "{:.0f}%"), ("voltage", "{:.2f} V"), ("volts", "{:.2f} V")):
        value = battery.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            bits.append(fmt.format(value))
    if battery.get("charging") is True:
        bits.append("mengisi")
    return " ".join(bits) or "-"


def load_post_sites(path: Path = POSTS_FILE) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out = {}
    for feature in data.get("features", []):
        props = feature.get("properties") or {}
        coords = (feature.get("geometry") or {}).get("coordinates") or [None, None]
        if props.get("post_id"):
            out[str(props["post_id"])] = {"name": props.get("name"), "lon": coords[0], "lat": coords[1]}
    return out


# ---------------------------------------------------------------------------------------- filters
@dataclass(frozen=True)
class Filters:
    category: str = ""
    status: str = ""
    kecamatan: str = ""
    desa: str = ""
    post: str = ""
    hours: float = 0.0

    @classmethod
    def from_request(cls, request: Request, *, default_status: str = "") -> Filters:
        q = request.query_params
        try:
            hours = float(q.get("jam", "") or 0)
        except ValueError:
            hours = 0.0
        if not math.isfinite(hours) or hours < 0:
            hours = 0.0
        status = q.get("status", default_status)
        return cls(
            category=q.get("kategori", "")[:32] if q.get("kategori", "") in CATEGORIES else "",
            status=status if status in (*STATUSES, "terbuka", "semua") else default_status,
            kecamatan=q.get("kecamatan", "")[:64],
            desa=q.get("desa", "")[:64].strip(),
            post=q.get("pos", "")[:32],
            hours=min(hours, 24 * 366),
        )

    def query(self) -> str:
        params = {
            "kategori": self.category,
            "status": self.status,
            "kecamatan": self.kecamatan,
            "desa": self.desa,
            "pos": self.post,
            "jam": f"{self.hours:g}" if self.hours else "",
        }
        return urlencode({k: v for k, v in params.items() if v})


# ---------------------------------------------------------------------------------------- security middleware
class AuthMiddleware:
    """Resolves the session cookie; refuses every non-public path without one.  Adds security headers."""

    def __init__(self, app: ASGIApp, center: Center) -> None:
        self.app = app
        self.center = center

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        request = Request(scope)
        token = request.cookies.get(SESSION_COOKIE)
        session = await run_in_threadpool(self.center.auth.session, token) if token else None
        scope.setdefault("state", {})["session"] = session

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        if session is None and not public:
            if _wants_json(path) or scope["method"] not in ("GET", "HEAD"):
                response: Response = JSONResponse({"error": "login diperlukan"}, status_code=401)
            else:
                target = path + (("?" + scope["query_string"].decode("latin-1")) if scope.get("query_string") else "")
                response = RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def _wants_json(path: str) -> bool:
    return path.startswith(("/api/", "/ekspor/", "/tiles/"))


def _safe_next(value: str | None) -> str:
    # only a local path: never //host or a scheme (open redirect)
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _session(request: Request) -> Session:
    session = request.scope.get("state", {}).get("session")
    assert session is not None  # AuthMiddleware let the request through
    return session


Handler = Callable[[Request, Session, dict[str, str]], Awaitable[Response]]


def _action(handler: Handler, *, write: bool = True) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a state-changing endpoint: same-origin check, CSRF token, role."""

    async def endpoint(request: Request) -> Response:
        session = _session(request)
        if not _same_origin(request):
            return PlainTextResponse("asal permintaan ditolak", status_code=403)
        form: dict[str, str] = {}
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            async with request.form(max_files=0, max_fields=50) as data:
                form = {k: v for k, v in data.items() if isinstance(v, str)}
        elif ctype.startswith("application/json"):
            body = await request.body()
            if len(body) > 64 * 1024:
                return PlainTextResponse("permintaan terlalu besar", status_code=413)
            try:
                loaded = json.loads(body or b"{}")
            except ValueError:
                return PlainTextResponse("JSON tidak sah", status_code=400)
            form = {k: v for k, v in loaded.items() if isinstance(v, str)} if isinstance(loaded, dict) else {}
        presented = request.headers.get("x-csrf-token") or form.get("csrf")
        if not Auth.csrf_ok(session, presented):
            log.warning(
                "CSRF token missing or wrong for %s %s by %s", request.method, request.url.path, session.username
            )
            return PlainTextResponse("token CSRF tidak sah; muat ulang halaman", status_code=403)
        if write and not session.can_write:
            return PlainTextResponse("peran Anda hanya boleh melihat", status_code=403)
        return await handler(request, session, form)

    return endpoint


def _same_origin(request: Request) -> bool:
    """Browsers send Origin on POST; when present it must be this host (defence in depth beside CSRF)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


# ---------------------------------------------------------------------------------------- time helpers
def make_env(center: Center) -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))

    def local(value: datetime | None, fmt: str = "%d-%m-%Y %H:%M:%S") -> str:
        if value is None:
            return "-"
        return value.astimezone(center.tz).strftime(fmt) + " WITA" * (center.tz.key == "Asia/Makassar")

    env.filters["waktu"] = local
    env.filters["isowaktu"] = lambda v: local(datetime.fromisoformat(v.replace("Z", "+00:00"))) if v else "-"
    env.filters["jam"] = lambda v: local(v, "%H:%M:%S")
    env.filters["durasi"] = format_duration
    env.filters["epoch_ms"] = lambda v: int(v.timestamp() * 1000) if v else ""
    env.globals.update(
        CATEGORY_LABEL=CATEGORY_LABEL,
        CATEGORY_COLOR=CATEGORY_COLOR,
        CATEGORIES=CATEGORIES,
        STATUSES=STATUSES,
        STATUS_LABEL=STATUS_LABEL,
        TRANSITIONS=TRANSITIONS,
        AGENCIES=AGENCIES,
        REPLY_LABEL=REPLY_LABEL,
        # a hint to the browser (it counts characters, the limit is bytes: the storage refuses the rest)
        REPLY_MAX_BYTES=MAX_REPLY_TEXT_BYTES,
    )
    return env


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds} dtk"
    if seconds < 3600:
        return f"{seconds // 60} mnt {seconds % 60} dtk"
    if seconds < 86400:
        return f"{seconds // 3600} jam {seconds % 3600 // 60} mnt"
    return f"{seconds // 86400} hari {seconds % 86400 // 3600} jam"


# ---------------------------------------------------------------------------------------- the factory
def default_reply_sender(storage: CenterStorage) -> ReplySender:
    """Without a receiver in this process, a reply is only queued in the database (state ``queued``)."""

    def send(report_id: str, text: str, user: str) -> StoredReply:
        return storage.create_reply(report_id, text, user)

    return send


def create_app(
    cfg: Config,
    storage: CenterStorage,
    *,
    send_reply: ReplySender | None = None,
    hub: LiveHub | None = None,
    clock: Callable[[], float] = time.time,
    poll_s: float = POLL_S,
) -> Starlette:
    """The dashboard app over an open :class:`CenterStorage` (the caller closes it).

    ``send_reply(report_id, text, username)`` records and publishes a reply (the receiver's function);
    ``hub.notify()`` is what the receiver calls after each commit.
    """
    staff = StaffDB(storage)
    try:
        tz = ZoneInfo(cfg.node.timezone)
    except (KeyError, ValueError):
        tz = ZoneInfo("Asia/Makassar")
    mbtiles_path = getattr(cfg.center, "mbtiles", None)
    center = Center(
        cfg=cfg,
        storage=storage,
        staff=staff,
        auth=Auth(staff),
        triage=Triage(staff),
        hub=hub or LiveHub(),
        send_reply=send_reply or default_reply_sender(storage),
        tz=tz,
        kecamatan=load_kecamatan(),
        post_sites=load_post_sites(),
        mbtiles=MBTiles(Path(mbtiles_path)) if mbtiles_path else None,
        clock=clock,
    )
    center.env = make_env(center)
    add_observer = getattr(storage, "add_observer", None)
    if callable(add_observer):
        add_observer(center.hub.notify)

    def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        session = request.scope.get("state", {}).get("session")
        template = center.env.get_template(name)
        html = template.render(
            request=request,
            session=session,
            csrf=session.csrf if session else "",
            path=request.url.path,
            mbtiles=center.mbtiles is not None,
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    # -- login ---------------------------------------------------------------------------------
    async def login_page(request: Request) -> Response:
        if request.method == "POST":
            return await login_post(request)
        token = request.cookies.get(LOGIN_COOKIE) or _random()
        response = render(request, "login.html", next=_safe_next(request.query_params.get("next")), login_csrf=token)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/login", max_age=3600)
        return response

    async def login_post(request: Request) -> Response:
        if not _same_origin(request):
            return PlainTextResponse("asal permintaan ditolak", status_code=403)
        async with request.form(max_files=0, max_fields=10) as form:
            data = {k: v for k, v in form.items() if isinstance(v, str)}
        expected = request.cookies.get(LOGIN_COOKIE)
        next_url = _safe_next(data.get("next"))
        if not expected or not _eq(expected, data.get("login_csrf", "")):
            return render(
                request, "login.html", 403, error="Sesi formulir habis; coba lagi.", next=next_url, login_csrf=_random()
            )
        try:
            token, _ = await run_in_threadpool(
                center.auth.login, data.get("username", ""), data.get("password", ""), _client(request)
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

    async def logout(request: Request, session: Session, form: dict[str, str]) -> Response:
        await run_in_threadpool(center.auth.logout, session)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- queue ---------------------------------------------------------------------------------
    def queue_context(request: Request) -> dict[str, Any]:
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
        ctx = await run_in_threadpool(queue_context, request)
        return render(request, "queue.html", **ctx)

    async def queue_rows(request: Request) -> Response:
        ctx = await run_in_threadpool(queue_context, request)
        return render(request, "_queue_rows.html", **ctx)

    # -- report detail --------------------------------------------------------------------------
    def detail_context(report_id: str) -> dict[str, Any] | None:
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
        ctx = await run_in_threadpool(detail_context, request.path_params["report_id"])
        if ctx is None:
            return render(request, "error.html", 404, message="Laporan tidak ditemukan.")
        ok = request.query_params.get("ok")
        err = request.query_params.get("galat")
        return render(request, "report.html", ok=FLASH.get(ok or ""), error=None if not err else err[:200], **ctx)

    async def report_live(request: Request) -> Response:
        ctx = await run_in_threadpool(detail_context, request.path_params["report_id"])
        if ctx is None:
            return render(request, "error.html", 404, message="Laporan tidak ditemukan.")
        return render(request, "_report_live.html", **ctx)

    def _back(report_id: str, ok: str = "", error: str = "") -> RedirectResponse:
        query = urlencode({"ok": ok} if ok else {"galat": error} if error else {})
        return RedirectResponse(f"/laporan/{report_id}" + (f"?{query}" if query else ""), status_code=303)

    def staff_action(fn: Callable[[str, Session, dict[str, str]], str]) -> Handler:
        async def handler(request: Request, session: Session, form: dict[str, str]) -> Response:
            report_id = request.path_params["report_id"]
            try:
                ok = await run_in_threadpool(fn, report_id, session, form)
            except (TriageError, CenterError) as exc:
                if request.headers.get("accept", "").startswith("application/json"):
                    return JSONResponse({"error": str(exc)}, status_code=400)
                return _back(report_id, error=str(exc))
            center.hub.notify()
            if request.headers.get("accept", "").startswith("application/json"):
                return JSONResponse({"ok": ok})
            return _back(report_id, ok=ok)

        return handler

    def do_status(report_id: str, session: Session, form: dict[str, str]) -> str:
        center.triage.set_status(report_id, form.get("status", ""), session.username, note=form.get("catatan", ""))
        return "status"

    def do_ack(report_id: str, session: Session, form: dict[str, str]) -> str:
        center.triage.acknowledge(report_id, session.username)
        return "status"

    def do_assign(report_id: str, session: Session, form: dict[str, str]) -> str:
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

    def do_note(report_id: str, session: Session, form: dict[str, str]) -> str:
        center.triage.add_note(report_id, form.get("teks", ""), session.username)
        return "catatan"

    def do_correct(report_id: str, session: Session, form: dict[str, str]) -> str:
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

    def do_merge(report_id: str, session: Session, form: dict[str, str]) -> str:
        others = [x.strip() for x in form.get("laporan", "").replace(",", " ").split() if x.strip()]
        resolved = []
        for other in others:
            found = center.storage.get_report(other) or _by_ref(center, other)
            if found is None:
                raise TriageError(f"laporan {other[:64]} tidak ditemukan")
            resolved.append(found.report_id)
        center.triage.merge(report_id, resolved, session.username)
        return "gabung"

    def do_reply(report_id: str, session: Session, form: dict[str, str]) -> str:
        text = form.get("teks", "").strip()
        reply = center.send_reply(report_id, text, session.username)
        center.triage.record(session.username, "reply", report_id, {"cmd_id": reply.cmd_id, "text": reply.text})
        return "balasan"

    # -- map, posts ---------------------------------------------------------------------------------
    async def map_page(request: Request) -> Response:
        flt = Filters.from_request(request, default_status="semua")
        summary = await run_in_threadpool(center.summary)
        return render(request, "map.html", filters=flt, summary=summary)

    def posts_context() -> dict[str, Any]:
        rows = center.post_rows()
        rows.sort(key=lambda r: (not r["silent"], r["post_id"]))
        return {
            "rows": rows,
            "silent_after_s": center.cfg.center.silent_after_s,
            "summary": center.summary(),
            "now_ms": int(center.clock() * 1000),
        }

    async def posts_page(request: Request) -> Response:
        ctx = await run_in_threadpool(posts_context)
        return render(request, "posts.html", **ctx)

    async def posts_rows(request: Request) -> Response:
        ctx = await run_in_threadpool(posts_context)
        return render(request, "_posts_rows.html", **ctx)

    # -- JSON API ------------------------------------------------------------------------------------
    async def api_reports(request: Request) -> Response:
        flt = Filters.from_request(request, default_status="semua")

        def build() -> list[dict[str, Any]]:
            views = (
                sort_queue(center.filtered(flt))
                if request.query_params.get("urut") == "antrean"
                else center.filtered(flt)
            )
            return [dict(export.view_properties(v), kecamatan=center.kecamatan_of(v)) for v in views]

        return JSONResponse({"reports": await run_in_threadpool(build)})

    async def api_report(request: Request) -> Response:
        def build() -> dict[str, Any] | None:
            ctx = detail_context(request.path_params["report_id"])
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
        rows = await run_in_threadpool(center.triage.audit, request.path_params["report_id"])
        return JSONResponse({"audit": [{**r, "at": format_time(r["at"])} for r in rows]})

    async def api_posts(request: Request) -> Response:
        rows = await run_in_threadpool(center.post_rows)
        return JSONResponse(
            {"silent_after_s": center.cfg.center.silent_after_s, "posts": [{k: v for k, v in r.items()} for r in rows]}
        )

    async def api_summary(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(center.summary))

    async def api_map(request: Request) -> Response:
        flt = Filters.from_request(request, default_status="semua")

        def build() -> dict[str, Any]:
            data = export.geojson(v for v in center.filtered(flt) if v.lat is not None)
            for feature in data["features"]:
                props = feature["properties"]
                props["color"] = CATEGORY_COLOR.get(props["category"], "#969696")
                props["label"] = CATEGORY_LABEL.get(props["category"], props["category"])
            return data

        return JSONResponse(await run_in_threadpool(build))

    async def api_posts_geojson(request: Request) -> Response:
        rows = await run_in_threadpool(center.post_rows)
        known = {r["post_id"] for r in rows}
        features = [
            {
                "type": "Feature",
                "id": r["post_id"],
                "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
                "properties": {k: r[k] for k in ("post_id", "name", "state", "online", "silent", "pending")},
            }
            for r in rows
            if r["lat"] is not None and r["lon"] is not None
        ]
        for post_id, site in center.post_sites.items():
            if post_id not in known and site.get("lat") is not None:
                features.append(
                    {
                        "type": "Feature",
                        "id": post_id,
                        "geometry": {"type": "Point", "coordinates": [site["lon"], site["lat"]]},
                        "properties": {
                            "post_id": post_id,
                            "name": site.get("name"),
                            "state": "unknown",
                            "online": False,
                            "silent": True,
                            "pending": 0,
                        },
                    }
                )
        return JSONResponse({"type": "FeatureCollection", "features": features})

    async def api_events(request: Request) -> Response:
        """SSE: ``change`` events with {new: [...], summary: {...}} whenever anything shown changed."""
        max_s = SSE_MAX_S

        async def stream() -> AsyncIterator[str]:
            event = center.hub.subscribe()
            try:
                version = await run_in_threadpool(center.version)
                last_ts = center.clock()
                hello = json.dumps({"summary": await run_in_threadpool(center.summary)})
                yield f"retry: 2000\nevent: hello\ndata: {hello}\n\n"
                started = time.monotonic()
                while time.monotonic() - started < max_s:
                    try:
                        await asyncio.wait_for(event.wait(), timeout=poll_s)
                    except TimeoutError:
                        pass
                    event.clear()
                    if await request.is_disconnected():
                        break
                    current = await run_in_threadpool(center.version)
                    if current == version:
                        yield ": keepalive\n\n"
                        continue
                    version = current
                    new = await run_in_threadpool(center.new_reports, last_ts)
                    if new:
                        last_ts = max(last_ts, max(n["received_ts"] for n in new))
                    summary = await run_in_threadpool(center.summary)
                    yield f"event: change\ndata: {json.dumps({'new': new, 'summary': summary})}\n\n"
            finally:
                center.hub.unsubscribe(event)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

    # -- exports ------------------------------------------------------------------------------------
    async def export_csv(request: Request) -> Response:
        flt = Filters.from_request(request, default_status="semua")
        text = await run_in_threadpool(lambda: export.csv_text(center.filtered(flt)))
        return Response(
            text.encode("utf-8-sig"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="laporan-siaga.csv"'},
        )

    async def export_geojson(request: Request) -> Response:
        flt = Filters.from_request(request, default_status="semua")
        data = await run_in_threadpool(lambda: export.geojson(center.filtered(flt)))
        return Response(
            json.dumps(data, ensure_ascii=False).encode("utf-8"),
            media_type="application/geo+json",
            headers={"Content-Disposition": 'attachment; filename="laporan-siaga.geojson"'},
        )

    async def export_cap(request: Request) -> Response:
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
                earlier = [
                    r for m in members if m != view.report_id and (r := center.storage.get_report(m)) is not None
                ]
                refs = [x for x in center.views(earlier) if x.received_at <= view.received_at]
            return export.cap_alert(view, references=refs)

        body = await run_in_threadpool(build)
        if body is None:
            return JSONResponse({"error": "laporan tidak ditemukan"}, status_code=404)
        if body == b"":
            return JSONResponse({"error": "laporan belum diterima petugas"}, status_code=409)
        return Response(body, media_type="application/cap+xml")

    async def tiles(request: Request) -> Response:
        if center.mbtiles is None:
            return JSONResponse({"error": "tidak ada peta dasar (MBTiles)"}, status_code=404)
        try:
            z, x, y = (int(request.path_params[k]) for k in ("z", "x", "y"))
        except ValueError:
            return JSONResponse({"error": "ubin tidak sah"}, status_code=400)
        data = await run_in_threadpool(center.mbtiles.tile, z, x, y) if 0 <= z <= 22 else None
        if data is None:
            return Response(status_code=204)
        media = "image/jpeg" if center.mbtiles.format in ("jpg", "jpeg") else f"image/{center.mbtiles.format}"
        return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=86400"})

    async def not_found(request: Request, exc: Exception) -> Response:
        if _wants_json(request.url.path):
            return JSONResponse({"error": "tidak ditemukan"}, status_code=404)
        return render(request, "error.html", 404, message="Halaman tidak ditemukan.")

    post = ["POST"]
    routes = [
        Route("/login", login_page, methods=["GET", "POST"], name="login"),
        Route("/logout", _action(logout, write=False), methods=post, name="logout"),
        Route("/", queue_page, name="queue"),
        Route("/antrean/baris", queue_rows, name="queue_rows"),
        Route("/laporan/{report_id}", report_page, name="report"),
        Route("/laporan/{report_id}/langsung", report_live, name="report_live"),
        Route("/laporan/{report_id}/terima", _action(staff_action(do_ack)), methods=post, name="ack"),
        Route("/laporan/{report_id}/status", _action(staff_action(do_status)), methods=post, name="status"),
        Route("/laporan/{report_id}/instansi", _action(staff_action(do_assign)), methods=post, name="assign"),
        Route("/laporan/{report_id}/catatan", _action(staff_action(do_note)), methods=post, name="note"),
        Route("/laporan/{report_id}/koreksi", _action(staff_action(do_correct)), methods=post, name="correct"),
        Route("/laporan/{report_id}/gabung", _action(staff_action(do_merge)), methods=post, name="merge"),
        Route("/laporan/{report_id}/balas", _action(staff_action(do_reply)), methods=post, name="reply"),
        Route("/peta", map_page, name="map"),
        Route("/pos", posts_page, name="posts"),
        Route("/pos/baris", posts_rows, name="posts_rows"),
        Route("/api/reports", api_reports, name="api_reports"),
        Route("/api/reports/{report_id}", api_report, name="api_report"),
        Route("/api/reports/{report_id}/audit", api_audit, name="api_audit"),
        Route("/api/posts", api_posts, name="api_posts"),
        Route("/api/posts.geojson", api_posts_geojson, name="api_posts_geojson"),
        Route("/api/map.geojson", api_map, name="api_map"),
        Route("/api/summary", api_summary, name="api_summary"),
        Route("/api/events", api_events, name="api_events"),
        Route("/ekspor/laporan.csv", export_csv, name="export_csv"),
        Route("/ekspor/laporan.geojson", export_geojson, name="export_geojson"),
        Route("/ekspor/cap/{report_id}.xml", export_cap, name="export_cap"),
        Route("/tiles/{z}/{x}/{y}", tiles, name="tiles"),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        center.hub.bind(asyncio.get_running_loop())
        try:
            yield
        finally:
            if center.mbtiles is not None:
                center.mbtiles.close()

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found})
    app.state.center = center
    app.add_middleware(AuthMiddleware, center=center)
    return app


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


def _by_ref(center: Center, ref: str) -> CenterReport | None:
    """A report by its 4-character reference (what staff read off a receipt), among recent reports."""
    ref = ref.strip().lstrip("#").upper()
    if len(ref) != 4:
        return None
    for r in center.storage.list_reports(ReportFilter(limit=MAX_LIST)):
        if r.report.ref == ref:
            return r
    return None


def _random() -> str:
    import secrets

    return secrets.token_urlsafe(24)


def _eq(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


class WebServer:
    """The dashboard on uvicorn in a background thread (beside the receiver in ``siaga center run``)."""

    def __init__(self, app: Starlette, listen: str) -> None:
        import uvicorn

        host, port = parse_host_port(listen, "center.http", default_host="127.0.0.1", port_zero=True)
        self.listen = listen
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            # open SSE streams must not hold a shutdown for long
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 15.0) -> None:
        self._thread = threading.Thread(target=self._run, name="siaga-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise CenterError(f"dashboard cannot listen on {self.listen} (center.http): port in use?")
            time.sleep(0.02)
        log.info("dashboard listening on http://%s", self.listen)

    def _run(self) -> None:
        try:
            self.server.run()
        except SystemExit:  # uvicorn exits when it cannot bind; start() reports it
            pass

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def serve(app: Starlette, listen: str, *, stop: threading.Event | None = None) -> None:
    """Run the app until ``stop`` is set (blocking)."""
    server = WebServer(app, listen)
    server.start()
    try:
        (stop or threading.Event()).wait()
    finally:
        server.stop()


def web_component(service: Any) -> WebServer | _Nothing:
    """The factory :mod:`center.service` calls in ``siaga center run``: the dashboard on cfg.center.http,
    over the service's storage, replies through the service's outbox (same path as ``siaga center reply``)."""
    cfg: Config = service.cfg
    if not cfg.center.http:
        log.warning("center.http is empty: dashboard not started")
        return _Nothing()
    app = create_app(cfg, service.storage, send_reply=service.send_reply)
    return WebServer(app, cfg.center.http)


class _Nothing:
    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass
