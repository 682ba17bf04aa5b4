"""The map's local data: the kecamatan (district) boundaries that filter the queue, the posts' sites,
and basemap tiles from a local MBTiles file.  There is no public tile server: a center works offline.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siaga.errors import CenterError

log = logging.getLogger(__name__)

MAP_DATA = Path(__file__).resolve().parent.parent / "static" / "map"
KECAMATAN_FILE = MAP_DATA / "ttu-kecamatan.geojson"
POSTS_FILE = MAP_DATA / "ttu-posts.geojson"


@dataclass(frozen=True)
class Kecamatan:
    name: str
    rings: tuple[tuple[tuple[float, float], ...], ...]

    def contains(self, lon: float, lat: float) -> bool:
        return any(_in_ring(lon, lat, ring) for ring in self.rings)


def _in_ring(x: float, y: float, ring: tuple[tuple[float, float], ...]) -> bool:
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def load_kecamatan(path: Path = KECAMATAN_FILE) -> list[Kecamatan]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("kecamatan layer %s unreadable; kecamatan filter disabled", path)
        return []
    out = []
    for feature in data.get("features", []):
        geom = feature.get("geometry") or {}
        polys = [geom["coordinates"]] if geom.get("type") == "Polygon" else geom.get("coordinates", [])
        rings = tuple(tuple((float(x), float(y)) for x, y in poly[0]) for poly in polys)
        out.append(Kecamatan(str(feature["properties"]["name"]), rings))
    return out


def load_post_sites(path: Path = POSTS_FILE) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out = {}
    for feature in data.get("features", []):
        props = feature.get("properties") or {}
        coords = (feature.get("geometry") or {}).get("coordinates") or [None, None]
        if props.get("post_id"):
            out[str(props["post_id"])] = {"name": props.get("name"), "lon": coords[0], "lat": coords[1]}
    return out


class MBTiles:
    """Raster tiles from a local MBTiles file (TMS row order inside, XYZ outside)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            meta = dict(self._conn.execute("SELECT name, value FROM metadata").fetchall())
        except sqlite3.Error as exc:
            raise CenterError(f"MBTiles file {path} cannot be read: {exc}") from None
        self.format = str(meta.get("format", "png"))
        self.attribution = str(meta.get("attribution", "© OpenStreetMap contributors (ODbL)"))
        self.minzoom = int(meta.get("minzoom", 0))
        self.maxzoom = int(meta.get("maxzoom", 18))

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        tms_y = (1 << z) - 1 - y
        with self._lock:
            row = self._conn.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?", (z, x, tms_y)
            ).fetchone()
        return bytes(row[0]) if row else None

    def close(self) -> None:
        self._conn.close()
