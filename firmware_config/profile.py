"""The profile model: roles, the parsed :class:`Profile`, problems, reading a profile file (pure).

A profile is a YAML file for ``meshtastic --configure``.  This module reads the file and holds the result;
turning its keys into the library's protobuf values (and noticing the keys the library would silently drop)
is the boundary's job, :mod:`firmware_config.radio`, called by :mod:`firmware_config.load`.

``Profile.values`` is plain data: ``{"config": {section: {field: value}}, "module_config": {...}}`` with
every field of every section (proto3 defaults where the profile says nothing), enums by name, snake_case.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from firmware_config.frequency import Lora
from siaga.errors import ConfigError

PROFILE_DIR = Path(__file__).resolve().parent
ROLES = ("handset", "router", "gateway", "relay")
#: Device roles each profile may carry (``config.device.role``).
DEVICE_ROLES: Mapping[str, frozenset[str]] = {
    "handset": frozenset({"CLIENT"}),
    "router": frozenset({"ROUTER", "ROUTER_LATE"}),
    "gateway": frozenset({"CLIENT_BASE"}),
    # The hilltop relay Pi's radio (relay.yaml says why ROUTER_LATE; CLIENT_BASE is the other safe choice).
    "relay": frozenset({"ROUTER_LATE", "CLIENT_BASE"}),
}
#: Profiles whose radio hands our private port (PRIVATE_APP, custody: docs/RELAY.md) to a Pi.
CUSTODY_ROLES = frozenset({"gateway", "relay"})


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a profile; ``key`` is the dotted YAML path, ``message`` is for the operator."""

    profile: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.profile}: {self.key}: {self.message}"


@dataclass(frozen=True)
class Setting:
    """One leaf a profile sets: ``kind`` is "config" or "module_config", ``path`` its snake_case path."""

    kind: str
    path: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.kind}." + ".".join(self.path)


@dataclass(frozen=True)
class Profile:
    """A parsed profile: its values as plain data plus what we need to check, apply and verify it."""

    name: str  # the role the profile is for: handset, router, gateway, relay (or the file stem)
    path: Path
    raw: Mapping[str, Any]  # the YAML document as read (apply rebuilds the library's message from it)
    values: Mapping[str, Mapping[str, Any]]
    present: frozenset[str]  # sections the profile names, "config.lora" style
    settings: tuple[Setting, ...]
    parse_problems: tuple[Problem, ...]
    canned_messages: tuple[str, ...] = field(default=())
    canned_text: str = ""  # the "|"-joined string the module stores
    long_name: str = ""
    channel_url: str = ""

    @property
    def lora(self) -> Lora:
        return Lora.from_values(self.values["config"]["lora"])

    def get(self, key: str) -> Any:
        """A value by dotted key (``config.device.role``): the profile's, or the proto3 default."""
        return get_path(self.values, key.split("."))

    def has(self, section: str) -> bool:
        """Whether the profile names ``section`` (``config.bluetooth``), even without any key in it."""
        return section in self.present

    def sections(self, kind: str) -> list[str]:
        """Snake-case sections of ``kind`` the profile sets, in file order."""
        seen: list[str] = []
        for s in self.settings:
            if s.kind == kind and s.path[0] not in seen:
                seen.append(s.path[0])
        return seen


def get_path(values: Mapping[str, Any], path: list[str] | tuple[str, ...]) -> Any:
    value: Any = values
    for part in path:
        value = value[part]
    return value


def profile_path(role: str) -> Path:
    if role not in ROLES:
        raise ConfigError("role", role, f"must be one of {', '.join(ROLES)}")
    return PROFILE_DIR / f"{role}.yaml"


def read_document(role_or_path: str | os.PathLike[str], role: str | None = None) -> tuple[str, Path, dict[str, Any]]:
    """(profile name, path, YAML mapping) for a role name or a file; ConfigError if unreadable or no mapping."""
    if isinstance(role_or_path, str) and role_or_path in ROLES:
        path = profile_path(role_or_path)
        role = role or role_or_path
    else:
        path = Path(role_or_path)
    name = role or path.stem
    try:
        text = path.read_bytes().decode("utf-8")
        raw = yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError("profile", str(path), f"cannot be read: {exc.strerror or exc}")
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError("profile", str(path), f"is not valid UTF-8 YAML: {exc}")
    if not isinstance(raw, dict):
        raise ConfigError("profile", str(path), "must be a YAML mapping (owner, config, module_config, ...)")
    return name, path, raw
