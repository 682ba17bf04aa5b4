"""The benchmark suite runs: the quick mode's cheapest sections end to end (no timing is asserted: the
figures belong to docs/PERFORMANCE.md, taken on a quiet machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import center_ingest, run_all

ROW_KEYS = {"measure", "value", "goal", "alternative", "verdict"}


def test_quick_run_writes_the_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results.json"
    code = run_all.main(
        ["--quick", "--only", "airtime,center_ingest", "--no-pg", "--json", str(out), "--dir", str(tmp_path)]
    )
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert set(doc) == {"meta", "table", "results"}
    assert doc["meta"]["quick"] is True and doc["meta"]["sections"] == ["airtime", "center_ingest"]
    assert set(doc["results"]) == {"airtime", "center_ingest"}
    for row in doc["table"]:
        assert set(row) == ROW_KEYS
        assert not row["verdict"].startswith("error"), row
    measures = [row["measure"] for row in doc["table"]]
    assert any(m.startswith("airtime: post receipt") for m in measures)
    assert any(m.startswith("airtime: staff reply") for m in measures)
    assert any(m.startswith("center ingest (sqlite") for m in measures)
    airtime = doc["results"]["airtime"]["result"]
    assert {"kind", "airtime_ms", "frame_bytes", "one_packet", "ok"} <= set(airtime["messages"][0])
    sqlite = doc["results"]["center_ingest"]["result"]["sqlite"]
    # the three pipelines stored every report in the center database
    assert sqlite["stored"] == 3 * sqlite["reports"] == 3 * run_all.PARAMS["center_ingest"][1]["n"]
    # computed airtime is deterministic: its goals hold; the ingest verdict compares speeds and is not asserted
    assert all(row["verdict"] == "ok" for row in doc["table"] if row["measure"].startswith("airtime"))
    assert code in (0, 1)
    printed = capsys.readouterr().out
    assert "| measure | value | goal | naive / alternative | verdict |" in printed


def test_center_ingest_counts_what_it_stored(tmp_path: Path) -> None:
    res = center_ingest.measure(40, pg_dsn=None, workdir=str(tmp_path))
    assert set(res) == {"sqlite", "loadavg_before", "loadavg_after"}
    r = res["sqlite"]
    assert r["stored"] == 120 and r["reports"] == 40 and r["messages"] >= 2 and r["grouped_commits"] == 1
    assert {"batched_rps", "naive_rps", "speedup", "reports_per_message"} <= set(r)
    # today's path and the one before it, each on its own database
    assert set(r["paths"]) == {"before", "after"}
    assert all(p["stored"] == 120 for p in r["paths"].values())


def test_an_unknown_section_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        run_all.main(["--only", "nope", "--json", str(tmp_path / "x.json")])
    assert exc.value.code == 2
    assert not (tmp_path / "x.json").exists()


def test_a_second_run_merges_into_the_json_and_keeps_the_other_sections(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run_all.main(["--quick", "--only", "airtime", "--json", str(out)])
    run_all.main(["--quick", "--only", "relay_codec", "--json", str(out)])
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert set(doc["results"]) == {"airtime", "relay_codec"}
    assert doc["meta"]["sections"] == ["relay_codec"]
    assert all(entry["run"]["quick"] is True for entry in doc["results"].values())
    measures = [row["measure"] for row in doc["table"]]
    assert any(m.startswith("airtime: post receipt") for m in measures)
    assert any(m.startswith("relay packet size") for m in measures)
    run_all.main(["--quick", "--only", "airtime", "--json", str(out), "--fresh"])
    assert set(json.loads(out.read_text(encoding="utf-8"))["results"]) == {"airtime"}


def test_the_relay_mesh_section_runs_both_methods_on_the_same_schedule(tmp_path: Path) -> None:
    from bench import relay_mesh

    res = relay_mesh.measure(per_origin=2, losses=(0.0,), workdir=str(tmp_path))
    (run,) = res["runs"]
    ours, diy = run["ours"], run["diy"]
    # without loss both deliver everything; ours also walks every center ack back to the origin
    assert ours["delivered"] == diy["delivered"] == ours["receipts_at_origin"] == res["reports"] == 6
    assert ours["duplicates_at_center"] == 0 and diy["duplicates_at_end"] == 0
    assert set(ours["latency_s"]) == set(diy["latency_s"]) == {"1", "2", "3"}
    assert {"report", "cack", "center_ack"} <= set(ours["airtime_s"]) and set(diy["airtime_s"]) == {
        "dm",
        "ack",
    }
    rows = run_all.rows_relay(res)
    assert {r["measure"].split(",")[0] for r in rows} >= {"relay delivered", "relay airtime per report per hop"}


@pytest.mark.postgres
def test_center_load_counts_every_report_acknowledged(tmp_path: Path, pg_url: str) -> None:
    """The load bench's structure (a few posts, no timing): every report acknowledged, usage sampled."""
    from bench import center_load
    from devkit.harness.pg import pg_dsn

    assert pg_url  # the server is there (else the fixture skips, or fails with SIAGA_REQUIRE_PG=1)
    r = center_load.run_once(posts=6, procs=2, backlog=3, receivers=1, pg=pg_dsn(), workdir=tmp_path)
    assert r["sent"] == r["acked"] == r["reports"] == 18
    assert set(r["usage"]) == {"broker", "receivers", "postgresql"}
    assert r["p50_ms"] is not None and r["p99_ms"] >= r["p50_ms"]
