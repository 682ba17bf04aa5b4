"""The 112 dashboard over HTTP: login and sessions, CSRF, inert report text, triage, filters, exports,
post health and live updates — against real SQLite files and (when reachable) a real PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from center.storage import CenterStorage, open_storage
from siaga.report import utcnow
from tests.centerweb import (
    PASSWORD,
    LiveServer,
    add_user,
    center_app,
    center_config,
    ingest,
    login,
    make_report,
)

XSS = '<img src=x onerror=alert(1)><script>alert("x")</script> KEBAKARAN'


@pytest.fixture(params=["sqlite", "postgres"])
def web(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, CenterStorage, TestClient]]:
    with center_app(request.param, tmp_path) as (app, storage):
        add_user(app)
        with TestClient(app, follow_redirects=False) as client:
            yield app, storage, client


@pytest.fixture
def sqlite_web(tmp_path: Path) -> Iterator[tuple[Any, CenterStorage, TestClient]]:
    with center_app("sqlite", tmp_path) as (app, storage):
        add_user(app)
        with TestClient(app, follow_redirects=False) as client:
            yield app, storage, client


def routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, path parameters filled with plausible values."""
    out = []
    for route in app.routes:
        if isinstance(route, Mount):
            continue
        assert isinstance(route, Route)
        path = route.path
        for name, value in (("report_id", "0190c3f2-aaaa-7bbb-8ccc-123456789abc"), ("z", "1"), ("x", "1"), ("y", "1")):
            path = path.replace("{" + name + "}", value)
        for method in sorted(route.methods or {"GET"}):
            if method != "HEAD":
                out.append((method, path))
    return out


# ------------------------------------------------------------------------------------------- access
def test_no_page_or_api_without_login(sqlite_web: Any) -> None:
    app, storage, client = sqlite_web
    rid = ingest(storage, make_report())
    all_routes = routes(app)
    assert len(all_routes) >= 25
    checked = 0
    for method, path in all_routes:
        path = path.replace("0190c3f2-aaaa-7bbb-8ccc-123456789abc", rid)
        if path == "/login":
            continue
        response = client.request(method, path)
        if method == "GET" and not path.startswith(("/api/", "/ekspor/", "/tiles/")):
            assert response.status_code == 303, (method, path)
            assert response.headers["location"].startswith("/login?next="), path
        else:
            assert response.status_code == 401, (method, path, response.status_code)
        assert "KEBAKARAN" not in response.text
        checked += 1
    assert checked == len(all_routes) - 2  # GET and POST /login
    # static assets are public (the login page needs them) but hold no data
    assert client.get("/static/app.css").status_code == 200
    assert client.get("/static/vendor/leaflet/leaflet.js").status_code == 200
    # a forged or stale cookie is no session
    client.cookies.set("siaga_sesi", "forged-token")
    assert client.get("/api/reports").status_code == 401


def test_login_logout_and_security_headers(web: Any) -> None:
    app, _storage, client = web
    page = client.get("/login")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    csrf = login(client)
    cookie = next(c for c in client.cookies.jar if c.name == "siaga_sesi")
    assert cookie.has_nonstandard_attr("HttpOnly")
    # the database keeps only a hash of the session token
    rows = app.state.center.staff.query("SELECT token_hash FROM staff_sessions")
    assert rows and cookie.value not in json.dumps(rows)
    assert client.get("/api/summary").status_code == 200
    assert client.post("/logout", data={"csrf": csrf}).status_code == 303
    assert client.get("/api/summary").status_code == 401
    actions = [a["action"] for a in app.state.center.triage.audit()]
    assert "login" in actions and "logout" in actions


def test_login_rejects_wrong_password_and_rate_limits(sqlite_web: Any) -> None:
    _app, _storage, client = sqlite_web
    page = client.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    for _ in range(5):
        r = client.post("/login", data={"username": "ani", "password": "salah-sekali-123", "login_csrf": token})
        assert r.status_code == 401
        assert "siaga_sesi" not in r.cookies
    # now even the right password is refused until the window passes
    r = client.post("/login", data={"username": "ani", "password": PASSWORD, "login_csrf": token})
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0
    assert "siaga_sesi" not in r.cookies


