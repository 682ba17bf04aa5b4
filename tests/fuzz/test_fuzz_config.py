"""Hostile config files into the loader (siaga/config.py) and `siaga config check`.

Documents are built from the real schema: the commented example (systemd/siaga.example.toml) with the
post's paths moved into tmp_path, then one to three mutations drawn from the dataclasses in siaga/config.py
— a key set to a value of the wrong type, an out-of-range number (inf, nan, 2**63), a bad URL, a bad path
(NUL, empty, a directory, missing), a section replaced by a scalar, an unknown key, a required key removed,
a handsets file with hostile content — serialised as TOML and sometimes damaged as text (cut short, bytes
that are not UTF-8, nesting deeper than the parser recurses, a duplicated table).

In process (every example) the file goes through exactly what `siaga config check` runs (load →
check_data_dir → with_handsets_file): the result is a frozen Config or a ConfigError whose key names what
was mutated; nothing else may escape.  Through the CLI (a sample): exit 0 when the loader accepted the
file, else exit 78 with one line on stderr naming the same key — never a traceback.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cli import base as cli
from edge.handsets import with_handsets_file
from siaga import config as config_mod
from siaga.errors import ConfigError
from tests.conftest import REPO, Budget
from tests.fuzz.conftest import Reasons

pytestmark = pytest.mark.fuzz

EXAMPLE = REPO / "systemd" / "siaga.example.toml"
EXAMPLE_CAP = timedelta(seconds=30)


# ---------------------------------------------------------------------------------- the schema
def schema(cls: type = config_mod.Config, prefix: str = "") -> dict[str, Any]:
    """Dotted key → type hint for every leaf of the config; sections map to their dataclass."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "path":
            continue
        hint = hints[f.name]
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        target = inner[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) else hint
        key = prefix + f.name
        if f.name == "handsets":
            out.update(schema(config_mod.HandsetConfig, "handsets[0]."))
            out["handsets"] = list
        elif dataclasses.is_dataclass(target):
            out[key] = dict
            out.update(schema(target, key + "."))  # type: ignore[arg-type]
        else:
            out[key] = hint
    return out


SCHEMA = schema()
SECTIONS = sorted(k for k, v in SCHEMA.items() if v is dict)
LEAVES = sorted(k for k, v in SCHEMA.items() if v is not dict)
#: Keys whose checks involve another key: an error may name either.
FAMILIES = [
    {"node.lat", "node.lon"},
    {"radio.meshtastic", "radio.meshtastic.port", "radio.meshtastic.host"},
    {"uplink.mqtt.url", "uplink.mqtt.urls", "uplink.mqtt"},
    {"center.mqtt.url", "center.mqtt.urls", "center.mqtt"},
    {"uplink.mqtt.cert_file", "uplink.mqtt.key_file"},
    {"center.mqtt.cert_file", "center.mqtt.key_file"},
]


def related(error_key: str, mutated: str) -> bool:
    """The error names the mutated key, a key inside it, the section holding it, or its partner."""
    e, m = _norm(error_key), _norm(mutated)
    for a, b in ((e, m), (m, e)):
        if a == b or a.startswith(b + ".") or a.startswith(b + "["):
            return True
    return any(e in family and m in family for family in FAMILIES)


def _norm(key: str) -> str:
    # ConfigError shows a key's control characters escaped (one line whatever the file held)
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in key)
    return re.sub(r"\[\d+\]", "[0]", shown)


def reason_of(exc: ConfigError, handsets_file: str | None) -> str:
    """The reason for the table: the (normalised) key the error names."""
    if (handsets_file and exc.key.startswith(handsets_file)) or exc.key.startswith("/"):
        return "radio.meshtastic.handsets_file (a line)"  # config keys never start with "/": a file's path
    if "is not a known key" in exc.reason:
        section = exc.key.rpartition(".")[0] or "(top level)"
        return f"unknown key in {_norm(section)}"
    return re.sub(r"\[\d+\]", "", exc.key)


KNOWN = (
    *[re.sub(r"\[\d+\]", "", k) for k in SCHEMA],
    "config",
    "radio.meshtastic.handsets_file (a line)",
    "unknown key in *",
)


# ---------------------------------------------------------------------------------- TOML out
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(name: str) -> str:
    return name if _BARE.match(name) else _string(name)


def _string(value: str) -> str:
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)  # lone surrogates stay: written with surrogatepass they are invalid UTF-8
    return '"' + "".join(out) + '"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def dump_toml(doc: dict[str, Any]) -> str:
    lines: list[str] = []

    def table(name: str, body: dict[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not _is_table(v) and not _is_table_array(v)}
        if name:
            lines.append(f"[{name}]")
        lines.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars.items())
        for k, v in body.items():
            sub = f"{name}.{_key(k)}" if name else _key(k)
            if _is_table(v):
                table(sub, v)
            elif _is_table_array(v):
                for item in v:
                    lines.append(f"[[{sub}]]")
                    lines.extend(f"{_key(ik)} = {_value(iv)}" for ik, iv in item.items())

    table("", doc)
    return "\n".join(lines) + "\n"


