"""``siaga run``: the post daemon.  Wires the store, intake, radio bridge, outbox and (optional) uplink.

:class:`Post` is the composition and the one place where an event becomes an action:

* radio text / Detection Sensor → :class:`~siaga.report.Report` (Intake) → ``store.put`` (durable) → wake the
  uplink → first receipt to the handset (copies get none);
* radio position / node info → the node table (edge/nodes.py);
* radio ACK/NAK → the outbox (edge/receipts.py);
* uplink ``on_delivered`` → second receipt; uplink ``on_command`` (a staff reply) → a DM to the handset,
  its progress published back with ``publish_reply_state``.

Periodic work (heartbeat, stale claims, retention, receipt and node-table flushes, retries of reports held
in memory, the runtime state file) is the job table of edge/jobs.py, run by the post's one scheduler.

Receipt state lives in the store (``set_receipt``), written with the store's next commit or by the
``receipt_flush`` job (SD-card wear: edge/store.py).  Receipts are at least once:
after a crash, a receipt whose state was not yet written is sent again (a second "TERIMA" is harmless, a
missing one makes the officer send the report again); a restart resends only for reports less than
:data:`RESUME_WINDOW_S` old.  :func:`run_daemon` runs a :class:`Post` until SIGTERM/SIGINT, whose handlers
only set a flag; the main loop notices within half a second and stops everything within 5 s.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

from edge import aprs
from edge.classify import Classifier
from edge.console import ConsoleServer
from edge.handsets import with_handsets_file
from edge.intake import Intake, Location
from edge.jobs import JOBS, JobScheduler
from edge.nodes import NodeTable
from edge.radio import (
    BROADCAST_NUM,
    STUCK_AFTER_S,
    Ignored,
    MeshMessage,
    MeshNodeInfo,
    MeshPosition,
    MeshRelayPacket,
    MeshRouting,
    RadioBridge,
    RadioEvent,
    RadioTuning,
)
from edge.receipts import Outbox, Outgoing, center_receipt_text, post_receipt_text, reply_text
from edge.reserve import ensure_reserve, release_reserve
from edge.status import write_runtime
from edge.store import PutResult, Store, is_disk_full
from edge.tnc import PRIORITY_ACK, PRIORITY_RECEIPT, TncBridge, TncTuning
from edge.touchtone import CodeTable, Decoded, clean_keys, decode, load_table
from relay.engine import Engine, RelaySettings
from siaga.clock import Clock, SystemClock
from siaga.config import Config, read_relay_key
from siaga.errors import ReportError, SiagaError, StoreError
from siaga.metrics import MetricsServer, Registry
from siaga.report import Callback, PathHop, Report, mesh_report_id, new_report_id, node_id
from siaga.sdnotify import Notifier, Watchdog
from sync import compact as codec

if TYPE_CHECKING:
    # imported where it is made (_make_uplink): a post whose MQTT library is missing still queues reports
    from sync.uplink import Uplink

log = logging.getLogger(__name__)

#: After a restart, receipts that never went out are still sent for reports younger than this.
RESUME_WINDOW_S = 3600
#: Reports that could not be stored (disk full) are kept in RAM and retried, at most this many.
UNSTORED_MAX = 1000
#: Invalid UTF-8 in a text: kept (with U+FFFD) if at most this share of characters is broken.
SALVAGE_MAX_BROKEN = 0.25
#: Staff reply ids remembered so a repeated command is not sent twice.
SEEN_COMMANDS_MAX = 2000
#: An APRS message id seen again within this is the same message (a retry), even across midnight UTC.
APRS_RETRY_WINDOW_S = 1800.0
#: APRS positions remembered (one per station heard).
STATIONS_MAX = 5000
STOP_TIMEOUT_S = 4.0


class Post:
    """One village post: open with :meth:`start`, close with :meth:`stop` (see the module docstring)."""

    def __init__(
        self,
        cfg: Config,
        *,
        clock: Clock | None = None,
        radio_tuning: RadioTuning | None = None,
        tnc_tuning: TncTuning | None = None,
        with_uplink: bool = True,
    ) -> None:
        self.cfg = with_handsets_file(cfg)
        self.clock: Clock = clock or SystemClock()
        self._radio_tuning = radio_tuning
        self._tnc_tuning = tnc_tuning
        self._with_uplink = with_uplink
        self.store: Store | None = None
        self.nodes: NodeTable | None = None
        self.intake: Intake | None = None
        self.radio: RadioBridge | None = None
        self.tnc: TncBridge | None = None
        self.touch_tones: CodeTable | None = None
        # callsign → (lat, lon, ambiguity m, monotonic time heard): the last APRS position of each station
        self._stations: dict[str, tuple[float, float, float, float]] = {}
        # (callsign, message id) → (report id, monotonic time): retries of one message make one report
        self._aprs_seen: collections.OrderedDict[tuple[str, str], tuple[str, float]] = collections.OrderedDict()
        self.outbox: Outbox | None = None
        self.uplink: Uplink | None = None
        self.relay: Engine | None = None
        self.console: ConsoleServer | None = None
        self._counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        # Reports the store refused (disk full), oldest first; bounded by UNSTORED_MAX in _hold, loudly.
        self._unstored: collections.deque[Report] = collections.deque()
        self._unstored_lock = threading.Lock()
        self._seen_commands: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._runtime: dict[str, Any] = {}
        self._runtime_lock = threading.Lock()
        self._jobs: JobScheduler[Post] | None = None
        self._stopped = False
        #: Called after every store.put of a radio report (benchmarks, tests): (result, report).
        self.stored_hook: Callable[[PutResult, Report], None] | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        cfg = self.cfg
        try:
            store = Store.open(cfg.store_path, clock=self.clock)
        except StoreError as exc:
            # a disk that filled up while the post was stopped: give SQLite the reserve's room, and run
            freed = release_reserve(cfg.node.data_dir) if is_disk_full(exc) else 0
            if not freed:
                raise
            log.error(
                "DISK FULL at start (%s): released the %d MiB disk reserve so that the post runs and reads the"
                " radio; free space on %s now",
                exc,
                freed // (1024 * 1024),
                cfg.node.data_dir,
            )
            self.count("store.reserve_released")
            store = Store.open(cfg.store_path, clock=self.clock)
        self.store = store
        ensure_reserve(cfg.node.data_dir)
        try:
            store.release_all_claims()
            boots = store.bump_boot_counter()
            self.nodes = NodeTable(store, self.clock)
            known = self.nodes.load()
            self.intake = Intake(cfg, Classifier.load(cfg.classifier.extra_keywords), self.clock)
            log.info(
                "post %s (%s) starting: start #%d, %d handsets registered, %d radios known",
                cfg.node.post_id,
                cfg.node.name,
                boots,
                len(cfg.handsets),
                known,
            )
            mesh = cfg.radio.meshtastic
            if mesh is not None:
                self.radio = RadioBridge(mesh, self.handle_radio, on_state=self._radio_state, tuning=self._radio_tuning)
                self.outbox = Outbox(
                    self.radio.send_text,
                    ready=lambda: self.radio is not None and self.radio.connected,
                    min_interval_s=mesh.min_send_interval_s,
                    ack_timeout_s=mesh.ack_timeout_s,
                    retries=mesh.receipt_retries,
                )
            tnc = cfg.radio.tnc
            if tnc is not None:
                # a bad code table stops the start here (ConfigError naming file:line → exit 78)
                self.touch_tones = load_table(tnc.touch_tone_file) if tnc.touch_tone_file else None
                self.tnc = TncBridge(tnc, self.handle_tnc, on_state=self._tnc_state, tuning=self._tnc_tuning)
                if self.tnc.transmit:
                    log.info(
                        "tnc %s: listening for messages to %s; acks and receipts on air as %s (max %.1f %% airtime)",
                        self.tnc.target,
                        tnc.address,
                        tnc.callsign,
                        tnc.airtime_share * 100,
                    )
                else:
                    log.warning(
                        "tnc %s: listening for messages to %s; transmit OFF (no licensed callsign with transmit "
                        "= true): stations get no ack and will repeat their messages",
                        self.tnc.target,
                        tnc.address,
                    )
            if mesh is None and tnc is None:
                log.warning(
                    "no [radio.meshtastic] or [radio.tnc] configured: only reports typed in at the post are queued"
                )
            if cfg.uplink.mqtt is not None and self._with_uplink:
                self.uplink = self._make_uplink()
            if cfg.relay.enabled:
                self.relay = self._make_relay()
            elif self.uplink is None:
                log.warning("no uplink and no relay: reports stay in this post's queue until one is configured")
            self._write_runtime(radio="disconnected")
            if self.outbox is not None:
                self.outbox.start()
                self._resume_receipts()
            if self.radio is not None:
                self.radio.start()
            if self.tnc is not None:
                self.tnc.start()
            if self.uplink is not None:
                self.uplink.start()
            if self.relay is not None:
                self.relay.start()
            self._jobs = JobScheduler(cfg, self, JOBS)
            self._jobs.start()
            if cfg.console.http:
                # last: the officer's page shows a post that is already running
                self.console = ConsoleServer(cfg, self)
                self.console.start()
        except BaseException:
            self.stop()
            raise

    def _make_relay(self) -> Engine | None:
        cfg = self.cfg
        if self.radio is None:
            log.error("[relay] enabled but no [radio.meshtastic]: nothing to relay over")
            return None
        relay = cfg.relay
        assert self.store is not None and relay.key_file is not None
        uplink = self.uplink

        def uplink_connected() -> bool:
            try:
                return bool(uplink is not None and uplink.state().get("connected"))
            except Exception:
                return False

        def accepted(_ids: list[str]) -> None:
            if uplink is not None:
                uplink.wake()

        # A post with an uplink of its own drains over MQTT only (its carried reports too); the relay drain
        # and the uplink therefore never both take a report.  The engine still receives custody, beacons,
        # and sends the center's acks back to the previous hops.
        engine = Engine(
            post_id=cfg.node.post_id,
            store=self.store,
            radio=self.radio,
            settings=RelaySettings(
                beacon_s=relay.beacon_s,
                retry_s=relay.retry_s,
                cack_delay_s=relay.cack_delay_s,
                airtime_cap=relay.airtime_cap,
                max_hops=relay.max_hops,
            ),
            key=read_relay_key(relay.key_file),
            key_epoch=relay.key_epoch,
            forward=uplink is None,
            relay_role=cfg.node.role == "relay",
            uplink_connected=uplink_connected,
            on_delivered=self._relay_delivered,
            on_accepted=accepted,
            on_reply=self._relay_reply,
        )
        log.info(
            "relay on: %s, beacon every %g s, airtime cap %.0f %%",
            "forwarding over the mesh" if uplink is None else "carrying to this post's uplink",
            relay.beacon_s,
            relay.airtime_cap * 100,
        )
        return engine

    def _make_uplink(self) -> Uplink | None:
        try:
            from sync.uplink import Uplink
        except ImportError as exc:
            # Reports still queue durably; the operator sees "uplink: tidak ada" in `siaga status`.
            log.error("uplink configured but sync.uplink cannot be imported (%s): reports only queue", exc)
            return None
        assert self.store is not None
        return Uplink(self.cfg, self.store, clock=self.clock, events=self)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop everything within about ``timeout`` seconds; what was received is stored first."""
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout

        def left(share: float) -> float:
            return max(0.1, (deadline - time.monotonic()) * share)

        if self.console is not None:
            self.console.stop(left(0.2))  # first: no new report may arrive while the rest stops
            self.console = None
        if self._jobs is not None:
            self._jobs.stop()  # first: the jobs use the radio's store, the uplink and the node table
            self._jobs = None
        if self.relay is not None:
            self.relay.stop(left(0.2))
        if self.radio is not None:
            self.radio.stop(left(0.45))
        if self.tnc is not None:
            self.tnc.stop(left(0.3))
        if self.outbox is not None:
            self.outbox.stop(left(0.2))
        if self.uplink is not None:
            try:
                self.uplink.stop(left(0.8))
            except Exception:
                log.exception("uplink stop failed")
        if self.nodes is not None and self.store is not None:
            self.nodes.flush()
        if self._unstored:
            log.error("%d reports could not be stored and are lost at stop", len(self._unstored))
        if self.store is not None:
            self._write_runtime(radio="disconnected", stopped=True)
            self.store.close()
        self.radio = None
        self.tnc = None
        self.outbox = None
        self.uplink = None
        self.relay = None

    def refresh_runtime(self) -> None:
        """The ``runtime_state`` job: the broker the uplink is connected to, for ``siaga status``."""
        if self.uplink is None:
            return
        try:
            uplink_state = self.uplink.state()
        except Exception:
            uplink_state = {"connected": False}
        broker = uplink_state.get("broker") if uplink_state.get("connected") else None
        # connected yet no center ack for longer than ack_timeout_s: the wall time it began (written once per
        # stall, so that the runtime file changes only at the edges; ``siaga status`` counts the minutes)
        stalled_since = None
        if self.uplink.stalled():
            stalled_since = self._runtime.get("no_center_ack_since") or round(
                time.time() - float(uplink_state.get("no_center_ack_s") or 0.0), 1
            )
        if broker != self._runtime.get("uplink") or stalled_since != self._runtime.get("no_center_ack_since"):
            self._write_runtime(uplink=broker, no_center_ack_since=stalled_since)

    def refresh_relay_state(self) -> None:
        """The ``relay_state`` job: the relay's routes and custody, for ``siaga status``."""
        if self.relay is not None:
            snapshot = self.relay.snapshot()
            self._write_runtime(relay=snapshot)
            if self.uplink is not None and self.store is not None:
                # the center sees the relay too: what this post carries and, above all, parked reports
                # (the hop-limit alarm), which otherwise only the officer's `siaga status` shows
                try:
                    summary = self.store.relay_summary()
                except SiagaError as exc:
                    log.warning("relay summary for the heartbeat failed: %s", exc)
                    return
                self.uplink.set_post_state(
                    relay={
                        "metric": snapshot.get("metric"),
                        "route": snapshot.get("route"),
                        "neighbours": len(snapshot.get("neighbours", [])),
                        "held": summary["held"],
                        "parked": summary["parked"],
                        "center_acks_owed": summary["center_acks_owed"],
                    }
                )

    # ------------------------------------------------------------------ state
    def count(self, key: str, n: int = 1) -> None:
        with self._count_lock:
            self._counts[key] += n

    def counters(self) -> dict[str, int]:
        """Counters by kind (for status and metrics): radio traffic, reports, receipts, errors."""
        with self._count_lock:
            out: dict[str, int] = dict(self._counts)
        if self.radio is not None:
            for key, value in self.radio.counters().items():
                out[key] = out.get(key, 0) + value
        if self.tnc is not None:
            for key, value in self.tnc.counters().items():
                out[key] = out.get(key, 0) + value
        if self.outbox is not None:
            out.update({f"outbox.{k}": v for k, v in self.outbox.counts.items()})
        return out

    def health_checks(self) -> dict[str, bool]:
        """What the systemd watchdog checks (siaga/sdnotify.py): a failing part stops the pings."""
        checks: dict[str, bool] = {}
        if self.radio is not None:
            checks["radio"] = self.radio.healthy()
        if self.tnc is not None:
            checks["tnc"] = self.tnc.healthy()
        if self.outbox is not None:
            checks["outbox"] = self.outbox.healthy()
        if self.uplink is not None:
            try:
                checks["uplink"] = bool(self.uplink.healthy())
            except Exception:
                checks["uplink"] = False
        # Reports held in memory because the store refuses them (disk full) are not a watchdog failure: a
        # restart cannot free space, and a killed daemon loses what it holds.  `siaga status` shows them.
        return checks

    def healthy(self) -> bool:
        return all(self.health_checks().values())

    def register_metrics(self, registry: Registry) -> None:
        """Read at scrape time (docs/METRICS.md): levels as gauges, event counts since start as counters."""
        registry.gauge(
            "radio_connected",
            "1 while the gateway radio is connected",
            lambda: float(bool(self.radio and self.radio.connected)),
        )
        registry.counter(
            "post_events",
            "radio traffic, reports, receipts and errors since start, by kind",
            self.counters,
            label="kind",
        )
        registry.gauge(
            "post_queue",
            "reports in the post's store by state",
            lambda: self.store.counts() if self.store else None,
            label="state",
        )
        registry.gauge(
            "post_oldest_pending_age_seconds",
            "age of the oldest report not yet delivered to the center (absent when none waits)",
            lambda: self.store.oldest_pending_age_s() if self.store else None,
        )
        registry.gauge(
            "uplink_no_center_ack_seconds",
            "while connected: how long reports the broker took have waited for a center ack with none coming"
            " (absent when nothing waits); growing while the center is online means the broker drops them",
            lambda: self.uplink.no_center_ack_s() if self.uplink else None,
        )
        registry.counter(
            "uplink_events",
            "uplink events since start (published, acked, rejected, connects, disconnects...), by kind",
            lambda: dict(self.uplink.counters) if self.uplink else None,
            label="kind",
        )

    def state(self) -> dict[str, Any]:
        with self._runtime_lock:
            return dict(self._runtime)

    def _write_runtime(self, **fields: Any) -> None:
        # The write too under the lock: two threads (radio, uplink) writing outside it could land their
        # snapshots in the wrong order, and `siaga status` said "radio NOT connected" beside a connected one.
        with self._runtime_lock:
            self._runtime.setdefault("uplink", None)
            self._runtime.update(fields)
            try:
                write_runtime(self.cfg, dict(self._runtime))
            except OSError as exc:
                log.warning("cannot write the runtime state file: %s", exc)

    def _radio_state(self, connected: bool) -> None:
        value = "connected" if connected else "disconnected"
        self._write_runtime(radio=value)
        if self.uplink is not None:
            try:
                self.uplink.set_post_state(radio=value)
            except Exception:
                log.exception("uplink.set_post_state failed")
        if connected and self.radio is not None and self.nodes is not None:
            self.nodes.seed_names(self.radio.known_nodes())

    # ------------------------------------------------------------------ radio events (radio-in thread)
    def handle_radio(self, event: RadioEvent) -> None:
        if isinstance(event, MeshRelayPacket):
            my_num = self.radio.my_node_num if self.radio is not None else None
            if self.relay is None:
                self.count("ignored.relay_off")
            elif event.to_num in (BROADCAST_NUM, my_num):
                self.relay.feed(event.from_num, event.payload, event.snr)  # queued: never blocks
            else:
                self.count("ignored.relay_other")
        elif isinstance(event, MeshMessage):
            if self.cfg.node.role == "relay":
                self.count("ignored.relay_role")  # a hilltop relay takes no reports of its own
                return
            self._on_message(event)
        elif isinstance(event, MeshRouting):
            if self.outbox is not None and self.radio is not None:
                self.outbox.on_routing(event.from_num, event.request_id, event.error, self.radio.my_node_num)
        elif isinstance(event, MeshPosition):
            if self.nodes is not None:
                self.nodes.update_position(event.from_num, event.lat, event.lon, event.altitude, event.accuracy_m)
        elif isinstance(event, MeshNodeInfo):
            if self.nodes is not None:
                self.nodes.update_user(event.from_num, event.long_name, event.short_name)
        elif isinstance(event, Ignored):
            log.debug("radio: ignored %s from %s", event.reason, event.from_num)

    def _on_message(self, msg: MeshMessage) -> None:
        assert self.intake is not None and self.store is not None and self.nodes is not None
        mesh = self.cfg.radio.meshtastic
        my_num = self.radio.my_node_num if self.radio is not None else None
        if msg.to_num != BROADCAST_NUM and msg.to_num != my_num:
            self.count("ignored.dm_other")
            return
        # A direct message to the post is a report whatever its channel; broadcasts only on ours.
        if msg.to_num == BROADCAST_NUM and mesh is not None and msg.channel not in mesh.channels:
            self.count("ignored.channel")
            log.debug("radio: text on channel %d (not ours) from %s ignored", msg.channel, node_id(msg.from_num))
            return
        self.nodes.heard(msg.from_num)
        text = self._message_text(msg)
        if text is None:
            return
        now = self.clock.now()
        hop = PathHop(
            post_id=self.cfg.node.post_id,
            hops=msg.hops,
            snr=msg.snr,
            rssi=msg.rssi,
            relay=self.nodes.relay_name(msg.relay_byte) if msg.relay_byte is not None else None,
            heard_at=now,
        )
        origin = node_id(msg.from_num)
        try:
            report = self.intake.build(
                text,
                origin=origin,
                source="meshtastic",
                report_id=mesh_report_id(msg.from_num, msg.packet_id, now),
                location=self.nodes.location(msg.from_num),
                path=(hop,),
                mesh_packet_id=msg.packet_id,
                channel=msg.channel if 0 <= msg.channel <= 7 else None,
                observed_at=now,
            )
            if msg.kind == "detection" and report.category == "lainnya":
                # The Detection Sensor is wired to the SOS button (firmware_config/handset.yaml).
                report = report.with_changes(category="sos", urgency="Immediate").validate()
        except (ReportError, ValueError) as exc:
            self.count("bad.text")
            log.warning("radio: text from %s not usable as a report: %s (%.60r)", origin, exc, text)
            return
        self._store_report(report)

    def _message_text(self, msg: MeshMessage) -> str | None:
        text = msg.text
        if text is None:
            salvaged = msg.payload.decode("utf-8", errors="replace")
            broken = salvaged.count("\ufffd")
            if salvaged and broken / len(salvaged) <= SALVAGE_MAX_BROKEN and any(c.isalnum() for c in salvaged):
                # An emergency text with a few damaged bytes is still an emergency: keep it, marked.
                self.count("bad.utf8_salvaged")
                log.warning("radio: invalid UTF-8 from %s, kept with replacement characters", node_id(msg.from_num))
                text = salvaged
            else:
                self.count("bad.utf8")
                log.warning(
                    "radio: %s payload from %s is not UTF-8 text (%d bytes: %.40r); ignored",
                    msg.kind,
                    node_id(msg.from_num),
                    len(msg.payload),
                    msg.payload,
                )
                return None
        if "\x00" in text:
            text = text.replace("\x00", "")
        if not text.strip():
            self.count("ignored.empty")
            return None
        return text

    def submit(self, report: Report) -> PutResult:
        """A report typed in at the post (the operator console): stored durably, then the uplink woken.

        Unlike a radio report it is never held in memory: the officer is looking at the page and must see
        at once that it was not stored (raises :class:`StoreError`), not "tersimpan"."""
        assert self.store is not None
        result = self.store.put(report)
        self._after_put(result, report)
        return result

    def _store_report(self, report: Report) -> PutResult | None:
        """``store.put`` and what follows it; None when the disk refused it (held in memory, retried)."""
        assert self.store is not None
        try:
            result = self.store.put(report)
        except StoreError as exc:
            self.count("store.errors")
            self._hold(report)
            log.error("STORE FAILED for report %s (%s): kept in memory, retrying", report.report_id, exc)
            return None
        self._after_put(result, report)
        return result

    def _hold(self, report: Report, *, first: bool = False) -> None:
        """Keep an unstored report for the retry timer (``first``: it was the oldest already).

        Past :data:`UNSTORED_MAX` the oldest is dropped, never silently: a lost emergency report must
        show in the log and in the ``store.dropped`` counter.  (The radio thread and the main loop's
        retry both get here: one lock, so a retry never pops a report other than the one it stored.)
        """
        with self._unstored_lock:
            if first:
                self._unstored.appendleft(report)
            else:
                self._unstored.append(report)
            dropped = self._unstored.popleft() if len(self._unstored) > UNSTORED_MAX else None
            held = len(self._unstored)
        if self._runtime.get("held") != held:
            self._write_runtime(held=held)
        if dropped is not None:
            self.count("store.dropped")
            log.error(
                "STORE FAILED and %d reports already held in memory: report %s DROPPED (lost)",
                UNSTORED_MAX,
                dropped.report_id,
            )

    def _after_put(self, result: PutResult, report: Report) -> None:
        if self.stored_hook is not None:
            try:
                self.stored_hook(result, report)
            except Exception:
                log.exception("stored_hook failed")
        if not result.created:
            self.count("reports.copies")
            log.info("report #%s heard again (copy %d): %s", report.ref, result.copies, result.report_id)
            return
        self.count("reports.created")
        self.count("reports.verified" if report.verified else "reports.unverified")
        log.info(
            "report #%s %s from %s%s stored (%s, %s)",
            report.ref,
            report.category.upper(),
            report.origin,
            "" if report.verified else " (unregistered radio)",
            report.loc_source,
            result.report_id,
        )
        if self.uplink is not None:
            try:
                self.uplink.wake()
            except Exception:
                log.exception("uplink.wake failed")
        if self.relay is not None:
            # a post without uplink hands the report on at once, not at the engine's next idle turn (5 s)
            self.relay.wake()
        self._queue_post_receipt(report)
        self._tnc_receipt(report, post_receipt_text(self.cfg.node.name, report.ref, report.category))

    def retry_unstored(self) -> None:
        """The ``unstored_retry`` job: store the reports held in memory while the disk refused them."""
        if self.store is None:
            return
        while True:
            with self._unstored_lock:
                if not self._unstored:
                    return
                report = self._unstored.popleft()
            try:
                result = self.store.put(report)
            except StoreError:
                self._hold(report, first=True)
                return
            with self._unstored_lock:
                held = len(self._unstored)
            self._write_runtime(held=held)
            log.info("report %s stored on retry", report.report_id)
            self._after_put(result, report)

    # ------------------------------------------------------------------ TNC events (tnc-link thread)
    def _tnc_state(self, connected: bool) -> None:
        self._write_runtime(tnc="connected" if connected else "disconnected")

    def handle_tnc(self, event: aprs.AprsEvent) -> None:
        """One event heard through the TNC (edge/tnc.py calls this in arrival order)."""
        tnc = self.tnc
        if tnc is None:
            return
        if isinstance(event, aprs.AprsPosition):
            # newest last; a busy APRS channel hears many stations: the oldest are forgotten past the bound
            self._stations.pop(event.source, None)
            self._stations[event.source] = (event.lat, event.lon, event.ambiguity_m, time.monotonic())
            if len(self._stations) > STATIONS_MAX:
                del self._stations[next(iter(self._stations))]
        elif isinstance(event, aprs.AprsMessage):
            if not tnc.addressed_to_us(event.addressee):
                self.count("tnc.ignored.not_ours")
                return
            if self.cfg.node.role == "relay":
                self.count("ignored.relay_role")
                return
            self._on_aprs_message(tnc, event)
        elif isinstance(event, aprs.TouchTone):
            if self.cfg.node.role == "relay":
                self.count("ignored.relay_role")
                return
            self._on_touch_tone(tnc, event)
        elif isinstance(event, aprs.AprsAck):
            self.count("tnc.rx_acks")  # our receipts go without an id: nothing waits for these
        else:
            log.debug("tnc: %s from %s ignored", event.reason, event.source)

    def _aprs_report_id(self, msg: aprs.AprsMessage) -> str:
        now_s = time.monotonic()
        while self._aprs_seen and next(iter(self._aprs_seen.values()))[1] < now_s - APRS_RETRY_WINDOW_S:
            self._aprs_seen.popitem(last=False)
        day = self.clock.now().astimezone(UTC).strftime("%Y%m%d")
        if msg.msg_id is None:
            # no id, no retries; the same text heard twice (direct and via a digipeater) is one report
            digest = hashlib.sha256(f"{msg.source}\n{msg.text}".encode()).hexdigest()[:10]
            return f"aprs-{msg.source}-h{digest}-{day}"
        key = (msg.source, msg.msg_id)
        seen = self._aprs_seen.get(key)
        report_id = seen[0] if seen is not None else f"aprs-{msg.source}-{msg.msg_id}-{day}"
        self._aprs_seen[key] = (report_id, now_s)
        self._aprs_seen.move_to_end(key)
        return report_id

    def _on_aprs_message(self, tnc: TncBridge, msg: aprs.AprsMessage) -> None:
        assert self.intake is not None
        text = msg.text.replace("\x00", "")
        if not text.strip():
            self.count("tnc.ignored.empty")
        else:
            location = None
            heard = self._stations.get(msg.source)
            if heard is not None:
                age = time.monotonic() - heard[3]
                if age <= tnc.cfg.position_max_age_s:
                    location = Location(heard[0], heard[1], "handset-last-fixed", max(heard[2], 30.0), int(age))
            now = self.clock.now()
            try:
                report = self.intake.build(
                    text,
                    origin=msg.source,
                    source="serial",
                    report_id=self._aprs_report_id(msg),
                    location=location,
                    path=(PathHop(post_id=self.cfg.node.post_id, heard_at=now),),
                    observed_at=now,
                )
            except (ReportError, ValueError) as exc:
                self.count("tnc.bad.text")
                log.warning("tnc: message from %s not usable as a report: %s (%.60r)", msg.source, exc, text)
                return
            if self._store_report(report) is None:
                return  # not durable: no ack, so the station repeats it (and we try again)
        if msg.msg_id is not None and tnc.send_aprs(aprs.ack_info(msg.source, msg.msg_id), "ack", PRIORITY_ACK):
            self.count("tnc.acks_queued")

    def _on_touch_tone(self, tnc: TncBridge, tone: aprs.TouchTone) -> None:
        assert self.intake is not None
        table = self.touch_tones
        keys = clean_keys(tone.keys)
        decoded = decode(table, tone.keys) if table is not None else None
        now = self.clock.now()
        try:
            if isinstance(decoded, Decoded):
                village, officer = decoded.village, decoded.officer
                location = None
                if village.lat is not None and village.lon is not None:
                    location = Location(village.lat, village.lon, "operator", accuracy_m=2000.0)
                text = f"{decoded.category.upper()} desa {village.name} (kode nada {keys}, petugas {officer.name})"
                report = self.intake.build(
                    text,
                    origin=f"dtmf:{keys}",
                    source="serial",
                    report_id=new_report_id(),
                    location=location,
                    path=(PathHop(post_id=self.cfg.node.post_id, heard_at=now),),
                    observed_at=now,
                )
                # the code says what happened: it wins over what the words of the text suggest
                report = report.with_changes(
                    category=decoded.category,
                    urgency="Immediate" if decoded.category == "sos" else report.urgency,
                    area_desc=village.name,
                    callback=Callback(officer=officer.name, village=village.name, phone=officer.phone or None),
                ).validate()
            else:
                reason = decoded.reason if decoded is not None else "tidak ada tabel kode (radio.tnc.touch_tone_file)"
                text = f"KODE NADA TIDAK TERBACA: {keys} ({reason})"
                report = (
                    self.intake.build(
                        text,
                        origin=f"dtmf:{keys}",
                        source="serial",
                        report_id=new_report_id(),
                        path=(PathHop(post_id=self.cfg.node.post_id, heard_at=now),),
                        observed_at=now,
                    )
                    .with_changes(category="lainnya")
                    .validate()
                )
                self.count("tt.unreadable")
                log.warning("tnc: touch-tone code %r unreadable (%s): kept as a report", keys, reason)
        except (ReportError, ValueError) as exc:
            self.count("tt.bad")
            log.error("tnc: touch-tone code %r could not become a report: %s", keys, exc)
            return
        if self._store_report(report) is None:
            return
        self.count("tt.decoded" if isinstance(decoded, Decoded) else "tt.unreadable_stored")
        # direwolf keys "R" (received) or "?" (say again) in Morse: a keypad radio has no other display
        if tnc.send_morse("R" if isinstance(decoded, Decoded) else "?"):
            self.count("tnc.morse_queued")

    def _tnc_receipt(self, report: Report, text: str) -> bool:
        """A receipt as an APRS message to the station that sent ``report`` (callsign origins only)."""
        tnc = self.tnc
        if tnc is None or report.source != "serial" or not tnc.cfg.receipts or report.origin.startswith("dtmf:"):
            return False
        return tnc.send_aprs(aprs.message_info(report.origin, text), "receipt", PRIORITY_RECEIPT)

    # ------------------------------------------------------------------ receipts
    def _receipts_on(self) -> bool:
        mesh = self.cfg.radio.meshtastic
        return mesh is not None and mesh.receipts and self.outbox is not None

    def _reply_channel(self, report: Report | None) -> int:
        mesh = self.cfg.radio.meshtastic
        if report is not None and report.channel is not None:
            return report.channel
        return mesh.channels[0] if mesh is not None else 0

    def _queue_post_receipt(self, report: Report) -> None:
        self._queue_receipt(report, "post", post_receipt_text(self.cfg.node.name, report.ref, report.category))

    def _queue_center_receipt(self, report: Report, when: datetime) -> None:
        self._queue_receipt(report, "center", center_receipt_text(report.ref, when, self.cfg.node.timezone))

    def _queue_receipt(self, report: Report, which: str, text: str) -> None:
        """One receipt (``post`` or ``center``) to the handset that sent ``report``, at most once."""
        if not self._receipts_on() or not report.origin.startswith("!"):
            return
        assert self.outbox is not None
        rid = report.report_id
        self.outbox.submit(
            Outgoing(
                key=f"{which}:{rid}",
                dest=int(report.origin[1:], 16),
                text=text,
                channel=self._reply_channel(report),
                on_state=lambda state: self._receipt_state(rid, which, state),
            )
        )

    def _receipt_state(self, report_id: str, which: str, state: str) -> None:
        if state != "sending":
            self.count(f"receipts.{which}.{state}")
        if self.store is not None:
            self.store.set_receipt(report_id, which, state)  # in memory until the store's next commit

    def _resume_receipts(self) -> None:
        """Receipts not known to have gone out before a restart (at least once: see the module docstring)."""
        assert self.store is not None
        if not self._receipts_on():
            return
        now = self.clock.now()
        resumed = 0
        for row in self.store.list_reports(limit=5000):
            if row.carried:
                continue
            report = row.report
            if report.source != "meshtastic" or not report.origin.startswith("!"):
                continue
            if (
                row.receipt_post is None
                and self.store.age_s(row.boot_id, row.boot_stored, row.stored_ts) <= RESUME_WINDOW_S
            ):
                self._queue_post_receipt(report)
                resumed += 1
            if (
                row.state == "delivered"
                and row.receipt_center is None
                and row.delivered_ts is not None
                and now.timestamp() - row.delivered_ts <= RESUME_WINDOW_S
            ):
                self._queue_center_receipt(report, datetime.fromtimestamp(row.delivered_ts, UTC))
                resumed += 1
        if resumed:
            log.info("%d receipts from before the restart are still to be sent", resumed)

    # ------------------------------------------------------------------ uplink events (uplink threads)
    def on_delivered(self, report_ids: list[str], committed_at: datetime | None = None) -> None:
        """The center committed these reports (the store is already updated): second receipt.

        The time in it is the center's commit time when the ack carries one: the post's own clock may be
        years off (no RTC), the center's is kept right."""
        if self.store is None:
            return
        now = committed_at or self.clock.now()
        carried = False
        for row in self.store.get_many(list(report_ids)):
            if row.carried:
                carried = True  # never a handset receipt for another post's report; its ack walks back
                continue
            report = row.report
            if row.receipt_center is not None:
                continue
            if report.source == "serial":
                if self._tnc_receipt(report, center_receipt_text(report.ref, now, self.cfg.node.timezone)):
                    self.store.set_receipt(report.report_id, "center", "sent")
                continue
            if report.source != "meshtastic":
                continue
            self._queue_center_receipt(report, now)
        if carried and self.relay is not None:
            self.relay.wake()  # store.ack owed the previous hops a CENTER_ACK in the same commit

    def _relay_delivered(self, report_ids: list[str], committed_at: datetime) -> None:
        """The center's ack walked back over the mesh to this origin post: the officer's second receipt."""
        self.on_delivered(report_ids, committed_at)

    def _relay_reply(self, reply: codec.Reply) -> None:
        """A staff reply walked back over the mesh to this origin post: to the handset as a direct one is
        (its destination is the handset that sent the report, from this post's own store)."""
        self.on_command({"cmd_id": reply.cmd_id, "type": "reply", "report_id": reply.report_id, "text": reply.text})

    def _carry_reply(self, command: dict[str, Any], origin: str) -> None:
        """A reply for another post's handset (its report reached the center only through us): committed
        for the relay engine, which sends it back along the report's previous hops (docs/RELAY.md).  The
        center sees "received" (published by the uplink); what happens on the mesh stays on the mesh."""
        cmd_id, rid = command["cmd_id"], command.get("report_id") or ""
        text = command.get("text")
        if self.relay is None or self.store is None or not isinstance(text, str):
            log.warning("reply %s for post %s not carried: no relay at this post", cmd_id, origin)
            self._reply_state(cmd_id, rid, "failed")
            return
        try:
            state = self.store.relay_reply_put(cmd_id, origin, rid, text, own=False)
        except StoreError as exc:
            # not recorded: the uplink marks the cmd handled only after this returns, so a raise here would
            # not bring it back either; the center sees "failed" and staff can send it again
            log.error("reply %s for post %s not kept: %s", cmd_id, origin, exc)
            self._reply_state(cmd_id, rid, "failed")
            return
        if state == "failed":
            log.warning("reply %s for post %s: report %s is not held here; no way back", cmd_id, origin, rid)
            self._reply_state(cmd_id, rid, "failed")
            return
        log.info("reply %s for post %s goes back over the mesh (%s)", cmd_id, origin, state)
        self.count("replies.carried")
        self.relay.wake()

    def on_command(self, command: dict[str, Any]) -> None:
        """A validated command from the center; ``reply`` becomes a DM ``112: <text>`` to the handset, or,
        for another post's handset (``origin``), goes back to that post over the mesh."""
        cmd_id = command.get("cmd_id")
        report_id = command.get("report_id")
        if not isinstance(cmd_id, str) or not cmd_id:
            log.warning("command without cmd_id ignored: %.100r", command)
            return
        if command.get("type") != "reply":
            log.warning("command %s of unknown type %r ignored", cmd_id, command.get("type"))
            return
        origin = command.get("origin")
        if isinstance(origin, str) and origin != self.cfg.node.post_id:
            self._carry_reply(command, origin)
            return
        if cmd_id in self._seen_commands:
            log.info("command %s already handled", cmd_id)
            return
        self._seen_commands[cmd_id] = None
        while len(self._seen_commands) > SEEN_COMMANDS_MAX:
            self._seen_commands.popitem(last=False)
        rid = report_id if isinstance(report_id, str) else ""
        to = command.get("to")
        text = command.get("text")
        if self.store is not None and isinstance(text, str) and text.strip():
            # the console shows every reply from 112, whether or not a radio can carry it to a handset
            try:
                self.store.add_message(cmd_id, rid or None, to if isinstance(to, str) else None, text)
            except StoreError as exc:
                log.error("reply %s not kept for the console: %s", cmd_id, exc)
        report = None
        if self.store is not None and rid:
            stored = self.store.get(rid)
            report = stored.report if stored is not None else None
        if not to and report is not None and report.origin.startswith("!"):
            to = report.origin
        problem = None
        if not isinstance(to, str) or len(to) != 9 or not to.startswith("!"):
            problem = f"invalid destination {to!r}"
        elif not isinstance(text, str) or not text.strip():
            problem = "empty text"
        elif self.outbox is None:
            problem = "no radio at this post"
        if problem is not None:
            log.warning("reply %s not sent: %s", cmd_id, problem)
            self._reply_state(cmd_id, rid, "failed")
            return
        assert isinstance(to, str) and isinstance(text, str) and self.outbox is not None
        try:
            dest = int(to[1:], 16)
        except ValueError:
            self._reply_state(cmd_id, rid, "failed")
            return
        mapping = {"sent": "sent", "acked": "delivered", "failed": "failed"}

        def on_state(state: str) -> None:
            self.count(f"replies.{state}")
            if state in mapping:
                self._reply_state(cmd_id, rid, mapping[state])
            elif state == "relayed":
                log.info("reply %s left the post but the handset never acknowledged it", cmd_id)

        self.outbox.submit(
            Outgoing(
                key=f"reply:{cmd_id}",
                dest=dest,
                text=reply_text(text),
                channel=self._reply_channel(report),
                on_state=on_state,
            )
        )

    def _reply_state(self, cmd_id: str, report_id: str, state: str) -> None:
        if self.uplink is None:
            return
        try:
            self.uplink.publish_reply_state(cmd_id, report_id, state)
        except Exception:
            log.exception("publish_reply_state failed")


