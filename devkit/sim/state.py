"""The simulated device's identity, channels, config and node DB, node ids, and the record of what was sent.

Firmware-facing constants shared by the other parts of the simulator live here too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from meshtastic.protobuf import (
    channel_pb2,
    config_pb2,
    localonly_pb2,
    mesh_pb2,
    module_config_pb2,
    portnums_pb2,
)

from siaga.errors import ConfigError

BROADCAST_NUM = 0xFFFFFFFF
#: want_config_id values the firmware (2.7) treats specially; the library sends 69420 for ``noNodes``.
NONCE_ONLY_CONFIG = 69420
NONCE_ONLY_NODES = 69421
#: The firmware's TX queue length reported in QueueStatus.maxlen.
TX_QUEUE_LEN = 16
#: Firmware rate limit for texts from the client: one per 2 s (PhoneAPI, NAK RATE_LIMIT_EXCEEDED).
TEXT_RATE_LIMIT_S = 2.0
#: Largest Data.payload the firmware sends (DATA_PAYLOAD_LEN).
DATA_PAYLOAD_LEN = 233
#: Firmware reboots this long after a config change outside an edit transaction, or after commit.
CONFIG_REBOOT_S = 7.0

PORT_TEXT = portnums_pb2.PortNum.TEXT_MESSAGE_APP
PORT_POSITION = portnums_pb2.PortNum.POSITION_APP
PORT_NODEINFO = portnums_pb2.PortNum.NODEINFO_APP
PORT_ROUTING = portnums_pb2.PortNum.ROUTING_APP
PORT_ADMIN = portnums_pb2.PortNum.ADMIN_APP
PORT_DETECTION = portnums_pb2.PortNum.DETECTION_SENSOR_APP

CONFIG_SECTIONS = ("device", "position", "power", "network", "display", "lora", "bluetooth", "security")
# ModuleConfig's fields are declared in the order of AdminMessage.ModuleConfigType, so the request
# index is the field index.
MODULE_SECTIONS = tuple(f.name for f in module_config_pb2.ModuleConfig.DESCRIPTOR.fields)


def parse_node_num(value: object, key: str = "node") -> int:
    """``"!a1b2c3d4"``, ``"0xa1b2c3d4"`` or an int → node number; ConfigError naming ``key`` otherwise."""
    if isinstance(value, bool):
        raise ConfigError(key, value, "is not a node id like !a1b2c3d4")
    if isinstance(value, int):
        num = value
    elif isinstance(value, str):
        text = value.strip().lower()
        text = text[1:] if text.startswith("!") else text[2:] if text.startswith("0x") else text
        try:
            num = int(text, 16)
        except ValueError:
            raise ConfigError(key, value, "is not a node id like !a1b2c3d4") from None
    else:
        raise ConfigError(key, value, "is not a node id like !a1b2c3d4")
    if not 0 < num < BROADCAST_NUM:
        raise ConfigError(key, value, "is outside 1..0xfffffffe")
    return num


def node_id(num: int) -> str:
    return f"!{num & 0xFFFFFFFF:08x}"


@dataclass
class SentPacket:
    """A packet the client sent into the mesh, with its outcome.

    ``acked``: True (ACK, or implicit ACK for broadcasts), False (no ACK ever came), ``"nak:REASON"``,
    or None (the packet did not ask for an ACK).
    """

    t: float
    id: int
    to: str
    channel: int
    portnum: str
    want_ack: bool
    hop_limit: int
    payload: bytes = field(repr=False)
    text: str | None = None
    acked: bool | str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "t": round(self.t, 3),
            "id": self.id,
            "to": self.to,
            "channel": self.channel,
            "portnum": self.portnum,
        }
        if self.text is not None:
            out["text"] = self.text
        else:
            out["payload_hex"] = self.payload.hex()
        out["want_ack"] = self.want_ack
        out["acked"] = self.acked
        return out


class DeviceState:
    """The device's identity, channels, config and node DB (protobufs), persisted as JSON with --state."""

    def __init__(self, node_num: int, long_name: str, short_name: str, rng: random.Random) -> None:
        self.node_num = node_num
        self.reboot_count = 0
        self.user = mesh_pb2.User(
            id=node_id(node_num),
            long_name=long_name,
            short_name=short_name,
            hw_model=mesh_pb2.HardwareModel.PORTDUINO,
        )
        self.position = mesh_pb2.Position()
        self.config = localonly_pb2.LocalConfig()
        self.module_config = localonly_pb2.LocalModuleConfig()
        self.channels: list[channel_pb2.Channel] = []
        self.canned_messages = ""
        self.ringtone = ""
        self.nodes: dict[int, mesh_pb2.NodeInfo] = {}
        self._defaults(rng)

    def _defaults(self, rng: random.Random) -> None:
        cfg = self.config
        cfg.device.role = config_pb2.Config.DeviceConfig.Role.CLIENT
        cfg.device.serial_enabled = True
        cfg.position.position_broadcast_secs = 900
        cfg.network.wifi_enabled = True
        cfg.display.screen_on_secs = 60
        lora = cfg.lora
        lora.use_preset = True
        lora.modem_preset = config_pb2.Config.LoRaConfig.ModemPreset.LONG_FAST
        lora.region = config_pb2.Config.LoRaConfig.RegionCode.SG_923
        lora.hop_limit = 3
        lora.tx_enabled = True
        # SG_923 starts at 917.0 MHz; LONG_FAST slots are 250 kHz wide: slot 20 is centred on
        # 921.875 MHz, inside Indonesia's 920-923 MHz band (the name-hashed default is not).
        lora.channel_num = 20
        cfg.bluetooth.enabled = False
        cfg.security.serial_enabled = True
        cfg.version = 24
        mc = self.module_config
        for section in MODULE_SECTIONS:
            if section in localonly_pb2.LocalModuleConfig.DESCRIPTOR.fields_by_name:
                getattr(mc, section).SetInParent()
        mc.detection_sensor.minimum_broadcast_secs = 15
        mc.version = 24
        self.channels = [channel_pb2.Channel(index=i, role=channel_pb2.Channel.Role.DISABLED) for i in range(8)]
        primary = self.channels[0]
        primary.role = channel_pb2.Channel.Role.PRIMARY
        primary.settings.name = "Siaga"
        # A private random key: the public default key ("AQ==") is never acceptable for this project.
        primary.settings.psk = bytes(rng.getrandbits(8) for _ in range(32))

    def hop_limit(self) -> int:
        return self.config.lora.hop_limit or 3

    def metadata(self) -> mesh_pb2.DeviceMetadata:
        return mesh_pb2.DeviceMetadata(
            firmware_version="2.7.11.sim",
            device_state_version=24,
            canShutdown=True,
            hasWifi=True,
            role=self.config.device.role,
            hw_model=self.user.hw_model,
            hasPKC=False,
        )

    def my_info(self) -> mesh_pb2.MyNodeInfo:
        return mesh_pb2.MyNodeInfo(
            my_node_num=self.node_num,
            reboot_count=self.reboot_count,
            min_app_version=30200,
            pio_env="siaga-sim",
            nodedb_count=len(self.nodes) + 1,
        )

    def own_node_info(self) -> mesh_pb2.NodeInfo:
        info = mesh_pb2.NodeInfo(num=self.node_num, user=self.user)
        if self.position.latitude_i or self.position.longitude_i:
            info.position.CopyFrom(self.position)
        return info

    def to_json(self) -> dict[str, Any]:
        def d(msg: Any) -> dict[str, Any]:
            return json_format.MessageToDict(msg, preserving_proto_field_name=True)

        return {
            "node_num": self.node_num,
            "reboot_count": self.reboot_count,
            "user": d(self.user),
            "position": d(self.position),
            "config": d(self.config),
            "module_config": d(self.module_config),
            "channels": [d(c) for c in self.channels],
            "canned_messages": self.canned_messages,
            "ringtone": self.ringtone,
            "nodes": [d(n) for n in self.nodes.values()],
        }

    def load_json(self, data: dict[str, Any]) -> None:
        self.node_num = int(data.get("node_num", self.node_num))
        self.reboot_count = int(data.get("reboot_count", 0))
        json_format.ParseDict(data.get("user", {}), self.user)
        json_format.ParseDict(data.get("position", {}), self.position)
        self.config.Clear()
        json_format.ParseDict(data.get("config", {}), self.config)
        self.module_config.Clear()
        json_format.ParseDict(data.get("module_config", {}), self.module_config)
        if data.get("channels"):
            self.channels = [json_format.ParseDict(c, channel_pb2.Channel()) for c in data["channels"]]
        self.canned_messages = str(data.get("canned_messages", ""))
        self.ringtone = str(data.get("ringtone", ""))
        self.nodes = {}
        for n in data.get("nodes", []):
            info = json_format.ParseDict(n, mesh_pb2.NodeInfo())
            self.nodes[info.num] = info
