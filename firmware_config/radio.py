"""The only module of firmware_config that imports ``meshtastic``: the library's profile parsing, its
protobuf messages, channel URLs and the radio link (open, write, read back).  Everything leaves as our own
plain data (:class:`~firmware_config.profile.Profile` values, :class:`~firmware_config.check.DeviceState`,
:class:`~firmware_config.channel.ChannelSpec`) and every library failure as ``RadioError``/``ConfigError``.

Profiles are read exactly the way the ``meshtastic`` library 2.7 reads them for ``--configure``
(``yaml.safe_load``; top-level ``owner``, ``owner_short``, ``channel_url``, ``canned_messages``,
``ringtone``, ``location``, ``config``, ``module_config``; section and key names in snake_case or
camelCase; string values through ``meshtastic.util.fromStr``; enums by name).  The library silently
ignores a key it does not know (it prints and moves on); here every such key is a problem, because a typo
in ``channel_num`` would put a radio on an illegal frequency.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from google.protobuf.message import Message
from meshtastic.protobuf import (
    admin_pb2,
    apponly_pb2,
    channel_pb2,
    clientonly_pb2,
    config_pb2,
    localonly_pb2,
    portnums_pb2,
)
from meshtastic.util import camel_to_snake, flags_from_list, fromStr

from firmware_config.channel import ChannelPlan, ChannelSpec
from firmware_config.check import DeviceChannel, DeviceState
from firmware_config.profile import Problem, Profile, Setting
from siaga.errors import ConfigError, RadioError
from siaga.hostport import parse_host_port

logger = logging.getLogger(__name__)

_TOP_LEVEL_KEYS = {
    "owner": "long_name",
    "owner_short": "short_name",
    "ownerShort": "short_name",
    "channel_url": "channel_url",
    "channelUrl": "channel_url",
    "canned_messages": "canned_messages",
    "ringtone": "ringtone",
    "location": None,
    "config": None,
    "module_config": None,
}
# uint32 bitfields the library accepts as comma-separated flag names (meshtastic.__main__.BITFIELD_ENUMS).
_BITFIELD_ENUMS: Mapping[str, Any] = {
    "network.enabled_protocols": config_pb2.Config.NetworkConfig.ProtocolFlags,
    "position.position_flags": config_pb2.Config.PositionConfig.PositionFlags,
}
# Sections the library's Node.writeConfig can send; any other section would make it sys.exit.
_WRITABLE_SECTIONS = {
    "config": ("device", "position", "power", "network", "display", "lora", "bluetooth", "security"),
    "module_config": (
        "mqtt",
        "serial",
        "external_notification",
        "store_forward",
        "range_test",
        "telemetry",
        "canned_message",
        "audio",
        "remote_hardware",
        "neighbor_info",
        "detection_sensor",
        "ambient_lighting",
        "paxcounter",
        "traffic_management",
    ),
}


# --------------------------------------------------------------------------------------------------
# Protobuf messages ↔ plain values


def _is_repeated(fd: Any) -> bool:
    # protobuf ≥ 6.31 has is_repeated; older versions only the label (as meshtastic's _is_repeated_field).
    if hasattr(fd, "is_repeated"):
        return bool(fd.is_repeated)
    return bool(fd.label == fd.LABEL_REPEATED)


def _plain(fd: Any, value: Any) -> Any:
    if fd.enum_type is not None:
        ev = fd.enum_type.values_by_number.get(value)
        return ev.name if ev is not None else value
    if fd.message_type is not None:
        return to_values(value)
    return value


def to_values(msg: Message) -> dict[str, Any]:
    """Every field of ``msg`` (defaults included) as plain data: enums by name, repeated fields as lists."""
    out: dict[str, Any] = {}
    for fd in msg.DESCRIPTOR.fields:
        value = getattr(msg, fd.name)
        if _is_repeated(fd):
            out[fd.name] = [_plain(fd, v) for v in value]
        else:
            out[fd.name] = _plain(fd, value)
    return out


def _config_values(config: Message, modules: Message) -> dict[str, dict[str, Any]]:
    return {"config": to_values(config), "module_config": to_values(modules)}


# --------------------------------------------------------------------------------------------------
# Profiles (the library's --configure parsing)


def parse_document(name: str, path: Path, raw: Mapping[str, Any]) -> Profile:
    """A profile document → :class:`Profile`; what the library would drop becomes ``parse_problems``."""
    dp, settings, problems = _device_profile(name, raw)
    present = frozenset(
        f"{kind}.{fd.name}"
        for kind, root in (("config", dp.config), ("module_config", dp.module_config))
        for fd, _value in root.ListFields()
    )
    canned = tuple(dp.canned_messages.split("|")) if dp.canned_messages else ()
    return Profile(
        name=name,
        path=path,
        raw=raw,
        values=_config_values(dp.config, dp.module_config),
        present=present,
        settings=tuple(settings),
        parse_problems=tuple(problems),
        canned_messages=canned,
        canned_text=dp.canned_messages,
        long_name=dp.long_name,
        channel_url=dp.channel_url,
    )


def device_profile(profile: Profile) -> clientonly_pb2.DeviceProfile:
    """The library's ``DeviceProfile`` for a profile (the message ``meshtastic --configure`` would build)."""
    return _device_profile(profile.name, profile.raw)[0]