class _Flags:
    """What the signal handlers may touch: one attribute, nothing else."""

    def __init__(self) -> None:
        self.signum: int | None = None


def _tuning_for(watchdog_s: float | None) -> RadioTuning | None:
    """A radio reader stuck for longer than systemd's watchdog limit counts as stuck: an operator who
    shortens ``WatchdogSec`` (a drop-in) gets a stuck reader restarted that much sooner.  The shipped unit
    (60 s) keeps :data:`STUCK_AFTER_S`."""
    if not watchdog_s or watchdog_s >= STUCK_AFTER_S:
        return None
    return RadioTuning(stuck_after_s=watchdog_s)


def run_daemon(cfg: Config, *, clock: Clock | None = None, stop_event: threading.Event | None = None) -> int:
    """Run the post until SIGTERM/SIGINT (or ``stop_event``); 0 after a clean stop."""
    stop = stop_event or threading.Event()
    flags = _Flags()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        flags.signum = signum

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    notifier = Notifier()
    metrics: MetricsServer | None = None
    try:
        post = Post(cfg, clock=clock, radio_tuning=_tuning_for(notifier.watchdog_interval_s))
        post.start()
        watchdog = Watchdog(notifier, post.health_checks)
        try:
            if cfg.metrics.listen:
                registry = Registry()
                post.register_metrics(registry)
                metrics = MetricsServer(registry, cfg.metrics.listen)
                metrics.start()
            radio = post.radio.target if post.radio else "none"
            log.info("post %s running (radio: %s)", cfg.node.post_id, radio)
            notifier.ready(f"running, radio {radio}")
            watchdog.start()
            # everything periodic runs on the post's scheduler (edge/jobs.py): this thread only waits
            while flags.signum is None and not stop.is_set():
                stop.wait(0.5)
        finally:
            if flags.signum is not None:
                log.info("signal %d: stopping", flags.signum)
            notifier.stopping()
            started = time.monotonic()
            watchdog.stop()
            if metrics is not None:
                metrics.stop()
            post.stop()
            log.info("post stopped in %.1f s", time.monotonic() - started)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
