"""Watch the kernel for network changes (a modem coming up, an address or a default route appearing).

A post's uplink may exist for only a few minutes at night; waiting for a reconnect timer to expire could
miss it.  The kernel announces every link, address and route change on a NETLINK_ROUTE socket, so the
uplink is told within milliseconds.  Link messages are filtered to real state changes (up/running/carrier)
because Wi-Fi drivers also send RTM_NEWLINK for scans and statistics.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE

RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
_NAMES = {
    RTM_NEWLINK: "link",
    RTM_DELLINK: "link-removed",
    RTM_NEWADDR: "address",
    RTM_DELADDR: "address-removed",
    RTM_NEWROUTE: "route",
    RTM_DELROUTE: "route-removed",
}
IFF_UP, IFF_RUNNING, IFF_LOWER_UP = 0x1, 0x40, 0x10000
_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")


class NetWatcher:
    """Calls ``on_change(kind)`` (on its own thread) after a burst of kernel network changes settles."""

    def __init__(self, on_change: Callable[[str], None], *, settle_s: float = 0.2) -> None:
        self._on_change = on_change
        self._settle_s = settle_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._link_flags: dict[int, int] = {}

    def start(self) -> bool:
        """Open the netlink socket and start watching; False (logged) where netlink is unavailable."""
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        except (OSError, AttributeError) as exc:
            log.warning("network change watch unavailable (%s); reconnecting on a timer only", exc)
            return False
        try:
            sock.bind((0, GROUPS))
        except OSError as exc:
            sock.close()
            log.warning("network change watch unavailable (%s); reconnecting on a timer only", exc)
            return False
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="siaga-netwatch", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        pending: str | None = None
        deadline = 0.0
        while not self._stop.is_set():
            timeout = max(0.0, deadline - time.monotonic()) if pending else 0.5
            try:
                ready, _, _ = select.select([sock], [], [], timeout)
            except (OSError, ValueError):
                return
            if ready:
                try:
                    data = sock.recv(65536)
                except OSError as exc:
                    # ENOBUFS: the kernel dropped messages for us; something changed, say so
                    log.debug("netlink receive: %s", exc)
                    data = b""
                    pending = pending or "overrun"
                    deadline = time.monotonic() + self._settle_s
                kind = self._interesting(data)
                if kind is not None:
                    pending = pending or kind
                    deadline = time.monotonic() + self._settle_s
            elif pending is not None and time.monotonic() >= deadline:
                kind, pending = pending, None
                log.info("network changed (%s)", kind)
                try:
                    self._on_change(kind)
                except Exception:
                    log.exception("network change handler failed")

    def _interesting(self, data: bytes) -> str | None:
        found: str | None = None
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, msg_type, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                break
            body = offset + _NLMSGHDR.size
            if msg_type in (RTM_NEWLINK, RTM_DELLINK) and body + _IFINFOMSG.size <= len(data):
                _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, body)
                state = flags & (IFF_UP | IFF_RUNNING | IFF_LOWER_UP) if msg_type == RTM_NEWLINK else -1
                if self._link_flags.get(index) != state:
                    self._link_flags[index] = state
                    found = found or _NAMES[msg_type]
            elif msg_type in _NAMES:
                found = found or _NAMES[msg_type]
            offset += (length + 3) & ~3
        return found
