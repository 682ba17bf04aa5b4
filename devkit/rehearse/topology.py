"""A rehearsal topology: the TOML file ``siaga rehearse`` plays (posts, relays, radio links, handsets, events).

The file is read once, validated completely, and turned into frozen objects; every mistake is a
:class:`TopologyError` (a ``ConfigError``: exit 78) naming the file, the line and the key, e.g.
``ttu.toml:41: event[3].kill: 'bukit-02' is not a post or relay of this topology``.

``tomllib`` reports line numbers only for syntax errors, not for a value that parses but is wrong, so
:class:`_Lines` scans the text itself: the n-th ``[[event]]`` header and the line of each key inside it.

Format (docs/REHEARSAL.md has the whole reference)::

    name = "chain3"                  # optional, shown in the summary
    regency = "ttu"                  # optional (default ttu)
    seed = 7                         # optional: the simulated mesh's random seed (loss draws)
    [[post]]    id, uplink, optional lat/lon, name, clock_offset_s
    [[relay]]   id, optional lat/lon, name
    [[link]]    a, b, loss 0..1, optional snr
    [[handset]] id "!xxxxxxxx", near (a post/relay id or a list of them), optional officer, village,
                registered (default true)
    [[event]]   at (seconds), and exactly one action:
                handset + text | handset + detection | cut = [a, b] + for | kill = id + restart |
                uplink_down = post + for
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siaga.errors import ConfigError

_ID_RE = re.compile(r"^[a-z0-9-]{1,32}$")  # a post id as the relay codec carries it
_NODE_RE = re.compile(r"^![0-9a-f]{8}$")
_TABLES = ("post", "relay", "link", "handset", "event")
_TOP_KEYS = frozenset({"name", "regency", "seed", "description"})
_KEYS: dict[str, frozenset[str]] = {
    "post": frozenset({"id", "uplink", "lat", "lon", "name", "clock_offset_s"}),
    "relay": frozenset({"id", "lat", "lon", "name"}),
    "link": frozenset({"a", "b", "loss", "snr"}),
    "handset": frozenset({"id", "near", "officer", "village", "name", "registered"}),
    "event": frozenset({"at", "handset", "text", "detection", "cut", "for", "kill", "restart", "uplink_down"}),
}
#: The event actions; each names the keys it needs besides ``at`` and its own key.
_ACTIONS: dict[str, tuple[str, ...]] = {
    "text": ("handset",),
    "detection": ("handset",),
    "cut": ("for",),
    "kill": ("restart",),
    "uplink_down": ("for",),
}
MAX_TEXT_BYTES = 200  # what a handset app lets an officer type into one message


class TopologyError(ConfigError):
    """A topology file is invalid: ``line`` (1-based, 0 if unknown) and ``field`` (``event[3].kill``)."""

    def __init__(self, file: str, line: int, field: str, value: object, reason: str) -> None:
        self.file = file
        self.line = line
        self.field = field
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {field}", value, reason)


@dataclass(frozen=True, slots=True)
class PostSpec:
    id: str
    uplink: bool
    name: str
    lat: float | None = None
    lon: float | None = None
    clock_offset_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RelaySpec:
    id: str
    name: str
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True, slots=True)
class LinkSpec:
    a: str
    b: str
    loss: float
    snr: float | None = None


@dataclass(frozen=True, slots=True)
class HandsetSpec:
    id: str
    near: tuple[str, ...]
    name: str
    officer: str = ""
    village: str = ""
    registered: bool = True


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event of the timeline.  ``kind`` is the action; only the fields it uses are set."""

    at: float
    kind: str  # text | detection | cut | kill | uplink_down
    line: int
    handset: str = ""
    text: str = ""  # the message (text) or the sensor name (detection)
    link: tuple[str, str] = ("", "")
    node: str = ""  # kill: a post/relay; uplink_down: a post
    for_s: float = 0.0
    restart_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    regency: str
    seed: int
    posts: tuple[PostSpec, ...]
    relays: tuple[RelaySpec, ...]
    links: tuple[LinkSpec, ...]
    handsets: tuple[HandsetSpec, ...]
    events: tuple[EventSpec, ...]  # sorted by ``at``, file order within the same time
    description: str = ""

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every post and relay id, posts first (each is one daemon and one simulated device)."""
        return tuple(p.id for p in self.posts) + tuple(r.id for r in self.relays)

    def post(self, node: str) -> PostSpec | None:
        return next((p for p in self.posts if p.id == node), None)

    def handset(self, node: str) -> HandsetSpec:
        return next(h for h in self.handsets if h.id == node)

    @property
    def reports(self) -> tuple[EventSpec, ...]:
        """The events that make a report (handset texts and detections)."""
        return tuple(e for e in self.events if e.kind in ("text", "detection"))

    @property
    def last_event_s(self) -> float:
        """When the timeline's last effect ends (a cut healed, a killed daemon restarted)."""
        end = 0.0
        for e in self.events:
            end = max(end, e.at + e.for_s + e.restart_s)
        return end


