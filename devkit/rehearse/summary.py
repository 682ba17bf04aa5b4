"""What a rehearsal achieved, counted from the real sources (no process reports on itself):

* generated — the handset texts and detections the rehearsal sent into the mesh (and when, by the wall clock);
* delivered, duplicates — the center's database (each report found by its handset and text);
* receipts — the packets the posts' radios sent to the handsets ("112 POS … TERIMA #REF" and
  "112 PUSAT TERIMA #REF"), counted once per report, only when the handset acknowledged them;
* latency — the center's receive (commit) time minus the time the handset sent the report;
* airtime — the simulated mesh's own count of time on air, per delivered report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from siaga.report import report_ref


@dataclass(frozen=True, slots=True)
class Generated:
    """One report a handset sent: ``text`` as the post stores it (a detection becomes "<name> detected")."""

    handset: str
    text: str
    sent_wall: float  # Unix seconds when it went on air
    near: tuple[str, ...]
    at: float  # the topology's time


@dataclass(frozen=True, slots=True)
class CenterRow:
    report_id: str
    origin: str
    text: str
    post_id: str  # the origin post (a carried report keeps it)
    received_wall: float
    observed_wall: float
    copies: int


@dataclass(frozen=True, slots=True)
class Receipt:
    """A DM a post's radio sent to a handset."""

    node: str  # the device that sent it
    to: str
    text: str
    acked: bool


@dataclass
class NodeCounts:
    role: str
    stored: int = 0
    pending: int = 0
    sent: int = 0
    delivered: int = 0
    copies_merged: int = 0
    restarts: int = 0
    airtime_s: float = 0.0
    #: (origin, text) of the reports this node holds and has not seen delivered
    held: set[tuple[str, str]] = field(default_factory=set)
    #: (origin, text) -> report id of every report in this node's store (receipts name its ref)
    ids: dict[tuple[str, str], str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def percentiles(values: Iterable[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p95": None, "max": None}

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))], 3)

    return {"p50": pick(0.5), "p95": pick(0.95), "max": round(ordered[-1], 3)}


def key_of(origin: str, text: str) -> tuple[str, str]:
    return (origin, text)


