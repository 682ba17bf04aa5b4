"""Reports another post carried to the center (docs/RELAY.md, "To the center"): verify, then take them.

A post with no uplink hands its reports over the mesh, post to post, until one with an uplink publishes
them on *its own* topic with the origin's relay packet beside each (``sync.protocol.RelayCarry``).  The
carrier cannot be trusted with the report: only the packet, tagged with the origin post's own key, is.  So
the center

* derives the origin's key from the regency relay secret (``[center.relay] secret_file``) and the packet's
  key epoch (:func:`sync.compact.derive_post_key`; no key table),
* verifies the tag — a mismatch is refused with reason ``relay_tag``, for that carrier only: nothing is
  remembered against the report id, so the genuine report still gets in by another path,
* takes every field of the report from the packet (:func:`sync.compact.to_report`), never from the JSON
  body the carrier wrote, and
* dates it ``received_at − wire age − packet transit_s − packet age_s``: the carrier's hold (the wire's
  ``age_s``), the hops before it (``transit_s``, mutable, unsigned) and the origin's own age (signed).
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime

from siaga.config import CenterConfig
from siaga.errors import ProtocolError
from siaga.keyfile import read_hex_key
from sync import compact
from sync.protocol import WireReport

log = logging.getLogger(__name__)

SECRET_KEY = "center.relay.secret_file"


class RelayVerifier:
    """Verifies carried reports with keys derived from the regency relay secret (kept in memory only)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the regency relay secret must be at least 32 bytes")
        self._secret = secret
        # one HKDF per (post, epoch), not per report: a busy carrier delivers many of one origin
        self._key = functools.lru_cache(maxsize=4096)(self._derive)

    def __repr__(self) -> str:  # never the secret, in a log or a traceback
        return "RelayVerifier(<secret>)"

    @classmethod
    def from_config(cls, center: CenterConfig) -> RelayVerifier | None:
        """The verifier of ``[center.relay]``, or None (and a warning) when no secret is configured.
        A bad secret file is a ConfigError naming the key (exit 78)."""
        if center.relay is None or center.relay.secret_file is None:
            log.warning(
                "center.relay.secret_file is not set: reports carried by another post cannot be verified and "
                "are refused (relay_unverifiable); they stay with their carrier until the secret is configured"
            )
            return None
        return cls(read_hex_key(center.relay.secret_file, SECRET_KEY))

    def _derive(self, post_id: str, epoch: int) -> bytes:
        return compact.derive_post_key(self._secret, post_id, epoch)

    def verify(self, carrier: str, wire: WireReport, received_at: datetime) -> WireReport:
        """``wire`` with its report rebuilt from the verified packet and its age counted from the
        observation; ProtocolError ``relay_tag`` for a packet the origin did not tag (or one altered since),
        ``relay_report`` for a tagged packet that is not a valid report."""
        relay = wire.relay
        if relay is None:
            return wire
        packet = relay.parsed
        origin = packet.report.post_id
        try:
            verified = compact.verify_report(packet, self._key(origin, packet.key_epoch))
        except ProtocolError as exc:
            raise ProtocolError(
                "relay_tag", f"carried by {carrier} via {relay.prev}: not tagged by post {origin!r} ({exc.detail})"
            ) from None
        try:
            report = compact.to_report(verified)
        except ProtocolError as exc:
            raise ProtocolError("relay_report", f"carried report of {origin!r} is not valid: {exc.detail}") from None
        age_s, age_source = carried_age(verified, wire.age_s, wire.age_source)
        return WireReport(report, age_s, age_source, relay)


def carried_age(packet: compact.ReportPacket, wire_age_s: float, wire_age_source: str) -> tuple[float, str]:
    """Seconds from the observation to the carrier's send: the carrier's own hold (the wire's ``age_s``)
    + the carriers' hold before it (``transit_s``) + the origin's age at its send (``age_s``).  "wall" when
    any of them was timed by a wall clock (a reboot on the way)."""
    age, source = compact.total_age(packet, held_s=wire_age_s)
    return age, "wall" if wire_age_source == "wall" else source
