"""Server-rendered HTML: the Jinja2 environment (autoescaping, the time and duration filters in the
center's time zone, the labels every template uses) and :func:`render`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from center.triage import AGENCIES, STATUS_LABEL, STATUSES, TRANSITIONS
from center.web.context import CATEGORY_COLOR, CATEGORY_LABEL, REPLY_LABEL, Center, center_of
from siaga.report import CATEGORIES
from sync.protocol import MAX_REPLY_TEXT_BYTES

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


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


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page or fragment: the template with the session, its CSRF token and the current path."""
    center = center_of(request)
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
