"""The dashboard's security plumbing: the session middleware (every path but the login form and its
assets needs a session) with the security headers, and :func:`action`, the wrapper of every POST
(same-origin check, CSRF token, role).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from center.auth import Auth, Session
from center.web.context import Center
from siaga.web import (  # noqa: F401 - re-exported: the dashboard's handlers import them from here
    CSP,
    SECURITY_HEADERS,
    client_host,
    random_token,
    safe_next,
    same_origin,
    tokens_equal,
    with_security_headers,
)

log = logging.getLogger(__name__)

SESSION_COOKIE = "siaga_sesi"
LOGIN_COOKIE = "siaga_login"
# Only these paths are reachable without a session: the login form and the static assets it needs.
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = frozenset({"/login"})


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

        send_with_headers = with_security_headers(send)

        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        if session is None and not public:
            if wants_json(path) or scope["method"] not in ("GET", "HEAD"):
                response: Response = JSONResponse({"error": "login diperlukan"}, status_code=401)
            else:
                target = path + (("?" + scope["query_string"].decode("latin-1")) if scope.get("query_string") else "")
                response = RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def wants_json(path: str) -> bool:
    return path.startswith(("/api/", "/ekspor/", "/tiles/"))


def session_of(request: Request) -> Session:
    session = request.scope.get("state", {}).get("session")
    assert session is not None  # AuthMiddleware let the request through
    return session


Handler = Callable[[Request, Session, dict[str, str]], Awaitable[Response]]


def action(handler: Handler, *, write: bool = True) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a state-changing endpoint: same-origin check, CSRF token, role."""

    async def endpoint(request: Request) -> Response:
        session = session_of(request)
        if not same_origin(request):
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