def _device_profile(
    name: str, raw: Mapping[str, Any]
) -> tuple[clientonly_pb2.DeviceProfile, list[Setting], list[Problem]]:
    problems: list[Problem] = []
    settings: list[Setting] = []
    dp = clientonly_pb2.DeviceProfile()

    for key, value in raw.items():
        if key not in _TOP_LEVEL_KEYS:
            problems.append(Problem(name, str(key), "kunci tingkat atas tidak dikenal (diabaikan oleh meshtastic)"))
            continue
        target = _TOP_LEVEL_KEYS[key]
        # meshtastic's _set_if_populated: str(value).strip(), empty means unset
        if target is not None and value is not None and str(value).strip():
            setattr(dp, target, str(value).strip())
    if raw.get("location"):
        loc = raw["location"]
        if not isinstance(loc, dict):
            problems.append(Problem(name, "location", "harus berupa mapping lat/lon/alt"))
        else:
            try:
                dp.fixed_position.latitude_i = round(float(loc.get("lat", 0) or 0) * 1e7)
                dp.fixed_position.longitude_i = round(float(loc.get("lon", 0) or 0) * 1e7)
                dp.fixed_position.altitude = int(loc.get("alt", 0) or 0)
            except (TypeError, ValueError):
                problems.append(Problem(name, "location", "lat/lon/alt harus berupa angka"))

    for kind, root in (("config", dp.config), ("module_config", dp.module_config)):
        sections = raw.get(kind)
        if sections is None:
            continue
        if not isinstance(sections, dict):
            problems.append(Problem(name, kind, "harus berupa mapping bagian → pengaturan"))
            continue
        for section, body in sections.items():
            snake = camel_to_snake(str(section))
            fd = root.DESCRIPTOR.fields_by_name.get(snake)
            if fd is None or fd.message_type is None:
                problems.append(Problem(name, f"{kind}.{section}", "bagian tidak dikenal di protobuf meshtastic"))
                continue
            if snake not in _WRITABLE_SECTIONS[kind]:
                problems.append(Problem(name, f"{kind}.{section}", "bagian ini tidak bisa ditulis oleh pustaka"))
                continue
            if not isinstance(body, dict):
                problems.append(Problem(name, f"{kind}.{section}", "harus berupa mapping kunci → nilai"))
                continue
            section_msg = getattr(root, snake)
            section_msg.SetInParent()
            for key, value in body.items():
                _assign(section_msg, str(key), value, (snake,), kind, name, problems, settings)
    return dp, settings, problems


