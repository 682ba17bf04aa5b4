"""The post's operator console (edge/console/) over a real post (edge.daemon.Post: store, intake, no
radio) through Starlette's test client: access, CSRF, inert text, the report form, messages from 112;
`siaga console passwd`; the status owner shared with `siaga status`.  The browser and the real path to the
center are tests/test_console_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from edge.console.accounts import Accounts, set_password
from edge.console.app import ROUTES, create_app
from edge.daemon import Post
from edge.status import post_status, render_status
from siaga import config as config_mod
from siaga.errors import ConfigError, ConsoleError
from siaga.passwords import LoginLimiter

PIN = "482913"
HOSTILE = 'KEBAKARAN <img src=x onerror=alert(1)><script>alert(2)</script> "kutip"'
BASE = "http://testserver"


def console_config(tmp_path: Path, **console: Any) -> config_mod.Config:
    return config_mod.from_dict(
        {
            "node": {"post_id": "oebubun", "name": "Pos Oebubun", "data_dir": str(tmp_path / "data")},
            "console": {"http": "127.0.0.1:0", "villages": ["Oebubun", "Oelbonak"], **console},
        }
    )


@pytest.fixture
def post(tmp_path: Path) -> Iterator[Post]:
    cfg = console_config(tmp_path)
    # the console is served below by the test client, not by uvicorn: start the post without it
    p = Post(config_mod.from_dict({**_raw(cfg), "console": {}}), with_uplink=False)
    p.start()
    assert p.store is not None
    set_password(p.store, "sari", PIN)
    try:
        yield p
    finally:
        p.stop()


def _raw(cfg: config_mod.Config) -> dict[str, Any]:
    return {"node": {"post_id": cfg.node.post_id, "name": cfg.node.name, "data_dir": str(cfg.node.data_dir)}}


@pytest.fixture
def client(tmp_path: Path, post: Post) -> Iterator[TestClient]:
    app = create_app(console_config(tmp_path), post)
    with TestClient(app, base_url=BASE, follow_redirects=False) as c:
        yield c


def login(client: TestClient, name: str = "sari", secret: str = PIN) -> str:
    page = client.get("/masuk")
    token = re.search(r'name="lc" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post("/masuk", data={"nama": name, "sandi": secret, "lc": token, "next": "/"})
    assert r.status_code == 303, r.text
    form = client.get("/")
    return re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]


def count(post: Post) -> int:
    assert post.store is not None
    return sum(post.store.counts().values())


def test_every_route_needs_a_session_but_the_login_form(client: TestClient) -> None:
    routes = [r for r in ROUTES if isinstance(r, Route)]
    assert len(routes) >= 12
    for route in routes:
        path = route.path.replace("{cmd_id}", "x")
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            r = client.request(method, path)
            if path == "/masuk":
                assert r.status_code in (200, 403), (method, path)  # the form; a POST without its token is refused
                assert "siaga_pos_sesi" not in r.headers.get("set-cookie", "")
            elif method == "GET":
                assert r.status_code == 303 and r.headers["location"].startswith("/masuk"), (method, path)
            else:
                assert r.status_code == 401, (method, path)
            assert "default-src 'self'" in r.headers["content-security-policy"]
    # the page's own static files are public (the login form needs its style) and local
    assert client.get("/static/console.css").status_code == 200
    # a forged cookie is no session
    client.cookies.set("siaga_pos_sesi", "forged")
    assert client.get("/antrean").status_code == 303


def test_report_form_stores_on_disk_before_it_says_tersimpan(client: TestClient, post: Post) -> None:
    csrf = login(client)
    assert client.get("/saran", params={"teks": "rumah terbakar api besar"}).json() == {"category": "kebakaran"}
    form = {
        "csrf": csrf,
        "teks": "Rumah warga terbakar dekat gereja, dua orang luka",
        "kategori": "kebakaran",
        "luka": "2",
        "desa": "Oelbonak",
        "tempat": "Dusun B",
        "lat": "-9,431",
        "lon": "124.506",
        "pelapor": "Ama Nesi",
        "cara": "radio",
        "kanal": "3",
    }
    r = client.post("/lapor", data=form)
    assert r.status_code == 303
    rid = r.headers["location"].split("tersimpan=")[1]
    # on disk: a second connection to the file sees it before the page is asked for
    from edge.store import Store

    with Store.open(post.cfg.store_path, check=False) as other:
        row = other.get(rid)
    assert row is not None and row.state == "pending"
    report = row.report
    assert report.origin == "operator:sari" and report.source == "manual" and report.verified
    assert report.category == "kebakaran" and report.casualties.injured == 2
    assert report.area_desc == "Dusun B, Oelbonak" and (report.lat, report.lon) == (-9.431, 124.506)
    assert report.loc_source == "operator"
    assert report.callback is not None and report.callback.officer == "Ama Nesi — radio suara kanal 3"
    page = client.get(r.headers["location"])
    assert f"Laporan #{report.ref} tersimpan" in page.text
    assert f'data-report-id="{rid}" data-state="pending"' in page.text and "menunggu" in page.text
    # the officer's category wins over the classifier's
    r = client.post("/lapor", data={"csrf": csrf, "teks": "rumah terbakar", "kategori": "medis"})
    rid2 = r.headers["location"].split("tersimpan=")[1]
    assert post.store is not None
    assert post.store.get(rid2).report.category == "medis"  # type: ignore[union-attr]


def test_bad_report_is_refused_with_nothing_stored(client: TestClient, post: Post) -> None:
    csrf = login(client)
    for bad in ({"teks": "   "}, {"teks": "banjir", "luka": "dua"}, {"teks": "banjir", "lat": "x", "lon": "1"}):
        r = client.post("/lapor", data={"csrf": csrf, **bad})
        assert r.status_code == 400 and "Belum tersimpan" in r.text
    r = client.post("/lapor", data={"csrf": csrf, "teks": "banjir", "desa": "<b>Desa lain</b>"})
    assert r.status_code == 400 and "<b>Desa" not in r.text
    assert count(post) == 0


def test_csrf_missing_or_wrong_is_refused_with_nothing_stored(client: TestClient, post: Post) -> None:
    csrf = login(client)
    assert post.store is not None
    post.store.add_message("c1", None, None, "Tim menuju lokasi")
    for data in ({}, {"csrf": ""}, {"csrf": "salah" + csrf}, {"csrf": csrf[:-1]}):
        r = client.post("/lapor", data={**data, "teks": "KEBAKARAN rumah"})
        assert r.status_code == 403, data
        assert client.post("/pesan/c1/dibaca", data=data).status_code == 403
        assert client.post("/keluar", data=data).status_code == 403
    # another site's page posting with the officer's cookie: refused by its Origin even with a token
    r = client.post("/lapor", data={"csrf": csrf, "teks": "x"}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert count(post) == 0
    assert post.store.unread_messages() == 1
    assert client.get("/antrean").status_code == 200  # still logged in


def test_hostile_text_is_rendered_inert(client: TestClient, post: Post) -> None:
    csrf = login(client)
    r = client.post("/lapor", data={"csrf": csrf, "teks": HOSTILE, "pelapor": "<script>x()</script>"})
    assert r.status_code == 303
    assert post.store is not None
    post.store.add_message("c2", None, "!a1b2c3d4", "<img src=y onerror=alert(3)>")
    for path in ("/antrean", "/antrean/baris", "/pesan", "/pesan/daftar"):
        text = client.get(path).text
        assert "<script>alert" not in text and "<img src" not in text, path
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in client.get("/antrean").text
    assert "&lt;img src=y onerror=alert(3)&gt;" in client.get("/pesan").text


def test_login_is_rate_limited(tmp_path: Path, post: Post) -> None:
    now = [1000.0]
    assert post.store is not None
    accounts = Accounts(post.store, limiter=LoginLimiter(max_failures=5, window_s=300, clock=lambda: now[0]))
    app = create_app(console_config(tmp_path), post, accounts=accounts)
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        token = re.search(r'name="lc" value="([^"]+)"', client.get("/masuk").text).group(1)  # type: ignore[union-attr]
        for _ in range(5):
            r = client.post("/masuk", data={"nama": "sari", "sandi": "000000", "lc": token})
            assert r.status_code == 401 and "salah" in r.text
        # the right PIN is refused too while the window is full, without checking it
        r = client.post("/masuk", data={"nama": "sari", "sandi": PIN, "lc": token})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        # an unknown name costs the same and counts the same (per address)
        r = client.post("/masuk", data={"nama": "budi", "sandi": PIN, "lc": token})
        assert r.status_code == 429
        now[0] += 301
        r = client.post("/masuk", data={"nama": "sari", "sandi": PIN, "lc": token})
        assert r.status_code == 303
        # the login form's own token is needed (no login CSRF)
        client.cookies.clear()
        r = client.post("/masuk", data={"nama": "sari", "sandi": PIN, "lc": "tebak"})
        assert r.status_code == 403


def test_logout_ends_the_session(client: TestClient) -> None:
    csrf = login(client)
    assert client.post("/keluar", data={"csrf": csrf}).status_code == 303
    assert client.get("/antrean").status_code == 303


def test_replies_from_112_are_kept_and_marked_read(client: TestClient, post: Post) -> None:
    # the uplink's on_command: kept in the store even though this post has no radio to carry it
    post.on_command({"cmd_id": "cmd-1", "type": "reply", "report_id": "r-1", "to": "!a1b2c3d4", "text": "Damkar OTW"})
    post.on_command({"cmd_id": "cmd-1", "type": "reply", "report_id": "r-1", "to": "!a1b2c3d4", "text": "Damkar OTW"})
    assert post.store is not None
    assert [m["text"] for m in post.store.messages()] == ["Damkar OTW"]
    csrf = login(client)
    page = client.get("/pesan")
    assert "Damkar OTW" in page.text and 'class="message unread"' in page.text
    assert client.get("/pesan/belum-dibaca", headers={"X-Requested-With": "fetch"}).json() == {"unread": 1}
    assert client.post("/pesan/cmd-1/dibaca", data={"csrf": csrf}).status_code == 303
    [message] = post.store.messages()
    assert message["read_by"] == "sari" and message["read_ts"] is not None
    assert "dibaca sari" in client.get("/pesan").text


def test_status_page_and_siaga_status_share_one_owner(client: TestClient, post: Post) -> None:
    login(client)
    assert post.store is not None
    status = post_status(post.cfg, post.store)
    text = render_status(status)
    assert text.splitlines()[0] == "Pos Oebubun (oebubun)"  # not "Pos Pos Oebubun"
    assert "Ruang disk" in text and status["disk"]["free_bytes"] > 0
    page = client.get("/status").text
    assert "<strong>Pos Oebubun (oebubun)</strong>" in page
    for line in text.splitlines()[1:]:
        if line.strip() not in ("Semua baik.", "PERLU PERHATIAN:") and "Laporan tertua" not in line:
            assert line.strip().replace("  ", " ")[:20] in page.replace("  ", " "), line


def test_pages_are_small(client: TestClient, post: Post) -> None:
    csrf = login(client)
    client.post("/lapor", data={"csrf": csrf, "teks": "KEBAKARAN rumah warga"})
    sizes = {p: len(client.get(p).content) for p in ("/", "/antrean", "/status", "/pesan", "/static/console.css")}
    sizes["/static/console.js"] = len(client.get("/static/console.js").content)
    assert all(size < 8 * 1024 for size in sizes.values()), sizes


def test_accounts_refuse_bad_names_and_short_pins(post: Post) -> None:
    assert post.store is not None
    with pytest.raises(ConsoleError):
        set_password(post.store, "Sari Besar", PIN)
    with pytest.raises(ConsoleError):
        set_password(post.store, "sari", "12345")
    assert set_password(post.store, "sari", "baru-123456") is False  # an existing account: replaced
    assert post.store.operators() == ["sari"]
    row = post.store.operator("sari")
    assert row is not None and row["password_hash"].startswith("scrypt$") and "baru" not in row["password_hash"]


def test_console_config_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        console_config(tmp_path, http="localhost:notaport")
    assert exc.value.key == "console.http"
    with pytest.raises(ConfigError) as exc:
        console_config(tmp_path, villages=[""])
    assert exc.value.key == "console.villages"
    assert config_mod.from_dict({"node": {"post_id": "x"}}).console.http == ""  # off by default


def test_siaga_console_passwd(tmp_path: Path, run_siaga: Any) -> None:
    from tests.conftest import write_post_config

    config = write_post_config(tmp_path)
    r = run_siaga("console", "passwd", "sari", config=config, input="482913\n")
    assert r.returncode == 0 and "dibuat" in r.stdout, r.stderr
    r = run_siaga("console", "passwd", "sari", config=config, input="123\n")
    assert r.returncode == 1 and "minimal 6" in r.stderr
    r = run_siaga("console", "list", config=config)
    assert r.stdout.split() == ["sari"]
    from edge.store import Store

    with Store.open(tmp_path / "data" / "post.db") as store:
        assert Accounts(store).login("sari", "482913", "cli")[1].name == "sari"