def test_login_form_needs_its_csrf_cookie(sqlite_web: Any) -> None:
    _app, _storage, client = sqlite_web
    r = client.post("/login", data={"username": "ani", "password": PASSWORD, "login_csrf": "guess"})
    assert r.status_code == 403
    assert "siaga_sesi" not in r.cookies
    # the next parameter cannot send anyone off-site
    page = client.get("/login?next=//evil.example/x")
    assert 'value="/"' in page.text


def test_csrf_rejected_on_every_state_changing_route(web: Any) -> None:
    app, storage, client = web
    rid = ingest(storage, make_report())
    csrf = login(client)
    posts = [(m, p.replace("0190c3f2-aaaa-7bbb-8ccc-123456789abc", rid)) for m, p in routes(app) if m == "POST"]
    assert len(posts) >= 8
    for _method, path in posts:
        if path == "/login":
            continue
        data = {"status": "diterima", "teks": "x", "instansi": "Damkar", "kategori": "banjir", "laporan": rid}
        assert client.post(path, data=data).status_code == 403, path
        assert client.post(path, data={**data, "csrf": "wrong" + csrf}).status_code == 403, path
        assert (
            client.post(path, data={**data, "csrf": csrf}, headers={"origin": "http://evil.example"}).status_code == 403
        )
        # JSON bodies too
        assert client.post(path, json=data).status_code == 403, path
    found = storage.get_report(rid)
    assert found is not None and found.status == "baru"
    assert storage.replies(report_id=rid) == []
    assert client.get("/api/summary").json()["unacknowledged"] == 1
    # the header form of the token works for fetch() clients
    r = client.post(f"/laporan/{rid}/terima", headers={"x-csrf-token": csrf, "accept": "application/json"})
    assert r.status_code == 200 and r.json() == {"ok": "status"}


def test_observer_role_cannot_change_anything(sqlite_web: Any) -> None:
    app, storage, client = sqlite_web
    add_user(app, "obs", role="pengamat")
    rid = ingest(storage, make_report())
    csrf = login(client, "obs")
    assert client.get(f"/laporan/{rid}").status_code == 200
    r = client.post(f"/laporan/{rid}/terima", data={"csrf": csrf})
    assert r.status_code == 403
    assert storage.get_report(rid).status == "baru"


def test_report_text_renders_inert(web: Any) -> None:
    _app, storage, client = web
    rid = ingest(storage, make_report(XSS, area_desc='<b onmouseover="x()">Oebubun</b>'))
    login(client)
    for path in ("/", "/antrean/baris", f"/laporan/{rid}", f"/laporan/{rid}/langsung"):
        html = client.get(path).text
        assert "<img src=x" not in html and '<script>alert("x")' not in html, path
        assert "<b onmouseover" not in html, path
    detail = client.get(f"/laporan/{rid}").text
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in detail
    # the JSON API carries it as data, labelled as JSON (never sniffed as HTML)
    api = client.get(f"/api/reports/{rid}")
    assert api.headers["content-type"].startswith("application/json")
    assert api.headers["x-content-type-options"] == "nosniff"
    assert api.json()["text_raw"] == XSS
    # there is no inline script anywhere for the CSP to have to allow
    assert not re.search(r"<script(?![^>]*\bsrc=)", detail)


