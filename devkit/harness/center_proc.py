"""A center receiver as a child process, for the fault tests.

``python -m devkit.harness.center_proc DB_URL BROKER_URL [KILL_AFTER_COMMITS]``: runs a CenterService; with
KILL_AFTER_COMMITS it SIGKILLs itself right after that many storage commits — after the commit, before the
ack is published (the window the "center killed between commit and ack" test needs).
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
    kill_after = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    storage = open_storage(db_url)
    if kill_after:
        real_ingest = storage.ingest
        commits = [0]

        def ingest(items: Sequence[IncomingReport]) -> list[IngestResult]:
            results = real_ingest(items)  # committed (fsync'd) when this returns
            commits[0] += 1
            if commits[0] >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            return results

        storage.ingest = ingest  # type: ignore[method-assign]
    service = CenterService(center_config(db_url, [broker_url]), storage=storage, client_id="siaga-center-proc")
    service.start()
    print("READY", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    service.stop()
    storage.close()


if __name__ == "__main__":
    main()
