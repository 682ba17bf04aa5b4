"""Power cut while writing: the store keeps every acknowledged report when the disk loses unsynced writes.

SIGKILL alone (tests/chaos/test_store_crash.py) leaves the kernel's page cache intact, so it cannot tell a
store that fsyncs from one that does not.  Here the writer runs under ``dropsync.c`` (LD_PRELOAD), which
keeps beside every file of the data directory a shadow holding only what had been fsync'd; after SIGKILL
"the disk after the power cut" is built from the shadows alone and opened with :class:`Store`.

* ``test_power_cut_loses_nothing_acknowledged``: every report the writer announced (after ``put`` returned)
  is there exactly once and ``integrity_check`` is ok, round after round (each round's disk is the next
  round's start, as a post that reboots and carries on).
* ``test_torn_write_back_loses_nothing_acknowledged``: the same with a random prefix of the unsynced writes
  reaching the disk, the last one possibly cut at a 512-byte sector.
* ``test_negative_control_synchronous_normal_loses_reports``: the same writer with ``synchronous=NORMAL``
  (WAL commits not fsync'd) must lose acknowledged reports under the shim; if it did not, the shim would
  model nothing and the two tests above would prove nothing.
"""

from __future__ import annotations

import os
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.store import Store
from tests.conftest import REPO

pytestmark = pytest.mark.chaos

SHIM_SOURCE = Path(__file__).with_name("dropsync.c")
SECTOR = 512
#: Kill the writer this long (uniform, seconds) after its first acknowledgement.
KILL_AFTER_FIRST_ACK_S = (0.0, 0.6)
#: In rounds killed at a sync, the shim's kill is waited for this long after the first ack: not a speed
#: requirement (a busy machine syncs slowly), only a bound on a writer that hangs.
SYNC_KILL_DEADLINE_S = 120.0
#: The writer starts Python and opens the store before its first report: generous on a loaded machine.
FIRST_ACK_TIMEOUT_S = 60.0
_RECORD = struct.Struct("<IIQQ")  # struct rec in dropsync.c: kind, pad, offset (or new size), length


