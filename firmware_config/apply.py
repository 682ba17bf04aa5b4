"""Writing a profile and the private channel to a radio, and reading a radio back to check it.

The order of the work lives here; every library call is in :mod:`firmware_config.radio`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from firmware_config import radio
from firmware_config.channel import ChannelPlan, plan_channels
from firmware_config.check import CANNED_MAX_CHARS, DeviceState, check_device, check_profile, compare
from firmware_config.frequency import CHANNEL_NAME, Frequency, radio_frequency
from firmware_config.load import load_profile
from firmware_config.profile import Problem, Profile
from siaga.errors import ConfigError, RadioError
from siaga.hostport import parse_host_port

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyResult:
    role: str
    device: str
    frequency: Frequency
    channel_source: str
    psk_path: Path | None
    verified: int  # number of values read back and found equal


def channel_plan(
    channel_url: str | None = None,
    psk_file: str | os.PathLike[str] | None = None,
    channel_name: str = CHANNEL_NAME,
) -> ChannelPlan:
    """The private channel to write: from the URL (decoded by the boundary), else the key file."""
    url_channels = radio.decode_channel_url(channel_url) if channel_url else None
    return plan_channels(url_channels, psk_file, channel_name)


def _target(port: str | None, host: str | None) -> str:
    if bool(port) == bool(host):
        raise ConfigError("port/host", port or host or "", "give exactly one of --port (serial) or --host (TCP)")
    if port and not os.path.exists(port):
        raise RadioError(f"port serial {port} tidak ada (radio tercolok?)")
    if host:
        parse_host_port(host, "--host", default_port=4403)  # a typo is a usage error (78), not a radio fault
    return port or host or ""


def apply_profile(
    role: str,
    port: str | None = None,
    host: str | None = None,
    channel_url: str | None = None,
    psk_file: str | os.PathLike[str] | None = None,
    *,
    channel_name: str = CHANNEL_NAME,
    profile: Profile | None = None,
    pause: float = 0.5,
    connect_timeout: int = 60,
    reconnect_timeout: float = 90.0,
    read_timeout: float = 10.0,
    settle: float = 12.0,
) -> ApplyResult:
    """Write a profile and the private channel to a radio, then reconnect and verify every value.

    Exactly one of ``port`` (USB serial) or ``host`` (TCP, ``host[:port]``) is required.  The writes are
    one begin/commit edit-settings transaction, as ``meshtastic --configure`` does.  ``pause`` spaces the
    admin messages (the CLI does the same, 0.5 s) so a slow board is not overrun.  After the commit the
    firmware reboots within a few seconds: we disconnect, wait ``settle`` seconds, then verify over a
    new connection, retrying until ``reconnect_timeout``.
    Raises ConfigError (bad arguments, profile or key) or RadioError (link or verification failed).
    """
    device = _target(port, host)
    profile = profile or load_profile(role)
    problems = check_profile(profile, channel_name)
    if problems:
        raise ConfigError(f"profile {profile.name}", str(profile.path), "; ".join(str(p) for p in problems))
    if profile.canned_messages and len(profile.canned_text) > CANNED_MAX_CHARS:
        raise ConfigError("canned_messages", profile.canned_text, "exceeds 200 characters")
    plan = channel_plan(channel_url, psk_file, channel_name)
    freq = radio_frequency(profile.lora, plan.settings[0].name)

    iface = radio.open_interface(port, host, connect_timeout)
    try:
        radio.write(iface, profile, plan, pause)
    finally:
        radio.close(iface)
    # The firmware reboots a few seconds after the commit. We are disconnected by then (a TCP interface
    # left open would reconnect on its own thread and race our close), and verify only afterwards, so
    # the reboot cannot cut the read-back half way.
    time.sleep(settle)
    verified = verify(profile, plan, port, host, connect_timeout, reconnect_timeout, read_timeout)
    logger.info("applied profile %s to %s and verified %d values", profile.name, device, verified)
    return ApplyResult(profile.name, device, freq, plan.source, plan.psk_path, verified)


def _connect_with_retry(port: str | None, host: str | None, timeout: int, deadline: float) -> object:
    # Real firmware reboots after committing lora/device changes: the port vanishes or refuses for a while.
    while True:
        try:
            return radio.open_interface(port, host, timeout)
        except RadioError as exc:
            if time.monotonic() >= deadline:
                raise RadioError(f"radio tidak kembali setelah menyimpan pengaturan: {exc}")
            logger.info("radio not back yet (%s); retrying", exc)
            time.sleep(1.0)


def read_state(
    profile: Profile,
    port: str | None,
    host: str | None,
    connect_timeout: int,
    reconnect_timeout: float,
    read_timeout: float,
) -> DeviceState:
    """The radio's configuration over a fresh connection, read again from scratch if the link drops."""
    deadline = time.monotonic() + reconnect_timeout
    while True:
        if reconnect_timeout > 0:
            iface = _connect_with_retry(port, host, connect_timeout, deadline)
        else:
            iface = radio.open_interface(port, host, connect_timeout)
        try:
            return radio.read_device(iface, profile, read_timeout)
        except RadioError as exc:
            # A reboot that lands in the middle of the read drops the link: read again from scratch.
            if time.monotonic() >= deadline:
                raise
            logger.info("reading the configuration back failed (%s); retrying", exc)
        finally:
            radio.close(iface)


def verify(
    profile: Profile,
    plan: ChannelPlan,
    port: str | None,
    host: str | None,
    connect_timeout: int,
    reconnect_timeout: float,
    read_timeout: float,
) -> int:
    """Read the configuration back over a fresh connection and compare every value the profile sets."""
    state = read_state(profile, port, host, connect_timeout, reconnect_timeout, read_timeout)
    mismatches, checked = compare(profile, plan, state)
    if mismatches:
        raise RadioError("verifikasi gagal: " + "; ".join(mismatches))
    return checked


def check_radio(
    role: str,
    port: str | None = None,
    host: str | None = None,
    *,
    profile: Profile | None = None,
    connect_timeout: int = 60,
    read_timeout: float = 10.0,
) -> list[Problem]:
    """``siaga firmware check --port|--host``: why this radio is not fit for its role (empty: it is).

    Nothing is written.  Raises ConfigError (bad arguments) or RadioError (radio unreachable).
    """
    _target(port, host)
    profile = profile or load_profile(role)
    state = read_state(profile, port, host, connect_timeout, 0.0, read_timeout)
    return check_device(profile, state)
