"""Live updates by server-sent events (``/api/events``).

The receiver calls :meth:`~center.web.context.LiveHub.notify` after each commit (same process), and
each SSE connection also polls a cheap "version" of the database every ``Center.poll_s`` seconds, so a
second receiver process writing to the same database shows up too.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from center.web.context import center_of

#: An SSE stream ends after this long; EventSource reconnects by itself (bounds stale connections).
SSE_MAX_S = 300.0


async def api_events(request: Request) -> Response:
    """SSE: ``change`` events with {new: [...], summary: {...}} whenever anything shown changed."""
    center = center_of(request)
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
                    await asyncio.wait_for(event.wait(), timeout=center.poll_s)
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