@pytest.fixture(scope="module")
def dropsync(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shim, compiled for this machine (gcc is on every CI runner and development machine)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        message = "gcc not found: the power-cut tests compile tests/chaos/dropsync.c and cannot run without it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("dropsync") / "dropsync.so"
    built = subprocess.run(
        [gcc, "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o", str(out), str(SHIM_SOURCE), "-ldl"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, f"dropsync.c does not compile:\n{built.stderr}"
    return out


@dataclass
class Round:
    kill: str  # when the writer died: "0.123 s after its first ack" or "as sync #N started"
    acked: list[str]
    disk: Path  # the data directory as the power cut left it
    dropped_bytes: int  # unsynced bytes the cut threw away (after a torn write-back: what it still lost)


def _new_store(directory: Path) -> Path:
    directory.mkdir(parents=True)
    path = directory / "post.db"
    Store.open(path).close()
    return path


def _run_writer(
    shim: Path,
    disk: Path,
    shadow: Path,
    prefix: str,
    rng: random.Random,
    synchronous: str = "FULL",
    kill_at_sync: int | None = None,
) -> tuple[str, list[str]]:
    """Run the writer under the shim and SIGKILL it: at a random moment after its first acknowledgement,
    or (``kill_at_sync``) as its N-th fsync starts, when everything since the previous one is unsynced."""
    shadow.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "LD_PRELOAD": str(shim),
        "DROPSYNC_DIR": str(disk),
        "DROPSYNC_SHADOW": str(shadow),
        "DROPSYNC_KILL_AT_SYNC": str(kill_at_sync or 0),
    }
    argv = [sys.executable, "-m", "tests.chaos.crash_writer", str(disk / "post.db"), prefix]
    proc = subprocess.Popen([*argv, "--synchronous", synchronous], stdout=subprocess.PIPE, env=env, cwd=REPO)
    assert proc.stdout is not None
    buffer = b""
    # at a sync: the shim kills it, whenever this machine gets there; the deadline only catches a hang
    kill_after = rng.uniform(*KILL_AFTER_FIRST_ACK_S) if kill_at_sync is None else SYNC_KILL_DEADLINE_S
    deadline = time.monotonic() + FIRST_ACK_TIMEOUT_S
    killed_at_sync = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.01)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    killed_at_sync = kill_at_sync is not None
                    break
                if b"\n" not in buffer and b"\n" in chunk:
                    deadline = time.monotonic() + kill_after  # first acknowledgement seen
                buffer += chunk
    finally:
        proc.send_signal(signal.SIGKILL)
        buffer += proc.stdout.read()
        proc.stdout.close()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the writer died by itself (exit {proc.returncode})"
    if kill_at_sync is not None:
        # the fault landed where it was aimed (as sync #N started), not by a timer elsewhere
        assert killed_at_sync, f"the writer did not reach its sync #{kill_at_sync} within {SYNC_KILL_DEADLINE_S:g} s"
    # only whole lines: a line cut by the kill was never fully announced
    acked = [line.decode() for line in buffer.split(b"\n")[:-1]]
    assert acked, f"the writer acknowledged nothing within {FIRST_ACK_TIMEOUT_S:g} s"
    if killed_at_sync:
        return f"as its sync #{kill_at_sync} started", acked
    return f"{kill_after:.3f} s after its first ack", acked


def _pending_ops(path: Path) -> list[tuple[int, int, bytes]]:
    """The unsynced writes/truncates the shim logged for one file: (kind, offset or size, data)."""
    raw = path.read_bytes() if path.exists() else b""
    ops = []
    pos = 0
    while pos + _RECORD.size <= len(raw):
        kind, _pad, off, length = _RECORD.unpack_from(raw, pos)
        pos += _RECORD.size
        if pos + length > len(raw):
            break  # the kill cut the log mid-record: that write never happened in full
        ops.append((kind, off, raw[pos : pos + length]))
        pos += length
    return ops


def _power_cut_disk(disk: Path, shadow: Path, out: Path, rng: random.Random | None) -> tuple[int, list[str]]:
    """Build the data directory after the power cut into ``out``; returns the unsynced bytes lost and,
    for a torn write-back, what each file kept ("post.db-wal 3/5+1536B": 3 of 5 unsynced writes, then
    1536 bytes of the 4th).

    Files the writer never opened are as they were.  A file it opened exists only if its directory entry
    was durable (``.exists``), with its content as of its last sync, plus (``rng`` given: torn
    write-back) a random prefix of its unsynced writes, the last cut at a sector.  The ``-shm`` file is
    dropped: it is SQLite's shared-memory wal-index, never synced and written through mmap (the shim cannot
    see those writes); the first connection after a crash takes the exclusive DMS lock, truncates the -shm
    and rebuilds the index from the WAL, so its content on disk never matters.
    """
    out.mkdir()
    lost = 0
    kept_notes = []
    for real in sorted(disk.iterdir()):
        name = real.name
        target = out / name
        if name.endswith("-shm"):
            continue
        if not (shadow / name).exists():
            shutil.copyfile(real, target)
            continue
        ops = _pending_ops(shadow / f"{name}.pending")
        lost += sum(len(data) for _kind, _off, data in ops)
        if not (shadow / f"{name}.exists").exists():
            continue
        content = bytearray((shadow / name).read_bytes())
        if rng is not None and ops:
            keep = rng.randint(0, len(ops))
            kept = list(ops[:keep])
            note = f"{name} {keep}/{len(ops)}"
            if keep < len(ops) and ops[keep][0] == 0 and len(ops[keep][2]) > SECTOR and rng.random() < 0.5:
                kind, off, data = ops[keep]
                kept.append((kind, off, data[: SECTOR * rng.randint(1, (len(data) - 1) // SECTOR)]))
                note += f"+{len(kept[-1][2])}B"
            kept_notes.append(note)
            for kind, off, data in kept:
                lost -= len(data)
                if kind == 0:
                    if len(content) < off:
                        content.extend(bytes(off - len(content)))
                    content[off : off + len(data)] = data
                else:
                    del content[off:]
                    content.extend(bytes(max(0, off - len(content))))
        target.write_bytes(bytes(content))
    return lost, kept_notes


def _stored_ids(disk: Path) -> list[str]:
    # check=False: a damaged file must fail this test, not be salvaged into a clean one
    with Store.open(disk / "post.db", check=False) as store:
        assert store.integrity_ok(), f"integrity_check failed on the disk after the power cut ({disk})"
        ids = [row.report_id for row in store.list_reports(limit=10_000_000)]
    assert not list(disk.glob("*.damaged-*"))
    return ids


def _power_cut_rounds(
    shim: Path, tmp_path: Path, rounds: int, seed: int, *, synchronous: str = "FULL", torn: bool = False
) -> list[tuple[Round, list[str]]]:
    """Rounds of write → kill → power cut → reopen, each starting on the previous round's disk.

    Returns each round with the reports of *that round* that were acknowledged but are not on the disk.
    """
    rng = random.Random(seed)
    tmp_path = tmp_path.resolve()  # SQLite opens files by their resolved path: the shim must watch that one
    disk = _new_store(tmp_path / "disk0").parent
    results = []
    for n in range(rounds):
        shadow = tmp_path / f"shadow{n}"
        # odd rounds die as a sync starts (everything since the last one unsynced: the worst moment).
        # Opening the store syncs 3 times (FULL) or twice (NORMAL); after that FULL syncs at every commit,
        # NORMAL only at checkpoints (2-3 syncs every ~225 reports here).
        kill_at_sync = None
        if n % 2:
            kill_at_sync = rng.randint(4, 400) if synchronous == "FULL" else rng.randint(3, 9)
        kill, acked = _run_writer(shim, disk, shadow, f"r{n}", rng, synchronous, kill_at_sync)
        # the shim was really in the writer: it tracked the WAL the writer created
        assert (shadow / "post.db-wal").exists(), "dropsync.so was not loaded into the writer"
        after = tmp_path / f"disk{n + 1}"
        dropped, kept = _power_cut_disk(disk, shadow, after, rng if torn else None)
        ids = _stored_ids(after)
        assert len(ids) == len(set(ids)), "a report is stored twice"
        present = set(ids)
        lost = [rid for rid in acked if rid not in present]
        results.append((Round(kill, acked, after, dropped), lost))
        print(
            f"round {n}: killed {kill}, {len(acked)} acked, {dropped} unsynced bytes dropped,"
            f" {len(lost)} acked lost, {len(ids)} on disk"
            + (f"; torn write-back kept {', '.join(kept)}" if kept else "")
        )
        disk = after
    return results


def test_power_cut_loses_nothing_acknowledged(dropsync: Path, tmp_path: Path, budget) -> None:
    results = _power_cut_rounds(dropsync, tmp_path, budget.pick(8, 50), seed=20261128)
    everything = [rid for r, _ in results for rid in r.acked]
    assert not [lost for _, lost in results if lost], [len(lost) for _, lost in results]
    final = set(_stored_ids(results[-1][0].disk))
    assert set(everything) <= final, "a report acknowledged in an earlier round vanished later"
    assert len(everything) > 100, "the writers did too little work between kills to prove anything"


def test_torn_write_back_loses_nothing_acknowledged(dropsync: Path, tmp_path: Path, budget) -> None:
    results = _power_cut_rounds(dropsync, tmp_path, budget.pick(8, 50), seed=112, torn=True)
    assert not [lost for _, lost in results if lost], [len(lost) for _, lost in results]
    everything = {rid for r, _ in results for rid in r.acked}
    assert everything <= set(_stored_ids(results[-1][0].disk))


def test_negative_control_synchronous_normal_loses_reports(dropsync: Path, tmp_path: Path, budget) -> None:
    """With the WAL not fsync'd at commit the same harness must see acknowledged reports vanish."""
    results = _power_cut_rounds(dropsync, tmp_path, budget.pick(8, 50), seed=7, synchronous="NORMAL")
    losses = [len(lost) for _, lost in results]
    assert sum(losses) > 0, (
        f"synchronous=NORMAL lost nothing in {len(results)} power cuts: the shim does not model a power cut"
    )
