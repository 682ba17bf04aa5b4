"""The post's state as the officer and the center see it: queue, radio, uplink, last delivery.

The daemon publishes its live state (radio connected, uplink in use) to a small JSON file in its runtime
directory (tmpfs under systemd, so the SD card is not written); ``siaga status`` reads it beside the store.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from edge.store import Store
from siaga.config import Config

#: Life-safety work that waits longer than this needs the officer's attention.
PENDING_ALARM_S = 30 * 60
#: Less free space than this on the data directory's disk is worth the officer's attention.
DISK_LOW_BYTES = 50 * 1024 * 1024


#: The unit's ``RuntimeDirectory=siaga``.  The daemon under systemd writes its live state there; an officer's
#: shell has no ``$RUNTIME_DIRECTORY``, so ``siaga status`` looks there too (without it, status said "the
#: service is NOT running" beside a running daemon, seen under a real systemd: tests/test_nspawn.py).
SYSTEMD_RUNTIME_DIR = Path("/run/siaga")


def runtime_dir(cfg: Config) -> Path:
    env = os.environ.get("RUNTIME_DIRECTORY")
    return Path(env.split(":")[0]) if env else cfg.node.data_dir


def runtime_file(cfg: Config) -> Path:
    return runtime_dir(cfg) / "runtime.json"


def write_runtime(cfg: Config, state: dict[str, Any]) -> None:
    """Atomically replace the runtime state file (rename: a reader never sees half a file)."""
    path = runtime_file(cfg)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**state, "updated": time.time(), "pid": os.getpid()}), encoding="utf-8")
    os.replace(tmp, path)


def read_runtime(cfg: Config) -> dict[str, Any] | None:
    """The live state of a running daemon: this process's runtime directory, the unit's, then data_dir;
    a file left by a daemon that is gone counts as none."""
    candidates = [runtime_file(cfg), SYSTEMD_RUNTIME_DIR / "runtime.json", cfg.node.data_dir / "runtime.json"]
    for path in dict.fromkeys(candidates):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        pid = data.get("pid")
        if isinstance(pid, int) and not _alive(pid):
            continue
        return data
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def post_status(cfg: Config, store: Store) -> dict[str, Any]:
    counts = store.counts()
    oldest = store.oldest_pending_age_s()
    last_delivered = store.last_delivered_ts()
    runtime = read_runtime(cfg)
    attention: list[str] = []
    if runtime is None:
        attention.append("daemon_not_running")
    elif cfg.radio.meshtastic is not None and runtime.get("radio") != "connected":
        attention.append("radio_disconnected")
    held = int((runtime or {}).get("held") or 0)
    if held:
        attention.append("reports_held_in_memory")
    if oldest is not None and oldest > PENDING_ALARM_S:
        attention.append("reports_waiting_long")
    stalled_since = (runtime or {}).get("no_center_ack_since")
    no_center_ack_s = max(0.0, time.time() - stalled_since) if isinstance(stalled_since, int | float) else None
    if no_center_ack_s is not None:
        attention.append("center_not_acking")
    relay: dict[str, Any] | None = None
    if cfg.relay.enabled:
        summary = store.relay_summary()
        live = (runtime or {}).get("relay") if isinstance((runtime or {}).get("relay"), dict) else None
        relay = {**summary, "live": live}
        if summary["parked"]:
            attention.append("relay_parked")
        if live is not None and live.get("route") is None and (counts["pending"] or summary["held"]):
            attention.append("relay_no_route")
    disk = _disk(cfg)
    if disk is not None and disk["free_bytes"] < DISK_LOW_BYTES:
        attention.append("disk_low")
    return {
        "post_id": cfg.node.post_id,
        "name": cfg.node.name,
        "disk": disk,
        "queue": counts,
        "oldest_pending_age_s": oldest,
        "last_delivered_at": last_delivered,
        "daemon": runtime is not None,
        "radio": (runtime or {}).get("radio", "unknown"),
        "uplink": (runtime or {}).get("uplink"),
        "held_in_memory": held,
        "no_center_ack_s": no_center_ack_s,
        "relay": relay,
        "attention": attention,
    }


def _disk(cfg: Config) -> dict[str, int] | None:
    try:
        usage = shutil.disk_usage(cfg.node.data_dir)
    except OSError:
        return None
    return {"free_bytes": usage.free, "total_bytes": usage.total}


def post_title(name: str, post_id: str) -> str:
    """ "Pos Oebubun (oebubun)": the word "Pos" once, whether or not the configured name starts with it."""
    title = name if name.lower().startswith("pos ") or name.lower() == "pos" else f"Pos {name}"
    return f"{title} ({post_id})"


_ATTENTION_ID = {
    "disk_low": "Ruang disk hampir habis: laporan baru mungkin tidak bisa disimpan. Kosongkan ruang disk",
    "daemon_not_running": "Layanan siaga TIDAK berjalan (jalankan: systemctl start siaga)",
    "radio_disconnected": "Radio TIDAK terhubung: periksa kabel USB radio",
    "reports_held_in_memory": "Laporan TIDAK bisa disimpan (disk penuh?): ditahan di memori, hilang bila"
    " listrik padam. Kosongkan ruang disk sekarang",
    "reports_waiting_long": "Ada laporan menunggu lebih dari 30 menit: cari sinyal / periksa uplink",
    "relay_parked": "ALARM RELAY: laporan berhenti di pos ini setelah terlalu banyak lompatan (putaran rute?)."
    " Hubungi teknisi kabupaten",
    "center_not_acking": "Tersambung ke broker, tetapi pusat 112 TIDAK mengonfirmasi laporan: broker menerima"
    " laporan tanpa meneruskannya (periksa ACL broker) atau pusat tidak berjalan. Hubungi teknisi kabupaten",
    "relay_no_route": "Relay: tidak ada tetangga menuju uplink; laporan ditahan di pos ini sampai jalur ada",
}


def render_status(status: dict[str, Any]) -> str:
    q = status["queue"]
    last = status["last_delivered_at"]
    last_text = time.strftime("%d-%m-%Y %H:%M", time.localtime(last)) if last else "belum pernah"
    radio = {"connected": "terhubung", "disconnected": "TIDAK terhubung"}.get(status["radio"], "tidak diketahui")
    oldest = status["oldest_pending_age_s"]
    lines = [
        post_title(status["name"], status["post_id"]),
        f"  Radio          : {radio}",
        f"  Laporan menunggu: {q['pending'] + q['sent']}"
        f" (belum dikirim {q['pending']}, menunggu konfirmasi {q['sent']})",
        f"  Diterima 112   : {q['delivered']}   Ditolak: {q['rejected']}",
        f"  Terakhir ke 112: {last_text}",
        f"  Uplink sekarang: {status['uplink'] or 'tidak ada'}",
        f"  Laporan tertua menunggu: {_age(oldest)}",
    ]
    if status.get("no_center_ack_s") is not None:
        lines.append(f"  Tanpa konfirmasi pusat walau tersambung: {_age(status['no_center_ack_s'])}")
    disk = status.get("disk")
    if disk is not None:
        lines.append(f"  Ruang disk     : {_size(disk['free_bytes'])} bebas dari {_size(disk['total_bytes'])}")
    relay = status.get("relay")
    if relay is not None:
        lines.extend(_relay_lines(relay))
    if status["attention"]:
        lines.append("PERLU PERHATIAN:")
        lines.extend(f"  - {_ATTENTION_ID.get(a, a)}" for a in status["attention"])
    else:
        lines.append("Semua baik.")
    return "\n".join(lines)


def _relay_lines(relay: dict[str, Any]) -> list[str]:
    live = relay.get("live") or {}
    route = live.get("route")
    metric = live.get("metric")
    if route == "uplink":
        route_text = "uplink pos ini sendiri"
    elif route:
        route_text = f"lewat {route} ({metric} lompatan ke uplink)"
    else:
        route_text = "TIDAK ada (laporan ditahan)" if live else "tidak diketahui (layanan tidak berjalan)"
    lines = [
        "  Relay antar-pos:",
        f"    Jalur terbaik ke uplink: {route_text}",
        f"    Laporan pos lain dititipkan di sini: {relay['held']} (diteruskan {relay['passed']},"
        f" diterima 112 {relay['delivered']})",
        f"    Konfirmasi 112 yang masih harus diteruskan: {relay['center_acks_owed']}",
        f"    Balasan 112 yang masih harus diteruskan: {relay.get('replies_owed', 0)}",
        f"    Laporan diparkir (alarm): {relay['parked']}",
    ]
    if live:
        lines.append(
            f"    Pemakaian kanal radio: {live.get('airtime_share', 0) * 100:.1f} % per jam"
            f" (batas {live.get('airtime_cap', 0) * 100:.0f} %)"
        )
    neighbours = live.get("neighbours") or []
    lines.append(f"    Tetangga: {len(neighbours) or 'belum terdengar'}")
    for n in neighbours:
        metric_text = "tanpa jalur" if n.get("metric") == 255 else f"{n.get('metric')} lompatan"
        snr = n.get("snr")
        lines.append(
            f"      {n.get('post_id')} ({n.get('node')}): {metric_text}, terdengar {_age(n.get('heard_s_ago'))} lalu"
            + (f", SNR {snr:.1f} dB" if isinstance(snr, int | float) else "")
            + (" — DILEWATI (tidak menjawab)" if n.get("skipped") else "")
        )
    return lines


def _size(n: int) -> str:
    if n >= 1024**3:
        return f"{n / 1024**3:.1f} GiB"
    return f"{n / 1024**2:.0f} MiB"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60} menit {s % 60} detik"
    return f"{s // 3600} jam {s % 3600 // 60} menit"
