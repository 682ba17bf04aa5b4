"""The scenario file format (JSON lines): validating steps and reading files.  Playing them is the device's."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshtastic.protobuf import config_pb2, mesh_pb2

from devkit.sim.state import DATA_PAYLOAD_LEN, parse_node_num
from siaga.errors import ConfigError

_ACTION_KEYS = (
    "node",
    "text",
    "position",
    "detection",
    "disconnect",
    "reboot",
    "garbage",
    "unplug",
    "drop_acks",
    "log",
    "clock",
)
_PACKET_KEYS = {
    "at", "from", "to", "text", "position", "detection", "hops", "hop_start", "copies", "copy_gap", "snr",
    "rssi", "channel", "id", "want_ack", "relay", "paths", "rx_time",
}  # fmt: skip
_STEP_KEYS = {
    "node": {"at", "node"},
    "disconnect": {"at", "disconnect", "refuse"},
    "reboot": {"at", "reboot"},
    "garbage": {"at", "garbage"},
    "unplug": {"at", "unplug"},
    "drop_acks": {"at", "drop_acks", "nak"},
    "log": {"at", "log"},
    "clock": {"at", "clock"},
}


@dataclass(frozen=True)
class ScenarioStep:
    at: float
    action: str
    data: dict[str, Any]
    line: int = 0


_ROUTING_ERRORS = frozenset(mesh_pb2.Routing.Error.keys())
_HW_MODELS = frozenset(mesh_pb2.HardwareModel.keys())
_ROLES = frozenset(config_pb2.Config.DeviceConfig.Role.keys())


def parse_step(obj: object, line: int = 0) -> ScenarioStep:
    """Validate one scenario object; ConfigError naming ``scenario:LINE.key`` when it is wrong."""
    where = f"scenario:{line}"
    if not isinstance(obj, dict):
        raise ConfigError(where, obj, "is not a JSON object")
    at = obj.get("at", 0)
    if isinstance(at, bool) or not isinstance(at, int | float) or at < 0:
        raise ConfigError(f"{where}.at", at, "must be a number of seconds >= 0")
    actions = [k for k in _ACTION_KEYS if k in obj]
    if len(actions) != 1:
        raise ConfigError(where, obj, f"needs exactly one of {', '.join(_ACTION_KEYS)}")
    action = actions[0]
    allowed = _PACKET_KEYS if action in ("text", "position", "detection") else _STEP_KEYS[action]
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", obj[unknown[0]], f"is not a known key for a {action} step")
    if action in ("text", "position", "detection"):
        parse_node_num(obj.get("from"), f"{where}.from")
        if action == "text" and not isinstance(obj["text"], str):
            raise ConfigError(f"{where}.text", obj["text"], "must be a string")
        if action == "text" and len(obj["text"].encode()) > DATA_PAYLOAD_LEN:
            raise ConfigError(f"{where}.text", obj["text"], f"is longer than {DATA_PAYLOAD_LEN} bytes")
        if action == "detection" and not isinstance(obj["detection"], str):
            raise ConfigError(f"{where}.detection", obj["detection"], "must be the sensor name")
        if action == "position":
            pos = obj["position"]
            if not isinstance(pos, dict) or not all(isinstance(pos.get(k), int | float) for k in ("lat", "lon")):
                raise ConfigError(f"{where}.position", pos, 'needs numeric "lat" and "lon"')
            if not (-90 <= pos["lat"] <= 90 and -180 <= pos["lon"] <= 180):
                raise ConfigError(f"{where}.position", pos, "is outside the globe")
        for key in ("hops", "copies", "channel", "hop_start"):
            if key in obj and (isinstance(obj[key], bool) or not isinstance(obj[key], int) or obj[key] < 0):
                raise ConfigError(f"{where}.{key}", obj[key], "must be an integer >= 0")
        if obj.get("hops", 0) > 7 or obj.get("hop_start", 0) > 7:
            raise ConfigError(f"{where}.hops", obj.get("hops"), "hop counts are 0-7 in Meshtastic")
        if obj.get("channel", 0) > 7:
            raise ConfigError(f"{where}.channel", obj["channel"], "channel index is 0-7")
        if "id" in obj and (not isinstance(obj["id"], int) or not 0 < obj["id"] <= 0xFFFFFFFF):
            raise ConfigError(f"{where}.id", obj["id"], "must be a packet id 1..0xffffffff")
        if "to" in obj and obj["to"] not in ("post", "^local", "^all"):
            parse_node_num(obj["to"], f"{where}.to")
        if "relay" in obj:
            parse_node_num(obj["relay"], f"{where}.relay")
        if "paths" in obj and (not isinstance(obj["paths"], list) or not obj["paths"]):
            raise ConfigError(f"{where}.paths", obj["paths"], "must be a non-empty list of hop objects")
    elif action == "node":
        node = obj["node"]
        if not isinstance(node, dict):
            raise ConfigError(f"{where}.node", node, "must be an object with id, long_name, short_name")
        parse_node_num(node.get("id"), f"{where}.node.id")
        if "hw_model" in node and node["hw_model"] not in _HW_MODELS:
            raise ConfigError(f"{where}.node.hw_model", node["hw_model"], "is not a Meshtastic HardwareModel")
        if "role" in node and node["role"] not in _ROLES:
            raise ConfigError(f"{where}.node.role", node["role"], "is not a Meshtastic device role")
    elif action in ("disconnect", "unplug", "garbage", "drop_acks"):
        value = obj[action]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{where}.{action}", value, "must be a number >= 0")
        if action == "drop_acks" and obj.get("nak") is not None and obj["nak"] not in _ROUTING_ERRORS:
            raise ConfigError(f"{where}.nak", obj["nak"], "is not a Routing.Error name like MAX_RETRANSMIT")
    elif action == "reboot":
        value = obj["reboot"]
        if not (value is True or (isinstance(value, int | float) and not isinstance(value, bool) and value >= 0)):
            raise ConfigError(f"{where}.reboot", value, "must be true or seconds of downtime")
    return ScenarioStep(at=float(at), action=action, data=dict(obj), line=line)


def load_scenario(path: str | Path) -> list[ScenarioStep]:
    """Read a JSON-lines scenario; blank lines and lines starting with ``#`` or ``//`` are skipped."""
    steps: list[ScenarioStep] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("scenario", str(path), f"cannot be read: {exc.strerror}") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "//")):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"scenario:{number}", line[:60], f"is not JSON: {exc.msg}") from None
        steps.append(parse_step(obj, number))
    return steps
