"""Time on air of what the post transmits into the mesh (Semtech AN1200.13), and the sizes it comes from.

Every message the post sends (receipts, staff replies) occupies a LoRa channel that the whole village shares,
and a handset or router can only hear one packet at a time: on LONG_FAST a 60-byte frame holds the channel
for ~0.7 s, and each relay hop airs it again.  The receipt texts in edge/receipts.py are therefore sized from
an airtime budget computed here, not from a byte count picked by eye.

What goes on air for a text (what the firmware builds from the client's ``sendText``):

* the 16-byte Meshtastic radio header (to, from, id, flags, channel hash, next hop, relay node);
* the encoded ``Data`` protobuf: ``portnum``, ``payload`` (the UTF-8 text) and ``bitfield`` (firmware 2.5+
  always sets it on packets it originates: ok_to_mqtt / want_response bits);
* a PKI-encrypted direct message (firmware 2.5+, both nodes know each other's key) carries 12 more bytes
  (8-byte MAC + 4-byte nonce): :data:`PKI_OVERHEAD_BYTES`.  Channel (AES-CTR) encryption adds none.

Only the ``meshtastic.protobuf`` schema is imported (to encode ``Data`` exactly as the firmware does), not the
library's interfaces: edge/radio.py remains the one module that talks to the library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from meshtastic.protobuf import mesh_pb2, portnums_pb2

#: The Meshtastic radio header in front of every encrypted ``Data`` (firmware RadioInterface.h).
MESH_HEADER_BYTES = 16
#: Firmware ``DATA_PAYLOAD_LEN`` (../shared/MESHTASTIC.md).  We hold the whole encoded ``Data`` (plus PKI's
#: extra where it applies) to it, which is stricter than the firmware's own bound (a 255-byte frame).
DATA_PAYLOAD_LEN = 233
#: A PKI-encrypted direct message costs this much more than a channel-encrypted one.
PKI_OVERHEAD_BYTES = 12


@dataclass(frozen=True, slots=True)
class Modem:
    """LoRa modulation settings that decide time on air."""

    name: str
    spreading_factor: int
    bandwidth_hz: float
    #: the coding rate's denominator: 5 for 4/5 … 8 for 4/8
    coding_rate: int
    preamble_symbols: int = 16
    explicit_header: bool = True
    crc: bool = True
    low_data_rate_optimize: bool = False

    @property
    def symbol_ms(self) -> float:
        return (2**self.spreading_factor) / self.bandwidth_hz * 1000.0


#: The default Meshtastic preset (and this project's): SF11, 250 kHz, 4/5, 16-symbol preamble.  The firmware
#: turns low-data-rate optimisation on only when a symbol lasts ≥ 16 ms; at SF11/250 kHz it lasts 8.2 ms.
LONG_FAST = Modem("LONG_FAST", spreading_factor=11, bandwidth_hz=250_000.0, coding_rate=5)


def time_on_air_ms(frame_bytes: int, modem: Modem = LONG_FAST) -> float:
    """Time on air of a LoRa frame of ``frame_bytes`` bytes (header included), in milliseconds (AN1200.13)."""
    if frame_bytes < 0:
        raise ValueError("frame_bytes must be >= 0")
    sf = modem.spreading_factor
    de = 1 if modem.low_data_rate_optimize else 0
    ih = 0 if modem.explicit_header else 1
    crc = 1 if modem.crc else 0
    numerator = 8 * frame_bytes - 4 * sf + 28 + 16 * crc - 20 * ih
    payload_symbols = 8 + max(math.ceil(numerator / (4 * (sf - 2 * de))) * modem.coding_rate, 0)
    preamble_ms = (modem.preamble_symbols + 4.25) * modem.symbol_ms
    return preamble_ms + payload_symbols * modem.symbol_ms


def text_data(text: str) -> bytes:
    """The encoded ``Data`` of a text message as the firmware airs it (see the module docstring)."""
    data = mesh_pb2.Data(portnum=portnums_pb2.PortNum.TEXT_MESSAGE_APP, payload=text.encode("utf-8"), bitfield=0)
    return data.SerializeToString()


def routing_ack_data() -> bytes:
    """The encoded ``Data`` of the ACK the post's radio returns for every want_ack packet addressed to it."""
    routing = mesh_pb2.Routing(error_reason=mesh_pb2.Routing.Error.NONE)
    data = mesh_pb2.Data(
        portnum=portnums_pb2.PortNum.ROUTING_APP,
        payload=routing.SerializeToString(),
        request_id=0xFFFFFFFF,  # fixed32: its size does not depend on the value
        bitfield=0,
    )
    return data.SerializeToString()


def frame_bytes(data: bytes, *, pki: bool = False) -> int:
    """Bytes on air for one encoded ``Data``: the radio header, the payload, and PKI's extra if used."""
    return MESH_HEADER_BYTES + len(data) + (PKI_OVERHEAD_BYTES if pki else 0)


def fits_one_packet(data: bytes, *, pki: bool = False) -> bool:
    return len(data) + (PKI_OVERHEAD_BYTES if pki else 0) <= DATA_PAYLOAD_LEN


def text_airtime_ms(text: str, modem: Modem = LONG_FAST, *, pki: bool = False) -> float:
    """Time on air of one text message the post sends."""
    return time_on_air_ms(frame_bytes(text_data(text), pki=pki), modem)


def max_text_bytes(budget_ms: float, modem: Modem = LONG_FAST, *, pki: bool = False) -> int:
    """The longest text (in UTF-8 bytes) that still airs within ``budget_ms`` in one packet."""
    best = 0
    for n in range(1, DATA_PAYLOAD_LEN + 1):
        data = text_data("x" * n)
        if not fits_one_packet(data, pki=pki) or time_on_air_ms(frame_bytes(data, pki=pki), modem) > budget_ms:
            break
        best = n
    return best