def test_triage_flow_is_audited(web: Any) -> None:
    _app, storage, client = web
    rid = ingest(storage, make_report())
    dup = ingest(storage, make_report("ada api di rumah", origin="!0000beef"))
    csrf = login(client)
    r = client.post(f"/laporan/{rid}/status", data={"csrf": csrf, "status": "selesai"})
    assert "galat=" in r.headers["location"]  # baru → selesai is not a transition
    assert storage.get_report(rid).status == "baru"
    assert client.post(f"/laporan/{rid}/terima", data={"csrf": csrf}).status_code == 303
    r = client.post(f"/laporan/{rid}/instansi", data={"csrf": csrf, "instansi": "Damkar"})
    assert "galat=" in r.headers["location"]  # not verified yet
    client.post(f"/laporan/{rid}/status", data={"csrf": csrf, "status": "diverifikasi", "catatan": "ditelepon balik"})
    client.post(f"/laporan/{rid}/instansi", data={"csrf": csrf, "instansi": "Damkar", "waktu": "2025-06-01T14:05"})
    client.post(f"/laporan/{rid}/catatan", data={"csrf": csrf, "teks": "Damkar Kefa berangkat"})
    client.post(
        f"/laporan/{rid}/koreksi",
        data={"csrf": csrf, "kategori": "kebakaran", "korban_injured": "3", "korban_dead": "", "area_desc": "Dusun A"},
    )
    client.post(f"/laporan/{rid}/gabung", data={"csrf": csrf, "laporan": storage.get_report(dup).report.ref})
    r = client.post(f"/laporan/{rid}/balas", data={"csrf": csrf, "teks": "Damkar berangkat 14:05"})
    assert r.headers["location"].endswith("ok=balasan")

    data = client.get(f"/api/reports/{rid}").json()
    assert data["status"] == "dikirim"
    assert data["acknowledged_by"] == "ani"
    assert data["agencies"] == ["Damkar"]
    assert data["assignments"][0]["dispatched_at"] == "2025-06-01T06:05:00.000Z"  # 14:05 WITA
    assert data["casualties"] == {"injured": 3}
    assert data["original"]["casualties"] == {"injured": 1}  # the report as received is kept
    assert data["area_desc"] == "Dusun A"
    assert data["incident_id"] and data["incident_members"] == [dup]
    assert [n["text"] for n in data["notes"]] == ["ditelepon balik", "Damkar Kefa berangkat"]
    assert data["replies"][0]["text"] == "Damkar berangkat 14:05"
    assert storage.get_report(dup).status == "duplikat"
    audit = client.get(f"/api/reports/{rid}/audit").json()["audit"]
    actions = [a["action"] for a in audit]
    for action in ("acknowledge", "status", "assign", "note", "correct", "incident.create", "reply"):
        assert action in actions
    assert {a["username"] for a in audit} == {"ani"}
    assert all(a["at"].endswith("Z") for a in audit)
    # the detail page shows it all
    page = client.get(f"/laporan/{rid}").text
    assert "Dikirim unit" in page and "Damkar berangkat 14:05" in page and "antre di pusat" in page


def test_queue_order_unacknowledged_life_safety_oldest_first(sqlite_web: Any) -> None:
    _app, storage, client = sqlite_web
    now = utcnow()
    chatter = ingest(
        storage, make_report("listrik padam", category="infrastruktur"), received_at=now - timedelta(hours=2)
    )
    fire_new = ingest(storage, make_report("api", category="kebakaran"), received_at=now - timedelta(minutes=1))
    fire_old = ingest(storage, make_report("api lagi", category="kebakaran"), received_at=now - timedelta(minutes=30))
    acked = ingest(storage, make_report("sakit", category="medis"), received_at=now - timedelta(hours=3))
    closed = ingest(storage, make_report("sudah aman", category="aman"), received_at=now - timedelta(hours=5))
    csrf = login(client)
    client.post(f"/laporan/{acked}/terima", data={"csrf": csrf})
    for status in ("palsu",):
        client.post(f"/laporan/{closed}/status", data={"csrf": csrf, "status": status})
    html = client.get("/").text
    order = re.findall(r'data-report-id="([^"]+)"', html)
    assert order == [fire_old, fire_new, chatter, acked]  # closed ones are not in the default (open) queue
    everything = re.findall(r'data-report-id="([^"]+)"', client.get("/?status=semua").text)
    assert everything[-1] == closed
    assert client.get("/api/summary").json()["unacknowledged"] == 3
    assert re.search(r'id="badge-unack" class="badge"[^>]*>3<', html)