def _is_table(v: Any) -> bool:
    return isinstance(v, dict)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(i, dict) for i in v)


# ---------------------------------------------------------------------------------- documents
def base_document(tmp: Path) -> dict[str, Any]:
    """The example config, pointed at tmp_path (check_data_dir creates data_dir: never outside tmp)."""
    doc = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    doc["node"]["data_dir"] = str(tmp / "data")
    doc["center"]["db"] = f"sqlite:///{tmp}/center.db"
    return doc


def values_for(hint: Any, tmp: Path, key: str) -> st.SearchStrategy[Any]:
    """Values a key may get: plausible ones of its type, boundary junk, and other types entirely."""
    wrong = st.one_of(
        st.text(max_size=20),
        st.integers(),
        st.floats(),
        st.booleans(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.sampled_from(["a", "id", "x y"]), st.integers(), max_size=2),
        st.just(datetime(2026, 11, 28, 7, 0)),
    )
    strings = st.one_of(
        st.text(max_size=40),
        st.sampled_from(
            [
                "",
                " ",
                "\x00",
                "x" * 300,
                "oebubun",
                "OEBUBUN",
                "!a1b2c3d4",
                "!A1B2C3D4",
                "DEBUG",
                "debug",
                "+",
                "actual",
                "exercise",
                "Asia/Makassar",
                "Mars/Olympus",
                "../../etc/passwd",
                "192.168.4.1:4403",
                "host:0",
                "host:65536",
                "host:²",
                ":4403",
                "[::1]:4403",
                "127.0.0.1:8112",
                "\udcff",
            ]
        ),
    )
    urls = st.sampled_from(
        [
            "mqtts://broker.example:8883",
            "mqtt://127.0.0.1:1883",
            "mqtt://[::1",
            "mqtt://[::1]:1883",
            "http://x",
            "mqtt://",
            "mqtt://h:99999",
            "mqtt://h:port",
            "mqtt://user:secret@h:1883",
            "mqtt://h\x00:1",
            "mqtt://h :1",
            "mqtts://ホスト.example",
            "sqlite:///tmp/x.db",
            "postgresql://postgres@127.0.0.1:5432/test",
            "sqlite:///",
        ]
    )
    if key == "node.data_dir":
        paths = st.sampled_from(
            [str(tmp / "data"), str(tmp / "afile"), str(tmp / "afile" / "sub"), "", "\x00", str(tmp / "n\x00ul")]
        )
    else:
        paths = st.sampled_from(
            [str(tmp / "afile"), str(tmp), str(tmp / "missing"), "", "\x00", "/dev/null", "relative/file"]
        )
    numbers = st.one_of(
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(),
        st.sampled_from([0, -1, 1, 5, 60, 3650, 86400, 2**63 - 1, float("inf"), float("-inf"), float("nan"), -0.0]),
    )
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if origin in (typing.Union, types.UnionType) else hint
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        elems = paths if item is Path else (urls if "url" in key else numbers if item is int else strings)
        right: st.SearchStrategy[Any] = st.lists(elems, max_size=3)
    elif base is Path:
        right = paths
    elif base is bool:
        right = st.booleans()
    elif base in (int, float):
        right = numbers
    elif "url" in key or key.endswith(".db"):
        right = urls
    else:
        right = strings
    return st.one_of(right, right, wrong)


Mutation = Callable[[dict[str, Any]], None]


