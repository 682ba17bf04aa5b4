"""Every benchmark in one run: one table (measure, value, goal, naive/alternative, verdict) and a JSON file.

Run: .venv/bin/python -m bench [--json bench/results.json] [--quick] [--only airtime,center_ingest,...]
     (or .venv/bin/python bench/run_all.py with the same options)

Sections, in order (``--only`` / ``--skip`` take these names):

* ``airtime``        bench/mesh_airtime.py: time on air of every message the post sends (computed);
* ``center_ingest``  bench/center_ingest.py: center commits, SQLite and PostgreSQL, batched vs one per report;
* ``radio_ingest``   bench/radio_ingest.py: simulated radio → committed report, latency percentiles;
* ``sync``           bench/sync_drain.py: drain on loopback and over the slow link, recovery time;
* ``footprint``      bench/footprint.py: a real ``siaga run``: memory, idle CPU, disk bytes per report;
* ``relay_codec``    bench/relay_codec.py: the shared corpus in relay packets: sizes, one-packet fit, text
                     compression with the preset dictionary vs plain deflate vs raw UTF-8 (computed);
* ``relay``          bench/relay_mesh.py: the custody relay vs DIY text DMs with want_ack along a 4-post chain
                     at 0/10/30 % loss, one discrete-event mesh (simulated time): delivery, airtime per
                     report, time to deliver over 1/2/3 hops, duplicates, channel share.

The JSON file is merged, not rewritten: the sections run now replace their own entries and the others'
stay (each entry says when and how it ran); ``--fresh`` starts the file anew.  The printed table is this
run's sections; the file's ``table`` is every section it holds.

``--quick`` is a smoke run (a few hundred reports, a 10 s idle window, no slow link): it proves the suite
works, its figures are not the published ones.  A section that fails is reported as an error row and the
others still run; the exit code is 1 when any section failed or missed its goal.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import center_ingest, footprint, mesh_airtime, radio_ingest, relay_codec, relay_mesh, sync_drain  # noqa: E402

DEFAULT_JSON = ROOT / "bench" / "results.json"
SECTIONS = ("airtime", "center_ingest", "radio_ingest", "sync", "footprint", "relay_codec", "relay")

#: Sizes of each section: (full, quick).
PARAMS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "center_ingest": ({"n": 3000}, {"n": 300}),
    "radio_ingest": ({"count": 500, "rate": 50.0}, {"count": 100, "rate": 50.0}),
    "sync": (
        {"n": 10_000, "naive_n": 2000, "slow_n": 1000, "slow_naive_n": 30, "recovery": (1.0, 5.0, 15.0), "repeats": 3},
        {"n": 1000, "naive_n": 200, "skip_slow": True, "recovery": (1.0,), "repeats": 1},
    ),
    "footprint": ({"reports": 200, "idle_s": 60.0}, {"reports": 20, "idle_s": 10.0}),
    "relay": ({"per_origin": 100}, {"per_origin": 8}),
}

Row = dict[str, Any]


def row(measure: str, value: str, goal: str, alternative: str, verdict: str) -> Row:
    return {"measure": measure, "value": value, "goal": goal, "alternative": alternative, "verdict": verdict}


def _verdict(ok: bool | None) -> str:
    return "info" if ok is None else ("ok" if ok else "MISSED")


# ---------------------------------------------------------------------------- sections → rows
def rows_airtime(res: dict[str, Any]) -> list[Row]:
    out = []
    old = res["old_receipt"]
    for m in res["messages"]:
        goal = f"1 packet, ≤ {m['goal_ms']:.0f} ms" if m["goal_ms"] else "1 packet"
        alt = f"old receipt {old['airtime_ms']:.0f} ms" if m["kind"].startswith("post receipt") else ""
        value = f"{m['airtime_ms']:.0f} ms ({m['frame_bytes']} B on air; +PKI {m['airtime_pki_ms']:.0f} ms)"
        out.append(row(f"airtime: {m['kind']}", value, goal, alt, _verdict(m["ok"])))
    return out


def rows_center_ingest(res: dict[str, Any]) -> list[Row]:
    out = []
    for backend in ("sqlite", "postgresql"):
        r = res.get(backend)
        if not isinstance(r, dict):
            continue
        if "error" in r:
            out.append(row(f"center ingest ({backend})", "-", "> naive", "", f"error: {r['error'][:60]}"))
            continue
        before = r.get("paths", {}).get("before")
        # PostgreSQL's goal (issue 14): ≥ 5,000 reports/s committed, batched
        goal_rps = center_ingest.PG_GOAL_RPS if backend == "postgresql" else 0
        out.append(
            row(
                f"center ingest ({backend}, {r['reports_per_message']:g} reports/commit)",
                f"{r['batched_rps']:.0f} reports/s",
                f"≥ {goal_rps:,}/s" if goal_rps else "> naive",
                (f"before: {before['batched_rps']:.0f}/s; " if before else "")
                + f"1 tx/report: {r['naive_rps']:.0f}/s ({r['speedup']:.1f}x); group commit {r['grouped_rps']:.0f}/s",
                _verdict(
                    r["batched_rps"] > r["naive_rps"]
                    and r["batched_rps"] >= goal_rps
                    and r["stored"] == 3 * r["reports"]
                ),
            )
        )
    return out


def rows_radio_ingest(res: dict[str, Any]) -> list[Row]:
    by = {r["pipeline"]: r for r in res["pipelines"]}
    ours, naive, floor = by["siaga"], by["naive"], by["library only"]
    complete = ours["committed"] == ours["count"]
    p99 = ours["p99_ms"]
    return [
        row(
            f"radio ingest p99 ({res['count']} at {res['rate']:g}/s)",
            f"{p99:.1f} ms (p50 {ours['p50_ms']:.1f})" if p99 is not None else "-",
            "≤ 50 ms",
            f"naive p99 {naive['p99_ms']} ms; library alone {floor['p99_ms']} ms",
            _verdict(complete and p99 is not None and p99 <= 50.0),
        )
    ]


def rows_sync(res: dict[str, Any]) -> list[Row]:
    loop = res["loopback"]
    a, b, c = loop["ours"], loop["naive"], loop["raw_paho"]
    out = [
        row(
            f"drain loopback ({a['n']} reports)",
            f"{a['rps']:.0f} reports/s",
            "≥ 5x naive, ≥ 1x raw paho",
            f"naive {b['rps']:.0f}/s ({loop['ours_over_naive']:.1f}x); raw paho {c['rps']:.0f}/s "
            f"({loop['ours_over_raw']:.2f}x)",
            _verdict(loop["ours_over_naive"] >= 5 and loop["ours_over_raw"] >= 1),
        )
    ]
    slow = res.get("slow_link")
    if slow:
        z, n = slow["ours_zlib_cut"], slow["naive"]
        out.append(
            row(
                f"drain slow link, zlib, 5 s cut ({z['n']} reports)",
                f"{z['rps']:.1f} reports/s, {z['wire_bytes_per_report']:.0f} B/report",
                "≥ 5x naive",
                f"naive {n['rps']:.1f}/s, {n['wire_bytes_per_report']:.0f} B/report ({slow['ours_over_naive']:.0f}x); "
                f"zlib off {slow['ours_plain']['rps']:.1f}/s",
                _verdict(slow["ours_over_naive"] >= 5),
            )
        )
    for r in res["recovery"]:
        out.append(
            row(
                f"recovery, broker down {r['down_s']:g} s",
                f"{r['median_s']:.2f} s median (max {r['max_s']:.2f})",
                "≤ 3 s",
                "",
                _verdict(r["max_s"] <= 3.0),
            )
        )
    return out


def rows_footprint(res: dict[str, Any]) -> list[Row]:
    mem = res["memory_kib"]
    per_report = res["write_bytes_per_report"]
    return [
        row(
            "post memory (VmRSS / VmHWM)",
            f"{mem['VmRSS'] / 1024:.1f} / {mem['VmHWM'] / 1024:.1f} MiB",
            "-",
            f"after start {res['memory_after_start_kib']['VmRSS'] / 1024:.1f} MiB",
            "info",
        ),
        row(
            f"post idle CPU ({res['idle_window_s']:g} s window)",
            f"{res['idle_cpu_percent']:.2f} % of one core",
            "≤ 1 %",
            f"idle disk writes {res['idle_write_bytes_per_hour'] / 1024:.0f} KiB/h",
            _verdict(res["idle_cpu_percent"] <= 1.0),
        ),
        row(
            f"post disk written per report ({res['reports']} reports)",
            f"{per_report / 1024:.1f} KiB",
            "≤ 32 KiB",
            f"naive queue, every state its own commit: {res['naive_queue_bytes_per_report'] / 1024:.1f} KiB"
            f" (store file system {res['data_dir_fs']})",
            _verdict(per_report <= 32 * 1024),
        ),
    ]


def rows_relay_codec(res: dict[str, Any]) -> list[Row]:
    n, text, naive = res["reports"], res["text"], res["naive_json"]
    out = [
        row(
            f"relay packet size ({n} corpus reports)",
            f"median {res['size_median']:g} B, max {res['size_max']} B ({res['airtime_max_ms']:.0f} ms on air)",
            f"≤ {res['packet_budget']} B",
            f"report JSON as over MQTT: median {naive['median']:g} B (zlib'd {naive['zlib_median']:g} B)",
            _verdict(res["size_max"] <= res["packet_budget"]),
        ),
        row(
            "relay: reports in one packet, text whole",
            f"{res['fit_whole']}/{n}",
            f"{n}/{n}",
            f"JSON {naive['fit']}/{n}, zlib'd JSON {naive['zlib_fit']}/{n}",
            _verdict(res["fit_whole"] == n),
        ),
        row(
            "relay text: deflate + dictionary v1 / raw UTF-8",
            f"{text['ratio_codec']:.2f} ({text['codec_bytes']} of {text['raw_bytes']} B)",
            "< plain deflate",
            f"plain deflate {text['ratio_deflate']:.2f}; raw UTF-8 (text as a DM) 1.00",
            _verdict(text["ratio_codec"] < text["ratio_deflate"]),
        ),
    ]
    held = res.get("held_out_text")
    if held:
        out.append(
            row(
                f"relay text, held-out texts ({held['texts']})",
                f"{held['ratio_codec']:.2f}",
                "-",
                f"plain deflate {held['ratio_deflate']:.2f}",
                "info",
            )
        )
    return out


def _hops_latency(r: dict[str, Any]) -> str:
    parts = []
    for hops, x in r["latency_s"].items():
        parts.append(f"{hops}: {x['p50_s']:g}/{x['p95_s']:g}" if x["p50_s"] is not None else f"{hops}: -")
    return ", ".join(parts)


def rows_relay(res: dict[str, Any]) -> list[Row]:
    goals = res["goals"]
    out = []
    for run in res["runs"]:
        o, d = run["ours"], run["diy"]
        loss = f"{run['loss']:.0%} loss"
        n = o["reports"]
        out.append(
            row(
                f"relay delivered, {loss} ({n} reports over 1–3 hops)",
                f"{o['delivered']}/{n} at the uplink post, {o['receipts_at_origin']} receipts back; "
                f"{o['duplicates_at_center']} duplicates",
                "100 %, 0 duplicates",
                f"DIY DMs: {d['delivered']}/{n}, {d['duplicates_at_end']} duplicates",
                _verdict(o["delivered"] == n and o["duplicates_at_center"] == 0),
            )
        )
        out.append(
            row(
                f"relay airtime per report per hop, {loss}",
                f"{o['airtime_s_per_report_hop']} s ({o['airtime_s_per_report']} s/report; reports, CACKs, center "
                f"acks, beacons)",
                f"≤ {goals['airtime_s_per_report_hop']} s",
                f"DIY: {d['airtime_s_per_report_hop']} s ({d['airtime_s_per_report']} s/report; tries + firmware ACKs)",
                _verdict(
                    o["airtime_s_per_report_hop"] is not None
                    and o["airtime_s_per_report_hop"] <= goals["airtime_s_per_report_hop"]
                ),
            )
        )
        out.append(
            row(
                f"relay time to the uplink post, {loss} (hops: p50/p95 s)",
                _hops_latency(o),
                "-",
                f"DIY (what arrived): {_hops_latency(d)}",
                "info",
            )
        )
        share = max(o["max_hour_share"].values())
        out.append(
            row(
                f"relay channel share, busiest post and hour, {loss}",
                f"{share:.1%} (CACKs included: {max(o['max_hour_share_all'].values()):.1%})",
                f"< {goals['channel_share']:.0%} (the cap)",
                f"DIY {max(d['max_hour_share_all'].values()):.1%}",
                _verdict(share < goals["channel_share"]),
            )
        )
    return out


# ---------------------------------------------------------------------------- running
def run(
    sections: list[str], *, quick: bool, pg_dsn: str | None, workdir: str | None, say: Callable[[str], None]
) -> dict[str, Any]:
    def params(name: str) -> dict[str, Any]:
        full, small = PARAMS[name]
        return dict(small if quick else full)

    runners: dict[str, tuple[Callable[[], Any], Callable[[Any], list[Row]]]] = {
        "airtime": (mesh_airtime.measure, rows_airtime),
        "center_ingest": (
            lambda: center_ingest.measure(**params("center_ingest"), pg_dsn=pg_dsn, workdir=workdir),
            rows_center_ingest,
        ),
        "radio_ingest": (lambda: radio_ingest.measure(**params("radio_ingest"), workdir=workdir), rows_radio_ingest),
        "sync": (lambda: sync_drain.measure(**params("sync"), workdir=workdir), rows_sync),
        "footprint": (lambda: footprint.measure(**params("footprint"), workdir=workdir), rows_footprint),
        "relay_codec": (relay_codec.measure, rows_relay_codec),
        "relay": (lambda: relay_mesh.measure(**params("relay"), workdir=workdir), rows_relay),
    }
    results: dict[str, Any] = {}
    table: list[Row] = []
    for name in sections:
        measure, to_rows = runners[name]
        say(f"[bench] {name} ...")
        started = time.monotonic()
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            res = measure()
            rows = to_rows(res)
        except Exception as exc:
            say(traceback.format_exc())
            res = {"error": f"{type(exc).__name__}: {exc}"}
            rows = [row(name, "-", "-", "", f"error: {type(exc).__name__}: {str(exc)[:80]}")]
        results[name] = {
            "seconds": round(time.monotonic() - started, 1),
            "run": {"started": started_at, "quick": quick},
            "result": res,
        }
        table.extend(rows)
    return {"results": results, "table": table}


ROWS: dict[str, Callable[[Any], list[Row]]] = {
    "airtime": rows_airtime,
    "center_ingest": rows_center_ingest,
    "radio_ingest": rows_radio_ingest,
    "sync": rows_sync,
    "footprint": rows_footprint,
    "relay_codec": rows_relay_codec,
    "relay": rows_relay,
}


def merge(previous: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """``doc``'s sections replace their entries in ``previous``; the others stay, each tagged with the run it
    came from; the table is rebuilt from every section's result, in suite order."""
    old_meta = previous.get("meta", {})
    results = {}
    for name, entry in previous.get("results", {}).items():
        entry = dict(entry)
        entry.setdefault("run", {"started": old_meta.get("started"), "quick": old_meta.get("quick")})
        results[name] = entry
    results.update(doc["results"])
    table: list[Row] = []
    for name in [s for s in SECTIONS if s in results] + [s for s in results if s not in SECTIONS]:
        res = results[name].get("result", {})
        to_rows = ROWS.get(name)
        try:
            table.extend(to_rows(res) if to_rows and "error" not in res else [])
        except (KeyError, TypeError) as exc:  # an entry from an older layout of that section
            table.append(row(name, "-", "-", "", f"error: stored result unreadable ({exc})"))
        if "error" in res:
            table.append(row(name, "-", "-", "", f"error: {res['error'][:80]}"))
    return {"meta": doc["meta"], "table": table, "results": results}


