"""The post's disk reserve: a file of zeros in ``node.data_dir``, kept while there is room, deleted when the
post could not otherwise start.

A post that stopped (a reboot, an update) and whose SD card filled up meanwhile — logs, a stray copy, a
camera dump — cannot open its store: SQLite needs a few pages for the WAL and the start's own writes (the
boot counter, released claims).  It would then not read the radio at all, and every report sent to it would
be lost.  With the reserve it starts: :class:`edge.daemon.Post` deletes the file when the store refuses to
open for a full disk, says so loudly, and runs; what then still does not fit is held in memory and retried,
as when the disk fills while the post runs.  The reserve is made again (retention job, and at each start)
once the disk has twice its size free, so it never takes the last free space itself.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

RESERVE_NAME = "disk-reserve"
#: Room for SQLite to open the store and run for a while (a report costs ~12 KiB of WAL: docs/PERFORMANCE.md).
RESERVE_BYTES = 4 * 1024 * 1024
_CHUNK = 1024 * 1024


def reserve_path(data_dir: Path) -> Path:
    return data_dir / RESERVE_NAME


def ensure_reserve(data_dir: Path, size: int = RESERVE_BYTES) -> bool:
    """Make the reserve if it is missing and the disk has ``2 × size`` free; True when it exists after."""
    path = reserve_path(data_dir)
    if path.exists() and path.stat().st_size >= size:
        return True
    try:
        st = os.statvfs(data_dir)
    except OSError:
        return False
    if st.f_bavail * st.f_frsize < 2 * size:
        return False
    tmp = path.with_suffix(".tmp")
    try:
        # written, not fallocated: a file system that cannot preallocate must still hand the blocks over
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            block = b"\0" * _CHUNK
            left = size
            while left > 0:
                left -= os.write(fd, block[: min(_CHUNK, left)])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not make the disk reserve %s: %s", path, exc)
        tmp.unlink(missing_ok=True)
        return False
    log.info("disk reserve %s made (%d MiB)", path, size // (1024 * 1024))
    return True


def release_reserve(data_dir: Path) -> int:
    """Delete the reserve; returns the bytes freed (0 when there was none)."""
    path = reserve_path(data_dir)
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return 0
    return size
