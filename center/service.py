"""``siaga center run``: the center process — storage, the MQTT receiver, the reply outbox, and whatever
other components (the dashboard's web server) are mounted beside them.

Embedding: ``service = CenterService(cfg); service.start(); ...; service.stop()``.  ``service.storage`` is
the one :class:`~center.storage.CenterStorage`; ``service.send_reply`` queues and publishes a staff reply.
Other components run in the same process when the caller of :func:`run_center` passes their factories
(called with the started service; each returns an object with ``start()``/``stop()``): ``siaga center run``
(cli/center.py) passes the dashboard's web server, :func:`center.web.web_component`.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from types import FrameType
from typing import Any, Protocol

from center.relayed import RelayVerifier
from center.storage import CenterStorage, IncomingReport, Reply, open_storage
from siaga.config import Config
from siaga.errors import CenterError, ProtocolError, SyncError
from siaga.metrics import MetricsServer, Registry
from siaga.report import parse_time
from siaga.sdnotify import Notifier, Watchdog
from sync.protocol import CenterState
from sync.receiver import ReceivedBatch, Receiver

log = logging.getLogger(__name__)

#: Unpublished replies (the broker was down, or the CLI queued one) are retried this often.
OUTBOX_EVERY_S = 2.0


class Component(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


#: Makes a component run beside the receiver (e.g. the dashboard's web server), given the started service.
ComponentFactory = Callable[["CenterService"], Component]


class StorageSink:
    """Adapts :class:`CenterStorage` to what :class:`sync.receiver.Receiver` hands over."""

    def __init__(self, storage: CenterStorage) -> None:
        self._storage = storage

    def store_reports(self, batches: Sequence[ReceivedBatch]) -> None:
        """Every batch in one transaction (one fsync): a group commit when posts send faster than fsyncs."""
        self._storage.ingest(self.incoming(batches))

    @staticmethod
    def incoming(batches: Sequence[ReceivedBatch]) -> list[IncomingReport]:
        """The reports of ``batches`` as the storage takes them."""
        return [
            IncomingReport(
                report=w.report,
                post_id=item.post_id,
                received_at=item.received_at,
                age_s=w.age_s,
                age_source=w.age_source,
                post_sent_at=item.batch.sent_at,
                regency=item.regency,
                relay_prev=w.relay.prev if w.relay else None,
                relay_hops=w.relay.hops if w.relay else None,
            )
            for item in batches
            for w in item.batch.reports
        ]

    def store_status(
        self, regency: str, post_id: str, status: dict[str, Any], received_at: datetime, retained: bool
    ) -> None:
        self._storage.record_status(post_id, regency, status, received_at, retained=retained)

    def store_receiver_state(self, receiver_id: str, state: CenterState, received_at: datetime, retained: bool) -> None:
        self._storage.record_receiver_state(
            receiver_id,
            state.state,
            received_at,
            connected_at=state.at,
            session=None if state.at is None else ("resumed" if state.resumed else "new"),
            beat=parse_time(state.beat) if state.beat else None,
        )

    def store_reply_state(self, regency: str, post_id: str, event: dict[str, Any], received_at: datetime) -> None:
        reply = self._storage.get_reply(event["cmd_id"])
        if reply is None:
            raise ProtocolError("unknown_cmd", f"reply state for unknown cmd {event['cmd_id']}")
        if reply.post_id != post_id:
            raise ProtocolError("post_mismatch", f"post {post_id} reported on a reply sent via {reply.post_id}")
        self._storage.set_reply_state(event["cmd_id"], event["state"])


class CenterService:
    def __init__(self, cfg: Config, *, storage: CenterStorage | None = None, client_id: str | None = None) -> None:
        self.cfg = cfg
        self.storage = storage if storage is not None else open_storage(cfg.center.db)
        self._own_storage = storage is None
        mqtt = cfg.center.mqtt
        self.receiver: Receiver | None = None
        if mqtt:
            try:
                relay = RelayVerifier.from_config(cfg.center)
            except BaseException:
                if self._own_storage:
                    self.storage.close()
                raise
            self.receiver = Receiver(mqtt, StorageSink(self.storage), client_id=client_id, relay=relay)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._outbox: threading.Thread | None = None
        self._components: list[Component] = []

    def start(self) -> None:
        if self.receiver is not None:
            self.receiver.start()
            self._outbox = threading.Thread(target=self._run_outbox, name="siaga-outbox", daemon=True)
            self._outbox.start()
        else:
            log.warning("center.mqtt is not configured: no reports will be received")

    def mount(self, component: Component) -> None:
        """Start a component now and stop it (first) when the service stops."""
        component.start()
        self._components.append(component)

    def stop(self) -> None:
        for component in reversed(self._components):
            try:
                component.stop()
            except Exception:
                log.exception("stopping %r failed", component)
        self._components.clear()
        self._stop.set()
        self._wake.set()
        if self._outbox is not None:
            self._outbox.join(5)
            self._outbox = None
        if self.receiver is not None:
            self.receiver.stop()
        if self._own_storage:
            self.storage.close()

    def healthy(self) -> bool:
        return self.receiver is None or self.receiver.healthy()

    def state(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver.state() if self.receiver else None,
            "storage": self.storage.dialect,
            "counts": self.storage.counts(),
        }

    # ------------------------------------------------------------------ replies
    def send_reply(self, report_id: str, text: str, created_by: str) -> Reply:
        """Queue a reply for the handset that sent ``report_id`` and publish it now if connected."""
        reply = self.storage.create_reply(report_id, text, created_by)
        self._wake.set()
        return reply

    def _run_outbox(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(OUTBOX_EVERY_S)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._publish_queued()
            except Exception:
                log.exception("reply outbox failed")

    def _publish_queued(self) -> None:
        receiver = self.receiver
        if receiver is None or not receiver.connected:
            return
        for reply in self.storage.replies(state="queued"):
            try:
                receiver.publish_command(reply.regency, reply.post_id, reply.command())
            except SyncError as exc:
                log.info("reply %s stays queued: %s", reply.cmd_id, exc)
                return
            self.storage.set_reply_state(reply.cmd_id, "published")
            log.info("reply %s to %s published via post %s", reply.cmd_id, reply.to_node, reply.post_id)


def register_metrics(service: CenterService, registry: Registry) -> None:
    """The center's metrics, read at scrape time (docs/METRICS.md): event counts since start as counters,
    what the database holds and the connection as gauges."""

    def receiver_counts() -> dict[str, float]:
        receiver = service.receiver
        return {key: float(value) for key, value in receiver.counters.items()} if receiver else {}

    def rejections() -> dict[str, float]:
        receiver = service.receiver
        return {key: float(value) for key, value in receiver.rejects.items()} if receiver else {}

    # rows in the database (persist across restarts and may shrink): a level
    registry.gauge(
        "center_reports",
        "Reports stored at the center (distinct), copies received, posts and replies known",
        lambda: {k: float(v) for k, v in service.storage.counts().items()},
        label="kind",
    )
    registry.counter("center_receiver_events", "Receiver events since start, by kind", receiver_counts, label="kind")
    registry.counter("center_rejections", "Messages rejected since start, by reason", rejections, label="reason")
    registry.gauge(
        "center_receiver_connected",
        "1 while the receiver is connected to the broker",
        lambda: float(bool(service.receiver and service.receiver.connected)),
    )


def run_center(cfg: Config, *, components: Sequence[ComponentFactory] = ()) -> int:
    """Run until SIGTERM/SIGINT, with ``components`` mounted beside the receiver.  Returns the exit code."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    notifier = Notifier()
    service = CenterService(cfg)
    watchdog = Watchdog(notifier, lambda: {"receiver": service.healthy()})
    metrics: MetricsServer | None = None
    try:
        service.start()
        for factory in components:
            service.mount(factory(service))
        if cfg.metrics.listen:
            registry = Registry()
            register_metrics(service, registry)
            metrics = MetricsServer(registry, cfg.metrics.listen)
            metrics.start()
        log.info("center running: database %s, %d components", service.storage.dialect, len(components))
        notifier.ready(f"running, database {service.storage.dialect}")
        watchdog.start()
        while not stop.wait(5.0):
            if not service.healthy():
                log.error("center receiver is stuck; exiting so that systemd restarts it")
                return 1
    except CenterError as exc:
        log.error("center failed: %s", exc)
        return 1
    finally:
        notifier.stopping()
        watchdog.stop()
        if metrics is not None:
            metrics.stop()
        service.stop()
        log.info("center stopped")
    return 0