def test_filters(sqlite_web: Any) -> None:
    _app, storage, client = sqlite_web
    now = utcnow()
    kefa = ingest(storage, make_report("banjir di kota", category="banjir", area_desc="Kelurahan Benpasi"))
    eban = ingest(
        storage,
        make_report("longsor", category="longsor", lat=-9.64, lon=124.19, post_id="eban", area_desc="Desa Eban"),
        received_at=now - timedelta(hours=30),
    )
    login(client)

    def ids(query: str) -> set[str]:
        return {r["report_id"] for r in client.get(f"/api/reports?{query}").json()["reports"]}

    assert ids("") == {kefa, eban}
    assert ids("kategori=banjir") == {kefa}
    assert ids("kecamatan=Kota+Kefamenanu") == {kefa}
    assert ids("kecamatan=Miomaffo+Barat") == {eban}
    assert ids("desa=eban") == {eban}
    assert ids("pos=eban") == {eban}
    assert ids("jam=24") == {kefa}
    assert ids("status=baru") == {kefa, eban}
    assert ids("status=selesai") == set()
    assert ids("kategori=%3Cscript%3E") == {kefa, eban}  # an unknown category is ignored, not an error
    reports = client.get("/api/reports").json()["reports"]
    assert {r["kecamatan"] for r in reports} == {"Kota Kefamenanu", "Miomaffo Barat"}
    # the same filters drive the queue and the exports
    assert 'data-report-id="' + eban + '"' not in client.get("/?kategori=banjir").text
    geo = client.get("/ekspor/laporan.geojson?pos=eban").json()
    assert [f["id"] for f in geo["features"]] == [eban]


def test_exports_csv_and_geojson(sqlite_web: Any) -> None:
    _app, storage, client = sqlite_web
    rid = ingest(storage, make_report('=HYPERLINK("http://x") banjir', category="banjir"))
    nowhere = ingest(
        storage, make_report("sos", category="sos", lat=None, lon=None, accuracy_m=None, loc_source="none")
    )
    login(client)
    r = client.get("/ekspor/laporan.csv")
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    by_id = {row["report_id"]: row for row in rows}
    assert by_id[rid]["text_raw"].startswith("'=HYPERLINK")  # no formula injection into spreadsheets
    assert by_id[rid]["lat"] == "-9.447" and by_id[rid]["injured"] == "1"
    geo = client.get("/ekspor/laporan.geojson").json()
    assert geo["type"] == "FeatureCollection"
    features = {f["id"]: f for f in geo["features"]}
    assert features[rid]["geometry"] == {"type": "Point", "coordinates": [124.479, -9.447]}
    assert features[nowhere]["geometry"] is None
    assert features[rid]["properties"]["cap_category"] == "Met"


def test_posts_page_lists_the_center_receivers_with_their_last_heartbeat(web: Any) -> None:
    _app, storage, client = web
    now = utcnow()
    beat = now - timedelta(seconds=20)
    storage.record_receiver_state(
        "siaga-center-a", "online", now, connected_at="2026-11-28T07:00:00.000Z", session="new", beat=beat
    )
    storage.record_receiver_state(
        "siaga-center-b", "online", now, connected_at="2026-11-28T07:00:01.000Z", session="resumed", beat=beat
    )
    storage.record_receiver_state("siaga-center-b", "offline", now)  # its Last Will: the last beat stays
    [a, b] = storage.receivers()
    assert (a.state, b.state) == ("online", "offline") and b.last_beat_at == a.last_beat_at
    assert abs((b.last_beat_at - beat).total_seconds()) < 0.01  # type: ignore[operator]
    login(client)
    page = client.get("/pos").text
    section = page[page.index("Penerima pusat") :]
    assert 'data-receiver-id="siaga-center-a"' in section and 'data-receiver-id="siaga-center-b"' in section
    assert section.count("flag-online") == 1 and section.count(">mati<") == 1
    assert "dilanjutkan" in section


