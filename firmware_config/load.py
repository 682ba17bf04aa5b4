"""Loading profiles: a file (or a shipped role's file) → :class:`~firmware_config.profile.Profile`.

The YAML is read by :mod:`firmware_config.profile`; its keys are parsed the library's way by the boundary,
:mod:`firmware_config.radio`.
"""

from __future__ import annotations

import os

from firmware_config import radio
from firmware_config.profile import ROLES, Profile, read_document


def load_profile(role_or_path: str | os.PathLike[str], role: str | None = None) -> Profile:
    """Parse a profile by role name (``handset``) or path, the way ``meshtastic --configure`` does.

    Unknown keys, bad enum names and wrong value types do not raise: they are collected as
    ``parse_problems`` so that :func:`firmware_config.check.check_profile` reports all of them at once.  An
    unreadable file, invalid YAML or a document that is not a mapping raises ``ConfigError``.
    """
    name, path, raw = read_document(role_or_path, role)
    return radio.parse_document(name, path, raw)


def load_shipped() -> list[Profile]:
    """The shipped profiles, one per role, in :data:`~firmware_config.profile.ROLES` order."""
    return [load_profile(role) for role in ROLES]
