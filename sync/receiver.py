"""The center's side of the wire protocol: receive, validate, hand to storage, acknowledge after the commit.

Subscriptions (protocol.center_subscriptions): reports and reply events through a shared subscription
(``$share/<group>/...``) so several receivers split the load; post status through a normal one, because
Mosquitto sends retained messages only to normal subscriptions.

Order for report batches: validate → ``sink.store_reports`` (one commit for every batch waiting, a group
commit under load) → publish each batch's ``ack`` (QoS 1) →
only then PUBACK the incoming message.  A receiver killed anywhere in between leaves the message unacked at
the broker (redelivered to the persistent session) or the post without an ack (it resends after its ack
timeout); either way the report is stored once, because storage is idempotent on ``report_id``.

Hostile or malformed payloads are counted under a short reason (``counters``), logged with a truncated
repr, acknowledged to the broker (so they are not redelivered) and otherwise ignored.  If the storage
fails, the message is NOT acknowledged: the receiver drops its connection and reconnects, and the broker
delivers the message again.

This module imports nothing from ``center/``: the center passes a :class:`ReceiverSink`.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from siaga.backoff import Attempts, Backoff
from siaga.config import CenterMqttConfig
from siaga.errors import ProtocolError, SiagaError, SyncError
from sync import protocol
from sync.mqtt import BrokerAddress, LinkDown, LinkMessage, LinkSubscribed, Message, MqttLink, Will, open_first

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Reconnect: 0.25 s, doubling to at most 2 s, each wait shortened at random by up to half.
RECONNECT = Backoff(0.25, 2.0, jitter=0.5)
SESSION_EXPIRY_S = 86400
#: Waiting for the SUBACK and the probe's round trip, the link is given up only after this long with
#: nothing at all from the broker (a SUBACK queued behind a backlog comes while the backlog flows).
SUBSCRIBE_SILENCE_S = 60.0


@dataclass(frozen=True, slots=True)
class Stop:
    """Wakes the receiver thread so it sees that it is stopping."""


#: What the receiver thread is told: what its link reports (sync/mqtt.py), or to stop.
ReceiverEvent = LinkMessage | LinkSubscribed | LinkDown | Stop


@dataclass(frozen=True, slots=True)
class ReceivedBatch:
    regency: str
    post_id: str
    batch: protocol.ReportBatch
    received_at: datetime
    #: carried reports refused after decoding (a tag that is not the origin's): acked as rejected to the
    #: carrier, counted under their own reason (not ``report_invalid``)
    relay_rejected: tuple[protocol.Rejected, ...] = ()


class RelayCheck(Protocol):
    """Verifies a report another post carried (``wire.relay`` set): returns it as the center stores it,
    or raises ProtocolError with a reason (``relay_tag``, ...).  The center's implementation is
    ``center.relayed.RelayVerifier``; without one, carried reports are refused as ``relay_unverifiable``."""

    def verify(self, carrier: str, wire: protocol.WireReport, received_at: datetime) -> protocol.WireReport: ...


#: Carried reports refused for a reason on the center's side (no secret configured): the carrier is told
#: nothing, so it keeps the report and sends it again after its ack timeout — never dropped for good over
#: a center's configuration.
RELAY_HELD_REASONS = frozenset({"relay_unverifiable"})
#: Between two warnings about carried reports the center cannot verify (each resend would log one).
UNVERIFIABLE_LOG_EVERY_S = 60.0


#: Report messages committed together at most (one transaction, one fsync) when they queue up.
GROUP_COMMIT_MAX = 64


class ReceiverSink(Protocol):
    """Where received messages go (the center's storage).  Returning means committed."""

    def store_reports(self, batches: Sequence[ReceivedBatch]) -> None: ...

    def store_status(
        self, regency: str, post_id: str, status: dict[str, Any], received_at: datetime, retained: bool
    ) -> None: ...

    def store_reply_state(self, regency: str, post_id: str, event: dict[str, Any], received_at: datetime) -> None: ...

    def store_receiver_state(
        self, receiver_id: str, state: protocol.CenterState, received_at: datetime, retained: bool
    ) -> None: ...


class Receiver:
    """One center receiver process's MQTT side.  ``start`` is non-blocking."""

    def __init__(
        self,
        settings: CenterMqttConfig,
        sink: ReceiverSink,
        *,
        client_id: str | None = None,
        backoff: Backoff = RECONNECT,
        relay: RelayCheck | None = None,
        heartbeat_s: float = protocol.RECEIVER_HEARTBEAT_S,
    ) -> None:
        self._settings = settings
        self._backoff = backoff
        self._sink = sink
        self._relay = relay
        self._unverifiable_logged = -UNVERIFIABLE_LOG_EVERY_S
        self._client_id = client_id or settings.client_id or f"siaga-center-{socket.gethostname()}"[:64]
        self._q: queue.Queue[ReceiverEvent] = queue.Queue()
        self._stopping = threading.Event()
        self._kick = threading.Event()
        self._thread: threading.Thread | None = None
        self._link: MqttLink | None = None
        self._ready = False
        self._session_present = False
        self._probe_seen_retained = False
        self._probe_nonce: str | None = None
        self._heartbeat_s = heartbeat_s
        self._online: tuple[datetime, bool] | None = None  # this connection's (at, resumed), once announced
        self._beat_mono = 0.0
        self._heard_mono = time.monotonic()
        self._tick = time.monotonic()
        self.counters: Counter[str] = Counter()
        self.rejects: Counter[str] = Counter()
        self.last_error: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="siaga-receiver", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._kick.set()
        self._q.put(Stop())
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def healthy(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and time.monotonic() - self._tick < 60

    @property
    def connected(self) -> bool:
        """Connected, subscribed and announced ``online``: posts' reports reach this receiver."""
        link = self._link
        return bool(link and link.connected and self._ready)

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected:
                return True
            time.sleep(0.02)
        return self.connected

    def state(self) -> dict[str, Any]:
        link = self._link
        return {
            "connected": self.connected,
            "broker": link.broker.url if link else None,
            "counters": dict(self.counters),
            "rejected_by_reason": dict(self.rejects),
            "last_error": self.last_error,
        }

    def publish_command(self, regency: str, post_id: str, command: dict[str, Any]) -> None:
        """Send a reply command to a post (QoS 1; its persistent session holds it while it is offline)."""
        link = self._link
        if link is None or not link.connected:
            raise SyncError("receiver is not connected to the broker")
        payload = protocol.encode_command(command, sent_at=datetime.now(UTC))
        link.publish(protocol.topic(regency, post_id, "cmd"), payload, qos=1)

    # ------------------------------------------------------------------ the receiver thread
    def _run(self) -> None:
        failures = Attempts(self._backoff)
        while not self._stopping.is_set():
            self._tick = time.monotonic()
            if self._link is None:
                if not self._connect():
                    self._kick.wait(failures.next_delay())
                    self._kick.clear()
                    continue
                failures.reset()
            if not self._ready and time.monotonic() - self._heard_mono > SUBSCRIBE_SILENCE_S:
                log.warning("receiver: no SUBACK or probe from the broker; reconnecting")
                self._drop("subscribe timeout")
                continue
            if self._ready and time.monotonic() - self._beat_mono >= self._heartbeat_s:
                self._announce()
            try:
                event = self._q.get(timeout=1.0)
            except queue.Empty:
                continue
            events = [event]
            while len(events) < GROUP_COMMIT_MAX:
                try:
                    events.append(self._q.get_nowait())
                except queue.Empty:
                    break
            try:
                self._apply_all(events)
            except Exception as exc:
                log.exception("receiver error: %s", exc)
                self.last_error = str(exc)[:200]
                self._drop("error")
        self._drop("stopping", polite=True)

    def _apply_all(self, events: list[ReceiverEvent]) -> None:
        """Report messages of the current link are committed together; everything else in order after."""
        reports: list[Message] = []
        rest: list[ReceiverEvent] = []
        link = self._link
        for event in events:
            if isinstance(event, LinkMessage) and event.link is link and event.message.topic.endswith("/report"):
                self._heard_mono = time.monotonic()
                reports.append(event.message)
            else:
                rest.append(event)
        if reports and link is not None:
            self._handle_report_messages(link, reports)
        for event in rest:
            self._apply(event)

    def _connect(self) -> bool:
        def make(broker: BrokerAddress) -> MqttLink:
            return MqttLink(
                self._settings,
                broker,
                client_id=self._client_id,
                handler=self,
                section="center.mqtt",
                # this receiver's own presence: its death says nothing about the other receivers
                will=Will(protocol.center_receiver_topic(self._client_id), protocol.encode_center_state("offline")),
                session_expiry_s=SESSION_EXPIRY_S,
                manual_ack=True,
                max_inflight=100,
            )

        try:
            link, session = open_first(self._settings.broker_urls, make, timeout=8.0)
        except SyncError as exc:
            self._note_error(str(exc))
            return False
        probe = protocol.center_probe_topic(self._client_id)
        try:
            subs = protocol.center_subscriptions(self._settings.regency, self._settings.share_group)
            # Always subscribe (the configured regency or group may have changed, and a present session may
            # lack our subscriptions).  The SUBACK may queue behind a backlog: it comes back as an event and
            # the backlog is handled meanwhile.  The probe topic (retain handling 1) tells whether the
            # subscriptions were really in a resumed session: see _on_probe.
            link.subscribe_async(
                [(t, 1) for t in subs] + [(probe, 1)],
                lambda refused: self._q.put(LinkSubscribed(link, tuple(refused))),
                retained_only_if_new={probe},
            )
        except SyncError as exc:
            link.abort()
            self._note_error(str(exc))
            return False
        self._link = link
        self._ready = False
        self._session_present = session
        self._probe_seen_retained = False
        self._probe_nonce = None
        self._heard_mono = time.monotonic()
        self.last_error = None
        self.counters["connects"] += 1
        log.info("receiver connected to %s (session %s)", link.broker.url, "present" if session else "new")
        return True

    def _on_suback(self, link: MqttLink, refused: tuple[str, ...]) -> None:
        if refused:
            log.error("receiver: broker refused our subscription to %s", ", ".join(refused))
            self.last_error = f"subscription refused: {', '.join(refused)}"
            self._drop("subscription refused")
            return
        # a round trip on our own probe topic: it arrives after any retained probe the SUBSCRIBE released
        self._probe_nonce = uuid.uuid4().hex
        link.publish(protocol.center_probe_topic(self._client_id), self._probe_nonce.encode(), qos=1)

    def _on_probe(self, link: MqttLink, message: Message) -> None:
        if message.retain:
            # sent only because the probe subscription did not exist (retain handling 1): whatever the
            # session flag said, the broker held no subscriptions of ours, and what posts published
            # meanwhile was dropped
            self._probe_seen_retained = True
            return
        if self._ready or self._probe_nonce is None or message.payload != self._probe_nonce.encode():
            return
        self._ready = True
        resumed = self._session_present and not self._probe_seen_retained
        # the marker the next connection's probe subscription may release (retained; tiny)
        link.publish(protocol.center_probe_topic(self._client_id), b"subscribed", qos=1, retain=True)
        self._online = (datetime.now(UTC), resumed)
        self._announce()
        log.info(
            "receiver subscribed on %s (session %s)",
            link.broker.url,
            "resumed" if resumed else ("present without our subscriptions" if self._session_present else "new"),
        )

    def _announce(self) -> None:
        """Publish this receiver's presence (retained): at subscribing, then every heartbeat_s."""
        link = self._link
        if link is None or self._online is None:
            return
        at, resumed = self._online
        self._beat_mono = time.monotonic()
        link.publish(
            protocol.center_receiver_topic(self._client_id),
            protocol.encode_center_state("online", at=at, resumed=resumed, beat=datetime.now(UTC)),
            qos=1,
            retain=True,
        )

    def _note_error(self, text: str) -> None:
        if text != self.last_error:
            log.warning("receiver: %s", text)
        self.last_error = text

    def _drop(self, reason: str, *, polite: bool = False) -> None:
        link, self._link = self._link, None
        self._ready = False
        self._online = None
        if link is None:
            return
        if polite:
            link.close(send_will=True)
        else:
            self.counters["disconnects"] += 1
            link.abort()

    def _apply(self, event: ReceiverEvent) -> None:
        if isinstance(event, LinkMessage):
            link, message = event.link, event.message
            if link is self._link:
                self._heard_mono = time.monotonic()
                if message.topic == protocol.center_probe_topic(self._client_id):
                    self._on_probe(link, message)
                    link.ack(message.mid, message.qos)
                else:
                    self._handle(link, message)
        elif isinstance(event, LinkSubscribed):
            if event.link is self._link:
                self._heard_mono = time.monotonic()
                self._on_suback(event.link, event.refused)
        elif isinstance(event, LinkDown) and event.link is self._link:
            log.warning("receiver: connection lost (%s)", event.reason)
            self._drop(event.reason)
        # Stop: nothing to apply; the loop sees _stopping

    def _handle_report_messages(self, link: MqttLink, messages: list[Message]) -> None:
        """Validate every message, commit all valid batches in one transaction, then ack each."""
        received_at = datetime.now(UTC)
        good: list[tuple[Message, ReceivedBatch]] = []
        for message in messages:
            try:
                regency, post_id, kind = protocol.parse_topic(message.topic)
                if kind != "report":
                    raise ProtocolError("topic", f"not a report topic: {message.topic[:100]!r}")
                batch = _decode(protocol.decode_report_batch, message.payload, post_id)
            except ProtocolError as exc:
                self._reject(message, exc)
                link.ack(message.mid, message.qos)
                continue
            good.append((message, self._check_carried(ReceivedBatch(regency, post_id, batch, received_at))))
        if not good:
            return
        try:
            batches = [item for _, item in good if item.batch.reports]
            if batches:
                self._sink.store_reports(batches)
            for _message, item in good:
                self._count_and_ack_reports(link, item)
        except SiagaError as exc:
            # storage (or an ack publish) failed: do NOT acknowledge; reconnect so the broker delivers again
            self.counters["handle_failures"] += 1
            log.error("receiver: could not store %d report messages: %s", len(good), exc)
            self.last_error = str(exc)[:200]
            self._drop("storage failure")
            return
        for message, _ in good:
            link.ack(message.mid, message.qos)

    def _count_and_ack_reports(self, link: MqttLink, item: ReceivedBatch) -> None:
        batch = item.batch
        self.counters["reports"] += len(batch.reports)
        self.counters["batches"] += 1
        for rejected in batch.rejected:
            self.rejects["report_invalid"] += 1
            log.warning("receiver: refused report %s from %s: %s", rejected.report_id, item.post_id, rejected.reason)
        if batch.unreadable:
            self.rejects["report_unreadable"] += batch.unreadable
        ids = [w.report.report_id for w in batch.reports]
        refused = [*batch.rejected, *item.relay_rejected]
        if ids or refused:
            topic = protocol.topic(item.regency, item.post_id, "ack")
            link.publish(topic, protocol.encode_ack(ids, refused, at=datetime.now(UTC)), qos=1)

    def _check_carried(self, item: ReceivedBatch) -> ReceivedBatch:
        checked, reasons, held = check_carried(item, self._relay)
        self.rejects.update(reasons)
        if held and time.monotonic() - self._unverifiable_logged >= UNVERIFIABLE_LOG_EVERY_S:
            self._unverifiable_logged = time.monotonic()
            log.warning(
                "receiver: %d reports carried by post %s were not verified and not acknowledged (the carrier "
                "keeps them and sends them again): %s",
                held,
                item.post_id,
                "set [center.relay] secret_file" if self._relay is None else "see the errors above",
            )
        return checked

    def _reject(self, message: Message, exc: ProtocolError) -> None:
        self.counters["rejected"] += 1
        self.rejects[exc.reason] += 1
        log.warning(
            "receiver: rejected message on %s (%s): %s; payload %s",
            message.topic[:100],
            exc.reason,
            exc.detail[:200],
            _preview(message.payload),
        )

    def _handle(self, link: MqttLink, message: Message) -> None:
        received_at = datetime.now(UTC)
        receiver_id = protocol.parse_center_receiver_topic(message.topic)
        try:
            if receiver_id is not None:
                if message.payload:  # empty: a cleared retained presence, nothing to record
                    state = _decode(protocol.decode_center_state, message.payload)
                    self._sink.store_receiver_state(receiver_id, state, received_at, message.retain)
                    self.counters["receiver_states"] += 1
                link.ack(message.mid, message.qos)
                return
            regency, post_id, kind = protocol.parse_topic(message.topic)
            if kind == "report":
                self._handle_report_messages(link, [message])
                return
            elif kind == "status":
                if message.payload:
                    status = _decode(protocol.decode_status, message.payload, post_id)
                    self._sink.store_status(regency, post_id, status, received_at, message.retain)
                    self.counters["status"] += 1
                else:  # an empty retained message clears a post's status: nothing to record, but counted
                    self.counters["status_cleared"] += 1
            elif kind == "event":
                event = _decode(protocol.decode_event, message.payload)
                self._sink.store_reply_state(regency, post_id, event, received_at)
                self.counters["events"] += 1
            else:
                raise ProtocolError("topic", f"not a topic the center reads: {message.topic[:100]!r}")
        except ProtocolError as exc:
            self._reject(message, exc)
        except SiagaError as exc:
            # storage (or the ack publish) failed: do NOT acknowledge; reconnect so the broker delivers it again
            self.counters["handle_failures"] += 1
            log.error("receiver: could not handle a message from %s: %s", message.topic[:100], exc)
            self.last_error = str(exc)[:200]
            self._drop("storage failure")
            return
        link.ack(message.mid, message.qos)

    # ------------------------------------------------------------------ LinkHandler (paho's thread)
    def on_message(self, link: MqttLink, message: Message) -> None:
        self._q.put(LinkMessage(link, message))

    def on_published(self, link: MqttLink, mid: int, ok: bool, reason: str) -> None:
        if not ok:
            self.counters["publish_refused"] += 1
            log.error("receiver: broker refused a publish: %s", reason)

    def on_disconnected(self, link: MqttLink, reason: str) -> None:
        self._q.put(LinkDown(link, reason))


def check_carried(item: ReceivedBatch, relay: RelayCheck | None) -> tuple[ReceivedBatch, Counter[str], int]:
    """Verify every report ``item``'s post carried for another one; keep only those that pass.

    Returns the batch to store and ack, the refusals by reason, and how many were held.  A refused report
    is acked as rejected to the carrier (so it stops sending that forgery), unless the refusal is the
    center's own doing (:data:`RELAY_HELD_REASONS`, or a bug in verifying): such a report is *held* — not
    acked at all, so the carrier keeps it and sends it again later."""
    batch = item.batch
    reasons: Counter[str] = Counter()
    if not any(w.relay is not None for w in batch.reports):
        return item, reasons, 0
    kept: list[protocol.WireReport] = []
    refused: list[protocol.Rejected] = []
    held = 0
    for wire in batch.reports:
        if wire.relay is None:
            kept.append(wire)
            continue
        try:
            if relay is None:
                raise ProtocolError("relay_unverifiable", "no [center.relay] secret_file is configured")
            kept.append(relay.verify(item.post_id, wire, item.received_at))
        except ProtocolError as exc:
            reasons[exc.reason] += 1
            if exc.reason in RELAY_HELD_REASONS:
                held += 1
                continue
            log.warning(
                "receiver: refused report %s of post %s carried by %s (%s): %s",
                wire.report_id,
                wire.report.post_id,
                item.post_id,
                exc.reason,
                exc.detail[:200],
            )
            refused.append(protocol.Rejected(wire.report_id, str(exc)[: protocol.REASON_MAX]))
        except Exception as exc:  # a bug in verifying, not bad input: the carrier keeps it and retries
            reasons["decoder_bug"] += 1
            held += 1
            log.error("receiver: verifying a carried report failed (a bug): %r", exc, exc_info=exc)
    checked = dataclasses.replace(
        item, batch=dataclasses.replace(batch, reports=kept), relay_rejected=(*item.relay_rejected, *refused)
    )
    return checked, reasons, held


def _decode(decoder: Callable[..., T], *args: Any) -> T:
    """``decoder(*args)``; anything but ProtocolError it raises is a bug in decoding, not bad input.

    Such a message is refused like bad input (``decoder_bug``, logged with the traceback) and so
    acknowledged: left unacknowledged, the broker would hand it back first at every reconnect and one
    message would stall the center for good (a poison message).  The post keeps a report until the
    center acks it, so nothing is lost."""
    try:
        return decoder(*args)
    except ProtocolError:
        raise
    except Exception as exc:
        log.error("receiver: the decoder failed on a message (a bug): %r", exc, exc_info=exc)
        raise ProtocolError("decoder_bug", f"{type(exc).__name__}: {exc}"[:200]) from exc


def _preview(payload: bytes, limit: int = 80) -> str:
    head = payload[:limit]
    return f"{head!r}{'...' if len(payload) > limit else ''} ({len(payload)} bytes)"
