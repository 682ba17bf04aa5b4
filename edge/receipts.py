"""What the post says back to an officer's handset, and the one queue every such message leaves through.

Texts (Bahasa Indonesia, ASCII, short: every byte costs airtime shared by the whole village):

* first receipt, once the report is on disk: ``112 POS OEBUBUN TERIMA #K7Q2 KEBAKARAN``
* second receipt, when the center has committed it: ``112 PUSAT TERIMA #K7Q2 14:05`` (post local time)
* a reply typed by 112 staff: ``112: <text>``

Receipts must air within :data:`RECEIPT_AIRTIME_MS` on LONG_FAST (siaga/airtime.py): that gives
:data:`RECEIPT_MAX_BYTES`.  A long post name is shortened first, then left out ("112 POS TERIMA #K7Q2
INFRASTRUKTUR"): the handset already shows which radio the message came from, while the reference and the
category are what the officer must read (a wrong category is worth a call).  A reply may use one whole
packet, PKI's extra bytes included.

:class:`Outbox` is the single sender: one thread, at most one text per ``min_interval_s`` (firmware NAKs a
client that sends texts faster than one per 2 s), want_ack on every message, our own ACK timers (the
library's ``onResponse`` keeps plain ACKs forever and never times out), retries with backoff after a
timeout or a retriable NAK.  It knows nothing of the library: it is given a ``send`` function (the radio
bridge's) and is told about ACK/NAKs through :meth:`Outbox.on_routing`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import re
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from siaga.airtime import max_text_bytes
from siaga.backoff import Backoff
from siaga.errors import RadioError
from siaga.report import REPLY_MAX_BYTES, REPLY_PREFIX

log = logging.getLogger(__name__)

#: A receipt goes out for every report, often while others are reporting too: it must free the channel
#: quickly.  700 ms on LONG_FAST is a 60-byte frame (the old 66-byte text took 887 ms).
RECEIPT_AIRTIME_MS = 700.0
#: Receipt texts stay within this many bytes: the longest that airs within the budget (PKI DMs are 12 B
#: longer on air; the budget is taken without them, as the post cannot know which handsets use PKI).
RECEIPT_MAX_BYTES = max_text_bytes(RECEIPT_AIRTIME_MS)
#: A post label trimmed to fewer characters than this says nothing: the receipt goes without it.
MIN_LABEL_CHARS = 4
#: What ``on_state`` is told: "sending" (about to go out the first time), "sent" (the radio took it),
#: then one of "acked", "relayed" (no ACK from the handset, but a neighbour rebroadcast it), "failed".
STATES = ("sending", "sent", "acked", "relayed", "failed")
#: NAKs that another attempt cannot fix.
FINAL_NAKS = frozenset(
    {
        "NO_INTERFACE",
        "NO_CHANNEL",
        "TOO_LARGE",
        "BAD_REQUEST",
        "NOT_AUTHORIZED",
        "PKI_UNKNOWN_PUBKEY",
        "PKI_SEND_FAIL_PUBLIC_KEY",
        "ADMIN_BAD_SESSION_KEY",
        "ADMIN_PUBLIC_KEY_UNAUTHORIZED",
    }
)
#: ACK/NAKs for packet ids we do not (yet) know, kept for a send() that has not returned yet.
EARLY_MAX = 64
#: The firmware refused before airing anything: try again later without spending a retry, this often.
MAX_RATE_LIMITED = 5
_NAME_PREFIX = re.compile(r"^(pos\s+)?(siaga\s+)?", re.IGNORECASE)


# ----------------------------------------------------------------------------------------- texts
def ascii_text(text: str) -> str:
    """Strip accents and anything a handset screen may not show; collapse whitespace."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    plain = "".join(ch if ch.isprintable() else " " for ch in plain)
    return " ".join(plain.split())


def post_label(post_name: str) -> str:
    """``"Pos Siaga Oebubun"`` → ``"OEBUBUN"``: the receipt already says POS."""
    name = ascii_text(post_name)
    stripped = _NAME_PREFIX.sub("", name).strip()
    return (stripped or name or "SIAGA").upper()[:20].strip()


def post_receipt_text(post_name: str, ref: str, category: str) -> str:
    tail = f"TERIMA #{ref} {ascii_text(category).upper()}"
    label = post_label(post_name)
    room = RECEIPT_MAX_BYTES - len(f"112 POS  {tail}")
    if len(label) > room:
        cut = label[: max(room, 0)]
        if label[len(cut)] != " " and " " in cut:
            cut = cut.rsplit(" ", 1)[0]  # whole words read better than a word cut short
        label = cut.strip() if len(cut.strip()) >= MIN_LABEL_CHARS else ""
    text = f"112 POS {label} {tail}" if label else f"112 POS {tail}"
    return _fit(text, RECEIPT_MAX_BYTES)


