"""What every web page of ours shares (the center's dashboard, the post's operator console): uvicorn in a
background thread, the security headers, the same-origin check and the token helpers.

The pages themselves, their accounts and sessions stay with their owner (center/web/, edge/console/).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request

from siaga.errors import SiagaError
from siaga.hostport import parse_host_port

log = logging.getLogger(__name__)

#: Everything from this origin only: no CDN, no web font, no public tile server (posts and the center may
#: have no internet at all, and report text must never run as script).
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


def with_security_headers(send: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """An ASGI ``send`` that adds :data:`SECURITY_HEADERS` to the response (those it does not set itself)."""

    async def wrapped(message: Any) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {k.lower() for k, _ in headers}
            for name, value in SECURITY_HEADERS.items():
                if name.lower().encode() not in present:
                    headers.append((name.lower().encode(), value.encode()))
            message["headers"] = headers
        await send(message)

    return wrapped


def safe_next(value: str | None) -> str:
    # only a local path: never //host or a scheme (open redirect)
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def client_host(request: Request) -> str:
    return request.client.host if request.client else "?"


def same_origin(request: Request) -> bool:
    """Browsers send Origin on POST; when present it must be this host (defence in depth beside CSRF)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def random_token() -> str:
    return secrets.token_urlsafe(24)


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class WebServer:
    """An ASGI app on uvicorn in a background thread.  ``key`` names the config key of ``listen`` (errors
    name it); ``error`` is the family raised when it cannot listen."""

    def __init__(
        self,
        app: Any,
        listen: str,
        *,
        key: str,
        what: str = "web server",
        error: type[SiagaError] = SiagaError,
        thread_name: str = "siaga-web",
    ) -> None:
        import uvicorn

        host, port = parse_host_port(listen, key, default_host="127.0.0.1", port_zero=True)
        self.listen = listen
        self.key = key
        self.what = what
        self._error = error
        self._thread_name = thread_name
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

    @property
    def port(self) -> int:
        """The port actually bound (``:0`` asks for any free one)."""
        for server in getattr(self.server, "servers", []) or []:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return 0

    def start(self, timeout: float = 15.0) -> None:
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise self._error(f"{self.what} cannot listen on {self.listen} ({self.key}): port in use?")
            time.sleep(0.02)
        log.info("%s listening on http://%s", self.what, self.listen)

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