def summarize(
    generated: list[Generated],
    center: list[CenterRow],
    receipts: list[Receipt],
    nodes: dict[str, NodeCounts],
    *,
    airtime_s: float | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    by_key: dict[tuple[str, str], list[CenterRow]] = {}
    for row in center:
        by_key.setdefault(key_of(row.origin, row.text), []).append(row)
    delivered = [g for g in generated if key_of(g.handset, g.text) in by_key]
    latencies = []
    clock_errors = []
    # which report a receipt is for: (handset, ref) from the report ids at the posts and at the center
    # (a first receipt is due as soon as the post has stored it, long before the center has it)
    refs: dict[tuple[str, str], str] = {}
    wanted = {key_of(g.handset, g.text) for g in generated}
    for counts in nodes.values():
        for (origin, text), report_id in counts.ids.items():
            if (origin, text) in wanted:
                refs[(origin, report_ref(report_id))] = text
    per_report = []
    for g in delivered:
        rows = by_key[key_of(g.handset, g.text)]
        first = min(rows, key=lambda r: r.received_wall)
        latency = max(0.0, first.received_wall - g.sent_wall)
        # the center's estimate of when it happened, against the truth (a post's clock may be years off)
        error = abs(first.observed_wall - g.sent_wall)
        latencies.append(latency)
        clock_errors.append(error)
        refs[(g.handset, report_ref(first.report_id))] = g.text
        per_report.append(
            {
                "at": g.at,
                "handset": g.handset,
                "text": g.text,
                "post_id": first.post_id,
                "latency_s": round(latency, 3),
                "observed_error_s": round(error, 3),
            }
        )
    # the same report stored as two rows at the center: what custody and deduplication must prevent
    duplicates = sum(len(rows) - 1 for key, rows in by_key.items())
    merged_at_center = sum(row.copies - 1 for row in center)
    acked_post: set[tuple[str, str]] = set()
    acked_center: set[tuple[str, str]] = set()
    sent_post = sent_center = 0
    for receipt in receipts:
        ref = _ref_in(receipt.text)
        is_center = receipt.text.startswith("112 PUSAT TERIMA")
        if is_center:
            sent_center += 1
        elif receipt.text.startswith("112 POS"):
            sent_post += 1
        else:
            continue
        if receipt.acked and ref and (receipt.to, ref) in refs:
            # per report, not per ref: two posts that heard one packet may store it under two ids
            (acked_center if is_center else acked_post).add((receipt.to, refs[(receipt.to, ref)]))
    generated_n = len(generated)
    delivered_n = len(delivered)
    held_anywhere = set().union(*(c.held for c in nodes.values())) if nodes else set()
    undelivered = [g for g in generated if key_of(g.handset, g.text) not in by_key]
    # lost: neither at the center nor in any post's or relay's store — gone, not merely on its way
    held = [g for g in undelivered if key_of(g.handset, g.text) in held_anywhere]
    return {
        "generated": generated_n,
        "delivered": delivered_n,
        "held": len(held),
        "lost": len(undelivered) - len(held),
        "duplicates_at_center": duplicates,
        "receipts_post": len(acked_post),
        "receipts_center": len(acked_center),
        "latency_s": percentiles(latencies),
        "airtime_s": None if airtime_s is None else round(airtime_s, 3),
        "airtime_s_per_report": None if airtime_s is None or not delivered_n else round(airtime_s / delivered_n, 3),
        "observed_time_error_s": percentiles(clock_errors),
        "receipt_packets": {"post": sent_post, "center": sent_center},
        # the same packet heard twice (two paths, two posts) is one report, its copies merged
        "stored": sum(c.stored for c in nodes.values()),
        "duplicates_merged_at_posts": sum(c.copies_merged for c in nodes.values()),
        "duplicates_merged_at_center": merged_at_center,
        "receipts": {"post": len(acked_post), "center": len(acked_center)},
        "reports": sorted(per_report, key=lambda r: r["at"]),
        "undelivered": [
            {"handset": g.handset, "text": g.text, "held": key_of(g.handset, g.text) in held_anywhere}
            for g in undelivered
        ],
        "nodes": {
            name: {
                "role": c.role,
                "stored": c.stored,
                "pending": c.pending,
                "sent": c.sent,
                "delivered": c.delivered,
                "copies_merged": c.copies_merged,
                "restarts": c.restarts,
                "airtime_s": round(c.airtime_s, 3),
                **c.extra,
            }
            for name, c in nodes.items()
        },
        **(extra or {}),
    }


def _ref_in(text: str) -> str | None:
    for word in text.split():
        if word.startswith("#") and len(word) > 1:
            return word[1:]
    return None


def fmt(p: dict[str, float | None]) -> str:
    return " / ".join("-" if v is None else f"{v:.1f}" for v in (p["p50"], p["p95"], p["max"]))


def render_table(summary: dict[str, Any], title: str) -> str:
    air = summary["airtime_s_per_report"]
    lines = [
        "",
        title,
        f"  laporan dibuat (generated)          : {summary['generated']}",
        f"  sampai di pusat 112 (delivered)     : {summary['delivered']}",
        f"  masih di jalan (held)               : {summary['held']}",
        f"  HILANG (lost)                       : {summary['lost']}",
        f"  duplikat di pusat                   : {summary['duplicates_at_center']}"
        f"  (salinan digabung: {summary['duplicates_merged_at_center']})",
        f"  tanda terima ke handset             : TERIMA {summary['receipts_post']},"
        f" PUSAT TERIMA {summary['receipts_center']}",
        f"  handset -> pusat (detik) p50/p95/max: {fmt(summary['latency_s'])}",
        f"  airtime per laporan (detik)         : {'-' if air is None else f'{air:.2f}'}",
        f"  galat waktu kejadian di pusat (s)   : {fmt(summary['observed_time_error_s'])}",
        "",
        f"  {'node':<14}{'peran':<7}{'simpan':>7}{'tunggu':>8}{'terkirim':>9}{'sampai':>8}{'restart':>8}{'airtime':>9}",
    ]
    for name, n in summary["nodes"].items():
        lines.append(
            f"  {name:<14}{n['role']:<7}{n['stored']:>7}{n['pending']:>8}{n['sent']:>9}{n['delivered']:>8}"
            f"{n['restarts']:>8}{n['airtime_s']:>8.1f}s"
        )
    for item in summary["undelivered"]:
        where = "masih disimpan" if item["held"] else "HILANG"
        lines.append(f"  BELUM SAMPAI ({where}): {item['handset']} {item['text']!r}")
    return "\n".join(lines)
