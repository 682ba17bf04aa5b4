"""Every periodic job of the post, in one table, run by one APScheduler scheduler on one thread.

:data:`JOBS` is the list: name → how often (from the configuration) → what it does.  Adding a job (the
relay's beacons, later) is one line there.  :class:`JobScheduler` runs a table against its owner — the
post daemon (:class:`edge.daemon.Post`, every job) or the sync test harness (devkit/harness/synctools.py,
:data:`UPLINK_JOBS` only: a post without radio still needs its heartbeat and its stale claims released).

Threads and the store.  The jobs run one at a time on the scheduler's single worker thread
(``siaga-jobs``); a job that overruns delays the next one and a missed run is coalesced, never stacked.
Who touches the post's store (edge/store.py serialises them all behind one lock, and SQLite's busy
timeout orders them against the CLI in another process):

* ``radio-in``: ``put`` of a report, the node table in memory;
* ``siaga-uplink`` (the drain): claim, ``mark_sent``, ``ack``, ``reject``, ``release``, meta;
* ``siaga-jobs`` (this module): ``release_stale``, ``retention``, ``flush`` (receipt states), the node
  table's ``save_nodes``, ``put`` of reports held in memory while the disk was full;
* ``siaga-outbox``: ``set_receipt`` (memory only, written by the next commit);
* the main thread: opening, ``release_all_claims`` and ``bump_boot_counter`` at start, ``close`` at stop
  (after the scheduler has stopped).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from edge.nodes import NODE_FLUSH_S
from edge.reserve import ensure_reserve
from siaga.config import Config, UplinkMqttConfig
from siaga.errors import SiagaError
from sync.uplink import prune_handled_commands

if TYPE_CHECKING:
    from edge.nodes import NodeTable
    from edge.store import Store
    from sync.uplink import Uplink

log = logging.getLogger(__name__)

#: Receipt states not yet written by another commit are written this often (a crash loses at most these).
RECEIPT_FLUSH_S = 300.0
#: Delivered reports past ``store.retention_days`` are deleted this often, the first time soon after start
#: (a post restarted every few hours still prunes).
RETENTION_EVERY_S = 6 * 3600.0
RETENTION_FIRST_S = 600.0
#: Reports held in memory (disk full) are tried again, and the runtime state file refreshed, this often.
HOUSEKEEPING_S = 0.5
#: The relay's routes and custody are written to the runtime state file (``siaga status``) this often.
RELAY_STATE_S = 5.0


class UplinkOwner(Protocol):
    """What the uplink's jobs need of their owner."""

    @property
    def uplink(self) -> Uplink | None: ...


class PostParts(UplinkOwner, Protocol):
    """What every job of the post needs: the daemon's :class:`edge.daemon.Post`."""

    @property
    def cfg(self) -> Config: ...

    @property
    def store(self) -> Store | None: ...

    @property
    def nodes(self) -> NodeTable | None: ...

    def retry_unstored(self) -> None: ...

    def refresh_runtime(self) -> None: ...

    def refresh_relay_state(self) -> None: ...


T = TypeVar("T", contravariant=True)


@dataclass(frozen=True)
class Job(Generic[T]):
    """``every_s(cfg)`` is the interval (None: the job has nothing to do on this post); ``run(owner)`` the
    work; ``first_s`` the delay of the first run (default: one interval)."""

    name: str
    every_s: Callable[[Config], float | None]
    run: Callable[[T], None]
    first_s: float | None = None


def _uplink_every(pick: Callable[[UplinkMqttConfig], float]) -> Callable[[Config], float | None]:
    return lambda cfg: pick(cfg.uplink.mqtt) if cfg.uplink.mqtt is not None else None


def _stale_every(mqtt: UplinkMqttConfig) -> float:
    # a quarter of the ack timeout (an unacknowledged report goes again at most a quarter of it late),
    # at least every 30 s and at most every second
    return max(1.0, min(30.0, mqtt.ack_timeout_s / 4))


def _heartbeat(owner: UplinkOwner) -> None:
    if owner.uplink is not None:
        owner.uplink.heartbeat()


def _release_stale(owner: UplinkOwner) -> None:
    if owner.uplink is not None:
        owner.uplink.release_stale()


def _retention(post: PostParts) -> None:
    if post.store is not None:
        post.store.retention(post.cfg.store.retention_days)
        prune_handled_commands(post.store)
        ensure_reserve(post.cfg.node.data_dir)  # made again once there is room (edge/reserve.py)


def _flush_receipts(post: PostParts) -> None:
    if post.store is not None:
        post.store.flush()


def _flush_nodes(post: PostParts) -> None:
    if post.nodes is not None:
        post.nodes.flush()


UPLINK_JOBS: tuple[Job[UplinkOwner], ...] = (
    Job("heartbeat", _uplink_every(lambda mqtt: mqtt.heartbeat_s), _heartbeat),
    Job("release_stale", _uplink_every(_stale_every), _release_stale),
)

JOBS: tuple[Job[PostParts], ...] = (
    *UPLINK_JOBS,
    Job("retention", lambda cfg: RETENTION_EVERY_S, _retention, first_s=RETENTION_FIRST_S),
    Job("receipt_flush", lambda cfg: RECEIPT_FLUSH_S, _flush_receipts),
    Job("node_flush", lambda cfg: NODE_FLUSH_S, _flush_nodes),
    Job("unstored_retry", lambda cfg: HOUSEKEEPING_S, lambda post: post.retry_unstored()),
    Job("runtime_state", lambda cfg: HOUSEKEEPING_S, lambda post: post.refresh_runtime()),
    Job("relay_state", lambda cfg: RELAY_STATE_S if cfg.relay.enabled else None, lambda p: p.refresh_relay_state()),
)

Owner = TypeVar("Owner")


class JobScheduler(Generic[Owner]):
    """One BackgroundScheduler running ``jobs`` against ``owner`` on a single worker thread."""

    def __init__(self, cfg: Config, owner: Owner, jobs: Sequence[Job[Owner]]) -> None:
        self._scheduler = BackgroundScheduler(
            daemon=True,
            executors={"default": ThreadPoolExecutor(1, pool_kwargs={"thread_name_prefix": "siaga-jobs"})},
            # a late run (the worker was busy) still runs, once; never two of one job at a time
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.names: list[str] = []
        now = datetime.now().astimezone()
        for job in jobs:
            every = job.every_s(cfg)
            if every is None:
                continue
            first = job.first_s if job.first_s is not None else every
            self._scheduler.add_job(
                _guarded(job, owner),
                "interval",
                seconds=every,
                id=job.name,
                name=job.name,
                next_run_time=now + timedelta(seconds=first),
            )
            self.names.append(job.name)

    def start(self) -> None:
        """Start the jobs (again: nothing; a job reaches its owner's parts when it runs, so an owner may
        replace its uplink meanwhile)."""
        if self._scheduler.running:
            return
        self._scheduler.start()
        log.debug("jobs scheduled: %s", ", ".join(self.names))

    def stop(self) -> None:
        """Wait for a running job, run nothing more."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)


def _guarded(job: Job[Owner], owner: Owner) -> Callable[[], None]:
    def run() -> None:
        # a job that fails (a full disk, a bug) is logged and runs again at its next time
        try:
            job.run(owner)
        except SiagaError as exc:  # a full or read-only disk: said once per run, tried again next time
            log.warning("job %s failed: %s", job.name, exc)
        except Exception:
            log.exception("job %s failed", job.name)

    return run
