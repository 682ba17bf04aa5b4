"""Admin emulation: what the device does with ADMIN_APP messages from its client to the local node.

Enough for ``meshtastic --configure FILE.yaml``, ``--set``, ``--seturl`` and reading config back through
the library (docs/SIMULATOR.md, Admin).  Like firmware, a config change outside an edit transaction, or
``commit_edit_settings``, reboots the device a few seconds later.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from meshtastic.protobuf import admin_pb2, config_pb2, mesh_pb2

from devkit.sim.links import Link
from devkit.sim.state import CONFIG_REBOOT_S, CONFIG_SECTIONS, MODULE_SECTIONS, PORT_ADMIN, DeviceState

if TYPE_CHECKING:
    from devkit.sim.device import SimulatedDevice

log = logging.getLogger(__name__)

_LOCAL_CONFIG_FIELDS = tuple(f.name for f in config_pb2.Config.DESCRIPTOR.fields)


def handle_admin(dev: SimulatedDevice, link: Link, pkt: mesh_pb2.MeshPacket) -> None:
    """Answer one admin message from the client (loop thread)."""
    st = dev.state
    req = admin_pb2.AdminMessage()
    try:
        req.ParseFromString(pkt.decoded.payload)
    except Exception as exc:
        dev.stats["bad_admin"] += 1
        log.warning("undecodable admin message: %s", exc)
        dev._routing_reply(pkt.id, "BAD_REQUEST", st.node_num)
        return
    variant = req.WhichOneof("payload_variant")
    dev.stats[f"admin_{variant}"] += 1
    log.info("admin %s", variant)
    resp: admin_pb2.AdminMessage | None = None
    changed = False
    reboot = False
    if variant == "get_config_request":
        resp = admin_pb2.AdminMessage()
        index = req.get_config_request
        name = _LOCAL_CONFIG_FIELDS[index] if index < len(_LOCAL_CONFIG_FIELDS) else ""
        if name in CONFIG_SECTIONS:
            getattr(resp.get_config_response, name).CopyFrom(getattr(st.config, name))
        elif name:
            getattr(resp.get_config_response, name).SetInParent()
    elif variant == "set_config":
        name = req.set_config.WhichOneof("payload_variant")
        if name in CONFIG_SECTIONS:
            getattr(st.config, name).CopyFrom(getattr(req.set_config, name))
            changed = reboot = True
    elif variant == "get_module_config_request":
        resp = admin_pb2.AdminMessage()
        index = req.get_module_config_request
        if index < len(MODULE_SECTIONS):
            name = MODULE_SECTIONS[index]
            src = getattr(st.module_config, name, None)
            if src is not None:
                getattr(resp.get_module_config_response, name).CopyFrom(src)
            else:
                getattr(resp.get_module_config_response, name).SetInParent()
    elif variant == "set_module_config":
        name = req.set_module_config.WhichOneof("payload_variant")
        if name and hasattr(st.module_config, name):
            getattr(st.module_config, name).CopyFrom(getattr(req.set_module_config, name))
            changed = reboot = True
    elif variant == "get_channel_request":
        index = req.get_channel_request - 1
        if 0 <= index < len(st.channels):
            resp = admin_pb2.AdminMessage()
            resp.get_channel_response.CopyFrom(st.channels[index])
        else:
            dev._routing_reply(pkt.id, "BAD_REQUEST", st.node_num)
            return
    elif variant == "set_channel":
        ch = req.set_channel
        if 0 <= ch.index < len(st.channels):
            st.channels[ch.index].CopyFrom(ch)
            changed = True
    elif variant == "get_owner_request":
        resp = admin_pb2.AdminMessage()
        resp.get_owner_response.CopyFrom(st.user)
    elif variant == "set_owner":
        owner = req.set_owner
        if owner.long_name:
            st.user.long_name = owner.long_name
        if owner.short_name:
            st.user.short_name = owner.short_name
        st.user.is_licensed = owner.is_licensed
        if owner.HasField("is_unmessagable"):
            st.user.is_unmessagable = owner.is_unmessagable
        changed = True
    elif variant == "begin_edit_settings":
        dev._edit_transaction = True
    elif variant == "commit_edit_settings":
        dev._edit_transaction = False
        changed = reboot = True
    elif variant == "set_canned_message_module_messages":
        st.canned_messages = req.set_canned_message_module_messages
        changed = True
    elif variant == "get_canned_message_module_messages_request":
        resp = admin_pb2.AdminMessage(get_canned_message_module_messages_response=st.canned_messages)
    elif variant == "set_ringtone_message":
        st.ringtone = req.set_ringtone_message
        changed = True
    elif variant == "get_ringtone_request":
        resp = admin_pb2.AdminMessage(get_ringtone_response=st.ringtone)
    elif variant == "get_device_metadata_request":
        resp = admin_pb2.AdminMessage()
        resp.get_device_metadata_response.CopyFrom(st.metadata())
    elif variant == "set_fixed_position":
        st.position.CopyFrom(req.set_fixed_position)
        st.config.position.fixed_position = True
        changed = True
    elif variant == "remove_fixed_position":
        st.position.Clear()
        st.config.position.fixed_position = False
        changed = True
    elif variant == "set_time_only":
        dev.has_clock = True
    elif variant in ("reboot_seconds", "shutdown_seconds"):
        secs = max(0, getattr(req, variant))
        dev._call_later(secs / dev.speed, lambda: dev._reboot(2.0))
    elif variant == "nodedb_reset":
        st.nodes.clear()
        changed = True
    elif variant == "remove_by_nodenum":
        st.nodes.pop(req.remove_by_nodenum, None)
        changed = True
    elif variant in ("factory_reset_config", "factory_reset_device"):
        fresh = DeviceState(st.node_num, st.user.long_name, st.user.short_name, dev._rng)
        fresh.reboot_count = st.reboot_count
        dev.state = fresh
        changed = reboot = True
    else:
        log.info("admin %s is not simulated; acknowledged and ignored", variant)
    if resp is not None:
        resp.session_passkey = session_passkey(dev)
        out = mesh_pb2.MeshPacket()
        setattr(out, "from", st.node_num)
        out.to = st.node_num
        out.id = dev._new_id()
        out.channel = pkt.channel
        out.decoded.portnum = PORT_ADMIN
        out.decoded.payload = resp.SerializeToString()
        out.decoded.request_id = pkt.id
        dev._send_fromradio(link, mesh_pb2.FromRadio(packet=out))
    elif pkt.want_ack:
        dev._routing_reply(pkt.id, "NONE", st.node_num)
    if changed:
        dev._save_state()
    if reboot and dev.reboot_on_config and not dev._edit_transaction:
        # Firmware saves and reboots a few seconds after a config change (or a commit).
        dev._call_later(CONFIG_REBOOT_S / dev.speed, lambda: dev._reboot(2.0))


def session_passkey(dev: SimulatedDevice) -> bytes:
    # Carried in admin responses as firmware does; never checked here.
    if not dev._passkey:
        dev._passkey = bytes(dev._rng.getrandbits(8) for _ in range(8))
    return dev._passkey