def _assign(
    msg: Message,
    key: str,
    raw: Any,
    parent: tuple[str, ...],
    kind: str,
    name: str,
    problems: list[Problem],
    settings: list[Setting],
) -> None:
    """Set one YAML key on a protobuf message as meshtastic's setPref would, reporting what it would drop."""
    snake = camel_to_snake(key)
    path = (*parent, snake)
    dotted = f"{kind}." + ".".join(path)
    fd = msg.DESCRIPTOR.fields_by_name.get(snake)
    if fd is None:
        problems.append(Problem(name, dotted, "kunci tidak dikenal di protobuf meshtastic (akan diabaikan)"))
        return
    if fd.message_type is not None:
        if not isinstance(raw, dict):
            problems.append(Problem(name, dotted, "harus berupa mapping"))
            return
        sub = getattr(msg, snake)
        sub.SetInParent()
        for k, v in raw.items():
            _assign(sub, str(k), v, path, kind, name, problems, settings)
        return

    value = fromStr(raw) if isinstance(raw, str) else raw
    bitfield = _BITFIELD_ENUMS.get(".".join(path[-2:]))
    if bitfield is not None and isinstance(value, str):
        try:
            value = flags_from_list(bitfield, [p.strip() for p in value.split(",") if p.strip()])
        except ValueError as exc:
            problems.append(Problem(name, dotted, f"flag tidak dikenal: {exc}"))
            return
    if fd.enum_type is not None and not isinstance(value, list):
        if isinstance(value, str):
            ev = fd.enum_type.values_by_name.get(value)
            if ev is None:
                choices = ", ".join(sorted(fd.enum_type.values_by_name))
                problems.append(Problem(name, dotted, f"nilai enum {value!r} tidak ada (pilihan: {choices})"))
                return
            value = ev.number
        elif isinstance(value, bool) or not isinstance(value, int) or value not in fd.enum_type.values_by_number:
            problems.append(Problem(name, dotted, f"nilai enum {value!r} tidak ada"))
            return
    try:
        if _is_repeated(fd):
            items = value if isinstance(value, list) else [value]
            getattr(msg, snake)[:] = [fromStr(x) if isinstance(x, str) else x for x in items]
        else:
            if isinstance(value, float) and value.is_integer() and fd.cpp_type != fd.CPPTYPE_FLOAT:
                value = int(value)
            setattr(msg, snake, value)
    except (TypeError, ValueError) as exc:
        problems.append(Problem(name, dotted, f"tipe nilai salah ({type(raw).__name__}): {exc}"))
        return
    settings.append(Setting(kind, path))


# --------------------------------------------------------------------------------------------------
# Channels


def decode_channel_url(url: str) -> tuple[ChannelSpec, ...]:
    """Decode a ``https://meshtastic.org/e/#...`` URL the way Node.setURL does (without its sys.exit)."""
    parts = url.split("/#")
    if len(parts) < 2 or not parts[-1]:
        raise ConfigError("channel_url", url[:40], "is not a Meshtastic channel URL (https://meshtastic.org/e/#...)")
    b64 = parts[-1]
    b64 += "=" * (-len(b64) % 4)
    channel_set = apponly_pb2.ChannelSet()
    try:
        channel_set.ParseFromString(base64.urlsafe_b64decode(b64))
    except (binascii.Error, ValueError, Exception) as exc:  # protobuf raises DecodeError (an Exception)
        raise ConfigError("channel_url", url[:40], f"cannot be decoded: {exc}")
    if not channel_set.settings:
        raise ConfigError("channel_url", url[:40], "holds no channel settings")
    return tuple(
        ChannelSpec(s.name, bytes(s.psk), s.module_settings.position_precision, s.SerializeToString())
        for s in channel_set.settings
    )


def _channel_settings(spec: ChannelSpec) -> channel_pb2.ChannelSettings:
    out = channel_pb2.ChannelSettings()
    if spec.encoded:
        out.ParseFromString(spec.encoded)  # a URL channel keeps the fields we do not model
    out.name = spec.name
    out.psk = spec.psk
    out.module_settings.position_precision = spec.position_precision
    return out


def _device_channels(channels: Any) -> tuple[DeviceChannel, ...]:
    return tuple(
        DeviceChannel(i, channel_pb2.Channel.Role.Name(ch.role), ch.settings.name, bytes(ch.settings.psk))
        for i, ch in enumerate(channels or [])
    )


# --------------------------------------------------------------------------------------------------
# The radio link