# ---------------------------------------------------------------------------------------------- lines
class _Lines:
    """Where each array-of-tables entry and each key stands in the text (1-based lines)."""

    _ARRAY = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]\s*(#.*)?$")
    _TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\"' -]+?)\s*\]\s*(#.*)?$")
    _KEY = re.compile(r"""^\s*([A-Za-z0-9_-]+|"[^"]*"|'[^']*')\s*[=.]""")

    def __init__(self, text: str) -> None:
        self.headers: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int, str], int] = {}
        self.tables: dict[str, int] = {}  # plain [name] tables (not part of the format: an error)
        counts: dict[str, int] = {}
        current: tuple[str, int] = ("", 0)  # top level
        depth = 0  # open brackets/braces of a multi-line value
        in_string = ""  # the delimiter of an open multi-line string
        for number, line in enumerate(text.splitlines(), start=1):
            if in_string:
                if in_string in line:
                    in_string = ""
                continue
            if depth > 0:
                depth = max(0, depth + _bracket_balance(line))
                continue
            if m := self._ARRAY.match(line):
                name = m.group(1)
                counts[name] = counts.get(name, 0) + 1
                current = (name, counts[name])
                self.headers[current] = number
                continue
            if m := self._TABLE.match(line):
                self.tables.setdefault(m.group(1).strip().strip("\"'"), number)
                current = (m.group(1).strip(), 0)
                continue
            if m := self._KEY.match(line):
                key = m.group(1).strip("\"'")
                self.keys.setdefault((current[0], current[1], key), number)
                value = line.split("=", 1)[1] if "=" in line else ""
                for delim in ('"""', "'''"):
                    if value.count(delim) % 2 == 1:
                        in_string = delim
                depth = max(0, _bracket_balance(value))

    def of(self, table: str, index: int, key: str | None = None) -> int:
        """The line of ``key`` in the ``index``-th (1-based) ``[[table]]``, else of its header, else 0."""
        if key is not None and (table, index, key) in self.keys:
            return self.keys[(table, index, key)]
        if (table, index) in self.headers:
            return self.headers[(table, index)]
        # written as an inline array (post = [{...}, ...]): the line of that key
        return self.keys.get(("", 0, table), 0)


def _bracket_balance(text: str) -> int:
    """Opened minus closed brackets/braces outside quoted strings and comments."""
    balance = 0
    quote = ""
    escaped = False
    for ch in text:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            balance += 1
        elif ch in "]}":
            balance -= 1
    return balance


