"""The dashboard app: :func:`create_app` builds the app state (:class:`~center.web.context.Center`) and
assembles the routes, all listed here, onto the module-level handlers of :mod:`~center.web.pages`,
:mod:`~center.web.actions`, :mod:`~center.web.api`, :mod:`~center.web.live`, :mod:`~center.web.maps`
and :mod:`~center.web.exports`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from center.auth import Auth
from center.staffdb import StaffDB
from center.storage import CenterStorage
from center.storage import Reply as StoredReply
from center.triage import Triage
from center.web import actions, api, exports, live, maps, pages
from center.web.context import POLL_S, Center, LiveHub, ReplySender
from center.web.geo import MBTiles, load_kecamatan, load_post_sites
from center.web.render import make_env
from center.web.security import AuthMiddleware
from siaga.config import Config

STATIC = Path(__file__).resolve().parent.parent / "static"

_POST = ["POST"]
ROUTES = (
    Route("/login", pages.login_page, methods=["GET", "POST"], name="login"),
    Route("/logout", pages.logout, methods=_POST, name="logout"),
    Route("/", pages.queue_page, name="queue"),
    Route("/antrean/baris", pages.queue_rows, name="queue_rows"),
    Route("/laporan/{report_id}", pages.report_page, name="report"),
    Route("/laporan/{report_id}/langsung", pages.report_live, name="report_live"),
    Route("/laporan/{report_id}/terima", actions.ack, methods=_POST, name="ack"),
    Route("/laporan/{report_id}/status", actions.set_status, methods=_POST, name="status"),
    Route("/laporan/{report_id}/instansi", actions.assign, methods=_POST, name="assign"),
    Route("/laporan/{report_id}/catatan", actions.note, methods=_POST, name="note"),
    Route("/laporan/{report_id}/koreksi", actions.correct, methods=_POST, name="correct"),
    Route("/laporan/{report_id}/gabung", actions.merge, methods=_POST, name="merge"),
    Route("/laporan/{report_id}/balas", actions.reply, methods=_POST, name="reply"),
    Route("/peta", maps.map_page, name="map"),
    Route("/pos", pages.posts_page, name="posts"),
    Route("/pos/baris", pages.posts_rows, name="posts_rows"),
    Route("/api/reports", api.api_reports, name="api_reports"),
    Route("/api/reports/{report_id}", api.api_report, name="api_report"),
    Route("/api/reports/{report_id}/audit", api.api_audit, name="api_audit"),
    Route("/api/posts", api.api_posts, name="api_posts"),
    Route("/api/posts.geojson", maps.api_posts_geojson, name="api_posts_geojson"),
    Route("/api/map.geojson", maps.api_map, name="api_map"),
    Route("/api/summary", api.api_summary, name="api_summary"),
    Route("/api/events", live.api_events, name="api_events"),
    Route("/ekspor/laporan.csv", exports.export_csv, name="export_csv"),
    Route("/ekspor/laporan.geojson", exports.export_geojson, name="export_geojson"),
    Route("/ekspor/cap/{report_id}.xml", exports.export_cap, name="export_cap"),
    Route("/tiles/{z}/{x}/{y}", maps.tiles, name="tiles"),
    Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
)


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    center: Center = app.state.center
    center.hub.bind(asyncio.get_running_loop())
    try:
        yield
    finally:
        if center.mbtiles is not None:
            center.mbtiles.close()


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
        poll_s=poll_s,
    )
    center.env = make_env(center)
    add_observer = getattr(storage, "add_observer", None)
    if callable(add_observer):
        add_observer(center.hub.notify)
    app = Starlette(routes=list(ROUTES), lifespan=_lifespan, exception_handlers={404: pages.not_found})
    app.state.center = center
    app.add_middleware(AuthMiddleware, center=center)
    return app
