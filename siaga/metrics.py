"""Opt-in Prometheus endpoint for the post and the center, on ``prometheus_client`` (the only module importing it).

Every value is read at scrape time from what the parts already keep (the store's queue, the radio's and
the uplink's event counts), so nothing is computed unless somebody scrapes.  What only grows is exposed as
a **counter** (``..._total``): a restart is then a counter reset that ``rate()`` and ``increase()`` handle,
where a gauge that drops to 0 reads as a huge negative rate.  Levels (connected, queue depth, an age) are
gauges.  The names are listed in docs/METRICS.md.  Serve it on localhost only.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from siaga.errors import ConfigError
from siaga.hostport import parse_host_port

log = logging.getLogger(__name__)

#: A reading: one value, values by the metric's label (e.g. {"pending": 3, "sent": 1}), or None (absent).
Reading = Callable[[], Mapping[str, float] | float | None]


@dataclass(frozen=True)
class _Metric:
    name: str
    help_text: str
    kind: str  # "counter" | "gauge"
    read: Reading
    label: str | None


class Registry:
    """The metrics of one process: :meth:`counter` and :meth:`gauge` register a reading under a name
    (``siaga_`` is put in front, ``_total`` after a counter's)."""

    def __init__(self, prefix: str = "siaga") -> None:
        self._prefix = prefix
        self._lock = threading.Lock()
        self._metrics: dict[str, _Metric] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def counter(self, name: str, help_text: str, read: Reading, *, label: str | None = None) -> None:
        """A count that only grows while the process runs (events since start)."""
        self._add(_Metric(name.removesuffix("_total"), help_text, "counter", read, label))

    def gauge(self, name: str, help_text: str, read: Reading, *, label: str | None = None) -> None:
        """A level that goes up and down."""
        self._add(_Metric(name, help_text, "gauge", read, label))

    def _add(self, metric: _Metric) -> None:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} registered twice")
            self._metrics[metric.name] = metric

    def render(self) -> str:
        """The text exposition format 0.0.4."""
        return generate_latest(self.registry).decode("utf-8")

    def families(self) -> Iterator[Metric]:
        with self._lock:
            metrics = list(self._metrics.values())
        for metric in metrics:
            full = f"{self._prefix}_{metric.name}"
            try:
                value = metric.read()
            except Exception:
                log.exception("metric %s failed", full)
                continue
            if value is None:
                continue
            labels = [metric.label] if metric.label else []
            family: CounterMetricFamily | GaugeMetricFamily
            if metric.kind == "counter":
                family = CounterMetricFamily(full, metric.help_text, labels=labels)
            else:
                family = GaugeMetricFamily(full, metric.help_text, labels=labels)
            if isinstance(value, Mapping):
                for key, number in sorted(value.items()):
                    family.add_metric([str(key)], float(number))
            elif not labels:
                family.add_metric([], float(value))
            yield family


class _Collector(Collector):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        return self._registry.families()


class MetricsServer:
    """``GET /metrics`` on ``listen`` (HOST:PORT, ``[::1]:PORT`` for IPv6) in a background thread."""

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
                self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
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
