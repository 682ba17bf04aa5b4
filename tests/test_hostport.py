"""siaga/hostport.py: the one HOST:PORT parser (config, radio, metrics, dashboard, simulator, firmware)."""

from __future__ import annotations

import pytest

from siaga.config import from_dict
from siaga.errors import ConfigError
from siaga.hostport import parse_host_port


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("192.168.4.1:4403", ("192.168.4.1", 4403)),
        ("meshtastic.local:4000", ("meshtastic.local", 4000)),
        ("meshtastic.local", ("meshtastic.local", 4403)),
        ("[::1]:4404", ("::1", 4404)),
        ("[fe80::1]", ("fe80::1", 4403)),
    ],
)
def test_accepted_with_a_default_port(value: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(value, "radio.meshtastic.host", default_port=4403) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "::1",
        "fe80::1:4403",
        "[::1",
        "[::1]x",
        "[host]:80",
        "host:",
        "host:http",
        "host:70000",
        "host:0",
        "host:²",
        "ho st:80",
        ":80",
    ],
)
def test_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_host_port(value, "radio.meshtastic.host", default_port=4403)
    assert info.value.key == "radio.meshtastic.host"


def test_listening_addresses() -> None:
    assert parse_host_port("127.0.0.1:0", "metrics.listen", port_zero=True) == ("127.0.0.1", 0)
    assert parse_host_port("[::]:9112", "metrics.listen", port_zero=True) == ("::", 9112)
    assert parse_host_port(":4403", "simulate.listen", default_host="0.0.0.0") == ("0.0.0.0", 4403)
    with pytest.raises(ConfigError, match=r"metrics\.listen"):
        parse_host_port("127.0.0.1", "metrics.listen", port_zero=True)  # a listening address needs its port


def test_the_config_accepts_bracketed_ipv6_and_names_the_key() -> None:
    cfg = from_dict(
        {
            "node": {"post_id": "p1"},
            "radio": {"meshtastic": {"host": "[::1]:4403"}},
            "metrics": {"listen": "[::1]:9112"},
        }
    )
    assert cfg.radio.meshtastic is not None and cfg.radio.meshtastic.host == "[::1]:4403"
    with pytest.raises(ConfigError) as info:
        from_dict({"node": {"post_id": "p1"}, "radio": {"meshtastic": {"host": "fe80::1:4403"}}})
    assert info.value.key == "radio.meshtastic.host"
    assert "brackets" in info.value.reason
