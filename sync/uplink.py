"""The post's uplink: drain the durable store to the center over MQTT and learn what the center committed.

One drain thread owns the connection and the store's drain bookkeeping (docs/RELIABILITY.md, "Sync"):

* claim pending reports (life-safety first) → pack them into batches (≤ ``batch_max_bytes``) → publish at
  QoS 1 with up to ``inflight`` batches unacknowledged by the broker (a pipeline, not stop-and-wait);
* PUBACK → ``mark_sent`` (the broker has them); the center's ``ack`` → ``store.ack`` → ``delivered`` and
  :meth:`UplinkEvents.on_delivered`; a ``sent`` report the center never acknowledges returns to
  ``pending`` after ``ack_timeout_s`` and is sent again (the center stores it once);
* a lost connection releases every claim at once; reconnect with a backoff capped at 2 s (:data:`RECONNECT`),
  broker URLs tried in order, and immediately when the kernel reports a network change (:mod:`sync.netwatch`);
  while connected, a network change triggers an end-to-end probe.

The uplink's periodic work — :meth:`Uplink.heartbeat` (retained ``status``; Last Will ``offline``) and
:meth:`Uplink.release_stale` — is run by its owner's scheduler: the post's one APScheduler table
(edge/jobs.py), which the test harness runs too (devkit/harness/synctools.py).  Messages from the broker
are acknowledged (PUBACK) only after they were handled, so a crash never loses an ack or a command.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from typing import Any, Protocol

from siaga.backoff import Attempts, Backoff
from siaga.clock import Clock
from siaga.config import Config, UplinkMqttConfig
from siaga.errors import ConfigError, ProtocolError, SiagaError, SyncError
from siaga.report import format_time
from sync import protocol
from sync.mqtt import (
    BrokerAddress,
    LinkDown,
    LinkMessage,
    LinkPublished,
    LinkSubscribed,
    Message,
    MqttLink,
    Will,
    open_first,
    tcp_reachable,
)
from sync.netwatch import NetWatcher
from sync.queue import ReportQueue

log = logging.getLogger(__name__)

#: Reconnect backoff: 0.25 s, doubling, never longer than 2 s, each wait shortened at random by up to half.
#: A refused or unreachable connect costs one SYN, and a short cellular window must not be missed.
RECONNECT = Backoff(0.25, 2.0, jitter=0.5)
CONNECT_TIMEOUT_S = 8.0
#: The TCP connect that tells whether the primary broker answers again (uplink.mqtt.primary_probe_s).
PRIMARY_PROBE_TIMEOUT_S = 5.0
#: A network change while connected: the link must prove itself (a PUBACK) within this time.
PROBE_TIMEOUT_S = 10.0
#: Waiting for the SUBACK, the link is given up only after this long with nothing at all from the broker
#: (no message, no PUBACK): a SUBACK queued behind a backlog arrives while that backlog is flowing.
SUBACK_SILENCE_S = 30.0
#: Reports claimed per round at most (a round fills the in-flight window).
CLAIM_MAX = 500
#: Reports the broker has (PUBACK) but the center has not acknowledged yet, at most.  The broker accepts
#: faster than a center commits; without this bound a backlog would outrun ack_timeout_s and be sent twice.
MAX_AWAITING_ACK = 2000
#: How often the drain looks for work nobody woke it for (reports returned by the stale-claim job).
IDLE_POLL_S = 5.0
#: A drain loop that has not turned for this long is stuck (systemd watchdog).
STUCK_AFTER_S = 60.0
#: Replies already handed to the radio (kept in store meta so a redelivered cmd is not sent twice).
_CMD_META = "cmd_seen:"
#: Handled command ids kept (the newest): a redelivery comes from the post's broker session, which lasts
#: 7 days, and a post hands a few replies a day to its radio.  Pruned with the retention job.
CMD_SEEN_KEEP = 2000
#: The last epoch (CenterState.at) this post saw of each center receiver: JSON {receiver_id: at}.
_CENTER_EPOCHS_META = "center_epochs"
#: Where an older post kept the single center's epoch: only "has seen a center before" is read from it.
_CENTER_EPOCH_META = "center_epoch"
#: Receivers' epochs kept at most (a center runs a few; ids of long-gone ones drop out oldest first).
_MAX_CENTER_EPOCHS = 32
_MAX_QUEUED_EVENTS = 1000
#: Reply states waiting for the broker's PUBACK (store meta; key + ``{cmd_id}:{state}``, value [cmd_id, report_id]).
_REPLY_STATE_META = "reply_state:"


class UplinkEvents(Protocol):
    def on_delivered(self, report_ids: list[str], committed_at: datetime | None = None) -> None:
        """The center committed these; the store is already updated."""

    def on_command(self, command: dict[str, Any]) -> None:
        """A validated cmd from the center: {"cmd_id", "type": "reply", "report_id", "to", "text"}."""


# What the drain thread is told, besides what its link reports (sync.mqtt.LinkEvent): queued from the
# daemon's threads, the job thread and the network watcher, applied in order by the drain thread.
@dataclass(frozen=True, slots=True)
class Wake:
    """A report was stored (or the uplink stops): look at the queue now."""


@dataclass(frozen=True, slots=True)
class HeartbeatDue:
    """Publish the retained status now (the heartbeat job)."""


@dataclass(frozen=True, slots=True)
class NetChanged:
    """The kernel reported a network change: prove the link with a round trip."""


@dataclass(frozen=True, slots=True)
class ReplyState:
    """A reply's progress at this post, for the center (published on ``event``)."""

    cmd_id: str
    report_id: str
    state: str


