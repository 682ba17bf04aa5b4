"""The map: its page, the reports and the posts as GeoJSON for it, and basemap tiles from the local
MBTiles file (:mod:`center.web.geo`).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from center import export
from center.web.context import CATEGORY_COLOR, CATEGORY_LABEL, Filters, center_of
from center.web.render import render


async def map_page(request: Request) -> Response:
    center = center_of(request)
    flt = Filters.from_request(request, default_status="semua")
    summary = await run_in_threadpool(center.summary)
    return render(request, "map.html", filters=flt, summary=summary)


async def api_map(request: Request) -> Response:
    center = center_of(request)
    flt = Filters.from_request(request, default_status="semua")

    def build() -> dict[str, Any]:
        data = export.geojson(v for v in center.filtered(flt) if v.lat is not None)
        for feature in data["features"]:
            props = feature["properties"]
            props["color"] = CATEGORY_COLOR.get(props["category"], "#969696")
            props["label"] = CATEGORY_LABEL.get(props["category"], props["category"])
        return data

    return JSONResponse(await run_in_threadpool(build))


async def api_posts_geojson(request: Request) -> Response:
    center = center_of(request)
    rows = await run_in_threadpool(center.post_rows)
    known = {r["post_id"] for r in rows}
    features = [
        {
            "type": "Feature",
            "id": r["post_id"],
            "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
            "properties": {k: r[k] for k in ("post_id", "name", "state", "online", "silent", "pending")},
        }
        for r in rows
        if r["lat"] is not None and r["lon"] is not None
    ]
    for post_id, site in center.post_sites.items():
        if post_id not in known and site.get("lat") is not None:
            features.append(
                {
                    "type": "Feature",
                    "id": post_id,
                    "geometry": {"type": "Point", "coordinates": [site["lon"], site["lat"]]},
                    "properties": {
                        "post_id": post_id,
                        "name": site.get("name"),
                        "state": "unknown",
                        "online": False,
                        "silent": True,
                        "pending": 0,
                    },
                }
            )
    return JSONResponse({"type": "FeatureCollection", "features": features})


async def tiles(request: Request) -> Response:
    center = center_of(request)
    if center.mbtiles is None:
        return JSONResponse({"error": "tidak ada peta dasar (MBTiles)"}, status_code=404)
    try:
        z, x, y = (int(request.path_params[k]) for k in ("z", "x", "y"))
    except ValueError:
        return JSONResponse({"error": "ubin tidak sah"}, status_code=400)
    data = await run_in_threadpool(center.mbtiles.tile, z, x, y) if 0 <= z <= 22 else None
    if data is None:
        return Response(status_code=204)
    media = "image/jpeg" if center.mbtiles.format in ("jpg", "jpeg") else f"image/{center.mbtiles.format}"
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=86400"})
