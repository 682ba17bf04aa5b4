"""The one exception root of Siaga Relay and its families.

Every error we raise on purpose derives from :class:`SiagaError`, so an entry point can catch ours
without swallowing programming errors.  Library exceptions (sqlite3, paho, meshtastic) are turned into
these in the module that owns that library.
"""

from __future__ import annotations


class SiagaError(Exception):
    """Root of every error Siaga Relay raises on purpose."""


class ConfigError(SiagaError):
    """The configuration is invalid; the process exits with code 78 (EX_CONFIG)."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        # a key is shown on one line whatever a hostile or mistyped file put in it (a newline, an escape)
        self.key = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(key))
        self.value = value
        self.reason = reason
        super().__init__(f"{self.key}: {_short_repr(value)} {reason}")


class ReportError(SiagaError):
    """A report (text, coordinates, fields) is not acceptable; nothing was stored."""


class StoreError(SiagaError):
    """The durable store could not complete an operation (disk full, read-only, damaged)."""


class RadioError(SiagaError):
    """The radio link (meshtastic library, serial port, TCP) failed."""


class SyncError(SiagaError):
    """The uplink to the center (MQTT) failed or a wire payload is invalid."""


class ProtocolError(SyncError):
    """A wire payload (MQTT message) is malformed or hostile; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class CenterError(SiagaError):
    """The 112 center (storage, web app) could not complete an operation."""


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConsoleError(SiagaError):
    """The post's operator console: cannot listen, or an account or login is refused (message safe to show)."""
