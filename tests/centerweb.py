"""Helpers for the dashboard tests: a center database (SQLite file or a fresh PostgreSQL database), a
logged-in client, reports fed through the receiver's storage, and the app served by a real uvicorn."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from center.storage import CenterStorage, IncomingReport, open_storage
from center.web import WebServer, create_app
from devkit.harness.mosquitto import free_port, wait_port
from devkit.harness.wait import wait_until
from siaga import config as config_mod
from siaga.report import Callback, Casualties, PathHop, Report, new_report_id, utcnow

PG_DSN = os.environ.get("SIAGA_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PASSWORD = "kata-sandi-uji-112"


def _pg_admin() -> Any:
    import psycopg

    try:
        return psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        if os.environ.get("SIAGA_REQUIRE_PG"):
            pytest.fail(f"PostgreSQL required (SIAGA_REQUIRE_PG) but unreachable at {PG_DSN}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_DSN} (set SIAGA_TEST_PG_DSN)")


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A fresh database on the test server, dropped afterwards; yields its URL."""
    admin = _pg_admin()
    name = f"siaga_web_{secrets.token_hex(4)}"
    try:
        admin.execute(f"CREATE DATABASE {name}")
        base = PG_DSN.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        with contextlib.suppress(Exception):
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@contextlib.contextmanager
def center_db(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'center.db'}"
    else:
        with pg_database() as url:
            yield url


def center_config(
    tmp_path: Path, db_url: str, *, http: str = "127.0.0.1:8112", silent_after_s: float = 900, **center: Any
) -> Any:
    return config_mod.from_dict(
        {
            "node": {"data_dir": str(tmp_path / "data")},
            "center": {"db": db_url, "http": http, "silent_after_s": silent_after_s, **center},
        },
        require_post=False,
    )


def make_report(text: str = "KEBAKARAN rumah warga", **changes: Any) -> Report:
    now = utcnow()
    base: dict[str, Any] = {
        "report_id": new_report_id(),
        "post_id": "oebubun",
        "origin": "!a1b2c3d4",
        "source": "meshtastic",
        "text_raw": text,
        "observed_at": now - timedelta(seconds=90),
        "stored_at": now - timedelta(seconds=80),
        "category": "kebakaran",
        "lat": -9.447,
        "lon": 124.479,
        "accuracy_m": 30.0,
        "loc_source": "gps",
        "casualties": Casualties(injured=1),
        "path": (PathHop("oebubun", hops=2, snr=-7.5, rssi=-110),),
        "callback": Callback(handset="!a1b2c3d4", officer="Yohanes Taek", village="Oebubun"),
        "area_desc": "Desa Oebubun",
    }
    base.update(changes)
    return Report(**base).validate()


def ingest(storage: CenterStorage, report: Report, *, received_at: datetime | None = None, age_s: float = 10.0) -> str:
    result = storage.ingest(
        [
            IncomingReport(
                report=report,
                post_id=report.post_id,
                received_at=received_at or utcnow(),
                age_s=age_s,
                age_source="boot",
                regency="ttu",
            )
        ]
    )
    return result[0].report_id


def add_user(app: Any, name: str = "ani", role: str = "petugas", password: str = PASSWORD) -> None:
    app.state.center.auth.add_user(name, password, role)


def csrf_of(html: str) -> str:
    match = re.search(r'data-csrf="([^"]+)"', html)
    assert match, "no CSRF token in page"
    return match.group(1)


def login(client: Any, name: str = "ani", password: str = PASSWORD) -> str:
    """Log in through the form like a browser; return the session's CSRF token."""
    page = client.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token
    response = client.post(
        "/login", data={"username": name, "password": password, "login_csrf": token.group(1), "next": "/"}
    )
    assert response.status_code in (200, 303), response.text[:300]
    return csrf_of(client.get("/").text)


class LiveServer:
    """The dashboard on a real uvicorn in a thread, on a free port."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = WebServer(app, f"127.0.0.1:{self.port}")

    def __enter__(self) -> LiveServer:
        self.server.start()
        wait_port(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


@contextlib.contextmanager
def center_app(kind: str, tmp_path: Path, **cfg_kw: Any) -> Iterator[tuple[Any, CenterStorage]]:
    with center_db(kind, tmp_path) as url:
        storage = open_storage(url)
        try:
            cfg = center_config(tmp_path, url, **cfg_kw)
            yield create_app(cfg, storage, poll_s=0.5), storage
        finally:
            storage.close()


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    return wait_until(predicate, timeout, "condition", interval)
