"""Configuration: one TOML file → frozen dataclasses, validated at start.

Order of lookup: ``--config PATH``, then ``$SIAGA_CONFIG``, then ``/etc/siaga/siaga.toml``.  Every key has a
default except the post's identity.  Unknown keys are errors (a typo must never be silently ignored) and
every error names the key, the bad value and what is allowed; entry points turn :class:`ConfigError`
into exit code 78 (EX_CONFIG) so that systemd does not restart a daemon whose config is broken.

Adding a key: add a field to the right dataclass (with a default and, when needed, a ``check`` in its
metadata) and document it in systemd/siaga.example.toml.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from siaga.errors import ConfigError
from siaga.hostport import parse_host_port
from siaga.keyfile import read_hex_key

DEFAULT_PATH = Path("/etc/siaga/siaga.toml")
ENV_VAR = "SIAGA_CONFIG"

_POST_ID_RE = re.compile(r"^[a-z0-9-]{1,32}$")
_NODE_ID_RE = re.compile(r"^![0-9a-f]{8}$")

Check = Callable[[Any], str | None]


def _check(fn: Check, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    meta = {"check": fn}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _slug(value: str) -> str | None:
    return None if _POST_ID_RE.match(value) else "must be 1-32 chars of a-z 0-9 -"


def _nonempty(value: str) -> str | None:
    return None if value.strip() and len(value) <= 128 else "must be 1-128 characters"


def _lat(value: float | None) -> str | None:
    return None if value is None or -90 <= value <= 90 else "must be a latitude within -90..90"


def _lon(value: float | None) -> str | None:
    return None if value is None or -180 <= value <= 180 else "must be a longitude within -180..180"


def _range(lo: float, hi: float) -> Check:
    def check(value: float) -> str | None:
        return None if lo <= value <= hi else f"must be within {lo:g}..{hi:g}"

    return check


def _mqtt_url(value: str) -> str | None:
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
    except ValueError:  # urlsplit raises on e.g. an unclosed IPv6 bracket
        return "is not a valid URL"
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl", "ws", "wss") or not hostname:
        return "must be a URL like mqtts://host:8883 (scheme mqtt, mqtts, ws or wss)"
    try:
        parts.port  # noqa: B018 - raises on an invalid port
    except ValueError:
        return "has an invalid port"
    if parts.password:
        return "must not carry a password: use password_file or $SIAGA_MQTT_PASSWORD"
    return None


def _mqtt_urls(value: tuple[str, ...]) -> str | None:
    for url in value:
        problem = _mqtt_url(url)
        if problem:
            return f"entry {url!r} {problem}"
    return None


def _host_port(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_host_port(value, "", default_port=4403)
    except ConfigError as exc:
        return exc.reason
    return None


def _channels(value: tuple[int, ...]) -> str | None:
    if not value or any(not 0 <= c <= 7 for c in value):
        return "must be a non-empty list of channel indexes 0-7"
    return None


def _db_url(value: str) -> str | None:
    if value.startswith("sqlite:///") and len(value) > len("sqlite:///"):
        return None
    if value.startswith(("postgresql://", "postgres://")):
        return None
    return "must be sqlite:///PATH or postgresql://USER@HOST:PORT/DB"


def _log_level(value: str) -> str | None:
    levels = ("DEBUG", "INFO", "WARNING", "ERROR")
    return None if value.upper() in levels else f"must be one of {', '.join(levels)}"


def _listen(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        parse_host_port(value, "", port_zero=True)
    except ConfigError as exc:
        return exc.reason
    return None


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """The post itself: who it is and where it stands."""

    post_id: str = _check(_slug, "")
    regency: str = _check(_slug, "ttu")
    name: str = _check(_nonempty, "Pos Siaga")
    data_dir: Path = Path("/var/lib/siaga")
    lat: float | None = _check(_lat, None)
    lon: float | None = _check(_lon, None)
    # receipts show local time; NTT is WITA (UTC+8)
    timezone: str = "Asia/Makassar"
    mode: str = _check(
        lambda v: None if v in ("actual", "exercise", "test") else "must be actual, exercise or test",
        "actual",
    )
    # "post": a village post (handsets, reports); "relay": a hilltop Pi that only carries others' reports
    role: str = _check(lambda v: None if v in ("post", "relay") else "must be post or relay", "post")


@dataclass(frozen=True, slots=True)
class HandsetConfig:
    """One officer's handset in the registry: its reports are marked verified."""

    id: str = _check(lambda v: None if _NODE_ID_RE.match(v) else "must be '!' and 8 hex digits", "")
    officer: str = ""
    village: str = ""
    phone: str = ""
    area_code: str = ""