def _section(doc: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    """The dict holding ``dotted``'s leaf, created as needed; None when the path runs into a non-table."""
    node: Any = doc
    for part in dotted.split(".")[:-1]:
        if part == "handsets[0]":
            hs = node.setdefault("handsets", [{}])
            if not isinstance(hs, list) or not hs or not isinstance(hs[0], dict):
                return None
            node = hs[0]
            continue
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return None
    return node


@st.composite
def documents(draw: st.DrawFn, tmp: Path) -> tuple[bytes, list[str], bool, str | None]:
    """(file bytes, mutated keys, damaged as text?, handsets file path if one was written)."""
    doc = base_document(tmp)
    mutated: list[str] = []
    handsets_file: str | None = None
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.integers(0, 9))
        if op <= 5:  # a leaf of the schema gets a value
            key = draw(st.sampled_from(LEAVES))
            holder = _section(doc, key)
            if holder is None:
                continue
            holder[key.rpartition(".")[2]] = draw(values_for(SCHEMA[key], tmp, key))
            mutated.append(key)
        elif op == 6:  # a required or paired key removed
            key = draw(st.sampled_from(["node.post_id", "node.lat", "node.lon", "radio.meshtastic.port"]))
            holder = _section(doc, key)
            if holder is not None and holder.pop(key.rpartition(".")[2], None) is not None:
                mutated.append(key)
        elif op == 7:  # an unknown key, often a near miss of a real one
            section = draw(st.sampled_from(["", *SECTIONS]))
            name = draw(
                st.one_of(
                    st.sampled_from(["post-id", "keepalive", "url_s", "Port", "hanset"]),
                    st.text(min_size=1, max_size=12),
                )
            )
            holder = _section(doc, f"{section}.{name}" if section else name)
            if holder is None or name in holder:
                continue
            holder[name] = draw(st.one_of(st.integers(), st.text(max_size=5)))
            mutated.append(f"{section}.{name}" if section else name)
        elif op == 8:  # a section that is not a table
            section = draw(st.sampled_from([s for s in SECTIONS if "[" not in s]))
            holder = _section(doc, section)
            if holder is None:
                continue
            holder[section.rpartition(".")[2]] = draw(
                st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2))
            )
            mutated.append(section)
        else:  # a handsets file with hostile content
            suffix = draw(st.sampled_from([".csv", ".toml"]))
            path = tmp / f"handsets{suffix}"
            path.write_bytes(draw(handsets_files(suffix)))
            holder = _section(doc, "radio.meshtastic.handsets_file")
            if holder is None:
                continue
            holder["handsets_file"] = str(path)
            handsets_file = str(path)
            mutated.append("radio.meshtastic.handsets_file")
    text = dump_toml(doc).encode("utf-8", "surrogatepass")
    damage = draw(st.integers(0, 9))
    if damage == 0:
        text = text[: draw(st.integers(0, len(text)))]
    elif damage == 1:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.binary(min_size=1, max_size=8)) + text[at:]
    elif damage == 2:
        text += b"\nx = " + b"[" * 5000 + b"]" * 5000 + b"\n"
    elif damage == 3:
        text += b'\n[node]\npost_id = "lagi"\n'  # a table defined twice
    try:
        text.decode("utf-8")
        damaged = damage <= 3
    except UnicodeDecodeError:  # a lone surrogate in a value: the file is not UTF-8 at all
        damaged = True
    return text, mutated, damaged, handsets_file


def handsets_files(suffix: str) -> st.SearchStrategy[bytes]:
    good = "id,officer,village\n!a1b2c3d4,Budi,Oebubun\n" if suffix == ".csv" else '[[handsets]]\nid = "!a1b2c3d4"\n'
    return st.one_of(
        st.just(good.encode()),
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.just(b"\xef\xbb\xbf" + good.encode()),
        st.just(b'id,officer\n!a1b2c3d4,"' + b"x" * 200_000 + b'"\n'),  # a field over csv's limit
        st.just(b"x = " + b"[" * 3000 + b"]" * 3000),
        st.just(("id\n" + "".join(f"!{i:08x}\n" for i in range(1, 3))).encode()),
        st.just(b"id,id\n!a1b2c3d4,!a1b2c3d4\n"),
        st.just(b"id,officer\n!a1b2c3d4,ab\x00c\n"),
    )


def case(
    tmp: Path, changes: dict[str, Any], *, tail: bytes = b"", handsets: bytes | None = None
) -> tuple[bytes, list[str], bool, str | None]:
    """An explicit document: the base with ``changes`` (dotted key → value), for regression examples."""
    doc = base_document(tmp)
    handsets_file = None
    if handsets is not None:
        path = tmp / "handsets.csv"
        path.write_bytes(handsets)
        changes = {**changes, "radio.meshtastic.handsets_file": str(path)}
        handsets_file = str(path)
    for key, value in changes.items():
        holder = _section(doc, key)
        assert holder is not None
        holder[key.rpartition(".")[2]] = value
    return dump_toml(doc).encode("utf-8") + tail, list(changes), bool(tail), handsets_file


