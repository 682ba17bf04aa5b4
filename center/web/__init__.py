"""The 112 center dashboard: a Starlette app, server-rendered (Jinja2, Bahasa Indonesia) with a little JS.

Views: live queue (``/``), report detail (``/laporan/{id}``), map (``/peta``), posts (``/pos``); a read-only
JSON API under ``/api`` (docs/CENTER_API.md); exports under ``/ekspor``; live updates by SSE
(``/api/events``); optional basemap tiles from a local MBTiles file (``/tiles``).

Security: every route but ``/login`` and ``/static`` needs a session (:mod:`center.auth`); every POST goes
through :func:`center.web.security.action`, which checks the session's CSRF token and the role; report
text is only ever rendered through Jinja's autoescaping or ``textContent``; a strict
Content-Security-Policy allows scripts, styles, images and connections from this origin only (there is
no CDN and no public tile server).

Modules: ``app`` (:func:`create_app`: the app state and the route table), ``context`` (the app state
:class:`Center` the handlers take from the request, the live hub, filters), ``security`` (session
middleware, the POST wrapper), ``render`` (templates), the handlers by area — ``pages``, ``actions``,
``api``, ``live`` (SSE), ``maps`` (with ``geo``: kecamatan, post sites, MBTiles), ``exports`` — and
``server`` (uvicorn in a thread, the component of ``siaga center run``).
"""

from center.web.app import create_app, default_reply_sender
from center.web.context import Center, LiveHub
from center.web.geo import MBTiles
from center.web.server import WebServer, serve, web_component

__all__ = ["Center", "LiveHub", "MBTiles", "WebServer", "create_app", "default_reply_sender", "serve", "web_component"]