@dataclass(frozen=True, slots=True)
class MeshtasticConfig:
    """The post's gateway radio: USB serial ``port`` or Wi-Fi ``host`` (exactly one)."""

    port: str | None = None
    host: str | None = _check(_host_port, None)
    channels: tuple[int, ...] = _check(_channels, factory=lambda: (0,))
    receipts: bool = True
    receipt_retries: int = _check(_range(0, 10), 3)
    ack_timeout_s: float = _check(_range(1, 600), 45.0)
    # firmware NAKs a client sending texts faster than one per 2 s (RATE_LIMIT_EXCEEDED)
    min_send_interval_s: float = _check(_range(0, 60), 2.5)
    connect_timeout_s: float = _check(_range(5, 600), 60.0)
    handsets_file: Path | None = None


_CALLSIGN_RE = re.compile(r"^[A-Z0-9]{1,6}(-([0-9]|1[0-5]))?$")


def _callsign(value: str | None) -> str | None:
    if value is None:
        return None
    return None if _CALLSIGN_RE.match(value) else "must be an AX.25 callsign in capitals, e.g. YB9ABC or YB9ABC-10"


def _kiss_host(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_host_port(value, "", default_port=8001)
    except ConfigError as exc:
        return exc.reason
    return None


@dataclass(frozen=True, slots=True)
class TncConfig:
    """A TNC for ordinary two-way radios (docs/RADIO.md): direwolf's KISS TCP ``host`` or a hardware TNC's
    serial ``port`` (exactly one).  Receiving needs no licence; anything sent on air needs a licensed
    ``callsign`` and ``transmit = true``."""

    host: str | None = _check(_kiss_host, None)
    port: str | None = None
    baud: int = _check(_range(1200, 921600), 9600)
    # the radio channel of a multi-port TNC (KISS port number)
    kiss_port: int = _check(_range(0, 15), 0)
    # what stations send their messages to (the post's own callsign is always accepted too)
    address: str = _check(_callsign, "SIAGA")
    callsign: str | None = _check(_callsign, None)
    transmit: bool = False
    touch_tone_file: Path | None = None
    # share of the channel's time the post may take with its own transmissions (sliding 10 minutes)
    airtime_share: float = _check(_range(0.01, 0.5), 0.05)
    # the modem's bit rate and the TNC's key-up delay: what one frame costs on air
    air_baud: int = _check(_range(300, 9600), 1200)
    txdelay_s: float = _check(_range(0, 2), 0.3)
    # APRS destination (software id; APZ = experimental until one is registered) and digipeater path
    tocall: str = _check(_callsign, "APZSIA")
    path: tuple[str, ...] = _check(
        lambda v: None if len(v) <= 2 and all(_CALLSIGN_RE.match(p) for p in v) else "at most 2 callsigns",
        factory=lambda: ("WIDE1-1",),
    )
    # receipts (stored; 112 has it) as APRS messages to stations whose messages became reports
    receipts: bool = True
    # a station's APRS position older than this is not used to place its report (the post's is)
    position_max_age_s: float = _check(_range(60, 7 * 86400), 3600.0)


@dataclass(frozen=True, slots=True)
class RadioConfig:
    meshtastic: MeshtasticConfig | None = None
    tnc: TncConfig | None = None


@dataclass(frozen=True, slots=True)
class TlsMqttConfig:
    """One MQTT connection (post uplink or center): broker URLs tried in order, credentials from files."""

    urls: tuple[str, ...] = _check(_mqtt_urls, factory=tuple)
    url: str | None = _check(lambda v: None if v is None else _mqtt_url(v), None)
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_id: str | None = None
    keepalive_s: int = _check(_range(5, 3600), 30)

    @property
    def broker_urls(self) -> tuple[str, ...]:
        """``url`` first (if set), then ``urls``, without repeats."""
        seen: list[str] = []
        for url in ((self.url,) if self.url else ()) + self.urls:
            if url not in seen:
                seen.append(url)
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class UplinkMqttConfig(TlsMqttConfig):
    """The post's uplink to the center."""

    batch_max_bytes: int = _check(_range(1024, 256 * 1024), 16 * 1024)
    inflight: int = _check(_range(1, 1000), 20)
    ack_timeout_s: float = _check(_range(5, 86400), 120.0)
    compress: bool = False
    heartbeat_s: float = _check(_range(5, 86400), 60.0)
    #: on a broker other than the first of ``urls``: how often to look whether the first is reachable again,
    #: and return to it (when nothing is in flight) — a satellite fallback must not stay in use for good
    primary_probe_s: float = _check(_range(5, 86400), 300.0)


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    mqtt: UplinkMqttConfig | None = None


@dataclass(frozen=True, slots=True)
class StoreConfig:
    retention_days: int = _check(_range(1, 3650), 30)
    claim_timeout_s: float = _check(_range(5, 86400), 300.0)


@dataclass(frozen=True, slots=True)
class ClassifierConfig:
    """Regency keyword extensions (Uab Meto words, place names) on top of the packaged list."""

    extra_keywords: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class CenterMqttConfig(TlsMqttConfig):
    """The center's receiver connection: subscribes to every post of ``regency`` (``+`` for all)."""

    regency: str = _check(lambda v: None if v == "+" or _POST_ID_RE.match(v) else "must be a slug or +", "+")
    share_group: str = _check(_slug, "center")


@dataclass(frozen=True, slots=True)
class CenterRelayConfig:
    """Reports carried post to post (docs/RELAY.md): the regency relay secret every post's key derives
    from, so that the center can verify the origin's tag on a report another post delivered."""

    secret_file: Path | None = None


@dataclass(frozen=True, slots=True)
class CenterConfig:
    db: str = _check(_db_url, "sqlite:////var/lib/siaga/center.db")
    http: str = _check(_listen, "127.0.0.1:8112")
    silent_after_s: float = _check(_range(60, 7 * 86400), 900.0)
    # optional offline basemap for the dashboard: a raster MBTiles file built from an OSM extract
    mbtiles: Path | None = None
    mqtt: CenterMqttConfig | None = None
    # without it, reports carried by another post are refused (relay_unverifiable) and wait at the carrier
    relay: CenterRelayConfig | None = None


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Custody relay between posts over the mesh (docs/RELAY.md, "Custody protocol, version 1")."""

    enabled: bool = False
    # this post's own 32-byte tag key, hex (from `siaga relay key`); mode 0600
    key_file: Path | None = None
    key_epoch: int = _check(_range(0, 255), 0)
    beacon_s: float = _check(_range(10, 86400), 600.0)
    retry_s: float = _check(_range(1, 3600), 30.0)
    cack_delay_s: float = _check(_range(0, 60), 2.0)
    airtime_cap: float = _check(_range(0.001, 1.0), 0.25)
    max_hops: int = _check(_range(1, 100), 16)


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """The operator console (edge/console/): a web page served by ``siaga run`` for the officer's phone.

    Empty ``http`` = off.  ``:8080`` (no host) binds 127.0.0.1; the hotspot case names the Pi's Wi-Fi
    address.  Accounts: ``siaga console passwd NAME``."""

    http: str = _check(_listen, "")
    # the desa the post serves, offered on the report form (a free place name is always possible)
    villages: tuple[str, ...] = _check(
        lambda v: None if all(0 < len(x.strip()) <= 64 for x in v) else "entries must be 1-64 characters", factory=tuple
    )
    # a session unused this long ends (a phone left on the desk); 12 h at most in any case
    idle_timeout_s: float = _check(_range(60, 12 * 3600), 2 * 3600.0)


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = _check(_log_level, "INFO")


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Opt-in Prometheus text endpoint; empty = off.  Keep it on localhost."""

    listen: str | None = _check(_listen, None)


@dataclass(frozen=True, slots=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    radio: RadioConfig = field(default_factory=RadioConfig)
    uplink: UplinkConfig = field(default_factory=UplinkConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    center: CenterConfig = field(default_factory=CenterConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    handsets: tuple[HandsetConfig, ...] = ()
    path: Path | None = None

    @property
    def store_path(self) -> Path:
        return self.node.data_dir / "post.db"


T = TypeVar("T")


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_PATH


def load(path: str | os.PathLike[str] | None = None, *, require_post: bool = True) -> Config:
    """Read, parse and validate the config file.  Raises :class:`ConfigError`."""
    resolved = config_path(path)
    try:
        raw = resolved.read_bytes()
    except FileNotFoundError:
        raise ConfigError("config", str(resolved), "file not found (use --config PATH or $SIAGA_CONFIG)")
    except OSError as exc:
        raise ConfigError("config", str(resolved), f"cannot be read: {exc.strerror}")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("config", str(resolved), "is not valid UTF-8")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", str(resolved), f"is not valid TOML: {exc}")
    except RecursionError:  # tomllib recurses per nesting level of arrays and inline tables
        raise ConfigError("config", str(resolved), "is not valid TOML: nested too deeply")
    return from_dict(data, path=resolved, require_post=require_post)


def from_dict(data: Mapping[str, Any], *, path: Path | None = None, require_post: bool = True) -> Config:
    handsets_raw = data.get("handsets", [])
    body = {k: v for k, v in data.items() if k != "handsets"}
    config = _build(Config, body, "", skip={"handsets", "path"})
    handsets = _build_handsets(handsets_raw)
    config = dataclasses.replace(config, handsets=handsets, path=path)
    _cross_checks(config, require_post=require_post)
    return config


def _build_handsets(raw: Any) -> tuple[HandsetConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError("handsets", raw, "must be an array of tables ([[handsets]])")
    out = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        key = f"handsets[{index}]"
        if not isinstance(item, Mapping):
            raise ConfigError(key, item, "must be a table with id, officer, village, phone")
        handset = _build(HandsetConfig, item, key + ".")
        if not handset.id:
            raise ConfigError(key + ".id", "", "is required ('!' and 8 hex digits)")
        if handset.id in seen:
            raise ConfigError(key + ".id", handset.id, "is listed twice")
        seen.add(handset.id)
        out.append(handset)
    return tuple(out)


def _cross_checks(config: Config, *, require_post: bool) -> None:
    if require_post and not config.node.post_id:
        raise ConfigError("node.post_id", "", "must be 1-32 chars of a-z 0-9 - (required)")
    if (config.node.lat is None) != (config.node.lon is None):
        raise ConfigError("node.lat", config.node.lat, "and node.lon must be given together")
    mesh = config.radio.meshtastic
    if mesh is not None and (mesh.port is None) == (mesh.host is None):
        raise ConfigError("radio.meshtastic", "", "needs exactly one of port (serial) or host (TCP)")
    for section, mqtt in (("uplink.mqtt", config.uplink.mqtt), ("center.mqtt", config.center.mqtt)):
        if mqtt is None:
            continue
        if not mqtt.broker_urls:
            raise ConfigError(section + ".url", "", "is required (or urls = [...])")
        if (mqtt.cert_file is None) != (mqtt.key_file is None):
            raise ConfigError(section + ".cert_file", str(mqtt.cert_file), "and key_file go together")
        for name in ("password_file", "ca_file", "cert_file", "key_file"):
            file = getattr(mqtt, name)
            if file is not None and not file.is_file():
                raise ConfigError(f"{section}.{name}", str(file), "is not a readable file")
    tnc = config.radio.tnc
    if tnc is not None:
        if (tnc.port is None) == (tnc.host is None):
            raise ConfigError("radio.tnc", "", "needs exactly one of host (KISS TCP) or port (serial)")
        if tnc.transmit and tnc.callsign is None:
            raise ConfigError("radio.tnc.transmit", True, "needs a licensed callsign (radio.tnc.callsign)")
        if tnc.touch_tone_file is not None and not tnc.touch_tone_file.is_file():
            raise ConfigError("radio.tnc.touch_tone_file", str(tnc.touch_tone_file), "is not a readable file")
    if config.radio.meshtastic and config.radio.meshtastic.handsets_file:
        file = config.radio.meshtastic.handsets_file
        if not file.is_file():
            raise ConfigError("radio.meshtastic.handsets_file", str(file), "is not a readable file")
    if config.relay.enabled or config.node.role == "relay":
        if not config.relay.enabled:
            raise ConfigError("relay.enabled", False, "must be true for node.role = relay")
        if config.node.role == "relay" and config.uplink.mqtt is not None:
            raise ConfigError("uplink.mqtt", "", "a relay (node.role = relay) has no uplink; make it a post")
        if config.relay.key_file is None:
            raise ConfigError("relay.key_file", None, "is required when the relay is enabled (siaga relay key)")
        read_relay_key(config.relay.key_file)
    relay = config.center.relay
    if relay is not None:
        if relay.secret_file is None:
            raise ConfigError("center.relay.secret_file", "", "is required (siaga center relay-secret --out FILE)")
        read_hex_key(relay.secret_file, "center.relay.secret_file")  # read again by the center; checked here
    if config.center.mbtiles is not None and not config.center.mbtiles.is_file():
        raise ConfigError("center.mbtiles", str(config.center.mbtiles), "is not a readable file")
    for index, file in enumerate(config.classifier.extra_keywords):
        if not file.is_file():
            raise ConfigError(f"classifier.extra_keywords[{index}]", str(file), "is not a readable file")


def _build(cls: type[T], data: Any, prefix: str, skip: frozenset[str] | set[str] = frozenset()) -> T:
    section = prefix.rstrip(".") or "config"
    if not isinstance(data, Mapping):
        raise ConfigError(section, data, "must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        allowed = ", ".join(sorted(fields))
        raise ConfigError(prefix + unknown[0], data[unknown[0]], f"is not a known key (allowed: {allowed})")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = prefix + name
        converted = _convert(hints[name], value, key)
        check = fields[name].metadata.get("check")
        if check is not None:
            problem = check(converted)
            if problem:
                raise ConfigError(key, value, problem)
        kwargs[name] = converted
    instance = cls(**kwargs)
    # a default may be invalid on purpose (post_id ""): checked in _cross_checks with a better message
    return instance


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if value is None:
            return None
        return _convert(inner[0], value, key)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")  # type: ignore[arg-type]
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(key, value, "must be a list")
        return tuple(_convert(args[0], item, f"{key}[{i}]") for i, item in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, value, "must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, value, "must be an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, value, "must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, value, "must be a string")
        return value
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(key, value, "must be a non-empty path string")
        if "\x00" in value:  # every file system call would raise ValueError on it
            raise ConfigError(key, value, "must not contain a NUL character")
        return Path(value)
    raise ConfigError(key, value, f"has an unsupported type {hint!r}")  # pragma: no cover


def read_relay_key(file: Path) -> bytes:
    """This post's 32-byte relay tag key (`siaga relay key`): hex on one line, mode 0600 (siaga/keyfile.py)."""
    key = read_hex_key(file, "relay.key_file", min_bytes=32)
    if len(key) != 32:
        raise ConfigError("relay.key_file", str(file), f"holds {len(key)} bytes; a post key is exactly 32")
    return key


def read_secret(file: Path | None, env: str) -> str | None:
    """A secret from ``$env`` or a file (first line, stripped).  Never logged by callers."""
    value = os.environ.get(env)
    if value:
        return value
    if file is None:
        return None
    try:
        return file.read_text(encoding="utf-8").splitlines()[0].strip() if file.stat().st_size else ""
    except (OSError, IndexError, UnicodeDecodeError) as exc:
        raise ConfigError(str(file), "<secret>", f"cannot be read as a secret file: {exc}")