UplinkEvent = LinkMessage | LinkPublished | LinkSubscribed | LinkDown | Wake | HeartbeatDue | NetChanged | ReplyState
_WAKE = Wake()


@dataclass
class _Turn:
    """What one turn of the drain loop collected from the broker, applied in as few transactions as possible."""

    sent: list[str] = field(default_factory=list)
    acks: list[protocol.Ack] = field(default_factory=list)
    pubacks: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _InFlight:
    report_ids: tuple[str, ...]
    published: float
    size: int


def _version() -> str:
    try:
        return metadata.version("siaga-relay")
    except metadata.PackageNotFoundError:
        return "0.0.0"


class Uplink:
    """Store-and-forward to the center.  ``start`` is non-blocking; everything runs on its own threads."""

    def __init__(
        self,
        cfg: Config,
        store: ReportQueue,
        *,
        clock: Clock,
        events: UplinkEvents,
        backoff: Backoff = RECONNECT,
    ) -> None:
        if cfg.uplink.mqtt is None:
            raise ConfigError("uplink.mqtt", None, "is required for the uplink")
        self._cfg = cfg
        self._backoff = backoff
        self._mqtt: UplinkMqttConfig = cfg.uplink.mqtt
        self._store = store
        self._clock = clock
        self._events = events
        self.post_id = cfg.node.post_id
        self.regency = cfg.node.regency
        self._topics = {k: protocol.topic(self.regency, self.post_id, k) for k in protocol.KINDS}
        self._q: queue.Queue[UplinkEvent] = queue.Queue()
        self._kick = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._netwatch = NetWatcher(self._on_net_change)
        self._link: MqttLink | None = None
        self._inflight: dict[int, _InFlight] = {}
        self._awaiting: dict[str, float] = {}  # report id → when published on this link
        self._probe: tuple[int, float] | None = None
        self._subscribed = False
        self._heard_mono = time.monotonic()
        self._post_fields: dict[str, Any] = {}
        self._reply_flight: dict[int, str] = {}  # mid → the reply state's key in the store, until PUBACK
        self._lock = threading.Lock()
        self._boot = 0
        self._started_mono = time.monotonic()
        self._tick = time.monotonic()
        self._connected_since: float | None = None
        self._center_state: str | None = None
        self._receivers: dict[str, str] = {}  # receiver id → its last presence state
        self._center_epochs: dict[str, str] = {}  # receiver id → the last ``at`` seen
        self._seen_center = False
        self._avg_report_bytes = 700.0
        self._idle = True
        self.counters: dict[str, int] = {
            "published_batches": 0,
            "published_reports": 0,
            "published_bytes": 0,
            "acked": 0,
            "rejected": 0,
            "connects": 0,
            "connect_failures": 0,
            "disconnects": 0,
            "bad_messages": 0,
            "commands": 0,
            "net_changes": 0,
            "primary_returns": 0,
        }
        self._last_error: str | None = None
        self._last_ack_mono: float | None = None
        #: since when reports the broker took (PUBACK) wait for a center ack with none coming: a broker that
        #: drops our publishes (an ACL mistake: Mosquitto still acknowledges them) shows only this way
        self._unacked_since: float | None = None
        self._primary_probed = time.monotonic()  # the first look comes primary_probe_s after start
        self._primary_up = False
        #: since when the broker refuses our report publishes (PUBACK "Not authorized": an ACL without our
        #: report topic); each refusal drops the link, so this is not reset by reconnecting
        self._refused_since: float | None = None

    # ------------------------------------------------------------------ the contract
    def start(self) -> None:
        if self._thread is not None:
            return
        # the daemon counts its starts (store.bump_boot_counter); a bare uplink counts its own
        counter = self._store.meta_get("boot_counter")
        self._boot = int(counter) if counter and counter.isdigit() else self._store.bump_boot_counter()
        # claims of a previous run (a crash, a SIGKILL) are not being worked on by anyone now
        self._center_epochs = _load_epochs(self._store.meta_get(_CENTER_EPOCHS_META))
        self._seen_center = bool(self._center_epochs) or self._store.meta_get(_CENTER_EPOCH_META) is not None
        released = self._store.release_all_claims()
        # also at start, not only with the retention job: a post restarted more often would never prune
        prune_handled_commands(self._store)
        if released:
            log.info("released %d claims left by a previous run", released)
        self._netwatch.start()
        self._thread = threading.Thread(target=self._run, name="siaga-uplink", daemon=True)
        self._thread.start()
        log.info(
            "uplink started: post %s, brokers %s, batch %d B, window %d, ack timeout %g s",
            self.post_id,
            ", ".join(self._mqtt.broker_urls),
            self._mqtt.batch_max_bytes,
            self._mqtt.inflight,
            self._mqtt.ack_timeout_s,
        )

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._kick.set()
        self._q.put(_WAKE)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("uplink thread did not stop within %g s", timeout)
            self._thread = None
        self._netwatch.stop()

    def wake(self) -> None:
        """A report was just stored: drain now (and, when disconnected, try to connect now)."""
        self._q.put(_WAKE)
        self._kick.set()

    def healthy(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and time.monotonic() - self._tick < STUCK_AFTER_S

    def no_center_ack_s(self) -> float | None:
        """How long, while connected, reports the broker took have waited for a center ack with none
        coming (counted from this connection at the earliest), or the broker has refused every report
        publish (counted across the reconnects each refusal causes).  None: nothing of the kind."""
        now = time.monotonic()
        waits = []
        since, connected = self._unacked_since, self._connected_since
        if since is not None and connected is not None:
            waits.append(now - max(since, connected))
        if self._refused_since is not None:
            waits.append(now - self._refused_since)
        return round(max(waits), 1) if waits else None

    def stalled(self) -> bool:
        """Connected, yet no center ack for longer than ``ack_timeout_s``: the broker takes our reports and
        no center gets them (an ACL that drops them, a center that cannot store), or no center runs."""
        waited = self.no_center_ack_s()
        return waited is not None and waited > self._mqtt.ack_timeout_s

    def state(self) -> dict[str, Any]:
        link = self._link
        return {
            "connected": bool(link and link.connected),
            "broker": link.broker.url if link else None,
            "connected_for_s": round(time.monotonic() - self._connected_since, 1)
            if self._connected_since is not None
            else None,
            "subscribed": bool(link and link.connected and self._subscribed),
            "center": self._center_state,
            "inflight_batches": len(self._inflight),
            "no_center_ack_s": self.no_center_ack_s(),
            "last_ack_s_ago": round(time.monotonic() - self._last_ack_mono, 1)
            if self._last_ack_mono is not None
            else None,
            "last_error": self._last_error,
            "counters": dict(self.counters),
        }

    def set_post_state(self, **fields: Any) -> None:
        """Radio state, battery... carried in every heartbeat."""
        with self._lock:
            self._post_fields.update(fields)

    def publish_reply_state(self, cmd_id: str, report_id: str, state: str) -> None:
        """Tell the center how a reply to a handset went: "sent" | "delivered" | "failed"."""
        if state not in protocol.REPLY_STATES:
            raise ValueError(f"reply state must be one of {protocol.REPLY_STATES}")
        # kept in the store at once (the caller's thread: the drain thread may be waiting for a connection),
        # and deleted only at the broker's PUBACK: a restart before the post reconnects loses none
        self._queue_reply_state(ReplyState(cmd_id, report_id, state))
        self._q.put(ReplyState(cmd_id, report_id, state))

    # ------------------------------------------------------------------ the drain thread
    def _run(self) -> None:
        failures = Attempts(self._backoff)
        attempt_at = time.monotonic()
        while not self._stopping.is_set():
            self._tick = time.monotonic()
            try:
                if self._link is None:
                    wait = attempt_at - time.monotonic()
                    if wait > 0 and not self._kick.wait(wait):
                        continue
                    if self._stopping.is_set():
                        break
                    self._kick.clear()
                    if self._connect():
                        failures.reset()
                    else:
                        attempt_at = time.monotonic() + failures.next_delay()
                    continue
                self._serve_once()
                self._maybe_return_to_primary()
                if self._link is None:
                    # a lost link is tried again at once (one short jittered wait), not after the last backoff
                    attempt_at = time.monotonic() + self._backoff.delay(1)
            except Exception as exc:
                # the loop must survive anything (a full disk, a bug in a callback): log, back off, go on
                log.exception("uplink loop error: %s", exc)
                self._last_error = str(exc)[:200]
                self._drop_link("error")
                attempt_at = time.monotonic() + self._backoff.max_s
        self._drop_link("stopping", polite=True)

    def _connect(self) -> bool:
        urls = self._mqtt.broker_urls

        def make(broker: BrokerAddress) -> MqttLink:
            return MqttLink(
                self._mqtt,
                broker,
                client_id=self._mqtt.client_id or f"siaga-post-{self.post_id}",
                handler=self,
                section="uplink.mqtt",
                will=Will(self._topics["status"], self._status_payload("offline")),
                session_expiry_s=7 * 86400,
                manual_ack=True,
                max_inflight=self._mqtt.inflight,
            )

        try:
            link, session = open_first(urls, make, timeout=CONNECT_TIMEOUT_S)
        except SyncError as exc:
            self._connect_failed(str(exc))
            return False
        try:
            # Subscribe on every connect.  "Session present" proves nothing about our subscriptions: an
            # earlier attempt cut between CONNACK and SUBSCRIBE, a takeover by a parallel attempt or a broker
            # restored from an older persistence file all leave a session without them, and the center's
            # acks and replies would then be dropped for good.  Subscribing again is harmless to a session
            # that has them.  The SUBACK is not awaited here: the broker answers in order with what it
            # queued for us, which on a slow link can take longer than any fixed timeout, so the drain
            # loop handles that backlog meanwhile and hears the SUBACK as an event (_apply, LinkSubscribed).
            # Publishing before the SUBACK is safe: the broker handles our SUBSCRIBE before our later
            # PUBLISHes, so the subscription exists before any ack for them can be routed.
            link.subscribe_async(
                [
                    (self._topics["ack"], 1),
                    (self._topics["cmd"], 1),
                    (protocol.CENTER_RECEIVERS_FILTER, 1),
                ],
                lambda refused: self._q.put(LinkSubscribed(link, tuple(refused))),
            )
        except SyncError as exc:
            link.abort()
            self._connect_failed(str(exc))
            return False
        self._link = link
        self._subscribed = False
        self._heard_mono = time.monotonic()
        self._connected_since = time.monotonic()
        self.counters["connects"] += 1
        self._last_error = None
        log.info("uplink connected to %s (session %s)", link.broker.url, "resumed" if session else "new")
        if not session:
            # the broker lost our session (it crashed, or this is another broker): acks the center sent us
            # meanwhile are gone, and so may be reports it had not yet passed on.  Send every unacked
            # report again now rather than after ack_timeout_s; the center stores each once.
            _, requeued = self._store.release_stale(self._cfg.store.claim_timeout_s, 0.0)
            if requeued:
                log.info("new broker session: %d unacknowledged reports go again", requeued)
        self._publish_status()
        self._flush_reply_states()
        self._q.put(_WAKE)
        return True

    def _connect_failed(self, text: str) -> None:
        self.counters["connect_failures"] += 1
        if text != self._last_error:
            log.warning("uplink: %s", text)
        self._last_error = text

    def _maybe_return_to_primary(self) -> None:
        """On a secondary broker, every ``primary_probe_s``: is the first of ``urls`` reachable (a TCP
        connect)?  Then leave this broker as soon as nothing is in flight or awaiting an ack (those acks
        come through this broker's session) and connect again: ``urls`` are tried in order."""
        link, urls = self._link, self._mqtt.broker_urls
        if link is None or len(urls) < 2 or link.broker.url == BrokerAddress.parse(urls[0]).url:
            self._primary_up = False
            return
        now = time.monotonic()
        if not self._primary_up and now - self._primary_probed >= self._mqtt.primary_probe_s:
            self._primary_probed = now
            self._primary_up = tcp_reachable(BrokerAddress.parse(urls[0]), PRIMARY_PROBE_TIMEOUT_S)
            if self._primary_up:
                log.info("uplink: the primary broker %s answers again; returning when idle", urls[0])
        if self._primary_up and not self._inflight and not self._awaiting:
            self._primary_up = False
            self.counters["primary_returns"] += 1
            # no Last Will: this post is not going offline.  Its retained status here is cleared instead (an
            # empty retained message, before the DISCONNECT on the same connection), so that a center reading
            # this broker does not keep an old "online" nor race an "offline" against the primary's "online"
            try:
                link.publish(self._topics["status"], b"", qos=1, retain=True)
            except SyncError as exc:
                log.debug("clearing the status on %s failed: %s", link.broker.url, exc)
            self._drop_link("returning to the primary broker", polite=True, send_will=False)
            self._kick.set()

    def _serve_once(self) -> None:
        """One turn: take events (blocking briefly when idle), apply them, then fill the window."""
        link = self._link
        assert link is not None
        free = self._mqtt.inflight - len(self._inflight)
        timeout = IDLE_POLL_S if free <= 0 or self._idle else 0.0
        events = self._take_events(timeout)
        self._idle = False
        turn = _Turn()
        for event in events:
            self._apply(event, turn)
            if self._link is None:
                break
        if turn.acks:
            # every ack (and PUBACK) of this turn in one transaction, then PUBACK the acks to the broker
            self._apply_acks(turn.acks, sent=turn.sent)
            if self._link is link:
                for mid, qos in turn.pubacks:
                    link.ack(mid, qos)
        elif turn.sent:
            self._store.mark_sent(turn.sent)
        if self._link is None:
            return
        if not self._subscribed and time.monotonic() - self._heard_mono > SUBACK_SILENCE_S:
            # no SUBACK and nothing else from the broker for this long: the link is dead or the broker stuck
            log.warning("uplink: no SUBACK from %s; reconnecting", link.broker.url)
            self._drop_link("no SUBACK")
            return
        if self._probe is not None and time.monotonic() > self._probe[1]:
            log.warning("uplink: no answer from %s after a network change; reconnecting", link.broker.url)
            self._drop_link("probe timeout")
            return
        self._fill_window()

    def _take_events(self, timeout: float) -> list[UplinkEvent]:
        out: list[UplinkEvent] = []
        try:
            out.append(self._q.get(timeout=timeout) if timeout > 0 else self._q.get_nowait())
        except queue.Empty:
            return out
        while len(out) < _MAX_QUEUED_EVENTS:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                break
        return out

    def _apply(self, event: UplinkEvent, turn: _Turn) -> None:
        if isinstance(event, LinkPublished):
            if event.link is not self._link:
                return
            self._heard_mono = time.monotonic()
            if self._probe is not None and self._probe[0] == event.mid:
                self._probe = None
            reply_key = self._reply_flight.pop(event.mid, None)
            if reply_key is not None:
                if event.ok:
                    self._store.meta_delete(reply_key)
                else:  # kept: it goes again at the next connection
                    log.error("uplink: broker refused a reply state: %s", event.reason)
                return
            flight = self._inflight.pop(event.mid, None)
            if flight is None:
                return
            if event.ok:
                turn.sent.extend(flight.report_ids)
                if self._unacked_since is None:
                    self._unacked_since = time.monotonic()
                self._refused_since = None
            else:
                # e.g. "Not authorized" (ACL) or quota: keep them pending and back off
                log.error("uplink: broker refused a batch of %d: %s", len(flight.report_ids), event.reason)
                self._last_error = f"broker refused publish: {event.reason}"
                if self._refused_since is None:
                    self._refused_since = time.monotonic()
                self._store.release(flight.report_ids)
                # reconnect to back off, without the Last Will: the post is not offline, and the center must
                # keep showing it connected but not delivering (its heartbeat says so), not flapping offline
                self._drop_link("publish refused", polite=True, send_will=False)
        elif isinstance(event, LinkMessage):
            source, message = event.link, event.message
            if source is not self._link:
                return
            self._heard_mono = time.monotonic()
            if message.topic == self._topics["ack"]:
                try:
                    turn.acks.append(protocol.decode_ack(message.payload))
                    turn.pubacks.append((message.mid, message.qos))
                    return
                except ProtocolError as exc:
                    self.counters["bad_messages"] += 1
                    log.warning("uplink: ignored a bad ack: %s", exc)
            else:
                self._handle_message(message)
            source.ack(message.mid, message.qos)
        elif isinstance(event, LinkSubscribed):
            source, refused = event.link, event.refused
            if source is not self._link:
                return
            if refused:
                # an ACL that does not let this post read its acks: without them nothing is ever delivered
                log.error("uplink: broker refused our subscription to %s", ", ".join(refused))
                self._last_error = f"subscription refused: {', '.join(refused)}"
                self._drop_link("subscription refused")
                return
            self._subscribed = True
            log.info("uplink subscribed to acks, replies and center state on %s", source.broker.url)
        elif isinstance(event, LinkDown):
            if event.link is self._link:
                log.warning("uplink: connection to %s lost (%s)", event.link.broker.url, event.reason)
                self._drop_link(event.reason)
        elif isinstance(event, HeartbeatDue):
            self._publish_status()
        elif isinstance(event, NetChanged):
            if self._probe is None and self._link is not None:
                mid = self._publish_status()
                if mid is not None:
                    self._probe = (mid, time.monotonic() + PROBE_TIMEOUT_S)
        elif isinstance(event, ReplyState):
            self._flush_reply_states()
        # Wake: nothing to apply; the window is filled after the events

    def _fill_window(self) -> None:
        link = self._link
        assert link is not None
        mqtt = self._mqtt
        self._expire_awaiting()
        while len(self._inflight) < mqtt.inflight and not self._stopping.is_set():
            free = mqtt.inflight - len(self._inflight)
            room = MAX_AWAITING_ACK - len(self._awaiting)
            if room <= 0:
                return  # the center is behind: wait for its acks (they wake this loop)
            per_batch = max(1, int(mqtt.batch_max_bytes * (3 if mqtt.compress else 1) / self._avg_report_bytes))
            claimed = self._store.claim(min(CLAIM_MAX, free * per_batch, room))
            if not claimed:
                self._idle = True
                return
            boot_id = self._clock.boot_id()
            wire = [
                protocol.StoredWireReport(
                    sr.report_id,
                    sr.body,
                    self._store.age_s(sr.boot_id, sr.boot_stored, sr.stored_ts),
                    "boot" if sr.boot_id == boot_id else "wall",
                )
                for sr in claimed
            ]
            batches = protocol.encode_report_batches(
                self.post_id,
                wire,
                sent_at=self._clock.now(),
                max_bytes=mqtt.batch_max_bytes,
                compress=mqtt.compress,
            )
            total_json = sum(b.json_bytes for b in batches)
            self._avg_report_bytes = 0.8 * self._avg_report_bytes + 0.2 * (total_json / len(wire))
            for index, batch in enumerate(batches):
                try:
                    mid = link.publish(self._topics["report"], batch.payload, qos=1)
                except SyncError as exc:
                    rest = [rid for b in batches[index:] for rid in b.report_ids]
                    self._store.release(rest)
                    log.warning("uplink: publish failed (%s); %d reports stay pending", exc, len(rest))
                    self._drop_link(str(exc))
                    return
                now = time.monotonic()
                self._inflight[mid] = _InFlight(batch.report_ids, now, len(batch.payload))
                for rid in batch.report_ids:  # re-inserted: the dict stays in publishing order (_expire_awaiting)
                    self._awaiting.pop(rid, None)
                    self._awaiting[rid] = now
                self.counters["published_batches"] += 1
                self.counters["published_reports"] += len(batch.report_ids)
                self.counters["published_bytes"] += len(batch.payload)
            log.debug("uplink: published %d reports in %d batches", len(wire), len(batches))

    def _expire_awaiting(self) -> None:
        """Forget reports whose ack is overdue: the stale-claim job sends them again."""
        if len(self._awaiting) < MAX_AWAITING_ACK:
            return
        cutoff = time.monotonic() - self._mqtt.ack_timeout_s
        overdue = list(itertools.takewhile(lambda item: item[1] < cutoff, self._awaiting.items()))
        for rid, _at in overdue:
            del self._awaiting[rid]

    def _handle_message(self, message: Message) -> None:
        try:
            if message.topic == self._topics["cmd"]:
                self._handle_command(protocol.decode_command(message.payload))
            elif (receiver := protocol.parse_center_receiver_topic(message.topic)) is not None:
                if message.payload:
                    state = protocol.decode_center_state(message.payload)
                    self._handle_center_state(receiver, state, retained=message.retain)
                else:  # a cleared presence: that receiver is gone for good
                    self._receivers.pop(receiver, None)
                    self._center_state = _center_state_of(self._receivers)
            else:
                raise ProtocolError("topic", f"unexpected topic {message.topic[:100]!r}")
        except ProtocolError as exc:
            self.counters["bad_messages"] += 1
            log.warning("uplink: ignored a bad message on %s: %s", message.topic[:100], exc)

    def _handle_center_state(self, receiver: str, center: protocol.CenterState, *, retained: bool) -> None:
        # the center is online while any of its receivers is: one receiver's Last Will says nothing of the
        # others (they split the reports through the shared subscription)
        self._receivers[receiver] = center.state
        self._center_state = _center_state_of(self._receivers)
        if center.state != "online" or center.at is None or center.at == self._center_epochs.get(receiver):
            return  # an offline Will, or a heartbeat of a connection already seen
        known = self._seen_center
        self._seen_center = True
        self._center_epochs.pop(receiver, None)
        self._center_epochs[receiver] = center.at
        while len(self._center_epochs) > _MAX_CENTER_EPOCHS:
            del self._center_epochs[next(iter(self._center_epochs))]
        # kept across restarts (one small write per receiver (re)subscription): a post restarted after a
        # receiver re-subscribed afresh must still learn that what it published meanwhile may be gone
        self._store.meta_set(_CENTER_EPOCHS_META, json.dumps(self._center_epochs))
        if center.resumed:
            # the broker kept the receiver's session (and the receiver proved its subscriptions were in
            # it), so every report published meanwhile is waiting there: resending them only doubles traffic
            return
        if not known and retained:
            # the first state this post ever saw, and an old one (retained, from before we subscribed):
            # nothing of ours was published while that receiver was away
            return
        # A center receiver has just subscribed afresh — a live state (we were subscribed when it came), or
        # a new epoch since we last looked.  What we published while no receiver was subscribed (none had
        # ever subscribed yet, a broker that lost its sessions, a center down longer than its session) was
        # dropped by the broker: send every unacknowledged report again now, not after ack_timeout_s.
        _, requeued = self._store.release_stale(self._cfg.store.claim_timeout_s, 0.0)
        self._awaiting.clear()
        if requeued:
            log.info("center subscribed afresh: %d unacknowledged reports go again", requeued)

    def _apply_acks(self, acks: list[protocol.Ack], *, sent: list[str]) -> None:
        self._last_ack_mono = time.monotonic()
        self._unacked_since = None
        self._refused_since = None
        ids = [rid for ack in acks for rid in ack.ids]
        rejected = [item for ack in acks for item in ack.rejected]
        for rid in ids:
            self._awaiting.pop(rid, None)
        for item in rejected:
            self._awaiting.pop(item.report_id, None)
        stamps = [ack.at for ack in acks if ack.at is not None]
        committed_at = max(stamps) if stamps else None
        delivered = self._store.ack(ids, sent=sent, committed_at=committed_at)
        for item in rejected:
            if self._store.reject(item.report_id, item.reason):
                self.counters["rejected"] += 1
                log.error("center REJECTED report %s: %s", item.report_id, item.reason)
        if delivered:
            self.counters["acked"] += len(delivered)
            log.debug("center committed %d reports", len(delivered))
            try:
                self._events.on_delivered(delivered, committed_at)
            except Exception:
                log.exception("on_delivered handler failed")

    def _handle_command(self, command: dict[str, Any]) -> None:
        key = _CMD_META + command["cmd_id"]
        if self._store.meta_get(key) is not None:
            log.info("reply %s already handed to the radio; ignoring the redelivery", command["cmd_id"])
            return
        self.counters["commands"] += 1
        self._queue_reply_state(ReplyState(command["cmd_id"], command["report_id"], "received"))
        self._flush_reply_states()
        try:
            self._events.on_command(command)
        except Exception:
            log.exception("on_command handler failed")
        self._store.meta_set(key, format_time(self._clock.now()))

    def _queue_reply_state(self, item: ReplyState) -> None:
        self._store.meta_set(
            f"{_REPLY_STATE_META}{item.cmd_id}:{item.state}", json.dumps([item.cmd_id, item.report_id])
        )
        self._store.meta_prune(_REPLY_STATE_META, _MAX_QUEUED_EVENTS)

    def _flush_reply_states(self) -> None:
        """Publish every stored reply state not yet in flight on this link (oldest first)."""
        link = self._link
        if link is None:
            return
        flying = set(self._reply_flight.values())
        for key, value in self._store.meta_items(_REPLY_STATE_META):
            if key in flying:
                continue
            try:
                cmd_id, report_id = json.loads(value)
                state = key.rsplit(":", 1)[1]
                payload = protocol.encode_reply_state(cmd_id, report_id, state, at=self._clock.now())
            except (ValueError, TypeError, IndexError, ProtocolError) as exc:
                log.warning("dropping an unreadable stored reply state %s: %s", key[:100], exc)
                self._store.meta_delete(key)
                continue
            try:
                mid = link.publish(self._topics["event"], payload, qos=1)
            except SyncError:
                return
            self._reply_flight[mid] = key

    def _drop_link(self, reason: str, *, polite: bool = False, send_will: bool = True) -> None:
        link = self._link
        if link is None:
            return
        self._link = None
        self._subscribed = False
        self._connected_since = None
        self._probe = None
        ids = [rid for flight in self._inflight.values() for rid in flight.report_ids]
        self._inflight.clear()
        self._awaiting.clear()
        self._reply_flight.clear()  # not PUBACKed: still in the store, published again at the next connect
        if ids:
            try:
                self._store.release(ids)
            except SiagaError as exc:
                log.error("uplink: could not release %d claims (%s); the stale job will", len(ids), exc)
        if polite:
            link.close(send_will=send_will)
        else:
            self.counters["disconnects"] += 1
            link.abort()

    # ------------------------------------------------------------------ status
    def _status_payload(self, state: str) -> bytes:
        body: dict[str, Any] = {"post_id": self.post_id, "state": state, "boot": self._boot}
        if state == "online":
            counts = self._store.counts()
            with self._lock:
                fields = dict(self._post_fields)
            link = self._link
            body.update(
                name=self._cfg.node.name,
                at=format_time(self._clock.now()),
                version=_version(),
                queue=counts,
                oldest_pending_age_s=self._store.oldest_pending_age_s(),
                radio=fields.pop("radio", None),
                uplink=link.broker.host if link else None,
                battery=fields.pop("battery", None),
                relay=fields.pop("relay", None),
                uptime_s=round(time.monotonic() - self._started_mono, 1),
                center=self._center_state,
                no_ack_s=self.no_center_ack_s(),
                delivering=not self.stalled(),
            )
        return protocol.encode_status(body)

    def _publish_status(self) -> int | None:
        link = self._link
        if link is None:
            return None
        try:
            return link.publish(self._topics["status"], self._status_payload("online"), qos=1, retain=True)
        except SyncError as exc:
            log.debug("status publish failed: %s", exc)
            return None

    # ------------------------------------------------------------------ periodic work (the owner's job thread)
    def heartbeat(self) -> None:
        """Publish the retained ``status`` (from the drain thread, which owns the connection)."""
        self._q.put(HeartbeatDue())

    def release_stale(self) -> None:
        """Claims nobody resolved and ``sent`` reports the center never acknowledged go back to pending."""
        try:
            claims, sent = self._store.release_stale(self._cfg.store.claim_timeout_s, self._mqtt.ack_timeout_s)
        except SiagaError as exc:
            log.error("stale-claim release failed: %s", exc)
            return
        if claims or sent:
            self.wake()

    # ------------------------------------------------------------------ LinkHandler (paho's thread)
    def on_message(self, link: MqttLink, message: Message) -> None:
        self._q.put(LinkMessage(link, message))

    def on_published(self, link: MqttLink, mid: int, ok: bool, reason: str) -> None:
        self._q.put(LinkPublished(link, mid, ok, reason))

    def on_disconnected(self, link: MqttLink, reason: str) -> None:
        self._q.put(LinkDown(link, reason))

    def _on_net_change(self, kind: str) -> None:
        self.counters["net_changes"] += 1
        self._q.put(NetChanged())
        self._kick.set()


def prune_handled_commands(store: ReportQueue) -> int:
    """Forget all but the newest :data:`CMD_SEEN_KEEP` handled reply command ids (run with retention)."""
    pruned = store.meta_prune(_CMD_META, CMD_SEEN_KEEP)
    if pruned:
        log.info("forgot %d handled reply command ids (the newest %d are kept)", pruned, CMD_SEEN_KEEP)
    return pruned


def _center_state_of(receivers: dict[str, str]) -> str | None:
    if not receivers:
        return None
    return "online" if "online" in receivers.values() else "offline"


def _load_epochs(text: str | None) -> dict[str, str]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}
