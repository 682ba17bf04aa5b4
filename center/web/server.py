"""The dashboard on uvicorn in a background thread, and the component ``siaga center run`` mounts."""

from __future__ import annotations

import logging
import threading
from typing import Any

from starlette.applications import Starlette

from center.web.app import create_app
from siaga.config import Config
from siaga.errors import CenterError
from siaga.web import WebServer as KernelWebServer

log = logging.getLogger(__name__)


class WebServer(KernelWebServer):
    """The dashboard on uvicorn in a background thread (beside the receiver in ``siaga center run``)."""

    def __init__(self, app: Starlette, listen: str) -> None:
        super().__init__(app, listen, key="center.http", what="dashboard", error=CenterError)


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
