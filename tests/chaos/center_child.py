"""A center receiver as a child process that a fault test can pause (SIGSTOP) and kill (SIGKILL).

``python -m tests.chaos.center_child DB_URL BROKER_URL [DIE_AFTER_NEW_COMMITS]``: runs a CenterService on
its own storage and prints READY once connected.  With DIE_AFTER_NEW_COMMITS = N it SIGKILLs itself right
after the N-th storage commit *that stored a report it did not hold before* — after the commit, before that
batch's ack is published.  Counting only such commits (not every commit, as tests/center_proc.py does) is
what lands the fault by construction: a commit of redeliveries only (reports the post already has as
delivered) would leave nothing unacknowledged at the post, and the test would prove nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence

from center.service import CenterService
from center.storage import IncomingReport, IngestResult, open_storage
from devkit.harness.synctools import center_config


def main() -> None:
    db_url, broker_url = sys.argv[1], sys.argv[2]
    die_after = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    storage = open_storage(db_url)
    if die_after:
        real_ingest = storage.ingest
        new_commits = [0]

        def ingest(items: Sequence[IncomingReport]) -> list[IngestResult]:
            results = real_ingest(items)  # committed (fsync'd) when this returns
            if any(result.created for result in results):
                new_commits[0] += 1
                if new_commits[0] >= die_after:
                    os.kill(os.getpid(), signal.SIGKILL)
            return results

        storage.ingest = ingest  # type: ignore[method-assign]
    service = CenterService(center_config(db_url, [broker_url]), storage=storage, client_id="siaga-center-child")
    service.start()
    receiver = service.receiver
    if receiver is not None:
        receiver.wait_connected(60)
    print("READY", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    service.stop()
    storage.close()


if __name__ == "__main__":
    main()