def open_interface(port: str | None, host: str | None, timeout: int) -> Any:
    """Open the library's interface, turning every failure (including its sys.exit) into RadioError."""
    import meshtastic.mesh_interface
    import meshtastic.serial_interface
    import meshtastic.tcp_interface

    target = port or host or ""
    iface: Any
    try:
        if port:
            iface = meshtastic.serial_interface.SerialInterface(devPath=port, timeout=timeout)
        else:
            assert host is not None
            hostname, tcp_port = parse_host_port(host, "--host", default_port=4403)
            iface = meshtastic.tcp_interface.TCPInterface(hostname=hostname, portNumber=tcp_port, timeout=timeout)
        # The constructor can return before the reader thread has run _connected() (which sends the first
        # heartbeat); closing in that window makes the library log a BrokenPipe traceback. Let it finish.
        iface.isConnected.wait(5.0)
        time.sleep(0.1)
        return iface
    except SystemExit as exc:
        raise RadioError(f"pustaka meshtastic berhenti saat membuka {target}: {exc}")
    except (OSError, meshtastic.mesh_interface.MeshInterface.MeshInterfaceError) as exc:
        raise RadioError(f"tidak dapat terhubung ke radio di {target}: {exc}")
    except Exception as exc:  # serial/protobuf errors the library lets through
        raise RadioError(f"tidak dapat terhubung ke radio di {target}: {exc!r}")


def close(iface: Any) -> None:
    try:
        iface.close()
    except Exception as exc:  # closing a broken link must not hide the real error
        logger.debug("closing the interface failed: %r", exc)


def _library(call: Callable[[], Any], what: str) -> Any:
    try:
        return call()
    except SystemExit as exc:
        raise RadioError(f"pustaka meshtastic berhenti saat {what}: {exc}")
    except Exception as exc:
        raise RadioError(f"gagal {what}: {exc!r}")


def write(iface: Any, profile: Profile, plan: ChannelPlan, pause: float) -> None:
    """Write owner, canned messages, channels and every profile section in one settings transaction."""
    node = iface.localNode
    dp = device_profile(profile)

    def step(call: Callable[[], Any], what: str) -> None:
        _library(call, what)
        if pause:
            time.sleep(pause)

    if node.channels is None or not node.localConfig.ListFields():
        raise RadioError("radio tidak mengirim konfigurasi/kanal saat terhubung")
    step(node.beginSettingsTransaction, "membuka transaksi pengaturan")
    if dp.long_name or dp.short_name:
        step(
            lambda: node.setOwner(long_name=dp.long_name or None, short_name=dp.short_name or None),
            "menulis pemilik",
        )
    if dp.canned_messages:
        step(lambda: node.set_canned_message(dp.canned_messages), "menulis pesan siap pakai")
    if dp.ringtone:
        step(lambda: node.set_ringtone(dp.ringtone), "menulis nada dering")

    for index in range(8):
        ch = channel_pb2.Channel(index=index)
        if index < len(plan.settings):
            ch.role = channel_pb2.Channel.Role.PRIMARY if index == 0 else channel_pb2.Channel.Role.SECONDARY
            ch.settings.CopyFrom(_channel_settings(plan.settings[index]))
        else:
            # Leftover channels (often the public LongFast) are disabled: the device serves one private mesh.
            ch.role = channel_pb2.Channel.Role.DISABLED
        current = node.channels[index] if index < len(node.channels) else None
        if current is not None and current.SerializeToString() == ch.SerializeToString():
            continue
        while len(node.channels) <= index:
            node.channels.append(channel_pb2.Channel(index=len(node.channels)))
        node.channels[index] = ch
        step(functools.partial(node.writeChannel, index), f"menulis kanal {index}")

    for kind, local in (("config", node.localConfig), ("module_config", node.moduleConfig)):
        source = dp.config if kind == "config" else dp.module_config
        for section in profile.sections(kind):
            # Like --configure with its seed: the device's current section, then our values on top, so
            # settings the profile does not mention (and the device's own keys) are kept.
            merged = getattr(local, section)
            merged.MergeFrom(getattr(source, section))
            _overwrite_scalars(merged, getattr(source, section), profile, kind, section)
            step(functools.partial(node.writeConfig, section), f"menulis {kind}.{section}")

    if dp.HasField("fixed_position") and dp.config.position.fixed_position:
        pos = dp.fixed_position
        step(
            lambda: node.setFixedPosition(pos.latitude_i / 1e7, pos.longitude_i / 1e7, pos.altitude),
            "menulis posisi tetap",
        )
    step(node.commitSettingsTransaction, "menyimpan transaksi pengaturan")


