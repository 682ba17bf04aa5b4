"""A center receiver as a child process, for the fault tests.

``python -m devkit.harness.center_proc DB_URL BROKER_URL [KILL_AFTER_COMMITS] [--client-id ID]
[--stop-before-commit N] [--heartbeat-s S]``: runs a CenterService (receiver ``ID``, default
siaga-center-proc).

* KILL_AFTER_COMMITS: it SIGKILLs itself right after that many storage commits — after the commit, before
  the ack is published (the window the "center killed between commit and ack" test needs);
* ``--stop-before-commit N``: it SIGSTOPs itself as its Nth storage commit begins, holding the messages of
  that commit received but neither stored nor acknowledged; a test sees the stop (/proc state ``T``) and
  kills it there — a receiver killed mid-stream by construction, not by timing.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Sequence

from center.service import CenterService
from center.storage import IncomingReport, IngestResult, open_storage
from devkit.harness.synctools import center_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db_url")
    parser.add_argument("broker_url")
    parser.add_argument("kill_after", nargs="?", type=int, default=0)
    parser.add_argument("--client-id", default="siaga-center-proc")
    parser.add_argument("--stop-before-commit", type=int, default=0)
    parser.add_argument("--heartbeat-s", type=float, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.client_id} %(levelname)s %(name)s: %(message)s")
    storage = open_storage(args.db_url)
    if args.kill_after or args.stop_before_commit:
        real_ingest = storage.ingest
        commits = [0]

        def ingest(items: Sequence[IncomingReport]) -> list[IngestResult]:
            commits[0] += 1
            if commits[0] == args.stop_before_commit:
                os.kill(os.getpid(), signal.SIGSTOP)
            results = real_ingest(items)  # committed (fsync'd) when this returns
            if args.kill_after and commits[0] >= args.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            return results

        storage.ingest = ingest  # type: ignore[method-assign]
    service = CenterService(center_config(args.db_url, [args.broker_url]), storage=storage, client_id=args.client_id)
    if args.heartbeat_s is not None and service.receiver is not None:
        service.receiver._heartbeat_s = args.heartbeat_s  # a test's short heartbeat
    service.start()
    print("READY", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    service.stop()
    storage.close()


if __name__ == "__main__":
    main()
