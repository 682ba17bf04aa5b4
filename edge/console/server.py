"""The console's web server, the component edge/daemon.py starts beside the radio and the uplink."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from siaga.config import Config
from siaga.errors import ConsoleError

if TYPE_CHECKING:
    from edge.console.app import PostPort
    from siaga.web import WebServer

log = logging.getLogger(__name__)


class ConsoleServer:
    """uvicorn on ``[console] http`` in its own thread; the handlers reach the post through ``post``."""

    def __init__(self, cfg: Config, post: PostPort) -> None:
        self.cfg = cfg
        self.post = post
        self._server: WebServer | None = None

    def start(self) -> None:
        # the web stack is imported here, not at module level: a post without the console never loads it
        from edge.console.app import create_app
        from siaga.web import WebServer

        server = WebServer(
            create_app(self.cfg, self.post),
            self.cfg.console.http,
            key="console.http",
            what="operator console",
            error=ConsoleError,
            thread_name="siaga-console",
        )
        server.start()
        self._server = server
        store = self.post.store
        if store is not None and not store.operators():
            log.warning("operator console on, but no operator account yet: siaga console passwd NAME")

    @property
    def port(self) -> int:
        return self._server.port if self._server is not None else 0

    def stop(self, timeout: float = 2.0) -> None:
        if self._server is not None:
            self._server.stop(timeout)
            self._server = None