def test_a_post_connected_but_not_delivering_is_flagged(web: Any) -> None:
    """Its heartbeats arrive, its reports do not (the post says so: ``delivering`` false, ``no_ack_s``)."""
    _app, storage, client = web
    now = utcnow()
    status = {"post_id": "oebubun", "state": "online", "name": "Oebubun", "delivering": False, "no_ack_s": 420.0}
    storage.record_status("oebubun", "ttu", status, now)
    storage.record_status("eban", "ttu", {"post_id": "eban", "state": "online", "delivering": True}, now)
    login(client)
    posts = {p["post_id"]: p for p in client.get("/api/posts").json()["posts"]}
    assert posts["oebubun"]["not_delivering"] is True and posts["oebubun"]["no_ack_s"] == 420.0
    assert posts["eban"]["not_delivering"] is False
    page = client.get("/pos").text
    assert page.count("TERSAMBUNG, TIDAK MENGIRIM") == 1


def test_silent_post_is_flagged(web: Any) -> None:
    _app, storage, client = web
    now = utcnow()
    status = {
        "post_id": "oebubun",
        "state": "online",
        "queue": {"pending": 4, "sent": 1},
        "oldest_pending_age_s": 300,
        "radio": "connected",
        "uplink": "cellular",
        "battery": {"percent": 77, "voltage": 3.91},
        "name": "Oebubun",
    }
    storage.record_status("oebubun", "ttu", status, now)
    storage.record_status("eban", "ttu", {**status, "post_id": "eban", "name": "Eban"}, now - timedelta(hours=2))
    storage.record_status("wini", "ttu", {"post_id": "wini", "state": "offline"}, now)  # Last Will
    login(client)
    posts = {p["post_id"]: p for p in client.get("/api/posts").json()["posts"]}
    assert posts["oebubun"]["silent"] is False and posts["oebubun"]["online"] is True
    assert posts["oebubun"]["pending"] == 5 and posts["oebubun"]["oldest_pending_age_s"] == 300
    assert posts["oebubun"]["battery_text"] == "77% 3.91 V"
    assert posts["eban"]["silent"] is True  # no heartbeat for 2 h > 900 s
    assert posts["wini"]["silent"] is True  # offline by Last Will
    page = client.get("/pos").text
    assert page.count("SENYAP</span>") == 2
    assert client.get("/api/summary").json()["posts_silent"] == 2
    assert "tertahan di batas hop" not in page
    # a post whose relay parked reports at the hop limit: an alarm on the posts page
    storage.record_status("oebubun", "ttu", {**status, "relay": {"parked": 2, "held": 5, "metric": 3}}, now)
    page = client.get("/pos").text
    assert "ALARM: 2 laporan tertahan di batas hop" in page and "menahan 5 laporan pos lain" in page
    posts = {p["post_id"]: p for p in client.get("/api/posts").json()["posts"]}
    assert posts["oebubun"]["relay_parked"] == 2 and posts["eban"]["relay_parked"] == 0
    geo = client.get("/api/posts.geojson").json()
    assert {f["id"] for f in geo["features"]} >= {"oebubun", "eban", "wini"}  # sites from the bundled layer


def test_cli_user_add_and_login(tmp_path: Path, run_siaga: Any) -> None:
    db = f"sqlite:///{tmp_path / 'center.db'}"
    config = tmp_path / "center.toml"
    config.write_text(f'[node]\ndata_dir = "{tmp_path}"\n[center]\ndb = "{db}"\n', encoding="utf-8")
    pw = tmp_path / "pw"
    pw.write_text("rahasia-petugas-1\n", encoding="utf-8")
    r = run_siaga("center", "user", "add", "budi", "--role", "supervisor", "--password-file", str(pw), config=config)
    assert r.returncode == 0, r.stderr
    assert "budi" in r.stdout
    r = run_siaga("center", "user", "add", "budi", "--password-file", str(pw), config=config)
    assert r.returncode == 1 and "sudah ada" in r.stderr
    r = run_siaga("center", "user", "add", "cici", config=config, input="pendek\n")
    assert r.returncode == 1 and "minimal" in r.stderr
    r = run_siaga("center", "user", "list", "--json", config=config)
    users = json.loads(r.stdout)
    assert [(u["username"], u["role"]) for u in users] == [("budi", "supervisor")]
    # the password is stored as a salted scrypt hash, never in clear
    with open_storage(db) as storage:
        rows = storage.query("SELECT password_hash FROM staff_users")
    assert rows[0]["password_hash"].startswith("scrypt$16384$8$1$") and "rahasia" not in rows[0]["password_hash"]
    from center.web import create_app

    with open_storage(db) as storage:
        app = create_app(center_config(tmp_path, db), storage)
        with TestClient(app, follow_redirects=False) as client:
            login(client, "budi", "rahasia-petugas-1")
            assert client.get("/api/summary").status_code == 200


