"""The rehearsal's summary counts from its sources: lost vs held, duplicates, receipts once per report."""

from __future__ import annotations

from devkit.rehearse.summary import CenterRow, Generated, NodeCounts, Receipt, render_table, summarize
from siaga.report import report_ref

A = "!a1b2c3d4"
B = "!b2c3d4e5"


def gen(handset: str, text: str, wall: float) -> Generated:
    return Generated(handset, text, wall, ("pos-1",), wall - 1000)


def row(rid: str, origin: str, text: str, received: float, copies: int = 1) -> CenterRow:
    return CenterRow(rid, origin, text, "pos-1", received, received - 0.5, copies)


def test_counts_delivered_held_lost_duplicates_and_receipts() -> None:
    generated = [gen(A, "KEBAKARAN", 1000.0), gen(A, "BANJIR", 1010.0), gen(B, "LONGSOR", 1020.0), gen(B, "x", 1030)]
    center = [
        row("m1-1-20261207", A, "KEBAKARAN", 1004.0, copies=2),
        row("m1-2-20261207", A, "BANJIR", 1012.0),
        row("m1-9-20261207", A, "BANJIR", 1013.0),  # the same report stored twice: a duplicate
    ]
    nodes = {
        "pos-1": NodeCounts(
            role="post",
            stored=3,
            copies_merged=1,
            airtime_s=3.0,
            held={(B, "LONGSOR")},
            ids={(B, "LONGSOR"): "m2-7-20261207", (A, "KEBAKARAN"): "m1-1-20201207"},
        ),
        "bukit": NodeCounts(role="relay", airtime_s=1.0),
    }
    ref1, ref2 = report_ref("m1-1-20261207"), report_ref("m1-2-20261207")
    receipts = [
        Receipt("pos-1", A, f"112 POS SATU TERIMA #{ref1} KEBAKARAN", True),
        Receipt("pos-1", A, f"112 POS SATU TERIMA #{ref1} KEBAKARAN", True),  # sent again: counted once
        # another post stored the same packet under another id (its clock is years off): the same report
        Receipt("pos-2", A, f"112 POS DUA TERIMA #{report_ref('m1-1-20201207')} KEBAKARAN", True),
        Receipt("pos-1", A, f"112 PUSAT TERIMA #{ref1} 14:05", True),
        Receipt("pos-1", A, f"112 POS SATU TERIMA #{ref2} BANJIR", True),
        Receipt("pos-1", A, f"112 PUSAT TERIMA #{ref2} 14:06", False),  # never acknowledged: not counted
        Receipt("pos-1", B, f"112 PUSAT TERIMA #{ref1} 14:05", True),  # to another handset: not its report
        # a report still on its way has its first receipt already (its id from the post's store)
        Receipt("pos-1", B, f"112 POS SATU TERIMA #{report_ref('m2-7-20261207')} LONGSOR", True),
    ]
    s = summarize(generated, center, receipts, nodes, airtime_s=4.0)
    assert (s["generated"], s["delivered"], s["held"], s["lost"]) == (4, 2, 1, 1)
    assert s["duplicates_at_center"] == 1 and s["duplicates_merged_at_center"] == 1
    assert (s["receipts_post"], s["receipts_center"]) == (3, 1)
    assert s["receipt_packets"] == {"post": 5, "center": 3}
    assert s["latency_s"] == {"p50": 4.0, "p95": 4.0, "max": 4.0}
    assert s["airtime_s_per_report"] == 2.0
    assert [u["held"] for u in s["undelivered"]] == [True, False]
    assert [(r["text"], r["post_id"], r["latency_s"]) for r in s["reports"]] == [
        ("KEBAKARAN", "pos-1", 4.0),
        ("BANJIR", "pos-1", 2.0),
    ]
    table = render_table(s, "Ringkasan")
    assert "HILANG (lost)                       : 1" in table and "bukit" in table


def test_nothing_generated() -> None:
    s = summarize([], [], [], {}, airtime_s=None)
    assert s["lost"] == 0 and s["latency_s"] == {"p50": None, "p95": None, "max": None}
    assert s["airtime_s_per_report"] is None