# ---------------------------------------------------------------------------------------------- parse
def load(path: str | Path) -> Topology:
    """Read and validate a topology file; :class:`TopologyError` on any mistake."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(path.name, 0, "file", str(path), f"cannot be read ({exc})") from None
    return parse(text, file=path.name)


def parse(text: str, *, file: str = "topology.toml") -> Topology:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+)", str(exc))
        raise TopologyError(file, int(m.group(1)) if m else 0, "syntax", None, f"is not valid TOML ({exc})") from None
    return _Parser(file, _Lines(text), data).build()


class _Parser:
    def __init__(self, file: str, lines: _Lines, data: dict[str, Any]) -> None:
        self.file = file
        self.lines = lines
        self.data = data

    def fail(self, table: str, index: int, key: str | None, value: object, reason: str) -> TopologyError:
        if not table:  # a top-level key or table
            line = self.lines.keys.get(("", 0, key or ""), 0)
            if not line and key:
                line = self.lines.tables.get(key) or self.lines.headers.get((key, 1), 0)
            return TopologyError(self.file, line, key or "file", value, reason)
        field = f"{table}[{index}]" + (f".{key}" if key else "")
        return TopologyError(self.file, self.lines.of(table, index, key), field, value, reason)

    # -- typed getters ---------------------------------------------------------------------------
    def _get(self, entry: dict[str, Any], table: str, i: int, key: str, kind: type, default: Any = ...) -> Any:
        if key not in entry:
            if default is ...:
                raise self.fail(table, i, None, None, f"has no '{key}' (required)")
            return default
        value = entry[key]
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if ok and isinstance(value, float) and not math.isfinite(value):
            ok = False
        if not ok:
            names = {str: "a string", bool: "true or false", float: "a number", int: "an integer", list: "a list"}
            raise self.fail(table, i, key, value, f"must be {names.get(kind, kind.__name__)}")
        return value

    def _entries(self, table: str) -> list[dict[str, Any]]:
        raw = self.data.get(table, [])
        if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
            raise self.fail("", 0, table, raw, f"must be written as [[{table}]] tables")
        for i, entry in enumerate(raw, start=1):
            for key in entry:
                if key not in _KEYS[table]:
                    raise self.fail(table, i, key, entry[key], f"is not a key of [[{table}]] ({_known(table)})")
        return raw

    # -- the whole file --------------------------------------------------------------------------
    def build(self) -> Topology:
        for key in self.data:
            if key not in _TABLES and key not in _TOP_KEYS:
                raise self.fail("", 0, key, self.data[key], f"is not a key or table of a topology ({_top_known()})")
        top = dict(self.data)
        name = self._top(top, "name", str, "")
        regency = self._top(top, "regency", str, "ttu")
        if not _ID_RE.match(regency):
            raise self.fail("", 0, "regency", regency, "must be 1-32 characters a-z, 0-9, -")
        seed = self._top(top, "seed", int, 1)
        description = self._top(top, "description", str, "")

        ids: dict[str, tuple[str, int]] = {}
        posts = tuple(self._post(i, e, ids) for i, e in enumerate(self._entries("post"), start=1))
        relays = tuple(self._relay(i, e, ids) for i, e in enumerate(self._entries("relay"), start=1))
        if not posts:
            raise self.fail("", 0, "post", None, "is missing: a topology needs at least one [[post]]")
        if not any(p.uplink for p in posts):
            raise self.fail("post", 1, "uplink", False, "on every post: at least one post needs uplink = true")
        links = self._links(ids)
        handsets = self._handsets(ids)
        events = self._events(ids, {p.id: p for p in posts}, {h.id for h in handsets}, links)
        return Topology(
            name=name,
            regency=regency,
            seed=seed,
            posts=posts,
            relays=relays,
            links=links,
            handsets=handsets,
            events=events,
            description=description,
        )

    def _top(self, top: dict[str, Any], key: str, kind: type, default: Any) -> Any:
        if key not in top:
            return default
        value = top[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise self.fail("", 0, key, value, "must be " + ("a string" if kind is str else "an integer"))
        return value

    def _node_id(self, table: str, i: int, entry: dict[str, Any], ids: dict[str, tuple[str, int]]) -> str:
        node = self._get(entry, table, i, "id", str)
        if not _ID_RE.match(node):
            raise self.fail(table, i, "id", node, "must be 1-32 characters a-z, 0-9, - (a post id)")
        if node in ids:
            other, j = ids[node]
            raise self.fail(table, i, "id", node, f"is already the id of {other}[{j}] (ids must be unique)")
        ids[node] = (table, i)
        return node

    def _position(self, table: str, i: int, entry: dict[str, Any]) -> tuple[float | None, float | None]:
        lat = self._get(entry, table, i, "lat", float, None)
        lon = self._get(entry, table, i, "lon", float, None)
        if (lat is None) != (lon is None):
            missing = "lon" if lon is None else "lat"
            raise self.fail(table, i, "lat" if lat is not None else "lon", lat or lon, f"needs '{missing}' too")
        if lat is not None and not -90 <= lat <= 90:
            raise self.fail(table, i, "lat", lat, "must be -90..90")
        if lon is not None and not -180 <= lon <= 180:
            raise self.fail(table, i, "lon", lon, "must be -180..180")
        return lat, lon

    def _post(self, i: int, entry: dict[str, Any], ids: dict[str, tuple[str, int]]) -> PostSpec:
        node = self._node_id("post", i, entry, ids)
        uplink = self._get(entry, "post", i, "uplink", bool)
        lat, lon = self._position("post", i, entry)
        name = self._get(entry, "post", i, "name", str, node.replace("-", " ").title())
        if not name.strip():
            raise self.fail("post", i, "name", name, "must not be empty")
        offset = self._get(entry, "post", i, "clock_offset_s", float, 0.0)
        if abs(offset) > 50 * 365 * 86400:
            raise self.fail("post", i, "clock_offset_s", offset, "must be within ±50 years")
        return PostSpec(node, uplink, name, lat, lon, offset)

    def _relay(self, i: int, entry: dict[str, Any], ids: dict[str, tuple[str, int]]) -> RelaySpec:
        node = self._node_id("relay", i, entry, ids)
        lat, lon = self._position("relay", i, entry)
        name = self._get(entry, "relay", i, "name", str, node.replace("-", " ").title())
        if not name.strip():
            raise self.fail("relay", i, "name", name, "must not be empty")
        return RelaySpec(node, name, lat, lon)

    def _known_node(self, table: str, i: int, key: str, value: object, ids: dict[str, tuple[str, int]]) -> str:
        if not isinstance(value, str):
            raise self.fail(table, i, key, value, "must be a post or relay id (a string)")
        if value not in ids:
            raise self.fail(table, i, key, value, "is not a post or relay of this topology")
        return value

    def _links(self, ids: dict[str, tuple[str, int]]) -> tuple[LinkSpec, ...]:
        out: list[LinkSpec] = []
        seen: dict[frozenset[str], int] = {}
        for i, entry in enumerate(self._entries("link"), start=1):
            a = self._known_node("link", i, "a", self._get(entry, "link", i, "a", str), ids)
            b = self._known_node("link", i, "b", self._get(entry, "link", i, "b", str), ids)
            if a == b:
                raise self.fail("link", i, "b", b, "links a node to itself")
            pair = frozenset((a, b))
            if pair in seen:
                raise self.fail("link", i, "b", b, f"duplicates link[{seen[pair]}] ({a} - {b})")
            seen[pair] = i
            loss = self._get(entry, "link", i, "loss", float)
            if not 0 <= loss <= 1:
                raise self.fail("link", i, "loss", loss, "must be 0..1 (the share of packets lost)")
            snr = self._get(entry, "link", i, "snr", float, None)
            if snr is not None and not -30 <= snr <= 30:
                raise self.fail("link", i, "snr", snr, "must be -30..30 dB")
            out.append(LinkSpec(a, b, loss, snr))
        return tuple(out)

    def _handsets(self, ids: dict[str, tuple[str, int]]) -> tuple[HandsetSpec, ...]:
        out: list[HandsetSpec] = []
        seen: dict[str, int] = {}
        for i, entry in enumerate(self._entries("handset"), start=1):
            node = self._get(entry, "handset", i, "id", str)
            if not _NODE_RE.match(node):
                raise self.fail("handset", i, "id", node, "must be '!' and 8 lower-case hex digits (a node id)")
            if node in seen:
                raise self.fail("handset", i, "id", node, f"is already handset[{seen[node]}] (ids must be unique)")
            seen[node] = i
            if "near" not in entry:
                raise self.fail("handset", i, None, None, "has no 'near' (required: the post/relay that hears it)")
            raw = entry["near"]
            near_list = raw if isinstance(raw, list) else [raw]
            if not near_list:
                raise self.fail("handset", i, "near", raw, "must name at least one post or relay")
            near = tuple(self._known_node("handset", i, "near", n, ids) for n in near_list)
            if len(set(near)) != len(near):
                raise self.fail("handset", i, "near", raw, "names a node twice")
            out.append(
                HandsetSpec(
                    id=node,
                    near=near,
                    name=self._get(entry, "handset", i, "name", str, f"Petugas {node[1:5].upper()}"),
                    officer=self._get(entry, "handset", i, "officer", str, ""),
                    village=self._get(entry, "handset", i, "village", str, ""),
                    registered=self._get(entry, "handset", i, "registered", bool, True),
                )
            )
        return tuple(out)

    def _events(
        self,
        ids: dict[str, tuple[str, int]],
        posts: dict[str, PostSpec],
        handsets: set[str],
        links: tuple[LinkSpec, ...],
    ) -> tuple[EventSpec, ...]:
        out: list[EventSpec] = []
        pairs = {frozenset((link.a, link.b)) for link in links}
        texts: dict[tuple[str, str], int] = {}
        for i, entry in enumerate(self._entries("event"), start=1):
            if "at" not in entry:
                raise self.fail("event", i, None, None, "has no 'at' (required: seconds from the start)")
            at = self._get(entry, "event", i, "at", float)
            if at < 0:
                raise self.fail("event", i, "at", at, "must not be negative")
            actions = [k for k in _ACTIONS if k in entry]
            if not actions:
                raise self.fail("event", i, None, None, f"has no action (one of: {', '.join(_ACTIONS)})")
            if len(actions) > 1:
                raise self.fail("event", i, actions[1], entry[actions[1]], f"is a second action beside '{actions[0]}'")
            kind = actions[0]
            needed = _ACTIONS[kind]
            for key in entry:
                if key not in ("at", kind, *needed):
                    raise self.fail("event", i, key, entry[key], f"does not go with '{kind}' (it takes {needed[0]})")
            for key in needed:
                if key not in entry:
                    raise self.fail("event", i, kind, entry[kind], f"needs '{key}' in the same [[event]]")
            line = self.lines.of("event", i)
            if kind in ("text", "detection"):
                handset = self._get(entry, "event", i, "handset", str)
                if handset not in handsets:
                    raise self.fail("event", i, "handset", handset, "is not a [[handset]] of this topology")
                text = self._get(entry, "event", i, kind, str)
                if not text.strip():
                    raise self.fail("event", i, kind, text, "must not be empty")
                if kind == "text" and len(text.encode()) > MAX_TEXT_BYTES:
                    raise self.fail("event", i, kind, text, f"is longer than a handset sends ({MAX_TEXT_BYTES} bytes)")
                if kind == "detection" and not re.fullmatch(r"[A-Za-z0-9 _.-]{1,32}", text):
                    raise self.fail("event", i, kind, text, "must be a sensor name: 1-32 of A-Z a-z 0-9 space _ . -")
                # the summary follows each report by (handset, text): two identical ones would be one
                body = text if kind == "text" else f"{text} detected"
                if (handset, body) in texts:
                    raise self.fail(
                        "event", i, kind, text, f"repeats event[{texts[(handset, body)]}] from the same handset"
                    )
                texts[(handset, body)] = i
                out.append(EventSpec(at=at, kind=kind, line=line, handset=handset, text=text))
            elif kind == "cut":
                raw = entry["cut"]
                if not (isinstance(raw, list) and len(raw) == 2):
                    raise self.fail("event", i, "cut", raw, "must be a list of two ids [a, b] (a [[link]])")
                a = self._known_node("event", i, "cut", raw[0], ids)
                b = self._known_node("event", i, "cut", raw[1], ids)
                if frozenset((a, b)) not in pairs:
                    raise self.fail("event", i, "cut", raw, "is not a [[link]] of this topology")
                out.append(EventSpec(at=at, kind=kind, line=line, link=(a, b), for_s=self._duration(entry, i)))
            elif kind == "kill":
                node = self._known_node("event", i, "kill", entry["kill"], ids)
                restart = self._get(entry, "event", i, "restart", float)
                if restart < 0:
                    raise self.fail("event", i, "restart", restart, "must not be negative (seconds until restart)")
                out.append(EventSpec(at=at, kind=kind, line=line, node=node, restart_s=restart))
            else:
                node = self._known_node("event", i, "uplink_down", entry["uplink_down"], ids)
                if node not in posts:
                    raise self.fail("event", i, "uplink_down", node, "is a relay: only a post has an uplink")
                if not posts[node].uplink:
                    raise self.fail("event", i, "uplink_down", node, "is a post without uplink (uplink = false)")
                out.append(EventSpec(at=at, kind=kind, line=line, node=node, for_s=self._duration(entry, i)))
        return tuple(sorted(out, key=lambda e: e.at))  # sorted() is stable: file order at the same time

    def _duration(self, entry: dict[str, Any], i: int) -> float:
        value = self._get(entry, "event", i, "for", float)
        if value <= 0:
            raise self.fail("event", i, "for", value, "must be more than 0 seconds")
        return float(value)


def _known(table: str) -> str:
    return ", ".join(sorted(_KEYS[table]))


def _top_known() -> str:
    return ", ".join(sorted(_TOP_KEYS)) + ", " + ", ".join(f"[[{t}]]" for t in _TABLES)


BUNDLED = Path(__file__).resolve().parent.parent / "topologies"


def resolve(name: str | Path) -> Path:
    """A path as given, else a bundled topology by name (``ttu``, ``chain3.toml``)."""
    path = Path(name)
    if path.exists() or path.parent != Path("."):
        return path
    stem = path.name if path.suffix == ".toml" else f"{path.name}.toml"
    bundled = BUNDLED / stem
    return bundled if bundled.exists() else path


def bundled_names() -> list[str]:
    return sorted(p.name for p in BUNDLED.glob("*.toml"))