def test_help_for_user_command(run_siaga: Any) -> None:
    r = run_siaga("center", "user", "add", "--help")
    assert r.returncode == 0 and "--password-file" in r.stdout
    assert isinstance(r, subprocess.CompletedProcess)


def test_live_updates_by_sse(tmp_path: Path) -> None:
    """Over a real uvicorn: a commit in this process wakes the stream (the hook); a commit from another
    connection — a second receiver process — shows up through the poll."""
    with center_app("sqlite", tmp_path) as (app, storage), LiveServer(app) as server:
        add_user(app)
        with httpx.Client(base_url=server.url, follow_redirects=False, timeout=10) as client:
            login(client)
            with client.stream("GET", "/api/events") as stream:
                lines = stream.iter_lines()
                events = _sse(lines)
                kind, data = next(events)
                assert kind == "hello" and data["summary"]["unacknowledged"] == 0
                rid = ingest(storage, make_report(category="medis", text="ibu melahirkan pendarahan"))
                kind, data = next(events)
                assert kind == "change"
                assert [n["report_id"] for n in data["new"]] == [rid]
                assert data["new"][0]["life_safety"] is True
                assert data["summary"]["unacknowledged"] == 1
                # another process's connection: no in-process notify, the poll finds it
                other = open_storage(f"sqlite:///{tmp_path / 'center.db'}")
                try:
                    rid2 = ingest(other, make_report(category="lainnya", text="tanya jalan"))
                finally:
                    other.close()
                kind, data = next(events)
                assert [n["report_id"] for n in data["new"]] == [rid2]
                assert data["new"][0]["life_safety"] is False


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    kind, data = "message", ""
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            yield kind, json.loads(data)
            kind, data = "message", ""


def test_app_reads_what_sse_needs_without_login(tmp_path: Path) -> None:
    with center_app("sqlite", tmp_path) as (app, _storage), LiveServer(app) as server:
        r = httpx.get(server.url + "/api/events", timeout=5)
        assert r.status_code == 401


def test_unknown_report_and_tiles_without_mbtiles(sqlite_web: Any) -> None:
    _app, _storage, client = sqlite_web
    login(client)
    assert client.get("/laporan/tidak-ada").status_code == 404
    assert client.get("/api/reports/tidak-ada").status_code == 404
    assert client.get("/ekspor/cap/tidak-ada.xml").status_code == 404
    assert client.get("/tiles/1/1/1").status_code == 404
    assert client.get("/no/such/page").status_code == 404


def test_mbtiles_basemap_served_locally(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "ttu.mbtiles"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE metadata (name TEXT, value TEXT); CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER,"
        " tile_row INTEGER, tile_data BLOB); INSERT INTO metadata VALUES ('format', 'png');"
    )
    png = b"\x89PNG\r\n\x1a\nfake"
    conn.execute("INSERT INTO tiles VALUES (10, 864, 1023 - 539, ?)", (png,))  # TMS row of XYZ y=539
    conn.commit()
    conn.close()
    with center_app("sqlite", tmp_path, mbtiles=str(path)) as (app, _storage):
        add_user(app)
        with TestClient(app, follow_redirects=False) as client:
            assert client.get("/tiles/10/864/539").status_code == 401
            login(client)
            r = client.get("/tiles/10/864/539")
            assert r.status_code == 200 and r.content == png and r.headers["content-type"] == "image/png"
            assert client.get("/tiles/10/864/540").status_code == 204
            assert 'data-tiles="1"' in client.get("/peta").text


