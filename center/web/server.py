"""The dashboard on uvicorn in a background thread, and the component ``siaga center run`` mounts."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from starlette.applications import Starlette

from center.web.app import create_app
from siaga.config import Config
from siaga.errors import CenterError
from siaga.hostport import parse_host_port

log = logging.getLogger(__name__)


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