def regression_cases(tmp: Path) -> list[tuple[bytes, list[str], bool, str | None]]:
    """Inputs that once escaped as something other than ConfigError (a traceback from `config check`)."""
    return [
        case(tmp, {"uplink.mqtt.urls": ["mqtt://[::1"]}),  # urlsplit: ValueError Invalid IPv6 URL
        case(tmp, {"metrics.listen": "127.0.0.1:²"}),  # "²".isdigit() but int("²") fails
        case(tmp, {"radio.meshtastic.host": "192.168.4.1:²"}),
        case(tmp, {"node.data_dir": str(tmp / "n\x00ul")}),  # mkdir: ValueError embedded null byte
        case(tmp, {}, tail=b"\nx = " + b"[" * 5000 + b"]" * 5000 + b"\n"),  # tomllib RecursionError
        case(tmp, {}, handsets=b'id,officer\n!a1b2c3d4,"' + b"x" * 200_000 + b'"\n'),  # csv.Error
        # not an escape, an oracle gap: the error names the file the key points at, not the key
        case(tmp, {"radio.meshtastic.handsets_file": str(tmp / "afile")}),
        # a key with a newline in it made `config check` print its error on two lines
        case(tmp, {"\n": 0}),
    ]


# ---------------------------------------------------------------------------------- what `config check` runs
def config_check(path: Path, *, center: bool) -> config_mod.Config:
    """cli/post.py cmd_config_check without the printing."""
    cfg = config_mod.load(path, require_post=not center)
    if not center:
        cli.check_data_dir(cfg)
        cfg = with_handsets_file(cfg)
    return cfg


def judge(path: Path, mutated: list[str], damaged: bool, handsets_file: str | None, center: bool) -> ConfigError | None:
    try:
        cfg = config_check(path, center=center)
    except ConfigError as exc:
        assert exc.key, f"a ConfigError without a key: {exc}"
        if not damaged:
            # an error inside a handsets file names that file and line, whether the case wrote the file or a
            # mutation pointed radio.meshtastic.handsets_file at another file of the test's directory
            in_file = (handsets_file and exc.key.startswith(handsets_file)) or (
                any(m.endswith("handsets_file") for m in mutated) and exc.key.startswith(str(path.parent))
            )
            named = any(related(exc.key, m) for m in mutated) or in_file
            assert named, f"{exc} names none of the mutated keys {mutated}"
        return exc
    assert isinstance(cfg, config_mod.Config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.node = config_mod.NodeConfig()  # type: ignore[misc]
    return None


def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=EXAMPLE_CAP, suppress_health_check=list(HealthCheck), database=None)


def _prepare(tmp: Path) -> None:
    (tmp / "afile").write_text("x\n", encoding="utf-8")


@pytest.mark.timeout(240)
def test_config_files_give_a_frozen_config_or_an_error_naming_the_key(
    tmp_path: Path, budget: Budget, reasons: Reasons
) -> None:
    _prepare(tmp_path)
    path = tmp_path / "siaga.toml"

    def check(case: tuple[bytes, list[str], bool, str | None], center: bool) -> None:
        reasons.examples += 1
        data, mutated, damaged, handsets_file = case
        path.write_bytes(data)
        exc = judge(path, mutated, damaged, handsets_file, center)
        if exc is None:
            reasons.accept("valid config")
        else:
            reasons.add(reason_of(exc, handsets_file))

    run = _settings(budget.pick(400, 5000))(given(documents(tmp_path), st.booleans())(check))
    for regression in regression_cases(tmp_path):
        run = example(regression, False)(run)
    run()

    print(reasons)
    reasons.assert_known(KNOWN)
    assert reasons.accepted["valid config"] >= 1, reasons
    assert reasons.counts["config"] >= 1 and sum(reasons.counts.values()) >= reasons.examples // 2, reasons


@pytest.mark.timeout(240)
def test_config_check_exits_78_with_one_line_naming_the_key(
    tmp_path: Path, budget: Budget, reasons: Reasons, run_siaga: Callable[..., Any]
) -> None:
    _prepare(tmp_path)
    path = tmp_path / "siaga.toml"

    def check(case: tuple[bytes, list[str], bool, str | None], center: bool) -> None:
        reasons.examples += 1
        data, mutated, damaged, handsets_file = case
        path.write_bytes(data)
        exc = judge(path, mutated, damaged, handsets_file, center)
        args = ["config", "check", *(["--center"] if center else [])]
        result = run_siaga(*args, config=path)
        assert "Traceback" not in result.stderr, result.stderr[-2000:]
        if exc is None:
            assert result.returncode == 0, (result.returncode, result.stderr)
            reasons.accept("exit 0")
            return
        assert result.returncode == 78, (result.returncode, result.stderr[-2000:])
        lines = result.stderr.strip("\n").split("\n")
        assert len(lines) == 1 and lines[0].startswith("config error: "), result.stderr[-2000:]
        assert exc.key in lines[0], (exc.key, lines[0])
        reasons.add(reason_of(exc, handsets_file))

    run = _settings(budget.pick(40, 300))(given(documents(tmp_path), st.booleans())(check))
    for regression in regression_cases(tmp_path):
        run = example(regression, False)(run)
    run()

    print(reasons)
    reasons.assert_known(KNOWN)
    assert sum(reasons.counts.values()) >= 1, reasons