def test_siaga_center_run_serves_the_dashboard(tmp_path: Path, mosquitto: Any) -> None:
    """`siaga center run` runs receiver and dashboard in one process and stops cleanly on SIGTERM."""
    import os
    import signal
    import sys

    from devkit.harness.mosquitto import free_port, wait_port

    port = free_port()
    config = tmp_path / "center.toml"
    config.write_text(
        f'[node]\ndata_dir = "{tmp_path}"\n[center]\ndb = "sqlite:///{tmp_path / "center.db"}"\n'
        f'http = "127.0.0.1:{port}"\n[center.mqtt]\nurl = "{mosquitto.url}"\n',
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "--config", str(config), "center", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, timeout=20)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            assert client.get("/login").status_code == 200
            assert client.get("/api/summary").status_code == 401
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err.decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_carried_reports_show_their_carriers(web: Any) -> None:
    """Posts page: which carriers a post's reports came through, and what a carrier carried for whom;
    report page: "diteruskan oleh <carrier> (n hop)"."""
    from center.storage import IncomingReport

    _app, storage, client = web
    now = utcnow()
    reports = [make_report(f"KEBAKARAN rumah {i}", post_id="oebubun") for i in range(3)]

    def carried(report: Any, carrier: str, prev: str, hops: int) -> None:
        storage.ingest(
            [IncomingReport(report, carrier, now, 10.0, "boot", regency="ttu", relay_prev=prev, relay_hops=hops)]
        )

    for report in reports:
        carried(report, "napan", "bukit-01", 2)
    carried(reports[0], "kefa-kota", "oebubun", 1)
    direct = ingest(storage, make_report("BANJIR", post_id="napan"))
    login(client)
    page = client.get("/pos").text
    assert "lewat napan (3 laporan, ≤2 hop)" in page and "lewat kefa-kota (1 laporan, ≤1 hop)" in page
    assert "membawa 3 laporan pos oebubun" in page and "membawa 1 laporan pos oebubun" in page
    rows = client.get("/pos/baris").text
    assert "lewat napan" in rows
    detail = client.get(f"/laporan/{reports[0].report_id}").text
    assert "diteruskan oleh <strong>napan</strong> (2 hop, dari bukit-01)" in detail
    assert "diteruskan oleh <strong>kefa-kota</strong> (1 hop, dari oebubun)" in detail
    assert "hanya tiba lewat relay" in detail
    first = storage.copies(reports[0].report_id)[0].post_id  # the first carrier carries a reply back
    assert f"balasan dikirim ke pos <strong>{first}</strong>" in detail
    plain = client.get(f"/laporan/{direct}").text
    assert "diteruskan oleh" not in plain and "hanya tiba lewat relay" not in plain


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_login_rate_limit_is_shared_by_every_center_process(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two center processes on one database (two storages, two Auth): failures at one count at the other,
    and a success at either clears them.  The clock is injected: the window is not waited out."""
    from center.auth import Auth, AuthError, LoginLimiter, RateLimited
    from center.staffdb import StaffDB

    url = f"sqlite:///{tmp_path}/center.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    now = [1_000_000.0]
    with open_storage(url) as one, open_storage(url) as two:
        first = Auth(StaffDB(one), limiter=LoginLimiter(StaffDB(one), clock=lambda: now[0]))
        second = Auth(StaffDB(two), limiter=LoginLimiter(StaffDB(two), clock=lambda: now[0]))
        first.add_user("ani", PASSWORD)
        for auth in (first, second, first, second, first):
            with pytest.raises(AuthError):
                auth.login("ani", "salah-sekali-123", "10.0.0.9")
        with pytest.raises(RateLimited):
            second.login("ani", PASSWORD, "10.0.0.8")  # the account's 5 failures, counted across processes
        now[0] += 301  # the window passed
        second.login("ani", PASSWORD, "10.0.0.8")
        assert one.query("SELECT count(*) AS n FROM login_failures WHERE key = 'user:ani'")[0]["n"] == 0
