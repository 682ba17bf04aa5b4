"""The operator console in headless Chromium (Debian's /usr/bin/chromium driven by Playwright) at a phone's
width, over the real path: console → intake → post store → uplink → Mosquitto → center receiver → storage →
ack → the console shows "diterima 112" at the center's time, without a reload; a staff reply from the center
(its outbox → cmd → the post's uplink) appears on the console and is marked read.

Screenshots (360 px wide) are written to docs/screenshots/console-*.png on every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from devkit.harness.mosquitto import Mosquitto, free_port
from devkit.harness.synctools import Center
from edge.console.accounts import set_password
from edge.daemon import Post
from siaga import config as config_mod
from tests.radio_rig import HANDSET, wait_until
from tests.test_browser import SHOTS
from tests.test_browser import browser as browser  # the Chromium fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PIN = "482913"
TEXT = "Rumah warga terbakar di dekat gereja, api besar, satu orang luka"
HOSTILE = "KEBAKARAN <img src=x onerror=alert(1)><script>alert(2)</script>"


@pytest.fixture
def console_post(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[tuple[Post, str]]:
    port = free_port()
    cfg = config_mod.from_dict(
        {
            "node": {"post_id": "oebubun", "name": "Pos Oebubun", "data_dir": str(tmp_path / "post")},
            "uplink": {"mqtt": {"url": mosquitto.url, "keepalive_s": 5, "ack_timeout_s": 5.0, "heartbeat_s": 5}},
            "console": {"http": f"127.0.0.1:{port}", "villages": ["Oebubun", "Oelbonak", "Noepesu"]},
            "handsets": [{"id": HANDSET, "officer": "Yohanes Taek", "village": "Oebubun"}],
        }
    )
    post = Post(cfg)
    post.start()
    try:
        assert post.store is not None
        set_password(post.store, "sari", PIN)
        yield post, f"http://127.0.0.1:{port}"
    finally:
        post.stop()


def test_console_end_to_end_at_phone_width(console_post: tuple[Post, str], center: Center, browser: Any) -> None:
    post, url = console_post
    assert post.store is not None and post.intake is not None
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, locale="id-ID", timezone_id="Asia/Makassar", is_mobile=True
    )
    requests: list[str] = []
    dialogs: list[str] = []
    page = context.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.set_default_timeout(30_000)
    try:
        # -- log in (the form redirects to the login page)
        page.goto(url + "/")
        assert "/masuk" in page.url
        page.fill("#nama", "sari")
        page.fill("#sandi", PIN)
        page.screenshot(path=str(SHOTS / "console-login.png"))
        page.click("#masuk")
        page.wait_for_selector("#teks")

        # -- type a report: the classifier suggests as the officer types
        page.fill("#teks", TEXT)
        page.wait_for_selector('#kategori[data-suggested="kebakaran"]')
        assert page.input_value("#kategori") == "kebakaran"
        page.fill('input[name="luka"]', "1")
        page.select_option("#desa", "Oelbonak")
        page.fill("#tempat", "Dusun B, dekat gereja")
        page.fill("#pelapor", "Ama Nesi")
        page.check('input[name="cara"][value="radio"]')
        page.fill('input[name="kanal"]', "3")
        page.screenshot(path=str(SHOTS / "console-report.png"), full_page=True)
        page.click("#simpan")
        page.wait_for_selector("#tersimpan")
        rid = page.url.split("tersimpan=")[1]
        row = post.store.get(rid)
        assert row is not None and row.report.origin == "operator:sari" and row.report.casualties.injured == 1

        # -- it reaches the center through Mosquitto; the console shows "diterima 112" at the center's time
        page.evaluate("window.__notReloaded = true")
        item = f'li[data-report-id="{rid}"]'
        page.wait_for_selector(f'{item}[data-state="delivered"] time.center-time', timeout=45_000)
        assert page.evaluate("window.__notReloaded") is True
        assert center.storage.get_report(rid) is not None
        row = post.store.get(rid)
        assert row is not None and row.center_ts is not None
        expected = datetime.fromtimestamp(row.center_ts, ZoneInfo("Asia/Makassar")).strftime("%d-%m %H:%M") + " WITA"
        assert page.inner_text(f"{item} time.center-time") == expected
        assert "diterima 112" in page.inner_text(f"{item} .state")

        # -- a hostile text (a handset report, as the radio would store it) is shown as text only
        handset = post.intake.build(HOSTILE, origin=HANDSET, source="meshtastic")
        handset_id = post.submit(handset).report_id
        page.wait_for_selector(f'li[data-report-id="{handset_id}"]')
        assert "<img src=x onerror=alert(1)>" in page.inner_text(f'li[data-report-id="{handset_id}"] .text')
        markup = f'li[data-report-id="{handset_id}"] img, li[data-report-id="{handset_id}"] script'
        assert page.query_selector(markup) is None
        page.wait_for_selector(f'li[data-report-id="{handset_id}"][data-state="delivered"]', timeout=45_000)
        page.screenshot(path=str(SHOTS / "console-queue.png"), full_page=True)

        # -- a staff reply from the center appears on the console without a reload, and is marked read
        page.click('nav a[href="/pesan"]')
        page.wait_for_selector("#pesan")
        page.evaluate("window.__notReloaded = true")
        center.service.send_reply(handset_id, "Damkar menuju lokasi", "petugas-112")
        page.wait_for_selector('li.message.unread:has-text("Damkar menuju lokasi")', timeout=45_000)
        page.wait_for_selector("#unread:not(.zero)")
        assert page.evaluate("window.__notReloaded") is True
        page.screenshot(path=str(SHOTS / "console-messages.png"), full_page=True)
        page.click("li.message.unread button.read")
        page.wait_for_selector("li.message:not(.unread) >> text=dibaca sari")
        [message] = post.store.messages()
        assert message["read_by"] == "sari" and message["to_node"] == HANDSET

        # -- status: the same facts as `siaga status`
        page.click('nav a[href="/status"]')
        page.wait_for_selector("ul.status")
        assert "Uplink sekarang" in page.inner_text("ul.status")
        page.screenshot(path=str(SHOTS / "console-status.png"), full_page=True)
        wait_until(lambda: post.store is not None and post.store.counts()["delivered"] == 2, 30, "both delivered")
    finally:
        context.close()
    # nothing leaves the post: every request went to its own origin (works with no internet)
    assert requests and [u for u in requests if not u.startswith(url + "/")] == []
    assert dialogs == [], f"report text was executed: {dialogs}"
