"""TNC ingest latency: APRS message audio written to direwolf → the report committed in SQLite.

Run: .venv/bin/python bench/tnc_ingest.py [--count 100] [--dir /var/tmp]

The real chain of tests/test_tnc_direwolf.py: each message is made into audio by ``gen_packets`` (before
the clock starts), t0 is taken just before the audio is written to direwolf's stdin, t1 when
``Post.stored_hook`` reports the commit (WAL, synchronous=FULL).  One message at a time (the next is written
when the previous is stored), so this is the latency of one report, not a throughput figure.  The audio is
written faster than real time: on air a message's audio itself lasts ~0.5-0.7 s at 1200 baud before
direwolf can decode it, which comes on top of these figures.  Transmit is off (acks are measured by the
tests, not here).
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devkit.harness.direwolf import Direwolf, available, packet_audio, silence  # noqa: E402
from edge.daemon import Post  # noqa: E402
from edge.tnc import TncTuning  # noqa: E402
from siaga import config as config_mod  # noqa: E402

TEXTS = ("BANJIR desa Oebubun 3 rumah", "KEBAKARAN rumah warga RT 03", "LONGSOR tutup jalan", "kecelakaan motor")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(count: int = 100, workdir: Path | None = None) -> dict[str, Any]:
    missing = available()
    if missing:
        raise RuntimeError(missing)
    with tempfile.TemporaryDirectory(prefix="siaga-bench-tnc-", dir=workdir) as tmp:
        root = Path(tmp)
        tnc = Direwolf(root / "direwolf").start()
        cfg = config_mod.from_dict(
            {
                "node": {"post_id": "bench", "data_dir": str(root / "data"), "lat": -9.45, "lon": 124.35},
                "radio": {"tnc": {"host": tnc.host}},
            }
        )
        post = Post(cfg, tnc_tuning=TncTuning(0.1, 0.2))
        stored = threading.Event()
        t1: list[float] = []

        def hook(result: Any, report: Any) -> None:
            t1.append(time.perf_counter())
            stored.set()

        post.stored_hook = hook
        post.start()
        latencies: list[float] = []
        try:
            assert post.tnc is not None and post.tnc.wait_connected(20)
            audio = [
                packet_audio(f"YB9ABC>APRS,WIDE1-1::SIAGA    :{TEXTS[n % len(TEXTS)]} #{n}{{{n}") + silence(0.3)
                for n in range(count)
            ]
            for clip in audio:
                stored.clear()
                t1.clear()
                assert tnc.proc is not None and tnc.proc.stdin is not None
                t0 = time.perf_counter()
                tnc.proc.stdin.write(clip)
                tnc.proc.stdin.flush()
                if not stored.wait(30):
                    raise RuntimeError(f"message {len(latencies)} never stored: {tnc.log_tail(400)}")
                latencies.append((t1[0] - t0) * 1000)
        finally:
            post.stop()
            tnc.stop()
    return {
        "count": count,
        "p50_ms": round(_pct(latencies, 0.50), 1),
        "p99_ms": round(_pct(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    res = measure(args.count, args.dir)
    print(
        f"tnc ingest (direwolf audio -> committed), {res['count']} messages: "
        f"p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, max {res['max_ms']} ms ({res['machine']})"
    )


if __name__ == "__main__":
    main()
