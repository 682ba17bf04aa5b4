"""What every handler shares: the app state (:class:`Center`, on ``request.app.state.center``), the
live-update hub it holds, the queue filters, and the rows the posts view and the API show.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment
from starlette.requests import Request

from center import export
from center.auth import Auth
from center.staffdb import StaffDB
from center.storage import CenterReport, CenterStorage, PostPresence, ReportFilter
from center.storage import Reply as StoredReply
from center.triage import STATUSES, Reply, ReportView, Triage, apply_state
from center.web.geo import Kecamatan, MBTiles
from siaga.config import Config
from siaga.report import CATEGORIES, LIFE_SAFETY, PathHop, format_time

#: Each SSE connection polls the database's "version" this often (seconds).
POLL_S = 2.0
MAX_LIST = 2000

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


@dataclass
class Center:
    """Everything the handlers need (the app state): built once by :func:`center.web.app.create_app`,
    stored on ``app.state.center``; a handler takes it with :func:`center_of`."""

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
    #: how often an open SSE stream polls :meth:`version` (a second receiver process writes too)
    poll_s: float = POLL_S
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
    relay: dict[str, Any] = status["relay"] if isinstance(status.get("relay"), dict) else {}
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
        # connected (its heartbeats arrive) but its reports do not: the post says so (no center ack for
        # longer than its ack timeout) — e.g. a broker ACL that drops its report topic
        "not_delivering": not silent and status.get("delivering") is False,
        "no_ack_s": status.get("no_ack_s") if isinstance(status.get("no_ack_s"), int | float) else None,
        "radio": status.get("radio"),
        "uplink": status.get("uplink"),
        "battery": battery,
        "battery_text": battery_text(battery),
        # the post's own relay: reports parked at the hop limit are an alarm for staff (docs/RELAY.md)
        "relay_parked": int(relay.get("parked", 0) or 0),
        "relay_held": int(relay.get("held", 0) or 0),
        "relay_route": relay.get("route"),
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


def center_of(request: Request) -> Center:
    """The app state of the app serving ``request``."""
    center: Center = request.app.state.center
    return center
