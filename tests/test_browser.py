"""The dashboard in headless Chromium (Debian's /usr/bin/chromium driven by Playwright), over the whole
real path: simulated handset → simulated Meshtastic radio → post daemon → Mosquitto → center receiver →
storage → dashboard (SSE) → reply → cmd → post → mesh → handset.

Screenshots of the main views are written to docs/screenshots/ on every run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from center.web import create_app
from devkit.harness.mosquitto import Mosquitto
from devkit.harness.synctools import (
    Center,
    Post,
    post_config,
)
from siaga import config as config_mod
from tests.centerweb import PASSWORD, LiveServer, add_user
from tests.radio_rig import HANDSET, make_device, radio_of, running_post, wait_report, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("SIAGA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
HOSTILE = "KEBAKARAN rumah <img src=x onerror=alert(1)><script>alert(2)</script>"


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing (apt-get install chromium); never downloaded by the tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_dashboard_end_to_end(
    tmp_path: Path,
    mosquitto: Mosquitto,
    center: Center,
    browser: Any,
) -> None:
    # the dashboard over the service's storage; replies through the service's outbox (as `siaga center run`)
    app = create_app(center.cfg, center.storage, send_reply=center.service.send_reply)
    add_user(app, "sari")
    device = make_device(tmp_path, "tcp")
    device.start()
    try:
        cfg = config_mod.from_dict(
            {
                "node": {"post_id": "oebubun", "name": "Oebubun", "data_dir": str(tmp_path / "post")},
                "radio": {"meshtastic": {**radio_of(device, "tcp"), "min_send_interval_s": 0.2, "ack_timeout_s": 3.0}},
                "uplink": {"mqtt": {"url": mosquitto.url, "keepalive_s": 5, "ack_timeout_s": 5.0, "heartbeat_s": 5}},
                "handsets": [{"id": HANDSET, "officer": "Yohanes Taek", "village": "Oebubun"}],
            }
        )
        with LiveServer(app) as server, running_post(cfg) as daemon:
            device.add_node(HANDSET, "Petugas Oebubun 01", "OB01")
            _run(browser, server, center, device, daemon, tmp_path, mosquitto)
    finally:
        device.stop()


def _run(
    browser: Any, server: LiveServer, center: Center, device: Any, daemon: Any, tmp_path: Path, broker: Any
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1366, "height": 860}, locale="id-ID", timezone_id="Asia/Makassar")
    requests: list[str] = []
    dialogs: list[str] = []
    page = context.new_page()
    page.on("request", lambda r: requests.append(r.url))

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.set_default_timeout(30_000)
    try:
        # -- log in (the queue redirects to the login form)
        page.goto(server.url + "/")
        assert "/login" in page.url
        page.fill("#username", "sari")
        page.fill("#password", PASSWORD)
        page.screenshot(path=str(SHOTS / "login.png"))
        page.click("#login-submit")
        page.wait_for_selector("table.queue")
        page.click("#sound-toggle")
        assert page.get_attribute("#sound-toggle", "aria-pressed") == "true"
        page.wait_for_selector("#live-state.on")
        page.evaluate("window.__notReloaded = true")

        # -- a report from the simulated handset appears live, with the sound alert (life safety)
        device.inject_position(HANDSET, -9.4312, 124.5062)  # the handset's GPS, attached by the post
        device.inject_text(HANDSET, HOSTILE)
        row = wait_report(daemon, "KEBAKARAN")
        rid = row.report.report_id
        page.wait_for_selector(f'tr[data-report-id="{rid}"]', timeout=30_000)
        assert page.evaluate("window.__notReloaded") is True
        page.wait_for_function("window.siagaAlerts >= 1")
        assert page.inner_text("#badge-unack") == "1"
        cell = page.inner_text(f'tr[data-report-id="{rid}"] td.text')
        assert "<img src=x onerror=alert(1)>" in cell  # shown as text ...
        assert page.query_selector(f'tr[data-report-id="{rid}"] td.text img') is None  # ... never as markup
        # a second, non-life-safety report arrives too (no extra alert for it)
        device.inject_text(HANDSET, "INFO pohon tumbang di jalan desa")
        page.wait_for_selector("tr.row >> nth=1")
        page.screenshot(path=str(SHOTS / "queue.png"), full_page=True)

        # -- report detail: raw text inert, status changes
        page.click(f'tr[data-report-id="{rid}"] td.ref a')
        page.wait_for_selector("#raw-text")
        assert page.inner_text("#raw-text") == HOSTILE
        assert page.query_selector("#raw-text img, #raw-text script") is None
        page.click('button[data-status="diterima"]')
        page.wait_for_selector('#report-status[data-status="diterima"]')
        page.click('button[data-status="diverifikasi"]')
        page.wait_for_selector('#report-status[data-status="diverifikasi"]')
        assert center.storage.get_report(rid).status == "diverifikasi"  # type: ignore[union-attr]

        # -- a reply the simulated handset receives; its delivery state shows up live
        page.fill("#reply-text", "Damkar menuju lokasi")
        page.click("#reply-form button[type=submit]")
        page.wait_for_selector("p.ok")
        wait_until(
            lambda: [p for p in device.sent if p.text == "112: Damkar menuju lokasi" and p.acked is True], 30, "reply"
        )
        page.wait_for_selector('#replies li[data-state="delivered"]', timeout=30_000)
        page.screenshot(path=str(SHOTS / "report.png"), full_page=True)

        # -- map of reports and posts
        page.goto(server.url + "/peta")
        page.wait_for_selector("#map[data-reports][data-posts]")
        page.wait_for_selector(".leaflet-interactive")
        page.screenshot(path=str(SHOTS / "map.png"))

        # -- posts: a second post goes silent (its Last Will) and is flagged without a reload
        page.goto(server.url + "/pos")
        page.wait_for_selector('tr.post[data-post-id="oebubun"]:not(.silent)')
        other = Post(post_config(tmp_path / "eban", [broker.url], post_id="eban"))
        other.start()
        try:
            wait_until(lambda: center.storage.get_post("eban") is not None, 15, "eban heard")
            page.wait_for_selector('tr.post[data-post-id="eban"]:not(.silent)')
            page.evaluate("window.__notReloaded = true")
        finally:
            other.stop()  # a clean stop publishes "offline" (what the broker sends as Last Will on a cut)
        page.wait_for_selector('tr.post.silent[data-post-id="eban"]')
        assert page.evaluate("window.__notReloaded") is True
        assert "SENYAP" in page.inner_text('tr.post[data-post-id="eban"]')
        assert page.inner_text("#badge-silent") == "1"
        page.screenshot(path=str(SHOTS / "posts.png"), full_page=True)
    finally:
        context.close()

    # nothing leaves the center: every request went to its own origin (no CDN, no tile server)
    assert requests, "no requests recorded"
    foreign = [u for u in requests if not u.startswith(server.url + "/")]
    assert foreign == [], foreign
    assert dialogs == [], f"report text was executed: {dialogs}"
