"""CAP 1.2 export validated against the OASIS CAP 1.2 schema (tests/data/CAP-v1.2.xsd, as published by
OASIS; the copy comes from a public repository that vendors it unchanged)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from starlette.testclient import TestClient

from center import export
from center.triage import apply_state
from siaga.report import CAP_CATEGORY, CATEGORIES, Callback, Casualties, utcnow
from tests.centerweb import add_user, center_app, ingest, login, make_report

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).parent / "data" / "CAP-v1.2.xsd")))
NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
CIRCLE = re.compile(r"^-?\d+(\.\d+)?,-?\d+(\.\d+)? \d+(\.\d+)?$")


def valid(xml: bytes) -> Any:
    doc = etree.fromstring(xml)
    assert SCHEMA.validate(doc), SCHEMA.error_log
    return doc


def text(doc: Any, path: str) -> str:
    found = doc.find(path, NS)
    assert found is not None, path
    return str(found.text)


def view(report: Any, **state: Any) -> Any:
    now = utcnow()
    return apply_state(report, received_at=now, observed_est=now - timedelta(minutes=2), **state)


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_is_a_valid_alert(category: str) -> None:
    doc = valid(export.cap_alert(view(make_report(category=category))))
    assert text(doc, "cap:msgType") == "Alert"
    assert text(doc, "cap:info/cap:category") == CAP_CATEGORY[category]


def test_alert_fields() -> None:
    report = make_report(
        "KEBAKARAN rumah 2 orang luka\x07 <b>&",
        urgency="Immediate",
        severity="Severe",
        certainty="Observed",
        casualties=Casualties(injured=2, dead=0),
        area_code="53.03.05.2001",
        mode="exercise",
    )
    doc = valid(export.cap_alert(view(report, status="diterima")))
    assert text(doc, "cap:identifier") == report.report_id
    assert text(doc, "cap:sender") == "!a1b2c3d4@oebubun.siaga"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", text(doc, "cap:sent"))
    assert text(doc, "cap:status") == "Exercise"
    assert text(doc, "cap:scope") == "Restricted"
    assert text(doc, "cap:info/cap:urgency") == "Immediate"
    assert text(doc, "cap:info/cap:severity") == "Severe"
    assert text(doc, "cap:info/cap:certainty") == "Observed"
    # the raw text, XML-escaped by the serialiser; a control character XML cannot carry is replaced
    assert text(doc, "cap:info/cap:description") == "KEBAKARAN rumah 2 orang luka\ufffd <b>&"
    assert "Yohanes Taek" in text(doc, "cap:info/cap:contact")
    params = {
        p.find("cap:valueName", NS).text: p.find("cap:value", NS).text
        for p in doc.findall("cap:info/cap:parameter", NS)
    }
    assert params["korban_luka"] == "2" and params["korban_meninggal"] == "0"
    assert params["path"] == "oebubun hops=2 snr=-7.5 rssi=-110"
    assert params["ref"] == report.ref
    circle = text(doc, "cap:info/cap:area/cap:circle")
    assert CIRCLE.match(circle) and circle == "-9.447000,124.479000 0.030"
    assert text(doc, "cap:info/cap:area/cap:areaDesc") == "Desa Oebubun"
    assert text(doc, "cap:info/cap:area/cap:geocode/cap:value") == "53.03.05.2001"
    onset = text(doc, "cap:info/cap:onset")
    assert onset < text(doc, "cap:info/cap:parameter[cap:valueName='received_at']/cap:value")


def test_corrected_report_is_an_update_referencing_the_original() -> None:
    report = make_report()
    doc = valid(export.cap_alert(view(report, state={"corrections": {"category": "medis", "casualties": {"dead": 1}}})))
    assert text(doc, "cap:msgType") == "Update"
    assert text(doc, "cap:identifier") == report.report_id + ".k"
    sender, identifier, sent = text(doc, "cap:references").split(",")
    assert sent.endswith("+00:00")
    assert (sender, identifier) == ("!a1b2c3d4@oebubun.siaga", report.report_id)
    assert text(doc, "cap:info/cap:category") == "Health"


def test_update_and_cancel_reference_earlier_reports_of_the_incident() -> None:
    first = view(make_report(), incident_id="INS-20250601-ABC123")
    update = make_report("sudah aman, api padam", category="aman", msg_type="update")
    doc = valid(export.cap_alert(view(update, incident_id="INS-20250601-ABC123"), references=[first]))
    assert text(doc, "cap:msgType") == "Update"
    assert text(doc, "cap:incidents") == "INS-20250601-ABC123"
    assert text(doc, "cap:references").split(",")[1] == first.report_id
    cancel = valid(export.cap_alert(view(make_report(msg_type="cancel"))))
    assert text(cancel, "cap:msgType") == "Cancel"


def test_ack_references_the_report() -> None:
    report = make_report()
    v = view(report, state={"acknowledged_ts": utcnow().timestamp(), "acknowledged_by": "ani"})
    doc = valid(export.cap_ack(v))
    assert text(doc, "cap:msgType") == "Ack"
    assert text(doc, "cap:references") == export.cap_reference(v)
    assert "ani" in text(doc, "cap:note")
    with pytest.raises(ValueError):
        export.cap_ack(view(report))


def test_report_without_location_and_typed_by_an_operator() -> None:
    report = make_report(
        "SOS",
        category="sos",
        origin="operator:Pak Budi, pos",
        lat=None,
        lon=None,
        accuracy_m=None,
        area_desc=None,
        loc_source="none",
        callback=Callback(officer="Budi"),
        source="manual",
        mode="test",
    )
    doc = valid(export.cap_alert(view(report)))
    assert " " not in text(doc, "cap:sender") and "," not in text(doc, "cap:sender")
    assert doc.find("cap:info/cap:area", NS) is None
    assert text(doc, "cap:status") == "Test"


def test_cap_endpoint(tmp_path: Path) -> None:
    with center_app("sqlite", tmp_path) as (app, storage):
        add_user(app)
        rid = ingest(storage, make_report(lang="aoz", text="ahh"))
        with TestClient(app, follow_redirects=False) as client:
            csrf = login(client)
            r = client.get(f"/ekspor/cap/{rid}.xml")
            assert r.headers["content-type"].startswith("application/cap+xml")
            doc = valid(r.content)
            assert text(doc, "cap:info/cap:language") == "aoz"
            assert client.get(f"/ekspor/cap/{rid}.xml?jenis=ack").status_code == 409
            client.post(f"/laporan/{rid}/terima", data={"csrf": csrf})
            ack = valid(client.get(f"/ekspor/cap/{rid}.xml?jenis=ack").content)
            assert text(ack, "cap:msgType") == "Ack"


def test_sent_and_onset_use_the_center_clock_when_the_post_clock_is_wrong() -> None:
    now = utcnow()
    years = timedelta(days=6 * 365)
    report = make_report(observed_at=now - years - timedelta(seconds=30), stored_at=now - years)
    v = apply_state(report, received_at=now, observed_est=now - timedelta(seconds=90))
    doc = valid(export.cap_alert(v))
    sent = text(doc, "cap:sent")
    assert sent[:4] == str(now.year) or sent[:4] == str((now - timedelta(seconds=60)).year)
    assert text(doc, "cap:info/cap:onset") < sent