def center_receipt_text(ref: str, when: datetime, timezone: str) -> str:
    try:
        local = when.astimezone(ZoneInfo(timezone))
    except (KeyError, ValueError):  # an unknown zone name: fall back to WITA, the post's own region
        local = when.astimezone(ZoneInfo("Asia/Makassar"))
    return _fit(f"112 PUSAT TERIMA #{ref} {local:%H:%M}", RECEIPT_MAX_BYTES)


def reply_text(text: str) -> str:
    body = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return _fit(f"{REPLY_PREFIX}{body}", REPLY_MAX_BYTES)


def _fit(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore").rstrip()


# ----------------------------------------------------------------------------------------- the outbox
@dataclass
class Outgoing:
    """One message to a handset.  ``key`` makes it unique in the queue (e.g. ``post:<report_id>``).

    ``on_state`` receives "sending" (just before the first transmission), "sent", then one final
    "acked", "relayed" or "failed".
    """

    key: str
    dest: int
    text: str
    channel: int = 0
    on_state: Callable[[str], None] | None = None
    started: bool = False
    aired: bool = False
    attempts: int = 0
    rate_limited: int = 0
    relayed: bool = False
    last_error: str = ""
    packet_id: int | None = field(default=None, repr=False)
    deadline: float = field(default=0.0, repr=False)


class Outbox:
    """The post's single sender thread; see the module docstring."""

    def __init__(
        self,
        send: Callable[[int, str, int], int],
        *,
        ready: Callable[[], bool],
        min_interval_s: float,
        ack_timeout_s: float,
        retries: int,
        backoff_s: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._ready = ready
        self.min_interval_s = min_interval_s
        self.ack_timeout_s = ack_timeout_s
        self.retries = retries
        # first retry waits this long, then twice as long each time (``retries`` bounds it, so no cap)
        self.backoff_s = backoff_s if backoff_s is not None else max(2.0 * min_interval_s, 1.0)
        self._backoff = Backoff(self.backoff_s, math.inf)
        self._now = monotonic
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, Outgoing]] = []
        self._awaiting: dict[int, Outgoing] = {}
        self._keys: set[str] = set()
        self._seq = itertools.count()
        self._last_tx: float | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._notices: list[tuple[Outgoing, str]] = []
        self._early: dict[int, tuple[int, str]] = {}
        self.counts: Counter[str] = Counter()

    # ------------------------------------------------------------------ any thread
    def submit(self, item: Outgoing, delay: float = 0.0) -> bool:
        """Queue a message; False if one with the same key is already queued or in flight."""
        with self._cond:
            if item.key in self._keys or self._stopping:
                return False
            self._keys.add(item.key)
            heapq.heappush(self._due, (self._now() + delay, next(self._seq), item))
            self.counts["submitted"] += 1
            self._cond.notify_all()
        return True

    def on_routing(self, from_num: int, request_id: int, error: str, my_num: int | None) -> None:
        """An ACK/NAK from the radio (``meshtastic.receive.routing``) for one of our packets, or not."""
        with self._cond:
            item = self._awaiting.get(request_id)
            if item is None:
                # Maybe ours and faster than send() returning (the library sleeps after each write):
                # kept briefly for _transmit to pick up.
                self._early[request_id] = (from_num, error)
                while len(self._early) > EARLY_MAX:
                    del self._early[next(iter(self._early))]
                return
            self._routed(item, request_id, from_num, error)
        self._flush_notices()

    def _routed(self, item: Outgoing, request_id: int, from_num: int, error: str) -> None:
        if error == "NONE" and from_num != item.dest:
            # An implicit ACK (our radio heard a neighbour rebroadcast it): keep waiting for the
            # handset's own ACK until the timer runs out.
            item.relayed = True
            self.counts["implicit_acks"] += 1
            return
        del self._awaiting[request_id]
        if error == "NONE":
            self._finish(item, "acked")
        else:
            self._nak(item, from_num, error)
        self._cond.notify_all()

    def _nak(self, item: Outgoing, from_num: int, error: str) -> None:
        self.counts["naks"] += 1
        item.last_error = error
        log.info("outbox: %s NAK %s from !%08x (attempt %d)", item.key, error, from_num, item.attempts)
        if error == "RATE_LIMIT_EXCEEDED" and item.rate_limited < MAX_RATE_LIMITED:
            # refused before it was aired: not a spent attempt
            item.rate_limited += 1
            item.attempts -= 1
            self._schedule(item, 2.0 * max(self.min_interval_s, 1.0))
        elif error in FINAL_NAKS:
            self._finish(item, "failed")
        else:
            self._retry_or_fail(item)

    def pending(self) -> int:
        with self._cond:
            return len(self._due) + len(self._awaiting)

    def idle(self) -> bool:
        return self.pending() == 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="radio-out", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("outbox: sender thread still busy after %.1f s", timeout)
            self._thread = None
        left = self.pending()
        if left:
            log.info("outbox: %d messages not finished at stop (not resent after a restart)", left)

    def healthy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = self._now()
                self._expire(now)
                item = self._next_ready(now)
                if item is None and not self._notices:
                    self._cond.wait(self._wait_time(now))
            self._flush_notices()
            if item is not None:
                # the transmission itself is outside the lock: the library may take a while
                self._transmit(item)

    def _expire(self, now: float) -> None:
        for pid, item in list(self._awaiting.items()):
            if now >= item.deadline:
                del self._awaiting[pid]
                self.counts["timeouts"] += 1
                item.last_error = "timeout"
                log.info(
                    "outbox: %s not acknowledged within %.0f s (attempt %d)",
                    item.key,
                    self.ack_timeout_s,
                    item.attempts,
                )
                self._retry_or_fail(item)

    def _next_ready(self, now: float) -> Outgoing | None:
        if not self._due or self._due[0][0] > now:
            return None
        if self._last_tx is not None and now - self._last_tx < self.min_interval_s:
            return None
        if not self._ready():
            return None
        return heapq.heappop(self._due)[2]

    def _wait_time(self, now: float) -> float:
        times = [item.deadline for item in self._awaiting.values()]
        if self._due:
            due = self._due[0][0]
            if self._last_tx is not None:
                due = max(due, self._last_tx + self.min_interval_s)
            times.append(due)
        wait = min(times) - now if times else 5.0
        # while the radio is down nobody wakes us when it comes back: look again every half second
        return min(max(wait, 0.01), 0.5 if self._due else 5.0)

    def _transmit(self, item: Outgoing) -> None:
        if not item.started:
            item.started = True
            self._notify(item, "sending")
        try:
            packet_id = self._send(item.dest, item.text, item.channel)
        except RadioError as exc:
            # Not aired (link down, library refused): try again soon, without spending an attempt.
            with self._cond:
                self._last_tx = self._now()
                self.counts["send_errors"] += 1
                item.last_error = str(exc)
                log.warning("outbox: sending %s failed: %s; will retry", item.key, exc)
                self._schedule(item, max(self.backoff_s, 1.0))
                self._cond.notify_all()
            return
        with self._cond:
            now = self._now()
            self._last_tx = now
            item.attempts += 1
            first = not item.aired
            item.aired = True
            item.packet_id = packet_id
            item.deadline = now + self.ack_timeout_s
            self._awaiting[packet_id] = item
            self.counts["transmissions"] += 1
            early = self._early.pop(packet_id, None)
            if early is not None:
                self._routed(item, packet_id, *early)
        log.info("outbox: sent %s to !%08x as packet %08x (attempt %d)", item.key, item.dest, packet_id, item.attempts)
        if first:
            self._notify(item, "sent")
        self._flush_notices()

    def _retry_or_fail(self, item: Outgoing) -> None:
        if item.attempts <= self.retries:
            self.counts["retries"] += 1
            self._schedule(item, self._backoff.delay(item.attempts))
        else:
            self._finish(item, "relayed" if item.relayed else "failed")

    def _schedule(self, item: Outgoing, delay: float) -> None:
        heapq.heappush(self._due, (self._now() + delay, next(self._seq), item))

    def _finish(self, item: Outgoing, state: str) -> None:
        self._keys.discard(item.key)
        self.counts[state] += 1
        log.info("outbox: %s %s after %d attempt(s)", item.key, state, item.attempts)
        # called under our lock: the callback (a store write, an MQTT publish) runs after it is released
        self._notices.append((item, state))

    def _flush_notices(self) -> None:
        with self._cond:
            notices, self._notices = self._notices, []
        for item, state in notices:
            self._notify(item, state)

    def _notify(self, item: Outgoing, state: str) -> None:
        if item.on_state is None:
            return
        try:
            item.on_state(state)
        except Exception:
            log.exception("outbox: state callback for %s failed", item.key)
