"""The relay codec on the shared corpus: packet sizes, one-packet fit, text compression vs the naive ways.

Run: .venv/bin/python bench/relay_codec.py [--corpus FILE.jsonl]

Every message of the shared corpus (../shared/corpus/reports_sample.jsonl; tests/data/reports_sample.jsonl
is the same file) becomes a report as a post stores one heard from a handset — a mesh id, the handset as
origin, the corpus's category and casualties, the handset's last GPS fix with its accuracy, an age of 42 s
— and is encoded by sync/compact.py.  Reported:

* packet size (median, max) and how many reports fit one packet whole (not cut); the firmware bound is
  219 B (codec.MAX_PACKET_BYTES); edge/airtime.py's stricter check (encoded Data + PKI ≤ 233, i.e. 213 B)
  is counted too;
* the text alone, side by side: raw UTF-8 (the naive way: the text forwarded as a Meshtastic DM), raw deflate
  without a dictionary, raw deflate with dictionary v1, and what the codec picks (the smaller of UTF-8 and
  deflate+dictionary per text);
* the naive alternative for the whole report: its JSON as the MQTT protocol carries it, plain and zlib'd;
* the held-out texts (tests/data/labelled + blind*, 1,000+ officer texts the dictionary was not written
  from — though edge/data/keywords.toml, one of the dictionary's sources, was tuned on them);
* time on air (LONG_FAST, PKI DM on port 300) of the median and the largest packet.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meshtastic.protobuf import mesh_pb2  # noqa: E402

from siaga.airtime import LONG_FAST, MESH_HEADER_BYTES, PKI_OVERHEAD_BYTES, time_on_air_ms  # noqa: E402
from siaga.report import Casualties, Report, mesh_report_id  # noqa: E402
from sync import compact as codec  # noqa: E402
from sync import compact_dict as dictionary  # noqa: E402

SHARED_CORPUS = ROOT.parent / "shared" / "corpus" / "reports_sample.jsonl"
REPO_CORPUS = ROOT / "tests" / "data" / "reports_sample.jsonl"
HELD_OUT = ("labelled_reports.jsonl", *(f"blind{s}_reports.jsonl" for s in ("", "2", "3", "4", "5")))
PORT = 300
#: What edge/airtime.py's fits_one_packet(pki=True) allows for our payload: 233 - 12 (PKI) - 8 (Data framing).
STRICT_PAYLOAD = 213
KEY = codec.derive_post_key(b"bench-regency-secret-not-a-real-one", "oebubun")
WHEN = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


def _texts(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _deflate(raw: bytes, zdict: bytes | None) -> int:
    if zdict is None:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    else:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict)
    return len(packer.compress(raw) + packer.flush())


def _report(i: int, row: dict[str, Any]) -> Report:
    node = 0xA1B2C300 + i % 7
    return Report(
        report_id=mesh_report_id(node, 0x5EED0000 + i, WHEN),
        post_id="oebubun",
        origin=f"!{node:08x}",
        source="meshtastic",
        text_raw=row["text"],
        observed_at=WHEN,
        stored_at=WHEN + timedelta(seconds=1),
        category=row["category"],
        urgency="Immediate",
        severity="Moderate",
        certainty="Observed",
        lat=-9.3853 + i * 0.0011,
        lon=124.3544 - i * 0.0007,
        accuracy_m=6.0,
        loc_source="handset-last-fixed",
        casualties=Casualties.from_dict(row.get("casualties") or {}),
        mesh_packet_id=0x5EED0000 + i,
    ).validate()


def _airtime(payload_bytes: int) -> float:
    data = mesh_pb2.Data(portnum=PORT, payload=b"\xff" * payload_bytes, bitfield=1).SerializeToString()
    return time_on_air_ms(MESH_HEADER_BYTES + len(data) + PKI_OVERHEAD_BYTES, LONG_FAST)


def _text_ratios(texts: list[str]) -> dict[str, Any]:
    zdict = dictionary.load(codec.CURRENT_TEXT_DICT)
    raw = [len(t.encode("utf-8")) for t in texts]
    plain = [_deflate(t.encode("utf-8"), None) for t in texts]
    with_dict = [_deflate(t.encode("utf-8"), zdict) for t in texts]
    chosen = [min(r, d) for r, d in zip(raw, with_dict, strict=True)]
    total = sum(raw)
    return {
        "texts": len(texts),
        "raw_bytes": total,
        "deflate_bytes": sum(plain),
        "dict_bytes": sum(with_dict),
        "codec_bytes": sum(chosen),
        "ratio_deflate": round(sum(plain) / total, 3),
        "ratio_dict": round(sum(with_dict) / total, 3),
        "ratio_codec": round(sum(chosen) / total, 3),
        "median_raw": statistics.median(raw),
        "median_codec": statistics.median(chosen),
        "max_raw": max(raw),
    }


def measure(corpus: Path | None = None) -> dict[str, Any]:
    path = corpus or (SHARED_CORPUS if SHARED_CORPUS.exists() else REPO_CORPUS)
    rows = _texts(path)
    sizes, whole, strict, json_plain, json_zlib = [], 0, 0, [], []
    for i, row in enumerate(rows):
        report = _report(i, row)
        relay_report = codec.from_report(report, age_s=codec.observation_age(report, 41.0))
        payload = codec.encode_report(relay_report, KEY)
        packet = codec.decode_report(payload, lambda post, epoch: KEY)
        assert codec.to_report(packet).text_raw == report.text_raw or packet.truncated
        sizes.append(len(payload))
        whole += not packet.truncated
        strict += len(payload) <= STRICT_PAYLOAD
        body = json.dumps(
            {"age_s": 42.0, "age_src": "boot", "report": report.to_dict()}, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
        json_plain.append(len(body))
        json_zlib.append(len(zlib.compress(body, 9)))
    texts = [r["text"] for r in rows]
    held_out: list[str] = []
    for name in HELD_OUT:
        p = ROOT / "tests" / "data" / name
        if p.exists():
            held_out += [r["text"] for r in _texts(p)]
    median = statistics.median(sizes)
    return {
        "corpus": str(path),
        "reports": len(rows),
        "packet_budget": codec.MAX_PACKET_BYTES,
        "size_median": median,
        "size_max": max(sizes),
        "size_min": min(sizes),
        "fit_whole": whole,
        "fit_strict_213": strict,
        "airtime_median_ms": round(_airtime(int(median)), 1),
        "airtime_max_ms": round(_airtime(max(sizes)), 1),
        "text": _text_ratios(texts),
        "held_out_text": _text_ratios(held_out) if held_out else None,
        "naive_json": {
            "median": statistics.median(json_plain),
            "max": max(json_plain),
            "fit": sum(n <= codec.MAX_PACKET_BYTES for n in json_plain),
            "zlib_median": statistics.median(json_zlib),
            "zlib_fit": sum(n <= codec.MAX_PACKET_BYTES for n in json_zlib),
        },
        "ok": whole == len(rows) and max(sizes) <= codec.MAX_PACKET_BYTES,
    }


def render(res: dict[str, Any]) -> str:
    t, n, j = res["text"], res["reports"], res["naive_json"]
    lines = [
        f"relay codec on {res['corpus']} ({n} reports; budget {res['packet_budget']} B per packet)",
        "| measure | ours | naive / alternative |",
        "| --- | --- | --- |",
        f"| packet size median / max | {res['size_median']:g} / {res['size_max']} B | report JSON as MQTT sends it: "
        f"{j['median']:g} / {j['max']} B (zlib'd: median {j['zlib_median']:g} B) |",
        f"| reports in one packet, text whole | {res['fit_whole']}/{n} (≤ 213 B: {res['fit_strict_213']}/{n}) "
        f"| JSON: {j['fit']}/{n}; zlib'd JSON: {j['zlib_fit']}/{n} |",
        f"| time on air, median / largest packet (LONG_FAST, PKI DM) | {res['airtime_median_ms']:.0f} / "
        f"{res['airtime_max_ms']:.0f} ms | |",
        "",
        "| text bytes (sum) | raw UTF-8 (text as a DM) | deflate, no dictionary | deflate + dict v1 | codec "
        "(smaller of UTF-8 / dict) |",
        "| --- | --- | --- | --- | --- |",
    ]
    rows = [("shared corpus", t)]
    if res["held_out_text"]:
        rows.append(("held-out texts", res["held_out_text"]))
    for label, r in rows:
        lines.append(
            f"| {label} ({r['texts']} texts) | {r['raw_bytes']} B (1.00) | {r['deflate_bytes']} B "
            f"({r['ratio_deflate']:.2f}) | {r['dict_bytes']} B ({r['ratio_dict']:.2f}) | {r['codec_bytes']} B "
            f"({r['ratio_codec']:.2f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=None, help="a JSONL file of {text, category, casualties}")
    args = parser.parse_args(argv)
    res = measure(args.corpus)
    print(render(res))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
