"""Subcommands whose work lives in other modules: each registrar adds its parser and imports its module
lazily, so that ``siaga report`` on a Pi does not pay for importing the web app or the simulator.
Owners add a registrar here and append it to REGISTRARS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REGISTRARS: list[Callable[[Any], None]] = []
