"""Opt-in Prometheus text endpoint (exposition format 0.0.4) for the post and the center.

Counters and gauges are plain numbers behind a lock; gauges may be callables read at scrape time (queue
depth from the store), so nothing is computed unless somebody scrapes.  Serve it on localhost only.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from siaga.errors import ConfigError
from siaga.hostport import parse_host_port

log = logging.getLogger(__name__)

Labels = tuple[tuple[str, str], ...]
GaugeFn = Callable[[], Mapping[Labels, float] | float | None]


class Registry:
    def __init__(self, prefix: str = "siaga") -> None:
        self._prefix = prefix
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {}
        self._help: dict[str, tuple[str, str]] = {}
        self._gauges: dict[str, GaugeFn] = {}

    def counter(self, name: str, help_text: str) -> None:
        with self._lock:
            self._help[name] = ("counter", help_text)
            self._counters.setdefault(name, {})

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0.0) + amount

    def gauge(self, name: str, help_text: str, fn: GaugeFn) -> None:
        with self._lock:
            self._help[name] = ("gauge", help_text)
            self._gauges[name] = fn

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            counters = {name: dict(series) for name, series in self._counters.items()}
            gauges = dict(self._gauges)
            helps = dict(self._help)
        for name in sorted(set(counters) | set(gauges)):
            full = f"{self._prefix}_{name}"
            kind, help_text = helps.get(name, ("counter" if name in counters else "gauge", name))
            lines.append(f"# HELP {full} {help_text}")
            lines.append(f"# TYPE {full} {kind}")
            if name in counters:
                for labels, value in sorted(counters[name].items()):
                    lines.append(f"{full}{_labels(labels)} {_number(value)}")
                continue
            try:
                result = gauges[name]()
            except Exception:
                log.exception("metric %s failed", full)
                continue
            if result is None:
                continue
            if isinstance(result, int | float):
                lines.append(f"{full} {_number(result)}")
            else:
                for labels, value in sorted(result.items()):
                    lines.append(f"{full}{_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34)).replace(chr(10), " ")}"'
        for k, v in labels
    )
    return "{" + inner + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class MetricsServer:
    """``GET /metrics`` on ``listen`` (HOST:PORT) in a background thread."""

    def __init__(self, registry: Registry, listen: str) -> None:
        host, port = parse_host_port(listen, "metrics.listen", port_zero=True)
        registry_ref = registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = registry_ref.render().encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("metrics: " + format, *args)

        try:
            self._server = _server_class(host)((host, port), Handler)
        except OSError as exc:
            raise ConfigError("metrics.listen", listen, f"cannot be bound: {exc.strerror}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="siaga-metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _HTTPServer6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _server_class(host: str) -> type[ThreadingHTTPServer]:
    """``[::1]:9112`` listens on IPv6 (the standard library's server is IPv4 unless told)."""
    return _HTTPServer6 if ":" in host else ThreadingHTTPServer