def _overwrite_scalars(target: Message, source: Message, profile: Profile, kind: str, section: str) -> None:
    # MergeFrom skips proto3 scalars at their default (false, 0): a profile saying `enabled: false` must
    # still switch the device's value off, so every leaf the YAML names is copied explicitly.
    for setting in profile.settings:
        if setting.kind != kind or setting.path[0] != section:
            continue
        dst, src = target, source
        for part in setting.path[1:-1]:
            dst, src = getattr(dst, part), getattr(src, part)
        leaf = setting.path[-1]
        value = getattr(src, leaf)
        if _is_repeated(dst.DESCRIPTOR.fields_by_name[leaf]):
            getattr(dst, leaf)[:] = list(value)
        else:
            setattr(dst, leaf, value)


def _admin_get(iface: Any, request: admin_pb2.AdminMessage, timeout: float) -> admin_pb2.AdminMessage | None:
    """Send one admin get request to the local node and wait for its response with our own timeout."""
    done = threading.Event()
    box: list[admin_pb2.AdminMessage] = []

    def on_response(packet: dict[str, Any]) -> None:
        # Runs on the library's reader thread: store and signal only.
        raw = packet.get("decoded", {}).get("admin", {}).get("raw")
        if isinstance(raw, admin_pb2.AdminMessage):
            box.append(raw)
        done.set()

    _library(
        lambda: iface.sendData(
            request,
            iface.localNode.nodeNum,
            portNum=portnums_pb2.PortNum.ADMIN_APP,
            wantAck=True,
            wantResponse=True,
            onResponse=on_response,
        ),
        "meminta konfigurasi",
    )
    done.wait(timeout)
    return box[0] if box else None


def read_device(iface: Any, profile: Profile, read_timeout: float) -> DeviceState:
    """What the radio reports for the sections the profile sets (asked for if the handshake lacked them)."""
    node = iface.localNode
    config = localonly_pb2.LocalConfig()
    config.CopyFrom(node.localConfig)
    modules = localonly_pb2.LocalModuleConfig()
    modules.CopyFrom(node.moduleConfig)
    for kind, local in (("config", config), ("module_config", modules)):
        for section in profile.sections(kind):
            if not local.HasField(section):
                _fetch_section(iface, kind, section, local, read_timeout)
    canned = None
    if profile.canned_text:
        request = admin_pb2.AdminMessage(get_canned_message_module_messages_request=True)
        response = _admin_get(iface, request, read_timeout)
        if response is None:
            raise RadioError("perangkat tidak menjawab permintaan pesan siap pakai")
        canned = response.get_canned_message_module_messages_response
    return DeviceState(_config_values(config, modules), _device_channels(node.channels), canned, iface.getLongName())


def _fetch_section(iface: Any, kind: str, section: str, local: Message, timeout: float) -> None:
    request = admin_pb2.AdminMessage()
    if kind == "config":
        request.get_config_request = admin_pb2.AdminMessage.ConfigType.Value(section.upper() + "_CONFIG")
        response = _admin_get(iface, request, timeout)
        if response is not None and response.get_config_response.HasField(section):
            getattr(local, section).CopyFrom(getattr(response.get_config_response, section))
            return
    else:
        request.get_module_config_request = localonly_pb2.LocalModuleConfig.DESCRIPTOR.fields_by_name[section].index
        response = _admin_get(iface, request, timeout)
        if response is not None and response.get_module_config_response.HasField(section):
            getattr(local, section).CopyFrom(getattr(response.get_module_config_response, section))
            return
    raise RadioError(f"perangkat tidak mengirim {kind}.{section} untuk diverifikasi")