def render(table: list[Row]) -> str:
    header = ("measure", "value", "goal", "naive / alternative", "verdict")
    keys = ("measure", "value", "goal", "alternative", "verdict")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in table:
        lines.append("| " + " | ".join(str(r[k]) for k in keys) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results (bench/results.json)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: small counts, 10 s idle window")
    parser.add_argument("--only", default="", help=f"comma-separated sections to run: {','.join(SECTIONS)}")
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out")
    parser.add_argument("--pg", default=center_ingest.DEFAULT_PG, help="PostgreSQL DSN for center_ingest")
    parser.add_argument("--no-pg", action="store_true", help="center_ingest on SQLite only")
    parser.add_argument("--dir", default=None, help="working directory for data files (not tmpfs: disk is measured)")
    parser.add_argument("--fresh", action="store_true", help="rewrite the JSON file instead of merging into it")
    args = parser.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    skip = {s for s in args.skip.split(",") if s}
    unknown = [s for s in [*only, *skip] if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    sections = [s for s in (only or SECTIONS) if s not in skip]
    logging.basicConfig(level=logging.ERROR, format="%(relativeCreated)d %(name)s %(message)s")

    started = datetime.now(UTC)
    load_before = os.getloadavg()
    out = run(sections, quick=args.quick, pg_dsn=None if args.no_pg else args.pg, workdir=args.dir, say=print)
    doc = {
        "meta": {
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick,
            "sections": sections,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "table": out["table"],
        "results": out["results"],
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = doc
    if path.exists() and not args.fresh:
        try:
            written = merge(json.loads(path.read_text(encoding="utf-8")), doc)
        except (ValueError, AttributeError):
            print(f"(could not read {path} to merge into: rewriting it)")
    path.write_text(json.dumps(written, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    print(render(out["table"]))
    print(f"(load average {doc['meta']['loadavg_before'][0]} → {doc['meta']['loadavg_after'][0]}; JSON: {path})")
    failed = [r for r in out["table"] if r["verdict"] not in ("ok", "info")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
