"""``HOST:PORT`` as the configuration and the command line write it: the one parser.

Accepted: ``name:port``, ``192.168.4.1:port``, ``[::1]:port``, and — where the caller has a default port —
``name`` or ``[fe80::1]`` alone.  An IPv6 address must be in brackets: in ``fe80::1:4403`` nobody can tell
where the address ends.  Every refusal is a :class:`~siaga.errors.ConfigError` naming the key, so a bad
value in the TOML file exits 78 naming it.
"""

from __future__ import annotations

from siaga.errors import ConfigError


def parse_host_port(
    value: str,
    key: str,
    *,
    default_port: int | None = None,
    default_host: str | None = None,
    port_zero: bool = False,
) -> tuple[str, int]:
    """``value`` → ``(host, port)``; the host comes without brackets (what ``socket`` wants).

    ``default_port``: used when ``value`` has none (else a port is required).  ``default_host``: used for an
    empty host (``:8112``; else an empty host is an error).  ``port_zero``: a listening address may ask for
    any free port.
    """
    example = "[::1]:4403" if default_port is None else f"HOST, HOST:PORT or [::1]:{default_port}"
    usage = f"must be HOST:PORT (e.g. 127.0.0.1:{default_port or 4403} or {example})"
    text = value.strip() if isinstance(value, str) else ""
    if not text or any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ConfigError(key, value, usage)
    port_text: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(key, value, "has an unclosed [ (IPv6 addresses are written [::1]:4403)")
        host, rest = text[1:end], text[end + 1 :]
        if not host or ":" not in host:
            raise ConfigError(key, value, "brackets are for IPv6 addresses only (e.g. [::1]:4403)")
        if rest and not rest.startswith(":"):
            raise ConfigError(key, value, usage)
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        raise ConfigError(key, value, "an IPv6 address must be in brackets, e.g. [::1]:4403")
    else:
        host, sep, after = text.partition(":")
        port_text = after if sep else None
    if not host:
        if default_host is None:
            raise ConfigError(key, value, usage)
        host = default_host
    if port_text is None:
        if default_port is None:
            raise ConfigError(key, value, usage)
        return host, default_port
    # isascii: "²".isdigit() is true, but int() refuses it
    if not (port_text.isascii() and port_text.isdigit()):
        raise ConfigError(key, value, usage)
    port = int(port_text)
    if not (0 if port_zero else 1) <= port <= 65535:
        raise ConfigError(key, value, f"{usage}; port {port} is out of range ({0 if port_zero else 1}-65535)")
    return host, port
